"""``affwild2`` on ABAW-layout fixtures: 1-based frames, -1, faceless frames, _left/_right, video-level splits."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.affect_tables import ACTION_UNITS, EXPRESSIONS
from datasets.affwild2 import AffWild2, video_group
from datasets.files import MissingDataError
from tests.datasets.affect_fixtures import AFFWILD2_FILES, affwild2_tree
from tests.datasets.fixture_trees import grey

AFFWILD2_AUS = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
ABAW_CLASSES = (*EXPRESSIONS, "other")  # the ABAW header order is the canonical one, then Other


def frame_labels(db: AffWild2) -> dict[tuple[str, int], tuple[int, np.ndarray, np.ndarray]]:
    """(video, k) -> (class index, AU targets, AU mask), read back from the db's labels."""
    labels = db.labels()
    out = {}
    for row, name in enumerate(labels.source.files):
        _, video, frame = name.split("/")
        out[(video, int(frame[:-4]))] = (int(labels.targets["expression"][row]), labels.targets["au"][row].numpy(),
                                         labels.masks["au"][row].numpy())
    return out


@pytest.mark.parametrize("naming", ["old", "new"])
def test_frames_map_one_based_and_minus_one_is_missing(tmp_path, naming):
    root = affwild2_tree(tmp_path / "aw", naming)
    db = AffWild2(data_root=str(root), cache_dir="off")
    frames = frame_labels(db)
    # v1's EXPR lines 4 4 -1 7 0 1: frame 1 happiness, frame 3 unannotated, frame 4 other; frame 3's image is missing
    assert frames[("v1", 1)][0] == EXPRESSIONS.index("happiness")
    assert frames[("v1", 4)][0] == ABAW_CLASSES.index("other") and frames[("v1", 5)][0] == EXPRESSIONS.index("neutral")
    assert ("v1", 2) not in frames, "an annotated frame without an image (no face) is skipped"
    assert ("v1", 3) in frames and frames[("v1", 3)][0] == -1, "EXPR -1 is missing, the frame stays for its AUs"
    assert not frames[("v1", 4)][2].any(), "an AU line of -1s is missing"
    au = frames[("v1", 1)]
    assert [au[1][ACTION_UNITS.index(a)] for a in AFFWILD2_AUS] == [1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0]
    assert au[2].sum() == 12 and not au[2][[ACTION_UNITS.index(a) for a in (5, 9, 11, 17, 20)]].any()
    test = db.split("test", None, 8)
    for i in range(len(test)):
        name = db.labels().source.files[int(test.rows[i])]
        k = int(name[-9:-4])
        assert test[i]["input"].mean().item() == pytest.approx(grey(k) / 127.5 - 1, abs=0.03), "line k is frame k"


def test_left_and_right_faces_are_two_videos_of_one_group(tmp_path):
    root = affwild2_tree(tmp_path / "aw")
    db = AffWild2(data_root=str(root), cache_dir="off")
    frames = frame_labels(db)
    assert frames[("v2_left", 1)][0] == EXPRESSIONS.index("surprise") and frames[("v2_right", 1)][0] == EXPRESSIONS.index("anger")
    assert video_group("v2_left") == video_group("v2_right") == "v2" and video_group("v1") == "v1"
    for seed in range(6):
        db = AffWild2(data_root=str(root), cache_dir="off", split_seed=seed)
        parts = db.parts()
        files = db.labels().source.files
        sides = {parts[i] for i, f in enumerate(files) if "/v2_" in f}
        assert len(sides) == 1, "both faces of a video on one side of the split"


def test_video_level_splits_and_official_validation_as_test(tmp_path):
    root = affwild2_tree(tmp_path / "aw")
    db = AffWild2(data_root=str(root), cache_dir="off", val_fraction=0.3)
    files, parts = db.labels().source.files, db.parts()
    by_video: dict[str, set[int]] = {}
    for f, p in zip(files, parts):
        by_video.setdefault(video_group(f.split("/")[1]), set()).add(int(p))
    assert all(len(p) == 1 for p in by_video.values()), "frames of one video never on two sides"
    assert by_video["v3"] == {2} and by_video["v4"] == {2}, "official validation videos are the test set"
    assert sum(p == {1} for p in by_video.values()) >= 1 and sum(p == {0} for p in by_video.values()) >= 1
    frames = frame_labels(db)
    assert not any(frames[("v4", k)][2].any() for k in range(1, 7)), "v4's AU labels come from a Train_Set file: dropped"
    assert frames[("v4", 1)][0] == EXPRESSIONS.index("surprise")


def test_tasks_metrics_priors_and_other_as_an_option(tmp_path):
    root = affwild2_tree(tmp_path / "aw")
    db = AffWild2(data_root=str(root), cache_dir="off")
    expression, au = db.tasks()
    assert expression.labels == ABAW_CLASSES and expression.primary == "f1_macro" and au.primary == "f1_mean"
    priors = db.priors()
    assert priors["domain"].shape == (8, 17) and not priors["domain"][-1].any() and db.binary_priors == {"domain"}
    dropped = AffWild2(data_root=str(root), cache_dir="off", keep_other=False)
    assert dropped.tasks()[0].labels == EXPRESSIONS
    frames = frame_labels(dropped)
    assert ("v1", 4) not in frames, "v1 frame 4 (other, AUs -1) is left with no label at all: dropped"
    assert frames[("v1", 1)][0] == EXPRESSIONS.index("happiness")
    every_other = AffWild2(data_root=str(root), cache_dir="off", frame_step=2)
    assert {int(f[-9:-4]) % 2 for f in every_other.labels().source.files} == {1}


def test_missing_annotations_and_bad_files_are_named(tmp_path):
    root = affwild2_tree(tmp_path / "aw", videos={"v1"})
    (root / "annotations" / "EXPR_Set" / "Train_Set").rename(root / "annotations" / "EXPR_Set" / "train")
    with pytest.raises(MissingDataError, match="no expression annotations.*EXPR_Set or EXPR_Classification_Challenge"):
        AffWild2(data_root=str(root)).labels()
    (root / "annotations" / "EXPR_Set" / "train").rename(root / "annotations" / "EXPR_Set" / "Train_Set")
    bad = root / "annotations" / "EXPR_Set" / "Train_Set" / "v1.txt"
    bad.write_text(bad.read_text() + "9\n")
    with pytest.raises(ValueError, match="v1.txt: codes must be -1..7"):
        AffWild2(data_root=str(root)).labels()
    assert len(AFFWILD2_FILES) == 10
