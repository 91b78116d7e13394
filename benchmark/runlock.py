"""One process trains a run at a time: an exclusive lock per run id, held while it trains.

The store says a run is ``running``, but so does the row of a process that was killed, so the row
alone cannot tell "someone is training it now" from "someone died training it". The lock can: it
is an ``flock`` on ``WORKDIR/locks/<run_id>.lock``, which the kernel releases when its holder exits,
however it exits (kill -9 included). A second process asking for a run whose lock is held fails at
once with :class:`RunInProgressError` naming the holder, or, asked to ``wait``, blocks until the
holder is done and then reuses its result; it never trains the run a second time alongside it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"


class RunInProgressError(RuntimeError):
    """Another process holds the run's lock: it is training that run now."""


def lock_path(workdir: str | Path, run_id: str) -> Path:
    """The lock file of run ``run_id``."""
    return Path(workdir) / LOCKS_DIR / f"{run_id}.lock"


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its holder wrote it (``pid 123 on host, since ...``)."""
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "a process that has not said who it is yet"


def is_locked(workdir: str | Path, run_id: str) -> bool:
    """Whether some process holds run ``run_id``'s lock now (this process's own locks count too)."""
    path = lock_path(workdir, run_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def run_lock(workdir: str | Path, run_id: str, what: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold run ``run_id``'s lock for the ``with`` block; yields whether it had to wait for another process.

    Raises :class:`RunInProgressError` naming the holder when another process holds it and ``wait`` is false.
    ``what`` describes the run in messages.
    """
    path = lock_path(workdir, run_id)
    fd, waited = acquire(path, run_id, what, wait)
    try:
        yield waited
    finally:
        path.unlink(missing_ok=True)  # while still held: a process waiting on this file sees it go and retries
        os.close(fd)
        try:
            path.parent.rmdir()  # no empty folder left behind; another lock in it keeps it
        except OSError:
            pass


def acquire(path: Path, run_id: str, what: str, wait: bool) -> tuple[int, bool]:
    """The descriptor of ``path`` locked exclusively by this process, and whether it waited for it."""
    waited = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # another process removed the empty folder in between: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise RunInProgressError(
                    f"run {run_id} ({what}) is being trained by another process ({holder(path)}); it is not trained "
                    f"twice: let that one finish (see 'results --status running'), or pass --wait to wait for it "
                    f"and reuse its result") from None
            log.warning("run %s (%s) is being trained by another process (%s): waiting for it to finish",
                        run_id, what, holder(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        if same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode())
            return fd, waited
        os.close(fd)  # its holder removed the file on release: what was locked is gone, lock the new one


def same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one removed in the meantime)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
