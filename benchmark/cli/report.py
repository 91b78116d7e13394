"""``report``: negative-transfer, versus and paper tables, and figures, from stored runs; it never trains."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.cli.arguments import add_runs_source, add_store
from benchmark.cli.command import Command
from results import RunRecord

if TYPE_CHECKING:
    from reports import Baseline, ReportOptions

#: ``report --layout`` values (reports.LAYOUTS, spelled out so the parser needs no plotting imports).
REPORT_LAYOUTS = ["negative-transfer", "versus", "table2", "table3", "table4", "table5", "losses"]


def add_arguments(rep: argparse.ArgumentParser) -> None:
    """Which runs, which layout and format, the statistics, and what to write besides the printed table."""
    rep.add_argument("--db", nargs="+", help="one or more dbs (default: every db in the store)")
    rep.add_argument("--backbone", help="only runs with this backbone")
    rep.add_argument("--layout", choices=REPORT_LAYOUTS, default="negative-transfer",
                     help="losses: each method's logged training terms (losses, coupling terms, task weights) at the "
                          "first and the chosen epoch; default: %(default)s")
    rep.add_argument("--versus", metavar="METHOD[:KEY=VALUE,...]",
                     help="--layout versus: the baseline, in each db the variant of METHOD with these options (e.g. "
                          "no_coupling, dmsca:lambda_dm=1.0); every other variant is compared with it run by run")
    rep.add_argument("--format", choices=["markdown", "latex", "csv", "json", "html"], default="markdown",
                     help="html: one self-contained page of every table and figure, written to --out DIR/index.html "
                          "(default WORKDIR/report/)")
    rep.add_argument("--out", metavar="DIR", help="also write the table (and --figures) into DIR")
    rep.add_argument("--spread", choices=["std", "sem", "half_range"], default="std", help="± convention")
    rep.add_argument("--test", choices=["ttest", "wilcoxon"], default="ttest",
                     help="paired test vs single-task (--layout versus: vs the baseline)")
    rep.add_argument("--alpha", type=float, default=0.05, help="level of the significance marker")
    rep.add_argument("--adjust", choices=["none", "holm"], default="none",
                     help="multiple-testing adjustment of each table's p-values (holm: family-wise error over the "
                          "table's tested cells); default: %(default)s")
    rep.add_argument("--per-run", action="store_true", help="negative-transfer rows per run, not per method")
    rep.add_argument("--figures", action="store_true", help="also draw figures (PNG + PDF; --out or WORKDIR/figures)")
    rep.add_argument("--curves", nargs="+", metavar="RUN_ID", help="runs (id prefixes) for the training curves")
    rep.add_argument("--data-root", help="where a file-based db's files are (relatedness heat maps)")
    add_runs_source(rep, example="e.g. results/reference/*.jsonl")
    add_store(rep)


def handle(args: argparse.Namespace) -> int:
    """Print the chosen layout in the chosen format; write it (and figures) when asked. ``--format html`` is
    one page of every table and figure (:mod:`benchmark.html_report`), which leaves out ``--layout``."""
    check_versus_flags(args)
    options = report_options(args)
    if args.format == "html":
        from benchmark.html_report import write_page

        return write_page(args, options)
    from benchmark.reporting import draw_figures
    from benchmark.stores import completed_records
    from reports import build_tables, render
    from reports.render import SUFFIXES

    records = completed_records(args)
    records = [r for r in records if not args.backbone or r.backbone == args.backbone]
    check_dbs(args, records)
    dbs = args.db or sorted({r.db for r in records})
    records = [r for r in records if r.db in dbs]
    if not records:
        what = f"db {', '.join(dbs)}" if args.db else "any db"
        where = ", ".join(args.runs) if args.runs else args.workdir
        raise ValueError(f"no completed run of {what}{f' with backbone {args.backbone}' if args.backbone else ''} "
                         f"in {where}; train some with 'python -m benchmark run --db ... --method ...'")
    tables = build_tables(records, args.layout, dbs, args.backbone, options)
    text = render(tables, args.format)
    print(text, end="")
    if args.out:
        out = Path(args.out) / f"{table_stem(args, dbs, options.versus)}.{SUFFIXES[args.format]}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    if args.figures:
        folder = Path(args.out) if args.out else Path(args.workdir) / "figures"
        paths = draw_figures(records, dbs, folder, args)
        print(f"wrote {len(paths)} figure files under {folder}", file=sys.stderr)
    return 0


def report_options(args: argparse.Namespace) -> ReportOptions:
    """The table options of ``report``'s flags, for every format (one place, so HTML checks what text does)."""
    from reports import ReportOptions

    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha {args.alpha}: the significance level must be between 0 and 1, e.g. 0.05")
    return ReportOptions(spread=args.spread, test=args.test, alpha=args.alpha, per_run=args.per_run,
                         versus=versus_baseline(args.versus) if args.versus else None, adjust=args.adjust)


def check_versus_flags(args: argparse.Namespace) -> None:
    """``--layout versus`` and ``--versus`` go together; either without the other is an error naming both."""
    if args.layout == "versus" and not args.versus:
        raise ValueError("--layout versus needs --versus METHOD or METHOD:KEY=VALUE,..., the variant every other "
                         "one is compared with (e.g. --versus no_coupling)")
    if args.versus and args.layout != "versus":
        raise ValueError(f"--versus is for --layout versus (not {args.layout}); add --layout versus")
    if args.layout == "losses" and args.per_run:
        raise ValueError("--per-run is for the negative-transfer layout; --layout losses gives the mean ± spread of "
                         "each term over the runs (n in the caption or in each cell)")
    if args.layout == "versus" and args.per_run:
        raise ValueError("--per-run is for the negative-transfer layout; --layout versus pairs the runs already "
                         "(its W/T/L columns count them)")


def versus_baseline(spec: str) -> Baseline:
    """``--versus METHOD[:KEY=VALUE,...]``, the syntax of ``bench --methods``. The values are parsed as ``run --set``
    parses the method's options (:func:`benchmark.options.parse_overrides`: ``lambda_dm=1`` is the float 1.0, as
    stored, and a misspelt key is named) when the method is registered here; a method that is not (a plugin
    missing here) keeps them as text, which the report matches as values anyway (:func:`reports.spec.same_value`)."""
    from benchmark.options import parse_overrides
    from methods import METHODS
    from reports import Baseline

    text = Baseline.parse(spec)  # checks the form; values as text
    if text.method not in METHODS:
        return text
    pairs = [f"{k}={v}" for k, v in text.options]
    options = parse_overrides(METHODS.get(text.method), pairs, f"--versus {spec}: method {text.method!r}")
    return Baseline(text.method, tuple(options.items()))


def table_stem(args: argparse.Namespace, dbs: list[str], baseline: Baseline | None = None) -> str:
    """The file name (without suffix) of ``--out``: ``LAYOUT_DBS``; the versus layout names its baseline too, as
    parsed (``lambda_dm=1`` and ``lambda_dm=1.0`` name one file)."""
    layout = args.layout.replace("-", "_")
    if baseline is not None:
        layout += "_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", baseline.text)
    return f"{layout}_{'_'.join(dbs)}"


def check_dbs(args: argparse.Namespace, records: list[RunRecord]) -> None:
    """Every ``--db`` named must have completed runs here; one without is an error naming it, the close names
    (of the stored dbs and of the registry) and the dbs that do have runs."""
    import difflib

    from datasets import DBS

    stored = sorted({r.db for r in records})
    for db in args.db or []:
        if db in stored:
            continue
        close = difflib.get_close_matches(db, stored, n=1, cutoff=0.6) or difflib.get_close_matches(
            db, DBS.names(), n=1, cutoff=0.6)
        where = ", ".join(args.runs) if args.runs else args.workdir
        unknown = "" if db in DBS else f" ({db!r} is no registered db; see 'ls dbs')"
        hint = f" Did you mean {close[0]!r}?" if close else ""
        backbone = f" with backbone {args.backbone}" if args.backbone else ""
        raise ValueError(f"--db {db}: no completed run of db {db}{backbone} in {where}{unknown}.{hint} "
                         f"Dbs with completed runs there: {', '.join(stored) or 'none'}")


COMMAND = Command("report", "negative-transfer, versus and paper tables, figures, from stored runs (never trains)",
                  add_arguments, handle)
