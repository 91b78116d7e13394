"""``rafdb``: RAF-DB basic expressions (Li, Deng & Du, CVPR 2017), official release layout, aligned faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.affect_tables import EXPRESSIONS
from benchmark.tasks import TaskSpec
from datasets.affect import AffectDb, expression_task
from datasets.base import DBS
from datasets.filedb import Labels, class_labels
from datasets.files import first_existing, read_columns, stratified_parts

#: RAF-DB's codes 1..7 in canonical names.
CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
#: The label list as the release spells it (sic), then the spelling some copies were corrected to.
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")
PREFIXES = {"train": 0, "test": 2}


@DBS.register("rafdb")
class RAFDB(AffectDb):
    """RAF-DB (basic): 7 expressions of aligned in-the-wild faces, official train/test split; mean per-class accuracy.

    Li, Deng & Du, "Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression
    Recognition in the Wild", CVPR 2017; used for expressions in Kollias, Sharmanska & Zafeiriou
    (AAAI-24, Tab. 2). ``EmoLabel/list_patition_label.txt`` (the release's spelling; the corrected
    ``list_partition_label.txt`` is read too) lists ``train_00001.jpg 5``: codes 1 surprise, 2 fear,
    3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral; the split is the name's prefix; the image is
    ``Image/aligned/<stem>_aligned.jpg``. Validation is held out of train (stratified, seeded). Metric:
    accuracy averaged over classes, on the whole test set (primary), and plain accuracy.

    Args:
        data_root: the ``basic/`` folder of the release, or the folder holding it (else ``$MTLBENCH_RAFDB_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        val_fraction: share of the training images held out for model selection.
        split_seed: seed of that hold-out.
    """

    env_var = "MTLBENCH_RAFDB_ROOT"
    layout = (f"{LABEL_FILES[0]}  (lines 'train_00001.jpg 5')", "Image/aligned/train_00001_aligned.jpg ...")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", val_fraction: float = 0.1, split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < val_fraction < 1:
            raise ValueError(f"db 'rafdb': val_fraction must be in (0, 1), got {val_fraction}")
        self.augmentation = self.check_augmentation(augmentation)
        self.val_fraction, self.split_seed = val_fraction, split_seed

    def tasks(self) -> tuple[TaskSpec, ...]:
        return (expression_task(primary="mean_class_accuracy"),)

    def folder(self) -> Path:
        """The release's ``basic/`` folder: the data root or its ``basic/`` subfolder."""
        root = self.root()
        return root / "basic" if (root / "basic" / "EmoLabel").is_dir() else root

    def label_file(self) -> Path:
        return first_existing("rafdb", self.folder(), LABEL_FILES, "label list",
                              f"Point --data-root (or {self.env_var}) at RAF-DB's basic/ folder.")

    def read_rows(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(image names, canonical class index, 0 = train / 2 = test) from the label list."""
        path = self.label_file()
        names, codes, official = [], [], []
        for number, (name, code, *_) in enumerate(read_columns(path, 2), start=1):
            prefix = name.split("_")[0]
            if prefix not in PREFIXES or code not in {str(c) for c in CODES}:
                raise ValueError(f"{path}, line {number}: expected '<train|test>_NNNNN.jpg <1..7>', got {name!r} {code!r}")
            names.append(name)
            codes.append(EXPRESSIONS.index(CODES[int(code)]))
            official.append(PREFIXES[prefix])
        return names, np.array(codes, dtype=np.int64), np.array(official)

    def read_labels(self) -> Labels:
        names, codes, _ = self.memo("rows", self.read_rows)
        files = [f"Image/aligned/{Path(n).stem}_aligned.jpg" for n in names]
        target, mask = class_labels(codes)
        return Labels(self.scan(self.folder(), files), {"expression": target}, {"expression": mask})

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val (held out of train, stratified), 2 = test (the ``test_`` images)."""
        _, codes, official = self.memo("rows", self.read_rows)
        parts = official.copy()
        rows = np.flatnonzero(parts == 0)
        parts[rows] = stratified_parts(codes[rows], (1 - self.val_fraction, self.val_fraction),
                                       np.random.default_rng(self.split_seed))
        return parts
