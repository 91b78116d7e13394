"""AffectNet's validation share of the official training images (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.affectnet import AffectNet
from tests.datasets.affect_fixtures import affectnet_csv_tree


@pytest.mark.parametrize("val_fraction", [0.25, 0.5])
def test_val_is_val_fraction_of_the_official_training_images(tmp_path, val_fraction: float) -> None:
    affectnet_csv_tree(tmp_path / "an")
    db = AffectNet(data_root=str(tmp_path / "an"), cache_dir="off", val_fraction=val_fraction)
    train, val, test = np.bincount(db.parts(), minlength=3)
    assert test == 14 and train + val == 28  # the fixture: 28 training rows, 14 validation rows (our test)
    assert abs(val - val_fraction * 28) <= 1  # stratified by expression: rounding, up to one image
