"""Attribute metrics when attributes are annotated on different numbers of rows (issue 18).

``accuracy_mean`` and ``f1_mean`` are means over attributes of per-attribute scores (macro), each
attribute scored on its own annotated rows; pooling every annotated entry (micro) gives the same
number only when every attribute is annotated equally often, as in the older fixtures.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics import task_metrics
from benchmark.tasks import TaskSpec

ATTR = TaskSpec("attributes", "attributes", ("au1", "au2"), metrics=("f1_mean", "accuracy_mean", "f1_acc_avg"))


def _unequal_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """au1 annotated on 4 rows, all right; au2 annotated on 1 row, wrong.

    Per attribute: au1 accuracy 1, F1 1 (tp 2); au2 accuracy 0, F1 0 (fn 1).
    Pooled over the 5 entries instead: accuracy 4/5, F1 2*2 / (2*2 + 0 + 1) = 4/5.
    """
    logits = np.array([[3.0, -3.0], [2.0, 5.0], [-1.0, 5.0], [-2.0, 5.0]])  # predictions (1,0) (1,1) (0,1) (0,1)
    target = np.array([[1, 1], [1, 0], [0, 0], [0, 1]], dtype=float)
    mask = np.array([[True, True], [True, False], [True, False], [True, False]])
    return logits, target, mask


def test_attribute_means_average_per_attribute_not_over_entries() -> None:
    """Guards ``accuracy_mean``/``f1_mean`` against pooling entries (a planted bug the suite missed)."""
    got = task_metrics(ATTR, *_unequal_split())
    assert got["accuracy_mean"] == pytest.approx((1.0 + 0.0) / 2)  # pooled would be 0.8
    assert got["f1_mean"] == pytest.approx((1.0 + 0.0) / 2)        # pooled would be 0.8
    assert got["f1_acc_avg"] == pytest.approx(0.5)


def test_an_attribute_annotated_once_weighs_as_much_as_one_annotated_often() -> None:
    """Swapping which attribute is the rarely annotated one leaves the macro means unchanged."""
    logits, target, mask = _unequal_split()
    swapped = task_metrics(ATTR, logits[:, ::-1].copy(), target[:, ::-1].copy(), mask[:, ::-1].copy())
    assert swapped == pytest.approx(task_metrics(ATTR, logits, target, mask))
    # many more right answers on the frequent attribute do not move the mean: still (1 + 0) / 2
    many = 40
    logits_big = np.concatenate([logits, np.tile([[3.0, 0.0]], (many, 1))])
    target_big = np.concatenate([target, np.tile([[1.0, 0.0]], (many, 1))])
    mask_big = np.concatenate([mask, np.tile([[True, False]], (many, 1))])
    assert task_metrics(ATTR, logits_big, target_big, mask_big)["accuracy_mean"] == pytest.approx(0.5)
