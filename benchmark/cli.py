"""``python -m benchmark``: run, ls, results, report, export, import."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.options import OptionError
from benchmark.registry import RegistryError
from results import ResultsStore, StoreError

log = logging.getLogger("benchmark")
DEFAULT_WORKDIR = "mtlbench-work"
#: ``report --layout`` values (reports.LAYOUTS, spelled out so the parser needs no plotting imports).
REPORT_LAYOUTS = ["negative-transfer", "table2", "table3", "table4", "table5"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="folder of the results store (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors, no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, select on validation, test once, store the run")
    run.add_argument("--method", required=True, help="registry name (see 'ls methods')")
    run.add_argument("--db", required=True, help="registry name (see 'ls dbs')")
    run.add_argument("--backbone", default="smallcnn", help="'smallcnn' or a timm model name (default: %(default)s)")
    run.add_argument("--pretrained", metavar="PATH", help="local weights file for the backbone (never downloaded)")
    run.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default: 0)")
    run.add_argument("--fold", type=int, help="cross-validation fold, for cross-validated dbs")
    run.add_argument("--epochs", type=int, help="default: the db's preset")
    run.add_argument("--batch-size", type=int, help="default: the db's preset")
    run.add_argument("--lr", type=float, help="Adam learning rate (default: the preset, 1e-3 as in the paper)")
    run.add_argument("--image-size", type=int, help="default: the db's preset")
    run.add_argument("--set", dest="method_set", action="append", default=[], metavar="KEY=VALUE",
                     help="method hyperparameter (repeatable), e.g. --set task=classes")
    run.add_argument("--db-set", action="append", default=[], metavar="KEY=VALUE",
                     help="db option (repeatable), e.g. --db-set overlap=0.2")
    run.add_argument("--data-root", help="folder of the db's files (file-based dbs)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    run.add_argument("--force", action="store_true", help="train again even if an identical run completed")
    _common(run)

    ls = sub.add_parser("ls", help="list methods, dbs or backbones")
    ls.add_argument("what", choices=["methods", "dbs", "backbones"])
    ls.add_argument("--pattern", help="backbones: list every timm model matching this glob, e.g. 'resnet*'")

    res = sub.add_parser("results", help="list stored runs")
    res.add_argument("--db")
    res.add_argument("--method")
    res.add_argument("--status", choices=["running", "completed", "failed"])
    res.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _common(res)

    rep = sub.add_parser("report", help="negative-transfer and paper tables, figures, from stored runs (never trains)")
    rep.add_argument("--db", nargs="+", help="one or more dbs (default: every db in the store)")
    rep.add_argument("--backbone", help="only runs with this backbone")
    rep.add_argument("--layout", choices=REPORT_LAYOUTS, default="negative-transfer", help="default: %(default)s")
    rep.add_argument("--format", choices=["markdown", "latex", "csv", "json"], default="markdown")
    rep.add_argument("--out", metavar="DIR", help="also write the table (and --figures) into DIR")
    rep.add_argument("--spread", choices=["std", "sem", "half_range"], default="std", help="± convention")
    rep.add_argument("--test", choices=["ttest", "wilcoxon"], default="ttest", help="paired test vs single-task")
    rep.add_argument("--alpha", type=float, default=0.05, help="level of the significance marker")
    rep.add_argument("--per-run", action="store_true", help="negative-transfer rows per run, not per method")
    rep.add_argument("--figures", action="store_true", help="also draw figures (PNG + PDF; --out or WORKDIR/figures)")
    rep.add_argument("--curves", nargs="+", metavar="RUN_ID", help="runs (id prefixes) for the training curves")
    rep.add_argument("--data-root", help="where a file-based db's files are (relatedness heat maps)")
    _common(rep)

    rel = sub.add_parser("relatedness", help="print a db's p(attribute | class) and write it as CSV and a heat map")
    rel.add_argument("--db", required=True)
    rel.add_argument("--source", default="auto", help="auto, domain, db (counted on the training split), a named "
                     "prior of the db, or a CSV path (default: %(default)s)")
    rel.add_argument("--db-set", action="append", default=[], metavar="KEY=VALUE", help="db option (repeatable)")
    rel.add_argument("--data-root", help="folder of the db's files (file-based dbs)")
    rel.add_argument("--fold", type=int, help="cross-validation fold whose training split is counted")
    rel.add_argument("--out", default=".", metavar="DIR", help="where the CSV and PNG go (default: %(default)s)")

    exp = sub.add_parser("export", help="write stored runs as JSON lines")
    exp.add_argument("file", help="output .jsonl file ('-' for stdout)")
    exp.add_argument("--db")
    exp.add_argument("--method")
    _common(exp)

    imp = sub.add_parser("import", help="merge runs from a JSON-lines export")
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="overwrite completed runs with the same id")
    _common(imp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from benchmark import commands

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        return int(handler(args) or 0)
    except (RegistryError, OptionError, StoreError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"error: the run stopped and is stored as failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: the run is stored as failed; completed runs are intact", file=sys.stderr)
        return 130


def open_store(workdir: str) -> ResultsStore:
    return ResultsStore(Path(workdir) / "results.sqlite")
