"""``sadd``: the Shoes attribute dataset (Kovashka, Parikh & Grauman, CVPR 2012), read from a documented manifest."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from benchmark.tasks import TaskSpec
from datasets.base import DBS, Preset
from datasets.filedb import ImageDb, Labels, attribute_labels, class_labels
from datasets.files import stratified_parts

#: The 10 shoe types and 10 attributes of the Shoes dataset (WhittleSearch), in canonical names.
TYPES = ("athletic_shoes", "boots", "clogs", "flats", "high_heels", "pumps", "rain_boots", "sneakers", "stiletto",
         "wedding_shoes")
ATTRIBUTES = ("pointy_at_the_front", "open", "bright_in_color", "covered_with_ornaments", "shiny",
              "high_at_the_heel", "long_on_the_leg", "formal", "sporty", "feminine")
POSITIVE, NEGATIVE, MISSING = {"1", "1.0"}, {"0", "0.0"}, {"", "nan", "na"}


def canonical(name: str) -> str:
    """``"High heels"`` / ``"high-heels"`` -> ``"high_heels"``."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def read_manifest(path) -> pd.DataFrame:
    """The manifest with canonical column names; a missing column is an error listing the expected ones."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [canonical(c) for c in table.columns]
    missing = [c for c in ("image", "type", *ATTRIBUTES) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; a sadd manifest has the columns image, type, "
                         f"{', '.join(ATTRIBUTES)}")
    return table


def decode_types(values: pd.Series, path) -> np.ndarray:
    """Type names -> 0-based class indices, -1 where empty; an unknown type is an error listing the known ones."""
    names = values.map(canonical)
    unknown = sorted(set(names) - set(TYPES) - MISSING)
    if unknown:
        raise ValueError(f"{path}: unknown shoe type(s) {unknown[:5]}; the types are {', '.join(TYPES)}")
    return np.array([TYPES.index(n) if n in TYPES else -1 for n in names], dtype=np.int64)


def decode_attributes(table: pd.DataFrame, path) -> np.ndarray:
    """Attribute columns of 1 / 0 / empty -> (n, 10) float 1 / 0 / NaN; anything else is an error."""
    out = np.full((len(table), len(ATTRIBUTES)), np.nan)
    for j, name in enumerate(ATTRIBUTES):
        text = table[name].str.strip().str.lower()
        bad = sorted(set(text) - POSITIVE - NEGATIVE - MISSING)
        if bad:
            raise ValueError(f"{path}: column {name!r} must hold 1, 0 or nothing (missing), found {bad[:5]}")
        out[text.isin(POSITIVE).to_numpy(), j] = 1.0
        out[text.isin(NEGATIVE).to_numpy(), j] = 0.0
    return out


@DBS.register("sadd")
class Shoes(ImageDb):
    """Shoes: 10 shoe types + 10 binary attributes, on a seeded 7.4K/7.3K train/test split.

    Kovashka, Parikh & Grauman, "WhittleSearch: Image Search with Relative Attribute Feedback",
    CVPR 2012; protocol of Kollias, Sharmanska & Zafeiriou (AAAI-24): no predefined split, so a seeded
    one of 7.4K training and 7.3K test images (stratified by type), validation carved from training.
    Input is a manifest CSV, since no public description of the release files could be found:
    columns ``image`` (path relative to the data root), ``type`` (one of :data:`TYPES`, names matched
    case- and separator-insensitively; empty = missing) and the 10 :data:`ATTRIBUTES` (1, 0, or empty
    = missing).

    Args:
        data_root: the folder holding the manifest and the images (else ``$MTLBENCH_SADD_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        manifest: the manifest's file name under the data root.
        train_fraction: share of images for training (7.4K of 14.7K in the paper); the rest is test.
        val_fraction: share of the training images held out for model selection.
        split_seed: seed of the split.
    """

    env_var = "MTLBENCH_SADD_ROOT"
    layout = ("manifest.csv  (columns: image, type, " + ", ".join(ATTRIBUTES) + ")", "<the image paths it lists>")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 manifest: str = "manifest.csv", train_fraction: float = 0.503, val_fraction: float = 0.1,
                 split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < train_fraction < 1 or not 0 < val_fraction < 1:
            raise ValueError(f"db 'sadd': train_fraction and val_fraction must be in (0, 1), got "
                             f"{train_fraction}, {val_fraction}")
        self.manifest, self.train_fraction, self.val_fraction = manifest, train_fraction, val_fraction
        self.split_seed = split_seed

    def tasks(self) -> tuple[TaskSpec, ...]:
        return TaskSpec("type", "multiclass", TYPES), TaskSpec("attributes", "attributes", ATTRIBUTES)

    def preset(self) -> Preset:
        return Preset(image_size=280, batch_size=100, epochs=30)

    def read_labels(self) -> Labels:
        root = self.root()
        self.require(root, [self.manifest])
        path = root / self.manifest
        table = read_manifest(path)
        targets, masks = {}, {}
        targets["type"], masks["type"] = class_labels(decode_types(table["type"], path))
        targets["attributes"], masks["attributes"] = attribute_labels(decode_attributes(table, path))
        return Labels(self.scan(root, table["image"].str.strip().tolist()), targets, masks)

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val, 2 = test, stratified by type (images without one form a stratum)."""
        train = self.train_fraction
        fractions = (train * (1 - self.val_fraction), train * self.val_fraction, 1 - train)
        strata = self.labels().targets["type"].numpy()
        return stratified_parts(strata, fractions, np.random.default_rng(self.split_seed))
