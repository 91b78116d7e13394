"""The command line end to end, in a temporary folder: run, skip, force, results, report, export/import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from benchmark.cli import main
from methods import METHODS, Method
from results import ResultsStore
from tests.conftest import PLUGIN_DIR, REPO, TINY_DB

DB_SET = [x for k, v in TINY_DB.items() for x in ("--db-set", f"{k}={v}")]


def run(workdir, *args) -> int:
    return main(["run", "--db", "synthetic", *DB_SET, "--epochs", "1", "--workdir", str(workdir), "--quiet", *args])


def test_run_report_results_end_to_end(tmp_path, capsys):
    assert run(tmp_path, "--method", "single_task") == 0
    assert run(tmp_path, "--method", "no_coupling", "--seed", "0", "1") == 0
    out = capsys.readouterr().out
    assert out.count("run ") == 4 and "classes" in out and "f1_mean" in out
    assert main(["results", "--workdir", str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["method"] for r in rows) == ["no_coupling", "no_coupling", "single_task", "single_task"]
    assert all(r["status"] == "completed" for r in rows)
    assert main(["report", "--db", "synthetic", "--workdir", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    report = capsys.readouterr().out
    assert "Negative transfer on synthetic" in report and "| NT" in report
    lines = [line for line in report.splitlines() if line.startswith("| no_coupling")]
    # one row for both seeds; seed 0 is compared, seed 1 has no reference
    assert len(lines) == 1 and ("(+" in lines[0] or "(-" in lines[0]) and "n=2, 1 paired" in lines[0]
    assert "no single_task run of 'classes' with this protocol (seed 1)" in report
    assert (tmp_path / "rep" / "negative_transfer_synthetic.md").is_file()
    assert main(["results", "--workdir", str(tmp_path), "--format", "csv", "--method", "single_task"]) == 0
    assert capsys.readouterr().out.count("\n") == 3


def test_completed_run_is_skipped_unless_forced(tmp_path, capsys):
    assert run(tmp_path, "--method", "no_coupling") == 0
    first = ResultsStore(tmp_path / "results.sqlite").runs()[0]
    assert run(tmp_path, "--method", "no_coupling") == 0
    assert ResultsStore(tmp_path / "results.sqlite").runs()[0].finished_at == first.finished_at
    time.sleep(1.1)
    assert run(tmp_path, "--method", "no_coupling", "--force") == 0
    again = ResultsStore(tmp_path / "results.sqlite").runs()
    assert len(again) == 1 and again[0].finished_at != first.finished_at


@pytest.mark.parametrize("args, message", [
    (["--method", "no_couplng"], "Did you mean 'no_coupling'"),
    (["--method", "no_coupling", "--backbone", "resnet5"], "unknown backbone 'resnet5'"),
    (["--method", "single_task", "--set", "tsk=classes"], "has no option 'tsk'. Did you mean task"),
    (["--method", "single_task", "--set", "task=colour"], "has no task 'colour'"),
    (["--method", "no_coupling", "--db-set", "overlap=lots"], "overlap='lots': expected float"),
    (["--method", "no_coupling", "--pretrained", "/nonexistent/w.pth"], "'/nonexistent/w.pth' not found: give a local"),
    (["--method", "no_coupling", "--pretrained", "imagenet"], "timm has no pretrained weights for 'smallcnn'"),
    (["--method", "no_coupling", "--backbone", "resnet18", "--pretrained", "zz_in1k"], "resnet18's tags: a1_in1k"),
    (["--method", "no_coupling", "--fold", "1"], "has fixed splits"),
    (["--method", "adashare"], "cannot use backbone 'smallcnn'; use one of resnet18"),
])
def test_bad_input_is_a_clear_error_and_stores_nothing(tmp_path, capsys, args, message):
    assert run(tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert ResultsStore(tmp_path / "results.sqlite").runs() == []


class _Explodes(Method):
    """Test method whose loss is NaN or which is interrupted at the second step."""

    def __init__(self, *, what: str = "nan") -> None:
        super().__init__()
        self.what = what

    def losses(self, task_losses, ctx):
        if ctx.step == 1 and self.what == "interrupt":
            raise KeyboardInterrupt
        return {k: v * float("nan") if self.what == "nan" else v for k, v in task_losses.items()}


@pytest.fixture
def explodes():
    METHODS.register("explodes")(_Explodes)
    yield
    del METHODS._classes["explodes"]


@pytest.mark.parametrize("what, code, error", [("nan", 3, "is nan"), ("interrupt", 130, "interrupted")])
def test_nan_loss_or_ctrl_c_stores_a_failed_run(tmp_path, capsys, explodes, what, code, error):
    assert run(tmp_path, "--method", "single_task", "--set", "task=attributes") == 0
    assert run(tmp_path, "--method", "explodes", "--set", f"what={what}") == code
    assert "stored as failed" in capsys.readouterr().err
    runs = {r.method: r for r in ResultsStore(tmp_path / "results.sqlite").runs()}
    assert runs["explodes"].status == "failed" and error in runs["explodes"].error
    assert runs["explodes"].metrics == [] and runs["single_task"].status == "completed"


def test_ctrl_c_outside_training_does_not_speak_of_a_failed_run(tmp_path, capsys, monkeypatch):
    """Only run and sweep store runs: an interrupted report (or ls, export, ...) just says it was interrupted."""
    assert run(tmp_path, "--method", "no_coupling") == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("reports.build_tables", interrupted)
    assert main(["report", "--workdir", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "failed" not in err


def test_killed_run_leaves_a_readable_store_and_is_trained_again(tmp_path):
    args = ["run", "--method", "no_coupling", "--db", "synthetic", "--db-set", "n_train=1500", "--epochs", "2",
            "--workdir", str(tmp_path), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store_file = tmp_path / "results.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and not (store_file.exists() and ResultsStore(store_file).runs()):
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # mid-way through the first epoch
    proc.wait()
    (record,) = ResultsStore(store_file).runs()
    assert record.status == "running" and record.metrics == []
    assert main(args) == 0  # not skipped: only a completed run is
    (record,) = ResultsStore(store_file).runs()
    assert record.status == "completed" and record.metrics and len(record.history) == 2


def test_export_import_between_workdirs(tmp_path, capsys):
    here, there = tmp_path / "here", tmp_path / "there"
    assert run(here, "--method", "no_coupling") == 0
    assert main(["export", str(tmp_path / "runs.jsonl"), "--workdir", str(here)]) == 0
    assert main(["import", str(tmp_path / "runs.jsonl"), "--workdir", str(there)]) == 0
    assert main(["import", str(tmp_path / "runs.jsonl"), "--workdir", str(there)]) == 0
    assert "imported 0 runs; kept 1" in capsys.readouterr().out
    a, b = ResultsStore(here / "results.sqlite").runs(), ResultsStore(there / "results.sqlite").runs()
    assert [r.to_json() for r in a] == [r.to_json() for r in b]


def test_export_of_an_experiment_holds_its_grid_and_the_runs_they_built_on(tmp_path, capsys):
    """``export --experiment``: one experiment's runs out of a work dir that holds others, teachers included."""
    options = ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in TINY_DB.items())
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'seeds = [0]\n[preset]\nepochs = 1\n[[dbs]]\nname = "synthetic"\noptions = {{ {options} }}\n'
                          '[[methods]]\nname = "student_teacher"\n')
    work = tmp_path / "work"
    assert main(["sweep", str(experiment), "--workdir", str(work), "--quiet"]) == 0
    assert run(work, "--method", "no_coupling") == 0  # in the store, not in the experiment
    out = tmp_path / "exp.jsonl"
    assert main(["export", str(out), "--experiment", str(experiment), "--workdir", str(work)]) == 0
    exported = sorted(json.loads(line)["method"] for line in out.read_text().splitlines())
    assert exported == ["single_task", "single_task", "student_teacher"], exported  # the two teachers
    assert main(["export", str(out), "--data-root", "cad=/x", "--workdir", str(work)]) == 2
    assert "--data-root only applies with --experiment" in capsys.readouterr().err


def test_export_warns_about_grid_runs_it_leaves_out_and_runs_the_file_held_before(tmp_path, capsys):
    """A completed run retrained for its weights reads ``running`` until it completes again: an export taken then
    (or before the grid is done) says which runs it lacks, and which runs the file it overwrites held."""
    import sqlite3

    options = ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in TINY_DB.items())
    experiment = tmp_path / "exp.toml"
    head = f'seeds = [0]\n[preset]\nepochs = 1\n[[dbs]]\nname = "synthetic"\noptions = {{ {options} }}\n'
    experiment.write_text(head + '[[methods]]\nname = "no_coupling"\n')
    work, out = tmp_path / "work", tmp_path / "exp.jsonl"
    assert main(["sweep", str(experiment), "--workdir", str(work), "--quiet"]) == 0
    export = ["export", str(out), "--experiment", str(experiment), "--status", "completed", "--workdir", str(work)]
    capsys.readouterr()
    assert main(export) == 0
    assert capsys.readouterr().err == "exported 1 runs\n"  # the whole grid: nothing to warn about
    (run_id,) = [json.loads(line)["run_id"] for line in out.read_text().splitlines()]

    with sqlite3.connect(work / "results.sqlite") as db:  # as a retraining leaves it while it trains
        db.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
    experiment.write_text(head + '[[methods]]\nname = "no_coupling"\n[[methods]]\nname = "mgda_ub"\n')
    assert main(export) == 0
    err = capsys.readouterr().err
    assert "exported 0 runs" in err
    assert "2 run(s) of " in err and f"{run_id[:12]} no_coupling on synthetic / smallcnn / seed 0: running" in err
    assert "mgda_ub on synthetic / smallcnn / seed 0: not in the store" in err
    assert f"1 run(s) that {out} held before are not in it now" in err
    assert out.read_text() == ""  # written as asked; the warning is what keeps it from passing unnoticed


def test_pretrained_local_weights_are_loaded(tmp_path, capsys):
    from benchmark.backbones import SmallCNN

    torch.save(SmallCNN().state_dict(), tmp_path / "w.pth")
    assert run(tmp_path, "--method", "no_coupling", "--pretrained", str(tmp_path / "w.pth")) == 0
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    assert run(tmp_path, "--method", "no_coupling", "--pretrained", str(tmp_path / "bad.pth")) == 2
    assert "no tensor in" in capsys.readouterr().err


def test_python_m_benchmark_lists_plugins():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(PLUGIN_DIR)])}
    out = subprocess.run([sys.executable, "-m", "benchmark", "ls", "methods"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "fixed_weights" in out and "plugin:mtlbench-example-plugin" in out and "no_coupling" in out
