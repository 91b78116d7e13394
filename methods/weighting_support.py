"""What the loss- and gradient-weighting methods share: which tasks a batch annotates, global losses, step seeds.

A task with no annotated entry in a batch has a loss of 0 that carries no information (not "solved"):
every weighting method leaves such a task out of its statistics and updates for that step. Under
``torchrun`` "annotated" means annotated somewhere in the global batch and losses are those of the
global batch, so every process takes the same decisions and keeps the same state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark.collectives import all_reduce_mean, global_count
from benchmark.tasks import Batch

_MASK64 = (1 << 64) - 1


def annotated_tasks(batch: Batch, tasks: list[str]) -> list[bool]:
    """For each of ``tasks``, whether the (global) batch holds an annotated entry of it (a class target of -1 is missing).

    One collective for all tasks under ``torchrun``; every process must call it at the same point.
    """
    if not tasks:
        return []
    counts = []
    for task in tasks:
        mask, target = batch.masks[task], batch.targets[task]
        if not target.is_floating_point():  # class indices: -1 also means "not annotated"
            mask = mask & (target >= 0)
        counts.append(mask.sum())
    return [bool(c > 0) for c in global_count(torch.stack(counts)).tolist()]


def global_task_losses(task_losses: dict[str, Tensor], tasks: list[str]) -> Tensor:
    """(T,) float64 detached losses of ``tasks`` over the global batch (each process holds its share)."""
    local = torch.stack([task_losses[t].detach().double() for t in tasks])
    return all_reduce_mean(local).detach()


def step_seed(seed: int, step: int) -> int:
    """A seed for the random draws of training step ``step`` of a run seeded with ``seed`` (SplitMix64 mixing).

    Deriving the draws from (seed, step) rather than from a generator's running state makes them the
    same on every process, after a resume, and independent of anything else that draws random numbers;
    mixing keeps seed s at step k unrelated to seed s+1 at step k-1.
    """
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(step) + 1) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) >> 1  # 63 bits: a valid torch seed


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator seeded with :func:`step_seed` (draw on the CPU, then move: identical on every device)."""
    return torch.Generator().manual_seed(step_seed(seed, step))
