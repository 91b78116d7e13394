"""Task Routing's shared BatchNorm statistics: a stored run scored with them and with statistics of its own task.

Task Routing (Strezoski, van Noord & Worring, ICCV 2019) trains one task a batch, through that task's channel
masks. The backbone's BatchNorm layers are shared, so their running statistics are an average over batches of
both tasks' routes, while at evaluation each task runs its own route: the statistics fit neither. This script
measures how much that costs a stored run. It scores the run on a split three ways:

- ``running``: as ``evaluate`` does (eval mode, the shared running statistics);
- ``per-task``: for each task, every BatchNorm's running statistics recomputed from the training split routed
  as that task (a cumulative average, weights untouched), then that task scored;
- ``batch``: each evaluation batch normalised with its own statistics (train-mode BatchNorm, nothing updated).

    python benchmarks/task_routing_bn.py --workdir W --run RUN_ID --data-root DIR [--split val]

The run's weights file must be in ``W/models`` (the sweep that trained it keeps it).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from benchmark.config import RunConfig
from benchmark.data import make_loader
from benchmark.evaluate import evaluate
from benchmark.linked import load_linked
from benchmark.stores import store_path
from datasets import DBS
from methods.base import MultiTaskModel
from results import ResultsStore

CPU = torch.device("cpu")


def norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def batch_statistics(model: MultiTaskModel) -> Iterator[None]:
    """Inside: ``model.eval()`` leaves BatchNorm in train mode with momentum 0 (each batch's own statistics,
    running ones unchanged)."""
    saved = model.eval
    momenta = {m: m.momentum for m in norms(model)}

    def eval_with_batch_statistics() -> MultiTaskModel:
        saved()
        for m in norms(model):
            m.train()
            m.momentum = 0.0
        return model

    model.eval = eval_with_batch_statistics  # type: ignore[method-assign]
    try:
        yield
    finally:
        model.eval = saved  # type: ignore[method-assign]
        for m, momentum in momenta.items():
            m.momentum = momentum


@torch.no_grad()
def recalibrated(model: MultiTaskModel, task: str, loader: torch.utils.data.DataLoader) -> MultiTaskModel:
    """A copy of ``model`` whose BatchNorm running statistics are those of ``task``'s route over ``loader``."""
    copy_ = copy.deepcopy(model)
    copy_.train()
    for m in norms(copy_):
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch
    for batch in loader:
        copy_(batch.inputs, [task])
    return copy_.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--run", required=True, help="run id of a completed task_routing run")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    args = parser.parse_args()
    torch.manual_seed(0)
    with ResultsStore(store_path(args.workdir)) as store:
        record = store.get(args.run)
    if record is None or record.status != "completed":
        raise SystemExit(f"no completed run {args.run} in {args.workdir}")
    cfg = RunConfig.from_dict(record.config)
    db = DBS.get(cfg.db)(data_root=args.data_root, **cfg.db_options)
    problem = db.problem(cfg.fold)
    model = load_linked("run", cfg, args.workdir, problem, CPU).model
    split = make_loader(db.split(args.split, cfg.fold, cfg.image_size), cfg.batch_size, train=False)
    train = make_loader(db.split("train", cfg.fold, cfg.image_size), cfg.batch_size, train=False)
    running = evaluate(model, split, problem, CPU)
    per_task = {t: evaluate(recalibrated(model, t, train), split, problem, CPU)[t] for t in model.tasks}
    with batch_statistics(model):
        batch = evaluate(model, split, problem, CPU)
    print(f"{cfg.describe()}: {len(norms(model))} BatchNorm layers; {args.split} split, primary metrics")
    print("| statistics | " + " | ".join(f"{t} {problem.task(t).primary}" for t in model.tasks) + " |")
    print("|---|" + "---|" * len(model.tasks))
    for name, scores in (("running (as evaluated)", running), ("per-task, recomputed", per_task),
                         ("each batch's own", batch)):
        print(f"| {name} | " + " | ".join(f"{scores[t][problem.task(t).primary]:.3f}" for t in model.tasks) + " |")


if __name__ == "__main__":
    main()
