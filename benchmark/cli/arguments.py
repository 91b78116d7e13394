"""Argument groups several sub-commands share, each declared once: where the store is, how verbose,
which db and data, how training executes."""

from __future__ import annotations

import argparse

from benchmark.stores import DEFAULT_WORKDIR


def add_store(parser: argparse.ArgumentParser) -> None:
    """``--workdir`` (the folder of the results store, :mod:`benchmark.stores`) and ``--quiet``."""
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="folder of the results store (default: %(default)s)")
    add_quiet(parser)


def add_quiet(parser: argparse.ArgumentParser, *, progress_bars: bool = True) -> None:
    """``--quiet``: log warnings and errors only (and, for commands that draw them, no progress bars)."""
    parser.add_argument("--quiet", action="store_true",
                        help="only warnings and errors" + (", no progress bars" if progress_bars else ""))


def add_run_filters(parser: argparse.ArgumentParser, *, status_help: str | None = None) -> None:
    """``--db``, ``--method``, ``--status``: which stored runs a command reads."""
    parser.add_argument("--db")
    parser.add_argument("--method")
    parser.add_argument("--status", choices=["running", "completed", "failed"], help=status_help)


def add_runs_source(parser: argparse.ArgumentParser, *, example: str = "") -> None:
    """``--runs``: read runs from JSON-lines exports instead of the store (:func:`benchmark.stores.every_record`)."""
    parser.add_argument("--runs", nargs="+", metavar="FILE.jsonl", help="read runs from these JSON-lines exports "
                        f"{f'({example}) ' if example else ''}instead of the store in --workdir")


def add_db_options(parser: argparse.ArgumentParser, *, example: str = "") -> None:
    """``--db-set`` (a db option, repeatable) and ``--data-root`` (where a file-based db's files are)."""
    parser.add_argument("--db-set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"db option (repeatable){f', e.g. {example}' if example else ''}")
    parser.add_argument("--data-root", help="folder of the db's files (file-based dbs)")


def add_device(parser: argparse.ArgumentParser, *, scope: str = "") -> None:
    """``--device``; ``scope`` prefixes the help where the flag applies to one executor only."""
    parser.add_argument("--device", default="auto",
                        help=f"{f'{scope}: ' if scope else ''}auto, cpu, cuda or cuda:N (default: %(default)s)")


def add_execution(parser: argparse.ArgumentParser) -> None:
    """How training executes here (``benchmark/train.py``'s TrainOptions, and --amp)."""
    parser.add_argument("--amp", choices=["off", "auto", "bf16", "fp16"], default="off",
                        help="mixed precision: auto = bf16 on GPUs that have it, else fp16 with a grad scaler; off on "
                             "CPU. Part of the run's identity (default: %(default)s)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format (faster "
                        "convolutions on GPUs; on this project's CPU for efficientnet_lite0: docs/scale.md)")
    parser.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                        help="torch.compile the network (backend default: inductor)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: sized to the machine; 0 for "
                        "in-memory dbs)")


def add_tensorboard(parser: argparse.ArgumentParser) -> None:
    """``--tensorboard DIR``: log each epoch to TensorBoard as it trains."""
    parser.add_argument("--tensorboard", metavar="DIR", help="also log each epoch's loss terms, validation metrics "
                        "and task weights to TensorBoard under DIR/RUN_ID (not part of a run's identity)")
