"""The SQLite results store: round trips, state changes, schema version, JSON lines, and several
processes writing at once (including one killed mid-write)."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from results.records import COMPLETED, FAILED, RUNNING, Metric, RunRecord
from results.store import SCHEMA_VERSION, ResultsStore, StoreError

# ----- helpers (top level, so spawned processes can import them) ---------------------------------


def make_record(run_id: str, *, db: str = "synthetic", method: str = "no_coupling", seed: int = 0,
                fold: int | None = None, started_at: str = "2024-01-01T00:00:00", status: str = RUNNING) -> RunRecord:
    config = {"method": method, "db": db, "backbone": "smallcnn", "seed": seed, "fold": fold,
              "method_options": {"lambda": 0.5, "schedule": [1, 2]}}
    return RunRecord(run_id=run_id, protocol_id=f"proto-{db}", status=status, method=method, db=db,
                     backbone="smallcnn", seed=seed, fold=fold, config=config,
                     environment={"git_sha": "abc123", "dirty": False, "torch": "2.x", "device": "cpu"},
                     started_at=started_at)


def make_metrics(value: float = 0.5) -> list[Metric]:
    """Three metrics, already in the store's read order (split, task, metric)."""
    return [Metric("test", "aus", "f1_mean", value, True, primary=True),
            Metric("test", "expression", "accuracy", value + 0.1, True, primary=True),
            Metric("val", "expression", "accuracy", value + 0.2, True)]


COMPLETION = dict(history=[{"epoch": 0, "train_loss": {"expression": 1.25}}, {"epoch": 1, "train_loss": {"expression": 0.75}}],
                  best_epoch=1, wall_time_s=12.5, peak_memory_mb=256.0, finished_at="2024-01-01T00:10:00")


def complete(store: ResultsStore, run_id: str, value: float = 0.5, **overrides) -> None:
    store.complete_run(run_id, metrics=make_metrics(value), **{**COMPLETION, **overrides})


def _write_runs(path: str, prefix: str, count: int, barrier=None) -> None:
    """Worker: open a store of its own and write ``count`` completed runs (``count`` < 0: forever).

    With a ``barrier``, wait for the other workers first, so that their writes overlap.
    """
    if barrier is not None:
        barrier.wait(timeout=60)
    store = ResultsStore(path)
    i = 0
    while count < 0 or i < count:
        run_id = f"{prefix}-{i:05d}"
        store.start_run(make_record(run_id, method=prefix, seed=i, started_at=f"2024-01-01T00:00:{i % 60:02d}"))
        complete(store, run_id, value=i / 1000)
        i += 1
    store.close()


@pytest.fixture
def store(tmp_path):
    with ResultsStore(tmp_path / "runs" / "results.sqlite") as s:  # the folder is created
        yield s


# ----- writing and reading -----------------------------------------------------------------------

def test_start_complete_get_round_trip(store):
    record = make_record("r1", fold=2)
    store.start_run(record)
    running = store.get("r1")
    assert running == record
    assert running.status == RUNNING and running.metrics == [] and running.finished_at is None

    complete(store, "r1", links={"teacher": "r0"})
    expected = replace(record, status=COMPLETED, metrics=make_metrics(), links={"teacher": "r0"}, **COMPLETION)
    got = store.get("r1")
    assert got == expected
    assert got.metric_values("test") == {("aus", "f1_mean"): 0.5, ("expression", "accuracy"): 0.6}
    assert got.method_options == {"lambda": 0.5, "schedule": [1, 2]}
    assert store.get("missing") is None


def test_complete_run_keeps_links_when_none_given(store):
    record = make_record("r1")
    record.links = {"policy": "p7"}
    store.start_run(record)
    complete(store, "r1")
    assert store.get("r1").links == {"policy": "p7"}


def test_runs_filters_and_order(store):
    specs = [("a", "synthetic", "no_coupling", "2024-01-03"), ("b", "synthetic", "single_task", "2024-01-01"),
             ("c", "celeba", "no_coupling", "2024-01-02"), ("d", "celeba", "single_task", "2024-01-04")]
    for run_id, db, method, started in specs:
        store.start_run(make_record(run_id, db=db, method=method, started_at=started))
    complete(store, "a")
    complete(store, "c")
    store.fail_run("d", "boom")

    ids = lambda records: [r.run_id for r in records]  # noqa: E731
    assert ids(store.runs()) == ["b", "c", "a", "d"]  # oldest first
    assert ids(store.runs(db="synthetic")) == ["b", "a"]
    assert ids(store.runs(method="no_coupling")) == ["c", "a"]
    assert ids(store.runs(status=COMPLETED)) == ["c", "a"]
    assert ids(store.runs(status=RUNNING)) == ["b"]
    assert ids(store.runs(status=FAILED)) == ["d"]
    assert ids(store.runs(db="celeba", method="single_task", status=FAILED)) == ["d"]
    assert ids(store.runs(db="celeba", status=RUNNING)) == []
    assert ids(store.runs(protocol_id="proto-celeba")) == ["c", "d"]
    assert all(len(r.metrics) == 3 for r in store.runs(status=COMPLETED))


def test_complete_run_that_is_not_running_raises(store):
    with pytest.raises(StoreError, match="not running"):
        complete(store, "never-started")
    store.start_run(make_record("done"))
    complete(store, "done", value=0.25)
    with pytest.raises(StoreError, match="not running.*completed"):
        complete(store, "done", value=0.75)
    assert store.get("done").metric_values()[("aus", "f1_mean")] == 0.25  # the failed call changed nothing
    store.start_run(make_record("failed"))
    store.fail_run("failed", "oom")
    with pytest.raises(StoreError, match="failed"):
        complete(store, "failed")
    assert store.get("failed").metrics == []


def test_fail_run_stores_status_and_error(store):
    store.start_run(make_record("r1"))
    history = [{"epoch": 0, "train_loss": {"expression": 2.0}}]
    store.fail_run("r1", "RuntimeError: CUDA out of memory", history=history, wall_time_s=3.5,
                   finished_at="2024-01-01T00:01:00")
    got = store.get("r1")
    assert got.status == FAILED
    assert got.error == "RuntimeError: CUDA out of memory"
    assert got.history == history and got.wall_time_s == 3.5 and got.finished_at == "2024-01-01T00:01:00"
    assert got.metrics == []


def test_fail_run_without_history_keeps_the_stored_one(store):
    record = make_record("r1")
    record.history = [{"epoch": 0}]
    store.start_run(record)
    store.fail_run("r1", "killed")
    assert store.get("r1").history == [{"epoch": 0}]


def test_start_run_again_replaces_the_row_and_its_metrics(store):
    store.start_run(make_record("r1"))
    complete(store, "r1")
    store.start_run(make_record("r1", seed=3))  # forced re-run
    got = store.get("r1")
    assert got.status == RUNNING and got.seed == 3 and got.metrics == [] and got.history == []
    (count,) = store._conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = 'r1'").fetchone()
    assert count == 0


def test_delete_removes_run_and_metrics(store):
    store.start_run(make_record("r1"))
    complete(store, "r1")
    store.delete("r1")
    assert store.get("r1") is None
    assert store._conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0


# ----- schema version ----------------------------------------------------------------------------

def test_schema_version_is_stored_and_reopening_keeps_rows(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as s:
        s.start_run(make_record("r1"))
        complete(s, "r1")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    with ResultsStore(path) as s:
        assert s.get("r1").status == COMPLETED and len(s.get("r1").metrics) == 3


def test_newer_schema_version_raises(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(StoreError) as info:
        ResultsStore(path)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and "newer" in message and str(path) in message


# ----- JSON lines --------------------------------------------------------------------------------

def _populate(store: ResultsStore) -> None:
    store.start_run(make_record("done-1", fold=0, started_at="2024-01-01"))
    complete(store, "done-1", value=0.125, links={"teacher": "done-2"})
    store.start_run(make_record("done-2", db="celeba", method="single_task", seed=1, started_at="2024-01-02"))
    complete(store, "done-2", value=1 / 3, peak_memory_mb=None)
    store.start_run(make_record("running", started_at="2024-01-03"))
    store.start_run(make_record("failed", started_at="2024-01-04"))
    store.fail_run("failed", "ValueError: bad", history=[{"epoch": 0}])


def test_export_then_import_reproduces_identical_records(store, tmp_path):
    _populate(store)
    out = io.StringIO()
    assert store.export_jsonl(out) == 4
    text = out.getvalue()
    lines = text.splitlines(keepends=True)
    assert len(lines) == 4 and all(json.loads(line)["run_id"] for line in lines)

    with ResultsStore(tmp_path / "fresh.sqlite") as fresh:
        assert fresh.import_jsonl(lines) == (4, 0)
        assert fresh.runs() == store.runs()
        again = io.StringIO()
        fresh.export_jsonl(again)
        assert again.getvalue() == text


def test_export_a_selection_of_records(store):
    _populate(store)
    out = io.StringIO()
    assert store.export_jsonl(out, store.runs(status=COMPLETED)) == 2
    assert [json.loads(line)["run_id"] for line in out.getvalue().splitlines()] == ["done-1", "done-2"]


def test_import_keeps_existing_completed_run_unless_replace(store):
    store.start_run(make_record("r1"))
    complete(store, "r1", value=0.1)
    store.start_run(make_record("r2"))  # still running here
    incoming = [replace(make_record("r1"), status=COMPLETED, metrics=make_metrics(0.9), **COMPLETION),
                replace(make_record("r2"), status=COMPLETED, metrics=make_metrics(0.9), **COMPLETION)]
    lines = [json.dumps(r.to_json()) + "\n" for r in incoming]

    assert store.import_jsonl(lines) == (1, 1)  # r1 kept, r2 (only running here) overwritten
    assert store.get("r1").metric_values()[("aus", "f1_mean")] == 0.1
    assert store.get("r2") == incoming[1]

    assert store.import_jsonl(lines, replace=True) == (2, 0)
    assert store.get("r1") == incoming[0]


def test_put_respects_replace(store):
    done = replace(make_record("r1"), status=COMPLETED, metrics=make_metrics(0.2), **COMPLETION)
    assert store.put(done) is True
    assert store.put(replace(done, metrics=make_metrics(0.8))) is False
    assert store.get("r1") == done
    assert store.put(replace(done, metrics=make_metrics(0.8)), replace=True) is True
    assert store.get("r1").metric_values()[("aus", "f1_mean")] == 0.8


def _good_lines(n: int) -> list[str]:
    return [json.dumps(replace(make_record(f"in-{i}"), status=COMPLETED, metrics=make_metrics(), **COMPLETION).to_json())
            + "\n" for i in range(n)]


@pytest.mark.parametrize(("bad", "line_number"), [
    ("{not json\n", 3),
    (json.dumps({"run_id": "x"}) + "\n", 3),  # missing fields
    (json.dumps({**json.loads(_good_lines(1)[0]), "status": "exploded"}) + "\n", 3),
    (json.dumps({**json.loads(_good_lines(1)[0]), "metrics": [{"split": "test"}]}) + "\n", 3),
])
def test_import_with_one_bad_line_imports_nothing(store, bad, line_number):
    store.start_run(make_record("existing"))
    complete(store, "existing")
    before = store.runs()
    good = _good_lines(3)
    lines = [good[0], "\n", bad, good[1], good[2]]  # blank lines are skipped but still numbered
    with pytest.raises(StoreError, match=f"line {line_number}\\b.*nothing was imported"):
        store.import_jsonl(lines)
    assert store.runs() == before


def test_import_from_a_file(store, tmp_path):
    _populate(store)
    path = tmp_path / "runs.jsonl"
    with path.open("w") as f:
        store.export_jsonl(f)
    with ResultsStore(tmp_path / "other.sqlite") as other, path.open() as f:
        assert other.import_jsonl(f) == (4, 0)
        assert other.runs() == store.runs()


# ----- several processes -------------------------------------------------------------------------

def test_concurrent_writers_lose_no_rows(tmp_path):
    path = str(tmp_path / "shared.sqlite")  # neither process finds the file: both create the schema
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=_write_runs, args=(path, name, 40, barrier)) for name in ("alpha", "beta")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]

    with ResultsStore(path) as s:
        runs = s.runs()
        assert len(runs) == 80
        assert all(r.status == COMPLETED and len(r.metrics) == 3 for r in runs)
        assert {r.method for r in runs} == {"alpha", "beta"}
        assert len(s.runs(method="alpha")) == len(s.runs(method="beta")) == 40
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_store_survives_a_writer_killed_mid_write(tmp_path):
    path = str(tmp_path / "killed.sqlite")
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_write_runs, args=(path, "doomed", -1))
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while not Path(path).exists() and time.monotonic() < deadline:  # wait out the spawn start-up
            time.sleep(0.05)
        time.sleep(1.0)
        assert writer.is_alive()
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=10)
        assert writer.exitcode == -signal.SIGKILL
    finally:
        if writer.is_alive():
            writer.kill()
            writer.join()

    with ResultsStore(path) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs = s.runs()
        assert len(runs) > 0
        for r in runs:
            assert (r.status == RUNNING and r.metrics == []) or (r.status == COMPLETED and len(r.metrics) == 3), r
        assert sum(r.status == RUNNING for r in runs) <= 1  # only the run in flight at the kill
        s.start_run(make_record("after"))  # and the store is still writable
        complete(s, "after")
        assert s.get("after").status == COMPLETED


# ----- regressions ------------------------------------------------------------------------------

def test_nan_metric_reads_back_as_nan(store):
    # task_metrics gives NaN for a task with no annotated entry in a split; it must stay a float
    store.start_run(make_record("r1"))
    store.complete_run("r1", metrics=[Metric("test", "aus", "f1_mean", float("nan"), True, primary=True)],
                       **COMPLETION)
    value = store.get("r1").metrics[0].value
    assert isinstance(value, float) and value != value


def test_import_line_that_is_a_json_string_raises_store_error(store):
    with pytest.raises(StoreError, match="line 1"):
        store.import_jsonl(['"not a record"\n'])


def test_import_record_breaking_the_schema_is_a_store_error_and_imports_nothing(store):
    good = make_record("ok")
    bad = {**make_record("bad").to_json(), "db": None}
    with pytest.raises(StoreError, match="nothing was imported"):
        store.import_jsonl([json.dumps(good.to_json()), json.dumps(bad)])
    assert store.runs() == []


def test_fail_run_only_fails_a_running_run(store):
    with pytest.raises(StoreError, match="not running"):
        store.fail_run("missing", "boom")


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable mtlbench store"):
        ResultsStore(path)
    assert path.read_bytes() == b"this is not sqlite" * 100  # untouched
