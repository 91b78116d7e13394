"""``cub`` on a fixture tree in the release layout: tasks, attributes.txt in either place, certainty 1, boxes, split."""

from __future__ import annotations

import pytest

from datasets.cub import CUB
from datasets.files import MissingDataError
from tests.datasets.fixture_trees import CUB_ATTRIBUTES, CUB_CLASSES, cub_tree


@pytest.fixture
def tree(tmp_path):
    return cub_tree(tmp_path / "data")


def open_db(root, **options) -> CUB:
    return CUB(data_root=str(root), cache_dir="off", **options)


@pytest.mark.parametrize("beside", [False, True])
def test_tasks_read_attributes_txt_in_either_place(tmp_path, beside):
    cub_tree(tmp_path / "data", attributes_beside=beside)
    species, attributes = open_db(tmp_path / "data").tasks()
    assert species.labels == CUB_CLASSES and attributes.labels == CUB_ATTRIBUTES
    inner = open_db(tmp_path / "data" / "CUB_200_2011")  # the data root may also be CUB_200_2011 itself
    assert inner.tasks()[1].labels == CUB_ATTRIBUTES


def test_labels_and_the_not_visible_option(tree, tmp_path):
    root = tmp_path / "data"
    present, certainty = tree["present"], tree["certainty"]
    keep = open_db(root).labels()
    assert keep.targets["species"].tolist() == [i % 3 for i in range(18)]
    assert keep.masks["attributes"].all()  # the release's own reading: every label counts
    assert (keep.targets["attributes"].numpy() == present).all()
    missing = open_db(root, not_visible_as_missing=True).labels()
    assert (missing.masks["attributes"].numpy() == (certainty != 1)).all()
    visible = certainty != 1
    assert (missing.targets["attributes"].numpy()[visible] == present[visible]).all()
    assert (missing.targets["attributes"].numpy()[~visible] == 0).all(), "masked entries carry no negative label"


def test_bounding_boxes_crop_the_bird(tree, tmp_path):
    cropped = open_db(tmp_path / "data").split("test", None, 8)[0]["input"]
    assert cropped[2].min() > 0.95 and cropped[0].max() < -0.95  # only the blue right half
    whole = open_db(tmp_path / "data", crop=False).split("test", None, 8)[0]["input"]
    assert whole[0, :, 0].min() > 0.95 and whole[2, :, -1].min() > 0.95


def test_official_split_with_validation_from_training(tree, tmp_path):
    db = open_db(tmp_path / "data", val_fraction=0.25)
    rows = {s: set(db.split(s, None, 8).rows.tolist()) for s in ("train", "val", "test")}
    assert rows["test"] == set(range(12, 18))  # is_training_image = 0
    assert rows["train"] | rows["val"] == set(range(12)) and len(rows["val"]) == 3
    val_species = db.split("val", None, 8).targets["species"].tolist()
    assert sorted(val_species) == [0, 1, 2], "the hold-out is stratified by species"
    with pytest.raises(ValueError, match="has fixed splits"):
        db.split("train", 0)


def test_missing_files_are_named(tree, tmp_path):
    root = tmp_path / "data"
    (root / "CUB_200_2011" / "attributes" / "attributes.txt").unlink()
    with pytest.raises(MissingDataError, match="attributes.txt not found; looked in") as err:
        open_db(root).tasks()
    assert str(root / "attributes.txt") in str(err.value)
    (root / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    with pytest.raises(MissingDataError, match=r"CUB_200_2011/bounding_boxes.txt  \(missing\)"):
        open_db(root).labels()


def test_inconsistent_ids_are_errors(tree, tmp_path):
    labels = tmp_path / "data" / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text("\n".join(labels.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="image_class_labels.txt: no line for image id"):
        open_db(tmp_path / "data").labels()
