"""Mixed precision: bf16 autocast, or fp16 autocast with a grad scaler, for methods that take gradients themselves.

The forward pass runs under autocast; the logits are cast back to fp32, so task losses, coupling
losses and every method hook compute in fp32. With fp16 a ``GradScaler`` multiplies the gradients by
a large factor so small ones do not underflow. The usual recipe, ``scaler.scale(loss).backward()``,
does not fit this contract: the method's ``backward`` hook does the backward, and MGDA-UB and
GradNorm compute with loss values (normalisers, loss ratios) as well as with gradient values (Gram
matrices, gradient norms). So the loss *values* stay true and only their *gradients* are scaled:
each loss handed to ``backward`` passes through :class:`ScaleGradient` (identity forward, gradient
times the scale backward), and ``StepContext.loss_scale`` tells a hook the factor, so it divides
gradient values by it before computing norms or Gram matrices (and scales gradients it sets by hand).
Every gradient then carries the same factor, which ``scaler.step`` removes (``unscale_``) before
the optimizer step, or skips the step when one overflowed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor

#: ``--amp`` values; ``auto`` is bf16 on a GPU that supports it, fp16 on one that does not, off on CPU.
AMP_CHOICES: tuple[str, ...] = ("off", "auto", "bf16", "fp16")
#: Stored precisions (``RunConfig.precision``): part of a run's identity, as they change its numerics.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(amp: str, device: torch.device) -> str:
    """The precision ``--amp`` stands for on ``device``: ``fp32``, ``bf16`` or ``fp16``."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"--amp {amp!r} is not one of {AMP_CHOICES}")
    if amp == "off":
        return "fp32"
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
    if amp == "auto":
        if device.type != "cuda":
            return "fp32"  # autocast on CPU is seldom faster; ask for --amp bf16 explicitly
        return "bf16" if bf16_ok else "fp16"
    if amp == "bf16" and not bf16_ok:
        raise ValueError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use --amp fp16 or auto")
    return amp


class ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class MixedPrecision:
    """Autocast and, for fp16, loss scaling around one training step.

    Args:
        precision: ``fp32`` (nothing), ``bf16`` (autocast) or ``fp16`` (autocast and a grad scaler).
        device: the training device.
        autocast_forward: False keeps the forward in fp32 with the scaler still on (tests of the
            scaling path: powers of two scale exactly, so the results must not change).
    """

    def __init__(self, precision: str, device: torch.device, *, autocast_forward: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
        self.precision, self.device = precision, device
        self.dtype = _DTYPES.get(precision) if autocast_forward else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast region of the forward pass (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def loss_scale(self) -> float:
        """This step's gradient factor: the scaler's current scale, or 1."""
        if not self.scaler.is_enabled():
            return 1.0
        return float(self.scaler.scale(torch.ones((), device=self.device)))  # also creates the scale on first use

    def scale_gradients(self, losses: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
        """The losses with their gradients (not values) multiplied by ``scale``; as they are at 1."""
        if scale == 1.0:
            return losses
        return {name: ScaleGradient.apply(value, scale) for name, value in losses.items()}

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale, step unless a gradient overflowed, update the scale (fp16); else a plain step."""
        if not self.scaler.is_enabled():
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
