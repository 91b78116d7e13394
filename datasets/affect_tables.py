"""The affect case's relatedness tables (Kollias, Sharmanska & Zafeiriou, AAAI-24, Sec. 4 and Table 1).

The paper tabulates both sources of p(action unit | expression): the cognitive study of Du, Tao &
Martinez (PNAS 2014), with prototypical action units (weight 1) and observational ones (their
fraction), and an empirical table counted on Aff-Wild2. Both are given here in the canonical
7-expression x 17-AU space that every affect db maps its labels to. Neutral has no row in either (a
zero row).
"""

from __future__ import annotations

import numpy as np

#: Canonical expression order and AU set of the affect case (Kollias et al., AAAI-24, Sec. 4).
EXPRESSIONS: tuple[str, ...] = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 15, 17, 20, 23, 24, 25, 26)
AU_NAMES: tuple[str, ...] = tuple(f"AU{a}" for a in ACTION_UNITS)

# Du, Tao & Martinez (2014) as tabulated by Kollias et al.: prototypical AUs weigh 1, observational AUs their fraction.
DU_TAO_MARTINEZ: dict[str, dict[int, float]] = {
    "happiness": {12: 1.0, 25: 1.0, 6: 0.51},
    "sadness": {4: 1.0, 15: 1.0, 1: 0.6, 6: 0.5, 11: 0.26, 17: 0.67},
    "fear": {1: 1.0, 4: 1.0, 20: 1.0, 25: 1.0, 2: 0.57, 5: 0.63, 26: 0.33},
    "anger": {4: 1.0, 7: 1.0, 24: 1.0, 10: 0.26, 17: 0.52, 23: 0.29},
    "surprise": {1: 1.0, 2: 1.0, 25: 1.0, 26: 1.0, 5: 0.66},
    "disgust": {9: 1.0, 10: 1.0, 17: 1.0, 4: 0.31, 24: 0.26},
}
# The empirical table the paper counted on Aff-Wild2.
AFFWILD2_EMPIRICAL: dict[str, dict[int, float]] = {
    "happiness": {12: 0.82, 25: 0.7, 6: 0.57, 7: 0.83, 10: 0.63},
    "sadness": {4: 0.53, 15: 0.42, 1: 0.31, 7: 0.13},
    "fear": {1: 0.52, 4: 0.4, 25: 0.85, 7: 0.57, 10: 0.57},
    "anger": {4: 0.65, 7: 0.45, 25: 0.4, 10: 0.33},
    "surprise": {1: 0.38, 2: 0.37, 25: 0.85, 26: 0.3, 5: 0.5, 7: 0.2},
    "disgust": {10: 0.85, 4: 0.6, 7: 0.75, 25: 0.8},
}


def from_table(table: dict[str, dict[int, float]], classes: tuple[str, ...] = EXPRESSIONS,
               aus: tuple[int, ...] = ACTION_UNITS) -> np.ndarray:
    """A (len(classes), len(aus)) matrix from ``{class: {au: weight}}``; missing entries are 0."""
    out = np.zeros((len(classes), len(aus)))
    for c, row in table.items():
        for au, weight in row.items():
            out[classes.index(c), aus.index(au)] = weight
    return out


def affect_domain_prior() -> np.ndarray:
    """Du, Tao & Martinez (2014) in the canonical 7 x 17 space."""
    return from_table(DU_TAO_MARTINEZ)


def affect_affwild2_prior() -> np.ndarray:
    """The paper's Aff-Wild2 empirical table in the canonical 7 x 17 space."""
    return from_table(AFFWILD2_EMPIRICAL)
