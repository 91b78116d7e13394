"""Task relatedness R[c, i] = p(attribute i | class c): estimation from annotations, CSV files.

Kollias, Sharmanska & Zafeiriou (AAAI-24, Sec. 3.1) take R from domain knowledge or count it
from annotations. Counting, and reading and writing a table as CSV, are the same for every db and
live here; the domain-knowledge tables belong to the dbs that have them (the affect case's two
tables: ``datasets/affect_tables.py``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch


class RelatednessError(ValueError):
    """Relatedness that cannot be had: no co-annotated images, a bad CSV, a shape mismatch."""


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
