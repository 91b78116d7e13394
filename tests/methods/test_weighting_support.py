"""methods/weighting_support.py: which tasks a batch annotates, and the per-step seeds (found by mutation
testing, docs/mutation.md: its only tests were indirect, through the methods that use it)."""

from __future__ import annotations

import pytest
import torch

from benchmark.tasks import Batch
from methods.weighting_support import annotated_tasks, step_seed

# SplitMix64 (Steele, Lea & Flood, OOPSLA 2014; Vigna's splitmix64.c) seeded with 1234567: its first five outputs,
# the published reference values (also on Rosetta Code, "Pseudo-random numbers/Splitmix64").
SPLITMIX64_1234567 = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                      16408922859458223821]


@pytest.mark.parametrize("n, expected", list(enumerate(SPLITMIX64_1234567, start=1)))
def test_step_seed_is_splitmix64_of_seed_times_the_golden_gamma_plus_step_plus_one(n, expected):
    """step_seed(s, k) mixes the state s·γ + k + 1 (γ = 0x9E3779B97F4A7C15, mod 2^64) with SplitMix64's finaliser
    and keeps the top 63 bits (a valid torch seed). Output n of the reference generator seeded with 1234567 mixes
    1234567 + n·γ, which is step_seed(n, 1234566)."""
    assert step_seed(n, 1234566) == expected >> 1


def test_step_seed_wraps_at_64_bits_and_is_a_63_bit_seed():
    """Seeds and steps beyond 64 bits wrap as the 64-bit state does; every result fits a torch seed."""
    gamma = 0x9E3779B97F4A7C15
    # 1234567 + 1·γ reached from a seed 2^64 + 1 (wraps to 1) and from seed 0 with step γ + 1234566.
    assert step_seed(2**64 + 1, 1234566) == SPLITMIX64_1234567[0] >> 1
    assert step_seed(0, gamma + 1234566) == SPLITMIX64_1234567[0] >> 1
    seeds = [step_seed(s, k) for s in (0, 1, 2**63 - 1, 2**64 - 1) for k in (0, 1, 10**6)]
    assert all(0 <= x < 2**63 for x in seeds) and len(set(seeds)) == len(seeds)
    torch.Generator().manual_seed(max(seeds))  # accepted by torch


def _batch(classes: list[int], class_mask: list[bool], attributes: list[list[float]],
           attribute_mask: list[list[bool]]) -> Batch:
    n = len(classes)
    return Batch(inputs=torch.zeros(n, 1), index=torch.arange(n),
                 targets={"classes": torch.tensor(classes), "attributes": torch.tensor(attributes)},
                 masks={"classes": torch.tensor(class_mask), "attributes": torch.tensor(attribute_mask)})


@pytest.mark.parametrize("classes, class_mask, expected", [
    ([0, -1], [True, False], True),      # class 0 is a label like any other
    ([-1, -1], [True, True], False),     # a class target of -1 is "not annotated", whatever the mask says
    ([0, 2], [False, False], False),     # the mask is authoritative: unmasked rows do not count
    ([-1, 3], [True, True], True),
])
def test_a_class_task_is_annotated_where_its_mask_is_set_and_its_target_is_a_class(classes, class_mask, expected):
    batch = _batch(classes, class_mask, [[0.0, 1.0], [0.0, 0.0]], [[True, False], [False, False]])
    assert annotated_tasks(batch, ["classes", "attributes"]) == [expected, True]


@pytest.mark.parametrize("attribute_mask, expected", [
    ([[False, False], [False, False]], False),
    ([[False, False], [False, True]], True),   # one annotated entry, whose target is 0.0 (absent attribute)
])
def test_an_attribute_task_is_annotated_where_any_entry_is_masked_even_with_target_zero(attribute_mask, expected):
    batch = _batch([0, 1], [True, True], [[0.0, 0.0], [0.0, 0.0]], attribute_mask)
    assert annotated_tasks(batch, ["attributes", "classes"]) == [expected, True]
    assert annotated_tasks(batch, []) == []
