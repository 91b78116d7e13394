"""The data contract of ``benchmark/tasks.py``, pinned with small hand-computed cases.

Task specs (defaults, validation, immutability), the problem (task lookup, the class/attribute pair,
relatedness sources), batches (``collate``, ``Batch.to``) and the masked losses: -1 / mask 0 mean "not
annotated" (Kollias et al., AAAI-24, Sec. 3); the attribute loss is the paper's Eq. 1 per image
(sum_i delta_i BCE_i / sum_i delta_i, then the mean over annotated images) or, as an option, pooled over
entries; under ``torchrun`` a process's loss is its sum over annotated entries divided by the global count
over the world size. Expected values are computed here from the definitions of (binary) cross-entropy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import benchmark.collectives as collectives
from benchmark.tasks import (
    METRIC_HIGHER_IS_BETTER,
    Batch,
    Problem,
    TaskSpec,
    attribute_count,
    collate,
    masked_binary_cross_entropy,
    masked_cross_entropy,
    task_loss,
)

CLASSES = TaskSpec("classes", "multiclass", ("a", "b", "c"))
ATTRIBUTES = TaskSpec("attributes", "attributes", ("x", "y", "z"))


# ----------------------------------------------------------------------------- reference formulas


def bce(logit: float, target: float) -> float:
    """-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))."""
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(target * math.log(p) + (1.0 - target) * math.log(1.0 - p))


def log_softmax(row: list[float]) -> list[float]:
    log_z = math.log(sum(math.exp(v) for v in row))
    return [v - log_z for v in row]


def soft_ce(row: list[float], q: list[float]) -> float:
    """-sum_j q_j log p_j, q padded with zeros to the row's width."""
    q = list(q) + [0.0] * (len(row) - len(q))
    return -sum(qj * lp for qj, lp in zip(q, log_softmax(row)))


def ce(row: list[float], k: int, smoothing: float = 0.0) -> float:
    n = len(row)
    return soft_ce(row, [(1.0 - smoothing) * (j == k) + smoothing / n for j in range(n)])


# ----------------------------------------------------------------------------- TaskSpec


def test_every_metric_is_higher_is_better():
    assert METRIC_HIGHER_IS_BETTER == {"accuracy": True, "mean_class_accuracy": True, "f1_macro": True,
                                       "accuracy_mean": True, "f1_mean": True, "f1_acc_avg": True}
    for metric in METRIC_HIGHER_IS_BETTER:
        assert CLASSES.higher_is_better(metric) is True


def test_default_metrics_and_primary_by_kind():
    assert CLASSES.metrics == ("accuracy", "mean_class_accuracy", "f1_macro")
    assert CLASSES.primary == "accuracy"
    assert ATTRIBUTES.metrics == ("f1_mean", "accuracy_mean")
    assert ATTRIBUTES.primary == "f1_mean"
    given = TaskSpec("au", "attributes", ["x", "y"], metrics=["f1_acc_avg", "f1_mean"], primary="f1_acc_avg")
    assert given.labels == ("x", "y") and given.metrics == ("f1_acc_avg", "f1_mean")
    assert given.primary == "f1_acc_avg"
    # a primary alone picks among the kind's default metrics
    assert TaskSpec("c", "multiclass", ("a", "b"), primary="f1_macro").metrics == CLASSES.metrics


def test_taskspec_is_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CLASSES.name = "other"  # type: ignore[misc]
    assert hash(CLASSES) == hash(TaskSpec("classes", "multiclass", ("a", "b", "c")))


@pytest.mark.parametrize("kind, labels, ok", [
    ("multiclass", ("a",), False), ("multiclass", ("a", "b"), True),
    ("attributes", (), False), ("attributes", ("x",), True),
])
def test_fewest_labels_per_kind(kind, labels, ok):
    """A class task needs 2 classes, an attribute task 1 attribute."""
    if ok:
        assert TaskSpec("t", kind, labels).num_outputs == len(labels)
    else:
        with pytest.raises(ValueError, match="too few labels"):
            TaskSpec("t", kind, labels)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        TaskSpec("t", "regression", ("a", "b"))  # type: ignore[arg-type]


def test_unknown_metric_or_primary_outside_metrics_raises():
    with pytest.raises(ValueError, match="unknown metrics"):  # unknown metric, primary among the metrics
        TaskSpec("t", "multiclass", ("a", "b"), metrics=("accuracy", "auc"), primary="accuracy")
    with pytest.raises(ValueError, match="primary"):  # known metrics, primary not among them
        TaskSpec("t", "multiclass", ("a", "b"), metrics=("accuracy",), primary="f1_macro")
    with pytest.raises(ValueError, match="primary"):  # primary defaults to f1_mean, not listed
        TaskSpec("t", "attributes", ("x",), metrics=("accuracy_mean",))


def test_num_outputs_is_the_label_count():
    assert CLASSES.num_outputs == 3
    assert TaskSpec("t", "attributes", ("x", "y", "z", "w")).num_outputs == 4


# ----------------------------------------------------------------------------- Problem


def make_problem(*tasks: TaskSpec, **kw) -> Problem:
    return Problem("toy", tuple(tasks), **kw)


def test_problem_is_frozen():
    problem = make_problem(CLASSES, ATTRIBUTES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.db = "other"  # type: ignore[misc]


def test_empirical_callable_is_neither_compared_nor_shown():
    one = make_problem(CLASSES, ATTRIBUTES, empirical=lambda: np.zeros((3, 3)))
    two = make_problem(CLASSES, ATTRIBUTES, empirical=lambda: np.ones((3, 3)))
    assert one == two
    assert "empirical" not in repr(one) and "lambda" not in repr(one)


def test_task_lookup_by_name():
    other = TaskSpec("other", "multiclass", ("p", "q"))
    problem = make_problem(CLASSES, ATTRIBUTES, other)
    assert problem.task("classes") is CLASSES
    assert problem.task("attributes") is ATTRIBUTES
    assert problem.task("other") is other
    with pytest.raises(ValueError, match=r"no task 'missing'.*'classes', 'attributes', 'other'"):
        problem.task("missing")


def test_task_names_in_head_order():
    assert make_problem(ATTRIBUTES, CLASSES).task_names == ["attributes", "classes"]


@pytest.mark.parametrize("order", [(CLASSES, ATTRIBUTES), (ATTRIBUTES, CLASSES)])
def test_pair_is_class_task_then_attribute_task(order):
    classes, attributes = make_problem(*order).pair()
    assert classes is CLASSES and attributes is ATTRIBUTES


@pytest.mark.parametrize("n_classes, n_attributes", [(0, 1), (2, 1), (1, 0), (1, 2), (0, 0), (2, 2)])
def test_pair_needs_exactly_one_of_each(n_classes, n_attributes):
    tasks = [TaskSpec(f"c{i}", "multiclass", ("a", "b")) for i in range(n_classes)]
    tasks += [TaskSpec(f"a{i}", "attributes", ("x",)) for i in range(n_attributes)]
    with pytest.raises(ValueError, match=f"{n_classes} class and {n_attributes} attribute tasks"):
        make_problem(*tasks).pair()


PRIORS = {"domain": np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]]), "du2014": np.full((3, 3), 0.5)}


def test_relatedness_sources_list_db_only_with_an_empirical_callable():
    assert make_problem(CLASSES, ATTRIBUTES).relatedness_sources() == []
    assert make_problem(CLASSES, ATTRIBUTES, priors=PRIORS).relatedness_sources() == ["domain", "du2014"]
    with_db = make_problem(CLASSES, ATTRIBUTES, priors=PRIORS, empirical=lambda: np.eye(3))
    assert with_db.relatedness_sources() == ["domain", "du2014", "db"]
    assert make_problem(CLASSES, ATTRIBUTES, empirical=lambda: np.eye(3)).relatedness_sources() == ["db"]


def test_relatedness_lookup():
    calls = []

    def empirical():
        calls.append(1)
        return [[2, 0, 0], [0, 2, 0], [0, 0, 2]]

    problem = make_problem(CLASSES, ATTRIBUTES, priors=PRIORS, empirical=empirical)
    domain = problem.relatedness("domain")
    assert domain.dtype == float and np.array_equal(domain, PRIORS["domain"])
    assert np.array_equal(problem.relatedness("du2014"), PRIORS["du2014"])
    assert calls == []  # priors never count the training split
    db = problem.relatedness("db")
    assert db.dtype == float and np.array_equal(db, 2 * np.eye(3)) and calls == [1]
    with pytest.raises(ValueError, match=r"no relatedness source 'nope'.*'domain', 'du2014', 'db'"):
        problem.relatedness("nope")
    assert calls == [1]
    with pytest.raises(ValueError, match=r"no relatedness source 'db'.*\['domain', 'du2014'\]"):
        make_problem(CLASSES, ATTRIBUTES, priors=PRIORS).relatedness("db")


# ----------------------------------------------------------------------------- Batch and collate


class Moved:
    """Stands in for a tensor: records how ``Batch.to`` moves it."""

    def __init__(self, log: list):
        self.log = log

    def to(self, device, non_blocking):
        self.log.append((device, non_blocking))
        return self


def test_batch_to_blocks_unless_asked_not_to():
    log: list = []
    batch = Batch(Moved(log), {"classes": Moved(log)}, {"classes": Moved(log)}, torch.arange(2))  # type: ignore[arg-type]
    batch.to("cuda:0")
    assert log == [("cuda:0", False)] * 3
    log.clear()
    batch.to("cuda:0", non_blocking=True)
    assert log == [("cuda:0", True)] * 3


def sample(i: int, cls: int, attrs: list[float], attr_mask: list[bool]) -> dict:
    return {"input": torch.full((3, 2, 2), float(i)), "targets": {"classes": cls, "attributes": torch.tensor(attrs)},
            "masks": {"classes": cls >= 0, "attributes": torch.tensor(attr_mask)}, "index": 10 + i}


def test_collate_stacks_samples():
    batch = collate([sample(0, 2, [1.0, 0.0], [True, False]), sample(1, -1, [0.0, 0.0], [False, False])])
    assert len(batch) == 2 and batch.inputs.shape == (2, 3, 2, 2)
    assert batch.inputs[1].eq(1.0).all()
    assert batch.targets["classes"].tolist() == [2, -1] and batch.targets["classes"].dtype == torch.int64
    assert batch.masks["classes"].tolist() == [True, False]
    assert batch.targets["attributes"].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert batch.masks["attributes"].tolist() == [[True, False], [False, False]]
    assert batch.index.tolist() == [10, 11]


def test_collate_takes_the_tasks_of_the_first_sample():
    """Samples must agree on their tasks: one lacking a task of the first sample is an error, not a silent drop."""
    first = sample(0, 1, [1.0, 0.0], [True, True])
    rest = [{"input": torch.zeros(3, 2, 2), "targets": {"classes": 0}, "masks": {"classes": True}, "index": i}
            for i in (1, 2)]
    with pytest.raises(ValueError, match=r"sample 1 has targets for \['classes'\]"):
        collate([first, *rest])
    with pytest.raises(ValueError, match="every sample every task"):  # an extra task later is not dropped either
        collate([rest[0], first])
    masks_differ = {**first, "masks": {"classes": True}}
    with pytest.raises(ValueError, match="masks for \\['classes'\\]"):
        collate([first, masks_differ])
    assert list(collate([first, first]).targets) == ["classes", "attributes"]


# ----------------------------------------------------------------------------- class losses

CLS_LOGITS = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, -1.0, 0.5]]
CLS_TARGET = [0, -1, 2, 1]  # row 1 not annotated (-1); row 2 masked out; label 0 is a real class
CLS_MASK = [True, True, False, True]


def class_case():
    return (torch.tensor(CLS_LOGITS, requires_grad=True), torch.tensor(CLS_TARGET), torch.tensor(CLS_MASK))


def test_masked_cross_entropy_by_hand_no_smoothing_by_default():
    logits, target, mask = class_case()
    expected = (ce(CLS_LOGITS[0], 0) + ce(CLS_LOGITS[3], 1)) / 2
    assert masked_cross_entropy(logits, target, mask).item() == pytest.approx(expected, abs=1e-6)
    smoothed = (ce(CLS_LOGITS[0], 0, 0.3) + ce(CLS_LOGITS[3], 1, 0.3)) / 2
    assert masked_cross_entropy(logits, target, mask, label_smoothing=0.3).item() == pytest.approx(smoothed, abs=1e-6)


SOFT_LOGITS = [[1.0, 0.0, -1.0, 0.5], [0.2, 0.1, 0.0, -0.3], [0.0, 2.0, 1.0, -1.0]]
SOFT_TARGET = [[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]]  # K = 2 < N = 4 classes; B = 3 rows
SOFT_MASK = [True, False, True]


def test_masked_cross_entropy_soft_targets_narrower_than_the_logits():
    logits, soft, mask = torch.tensor(SOFT_LOGITS), torch.tensor(SOFT_TARGET), torch.tensor(SOFT_MASK)
    expected = (soft_ce(SOFT_LOGITS[0], SOFT_TARGET[0]) + soft_ce(SOFT_LOGITS[2], SOFT_TARGET[2])) / 2
    assert masked_cross_entropy(logits, soft, mask).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("soft", [False, True])
def test_masked_cross_entropy_with_nothing_annotated_is_a_differentiable_zero(soft):
    logits = torch.tensor(CLS_LOGITS, requires_grad=True)
    if soft:
        target, mask = torch.full((4, 3), 1 / 3), torch.zeros(4, dtype=torch.bool)
    else:
        target, mask = torch.tensor([-1, 0, 2, -1]), torch.tensor([True, False, False, True])
    loss = masked_cross_entropy(logits, target, mask)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and logits.grad.eq(0).all()


# ----------------------------------------------------------------------------- attribute losses

ATTR_LOGITS = [[2.0, -1.0, 0.5], [0.3, 0.7, -0.2], [-1.5, 1.0, 0.0]]
NAN = float("nan")
ATTR_TARGET = [[1.0, 0.0, 999.0], [NAN, 999.0, NAN], [0.0, 1.0, NAN]]  # placeholders where not annotated
ATTR_MASK = [[True, True, False], [False, False, False], [False, True, False]]  # 2, 0 and 1 labels


def attr_case(mask=ATTR_MASK):
    return (torch.tensor(ATTR_LOGITS, requires_grad=True), torch.tensor(ATTR_TARGET), torch.tensor(mask))


def test_per_image_loss_is_eq1_mean_over_annotated_images():
    expected = ((bce(2.0, 1) + bce(-1.0, 0)) / 2 + bce(1.0, 1)) / 2  # image 1 has no label: not in the mean
    got = masked_binary_cross_entropy(*attr_case(), reduction="per_image")
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert masked_binary_cross_entropy(*attr_case()).item() == pytest.approx(expected, abs=1e-6)  # the default


def test_pooled_loss_is_mean_over_annotated_entries():
    expected = (bce(2.0, 1) + bce(-1.0, 0) + bce(1.0, 1)) / 3
    got = masked_binary_cross_entropy(*attr_case(), reduction="pooled")
    assert got.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("reduction", ["per_image", "pooled"])
def test_single_annotated_entry_is_its_own_bce(reduction):
    only = [[False] * 3, [False] * 3, [False, True, False]]
    got = masked_binary_cross_entropy(*attr_case(only), reduction=reduction)
    assert got.item() == pytest.approx(bce(1.0, 1), abs=1e-6)


@pytest.mark.parametrize("reduction", ["per_image", "pooled"])
def test_nothing_annotated_is_a_differentiable_zero(reduction):
    logits, target, mask = attr_case([[False] * 3] * 3)
    loss = masked_binary_cross_entropy(logits, target, mask, reduction=reduction)
    assert loss.item() == 0.0  # exactly 0, not nan
    loss.backward()
    assert logits.grad is not None and logits.grad.eq(0).all()


def test_binary_label_smoothing_moves_targets_towards_one_half():
    """With smoothing s a target t becomes t(1 - s) + s/2: 1 -> 0.9 and 0 -> 0.1 at s = 0.2."""
    per_image = ((bce(2.0, 0.9) + bce(-1.0, 0.1)) / 2 + bce(1.0, 0.9)) / 2
    got = masked_binary_cross_entropy(*attr_case(), label_smoothing=0.2, reduction="per_image")
    assert got.item() == pytest.approx(per_image, abs=1e-6)
    pooled = (bce(2.0, 0.9) + bce(-1.0, 0.1) + bce(1.0, 0.9)) / 3
    got = masked_binary_cross_entropy(*attr_case(), label_smoothing=0.2, reduction="pooled")
    assert got.item() == pytest.approx(pooled, abs=1e-6)


def test_unknown_reduction_raises():
    with pytest.raises(ValueError, match="reduction"):
        masked_binary_cross_entropy(*attr_case(), reduction="mean")


def test_attribute_count_images_or_entries():
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False], [True, False, False]])
    assert int(attribute_count(mask, "per_image")) == 3  # images with a label
    assert int(attribute_count(mask)) == 3  # per_image is the default
    assert int(attribute_count(mask, "pooled")) == 4  # annotated entries


# ----------------------------------------------------------------------------- shares under torchrun

OTHER = 3  # annotated entries (or images) on the other process of a simulated 2-process world


@pytest.fixture
def two_processes(monkeypatch):
    """World size 2, the other shard holding OTHER counted items: a share is local sum * 2 / global count."""
    monkeypatch.setattr(collectives, "world_size", lambda: 2)
    monkeypatch.setattr(collectives, "global_count",
                        lambda count: torch.as_tensor(count, dtype=torch.float64) + OTHER)


def test_class_loss_share_counts_annotated_rows_only(two_processes):
    logits, target, mask = class_case()
    local_sum = ce(CLS_LOGITS[0], 0) + ce(CLS_LOGITS[3], 1)  # rows 0 (label 0) and 3: 2 annotated
    got = task_loss(CLASSES, logits, target, mask)
    assert got.item() == pytest.approx(local_sum * 2 / (2 + OTHER), abs=1e-6)


def test_soft_class_loss_share_counts_masked_rows(two_processes):
    logits, soft, mask = torch.tensor(SOFT_LOGITS), torch.tensor(SOFT_TARGET), torch.tensor(SOFT_MASK)
    spec = TaskSpec("classes", "multiclass", ("a", "b", "c", "d"))
    local_sum = soft_ce(SOFT_LOGITS[0], SOFT_TARGET[0]) + soft_ce(SOFT_LOGITS[2], SOFT_TARGET[2])
    assert task_loss(spec, logits, soft, mask).item() == pytest.approx(local_sum * 2 / (2 + OTHER), abs=1e-6)


def test_attribute_loss_share_per_image_and_pooled(two_processes):
    per_image_sum = (bce(2.0, 1) + bce(-1.0, 0)) / 2 + bce(1.0, 1)  # 2 annotated images
    got = task_loss(ATTRIBUTES, *attr_case(), attribute_loss="per_image")
    assert got.item() == pytest.approx(per_image_sum * 2 / (2 + OTHER), abs=1e-6)
    pooled_sum = bce(2.0, 1) + bce(-1.0, 0) + bce(1.0, 1)  # 3 annotated entries
    got = task_loss(ATTRIBUTES, *attr_case(), attribute_loss="pooled")
    assert got.item() == pytest.approx(pooled_sum * 2 / (3 + OTHER), abs=1e-6)


def test_alone_the_share_is_the_local_mean():
    logits, target, mask = class_case()
    expected = (ce(CLS_LOGITS[0], 0) + ce(CLS_LOGITS[3], 1)) / 2
    assert task_loss(CLASSES, logits, target, mask).item() == pytest.approx(expected, abs=1e-6)
