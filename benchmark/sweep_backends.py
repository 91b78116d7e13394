"""Local sweep backends: runs one after another in this process, or N at a time in worker processes.

With ``--jobs N`` each worker process trains through :func:`benchmark.runner.execute` and writes the
store and the weights file itself, exactly as ``run`` does: the store is SQLite in WAL mode whose
writers take the lock up front, so concurrent processes lose no row, and a worker that crashes or is
killed leaves its run ``running`` (then marked failed by the parent), never half-written. Returning
records to the parent instead would duplicate that bookkeeping; only the Ray backend, whose workers
may share no filesystem with the driver, does it (``benchmark/sweep_ray.py``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.allocator import keep_freed_memory
from benchmark.config import RunConfig
from benchmark.grid import DbSpec
from benchmark.provenance import environment, now
from benchmark.devices import pick_device
from benchmark.runner import execute
from benchmark.stores import store_path
from benchmark.runlock import is_locked
from benchmark.sweep_plan import RESUME, Node, Outcome
from benchmark.train import TrainOptions
from datasets import Db
from results import COMPLETED, FAILED, RUNNING, ResultsStore, RunRecord

log = logging.getLogger(__name__)

def train_node(cfg: RunConfig, db: Db, store: ResultsStore, device: torch.device, workdir: str | Path, *,
               force: bool, resume: bool, options: TrainOptions = TrainOptions()) -> RunRecord:
    """Train one planned run through the runner, as the plan decided: ``force`` retrains a completed run,
    ``resume`` continues an unfinished one (stored ``running`` or ``failed``) from its last checkpoint in
    ``workdir/checkpoints/`` (from the start when it has none); ``options``: how it executes (channels-last,
    TensorBoard logging), never part of its identity."""
    return execute(cfg, db, store, device, force=force, progress=False, workdir=workdir, resume=resume,
                   options=options)


def outcome_of(record: RunRecord) -> Outcome:
    """The outcome a stored record stands for."""
    if record.status == COMPLETED:
        return Outcome(True, wall_time_s=record.wall_time_s)
    return Outcome(False, record.error or f"run ended {record.status}", record.wall_time_s)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def record_failure(store: ResultsStore, cfg: RunConfig, error: str, since: str) -> None:
    """Store ``cfg`` as failed unless the store already holds this attempt's outcome.

    A run that failed before the runner started it (its db or a linked run could not be loaded) has
    no row yet, a killed worker leaves it ``running``; a row failed before ``since`` is an earlier
    attempt's. A completed row is kept: this attempt never replaced it. A run another process is training
    now (its lock is held, ``benchmark/runlock.py``) is left alone: its row is that process's.
    """
    if is_locked(store.path.parent, cfg.run_id):
        return
    existing = store.get(cfg.run_id)
    if existing is not None and existing.status == RUNNING:
        store.fail_run(cfg.run_id, error, finished_at=now())
    elif existing is None or (existing.status == FAILED and (existing.finished_at or "") < since):
        store.put(failed_record(cfg, error), replace=True)


def failed_record(cfg: RunConfig, error: str) -> RunRecord:
    """The record of a run that failed before it could start."""
    return RunRecord(run_id=cfg.run_id, protocol_id=cfg.protocol_id, status=FAILED, method=cfg.method, db=cfg.db,
                     backbone=cfg.backbone, seed=cfg.seed, fold=cfg.fold, config=cfg.to_dict(),
                     environment=environment(torch.device("cpu")), started_at=now(), finished_at=now(), error=error)


class InProcessBackend:
    """Runs one at a time in this process (``--jobs 1``); each db is opened once for the whole sweep."""

    slots = 1

    def __init__(self, store: ResultsStore, workdir: str | Path, device: str, force: bool,
                 options: TrainOptions = TrainOptions()) -> None:
        self.store, self.workdir, self.device, self.force = store, workdir, pick_device(device), force
        self.options = options
        self.started = now()
        self.dbs: dict[DbSpec, Db] = {}

    def submit(self, node: Node, closure: list[Node]) -> Future:
        future: Future = Future()
        try:
            if node.db not in self.dbs:
                self.dbs[node.db] = node.db.open()
            record = train_node(node.cfg, self.dbs[node.db], self.store, self.device, self.workdir,
                                force=node.forced(self.force), resume=node.action == RESUME,
                                options=self.options)
            future.set_result(outcome_of(record))
        except Exception as exc:  # the runner stored it failed (if it got that far); the sweep goes on
            log.debug("run %s failed", node.run_id, exc_info=True)
            future.set_result(Outcome(False, error_text(exc)))
        return future

    def finish(self, node: Node, future: Future) -> Outcome:
        outcome: Outcome = future.result()
        if not outcome.ok:
            record_failure(self.store, node.cfg, outcome.error or "failed", self.started)
        return outcome

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs to train one run (picklable)."""

    cfg: RunConfig
    db: DbSpec
    workdir: str
    device: str
    force: bool
    resume: bool
    options: TrainOptions = TrainOptions()


def worker_init(threads: int, level: int) -> None:
    """Split the cores between the workers rather than each taking all; warnings only (the parent logs progress);
    the allocator tuned as in the parent (spawned workers do not pass through the CLI)."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    logging.basicConfig(level=max(level, logging.WARNING),
                        format="%(levelname)s %(name)s [worker %(process)d]: %(message)s")


def worker_run(job: WorkerJob) -> Outcome:
    """Train one run in a worker process; the worker writes the store and the weights itself."""
    started = time.perf_counter()
    try:
        with ResultsStore(store_path(job.workdir)) as store:
            record = train_node(job.cfg, job.db.open(), store, pick_device(job.device), job.workdir, force=job.force,
                                resume=job.resume, options=job.options)
        return outcome_of(record)
    except Exception as exc:
        return Outcome(False, error_text(exc), time.perf_counter() - started)


class ProcessBackend:
    """N runs at a time, each in a worker process (``--jobs N``), torch threads split between them.

    Workers are spawned, not forked: a forked copy of a process that already started torch's thread
    pools or CUDA can hang.
    """

    def __init__(self, store: ResultsStore, workdir: str | Path, device: str, force: bool, jobs: int,
                 options: TrainOptions = TrainOptions()) -> None:
        pick_device(device)  # fail here, not in every worker
        self.store, self.workdir, self.device, self.force, self.slots = store, str(workdir), device, force, jobs
        self.options = options
        self.started = now()
        self.pool = self.new_pool()

    def new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.slots)
        level = logging.getLogger().getEffectiveLevel()
        return ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker_init, initargs=(threads, level))

    def submit(self, node: Node, closure: list[Node]) -> Future:
        job = WorkerJob(node.cfg, node.db, self.workdir, self.device, node.forced(self.force),
                        node.action == RESUME, self.options)
        try:
            return self.pool.submit(worker_run, job)
        except BrokenProcessPool:  # a worker died earlier and took the pool with it: start a new one
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self.new_pool()
            return self.pool.submit(worker_run, job)

    def finish(self, node: Node, future: Future) -> Outcome:
        try:
            outcome: Outcome = future.result()
        except Exception as exc:  # the worker died (killed, out of memory): its run must not stay "running"
            outcome = Outcome(False, f"worker process died: {error_text(exc)}")
        if not outcome.ok:
            record_failure(self.store, node.cfg, outcome.error or "failed", self.started)
        return outcome

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
