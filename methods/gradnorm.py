"""``gradnorm``: GradNorm, learnable task weights that balance gradient norms on the last shared layer."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, GradientRequest, Method, MultiTaskModel, TaskGradients, Weighting

log = logging.getLogger(__name__)

INITIAL_LOSSES: tuple[str, ...] = ("first_step", "first_epoch")


def gradnorm_loss(weights: Tensor, grad_norms: Tensor, losses: Tensor, initial_losses: Tensor, alpha: float) -> Tensor:
    """L_grad = Σ_i |G_i - mean(G)·r_i^α| with the target held constant (Chen et al., ICML 2018, Eq. 2).

    G_i = w_i·‖∇_W L_i‖ (``grad_norms`` holds ‖∇_W L_i‖, constant in w), L̃_i = L_i / L_i(0) and
    r_i = L̃_i / mean(L̃). Differentiable with respect to ``weights`` only.

    Args:
        weights: w_i (T,), the learnable task weights.
        grad_norms: ‖∇_W L_i‖ (T,).
        losses: L_i(t) (T,); initial_losses: L_i(0) (T,).
        alpha: the asymmetry α: the exponent of r_i, +α, so that slower tasks get larger targets.
    """
    ratios = losses.detach() / initial_losses
    inverse_rates = ratios / ratios.mean()
    norms = weights * grad_norms.detach()
    target = (norms.mean() * inverse_rates ** alpha).detach()
    return (norms - target).abs().sum()


@METHODS.register("gradnorm")
class GradNorm(Method):
    """GradNorm: task weights learnt so that each task's gradient norm on the last shared layer tracks its training rate (Chen et al., ICML 2018).

    The network trains on Σ_i w_i L_i. The weights w_i (initialised to 1) are parameters of this
    method with their own learning rate and are trained on L_grad (Eq. 2, see
    :func:`gradnorm_loss`), differentiated with respect to w only; after every optimizer step they
    are renormalised to Σ_i w_i = T (Algorithm 1; applied at the start of the next weighting and at
    each epoch's end, before anything reads them). A task with no annotated entry in the batch is
    left out of that step's L_grad (its L_i = 0 would read as "trained infinitely fast") and its
    weight gets no gradient, so Adam skips it; with fewer than two such tasks no weight moves. The
    training loop's gradient engine supplies ∇_W L_i (true and global) and applies the weights.

    Args:
        alpha: the asymmetry α (paper: 1.5 on NYUv2, 0.12 on its toy regression).
        weight_lr: learning rate of the task weights (their own optimizer parameter group).
        initial_loss: L_i(0): ``first_step`` (the loss at the first step the task is annotated,
            the paper's default) or ``first_epoch`` (the mean over the first epoch; the weights stay
            at 1 during that epoch, as in LibMTL).
        layer: module name of W in the model (e.g. ``backbone.layer4.1.conv2``); ``auto`` picks the
            last shared conv/linear layer that ran (:func:`benchmark.gradient_engine.last_shared_layer`).
        min_weight: floor on each w_i before renormalising (not in the paper), keeping weights positive.
    """

    def __init__(self, *, alpha: float = 1.5, weight_lr: float = 0.025,
                 initial_loss: Literal["first_step", "first_epoch"] = "first_step", layer: str = "auto",
                 min_weight: float = 1e-4) -> None:
        super().__init__()
        if initial_loss not in INITIAL_LOSSES:
            raise ValueError(f"gradnorm: initial_loss={initial_loss!r} is not one of {INITIAL_LOSSES}")
        if weight_lr <= 0 or min_weight <= 0:
            raise ValueError(f"gradnorm: weight_lr and min_weight must be > 0, got {weight_lr}, {min_weight}")
        self.alpha = alpha
        self.weight_lr = weight_lr
        self.initial_loss = initial_loss
        self.layer = layer
        self.min_weight = min_weight
        self.tasks: list[str] = []

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.tasks = list(heads.keys())
        size = len(self.tasks)
        self.weights = nn.ParameterList([nn.Parameter(torch.ones(())) for _ in self.tasks])
        self.register_buffer("initial_loss_sum", torch.zeros(size))
        self.register_buffer("initial_loss_count", torch.zeros(size))
        self.register_buffer("initial_ready", torch.zeros(size, dtype=torch.bool))
        return super().build(backbone, heads, problem)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return super().param_groups(model) + [{"params": list(self.weights), "lr": self.weight_lr}]

    def task_weights(self) -> Tensor:
        """The current weights w (T,), renormalised to sum to T, detached."""
        with torch.no_grad():
            raw = torch.stack(list(self.weights)).clamp_min(self.min_weight)
            return raw * (len(self.tasks) / raw.sum())

    def renormalize(self) -> None:
        """w ← T·w / Σw in place (Algorithm 1's renormalisation step)."""
        with torch.no_grad():
            for param, value in zip(self.weights, self.task_weights()):
                param.copy_(value)

    def gradient_request(self) -> GradientRequest:
        """∇_W L_i for W the last shared layer (or ``layer``); the network then trains on Σ_i w_i L_i."""
        return GradientRequest("shared_layer", layer=self.layer)

    def weighting(self, gradients: TaskGradients) -> Weighting:
        """The current w (renormalised) for the network, and L_grad (Eq. 2) for w itself."""
        missing = [t for t in self.tasks if t not in gradients.all_losses]
        if missing:
            raise ValueError(f"gradnorm: no loss for tasks {missing}; it weights the losses of {self.tasks}")
        self.renormalize()
        weights = torch.stack(list(self.weights))  # (T,)
        active = torch.tensor([t in gradients.tasks for t in self.tasks], device=weights.device)
        global_losses = torch.stack([gradients.all_losses[t] for t in self.tasks]).float().to(weights.device)
        self._record_initial_losses(global_losses, active, gradients.epoch)
        update = torch.nonzero(active & self.initial_ready).flatten().tolist()
        objective = None
        if len(update) >= 2:
            rows = [gradients.tasks.index(self.tasks[i]) for i in update]
            grads = gradients.vectors if rows == list(range(len(gradients.tasks))) else gradients.vectors[rows]
            grad_norms = torch.linalg.vector_norm(grads.float(), dim=1).to(weights.device)
            initial = self.initial_loss_sum[update] / self.initial_loss_count[update]
            chosen = torch.stack([self.weights[i] for i in update])  # only these get a gradient (Adam skips the rest)
            objective = gradnorm_loss(chosen, grad_norms, global_losses[update], initial, self.alpha)
        return Weighting(weights.detach()[[self.tasks.index(t) for t in gradients.tasks]], objective)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        if self.initial_loss == "first_epoch" and epoch == 0:
            self.initial_ready |= self.initial_loss_count > 0
        self.renormalize()
        log.info("gradnorm: task weights after epoch %d: %s", epoch,
                 {t: round(float(w), 4) for t, w in zip(self.tasks, self.task_weights())})

    def _record_initial_losses(self, values: Tensor, active: Tensor, epoch: int) -> None:
        """Accumulate L_i(0) for annotated tasks that have none yet; mark it ready per ``initial_loss``."""
        pending = active & ~self.initial_ready
        self.initial_loss_sum += torch.where(pending, values, torch.zeros_like(values))
        self.initial_loss_count += pending.to(self.initial_loss_count.dtype)
        if self.initial_loss == "first_step" or epoch > 0:  # after epoch 0, a late task uses its first step
            self.initial_ready |= pending
