"""``celeba``: CelebA identities + 40 attributes (Liu, Luo, Wang & Tang, ICCV 2015), official file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.tasks import TaskSpec
from datasets.base import DBS, Preset
from datasets.filedb import ImageDb, Labels, attribute_labels, class_labels
from datasets.files import MissingDataError, parse_fractions, stratified_parts

IMAGES, ATTRIBUTES, IDENTITIES = "img_align_celeba", "list_attr_celeba.txt", "identity_CelebA.txt"
#: Where each item may sit: flat under the root, or in the Google Drive release's Img/ and Anno/ folders.
PLACES = {IMAGES: ("", "Img"), ATTRIBUTES: ("", "Anno"), IDENTITIES: ("", "Anno")}


def find(root: Path, item: str) -> Path | None:
    """``item`` under ``root`` or in its release subfolder; None if in neither."""
    for folder in PLACES[item]:
        if (root / folder / item).exists():
            return root / folder / item
    return None


def read_attributes(path: Path) -> tuple[list[str], pd.DataFrame]:
    """``list_attr_celeba.txt``: a count, the 40 names, then a file name and 40 values of 1/-1 per line."""
    with path.open() as f:
        count = int(f.readline().split()[0])
        names = f.readline().split()
    table = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, names=["image", *names], dtype={"image": str})
    if len(table) != count:
        raise ValueError(f"{path}: line 1 says {count} images, the file lists {len(table)}")
    values = table[names].to_numpy()
    if not np.isin(values, (1, -1)).all():
        raise ValueError(f"{path}: attribute values must be 1 or -1, found {sorted(set(np.unique(values).tolist()) - {1, -1})[:5]}")
    return names, table


@DBS.register("celeba")
class CelebA(ImageDb):
    """CelebA: identity recognition + 40 binary face attributes, on a subject-dependent split.

    Liu, Luo, Wang & Tang, ICCV 2015; protocol of Kollias, Sharmanska & Zafeiriou (AAAI-24): the
    official partition keeps identities apart, so identities cannot be learnt from it; instead every
    identity's images are spread over train/val/test (stratified by identity, seeded).

    Args:
        data_root: folder with ``img_align_celeba/``, ``list_attr_celeba.txt`` and ``identity_CelebA.txt``
            (or the release's ``Img/`` and ``Anno/`` subfolders); else ``$MTLBENCH_CELEBA_ROOT``.
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        min_images: keep identities with at least this many images (K; 3 puts each in every split).
        top_identities: then keep only the N identities with most images (ties: lower id); 0 = all.
        split_fractions: train:val:test shares of each identity's images.
        split_seed: seed of the split.
    """

    env_var = "MTLBENCH_CELEBA_ROOT"
    layout = (f"{IMAGES}/000001.jpg ...", ATTRIBUTES, IDENTITIES)

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 min_images: int = 3, top_identities: int = 0, split_fractions: str = "0.8:0.1:0.1",
                 split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if min_images < 1 or top_identities < 0:
            raise ValueError(f"db 'celeba': need min_images >= 1 and top_identities >= 0, got {min_images}, {top_identities}")
        parse_fractions(split_fractions, 3, "split_fractions")
        self.min_images, self.top_identities = min_images, top_identities
        self.split_fractions, self.split_seed = split_fractions, split_seed

    def tasks(self) -> tuple[TaskSpec, ...]:
        identities, names = self.memo("table", self.read_table)[1:]
        return (TaskSpec("identity", "multiclass", tuple(f"id_{i}" for i in identities)),
                TaskSpec("attributes", "attributes", tuple(names)))

    def preset(self) -> Preset:
        return Preset(image_size=112, batch_size=200, epochs=20)

    def paths(self) -> dict[str, Path]:
        root = self.root()
        found = {item: find(root, item) for item in PLACES}
        if None in found.values():
            lines = [f"  {path}" if path else "  " + " or ".join(str(root / f / item) for f in PLACES[item]) + "  (missing)"
                     for item, path in found.items()]
            raise MissingDataError(f"db 'celeba': expected files missing under {root}; it reads:\n" + "\n".join(lines)
                                   + f"\nPoint --data-root (or {self.env_var}) at the folder that holds them.")
        return found  # type: ignore[return-value]

    def read_table(self) -> tuple[pd.DataFrame, list[int], list[str]]:
        """The kept images (image, identity, 40 attributes or NaN), the kept identities and the attribute names."""
        paths = self.paths()
        names, attributes = read_attributes(paths[ATTRIBUTES])
        ids = pd.read_csv(paths[IDENTITIES], sep=r"\s+", header=None, names=["image", "identity"],
                          dtype={"image": str, "identity": np.int64})
        table = ids.merge(attributes, on="image", how="left")  # an image without attributes keeps NaN (missing)
        counts = table["identity"].value_counts()
        counts = counts[counts >= self.min_images]
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = sorted(k for k, _ in (ranked[: self.top_identities] if self.top_identities else ranked))
        if not kept:
            raise ValueError(f"db 'celeba': no identity has min_images={self.min_images} images; lower min_images")
        table = table[table["identity"].isin(kept)].reset_index(drop=True)
        return table, [int(k) for k in kept], names

    def read_labels(self) -> Labels:
        table, identities, names = self.memo("table", self.read_table)
        index = {identity: i for i, identity in enumerate(identities)}
        targets, masks = {}, {}
        targets["identity"], masks["identity"] = class_labels(table["identity"].map(index).to_numpy())
        attributes = table[names].to_numpy(dtype=float)  # 1 / -1 / NaN -> 1 / 0 / missing
        targets["attributes"], masks["attributes"] = attribute_labels(np.where(attributes == -1, 0.0, attributes))
        folder = self.paths()[IMAGES]
        return Labels(self.scan(folder, table["image"].tolist()), targets, masks)

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val, 2 = test: each identity's images split by ``split_fractions``."""
        identity = self.labels().targets["identity"].numpy()
        fractions = parse_fractions(self.split_fractions, 3, "split_fractions")
        return stratified_parts(identity, fractions, np.random.default_rng(self.split_seed), every_part=True)
