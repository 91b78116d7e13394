"""``dualproj``: DualProj, the mean gradient projected onto the dual cone of the task gradients (through TorchJD)."""

from __future__ import annotations

from methods.base import METHODS
from methods.torchjd_weightings import ProjectedWeighting


@METHODS.register("dualproj")
class DualProj(ProjectedWeighting):
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

    torchjd_class = "DualProjWeighting"
