"""The sub-commands behind ``python -m benchmark``; each takes the parsed arguments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchmark.stores import open_store
from results import RunRecord


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from benchmark.distributed import init_distributed, is_main_process, shutdown_distributed
    from benchmark.protocol import check_workers
    from benchmark.runner import execute
    from benchmark.train import TrainOptions

    check_workers(args.workers)
    device = init_distributed(args.device)  # under torchrun: join the process group, this process's GPU
    if not is_main_process():
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports
    options = TrainOptions(channels_last=args.channels_last, compile=args.compile, workers=args.workers,
                           sync_batchnorm=args.sync_batchnorm, tensorboard=args.tensorboard)
    try:
        planned = plan_runs(args, device)  # everything checked before the store is opened (or created)
        with open_store(args.workdir) as store, logging_redirect_tqdm():  # log lines above the progress bars
            for db, cfg in planned:
                record = execute(cfg, db, store, device, force=args.force, progress=not args.quiet,
                                 workdir=args.workdir, resume=args.resume, checkpoints=args.checkpoints,
                                 options=options, wait=args.wait)
                if is_main_process():
                    print(run_summary(record))
    finally:
        shutdown_distributed()
    return 0


def plan_runs(args: argparse.Namespace, device: Any) -> list[tuple[Any, Any]]:
    """(db, config) of every run ``run`` stands for, each checked: the protocol's numbers, the method's options,
    the db's files (every image decodes) and the pretrained weights; any problem raises before a store exists."""
    from benchmark.amp import resolve_precision
    from benchmark.pretrained import ensure_available
    from benchmark.runner import RunRequest, resolve_configs, verify_data

    planned, db = [], None
    for seed in args.seed:
        request = RunRequest(method=args.method, db=args.db, backbone=args.backbone, seed=seed, fold=args.fold,
                             epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             image_size=args.image_size, pretrained=args.pretrained,
                             method_set=args.method_set, db_set=args.db_set, data_root=args.data_root,
                             precision=resolve_precision(args.amp, device), attribute_loss=args.attribute_loss,
                             patience=args.patience)
        db, configs = resolve_configs(request, db)  # one db for every seed: its files are read and checked once
        planned += [(db, cfg) for cfg in configs]
    for size in dict.fromkeys(cfg.image_size for _, cfg in planned):
        verify_data(db, size, progress=not args.quiet)
    for pretrained in dict.fromkeys(cfg.pretrained for _, cfg in planned if cfg.pretrained):
        ensure_available(pretrained)
    return planned


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmark.bench import run_bench  # timing lives in benchmark/bench.py

    print(run_bench(args))
    return 0


def run_summary(record: RunRecord) -> str:
    """The per-task test (and validation) metrics of one run, as a small table."""
    test, val = record.metric_values("test"), record.metric_values("val")
    rows = [[task, metric, f"{value:.4f}", f"{val.get((task, metric), float('nan')):.4f}"]
            for (task, metric), value in test.items()]
    opts = ", ".join(f"{k}={v}" for k, v in sorted(record.method_options.items()))
    head = (f"run {record.run_id}  {record.method}{f' [{opts}]' if opts else ''}  db={record.db}  "
            f"backbone={record.backbone}  seed={record.seed}  best epoch={record.best_epoch}  "
            f"wall={record.wall_time_s or 0:.1f}s" + (f" ({record.total_wall_time_s or 0:.1f}s with linked runs "
                                                      f"{', '.join(record.linked_run_ids.values())})" if record.links else ""))
    return head + "\n" + tabulate(rows, headers=["task", "metric", "test", "val"], tablefmt="github") + "\n"


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "backbones":
        from benchmark.backbones import BUILTIN_BACKBONES, list_backbones

        rows = [[name, "builtin" if name in BUILTIN_BACKBONES else "timm", desc] for name, desc in list_backbones(args.pattern)]
        if not args.pattern:
            rows.append(["<any timm model>", "timm", "use --pattern GLOB to list timm's models, e.g. --pattern 'resnet*'"])
    else:
        if args.what == "methods":
            from methods import METHODS as registry
        else:
            from datasets import DBS as registry
        rows = [[e.name, e.source, e.description] for e in registry.entries()]
    print(tabulate(rows, headers=["name", "source", "description"], tablefmt="github"))
    return 0


RESULT_COLUMNS = ["run_id", "status", "method", "options", "db", "backbone", "seed", "fold", "epochs",
                  "best_epoch", "test_primary", "wall_s", "total_wall_s", "started_at", "error"]


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


def cmd_results(args: argparse.Namespace) -> int:
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmark.sweep import cmd_sweep as sweep  # experiment files, planning and executors: benchmark/sweep*.py

    return sweep(args)


def cmd_report(args: argparse.Namespace) -> int:
    if args.format == "html":  # one page with every table and figure: benchmark/html_report.py
        from benchmark.html_report import write_page

        return write_page(args)
    from benchmark.reporting import cmd_report as report  # tables and figures live in benchmark/reporting.py

    return report(args)


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from benchmark.tensorboard import cmd_tensorboard as export  # TensorBoard logs live in benchmark/tensorboard.py

    return export(args)


def cmd_export(args: argparse.Namespace) -> int:
    with open_store(args.workdir, create=False) as store:
        records = store.runs(db=args.db, method=args.method, status=args.status)
        if args.file == "-":
            count = store.export_jsonl(sys.stdout, records)
        else:
            with open(args.file, "w") as out:
                count = store.export_jsonl(out, records)
    print(f"exported {count} runs", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a file written by 'python -m benchmark export'")
    with open_store(args.workdir) as store, path.open() as lines:
        written, kept = store.import_jsonl(lines, replace=args.replace)
    print(f"imported {written} runs; kept {kept} already completed here (use --replace to overwrite)")
    return 0


def cmd_relatedness(args: argparse.Namespace) -> int:
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
