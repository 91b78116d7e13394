"""The training loop: where a run's method hooks are called, readable on one screen.

What surrounds it lives next door, so the loop stays short: ``benchmark/checkpoint.py`` (resumable
runs), ``benchmark/distributed.py`` (several processes under ``torchrun``), ``benchmark/amp.py``
(mixed precision). Without torchrun, checkpoint or AMP every helper is a no-op.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from benchmark.amp import MixedPrecision
from benchmark.backbones import create_backbone, create_heads
from benchmark.checkpoint import Progress, load_checkpoint, save_checkpoint
from benchmark.collectives import world_size
from benchmark.config import RunConfig
from benchmark.data import augmentation, make_loader
from benchmark.distributed import (average_gradients, broadcast_state, from_main, is_main_process,
                                   mean_over_processes, per_process_batch, rank, use_sync_batchnorm)
from benchmark.evaluate import evaluate
from benchmark.gradient_engine import weighted_backward
from benchmark.options import changed_options
from benchmark.seeding import seed_everything
from benchmark.tasks import Batch, Problem, task_loss
from benchmark.tensorboard import open_epoch_log
from datasets.base import Db, TaskDataset
from methods.base import METHODS, LinkedRun, Method, MultiTaskModel, StepContext

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the run stops and is stored as failed."""


@dataclass(frozen=True)
class TrainOptions:
    """How a run executes on this machine; none of it is part of the run's identity.

    They change the order of floating-point operations or which worker draws which random number,
    as the device does, never what is computed: the precision, which does, is ``RunConfig.precision``.

    Args:
        channels_last: the network and its inputs in channels-last memory format (faster convolutions on GPUs,
            and on CPUs for efficientnet_lite0: docs/scale.md).
        compile: a ``torch.compile`` backend for the backbone (``inductor``, ``aot_eager``, ...), or None.
            Heads and hooks stay eager, so gradients with respect to z exist; GradNorm then needs its
            ``layer`` named (a compiled graph does not show which layer ran last).
        workers: DataLoader worker processes; None sizes them to the machine (0 for in-memory dbs).
        sync_batchnorm: under torchrun on GPUs, BatchNorm becomes SyncBatchNorm (statistics of the global batch).
        tensorboard: a folder to log each epoch to, in ``<folder>/<run_id>`` (``benchmark/tensorboard.py``), or None.
    """

    channels_last: bool = False
    compile: str | None = None
    workers: int | None = None
    sync_batchnorm: bool = True
    tensorboard: str | None = None


@dataclass
class TrainResult:
    """What training hands back to the runner: the chosen epoch and its metrics.

    ``earlier_seconds`` is the training time of the sessions before a resume (0 without one).
    """

    best_epoch: int
    val: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    history: list[dict[str, Any]] = field(default_factory=list)
    model: MultiTaskModel | None = field(default=None, repr=False)  # at its best epoch; not stored
    resumed_from: int | None = None
    earlier_seconds: float = 0.0


@dataclass
class Trainer:
    """What a training step needs: the network the hooks see, the method, its optimizer and the precision."""

    model: MultiTaskModel
    method: Method
    optimizer: torch.optim.Optimizer
    problem: Problem
    device: torch.device
    precision: MixedPrecision
    label_smoothing: float = 0.0
    options: TrainOptions = TrainOptions()
    attribute_loss: str = "per_image"
    gradient_cache: dict[str, str] = field(default_factory=dict)  # the gradient engine's per-run findings

    def on_device(self, batch: Batch) -> Batch:
        """``batch`` on the training device (non-blocking from pinned memory), inputs in the network's memory format."""
        batch = batch.to(self.device, non_blocking=True)
        if self.options.channels_last and batch.inputs.dim() == 4:
            batch = dataclasses.replace(batch, inputs=batch.inputs.contiguous(memory_format=torch.channels_last))
        return batch

    def loader(self, data: TaskDataset, batch_size: int, **kwargs: Any) -> DataLoader:
        """A loader with this machine's workers, pinned memory for a GPU."""
        return make_loader(data, batch_size, workers=self.options.workers, pin_memory=self.device.type == "cuda", **kwargs)


def train(cfg: RunConfig, db: Db, method: Method, device: torch.device, progress: bool = True,
          linked: Mapping[str, LinkedRun] | None = None, *, options: TrainOptions | None = None,
          checkpoint: Path | None = None, resume: bool = False) -> TrainResult:
    """Train ``method`` on ``db`` as ``cfg`` says; pick the epoch on validation; test once at the end.

    ``linked`` holds the completed runs the method declared as dependencies, by role. With
    ``checkpoint``, the run's state is written there at each epoch's end; with ``resume`` too, a
    checkpoint found there is continued from.
    """
    for role, run in (linked or {}).items():  # before seeding and build: build may need them (AdaShare's policy)
        method.attach(role, run)
    generator = seed_everything(cfg.seed)
    tr = build_trainer(cfg, db.problem(cfg.fold), method, device, options or TrainOptions())
    train_loader, val_loader = training_loaders(cfg, db, tr, generator)
    state = start_or_resume(cfg, tr, generator, checkpoint, resume)
    board = open_epoch_log(tr.options.tensorboard, cfg, state.epoch)  # None unless asked; rank 0 writes
    show = progress and is_main_process()
    for epoch in tqdm(range(state.epoch, cfg.epochs), desc=run_label(cfg, method), disable=not show, leave=False,
                      unit="epoch", dynamic_ncols=True):
        if from_main(lambda: state.out_of_patience(cfg.patience)):  # at the top: a resumed run stopped early stays so
            log.info("stopping early: no better validation score in the %d epochs since epoch %d", cfg.patience,
                     state.best_epoch)
            break
        tr.model.train()
        started, sums, steps = time.perf_counter(), {}, {}
        for batch in tqdm(train_loader, desc=f"epoch {epoch}", disable=not show, leave=False, unit="batch",
                          dynamic_ncols=True):
            for name, value in train_step(tr, batch, state.step, epoch).items():
                sums[name] = sums.get(name, 0.0) + value.detach().double()  # on the device: no sync per step
                steps[name] = steps.get(name, 0) + 1
            state.step += 1
        method.on_epoch_end(tr.model, epoch)
        # each term's mean over the steps that computed it: Task Routing trains one task a batch
        train_loss = mean_over_processes({k: float(v) / steps[k] for k, v in sums.items()})
        val = validate(tr, val_loader)
        state.end_epoch(epoch, train_loss, val, tr.problem, time.perf_counter() - started, tr.model)
        if val is not None:
            log.info("%s", epoch_line(state, tr.problem, cfg.epochs))
        if board is not None:
            board.log_epoch(state.history[-1], last=epoch + 1 == cfg.epochs)
        if checkpoint is not None:
            save_checkpoint(checkpoint, cfg, tr, state, generator)
    return finish(cfg, db, tr, state)


def train_step(tr: Trainer, batch: Batch, step: int, epoch: int) -> dict[str, Tensor]:
    """One optimisation step: forward, task losses, the method's losses and backward, averaged gradients, update."""
    batch = tr.on_device(batch)
    with tr.precision.autocast():
        out = tr.model(batch.inputs)
    out.logits = {t: v.float() for t, v in out.logits.items()}  # losses and hooks compute in fp32
    task_losses = {t: task_loss(tr.problem.task(t), out.logits[t], batch.targets[t], batch.masks[t],
                                tr.label_smoothing, tr.attribute_loss) for t in out.logits}
    ctx = StepContext(tr.model, batch, out, tr.problem, step, epoch, tr.label_smoothing, tr.precision.loss_scale(),
                      tr.attribute_loss)
    losses = tr.method.losses(task_losses, ctx)
    check_finite(losses, epoch, step)
    tr.optimizer.zero_grad(set_to_none=True)
    scaled = tr.precision.scale_gradients(losses, ctx.loss_scale)
    if tr.method.gradient_request() is None:
        tr.method.backward(scaled, ctx)
    else:  # a weighting method: the engine takes per-task gradients, the method weighs them, the engine applies
        losses = losses | weighted_backward(tr.method, scaled, ctx, tr.gradient_cache)
    average_gradients(tr.optimizer)  # under torchrun; alone, nothing
    tr.precision.step(tr.optimizer)
    return losses


def build_trainer(cfg: RunConfig, problem: Problem, method: Method, device: torch.device,
                  options: TrainOptions) -> Trainer:
    """The network as the method builds it, on ``device``, its optimizer and precision; alike on every process."""
    backbone, width = create_backbone(cfg.backbone, cfg.pretrained)
    if use_sync_batchnorm(device, options.sync_batchnorm):  # before build: methods hook into its modules
        backbone = nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
    model = method.build(backbone, create_heads(problem.tasks, width), problem).to(device)
    request = method.gradient_request()
    if request is not None and request.wrt == "representation" and not model.has_shared_representation:
        raise ValueError(f"{type(method).__name__} weighs gradients at the shared representation, but its network "
                         f"({type(model).__name__}) runs a backbone pass per task and has none")
    method.to(device)
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    broadcast_state(model, method)
    optimizer = torch.optim.Adam(method.param_groups(model), lr=cfg.lr)
    if options.compile:  # the backbone, in place: the hooks see the same modules, and z stays the heads' input
        torch._functorch.config.donated_buffer = False  # MGDA-UB, GradNorm: several backwards through one graph
        model.backbone.compile(backend=options.compile)
    return Trainer(model, method, optimizer, problem, device, MixedPrecision(cfg.precision, device),
                   cfg.label_smoothing, options, cfg.attribute_loss)


def training_loaders(cfg: RunConfig, db: Db, tr: Trainer, generator: torch.Generator) -> tuple[DataLoader, DataLoader | None]:
    """This process's shard of the training split; the validation split on rank 0 (None elsewhere)."""
    train_set = db.split("train", cfg.fold, cfg.image_size)
    train_set.transform = augmentation(cfg.augmentation)
    keep = None if tr.method.uses_unannotated_samples else tr.model.tasks
    shard = (rank(), world_size()) if world_size() > 1 else None
    loader = tr.loader(train_set, per_process_batch(cfg.batch_size), train=True, generator=generator,
                       keep_tasks=keep, shard=shard)
    val = tr.loader(db.split("val", cfg.fold, cfg.image_size), cfg.batch_size, train=False) if is_main_process() else None
    return loader, val


def start_or_resume(cfg: RunConfig, tr: Trainer, generator: torch.Generator, checkpoint: Path | None,
                    resume: bool) -> Progress:
    """The state to start from: the checkpoint's when resuming from one, else a fresh one."""
    if resume and checkpoint is not None and checkpoint.is_file():
        return load_checkpoint(checkpoint, cfg, tr, generator)
    if checkpoint is not None and checkpoint.is_file():  # a warning: --quiet must not hide lost epochs
        log.warning("run %s: %s holds the checkpoint of an unfinished earlier attempt; starting over discards it "
                    "(rerun with --resume to continue from it instead)", cfg.run_id, checkpoint)
    elif resume:
        log.info("no checkpoint of run %s to resume from: training from the start", cfg.run_id)
    return Progress()


def run_label(cfg: RunConfig, method: Method) -> str:
    """A run in a few words for its progress bar: method (and options set away from their defaults), db, fold, seed."""
    registered = METHODS.get(cfg.method) if cfg.method in METHODS else type(method)  # a stored name's defaults
    changed = changed_options(registered, cfg.method_options, sep=",")
    changed = changed if len(changed) <= 24 else changed[:21] + "..."
    return (f"{cfg.method}{f'[{changed}]' if changed else ''} {cfg.db}"
            + ("" if cfg.fold is None else f" fold {cfg.fold}") + f" seed {cfg.seed}")


def epoch_line(state: Progress, problem: Problem, epochs: int) -> str:
    """The last epoch in one line: its mean training losses, each task's primary validation metric, the score."""
    entry = state.history[-1]
    losses = ", ".join(f"{name} {value:.4g}" for name, value in entry["train_loss"].items())
    val = ", ".join(f"{task} {problem.task(task).primary} {metrics[problem.task(task).primary]:.4f}"
                    for task, metrics in entry["val"].items() if problem.task(task).primary in metrics)
    best = " (best so far)" if state.best_epoch == entry["epoch"] else ""
    return (f"epoch {entry['epoch']} ({entry['epoch'] + 1}/{epochs}): train loss {losses} | val {val} | "
            f"score {entry['val_score']:.4f}{best} | {entry['seconds']:.1f}s")


def validate(tr: Trainer, loader: DataLoader | None) -> dict[str, dict[str, float]] | None:
    """Metrics over ``loader``'s split in the run's precision, None without a loader; the training RNG untouched."""
    if loader is None:
        return None
    devices = [tr.device] if tr.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), tr.precision.autocast():  # rank 0 alone evaluates: keep RNGs in step
        return evaluate(tr.model, loader, tr.problem, tr.device)


def finish(cfg: RunConfig, db: Db, tr: Trainer, state: Progress) -> TrainResult:
    """Back to the best epoch's weights (every process), tested once on rank 0; every process returns its result."""
    if is_main_process():
        assert state.best_state is not None, "epochs must be >= 1"
        tr.model.load_state_dict(state.best_state)
    broadcast_state(tr.model)

    def test() -> dict[str, Any]:
        loader = tr.loader(db.split("test", cfg.fold, cfg.image_size), cfg.batch_size, train=False)
        return {"best_epoch": state.best_epoch, "val": state.best_val, "test": validate(tr, loader),
                "history": state.history, "resumed_from": state.resumed_from, "earlier_seconds": state.earlier_seconds}

    return TrainResult(**from_main(test), model=tr.model)


def check_finite(losses: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN or inf loss term (one device sync for all)."""
    if bool(torch.isfinite(torch.stack([v.detach().float().sum() for v in losses.values()])).all()):
        return
    for name, value in losses.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise NonFiniteLossError(f"loss {name!r} is {float(value.detach().float().sum())} at epoch {epoch}, "
                                     f"step {step}; lower --lr or check the data for bad labels")
