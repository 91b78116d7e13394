"""DataLoaders for a run: augmentation from the preset, unannotated images dropped where useless."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from benchmark.seeding import seed_worker
from benchmark.tasks import collate
from datasets.base import TaskDataset, TensorTaskDataset

AUGMENTATIONS = ("none", "flip", "affine")


def augmentation(name: str) -> Callable[[Tensor], Tensor] | None:
    """The per-sample training transform called ``name`` (see :data:`AUGMENTATIONS`)."""
    if name == "none":
        return None
    from torchvision.transforms import v2

    if name == "flip":
        return v2.RandomHorizontalFlip()
    if name == "affine":  # the paper's CUB/CAD protocol: small rotations, shifts and scalings
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))])
    raise ValueError(f"unknown augmentation {name!r}; choose one of {AUGMENTATIONS}")


def default_workers(dataset: TaskDataset) -> int:
    """No worker processes for in-memory tensors (they would only add copies), else up to 4 per machine."""
    return 0 if isinstance(dataset, TensorTaskDataset) else min(4, os.cpu_count() or 1)


def make_loader(dataset: TaskDataset, batch_size: int, *, train: bool, generator: torch.Generator | None = None,
                keep_tasks: Sequence[str] | None = None, workers: int | None = None,
                pin_memory: bool = False) -> DataLoader:
    """A loader over ``dataset``; with ``keep_tasks``, only images annotated for one of them are kept."""
    data: torch.utils.data.Dataset = dataset
    if keep_tasks is not None:
        keep = dataset.annotated(keep_tasks)
        if len(keep) == 0:
            raise ValueError(f"no training image is annotated for any of the tasks {list(keep_tasks)}")
        data = Subset(dataset, keep.tolist())
    n_workers = default_workers(dataset) if workers is None else workers
    return DataLoader(data, batch_size=batch_size, shuffle=train, collate_fn=collate, generator=generator,
                      num_workers=n_workers, worker_init_fn=seed_worker if n_workers else None,
                      pin_memory=pin_memory, drop_last=False, persistent_workers=n_workers > 0)
