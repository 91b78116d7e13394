"""The split arithmetic of datasets/files.py at its edges (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.files import allocate, parse_fractions, stratified_parts


def test_equal_remainders_go_to_the_earlier_part_without_a_generator() -> None:
    assert allocate(1, (0.5, 0.5)) == [1, 0]
    assert allocate(4, (1, 1, 1)) == [2, 1, 1]
    assert allocate(5, (1, 1, 1)) == [2, 2, 1]


def test_equal_remainders_are_broken_at_random_with_a_generator() -> None:
    """Both parts win a tie over seeds: the tie-break is the generator's, not the order of the parts."""
    winners = {tuple(allocate(1, (0.5, 0.5), np.random.default_rng(seed))) for seed in range(20)}
    assert winners == {(1, 0), (0, 1)}


@pytest.mark.parametrize("text", ["0.5:0.5", "0.8:0.1:0.05:0.05", "0:0:0", "0.5:-0.1:0.6", "a:b:c", ""])
def test_parse_fractions_rejects_a_wrong_count_a_negative_part_or_a_zero_sum(text: str) -> None:
    with pytest.raises(ValueError, match="split_fractions must be 3 non-negative numbers"):
        parse_fractions(text, 3, "split_fractions")


def test_parse_fractions_accepts_a_zero_part() -> None:
    assert parse_fractions("0.9:0:0.1", 3, "split_fractions") == (0.9, 0.0, 0.1)


def test_stratified_parts_without_ties_keeps_every_stratum_in_proportion() -> None:
    strata = np.repeat([0, 1, 2], [10, 20, 30])
    parts = stratified_parts(strata, (0.8, 0.1, 0.1), np.random.default_rng(0))
    for value, size in ((0, 10), (1, 20), (2, 30)):
        counts = np.bincount(parts[strata == value], minlength=3)
        assert counts.tolist() == [size * 8 // 10, size // 10, size // 10]


def test_fractions_need_not_sum_to_one() -> None:
    """(8, 1, 1) is the same split as (0.8, 0.1, 0.1), also where rounding is carried across many small strata."""
    strata = np.repeat(np.arange(9), 3)
    scaled = stratified_parts(strata, (8, 1, 1), np.random.default_rng(5))
    unit = stratified_parts(strata, (0.8, 0.1, 0.1), np.random.default_rng(5))
    assert scaled.tolist() == unit.tolist()
    totals = np.bincount(unit, minlength=3)  # the carry keeps each total within one item of its share
    assert np.all(np.abs(totals - np.array([0.8, 0.1, 0.1]) * 27) < 1)
