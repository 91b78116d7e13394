"""Edges of benchmark/metrics.py found by mutation testing (docs/mutation.md).

An attribute is predicted present when its logit is > 0 (sigmoid > 0.5); a logit of exactly 0 or a
small negative one is "absent". Fixtures with logits of +-2 and more cannot tell `> 0` from `> -1`.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics import task_metrics
from benchmark.tasks import TaskSpec

ATTR = TaskSpec("attributes", "attributes", ("au1",), metrics=("f1_mean", "accuracy_mean"))


@pytest.mark.parametrize("logit", [-0.5, -1e-6, 0.0])
def test_a_logit_at_or_below_zero_predicts_absent(logit: float) -> None:
    logits = np.array([[logit], [3.0]])
    target = np.array([[0], [1]], dtype=float)
    mask = np.ones_like(target, dtype=bool)
    got = task_metrics(ATTR, logits, target, mask)
    assert got == {"f1_mean": pytest.approx(1.0), "accuracy_mean": pytest.approx(1.0)}


def test_a_small_positive_logit_predicts_present() -> None:
    logits, target = np.array([[1e-6], [-3.0]]), np.array([[1], [0]], dtype=float)
    got = task_metrics(ATTR, logits, target, np.ones_like(target, dtype=bool))
    assert got == {"f1_mean": pytest.approx(1.0), "accuracy_mean": pytest.approx(1.0)}


def test_an_attribute_never_annotated_is_skipped_and_the_next_ones_still_count() -> None:
    """An unannotated attribute is left out of the means; the attributes after it are not."""
    spec = TaskSpec("attributes", "attributes", ("au1", "au2", "au3"), metrics=("f1_mean", "accuracy_mean"))
    logits = np.array([[5.0, 5.0, -5.0], [5.0, -5.0, -5.0]])
    target = np.array([[1, 1, 1], [0, 0, 0]], dtype=float)  # au2 right on both rows, au3 half right
    mask = np.array([[False, True, True], [False, True, True]])
    got = task_metrics(spec, logits, target, mask)
    assert got["accuracy_mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert got["f1_mean"] == pytest.approx((1.0 + 0.0) / 2)


def test_f1_macro_when_one_class_is_all_there_is() -> None:
    """Every target and every prediction the same class: macro F1 over that one label is 1, not NaN."""
    spec = TaskSpec("classes", "multiclass", ("a", "b", "c"))
    logits = np.array([[0.0, 4.0, 0.0], [1.0, 3.0, 0.0]])
    got = task_metrics(spec, logits, np.array([1, 1]), np.array([True, True]))
    assert got == {"accuracy": 1.0, "mean_class_accuracy": 1.0, "f1_macro": 1.0}
