"""Where runs are read from and written to: the one place that knows where the store file is (its folder
by default, its name).

A work directory holds ``results.sqlite`` (:class:`results.ResultsStore`); commands that only read
open it with ``create=False``, so a typo in ``--workdir`` is an error, not a new empty store. Reports
may also read runs from JSON-lines exports (``--runs``), e.g. the committed ``results/reference/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from results import COMPLETED, ResultsStore, RunRecord, read_jsonl

STORE_FILE = "results.sqlite"
#: The work directory commands use when ``--workdir`` is not given.
DEFAULT_WORKDIR = "mtlbench-work"


def store_path(workdir: str | Path) -> Path:
    """The store file of work directory ``workdir``."""
    return Path(workdir) / STORE_FILE


def open_store(workdir: str | Path, *, create: bool = True) -> ResultsStore:
    """The store in ``workdir``; ``create=False`` for commands that only read (a missing store is an error, not a new file)."""
    return ResultsStore(store_path(workdir), create=create)


def every_record(args: argparse.Namespace) -> list[RunRecord]:
    """Every run of the store in ``--workdir`` (or of the ``--runs`` JSON-lines files), whatever its status."""
    if not args.runs:
        with open_store(args.workdir, create=False) as store:
            return store.runs()
    records: dict[str, RunRecord] = {}
    for name in args.runs:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"--runs {name}: no such file; give JSON-lines files written by "
                                    f"'python -m benchmark export', e.g. results/reference/cad.jsonl")
        with path.open() as lines:
            for r in read_jsonl(lines, str(path)):  # a completed copy wins over another status
                if r.run_id not in records or r.status == COMPLETED:
                    records[r.run_id] = r
    return list(records.values())


def completed_records(args: argparse.Namespace) -> list[RunRecord]:
    """The completed runs of the store in ``--workdir``, or of the JSON-lines files ``--runs`` names
    (``export``'s format, e.g. the committed ``results/reference/*.jsonl``: rendered without a store)."""
    return [r for r in every_record(args) if r.status == COMPLETED]
