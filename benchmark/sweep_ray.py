"""The Ray sweep backend: each run is a Ray task with its CPU/GPU request; only the driver writes the store.

A task trains in a temporary folder with a temporary store holding just the runs it builds on
(their records and weights shipped from the driver through Ray's object store, each put once and
shared by every task that needs it), and returns its run record and weights file bytes. The driver
writes both into its own work dir and store, so the cluster needs no shared filesystem or database;
each node needs mtlbench installed and the dbs' data at the paths the experiment file names.

Ray is imported when this backend is made, so nothing else needs it installed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.allocator import keep_freed_memory
from benchmark.config import RunConfig
from benchmark.grid import DbSpec
from benchmark.linked import model_path
from benchmark.provenance import now
from benchmark.devices import pick_device
from benchmark.runner import execute
from benchmark.stores import open_store
from benchmark.sweep_plan import Node, Outcome
from benchmark.sweep_backends import error_text, outcome_of, record_failure
from benchmark.train import TrainOptions
from results import COMPLETED, ResultsStore, RunRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayJob:
    """One run for a Ray task: its config, db and the records of the runs it builds on (weights travel apart)."""

    cfg: RunConfig
    db: DbSpec
    force: bool
    dependencies: tuple[dict[str, Any], ...]
    options: TrainOptions = TrainOptions()  # how it executes (channels-last); TensorBoard stays on the driver


def ray_train(job: RayJob, *weights: bytes) -> dict[str, Any]:
    """On a Ray worker: train ``job`` in a scratch folder; return its record and, if completed, its weights bytes.

    ``weights[i]`` is the weights file of ``job.dependencies[i]``; Ray resolves the object refs. The worker's
    allocator is tuned as ``python -m benchmark`` tunes its own (:mod:`benchmark.allocator`).
    """
    keep_freed_memory()
    with tempfile.TemporaryDirectory(prefix="mtlbench-ray-") as scratch:
        with open_store(scratch) as store:
            for record, blob in zip(job.dependencies, weights, strict=True):
                store.put(RunRecord.from_json(record), replace=True)
                path = model_path(scratch, record["run_id"])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blob)
            error = None
            try:
                execute(job.cfg, job.db.open(), store, pick_device("auto"), force=job.force, progress=False,
                        workdir=scratch, options=job.options)
            except Exception as exc:  # stored failed in the scratch store when it got that far
                error = error_text(exc)
            record = store.get(job.cfg.run_id)
            done = record is not None and record.status == COMPLETED
            return {"record": None if record is None else record.to_json(), "error": error,
                    "weights": model_path(scratch, job.cfg.run_id).read_bytes() if done else None}


class RayBackend:
    """Submits every run whose dependencies completed as a Ray task; Ray queues them by their resources.

    Args:
        store: the driver's store (only the driver writes it). workdir: the driver's work dir (weights).
        address: the cluster (``ray.init(address)``); None starts Ray on this machine.
        resources: the experiment file's ``[resources]``: ``cpus`` (default 1) and ``gpus`` per run
            (default 1 when the cluster has GPUs, else 0).
        options: how every run executes (channels-last); its ``tensorboard`` is a log folder on the driver,
            where a run's epochs are written when its record comes back (the workers may share no
            filesystem with the driver).
    """

    def __init__(self, store: ResultsStore, workdir: str | Path, address: str | None,
                 resources: dict[str, float], options: TrainOptions = TrainOptions()) -> None:
        self.tensorboard = options.tensorboard
        self.options = dataclasses.replace(options, tensorboard=None)
        try:
            import ray
        except ImportError:
            raise ValueError("--executor ray needs Ray: pip install 'ray>=2.9' (it is in the dev extra: "
                             "pip install -e '.[dev]')") from None
        self.ray, self.store, self.workdir = ray, store, Path(workdir)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ValueError(f"Ray did not start ({'on this machine' if address is None else f'at {address!r}'}): "
                             f"{exc}; check --address (the head node's HOST:PORT, or 'auto')") from exc
        gpus = resources.get("gpus", 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)
        cpus = resources.get("cpus", 1.0)
        log.info("ray: %s; each run asks for %g CPU and %g GPU", ray.cluster_resources(), cpus, gpus)
        # max_retries=0: a run whose worker died is recorded failed and retried by the next sweep, not silently
        self.task = ray.remote(ray_train).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self.slots = sys.maxsize
        self.started = now()
        self.weights: dict[str, Any] = {}  # run id -> object ref of its weights bytes, put once

    def submit(self, node: Node, closure: list[Node]) -> Future:
        records = tuple(self.dependency_record(d) for d in closure)
        refs = [self.weights_ref(d.run_id) for d in closure]
        return self.task.remote(RayJob(node.cfg, node.db, node.in_grid or node.retrain, records, self.options), *refs).future()

    def dependency_record(self, node: Node) -> dict[str, Any]:
        """The stored record of a completed run another run builds on, to ship with the task."""
        record = self.store.get(node.run_id)
        assert record is not None and record.status == COMPLETED, f"dependency {node.run_id} is not completed"
        return record.to_json()

    def weights_ref(self, run_id: str) -> Any:
        """The object ref of a run's weights file bytes, put into Ray's object store once."""
        if run_id not in self.weights:
            self.weights[run_id] = self.ray.put(model_path(self.workdir, run_id).read_bytes())
        return self.weights[run_id]

    def finish(self, node: Node, future: Future) -> Outcome:
        """Write the returned weights (first, as the runner does) and record; a lost task is recorded failed."""
        try:
            result = future.result()
        except Exception as exc:  # the task or its worker died
            result = {"record": None, "weights": None, "error": f"ray task failed: {error_text(exc)}"}
        if result["weights"] is not None:
            write_atomically(model_path(self.workdir, node.run_id), result["weights"])
        if result["record"] is not None:
            self.store.put(RunRecord.from_json(result["record"]), replace=True)
            if self.tensorboard:
                from benchmark.tensorboard import export_runs

                export_runs([RunRecord.from_json(result["record"])], self.tensorboard, replace=True)
        outcome = outcome_of(self.store.get(node.run_id)) if result["record"] is not None else Outcome(False)
        if not outcome.ok:
            outcome.error = outcome.error or result["error"]
            record_failure(self.store, node.cfg, outcome.error or "failed", self.started)
        return outcome

    def close(self) -> None:
        self.ray.shutdown()


def write_atomically(path: Path, data: bytes) -> None:
    """A temporary file, then a rename: a reader sees no half-written weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
