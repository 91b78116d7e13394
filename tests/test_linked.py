"""Linked runs through the runner: dependencies trained once and reused, links and total cost stored, weights kept."""

from __future__ import annotations

import pytest
import torch

from benchmark import runner
from benchmark.cli import main
from benchmark.linked import model_path
from benchmark.run_graph import DependencyCycleError, run_graph
from benchmark.runner import RunRequest, execute, resolve_configs
from benchmark.train import train
from methods import Dependency, LinkedRun, Method
from methods.single_task import SingleTask
from results import ResultsStore
from tests.conftest import TINY_DB

CPU = torch.device("cpu")
DB_SET = [f"{k}={v}" for k, v in TINY_DB.items()]


def configs(method: str, *method_set: str):
    return resolve_configs(RunRequest(method=method, db="synthetic", epochs=1, db_set=DB_SET, method_set=method_set))


@pytest.fixture
def trained(monkeypatch) -> list[str]:
    """The method of every run the runner trains, in order."""
    calls: list[str] = []

    def counting(cfg, *args, **kwargs):
        calls.append(cfg.method)
        return train(cfg, *args, **kwargs)

    monkeypatch.setattr(runner, "train", counting)
    return calls


def test_teachers_are_trained_once_linked_and_reused(tmp_path, trained):
    store = ResultsStore(tmp_path / "results.sqlite")
    db, [student_cfg] = configs("student_teacher")
    first = execute(student_cfg, db, store, CPU, progress=False)
    assert trained == ["single_task", "single_task", "student_teacher"]
    _, teacher_cfgs = configs("single_task")  # the runs the command line makes for the same protocol
    teachers = {f"teacher:{c.method_options['task']}": c.run_id for c in teacher_cfgs}
    assert first.status == "completed" and first.linked_run_ids == teachers
    graph = run_graph(student_cfg, db.problem(student_cfg.fold))  # the runner links the run graph's runs
    assert teachers == {role: dep.run_id for role, dep in graph.dependencies(student_cfg.run_id).items()}
    stored = {r.run_id: r for r in store.runs(method="single_task")}
    assert set(stored) == set(teachers.values()) and all(r.status == "completed" for r in stored.values())
    assert all(model_path(tmp_path, run_id).is_file() for run_id in [first.run_id, *teachers.values()])
    assert not list((tmp_path / "models").glob(".*"))  # no temporary file left behind
    # the total cost: the student's own time plus each teacher's, as stored with the links
    assert first.total_wall_time_s == pytest.approx(first.wall_time_s + sum(r.wall_time_s for r in stored.values()))
    assert {role: link["finished_at"] for role, link in first.links.items()} == {
        role: stored[run_id].finished_at for role, run_id in teachers.items()}

    _, [other_cfg] = configs("student_teacher", "pseudo_weight=0.5")
    second = execute(other_cfg, db, store, CPU, progress=False)
    assert trained[3:] == ["student_teacher"]
    again = {r.run_id: r for r in store.runs(method="single_task")}
    assert second.run_id != first.run_id and second.linked_run_ids == teachers
    assert [(r.run_id, r.started_at, r.finished_at) for r in again.values()] == [
        (r.run_id, r.started_at, r.finished_at) for r in stored.values()]  # reused, not retrained
    assert len(store.runs(method="student_teacher")) == 2


def test_force_retrains_the_student_only(tmp_path, trained):
    store = ResultsStore(tmp_path / "results.sqlite")
    db, [cfg] = configs("student_teacher")
    execute(cfg, db, store, CPU, progress=False)
    execute(cfg, db, store, CPU, progress=False, force=True)
    assert trained == ["single_task", "single_task", "student_teacher", "student_teacher"]


def test_a_completed_dependency_without_weights_is_an_error_and_stores_nothing(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    db, [teacher, _] = configs("single_task")
    execute(teacher, db, store, CPU, progress=False)
    model_path(tmp_path, teacher.run_id).unlink()
    _, [student] = configs("student_teacher")
    with pytest.raises(FileNotFoundError, match="weights .* are missing.*--force"):
        execute(student, db, store, CPU, progress=False)
    assert store.get(student.run_id) is None


def test_weights_that_fail_to_save_fail_the_run(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "results.sqlite")
    db, [cfg] = configs("no_coupling")
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        execute(cfg, db, store, CPU, progress=False)
    assert store.get(cfg.run_id).status == "failed" and not model_path(tmp_path, cfg.run_id).exists()


def test_a_method_depending_on_itself_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(SingleTask, "dependencies", classmethod(lambda cls, o, p: {"me": Dependency("single_task", o)}))
    db, [cfg, _] = configs("single_task")
    store = ResultsStore(tmp_path / "results.sqlite")
    with pytest.raises(DependencyCycleError, match=f"depends on itself through runs {cfg.run_id} -> {cfg.run_id}"):
        execute(cfg, db, store, CPU, progress=False)
    assert store.runs() == []  # refused while the run graph is made, before a row is stored


def test_default_attach_refuses_a_dependency_it_did_not_ask_for():
    with pytest.raises(NotImplementedError, match="does not override attach"):
        Method().attach("teacher:classes", LinkedRun("teacher:classes", "r", {}, Method(), None))  # type: ignore[arg-type]


def test_cli_runs_a_student_with_its_teachers(tmp_path, capsys):
    args = ["run", "--method", "student_teacher", "--db", "synthetic", "--epochs", "1", "--workdir", str(tmp_path),
            "--quiet", *[x for kv in DB_SET for x in ("--db-set", kv)]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("run ") == 1 and "with linked runs" in out
    assert sorted(r.method for r in ResultsStore(tmp_path / "results.sqlite").runs()) == [
        "single_task", "single_task", "student_teacher"]
