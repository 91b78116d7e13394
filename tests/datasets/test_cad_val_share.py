"""CAD's validation share of each training half (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import pytest

from datasets.cad import ClothingAttributes
from tests.datasets.fixture_trees import CAD_N, cad_tree


@pytest.mark.parametrize("val_fraction", [0.25, 0.5])
def test_val_is_val_fraction_of_the_training_half(tmp_path, val_fraction: float) -> None:
    db = ClothingAttributes(data_root=str(cad_tree(tmp_path / "data")), cache_dir="off", val_fraction=val_fraction)
    for fold in (0, 1):
        train, val = (len(db.split(s, fold, 8).rows) for s in ("train", "val"))
        assert train + val == CAD_N // 2
        assert abs(val - val_fraction * CAD_N / 2) <= 1  # stratified by category: rounding, up to one image
