"""GradNorm: L_grad's value and sign, Σw = T after every step, L(0) options, and the paper's toy regression."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.tasks import Batch, Problem, TaskSpec
from methods import MultiTaskModel, StepContext
from methods.gradnorm import GradNorm, gradnorm_loss
from tests.methods.tiny_mtl import forward, shared_grads_of, tiny_batch, tiny_model, tiny_problem, weighted_step


def test_gradnorm_loss_golden_value_and_the_sign_of_alpha():
    weights = torch.ones(2, requires_grad=True)
    norms, losses, initial = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 1.0]), torch.ones(2)
    value = gradnorm_loss(weights, norms, losses, initial, alpha=1.5)
    r = torch.tensor([4 / 3, 2 / 3])  # L̃ = [2, 1], mean 1.5
    assert float(value.detach()) == pytest.approx(float((1 - r ** 1.5).abs().sum()), abs=1e-6)
    (grad,) = torch.autograd.grad(value, weights)
    # +α: the slower task (larger loss ratio) has the larger target, so descent raises its weight
    assert grad.tolist() == [-1.0, 1.0]
    (flipped,) = torch.autograd.grad(gradnorm_loss(weights, norms, losses, initial, alpha=-1.5), weights)
    assert flipped.tolist() == [1.0, -1.0]  # the -α of one public copy pushes the other way


def test_gradnorm_loss_treats_its_target_as_constant():
    weights = torch.tensor([1.0, 1.0], requires_grad=True)
    value = gradnorm_loss(weights, torch.tensor([1.0, 3.0]), torch.ones(2), torch.ones(2), alpha=1.5)
    assert float(value.detach()) == pytest.approx(2.0)  # G = [1, 3], target = mean(G) = 2 for both
    (grad,) = torch.autograd.grad(value, weights)
    assert grad.tolist() == [-1.0, 3.0]  # sign(G_i - target_i) * ‖∇_W L_i‖, nothing through mean(G)


def _train(method, problem, steps, lr=1e-2, check=None, epoch_length=None):
    model = tiny_model(method, problem)
    optimizer = torch.optim.Adam(method.param_groups(model), lr=lr)
    for step in range(steps):
        epoch = 0 if epoch_length is None else step // epoch_length
        losses, ctx = forward(method, model, tiny_batch(problem, seed=step), problem, step, epoch)
        optimizer.zero_grad(set_to_none=True)
        used = weighted_step(method, losses, ctx)
        optimizer.step()
        if check is not None:
            check(method, model, losses, ctx, used)
        if epoch_length is not None and (step + 1) % epoch_length == 0:
            method.on_epoch_end(model, epoch)
    return model


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_weights_sum_to_t_after_every_step_and_stay_finite_and_positive(n_tasks):
    seen = []

    def check(method, model, losses, ctx, applied):
        weights = method.task_weights()
        assert torch.isfinite(weights).all() and (weights > 0).all()
        assert float(weights.sum()) == pytest.approx(n_tasks, abs=1e-5)
        used = list(applied.values())  # the weights this step's loss was multiplied by
        assert sum(used) == pytest.approx(n_tasks, abs=1e-5) and min(used) > 0
        seen.append(used)

    method = GradNorm(weight_lr=0.2)  # a large step, so the renormalisation has work to do
    _train(method, tiny_problem(n_tasks), steps=25, check=check)
    assert max(abs(w - 1.0) for used in seen for w in used) > 0.05, "the weights never moved"
    raw = sum(float(p.detach()) for p in method.weights)
    assert raw != pytest.approx(n_tasks, abs=1e-5), "the optimizer step should leave Σw != T until renormalised"
    method.renormalize()
    assert sum(float(p.detach()) for p in method.weights) == pytest.approx(n_tasks, abs=1e-5)


def test_the_network_trains_on_the_weighted_sum_with_the_weights_it_reports():
    method = GradNorm()
    problem = tiny_problem(3)
    model = _train(method, problem, steps=5)
    losses, ctx = forward(method, model, tiny_batch(problem, seed=99), problem, step=5)
    weights = method.task_weights()
    per_task = [shared_grads_of(losses[t], model) for t in problem.task_names]
    for param in model.parameters():
        param.grad = None
    weighted_step(method, losses, ctx)
    for i, param in enumerate(model.shared_parameters()):
        expected = sum(float(w) * grads[i] for w, grads in zip(weights, per_task))
        torch.testing.assert_close(param.grad, expected, atol=1e-6, rtol=1e-5)


def test_an_unannotated_task_is_left_out_of_the_weight_update():
    method = GradNorm()
    problem = tiny_problem(3)
    model = tiny_model(method, problem)
    for missing, expect_grads in ((("att0",), {"classes": True, "att0": False, "att1": True}),
                                  (("att0", "att1"), {"classes": False, "att0": False, "att1": False})):
        for param in method.weights:
            param.grad = None
        losses, ctx = forward(method, model, tiny_batch(problem, unannotated=missing), problem)
        weighted_step(method, losses, ctx)
        assert {t: p.grad is not None for t, p in zip(method.tasks, method.weights)} == expect_grads
    assert method.initial_loss_count.tolist() == [1.0, 0.0, 1.0]  # L(0) of att0 still to come
    assert method.initial_ready.tolist() == [True, False, True]


def test_initial_loss_first_step_is_the_first_annotated_loss():
    method = GradNorm()
    problem = tiny_problem(2)
    model = tiny_model(method, problem)
    losses, ctx = forward(method, model, tiny_batch(problem), problem)
    first = [float(losses[t].detach()) for t in method.tasks]
    weighted_step(method, losses, ctx)
    assert method.initial_loss_sum.tolist() == pytest.approx(first)
    assert method.initial_loss_count.tolist() == [1.0, 1.0] and method.initial_ready.all()


def test_initial_loss_first_epoch_is_the_epoch_mean_and_holds_the_weights_until_then():
    history = []
    method = GradNorm(initial_loss="first_epoch", weight_lr=0.1)
    check = lambda m, model, losses, ctx, applied: history.append(  # noqa: E731
        (ctx.epoch, [float(losses[t].detach()) for t in m.tasks], [p.grad is not None for p in m.weights]))
    _train(method, tiny_problem(2), steps=8, check=check, epoch_length=4)
    first_epoch = [losses for epoch, losses, _ in history if epoch == 0]
    assert all(not any(grads) for epoch, _, grads in history if epoch == 0)
    assert all(all(grads) for epoch, _, grads in history if epoch == 1)
    mean = torch.tensor(first_epoch).mean(0)
    torch.testing.assert_close(method.initial_loss_sum / method.initial_loss_count, mean)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="initial_loss='zero'"):
        GradNorm(initial_loss="zero")
    with pytest.raises(ValueError, match="weight_lr"):
        GradNorm(weight_lr=0.0)
    method = GradNorm(layer="backbone.nope")
    problem = tiny_problem(2)
    model = tiny_model(method, problem)
    losses, ctx = forward(method, model, tiny_batch(problem), problem)
    with pytest.raises(ValueError, match="backbone.nope"):
        weighted_step(method, losses, ctx)


def _toy_regression(sigmas, samples=200, dim_in=25, dim_out=10, seed=0):
    """Chen et al. (ICML 2018, Sec. 4): task i regresses σ_i·tanh((B + ε_i) x) with B ~ N(0, 10), ε_i ~ N(0, 3.5)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, dim_in, generator=gen)
    base = torch.randn(dim_out, dim_in, generator=gen) * math.sqrt(10.0)
    targets = {}
    for i, sigma in enumerate(sigmas):
        noise = torch.randn(dim_out, dim_in, generator=gen) * math.sqrt(3.5)
        targets[f"t{i}"] = sigma * torch.tanh(inputs @ (base + noise).T / math.sqrt(dim_in))
    return inputs, targets


def _toy_gradient_norms(model, method, inputs, targets):
    """G_i = w_i ‖∇_W L_i‖ on the last shared layer."""
    out = model(inputs)
    weight = model.backbone[-2].weight
    weights = method.task_weights()
    return [float(w) * float(torch.autograd.grad(nn.functional.mse_loss(out.logits[t], y), weight, retain_graph=True)[0].norm())
            for w, (t, y) in zip(weights, targets.items())]


def test_toy_regression_weights_move_toward_equal_gradient_norms():
    sigmas = [1.0, 10.0]
    inputs, targets = _toy_regression(sigmas)
    specs = tuple(TaskSpec(t, "attributes", tuple(f"o{j}" for j in range(y.shape[1]))) for t, y in targets.items())
    problem = Problem(db="toy", tasks=specs)
    method = GradNorm(alpha=0.12)
    torch.manual_seed(0)
    trunk = nn.Sequential(*[m for _ in range(3) for m in (nn.LazyLinear(32), nn.ReLU())])
    trunk(inputs)  # materialise the lazy layers
    model = method.build(trunk, nn.ModuleDict({t: nn.Linear(32, y.shape[1]) for t, y in targets.items()}), problem)
    optimizer = torch.optim.Adam(method.param_groups(model), lr=1e-3)
    batch = Batch(inputs, targets, {t: torch.ones_like(y, dtype=torch.bool) for t, y in targets.items()},
                  torch.arange(len(inputs)))
    start = _toy_gradient_norms(model, method, inputs, targets)
    for step in range(150):
        out = model(inputs)
        losses = {t: nn.functional.mse_loss(out.logits[t], y) for t, y in targets.items()}
        optimizer.zero_grad(set_to_none=True)
        weighted_step(method, losses, StepContext(model, batch, out, problem, step, 0))
        optimizer.step()
    end = _toy_gradient_norms(model, method, inputs, targets)
    weights = method.task_weights().tolist()
    assert weights[1] < 0.5 < 1.5 < weights[0], weights  # the large-scale task is turned down
    assert abs(math.log(end[1] / end[0])) < 0.3 * abs(math.log(start[1] / start[0])), (start, end)
