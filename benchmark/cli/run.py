"""``run``: train, select on validation, test once, store the run."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from tabulate import tabulate

from benchmark.cli.arguments import add_db_options, add_device, add_execution, add_store, add_tensorboard
from benchmark.cli.command import Command
from benchmark.config import ATTRIBUTE_LOSSES
from benchmark.stores import open_store
from results import RunRecord


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The run's identity (method, db, backbone, protocol numbers, options), then how it trains."""
    run.add_argument("--method", required=True, help="registry name (see 'ls methods')")
    run.add_argument("--db", required=True, help="registry name (see 'ls dbs')")
    run.add_argument("--backbone", default="smallcnn", help="'smallcnn' or a timm model name (default: %(default)s)")
    run.add_argument("--pretrained", metavar="WEIGHTS", help="backbone weights: 'imagenet' (the packaged weights "
                     "where installed, else timm's default tag, downloaded and cached by timm), a timm tag "
                     "('a1_in1k'; or --backbone resnet50.a1_in1k), or a local weights file (default: from scratch)")
    run.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default: 0)")
    run.add_argument("--fold", type=int, help="cross-validation fold, for cross-validated dbs")
    run.add_argument("--epochs", type=int, help="default: the db's preset")
    run.add_argument("--batch-size", type=int, help="default: the db's preset")
    run.add_argument("--lr", type=float, help="Adam learning rate (default: the preset, 1e-3 as in the paper)")
    run.add_argument("--image-size", type=int, help="default: the db's preset")
    run.add_argument("--patience", type=int, metavar="EPOCHS", help="stop once this many epochs have passed "
                     "without a better validation score (part of the run's identity; default: train every epoch)")
    run.add_argument("--attribute-loss", choices=ATTRIBUTE_LOSSES, help="reduction of an attribute task's BCE: "
                     "per_image (the paper's Eq. 1: mean over each image's annotated attributes, then over images; "
                     "the default) or pooled (one mean over all annotated entries)")
    run.add_argument("--set", dest="method_set", action="append", default=[], metavar="KEY=VALUE",
                     help="method hyperparameter (repeatable), e.g. --set task=classes")
    add_db_options(run, example="--db-set overlap=0.2")
    add_device(run)
    run.add_argument("--force", action="store_true", help="train again even if an identical run completed")
    run.add_argument("--wait", action="store_true", help="when another process is training the same run, wait for "
                     "it and reuse its result (default: fail at once, exit code 2); a run is never trained twice at once")
    run.add_argument("--resume", action="store_true", help="continue an unfinished (killed, interrupted) run "
                     "from its last epoch's checkpoint")
    run.add_argument("--checkpoints", choices=["temporary", "keep", "off"], default="temporary",
                     help="checkpoint at each epoch's end in WORKDIR/checkpoints/, deleted when the run completes "
                          "(temporary), kept, or none (default: %(default)s)")
    run.add_argument("--no-sync-batchnorm", dest="sync_batchnorm", action="store_false",
                     help="under torchrun on GPUs, keep per-process BatchNorm statistics")
    add_tensorboard(run)
    add_execution(run)
    add_store(run)


def handle(args: argparse.Namespace) -> int:
    """Check every run ``args`` stands for, then train and store each, printing its metrics."""
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


COMMAND = Command("run", "train, select on validation, test once, store the run", add_arguments, handle)
