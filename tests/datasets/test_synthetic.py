"""The built-in synthetic db: shapes, determinism, annotation plan, the known p(attribute | class)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.synthetic import BOUND, INDEPENDENT, NOISE, SyntheticDb, plan_annotations

SMALL = dict(n_train=300, n_val=60, n_test=60, image_size=24)


def test_tasks_splits_and_shapes():
    db = SyntheticDb(**SMALL, n_classes=8, n_attributes=10, n_image_noise=3)
    classes, attributes = db.tasks()
    assert classes.kind == "multiclass" and classes.num_outputs == 8
    assert attributes.kind == "attributes" and attributes.num_outputs == 10
    for split, n in (("train", 300), ("val", 60), ("test", 60)):
        data = db.split(split)
        assert len(data) == n
        sample = data[0]
        assert sample["input"].shape == (3, 24, 24) and sample["input"].dtype == torch.float32
        assert sample["targets"]["attributes"].shape == (10,) and sample["masks"]["attributes"].dtype == torch.bool
    assert db.relatedness().shape == (8, 10)
    assert set(db.split("test").targets["classes"].tolist()) <= set(range(8))


def test_same_options_same_data_other_seed_other_data():
    a, b = SyntheticDb(**SMALL).split("train"), SyntheticDb(**SMALL).split("train")
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets["classes"], b.targets["classes"])
    c = SyntheticDb(**SMALL, data_seed=1).split("train")
    assert not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("overlap, ratio", [(0.0, "1:10"), (0.0, "1:1"), (0.05, "1:4"), (0.5, "1:1"), (1.0, "1:1")])
def test_requested_overlap_and_ratio(overlap, ratio):
    db = SyntheticDb(**SMALL, overlap=overlap, ratio=ratio)
    train = db.split("train")
    cls = train.masks["classes"].numpy()
    att = train.masks["attributes"].numpy().all(axis=1)
    assert (train.masks["attributes"].numpy().any(axis=1) == att).all(), "an image has all attributes or none"
    both = (cls & att).sum()
    assert both == round(overlap * 300)
    a, b = (float(x) for x in ratio.split(":"))
    assert abs(cls.sum() / att.sum() - a / b) < 0.02
    assert (train.targets["classes"].numpy()[~cls] == -1).all(), "a missing class label is -1"
    for split in ("val", "test"):  # evaluation splits are fully annotated
        assert db.split(split).masks["classes"].all() and db.split(split).masks["attributes"].all()


def test_label_fraction_leaves_images_unannotated():
    train = SyntheticDb(**SMALL, label_fraction=0.5, overlap=0.2, ratio="1:1").split("train")
    annotated = train.masks["classes"] | train.masks["attributes"].any(dim=1)
    assert int(annotated.sum()) == 150
    assert len(train.annotated(["classes"])) == int(train.masks["classes"].sum())


def test_impossible_overlap_is_a_clear_error():
    with pytest.raises(ValueError, match="overlap=0.5 is impossible with ratio=1:10"):
        plan_annotations(100, 1.0, 0.5, "1:10")
    with pytest.raises(ValueError, match="ratio must look like"):
        plan_annotations(100, 1.0, 0.0, "ten")
    with pytest.raises(ValueError, match="n_classes must be in 2..12"):
        SyntheticDb(n_classes=13)


def test_relatedness_by_kind_and_attributes_follow_it():
    db = SyntheticDb(n_train=4000, n_val=10, n_test=10, image_size=8, overlap=1.0, ratio="1:1")
    p, kinds = db.relatedness(), db.attribute_kinds()
    for j, kind in enumerate(kinds):
        if kind == BOUND:
            assert set(np.round(p[:, j], 2)) == {0.08, 0.92}
        if kind in (INDEPENDENT, NOISE):
            assert (p[:, j] == 0.5).all()
    train = db.split("train")
    cls, att = train.targets["classes"].numpy(), train.targets["attributes"].numpy()
    empirical = np.stack([att[cls == c].mean(axis=0) for c in range(db.n_classes)])
    assert np.abs(empirical - p).max() < 0.08  # ~650 images per class: 3 standard errors


def test_label_noise_touches_training_labels_only():
    clean, noisy = SyntheticDb(**SMALL, overlap=1.0, ratio="1:1"), SyntheticDb(**SMALL, overlap=1.0, ratio="1:1", label_noise=0.3)
    assert torch.equal(clean.split("test").targets["classes"], noisy.split("test").targets["classes"])
    flipped = (clean.split("train").targets["classes"] != noisy.split("train").targets["classes"]).float().mean()
    assert 0.2 < float(flipped) < 0.4


def test_images_depend_on_class_and_attributes():
    """A linear probe on raw pixels beats chance: the labels are visible in the images."""
    db = SyntheticDb(n_train=600, n_val=10, n_test=10, image_size=16, overlap=1.0, ratio="1:1")
    train = db.split("train")
    x = train.inputs.flatten(1).numpy()
    red = train.targets["attributes"][:, db.attribute_names().index("red")].numpy()
    red_channel = x[:, : 16 * 16].mean(axis=1) - x[:, 2 * 16 * 16:].mean(axis=1)
    assert red_channel[red == 1].mean() > red_channel[red == 0].mean() + 0.1
