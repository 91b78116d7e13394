"""``synthetic``: the built-in db, rendered procedurally in seconds, no download, deterministic per seed."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.tasks import TaskSpec
from datasets.base import DBS, Db, Preset, Split, TaskDataset, TensorTaskDataset
from datasets.synthetic_render import IMAGE_ATTRIBUTES, MAX_CLASSES, OBJECT_ATTRIBUTES, SHAPES, render

# Attribute kinds: how p(attribute | class) is drawn.
BOUND, GRADED, INDEPENDENT, NOISE = "bound", "graded", "independent", "noise"


@dataclass(frozen=True)
class AnnotationPlan:
    """How many training images carry which labels."""

    both: int
    classes_only: int
    attributes_only: int
    none: int

    @property
    def classes(self) -> int:
        return self.both + self.classes_only

    @property
    def attributes(self) -> int:
        return self.both + self.attributes_only


def parse_ratio(ratio: str) -> float:
    """``"1:10"`` -> 0.1 (class-annotated : attribute-annotated image counts)."""
    try:
        a, b = (float(part) for part in str(ratio).split(":"))
        if a <= 0 or b <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"ratio must look like '1:10' with positive parts, got {ratio!r}") from None
    return a / b


def plan_annotations(n: int, label_fraction: float, overlap: float, ratio: str) -> AnnotationPlan:
    """Split ``n`` training images into both / classes-only / attributes-only / unannotated.

    With A = label_fraction * n annotated images of which a fraction ``overlap`` carry both labels,
    the class- and attribute-annotated sets have sizes in proportion ``ratio`` and
    n_cls + n_att = A * (1 + overlap).
    """
    if not 0 < label_fraction <= 1 or not 0 <= overlap <= 1:
        raise ValueError(f"need 0 < label_fraction <= 1 and 0 <= overlap <= 1, got {label_fraction}, {overlap}")
    r = parse_ratio(ratio)
    annotated = round(label_fraction * n)
    both = round(overlap * annotated)
    n_cls = round(annotated * (1 + overlap) * r / (1 + r))
    n_att = annotated + both - n_cls
    if both > min(n_cls, n_att):
        largest = min(r, 1 / r) / (1 + min(r, 1 / r)) / (1 - min(r, 1 / r) / (1 + min(r, 1 / r)))
        raise ValueError(f"overlap={overlap} is impossible with ratio={ratio}: the smaller annotated set "
                         f"cannot hold {both} co-annotated images; use overlap <= {largest:.3f} or ratio 1:1")
    return AnnotationPlan(both, n_cls - both, n_att - both, n - annotated)


@DBS.register("synthetic")
class SyntheticDb(Db):
    """Rendered shapes (classes) with visual attributes drawn from a known p(attribute | class); built in.

    Class c is one of six shapes, alone or as a pair (so up to 12 classes). Attribute kinds:
    ``bound`` (nearly fixed by the class: p = 0.92 or 0.08), ``graded`` (p drawn in [0.15, 0.85]
    per class), ``independent`` (object attributes with p = 0.5 for every class) and ``noise``
    (image-level changes, p = 0.5). The true matrix is the db's ``"domain"`` relatedness prior.
    Validation and test images are fully annotated and label noise touches the training split only.

    Args:
        n_train: training images. n_val: validation images. n_test: test images.
        n_classes: number of classes (2..12). n_attributes: number of attributes M.
        n_bound: bound attributes. n_graded: graded attributes. n_image_noise: image-level
            attributes; the rest are independent object attributes.
        image_size: image side in pixels (32-48 suits CPU runs).
        label_noise: probability that a training label (class, or each attribute) is flipped.
        label_fraction: fraction of training images annotated for at least one task.
        overlap: fraction of the annotated images that carry both tasks' labels (0 = disjoint).
        ratio: class-annotated : attribute-annotated image counts, e.g. ``"1:10"``.
        data_seed: seed of the generator; the same options give the same images.
    """

    def __init__(self, *, data_root: str | None = None, n_train: int = 2000, n_val: int = 500,
                 n_test: int = 1000, n_classes: int = 6, n_attributes: int = 8, n_bound: int = 3,
                 n_graded: int = 2, n_image_noise: int = 2, image_size: int = 32,
                 label_noise: float = 0.0, label_fraction: float = 1.0, overlap: float = 0.0,
                 ratio: str = "1:10", data_seed: int = 0) -> None:
        super().__init__(data_root=data_root)
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.n_classes, self.n_attributes = n_classes, n_attributes
        self.n_bound, self.n_graded, self.n_image_noise = n_bound, n_graded, n_image_noise
        self.image_size, self.label_noise = image_size, label_noise
        self.label_fraction, self.overlap, self.ratio, self.data_seed = label_fraction, overlap, ratio, data_seed
        self._validate()

    def _validate(self) -> None:
        n_object = self.n_attributes - self.n_image_noise
        problems = [
            (not 2 <= self.n_classes <= MAX_CLASSES, f"n_classes must be in 2..{MAX_CLASSES}"),
            (not 0 <= self.n_image_noise <= len(IMAGE_ATTRIBUTES), f"n_image_noise must be in 0..{len(IMAGE_ATTRIBUTES)}"),
            (not 0 <= n_object <= len(OBJECT_ATTRIBUTES), f"n_attributes - n_image_noise must be in 0..{len(OBJECT_ATTRIBUTES)}"),
            (self.n_attributes < 1, "n_attributes must be >= 1"),
            (min(self.n_bound, self.n_graded) < 0 or self.n_bound + self.n_graded > n_object,
             "n_bound + n_graded must not exceed n_attributes - n_image_noise"),
            (min(self.n_train, self.n_val, self.n_test) < 1, "n_train, n_val and n_test must be >= 1"),
            (not 0 <= self.label_noise < 1, "label_noise must be in [0, 1)"),
            (not 8 <= self.image_size <= 256, "image_size must be in 8..256"),
        ]
        errors = [msg for bad, msg in problems if bad]
        if errors:
            raise ValueError("synthetic db options: " + "; ".join(errors))
        plan_annotations(self.n_train, self.label_fraction, self.overlap, self.ratio)

    # ----- the known generative structure ----------------------------------------------
    def attribute_names(self) -> tuple[str, ...]:
        n_object = self.n_attributes - self.n_image_noise
        return OBJECT_ATTRIBUTES[:n_object] + IMAGE_ATTRIBUTES[: self.n_image_noise]

    def attribute_kinds(self) -> tuple[str, ...]:
        n_object = self.n_attributes - self.n_image_noise
        n_indep = n_object - self.n_bound - self.n_graded
        return (BOUND,) * self.n_bound + (GRADED,) * self.n_graded + (INDEPENDENT,) * n_indep + (NOISE,) * self.n_image_noise

    def class_names(self) -> tuple[str, ...]:
        return tuple(SHAPES[c % len(SHAPES)] + ("_pair" if c >= len(SHAPES) else "") for c in range(self.n_classes))

    def relatedness(self) -> np.ndarray:
        """The true p(attribute | class), shape (n_classes, n_attributes)."""
        return _generate(self._key())[0]

    def priors(self) -> dict[str, np.ndarray]:
        return {"domain": self.relatedness()}

    def annotation_plan(self) -> AnnotationPlan:
        return plan_annotations(self.n_train, self.label_fraction, self.overlap, self.ratio)

    # ----- the contract -----------------------------------------------------------------
    def tasks(self) -> tuple[TaskSpec, ...]:
        return (TaskSpec("classes", "multiclass", self.class_names()),
                TaskSpec("attributes", "attributes", self.attribute_names()))

    def preset(self) -> Preset:
        return Preset(image_size=self.image_size, batch_size=64, epochs=6)

    def split(self, split: Split, fold: int | None = None, image_size: int | None = None) -> TaskDataset:
        self.check_fold(fold)
        key = self._key() if image_size in (None, self.image_size) else self._key(image_size=image_size)
        _, images, targets, masks = _generate(key)
        lo, hi = _bounds(self.n_train, self.n_val, self.n_test)[split]
        return TensorTaskDataset(images[lo:hi], {t: v[lo:hi] for t, v in targets.items()},
                                 {t: m[lo:hi] for t, m in masks.items()})

    def _key(self, **override) -> tuple:
        return tuple(sorted({**self.options(), **override}.items())) + (("_class_names", self.class_names()),
                                                        ("_attributes", self.attribute_names()),
                                                        ("_kinds", self.attribute_kinds()))


def _bounds(n_train: int, n_val: int, n_test: int) -> dict[str, tuple[int, int]]:
    return {"train": (0, n_train), "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n_train + n_val + n_test)}


def _draw_relatedness(rng: np.random.Generator, n_classes: int, kinds: tuple[str, ...]) -> np.ndarray:
    """p(attribute | class) by attribute kind; a bound attribute holds for about half the classes."""
    p = np.full((n_classes, len(kinds)), 0.5)
    for j, kind in enumerate(kinds):
        if kind == BOUND:
            has = rng.permutation(n_classes) < max(1, n_classes // 2)
            p[:, j] = np.where(has, 0.92, 0.08)
        elif kind == GRADED:
            p[:, j] = rng.uniform(0.15, 0.85, n_classes)
    return p


@functools.lru_cache(maxsize=4)
def _generate(key: tuple):
    """Relatedness, normalised images (n, 3, S, S) and per-task targets and masks, for all splits."""
    o = {k: v for k, v in key}
    rng = np.random.default_rng(o["data_seed"])
    n = o["n_train"] + o["n_val"] + o["n_test"]
    names, kinds = o["_attributes"], o["_kinds"]
    p = _draw_relatedness(rng, o["n_classes"], kinds)
    classes = rng.integers(0, o["n_classes"], n)
    attributes = rng.random((n, len(names))) < p[classes]  # (n, M) ~ Bernoulli(p[class])
    images = render(classes, {a: attributes[:, j] for j, a in enumerate(names)}, o["image_size"], rng)
    observed_cls, observed_att = _add_label_noise(rng, classes, attributes, o["n_train"], o["label_noise"], o["n_classes"])
    cls_mask, att_mask = _train_masks(rng, n, o)
    targets = {"classes": torch.from_numpy(np.where(cls_mask, observed_cls, -1)).long(),
               "attributes": torch.from_numpy(observed_att.astype(np.float32))}
    masks = {"classes": torch.from_numpy(cls_mask),
             "attributes": torch.from_numpy(np.repeat(att_mask[:, None], len(names), axis=1))}
    inputs = torch.from_numpy((images - 0.5) / 0.25)
    return p, inputs, targets, masks


def _add_label_noise(rng, classes, attributes, n_train: int, noise: float, n_classes: int):
    """Flip training labels with probability ``noise``: a class to another class, an attribute to its negation."""
    cls, att = classes.copy(), attributes.copy()
    flip_cls = rng.random(len(cls)) < noise
    flip_cls[n_train:] = False
    cls[flip_cls] = (cls[flip_cls] + rng.integers(1, n_classes, int(flip_cls.sum()))) % n_classes
    flip_att = rng.random(att.shape) < noise
    flip_att[n_train:] = False
    return cls, att ^ flip_att


def _train_masks(rng, n: int, o: dict) -> tuple[np.ndarray, np.ndarray]:
    """Which images are annotated for classes / attributes: the training plan, full elsewhere."""
    plan = plan_annotations(o["n_train"], o["label_fraction"], o["overlap"], o["ratio"])
    order = rng.permutation(o["n_train"])
    cls_mask, att_mask = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    cls_mask[: o["n_train"]], att_mask[: o["n_train"]] = False, False
    cut = np.cumsum([plan.both, plan.classes_only, plan.attributes_only])
    cls_mask[order[: cut[1]]] = True                   # both + classes only
    att_mask[order[: cut[0]]] = True                   # both
    att_mask[order[cut[1]: cut[2]]] = True             # attributes only
    return cls_mask, att_mask
