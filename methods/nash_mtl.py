"""``nash_mtl``: Nash-MTL, task weights from a bargaining game (through the TorchJD adapter), with its state on the method."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.base import METHODS, MultiTaskModel, TaskGradients
from methods.torchjd_weightings import TorchJDWeighting, checked, torchjd_aggregation

#: 2^T - 1 subsets of annotated tasks each keep their own state; more tasks than this would make that table large.
MAX_TASKS = 12


def gram_factor(gram: Tensor) -> Tensor:
    """A (T, T) matrix M with M Mᵀ = ``gram`` (V √Λ from its eigen-decomposition; PSD up to rounding).

    TorchJD's Nash-MTL weighting takes the Jacobian J and uses only J Jᵀ (and ‖αᵀJ‖² = αᵀ J Jᵀ α for
    its norm clipping), so a square root of the engine's Gram matrix stands in for J exactly.
    """
    eigenvalues, vectors = torch.linalg.eigh(gram)
    return vectors * eigenvalues.clamp_min(0.0).sqrt()  # (T, T) * (T,) scales the columns


@METHODS.register("nash_mtl")
class NashMTL(TorchJDWeighting):
    """Nash-MTL: the update is the Nash bargaining solution among the tasks, α with Gα = 1/α (Navon et al., ICML 2022).

    Paper: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik, E. Fetaya,
    "Multi-Task Learning as a Bargaining Game", ICML 2022, Algorithm 1 (the sequence of convex
    approximations of Sec. 3.1, solved with cvxpy/ECOS); TorchJD's ``NashMTL`` weighting, fed a square
    root of the Gram matrix (:func:`gram_factor`). It is stateful: each solve starts from the previous
    α, and with ``update_weights_every`` > 1 the last α is reused in between. Batches annotate
    different subsets of tasks, so each subset keeps its own state (TorchJD's solver, cached, and in
    the buffers ``alpha`` (subsets × T) and ``calls`` (subsets,), restored on resume: a resumed run
    continues bit for bit). The clipping ``max_norm`` applies to ‖Σ α_t g_t‖ of the gradients handed
    to the weighting, i.e. at z by default (the paper clips the shared parameters' gradient).

    Args:
        max_norm: largest norm of Σ_t α_t g_t; α is scaled down beyond it (0 disables; paper's code: 1.0).
        update_weights_every: solve for α every this many steps of a task subset, reuse it in between (paper: 1).
        optim_niter: iterations of the sequential convex approximation (paper: 20).
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    def __init__(self, *, max_norm: float = 1.0, update_weights_every: int = 1, optim_niter: int = 20,
                 gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.max_norm = max_norm
        self.update_weights_every = update_weights_every
        self.optim_niter = optim_niter
        self.tasks: list[str] = []
        self._solvers: dict[int, list[Any]] = {}  # per task subset: [TorchJD weighting, whether it has solved once]
        self._new_solver(1)  # checks the hyperparameters (and that cvxpy and ecos are installed) now

    def _new_solver(self, tasks: int) -> nn.Module:
        aggregation = torchjd_aggregation()
        return checked("nash_mtl", lambda: aggregation.NashMTL(
            n_tasks=tasks, max_norm=self.max_norm, update_weights_every=self.update_weights_every,
            optim_niter=self.optim_niter).weighting)

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        self.tasks = list(heads.keys())
        if len(self.tasks) > MAX_TASKS:
            raise ValueError(f"nash_mtl keeps a state per subset of tasks and supports at most {MAX_TASKS} tasks; "
                             f"this problem has {len(self.tasks)}")
        subsets = 2 ** len(self.tasks) - 1  # row r holds the subset whose bit mask is r + 1
        self.register_buffer("alpha", torch.zeros(subsets, len(self.tasks), dtype=torch.float64))
        self.register_buffer("calls", torch.zeros(subsets, dtype=torch.int64))
        self._solvers = {}
        return super().build(backbone, heads, problem)

    def single_task_alpha(self, gram: Tensor) -> Tensor:
        """α for a batch that annotates one task: G α = 1/α gives α = 1/‖g‖ (Navon et al., Eq. 2 with T = 1),
        then the clipping to ``max_norm`` (‖α g‖ = 1 before it), as TorchJD's solver would return."""
        norm = float(gram.reshape(-1)[0]) ** 0.5
        scale = min(1.0, self.max_norm) if self.max_norm > 0 else 1.0
        return torch.tensor([scale / norm], dtype=torch.float64)

    def weights_from_gram(self, gram: Tensor, gradients: TaskGradients) -> Tensor:
        """α for this subset of tasks from TorchJD, with the subset's state restored before and saved after."""
        unknown = [t for t in gradients.tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"nash_mtl: tasks {unknown} were not built (tasks: {self.tasks}); call build() first")
        index = [self.tasks.index(t) for t in gradients.tasks]
        row = sum(1 << i for i in index) - 1
        if len(index) == 1:  # one annotated task: the bargaining solution in closed form (TorchJD's cvxpy
            weights = self.single_task_alpha(gram)  # problem cannot be built for one task)
            self.alpha[row, index] = weights.to(self.alpha.device)
            self.calls[row] += 1
            return weights
        entry = self._solvers.setdefault(row, [self._new_solver(len(index)), False])
        solver, solved_before = entry
        calls = int(self.calls[row])
        solve_now = calls % self.update_weights_every == 0
        if calls > 0:  # warm start (and the α reused between solves) from the buffer, so a resume continues
            solver.prvs_alpha = self.alpha[row, index].cpu().numpy().copy()
        # TorchJD builds its cvxpy problem at step 0 and solves when step % update_weights_every == 0
        solver.step = 0 if solve_now and not solved_before else calls
        weights = solver(gram_factor(gram))
        entry[1] = solved_before or solve_now
        self.alpha[row, index] = torch.as_tensor(np.asarray(solver.prvs_alpha, dtype=np.float64)).to(self.alpha.device)
        self.calls[row] += 1
        return weights
