"""``dwa``: Dynamic Weight Average, task weights from the tasks' recent rates of loss decrease."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, Method, MultiTaskModel, StepContext
from methods.weighting_support import annotated_tasks, global_task_losses

log = logging.getLogger(__name__)


@METHODS.register("dwa")
class DynamicWeightAverage(Method):
    """Dynamic Weight Average: w_t = T·softmax(r_t / τ) with r_t = L_t(e-1) / L_t(e-2) on epoch-mean losses (Liu, Johns & Davison, CVPR 2019).

    Paper: S. Liu, E. Johns, A. J. Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
    Eq. 2: the weights of epoch e come from the ratio of each task's mean training loss over the two
    previous epochs; w_t = 1 in the first two epochs. L_t(e) is the mean of task t's (global-batch)
    loss over the steps of epoch e whose batch annotates t (a step without a label of t says nothing
    about its loss, and its loss of 0 would drag the mean down); the sums live in buffers, the weights
    are updated in ``on_epoch_end``. A task with no annotated step in either of the two epochs gets
    r_t = 1 (no measured change). The weights stay fixed during an epoch; a task absent from a batch
    simply contributes w_t · 0.

    Args:
        temperature: τ, the softmax temperature (paper: 2; larger makes the weights more equal).
    """

    def __init__(self, *, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"dwa: temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.tasks: list[str] = []

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.tasks = list(heads.keys())
        size = len(self.tasks)
        self.register_buffer("loss_sum", torch.zeros(size, dtype=torch.float64))  # this epoch, annotated steps only
        self.register_buffer("loss_steps", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("epoch_means", torch.zeros(2, size, dtype=torch.float64))  # L(e-2), L(e-1)
        self.register_buffer("has_mean", torch.zeros(2, size, dtype=torch.bool))  # whether the epoch had annotated steps
        self.register_buffer("weights", torch.ones(size, dtype=torch.float64))  # this epoch's w_t
        return super().build(backbone, heads, problem)

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        tasks = [t for t in self.tasks if t in task_losses]
        index = [self.tasks.index(t) for t in tasks]
        present = torch.tensor(annotated_tasks(ctx.batch, tasks), device=self.loss_sum.device)
        values = global_task_losses(task_losses, tasks).to(self.loss_sum.device)
        self.loss_sum[index] += torch.where(present, values, torch.zeros_like(values))
        self.loss_steps[index] += present.double()
        out = dict(task_losses)
        for task, i in zip(tasks, index):
            out[task] = self.weights[i].to(task_losses[task].dtype) * task_losses[task]
        return out

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Roll the epoch means, reset the sums, and set the next epoch's weights (Eq. 2)."""
        counted = self.loss_steps > 0
        mean = torch.where(counted, self.loss_sum / self.loss_steps.clamp_min(1.0), torch.zeros_like(self.loss_sum))
        self.epoch_means.copy_(torch.stack([self.epoch_means[1], mean]))
        self.has_mean.copy_(torch.stack([self.has_mean[1], counted]))
        self.loss_sum.zero_()
        self.loss_steps.zero_()
        if epoch >= 1:  # two epoch means exist: the weights of epoch e = epoch + 1 >= 2
            last, before = self.epoch_means[1], self.epoch_means[0]
            self.weights.copy_(dwa_weights(last, before, self.has_mean[1] & self.has_mean[0], self.temperature))
        log.info("dwa: task weights for epoch %d: %s", epoch + 1,
                 {t: round(float(w), 4) for t, w in zip(self.tasks, self.weights)})


def dwa_weights(last: Tensor, before: Tensor, known: Tensor, temperature: float) -> Tensor:
    """T·softmax(r / τ) with r_t = last_t / before_t; r_t = 1 where either mean is not ``known`` or before_t is 0."""
    valid = known & (before != 0)
    ratios = torch.where(valid, last / torch.where(valid, before, torch.ones_like(before)), torch.ones_like(last))
    return len(ratios) * torch.softmax(ratios / temperature, dim=0)
