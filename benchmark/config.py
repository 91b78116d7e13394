"""RunConfig: the frozen, hashed description of one training run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: How the attribute loss L_att averages over a batch's annotated (image, attribute) entries:
#: ``per_image`` (the paper's, Kollias et al. AAAI-24 Eq. 1: each image's BCE averaged over the attributes
#: annotated on it, Σ_j δ_ij·BCE_ij / Σ_j δ_ij, then the mean over images with at least one), or
#: ``pooled`` (every annotated entry weighs the same: an image with more labels weighs more; the form
#: every run stored before this option existed used).
ATTRIBUTE_LOSSES = ("per_image", "pooled")

#: Fields that say which strategy trains; everything else is the "protocol" a run is compared under.
METHOD_FIELDS = ("method", "method_options")
#: Fields added after runs were first stored, with their old implicit value: left out of ``to_dict`` (so of
#: the run id and the stored config) at that value, so earlier runs keep their ids and protocols.
LATER_FIELDS: dict[str, Any] = {"precision": "fp32", "attribute_loss": "pooled", "patience": None}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result; its hash is the run's id in the store.

    Args:
        method: registry name of the method. method_options: every hyperparameter, defaults included.
        db: registry name of the db. db_options: every db option that defines the data.
        backbone: ``smallcnn`` or a timm model name. pretrained: local weights file, or None.
        seed: seed of the run (initialisation, data order). fold: cross-validation fold, or None.
        epochs, batch_size, lr, image_size, augmentation, label_smoothing: the training protocol.
        precision: ``fp32``, or mixed precision ``bf16`` / ``fp16`` (``--amp``): it changes the numerics
            of every step, so it is part of the identity (and of the protocol runs are paired under).
        attribute_loss: how an attribute task's loss averages its annotated entries
            (:data:`ATTRIBUTE_LOSSES`): ``per_image``, the paper's Eq. 1 and the default,
            or ``pooled``. Runs stored before the option existed were ``pooled`` and keep their ids.
        patience: stop once this many epochs have passed without a better validation score (the chosen
            epoch, and so the result, is the same as with ``epochs`` alone whenever validation peaks at least
            ``patience`` epochs before the end); None (the default) trains every epoch.
    """

    method: str
    db: str
    backbone: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    image_size: int
    augmentation: str = "none"
    label_smoothing: float = 0.0
    fold: int | None = None
    pretrained: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    db_options: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    attribute_loss: str = "per_image"
    patience: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, implicit in LATER_FIELDS.items():
            if data[key] == implicit:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The config ``to_dict`` gave: a later field it left out had its old implicit value."""
        return cls(**({**LATER_FIELDS, **data}))

    @property
    def run_id(self) -> str:
        """Hash of the whole config: two equal configs are the same run."""
        return _digest(self.to_dict())

    @property
    def protocol_id(self) -> str:
        """Hash of everything but the method: runs with the same protocol id are comparable."""
        return _digest({k: v for k, v in self.to_dict().items() if k not in METHOD_FIELDS})

    def describe(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.method_options.items()))
        return f"{self.method}{'[' + opts + ']' if opts else ''} on {self.db} / {self.backbone} / seed {self.seed}" + (
            f" / fold {self.fold}" if self.fold is not None else "") + (
            f" / {self.precision}" if self.precision != "fp32" else "")


def _digest(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
