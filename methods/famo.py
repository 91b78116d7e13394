"""``famo``: FAMO, task weights adapted so that every task's log-loss decreases at the same rate, in O(1) per step."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from benchmark.tasks import Batch, Problem, task_loss
from methods.base import METHODS, Method, MultiTaskModel, StepContext
from methods.weighting_support import annotated_tasks, global_task_losses

EPS = 1e-8  # the authors' constant: log(L + EPS), 1 / (L + EPS)
BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the authors' code uses
ADAM_EPS = 1e-8


@METHODS.register("famo")
class FAMO(Method):
    """FAMO: loss weights w_t ∝ z_t / L_t with z = softmax(ξ), ξ learnt from the change of each log-loss across a step (Liu et al., NeurIPS 2023).

    Paper: B. Liu, Y. Feng, P. Stone, Q. Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023,
    Algorithm 1 and its practical form, Algorithm 2 (Appendix C) = the authors' code (Cranial-XIX/FAMO):
    the network descends Σ_t z_t log L_t / c, i.e. the loss Σ_t w_t L_t with w_t = z_t / (c (L_t + ε)),
    c = Σ_t z_t / (L_t + ε) (the weights sum to 1); after the step, δ_t = log L_t(θ_t) − log L_t(θ_{t+1})
    and ξ takes a step on the gradient ∇_ξ zᵀδ with decay γ (Adam with weight decay γ in the code;
    plain ξ ← ξ − β(∇_ξ zᵀδ + γξ) in Algorithm 1). L_t(θ_{t+1}) is recomputed on the same batch after
    the step, as the authors' training scripts do (``post_step_loss=same_batch``): here at the start of
    the next step (or at the epoch's end), with the network in train mode as theirs, one extra forward
    pass without gradient whose BatchNorm layers use batch statistics but leave the running ones alone
    (updated once per step, as for every other method); under mixed precision that forward runs in fp32.
    ``next_batch`` instead takes the next step's losses (another batch: no extra forward, noisier δ).
    Losses are of the global batch. A task without an annotated entry in a batch is left out: its
    weight is 0, the softmax and c run over the annotated tasks, and its logit is not updated (no δ,
    no decay, Adam's moments and step count untouched); ξ and Adam's state are buffers (resumable).
    No gradient clipping: the authors' ``max_norm`` clips before ``backward`` in their benchmark code
    (a no-op).

    Args:
        logit_lr: β, the learning rate of the logits ξ (paper and code: 0.025).
        gamma: γ, the decay of ξ (Algorithm 2 and LibMTL: 0.001; the code's runs use 0.01 or 0.001).
        post_step_loss: L(θ_{t+1}) on the ``same_batch`` (the authors' code) or the ``next_batch``.
        logit_optimizer: ``adam`` (Algorithm 2 and the code; γ as Adam's weight decay) or ``sgd`` (Algorithm 1).
    """

    def __init__(self, *, logit_lr: float = 0.025, gamma: float = 0.001,
                 post_step_loss: Literal["same_batch", "next_batch"] = "same_batch",
                 logit_optimizer: Literal["adam", "sgd"] = "adam") -> None:
        super().__init__()
        if post_step_loss not in ("same_batch", "next_batch"):
            raise ValueError(f"famo: post_step_loss={post_step_loss!r} must be same_batch or next_batch")
        if logit_optimizer not in ("adam", "sgd"):
            raise ValueError(f"famo: logit_optimizer={logit_optimizer!r} must be adam or sgd")
        if not (math.isfinite(logit_lr) and logit_lr > 0):
            raise ValueError(f"famo: logit_lr={logit_lr} must be a finite number > 0 (the paper: 0.025)")
        if not (math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"famo: gamma={gamma} must be a finite number >= 0 (the paper: 0.001; 0: no decay)")
        self.logit_lr = logit_lr
        self.gamma = gamma
        self.post_step_loss = post_step_loss
        self.logit_optimizer = logit_optimizer
        self.tasks: list[str] = []
        self._pending: tuple[Any, ...] | None = None  # same_batch: the step whose update awaits L(θ_{t+1})

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.tasks = list(heads.keys())
        size = len(self.tasks)
        self.register_buffer("logits", torch.zeros(size, dtype=torch.float64))  # ξ
        self.register_buffer("adam_m", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("adam_v", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("adam_steps", torch.zeros(size, dtype=torch.int64))  # per logit: absent ones skip steps
        self.register_buffer("previous_losses", torch.zeros(size, dtype=torch.float64))  # next_batch: L(θ_t)
        self.register_buffer("previous_present", torch.zeros(size, dtype=torch.bool))
        self._pending = None
        return super().build(backbone, heads, problem)

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        tasks = [t for t in self.tasks if t in task_losses]
        index = torch.tensor([self.tasks.index(t) for t in tasks], dtype=torch.long)
        device = self.logits.device
        present = torch.tensor(annotated_tasks(ctx.batch, tasks), device=device)
        values = global_task_losses(task_losses, tasks).to(device)
        if self.post_step_loss == "same_batch":
            self.flush(ctx.model)
            self._pending = (ctx.batch, values, present, index, tasks, ctx.problem, ctx.label_smoothing,
                             ctx.attribute_loss)
        else:  # δ from the previous step's losses to this step's, over the tasks both batches annotate
            both = self.previous_present[index] & present
            self.update_logits(self.previous_losses[index], values, both, index)
            self.previous_losses[index] = values
            self.previous_present[index] = present
        weights = famo_weights(self.logits[index], values, present)
        out = dict(task_losses)
        for j, task in enumerate(tasks):
            out[task] = weights[j].to(task_losses[task].dtype) * task_losses[task]
        return out

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Finish the last step's update, so no state outlives the epoch outside the buffers."""
        self.flush(model)

    def flush(self, model: nn.Module) -> None:
        """same_batch: recompute the pending step's losses at θ_{t+1} on its batch and update ξ."""
        if self._pending is None:
            return
        batch, before, present, index, tasks, problem, smoothing, reduction = self._pending
        self._pending = None
        after = post_step_losses(model, batch, problem, tasks, smoothing, reduction).to(before.device)
        self.update_logits(before, after, present, index)

    def update_logits(self, before: Tensor, after: Tensor, mask: Tensor, index: Tensor) -> None:
        """One step of ξ (masked tasks only) on ∇_ξ zᵀδ with δ = log(before + ε) − log(after + ε)."""
        chosen = index.to(mask.device)[mask]
        if chosen.numel() == 0:
            return
        delta = torch.log(before[mask] + EPS) - torch.log(after[mask] + EPS)
        xi = self.logits[chosen]
        z = torch.softmax(xi, dim=0)
        grad = z * (delta - (z * delta).sum()) + self.gamma * xi  # softmax's Jacobianᵀ δ, plus the decay
        if self.logit_optimizer == "sgd":
            self.logits[chosen] = xi - self.logit_lr * grad
            return
        steps = self.adam_steps[chosen] + 1  # torch.optim.Adam's update, per logit
        m = self.adam_m[chosen] * BETAS[0] + (1 - BETAS[0]) * grad
        v = self.adam_v[chosen] * BETAS[1] + (1 - BETAS[1]) * grad * grad
        denom = (v.sqrt() / (1 - BETAS[1] ** steps.double()).sqrt()) + ADAM_EPS
        self.logits[chosen] = xi - (self.logit_lr / (1 - BETAS[0] ** steps.double())) * m / denom
        self.adam_m[chosen], self.adam_v[chosen], self.adam_steps[chosen] = m, v, steps

    def task_weights(self) -> dict[str, float]:
        """z = softmax(ξ) by task (for logs and tests)."""
        return {t: float(z) for t, z in zip(self.tasks, torch.softmax(self.logits, dim=0))}


def famo_weights(logits: Tensor, losses: Tensor, present: Tensor) -> Tensor:
    """w_t = z_t / (L_t + ε) / Σ_s z_s / (L_s + ε) with z = softmax(ξ) over the annotated tasks; 0 elsewhere."""
    weights = torch.zeros_like(losses)
    if bool(present.any()):
        scaled = torch.softmax(logits[present], dim=0) / (losses[present] + EPS)
        weights[present] = scaled / scaled.sum()
    return weights


def post_step_losses(model: nn.Module, batch: Batch, problem: Problem, tasks: list[str], label_smoothing: float,
                     attribute_loss: str) -> Tensor:
    """(T,) float64 global losses of ``tasks`` on ``batch`` under the current weights (train mode, no gradient)."""
    with torch.no_grad(), untracked_running_stats(model):
        logits = model(batch.inputs).logits
        logits = {t: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for t, v in logits.items()}
        losses = {t: task_loss(problem.task(t), logits[t], batch.targets[t], batch.masks[t], label_smoothing,
                               attribute_loss) for t in tasks}
    return global_task_losses(losses, tasks)


@contextlib.contextmanager
def untracked_running_stats(model: nn.Module) -> Iterator[None]:
    """A train-mode forward pass that leaves BatchNorm's running statistics alone (batch statistics, as in training).

    Not tracking them (rather than restoring them afterwards) also keeps the pending step's graph valid:
    its backward reads the running statistics, so they must not change in place before it runs.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for module in norms:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in norms:
            module.track_running_stats = True
