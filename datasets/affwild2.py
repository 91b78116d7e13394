"""``affwild2``: Aff-Wild2 expressions + action units per video frame (Kollias & Zafeiriou, BMVC 2019), ABAW layout."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datasets.affect_tables import ACTION_UNITS
from benchmark.tasks import TaskSpec
from datasets.affect import AU, EXPRESSION, AffectDb, au_matrix, au_task, canonical_expression, expression_task
from datasets.base import DBS
from datasets.emotionet import au_number
from datasets.filedb import Labels, attribute_labels, class_labels
from datasets.files import MissingDataError

log = logging.getLogger(__name__)

#: Annotation folders per task, older (ABAW 2020-21) and newer (ABAW 3-6) names; first found wins.
TASK_FOLDERS = {EXPRESSION: ("EXPR_Set", "EXPR_Classification_Challenge", "EXPR_Recognition_Challenge"),
                AU: ("AU_Set", "AU_Detection_Challenge")}
#: Official partitions: the test labels are not public, so the official validation set is our test set.
SETS = {"Train_Set": 0, "Validation_Set": 2}
SIDES = ("_left", "_right")  # a video with two annotated faces has one file (and one frame folder) per face


def video_group(video: str) -> str:
    """``"10-60-1280x720_right"`` -> ``"10-60-1280x720"``: both faces of a video stay on one side of a split."""
    for side in SIDES:
        if video.endswith(side):
            return video[: -len(side)]
    return video


@dataclass
class Frames:
    """Labels of one video's frames, row k-1 for frame k: class index (-1 = missing) and AUs (n, 17; NaN = missing)."""

    expression: np.ndarray
    au: np.ndarray

    def padded(self, n: int) -> Frames:
        """The labels of frames 1..n (frames past a file's end are missing)."""
        expression = np.full(n, -1, dtype=np.int64)
        au = np.full((n, self.au.shape[1]), np.nan)
        expression[: len(self.expression)], au[: len(self.au)] = self.expression, self.au
        return Frames(expression, au)


def read_expression_file(path: Path, classes: tuple[str, ...]) -> np.ndarray:
    """An EXPR file: a header naming the classes, then one code per frame (-1 = not annotated)."""
    with path.open() as f:
        header = [canonical_expression(h) for h in f.readline().strip().split(",")]
    if None in header:
        raise ValueError(f"{path}: header must name expressions (Neutral,Anger,...,Other), got {header}")
    codes = pd.read_csv(path, header=None, skiprows=1, dtype=np.int64).iloc[:, 0].to_numpy()
    if ((codes < -1) | (codes >= len(header))).any():
        raise ValueError(f"{path}: codes must be -1..{len(header) - 1}, found {sorted(set(codes.tolist()))[:8]}")
    lookup = np.array([classes.index(h) if h in classes else -1 for h in header] + [-1])  # code -1 -> index -1
    return lookup[codes]  # line k (after the header) is frame k


def read_au_file(path: Path) -> np.ndarray:
    """An AU file: a header ``AU1,AU2,...``, then one comma-separated 0/1 row per frame (-1 = not annotated)."""
    with path.open() as f:
        numbers = [au_number(h) for h in f.readline().strip().split(",")]
    if None in numbers:
        raise ValueError(f"{path}: header must name AUs (AU1,AU2,...), got {numbers}")
    values = pd.read_csv(path, header=None, skiprows=1, dtype=np.int64).to_numpy()
    if values.shape[1] != len(numbers) or not np.isin(values, (-1, 0, 1)).all():
        raise ValueError(f"{path}: expected {len(numbers)} values of 0, 1 or -1 per line")
    return au_matrix({a: np.where(values[:, j] < 0, np.nan, values[:, j]) for j, a in enumerate(numbers)}, len(values))


@DBS.register("affwild2")
class AffWild2(AffectDb):
    """Aff-Wild2 (ABAW): 7 expressions + "other" and 12 AUs per video frame; video-level splits.

    Kollias & Zafeiriou, "Expression, Affect, Action Unit Recognition: Aff-Wild2, Multi-Task Learning
    and ArcFace", BMVC 2019; the ABAW challenges' layout, as in Kollias, Sharmanska & Zafeiriou (AAAI-24,
    Tab. 2). One txt per video under the expression folder and the AU folder (``EXPR_Set`` / ``AU_Set``,
    or ``EXPR_Classification_Challenge`` / ``EXPR_Recognition_Challenge`` / ``AU_Detection_Challenge``),
    each with ``Train_Set/`` and ``Validation_Set/``: a header line, then line k (1-based) labels frame
    ``cropped_aligned/<video>/{k:05d}.jpg``; -1 = not annotated; frames without an image (no face found)
    are skipped. Two-face videos come as ``<video>_left`` / ``<video>_right``. The official validation
    videos are the test set (test labels are not public); validation videos are held out of training.
    Frames of one video (both faces) are never on two sides; a test video's labels that come from a
    Train_Set file of the other task are dropped, so each task's test set is its official one.
    Metrics: macro F1 (expressions), mean per-AU F1 (AUs).

    Args:
        data_root: the folder with ``cropped_aligned/`` and the annotation folders (at most two levels
            down, e.g. ``annotations/`` or ``6th_ABAW_Annotations/``); else ``$MTLBENCH_AFFWILD2_ROOT``.
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        augmentation: training augmentation (see :class:`~datasets.affect.AffectDb`).
        keep_other: keep "other" as an 8th class (False: frames labelled other lose their expression).
        images: the frame folder under the data root (``cropped_aligned``).
        frame_step: keep every n-th frame (neighbouring frames are near-duplicates); 1 keeps all.
        val_fraction: share of the training videos held out for model selection.
        split_seed: seed of that hold-out.
    """

    env_var = "MTLBENCH_AFFWILD2_ROOT"
    layout = ("cropped_aligned/<video>/00001.jpg ...",
              "[annotations/]EXPR_Set (or EXPR_*_Challenge)/{Train_Set,Validation_Set}/<video>.txt",
              "[annotations/]AU_Set (or AU_Detection_Challenge)/{Train_Set,Validation_Set}/<video>.txt")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 augmentation: str = "mixaugment", keep_other: bool = True, images: str = "cropped_aligned",
                 frame_step: int = 1, val_fraction: float = 0.1, split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < val_fraction < 1 or frame_step < 1:
            raise ValueError(f"db 'affwild2': need 0 < val_fraction < 1 and frame_step >= 1, got {val_fraction}, {frame_step}")
        self.augmentation = self.check_augmentation(augmentation)
        self.keep_other, self.images, self.frame_step = keep_other, images, frame_step
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.read_tasks: tuple[str, ...] = (EXPRESSION, AU)  # a pairing that uses one task reads only its files

    def tasks(self) -> tuple[TaskSpec, ...]:
        return expression_task(("other",) if self.keep_other else (), primary="f1_macro"), au_task(primary="f1_mean")

    def annotation_folder(self, task: str) -> Path:
        """The task's annotation folder, searched at most two levels below the data root."""
        root = self.root()
        for name in TASK_FOLDERS[task]:
            for pattern in (name, f"*/{name}", f"*/*/{name}"):
                found = sorted(p for p in root.glob(pattern) if (p / "Train_Set").is_dir())
                if found:
                    return found[0]
        raise MissingDataError(f"db 'affwild2': no {task} annotations under {root}; looked for a folder named "
                               f"{' or '.join(TASK_FOLDERS[task])} with Train_Set/ and Validation_Set/ (at most two "
                               f"levels down). Point --data-root (or {self.env_var}) at the Aff-Wild2 folder.")

    def read_videos(self) -> tuple[dict[str, Frames], dict[str, int]]:
        """Per video its frame labels, and per video group its split (0 = train, 2 = test), train labels of test videos dropped."""
        files: dict[tuple[str, str], tuple[Path, int]] = {}  # (task, video) -> (file, official set)
        for task in self.read_tasks:
            folder = self.annotation_folder(task)
            self.require(folder, list(SETS))
            for name, part in SETS.items():
                for path in sorted((folder / name).glob("*.txt")):
                    files[(task, path.stem)] = (path, part)
        official: dict[str, int] = {}
        for (_, video), (_, part) in files.items():
            official[video_group(video)] = max(official.get(video_group(video), 0), part)
        classes = self.tasks()[0].labels
        videos: dict[str, Frames] = {}
        for (task, video), (path, part) in files.items():
            if part != official[video_group(video)]:
                continue  # a Train_Set file of a test video: neither trained on nor tested
            frames = videos.setdefault(video, Frames(np.zeros(0, dtype=np.int64), np.zeros((0, len(ACTION_UNITS)))))
            if task == EXPRESSION:
                frames.expression = read_expression_file(path, classes)
            else:
                frames.au = read_au_file(path)
        return videos, official

    def read_table(self) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
        """(frame files, class index per frame, (n, 17) AUs, video group per frame), frames with images only."""
        videos, _ = self.memo("videos", self.read_videos)
        root = self.root()
        self.require(root, [self.images])
        files, codes, aus, groups, skipped = [], [], [], [], 0
        for video in sorted(videos):
            frames = videos[video].padded(max(len(videos[video].expression), len(videos[video].au)))
            folder = root / self.images / video
            present = set(os.listdir(folder)) if folder.is_dir() else set()
            annotated = (frames.expression >= 0) | ~np.isnan(frames.au).all(axis=1)
            annotated[np.arange(len(annotated)) % self.frame_step != 0] = False  # keeps frames 1, 1 + step, ...
            names = [f"{k + 1:05d}.jpg" for k in np.flatnonzero(annotated)]
            has_image = np.array([n in present for n in names], dtype=bool)
            skipped += int((~has_image).sum())
            rows = np.flatnonzero(annotated)[has_image]
            files += [f"{self.images}/{video}/{n}" for n, ok in zip(names, has_image) if ok]
            codes.append(frames.expression[rows])
            aus.append(frames.au[rows])
            groups += [video_group(video)] * len(rows)
        if skipped:
            log.info("affwild2: %d annotated frames have no image under %s (no face found) and are skipped",
                     skipped, root / self.images)
        if not files:
            raise MissingDataError(f"db 'affwild2': no annotated frame has an image under {root / self.images}/<video>/")
        return files, np.concatenate(codes), np.concatenate(aus), groups

    def read_labels(self) -> Labels:
        files, codes, aus, _ = self.memo("table", self.read_table)
        targets, masks = {}, {}
        targets[EXPRESSION], masks[EXPRESSION] = class_labels(codes)
        targets[AU], masks[AU] = attribute_labels(aus)
        return Labels(self.scan(self.root(), files), targets, masks)

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val (held-out training videos), 2 = test (official validation videos)."""
        _, official = self.memo("videos", self.read_videos)
        groups = self.memo("table", self.read_table)[3]
        present = set(groups)
        training = sorted(g for g, part in official.items() if part == 0 and g in present)
        order = np.random.default_rng(self.split_seed).permutation(len(training))
        n_val = max(1, round(self.val_fraction * len(training))) if len(training) > 1 else 0
        held = {training[i] for i in order[:n_val]}
        return np.array([official[g] if official[g] else (1 if g in held else 0) for g in groups], dtype=np.int64)
