"""``imtl_g``: IMTL-G, impartial gradient weighting (through the TorchJD adapter)."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.torchjd_weightings import TorchJDWeighting, torchjd_aggregation


@METHODS.register("imtl_g")
class IMTLG(TorchJDWeighting):
    """IMTL-G: weights under which the update has equal projections on every task's unit gradient (Liu et al., ICLR 2021).

    Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards Impartial
    Multi-task Learning", ICLR 2021, Sec. 3.2 (the closed form of IMTL-G); TorchJD's ``IMTLGWeighting``,
    the generalisation of Quinton & Rey (2024) that uses a pseudo-inverse, so linearly dependent task
    gradients are allowed. Weights sum to 1.

    Args:
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.solver = torchjd_aggregation().IMTLGWeighting()
