"""``mgda``: plain MGDA through TorchJD's Frank-Wolfe solver, to compare with our own ``mgda_ub``."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.torchjd_weightings import TorchJDWeighting, checked, torchjd_aggregation


@METHODS.register("mgda")
class MGDA(TorchJDWeighting):
    """MGDA: the min-norm convex combination of the task gradients, by TorchJD's Frank-Wolfe solver (Désidéri 2012; Sener & Koltun, NeurIPS 2018).

    Paper: J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective
    optimization", C. R. Math. 2012; solver: O. Sener, V. Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018, Algorithm 2 (Frank-Wolfe, no gradient normalisation); TorchJD's
    ``MGDAWeighting``. The same problem as ``mgda_ub`` (our solver, exact for 2 tasks, away steps),
    so the two can be compared; weights sum to 1.

    Args:
        epsilon: Frank-Wolfe stops when its step size γ falls below this (TorchJD's default).
        max_iters: Frank-Wolfe's iteration limit (TorchJD's default).
        gradients: ``representation`` (g_t at z, default: MGDA-UB's form) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, epsilon: float = 1e-3, max_iters: int = 100,
                 gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.epsilon = epsilon
        self.max_iters = max_iters
        aggregation = torchjd_aggregation()
        self.solver = checked("mgda", lambda: aggregation.MGDAWeighting(epsilon=epsilon, max_iters=max_iters))
