"""Collectives for losses and statistics over the global batch of every process (``torchrun``).

Each is the identity, bit for bit, when one process trains; under torch.distributed every process must
call it at the same point (they are collectives). The loss functions, the gradient engine and methods
with running statistics use them, so a run on K processes computes what one process would on the
K shards together.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes training together (``torchrun``); 1 without torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_count(count: Tensor) -> Tensor:
    """``count`` summed over every process (the global batch's annotated entries); as it is alone.

    Every process must call it at the same point, annotated entries or not (it is a collective).
    """
    if world_size() == 1:
        return count
    total = count.detach().to(torch.float64).clone()
    dist.all_reduce(total)
    return total


def as_global_mean(local_mean: Tensor, count: Tensor | int) -> Tensor:
    """This process's share of a mean over the global batch, from its mean over its own ``count`` entries.

    local_mean * count * K / global count: summed over the K processes' shares and divided by K
    (gradient averaging) it is the mean over every process's entries. Alone it is ``local_mean``
    unchanged, bit for bit; a process with no entry gets a share of 0.
    """
    if world_size() == 1:
        return local_mean
    count = torch.as_tensor(count, device=local_mean.device, dtype=torch.float64)
    factor = count * world_size() / global_count(count).clamp_min(1.0)
    return local_mean * factor.to(local_mean.dtype)


def all_reduce_mean(value: Tensor) -> Tensor:
    """The mean of ``value`` over every process (a collective, without gradient); ``value`` itself alone."""
    if world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size()
