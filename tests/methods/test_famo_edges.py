"""``famo``'s edges (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization"), from mutation testing
(docs/mutation.md): the registry name, refused and accepted options, the scale invariance that ε must not spoil,
a lone annotated task, the reported z = softmax(ξ), and BatchNorm tracking its running statistics again after
the post-step forward.

The step-for-step comparison with the authors' code is in test_loss_weighting.py; these pin what it leaves open.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from methods import METHODS
from methods.famo import FAMO, famo_weights
from tests.methods.tiny_mtl import IN_FEATURES, WIDTH, forward, tiny_batch, tiny_model, tiny_problem


# ----- registration and options ----------------------------------------------------------------

def test_registered_as_famo():
    """Runs and stored results name the method ``famo``: the registry must hand out this class under that name."""
    assert "famo" in METHODS.names()
    assert METHODS.get("famo") is FAMO and FAMO.name == "famo"


@pytest.mark.parametrize("post_step_loss", ["same_batch", "next_batch"])
@pytest.mark.parametrize("logit_optimizer", ["adam", "sgd"])
def test_every_documented_option_pair_is_accepted(post_step_loss, logit_optimizer):
    method = FAMO(post_step_loss=post_step_loss, logit_optimizer=logit_optimizer)
    assert (method.post_step_loss, method.logit_optimizer) == (post_step_loss, logit_optimizer)


@pytest.mark.parametrize("options, message", [
    ({"post_step_loss": "same"}, "post_step_loss='same' must be same_batch or next_batch"),
    ({"post_step_loss": "same", "logit_optimizer": "sgd"}, "post_step_loss='same' must be same_batch or next_batch"),
    ({"logit_optimizer": "rmsprop"}, "logit_optimizer='rmsprop' must be adam or sgd"),
    ({"logit_optimizer": "rmsprop", "post_step_loss": "next_batch"}, "logit_optimizer='rmsprop' must be adam or sgd"),
])
def test_an_unknown_option_is_refused_even_when_the_other_one_is_valid(options, message):
    """Each of post_step_loss and logit_optimizer is checked on its own; the message names the bad value."""
    with pytest.raises(ValueError, match=re.escape(message)):
        FAMO(**options)


@pytest.mark.parametrize("logit_lr, gamma, bad", [
    (0.0, 0.001, "logit_lr=0.0"), (-0.5, 0.001, "logit_lr=-0.5"), (-2.0, 0.001, "logit_lr=-2.0"),
    (float("nan"), 0.001, "logit_lr=nan"), (float("inf"), 0.001, "logit_lr=inf"),
    (0.025, -1e-9, "gamma=-1e-09"), (0.025, -0.5, "gamma=-0.5"), (0.025, -2.0, "gamma=-2.0"),
    (0.025, float("nan"), "gamma=nan"), (0.0, 0.0, "logit_lr=0.0")])
def test_a_logit_lr_of_zero_or_less_or_a_negative_gamma_is_refused(logit_lr, gamma, bad):
    """β must be > 0 (ξ would never move, or climb zᵀδ) and γ >= 0 (a negative decay pushes ξ away from 0); both
    finite (NaN passes every comparison). The message names the bad option and what it must be."""
    must = "a finite number > 0" if bad.startswith("logit_lr") else "a finite number >= 0"
    with pytest.raises(ValueError, match=re.escape(f"famo: {bad} must be {must}")):
        FAMO(logit_lr=logit_lr, gamma=gamma)


@pytest.mark.parametrize("logit_lr, gamma", [(1e-9, 0.0), (0.025, 0.0), (0.025, 0.001), (0.5, 0.01)])
def test_a_positive_logit_lr_and_a_gamma_of_zero_or_more_are_accepted(logit_lr, gamma):
    """γ = 0 is Algorithm 1 without decay; the paper's defaults are β = 0.025, γ = 0.001."""
    method = FAMO(logit_lr=logit_lr, gamma=gamma)
    assert (method.logit_lr, method.gamma) == (logit_lr, gamma)


# ----- ε must not spoil the scale invariance --------------------------------------------------

def test_weights_are_inversely_proportional_to_small_losses():
    """w_t ∝ z_t / L_t: with equal logits a task whose loss is twice another's gets half its weight, at any loss
    scale (FAMO's objective Σ z_t log L_t does not change with a task's loss scale); ε only guards L = 0."""
    for scale in (1e-3, 1.0, 1e3):
        weights = famo_weights(torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
                               * scale, torch.tensor([True, True]))
        assert weights.tolist() == pytest.approx([2 / 3, 1 / 3], rel=1e-4)


@pytest.mark.parametrize("scale", [1e-3, 1.0])
def test_the_logit_step_sees_log_loss_changes_whatever_the_loss_scale(scale):
    """δ_t = log L_t(θ_t) − log L_t(θ_{t+1}): halving a task's loss gives δ = log 2 at any scale, and
    Algorithm 1's step is ξ ← −β (z ⊙ (δ − zᵀδ) + γ ξ) from ξ = 0."""
    problem = tiny_problem(2)
    method = FAMO(logit_optimizer="sgd", logit_lr=0.1, gamma=0.0)
    tiny_model(method, problem)
    before = torch.tensor([2.0, 1.0], dtype=torch.float64) * scale
    after = torch.tensor([1.0, 1.0], dtype=torch.float64) * scale
    method.update_logits(before, after, torch.tensor([True, True]), torch.tensor([0, 1]))
    step = 0.1 * math.log(2) / 4  # z = (1/2, 1/2), δ = (log 2, 0): z ⊙ (δ − zᵀδ) = (log 2 / 4, −log 2 / 4)
    assert method.logits.tolist() == pytest.approx([-step, step], rel=1e-4)


# ----- one annotated task, reported weights ----------------------------------------------------

def test_a_lone_annotated_task_still_takes_its_decay_step():
    """With one annotated task z = 1 and δ drops out of ∇_ξ zᵀδ, but its logit is in the step: the decay γξ
    moves it (Adam, Algorithm 2) and its Adam step count advances; the unannotated ones stay untouched."""
    problem = tiny_problem(3)
    method = FAMO()
    model = tiny_model(method, problem)
    method.logits[0] = 0.5
    forward(method, model, tiny_batch(problem, unannotated=("att0", "att1")), problem)
    method.on_epoch_end(model, 0)  # the pending update
    grad = 0.001 * 0.5  # γ ξ
    m, v = 0.1 * grad, 0.001 * grad * grad  # Adam's first step, bias-corrected below
    expected = 0.5 - 0.025 * (m / 0.1) / (math.sqrt(v / 0.001) + 1e-8)
    assert method.adam_steps.tolist() == [1, 0, 0]
    assert float(method.logits[0]) == pytest.approx(expected, rel=1e-9)
    assert method.logits[1:].tolist() == [0.0, 0.0]


def test_task_weights_report_z_as_a_softmax_over_the_tasks():
    """The logged z = softmax(ξ), by task, sums to 1 over the tasks."""
    problem = tiny_problem(3)
    method = FAMO()
    tiny_model(method, problem)
    assert method.task_weights() == pytest.approx({"classes": 1 / 3, "att0": 1 / 3, "att1": 1 / 3})
    method.logits.copy_(torch.tensor([0.0, math.log(2.0), 0.0], dtype=torch.float64))
    assert method.task_weights() == pytest.approx({"classes": 0.25, "att0": 0.5, "att1": 0.25})


# ----- BatchNorm after the post-step forward ---------------------------------------------------

def test_batchnorm_tracks_its_running_statistics_again_after_the_post_step_forward():
    """The extra forward at θ_{t+1} leaves the running statistics alone, but only for itself: afterwards training
    updates them once per step again (and a layer built without running statistics stays without)."""
    problem = tiny_problem(2)
    method = FAMO()
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(IN_FEATURES, WIDTH), nn.BatchNorm1d(WIDTH), nn.Tanh(),
                             nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH, track_running_stats=False), nn.Tanh())
    heads = nn.ModuleDict({t.name: nn.Linear(WIDTH, t.num_outputs) for t in problem.tasks})
    model = method.build(backbone, heads, problem)
    tracked, untracked = backbone[1], backbone[4]
    forward(method, model, tiny_batch(problem, seed=0), problem)  # step 0 (running statistics: 1 update)
    forward(method, model, tiny_batch(problem, seed=1), problem, step=1)  # step 1, and step 0's post-step forward
    method.on_epoch_end(model, 0)  # step 1's post-step forward
    assert tracked.track_running_stats is True and untracked.track_running_stats is False
    assert int(tracked.num_batches_tracked) == 2
    mean = tracked.running_mean.clone()
    model(tiny_batch(problem, seed=2).inputs)  # the next training step's forward
    assert int(tracked.num_batches_tracked) == 3 and not torch.equal(tracked.running_mean, mean)
