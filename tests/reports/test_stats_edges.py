"""Edges of reports/stats.py that the table tests do not reach (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import dataclasses

import pytest

from reports.stats import Stat, paired_test, spread


def test_spread_of_two_values_is_defined() -> None:
    """Two seeds have a spread; only a single value has none."""
    assert spread([1.0, 3.0], "std") == pytest.approx(2 ** 0.5)
    assert spread([1.0, 3.0], "half_range") == pytest.approx(1.0)


def test_stat_defaults_and_immutability() -> None:
    """A bare Stat is a higher-is-better, non-primary, non-reference cell, and cannot be changed."""
    stat = Stat("classes", "accuracy", values=(0.5,), deltas=(-0.1,))
    assert stat.higher_is_better is True and stat.primary is False and stat.is_reference is False
    assert stat.worse is True and stat.p_value is None and stat.notes == () and stat.unit == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        stat.p_value = 0.01  # type: ignore[misc]


def test_a_p_value_equal_to_alpha_is_not_significant() -> None:
    assert Stat("t", "m", p_value=0.05).significant(0.05) is False
    assert Stat("t", "m", p_value=0.049).significant(0.05) is True


def test_identical_differences_are_judged_relative_to_their_size() -> None:
    """Differences that agree to 1e-12 of their magnitude (at least 1e-12 absolute) count as identical."""
    why = "paired test undefined: the differences to single-task are identical in every run"
    assert paired_test([1000.0, 1000.0, 1000.0 + 1e-10]) == (None, why)  # 1e-10 < 1e-12 * 1000
    assert paired_test([0.01, 0.01, 0.01]) == (None, why)
    assert paired_test([0.5, 0.5, 0.5 + 7e-13]) == (None, why)  # below the floor of 1e-12, not 1e-12 * 0.5
    assert paired_test([0.0, 0.0, 1e-12]) == (None, why)  # the bound itself counts as identical
    # just above the absolute floor of 1e-12 for differences below 1: tested, not "identical"
    p, note = paired_test([0.5, 0.5, 0.5 + 1.5e-12])
    assert p is not None and note == ""
