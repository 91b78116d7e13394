"""The affect case's shared parts: one canonical label space, the relatedness priors, the preset, file helpers.

Kollias, Sharmanska & Zafeiriou (AAAI-24, Sec. 4) learn 7 basic expressions and 17 action units (AUs)
from datasets that each annotate one task, or a few AUs. Every affect db here speaks one label space:

- the task ``expression``: the canonical 7 classes of :data:`benchmark.relatedness.EXPRESSIONS`, in that
  order, with a dataset's extra classes (Aff-Wild2's "other", CK+'s and AffectNet's "contempt")
  appended when kept;
- the task ``au``: the canonical 17 AUs (:data:`~benchmark.relatedness.AU_NAMES`) as attributes, an AU
  the dataset does not annotate being *masked in every image* (missing, never negative), then any
  extra AUs a dataset codes (CK+), appended.

A db declares only the tasks its images carry: ``affectnet`` has ``expression`` alone (a task without a
single label could neither train nor be measured); pairings and ``affwild2`` / ``ckplus`` have both, and
then expose the priors, the Du et al. table binarised for distribution matching as the paper does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from datasets.affect_tables import ACTION_UNITS, AU_NAMES, EXPRESSIONS, affect_affwild2_prior, affect_domain_prior
from benchmark.tasks import TaskSpec
from datasets.base import Preset
from datasets.filedb import ImageDb

EXPRESSION, AU = "expression", "au"
#: Augmentation names an affect db accepts (``benchmark.data.AUGMENTATIONS`` holds them all; a test checks).
AUGMENTATIONS: tuple[str, ...] = ("none", "flip", "mixup", "mixaugment", "mixaugment_cutmix")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

#: Names datasets use for the canonical classes (lower case, no spaces), and for the extra ones.
ALIASES: dict[str, str] = {
    "neutral": "neutral", "anger": "anger", "angry": "anger", "angere": "anger", "disgust": "disgust",
    "disgusted": "disgust", "fear": "fear", "afraid": "fear", "fearful": "fear", "happiness": "happiness",
    "happy": "happiness", "joy": "happiness", "sadness": "sadness", "sad": "sadness", "surprise": "surprise",
    "surprised": "surprise", "contempt": "contempt", "other": "other",
}


def canonical_expression(name: str) -> str | None:
    """``"Happy"``, ``"HAPPINESS"``, ``"ANGERE"`` (a misspelt folder of the ABAW4 release) -> canonical name; None if unknown."""
    return ALIASES.get(re.sub(r"[\s_\-]+", "", str(name).strip().lower()))


def expression_task(extras: Sequence[str] = (), primary: str = "accuracy") -> TaskSpec:
    """The ``expression`` task: the canonical 7 classes, then ``extras``; every class metric, ``primary`` selecting."""
    return TaskSpec(EXPRESSION, "multiclass", (*EXPRESSIONS, *extras),
                    metrics=("accuracy", "mean_class_accuracy", "f1_macro"), primary=primary)


def au_task(extra_aus: Sequence[int] = (), primary: str = "f1_mean") -> TaskSpec:
    """The ``au`` task: the canonical 17 AUs then ``extra_aus``; ``f1_acc_avg`` is EmotioNet's challenge score."""
    return TaskSpec(AU, "attributes", (*AU_NAMES, *(f"AU{a}" for a in extra_aus)),
                    metrics=("f1_mean", "accuracy_mean", "f1_acc_avg"), primary=primary)


def au_matrix(columns: Mapping[int, np.ndarray], n: int, extra_aus: Sequence[int] = ()) -> np.ndarray:
    """(n, 17 + extras) float: each coded AU's column of 1 / 0 / NaN (missing); AUs not coded are NaN throughout.

    Args:
        columns: AU number -> (n,) values in {0, 1} or NaN; AUs outside the canonical 17 and
            ``extra_aus`` are ignored.
        n: number of images. extra_aus: AUs kept after the canonical 17, in this order.
    """
    order = (*ACTION_UNITS, *extra_aus)
    out = np.full((n, len(order)), np.nan)
    for au, values in columns.items():
        if au in order:
            out[:, order.index(au)] = values
    return out


def reindexed(prior: np.ndarray, classes: Sequence[str], attributes: Sequence[str]) -> np.ndarray:
    """A canonical 7 x 17 prior on ``classes`` x ``attributes``; extra classes and AUs get zero rows / columns."""
    out = np.zeros((len(classes), len(attributes)))
    for i, c in enumerate(classes):
        for j, a in enumerate(attributes):
            if c in EXPRESSIONS and a in AU_NAMES:
                out[i, j] = prior[EXPRESSIONS.index(c), AU_NAMES.index(a)]
    return out


def affect_priors(tasks: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    """``{"domain": Du et al. 2014, "affwild2": the paper's Aff-Wild2 table}`` for a db with both tasks, else {}."""
    by_name = {t.name: t for t in tasks}
    if EXPRESSION not in by_name or AU not in by_name:
        return {}
    classes, attributes = by_name[EXPRESSION].labels, by_name[AU].labels
    return {"domain": reindexed(affect_domain_prior(), classes, attributes),
            "affwild2": reindexed(affect_affwild2_prior(), classes, attributes)}


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class AffectDb(ImageDb):
    """Base of the affect dbs: the preset of the paper's affect case, priors where both tasks exist.

    Preset (Kollias et al., AAAI-24): aligned faces at 112 x 112, inputs in [-1, 1], Adam with lr 1e-3;
    batch 128 and 20 epochs are our choice (not stated).

    Args:
        augmentation: the training augmentation, one of :data:`AUGMENTATIONS`; ``mixaugment`` is the
            paper's (Psaroudakis & Kollias, CVPRW 2022: real + mixup examples, with flips).
    """

    binary_priors: ClassVar[frozenset[str]] = frozenset({"domain"})

    def check_augmentation(self, augmentation: str) -> str:
        """``augmentation`` if it is one of :data:`AUGMENTATIONS`, else an error listing them."""
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"db {self.name!r}: augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        return augmentation

    def preset(self) -> Preset:
        return Preset(image_size=112, batch_size=128, epochs=20, augmentation=getattr(self, "augmentation", "mixaugment"))

    def priors(self) -> dict[str, np.ndarray]:
        return affect_priors(self.tasks())
