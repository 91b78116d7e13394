"""The numbers of a run's protocol, checked before anything is stored: each error names the flag, the value
given and what is allowed, so a bad number never reaches torch (or, worse, silently means "the preset")."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import torch

log = logging.getLogger(__name__)

#: Seeds are stored as SQLite integers (signed 64-bit).
MAX_SEED = 2**63 - 1


class ProtocolError(ValueError):
    """A protocol number outside its range (``--epochs 0``, ``--lr nan``, an image too small for the backbone)."""


def check_int(flag: str, value: Any, minimum: int, what: str, maximum: int | None = None) -> None:
    """``value`` must be an int in ``minimum..maximum``; ``what`` says what the number is."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        raise ProtocolError(f"{flag} {value}: must be {allowed} ({what})")


def check_positive(flag: str, value: Any, what: str) -> None:
    """``value`` must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{flag} {value}: must be a finite number > 0 ({what})")


def check_overrides(epochs: int | None, batch_size: int | None, lr: float | None, image_size: int | None,
                    preset: Any) -> None:
    """The preset overrides of ``run`` (None: the preset's value), each in its range; ``preset`` is the db's."""
    keep = "; leave the flag out for the db's preset"
    if epochs is not None:
        check_int("--epochs", epochs, 1, f"training epochs{keep}, {preset.epochs}")
    if batch_size is not None:
        check_int("--batch-size", batch_size, 1, f"images per step{keep}, {preset.batch_size}")
    if lr is not None:
        check_positive("--lr", lr, f"Adam's learning rate, e.g. 1e-3{keep}, {preset.lr:g}")
    if image_size is not None:
        check_int("--image-size", image_size, 1, f"the input side in pixels{keep}, {preset.image_size}")


def check_patience(patience: int | None, epochs: int) -> None:
    """``--patience``: None, or a whole number of epochs from 1 to ``epochs - 1`` (more could never stop a run)."""
    if patience is not None:
        check_int("--patience", patience, 1, "epochs without a better validation score before training stops; "
                  "leave the flag out to train every epoch", max(1, epochs - 1))


def check_seed(seed: Any) -> None:
    check_int("--seed", seed, 0, "seeds are stored as 64-bit integers", MAX_SEED)


def check_workers(workers: int | None) -> None:
    if workers is not None:
        check_int("--workers", workers, 0, "DataLoader worker processes; 0 loads in this process")


def check_input_size(backbone: str, size: int) -> None:
    """Fail naming ``--image-size`` when ``backbone`` cannot take ``size`` x ``size`` inputs, saying the sizes it takes."""
    problem = input_size_problem(backbone, size)
    if problem is not None:
        raise ProtocolError(problem)


@functools.cache  # a pure function of its arguments; a grid asks it once per backbone and size
def input_size_problem(backbone: str, size: int) -> str | None:
    """Why ``backbone`` cannot take ``size`` x ``size`` inputs, or None when it can.

    The backbone is built and run on the meta device (shapes only: no memory, no arithmetic), so even a
    large network is checked in a fraction of a second. An architecture the meta device cannot build or
    run is not checked here (the run itself will say).
    """
    from benchmark.backbones import create_backbone

    try:
        with torch.device("meta"):
            model, _ = create_backbone(backbone)
        model.eval()
    except Exception as exc:  # noqa: BLE001 - some architectures cannot be built on the meta device
        log.debug("input size of %s not checked: %s", backbone, exc)
        return None

    def accepts(side: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.empty(1, 3, side, side, device="meta"))
        except Exception:  # noqa: BLE001 - a shape error, whatever the layer raising it
            return False
        return True

    if accepts(size):
        return None
    usual = int((getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1])
    if not accepts(usual):  # not even its usual size traces: the meta run says nothing about sizes
        return None
    flag = f"--image-size {size}: backbone {backbone!r}"
    if usual < size or not accepts(usual + 1):
        return f"{flag} takes only {usual} x {usual} inputs; pass --image-size {usual}"
    low, high = size, usual  # low fails, high works; a network's output shrinks monotonically with its input
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if accepts(middle) else (middle, high)
    return f"{flag} needs inputs of at least {high} x {high} pixels (allowed: --image-size >= {high})"
