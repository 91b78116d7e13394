"""``sweep``: run an experiment file's grid, dependencies first, skipping completed runs."""

from __future__ import annotations

import argparse

from benchmark.cli.arguments import add_device, add_store, add_tensorboard
from benchmark.cli.command import Command


def add_arguments(sw: argparse.ArgumentParser) -> None:
    """The file, the executor and its resources, what to (re)train."""
    sw.add_argument("file", help="experiment file (TOML), e.g. experiments/cpu_small.toml")
    sw.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local processes, or Ray tasks (default: %(default)s)")
    sw.add_argument("--jobs", type=int, default=1, help="local: runs at a time, each in its own process (default: 1)")
    sw.add_argument("--address", help="ray: the cluster to join (default: start Ray on this machine)")
    sw.add_argument("--dry-run", action="store_true", help="print the expanded grid and what would run; train nothing")
    sw.add_argument("--data-root", action="append", default=[], metavar="DB=DIR",
                    help="data root of a db, over the file's data_root (repeatable)")
    add_device(sw, scope="local")
    sw.add_argument("--force", action="store_true", help="train the grid's runs again even if completed")
    sw.add_argument("--retrain-missing-weights", action="store_true",
                    help="train a completed run again when a run to train builds on it and its weights file is "
                         "missing (a store imported from an export); without it the sweep stops and names them")
    sw.add_argument("--methods", nargs="+", metavar="NAME", help="only the file's method entries of these names "
                    "(their dependencies too); a later full sweep skips what completed")
    sw.add_argument("--backbones", nargs="+", metavar="NAME", help="only the file's backbone entries of these names; "
                    "a later full sweep skips what completed")
    sw.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="every run in channels-last memory format, or (--no-channels-last) not, over the file's "
                         "[execution] table; not part of a run's identity, stored with each run")
    add_tensorboard(sw)
    add_store(sw)


def handle(args: argparse.Namespace) -> int:
    """Experiment files, planning and executors live in ``benchmark/sweep*.py``."""
    from benchmark.sweep import cmd_sweep

    return cmd_sweep(args)


COMMAND = Command("sweep", "run an experiment file's grid, dependencies first, skipping completed runs",
                  add_arguments, handle)
