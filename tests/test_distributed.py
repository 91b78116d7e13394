"""Several processes (torchrun): 2 gloo processes on CPU train as one process on the whole batch does.

The networks here have no BatchNorm: BatchNorm normalises each process's shard with the shard's own
statistics, which differ from the whole batch's (real multi-GPU runs convert it to SyncBatchNorm,
which needs GPUs), so only a BN-free network can match one process to float tolerance.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from benchmark.amp import MixedPrecision
from benchmark.backbones import BUILTIN_BACKBONES, create_heads
from benchmark.options import resolve
from benchmark.tasks import Batch, Problem
from benchmark.train import Trainer, train_step
from methods import METHODS
from tests.conftest import TINY_DB, tiny_config

WORLD = 2
CPU = torch.device("cpu")
#: The gradient methods, and two whose losses or forward differ per batch: Task Routing draws one task per
#: batch, the student's teachers label what each shard lacks.
METHODS_UNDER_TEST = ["no_coupling", "dmsca", "mgda_ub", "gradnorm", "task_routing", "student_teacher",
                      # the method zoo: TorchJD weightings (PCGrad's seeded order, Nash-MTL's state), loss weighting
                      "upgrad", "pcgrad", "cagrad", "nash_mtl", "imtl_g", "aligned_mtl", "dualproj", "mgda",
                      "uw", "dwa", "rlw", "famo",
                      # the engine's shared-parameter form: Σ_t w_t of this process's rows, then averaged
                      "upgrad:gradients=shared_parameters"]


class NoNormCNN(nn.Module):
    """Two conv-ReLU stages and average pooling, no BatchNorm; 16-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.num_features = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


def _problem() -> Problem:
    from datasets.synthetic import SyntheticDb

    return SyntheticDb(**TINY_DB).problem()  # 6 classes, 8 attributes, a "domain" relatedness for dmsca


def _batches(problem: Problem, steps: int = 2, size: int = 16) -> list[Batch]:
    """Batches whose halves annotate differently: the second half has no class label at all, and a
    third of its attribute entries; so per-process means differ from the global batch's."""
    gen = torch.Generator().manual_seed(1)
    n_classes, n_attributes = (t.num_outputs for t in problem.tasks)
    out = []
    for _ in range(steps):
        classes = torch.randint(n_classes, (size,), generator=gen)
        classes[size // 2:] = -1
        attributes = torch.randint(0, 2, (size, n_attributes), generator=gen).float()
        masks = torch.rand(size, n_attributes, generator=gen) < torch.linspace(1.0, 0.3, size)[:, None]
        out.append(Batch(torch.randn(size, 3, 16, 16, generator=gen), {"classes": classes, "attributes": attributes},
                         {"classes": classes >= 0, "attributes": masks}, torch.arange(size)))
    return out


def _shard(batch: Batch, rank: int) -> Batch:
    rows = slice(rank * len(batch) // WORLD, (rank + 1) * len(batch) // WORLD)
    return Batch(batch.inputs[rows], {k: v[rows] for k, v in batch.targets.items()},
                 {k: v[rows] for k, v in batch.masks.items()}, batch.index[rows])


def _trained_state(name: str, problem: Problem, batches: list[Batch], rank: int | None) -> dict[str, torch.Tensor]:
    """Network and method state after a step per batch (the whole batch, or ``rank``'s half); plain SGD,
    whose update is proportional to the gradient (Adam's first step is not: it only sees its sign)."""
    from benchmark.bench import untrained_links

    method_name, _, setting = name.partition(":")  # "NAME" or "NAME:OPTION=VALUE"
    cls = METHODS.get(method_name)
    overrides = dict([setting.split("=", 1)]) if setting else {}
    options = cls.expand(resolve(cls, overrides), problem)[0]
    method = cls(**options)
    torch.manual_seed(0)
    for role, run in untrained_links(tiny_config(method_name, options), problem, CPU).items():  # the student's teachers
        method.attach(role, run)
    model = method.build(NoNormCNN(), create_heads(problem.tasks, 16), problem)
    optimizer = torch.optim.SGD(method.param_groups(model), lr=0.5)
    tr = Trainer(model, method, optimizer, problem, CPU, MixedPrecision("fp32", CPU))
    for step, batch in enumerate(batches):
        train_step(tr, batch if rank is None else _shard(batch, rank), step, 0)
    return {f"model.{k}": v.clone() for k, v in model.state_dict().items()} | {
        f"method.{k}": v.clone() for k, v in method.state_dict().items()}


def _worker(rank: int, folder: str) -> None:
    """One of two gloo processes: the steps of each gradient method on its half batches, then a whole run."""
    from benchmark.runner import execute
    from datasets.synthetic import SyntheticDb
    from results import ResultsStore

    BUILTIN_BACKBONES["nonorm"] = (NoNormCNN, "test backbone without BatchNorm")
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        problem = _problem()
        states = {name: _trained_state(name, problem, _batches(problem), rank) for name in METHODS_UNDER_TEST}
        torch.save(states, f"{folder}/rank{rank}.pt")
        with ResultsStore(Path(folder) / "work" / "results.sqlite") as store:
            execute(tiny_config("no_coupling", backbone="nonorm"), SyntheticDb(**TINY_DB), store, CPU, progress=False,
                    workdir=Path(folder) / "work", checkpoints="keep")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """A folder with what two spawned gloo processes left: their states after the steps, a run's store and checkpoint."""
    # Starting two gloo processes can fail for reasons outside the code under test (a rendezvous on
    # a loaded machine); one retry in a fresh folder keeps that from failing the suite, while a
    # failure of the computation itself fails both attempts and is raised.
    for attempt in (1, 2):
        folder = tmp_path_factory.mktemp("distributed")
        try:
            mp.spawn(_worker, args=(str(folder),), nprocs=WORLD)
            return folder
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            if attempt == 2:
                raise
            warnings.warn(f"two-process start failed once, retrying: {exc}")
    raise AssertionError("unreachable")


def test_two_processes_on_half_batches_step_like_one_process_on_the_whole_batch(two_processes):
    problem = _problem()
    ranks = [torch.load(two_processes / f"rank{r}.pt") for r in range(WORLD)]
    for name in METHODS_UNDER_TEST:
        alone = _trained_state(name, problem, _batches(problem), None)
        initial = _trained_state(name, problem, [], None)
        assert any(not torch.equal(alone[k], initial[k]) for k in alone), f"{name}: the steps changed nothing"
        for key, value in alone.items():
            assert torch.equal(ranks[0][name][key], ranks[1][name][key]), f"{name}: processes disagree on {key}"
            torch.testing.assert_close(ranks[0][name][key], value, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, k=key, n=name: f"{n}: {k} differs from one process: {m}")


def test_a_run_on_two_processes_sees_the_global_batches_of_one_process(two_processes, tmp_path, monkeypatch):
    from benchmark.checkpoint import checkpoint_path
    from benchmark.train import train
    from datasets.synthetic import SyntheticDb
    from results import ResultsStore

    monkeypatch.setitem(BUILTIN_BACKBONES, "nonorm", (NoNormCNN, "test backbone without BatchNorm"))
    cfg = tiny_config("no_coupling", backbone="nonorm")
    with ResultsStore(two_processes / "work" / "results.sqlite") as store:
        (record,) = store.runs()
    assert record.status == "completed" and record.environment["execution"]["processes"] == WORLD
    alone = train(cfg, SyntheticDb(**TINY_DB), METHODS.get("no_coupling")(), CPU, progress=False,
                  checkpoint=tmp_path / "alone.pt")
    two, one = (torch.load(p, weights_only=True) for p in (checkpoint_path(two_processes / "work", cfg.run_id),
                                                             tmp_path / "alone.pt"))
    assert len(two["rng"]) == WORLD and len(one["rng"]) == 1  # each process's RNG state, for an exact resume
    for key, value in one["model"].items():  # the last epoch's weights
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5)
    assert [h["epoch"] for h in record.history] == [0, 1] and record.best_epoch == alone.best_epoch
    for ours, theirs in zip(record.history, alone.history):
        assert ours["val_score"] == pytest.approx(theirs["val_score"], abs=1e-6)
        for name, loss in theirs["train_loss"].items():
            assert ours["train_loss"][name] == pytest.approx(loss, rel=1e-4)


def test_task_routing_masks_after_syncbatchnorm_as_after_batchnorm():
    """Multi-GPU runs convert BatchNorm to SyncBatchNorm before the method builds: the masks must still follow it."""
    from benchmark.backbones import create_backbone
    from methods.task_routing import mask_sites

    plain, _ = create_backbone("smallcnn")
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(create_backbone("smallcnn")[0])
    assert [type(m) for m, _ in mask_sites(plain)] == [nn.BatchNorm2d] * 4
    assert [type(m) for m, _ in mask_sites(synced)] == [nn.SyncBatchNorm] * 4
