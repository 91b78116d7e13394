"""Min-norm solvers of MGDA: golden values, KKT conditions, agreement with an exact QP, iteration limits."""

from __future__ import annotations

import numpy as np
import pytest

from methods.min_norm import cvxpy_qp, frank_wolfe, kkt_residuals, min_norm_pair, objective, solve, two_task

ALL_SOLVERS = ("auto", "frank_wolfe", "cvxpy")


def random_gram(rng: np.random.Generator, tasks: int, dim: int) -> np.ndarray:
    """Gram of ``tasks`` random gradients in R^dim sharing a random common component (so they conflict less)."""
    jacobian = rng.normal(size=(tasks, dim)) + rng.normal(size=dim) * rng.uniform(0.0, 2.0)
    return jacobian @ jacobian.T


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_golden_jacobian_gives_0_6_0_4(solver):
    jacobian = np.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    weights = solve(jacobian @ jacobian.T, solver).weights
    np.testing.assert_allclose(weights, [0.6, 0.4], atol=1e-9)
    np.testing.assert_allclose(weights @ jacobian, [0.0, 1.0, 1.0], atol=1e-8)  # the min-norm point itself


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_golden_gram_gives_a_vertex_exactly_without_clamping(solver):
    # <g1, g2> = 2 >= |g1|^2 = 1: g1 itself is the min-norm point; public copies return 0.999 here
    weights = solve(np.array([[1.0, 2.0], [2.0, 5.0]]), solver).weights
    if solver == "cvxpy":
        np.testing.assert_allclose(weights, [1.0, 0.0], atol=1e-7)
    else:
        assert weights.tolist() == [1.0, 0.0]
    assert solve(np.array([[5.0, 2.0], [2.0, 1.0]]), "auto").weights.tolist() == [0.0, 1.0]
    assert min_norm_pair(1.0, 2.0, 5.0) == 1.0 and min_norm_pair(5.0, 2.0, 1.0) == 0.0


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize("tasks", [2, 3, 5, 8])
def test_kkt_conditions_hold_on_random_gram_matrices(solver, tasks):
    rng = np.random.default_rng(tasks)
    for trial in range(6):
        dim = int(rng.integers(2, 12))  # dim < tasks makes M singular: a non-unique α must still be optimal
        gram = random_gram(rng, tasks, dim)
        weights = solve(gram, solver).weights
        scale = float(np.max(np.diag(gram)))
        residuals = kkt_residuals(gram, weights)
        assert residuals["feasibility"] < 1e-9, (trial, residuals)
        assert residuals["dual"] < 1e-5 * scale, (trial, residuals)  # stationarity: no descent direction left
        assert residuals["slackness"] < 1e-5 * scale, (trial, residuals)


def test_kkt_residuals_flag_a_wrong_answer():
    gram = np.array([[1.0, 0.0], [0.0, 4.0]])  # optimum [0.8, 0.2]
    assert max(kkt_residuals(gram, np.array([0.8, 0.2])).values()) < 1e-12
    assert kkt_residuals(gram, np.array([0.5, 0.5]))["dual"] > 0.1
    assert kkt_residuals(gram, np.array([1.2, -0.2]))["feasibility"] > 0.1


def test_iterative_agrees_with_cvxpy_to_1e_6_on_random_5_task_problems():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gram = random_gram(rng, 5, int(rng.integers(5, 40)))
        iterative, exact = frank_wolfe(gram), cvxpy_qp(gram)
        assert iterative.converged
        np.testing.assert_allclose(iterative.weights, exact.weights, atol=1e-6)


def test_two_task_closed_form_matches_cvxpy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        gram = random_gram(rng, 2, 6)
        np.testing.assert_allclose(two_task(gram).weights, cvxpy_qp(gram).weights, atol=1e-6)


def test_the_iteration_counter_advances_and_max_iter_is_a_hard_limit():
    gram = random_gram(np.random.default_rng(2), 5, 20)
    for away in (True, False):
        limited = frank_wolfe(gram, max_iter=3, away_steps=away)
        assert (limited.iterations, limited.converged) == (3, False)
    full = frank_wolfe(gram)
    assert full.converged and 3 < full.iterations < 1000
    assert objective(gram, full.weights) <= objective(gram, frank_wolfe(gram, max_iter=3).weights)


def test_the_papers_plain_frank_wolfe_approaches_the_optimum():
    gram = random_gram(np.random.default_rng(3), 5, 20)
    best = objective(gram, cvxpy_qp(gram).weights)
    gaps = [objective(gram, frank_wolfe(gram, max_iter=n, away_steps=False).weights) - best for n in (1, 10, 300)]
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-12
    assert gaps[2] < 1e-3 * best


def test_degenerate_inputs():
    assert solve(np.array([[3.0]])).weights.tolist() == [1.0]
    zero = frank_wolfe(np.zeros((3, 3)))  # every gradient zero: any α is optimal
    assert zero.converged and np.isclose(zero.weights.sum(), 1.0)
    with pytest.raises(ValueError, match="square"):
        solve(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        solve(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="unknown min-norm solver"):
        solve(np.eye(3), "newton")
