"""Keep freed memory in the process between training steps (glibc's ``mallopt``), for CPU training speed.

glibc's malloc serves a large block with ``mmap`` and hands it back with ``munmap`` when it is freed,
and trims the top of its heap whenever enough of it is free. A training step on the CPU allocates and
frees the same large activation and gradient buffers every step, so every step page-faults those pages
in again and the kernel zeroes them: on this project's 2-core reference machine, training
efficientnet_lite0 at 112 px with batch 50 (the CAD reference protocol), the process took about 54,000
minor page faults a second and spent up to 60% of its CPU time in the kernel.

:func:`keep_freed_memory` raises glibc's three thresholds (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``,
``M_TOP_PAD``) through ``mallopt(3)``, so freed blocks stay in the heap and the next step reuses them.
``python -m benchmark`` calls it once at start-up. What it costs: the process keeps its peak heap
instead of returning memory to the system between steps. What it leaves alone: every number. Tensor
buffers keep PyTorch's own alignment, so the same kernels run on the same values (``benchmarks/
cpu_speed.py`` checks the weights bit for bit and prints the step times side by side).

Set ``MTLBENCH_ALLOCATOR=system`` (or ``off``, ``0``, ``false``, ``no``) to keep glibc's defaults. On a system
without glibc (macOS, musl, Windows) this does nothing. ``--jobs`` worker processes and Ray tasks call it too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Mapping

__all__ = ["ENV_VAR", "OFF", "SETTINGS", "keep_freed_memory"]

#: The environment variable that turns the tuning off (:data:`OFF` values) or leaves it on (unset, or anything else).
ENV_VAR = "MTLBENCH_ALLOCATOR"
OFF = ("system", "off", "0", "false", "no")
_INT_MAX = 2**31 - 1
#: ``mallopt`` parameter numbers (glibc's malloc.h) and the values set: never ``mmap`` a block (2 GiB - 1
#: is the largest value an ``int`` takes), never trim the heap's top, and grow the heap 1 GiB at a time
#: (address space only: pages are touched when used).
SETTINGS: dict[str, tuple[int, int]] = {
    "M_MMAP_THRESHOLD": (-3, _INT_MAX),
    "M_TRIM_THRESHOLD": (-1, _INT_MAX),
    "M_TOP_PAD": (-2, 2**30),
}
#: Older glibc refuses an ``M_MMAP_THRESHOLD`` above half its largest heap (32 MiB on 64-bit): the fallback.
MMAP_THRESHOLD_FALLBACK = 32 * 2**20

log = logging.getLogger(__name__)


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Set glibc's malloc thresholds so that freed memory stays in the process; True if every one was set.

    Each setting is applied on its own (the mmap threshold falls back to 32 MiB where glibc refuses more), so
    False can mean that some were set and one was refused (logged). False, with nothing changed, when
    ``MTLBENCH_ALLOCATOR`` turns it off or the C library is not glibc.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip().lower() in OFF:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, glibc's among them (no library search)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    refused = []
    for name, (parameter, value) in SETTINGS.items():
        done = mallopt(parameter, value) == 1
        if not done and name == "M_MMAP_THRESHOLD":
            done = mallopt(parameter, MMAP_THRESHOLD_FALLBACK) == 1
        if not done:
            refused.append(name)
    if refused:
        log.debug("glibc refused %s: freed memory may go back to the system between steps", ", ".join(refused))
    return not refused
