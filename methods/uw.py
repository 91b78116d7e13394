"""``uw``: uncertainty weighting, each task's loss weighted by a learnt homoscedastic uncertainty."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, Method, MultiTaskModel, StepContext
from methods.weighting_support import annotated_tasks

FORMS: tuple[str, ...] = ("classification", "regression")


@METHODS.register("uw")
class UncertaintyWeighting(Method):
    """Uncertainty weighting: L = Σ_t exp(-s_t) L_t + s_t / 2 with learnt log-variances s_t = log σ_t² (Kendall, Gal & Cipolla, CVPR 2018).

    Paper: A. Kendall, Y. Gal, R. Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018, Eq. 10: a classification task contributes
    (1/σ²) L + log σ (Eq. 9's softmax likelihood with temperature σ²) and a regression task
    (1/(2σ²)) L + log σ. Every task here is a classification (multiclass cross-entropy, binary
    attribute cross-entropy), so the default is the classification form in s = log σ² (learnt instead
    of σ for numerical stability, Sec. 3.2): exp(-s) L + s/2, minimised at σ² = L. ``regression`` gives
    exp(-s) L / 2 + s/2 (LibMTL's and TorchJD's form for every task). The s_t are parameters of this
    method in their own optimizer group. A task with no annotated entry in a batch gets neither term
    for that step: its s_t receives no gradient (Adam skips it), where the regulariser alone would
    push σ_t down for nothing. The loop logs exp(-s_t) L_t under the task's name and s_t/2 as ``uw/<task>``.

    Args:
        form: ``classification`` (the paper's term for classification losses) or ``regression``.
        initial_log_variance: s_t at the start (0: σ² = 1, weights 1; LibMTL uses -0.5).
        log_variance_lr: learning rate of the s_t; None uses the run's learning rate (``--lr``).
    """

    def __init__(self, *, form: Literal["classification", "regression"] = "classification",
                 initial_log_variance: float = 0.0, log_variance_lr: float | None = None) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"uw: form={form!r} is not one of {FORMS}")
        if log_variance_lr is not None and log_variance_lr <= 0:
            raise ValueError(f"uw: log_variance_lr must be > 0 (or None for the run's lr), got {log_variance_lr}")
        self.form = form
        self.initial_log_variance = initial_log_variance
        self.log_variance_lr = log_variance_lr
        self.tasks: list[str] = []

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.tasks = list(heads.keys())
        # one parameter per task, so a task absent from a batch has no gradient and Adam leaves it alone
        self.log_variances = nn.ParameterList(
            [nn.Parameter(torch.tensor(float(self.initial_log_variance))) for _ in self.tasks])
        return super().build(backbone, heads, problem)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        group: dict[str, Any] = {"params": list(self.log_variances)}
        if self.log_variance_lr is not None:
            group["lr"] = self.log_variance_lr
        return super().param_groups(model) + [group]

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        tasks = [t for t in self.tasks if t in task_losses]
        scale = 1.0 if self.form == "classification" else 0.5
        out = dict(task_losses)
        for task, present in zip(tasks, annotated_tasks(ctx.batch, tasks)):
            if not present:  # loss 0 and no information: no term, no gradient for s_t
                continue
            s = self.log_variances[self.tasks.index(task)]
            out[task] = scale * torch.exp(-s) * task_losses[task]
            out[f"uw/{task}"] = 0.5 * s
        return out

    def variances(self) -> dict[str, float]:
        """σ_t² = exp(s_t) by task (for logs and tests)."""
        return {t: float(torch.exp(s.detach())) for t, s in zip(self.tasks, self.log_variances)}
