"""AdaShare's policy search (``adashare_search``) at its edges: the boundaries of every option check and the one
error that names all bad options, frozen weights in the two partial backwards, the per-epoch policy log
(P(execute) per task and block, hand-computed), and the per-task passes that leave no shared representation."""

from __future__ import annotations

import logging
import math
import re

import pytest
import torch

from benchmark.backbones import create_backbone, create_heads
from benchmark.tasks import collate, task_loss
from methods import GradientRequest, StepContext
from methods.adashare_search import AdaShareSearch

# ----- option checks: each bound, on both sides ------------------------------------------------------------


def _refused(match: str, **options) -> None:
    with pytest.raises(ValueError, match=r"^adashare: .*" + re.escape(match)):
        AdaShareSearch(**options)


@pytest.mark.parametrize("warmup", [-1, -2])
def test_a_negative_warmup_is_refused(warmup):
    _refused(f"warmup_epochs must be >= 0, got {warmup}", warmup_epochs=warmup)


def test_no_warmup_is_accepted():
    assert AdaShareSearch(warmup_epochs=0).warmup_epochs == 0


@pytest.mark.parametrize("temperature", [0.0, -0.5, -1.0, -3.0])
def test_a_temperature_that_is_not_positive_is_refused(temperature):
    _refused(f"temperature must be > 0 and temperature_decay in (0, 1], got {temperature}, 0.965",
             temperature=temperature)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1e-3])
def test_a_temperature_at_or_below_one_is_accepted(temperature):
    assert AdaShareSearch(temperature=temperature).temperature == temperature


@pytest.mark.parametrize("decay", [0.0, -0.5, -1.0, 1.5, 2.0, 2.5])
def test_a_decay_outside_zero_one_is_refused(decay):
    _refused(f"temperature must be > 0 and temperature_decay in (0, 1], got 5.0, {decay}", temperature_decay=decay)


@pytest.mark.parametrize("decay", [1.0, 0.5, 1e-6])
def test_a_decay_in_zero_one_is_accepted_one_included(decay):
    assert AdaShareSearch(temperature_decay=decay).temperature_decay == decay


@pytest.mark.parametrize("fraction", [0.0, -0.5, -1.0, 1.0, 1.5, 2.0])
def test_a_policy_fraction_outside_the_open_interval_is_refused(fraction):
    # 0 or 1 would leave the policy or the weights without a single sample
    _refused(f"policy_fraction must be in (0, 1), got {fraction}", policy_fraction=fraction)


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_a_policy_fraction_inside_is_accepted(fraction):
    assert AdaShareSearch(policy_fraction=fraction).policy_fraction == fraction


@pytest.mark.parametrize("name", ["sparsity_weight", "sharing_weight", "policy_lr", "policy_weight_decay"])
@pytest.mark.parametrize("value", [-0.5, -1e-9, -2.0])
def test_a_negative_weight_or_policy_rate_is_refused(name, value):
    _refused("sparsity_weight, sharing_weight, policy_lr, policy_weight_decay must be >= 0", **{name: value})


@pytest.mark.parametrize("name", ["sparsity_weight", "sharing_weight", "policy_lr", "policy_weight_decay"])
def test_zero_weights_and_policy_rates_are_accepted(name):
    assert getattr(AdaShareSearch(**{name: 0.0}), name) == 0.0  # e.g. a search without L_sparsity


def test_one_error_names_every_bad_option_in_order():
    with pytest.raises(ValueError) as info:
        AdaShareSearch(warmup_epochs=-1, curriculum_speed=0, temperature=0.0, sharing_depth_weights="flat",  # type: ignore[arg-type]
                       policy_fraction=1.0, sharing_weight=-1.0)
    assert str(info.value) == (
        "adashare: warmup_epochs must be >= 0, got -1; curriculum_speed must be >= 1, got 0; "
        "temperature must be > 0 and temperature_decay in (0, 1], got 0.0, 0.965; "
        "sharing_depth_weights must be 'increasing' or 'decreasing', got 'flat'; "
        "policy_fraction must be in (0, 1), got 1.0; "
        "sparsity_weight, sharing_weight, policy_lr, policy_weight_decay must be >= 0")


def test_a_bad_temperature_is_refused_with_a_good_decay_and_the_other_way_round():
    _refused("got 0.0, 0.5", temperature=0.0, temperature_decay=0.5)
    _refused("got 2.0, 0.0", temperature=2.0, temperature_decay=0.0)


# ----- the network ----------------------------------------------------------------------------------------


def _build(method: AdaShareSearch, tiny_db, seed: int = 0):
    torch.manual_seed(seed)
    problem = tiny_db.problem()
    net, width = create_backbone("resnet18")
    return method.build(net, create_heads(problem.tasks, width), problem), problem


class SearchAtZ(AdaShareSearch):
    """The search asking for gradients at a shared representation, which its per-task passes do not build."""

    def gradient_request(self) -> GradientRequest:
        return GradientRequest("representation")


def test_the_search_declares_no_shared_representation_and_a_weighting_at_z_is_refused():
    assert AdaShareSearch.builds_shared_representation is False
    AdaShareSearch().check_capabilities()  # no gradient request: nothing to refuse
    with pytest.raises(ValueError, match="has no z"):
        SearchAtZ().check_capabilities()


def test_frozen_weights_get_no_gradient_in_a_policy_step(tiny_db):
    method = AdaShareSearch(warmup_epochs=0)
    model, problem = _build(method, tiny_db)
    frozen = model.backbone.conv1.weight
    frozen.requires_grad_(False)  # e.g. a frozen stem
    assert all(p is not frozen for group in method.param_groups(model) for p in group["params"])
    model.train()
    train_set = tiny_db.split("train", None, 16)
    batch = collate([train_set[i] for i in range(6)])  # both sides of the split
    out = model(batch.inputs)
    plain = {t: task_loss(problem.task(t), out.logits[t], batch.targets[t], batch.masks[t]) for t in out.logits}
    ctx = StepContext(model, batch, out, problem, 0, 0)
    losses = method.losses(plain, ctx)
    assert "sparsity" in losses  # a policy step, not warm-up
    method.backward(losses, ctx)
    assert frozen.grad is None
    assert model.policy_logits.grad is not None
    assert model.backbone.bn1.weight.grad is not None and model.backbone.layer1[0].conv1.weight.grad is not None


# ----- the per-epoch log: P(execute) of each task's blocks --------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_epoch_end_logs_each_tasks_execute_probability_per_block(tiny_db, caplog):
    method = AdaShareSearch(warmup_epochs=0, curriculum_speed=1)
    model, _ = _build(method, tiny_db)
    # execute-minus-skip logit differences: P(execute) = softmax([d, 0])[0] = sigmoid(d)
    diffs = [[1.0, 0.0, -1.0, 2.0, 0.5, -0.5, 3.0, -2.0],
             [-3.0, 1.5, 0.25, -0.25, 4.0, 0.0, -1.5, 2.5]]
    with torch.no_grad():
        model.policy_logits.zero_()
        model.policy_logits[..., 0] = torch.tensor(diffs)
        model.policy_logits[1, :, 1] += 7.0  # a shift of both logits leaves the probabilities
        model.policy_logits[1, :, 0] += 7.0
    # hand-computed: sigmoid to three decimals
    expected = [[0.731, 0.5, 0.269, 0.881, 0.622, 0.378, 0.953, 0.119],
                [0.047, 0.818, 0.562, 0.438, 0.982, 0.5, 0.182, 0.924]]
    assert expected == [[round(_sigmoid(d), 3) for d in row] for row in diffs]
    with caplog.at_level(logging.INFO, logger="methods.adashare_search"):
        method.on_epoch_end(model, 2)  # policy epoch 2: 3 blocks open, temperature 5 * 0.965**2
    [record] = [r for r in caplog.records if r.name == "methods.adashare_search"]
    assert record.getMessage() == f"adashare search, epoch 2: temperature 4.656, 3 open blocks, P(execute) per task {expected}"
    assert int(method.learned_blocks) == 3 and torch.equal(method.learned_logits, model.policy_logits.detach())


def test_warmup_epochs_log_nothing_and_keep_no_policy(tiny_db, caplog):
    method = AdaShareSearch(warmup_epochs=2)
    model, _ = _build(method, tiny_db)
    with caplog.at_level(logging.INFO, logger="methods.adashare_search"):
        method.on_epoch_end(model, 0)
        method.on_epoch_end(model, 1)
    assert not [r for r in caplog.records if r.name == "methods.adashare_search"]
    assert int(method.learned_blocks) == 0 and not method.learned_logits.any() and int(model.epochs_done) == 2
