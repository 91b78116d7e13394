"""Issue 16's probes: bad input never trains, never leaves junk, and names what is wrong.

Each probe asserts exit code 2, that the one-line message names the culprit (the flag and its value, the
file), and that the store is unchanged: byte for byte where one exists, not created where none did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.protocol import input_size_problem
from results import FAILED, ResultsStore, RunRecord
from tests.conftest import TINY_DB

DB_SET = [x for k, v in TINY_DB.items() for x in ("--db-set", f"{k}={v}")]
RUN = ["run", "--db", "synthetic", *DB_SET, "--epochs", "1", "--quiet"]


def fingerprint(workdir: Path) -> str:
    """The store file's bytes (absent: 'absent'); WAL contents are checkpointed into the file by every close."""
    path = workdir / "results.sqlite"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A workdir holding one completed run, trained once for the module."""
    workdir = tmp_path_factory.mktemp("stored")
    assert main([*RUN, "--method", "no_coupling", "--workdir", str(workdir)]) == 0
    return workdir


@pytest.fixture
def workdir(stored, tmp_path) -> Path:
    """A private copy of the module's store."""
    copy = tmp_path / "w"
    shutil.copytree(stored, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return copy


def rejected(capsys, workdir: Path, args: list[str], *culprits: str) -> str:
    """Run ``args``; assert exit 2, one line naming every culprit, no traceback and an unchanged store."""
    before = fingerprint(workdir)
    assert main([*args, "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    assert fingerprint(workdir) == before
    return lines[0]


@pytest.mark.parametrize("flag, value, allowed", [
    ("--epochs", "0", "integer >= 1"), ("--epochs", "-1", "integer >= 1"),
    ("--batch-size", "0", "integer >= 1"), ("--batch-size", "-1", "integer >= 1"),
    ("--lr", "0", "finite number > 0"), ("--lr", "-1", "finite number > 0"), ("--lr", "nan", "finite number > 0"),
    ("--lr", "inf", "finite number > 0"),
    ("--image-size", "0", "integer >= 1"), ("--image-size", "7", "at least 8 x 8 pixels"),
    ("--workers", "-1", "integer >= 0"), ("--seed", "-1", "integer in 0.."),
])
def test_bad_numbers_are_rejected_before_anything_is_stored(capsys, workdir, flag, value, allowed):
    line = rejected(capsys, workdir, [*RUN, "--method", "no_coupling", flag, value], flag, allowed)
    assert f"{flag} {value}" in line or f"{flag} {float(value)}" in line  # the value as given (floats as parsed)


@pytest.mark.parametrize("args, culprits", [
    (["--method", "dmsca", "--set", "lambda_dm=nan"], ["lambda_dm='nan'", "finite"]),
    (["--method", "dmsca", "--set", "lambda_sca=inf"], ["lambda_sca='inf'", "finite"]),
    (["--method", "dmsca", "--set", "lambda_dm=-1"], ["lambda_dm=-1.0", ">= 0"]),
    (["--method", "no_coupling", "--db-set", "overlap=nan"], ["overlap='nan'", "finite"]),
    (["--method", "no_coupling", "--backbone", "vgg16", "--image-size", "16"], ["--image-size 16", "vgg16", ">= 32"]),
])
def test_bad_options_are_rejected_before_anything_is_stored(capsys, workdir, args, culprits):
    rejected(capsys, workdir, [*RUN, *args], *culprits)


def test_a_fold_out_of_range_names_the_folds(capsys, tmp_path):
    from tests.datasets.fixture_trees import cad_tree

    root = cad_tree(tmp_path / "cad")
    rejected(capsys, tmp_path / "w", ["run", "--method", "no_coupling", "--db", "cad", "--data-root", str(root),
                                      "--fold", "12", "--quiet"], "--fold 12", "pass --fold 0..11")
    assert not (tmp_path / "w").exists()


def test_a_failing_run_command_creates_no_store(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MTLBENCH_SADD_ROOT", raising=False)
    workdir = tmp_path / "fresh"
    assert main(["run", "--method", "dmsca", "--db", "sadd", "--workdir", str(workdir), "--quiet"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main([*RUN, "--method", "no_coupling", "--epochs", "0", "--workdir", str(workdir)]) == 2
    assert not workdir.exists()


@pytest.mark.parametrize("command", [["results"], ["results", "--format", "json"], ["export", "-"],
                                     ["report", "--db", "synthetic"]])
def test_read_only_commands_never_create_a_store(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    rejected(capsys, tmp_path / "some" / "typo", command, "no results store at", "some/typo")
    assert not (tmp_path / "some").exists()


def test_a_missing_store_points_at_the_stores_nearby(capsys, stored, tmp_path, monkeypatch):
    monkeypatch.chdir(stored.parent)
    line = rejected(capsys, Path("typo"), ["results"], "no results store at typo/results.sqlite")
    assert stored.name in line


def test_report_of_an_unknown_db_suggests_the_close_names(capsys, workdir):
    rejected(capsys, workdir, ["report", "--db", "cadd"], "--db cadd", "Did you mean 'cad'?",
             "Dbs with completed runs there: synthetic")
    rejected(capsys, workdir, ["report", "--db", "synthetic", "--alpha", "1.5"], "--alpha 1.5")
    rejected(capsys, workdir, ["report", "--db", "synthetic", "--alpha", "0", "--format", "html"], "--alpha 0.0")


def test_results_with_a_filter_that_matches_nothing_says_what_is_stored(capsys, workdir):
    assert main(["results", "--db", "synthetc", "--workdir", str(workdir)]) == 0
    assert "did you mean synthetic? stored: synthetic" in capsys.readouterr().out


def test_input_size_of_a_backbone_is_found_on_the_meta_device():
    assert input_size_problem("smallcnn", 8) is None and input_size_problem("resnet18", 8) is None
    assert "at least 8 x 8" in input_size_problem("smallcnn", 5)
    assert "at least 32 x 32" in input_size_problem("vgg16", 31)


# ----- readable output -------------------------------------------------------------------------
def test_results_show_a_one_line_cause_and_keep_the_traceback(capsys, workdir):
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nOSError: image file is truncated"
    error = ("OSError: Caught OSError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
             "  File \"w.py\", line 3, in fetch\nOSError: image file is truncated (12 bytes not processed)\n\n" + traceback)
    with ResultsStore(workdir / "results.sqlite") as store:
        first = store.runs()[0]
        store.put(RunRecord(run_id="f" * 16, protocol_id="p", status=FAILED, method="no_coupling", db="synthetic",
                            backbone="smallcnn", seed=5, fold=None, config={}, started_at="2024", error=error))
    assert main(["results", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr()
    assert "OSError: image file is truncated (12 bytes not processed)" in out.out and "Traceback" not in out.out
    assert "--full" in out.err
    assert main(["results", "--workdir", str(workdir), "--full"]) == 0
    assert traceback in capsys.readouterr().out
    assert main(["results", "--workdir", str(workdir), "--format", "json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["f" * 16]["error"] == error  # whole
    value = next(m.value for m in first.metrics if m.split == "test" and m.primary)
    assert value in rows[first.run_id]["test_primary"].values()  # full precision, not rounded
    assert rows[first.run_id]["wall_s"] == first.wall_time_s
    assert main(["results", "--workdir", str(workdir), "--format", "csv"]) == 0
    assert repr(value) in capsys.readouterr().out


def test_a_discarded_checkpoint_is_a_warning_even_when_quiet(caplog, tmp_path):
    """A rerun without --resume warns (a warning passes --quiet's level) that it discards the checkpoint."""
    from benchmark.checkpoint import checkpoint_path
    from benchmark.runner import RunRequest, resolve_configs

    _, (cfg,) = resolve_configs(RunRequest(method="no_coupling", db="synthetic", epochs=1,
                                           db_set=[f"{k}={v}" for k, v in TINY_DB.items()]))
    path = checkpoint_path(tmp_path, cfg.run_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"an unfinished attempt's checkpoint")
    assert main([*RUN, "--method", "no_coupling", "--workdir", str(tmp_path)]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("starting over discards it" in m and "--resume" in m and cfg.run_id in m for m in warned), warned
