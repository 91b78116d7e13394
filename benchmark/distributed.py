"""Training one run on several processes (``torchrun``): process group, data shards, gradient averaging.

The scheme is DistributedDataParallel's: every process starts from the same weights, trains on its
shard of each global batch, and averages its gradients with the others' before every optimizer step,
so the weights stay identical. The averaging is done here, explicitly, after the method's
``backward`` hook rather than inside it by DDP's reducer hooks: MGDA-UB sets its heads' gradients
from ``autograd.grad`` and AdaShare runs partial backwards with ``inputs=``, which the reducer never
sees (it would leave those gradients unreduced, or stall waiting for them). A gradient a process did
not compute counts as zero there. The per-process losses are shares of the global batch's loss
(``benchmark.tasks.as_global_mean``), so the average is the gradient of that loss.

Rank 0 alone evaluates, writes the store and files; the others get its answers through
:func:`from_main`. Seeds are the same on every process; the sampler shards the run's own seeded order
(:class:`ShardedSampler`), so K processes see the global batches one process would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from benchmark.collectives import world_size

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Collective timeout: rank 0 evaluates a whole split while the others wait in the next collective.
TIMEOUT = timedelta(minutes=60)
BUCKET_BYTES = 32 * 2**20  # gradients are averaged in flat buckets of about this size


def rank() -> int:
    """This process's rank; 0 without torch.distributed."""
    return dist.get_rank() if world_size() > 1 else 0


def is_main_process() -> bool:
    """Whether this process evaluates and writes (rank 0, or the only process)."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """Whether the environment names more than one process (``torchrun --nproc-per-node K``, K > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> torch.device:
    """Join torchrun's process group if there is one; the device this process trains on.

    ``device`` is the ``--device`` value: under torchrun ``auto`` and ``cuda`` mean this process's
    GPU (``cuda:LOCAL_RANK``, backend NCCL); ``cpu`` uses the gloo backend. Alone, it is parsed as is.
    """
    from benchmark.devices import pick_device

    if not launched_by_torchrun() or dist.is_initialized():
        return pick_device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", timeout=TIMEOUT,
                            device_id=chosen if chosen.type == "cuda" else None)
    log.info("process %d of %d on %s (%s)", dist.get_rank(), dist.get_world_size(), chosen, dist.get_backend())
    return chosen


def shutdown_distributed() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def from_main(read: Callable[[], T]) -> T:
    """``read()`` on rank 0, its value on every process (alone, just ``read()``)."""
    if world_size() == 1:
        return read()
    box = [read() if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every process's ``value``, by rank (alone, ``[value]``)."""
    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def per_process_batch(batch_size: int) -> int:
    """The batch size of one process: the global batch divided by the number of processes."""
    k = world_size()
    if batch_size % k:
        raise ValueError(f"--batch-size {batch_size} is the global batch and must split evenly over the {k} "
                         f"processes; use a multiple of {k}")
    return batch_size // k


def broadcast_state(*modules: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (they are seeded alike; this makes sure)."""
    if world_size() == 1:
        return
    for module in modules:
        for tensor in module.state_dict().values():
            if isinstance(tensor, torch.Tensor):
                dist.broadcast(tensor, src=0)


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Average every optimised parameter's gradient over the processes; alone, nothing.

    A parameter with a gradient on some processes only (a head whose task a shard did not run)
    gets zeros where it had none; one with none anywhere keeps None, so the optimizer skips it
    as it would alone.
    """
    if world_size() == 1:
        return
    params = list(dict.fromkeys(p for group in optimizer.param_groups for p in group["params"]))
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    grads = []
    for param, flag in zip(params, has.tolist()):
        if flag:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= world_size()
        for grad, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            grad.copy_(part.view_as(grad))


def _buckets(grads: Sequence[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive gradients of one dtype and device, about BUCKET_BYTES each (fewer, larger collectives)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in grads:
        if bucket and (grad.dtype != bucket[0].dtype or grad.device != bucket[0].device or size >= BUCKET_BYTES):
            yield bucket
            bucket, size = [], 0
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
    if bucket:
        yield bucket


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """Per key, the mean of the processes' values (each process's epoch losses, say); alone, ``values``."""
    if world_size() == 1:
        return values
    merged: dict[str, list[float]] = {}
    for part in gather_objects(values):
        for key, value in part.items():
            merged.setdefault(key, []).append(value)
    return {key: sum(v) / len(v) for key, v in merged.items()}


def use_sync_batchnorm(device: torch.device, wanted: bool) -> bool:
    """Whether to convert BatchNorm to SyncBatchNorm: under torchrun on GPU, when ``wanted``.

    SyncBatchNorm runs on GPUs only; on CPU (gloo) each process normalises with its own shard's
    statistics, which a warning says.
    """
    if world_size() == 1 or not wanted:
        return False
    if device.type != "cuda":
        if is_main_process():
            log.warning("BatchNorm statistics are per process on %s (SyncBatchNorm needs GPUs)", device)
        return False
    return True


class ShardedSampler(Sampler[int]):
    """One process's share of another sampler's order: items rank, rank + K, rank + 2K, ...

    Every process draws the same order (same seed, same generator state), so the K shards of
    each global batch are the batch one process would draw. The order is padded by wrapping
    around to a multiple of K, so every process runs the same number of steps.

    Args:
        base: the run's sampler (a seeded shuffle, or weighted sampling with replacement).
        rank: this process's rank. world: the number of processes.
    """

    def __init__(self, base: Sampler[int], rank: int, world: int) -> None:
        self.base, self.rank, self.world = base, rank, world

    def __len__(self) -> int:
        return -(-len(self.base) // self.world)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        order = list(self.base)
        order += order[: len(self) * self.world - len(order)]
        yield from order[self.rank::self.world]
