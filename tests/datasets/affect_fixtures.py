"""Tiny fixture trees in the release formats of the affect datasets (case study I).

Every image is a flat grey whose level encodes something the test can check (a row, a frame number),
decoded back through the adapters: ``level(i) = 10 * (i % 25)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.datasets.fixture_trees import grey, write_image

# ----- AffectNet -------------------------------------------------------------------------
AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def affectnet_csv_tree(root: Path, n_train: int = 44, n_val: int = 22) -> dict[str, list]:
    """The CSV release: codes cycle 0..10 (7 contempt, 8-10 not expressions); validation.csv without header."""
    lists, images = root / "Manually_Annotated_file_lists", root / "Manually_Annotated_Images"
    lists.mkdir(parents=True)
    out: dict[str, list] = {"train": [], "val": []}
    for split, n, name in (("train", n_train, "training.csv"), ("val", n_val, "validation.csv")):
        lines = [AFFECTNET_HEADER] if split == "train" else []  # some copies of validation.csv lack the header
        for i in range(n):
            code = i % 11
            path = f"{100 + i % 3}/{split}_{i:04d}.jpg"
            write_image(images / path, grey(i), (20, 16))
            lines.append(f"{path},2,1,{10 + i % 4},12,1.0;2.0;3.0,{code},0.1,-0.2")
            out[split].append((path, code, (2.0, 1.0, 10.0 + i % 4, 12.0)))
        (lists / name).write_text("\n".join(lines) + "\n")
    return out


def affectnet_npy_tree(root: Path, n_train: int = 24, n_val: int = 12) -> dict[str, list]:
    """The newer layout: <set>/images/<id>.jpg and <set>/annotations/<id>_exp.npy (the code as a string)."""
    out: dict[str, list] = {}
    for folder, n in (("train_set", n_train), ("val_set", n_val)):
        (root / folder / "annotations").mkdir(parents=True)
        out[folder] = []
        for i in range(n):
            code = (i * 5) % 9
            np.save(root / folder / "annotations" / f"{i}_exp.npy", np.array(str(code)))
            np.save(root / folder / "annotations" / f"{i}_val.npy", np.array("0.25"))
            write_image(root / folder / "images" / f"{i}.jpg", grey(i), (12, 12))
            out[folder].append((i, code))
    return out


# ----- RAF-DB ----------------------------------------------------------------------------
def rafdb_tree(root: Path, n_train: int = 28, n_test: int = 14, spelling: str = "list_patition_label.txt") -> list:
    """``basic/EmoLabel/<spelling>`` and ``basic/Image/aligned/<stem>_aligned.jpg``; codes cycle 1..7."""
    basic = root / "basic"
    (basic / "EmoLabel").mkdir(parents=True)
    rows, lines = [], []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(1, n + 1):
            name, code = f"{split}_{i:05d}.jpg", (i % 7) + 1
            write_image(basic / "Image" / "aligned" / f"{split}_{i:05d}_aligned.jpg", grey(len(rows)), (10, 10))
            lines.append(f"{name} {code}")
            rows.append((name, code))
    (basic / "EmoLabel" / spelling).write_text("\n".join(lines) + "\n")
    return rows


# ----- EmotioNet -------------------------------------------------------------------------
EMOTIONET_AUS = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26)


def emotionet_values(n: int, seed: int) -> np.ndarray:
    """(n, 11) AU codes 0 / 1 / 999 (about 15% unknown)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2, (n, len(EMOTIONET_AUS)))
    values[rng.random((n, len(EMOTIONET_AUS))) < 0.15] = 999
    return values


def emotionet_tree(root: Path, n_manual: int = 30, n_list: int = 20, missing: tuple[int, ...] = (3,)) -> dict:
    """The manual CSV (quoted ``'AU 1'`` headers, quoted URLs), one tab-separated list, and ``images/``.

    Manual image i is ``images/m{i}.jpg`` (absent for ``missing``); list rows are ``images/a{i}.jpg``,
    plus one row repeating manual image 0 (to be left out of training).
    """
    manual = emotionet_values(n_manual, 0)
    manual[5] = 999  # every AU unknown: the image carries nothing
    header = "URL,URL orig," + ",".join(f"'AU {a}'" for a in EMOTIONET_AUS)
    lines = [header]
    for i in range(n_manual):
        lines.append(f"'http://host.example/emo/f{i % 3}/m{i}.jpg',http://old.example/m{i}.jpg,"
                     + ",".join(str(v) for v in manual[i]))
        if i not in missing:
            write_image(root / "images" / f"m{i}.jpg", grey(i), (10, 10))
    (root / "EmotioNet_FACS_aws_2020_24600.csv").write_text("\n".join(lines) + "\n")
    automatic = emotionet_values(n_list, 1)
    rows = []
    for i in range(n_list):
        full = np.full(60, 999)
        full[np.array(EMOTIONET_AUS) - 1] = automatic[i]
        full[6] = 1  # AU7 is in the lists' 60 columns but not one of EmotioNet's 11: ignored
        rows.append("\t".join([f"http://host.example/auto/a{i}.jpg", f"http://old.example/a{i}.jpg", *map(str, full)]))
        write_image(root / "images" / f"a{i}.jpg", grey(i + 1), (10, 10))
    full = np.zeros(60, dtype=int)
    rows.append("\t".join(["http://host.example/emo/f0/m0.jpg", "http://old.example/m0.jpg", *map(str, full)]))
    (root / "lists").mkdir()
    (root / "lists" / "emotionet_01.txt").write_text("\n".join(rows) + "\n")
    return {"manual": manual, "automatic": automatic}


# ----- Aff-Wild2 -------------------------------------------------------------------------
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
AU_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
#: (task, set, video) -> per-frame lines after the header; -1 = not annotated.
AFFWILD2_FILES: dict[tuple[str, str, str], list[str]] = {
    ("EXPR", "Train_Set", "v1"): ["4", "4", "-1", "7", "0", "1"],
    ("AU", "Train_Set", "v1"): ["1,0,0,1,1,0,1,0,0,0,1,0"] * 3 + ["-1," * 11 + "-1"] + ["0,1,0,0,0,0,0,0,0,0,0,1"] * 2,
    ("EXPR", "Train_Set", "v2_left"): ["6", "6", "3", "3", "2", "5"],
    ("EXPR", "Train_Set", "v2_right"): ["1", "1", "1", "-1", "-1", "0"],
    ("AU", "Train_Set", "v5"): ["0,0,1,0,0,0,0,1,0,0,0,0"] * 6,
    ("AU", "Train_Set", "v6"): ["1,1,0,0,0,0,0,0,0,0,1,1"] * 6,
    ("EXPR", "Validation_Set", "v3"): ["0", "1", "2", "3", "4", "5"],
    ("AU", "Validation_Set", "v3"): ["0,0,0,0,0,0,1,0,0,0,1,0"] * 6,
    ("AU", "Train_Set", "v4"): ["1,1,1,1,1,1,1,1,1,1,1,1"] * 6,  # v4 is a test video (EXPR validation): dropped
    ("EXPR", "Validation_Set", "v4"): ["6", "6", "6", "5", "5", "5"],
}
AFFWILD2_NO_FACE = {("v1", 2)}  # annotated frames without an image (no face was found)


def affwild2_tree(root: Path, naming: str = "old", videos: set[str] | None = None) -> Path:
    """``cropped_aligned/<video>/{k:05d}.jpg`` (grey encodes k) and the annotation files, old or new names."""
    folders = ({"EXPR": "annotations/EXPR_Set", "AU": "annotations/AU_Set"} if naming == "old" else
               {"EXPR": "6th_ABAW_Annotations/EXPR_Recognition_Challenge",
                "AU": "6th_ABAW_Annotations/AU_Detection_Challenge"})
    for task in folders:
        for part in ("Train_Set", "Validation_Set"):
            (root / folders[task] / part).mkdir(parents=True, exist_ok=True)
    frames: dict[str, int] = {}
    for (task, part, video), lines in AFFWILD2_FILES.items():
        if videos is not None and video not in videos:
            continue
        header = EXPR_HEADER if task == "EXPR" else AU_HEADER
        (root / folders[task] / part / f"{video}.txt").write_text("\n".join([header, *lines]) + "\n")
        frames[video] = max(frames.get(video, 0), len(lines))
    for video, count in frames.items():
        for k in range(1, count + 1):
            if (video, k) not in AFFWILD2_NO_FACE:
                write_image(root / "cropped_aligned" / video / f"{k:05d}.jpg", grey(k), (8, 8))
    return root


# ----- ABAW4-LSD -------------------------------------------------------------------------
LSD_FOLDERS = ("ANGERE", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")  # ANGERE: as misspelt in a release


def abaw4_lsd_tree(root: Path, per_class_train: int = 3, per_class_real: int = 4) -> Path:
    for folder, n, names in (("training_set_synthetic_images", per_class_train, LSD_FOLDERS),
                             ("validation_set_real_images", per_class_real, ("ANGER", *LSD_FOLDERS[1:]))):
        for c, name in enumerate(names):
            for i in range(n):
                write_image(root / folder / name / f"{i:05d}.jpg", grey(c), (8, 8))
    return root


# ----- CK+ -------------------------------------------------------------------------------
def ck_number(value: float) -> str:
    return f"   {value:.7e}"


def ckplus_tree(root: Path, n_subjects: int = 12, frames: int = 5) -> dict[tuple[str, str], dict]:
    """Subjects S010.. with two sequences each; emotion codes cycle 1..7; one sequence per subject FACS-only.

    Returns {(subject, sequence): {"emotion": code or None, "aus": [..]}}; frame z's grey encodes z.
    """
    out = {}
    for s in range(n_subjects):
        subject = f"S{10 + s:03d}"
        for q, seq in enumerate(("001", "002")):
            folder = root / "cohn-kanade-images" / subject / seq
            for z in range(1, frames + 1):
                write_image(folder / f"{subject}_{seq}_{z:08d}.png", grey(z), (9, 7), fmt="PNG")
            last = f"{subject}_{seq}_{frames:08d}"
            aus = [12, 25, 6, 14] if q == 0 else [1, 2, 5, 27]
            facs = root / "FACS" / subject / seq
            facs.mkdir(parents=True)
            (facs / f"{last}_facs.txt").write_text("".join(f"{ck_number(a)}{ck_number(i % 5)}\n" for i, a in enumerate(aus)))
            emotion = None
            if q == 0:
                emotion = (s % 7) + 1
                (root / "Emotion" / subject / seq).mkdir(parents=True)
                (root / "Emotion" / subject / seq / f"{last}_emotion.txt").write_text(ck_number(emotion) + "\n")
            out[(subject, seq)] = {"emotion": emotion, "aus": aus}
    (root / "Emotion" / "S010" / "002").mkdir(parents=True, exist_ok=True)  # an empty label folder, as in the release
    return out
