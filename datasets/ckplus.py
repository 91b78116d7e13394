"""``ckplus``: the extended Cohn-Kanade dataset (Lucey et al., CVPR Workshops 2010), official release layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.affect_tables import ACTION_UNITS, EXPRESSIONS
from benchmark.tasks import TaskSpec
from datasets.affect import AU, EXPRESSION, AffectDb, au_matrix, au_task, expression_task
from datasets.base import DBS
from datasets.filedb import Labels, attribute_labels, class_labels
from datasets.files import MissingDataError

IMAGES, EMOTION, FACS = "cohn-kanade-images", "Emotion", "FACS"
#: CK+'s emotion codes in canonical names.
CODES = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise"}


@dataclass(frozen=True)
class Recording:
    """One CK+ sequence: its frames (relative paths, in order), emotion code or None, and coded AUs or None."""

    subject: str
    frames: tuple[str, ...]
    emotion: int | None
    aus: tuple[int, ...] | None


def read_number_file(path: Path) -> list[list[float]]:
    """A CK+ label file: lines of floats in exponent notation (``   3.0000000e+00``)."""
    try:
        return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        raise ValueError(f"{path}: expected lines of numbers like '3.0000000e+00'") from None


def only_file(folder: Path, suffix: str) -> Path | None:
    """The single ``*<suffix>`` file in ``folder`` (named after the sequence's last frame), or None."""
    found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
    return found[-1] if found else None


@DBS.register("ckplus")
class CKPlus(AffectDb):
    """CK+: posed expressions (7 + contempt) and FACS-coded AUs on the last frames of each sequence; subject-independent folds.

    Lucey, Cohn, Kanade, Saragih, Ambadar & Matthews, "The Extended Cohn-Kanade Dataset (CK+)", CVPR
    Workshops 2010. Layout: ``cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_zzzzzzzz.png``, ``Emotion/Sxxx/yyy/
    <last frame>_emotion.txt`` (one float: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy,
    6 sadness, 7 surprise) and ``FACS/Sxxx/yyy/<last frame>_facs.txt`` (one line per AU: number and
    intensity). The last ``last_frames`` frames of each labelled sequence carry its labels (the peak is
    the last frame; the ones before it are near it). FACS codes every AU present at the peak, so a
    canonical AU not listed is absent (0), not missing. Frames of one subject are near-duplicates, so
    the protocol is ``folds``-fold cross-validation over subjects (seeded); validation subjects are
    held out of each fold's training subjects.

    Args:
        data_root: the folder holding the three release folders (else ``$MTLBENCH_CKPLUS_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        keep_contempt: keep contempt as an 8th class (False: contempt frames keep only their AUs).
        extra_aus: also learn the coded AUs outside the canonical 17, as extra attributes.
        last_frames: K, the labelled frames per sequence.
        neutral_first_frame: add each labelled sequence's first frame as neutral (its AUs not coded: missing).
        au_only_sequences: also use FACS-coded sequences without an emotion label (AUs only).
        folds: number of subject-independent folds. val_fraction: share of training subjects held out.
        split_seed: seed of the folds and hold-outs.
    """

    num_folds = 10
    env_var = "MTLBENCH_CKPLUS_ROOT"
    layout = (f"{IMAGES}/S005/001/S005_001_00000001.png ...", f"{EMOTION}/S005/001/S005_001_00000011_emotion.txt",
              f"{FACS}/S005/001/S005_001_00000011_facs.txt")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", keep_contempt: bool = True, extra_aus: bool = False,
                 last_frames: int = 3, neutral_first_frame: bool = False, au_only_sequences: bool = False,
                 folds: int = 10, val_fraction: float = 0.1, split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if last_frames < 1 or folds < 2 or not 0 < val_fraction < 1:
            raise ValueError(f"db 'ckplus': need last_frames >= 1, folds >= 2 and 0 < val_fraction < 1, got "
                             f"{last_frames}, {folds}, {val_fraction}")
        self.augmentation = self.check_augmentation(augmentation)
        self.keep_contempt, self.extra_aus, self.last_frames = keep_contempt, extra_aus, last_frames
        self.neutral_first_frame, self.au_only_sequences = neutral_first_frame, au_only_sequences
        self.folds, self.val_fraction, self.split_seed = folds, val_fraction, split_seed
        self.num_folds = folds  # the instance's fold count (the class says the default)

    def tasks(self) -> tuple[TaskSpec, ...]:
        extras = sorted({a for s in self.sequences() for a in (s.aus or ()) if a not in ACTION_UNITS}) if self.extra_aus else []
        return expression_task(("contempt",) if self.keep_contempt else ()), au_task(extras)

    def sequences(self) -> list[Recording]:
        """Every sequence with an emotion label (and, with ``au_only_sequences``, every FACS-coded one)."""
        return self.memo("sequences", self.read_sequences)

    def read_sequences(self) -> list[Recording]:
        root = self.root()
        self.require(root, [IMAGES, EMOTION, FACS])
        out = []
        for folder in sorted(p for p in (root / IMAGES).glob("S*/*") if p.is_dir()):
            subject, seq = folder.parent.name, folder.name
            frames = tuple(str(p.relative_to(root)) for p in sorted(folder.glob("*.png")))
            emotion_file = only_file(root / EMOTION / subject / seq, "_emotion.txt")
            facs_file = only_file(root / FACS / subject / seq, "_facs.txt")
            emotion = int(read_number_file(emotion_file)[0][0]) if emotion_file else None
            if emotion is not None and emotion not in CODES:
                raise ValueError(f"{emotion_file}: emotion codes are 0..7, got {emotion}")
            aus = tuple(int(row[0]) for row in read_number_file(facs_file)) if facs_file else None
            if frames and (emotion is not None or (self.au_only_sequences and aus is not None)):
                out.append(Recording(subject, frames, emotion, aus))
        if not out:
            raise MissingDataError(f"db 'ckplus': no labelled sequence under {root}; expected {self.layout}")
        return out

    def read_table(self) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
        """(frame files, class index, (n, M) AUs with NaN missing, subject) of the labelled frames."""
        expression, au = self.tasks()
        extras = [int(a[2:]) for a in au.labels[len(ACTION_UNITS):]]
        files, codes, rows, subjects = [], [], [], []
        for s in self.sequences():
            name = CODES[s.emotion] if s.emotion is not None else None
            code = expression.labels.index(name) if name in expression.labels else -1
            coded = au_matrix({a: np.array([float(a in s.aus)]) for a in (*ACTION_UNITS, *extras)}, 1, extras)[0] \
                if s.aus is not None else np.full(au.num_outputs, np.nan)
            labelled = s.frames[-self.last_frames:]
            if self.neutral_first_frame and s.emotion is not None and len(s.frames) > len(labelled):
                files.append(s.frames[0])
                codes.append(EXPRESSIONS.index("neutral"))
                rows.append(np.full(au.num_outputs, np.nan))
                subjects.append(s.subject)
            for frame in labelled:
                files.append(frame)
                codes.append(code)
                rows.append(coded)
                subjects.append(s.subject)
        return files, np.array(codes, dtype=np.int64), np.array(rows, dtype=float), subjects

    def read_labels(self) -> Labels:
        files, codes, rows, _ = self.memo("table", self.read_table)
        targets, masks = {}, {}
        targets[EXPRESSION], masks[EXPRESSION] = class_labels(codes)
        targets[AU], masks[AU] = attribute_labels(rows)
        return Labels(self.scan(self.root(), files), targets, masks)

    def subject_folds(self) -> dict[str, int]:
        """Subject -> fold: a seeded shuffle of the subjects dealt round-robin into ``folds`` folds."""
        subjects = sorted({s.subject for s in self.sequences()})
        if len(subjects) < self.folds:
            raise ValueError(f"db 'ckplus': {len(subjects)} subjects cannot fill folds={self.folds}; lower folds")
        order = np.random.default_rng(self.split_seed).permutation(len(subjects))
        return {subjects[i]: rank % self.folds for rank, i in enumerate(order)}

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val (held-out training subjects), 2 = test (the subjects of ``fold``)."""
        assert fold is not None, "check_fold rejects a missing fold"
        assignment = self.subject_folds()
        subjects = self.memo("table", self.read_table)[3]
        training = sorted(s for s, f in assignment.items() if f != fold)
        order = np.random.default_rng([self.split_seed, fold]).permutation(len(training))
        held = {training[i] for i in order[: max(1, round(self.val_fraction * len(training)))]}
        return np.array([2 if assignment[s] == fold else (1 if s in held else 0) for s in subjects], dtype=np.int64)
