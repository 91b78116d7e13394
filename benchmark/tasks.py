"""The data contract shared by dbs, methods and the runner: task specs, the problem, batches, masked losses.

Missing annotations are the normal case (Kollias et al., AAAI-24, Sec. 3): a class target of -1
or an attribute mask of 0 means "not annotated", never "negative". Every loss here is computed
over annotated entries only and normalised by their count.

Under ``torchrun`` each process holds a shard of the global batch and gradients are averaged across
processes, so each process's loss is its share: its sum over its annotated entries divided by the
*global* count over the world size (:func:`global_count`, :func:`as_global_mean`); the mean of the
shares over processes is then the loss of the whole global batch, whatever each shard annotates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.collectives import as_global_mean
from benchmark.config import ATTRIBUTE_LOSSES

TaskKind = Literal["multiclass", "attributes"]

#: Every metric the suite computes, and whether a larger value is better.
METRIC_HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "mean_class_accuracy": True,
    "f1_macro": True,
    "accuracy_mean": True,
    "f1_mean": True,
    "f1_acc_avg": True,  # (f1_mean + accuracy_mean) / 2: the EmotioNet challenge's AU score
}
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "multiclass": ("accuracy", "mean_class_accuracy", "f1_macro"),
    "attributes": ("f1_mean", "accuracy_mean"),
}
DEFAULT_PRIMARY: dict[str, str] = {"multiclass": "accuracy", "attributes": "f1_mean"}


@dataclass(frozen=True)
class TaskSpec:
    """One task: a multi-class problem over ``labels`` or ``len(labels)`` binary attributes.

    Args:
        name: task name, used as the head name and in stored metrics.
        kind: ``"multiclass"`` (one of N classes) or ``"attributes"`` (M binary labels).
        labels: class names (multiclass) or attribute names (attributes).
        metrics: the metrics reported for the task; defaults by kind.
        primary: the metric used for model selection and the negative-transfer verdict.
    """

    name: str
    kind: TaskKind
    labels: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    primary: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DEFAULT_METRICS:
            raise ValueError(f"task {self.name!r}: kind must be 'multiclass' or 'attributes', got {self.kind!r}")
        if len(self.labels) < (2 if self.kind == "multiclass" else 1):
            raise ValueError(f"task {self.name!r}: too few labels ({len(self.labels)})")
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "metrics", tuple(self.metrics) or DEFAULT_METRICS[self.kind])
        object.__setattr__(self, "primary", self.primary or DEFAULT_PRIMARY[self.kind])
        unknown = [m for m in self.metrics if m not in METRIC_HIGHER_IS_BETTER]
        if unknown or self.primary not in self.metrics:
            raise ValueError(f"task {self.name!r}: unknown metrics {unknown} or primary {self.primary!r} not in {self.metrics}")

    @property
    def num_outputs(self) -> int:
        """Width of the task's head: N class logits or M attribute logits."""
        return len(self.labels)

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of ``metric`` is better."""
        return METRIC_HIGHER_IS_BETTER[metric]


@dataclass(frozen=True)
class Problem:
    """What a method may know about the db (and fold) it is built for.

    Args:
        db: the db's registry name.
        tasks: the tasks, in head order.
        priors: built-in relatedness matrices p(attribute | class) by source name (``"domain"``
            for domain knowledge, or a named published table), each (N classes, M attributes).
        empirical: counts p(attribute | class) on the training split's co-annotated images when
            called (source ``"db"``); None where the db cannot say.
        binary_sources: priors that are domain-knowledge tables of related / unrelated pairs, which
            the paper binarises for distribution matching (the affect case's Du et al. table).
    """

    db: str
    tasks: tuple[TaskSpec, ...]
    priors: Mapping[str, np.ndarray] = field(default_factory=dict)
    empirical: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)
    binary_sources: frozenset[str] = frozenset()

    def task(self, name: str) -> TaskSpec:
        """The task called ``name``; an error lists the tasks there are."""
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise ValueError(f"db {self.db!r} has no task {name!r}; its tasks are {[t.name for t in self.tasks]}")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def pair(self) -> tuple[TaskSpec, TaskSpec]:
        """The (class task, attribute task) pair the coupling methods need; an error otherwise."""
        classes = [t for t in self.tasks if t.kind == "multiclass"]
        attributes = [t for t in self.tasks if t.kind == "attributes"]
        if len(classes) != 1 or len(attributes) != 1:
            raise ValueError(f"db {self.db!r} has {len(classes)} class and {len(attributes)} attribute tasks; "
                             f"this method needs exactly one of each")
        return classes[0], attributes[0]

    def relatedness_sources(self) -> list[str]:
        """Names :meth:`relatedness` accepts here."""
        return list(self.priors) + (["db"] if self.empirical is not None else [])

    def relatedness(self, source: str) -> np.ndarray:
        """p(attribute | class) from ``source``: a built-in prior, or ``"db"`` (counted on the training split)."""
        if source in self.priors:
            return np.asarray(self.priors[source], dtype=float)
        if source == "db" and self.empirical is not None:
            return np.asarray(self.empirical(), dtype=float)
        raise ValueError(f"db {self.db!r} has no relatedness source {source!r}; it has "
                         f"{self.relatedness_sources()} (or pass a CSV file path)")


@dataclass
class Batch:
    """A mini-batch: inputs, and per task a target and a mask of annotated entries.

    ``targets[t]`` is (B,) int64 with -1 for "not annotated" (multiclass) or (B, M) float in
    {0, 1} (attributes); ``masks[t]`` is (B,) or (B, M) bool, True where annotated. A batch mixed
    by MixAugment (``benchmark/mixing.py``) carries soft targets instead: (B, N) float class
    probabilities per row (multiclass, mask (B,)) and attribute targets in [0, 1].
    """

    inputs: Tensor
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]
    index: Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(
            move(self.inputs),
            {k: move(v) for k, v in self.targets.items()},
            {k: move(v) for k, v in self.masks.items()},
            self.index,
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (the DataLoader's ``pin_memory`` calls this), for non-blocking copies."""
        pin = lambda t: t.pin_memory()  # noqa: E731
        return Batch(pin(self.inputs), {k: pin(v) for k, v in self.targets.items()},
                     {k: pin(v) for k, v in self.masks.items()}, self.index)


def collate(samples: Sequence[dict]) -> Batch:
    """Stack per-sample dicts ``{"input", "targets", "masks", "index"}`` into a :class:`Batch`.

    Every sample carries every task of the db (an unannotated one with mask False), so samples that name
    different tasks mean a broken dataset; that is refused rather than a task silently dropped."""
    tasks = samples[0]["targets"].keys()
    for sample in samples[1:]:
        if sample["targets"].keys() != tasks or sample["masks"].keys() != tasks:
            raise ValueError(
                f"collate: sample {sample['index']} has targets for {sorted(sample['targets'])} and masks for "
                f"{sorted(sample['masks'])}, the batch's first sample {sorted(tasks)}; a dataset must give every "
                "sample every task (mask False where it is not annotated)")
    return Batch(
        inputs=torch.stack([s["input"] for s in samples]),
        targets={t: torch.stack([torch.as_tensor(s["targets"][t]) for s in samples]) for t in tasks},
        masks={t: torch.stack([torch.as_tensor(s["masks"][t]) for s in samples]) for t in tasks},
        index=torch.as_tensor([s["index"] for s in samples]),
    )


def masked_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy averaged over annotated samples; 0 (still differentiable) when none is.

    ``target`` is (B,) class indices (-1 = missing) or (B, K <= N) float class probabilities (soft
    targets of mixed images; classes past K have probability 0), where
    CE(p, lambda*a + (1-lambda)*b) = lambda*CE(p, a) + (1-lambda)*CE(p, b).
    """
    if target.is_floating_point():
        if not bool(mask.any()):
            return logits.sum() * 0.0
        soft = F.pad(target[mask].to(logits.dtype), (0, logits.shape[1] - target.shape[1]))
        return F.cross_entropy(logits[mask], soft, label_smoothing=label_smoothing)
    mask = mask & (target >= 0)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], target[mask], label_smoothing=label_smoothing)




def masked_binary_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor, label_smoothing: float = 0.0,
                                reduction: str = "per_image") -> Tensor:
    """Binary cross-entropy over annotated (sample, attribute) entries, reduced as ``reduction`` says
    (see :data:`ATTRIBUTE_LOSSES`); 0 (still differentiable) when no entry is annotated."""
    if reduction not in ATTRIBUTE_LOSSES:
        raise ValueError(f"attribute loss reduction must be one of {ATTRIBUTE_LOSSES}, got {reduction!r}")
    weight = mask.to(logits.dtype)
    target = torch.where(mask, target, torch.zeros_like(target))  # a NaN/999 placeholder must not leak in
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    per_entry = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    if reduction == "pooled":
        return (per_entry * weight).sum() / weight.sum().clamp_min(1.0)
    per_image_count = weight.sum(dim=1)  # (B, M) -> (B,)
    per_image = (per_entry * weight).sum(dim=1) / per_image_count.clamp_min(1.0)  # (B,)
    return per_image.sum() / (per_image_count > 0).sum().clamp_min(1).to(logits.dtype)


def attribute_count(mask: Tensor, reduction: str = "per_image") -> Tensor:
    """What the attribute loss is a mean over: annotated images (``per_image``) or entries (``pooled``)."""
    return mask.any(dim=1).sum() if reduction == "per_image" else mask.sum()


def task_loss(spec: TaskSpec, logits: Tensor, target: Tensor, mask: Tensor, label_smoothing: float = 0.0,
              attribute_loss: str = "per_image") -> Tensor:
    """The supervised loss of one task over its annotated entries (this process's share under ``torchrun``).

    ``attribute_loss`` is the reduction of an attribute task's loss (:data:`ATTRIBUTE_LOSSES`).
    """
    if spec.kind == "multiclass":
        loss = masked_cross_entropy(logits, target, mask, label_smoothing)
        count = (mask if target.is_floating_point() else mask & (target >= 0)).sum()
    else:
        loss = masked_binary_cross_entropy(logits, target, mask, label_smoothing, attribute_loss)
        count = attribute_count(mask, attribute_loss)
    return as_global_mean(loss, count)
