"""CK+'s validation subjects (found by mutation testing, docs/mutation.md): round(val_fraction x training
subjects) of them, at least one, held out of the training folds' subjects; the rest train."""

from __future__ import annotations

import pytest

from datasets.ckplus import CKPlus
from tests.datasets.affect_fixtures import ckplus_tree


@pytest.mark.parametrize("val_fraction, expected", [(0.3, 2), (0.01, 1)])  # 6 training subjects with folds=2
def test_val_holds_out_a_share_of_the_training_subjects(tmp_path, val_fraction: float, expected: int) -> None:
    root = tmp_path / "ck"
    ckplus_tree(root)
    db = CKPlus(data_root=str(root), cache_dir="off", folds=2, val_fraction=val_fraction)
    subjects = [f.split("/")[1] for f in db.labels().source.files]
    assert len(set(subjects)) == 12
    for fold in (0, 1):
        parts = db.parts(fold)
        by_part = {p: {s for q, s in zip(parts, subjects) if q == p} for p in (0, 1, 2)}
        assert len(by_part[2]) == 6 and len(by_part[1]) == expected and len(by_part[0]) == 6 - expected
        assert not by_part[0] & by_part[1] and not (by_part[0] | by_part[1]) & by_part[2]
