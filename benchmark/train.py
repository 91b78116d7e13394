"""The training loop: the only caller of the method hooks, readable on one screen."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark.backbones import create_backbone, create_heads
from benchmark.config import RunConfig
from benchmark.data import augmentation, make_loader
from benchmark.evaluate import evaluate, selection_score
from benchmark.seeding import seed_everything
from benchmark.tasks import task_loss
from datasets.base import Db
from methods.base import LinkedRun, Method, MultiTaskModel, StepContext

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the run stops and is stored as failed."""


@dataclass
class TrainResult:
    """What training hands back to the runner: the chosen epoch and its metrics."""

    best_epoch: int
    val: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    history: list[dict[str, Any]] = field(default_factory=list)
    model: MultiTaskModel | None = field(default=None, repr=False)  # at its best epoch; not stored


def train(cfg: RunConfig, db: Db, method: Method, device: torch.device, progress: bool = True,
          linked: Mapping[str, LinkedRun] | None = None) -> TrainResult:
    """Train ``method`` on ``db`` as ``cfg`` says; pick the epoch on validation; test once at the end.

    ``linked`` holds the completed runs the method declared as dependencies, by role.
    """
    for role, run in (linked or {}).items():  # before seeding and build: build may need them (AdaShare's policy)
        method.attach(role, run)
    generator = seed_everything(cfg.seed)
    problem = db.problem(cfg.fold)
    backbone, width = create_backbone(cfg.backbone, cfg.pretrained)
    model = method.build(backbone, create_heads(problem.tasks, width), problem).to(device)
    method.to(device)
    optimizer = torch.optim.Adam(method.param_groups(model), lr=cfg.lr)
    train_set = db.split("train", cfg.fold, cfg.image_size)
    train_set.transform = augmentation(cfg.augmentation)
    keep = None if method.uses_unannotated_samples else model.tasks
    train_loader = make_loader(train_set, cfg.batch_size, train=True, generator=generator, keep_tasks=keep)
    val_loader = make_loader(db.split("val", cfg.fold, cfg.image_size), cfg.batch_size, train=False)
    best: tuple[float, int, dict, dict] | None = None
    history: list[dict[str, Any]] = []
    step = 0
    for epoch in tqdm(range(cfg.epochs), desc=cfg.describe(), disable=not progress, leave=False):
        model.train()
        started, sums = time.perf_counter(), {}
        for batch in tqdm(train_loader, desc=f"epoch {epoch}", disable=not progress, leave=False):
            batch = batch.to(device, non_blocking=True)
            out = model(batch.inputs)
            task_losses = {t: task_loss(problem.task(t), out.logits[t], batch.targets[t], batch.masks[t],
                                        cfg.label_smoothing) for t in out.logits}
            ctx = StepContext(model, batch, out, problem, step, epoch, cfg.label_smoothing)
            losses = method.losses(task_losses, ctx)
            check_finite(losses, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            method.backward(losses, ctx)
            optimizer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            step += 1
        method.on_epoch_end(model, epoch)
        val = evaluate(model, val_loader, problem, device)
        score = selection_score(val, problem)
        history.append({"epoch": epoch, "train_loss": {k: v / len(train_loader) for k, v in sums.items()},
                        "val": val, "val_score": score, "seconds": time.perf_counter() - started})
        log.info("epoch %d: val score %.4f %s", epoch, score, val)
        if best is None or score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()), val)
    assert best is not None, "epochs must be >= 1"
    model.load_state_dict(best[2])
    test = evaluate(model, make_loader(db.split("test", cfg.fold, cfg.image_size), cfg.batch_size, train=False), problem, device)
    return TrainResult(best_epoch=best[1], val=best[3], test=test, history=history, model=model)


def check_finite(losses: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN or inf loss term."""
    for name, value in losses.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise NonFiniteLossError(f"loss {name!r} is {float(value.detach())} at epoch {epoch}, step {step}; "
                                     f"lower --lr or check the data for bad labels")
