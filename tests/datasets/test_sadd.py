"""``sadd`` (Shoes) from its manifest: tasks, type/attribute decoding, missing values, split, errors."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.files import MissingDataError
from datasets.sadd import ATTRIBUTES, TYPES, Shoes
from tests.datasets.fixture_trees import sadd_tree


@pytest.fixture
def rows(tmp_path):
    return sadd_tree(tmp_path / "data")


def open_db(root, **options) -> Shoes:
    return Shoes(data_root=str(root), cache_dir="off", **options)


def test_tasks_and_manifest_decoding(rows, tmp_path):
    db = open_db(tmp_path / "data")
    assert db.tasks()[0].labels == TYPES and db.tasks()[1].labels == ATTRIBUTES
    labels = db.labels()
    for i, row in enumerate(rows):
        expected_type = TYPES.index(row["image"].split("/")[1]) if row["type"] else -1  # "Athletic Shoes" matches
        assert labels.targets["type"][i] == expected_type and labels.masks["type"][i] == (expected_type >= 0)
        for j, name in enumerate(ATTRIBUTES):
            assert labels.masks["attributes"][i, j] == (row[name] != "")
            assert labels.targets["attributes"][i, j] == (1.0 if row[name] == "1" else 0.0)


def test_seeded_stratified_split(rows, tmp_path):
    db = open_db(tmp_path / "data", train_fraction=0.5, val_fraction=0.2)
    splits = {s: db.split(s, None, 8) for s in ("train", "val", "test")}
    sizes = {s: len(d) for s, d in splits.items()}
    assert sum(sizes.values()) == 40 and sizes["test"] == 20 and sizes["val"] == 4
    all_rows = np.concatenate([d.rows for d in splits.values()])
    assert sorted(all_rows.tolist()) == list(range(40))
    again = open_db(tmp_path / "data", train_fraction=0.5, val_fraction=0.2).split("test", None, 8)
    assert (again.rows == splits["test"].rows).all()
    assert set(open_db(tmp_path / "data", split_seed=1).split("test", None, 8).rows) != set(splits["test"].rows)
    assert splits["train"][0]["input"].shape == (3, 8, 8)


def test_default_split_follows_the_paper_ratio(rows, tmp_path):
    sizes = [len(open_db(tmp_path / "data").split(s, None, 8)) for s in ("train", "val", "test")]
    assert abs(sizes[2] / 40 - 7.3 / 14.7) < 0.05


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(",sporty,", ",sportiness,"), "missing column\\(s\\) \\['sporty'\\]"),
    (lambda t: t.replace("Boots", "Sandals", 1), "unknown shoe type\\(s\\) \\['sandals'\\]"),
    (lambda t: t.replace(",1\n", ",yes\n", 1), "must hold 1, 0 or nothing"),
])
def test_bad_manifests_are_clear_errors(rows, tmp_path, edit, message):
    path = tmp_path / "data" / "manifest.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError, match=message):
        open_db(tmp_path / "data").labels()


def test_missing_manifest_and_images_are_named(rows, tmp_path):
    with pytest.raises(MissingDataError, match=r"other.csv  \(missing\)"):
        open_db(tmp_path / "data", manifest="other.csv").labels()
    (tmp_path / "data" / rows[5]["image"]).unlink()
    with pytest.raises(MissingDataError, match="1 of 40 image files"):
        open_db(tmp_path / "data").labels()
