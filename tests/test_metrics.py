"""Metrics and masked losses: hand-computed values on tiny arrays, parity with scikit-learn, and
the missing-label rule (an unannotated entry never changes a metric or a loss)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from benchmark.metrics import accuracy, attribute_scores, binary_f1, f1_macro, mean_class_accuracy, task_metrics
from benchmark.tasks import TaskSpec, masked_binary_cross_entropy, masked_cross_entropy, task_loss

# ----- hand-computed values ----------------------------------------------------------------------

# pred   = [0, 1, 2, 1]
# target = [0, 2, 2, 1]
PRED = np.array([0, 1, 2, 1])
TARGET = np.array([0, 2, 2, 1])


def test_accuracy_by_hand():
    # rows 0, 2, 3 right, row 1 wrong: 3 / 4
    assert accuracy(PRED, TARGET) == pytest.approx(0.75)
    assert math.isnan(accuracy(np.array([], dtype=int), np.array([], dtype=int)))


def test_mean_class_accuracy_by_hand():
    # class 0: rows {0} -> 1/1; class 1: rows {3} -> 1/1; class 2: rows {1, 2} -> 1/2
    # mean = (1 + 1 + 0.5) / 3 = 5/6
    assert mean_class_accuracy(PRED, TARGET) == pytest.approx(5 / 6)
    # only classes present in the target count: pred [0, 0, 1], target [0, 0, 0] -> class 0: 2/3
    assert mean_class_accuracy(np.array([0, 0, 1]), np.array([0, 0, 0])) == pytest.approx(2 / 3)
    assert math.isnan(mean_class_accuracy(np.array([], dtype=int), np.array([], dtype=int)))


def test_binary_f1_by_hand():
    # pred [1, 1, 0, 0, 1], target [1, 0, 1, 0, 1]: tp = 2 (rows 0, 4), fp = 1 (row 1), fn = 1 (row 2)
    # F1 = 2*2 / (2*2 + 1 + 1) = 4/6 = 2/3
    assert binary_f1(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1])) == pytest.approx(2 / 3)
    # no positive target and no positive prediction: 0 (zero_division=0)
    assert binary_f1(np.array([0, 0, 0]), np.array([0, 0, 0])) == 0.0
    # positives predicted, none in the target: tp = 0, fp = 2 -> 0 / 2 = 0
    assert binary_f1(np.array([1, 1, 0]), np.array([0, 0, 0])) == 0.0
    # all right: tp = 2 -> 4 / 4 = 1
    assert binary_f1(np.array([1, 0, 1]), np.array([1, 0, 1])) == 1.0


def test_f1_macro_by_hand():
    # class 0: tp 1 (row 0), fp 0, fn 0            -> 2/2 = 1
    # class 1: tp 1 (row 3), fp 1 (row 1), fn 0    -> 2/3
    # class 2: tp 1 (row 2), fp 0, fn 1 (row 1)    -> 2/3
    # mean = (1 + 2/3 + 2/3) / 3 = 7/9
    assert f1_macro(PRED, TARGET) == pytest.approx(7 / 9)
    # a class only in the predictions counts: pred [0, 0, 1], target [0, 0, 0]
    # class 0: tp 2, fp 0, fn 1 -> 4/5; class 1: tp 0, fp 1 -> 0; mean = 0.4
    assert f1_macro(np.array([0, 0, 1]), np.array([0, 0, 0])) == pytest.approx(0.4)
    assert math.isnan(f1_macro(np.array([], dtype=int), np.array([], dtype=int)))


# ----- parity with scikit-learn ------------------------------------------------------------------

def _random_labels(seed: int, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, size=n)
    # predictions right about half the time, so every score is away from 0 and 1
    pred = np.where(rng.random(n) < 0.5, target, rng.integers(0, classes, size=n))
    return pred, target


# (n, classes): (7, 6) makes classes appear only in the predictions or only in the targets
CASES = [(seed, n, k) for seed in range(4) for n, k in ((60, 4), (7, 6), (25, 2))]


@pytest.mark.parametrize(("seed", "n", "classes"), CASES)
def test_multiclass_metrics_match_sklearn(seed, n, classes):
    pred, target = _random_labels(seed, n, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        expected_balanced = balanced_accuracy_score(target, pred)
    assert accuracy(pred, target) == pytest.approx(accuracy_score(target, pred), abs=1e-12)
    assert mean_class_accuracy(pred, target) == pytest.approx(expected_balanced, abs=1e-12)
    assert f1_macro(pred, target) == pytest.approx(f1_score(target, pred, average="macro", zero_division=0), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [3, 40])
def test_binary_f1_matches_sklearn(seed, n):
    rng = np.random.default_rng(100 + seed)
    target = (rng.random(n) < 0.3).astype(int)
    pred = (rng.random(n) < 0.3).astype(int)
    assert binary_f1(pred, target) == pytest.approx(f1_score(target, pred, zero_division=0), abs=1e-12)


@pytest.mark.parametrize(("pred", "target"), [([0, 0, 0], [0, 0, 0]), ([1, 1], [0, 0]), ([0, 0], [1, 1]),
                                              ([1, 1, 1], [1, 1, 1])])
def test_binary_f1_degenerate_cases_match_sklearn(pred, target):
    pred, target = np.array(pred), np.array(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = f1_score(target, pred, zero_division=0)
    assert binary_f1(pred, target) == pytest.approx(expected)


# ----- task_metrics: multiclass ------------------------------------------------------------------

CLS = TaskSpec("expression", "multiclass", ("a", "b", "c"))


def _multiclass_split():
    """Rows 0-3 annotated (pred = PRED, target = TARGET); rows 4-6 not, each in a different way."""
    logits = np.array([
        [5.0, 0.0, 0.0],   # pred 0, target 0
        [0.0, 5.0, 0.0],   # pred 1, target 2
        [0.0, 0.0, 5.0],   # pred 2, target 2
        [0.0, 5.0, 0.0],   # pred 1, target 1
        [9.0, 0.0, 0.0],   # target -1, mask False
        [0.0, 9.0, 0.0],   # target 0 but mask False: not annotated all the same
        [0.0, 0.0, 9.0],   # target -1 with mask True: -1 always means missing
    ])
    target = np.array([0, 2, 2, 1, -1, 0, -1])
    mask = np.array([True, True, True, True, False, False, True])
    return logits, target, mask


def test_task_metrics_multiclass_ignores_unannotated_rows():
    logits, target, mask = _multiclass_split()
    got = task_metrics(CLS, logits, target, mask)
    # the annotated rows are PRED / TARGET above: 3/4, 5/6, 7/9
    assert list(got) == ["accuracy", "mean_class_accuracy", "f1_macro"]
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["mean_class_accuracy"] == pytest.approx(5 / 6)
    assert got["f1_macro"] == pytest.approx(7 / 9)

    rng = np.random.default_rng(0)
    unannotated = ~(mask & (target >= 0))
    for _ in range(20):
        changed = logits.copy()
        changed[unannotated] = rng.normal(scale=10, size=(int(unannotated.sum()), 3))
        assert task_metrics(CLS, changed, target, mask) == got


def test_task_metrics_multiclass_nothing_annotated_is_nan():
    got = task_metrics(CLS, np.zeros((3, 3)), np.array([-1, 0, 1]), np.array([False, False, False]))
    assert all(math.isnan(v) for v in got.values())


def test_task_metrics_reports_only_the_spec_metrics():
    spec = TaskSpec("expression", "multiclass", ("a", "b", "c"), metrics=("f1_macro",), primary="f1_macro")
    logits, target, mask = _multiclass_split()
    assert task_metrics(spec, logits, target, mask) == pytest.approx({"f1_macro": 7 / 9})


# ----- task_metrics: attributes ------------------------------------------------------------------

ATTR = TaskSpec("aus", "attributes", ("au1", "au2", "au4"))


def _attribute_split():
    logits = np.array([
        [2.0, -1.0, 5.0],
        [-3.0, 4.0, -5.0],
        [1.0, 1.0, 5.0],
        [-1.0, -2.0, 5.0],
    ])  # pred = logits > 0: [[1,0,1], [0,1,0], [1,1,1], [0,0,1]]
    target = np.array([
        [1, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
        [1, 0, 1],
    ], dtype=float)
    mask = np.array([
        [True, True, False],
        [True, True, False],
        [True, False, False],   # (2, 1): pred 1, target 1, not annotated
        [False, True, False],   # (3, 0): pred 0, target 1, not annotated
    ])  # column au4 is never annotated
    return logits, target, mask


def test_task_metrics_attributes_by_hand():
    logits, target, mask = _attribute_split()
    # au1: rows 0-2, pred [1, 0, 1] vs target [1, 0, 0]: tp 1, fp 1, fn 0 -> F1 2/3; accuracy 2/3
    # au2: rows 0, 1, 3, pred [0, 1, 0] vs target [0, 0, 0]: tp 0, fp 1 -> F1 0; accuracy 2/3
    # au4: never annotated, skipped (not counted as 0)
    f1s, accs = attribute_scores((logits > 0).astype(int), target.astype(int), mask)
    assert f1s == pytest.approx([2 / 3, 0.0])
    assert accs == pytest.approx([2 / 3, 2 / 3])
    got = task_metrics(ATTR, logits, target, mask)
    assert list(got) == ["f1_mean", "accuracy_mean"]
    assert got["f1_mean"] == pytest.approx((2 / 3 + 0) / 2)        # 1/3
    assert got["accuracy_mean"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # 2/3


def test_task_metrics_attributes_ignore_masked_entries():
    logits, target, mask = _attribute_split()
    got = task_metrics(ATTR, logits, target, mask)
    rng = np.random.default_rng(1)
    for _ in range(20):
        changed_logits, changed_target = logits.copy(), target.copy()
        changed_logits[~mask] = rng.normal(scale=10, size=int((~mask).sum()))
        changed_target[~mask] = rng.integers(0, 2, size=int((~mask).sum()))
        assert task_metrics(ATTR, changed_logits, changed_target, mask) == got
    # a non-binary placeholder for "missing" (EmotioNet's 999) at a masked entry changes nothing either
    placeholder = target.copy()
    placeholder[~mask] = 999
    assert task_metrics(ATTR, logits, placeholder, mask) == got


def test_task_metrics_attributes_nothing_annotated_is_nan():
    got = task_metrics(ATTR, np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))
    assert all(math.isnan(v) for v in got.values())


# ----- masked losses -----------------------------------------------------------------------------

def test_masked_cross_entropy_equals_cross_entropy_over_annotated_rows():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 4, generator=gen, requires_grad=True)
    target = torch.tensor([0, 3, -1, 2, 1, -1, 0, 2])
    mask = torch.tensor([True, True, False, True, False, True, True, True])
    keep = torch.tensor([True, True, False, True, False, False, True, True])  # mask and target >= 0
    for smoothing in (0.0, 0.1):
        got = masked_cross_entropy(logits, target, mask, label_smoothing=smoothing)
        expected = F.cross_entropy(logits[keep], target[keep], label_smoothing=smoothing)
        torch.testing.assert_close(got, expected)
    # unannotated rows get no gradient
    (grad,) = torch.autograd.grad(masked_cross_entropy(logits, target, mask), logits)
    assert torch.all(grad[~keep] == 0) and torch.any(grad[keep] != 0)


def test_masked_cross_entropy_nothing_annotated_is_zero_with_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.tensor([-1, 2, -1]), torch.tensor([False, False, True]))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_masked_binary_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    # annotated entries:
    #   (0, 0): logit 0, target 1     -> -log sigmoid(0)           = log 2
    #   (1, 0): logit log 3, target 0 -> -log(1 - sigmoid(log 3)) = -log(1 - 3/4) = log 4 = 2 log 2
    #   (1, 1): logit 0, target 1     -> log 2
    # pooled: sum = 4 log 2 over 3 annotated entries -> 4/3 log 2 (a mean over all 4 entries would be log 2)
    # per_image (the paper's Eq. 1, the default): image 0 -> log 2 (1 label), image 1 -> 3 log 2 / 2 (2 labels);
    # the mean over the 2 images -> 5/4 log 2
    pooled = masked_binary_cross_entropy(logits, target, mask, reduction="pooled")
    assert pooled.item() == pytest.approx(4 / 3 * math.log(2.0), rel=1e-6)
    per_image = masked_binary_cross_entropy(logits, target, mask)
    assert per_image.item() == pytest.approx(5 / 4 * math.log(2.0), rel=1e-6)


def test_per_image_attribute_loss_skips_unannotated_images_and_counts_images():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [True, True], [False, False]])  # image 2: no label at all
    loss = masked_binary_cross_entropy(logits, target, mask, reduction="per_image")
    assert loss.item() == pytest.approx(5 / 4 * math.log(2.0), rel=1e-6)  # over 2 images, not 3
    assert task_loss(ATTR_2, logits, target, mask).item() == pytest.approx(5 / 4 * math.log(2.0), rel=1e-6)
    assert task_loss(ATTR_2, logits, target, mask, attribute_loss="pooled").item() == pytest.approx(
        4 / 3 * math.log(2.0), rel=1e-6)
    with pytest.raises(ValueError, match="per_image"):
        masked_binary_cross_entropy(logits, target, mask, reduction="mean")


ATTR_2 = TaskSpec("attrs", "attributes", ("p", "q"))


@pytest.mark.parametrize("reduction", ["per_image", "pooled"])
def test_missing_attribute_label_is_never_a_negative(reduction):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=gen, requires_grad=True)
    target = (torch.rand(5, 3, generator=gen) < 0.5).float()
    mask = torch.rand(5, 3, generator=gen) < 0.6
    mask[0, 0], mask[1, 1] = False, True

    def loss_and_grad(t):
        loss = masked_binary_cross_entropy(logits, t, mask, reduction=reduction)
        (grad,) = torch.autograd.grad(loss, logits)
        return loss.detach(), grad

    base_loss, base_grad = loss_and_grad(target)
    assert torch.all(base_grad[~mask] == 0)
    for value in (0.0, 1.0, 999.0):
        changed = target.clone()
        changed[~mask] = value
        loss, grad = loss_and_grad(changed)
        torch.testing.assert_close(loss, base_loss)
        torch.testing.assert_close(grad, base_grad)


def test_masked_binary_cross_entropy_nothing_annotated_is_zero_with_gradient():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = masked_binary_cross_entropy(logits, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_task_loss_dispatches_on_kind():
    logits = torch.randn(4, 3)
    target = torch.tensor([0, 2, -1, 1])
    mask = target >= 0
    torch.testing.assert_close(task_loss(CLS, logits, target, mask), masked_cross_entropy(logits, target, mask))
    attr_target = torch.tensor([[1.0, 0.0, 1.0]] * 4)
    attr_mask = torch.ones(4, 3, dtype=torch.bool)
    torch.testing.assert_close(task_loss(ATTR, logits, attr_target, attr_mask),
                               F.binary_cross_entropy_with_logits(logits, attr_target))
