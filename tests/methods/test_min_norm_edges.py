"""Min-norm solvers, edge cases pinned by hand-computed values.

Sener & Koltun's closed form for two tasks (Algorithm 1, vertex rules with >=), the Frank-Wolfe
solver's away / drop steps, exact line search, threshold scaling and argument checks, and the
cvxpy/Clarabel QP oracle (the problem it poses, its iteration count and a simplex answer).
"""

from __future__ import annotations

import dataclasses

import cvxpy as cp
import numpy as np
import pytest

from methods import min_norm
from methods.min_norm import (MinNormSolution, cvxpy_qp, frank_wolfe, kkt_residuals, min_norm_pair, objective,
                              solve, two_task)

ALL_SOLVERS = ("auto", "frank_wolfe", "cvxpy")
EPS = np.finfo(float).eps

#: g1 = (1, 0), g2 = (0, 1), g3 = (2, 2): the min-norm point (1/2, 1/2) lies on the edge [g1, g2].
FACE = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 2.0], [2.0, 2.0, 8.0]])
#: g1 = (2, 1), g2 = (0, -2), g3 = (-1, -3): γ = (10 + 5) / (5 + 10 + 10) = 0.6 on [g1, g3], the point
#: (0.8, -0.6) with norm² 1, and <g2, (0.8, -0.6)> = 1.2 >= 1; plain Frank-Wolfe zigzags toward it forever.
ZIGZAG = np.array([[5.0, -2.0, -5.0], [-2.0, 4.0, 6.0], [-5.0, 6.0, 10.0]])


def _gram(rng: np.random.Generator, tasks: int, dim: int) -> np.ndarray:
    jacobian = rng.normal(size=(tasks, dim)) + rng.normal(size=dim) * rng.uniform(0.0, 2.0)
    return jacobian @ jacobian.T


# --- the two-task closed form ----------------------------------------------------------------------------------


def _paper_gamma(v1: np.ndarray, v2: np.ndarray) -> float:
    """Sener & Koltun, Algorithm 1: γ = clip((v2 - v1)·v2 / ‖v1 - v2‖², 0, 1)."""
    return float(np.clip((v2 - v1) @ v2 / ((v1 - v2) @ (v1 - v2)), 0.0, 1.0))


@pytest.mark.parametrize("m11, m12, m22, expected", [
    (1.0, 0.0, 4.0, 0.8),        # (4 - 0) / (1 + 4 - 0)
    (2.0, 1.0, 3.0, 2.0 / 3.0),  # (3 - 1) / (2 + 3 - 2)
    (1.0, 2.0, 5.0, 1.0),        # unclipped (5 - 2) / (1 + 5 - 4) = 1.5: the clip binds at 1
    (5.0, 2.0, 1.0, 0.0),        # unclipped (1 - 2) / (5 + 1 - 4) = -0.5: the clip binds at 0
    (0.1, 0.1, 0.7, 1.0),        # m12 = m11: the paper's ">=" vertex rule, the formula rounds to 1.0000000000000002
    (1.0, 1.0, 1.0, 1.0),        # identical gradients: m12 >= m11 is checked first, γ = 1
    (0.7, 0.1, 0.1, 0.0),        # m12 = m22 < m11: γ = 0
])
def test_min_norm_pair_is_algorithm_1(m11, m12, m22, expected):
    gamma = min_norm_pair(m11, m12, m22)
    assert 0.0 <= gamma <= 1.0
    if expected in (0.0, 1.0):
        assert gamma == expected  # vertices exactly, no 0.999 / 0.001 clamping
    else:
        assert gamma == pytest.approx(expected, abs=1e-15)
    solution = two_task(np.array([[m11, m12], [m12, m22]]))
    assert solution.weights.tolist() == [gamma, 1.0 - gamma]
    assert (solution.iterations, solution.converged) == (1, True)


def test_two_task_matches_the_papers_vector_formula_and_auto_uses_it():
    rng = np.random.default_rng(11)
    for _ in range(20):
        v1, v2 = rng.normal(size=(2, 4))
        gram = np.array([[v1 @ v1, v1 @ v2], [v1 @ v2, v2 @ v2]])
        gamma = _paper_gamma(v1, v2)
        np.testing.assert_allclose(two_task(gram).weights, [gamma, 1.0 - gamma], atol=1e-12)
        auto = solve(gram)
        assert auto.weights.tolist() == two_task(gram).weights.tolist() and auto.iterations == 1
    with pytest.raises(ValueError, match="exactly 2 tasks, got 3"):
        two_task(np.eye(3))


# --- results, validation, degenerate sizes ---------------------------------------------------------------------


def test_a_solution_is_immutable():
    solution = solve(np.eye(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        solution.iterations = 5  # type: ignore[misc]
    assert isinstance(solution, MinNormSolution)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize("value", [3.0, 0.0])
def test_one_task_gets_weight_one_with_zero_iterations(solver, value):
    solution = solve(np.array([[value]]), solver)
    assert solution.weights.tolist() == [1.0]
    assert solution.iterations == 0
    assert solution.converged is True


@pytest.mark.parametrize("bad", [np.ones((2, 3)), np.zeros((0, 0)), np.zeros((0, 2)), np.ones(3), np.ones((2, 2, 2)),
                                 np.float64(1.0)])
def test_non_square_empty_and_non_2d_inputs_are_refused(bad):
    for call in (solve, two_task, frank_wolfe, cvxpy_qp, lambda g: kkt_residuals(g, np.ones(1))):
        with pytest.raises(ValueError, match=r"square \(T, T\) with T >= 1"):
            call(bad)


def test_max_iter_and_tol_are_each_validated():
    gram = np.eye(3)
    for kwargs in ({"max_iter": 0}, {"max_iter": -1}, {"tol": -0.5}, {"tol": -1e-30}, {"tol": -2.0},
                   {"max_iter": 0, "tol": 1e-3}):
        with pytest.raises(ValueError, match="need max_iter >= 1 and tol >= 0"):
            frank_wolfe(gram, **kwargs)
        with pytest.raises(ValueError, match="need max_iter >= 1 and tol >= 0"):
            solve(gram, "frank_wolfe", **kwargs)
    for kwargs in ({"max_iter": 1}, {"tol": 0.0}, {"max_iter": 1, "tol": 0.0}):  # the boundaries are allowed
        assert frank_wolfe(gram, **kwargs).weights.sum() == pytest.approx(1.0)


def test_a_gap_equal_to_the_threshold_counts_as_converged():
    # M = I (4 tasks): α = 1/4 gives Mα = 1/4 and αᵀMα = 1/4 exactly, a duality gap of exactly 0 <= 0 · 1
    solution = frank_wolfe(np.eye(4), tol=0.0)
    assert (solution.iterations, solution.converged) == (0, True)
    assert solution.weights.tolist() == [0.25] * 4
    zero = frank_wolfe(np.zeros((3, 3)), tol=0.0)
    assert (zero.iterations, zero.converged) == (0, True)


# --- symmetrisation and the KKT residuals ----------------------------------------------------------------------


def test_symmetrisation_is_exactly_the_mean_with_the_transpose():
    gram = np.array([[2.0, 1.0, -3.0], [0.5, 4.0, 0.25], [1.0, 2.0, 6.0]])
    np.testing.assert_array_equal(min_norm._check_gram(gram), (gram + gram.T) / 2)
    np.testing.assert_array_equal(min_norm._check_gram(FACE), FACE)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_a_slightly_asymmetric_gram_gives_the_symmetrised_answer(solver):
    rng = np.random.default_rng(12)
    for tasks in (2, 3, 4):
        symmetric = _gram(rng, tasks, 5)
        skew = rng.normal(size=(tasks, tasks)) * 1e-9
        noisy = symmetric + (skew - skew.T)  # (noisy + noisyᵀ) / 2 == symmetric up to one rounding
        expected, got = solve((noisy + noisy.T) / 2, solver), solve(noisy, solver)
        np.testing.assert_array_equal(got.weights, expected.weights)
        assert (got.iterations, got.converged) == (expected.iterations, expected.converged)


def test_kkt_residuals_by_hand():
    # M = diag(1, 4), α = (1/2, 1/2): Mα = (1/2, 2), αᵀMα = 5/4, μ = 2 (Mα - 5/4) = (-3/2, 3/2)
    residuals = kkt_residuals(np.diag([1.0, 4.0]), np.array([0.5, 0.5]))
    assert residuals == {"feasibility": 0.0, "dual": 1.5, "slackness": 0.75}
    # the same through an asymmetric input whose symmetric part is diag(1, 4)
    assert kkt_residuals(np.array([[1.0, 3.0], [-3.0, 4.0]]), np.array([0.5, 0.5])) == residuals
    off = kkt_residuals(FACE, np.array([0.75, 0.25, 0.0]))  # Mα = (3/4, 1/4, 2), αᵀMα = 5/8
    assert off == {"feasibility": 0.0, "dual": 0.75, "slackness": 0.1875}
    # off the simplex every μ can be positive: α = (0.1, 0.1), Mα = (0.1, 0.4), αᵀMα = 0.05, μ = (0.1, 0.7);
    # no negative μ means a dual residual of 0, never a negative one
    below = kkt_residuals(np.diag([1.0, 4.0]), np.array([0.1, 0.1]))
    assert below == pytest.approx({"feasibility": 0.8, "dual": 0.0, "slackness": 0.07}, abs=1e-15)
    assert below["dual"] == 0.0


# --- the exact line search -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gram, alpha, direction, step_max, expected", [
    # M = diag(1, 4), α = (1/2, 1/2), toward e1: slope -3/4, curvature 5/4 -> 3/5
    ([[1.0, 0.0], [0.0, 4.0]], [0.5, 0.5], [0.5, -0.5], 1.0, 0.6),
    ([[1.0, 0.0], [0.0, 4.0]], [0.5, 0.5], [0.5, -0.5], 0.5, 0.5),  # clipped at step_max
    # toward e2 (uphill): slope +3/4 > 0 gives 0, not a negative step
    ([[1.0, 0.0], [0.0, 4.0]], [0.5, 0.5], [-0.5, 0.5], 1.0, 0.0),
    # identical gradients: d in M's null space, slope 0 and curvature 0 -> no move
    ([[1.0, 1.0], [1.0, 1.0]], [0.5, 0.5], [0.5, -0.5], 1.0, 0.0),
    ([[1.0, 1.0], [1.0, 1.0]], [0.5, 0.5], [-0.5, 0.5], 0.25, 0.0),
    # curvature exactly 0 with slope -1/2: linear and decreasing along d -> the whole way
    ([[1.0, 0.5], [0.5, 0.0]], [1.0, 0.0], [-1.0, 1.0], 1.0, 1.0),
    ([[1.0, 0.5], [0.5, 0.0]], [1.0, 0.0], [-1.0, 1.0], 0.3, 0.3),
    # curvature -0.6 < 0 with slope -0.2: concave and decreasing -> the whole way
    ([[1.0, 0.8], [0.8, 0.0]], [1.0, 0.0], [-1.0, 1.0], 1.0, 1.0),
])
def test_line_search_is_the_exact_minimiser_on_the_segment(gram, alpha, direction, step_max, expected):
    step = min_norm._line_search(np.array(gram), np.array(alpha), np.array(direction), step_max)
    assert step == pytest.approx(expected, abs=1e-15)
    assert 0.0 <= step <= step_max


# --- Frank-Wolfe: away steps, drop steps, limits, scaling ------------------------------------------------------


def test_an_away_step_moves_weight_off_a_vertex_in_one_iteration():
    # M = diag(1, 1, 4), α = 1/3: Mα = (1/3, 1/3, 4/3), αᵀMα = 2/3; the Frank-Wolfe gap is 1/3, the away gap from
    # e3 is 2/3, so the step is d = α - e3 = (1/3, 1/3, -2/3) with step_max = (1/3) / (2/3) = 1/2.  Along d the
    # slope is -2/3 and the curvature 2, so γ = 1/3 < 1/2 lands on α = (4, 4, 1) / 9 = the optimum (∝ 1/diag).
    gram = np.diag([1.0, 1.0, 4.0])
    solution = frank_wolfe(gram)
    assert (solution.iterations, solution.converged) == (1, True)
    np.testing.assert_allclose(solution.weights, [4 / 9, 4 / 9, 1 / 9], rtol=0, atol=4 * EPS)
    plain = frank_wolfe(gram, away_steps=False)  # only toward-vertex moves: many more iterations
    assert plain.converged and plain.iterations > 10


def test_a_drop_step_removes_a_vertex_exactly():
    # FACE, α = 1/3: Mα = (1, 1, 4), αᵀMα = 2; the away gap 2 beats the Frank-Wolfe gap 1; along d = α - e3 the
    # slope is -2 and the curvature 2, so γ = 1 > step_max = 1/2: the step stops at α3 = 0, α = (1/2, 1/2, 0).
    solution = frank_wolfe(FACE)
    assert (solution.iterations, solution.converged) == (1, True)
    assert solution.weights.tolist() == [0.5, 0.5, 0.0]


def test_a_tie_between_the_two_gaps_takes_the_frank_wolfe_step():
    # M = diag(1, 2, 2, 3), α = 1/4: Mα = (1, 2, 2, 3) / 4, αᵀMα = 1/2; both gaps are 1/4 (exact in binary) and the
    # tie goes to the Frank-Wolfe step (Lacoste-Julien & Jaggi: d_FW if <-r, d_FW> >= <-r, d_A>).  Toward e1,
    # d = (3, -1, -1, -1) / 4 with slope -1/4 and curvature (9 + 2 + 2 + 3) / 16 = 1, so γ = 1/4.
    step = frank_wolfe(np.diag([1.0, 2.0, 2.0, 3.0]), max_iter=1)
    assert (step.iterations, step.converged) == (1, False)
    assert step.weights.tolist() == [7 / 16, 3 / 16, 3 / 16, 3 / 16]  # not the away step's (9, 9, 9, 5) / 32


def test_away_steps_are_taken_when_the_support_has_two_vertices():
    # g1 = (0, 0, -2), g2 = (-2, -2, -1), g3 = (-1, 1, 1), g4 = (0, 0, -1).  The optimum is on the edge [g3, g4]:
    # γ3 = (m44 - m34) / (m33 + m44 - 2 m34) = (1 + 1) / (3 + 1 + 2) = 1/3, the point (-1, 1, -1) / 3 with norm² 1/3,
    # and M α* = (2, 1, 1, 1) / 3 >= 1/3.  After 6 iterations α sits on that edge with too much weight on g3; the 7th
    # is an away step from e3 (support of size 2) whose exact line search lands on the optimum.
    jacobian = np.array([[0.0, 0.0, -2.0], [-2.0, -2.0, -1.0], [-1.0, 1.0, 1.0], [0.0, 0.0, -1.0]])
    gram = jacobian @ jacobian.T
    on_edge = frank_wolfe(gram, max_iter=6).weights
    assert on_edge[:2].tolist() == [0.0, 0.0] and on_edge[2] > 1 / 3 + 1e-3
    solution = frank_wolfe(gram)
    assert (solution.iterations, solution.converged) == (7, True)
    np.testing.assert_allclose(solution.weights, [0.0, 0.0, 1 / 3, 2 / 3], rtol=0, atol=4 * EPS)
    assert objective(gram, solution.weights) == pytest.approx(1 / 3, abs=1e-15)


def test_default_max_iter_is_1000_for_frank_wolfe_and_solve():
    # plain Frank-Wolfe approaches the edge optimum of ZIGZAG at O(1/k): the gap never reaches 1e-12 · 10
    for result in (frank_wolfe(ZIGZAG, away_steps=False), solve(ZIGZAG, "frank_wolfe", away_steps=False),
                   solve(ZIGZAG, away_steps=False)):
        assert (result.iterations, result.converged) == (1000, False)
        assert 0.0 < objective(ZIGZAG, result.weights) - 1.0 < 1e-2  # close to the optimum 1, not on it
    fast = frank_wolfe(ZIGZAG)  # with away steps the zigzag is cut short
    assert fast.converged and fast.iterations < 100
    np.testing.assert_allclose(fast.weights, [0.6, 0.0, 0.4], atol=1e-9)
    assert objective(ZIGZAG, fast.weights) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("tol", [1e-12, 1e-6])
def test_the_convergence_threshold_scales_with_the_largest_diagonal_entry(tol):
    rng = np.random.default_rng(7)
    for tasks, dim in ((4, 6), (5, 3), (3, 2)):
        base = _gram(rng, tasks, dim)
        base /= np.max(np.diag(base))  # largest diagonal entry 1: the threshold is tol itself
        reference = frank_wolfe(base, tol=tol)
        assert reference.converged
        for scale in (2.0**20, 2.0**-20):  # exact scalings: the same iterates, bit for bit
            scaled = frank_wolfe(base * scale, tol=tol)
            np.testing.assert_array_equal(scaled.weights, reference.weights)
            assert (scaled.iterations, scaled.converged) == (reference.iterations, True)
        for scale in (1e6, 1e-6):  # inexact scalings: round-off may cost one more iteration at the optimum
            scaled = frank_wolfe(base * scale, tol=tol)
            np.testing.assert_allclose(scaled.weights, reference.weights, atol=1e-12)
            assert scaled.converged and abs(scaled.iterations - reference.iterations) <= 1


# --- agreement with the QP oracle ------------------------------------------------------------------------------


def _random_cases():
    rng = np.random.default_rng(0)
    cases = [FACE, ZIGZAG, np.diag([1.0, 1.0, 4.0])]
    for _ in range(25):  # 3-5 tasks, often dim < tasks (M rank-deficient) and an optimum on a face
        tasks = int(rng.integers(3, 6))
        cases.append(_gram(rng, tasks, int(rng.integers(1, 8))))
    return cases


def test_weights_are_on_the_simplex_and_match_the_qp_optimum():
    for gram in _random_cases():
        scale = float(np.max(np.diag(gram)))
        tasks = gram.shape[0]
        iterative, exact = frank_wolfe(gram), cvxpy_qp(gram)
        assert iterative.converged and exact.converged
        for weights in (iterative.weights, exact.weights):
            assert weights.shape == (tasks,)
            assert weights.min() >= 0.0  # exactly: round-off negatives are clipped
            assert abs(weights.sum() - 1.0) <= tasks * EPS  # normalised after clipping, not merely close
        assert objective(gram, iterative.weights) == pytest.approx(objective(gram, exact.weights),
                                                                   abs=1e-11 * scale)


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_the_qp_oracle_reaches_hand_computed_optima(scale):
    for gram, expected in ((np.diag([1.0, 4.0]), [0.8, 0.2]), (np.diag([1.0, 1.0, 4.0]), [4 / 9, 4 / 9, 1 / 9]),
                           (FACE, [0.5, 0.5, 0.0]), (ZIGZAG, [0.6, 0.0, 0.4])):
        solution = cvxpy_qp(gram * scale)
        assert solution.converged, (gram, scale)
        np.testing.assert_allclose(solution.weights, expected, rtol=0, atol=1e-9)


def test_the_qp_oracle_poses_the_min_norm_problem_to_clarabel(monkeypatch):
    """Clarabel with tight tolerances; the iteration count is the solver's and the QP value is αᵀMα / max diag M."""
    assert "CLARABEL" in cp.installed_solvers()
    calls = []
    original = cp.Problem.solve

    def spy(problem, *args, **kwargs):
        result = original(problem, *args, **kwargs)
        calls.append((problem, kwargs))
        return result

    monkeypatch.setattr(cp.Problem, "solve", spy)
    for gram in (FACE, ZIGZAG, np.diag([1.0, 1.0, 4.0]), np.array([[1.0, 0.0], [0.0, 4.0]])):
        calls.clear()
        solution = cvxpy_qp(gram)
        (problem, kwargs), = calls
        assert problem.solver_stats.solver_name == "CLARABEL"
        assert solution.iterations == problem.solver_stats.num_iters > 0
        # the QP is posed on M scaled to a unit diagonal (same minimiser): its value is αᵀMα / max diag M
        assert problem.value == pytest.approx(objective(gram, solution.weights) / np.max(np.diag(gram)),
                                              rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(cvxpy_qp(np.array([[1.0, 0.0], [0.0, 4.0]])).weights, [0.8, 0.2], atol=1e-9)


def test_the_qp_oracle_tolerances_are_tight_and_positive(monkeypatch):
    seen = []
    original = cp.Problem.solve
    monkeypatch.setattr(cp.Problem, "solve",
                        lambda problem, *a, **kw: (seen.append(kw), original(problem, *a, **kw))[1])
    cvxpy_qp(FACE)
    (kwargs,) = seen
    assert kwargs["solver"] == cp.CLARABEL
    for name in ("tol_gap_abs", "tol_gap_rel", "tol_feas"):
        assert 0.0 < kwargs[name] <= 1e-12, (name, kwargs[name])


def test_a_solver_without_an_iteration_count_reports_zero(monkeypatch):
    original = cp.Problem.solve

    def no_count(problem, *args, **kwargs):
        result = original(problem, *args, **kwargs)
        problem.solver_stats.num_iters = None
        return result

    monkeypatch.setattr(cp.Problem, "solve", no_count)
    solution = cvxpy_qp(np.diag([1.0, 4.0]))
    assert solution.iterations == 0 and solution.converged
    np.testing.assert_allclose(solution.weights, [0.8, 0.2], atol=1e-9)


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_the_qp_oracle_does_not_depend_on_the_grams_scale(scale):
    """The minimiser of aᵀ(cM)a over the simplex is that of aᵀMa; gradient Gram matrices are often tiny. Before the
    oracle scaled M to a unit diagonal, some random 1e6-scaled matrices ended inaccurate or raised SolverError."""
    rng = np.random.default_rng(3)
    for tasks in (3, 4, 5):
        for _ in range(5):
            base = _gram(rng, tasks, 8)
            scaled = cvxpy_qp(base * scale)
            assert scaled.converged
            np.testing.assert_allclose(scaled.weights, cvxpy_qp(base).weights, atol=1e-8)
            np.testing.assert_allclose(scaled.weights, frank_wolfe(base, tol=1e-14).weights, atol=1e-6)


def test_a_solver_failure_is_a_runtime_error_that_names_the_way_out(monkeypatch):
    def fail(self, *args, **kwargs):
        raise cp.error.SolverError("solver crashed")

    monkeypatch.setattr(cp.Problem, "solve", fail)
    with pytest.raises(RuntimeError, match=r"could not solve the min-norm problem \(solver crashed\); "
                                           r"use solver='frank_wolfe'"):
        cvxpy_qp(np.eye(3))


def test_the_qp_oracle_projects_the_solvers_point_onto_the_simplex(monkeypatch):
    """An interior-point solver returns α up to its tolerance: slightly negative entries are clipped to 0 and the
    rest renormalised to sum 1, so the weights are always a point of the simplex."""
    original = cp.Problem.solve

    def off_the_simplex(problem, *args, **kwargs):
        result = original(problem, *args, **kwargs)
        (alpha,) = problem.variables()
        alpha.value = np.array([-0.01, 0.61, 0.44])  # what a loose solver could return for three tasks
        return result

    monkeypatch.setattr(cp.Problem, "solve", off_the_simplex)
    solution = cvxpy_qp(np.eye(3))
    np.testing.assert_allclose(solution.weights, [0.0, 0.61 / 1.05, 0.44 / 1.05], rtol=1e-12)
