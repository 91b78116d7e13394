"""Keep the generated parts of a Markdown page (``docs/results.md``) in step with committed runs.

A page marks each generated block with the command that makes it, and this module re-renders every
block from JSON-lines run exports, leaving the prose around them alone::

    <!-- mtlbench: table --runs results/reference/cad.jsonl --db cad --layout table4 -->
    ...generated table...
    <!-- /mtlbench -->

    <!-- mtlbench: figure --runs results/reference/cad.jsonl --db cad --out docs/figures/cad -->
    ...generated image links...
    <!-- /mtlbench -->

    <!-- mtlbench: runs --runs results/reference/cad.jsonl --db cad -->
    ...generated run summary (count, wall time, best epochs)...
    <!-- /mtlbench -->

    <!-- mtlbench: losses --runs results/reference/cad.jsonl --db cad -->
    ...generated training loss per term, at the first and at the chosen epoch...
    <!-- /mtlbench -->

``python -m reports.docpage docs/results.md`` rewrites the page in place (``--check`` only says
whether it is up to date). Paths in a marker are relative to the repository root (the working
directory). Like every report, it reads runs and never trains.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from reports.compare import build_blocks
from reports.layouts import LAYOUTS, build_tables
from reports.render import render
from reports.spec import Baseline
from reports.table import ReportOptions
from reports.training_terms import term_values
from results import COMPLETED, RunRecord, read_jsonl

#: A marker line, the generated body, the closing line; markers start a line (prose may mention them).
BLOCK = re.compile(r"^(<!-- mtlbench: (?P<command>[^\n]*?) -->\n)(?P<body>.*?)(^<!-- /mtlbench -->)",
                   re.DOTALL | re.MULTILINE)
KINDS = ("table", "figure", "runs", "losses")


def block_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="<!-- mtlbench: ... -->", add_help=False, exit_on_error=False)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--db", nargs="+")
    parser.add_argument("--backbone")
    parser.add_argument("--layout", choices=LAYOUTS, default="negative-transfer")
    parser.add_argument("--spread", default="std")
    parser.add_argument("--test", default="ttest")
    parser.add_argument("--adjust", default="none")
    parser.add_argument("--versus", help="--layout versus: the baseline, METHOD[:KEY=VALUE,...] (values matched as values: 1 is 1.0)")
    parser.add_argument("--out", help="figure: the path stem of the figure files (PNG + PDF)")
    return parser


def load_runs(files: Sequence[str]) -> list[RunRecord]:
    """The completed runs of JSON-lines exports (a run in several files counts once; a file not yet
    written has none)."""
    runs: dict[str, RunRecord] = {}
    for name in files:
        if not Path(name).is_file():
            continue
        with Path(name).open() as lines:
            runs.update((r.run_id, r) for r in read_jsonl(lines, name) if r.status == COMPLETED)
    return list(runs.values())


def render_block(command: str, draw: bool = True) -> str:
    """The Markdown a marker's command makes (ending with a newline); ``draw`` False links a figure without
    drawing it (``--check`` writes nothing)."""
    try:
        args = block_parser().parse_args(shlex.split(command))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"bad docpage marker {command!r}: {exc}") from None
    runs = [r for r in load_runs(args.runs) if (not args.db or r.db in args.db)
            and (not args.backbone or r.backbone == args.backbone)]
    if not runs:
        return f"*(no completed run in {', '.join(args.runs)} matches this block yet)*\n"
    if args.kind == "table":
        tables = build_tables(runs, args.layout, args.db or sorted({r.db for r in runs}), args.backbone,
                              ReportOptions(spread=args.spread, test=args.test, adjust=args.adjust,
                                            versus=Baseline.parse(args.versus) if args.versus else None))
        return render(tables, "markdown").rstrip("\n") + "\n"
    if args.kind == "figure":
        return figure_links(runs, args, draw)
    if args.kind == "losses":
        return loss_terms(runs)
    return run_summary(runs)


def figure_links(runs: list[RunRecord], args: argparse.Namespace, draw: bool = True) -> str:
    """Draw the relative-difference figure of each block and link its PNG."""
    from reports.figures import relative_difference_figure

    if not args.out:
        raise ValueError("a figure marker needs --out PATH_STEM (e.g. docs/figures/cad)")
    lines = []
    for i, block in enumerate(build_blocks(runs, args.db, args.backbone)):
        stem = Path(f"{args.out}_{i}" if i else args.out)
        png = (next(p for p in relative_difference_figure(block, stem, args.spread) if p.suffix == ".png") if draw
               else stem.with_suffix(".png"))
        lines.append(f"![{block.db} / {block.label}: difference to single-task]({png.relative_to('docs')})"
                     if png.parts[0] == "docs" else f"![{block.db} / {block.label}]({png})")
    return "\n".join(lines) + "\n"


def run_summary(runs: list[RunRecord]) -> str:
    """Per method: runs, mean wall time, and each run's chosen epoch of the epochs it trained.

    The epochs are counted from 1: ``9/15`` is a run that chose its 9th epoch and trained 15 (with
    ``patience``, it stopped there; a run whose chosen epoch is its last may not have peaked yet).
    """
    rows = ["| method | options | runs | mean wall time (s) | epochs (at most), patience | chosen epoch / epochs trained (each run) |",
            "|---|---|---|---|---|---|"]
    for (method, options), group in variants(runs).items():
        wall = statistics.mean(r.wall_time_s or 0.0 for r in group)
        limits = ", ".join(sorted({f"{r.config.get('epochs')}, {r.config.get('patience') or '-'}" for r in group}))
        epochs = " ".join(f"{r.best_epoch + 1}/{len(r.history) or r.config.get('epochs')}" for r in group)
        rows.append(f"| {method} | {options} | {len(group)} | {wall:.0f} | {limits} | {epochs} |")
    total = sum(r.wall_time_s or 0.0 for r in runs)
    return "\n".join(rows) + f"\n\n{len(runs)} runs, {total / 3600:.1f} h of training in all.\n"


def variants(runs: list[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    """The runs per (method, its options as text), sorted by method and options; each group by fold, then seed.

    Runs of several backbones are never pooled: the method's name then carries the backbone, ``name (backbone)``.
    """
    several = len({r.backbone for r in runs}) > 1
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        options = ", ".join(f"{k}={v}" for k, v in sorted(r.method_options.items()) if k != "relatedness")
        groups.setdefault((f"{r.method} ({r.backbone})" if several else r.method, options), []).append(r)
    for group in groups.values():
        group.sort(key=lambda r: (r.fold if r.fold is not None else -1, r.seed))
    return dict(sorted(groups.items()))


def loss_terms(runs: list[RunRecord]) -> str:
    """Per method and options: each training-loss term's mean over the runs, at the first and at the chosen epoch,
    in one row (:mod:`reports.training_terms` says what the terms are; ``report --layout losses`` gives each its
    row, with its spread). A run without a history, or without its chosen epoch in it, is left out (and counted).
    """
    rows = ["| method | options | runs | logged training term: first epoch → chosen epoch (mean over runs) |",
            "|---|---|---|---|"]
    skipped = 0
    for (method, options), group in variants(runs).items():
        values, left_out = term_values(group)
        skipped += left_out
        if len(group) == left_out:
            continue
        cells = "; ".join(f"{term} {statistics.mean(first):.3f} → {statistics.mean(chosen):.3f}"
                          for term, (first, chosen) in values.items())
        rows.append(f"| {method} | {options} | {len(group) - left_out} | {cells} |")
    note = f" {skipped} runs without their chosen epoch in the history are left out." if skipped else ""
    return "\n".join(rows) + ("\n\nEach term as the method adds it to the objective (a loss-weighting method's "
                               "task losses weighted); weight/<task>: a gradient-weighting method's task weight, its "
                               "task losses unweighted. The chosen epoch is the one the run was selected at on "
                               f"validation.{note}\n")


def refresh(text: str, draw: bool = True) -> str:
    """``text`` with every generated block re-rendered (its figures drawn unless ``draw`` is False)."""
    return BLOCK.sub(lambda m: m.group(1) + render_block(m.group("command"), draw) + m.group(4), text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.docpage", description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="+", help="Markdown pages to refresh, e.g. docs/results.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is not up to date; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in args.page:
        path = Path(name)
        old = path.read_text()
        new = refresh(old, draw=not args.check)
        if new != old:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python -m reports.docpage {' '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
