"""``results``, ``export``, ``import``: list the stored runs, write them as JSON lines, merge such a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tabulate import tabulate

from benchmark.cli.arguments import add_run_filters, add_store
from benchmark.cli.command import Command
from benchmark.stores import open_store
from results import ResultsStore, RunRecord

RESULT_COLUMNS = ["run_id", "status", "method", "options", "db", "backbone", "seed", "fold", "epochs",
                  "best_epoch", "test_primary", "wall_s", "total_wall_s", "started_at", "error"]


def add_results_arguments(res: argparse.ArgumentParser) -> None:
    """Filters, then the output format."""
    add_run_filters(res)
    res.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="table: rounded, a failure's one-line cause; csv/json: full precision, whole errors")
    res.add_argument("--full", action="store_true", help="table: also print each failed run's whole error and "
                     "traceback below it")
    add_store(res)


def handle_results(args: argparse.Namespace) -> int:
    """Print the matching runs as a table, CSV or JSON; say what the store holds when nothing matches."""
    with open_store(args.workdir, create=False) as store:  # reading never creates a store
        records = store.runs(db=args.db, method=args.method, status=args.status)
        stored = store.runs() if not records else records
    rows = [result_row(r, precise=args.format != "table") for r in records]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows({**r, "test_primary": json.dumps(r["test_primary"])} for r in rows)
    elif not rows:
        print(f"no stored runs match{no_match_hint(args, stored)}")
    else:
        table = [[r[c] if c != "test_primary" else " ".join(f"{k}={v}" for k, v in r[c].items()) for c in RESULT_COLUMNS]
                 for r in rows]
        print(tabulate(table, headers=RESULT_COLUMNS, tablefmt="github"))
        failed = [r for r in records if r.error]
        if args.full:
            for r in failed:
                print(f"\n--- run {r.run_id} ({r.method} on {r.db}, seed {r.seed}): {r.status}\n{r.error.rstrip()}")
        elif failed:
            print(f"\n{len(failed)} run(s) with an error: the cause is shown; 'results --full' (or --format json) "
                  f"prints each whole error with its traceback", file=sys.stderr)
    return 0


def result_row(r: RunRecord, precise: bool = False) -> dict:
    """One run as a row of ``results``: rounded with a failure's one-line cause, or (``precise``) every number in
    full and the whole stored error (cause, then traceback)."""
    def rounded(value: float | None, digits: int) -> float | None:
        return value if precise or value is None else round(value, digits)

    primary = {f"{m.task}:{m.metric}": rounded(m.value, 4) for m in r.metrics if m.split == "test" and m.primary}
    return {"run_id": r.run_id, "status": r.status, "method": r.method,
            "options": ", ".join(f"{k}={v}" for k, v in sorted(r.method_options.items())), "db": r.db,
            "backbone": r.backbone, "seed": r.seed, "fold": r.fold, "epochs": r.config.get("epochs"),
            "best_epoch": r.best_epoch, "test_primary": primary,
            "wall_s": rounded(r.wall_time_s, 1),
            "total_wall_s": rounded(r.total_wall_time_s, 1),  # + linked runs
            "started_at": r.started_at,
            "error": r.error if precise else r.cause}


def no_match_hint(args: argparse.Namespace, stored: list[RunRecord]) -> str:
    """What the store does hold, for a filter that matched nothing (``--db cadd``: the dbs there are)."""
    import difflib

    if not stored:
        return f" (the store in {args.workdir} is empty)"
    hints = []
    for flag, value, have in (("--db", args.db, {r.db for r in stored}), ("--method", args.method, {r.method for r in stored})):
        if value is not None and value not in have:
            close = difflib.get_close_matches(value, sorted(have), n=3, cutoff=0.6)
            hints.append(f"{flag} {value}: {f'did you mean {close[0]}? ' if close else ''}stored: {', '.join(sorted(have))}")
    return f" ({'; '.join(hints)})" if hints else ""


def add_export_arguments(exp: argparse.ArgumentParser) -> None:
    """The output file and which runs go into it."""
    exp.add_argument("file", help="output .jsonl file ('-' for stdout)")
    add_run_filters(exp, status_help="only runs with this status (e.g. completed, for committed reference results)")
    exp.add_argument("--experiment", metavar="FILE.toml", help="only the runs of this experiment file's grid, as "
                     "'sweep' plans it, and the runs they build on (teachers, AdaShare's search): one export per "
                     "experiment from a work dir that holds several")
    exp.add_argument("--data-root", action="append", default=[], metavar="DB=DIR",
                     help="with --experiment: data root of a db, as given to 'sweep' (repeatable)")
    add_store(exp)


def experiment_runs(grid: dict[str, str], records: list[RunRecord]) -> list[RunRecord]:
    """The ``records`` that the experiment's ``grid`` (:func:`grid_runs`) asks for, and (from their stored links)
    those they built on."""
    by_id = {r.run_id: r for r in records}
    wanted = list(grid)
    chosen: set[str] = set()
    while wanted:
        run_id = wanted.pop()
        if run_id in chosen or run_id not in by_id:
            continue
        chosen.add(run_id)
        wanted.extend(by_id[run_id].linked_run_ids.values())
    return [r for r in records if r.run_id in chosen]


def grid_runs(path: str, data_roots: list[str]) -> dict[str, str]:
    """The runs of the experiment file's grid, as ``sweep`` plans them: run id -> the run in one short line."""
    from benchmark.experiment import load
    from benchmark.grid import expand
    from benchmark.sweep import parse_data_roots, short

    return {run.cfg.run_id: short(run.cfg) for run in expand(load(path), parse_data_roots(data_roots))}


def left_out(wanted: dict[str, str | None], exported: set[str], store: ResultsStore) -> list[str]:
    """One line per id of ``wanted`` (id -> the run in words, if known) that the export does not hold: the run,
    and its status in the store (a completed run retrained for its weights reads ``running`` until it completes
    again)."""
    from benchmark.config import RunConfig

    lines = []
    for run_id, words in wanted.items():
        if run_id in exported:
            continue
        r = store.get(run_id)
        if words is None and r is not None:
            words = RunConfig.from_dict(r.config).describe()
        lines.append(f"{run_id[:12]}{f' {words}' if words else ''}: {r.status if r else 'not in the store'}")
    return lines


def previous_run_ids(path: Path) -> set[str]:
    """The run ids an earlier export at ``path`` held (empty when there is none or it is not an export)."""
    ids = set()
    try:
        with path.open() as lines:
            for line in lines:
                try:
                    ids.add(json.loads(line)["run_id"])
                except (ValueError, KeyError, TypeError):
                    return set()
    except OSError:
        return set()
    return ids


def warn_about_gaps(args: argparse.Namespace, store: ResultsStore, exported: set[str], grid: dict[str, str] | None,
                    previous: set[str]) -> None:
    """Say on stderr which runs the export leaves out that a user would expect in it: runs of the experiment's
    ``grid`` that are not completed (or not stored), and runs the file held before that this export drops (a
    committed export overwritten while a teacher is retrained would otherwise lose it silently)."""
    shown = 5

    def report(what: str, lines: list[str], hint: str) -> None:
        if lines:
            more = f"\n  ... and {len(lines) - shown} more" if len(lines) > shown else ""
            print(f"warning: {len(lines)} {what}:\n  " + "\n  ".join(lines[:shown]) + more + f"\n  {hint}",
                  file=sys.stderr)

    if grid is not None:
        report(f"run(s) of {args.experiment}'s grid not in the export", left_out(grid, exported, store),
               "'sweep' trains them (an interrupted run resumes there); export again once they complete")
    dropped = dict.fromkeys(sorted(previous - exported))
    report(f"run(s) that {args.file} held before are not in it now", left_out(dropped, exported, store),
           "export again once they complete (for a file under git, 'git checkout' brings the old one back)")


def handle_export(args: argparse.Namespace) -> int:
    """Write the matching runs to ``args.file`` (or stdout), say how many, and warn about what it leaves out."""
    if args.data_root and not args.experiment:
        raise ValueError("--data-root only applies with --experiment FILE.toml (it resolves that file's grid)")
    previous = set() if args.file == "-" else previous_run_ids(Path(args.file))
    grid = grid_runs(args.experiment, args.data_root) if args.experiment else None
    with open_store(args.workdir, create=False) as store:
        records = store.runs(db=args.db, method=args.method, status=args.status)
        if grid is not None:
            records = experiment_runs(grid, records)
        if args.file == "-":
            count = store.export_jsonl(sys.stdout, records)
        else:
            with open(args.file, "w") as out:
                count = store.export_jsonl(out, records)
        print(f"exported {count} runs", file=sys.stderr)
        warn_about_gaps(args, store, {r.run_id for r in records}, grid, previous)
    return 0


def add_import_arguments(imp: argparse.ArgumentParser) -> None:
    """The JSON-lines file, and whether it overwrites completed runs."""
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="overwrite completed runs with the same id")
    add_store(imp)


def handle_import(args: argparse.Namespace) -> int:
    """Merge ``args.file`` into the store (created if missing) and say what was written and kept."""
    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a file written by 'python -m benchmark export'")
    with open_store(args.workdir) as store, path.open() as lines:
        written, kept = store.import_jsonl(lines, replace=args.replace)
    print(f"imported {written} runs; kept {kept} already completed here (use --replace to overwrite)")
    return 0


RESULTS = Command("results", "list stored runs", add_results_arguments, handle_results)
EXPORT = Command("export", "write stored runs as JSON lines", add_export_arguments, handle_export)
IMPORT = Command("import", "merge runs from a JSON-lines export", add_import_arguments, handle_import)
