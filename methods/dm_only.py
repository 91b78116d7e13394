"""``dm_only``: the distribution-matching half of ``dmsca`` (the paper's Table 3 ablation)."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.coupling import DMForm
from methods.dmsca import DMSCA, Weights


@METHODS.register("dm_only")
class DMOnly(DMSCA):
    """Coupling by distribution matching only: L = L_cls + L_att + lambda_dm L_DM (Kollias et al., AAAI-24, Eq. 3; Tab. 3).

    Args: as ``dmsca`` for the DM terms; L_SCA is off.
    """

    def __init__(self, *, relatedness: str = "auto", lambda_dm: float = 1.0, dm_form: DMForm = "paper",
                 dm_detach_target: bool = True, dm_reduction: Literal["sum", "mean"] = "sum",
                 dm_weights: Weights = "auto", unrelated_classes: Literal["zero", "exclude"] = "zero",
                 eps: float = 1e-6) -> None:
        super().__init__(relatedness=relatedness, lambda_dm=lambda_dm, lambda_sca=0.0, dm_form=dm_form,
                         dm_detach_target=dm_detach_target, dm_reduction=dm_reduction, dm_weights=dm_weights,
                         unrelated_classes=unrelated_classes, eps=eps)
