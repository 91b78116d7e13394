"""``rlw``: Random Loss Weighting, fresh random task weights at every step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, Method, MultiTaskModel, StepContext
from methods.weighting_support import annotated_tasks, step_generator


@METHODS.register("rlw")
class RandomLossWeighting(Method):
    """Random Loss Weighting: L = Σ_t λ_t L_t with λ = softmax(ω), ω ~ N(0, I) drawn anew at every step (Lin et al., TMLR 2022).

    Paper: B. Lin, F. Ye, Y. Zhang, I. W. Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus
    Test for Multi-Task Learning", TMLR 2022, Sec. 3 (RLW; Algorithm 2 as TorchJD's ``Random`` cites
    it) with the standard normal distribution (the paper's and LibMTL's default); the weights sum to
    1. ω is drawn for every task from a generator seeded by the run's seed (the ``seed`` buffer, set
    in ``build``) and the step (:func:`methods.weighting_support.step_seed`): the same draws on every
    process, after a resume, and whatever else draws random numbers. A task without an annotated entry
    in the batch gets λ_t = 0 and the softmax runs over the annotated ones, whose weights still sum to 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[str] = []
        self.register_buffer("seed", torch.zeros((), dtype=torch.int64))

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.tasks = list(heads.keys())
        self.seed.fill_(torch.initial_seed() % 2**63)  # the run's seed (train() seeds torch before build)
        return super().build(backbone, heads, problem)

    def weights(self, present: list[bool], step: int) -> Tensor:
        """λ (T,) for step ``step``: softmax of N(0, 1) draws over the annotated tasks, 0 elsewhere."""
        draws = torch.randn(len(self.tasks), generator=step_generator(int(self.seed), step), dtype=torch.float64)
        mask = torch.tensor(present)
        if not mask.any():
            return torch.zeros_like(draws)
        return torch.where(mask, torch.softmax(draws.masked_fill(~mask, float("-inf")), dim=0), torch.zeros_like(draws))

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        tasks = [t for t in self.tasks if t in task_losses]
        present = dict(zip(tasks, annotated_tasks(ctx.batch, tasks)))
        weights = self.weights([present.get(t, False) for t in self.tasks], ctx.step)
        out = dict(task_losses)
        for task in tasks:
            out[task] = float(weights[self.tasks.index(task)]) * task_losses[task]
        return out
