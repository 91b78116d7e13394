"""Resumable runs: what the training loop carries from epoch to epoch, saved at each epoch's end.

A checkpoint (``WORKDIR/checkpoints/<run_id>.pt``, written to a temporary file and renamed) holds
the network, the optimizer, the method's state, the grad scaler, the RNG states of Python, NumPy,
torch (CPU and CUDA) and the generator that orders the training data, of every process, and the
:class:`Progress`: next epoch, step, history, and the best epoch so far with its weights. Restored,
the next epoch draws the same batches and random numbers as it would have without the interruption,
so on CPU a resumed run ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmark.collectives import world_size
from benchmark.config import RunConfig
from benchmark.distributed import gather_objects, is_main_process, rank
from benchmark.evaluate import selection_score
from benchmark.tasks import Problem

if TYPE_CHECKING:
    from benchmark.train import Trainer

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_FORMAT = 1


def checkpoint_path(workdir: str | Path, run_id: str) -> Path:
    """Where run ``run_id`` keeps its latest epoch's checkpoint."""
    return Path(workdir) / CHECKPOINTS_DIR / f"{run_id}.pt"


@dataclass
class Progress:
    """Where a run stands after its last finished epoch; the loop's state besides weights and optimizer.

    ``epoch`` is the next epoch to train; ``seconds`` the training time of every session so far
    (epochs with their evaluation); ``best_state`` the weights of ``best_epoch`` (best validation score so far).
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    best_val: dict[str, dict[str, float]] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    seconds: float = 0.0
    resumed_from: int | None = None  # the epoch a resumed run continued at
    earlier_seconds: float = 0.0  # training time before that resume

    def end_epoch(self, epoch: int, train_loss: dict[str, float], val: dict[str, dict[str, float]] | None,
                  problem: Problem, seconds: float, model: torch.nn.Module) -> None:
        """Record epoch ``epoch``: its history entry, and the model if its validation score is the best.

        ``val`` is None on processes other than rank 0 (only rank 0 evaluates).
        """
        self.epoch, self.seconds = epoch + 1, self.seconds + seconds
        if val is None:
            return
        score = selection_score(val, problem)
        self.history.append({"epoch": epoch, "train_loss": train_loss, "val": val, "val_score": score,
                             "seconds": seconds})
        if self.best_state is None or score > self.best_score:
            self.best_score, self.best_epoch, self.best_val = score, epoch, val
            self.best_state = copy.deepcopy(model.state_dict())

    def out_of_patience(self, patience: int | None) -> bool:
        """Whether ``patience`` epochs have passed since the best one (never when ``patience`` is None).

        Meaningful on rank 0, the process that evaluates: the loop asks it through ``from_main``.
        """
        return patience is not None and self.best_epoch >= 0 and self.epoch - 1 - self.best_epoch >= patience


def save_checkpoint(path: Path, cfg: RunConfig, trainer: Trainer, progress: Progress,
                    generator: torch.Generator) -> None:
    """Write the run's state after an epoch, atomically. Every process calls it (its RNG state is gathered); rank 0 writes."""
    states = gather_objects(rng_state(generator, trainer.device))
    if not is_main_process():
        return
    state = {f.name: getattr(progress, f.name) for f in fields(progress) if f.name != "best_state"}  # no tensor copies
    best_is_current = progress.best_epoch == progress.epoch - 1  # then the model itself holds the best weights
    payload = {"format": CHECKPOINT_FORMAT, "run_id": cfg.run_id, "config": cfg.to_dict(),
               "model": trainer.model.state_dict(), "method": trainer.method.state_dict(),
               "optimizer": trainer.optimizer.state_dict(), "amp": trainer.precision.state_dict(), "rng": states,
               "progress": state, "best_state": None if best_is_current else progress.best_state,
               "execution": {"channels_last": trainer.options.channels_last}}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)  # atomic on POSIX: a reader sees the previous epoch's file or this one
    finally:
        temporary.unlink(missing_ok=True)
    log.debug("checkpoint of epoch %d written to %s", progress.epoch - 1, path)


def saved_execution(path: Path) -> dict[str, Any]:
    """How the run that wrote the checkpoint at ``path`` executed (``channels_last``); empty for checkpoints
    written before it was saved. Memory-mapped: the weights are not read."""
    return dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("execution", {}))


def load_checkpoint(path: Path, cfg: RunConfig, trainer: Trainer, generator: torch.Generator) -> Progress:
    """Restore a run from its checkpoint into a freshly built ``trainer``; the progress to continue from."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("run_id") != cfg.run_id:
        raise ValueError(f"{path} is a checkpoint of run {saved.get('run_id')} (format {saved.get('format')}), not of "
                         f"run {cfg.run_id} (format {CHECKPOINT_FORMAT}); delete it, or drop --resume to start over")
    trainer.model.load_state_dict(saved["model"])
    trainer.method.load_state_dict(saved["method"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.precision.load_state_dict(saved["amp"])
    states = saved["rng"]
    if len(states) != world_size():
        log.warning("%s was written by %d processes, resumed by %d: every process takes rank 0's RNG state, so the "
                    "run will not match an uninterrupted one bit for bit", path, len(states), world_size())
    set_rng_state(states[rank()] if len(states) == world_size() else states[0], generator)
    progress = Progress(**saved["progress"])
    progress.best_state = saved["best_state"] if saved["best_state"] is not None else copy.deepcopy(
        trainer.model.state_dict())
    progress.resumed_from, progress.earlier_seconds = progress.epoch, progress.seconds
    log.info("resuming run %s at epoch %d of %d from %s", cfg.run_id, progress.epoch, cfg.epochs, path)
    return progress


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """The state of every random number generator a run draws from, in tensors and plain types."""
    numpy_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(), "loader": generator.get_state(),
             "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:])}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
