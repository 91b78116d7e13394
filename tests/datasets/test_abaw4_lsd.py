"""``abaw4_lsd`` on a fixture of the release: expression folders (a misspelt one too), synthetic train, real val/test."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.affect_tables import EXPRESSIONS
from datasets.abaw4_lsd import ABAW4LSD
from datasets.files import MissingDataError
from tests.datasets.affect_fixtures import LSD_FOLDERS, abaw4_lsd_tree
from tests.datasets.fixture_trees import grey


def test_folders_classes_and_splits(tmp_path):
    root = abaw4_lsd_tree(tmp_path / "lsd")
    db = ABAW4LSD(data_root=str(root), cache_dir="off")
    (task,) = db.tasks()
    assert task.labels == EXPRESSIONS and task.primary == "f1_macro"
    labels = db.labels()
    names = [EXPRESSIONS[c] for c in labels.targets["expression"].tolist()]
    assert "neutral" not in names and set(names) == set(EXPRESSIONS) - {"neutral"}
    angere = [i for i, f in enumerate(labels.source.files) if "/ANGERE/" in f]
    assert len(angere) == 3 and all(names[i] == "anger" for i in angere), "the release's ANGERE folder is anger"
    train = db.split("train", None, 8)
    assert all(labels.source.files[r].startswith("training_set_synthetic_images/") for r in train.rows)
    val, test = db.split("val", None, 8), db.split("test", None, 8)
    assert len(train) == 18 and len(val) == len(test) == 12
    for split in (val, test):  # the real images, halved within each class
        assert all(labels.source.files[r].startswith("validation_set_real_images/") for r in split.rows)
        assert np.bincount(split.targets["expression"].numpy(), minlength=7)[1:].tolist() == [2] * 6
    code = int(train.targets["expression"][0])  # anger..surprise = 1..6; the fixture greys folder c as grey(c)
    assert train[0]["input"].mean().item() == pytest.approx(grey(code - 1) / 127.5 - 1, abs=0.03)
    assert len(LSD_FOLDERS) == 6


def test_unknown_and_missing_folders_are_named(tmp_path):
    root = abaw4_lsd_tree(tmp_path / "lsd")
    (root / "training_set_synthetic_images" / "BORED").mkdir()
    with pytest.raises(ValueError, match="BORED: not an expression folder"):
        ABAW4LSD(data_root=str(root)).labels()
    (root / "training_set_synthetic_images" / "BORED").rmdir()
    (root / "validation_set_real_images").rename(root / "real")
    with pytest.raises(MissingDataError, match="validation_set_real_images"):
        ABAW4LSD(data_root=str(root)).labels()
