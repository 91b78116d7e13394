"""``python -m benchmark``: run, ls, results, report, export, import."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.options import OptionError
from benchmark.config import ATTRIBUTE_LOSSES
from benchmark.registry import RegistryError
from benchmark.runlock import RunInProgressError
from results import StoreError

log = logging.getLogger("benchmark")
DEFAULT_WORKDIR = "mtlbench-work"
#: ``report --layout`` values (reports.LAYOUTS, spelled out so the parser needs no plotting imports).
REPORT_LAYOUTS = ["negative-transfer", "table2", "table3", "table4", "table5"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="folder of the results store (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors, no progress bars")


def _execution(parser: argparse.ArgumentParser) -> None:
    """How training executes here (``benchmark/train.py``'s TrainOptions, and --amp)."""
    parser.add_argument("--amp", choices=["off", "auto", "bf16", "fp16"], default="off",
                        help="mixed precision: auto = bf16 on GPUs that have it, else fp16 with a grad scaler; off on "
                             "CPU. Part of the run's identity (default: %(default)s)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format (GPU convolutions)")
    parser.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                        help="torch.compile the network (backend default: inductor)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: sized to the machine; 0 for "
                        "in-memory dbs)")


def _tensorboard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tensorboard", metavar="DIR", help="also log each epoch's loss terms, validation metrics "
                        "and task weights to TensorBoard under DIR/RUN_ID (not part of a run's identity)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, select on validation, test once, store the run")
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
    run.add_argument("--db-set", action="append", default=[], metavar="KEY=VALUE",
                     help="db option (repeatable), e.g. --db-set overlap=0.2")
    run.add_argument("--data-root", help="folder of the db's files (file-based dbs)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
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
    _tensorboard(run)
    _execution(run)
    _common(run)

    bench = sub.add_parser("bench", help="images/s of methods on one backbone, batch size and device; data vs compute")
    bench.add_argument("--backbone", default="smallcnn", help="(default: %(default)s)")
    bench.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    bench.add_argument("--image-size", type=int, default=64, help="(default: %(default)s)")
    bench.add_argument("--methods", nargs="+", metavar="NAME[:KEY=VALUE,...]",
                       help="methods, e.g. adashare:phase=search (default: every registered method)")
    bench.add_argument("--db", default="synthetic", help="db whose training split is loaded (default: %(default)s)")
    bench.add_argument("--db-set", action="append", default=[], metavar="KEY=VALUE", help="db option (repeatable)")
    bench.add_argument("--data-root", help="folder of the db's files (file-based dbs)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    bench.add_argument("--steps", type=int, default=20, help="timed steps per method (default: %(default)s)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: %(default)s)")
    bench.add_argument("--rounds", type=int, default=5, help="turns the timed steps are split into, across "
                       "the methods (default: %(default)s)")
    bench.add_argument("--quiet", action="store_true", help="only warnings and errors")
    _execution(bench)

    ls = sub.add_parser("ls", help="list methods, dbs or backbones")
    ls.add_argument("what", choices=["methods", "dbs", "backbones"])
    ls.add_argument("--pattern", help="backbones: list every timm model matching this glob, e.g. 'resnet*'")

    res = sub.add_parser("results", help="list stored runs")
    res.add_argument("--db")
    res.add_argument("--method")
    res.add_argument("--status", choices=["running", "completed", "failed"])
    res.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="table: rounded, a failure's one-line cause; csv/json: full precision, whole errors")
    res.add_argument("--full", action="store_true", help="table: also print each failed run's whole error and "
                     "traceback below it")
    _common(res)

    rep = sub.add_parser("report", help="negative-transfer and paper tables, figures, from stored runs (never trains)")
    rep.add_argument("--db", nargs="+", help="one or more dbs (default: every db in the store)")
    rep.add_argument("--backbone", help="only runs with this backbone")
    rep.add_argument("--layout", choices=REPORT_LAYOUTS, default="negative-transfer", help="default: %(default)s")
    rep.add_argument("--format", choices=["markdown", "latex", "csv", "json", "html"], default="markdown",
                     help="html: one self-contained page of every table and figure, written to --out DIR/index.html "
                          "(default WORKDIR/report/)")
    rep.add_argument("--out", metavar="DIR", help="also write the table (and --figures) into DIR")
    rep.add_argument("--spread", choices=["std", "sem", "half_range"], default="std", help="± convention")
    rep.add_argument("--test", choices=["ttest", "wilcoxon"], default="ttest", help="paired test vs single-task")
    rep.add_argument("--alpha", type=float, default=0.05, help="level of the significance marker")
    rep.add_argument("--per-run", action="store_true", help="negative-transfer rows per run, not per method")
    rep.add_argument("--figures", action="store_true", help="also draw figures (PNG + PDF; --out or WORKDIR/figures)")
    rep.add_argument("--curves", nargs="+", metavar="RUN_ID", help="runs (id prefixes) for the training curves")
    rep.add_argument("--data-root", help="where a file-based db's files are (relatedness heat maps)")
    rep.add_argument("--runs", nargs="+", metavar="FILE.jsonl", help="read runs from these JSON-lines exports "
                     "(e.g. results/reference/*.jsonl) instead of the store in --workdir")
    _common(rep)

    rel = sub.add_parser("relatedness", help="print a db's p(attribute | class) and write it as CSV and a heat map")
    rel.add_argument("--db", required=True)
    rel.add_argument("--source", default="auto", help="auto, domain, db (counted on the training split), a named "
                     "prior of the db, or a CSV path (default: %(default)s)")
    rel.add_argument("--db-set", action="append", default=[], metavar="KEY=VALUE", help="db option (repeatable)")
    rel.add_argument("--data-root", help="folder of the db's files (file-based dbs)")
    rel.add_argument("--fold", type=int, help="cross-validation fold whose training split is counted (default 0)")
    rel.add_argument("--out", default=".", metavar="DIR", help="where the CSV and PNG go (default: %(default)s)")

    sw = sub.add_parser("sweep", help="run an experiment file's grid, dependencies first, skipping completed runs")
    sw.add_argument("file", help="experiment file (TOML), e.g. experiments/cpu_small.toml")
    sw.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local processes, or Ray tasks (default: %(default)s)")
    sw.add_argument("--jobs", type=int, default=1, help="local: runs at a time, each in its own process (default: 1)")
    sw.add_argument("--address", help="ray: the cluster to join (default: start Ray on this machine)")
    sw.add_argument("--dry-run", action="store_true", help="print the expanded grid and what would run; train nothing")
    sw.add_argument("--data-root", action="append", default=[], metavar="DB=DIR",
                    help="data root of a db, over the file's data_root (repeatable)")
    sw.add_argument("--device", default="auto", help="local: auto, cpu, cuda or cuda:N (default: %(default)s)")
    sw.add_argument("--force", action="store_true", help="train the grid's runs again even if completed")
    sw.add_argument("--methods", nargs="+", metavar="NAME", help="only the file's method entries of these names "
                    "(their dependencies too); a later full sweep skips what completed")
    _tensorboard(sw)
    _common(sw)

    tb = sub.add_parser("tensorboard", help="write stored runs' per-epoch histories as TensorBoard logs")
    tb.add_argument("--out", required=True, metavar="DIR", help="log folder: one sub-folder per run id "
                    "(the layout of run/sweep --tensorboard; view with 'tensorboard --logdir DIR')")
    tb.add_argument("--db", nargs="+", help="only runs of these dbs")
    tb.add_argument("--method", nargs="+", help="only runs of these methods")
    tb.add_argument("--runs", nargs="+", metavar="FILE.jsonl", help="read runs from these JSON-lines exports "
                    "instead of the store in --workdir")
    tb.add_argument("--replace", action="store_true", help="rewrite a run whose sub-folder already holds logs "
                    "(default: leave it)")
    _common(tb)

    exp = sub.add_parser("export", help="write stored runs as JSON lines")
    exp.add_argument("file", help="output .jsonl file ('-' for stdout)")
    exp.add_argument("--db")
    exp.add_argument("--method")
    exp.add_argument("--status", choices=["running", "completed", "failed"],
                     help="only runs with this status (e.g. completed, for committed reference results)")
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
    except (RegistryError, OptionError, StoreError, ValueError, FileNotFoundError, RunInProgressError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # bad input, broken data, a run busy elsewhere: nothing was stored
        return 2
    except FloatingPointError as exc:
        print(f"error: the run stopped and is stored as failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: the run is stored as failed; completed runs are intact", file=sys.stderr)
        return 130
