"""The test command of a mutant when the fork server runs: ``python mutation/forkclient.py PYTEST_ARGS...``.

Sends the arguments, this directory and the environment variables that matter to the server named by
``MTLBENCH_FORKSERVER`` (a Unix socket, :mod:`mutation.forkserver`) and exits with the exit code of the
``pytest`` run it forked. Without a reachable server it runs ``python -m pytest`` itself, so a mutant is
never judged by a server that is not there. Standard library only: it starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import socket
import sys

#: Environment variables passed on to the test run (the mirrored tree on the import path, thread counts).
PASSED = ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(args: list[str]) -> int:
    path = os.environ.get("MTLBENCH_FORKSERVER")
    request = {"cwd": os.getcwd(), "args": args, "env": {k: os.environ[k] for k in PASSED if k in os.environ}}
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path or "")
    except OSError:
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
    with conn:
        conn.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:  # the server died mid-run: no verdict; run the tests here instead
                os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
            reply += chunk
    return int(reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
