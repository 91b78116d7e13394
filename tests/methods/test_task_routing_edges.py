"""Task Routing edges: a conv or its BN last in the module tree, the task a fresh router masks for,
the capability it declares, σ's lower bound and the mask seed drawn from the run's RNG."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from torch import nn

from benchmark.backbones import create_heads
from methods import GradientRequest
from methods.task_routing import ChannelRouter, TaskRouting, mask_sites
from tests.methods.tiny_mtl import tiny_problem

PROBLEM = tiny_problem(3)  # tasks "classes", "att0", "att1"
TASKS = [t.name for t in PROBLEM.tasks]
CHANNELS = 16


class ConvLast(nn.Module):
    """A conv that is the last module of the tree (nothing follows it in ``modules()``); features: its channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, CHANNELS, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


class ConvNormLast(nn.Module):
    """A conv whose BN is the last module of the tree; the BN's bias is 0.5, so a channel zeroed
    *before* the BN comes out as 0.5 (eval mode, running mean 0, var 1, weight 1), one zeroed after it as 0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, CHANNELS, 3, padding=1)
        self.norm = nn.BatchNorm2d(CHANNELS)
        nn.init.constant_(self.norm.bias, 0.5)

    def forward(self, x):
        return self.norm(self.conv(x)).mean(dim=(2, 3))


def _build(backbone: nn.Module, **options):
    return TaskRouting(**options).build(backbone, create_heads(PROBLEM.tasks, CHANNELS), PROBLEM)


# ----- the module after a conv, at the end of the module tree ---------------------------------------

def test_a_conv_last_in_the_tree_is_routed_itself():
    backbone = ConvLast()
    assert list(backbone.modules())[-1] is backbone.conv  # nothing follows the conv
    assert mask_sites(backbone) == [(backbone.conv, CHANNELS)]
    model = _build(ConvLast(), mask_seed=0)  # sigma 0.5: floor(0.5 * 16) = 8 channels masked per task
    model.eval()
    out = model(torch.randn(2, 3, 8, 8))
    (router,) = model.routers
    for index, task in enumerate(TASKS):
        masked = router.masks[index] == 0
        assert int(masked.sum()) == 8
        features = out.task_features[task]
        assert torch.equal(features[:, masked], torch.zeros(2, 8))  # masked channels: exactly 0
        assert bool((features[:, ~masked] != 0).all())  # the others pass


def test_a_batch_norm_last_in_the_tree_is_where_its_conv_is_masked():
    backbone = ConvNormLast()
    assert list(backbone.modules())[-1] is backbone.norm  # the BN is the tree's last module
    assert mask_sites(backbone) == [(backbone.norm, CHANNELS)]
    model = _build(ConvNormLast(), mask_seed=0)
    model.eval()
    out = model(torch.randn(2, 3, 8, 8))
    (router,) = model.routers
    for index, task in enumerate(TASKS):
        masked = router.masks[index] == 0
        # masked after the BN: 0, not the BN's bias 0.5 that a mask before the BN would leave
        assert torch.equal(out.task_features[task][:, masked], torch.zeros(2, 8))


# ----- the task a fresh router masks for ------------------------------------------------------------

def test_a_fresh_router_applies_the_first_tasks_mask():
    masks = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    router = ChannelRouter(masks)
    layer = nn.Identity()
    layer.register_forward_hook(router.hook)
    x = torch.arange(1.0, 9.0).view(2, 4)  # [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert torch.equal(layer(x), torch.tensor([[1.0, 0.0, 3.0, 0.0], [5.0, 0.0, 7.0, 0.0]]))  # task 0's mask


def test_a_freshly_built_network_routes_the_first_task_before_any_route():
    model = _build(ConvLast(), mask_seed=0)
    model.eval()
    (router,) = model.routers
    assert not torch.equal(router.masks[0], router.masks[1]) and not torch.equal(router.masks[0], router.masks[2])
    x = torch.randn(2, 3, 8, 8)
    unrouted = model.backbone(x)  # no forward of the model yet: nobody set a task
    assert torch.equal(unrouted[:, router.masks[0] == 0], torch.zeros(2, 8))
    assert torch.equal(unrouted, model(x, tasks=["classes"]).features)
    assert not torch.equal(unrouted, model(x, tasks=["att0"]).features)
    assert not torch.equal(unrouted, model(x, tasks=["att1"]).features)


# ----- capability ----------------------------------------------------------------------------------

class RoutedAtZ(TaskRouting):
    """Task Routing asking for gradients at the shared representation, which its per-task passes lack."""

    def gradient_request(self) -> GradientRequest:
        return GradientRequest("representation")


class RoutedAtParameters(TaskRouting):
    def gradient_request(self) -> GradientRequest:
        return GradientRequest("shared_parameters")


def test_it_declares_no_shared_representation_and_a_weighting_at_z_is_refused():
    assert TaskRouting.builds_shared_representation is False
    assert _build(ConvLast(), mask_seed=0).has_shared_representation is False
    TaskRouting().check_capabilities()  # no gradient request: nothing to refuse
    with pytest.raises(ValueError, match="has no z"):
        RoutedAtZ().check_capabilities()
    RoutedAtParameters().check_capabilities()  # every pass uses the shared parameters: served


# ----- sigma's range -------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [-0.5, -1e-9, -1.0])
def test_a_negative_sigma_is_refused(sigma):
    with pytest.raises(ValueError, match=re.escape("sigma must be in [0, 1)") + r".*" + re.escape(f"sigma={sigma}")):
        TaskRouting(sigma=sigma)


def test_sigma_zero_is_accepted_and_masks_nothing():
    model = _build(ConvLast(), sigma=0.0, mask_seed=0)
    (router,) = model.routers
    assert torch.equal(router.masks, torch.ones(3, CHANNELS))


# ----- the mask seed drawn from the run's RNG ------------------------------------------------------

def _expected_seed(run_seed: int) -> int:
    """The documented draw: one integer uniform in [0, 2^31 - 1) from the run's torch generator, the first
    draw after ``torch.manual_seed(run_seed)`` (so a run's seed fixes its masks)."""
    generator = torch.Generator().manual_seed(run_seed)
    return int(torch.randint(2**31 - 1, (1,), generator=generator))


@pytest.mark.parametrize("run_seed", [0, 3, 4, 6, 14])  # a few run seeds
def test_without_a_mask_seed_it_is_drawn_from_the_runs_rng_in_0_to_2_pow_31_minus_1(run_seed, caplog):
    expected = _expected_seed(run_seed)
    assert 0 <= expected < 2**31 - 1
    caplog.set_level(logging.INFO, logger="methods.task_routing")
    backbone, heads = ConvNormLast(), create_heads(PROBLEM.tasks, CHANNELS)
    torch.manual_seed(run_seed)
    drawn = TaskRouting().build(backbone, heads, PROBLEM)
    logged = [r.getMessage() for r in caplog.records if r.name == "methods.task_routing"]
    assert logged == [f"task_routing: 1 masked layers, sigma=0.50, mask seed {expected}"]
    explicit = _build(ConvNormLast(), mask_seed=expected)
    assert torch.equal(drawn.routers[0].masks, explicit.routers[0].masks)
    off_by_one = _build(ConvNormLast(), mask_seed=expected + 1)
    assert not torch.equal(drawn.routers[0].masks, off_by_one.routers[0].masks)
