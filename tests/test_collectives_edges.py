"""benchmark/collectives.py at its edges: alone, ``as_global_mean`` hands back the local mean itself (no
multiplication, so not even an infinite or NaN mean changes); under K processes a process's share when no
process has an entry is 0, not 0/0."""

from __future__ import annotations

import pytest
import torch

import benchmark.collectives as collectives
from benchmark.collectives import as_global_mean


@pytest.mark.parametrize("count", [0, 3])
@pytest.mark.parametrize("value", [2.5, float("inf")])
def test_alone_the_local_mean_is_returned_itself(value: float, count: int) -> None:
    local = torch.tensor(value, requires_grad=True)
    assert as_global_mean(local, count) is local  # bit for bit: no factor applied, no graph node added


def two_processes(monkeypatch: pytest.MonkeyPatch, other_count: float) -> None:
    """Pretend to be one of 2 processes whose partner holds ``other_count`` entries."""
    monkeypatch.setattr(collectives, "world_size", lambda: 2)
    monkeypatch.setattr(collectives, "global_count",
                        lambda count: count.detach().to(torch.float64) + other_count)


def test_a_share_when_no_process_has_an_entry_is_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    two_processes(monkeypatch, other_count=0.0)
    share = as_global_mean(torch.tensor(0.0), 0)  # a masked mean over nothing, made 0 by the loss
    assert share.item() == 0.0  # 0 * 2 / max(0, 1), not 0 / 0


def test_a_share_is_weighted_by_the_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    two_processes(monkeypatch, other_count=1.0)
    share = as_global_mean(torch.tensor(4.0), 3)  # 3 of the 4 global entries here, mean 4
    assert share.item() == pytest.approx(4.0 * 3 * 2 / 4)  # summed with the partner's share and halved: the mean
