"""``bench``: images/s of methods on one backbone, batch size and device; data vs compute."""

from __future__ import annotations

import argparse

from benchmark.cli.arguments import add_db_options, add_device, add_execution, add_quiet
from benchmark.cli.command import Command


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """What is timed (backbone, sizes, methods, db) and for how long."""
    bench.add_argument("--backbone", default="smallcnn", help="(default: %(default)s)")
    bench.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    bench.add_argument("--image-size", type=int, default=64, help="(default: %(default)s)")
    bench.add_argument("--methods", nargs="+", metavar="NAME[:KEY=VALUE,...]",
                       help="methods, e.g. adashare:phase=search (default: every registered method)")
    bench.add_argument("--db", default="synthetic", help="db whose training split is loaded (default: %(default)s)")
    add_db_options(bench)
    add_device(bench)
    bench.add_argument("--steps", type=int, default=20, help="timed steps per method (default: %(default)s)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: %(default)s)")
    bench.add_argument("--rounds", type=int, default=5, help="turns the timed steps are split into, across "
                       "the methods (default: %(default)s)")
    add_quiet(bench, progress_bars=False)
    add_execution(bench)


def handle(args: argparse.Namespace) -> int:
    """Print the timing table (the timing itself lives in :mod:`benchmark.bench`)."""
    from benchmark.bench import run_bench

    print(run_bench(args))
    return 0


COMMAND = Command("bench", "images/s of methods on one backbone, batch size and device; data vs compute",
                  add_arguments, handle)
