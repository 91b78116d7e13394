"""Mixed-sample augmentation under missing labels: mixup, CutMix and MixAugment, applied to whole batches.

- mixup (Zhang, Cisse, Dauphin & Lopez-Paz, ICLR 2018): x~ = lam*x_i + (1-lam)*x_j, y~ = lam*y_i + (1-lam)*y_j,
  lam ~ Beta(alpha, alpha), one lam per batch and the partner j a permutation of the batch.
- CutMix (Yun et al., ICCV 2019): a box of x_j pasted into x_i; lam is the share of x_i's pixels left.
- MixAugment (Psaroudakis & Kollias, CVPR Workshops 2022): the network sees the real examples *and*
  the virtual (mixed) ones, all in the loss: the batch becomes [real; virtual], twice as long.

Missing labels need two rules, because a mixed image's label is known only where both images' are:
1. Partners are drawn *within groups of rows annotated for the same tasks* (in a joined db, within
   each source dataset), so an expression-only image is never mixed with an AU-only one, which would
   give a virtual image with no known label for either task.
2. A virtual row is annotated for a task (an attribute entry) only where both partners are; its
   target there is the lam-mix of theirs: soft class probabilities (B, N) and attribute values in
   [0, 1]. Cross-entropy and binary cross-entropy are linear in the target, so the loss on a soft
   target equals lam * loss(y_i) + (1 - lam) * loss(y_j), the mixup loss.

Class targets of a mixed batch are float (B, K) probabilities; K is the training split's largest class
index + 1 (the loss pads to the head's N classes, the missing ones having probability 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.tasks import Batch, collate

MixMode = Literal["mixup", "cutmix", "mixup_or_cutmix"]


class BatchMixer:
    """Horizontal flips per sample (``__call__``) and mixed virtual examples per batch (:meth:`mix`).

    Args:
        mode: ``mixup``, ``cutmix``, or ``mixup_or_cutmix`` (one of the two per batch, at random).
        keep_real: keep the real examples next to the virtual ones (MixAugment); False = plain mixup.
        alpha: lam ~ Beta(alpha, alpha); 1.0 draws lam uniformly in [0, 1].
        flip: flip each sample horizontally with probability 0.5 before mixing.
    """

    def __init__(self, *, mode: MixMode = "mixup", keep_real: bool = True, alpha: float = 1.0, flip: bool = True) -> None:
        if mode not in ("mixup", "cutmix", "mixup_or_cutmix") or alpha <= 0:
            raise ValueError(f"mixing needs mode mixup/cutmix/mixup_or_cutmix and alpha > 0, got {mode!r}, {alpha}")
        self.mode, self.keep_real, self.alpha, self.flip = mode, keep_real, alpha, flip
        self.num_classes: dict[str, int] = {}  # soft-target width per class task, set by the loader

    def __call__(self, x: Tensor) -> Tensor:
        if self.flip and bool(torch.rand(()) < 0.5):
            return x.flip(-1)
        return x

    def mix(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """[real; virtual] (MixAugment) or the virtual rows alone; targets and masks mixed as the module says."""
        lam = beta_draw(self.alpha, generator)
        partner = partners(annotation_groups(batch), generator)
        use_cutmix = self.mode == "cutmix" or (self.mode == "mixup_or_cutmix" and bool(torch.rand((), generator=generator) < 0.5))
        if use_cutmix:
            inputs, lam = cutmix_inputs(batch.inputs, partner, lam, generator)
        else:
            inputs = lam * batch.inputs + (1.0 - lam) * batch.inputs[partner]
        targets, masks = {}, {}
        for task, target in batch.targets.items():
            targets[task], masks[task] = mix_targets(target, batch.masks[task], partner, lam,
                                                     self.num_classes.get(task))
        virtual = Batch(inputs, targets, masks, batch.index.clone())  # a virtual row keeps its first image's index
        return concat(soft_batch(batch, self.num_classes), virtual) if self.keep_real else virtual


def beta_draw(alpha: float, generator: torch.Generator | None = None) -> float:
    """lam ~ Beta(alpha, alpha), seeded from torch's RNG (``generator``, else the global one, which the
    DataLoader seeds per worker), so a run's mixing is repeatable."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def annotation_groups(batch: Batch) -> Tensor:
    """(B,) group id per row: rows annotated (at least partly) for the same set of tasks share one."""
    key = torch.zeros(len(batch), dtype=torch.long)
    for bit, task in enumerate(sorted(batch.targets)):
        mask, target = batch.masks[task], batch.targets[task]
        annotated = mask if mask.ndim == 1 else mask.any(dim=1)
        if not target.is_floating_point():
            annotated = annotated & (target >= 0)
        key |= annotated.long() << bit
    return key


def partners(groups: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """(B,) partner row of each row: a random permutation within each group (a lone row is its own partner)."""
    partner = torch.arange(len(groups))
    for value in torch.unique(groups):
        rows = torch.nonzero(groups == value).flatten()
        partner[rows] = rows[torch.randperm(len(rows), generator=generator)]
    return partner


def cutmix_inputs(inputs: Tensor, partner: Tensor, lam: float, generator: torch.Generator | None) -> tuple[Tensor, float]:
    """Paste one box of the partners into every image; returns the images and lam = the share left unchanged."""
    height, width = inputs.shape[-2:]
    cut = (1.0 - lam) ** 0.5  # the box covers (1 - lam) of the image before clipping
    box_h, box_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    mixed = inputs.clone()
    mixed[..., top:bottom, left:right] = inputs[partner][..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / float(height * width)


def class_probabilities(target: Tensor, mask: Tensor, width: int | None) -> tuple[Tensor, Tensor]:
    """Class indices (B,) -> (one-hot (B, K) float, annotated (B,)); soft targets pass through."""
    if target.is_floating_point():
        return target, mask
    annotated = mask & (target >= 0)
    k = width or int(target.max().clamp_min(0)) + 1
    return F.one_hot(target.clamp_min(0), k).float() * annotated[:, None], annotated


def mix_targets(target: Tensor, mask: Tensor, partner: Tensor, lam: float, width: int | None) -> tuple[Tensor, Tensor]:
    """The virtual rows' target and mask: the lam-mix where both partners are annotated, masked elsewhere."""
    if mask.ndim == 1:  # a class task
        probs, annotated = class_probabilities(target, mask, width)
        both = annotated & annotated[partner]
        mixed = lam * probs + (1.0 - lam) * probs[partner]
        return mixed * both[:, None], both
    both = mask & mask[partner]
    mixed = lam * target.float() + (1.0 - lam) * target.float()[partner]
    return torch.where(both, mixed, torch.zeros_like(mixed)), both


def soft_batch(batch: Batch, num_classes: dict[str, int]) -> Batch:
    """``batch`` with class targets as one-hot probabilities, so real and virtual rows stack."""
    targets, masks = {}, {}
    for task, target in batch.targets.items():
        if batch.masks[task].ndim == 1:
            targets[task], masks[task] = class_probabilities(target, batch.masks[task], num_classes.get(task))
        else:
            targets[task], masks[task] = target.float(), batch.masks[task]
    return Batch(batch.inputs, targets, masks, batch.index)


def concat(first: Batch, second: Batch) -> Batch:
    """Rows of ``first`` then ``second``."""
    cat = lambda a, b: torch.cat([a, b])  # noqa: E731
    return Batch(cat(first.inputs, second.inputs), {t: cat(v, second.targets[t]) for t, v in first.targets.items()},
                 {t: cat(m, second.masks[t]) for t, m in first.masks.items()}, cat(first.index, second.index))


class MixCollate:
    """A DataLoader ``collate_fn`` that stacks samples, then mixes the batch (picklable for workers)."""

    def __init__(self, mixer: BatchMixer) -> None:
        self.mixer = mixer

    def __call__(self, samples: Sequence[dict]) -> Batch:
        return self.mixer.mix(collate(samples))


#: Augmentation names (``Preset.augmentation``) that mix batches, and their mixers.
MIXERS: dict[str, dict] = {
    "mixup": {"mode": "mixup", "keep_real": False},
    "mixaugment": {"mode": "mixup", "keep_real": True},
    "mixaugment_cutmix": {"mode": "mixup_or_cutmix", "keep_real": True},
}
