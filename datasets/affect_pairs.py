"""The cross-dataset pairings of Kollias, Sharmanska & Zafeiriou (AAAI-24, Tab. 2): one expression db + one AU db.

Each pairing is a db of its own (``affectnet+emotionet``, ``rafdb+emotionet``, ``abaw4_lsd+affwild2``):
the images of the first dataset carry only expressions, those of the second only AUs, so nothing
downstream knows it was two. Each side keeps its own splits, test set and metric: a joined test split
works because every metric is computed over annotated entries only, and each test image carries only its
own dataset's labels. The three live in one file because each is only a pair of names.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from benchmark.tasks import TaskSpec
from datasets.abaw4_lsd import ABAW4LSD
from datasets.affect import AU, EXPRESSION, AffectDb
from datasets.affectnet import AffectNet
from datasets.affwild2 import AffWild2
from datasets.base import DBS, Split, TaskDataset
from datasets.emotionet import EmotioNet
from datasets.filedb import Labels
from datasets.files import MissingDataError
from datasets.images import ImageSource
from datasets.rafdb import RAFDB

#: A box that selects the whole image (rows of a side without crop boxes).
WHOLE = (0.0, 0.0, float("inf"), float("inf"))


class AffectPairing(AffectDb):
    """An expression db joined with an AU db; subclasses name the two.

    Each side is read by its own adapter with its defaults (and this db's ``fit`` and ``split_seed``),
    from ``DATA_ROOT/<side db name>/`` when ``--data-root`` (or ``$MTLBENCH_AFFECT_ROOT``) is given,
    else from the side's own environment variable. A side's images keep only that side's task: the AU db's expression labels (Aff-Wild2's)
    are dropped, and images left with no label are left out.

    Args:
        data_root: folder holding one subfolder per side, named by the side's db (e.g. ``affectnet/``,
            ``emotionet/``); else ``$MTLBENCH_AFFECT_ROOT``; else each side's own environment variable.
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        sampling: ``proportional``: every training image equally likely, so each dataset in proportion
            to its size (the dominant task dominates: the paper's setting, where negative transfer
            shows); ``balanced``: each dataset drawn equally often (with replacement, as many draws
            per epoch as training images).
        split_seed: seed of both sides' held-out validation splits.
    """

    expression_db: ClassVar[type[AffectDb]]
    au_db: ClassVar[type[AffectDb]]
    env_var = "MTLBENCH_AFFECT_ROOT"

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", sampling: Literal["proportional", "balanced"] = "proportional",
                 split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if sampling not in ("proportional", "balanced"):
            raise ValueError(f"db {self.name!r}: sampling must be 'proportional' or 'balanced', got {sampling!r}")
        self.augmentation = self.check_augmentation(augmentation)
        self.sampling, self.split_seed = sampling, split_seed

    def side(self, cls: type[AffectDb], task: str) -> AffectDb:
        """The adapter of one side, reading only ``task``'s files where it can."""
        def make() -> AffectDb:
            parent = self.data_root or os.environ.get(self.env_var)
            root = str(Path(parent).expanduser() / cls.name) if parent else None
            db = cls(data_root=root, cache_dir="off", fit=self.fit, split_seed=self.split_seed)  # type: ignore[call-arg]
            if isinstance(db, AffWild2):
                db.read_tasks = (task,)
            return db
        return self.memo(("side", cls.name), make)

    def sides(self) -> tuple[tuple[AffectDb, str], tuple[AffectDb, str]]:
        return (self.side(self.expression_db, EXPRESSION), EXPRESSION), (self.side(self.au_db, AU), AU)

    def tasks(self) -> tuple[TaskSpec, ...]:
        return tuple(next(t for t in db.tasks() if t.name == task) for db, task in self.sides())

    def side_rows(self) -> tuple[list[Labels], list[np.ndarray], list[np.ndarray]]:
        """Per side: its labels, the rows annotated for its task, and their parts (0 train / 1 val / 2 test)."""
        def read() -> tuple[list[Labels], list[np.ndarray], list[np.ndarray]]:
            labels, keep, parts = [], [], []
            for db, task in self.sides():
                try:
                    side = db.labels()
                except MissingDataError as exc:
                    raise MissingDataError(f"{exc}\n(db {self.name!r} reads {db.name} from DATA_ROOT/{db.name}/ with "
                                           f"--data-root DATA_ROOT or {self.env_var}=DATA_ROOT, else from "
                                           f"${getattr(db, 'env_var', '')})") from None
                mask = side.masks[task]
                rows = np.flatnonzero((mask if mask.ndim == 1 else mask.any(dim=1)).numpy())
                labels.append(side)
                keep.append(rows)
                parts.append(db.memo(("parts", None), lambda db=db: db.parts(None))[rows])
            return labels, keep, parts
        return self.memo("side_rows", read)

    def read_labels(self) -> Labels:
        (la, lb), (ka, kb), _ = self.side_rows()
        source = joined_source(la.source, ka, lb.source, kb)
        ta, tb = self.tasks()
        n_a, n_b = len(ka), len(kb)
        targets = {EXPRESSION: torch.cat([la.targets[EXPRESSION][ka], torch.full((n_b,), -1, dtype=torch.int64)]),
                   AU: torch.cat([torch.zeros(n_a, tb.num_outputs), lb.targets[AU][kb]])}
        masks = {EXPRESSION: torch.cat([la.masks[EXPRESSION][ka], torch.zeros(n_b, dtype=torch.bool)]),
                 AU: torch.cat([torch.zeros(n_a, tb.num_outputs, dtype=torch.bool), lb.masks[AU][kb]])}
        return Labels(source, targets, masks)

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) each side's own split, expression images first."""
        return np.concatenate(self.side_rows()[2])

    def dataset_of_rows(self) -> np.ndarray:
        """(n,) 0 for the expression dataset's images, 1 for the AU dataset's."""
        _, (ka, kb), _ = self.side_rows()
        return np.concatenate([np.zeros(len(ka), dtype=np.int64), np.ones(len(kb), dtype=np.int64)])

    def split(self, split: Split, fold: int | None = None, image_size: int | None = None) -> TaskDataset:
        data = super().split(split, fold, image_size)
        if split == "train" and self.sampling == "balanced":
            side = self.dataset_of_rows()[data.rows]  # type: ignore[attr-defined]
            counts = np.bincount(side, minlength=2).astype(float)
            data.sample_weights = torch.as_tensor(1.0 / counts[side])  # each dataset's weights sum to 1
        return data


def joined_source(a: ImageSource, rows_a: np.ndarray, b: ImageSource, rows_b: np.ndarray) -> ImageSource:
    """One :class:`ImageSource` of rows ``rows_a`` of ``a`` then ``rows_b`` of ``b``, relative to their common folder."""
    paths = [Path(a.root, a.files[i]).resolve() for i in rows_a] + [Path(b.root, b.files[i]).resolve() for i in rows_b]
    root = Path(os.path.commonpath([str(a.root.resolve()), str(b.root.resolve())]))
    files = tuple(str(p.relative_to(root)) for p in paths)
    boxes = None
    if a.boxes is not None or b.boxes is not None:
        boxes = np.concatenate([boxes_of(a, rows_a), boxes_of(b, rows_b)])
    digest = hashlib.sha256(f"{a.fingerprint}|{b.fingerprint}|".encode() + "\n".join(files).encode()).hexdigest()
    return ImageSource(root, files, boxes, digest)


def boxes_of(source: ImageSource, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 4) crop boxes of ``rows``: the source's, or whole-image boxes where it has none."""
    return source.boxes[rows] if source.boxes is not None else np.tile(WHOLE, (len(rows), 1))


@DBS.register("affectnet+emotionet")
class AffectNetEmotioNet(AffectPairing):
    """AffectNet expressions + EmotioNet AUs (Kollias et al., AAAI-24, Tab. 2); accuracy, and the F1/accuracy mean."""

    expression_db = AffectNet
    au_db = EmotioNet
    layout = ("affectnet/  (see db affectnet)", "emotionet/  (see db emotionet)")


@DBS.register("rafdb+emotionet")
class RAFDBEmotioNet(AffectPairing):
    """RAF-DB expressions + EmotioNet AUs (Kollias et al., AAAI-24, Tab. 2); mean class accuracy, and the F1/accuracy mean."""

    expression_db = RAFDB
    au_db = EmotioNet
    layout = ("rafdb/  (see db rafdb)", "emotionet/  (see db emotionet)")


@DBS.register("abaw4_lsd+affwild2")
class ABAW4LSDAffWild2(AffectPairing):
    """ABAW4-LSD expressions + Aff-Wild2 AUs (Kollias et al., AAAI-24, Tab. 2); macro F1, and mean per-AU F1."""

    expression_db = ABAW4LSD
    au_db = AffWild2
    layout = ("abaw4_lsd/  (see db abaw4_lsd)", "affwild2/  (see db affwild2)")
