"""A gradient-weighting method as a third-party plugin: the complete example of docs/plugins.md.

Installed for the tests by putting ``docs/examples`` on ``sys.path`` (its ``.dist-info`` declares the
entry point), so the contract suite covers it like every registered method.
"""

from __future__ import annotations

import torch
from torch import Tensor

from methods import GradientRequest, Method, TaskGradients


class EqualGradientNorms(Method):
    """Weights that give every annotated task's gradient at z the same norm (example plugin).

    w_t = c / ‖g_t‖ with c chosen so that Σ_t w_t = T: the backbone gets Σ_t w_t g_t, a sum of
    equally long task gradients. (A closed-form relative of GradNorm's goal; an example, not a
    published method.) The loop's gradient engine supplies the Gram matrix G of the tasks' gradients
    g_t = ∂L_t/∂z (true, global, annotated tasks only) and applies the weights.

    Args:
        eps: floor on ‖g_t‖, so a vanishing gradient gets a large but finite weight.
    """

    def __init__(self, *, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def gradient_request(self) -> GradientRequest:
        return GradientRequest("representation")  # g_t at z; heads get w_t times their gradient

    def weighting(self, gradients: TaskGradients) -> Tensor:
        norms = gradients.gram.diagonal().clamp_min(0.0).sqrt().clamp_min(self.eps)  # ‖g_t‖ = sqrt(G_tt)
        inverse = 1.0 / norms
        return inverse * (len(gradients.tasks) / inverse.sum()) if len(gradients.tasks) else torch.zeros(0)
