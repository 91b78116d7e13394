"""Task Routing: fixed seeded channel masks per task as buffers, after conv(+BN), one task per training batch."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from benchmark.backbones import create_backbone, create_heads
from methods.task_routing import TaskRouting, mask_sites
from tests.methods.tiny_mtl import tiny_problem

PROBLEM = tiny_problem(2)  # tasks "classes" and "att0"


def _build(backbone: str = "smallcnn", seed: int = 0, **options):
    torch.manual_seed(seed)
    net, width = create_backbone(backbone)
    return TaskRouting(**options).build(net, create_heads(PROBLEM.tasks, width), PROBLEM)


@pytest.fixture(scope="module")
def vgg11():
    """timm's VGG-11 (no BN; 133M parameters with its pre-logits MLP): built once for this module."""
    return _build("vgg11", mask_seed=0)


def _convs(model) -> list[nn.Conv2d]:
    return [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("backbone", ["smallcnn", "resnet18"])
def test_masked_fraction_is_sigma_in_every_layer(backbone):
    for sigma in (0.5, 0.25):
        model = _build(backbone, sigma=sigma)
        assert len(model.routers) == len(_convs(model))  # every conv layer is routed
        for router in model.routers:
            channels = router.masks.shape[1]
            assert set(router.masks.unique().tolist()) <= {0.0, 1.0}
            assert (router.masks == 0).sum(dim=1).tolist() == [int(sigma * channels)] * 2
        if sigma == 0.5:  # every layer here has an even width: exactly half masked
            assert all(float((r.masks == 0).float().mean()) == 0.5 for r in model.routers)


def test_vgg_is_routed_after_each_conv(vgg11):
    sites = mask_sites(vgg11.backbone)
    assert len(vgg11.routers) == len(_convs(vgg11)) == 10  # 8 feature convs + the 2 convs of timm's pre-logits MLP
    assert all(isinstance(module, nn.Conv2d) for module, _ in sites)  # no BN in vgg11: right after the conv
    assert all(float((r.masks == 0).float().mean()) == 0.5 for r in vgg11.routers)


def test_masks_follow_the_batch_norm_before_the_nonlinearity():
    model = _build("smallcnn")
    layers = list(model.backbone.features)
    sites = [module for module, _ in mask_sites(model.backbone)]
    assert sites == [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    assert all(isinstance(layers[layers.index(s) + 1], nn.ReLU) for s in sites)
    assert all(isinstance(m, nn.BatchNorm2d) for m, _ in mask_sites(create_backbone("resnet18")[0]))


def test_masks_are_buffers_not_parameters():
    model = _build("resnet18")
    net, width = create_backbone("resnet18")
    plain = sum(p.numel() for p in net.parameters()) + sum(p.numel() for p in create_heads(PROBLEM.tasks, width).parameters())
    assert sum(p.numel() for p in model.parameters()) == plain
    assert len([k for k in model.state_dict() if k.startswith("routers.")]) == len(model.routers)


@pytest.mark.parametrize("backbone", ["resnet18", "vgg11"])
def test_masked_channels_receive_zero_gradient(backbone, vgg11):
    model = vgg11 if backbone == "vgg11" else _build(backbone)
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        nn.init.ones_(norm.weight)  # timm zero-initialises each block's last BN, which would hide every gradient
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(4, 3, 32, 32), tasks=["att0"])
    out.logits["att0"].square().sum().backward()
    for conv, router in zip(_convs(model), model.routers):
        masked = router.masks[1] == 0  # task 1 is att0
        rows = conv.weight.grad.flatten(1).abs().sum(dim=1)  # one row per output channel
        assert float(rows[masked].sum()) == 0.0
        assert float(rows[~masked].sum()) > 0.0
    for (site, _), router in zip(mask_sites(model.backbone), model.routers):
        if isinstance(site, nn.BatchNorm2d):
            assert float(site.weight.grad[router.masks[1] == 0].abs().sum()) == 0.0
    model.zero_grad(set_to_none=True)


def test_same_seed_same_masks_and_they_survive_a_checkpoint():
    first, again, other = _build("resnet18", mask_seed=7), _build("resnet18", seed=1, mask_seed=7), _build("resnet18", mask_seed=8)
    masks = lambda m: torch.cat([r.masks.flatten() for r in m.routers])  # noqa: E731
    assert torch.equal(masks(first), masks(again)) and not torch.equal(masks(first), masks(other))
    torch.manual_seed(3)
    drawn, redrawn = _build("smallcnn", seed=3), _build("smallcnn", seed=3)  # mask_seed=None: from the run's seed
    assert torch.equal(masks(drawn), masks(redrawn))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(masks(other), masks(first))
    x = torch.randn(2, 3, 32, 32)
    first.eval(), other.eval()
    assert all(torch.equal(first(x).logits[t], other(x).logits[t]) for t in ("classes", "att0"))


def test_two_tasks_route_the_same_input_differently():
    x = torch.randn(2, 3, 16, 16)
    model = _build("smallcnn")
    model.eval()
    out = model(x)
    assert set(out.logits) == {"classes", "att0"} and torch.equal(out.features, out.task_features["classes"])
    assert not torch.allclose(out.task_features["classes"], out.task_features["att0"])
    shared = _build("smallcnn", sigma=0.0)  # σ = 0 masks nothing: both tasks see the same features
    shared.eval()
    same = shared(x)
    assert torch.equal(same.task_features["classes"], same.task_features["att0"])


def test_training_runs_one_task_per_batch():
    x = torch.randn(2, 3, 16, 16)
    model = _build("smallcnn", task_choice="round_robin")
    model.train()
    assert [list(model(x).logits) for _ in range(4)] == [["classes"], ["att0"], ["classes"], ["att0"]]
    model = _build("smallcnn")
    model.train()
    torch.manual_seed(0)
    picks = [next(iter(model(x).logits)) for _ in range(40)]
    torch.manual_seed(0)
    assert picks == [next(iter(model(x).logits)) for _ in range(40)] and set(picks) == {"classes", "att0"}
    assert list(model(x, tasks=["classes", "att0"]).logits) == ["classes", "att0"]


def test_bad_options_and_backbones_are_refused():
    with pytest.raises(ValueError, match="sigma must be in"):
        TaskRouting(sigma=1.0)
    with pytest.raises(ValueError, match="has no nn.Conv2d"):
        mask_sites(nn.Sequential(nn.Flatten(), nn.Linear(4, 4)))


def test_round_robin_turn_is_saved_with_the_model():
    """The turn counter is state: a model restored from a checkpoint continues the round-robin order."""
    import torch as _torch

    from benchmark.backbones import create_backbone, create_heads
    from datasets.synthetic import SyntheticDb
    from methods import METHODS

    problem = SyntheticDb(n_train=10, n_val=4, n_test=4, image_size=8).problem()

    def build():
        _torch.manual_seed(0)
        backbone, width = create_backbone("smallcnn")
        method = METHODS.get("task_routing")(task_choice="round_robin", mask_seed=0)
        return method.build(backbone, create_heads(problem.tasks, width), problem)

    first = build()
    order = [first.training_tasks()[0] for _ in range(3)]
    assert order[0] != order[1] and order[0] == order[2]
    restored = build()
    restored.load_state_dict(first.state_dict())
    assert restored.training_tasks()[0] == order[1]  # the 4th turn, as an uninterrupted run would take
