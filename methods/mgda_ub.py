"""``mgda_ub``: MGDA-UB, min-norm weighting of the task gradients on the shared representation."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from methods.base import METHODS, GradientRequest, Method, TaskGradients
from methods.min_norm import SOLVERS, MinNormSolution, solve

log = logging.getLogger(__name__)

NORMALIZATIONS: tuple[str, ...] = ("none", "l2", "loss", "loss+")
BATCH_REDUCTIONS: tuple[str, ...] = ("flatten", "sum")
HEAD_GRADIENTS: tuple[str, ...] = ("own", "scaled")


@METHODS.register("mgda_ub")
class MgdaUB(Method):
    """MGDA-UB: the shared backbone follows the min-norm convex combination of the task gradients (Sener & Koltun, NeurIPS 2018).

    Per step, α = argmin over the simplex of ‖Σ_t α_t g_t‖² for the annotated tasks' gradients
    g_t = ∂L_t/∂z on the shared representation z (Eq. 3, the upper-bound surrogate of Sec. 3.3): a
    min-norm solve on their Gram matrix. The training loop's gradient engine takes g_t through each
    head, hands their Gram matrix here, sends Σ_t α_t g_t back through the backbone from z and gives
    each head its own task's gradient (Algorithm 2, task-specific update); a task with no annotated
    entry in the batch gets α_t = 0. ``last_solution`` holds the solver's latest report.

    Args:
        normalization: divide g_t by n_t before solving (the authors' code, not in the paper):
            ``none`` (default: the paper's Algorithm 2, which keeps its Pareto-stationarity
            guarantee), ``l2`` (‖g_t‖), ``loss`` (L_t) or ``loss+`` (L_t·‖g_t‖, the authors'
            CelebA setting).
        batch_reduction: how g_t (B, D) becomes a vector: ``flatten`` over batch × features (the
            authors' code) or ``sum`` over the batch first (LibMTL's representation mode).
        solver: ``auto`` (the exact closed form for 2 tasks, Frank-Wolfe for more),
            ``frank_wolfe`` (Algorithm 2) or ``cvxpy`` (an exact QP; slow per step).
        max_iter: Frank-Wolfe's iteration limit.
        tol: Frank-Wolfe's stopping duality gap, relative to the largest ‖g_t‖².
        away_steps: Frank-Wolfe with away steps (linear convergence); False is the paper's plain version.
        scale_by_normalizer: apply α to the normalised gradients (backbone gets Σ α_t g_t / n_t, as
            LibMTL's parameter mode) instead of to the raw losses (the authors' code, default).
        head_gradient: ``own`` (each head gets ∇L_t, the paper's Algorithm 2) or ``scaled``
            (α_t ∇L_t, the authors' code, which back-propagates Σ α_t L_t).
    """

    def __init__(self, *, normalization: Literal["none", "l2", "loss", "loss+"] = "none",
                 batch_reduction: Literal["flatten", "sum"] = "flatten",
                 solver: Literal["auto", "frank_wolfe", "cvxpy"] = "auto", max_iter: int = 1000,
                 tol: float = 1e-12, away_steps: bool = True, scale_by_normalizer: bool = False,
                 head_gradient: Literal["own", "scaled"] = "own") -> None:
        super().__init__()
        for key, value, choices in (("normalization", normalization, NORMALIZATIONS),
                                    ("batch_reduction", batch_reduction, BATCH_REDUCTIONS),
                                    ("solver", solver, SOLVERS), ("head_gradient", head_gradient, HEAD_GRADIENTS)):
            if value not in choices:
                raise ValueError(f"mgda_ub: {key}={value!r} is not one of {choices}")
        if max_iter < 1 or tol < 0:
            raise ValueError(f"mgda_ub: need max_iter >= 1 and tol >= 0, got {max_iter}, {tol}")
        self.normalization = normalization
        self.batch_reduction = batch_reduction
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.away_steps = away_steps
        self.scale_by_normalizer = scale_by_normalizer
        self.head_gradient = head_gradient
        self.last_solution: MinNormSolution | None = None

    def gradient_request(self) -> GradientRequest:
        """g_t = ∂L_t/∂z, reduced over the batch as ``batch_reduction`` says; heads per ``head_gradient``."""
        return GradientRequest("representation", self.batch_reduction,
                               "own" if self.head_gradient == "own" else "weighted")

    def weighting(self, gradients: TaskGradients) -> Tensor:
        """α_t (times 1/n_t with ``scale_by_normalizer``): the min-norm point of the (normalised) gradients."""
        if not gradients.tasks:
            return torch.zeros(0, dtype=torch.float64)
        gram = gradients.gram.cpu().numpy()
        count = len(gradients.tasks)
        if not np.isfinite(gram).all():  # overflowed fp16 gradients: the grad scaler skips this step
            log.debug("mgda_ub: non-finite task gradients; equal weights for this (skipped) step")
            return torch.full((count,), 1.0 / count, dtype=torch.float64)
        norms = self.normalizers(gram, gradients.losses.cpu().numpy())
        solution = solve(gram / np.outer(norms, norms), self.solver, max_iter=self.max_iter, tol=self.tol,
                         away_steps=self.away_steps)
        self.last_solution = solution
        scale = 1.0 / norms if self.scale_by_normalizer else np.ones_like(norms)
        return torch.as_tensor(np.asarray(solution.weights, dtype=np.float64) * scale)

    def normalizers(self, gram: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """n_t for each task: 1, ‖g_t‖, L_t or L_t·‖g_t‖, kept away from 0."""
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        factor = {"none": np.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}[self.normalization]
        return np.maximum(factor, np.finfo(np.float64).tiny ** 0.5)
