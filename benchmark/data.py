"""DataLoaders for a run: augmentation from the preset, unannotated images dropped where useless.

A mixing augmentation (``mixup``, ``mixaugment``, ``mixaugment_cutmix``; ``benchmark/mixing.py``) is a
:class:`~benchmark.mixing.BatchMixer`: set as the dataset's per-sample ``transform`` it flips images, and
the training loader sees its ``mix`` method and mixes each collated batch. A dataset's
``sample_weights`` turn the training loader's shuffle into seeded weighted sampling with replacement.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, Subset, WeightedRandomSampler

from benchmark.mixing import MIXERS, BatchMixer, MixCollate
from benchmark.distributed import ShardedSampler
from benchmark.seeding import seed_worker
from benchmark.tasks import collate
from datasets.base import TaskDataset, TensorTaskDataset

AUGMENTATIONS = ("none", "flip", "affine", *MIXERS)


def augmentation(name: str) -> Callable[[Tensor], Tensor] | None:
    """The per-sample training transform called ``name`` (see :data:`AUGMENTATIONS`)."""
    if name == "none":
        return None
    if name in MIXERS:
        return BatchMixer(**MIXERS[name])
    from torchvision.transforms import v2

    if name == "flip":
        return v2.RandomHorizontalFlip()
    if name == "affine":  # the paper's CUB/CAD protocol: small rotations, shifts and scalings
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))])
    raise ValueError(f"unknown augmentation {name!r}; choose one of {AUGMENTATIONS}")


#: Most DataLoader workers a process gets by default.
MAX_WORKERS = 16


def default_workers(dataset: TaskDataset) -> int:
    """No worker processes for in-memory tensors (they would only add copies); else this process's share of
    the CPUs it may use (split between torchrun's processes on the node), one kept for the training loop."""
    if isinstance(dataset, TensorTaskDataset):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_WORKERS, per_process - 1))


def make_loader(dataset: TaskDataset, batch_size: int, *, train: bool, generator: torch.Generator | None = None,
                keep_tasks: Sequence[str] | None = None, workers: int | None = None,
                pin_memory: bool = False, shard: tuple[int, int] | None = None) -> DataLoader:
    """A loader over ``dataset``; with ``keep_tasks``, only images annotated for one of them are kept.

    ``shard`` = (rank, processes) under torchrun: this process's share of the order one process
    would draw. A training loader starts its workers afresh each epoch, seeded from ``generator``,
    so a run resumed from a checkpoint draws what it would have drawn.
    """
    data: torch.utils.data.Dataset = dataset
    if keep_tasks is not None:
        keep = dataset.annotated(keep_tasks)
        if len(keep) == 0:
            raise ValueError(f"no training image is annotated for any of the tasks {list(keep_tasks)}")
        data = Subset(dataset, keep.tolist())
    sampler = None
    if train and getattr(dataset, "sample_weights", None) is not None:  # with replacement, len(data) draws an epoch
        weights = torch.as_tensor(dataset.sample_weights, dtype=torch.double)
        weights = weights if keep_tasks is None else weights[torch.as_tensor(keep)]
        sampler = WeightedRandomSampler(weights, num_samples=len(data), replacement=True, generator=generator)
    if shard is not None:  # DataLoader(shuffle=True, generator=g) draws this same RandomSampler order
        base = sampler or (RandomSampler(data, generator=generator) if train else SequentialSampler(data))
        sampler = ShardedSampler(base, *shard)
    n_workers = default_workers(dataset) if workers is None else workers
    return DataLoader(data, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      collate_fn=batch_collate(dataset) if train else collate, generator=generator,
                      num_workers=n_workers, worker_init_fn=seed_worker if n_workers else None,
                      pin_memory=pin_memory, drop_last=False, persistent_workers=n_workers > 0 and not train)


def batch_collate(dataset: TaskDataset) -> Callable:
    """``collate``, or a mixing collate when the dataset's transform is a :class:`BatchMixer`."""
    mixer = getattr(dataset, "transform", None)
    if not isinstance(mixer, BatchMixer):
        return collate
    mixer.num_classes = {t: int(v.max().clamp_min(0)) + 1 for t, v in dataset.targets.items()
                         if dataset.masks[t].ndim == 1 and not v.is_floating_point()}
    return MixCollate(mixer)
