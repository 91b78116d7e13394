"""``relatedness``: print a db's p(attribute | class) and write it as CSV and a heat map."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from benchmark.cli.arguments import add_db_options
from benchmark.cli.command import Command


def add_arguments(rel: argparse.ArgumentParser) -> None:
    """The db, the relatedness source, the training split counted, where the files go."""
    rel.add_argument("--db", required=True)
    rel.add_argument("--source", default="auto", help="auto, domain, db (counted on the training split), a named "
                     "prior of the db, or a CSV path (default: %(default)s)")
    add_db_options(rel)
    rel.add_argument("--fold", type=int, help="cross-validation fold whose training split is counted (default 0)")
    rel.add_argument("--out", default=".", metavar="DIR", help="where the CSV and PNG go (default: %(default)s)")


def handle(args: argparse.Namespace) -> int:
    """Resolve the source as the coupling methods do, print the matrix, write its CSV and figures."""
    from benchmark.relatedness import save_csv
    from benchmark.runner import open_db
    from methods.dmsca import resolve_relatedness
    from reports.figures import relatedness_figure

    db = open_db(args.db, args.db_set, args.data_root)
    fold = 0 if args.fold is None and db.num_folds else args.fold  # a counted matrix needs some training split
    db.check_fold(fold)
    problem = db.problem(fold)
    source, matrix = resolve_relatedness(problem, args.source)
    classes, attributes = problem.pair()
    print(f"p(attribute | class) of db {args.db!r}, source {source!r} ({matrix.shape[0]} x {matrix.shape[1]})")
    shown = [[c, *(f"{v:.2f}" for v in row)] for c, row in zip(classes.labels, matrix)]
    print(tabulate(shown, headers=["class", *attributes.labels], tablefmt="github", disable_numparse=True))
    stem = Path(args.out) / f"relatedness_{args.db}_{Path(source).stem}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_csv(matrix, stem.with_suffix(".csv"), classes.labels, attributes.labels)
    figures = relatedness_figure(matrix, classes.labels, attributes.labels, stem,
                                 f"{args.db}: p(attribute | class), {source}")
    print(f"wrote {', '.join(map(str, [stem.with_suffix('.csv'), *figures]))}", file=sys.stderr)
    return 0


COMMAND = Command("relatedness", "print a db's p(attribute | class) and write it as CSV and a heat map",
                  add_arguments, handle)
