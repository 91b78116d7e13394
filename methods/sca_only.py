"""``sca_only``: the soft co-annotation half of ``dmsca`` (the paper's Table 3 ablation)."""

from __future__ import annotations

from typing import Literal

from methods.base import METHODS
from methods.coupling import SCAForm
from methods.dmsca import DMSCA, Weights


@METHODS.register("sca_only")
class SCAOnly(DMSCA):
    """Coupling by soft co-annotation only: L = L_cls + L_att + lambda_sca L_SCA (Kollias et al., AAAI-24, Eqs. 4-6; Tab. 3).

    Args: as ``dmsca`` for the SCA terms; L_DM is off.
    """

    uses_unannotated_samples = False  # L_SCA needs attribute labels; unlabelled images add nothing

    def __init__(self, *, relatedness: str = "auto", lambda_sca: float = 1.0, sca_weights: Weights = "auto",
                 sca_form: SCAForm = "paper", sca_temperature: float = 1.0,
                 unrelated_classes: Literal["zero", "exclude"] = "zero") -> None:
        super().__init__(relatedness=relatedness, lambda_dm=0.0, lambda_sca=lambda_sca, sca_weights=sca_weights,
                         sca_form=sca_form, sca_temperature=sca_temperature, unrelated_classes=unrelated_classes)
