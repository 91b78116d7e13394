"""Aff-Wild2's validation videos (found by mutation testing, docs/mutation.md): round(val_fraction x training
videos) of them, at least one, held out of the official training videos; the rest train."""

from __future__ import annotations

import pytest

from datasets.affwild2 import AffWild2
from tests.datasets.affect_fixtures import affwild2_tree


@pytest.mark.parametrize("val_fraction, expected", [(0.1, 1), (0.5, 2)])  # 4 training videos
def test_val_holds_out_a_share_of_the_training_videos(tmp_path, val_fraction: float, expected: int) -> None:
    db = AffWild2(data_root=str(affwild2_tree(tmp_path / "aw")), cache_dir="off", val_fraction=val_fraction)
    groups = db.memo("table", db.read_table)[3]
    parts = db.parts()
    videos = {k: {g for g, p in zip(groups, parts) if p == k} for k in (0, 1, 2)}
    assert len(videos[1]) == expected and len(videos[0]) == 4 - expected and len(videos[2]) == 2
    assert not videos[0] & videos[1]


def test_a_single_training_video_trains_and_two_give_one_to_val(tmp_path) -> None:
    """With one training video there is no val (it must train); with two, one is held out."""
    for videos, train, val in (({"v1", "v3", "v4"}, 1, 0), ({"v1", "v5", "v3", "v4"}, 1, 1)):
        root = affwild2_tree(tmp_path / f"aw{len(videos)}", videos=videos)
        db = AffWild2(data_root=str(root), cache_dir="off", val_fraction=0.1)
        groups = db.memo("table", db.read_table)[3]
        parts = db.parts()
        held = {k: {g for g, p in zip(groups, parts) if p == k} for k in (0, 1, 2)}
        assert (len(held[0]), len(held[1]), len(held[2])) == (train, val, 2)
