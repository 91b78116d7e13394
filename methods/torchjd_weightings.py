"""The adapter to TorchJD's Gramian weightings (Rey, Quinton et al., ``torchjd`` 0.18, torchjd.org).

TorchJD splits Jacobian descent into the plumbing (``autojac``: per-task gradients) and the math
(``aggregation``: weightings that turn the Gramian G = J Jᵀ of the per-task gradients into task
weights). mtlbench's gradient engine (``benchmark/gradient_engine.py``) is the plumbing here: it
hands :meth:`TorchJDWeighting.weighting` the Gram matrix of the annotated tasks' gradients (true,
unscaled, global), and this adapter hands that matrix to TorchJD's weighting and returns its weights.
The methods (``upgrad``, ``pcgrad``, ``cagrad``, ``imtl_g``, ``aligned_mtl``, ``dualproj``, ``mgda``,
``nash_mtl``) are one small file each; the weightings themselves come from the library, not from here.

A task without an annotated entry in the batch is left out of the Gram matrix by the engine (weight 0),
never entered as a zero gradient: TorchJD sees a smaller matrix for that step. TorchJD is imported on
first use, so listing the methods does not pay for importing it (and cvxpy).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

import torch
from torch import Tensor, nn

from methods.base import GradientRequest, Method, TaskGradients

log = logging.getLogger(__name__)

GRADIENTS: tuple[str, ...] = ("representation", "shared_parameters")
HEAD_GRADIENTS: tuple[str, ...] = ("own", "weighted")


def torchjd_aggregation() -> ModuleType:
    """``torchjd.aggregation``, imported on first use; a clear error where TorchJD is missing."""
    try:
        return importlib.import_module("torchjd.aggregation")
    except ImportError as exc:  # torchjd is a dependency; tests/methods/test_torchjd_adapter_edges.py removes it
        raise ImportError(f"the TorchJD weightings need torchjd 0.18 ({exc}); install it with "
                          f"pip install 'torchjd[quadprog-projector,nash-mtl,cagrad]>=0.18,<0.19'") from exc


def checked(method: str, build: Callable[[], Any]) -> Any:
    """``build()``, with TorchJD's message about a bad hyperparameter prefixed by the method's name."""
    try:
        return build()
    except ValueError as exc:
        raise ValueError(f"{method}: {exc}") from None


class TorchJDWeighting(Method):
    """Base of the methods whose task weights come from one of TorchJD's Gramian weightings.

    A subclass sets ``self.solver`` (a ``torchjd.aggregation.Weighting`` of a PSD matrix) in its
    ``__init__``, or overrides :meth:`weights_from_gram`. The engine then applies the weights: the
    backbone gets Σ_t w_t g_t (at z, or on the shared parameters), the heads per ``head_gradient``.

    Args:
        gradients: what the per-task gradients are taken with respect to: ``representation`` (the shared
            representation z, flattened over batch × features; the "upper bound" form of Sener & Koltun
            2018, one backbone backward) or ``shared_parameters`` (every backbone parameter, as TorchJD's
            ``mtl_backward``; one backbone backward per task).
        head_gradient: with ``representation``: each head gets its own task's gradient (``own``, as
            TorchJD's ``mtl_backward``) or w_t times it (``weighted``, as back-propagating Σ_t w_t L_t).
            With ``shared_parameters`` the engine applies Σ_t w_t L_t, so heads are weighted.
    """

    solver: nn.Module

    def __init__(self, *, gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__()
        label = self.label
        for key, value, choices in (("gradients", gradients, GRADIENTS), ("head_gradient", head_gradient, HEAD_GRADIENTS)):
            if value not in choices:
                raise ValueError(f"{label}: {key}={value!r} is not one of {choices}")
        self.gradients = gradients
        self.head_gradient = head_gradient

    @property
    def label(self) -> str:
        """The method's name in messages: its registry name, or the class name of an unregistered subclass."""
        return self.name or type(self).__name__

    def gradient_request(self) -> GradientRequest:
        """g_t at z (flattened over the batch) or on every shared parameter, as ``gradients`` says."""
        if self.gradients == "representation":
            return GradientRequest("representation", "flatten", self.head_gradient)
        return GradientRequest("shared_parameters")

    def weighting(self, gradients: TaskGradients) -> Tensor:
        """TorchJD's weights for the annotated tasks, from their (T, T) Gram matrix in float64 on the CPU."""
        count = len(gradients.tasks)
        if count == 0:
            return torch.zeros(0, dtype=torch.float64)
        gram = gradients.gram.detach().to(device="cpu", dtype=torch.float64)
        if not bool(torch.isfinite(gram).all()) or float(gram.diagonal().sum()) <= 0.0:
            # overflowed fp16 gradients (the grad scaler skips this step) or no gradient at all: any
            # weights give the same (skipped or zero) update, and the solvers would divide by zero
            return torch.full((count,), 1.0 / count, dtype=torch.float64)
        weights = self.weights_from_gram(gram, gradients).detach().to(device="cpu", dtype=torch.float64).flatten()
        if weights.numel() != count or not bool(torch.isfinite(weights).all()):
            log.warning("%s: TorchJD returned weights %s for %d tasks at step %d; equal weights for this step",
                        self.label, weights.tolist(), count, gradients.step)
            return torch.full((count,), 1.0 / count, dtype=torch.float64)
        return weights

    def weights_from_gram(self, gram: Tensor, gradients: TaskGradients) -> Tensor:
        """The weights TorchJD's weighting gives for ``gram`` (T, T), float64 on the CPU."""
        return self.solver(gram)


class ProjectedWeighting(TorchJDWeighting):
    """Base of the weightings that project onto the dual cone of the task gradients with TorchJD's quadprog
    projector (``upgrad``, ``dualproj``); a subclass names the TorchJD weighting in ``torchjd_class``.

    Args:
        norm_eps: TorchJD's ``QuadprogProjector`` norm_eps: a Gram matrix of trace below it is treated as 0.
        reg_eps: TorchJD's ``QuadprogProjector`` reg_eps: added to the (normalised) Gram diagonal so the QP is definite.
        gradients: ``representation`` (g_t at z, default) or ``shared_parameters``.
        head_gradient: heads get their own gradient (``own``) or w_t times it (``weighted``).
    """

    torchjd_class: str = ""

    def __init__(self, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                 gradients: Literal["representation", "shared_parameters"] = "representation",
                 head_gradient: Literal["own", "weighted"] = "own") -> None:
        super().__init__(gradients=gradients, head_gradient=head_gradient)
        self.norm_eps = norm_eps
        self.reg_eps = reg_eps
        weighting = getattr(torchjd_aggregation(), self.torchjd_class)
        from torchjd.linalg import QuadprogProjector

        self.solver = checked(self.label, lambda: weighting(
            projector=QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)))
