"""``abaw4_lsd``: the ABAW4 Learning-from-Synthetic-Data set (Kollias, ECCV Workshops 2022): synthetic train, real test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.tasks import TaskSpec
from datasets.affect import AffectDb, canonical_expression, expression_task, list_images
from datasets.base import DBS
from datasets.filedb import Labels, class_labels
from datasets.files import MissingDataError, stratified_parts

#: Folder names of the synthetic training images and the real validation images (first found wins).
SYNTHETIC = ("training_set_synthetic_images", "training")
REAL = ("validation_set_real_images", "validation")


@DBS.register("abaw4_lsd")
class ABAW4LSD(AffectDb):
    """ABAW4-LSD: 6 basic expressions; synthetic training faces, real faces for validation and test; macro F1.

    Kollias, "ABAW: Learning from Synthetic Data & Multi-Task Learning Challenges", ECCV Workshops 2022;
    used for expressions in Kollias, Sharmanska & Zafeiriou (AAAI-24, Tab. 2). The release has one
    folder per expression (ANGER, DISGUST, FEAR, HAPPINESS, SADNESS, SURPRISE; names matched case- and
    alias-insensitively, including a misspelt ANGERE) under ``training_set_synthetic_images/`` and
    ``validation_set_real_images/``. The real set's labels are the only real ones released, so it is
    split (stratified, seeded) into validation and test. The task keeps the canonical 7 classes;
    neutral has no image. Metric: macro F1 (over the classes in targets or predictions).

    Args:
        data_root: the folder holding both image folders (else ``$MTLBENCH_ABAW4_LSD_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        val_fraction: share of the real images used for validation (the rest is the test set).
        split_seed: seed of that split.
    """

    env_var = "MTLBENCH_ABAW4_LSD_ROOT"
    layout = (f"{SYNTHETIC[0]}/<EXPRESSION>/*.jpg", f"{REAL[0]}/<EXPRESSION>/*.jpg")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", val_fraction: float = 0.5, split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < val_fraction < 1:
            raise ValueError(f"db 'abaw4_lsd': val_fraction must be in (0, 1), got {val_fraction}")
        self.augmentation = self.check_augmentation(augmentation)
        self.val_fraction, self.split_seed = val_fraction, split_seed

    def tasks(self) -> tuple[TaskSpec, ...]:
        return (expression_task(primary="f1_macro"),)

    def folder(self, names: tuple[str, ...]) -> Path:
        root = self.root()
        for name in names:
            if (root / name).is_dir():
                return root / name
        raise MissingDataError(f"db 'abaw4_lsd': none of {', '.join(str(root / n) for n in names)} exists; "
                               f"expected {root / names[0]}/<EXPRESSION>/*.jpg. Point --data-root (or "
                               f"{self.env_var}) at the folder that holds {SYNTHETIC[0]}/ and {REAL[0]}/.")

    def read_folder(self, folder: Path) -> tuple[list[str], list[int]]:
        """(image paths relative to the root, class index) of every image in ``folder``'s class subfolders."""
        classes = self.tasks()[0].labels
        files, codes = [], []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            name = canonical_expression(sub.name)
            if name not in classes:
                raise ValueError(f"{sub}: not an expression folder; expected one of ANGER, DISGUST, FEAR, "
                                 f"HAPPINESS, SADNESS, SURPRISE")
            for image in list_images(sub):
                files.append(str(image.relative_to(self.root())))
                codes.append(classes.index(name))
        if not files:
            raise MissingDataError(f"db 'abaw4_lsd': no images in {folder}/<EXPRESSION>/")
        return files, codes

    def read_table(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(files, class index, 0 = synthetic / 2 = real)."""
        synthetic, real = self.read_folder(self.folder(SYNTHETIC)), self.read_folder(self.folder(REAL))
        official = np.array([0] * len(synthetic[0]) + [2] * len(real[0]))
        return synthetic[0] + real[0], np.array(synthetic[1] + real[1], dtype=np.int64), official

    def read_labels(self) -> Labels:
        files, codes, _ = self.memo("table", self.read_table)
        target, mask = class_labels(codes)
        return Labels(self.scan(self.root(), files), {"expression": target}, {"expression": mask})

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train (synthetic), 1 = val and 2 = test (the real images, split stratified by class)."""
        _, codes, official = self.memo("table", self.read_table)
        parts = official.copy()
        real = np.flatnonzero(official == 2)
        parts[real] = 1 + stratified_parts(codes[real], (self.val_fraction, 1 - self.val_fraction),
                                           np.random.default_rng(self.split_seed))
        return parts
