"""Mixed precision: run identity, the grad scaler with methods that take gradients themselves, bf16 on CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.amp import MixedPrecision, resolve_precision
from benchmark.config import RunConfig
from benchmark.data import make_loader
from benchmark.options import resolve
from benchmark.runner import execute
from benchmark.train import TrainOptions, build_trainer, train_step
from datasets.synthetic import SyntheticDb
from methods import METHODS
from results import ResultsStore
from tests.conftest import TINY_DB, tiny_config
from tests.methods.tiny_mtl import representation_gradients

CPU = torch.device("cpu")
#: (method, options): MGDA-UB's l2 normaliser scaling the backbone's gradient is where an unscaled
#: gradient norm would show; GradNorm's weights learn from gradient norms.
SCALED = [("no_coupling", {}), ("dmsca", {}), ("mgda_ub", {}), ("mgda_ub", {"normalization": "l2", "scale_by_normalizer": True}),
          ("mgda_ub", {"normalization": "loss+", "batch_reduction": "sum"}), ("gradnorm", {}), ("task_routing", {})]


def test_amp_resolves_per_device():
    assert resolve_precision("off", CPU) == "fp32" and resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp16", CPU) == "fp16"
    with pytest.raises(ValueError, match="--amp 'half'"):
        resolve_precision("half", CPU)


def test_precision_is_part_of_the_identity_and_fp32_keeps_earlier_ids():
    fp32 = tiny_config("no_coupling")
    assert "precision" not in fp32.to_dict()  # ids of runs stored before the field existed are unchanged
    assert fp32.run_id == RunConfig.from_dict(fp32.to_dict()).run_id
    bf16 = dataclasses.replace(fp32, precision="bf16")
    assert bf16.to_dict()["precision"] == "bf16" and RunConfig.from_dict(bf16.to_dict()) == bf16
    assert bf16.run_id != fp32.run_id and bf16.protocol_id != fp32.protocol_id  # never paired with fp32 runs
    assert "bf16" in bf16.describe()


def _state_after_steps(name: str, options: dict, precision: MixedPrecision, db: SyntheticDb, steps: int = 2):
    cls = METHODS.get(name)
    options = cls.expand(resolve(cls, options), db.problem())[0]
    cfg = tiny_config(name, options)
    torch.manual_seed(0)
    tr = build_trainer(cfg, db.problem(), cls(**options), CPU, TrainOptions())
    tr.optimizer = torch.optim.SGD(tr.method.param_groups(tr.model), lr=0.1)  # a step proportional to the gradient
    tr.precision = precision
    loader = make_loader(db.split("train"), 32, train=False)
    for step, batch in zip(range(steps), loader):
        train_step(tr, batch, step, 0)
    return tr.model.state_dict() | {f"method.{k}": v for k, v in tr.method.state_dict().items()}


@pytest.mark.parametrize(("name", "options"), SCALED, ids=[f"{n}{o or ''}" for n, o in SCALED])
def test_the_grad_scaler_changes_no_update(name, options):
    """The fp16 path's loss scaling, forward kept in fp32: a power-of-two scale must leave every update as it is."""
    db = SyntheticDb(**TINY_DB)
    plain = _state_after_steps(name, options, MixedPrecision("fp32", CPU), db)
    scaling = MixedPrecision("fp16", CPU, autocast_forward=False)
    scaled = _state_after_steps(name, options, scaling, db)
    assert scaling.scaler.get_scale() == 2.0**16  # no overflow: both steps were taken with gradients × 65536
    for key, value in plain.items():
        torch.testing.assert_close(scaled[key], value, rtol=1e-5, atol=1e-7, msg=lambda m, k=key: f"{k}: {m}")


def test_an_overflowing_scale_skips_the_step_without_crashing():
    """GradNorm's gradient norms overflow at a scale of 2^127: the scaler skips the step and backs off."""
    db = SyntheticDb(**TINY_DB)
    initial = _state_after_steps("gradnorm", {}, MixedPrecision("fp32", CPU), db, steps=0)
    overflowing = MixedPrecision("fp16", CPU, autocast_forward=False)
    overflowing.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    after = _state_after_steps("gradnorm", {}, overflowing, db, steps=1)
    assert overflowing.scaler.get_scale() < 2.0**127
    parameters = [k for k, v in initial.items() if v.is_floating_point() and "running" not in k and "initial_loss" not in k]
    assert all(torch.equal(after[k], initial[k]) for k in parameters)


def test_mgda_ub_gives_equal_weights_for_non_finite_gradients():
    """An overflowed fp16 step reaches MGDA-UB's solver as inf; it weighs the tasks equally (the step is skipped)."""
    method = METHODS.get("mgda_ub")()
    grads = [torch.full((4, 3), float("inf")), torch.ones(4, 3)]
    weights = method.weighting(representation_gradients(grads, [1.0, 2.0]))
    assert weights.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_mixed_precision_run_on_cpu(precision, tmp_path):
    db = SyntheticDb(**TINY_DB)
    cfg = dataclasses.replace(tiny_config("mgda_ub", resolve(METHODS.get("mgda_ub"), {}), epochs=1), precision=precision)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        record = execute(cfg, db, store, CPU, progress=False)
    assert record.status == "completed" and record.config["precision"] == precision
    assert all(v == v for v in record.metric_values("test").values())  # no NaN
