"""``mgda_ub``: MGDA-UB, min-norm weighting of the task gradients on the shared representation."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from benchmark.tasks import all_reduce_mean, world_size
from methods.base import METHODS, Method, StepContext
from methods.gradients import is_annotated
from methods.min_norm import SOLVERS, MinNormSolution, solve

log = logging.getLogger(__name__)

NORMALIZATIONS: tuple[str, ...] = ("none", "l2", "loss", "loss+")
BATCH_REDUCTIONS: tuple[str, ...] = ("flatten", "sum")
HEAD_GRADIENTS: tuple[str, ...] = ("own", "scaled")


@METHODS.register("mgda_ub")
class MgdaUB(Method):
    """MGDA-UB: the shared backbone follows the min-norm convex combination of the task gradients (Sener & Koltun, NeurIPS 2018).

    Per step, each annotated task's gradient g_t = ∂L_t/∂z on the shared representation z is
    taken through its head only; α = argmin over the simplex of ‖Σ_t α_t g_t‖² (Eq. 3, the
    upper-bound surrogate of Sec. 3.3); then one backward through the backbone from z with
    Σ_t α_t g_t. Each head gets its own task's gradient (Algorithm 2, task-specific update). A task
    with no annotated entry in the batch gets α_t = 0 for that step. ``last_weights`` holds the
    latest α by task, ``last_solution`` the solver's report. Under ``torchrun`` the Gram matrix and
    the losses are the global batch's (every process solves the same problem); under fp16 mixed
    precision the gradients are unscaled (``ctx.loss_scale``) before the solver sees them.

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
        self.last_weights: dict[str, float] = {}
        self.last_solution: MinNormSolution | None = None

    def backward(self, losses: dict[str, Tensor], ctx: StepContext) -> Tensor:
        z = ctx.outputs.features
        tasks = [t for t in losses if t in ctx.model.heads]
        extras = [value for name, value in losses.items() if name not in ctx.model.heads]  # e.g. a subclass's regulariser
        active = [t for t in tasks if is_annotated(ctx.batch, t)]
        z_grads, head_grads = self._per_task_gradients(losses, tasks, ctx)
        # α from the true gradients: under fp16 mixed precision they arrive multiplied by the loss scale
        unscaled = [None if z_grads[t] is None else z_grads[t].double() / ctx.loss_scale for t in active]
        alpha, scale = self.task_weights(active, [losses[t] for t in active], unscaled)
        self.last_weights = {t: float(alpha.get(t, 0.0)) for t in tasks}
        combined = torch.zeros_like(z)  # Σ_t α_t g_t (/ n_t), what the backbone receives at z
        for task in active:
            if z_grads[task] is not None:
                combined = combined + (alpha[task] * scale[task]) * z_grads[task]
        roots, seeds = [z], [combined]
        if extras:  # terms other than task losses keep weight 1
            roots.append(torch.stack(extras).sum())
            seeds.append(torch.ones_like(roots[-1]))
        torch.autograd.backward(roots, seeds)
        for task in tasks:
            factor = 1.0 if self.head_gradient == "own" else self.last_weights[task]
            for param, grad in head_grads[task]:
                if grad is not None:
                    param.grad = factor * grad if param.grad is None else param.grad + factor * grad
        total = sum(self.last_weights[t] * losses[t].detach() for t in tasks)
        return total + (roots[1].detach() if extras else 0.0)

    @staticmethod
    def _per_task_gradients(losses: dict[str, Tensor], tasks: list[str], ctx: StepContext
                            ) -> tuple[dict[str, Tensor | None], dict[str, list[tuple[Tensor, Tensor | None]]]]:
        """Per task, ∂L_t/∂z and (parameter, gradient) of its head: a backward through the head only."""
        z_grads, head_grads = {}, {}
        for task in tasks:
            params = [p for p in ctx.model.task_parameters(task) if p.requires_grad]
            grads = torch.autograd.grad(losses[task], [ctx.outputs.features, *params], retain_graph=True,
                                        allow_unused=True)
            z_grads[task], head_grads[task] = grads[0], list(zip(params, grads[1:]))
        return z_grads, head_grads

    def task_weights(self, tasks: list[str], losses: list[Tensor],
                     z_grads: list[Tensor | None]) -> tuple[dict[str, float], dict[str, float]]:
        """α by task (the min-norm weights of the normalised gradients) and each task's 1/n_t factor."""
        if not tasks:
            return {}, {}
        vectors = torch.stack([self._as_vector(g, z_grads) for g in z_grads]).double()  # (T, N)
        gram = self._global_gram(vectors)
        if not np.isfinite(gram).all():  # overflowed fp16 gradients: the grad scaler skips this step
            log.debug("mgda_ub: non-finite task gradients; equal weights for this (skipped) step")
            return {t: 1.0 / len(tasks) for t in tasks}, {t: 1.0 for t in tasks}
        values = all_reduce_mean(torch.stack([loss.detach() for loss in losses]))  # the global batch's losses
        norms = self._normalizers(gram, list(values))
        solution = solve(gram / np.outer(norms, norms), self.solver, max_iter=self.max_iter, tol=self.tol,
                         away_steps=self.away_steps)
        self.last_solution = solution
        scale = 1.0 / norms if self.scale_by_normalizer else np.ones_like(norms)
        return ({t: float(a) for t, a in zip(tasks, solution.weights)},
                {t: float(s) for t, s in zip(tasks, scale)})

    def _global_gram(self, vectors: Tensor) -> np.ndarray:
        """G = V Vᵀ (T, T) of the task gradients over the global batch (every process under ``torchrun``).

        A process's loss is its share of the global loss (``benchmark.tasks.as_global_mean``), so the
        global gradient on its samples is its own divided by K: flattened, the processes' blocks are
        disjoint and G = Σ_r G_r / K²; summed over the batch, the sums add up first.
        """
        if self.batch_reduction == "sum":
            vectors = all_reduce_mean(vectors)
        gram = vectors @ vectors.T  # (T, N) @ (N, T) -> (T, T)
        if self.batch_reduction == "flatten" and world_size() > 1:
            gram = all_reduce_mean(gram) / world_size()
        return gram.cpu().numpy()

    def _as_vector(self, grad: Tensor | None, all_grads: list[Tensor | None]) -> Tensor:
        """g_t (B, D) as one vector: flattened over batch × features, or summed over the batch first."""
        if grad is None:  # the loss does not reach z: a zero gradient
            grad = torch.zeros_like(next(g for g in all_grads if g is not None))
        return grad.flatten() if self.batch_reduction == "flatten" else grad.sum(0).flatten()

    def _normalizers(self, gram: np.ndarray, losses: list[Tensor]) -> np.ndarray:
        """n_t for each task: 1, ‖g_t‖, L_t or L_t·‖g_t‖, kept away from 0."""
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        values = np.array([float(loss.detach()) for loss in losses])
        factor = {"none": np.ones_like(norms), "l2": norms, "loss": values, "loss+": values * norms}[self.normalization]
        return np.maximum(factor, np.finfo(np.float64).tiny ** 0.5)
