"""The model-selection score (benchmark/evaluate.py selection_score; found by mutation testing, docs/mutation.md).

The epoch kept is the one with the best mean over tasks of the primary metric, negated where lower
is better; a task whose metric is NaN (nothing annotated in val) is left out of the mean.
"""

from __future__ import annotations

import math

import pytest

from benchmark import tasks
from benchmark.evaluate import selection_score
from benchmark.tasks import Problem, TaskSpec

CLASSES = TaskSpec("classes", "multiclass", ("a", "b"))  # primary: accuracy
ATTRS = TaskSpec("attributes", "attributes", ("au1", "au2"))  # primary: f1_mean


def test_the_mean_of_the_primary_metrics_over_tasks() -> None:
    problem = Problem("toy", (CLASSES, ATTRS))
    metrics = {"classes": {"accuracy": 0.6, "f1_macro": 0.1}, "attributes": {"f1_mean": 0.8, "accuracy_mean": 0.0}}
    assert selection_score(metrics, problem) == pytest.approx((0.6 + 0.8) / 2)


def test_a_task_with_nan_is_left_out_and_no_task_gives_nan() -> None:
    problem = Problem("toy", (CLASSES, ATTRS))
    assert selection_score({"classes": {"accuracy": 0.6}, "attributes": {"f1_mean": math.nan}}, problem) == \
        pytest.approx(0.6)
    assert math.isnan(selection_score({}, problem))


def test_a_lower_is_better_primary_metric_is_negated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tasks.METRIC_HIGHER_IS_BETTER, "error_rate", False)
    errors = TaskSpec("errors", "multiclass", ("a", "b"), metrics=("error_rate",), primary="error_rate")
    problem = Problem("toy", (CLASSES, errors))
    assert selection_score({"errors": {"error_rate": 0.3}}, problem) == pytest.approx(-0.3)
    assert selection_score({"classes": {"accuracy": 0.9}, "errors": {"error_rate": 0.3}}, problem) == \
        pytest.approx((0.9 - 0.3) / 2)
