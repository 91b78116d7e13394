"""``tensorboard``: write stored runs' per-epoch histories as TensorBoard logs."""

from __future__ import annotations

import argparse

from benchmark.cli.arguments import add_runs_source, add_store
from benchmark.cli.command import Command


def add_arguments(tb: argparse.ArgumentParser) -> None:
    """Where the logs go, which runs, whether to rewrite."""
    tb.add_argument("--out", required=True, metavar="DIR", help="log folder: one sub-folder per run id "
                    "(the layout of run/sweep --tensorboard; view with 'tensorboard --logdir DIR')")
    tb.add_argument("--db", nargs="+", help="only runs of these dbs")
    tb.add_argument("--method", nargs="+", help="only runs of these methods")
    add_runs_source(tb)
    tb.add_argument("--replace", action="store_true", help="rewrite a run whose sub-folder already holds logs "
                    "(default: leave it)")
    add_store(tb)


def handle(args: argparse.Namespace) -> int:
    """The export itself lives in :mod:`benchmark.tensorboard`."""
    from benchmark.tensorboard import cmd_tensorboard

    return cmd_tensorboard(args)


COMMAND = Command("tensorboard", "write stored runs' per-epoch histories as TensorBoard logs", add_arguments, handle)
