"""Evaluation: a whole split's logits gathered, then every task metric computed at once."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.metrics import task_metrics
from benchmark.tasks import Problem
from methods.base import MultiTaskModel


@torch.no_grad()
def evaluate(model: MultiTaskModel, loader: DataLoader, problem: Problem, device: torch.device) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for every task the model has a head for, over the whole split."""
    model.eval()
    logits, targets, masks = defaultdict(list), defaultdict(list), defaultdict(list)
    for batch in loader:
        out = model(batch.inputs.to(device, non_blocking=True))
        for task, value in out.logits.items():
            logits[task].append(value.float().cpu())
            targets[task].append(batch.targets[task])
            masks[task].append(batch.masks[task])
    cat = lambda parts: torch.cat(parts).numpy()  # noqa: E731
    return {t: task_metrics(problem.task(t), cat(logits[t]), cat(targets[t]), cat(masks[t]).astype(bool))
            for t in model.tasks}


def selection_score(metrics: dict[str, dict[str, float]], problem: Problem) -> float:
    """Mean over tasks of the primary metric (negated where lower is better): higher is better."""
    specs = {t: problem.task(t) for t in metrics}
    values = [metrics[t][s.primary] * (1 if s.higher_is_better(s.primary) else -1) for t, s in specs.items()]
    return float(np.nanmean(values)) if values else float("nan")
