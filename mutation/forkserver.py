"""A fork server for mutation testing: the heavy libraries imported once, a fresh forked child per test run.

Every mutant costs one ``pytest`` run, and on this project's 2-core machine starting Python and importing
torch, timm, scipy, pandas and cvxpy is a large part of it (4-18 s, by load). This server imports those
third-party libraries once, then serves test runs: for each request from :mod:`mutation.forkclient` it
forks a child, which changes to the mirrored tree, puts it first on ``sys.path``, takes the request's
environment and runs ``pytest.main`` on the request's arguments; the server sends back the child's exit
code. Each child starts from the same state, so runs do not leak into each other.

What keeps the results those of a plain ``python -m pytest``:

- The server imports no module of the project (checked before it serves): every child imports the
  project, mutant included, from the tree, as a fresh process would.
- It runs no torch operation before forking, so no OpenMP thread pool exists to be copied half-initialised
  (the hazard of forking after torch has started threads); thread-count variables are set in the
  server's environment by :mod:`mutation.run` before torch is imported.
- A child that outlives its client (cosmic-ray's timeout killed the client) is killed: a hanging mutant
  counts as killed, as it does without the server.

    python mutation/forkserver.py SOCKET [MODULE ...]   # run by mutation/run.py (MODULE: what to preload instead)
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import sys
from pathlib import Path

#: Third-party modules imported once by the server (those the tests import that take seconds).
PRELOAD = ("numpy", "scipy.stats", "scipy.optimize", "pandas", "torch", "torchvision", "timm", "tabulate",
           "matplotlib", "matplotlib.pyplot", "cvxpy", "torchjd", "pytest")
#: Top-level package names of the project: none may be imported by the server.
PROJECT = ("benchmark", "methods", "datasets", "reports", "results", "tests", "benchmarks", "mutation")


def preload(names: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import ``names`` (those installed); the ones imported."""
    done = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        done.append(name)
    if "matplotlib" in sys.modules:
        import matplotlib
        matplotlib.use("Agg")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in PROJECT)
    if leaked:
        raise RuntimeError(f"the fork server imported project modules ({', '.join(leaked)}): children would test "
                           "them instead of the mutated tree")
    return done


def run_child(request: dict) -> int:
    """In the forked child: the request's directory, import path, environment and ``pytest.main``."""
    os.chdir(request["cwd"])
    sys.path.insert(0, request["cwd"])
    os.environ.update(request.get("env", {}))
    out = os.open(request.get("output") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.argv = ["pytest", *request["args"]]
    import pytest
    return int(pytest.main(request["args"]))


def serve_one(conn: socket.socket) -> None:
    """Read one request, fork its child, wait for it (killing it if the client hangs up), reply its exit code."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    request = json.loads(data)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = run_child(request)
        finally:
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(f"{code}\n".encode())
            except OSError:
                pass
            return
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1, socket.MSG_PEEK):  # the client is gone: its timeout or a Ctrl-C
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return


def serve(path: Path, names: tuple[str, ...] = PRELOAD) -> None:
    """Preload ``names``, then answer requests on the Unix socket ``path`` one at a time until killed."""
    preload(names)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path.with_suffix(".tmp")))
    server.listen(4)
    os.replace(path.with_suffix(".tmp"), path)  # the socket appears once the server is ready
    while True:
        conn, _ = server.accept()
        with conn:
            serve_one(conn)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), tuple(sys.argv[2:]) or PRELOAD)
