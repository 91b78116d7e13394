"""``gradnorm``'s edges (Chen et al., ICML 2018, "GradNorm"), from mutation testing (docs/mutation.md): the loss
ratio L_i(t)/L_i(0), the default α, the refused ``min_weight``, the rows of a loss dict in another order, the
``first_epoch`` mean of L_i(0) over each task's own annotated steps, which tasks the end of epoch 0 marks ready,
a task first annotated after epoch 0, and the epoch-end log line.

The weighting hook is fed hand-made :class:`TaskGradients` (losses and gradient norms chosen so that every
alternative gives another number); test_gradnorm.py covers training end to end.
"""

from __future__ import annotations

import inspect
import logging
import re

import pytest
import torch

from methods import TaskGradients
from methods.gradnorm import GradNorm, gradnorm_loss
from tests.methods.tiny_mtl import forward, tiny_batch, tiny_model, tiny_problem, weighted_step


def _gradients(losses: dict[str, float], active: list[str], norms: list[float], epoch: int) -> TaskGradients:
    """What the engine hands ``weighting``: ``active`` annotated (gradient of norm ``norms[i]``), every loss."""
    vectors = torch.tensor([[n, 0.0] for n in norms], dtype=torch.float32).reshape(len(active), 2)
    all_losses = {t: torch.tensor(v, dtype=torch.float64) for t, v in losses.items()}
    return TaskGradients(active, [t for t in losses if t not in active],
                         torch.stack([all_losses[t] for t in active]) if active else torch.zeros(0, dtype=torch.float64),
                         all_losses, (vectors @ vectors.T).double(), vectors, epoch=epoch)


def _built(n_tasks: int, **options) -> tuple[GradNorm, torch.nn.Module]:
    method = GradNorm(**options)
    return method, tiny_model(method, tiny_problem(n_tasks))


# ----- L_grad and the options ----------------------------------------------------------------------

def test_loss_ratio_is_the_loss_over_the_initial_loss():
    """L̃_i = L_i(t) / L_i(0) (Sec. 3.2): equal losses over initial losses 1 and 2 make task 0 the slower one
    (L̃ = [1, 0.5]), so its target and its weight's descent direction are the larger; a task at its initial
    loss everywhere (L̃ = 1) leaves the target at mean(G), so equal norms give L_grad = 0."""
    weights = torch.ones(2, requires_grad=True)
    value = gradnorm_loss(weights, torch.ones(2), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0]), alpha=1.5)
    r = torch.tensor([4 / 3, 2 / 3])  # L̃ = [1, 0.5], mean 0.75
    assert float(value.detach()) == pytest.approx(float((1 - r ** 1.5).abs().sum()), abs=1e-6)
    (grad,) = torch.autograd.grad(value, weights)
    assert grad.tolist() == [-1.0, 1.0]  # the slower task's weight rises
    at_start = gradnorm_loss(torch.ones(2), torch.ones(2), torch.tensor([2.0, 4.0]), torch.tensor([2.0, 4.0]), 1.5)
    assert float(at_start) == 0.0


def test_default_alpha_is_the_papers_nyuv2_value():
    """The default asymmetry α is 1.5 (the paper's NYUv2 value, as the class docstring and docs/methods.md say),
    and a default GradNorm's L_grad uses it."""
    assert inspect.signature(GradNorm.__init__).parameters["alpha"].default == 1.5
    assert GradNorm().alpha == 1.5
    method, _ = _built(2)
    objective = method.weighting(_gradients({"classes": 1.0, "att0": 1.0}, ["classes", "att0"], [1.0, 1.0], 0)).loss
    assert float(objective.detach()) == 0.0  # first step: L̃ = 1, r = 1
    # a later step: L̃ = [2, 1] (L(0) = 1), r = [4/3, 2/3], G = [1, 1]
    objective = method.weighting(_gradients({"classes": 2.0, "att0": 1.0}, ["classes", "att0"], [1.0, 1.0], 0)).loss
    r = torch.tensor([4 / 3, 2 / 3])
    assert float(objective.detach()) == pytest.approx(float((1 - r ** 1.5).abs().sum()), abs=1e-6)


@pytest.mark.parametrize("min_weight", [0.0, -0.5])
def test_min_weight_must_be_positive(min_weight):
    """``min_weight`` is the floor that keeps every w_i > 0 before renormalising: 0 (or less) would let a weight
    reach 0 or below, so it is refused with a message naming the option and the value."""
    with pytest.raises(ValueError, match=re.escape(f"weight_lr and min_weight must be > 0, got 0.025, {min_weight}")):
        GradNorm(min_weight=min_weight)
    assert GradNorm(min_weight=1e-12).min_weight == 1e-12


# ----- the rows of the gradients ---------------------------------------------------------------------

def test_a_loss_dict_in_another_order_updates_each_weight_with_its_own_gradient_norm():
    """The engine's tasks follow the loss dict's order, not the heads'; GradNorm picks the gradient row of each
    task by name, so a reversed dict gives every weight the same L_grad gradient (sign(G_i − target_i)·‖∇_W L_i‖)
    as the heads' order does."""
    problem = tiny_problem(3)
    grads = []
    for reverse in (False, True):
        method = GradNorm()
        model = tiny_model(method, problem)
        losses, ctx = forward(method, model, tiny_batch(problem, seed=3), problem)
        if reverse:
            losses = {t: losses[t] for t in reversed(list(losses))}
        applied = weighted_step(method, losses, ctx)
        assert applied == {t: pytest.approx(1.0) for t in problem.task_names}
        grads.append({t: float(p.grad) for t, p in zip(method.tasks, method.weights)})
    natural, reversed_ = grads
    assert len({round(abs(g), 6) for g in natural.values()}) == 3, "the norms should differ for the check to bite"
    assert reversed_ == {t: pytest.approx(g, rel=1e-5, abs=1e-7) for t, g in natural.items()}


# ----- L_i(0): first_epoch ---------------------------------------------------------------------------

def _first_epoch_of_three_tasks() -> tuple[GradNorm, torch.nn.Module]:
    """Epoch 0 under ``first_epoch``: classes annotated in two steps (losses 2 and 4), att0 in one (loss 1),
    att1 in none; no weight moves during it."""
    method, model = _built(3, initial_loss="first_epoch")
    every = {"classes": 2.0, "att0": 1.0, "att1": 0.0}
    assert method.weighting(_gradients(every, ["classes", "att0"], [1.0, 2.0], 0)).loss is None
    every = {"classes": 4.0, "att0": 0.0, "att1": 0.0}
    assert method.weighting(_gradients(every, ["classes"], [1.0], 0)).loss is None
    assert method.initial_loss_count.tolist() == [2.0, 1.0, 0.0]
    assert not method.initial_ready.any()
    return method, model


def test_first_epoch_initial_loss_is_the_mean_over_each_tasks_annotated_steps():
    """``first_epoch``: L_i(0) is the mean of task i's losses over the epoch-0 steps that annotate it (classes:
    (2 + 4) / 2 = 3, att0: 1 / 1), so the first L_grad after epoch 0 uses L̃ = [3/3, 0.5/1]."""
    method, model = _built(2, initial_loss="first_epoch")
    assert method.weighting(_gradients({"classes": 2.0, "att0": 1.0}, ["classes", "att0"], [1.0, 2.0], 0)).loss is None
    assert method.weighting(_gradients({"classes": 4.0, "att0": 0.0}, ["classes"], [1.0], 0)).loss is None
    method.on_epoch_end(model, 0)
    objective = method.weighting(_gradients({"classes": 3.0, "att0": 0.5}, ["classes", "att0"], [1.0, 2.0], 1)).loss
    expected = gradnorm_loss(torch.ones(2), torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.5]),
                             torch.tensor([3.0, 1.0]), alpha=1.5)
    assert float(objective.detach()) == pytest.approx(float(expected), abs=1e-6)
    assert float(expected) > 0.1  # L̃ = [1, 0.5]: the weights have somewhere to go


def test_end_of_epoch_0_marks_ready_every_task_annotated_in_it_and_only_those():
    """``first_epoch``: the end of epoch 0 fixes L_i(0) of each task annotated at least once in it (one step is
    enough: att0) and leaves a task never annotated in it (att1) waiting; a later epoch adds nothing to a fixed
    L_i(0)."""
    method, model = _first_epoch_of_three_tasks()
    method.on_epoch_end(model, 0)
    assert method.initial_ready.tolist() == [True, True, False]
    every = {"classes": 3.0, "att0": 0.5, "att1": 2.0}
    method.weighting(_gradients(every, ["classes", "att0"], [1.0, 2.0], 1))
    assert method.initial_loss_count.tolist() == [2.0, 1.0, 0.0]
    assert method.initial_loss_sum.tolist() == [6.0, 1.0, 0.0]


def test_a_task_first_annotated_after_epoch_0_uses_its_first_annotated_step():
    """``first_epoch``: a task with no annotated entry in epoch 0 (att1) takes L_i(0) from its first annotated step
    in epoch 1 and joins that very step's L_grad (and its weight gets a gradient)."""
    method, model = _first_epoch_of_three_tasks()
    method.on_epoch_end(model, 0)
    every = {"classes": 3.0, "att0": 0.5, "att1": 2.0}
    objective = method.weighting(_gradients(every, ["classes", "att0", "att1"], [1.0, 2.0, 3.0], 1)).loss
    assert method.initial_ready.all()
    assert method.initial_loss_count.tolist() == [2.0, 1.0, 1.0]
    assert method.initial_loss_sum.tolist() == [6.0, 1.0, 2.0]
    expected = gradnorm_loss(torch.ones(3), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 0.5, 2.0]),
                             torch.tensor([3.0, 1.0, 2.0]), alpha=1.5)
    assert float(objective.detach()) == pytest.approx(float(expected), abs=1e-6)
    objective.backward()
    assert all(p.grad is not None for p in method.weights)


# ----- the epoch-end log -----------------------------------------------------------------------------

def test_epoch_end_logs_the_renormalised_weights_to_four_decimals(caplog):
    """At each epoch's end the weights are renormalised to Σw = T and logged by task, rounded to 4 decimals
    (raw [1, 2] -> [0.6667, 1.3333])."""
    method, model = _built(2)
    with torch.no_grad():
        method.weights[0].fill_(1.0)
        method.weights[1].fill_(2.0)
    with caplog.at_level(logging.INFO, logger="methods.gradnorm"):
        method.on_epoch_end(model, 3)
    messages = [r.getMessage() for r in caplog.records if r.name == "methods.gradnorm"]
    assert messages == ["gradnorm: task weights after epoch 3: {'classes': 0.6667, 'att0': 1.3333}"]
    assert [float(p.detach()) for p in method.weights] == pytest.approx([2 / 3, 4 / 3])
