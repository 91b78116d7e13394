"""The affect relatedness tables against the paper's Table 1, written here in the paper's own notation.

Kollias, Sharmanska & Zafeiriou (AAAI-24), Table 1, lists per expression the prototypical action units of
Du, Tao & Martinez (PNAS 2014) and the observational ones with the fraction of people who showed them, and
next to them the p(AU | expression) the paper counted on Aff-Wild2. ``datasets/affect_tables.py`` holds the
same numbers as dictionaries; these tests read the printed form below independently and compare every entry,
so an edit of one number in either place fails here (a dmsca run on an affect db rests on these tables).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from datasets.affect_tables import (ACTION_UNITS, AFFWILD2_EMPIRICAL, DU_TAO_MARTINEZ, EXPRESSIONS,
                                    affect_affwild2_prior, affect_domain_prior, from_table)

# Du, Tao & Martinez: "prototypical | observational (share of people)".
PAPER_DU_TAO_MARTINEZ = """
happiness | AU12 AU25           | AU6 (51%)
sadness   | AU4 AU15            | AU1 (60%) AU6 (50%) AU11 (26%) AU17 (67%)
fear      | AU1 AU4 AU20 AU25   | AU2 (57%) AU5 (63%) AU26 (33%)
anger     | AU4 AU7 AU24        | AU10 (26%) AU17 (52%) AU23 (29%)
surprise  | AU1 AU2 AU25 AU26   | AU5 (66%)
disgust   | AU9 AU10 AU17       | AU4 (31%) AU24 (26%)
"""

# The paper's Aff-Wild2 counts: "AU: p(AU | expression)".
PAPER_AFFWILD2 = """
happiness | AU12: 0.82  AU25: 0.70  AU6: 0.57  AU7: 0.83  AU10: 0.63
sadness   | AU4: 0.53  AU15: 0.42  AU1: 0.31  AU7: 0.13
fear      | AU1: 0.52  AU4: 0.40  AU25: 0.85  AU7: 0.57  AU10: 0.57
anger     | AU4: 0.65  AU7: 0.45  AU25: 0.40  AU10: 0.33
surprise  | AU1: 0.38  AU2: 0.37  AU25: 0.85  AU26: 0.30  AU5: 0.50  AU7: 0.20
disgust   | AU10: 0.85  AU4: 0.60  AU7: 0.75  AU25: 0.80
"""


def parse_du_tao_martinez(text: str) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for line in text.strip().splitlines():
        expression, prototypical, observational = (part.strip() for part in line.split("|"))
        row = {int(au): 1.0 for au in re.findall(r"AU(\d+)", prototypical)}
        row.update({int(au): int(pct) / 100 for au, pct in re.findall(r"AU(\d+) \((\d+)%\)", observational)})
        table[expression] = row
    return table


def parse_affwild2(text: str) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for line in text.strip().splitlines():
        expression, entries = (part.strip() for part in line.split("|"))
        table[expression] = {int(au): float(p) for au, p in re.findall(r"AU(\d+): ([0-9.]+)", entries)}
    return table


@pytest.mark.parametrize("printed, parse, table", [
    (PAPER_DU_TAO_MARTINEZ, parse_du_tao_martinez, DU_TAO_MARTINEZ),
    (PAPER_AFFWILD2, parse_affwild2, AFFWILD2_EMPIRICAL),
], ids=["du_tao_martinez", "affwild2"])
def test_each_table_is_the_papers_entry_for_entry(printed, parse, table):
    expected = parse(printed)
    assert set(table) == set(expected)
    for expression, row in expected.items():
        assert table[expression] == pytest.approx(row, abs=0), expression


@pytest.mark.parametrize("printed, parse, prior", [
    (PAPER_DU_TAO_MARTINEZ, parse_du_tao_martinez, affect_domain_prior),
    (PAPER_AFFWILD2, parse_affwild2, affect_affwild2_prior),
], ids=["du_tao_martinez", "affwild2"])
def test_each_prior_is_the_papers_table_in_the_canonical_7_x_17_space(printed, parse, prior):
    matrix = prior()
    assert matrix.shape == (len(EXPRESSIONS), len(ACTION_UNITS)) == (7, 17)
    expected = np.zeros((7, 17))
    for expression, row in parse(printed).items():
        for au, p in row.items():
            expected[EXPRESSIONS.index(expression), ACTION_UNITS.index(au)] = p
    np.testing.assert_array_equal(matrix, expected)
    assert not matrix[EXPRESSIONS.index("neutral")].any()  # neutral has no row in the paper: a zero row


def test_from_table_places_entries_by_the_given_class_and_au_order():
    matrix = from_table({"b": {7: 0.5}, "a": {3: 1.0}}, classes=("a", "b", "c"), aus=(7, 3))
    np.testing.assert_array_equal(matrix, [[0.0, 1.0], [0.5, 0.0], [0.0, 0.0]])
