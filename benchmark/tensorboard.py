"""TensorBoard logs of training, live (``run``/``sweep --tensorboard DIR``) or from stored histories
(``python -m benchmark tensorboard --out DIR``), in one layout: ``DIR/<run_id>/events.out.tfevents.*``,
viewed with ``tensorboard --logdir DIR``.

Scalars, with the epoch (0-based, as stored) as the step, from a run's per-epoch history entry:

- ``train_loss/<term>``: each loss term's mean over the epoch's steps, as the method returned them:
  the task losses and every other term (``coupling/dm``, ``coupling/sca``, ``distill/<task>``, ...);
- ``task_weight/<task>``: a gradient-weighting method's task weights, mean over the epoch's steps
  (the loop logs them with the losses as ``weight/<task>``);
- ``val/<task>/<metric>`` and ``val/score`` (the selection score: mean of the tasks' primary metrics);
- ``time/epoch_seconds``;
- ``test/<task>/<metric>`` at the chosen epoch: exported runs only (live, the runner tests after the loop).

A text entry ``run`` names the run (method, options, db, backbone, seed, fold, id). Where to log is
how a run executes here, not what it computes: it is not part of a run's identity.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.distributed import is_main_process

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from benchmark.config import RunConfig
    from results import RunRecord

log = logging.getLogger(__name__)

WEIGHT_PREFIX = "weight/"  # loss-like entries of the task weights in a history's train_loss
EVENT_GLOB = "events.out.tfevents.*"


def epoch_scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of one history entry (``{"epoch", "train_loss", "val", "val_score", "seconds"}``), by tag."""
    out: dict[str, float] = {}
    for term, value in entry.get("train_loss", {}).items():
        tag = f"task_weight/{term.removeprefix(WEIGHT_PREFIX)}" if term.startswith(WEIGHT_PREFIX) else f"train_loss/{term}"
        out[tag] = float(value)
    for task, metrics in (entry.get("val") or {}).items():
        out.update({f"val/{task}/{metric}": float(v) for metric, v in metrics.items()})
    if entry.get("val_score") is not None:
        out["val/score"] = float(entry["val_score"])
    if entry.get("seconds") is not None:
        out["time/epoch_seconds"] = float(entry["seconds"])
    return out


def run_text(run_id: str, config: Mapping[str, Any]) -> str:
    """The run in a few Markdown lines (TensorBoard's text tab)."""
    options = ", ".join(f"{k}={v}" for k, v in sorted(config.get("method_options", {}).items()))
    fold = config.get("fold")
    return (f"**{config.get('method')}**{f' [{options}]' if options else ''} on **{config.get('db')}**, "
            f"backbone {config.get('backbone')}, seed {config.get('seed')}{'' if fold is None else f', fold {fold}'}"
            f"  \nrun id `{run_id}`  \n\n    {json.dumps(dict(config), sort_keys=True, default=str)}")


def write_entry(writer: SummaryWriter, entry: Mapping[str, Any]) -> None:
    for tag, value in epoch_scalars(entry).items():
        writer.add_scalar(tag, value, int(entry["epoch"]))


class EpochLog:
    """One run's TensorBoard log, written as its epochs end (rank 0 only); closed after the last epoch.

    ``purge_step=start_epoch``: TensorBoard hides what an earlier session of this run logged from that
    epoch on (a resumed run continues its curves, a retrained one replaces them).
    """

    def __init__(self, folder: Path, run_id: str, config: Mapping[str, Any], start_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder), purge_step=start_epoch)
        if start_epoch == 0:
            self.writer.add_text("run", run_text(run_id, config), 0)

    def log_epoch(self, entry: Mapping[str, Any], last: bool = False) -> None:
        """Write epoch ``entry`` and flush it to disk (a run that dies later keeps its curves so far)."""
        write_entry(self.writer, entry)
        self.writer.flush()
        if last:
            self.writer.close()


def open_epoch_log(directory: str | None, cfg: RunConfig, start_epoch: int) -> EpochLog | None:
    """The live log of ``cfg`` under ``directory/<run_id>``; None without a directory, off rank 0, or with
    nothing left to train."""
    if directory is None or not is_main_process() or start_epoch >= cfg.epochs:
        return None
    return EpochLog(Path(directory) / cfg.run_id, cfg.run_id, cfg.to_dict(), start_epoch)


def export_runs(records: Iterable[RunRecord], out: str | Path, replace: bool = False) -> dict[str, int]:
    """Write stored runs' histories (and test metrics) in the live layout; counts of written/skipped runs.

    A run whose folder already holds event files is left alone unless ``replace`` (its files are then
    deleted first); a run without a per-epoch history has nothing to write.
    """
    from torch.utils.tensorboard import SummaryWriter

    counts = {"written": 0, "kept": 0, "no_history": 0}
    for record in records:
        if not record.history:
            counts["no_history"] += 1
            continue
        folder = Path(out) / record.run_id
        existing = sorted(folder.glob(EVENT_GLOB)) if folder.is_dir() else []
        if existing and not replace:
            counts["kept"] += 1
            continue
        for path in existing:
            path.unlink()
        with SummaryWriter(str(folder)) as writer:
            writer.add_text("run", run_text(record.run_id, record.config), 0)
            for entry in record.history:
                write_entry(writer, entry)
            if record.best_epoch is not None:
                for m in record.metrics:
                    if m.split == "test":
                        writer.add_scalar(f"test/{m.task}/{m.metric}", m.value, record.best_epoch)
        counts["written"] += 1
    return counts


def cmd_tensorboard(args: argparse.Namespace) -> int:
    """``python -m benchmark tensorboard``: export the stored runs' histories under ``--out``."""
    from benchmark.stores import every_record

    records = [r for r in every_record(args) if (not args.db or r.db in args.db)
               and (not args.method or r.method in args.method)]
    if not records:
        raise ValueError(f"no stored run{' of ' + ', '.join(args.db) if args.db else ''}"
                         f"{' with method ' + ', '.join(args.method) if args.method else ''} to export; "
                         f"'python -m benchmark results' lists the runs")
    counts = export_runs(records, args.out, args.replace)
    print(f"wrote {counts['written']} runs under {args.out}; kept {counts['kept']} already there (--replace rewrites "
          f"them); {counts['no_history']} without a per-epoch history. View: tensorboard --logdir {args.out}",
          file=sys.stderr)
    return 0
