"""One process trains a run at a time: a second asking for it fails at once (exit 2) or, with --wait, waits and
reuses the result; a run is never trained twice. The lock dies with its holder, so a killed run is no obstacle."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time

import pytest

from benchmark.cli import main
from benchmark.runlock import RunInProgressError, is_locked, lock_path, run_lock
from benchmark.runner import RunRequest, resolve_configs
from results import RUNNING, ResultsStore, RunRecord
from tests.conftest import REPO, TINY_DB

DB_SET = [x for k, v in TINY_DB.items() for x in ("--db-set", f"{k}={v}")]


def run_args(workdir, *extra: str) -> list[str]:
    return ["run", "--method", "no_coupling", "--db", "synthetic", *DB_SET, "--epochs", "1", "--workdir", str(workdir),
            "--quiet", *extra]


def config():
    _, (cfg,) = resolve_configs(RunRequest(method="no_coupling", db="synthetic", epochs=1,
                                           db_set=[f"{k}={v}" for k, v in TINY_DB.items()]))
    return cfg


def running_row(workdir, cfg) -> RunRecord:
    """The row a process training ``cfg`` writes when it starts."""
    record = RunRecord(run_id=cfg.run_id, protocol_id=cfg.protocol_id, status=RUNNING, method=cfg.method, db=cfg.db,
                       backbone=cfg.backbone, seed=cfg.seed, fold=cfg.fold, config=cfg.to_dict(), started_at="earlier")
    with ResultsStore(workdir / "results.sqlite") as store:
        store.start_run(record)
    return record


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with run_lock(tmp_path, "abc", "a run") as waited:
        assert waited is False and is_locked(tmp_path, "abc")
        with pytest.raises(RunInProgressError, match=rf"run abc \(a run\) is being trained by another process "
                                                     rf"\(pid {os.getpid()} on "):
            with run_lock(tmp_path, "abc", "a run"):
                pass
    assert not is_locked(tmp_path, "abc") and not lock_path(tmp_path, "abc").parent.exists()  # nothing left behind


def test_a_waiting_holder_gets_the_lock_when_the_first_lets_go(tmp_path):
    got = []

    def second() -> None:
        with run_lock(tmp_path, "abc", "a run", wait=True) as waited:
            got.append(waited)

    with run_lock(tmp_path, "abc", "a run"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert got == []  # still waiting
    thread.join(10)
    assert got == [True]


def test_a_run_another_process_is_training_fails_at_once_and_changes_nothing(tmp_path, capsys):
    cfg = config()
    row = running_row(tmp_path, cfg)
    with run_lock(tmp_path, cfg.run_id, cfg.describe()):  # as the process training it holds it
        assert main(run_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"error: run {cfg.run_id}" in err and "is being trained by another process" in err and "--wait" in err
    with ResultsStore(tmp_path / "results.sqlite") as store:
        (stored,) = store.runs()
    assert stored.status == RUNNING and stored.started_at == row.started_at  # its row untouched
    assert not (tmp_path / "models").exists()


def test_with_wait_the_other_process_result_is_reused_not_trained_again(tmp_path, capsys):
    cfg = config()
    running_row(tmp_path, cfg)
    codes = []
    with run_lock(tmp_path, cfg.run_id, cfg.describe()):
        thread = threading.Thread(target=lambda: codes.append(main(run_args(tmp_path, "--wait"))))
        thread.start()
        time.sleep(0.5)
        with ResultsStore(tmp_path / "results.sqlite") as store:  # the other process completes it
            store.complete_run(cfg.run_id, metrics=[], history=[], best_epoch=0, wall_time_s=1.0, peak_memory_mb=None,
                               finished_at="by the other process")
    thread.join(60)
    assert codes == [0] and f"run {cfg.run_id}" in capsys.readouterr().out
    with ResultsStore(tmp_path / "results.sqlite") as store:
        assert store.get(cfg.run_id).finished_at == "by the other process"
    assert not (tmp_path / "models" / f"{cfg.run_id}.pt").exists()  # the waiting process trained nothing


def test_the_same_run_started_twice_at_once_is_trained_once(tmp_path, capsys):
    """Two real processes: the second is refused while the first trains; the first completes the run."""
    args = [*run_args(tmp_path), "--epochs", "8"]  # the later --epochs wins: long enough to be caught training
    first = subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    run_id = dataclasses.replace(config(), epochs=8).run_id
    deadline = time.monotonic() + 120
    while not is_locked(tmp_path, run_id):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the first process never started training"
        time.sleep(0.1)
    assert main(args) == 2
    assert "is being trained by another process" in capsys.readouterr().err
    assert first.wait(300) == 0
    with ResultsStore(tmp_path / "results.sqlite") as store:
        (stored,) = store.runs()
    assert stored.status == "completed" and stored.run_id == run_id


def test_a_sweep_leaves_the_row_of_a_run_another_process_holds_alone(tmp_path):
    from benchmark.sweep_backends import record_failure

    cfg = config()
    running_row(tmp_path, cfg)
    with ResultsStore(tmp_path / "results.sqlite") as store, run_lock(tmp_path, cfg.run_id, "a run"):
        record_failure(store, cfg, "RunInProgressError: busy", since="")
        assert store.get(cfg.run_id).status == RUNNING
    with ResultsStore(tmp_path / "results.sqlite") as store:  # nobody holds it: a row left running is failed
        record_failure(store, cfg, "worker process died", since="")
        assert store.get(cfg.run_id).status == "failed"
