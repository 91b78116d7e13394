"""``affectnet``: AffectNet expressions (Mollahosseini, Hasani & Mahoor, IEEE TAC 2017), both release layouts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.tasks import TaskSpec
from datasets.affect import AffectDb, expression_task
from datasets.base import DBS
from datasets.filedb import Labels, class_labels
from datasets.files import MissingDataError, stratified_parts

log = logging.getLogger(__name__)

#: AffectNet's expression codes; 8 none, 9 uncertain and 10 no-face are not expressions and are dropped.
CODES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger", 7: "contempt"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")
#: Where the lists and the images of the CSV layout may sit under the data root (first found wins).
LIST_FOLDERS = ("", "Manually_Annotated_file_lists")
IMAGE_FOLDERS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")  # else the root
#: The newer layout: <set>/images/<id>.jpg and <set>/annotations/<id>_exp.npy; validation serves as test.
NPY_SETS = {"train": "train_set", "test": "val_set"}


@dataclass(frozen=True)
class Table:
    """The kept images: file (relative to ``folder``), face box or None, class code, and 0 = training list / 2 = test."""

    folder: Path
    files: list[str]
    boxes: np.ndarray | None
    codes: np.ndarray
    official: np.ndarray


def read_list(path: Path) -> pd.DataFrame:
    """``training.csv`` / ``validation.csv``, with or without the header line (some copies lack it)."""
    with path.open() as f:
        has_header = f.readline().split(",")[0].strip() == COLUMNS[0]
    table = pd.read_csv(path, header=0 if has_header else None, names=None if has_header else list(COLUMNS),
                        dtype={COLUMNS[0]: str})
    missing = [c for c in ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
               if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; AffectNet lists have the columns {', '.join(COLUMNS)}")
    return table


@DBS.register("affectnet")
class AffectNet(AffectDb):
    """AffectNet: 7 basic expressions (+ contempt, optionally) of in-the-wild faces; validation list as test.

    Mollahosseini, Hasani & Mahoor, "AffectNet: A Database for Facial Expression, Valence, and Arousal
    Computing in the Wild", IEEE TAC 2017; used for expressions in Kollias, Sharmanska & Zafeiriou
    (AAAI-24, Tab. 2). Codes 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt
    map to the canonical order; 8-10 (none, uncertain, no face) are dropped. The official validation
    list is the test set (the test labels are not public); validation is held out of the training list
    (stratified, seeded). Metric: accuracy. Reads the CSV release (``training.csv``, ``validation.csv``,
    ``Manually_Annotated_Images/``; faces cropped to the listed box) or the newer ``train_set/`` /
    ``val_set/`` layout (``images/<id>.jpg``, ``annotations/<id>_exp.npy``, faces already cropped).

    Args:
        data_root: the release folder (else ``$MTLBENCH_AFFECTNET_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        keep_contempt: keep code 7 as an 8th class ``contempt`` (default: dropped, as the paper's 7).
        crop: crop CSV-layout images to their face box.
        val_fraction: share of the training list held out for model selection.
        split_seed: seed of that hold-out.
    """

    env_var = "MTLBENCH_AFFECTNET_ROOT"
    layout = ("training.csv, validation.csv (or Manually_Annotated_file_lists/...)",
              "Manually_Annotated_Images/<subDirectory_filePath>",
              "or: train_set/images/<id>.jpg, train_set/annotations/<id>_exp.npy, val_set/... (newer layout)")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", keep_contempt: bool = False, crop: bool = True,
                 val_fraction: float = 0.1, split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < val_fraction < 1:
            raise ValueError(f"db 'affectnet': val_fraction must be in (0, 1), got {val_fraction}")
        self.augmentation = self.check_augmentation(augmentation)
        self.keep_contempt, self.crop, self.val_fraction, self.split_seed = keep_contempt, crop, val_fraction, split_seed

    def tasks(self) -> tuple[TaskSpec, ...]:
        return (expression_task(("contempt",) if self.keep_contempt else ()),)

    def table(self) -> Table:
        """The parsed lists, once per db instance."""
        return self.memo("table", self.read_table)

    def read_table(self) -> Table:
        root = self.root()
        lists = next((root / f for f in LIST_FOLDERS if (root / f / "training.csv").is_file()), None)
        if lists is not None:
            return self.read_csv_layout(root, lists)
        if (root / NPY_SETS["train"] / "annotations").is_dir():
            return self.read_npy_layout(root)
        raise MissingDataError(
            f"db 'affectnet': no AffectNet release under {root}; it reads either\n"
            + "\n".join(f"  {root / f / 'training.csv'}" for f in LIST_FOLDERS)
            + f"\n  (with validation.csv beside it and the images in {' or '.join(IMAGE_FOLDERS)}/), or\n"
            + f"  {root / 'train_set/annotations/<id>_exp.npy'} and {root / 'train_set/images/<id>.jpg'} (and val_set/)\n"
            + f"Point --data-root (or {self.env_var}) at the folder that holds them.")

    def read_csv_layout(self, root: Path, lists: Path) -> Table:
        self.require(root, [str((lists / "validation.csv").relative_to(root))])
        images = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), root)
        frames = [read_list(lists / "training.csv").assign(official=0),
                  read_list(lists / "validation.csv").assign(official=2)]
        table = pd.concat(frames, ignore_index=True)
        codes = self.keep_codes(table["expression"].to_numpy(dtype=np.int64))
        table = table[codes >= 0]
        boxes = table[["face_x", "face_y", "face_width", "face_height"]].to_numpy(dtype=float) if self.crop else None
        return Table(images, table["subDirectory_filePath"].str.strip().tolist(), boxes, codes[codes >= 0],
                     table["official"].to_numpy())

    def read_npy_layout(self, root: Path) -> Table:
        self.require(root, [f"{s}/{sub}" for s in NPY_SETS.values() for sub in ("images", "annotations")])
        files, codes, official = [], [], []
        for part, folder in ((0, NPY_SETS["train"]), (2, NPY_SETS["test"])):
            stems = sorted((p.name[: -len("_exp.npy")] for p in (root / folder / "annotations").glob("*_exp.npy")),
                           key=lambda s: (len(s), s))  # numeric ids in numeric order
            for stem in stems:
                value = np.asarray(np.load(root / folder / "annotations" / f"{stem}_exp.npy")).reshape(-1)[0]
                files.append(f"{folder}/images/{stem}.jpg")
                codes.append(int(float(value)))  # stored as a string ('3') in the release
                official.append(part)
        kept = self.keep_codes(np.array(codes, dtype=np.int64))
        keep = kept >= 0
        return Table(root, [f for f, k in zip(files, keep) if k], None, kept[keep], np.array(official)[keep])

    def keep_codes(self, codes: np.ndarray) -> np.ndarray:
        """AffectNet codes -> canonical class index, -1 for the dropped ones (8-10, contempt unless kept)."""
        classes = self.tasks()[0].labels
        lookup = {code: classes.index(name) for code, name in CODES.items() if name in classes}
        out = np.array([lookup.get(int(c), -1) for c in codes], dtype=np.int64)
        log.info("affectnet: %d of %d listed images kept (codes %s dropped)", int((out >= 0).sum()), len(out),
                 sorted(set(codes[out < 0].tolist())))
        return out

    def read_labels(self) -> Labels:
        table = self.table()
        target, mask = class_labels(table.codes)
        return Labels(self.scan(table.folder, table.files, table.boxes), {"expression": target}, {"expression": mask})

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val (held out of the training list, stratified), 2 = test (the validation list)."""
        table = self.table()
        parts = table.official.copy()
        rows = np.flatnonzero(parts == 0)
        parts[rows] = stratified_parts(table.codes[rows], (1 - self.val_fraction, self.val_fraction),
                                       np.random.default_rng(self.split_seed))
        return parts
