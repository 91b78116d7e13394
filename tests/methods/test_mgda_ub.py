"""MGDA-UB: the backbone gets the min-norm combination of the task gradients on z; options do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.mgda_ub import MgdaUB
from methods.min_norm import cvxpy_qp
from tests.methods.tiny_mtl import (forward, representation_gradients, shared_grads_of, tiny_batch, tiny_model,
                                    tiny_problem, weighted_step)


def _z_gradients(losses, ctx, tasks):
    z = ctx.outputs.features
    return [torch.autograd.grad(losses[t], z, retain_graph=True)[0] for t in tasks]


def _expected_alpha(grads, values, normalization="none", reduction="flatten"):
    """α from first principles with cvxpy: Gram of the (normalised) z-gradients, exact QP."""
    vectors = torch.stack([g.flatten() if reduction == "flatten" else g.sum(0) for g in grads]).double()
    norms = vectors.norm(dim=1).numpy()
    if normalization == "none":
        n = np.ones_like(norms)
    else:
        n = {"l2": norms, "loss": values, "loss+": values * norms}[normalization]
    scaled = vectors.numpy() / n[:, None]
    return cvxpy_qp(scaled @ scaled.T).weights, n


def _step(method, n_tasks=2, seed=0, unannotated=()):
    problem = tiny_problem(n_tasks)
    model = tiny_model(method, problem, seed)
    losses, ctx = forward(method, model, tiny_batch(problem, seed=seed, unannotated=unannotated), problem)
    return problem, model, losses, ctx


@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_backbone_gets_the_min_norm_combination_and_heads_their_own_gradient(n_tasks):
    method = MgdaUB()
    problem, model, losses, ctx = _step(method, n_tasks)
    tasks = problem.task_names
    alpha, _ = _expected_alpha(_z_gradients(losses, ctx, tasks), None)
    per_task = [shared_grads_of(losses[t], model) for t in tasks]
    heads = {t: [g.clone() for g in torch.autograd.grad(losses[t], list(model.task_parameters(t)), retain_graph=True)]
             for t in tasks}
    weights = weighted_step(method, losses, ctx)
    np.testing.assert_allclose([weights[t] for t in tasks], alpha, atol=1e-5)
    for i, param in enumerate(model.shared_parameters()):
        expected = sum(float(a) * grads[i] for a, grads in zip(alpha, per_task))
        torch.testing.assert_close(param.grad, expected, atol=1e-5, rtol=1e-4)
    for t in tasks:  # the paper's Algorithm 2: task-specific parameters follow their own loss, unscaled
        for param, grad in zip(model.task_parameters(t), heads[t]):
            torch.testing.assert_close(param.grad, grad)


def test_scaled_head_gradient_is_the_authors_code():
    method = MgdaUB(head_gradient="scaled")
    problem, model, losses, ctx = _step(method)
    heads = {t: torch.autograd.grad(losses[t], model.heads[t].weight, retain_graph=True)[0] for t in problem.task_names}
    weights = weighted_step(method, losses, ctx)
    for t in problem.task_names:
        torch.testing.assert_close(model.heads[t].weight.grad, weights[t] * heads[t])


def test_a_task_without_annotations_gets_weight_zero():
    method = MgdaUB()
    problem, model, losses, ctx = _step(method, unannotated=("classes",))
    only = shared_grads_of(losses["att0"], model)
    assert weighted_step(method, losses, ctx) == {"classes": 0.0, "att0": 1.0}
    for param, grad in zip(model.shared_parameters(), only):
        torch.testing.assert_close(param.grad, grad)


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
@pytest.mark.parametrize("reduction", ["flatten", "sum"])
def test_normalisation_and_batch_reduction_match_their_definitions(normalization, reduction):
    method = MgdaUB(normalization=normalization, batch_reduction=reduction)
    problem, model, losses, ctx = _step(method, n_tasks=3, seed=1)
    tasks = problem.task_names
    values = np.array([float(losses[t].detach()) for t in tasks])
    alpha, _ = _expected_alpha(_z_gradients(losses, ctx, tasks), values, normalization, reduction)
    weights = weighted_step(method, losses, ctx)
    np.testing.assert_allclose([weights[t] for t in tasks], alpha, atol=1e-5)


def test_l2_normalisation_splits_two_tasks_evenly_and_is_invariant_to_loss_scale():
    # unit vectors u1, u2: the closed form gives γ = (1 - c) / (2 - 2c) = 1/2 whatever their angle
    for normalization, invariant in (("l2", True), ("loss", True), ("none", False)):
        weights = []
        for scale in (1.0, 10.0):
            method = MgdaUB(normalization=normalization)
            problem, model, losses, ctx = _step(method, seed=2)
            losses = {t: (scale * v if t == "classes" else v) for t, v in losses.items()}
            weights.append(weighted_step(method, losses, ctx)["classes"])
        if normalization == "l2":
            assert weights == pytest.approx([0.5, 0.5], abs=1e-9)
        assert (weights[0] == pytest.approx(weights[1], abs=1e-6)) is invariant, (normalization, weights)


def test_sum_over_the_batch_sees_cancelling_per_sample_gradients_as_zero():
    method = MgdaUB(batch_reduction="sum")
    cancelling = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])  # sums to 0 over the batch: the min-norm point
    other = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    alpha = method.weighting(representation_gradients([cancelling, other], [1.0, 1.0], "sum"))
    assert alpha.tolist() == [1.0, 0.0]
    flat = MgdaUB().weighting(representation_gradients([cancelling, other], [1.0, 1.0], "flatten"))
    assert 0.0 < float(flat[0]) < 1.0  # flattened, the same gradients are far from zero


def test_scale_by_normalizer_feeds_the_normalised_gradients_to_the_backbone():
    method = MgdaUB(normalization="l2", scale_by_normalizer=True)
    problem, model, losses, ctx = _step(method, seed=3)
    tasks = problem.task_names
    grads = _z_gradients(losses, ctx, tasks)
    norms = [float(g.norm()) for g in grads]
    per_task = [shared_grads_of(losses[t], model) for t in tasks]
    weights = weighted_step(method, losses, ctx)  # the applied weights: α_t / n_t
    alpha = [weights[t] * n for t, n in zip(tasks, norms)]
    assert sum(alpha) == pytest.approx(1.0, abs=1e-6) and min(alpha) >= 0  # α on the simplex
    for i, param in enumerate(model.shared_parameters()):
        expected = sum(a / n * grads_t[i] for a, n, grads_t in zip(alpha, norms, per_task))
        torch.testing.assert_close(param.grad, expected, atol=1e-5, rtol=1e-4)


def test_solvers_agree_inside_the_method_and_bad_options_are_named():
    answers = []
    for solver in ("auto", "frank_wolfe", "cvxpy"):
        method = MgdaUB(solver=solver)
        problem, model, losses, ctx = _step(method, n_tasks=4, seed=4)
        weights = weighted_step(method, losses, ctx)
        answers.append([weights[t] for t in problem.task_names])
        assert method.last_solution is not None and method.last_solution.converged
    np.testing.assert_allclose(answers[0], answers[2], atol=1e-6)
    np.testing.assert_allclose(answers[1], answers[2], atol=1e-6)
    with pytest.raises(ValueError, match="normalization='l1'"):
        MgdaUB(normalization="l1")
    with pytest.raises(ValueError, match="solver"):
        MgdaUB(solver="newton")


class _Regularised(MgdaUB):
    """A subclass adding a loss term that is no task's: it must reach the network with weight 1."""

    def losses(self, task_losses, ctx):
        return {**task_losses, "reg": 0.1 * ctx.model.backbone[0].weight.square().sum()}


def test_terms_that_are_no_tasks_loss_keep_weight_one():
    method = _Regularised()
    problem, model, losses, ctx = _step(method, seed=5)
    tasks = problem.task_names
    per_task = [shared_grads_of(losses[t], model) for t in tasks]
    reg = shared_grads_of(losses["reg"], model)
    weights = weighted_step(method, losses, ctx)
    alpha = [weights[t] for t in tasks]
    for i, param in enumerate(model.shared_parameters()):
        expected = sum(a * grads[i] for a, grads in zip(alpha, per_task)) + reg[i]
        torch.testing.assert_close(param.grad, expected, atol=1e-5, rtol=1e-4)
