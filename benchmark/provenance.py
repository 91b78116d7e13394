"""Where and with what a run was made: code version, library versions, device."""

from __future__ import annotations

import importlib.metadata
import platform
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

_LIBRARIES = ("mtlbench", "torch", "torchvision", "timm", "numpy", "scipy", "pandas", "cvxpy")


def git_state(path: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit sha, dirty flag) of the git checkout holding this package, or (None, None)."""
    where = path or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10)
        return sha.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def environment(device: torch.device) -> dict[str, Any]:
    """Everything about this machine and code that a stored run records."""
    sha, dirty = git_state()
    return {"git_sha": sha, "git_dirty": dirty, "versions": library_versions(), "device": device_name(device),
            "host": platform.node(), "platform": platform.platform()}


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory of this process on CUDA, else its peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
