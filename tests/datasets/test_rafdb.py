"""``rafdb`` on a fixture of the release: the misspelt label list, codes 1..7, prefix splits, aligned image names."""

from __future__ import annotations

import re

import pytest

from datasets.affect_tables import EXPRESSIONS
from datasets.files import MissingDataError
from datasets.rafdb import RAFDB
from tests.datasets.affect_fixtures import rafdb_tree
from tests.datasets.fixture_trees import grey

#: RAF-DB codes: 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral.
CANONICAL = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}


@pytest.mark.parametrize("spelling", ["list_patition_label.txt", "list_partition_label.txt"])
@pytest.mark.parametrize("below", [True, False])
def test_label_list_codes_and_images(tmp_path, spelling, below):
    rows = rafdb_tree(tmp_path / "raf", spelling=spelling)
    db = RAFDB(data_root=str(tmp_path / "raf" if below else tmp_path / "raf" / "basic"), cache_dir="off")
    labels = db.labels()
    assert labels.targets["expression"].tolist() == [EXPRESSIONS.index(CANONICAL[c]) for _, c in rows]
    assert labels.source.files[0] == "Image/aligned/train_00001_aligned.jpg"
    test = db.split("test", None, 8)
    names = {rows[r][0] for r in test.rows}
    assert names == {n for n, _ in rows if n.startswith("test_")}, "the split is the file name's prefix"
    row = int(test.rows[0])
    assert test[0]["input"].mean().item() == pytest.approx(grey(row) / 127.5 - 1, abs=0.03)


def test_validation_is_held_out_of_train_and_the_metric_is_mean_class_accuracy(tmp_path):
    rafdb_tree(tmp_path / "raf")
    db = RAFDB(data_root=str(tmp_path / "raf"), cache_dir="off", val_fraction=0.25)
    (task,) = db.tasks()
    assert task.primary == "mean_class_accuracy" and "accuracy" in task.metrics
    train, val = (set(db.split(s, None, 8).rows.tolist()) for s in ("train", "val"))
    assert not train & val and len(train) + len(val) == 28 and 5 <= len(val) <= 9


def test_bad_lines_and_missing_list_are_named(tmp_path):
    rafdb_tree(tmp_path / "raf")
    labels = tmp_path / "raf" / "basic" / "EmoLabel" / "list_patition_label.txt"
    labels.write_text(labels.read_text() + "val_00001.jpg 3\n")
    with pytest.raises(ValueError, match=re.escape("line 43: expected '<train|test>_NNNNN.jpg <1..7>', got 'val_00001.jpg'")):
        RAFDB(data_root=str(tmp_path / "raf")).labels()
    labels.unlink()
    with pytest.raises(MissingDataError, match="(?s)list_patition_label.txt.*list_partition_label.txt"):
        RAFDB(data_root=str(tmp_path / "raf")).labels()
