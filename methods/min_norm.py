"""Min-norm point of the convex hull of task gradients, the inner problem of MGDA.

Given the Gram matrix M (T, T) of the task gradients, M_ij = <g_i, g_j>, find
α = argmin_{α ∈ simplex} αᵀ M α (Sener & Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018, Eq. 3). Three solvers, all on M only (T is small):

- :func:`two_task`: the exact closed form for T = 2 (their Algorithm 1), with no clamping of the
  answer away from the vertices (the authors' code returns 0.999/0.001 where the answer is 1/0);
- :func:`frank_wolfe`: their Algorithm 2 (Frank-Wolfe with the exact two-point line search), by
  default with away steps (Guélat & Marcotte, Math. Programming 1986; Lacoste-Julien & Jaggi,
  NeurIPS 2015) so that it converges linearly instead of at O(1/k);
- :func:`cvxpy_qp`: the same quadratic program solved by cvxpy (Clarabel, tight tolerances).

Solvers work in float64 numpy; the caller builds M from its gradients.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Solver = Literal["auto", "frank_wolfe", "cvxpy"]
SOLVERS: tuple[str, ...] = ("auto", "frank_wolfe", "cvxpy")


@dataclass(frozen=True)
class MinNormSolution:
    """A solver's answer: the simplex weights α, the iterations it took and whether it converged."""

    weights: np.ndarray
    iterations: int
    converged: bool


def objective(gram: np.ndarray, weights: np.ndarray) -> float:
    """‖Σ_t α_t g_t‖² = αᵀ M α."""
    return float(weights @ gram @ weights)


def _check_gram(gram: np.ndarray) -> np.ndarray:
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"the Gram matrix must be square (T, T) with T >= 1, got shape {gram.shape}")
    if not np.all(np.isfinite(gram)):
        raise ValueError("the Gram matrix has NaN or inf entries: a task gradient is not finite")
    return (gram + gram.T) / 2  # symmetrise float round-off


def min_norm_pair(m11: float, m12: float, m22: float) -> float:
    """γ ∈ [0, 1] minimising ‖γ x1 + (1 - γ) x2‖² from the inner products (Sener & Koltun, Algorithm 1).

    The vertex cases return exactly 1 or 0: the min-norm point can be one of the two gradients.
    """
    if m12 >= m11:
        return 1.0
    if m12 >= m22:
        return 0.0
    return (m22 - m12) / (m11 + m22 - 2.0 * m12)


def two_task(gram: np.ndarray) -> MinNormSolution:
    """The exact min-norm weights for two tasks (closed form, Sener & Koltun, Algorithm 1)."""
    gram = _check_gram(gram)
    if gram.shape[0] != 2:
        raise ValueError(f"two_task needs exactly 2 tasks, got {gram.shape[0]}; use frank_wolfe or cvxpy")
    gamma = min_norm_pair(gram[0, 0], gram[0, 1], gram[1, 1])
    return MinNormSolution(np.array([gamma, 1.0 - gamma]), iterations=1, converged=True)


def _largest_diagonal(gram: np.ndarray) -> float:
    """M's largest diagonal entry (the largest squared gradient norm), never below the smallest positive float."""
    return max(float(np.max(np.diag(gram))), np.finfo(float).tiny)


def _line_search(gram: np.ndarray, alpha: np.ndarray, direction: np.ndarray, step_max: float) -> float:
    """Exact minimiser of (α + γ d)ᵀ M (α + γ d) over γ ∈ [0, step_max] (a quadratic in γ)."""
    slope = float(direction @ gram @ alpha)  # half the derivative at γ = 0
    curvature = float(direction @ gram @ direction)
    if curvature <= 0.0:  # d in M's null space: the objective is linear (or flat) along d
        return step_max if slope < 0.0 else 0.0
    return min(step_max, max(0.0, -slope / curvature))


def frank_wolfe(gram: np.ndarray, *, max_iter: int = 1000, tol: float = 1e-12,
                away_steps: bool = True) -> MinNormSolution:
    """Min-norm weights by Frank-Wolfe from α = 1/T (Sener & Koltun, NeurIPS 2018, Algorithm 2).

    Each iteration moves toward the vertex e_t with t = argmin (Mα)_t, with the exact line search
    of Algorithm 1. With ``away_steps`` it may instead move away from the worst vertex in α's
    support (Lacoste-Julien & Jaggi, NeurIPS 2015, Algorithm 1), which makes convergence linear.
    The iteration counter advances on every iteration, so ``max_iter`` is a hard limit.

    Args:
        gram: M (T, T), the task gradients' inner products.
        max_iter: most iterations.
        tol: stop when the Frank-Wolfe duality gap αᵀMα - min_t (Mα)_t (an upper bound on
            αᵀMα - optimum) is at most ``tol`` times the largest diagonal entry of M.
        away_steps: False runs the paper's plain Frank-Wolfe (sublinear convergence).
    """
    gram = _check_gram(gram)
    if max_iter < 1 or tol < 0:
        raise ValueError(f"need max_iter >= 1 and tol >= 0, got max_iter={max_iter}, tol={tol}")
    size = gram.shape[0]
    alpha = np.full(size, 1.0 / size)
    threshold = tol * _largest_diagonal(gram)
    for iteration in range(max_iter):
        grad = gram @ alpha  # half the gradient of αᵀMα
        value = float(alpha @ grad)
        toward = int(np.argmin(grad))
        gap = value - float(grad[toward])
        if gap <= threshold:
            return MinNormSolution(alpha, iterations=iteration, converged=True)
        support = np.flatnonzero(alpha > 0.0)
        away = int(support[np.argmax(grad[support])])
        forward = not away_steps or support.size == 1 or gap >= float(grad[away]) - value
        if forward:  # toward e_t: the segment [α, e_t] of Algorithm 2
            direction, step_max = -alpha, 1.0
            direction[toward] += 1.0
        else:  # away from e_s, as far as α_s = 0
            direction, step_max = alpha.copy(), alpha[away] / (1.0 - alpha[away])
            direction[away] -= 1.0
        step = _line_search(gram, alpha, direction, step_max)
        alpha = alpha + step * direction
        if step == step_max:  # land exactly on the vertex / face, not a round-off away from it
            if forward:
                alpha = np.eye(size)[toward]
            else:
                alpha[away] = 0.0
        alpha = np.maximum(alpha, 0.0)
        alpha /= alpha.sum()
    log.debug("frank_wolfe stopped at max_iter=%d without reaching tol=%g", max_iter, tol)
    return MinNormSolution(alpha, iterations=max_iter, converged=False)


def cvxpy_qp(gram: np.ndarray) -> MinNormSolution:
    """Min-norm weights as a quadratic program solved by cvxpy (an exact reference, slow per step)."""
    import cvxpy as cp

    gram = _check_gram(gram)
    # The minimiser does not change when M is scaled, but the solver's tolerances are absolute: gradient Gram
    # matrices of 1e-6 or 1e6 left it inaccurate (or failing) where the same matrix scaled to a unit diagonal solves.
    gram = gram / _largest_diagonal(gram)
    eigenvalues, vectors = np.linalg.eigh(gram)
    factor = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * vectors.T  # M = Fᵀ F, also when M is singular
    alpha = cp.Variable(gram.shape[0])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(factor @ alpha)), [alpha >= 0, cp.sum(alpha) == 1])
    failure = "cvxpy could not solve the min-norm problem ({}); use solver='frank_wolfe'"
    try:
        if "CLARABEL" in cp.installed_solvers():
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        else:
            problem.solve()
    except cp.error.SolverError as error:
        raise RuntimeError(failure.format(error)) from error
    if alpha.value is None:
        raise RuntimeError(failure.format(f"status {problem.status}"))
    weights = np.clip(np.asarray(alpha.value, dtype=np.float64), 0.0, None)
    iterations = int(problem.solver_stats.num_iters or 0)
    return MinNormSolution(weights / weights.sum(), iterations=iterations, converged=problem.status == cp.OPTIMAL)


def solve(gram: np.ndarray, solver: str = "auto", *, max_iter: int = 1000, tol: float = 1e-12,
          away_steps: bool = True) -> MinNormSolution:
    """Min-norm weights with the named solver; ``auto`` is the closed form for 2 tasks, Frank-Wolfe for more."""
    gram = _check_gram(gram)
    if gram.shape[0] == 1:
        return MinNormSolution(np.ones(1), iterations=0, converged=True)
    if solver == "auto":
        if gram.shape[0] == 2:
            return two_task(gram)
        solver = "frank_wolfe"
    if solver == "frank_wolfe":
        return frank_wolfe(gram, max_iter=max_iter, tol=tol, away_steps=away_steps)
    if solver == "cvxpy":
        return cvxpy_qp(gram)
    raise ValueError(f"unknown min-norm solver {solver!r}; choose one of {SOLVERS}")


def kkt_residuals(gram: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """How far α is from the KKT conditions of min αᵀMα on the simplex (all 0 at the optimum).

    With multipliers λ (for Σα = 1) and μ ≥ 0 (for α ≥ 0): 2Mα - λ1 - μ = 0 gives
    μ = 2(Mα - αᵀMα·1) once λ = 2αᵀMα. Returned: ``feasibility`` (negative entries, |Σα - 1|),
    ``dual`` (negative μ: stationarity violated) and ``slackness`` (max |μ_t α_t|).
    """
    gram, weights = _check_gram(gram), np.asarray(weights, dtype=np.float64)
    grad = gram @ weights
    mu = 2.0 * (grad - float(weights @ grad))
    return {"feasibility": float(max(-weights.min(), abs(weights.sum() - 1.0))),
            "dual": float(max(-mu.min(), 0.0)),
            "slackness": float(np.max(np.abs(mu * weights)))}
