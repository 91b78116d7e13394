"""Smoke tests on the real copies in ``<repo>/../shared/data`` (or ``$MTLBENCH_SHARED_DATA``); skipped when absent.

Nothing is copied from there: the adapters read it in place, and the decoded cache goes to a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datasets.cad import ClothingAttributes
from datasets.celeba import CelebA
from tests.conftest import REPO

SHARED_DATA = Path(os.environ.get("MTLBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))

pytestmark = pytest.mark.realdata


def data_root(name: str) -> Path:
    root = SHARED_DATA / name
    if not root.is_dir():
        pytest.skip(f"real {name} data not found at {root} (set MTLBENCH_SHARED_DATA to the folder holding {name}/)")
    return root


def test_cad_release(tmp_path):
    db = ClothingAttributes(data_root=str(data_root("cad")), cache_dir=str(tmp_path))
    labels = db.labels()
    assert len(labels) == 1856 and labels.source.files[0].endswith("images/000001.jpg")
    category = labels.targets["category"].numpy()
    # counts per category in category_GT.mat (shirt .. dress) and images without a category
    assert np.bincount(category[category >= 0], minlength=7).tolist() == [134, 88, 108, 220, 232, 62, 260]
    assert int((category == -1).sum()) == 752
    attributes = labels.masks["attributes"].numpy()
    assert attributes.shape == (1856, 23) and 0.8 < attributes.mean() < 1.0
    necktie = labels.targets["attributes"][:, 0].numpy()[attributes[:, 0]]
    assert int(necktie.sum()) == 211 and len(necktie) == 1739  # 2 = has necktie; 117 NaN
    sizes = [len(db.split(s, 0, 24)) for s in ("train", "val", "test")]
    assert sum(sizes) == 1856 and sizes[2] == 928
    sample = db.split("test", 0, 24)[0]["input"]
    assert sample.shape == (3, 24, 24) and -1.0 <= float(sample.min()) < float(sample.max()) <= 1.0


def test_celeba_subset(tmp_path):
    db = CelebA(data_root=str(data_root("celeba")), cache_dir=str(tmp_path))
    identity, attributes = db.tasks()
    assert attributes.num_outputs == 40 and attributes.labels[0] == "5_o_Clock_Shadow"
    everyone = CelebA(data_root=str(data_root("celeba")), min_images=1, cache_dir="off")
    assert len(everyone.labels()) == 5879 and everyone.tasks()[0].num_outputs == 298
    assert CelebA(data_root=str(data_root("celeba")), min_images=20, cache_dir="off").tasks()[0].num_outputs == 171
    splits = {s: db.split(s, None, 32) for s in ("train", "val", "test")}
    for s in ("val", "test"):  # subject-dependent: every kept identity is seen in every split
        assert len(set(splits[s].targets["identity"].tolist())) == identity.num_outputs
    assert abs(len(splits["train"]) / len(db.labels()) - 0.8) < 0.01
    sample = splits["val"][0]["input"]
    assert sample.shape == (3, 32, 32) and float(sample.std()) > 0.05
