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

Set ``MTLBENCH_ALLOCATOR=system`` to keep glibc's defaults. On a system without glibc (macOS, musl,
Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["ENV_VAR", "SETTINGS", "keep_freed_memory"]

#: The environment variable that turns the tuning off (``system``) or on (anything else, or unset).
ENV_VAR = "MTLBENCH_ALLOCATOR"
_INT_MAX = 2**31 - 1
#: ``mallopt`` parameter numbers (glibc's malloc.h) and the values set: never ``mmap`` a block (2 GiB - 1
#: is the largest value an ``int`` takes), never trim the heap's top, and grow the heap 1 GiB at a time
#: (address space only: pages are touched when used).
SETTINGS: dict[str, tuple[int, int]] = {
    "M_MMAP_THRESHOLD": (-3, _INT_MAX),
    "M_TRIM_THRESHOLD": (-1, _INT_MAX),
    "M_TOP_PAD": (-2, 2**30),
}


def keep_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Set glibc's malloc thresholds so that freed memory stays in the process; True if they were set.

    False (nothing changed) when ``MTLBENCH_ALLOCATOR=system``, when the C library is not glibc, or when
    glibc refuses a setting.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip().lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    mallopt = ctypes.CDLL(path).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS.values())
