"""Task metrics over a whole split, computed on annotated entries only.

Conventions follow scikit-learn so numbers are comparable with other code: macro F1 averages
over the labels present in the targets or the predictions, and an F1 with no positive target
and no positive prediction counts as 0 (``zero_division=0``).
"""

from __future__ import annotations

import numpy as np

from benchmark.tasks import TaskSpec


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Fraction of samples whose predicted class equals the target."""
    return float(np.mean(pred == target)) if len(target) else float("nan")


def mean_class_accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Recall averaged over the classes present in ``target`` (balanced accuracy)."""
    classes = np.unique(target)
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[target == c] == c) for c in classes]))


def binary_f1(pred: np.ndarray, target: np.ndarray) -> float:
    """F1 of the positive class; 0 when there is no positive target and no positive prediction."""
    tp = float(np.sum((pred == 1) & (target == 1)))
    fp = float(np.sum((pred == 1) & (target == 0)))
    fn = float(np.sum((pred == 0) & (target == 1)))
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def f1_macro(pred: np.ndarray, target: np.ndarray) -> float:
    """One-vs-rest F1 averaged over the classes seen in targets or predictions."""
    labels = np.union1d(np.unique(target), np.unique(pred))
    if len(labels) == 0:
        return float("nan")
    return float(np.mean([binary_f1((pred == c).astype(int), (target == c).astype(int)) for c in labels]))


def attribute_scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-attribute (F1, accuracy) over annotated entries; attributes never annotated are skipped."""
    f1s, accs = [], []
    for j in range(target.shape[1]):
        keep = mask[:, j]
        if not keep.any():
            continue
        f1s.append(binary_f1(pred[keep, j], target[keep, j]))
        accs.append(float(np.mean(pred[keep, j] == target[keep, j])))
    return f1s, accs


def task_metrics(spec: TaskSpec, logits: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Every metric ``spec`` reports, from a split's logits, targets and annotation masks.

    Args:
        spec: the task.
        logits: (n, N) class logits or (n, M) attribute logits.
        target: (n,) class indices (-1 = missing) or (n, M) binary attributes.
        mask: (n,) or (n, M) bool, True where annotated.
    """
    if spec.kind == "multiclass":
        keep = mask & (target >= 0)
        pred, gold = logits[keep].argmax(axis=1), target[keep]
        values = {"accuracy": accuracy(pred, gold), "mean_class_accuracy": mean_class_accuracy(pred, gold),
                  "f1_macro": f1_macro(pred, gold)}
    else:
        mask = mask.astype(bool)
        f1s, accs = attribute_scores((logits > 0).astype(int), np.where(mask, target, 0).astype(int), mask)
        values = {"f1_mean": float(np.mean(f1s)) if f1s else float("nan"),
                  "accuracy_mean": float(np.mean(accs)) if accs else float("nan")}
        # The EmotioNet challenge's AU score (Benitez-Quiroz et al., arXiv:1703.01210, 2017): the mean
        # of the per-AU mean F1 and the per-AU mean accuracy.
        values["f1_acc_avg"] = (values["f1_mean"] + values["accuracy_mean"]) / 2
    return {m: values[m] for m in spec.metrics}
