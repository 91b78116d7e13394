"""``python -m benchmark``: one module per sub-command (or small family of them), assembled here.

Each module defines :class:`~benchmark.cli.command.Command` objects: a name, a help line, a function that
adds the command's own arguments to its parser and a handler that takes the parsed arguments. Argument
groups several commands share (``--workdir``/``--quiet``, ``--db-set``/``--data-root``, ``--device``,
the execution flags) are declared once in :mod:`benchmark.cli.arguments`; where the store file is
(folder and name) is known only to :mod:`benchmark.stores`.

    run.py          run            train, select on validation, test once, store
    bench.py        bench          images/s of methods; data vs compute
    ls.py           ls             the registries
    store.py        results, export, import   the store's runs: list, write as JSON lines, merge
    report.py       report         tables and figures from stored runs
    relatedness.py  relatedness    a db's p(attribute | class)
    sweep.py        sweep          an experiment file's grid
    tensorboard.py  tensorboard    stored histories as TensorBoard logs

A new sub-command is a module with ``add_arguments(parser)``, ``handle(args) -> int`` and
``COMMAND = Command(name, help, add_arguments, handle)``, listed in :data:`COMMANDS` below.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from benchmark.allocator import keep_freed_memory
from benchmark.cli import bench, ls, relatedness, report, run, store, sweep, tensorboard
from benchmark.cli.command import Command
from benchmark.cli.report import REPORT_LAYOUTS
from benchmark.options import OptionError
from benchmark.registry import RegistryError
from benchmark.runlock import RunInProgressError
from results import StoreError

__all__ = ["COMMANDS", "REPORT_LAYOUTS", "build_parser", "main"]

DESCRIPTION = "``python -m benchmark``: run, ls, results, report, export, import."
#: Every sub-command, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (run.COMMAND, bench.COMMAND, ls.COMMAND, store.RESULTS, report.COMMAND,
                                 relatedness.COMMAND, sweep.COMMAND, tensorboard.COMMAND, store.EXPORT, store.IMPORT)
#: Errors that mean bad input, broken data or a run busy elsewhere: nothing was stored; exit code 2.
INPUT_ERRORS = (RegistryError, OptionError, StoreError, ValueError, FileNotFoundError, RunInProgressError)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command; ``args.command`` names the one chosen."""
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command, and map its errors to exit codes: 2 for bad input (nothing was
    stored), 3 for a run stopped by a numerical failure (stored as failed), 130 for an interruption."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # CPU training steps 0.73-0.87x the time, numbers unchanged (benchmark/allocator.py)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler = next(c.handle for c in COMMANDS if c.name == args.command)
    try:
        return int(handler(args) or 0)
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)  # bad input, broken data, a run busy elsewhere: nothing was stored
        return 2
    except FloatingPointError as exc:
        print(f"error: the run stopped and is stored as failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # only run and sweep store runs; the other commands leave the store as it was
        trains = args.command in ("run", "sweep")
        print("interrupted" + (": the run in progress is stored as failed (resume it with --resume); completed "
                               "runs are intact" if trains else ""), file=sys.stderr)
        return 130
