"""``upgrad``: UPGrad, TorchJD's unconflicting projection of gradients (through the TorchJD adapter)."""

from __future__ import annotations

from methods.base import METHODS
from methods.torchjd_weightings import ProjectedWeighting


@METHODS.register("upgrad")
class UPGrad(ProjectedWeighting):
    """UPGrad: each task gradient projected onto the dual cone of all of them, then averaged (Quinton & Rey, arXiv 2406.16232, 2024).

    Paper: P. Quinton, V. Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232
    (2024), Sec. 3 (Eq. 5); TorchJD's ``UPGradWeighting`` with the mean preference vector, solved by
    quadprog. The update never conflicts with any annotated task (non-negative inner product with
    every g_t) and is proportional to the mean when nothing conflicts.

    Args:
        norm_eps: TorchJD's ``QuadprogProjector`` norm_eps: a Gram matrix of trace below it is treated as 0.
        reg_eps: TorchJD's ``QuadprogProjector`` reg_eps: added to the (normalised) Gram diagonal so the QP is definite.
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    torchjd_class = "UPGradWeighting"
