"""``cub``: Caltech-UCSD Birds-200-2011 (Wah et al., 2011), official release layout, cropped to the birds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.tasks import TaskSpec
from datasets.base import DBS, Preset
from datasets.filedb import ImageDb, Labels, attribute_labels, class_labels
from datasets.files import MissingDataError, read_columns, stratified_parts

RELEASE = "CUB_200_2011"
LISTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "bounding_boxes.txt",
         "attributes/image_attribute_labels.txt")
NOT_VISIBLE = 1  # certainty id 1 = "not visible" (2 guessing, 3 probably, 4 definitely)


def read_image_attributes(path: Path, n_images: int, n_attributes: int) -> tuple[np.ndarray, np.ndarray]:
    """``image_attribute_labels.txt`` -> (is_present, certainty), each (n_images, n_attributes) int.

    Lines read ``image attribute is_present certainty time``; a few lines of the release carry an extra
    field, so only the first four are used. An (image, attribute) pair not listed gets certainty 0.
    """
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, usecols=[0, 1, 2, 3], names=range(8), dtype=float)
        values = table.to_numpy()
    except (pd.errors.ParserError, ValueError):  # an odder line: fall back to Python, field by field
        values = np.array([[float(v) for v in row[:4]] for row in read_columns(path, 4)])
    image, attribute = values[:, 0].astype(int) - 1, values[:, 1].astype(int) - 1
    if image.min() < 0 or image.max() >= n_images or attribute.min() < 0 or attribute.max() >= n_attributes:
        raise ValueError(f"{path}: image ids must be 1..{n_images} and attribute ids 1..{n_attributes}")
    present, certainty = np.zeros((n_images, n_attributes), int), np.zeros((n_images, n_attributes), int)
    present[image, attribute], certainty[image, attribute] = values[:, 2].astype(int), values[:, 3].astype(int)
    return present, certainty


def id_column(path: Path, n_fields: int = 2) -> dict[int, list[str]]:
    """``<id> <value> ...`` lines -> {id: [values]}."""
    return {int(row[0]): row[1:] for row in read_columns(path, n_fields)}


def lookup(table: dict[int, list[str]], ids: list[int], path: Path) -> list[list[str]]:
    """The rows of ``ids``; an id the file does not list is an error naming the file."""
    absent = [i for i in ids if i not in table]
    if absent:
        raise ValueError(f"{path}: no line for image id(s) {absent[:10]} ({len(absent)} in all)")
    return [table[i] for i in ids]


@DBS.register("cub")
class CUB(ImageDb):
    """CUB-200-2011: 200 bird species + 312 binary attributes, on the official train/test split, birds cropped.

    Wah, Branson, Welinder, Perona & Belongie, CNS-TR-2011-001; preset of Kollias, Sharmanska &
    Zafeiriou (AAAI-24): cropped birds at 280 px, label smoothing 0.3, affine augmentation, batch 150.
    The release's README says 322 attributes; its files hold 312. ``attributes.txt`` is read from
    ``CUB_200_2011/attributes/`` or from beside ``CUB_200_2011/`` (releases differ).

    Args:
        data_root: the folder holding ``CUB_200_2011/`` (or that folder itself); else ``$MTLBENCH_CUB_ROOT``.
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop`` (of the cropped bird).
        crop: crop each image to its bounding box (the paper's setting).
        not_visible_as_missing: treat attribute labels with certainty 1 ("not visible") as missing
            rather than as the annotator's is_present value (the release's own reading).
        val_fraction: share of the official training images held out (stratified by species) for model selection.
        split_seed: seed of that hold-out.
    """

    env_var = "MTLBENCH_CUB_ROOT"
    layout = tuple(f"{RELEASE}/{f}" for f in (*LISTS, "images/", "attributes/attributes.txt (or attributes.txt)"))

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 crop: bool = True, not_visible_as_missing: bool = False, val_fraction: float = 0.1,
                 split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < val_fraction < 1:
            raise ValueError(f"db 'cub': val_fraction must be in (0, 1), got {val_fraction}")
        self.crop, self.not_visible_as_missing = crop, not_visible_as_missing
        self.val_fraction, self.split_seed = val_fraction, split_seed

    def preset(self) -> Preset:
        return Preset(image_size=280, batch_size=150, epochs=30, augmentation="affine", label_smoothing=0.3)

    def folder(self) -> Path:
        """The ``CUB_200_2011`` folder: under the data root, or the data root itself."""
        root = self.root()
        return root if (root / "images.txt").exists() and not (root / RELEASE).is_dir() else root / RELEASE

    def attribute_names_file(self) -> Path:
        """``attributes.txt``, from ``CUB_200_2011/attributes/`` or from beside ``CUB_200_2011/``."""
        folder = self.folder()
        places = [folder / "attributes" / "attributes.txt", folder.parent / "attributes.txt"]
        for place in places:
            if place.is_file():
                return place
        raise MissingDataError(f"db 'cub': attributes.txt not found; looked in:\n" + "\n".join(f"  {p}" for p in places)
                               + f"\nPoint --data-root (or {self.env_var}) at the folder that holds {RELEASE}/.")

    def tasks(self) -> tuple[TaskSpec, ...]:
        classes, attributes = self.memo("names", self.read_names)
        return TaskSpec("species", "multiclass", classes), TaskSpec("attributes", "attributes", attributes)

    def read_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        folder = self.folder()
        self.require(folder.parent, [f"{folder.name}/{f}" for f in (*LISTS, "images")])
        classes, attributes = id_column(folder / "classes.txt"), id_column(self.attribute_names_file())
        return (tuple(classes[i][0] for i in sorted(classes)), tuple(attributes[i][0] for i in sorted(attributes)))

    def read_labels(self) -> Labels:
        classes, attribute_names = self.memo("names", self.read_names)
        folder = self.folder()
        images, species = id_column(folder / "images.txt"), id_column(folder / "image_class_labels.txt")
        ids = sorted(images)
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"{folder / 'images.txt'}: image ids must run 1..{len(ids)}")
        boxes = lookup(id_column(folder / "bounding_boxes.txt", 5), ids, folder / "bounding_boxes.txt")
        box = np.array([[float(v) for v in row[:4]] for row in boxes]) if self.crop else None
        present, certainty = read_image_attributes(folder / "attributes" / "image_attribute_labels.txt", len(ids),
                                                   len(attribute_names))
        known = certainty > 0
        if self.not_visible_as_missing:
            known &= certainty != NOT_VISIBLE
        targets, masks = {}, {}
        codes = np.array([int(row[0]) - 1 for row in lookup(species, ids, folder / "image_class_labels.txt")])
        if codes.min() < 0 or codes.max() >= len(classes):
            raise ValueError(f"{folder / 'image_class_labels.txt'}: class ids must be 1..{len(classes)}")
        targets["species"], masks["species"] = class_labels(codes)
        targets["attributes"], masks["attributes"] = attribute_labels(np.where(known, present, np.nan))
        source = self.scan(folder / "images", [images[i][0] for i in ids], box)
        return Labels(source, targets, masks)

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val, 2 = test: the official split, validation carved from its training images."""
        folder = self.folder()
        is_train = id_column(folder / "train_test_split.txt")
        ids = list(range(1, len(self.labels()) + 1))
        train = np.array([row[0] == "1" for row in lookup(is_train, ids, folder / "train_test_split.txt")])
        parts = np.full(len(train), 2)
        species = self.labels().targets["species"].numpy()
        rows = np.flatnonzero(train)
        parts[rows] = stratified_parts(species[rows], (1 - self.val_fraction, self.val_fraction),
                                       np.random.default_rng(self.split_seed))
        return parts
