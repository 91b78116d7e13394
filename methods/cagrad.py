"""``cagrad``: CAGrad, conflict-averse gradient descent (through the TorchJD adapter)."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.torchjd_weightings import TorchJDWeighting, checked, torchjd_aggregation


@METHODS.register("cagrad")
class CAGrad(TorchJDWeighting):
    """CAGrad: the update that maximises the worst task's improvement within a ball around the mean gradient (Liu et al., NeurIPS 2021).

    Paper: B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu, "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021, Algorithm 1 (d = g_0 + √φ/‖g_w‖ · g_w, with √φ = c‖g_0‖); TorchJD's
    ``CAGradWeighting`` (its dual problem solved by cvxpy/Clarabel instead of scipy). No rescaling of
    the update by 1/(1+c²) (the authors' code option ``rescale``): Adam is insensitive to that constant.

    Args:
        c: radius of the ball around the mean gradient, relative to its norm (paper: 0.4 on NYUv2 and Cityscapes).
        norm_eps: TorchJD's norm_eps: below this norm the update is taken as on the Pareto front (weights 0).
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, c: float = 0.4, norm_eps: float = 1e-4,
                 gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.c = c
        self.norm_eps = norm_eps
        aggregation = torchjd_aggregation()
        self.solver = checked("cagrad", lambda: aggregation.CAGradWeighting(c=c, norm_eps=norm_eps))
