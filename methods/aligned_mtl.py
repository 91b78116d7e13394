"""``aligned_mtl``: Aligned-MTL, gradients aligned by an eigen-decomposition of their Gram matrix (through TorchJD)."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.torchjd_weightings import TorchJDWeighting, checked, torchjd_aggregation

SCALE_MODES: tuple[str, ...] = ("min", "median", "rmse")


@METHODS.register("aligned_mtl")
class AlignedMTL(TorchJDWeighting):
    """Aligned-MTL: task gradients made orthogonal and of equal magnitude before they are averaged (Senushkin et al., CVPR 2023).

    Paper: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent Component Alignment for
    Multi-Task Learning", CVPR 2023, Algorithm 1 (the balance transformation B = √λ_min V Λ^{-1/2} Vᵀ
    of the Gram matrix, applied to the mean preference vector); TorchJD's ``AlignedMTLWeighting``.

    Args:
        scale_mode: the eigenvalue the aligned gradients are scaled to: ``min`` (the paper's Algorithm 1),
            ``median``, or ``rmse`` (the mean, as the authors' code).
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, scale_mode: Literal["min", "median", "rmse"] = "min",
                 gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"aligned_mtl: scale_mode={scale_mode!r} is not one of {SCALE_MODES}")
        self.scale_mode = scale_mode
        aggregation = torchjd_aggregation()
        self.solver = checked("aligned_mtl", lambda: aggregation.AlignedMTLWeighting(scale_mode=scale_mode))
