"""``dualproj``: DualProj, the mean gradient projected onto the dual cone of the task gradients (through TorchJD)."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.torchjd_weightings import TorchJDWeighting, checked, torchjd_aggregation


@METHODS.register("dualproj")
class DualProj(TorchJDWeighting):
    """DualProj: the mean task gradient projected onto the dual cone of the task gradients (Lopez-Paz & Ranzato, NeurIPS 2017).

    Paper: D. Lopez-Paz, M. Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017,
    Eq. 11 (the projection), applied to the mean of the task gradients as in Quinton & Rey,
    arXiv 2406.16232 (2024); TorchJD's ``DualProjWeighting`` with the mean preference vector, solved
    by quadprog.

    Args:
        norm_eps: TorchJD's ``QuadprogProjector`` norm_eps: a Gram matrix of trace below it is treated as 0.
        reg_eps: TorchJD's ``QuadprogProjector`` reg_eps: added to the (normalised) Gram diagonal so the QP is definite.
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                 gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.norm_eps = norm_eps
        self.reg_eps = reg_eps
        aggregation = torchjd_aggregation()
        from torchjd.linalg import QuadprogProjector

        self.solver = checked("dualproj", lambda: aggregation.DualProjWeighting(
            projector=QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)))
