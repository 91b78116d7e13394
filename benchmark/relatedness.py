"""Task relatedness R[c, i] = p(attribute i | class c): built-in priors, estimation, CSV files.

Kollias, Sharmanska & Zafeiriou (AAAI-24, Sec. 3.1) take R from domain knowledge or count it
from annotations. For the affect case the paper tabulates both: the cognitive study of Du, Tao &
Martinez (PNAS 2014) with prototypical action units (weight 1) and observational ones (their
fraction), and an empirical table counted on Aff-Wild2. Both are shipped here in the canonical
7-expression x 17-AU space. Neutral has no row in either (a zero row).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

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


class RelatednessError(ValueError):
    """Relatedness that cannot be had: no co-annotated images, a bad CSV, a shape mismatch."""


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


def estimate(class_target: torch.Tensor, class_mask: torch.Tensor, attr_target: torch.Tensor,
             attr_mask: torch.Tensor, n_classes: int, where: str = "the training split") -> np.ndarray:
    """Count R[c, i] = #(class c, attribute i present) / #(class c, attribute i annotated).

    Only co-annotated entries count: images whose class is annotated and whose attribute i is
    annotated. A class with no such image gets a zero row; no such image at all is an error.

    Args:
        class_target: (n,) class indices, -1 where missing. class_mask: (n,) bool.
        attr_target: (n, M) in {0, 1}. attr_mask: (n, M) bool.
        n_classes: N. where: names the db and split in the error.
    """
    has_class = (class_mask.bool() & (class_target >= 0)).numpy()
    labels = class_target.numpy()[has_class]
    annotated = attr_mask.bool().numpy()[has_class]
    present = (attr_target.numpy()[has_class] > 0.5) & annotated
    if not annotated.any():
        raise RelatednessError(f"no co-annotated image (class and attribute labels on the same image) in {where}: "
                               f"the empirical relatedness cannot be counted; use relatedness=domain or a CSV file")
    one_hot = np.eye(n_classes)[labels]  # (n_co, N)
    counts = one_hot.T @ annotated  # (N, n_co) @ (n_co, M) -> (N, M)
    positives = one_hot.T @ present
    return np.divide(positives, counts, out=np.zeros_like(positives, dtype=float), where=counts > 0)


def save_csv(matrix: np.ndarray, path: str | Path, classes: tuple[str, ...], attributes: tuple[str, ...]) -> None:
    """Write R with a header of attribute names and the class name first on each row."""
    with Path(path).open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["class", *attributes])
        for name, row in zip(classes, matrix):
            writer.writerow([name, *(f"{v:.6g}" for v in row)])


def load_csv(path: str | Path, classes: tuple[str, ...], attributes: tuple[str, ...]) -> np.ndarray:
    """Read R written by :func:`save_csv`, reordered to ``classes`` x ``attributes``.

    Classes or attributes missing from the file are an error naming them; extra ones are ignored.
    """
    file = Path(path)
    if not file.is_file():
        raise RelatednessError(f"relatedness file {str(file)!r} not found")
    with file.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise RelatednessError(f"{file}: expected a header 'class,<attribute>,...' and one row per class")
    header, body = rows[0][1:], {r[0]: r[1:] for r in rows[1:] if r}
    missing = [c for c in classes if c not in body] + [a for a in attributes if a not in header]
    if missing:
        raise RelatednessError(f"{file}: no entry for {missing}; it has classes {list(body)} and attributes {header}")
    try:
        matrix = np.array([[float(body[c][header.index(a)]) for a in attributes] for c in classes])
    except (ValueError, IndexError) as exc:
        raise RelatednessError(f"{file}: a value is not a number or a row is short ({exc})") from None
    if (matrix < 0).any() or (matrix > 1).any():
        raise RelatednessError(f"{file}: probabilities must lie in [0, 1]")
    return matrix
