"""A dataset's ``sample_weights`` become seeded weighted sampling with replacement in the training loader."""

from __future__ import annotations

import torch

from benchmark.data import make_loader
from datasets.base import TensorTaskDataset


def two_datasets(n_a: int = 10, n_b: int = 90) -> TensorTaskDataset:
    """Rows 0..n_a-1 from a small dataset (class task), the rest from a large one (attribute task)."""
    n = n_a + n_b
    cls = torch.where(torch.arange(n) < n_a, torch.tensor(1), torch.tensor(-1))
    attr_mask = (torch.arange(n) >= n_a)[:, None]
    return TensorTaskDataset(torch.zeros(n, 3, 2, 2), {"c": cls, "a": attr_mask.float()}, {"c": cls >= 0, "a": attr_mask})


def drawn(data: TensorTaskDataset, seed: int, epochs: int = 1, **kwargs) -> list[int]:
    loader = make_loader(data, 16, train=True, generator=torch.Generator().manual_seed(seed), workers=0, **kwargs)
    return [i for _ in range(epochs) for batch in loader for i in batch.index.tolist()]


def test_no_weights_is_a_plain_shuffle():
    data = two_datasets()
    assert sorted(drawn(data, 0)) == list(range(100))


def test_balanced_weights_draw_each_dataset_half_the_time_with_the_same_epoch_length():
    data = two_datasets()
    side = (torch.arange(100) >= 10).long()
    data.sample_weights = 1.0 / torch.bincount(side).double()[side]
    rows = drawn(data, 0, epochs=20)
    assert len(rows) == 20 * 100, "as many draws per epoch as samples"
    small = sum(r < 10 for r in rows) / len(rows)
    assert 0.45 < small < 0.55, f"the 10-image dataset is drawn {small:.2f} of the time, not 0.10"
    assert drawn(data, 3) == drawn(data, 3) and drawn(data, 3) != drawn(data, 4), "seeded by the run's generator"


def test_weights_follow_the_rows_kept_for_the_tasks():
    data = two_datasets()
    data.masks["a"][50:] = False  # rows 50.. carry no label: dropped from training
    data.sample_weights = torch.where(torch.arange(100) < 10, 0.0, 1.0).double()
    rows = drawn(data, 1, keep_tasks=["c", "a"])
    assert len(rows) == 50 and set(rows) <= set(range(10, 50)), "weights indexed like the kept rows"
