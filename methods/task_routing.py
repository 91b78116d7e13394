"""``task_routing``: a fixed random channel mask per task in every conv layer; one task per training batch."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, Method, MultiTaskModel
from methods.task_paths import TaskPathModel

log = logging.getLogger(__name__)

TASK_CHOICES = ("random", "round_robin")


def mask_sites(backbone: nn.Module) -> list[tuple[nn.Module, int]]:
    """Where to mask, with the channel count: after each conv's BatchNorm, or after the conv itself without one.

    A BatchNorm2d counts as a conv's when it comes right after the conv in the module tree and
    normalises its output channels (timm's ResNets and ``vgg*_bn``, the built-in smallcnn); the
    multiplication then comes after conv + BN and before the non-linearity.
    """
    modules = list(backbone.modules())
    sites = []
    for position, module in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            following = modules[position + 1] if position + 1 < len(modules) else None
            is_norm = isinstance(following, (nn.BatchNorm2d, nn.SyncBatchNorm))  # SyncBatchNorm: torchrun on GPUs
            is_its_norm = is_norm and following.num_features == module.out_channels
            sites.append((following if is_its_norm else module, module.out_channels))
    if not sites:
        raise ValueError(f"task_routing masks conv channels, and {type(backbone).__name__} has no nn.Conv2d; "
                         f"use a convolutional backbone (smallcnn, vgg11, vgg16, resnet18, resnet50, ...)")
    return sites


def random_masks(n_tasks: int, n_channels: int, sigma: float, generator: torch.Generator) -> Tensor:
    """(T, C) of 0/1: per task, floor(σ·C) channels drawn at random set to 0, the rest 1."""
    masks = torch.ones(n_tasks, n_channels)
    n_masked = int(sigma * n_channels)
    for task in range(n_tasks):
        masks[task, torch.randperm(n_channels, generator=generator)[:n_masked]] = 0.0
    return masks


class ChannelRouter(nn.Module):
    """The masks (T, C) of one layer, a buffer, and the task whose mask its forward hook applies."""

    def __init__(self, masks: Tensor) -> None:
        super().__init__()
        self.register_buffer("masks", masks)
        self.active = 0

    def hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        """Forward hook: the layer's output times the active task's mask, broadcast over (B, C, H, W)."""
        mask = self.masks[self.active].to(output.dtype)
        return output * mask.view(1, -1, *([1] * (output.dim() - 2)))


class RoutedNet(TaskPathModel):
    """The backbone with a :class:`ChannelRouter` hooked onto every conv layer (its BN where it has one).

    Training picks one task per forward (``task_choice``) and returns its logits only; evaluation
    runs each task in turn.
    """

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict, sigma: float, generator: torch.Generator,
                 task_choice: str = "random") -> None:
        super().__init__(backbone, heads)
        sites = mask_sites(backbone)
        self.routers = nn.ModuleList([ChannelRouter(random_masks(len(heads), c, sigma, generator)) for _, c in sites])
        for (module, _), router in zip(sites, self.routers):
            # a bound method of a submodule (not a closure), so a deepcopy of the model hooks its own routers
            module.register_forward_hook(router.hook)
        self.task_choice = task_choice
        # a buffer, not a Python int: it lands in checkpoints, so a resumed round-robin run continues its turn
        self.register_buffer("turn", torch.zeros((), dtype=torch.long))

    def route(self, task_index: int) -> None:
        for router in self.routers:
            router.active = task_index

    def training_tasks(self) -> list[str]:
        """One task: drawn uniformly from the run's seeded RNG, or the next in turn."""
        if self.task_choice == "round_robin":
            index = int(self.turn) % len(self.tasks)
            self.turn += 1
        else:
            index = int(torch.randint(len(self.tasks), (1,)))
        return [self.tasks[index]]


@METHODS.register("task_routing")
class TaskRouting(Method):
    """Task Routing: each task uses a fixed random subset of every conv layer's channels (Strezoski, van Noord & Worring, ICCV 2019).

    The Task Routing Layer (Sec. 3) multiplies a layer's output by a binary mask m_t, one
    per task, drawn once at random with a fraction σ of the channels set to 0 and then fixed. Here
    it follows every conv layer of the backbone (after its BatchNorm where it has one, before the
    non-linearity; a 0/1 mask commutes with ReLU anyway) as an autograd-visible product, so masked
    channels get no gradient from that task. The masks are buffers, never trained, and travel
    in checkpoints. The weights are all shared; each task's forward is its own pass. Training
    runs one task per batch and returns only its logits, so a batch trains one task; evaluation
    runs every task, each with its mask. ``PerTaskOutput.features`` is the first task's representation.

    Args:
        sigma: σ, the fraction of each layer's channels masked for each task (floor(σ·C) of C).
        mask_seed: seed of the masks' generator; None draws it from the run's seeded RNG, so each
            run seed gets its own reproducible masks.
        task_choice: ``random`` (a uniformly drawn task per training batch, the paper's) or
            ``round_robin`` (tasks in turn).
    """

    builds_shared_representation = False  # a masked backbone pass per task

    def __init__(self, *, sigma: float = 0.5, mask_seed: int | None = None,
                 task_choice: Literal["random", "round_robin"] = "random") -> None:
        super().__init__()
        if not 0.0 <= sigma < 1.0 or task_choice not in TASK_CHOICES:
            raise ValueError(f"task_routing: sigma must be in [0, 1) and task_choice one of {TASK_CHOICES}; "
                             f"got sigma={sigma}, task_choice={task_choice!r}")
        self.sigma = sigma
        self.mask_seed = mask_seed
        self.task_choice = task_choice

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        seed = self.mask_seed if self.mask_seed is not None else int(torch.randint(2**31 - 1, (1,)))
        model = RoutedNet(backbone, heads, self.sigma, torch.Generator().manual_seed(seed), self.task_choice)
        log.info("task_routing: %d masked layers, sigma=%.2f, mask seed %d", len(model.routers), self.sigma, seed)
        return model
