"""``pcgrad``: PCGrad, gradient surgery (through the TorchJD adapter)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, MultiTaskModel, TaskGradients
from methods.torchjd_weightings import TorchJDWeighting, torchjd_aggregation
from methods.weighting_support import step_seed


@METHODS.register("pcgrad")
class PCGrad(TorchJDWeighting):
    """PCGrad: each task gradient loses its component along every other task gradient it conflicts with, in random order (Yu et al., NeurIPS 2020).

    Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient Surgery for Multi-Task
    Learning", NeurIPS 2020, Algorithm 1; TorchJD's ``PCGradWeighting`` (the projections written as
    weights on the Gram matrix; the result is the sum of the projected gradients). The random order
    of the other tasks comes from ``torch.randperm``; here it is drawn from a generator seeded by the
    run's seed and the step (``seed`` buffer, :func:`methods.weighting_support.step_seed`), so every
    process draws the same order, a resumed run draws what it would have, and the run's own random
    stream is left untouched.

    Args:
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.solver = torchjd_aggregation().PCGradWeighting()
        self.register_buffer("seed", torch.zeros((), dtype=torch.int64))

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.seed.fill_(torch.initial_seed() % 2**63)  # the run's seed (train() seeds torch before build)
        return super().build(backbone, heads, problem)

    def weights_from_gram(self, gram: Tensor, gradients: TaskGradients) -> Tensor:
        with torch.random.fork_rng(devices=[]):  # TorchJD draws from torch's global CPU generator
            torch.manual_seed(step_seed(int(self.seed), gradients.step))
            return self.solver(gram)
