"""The speed path on CPU: channels-last, torch.compile, workers sized to the machine, sharded sampling, ``bench``."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from benchmark.cli import main
from benchmark.data import MAX_WORKERS, default_workers
from benchmark.distributed import ShardedSampler
from benchmark.options import resolve
from benchmark.train import TrainOptions, train
from datasets.base import TaskDataset
from datasets.synthetic import SyntheticDb
from methods import METHODS
from tests.conftest import TINY_DB, tiny_config

CPU = torch.device("cpu")


def _train(name: str, options: TrainOptions, **method_options):
    db = SyntheticDb(**TINY_DB)
    cls = METHODS.get(name)
    cfg = tiny_config(name, cls.expand(resolve(cls, method_options), db.problem())[0], epochs=1)
    return train(cfg, db, cls(**cfg.method_options), CPU, progress=False, options=options)


@pytest.mark.parametrize("options", [TrainOptions(channels_last=True), TrainOptions(compile="aot_eager")],
                         ids=["channels_last", "compile"])
def test_speed_options_train_the_same_network(options):
    """Same computation, other memory layout or compiled kernels: the weights agree to float tolerance (MGDA-UB
    takes gradients with respect to z, which a compiled backbone must still hand to the heads)."""
    plain, fast = _train("mgda_ub", TrainOptions()), _train("mgda_ub", options)
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(fast.model.state_dict()[key], value, rtol=1e-3, atol=1e-4)  # Adam: 4 steps of 1e-3
    if options.channels_last:
        assert fast.model.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_gradnorm_under_compile_asks_for_its_layer():
    with pytest.raises(ValueError, match="layer='NAME'"):
        _train("gradnorm", TrainOptions(compile="aot_eager"))
    assert _train("gradnorm", TrainOptions(compile="aot_eager"), layer="backbone.features.12").history


class _Files(TaskDataset):
    """A dataset that loads inputs per item, as file-based dbs do."""

    def load_input(self, index: int) -> torch.Tensor:
        return torch.zeros(3, 4, 4)


def test_workers_are_sized_to_the_machine(monkeypatch, tiny_db):
    assert default_workers(tiny_db.split("train")) == 0  # in-memory tensors: no worker processes
    files = _Files({"t": torch.zeros(4, dtype=torch.long)}, {"t": torch.ones(4, dtype=torch.bool)})
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers(files) == MAX_WORKERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun: 8 processes share the node's 64 CPUs
    assert default_workers(files) == 7
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert default_workers(files) == 1


def test_shards_of_the_order_make_the_global_batches_of_one_process():
    def order(seed: int) -> RandomSampler:
        return RandomSampler(range(23), generator=torch.Generator().manual_seed(seed))

    alone = list(BatchSampler(order(5), 6, drop_last=False))
    shards = [list(BatchSampler(ShardedSampler(order(5), rank, 3), 2, drop_last=False)) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(alone)  # same number of steps everywhere
    for step, batch in enumerate(alone):
        together = [i for shard in shards for i in shard[step]]
        assert set(batch) <= set(together) and len(together) - len(batch) <= 2  # the last pads with a wrap-around


def test_bench_prints_one_table(capsys):
    code = main(["bench", "--methods", "no_coupling", "mgda_ub", "adashare", "--backbone", "smallcnn", "--batch-size", "8",
                 "--image-size", "16", "--steps", "2", "--warmup", "1", "--device", "cpu", "--db-set", "n_train=40",
                 "--db-set", "n_val=8", "--db-set", "n_test=8", "--db-set", "image_size=16"])
    out = capsys.readouterr().out
    assert code == 0 and "backbone=smallcnn batch=8 image=16px device=cpu precision=fp32" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert float(rows["no_coupling"].split("|")[2]) > 0 and rows["no_coupling"].split("|")[3].strip() == "1.00"
    assert float(rows["mgda_ub"].split("|")[2]) > 0 and "needs one of the backbones" in rows["adashare"]


def test_bench_rotates_which_method_steps_first_each_round():
    from benchmark.bench import round_orders

    orders = round_orders(3, 4)
    assert orders == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert all(sorted(o) == [0, 1, 2] for o in orders)  # every method steps once per round
    assert round_orders(0, 2) == [[], []]
