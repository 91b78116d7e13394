"""``affectnet`` on fixture trees of both release layouts: code mapping, dropped codes, boxes, splits, errors."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.affect_tables import EXPRESSIONS
from datasets.affectnet import AffectNet
from datasets.files import MissingDataError
from tests.datasets.affect_fixtures import affectnet_csv_tree, affectnet_npy_tree
from tests.datasets.fixture_trees import grey

#: AffectNet code -> canonical index: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger.
CANONICAL = {0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1}


@pytest.fixture
def csv_tree(tmp_path):
    return tmp_path / "affectnet", affectnet_csv_tree(tmp_path / "affectnet")


def test_code_mapping_and_dropped_codes(csv_tree):
    root, rows = csv_tree
    db = AffectNet(data_root=str(root), cache_dir="off")
    assert db.tasks()[0].labels == EXPRESSIONS and db.tasks()[0].primary == "accuracy"
    labels = db.labels()
    listed = rows["train"] + rows["val"]  # validation.csv has no header line: read all the same
    kept = [(path, code, box) for path, code, box in listed if code <= 6]
    assert len(labels) == len(kept)
    assert labels.source.files == tuple(p for p, _, _ in kept)
    assert labels.targets["expression"].tolist() == [CANONICAL[c] for _, c, _ in kept]
    assert np.array_equal(labels.source.boxes, np.array([b for _, _, b in kept])), "the face boxes crop the images"
    assert labels.masks["expression"].all() and db.priors() == {}


def test_contempt_as_an_option(csv_tree):
    root, rows = csv_tree
    db = AffectNet(data_root=str(root), cache_dir="off", keep_contempt=True, crop=False)
    assert db.tasks()[0].labels == (*EXPRESSIONS, "contempt")
    codes = [c for _, c, _ in rows["train"] + rows["val"] if c <= 7]
    assert db.labels().targets["expression"].tolist().count(7) == codes.count(7) > 0
    assert db.labels().source.boxes is None


def test_validation_list_is_the_test_set_and_validation_is_held_out(csv_tree):
    root, rows = csv_tree
    db = AffectNet(data_root=str(root), cache_dir="off")
    splits = {s: db.split(s, None, 8) for s in ("train", "val", "test")}
    files = {s: {db.labels().source.files[r] for r in d.rows} for s, d in splits.items()}
    assert files["test"] == {p for p, c, _ in rows["val"] if c <= 6}
    assert files["train"] | files["val"] == {p for p, c, _ in rows["train"] if c <= 6}
    assert not files["train"] & files["val"] and len(files["val"]) >= 1
    sample = splits["test"][0]
    row = int(splits["test"].rows[0])
    index = next(i for i, (p, _, _) in enumerate(rows["val"]) if p == db.labels().source.files[row])
    assert sample["input"].mean().item() == pytest.approx(grey(index) / 127.5 - 1, abs=0.03)


def test_newer_npy_layout(tmp_path):
    written = affectnet_npy_tree(tmp_path / "an")
    db = AffectNet(data_root=str(tmp_path / "an"), cache_dir="off")
    labels = db.labels()
    train = [(i, c) for i, c in written["train_set"] if c <= 6]
    test = [(i, c) for i, c in written["val_set"] if c <= 6]
    assert labels.source.files[: len(train)] == tuple(f"train_set/images/{i}.jpg" for i, _ in train), "ids in numeric order"
    assert labels.targets["expression"].tolist() == [CANONICAL[c] for _, c in train + test]
    assert labels.source.boxes is None
    assert len(db.split("test", None, 8)) == len(test)


def test_missing_release_lists_both_layouts(tmp_path, monkeypatch):
    monkeypatch.delenv("MTLBENCH_AFFECTNET_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="MTLBENCH_AFFECTNET_ROOT"):
        AffectNet().labels()
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="(?s)training.csv.*train_set/annotations"):
        AffectNet(data_root=str(tmp_path / "empty")).labels()
    root = tmp_path / "a"
    affectnet_csv_tree(root)
    (root / "Manually_Annotated_Images" / "100" / "train_0000.jpg").unlink()
    with pytest.raises(MissingDataError, match="1 of 42 image files"):
        AffectNet(data_root=str(root)).labels()
