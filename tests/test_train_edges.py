"""The training loop's smaller promises, each checked directly (issue 18: train.py's mutation survivors).

What a run logs and reports about itself (the epoch line, the progress label, the per-epoch training loss
and time, the TensorBoard entries), how it builds its loaders (shuffled training split, unshuffled
evaluation splits, no shard when alone, the tasks a method reads), the network it builds (no SyncBatchNorm,
compile or channels-last unless asked), what it refuses (NaN losses, a representation weighting on a
network without one) and the defaults a caller relies on.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import time
from typing import Any

import pytest
import torch
from torch import nn

import benchmark.train as train_module
from benchmark.checkpoint import Progress
from benchmark.train import (NonFiniteLossError, TrainOptions, TrainResult, Trainer, build_trainer, check_finite,
                             epoch_line, run_label, train)
from methods import METHODS
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def run(tiny_db, method: str = "no_coupling", options: TrainOptions | None = None, **overrides: Any):
    cfg = tiny_config(method, **overrides)
    return train(cfg, tiny_db, METHODS.get(method)(), CPU, progress=False, options=options)


# ----- defaults a caller relies on ------------------------------------------------------------------
def test_defaults():
    options = TrainOptions()
    assert (options.channels_last, options.compile, options.workers, options.sync_batchnorm) == (False, None, None, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.channels_last = True  # type: ignore[misc]
    result = TrainResult(best_epoch=0, val={}, test={}, model=nn.Linear(1, 1))  # type: ignore[arg-type]
    assert result.earlier_seconds == 0.0 and result.resumed_from is None and result.history == []
    assert "model=" not in repr(result)  # the network is not printed with the result
    assert {f.name: f.default for f in dataclasses.fields(Trainer)}["label_smoothing"] == 0.0
    params = inspect.signature(train).parameters
    assert params["progress"].default is True and params["resume"].default is False


# ----- the per-epoch log -----------------------------------------------------------------------------
def test_epoch_line_names_the_last_epoch_and_whether_it_is_the_best(tiny_db):
    problem = tiny_db.problem()
    state = Progress()
    model = nn.Linear(1, 1)
    state.end_epoch(0, {"classes": 1.5}, {"classes": {"accuracy": 0.5}, "attributes": {"f1_mean": 0.7}}, problem,
                    2.0, model)
    state.end_epoch(1, {"classes": 1.25}, {"classes": {"accuracy": 0.25}, "attributes": {"f1_mean": 0.5}}, problem,
                    3.5, model)
    assert state.best_epoch == 0
    assert epoch_line(state, problem, 5) == ("epoch 1 (2/5): train loss classes 1.25 | val classes accuracy 0.2500, "
                                             "attributes f1_mean 0.5000 | score 0.3750 | 3.5s")
    state.end_epoch(2, {"classes": 1.0}, {"classes": {"accuracy": 0.9}, "attributes": {"f1_mean": 0.9}}, problem,
                    1.0, model)
    assert epoch_line(state, problem, 5).startswith("epoch 2 (3/5): ")
    assert epoch_line(state, problem, 5).endswith("score 0.9000 (best so far) | 1.0s")


@pytest.mark.parametrize("length", [23, 24, 25, 30])
def test_run_label_shortens_long_options_to_24_characters(monkeypatch, length):
    changed = "x" * length
    monkeypatch.setattr(train_module, "changed_options", lambda *a, **k: changed)
    label = run_label(tiny_config("dmsca", fold=3), METHODS.get("dmsca")())
    shown = changed if length <= 24 else "x" * 21 + "..."
    assert label == f"dmsca[{shown}] synthetic fold 3 seed 0"


@pytest.mark.parametrize("method", ["no_coupling", "task_routing"])
def test_training_losses_steps_times_and_log_lines_per_epoch(tiny_db, monkeypatch, caplog, method):
    """history's train_loss is each term's mean over the steps that computed it (Task Routing trains one task a
    batch); steps count on across epochs; an epoch's time is its own duration; rank 0 logs one line per epoch."""
    steps: list[int] = []
    per_epoch: dict[int, list[dict[str, float]]] = {}
    real_step = train_module.train_step

    def spy(tr, batch, step, epoch):
        losses = real_step(tr, batch, step, epoch)
        steps.append(step)
        per_epoch.setdefault(epoch, []).append({k: float(v.detach()) for k, v in losses.items()})
        return losses

    monkeypatch.setattr(train_module, "train_step", spy)
    caplog.set_level(logging.INFO, logger="benchmark.train")
    started = time.perf_counter()
    result = run(tiny_db, method, epochs=3)
    wall = time.perf_counter() - started
    assert steps == list(range(len(steps))) and len(per_epoch) == 3
    for entry in result.history:
        rows = per_epoch[entry["epoch"]]
        for name, value in entry["train_loss"].items():
            computed = [r[name] for r in rows if name in r]
            assert value == pytest.approx(sum(computed) / len(computed), rel=1e-9)
        if method == "task_routing":  # each batch trained one of the two tasks
            assert all(len(r) == 1 for r in rows) and len({name for r in rows for name in r}) == 2
        assert 0 < entry["seconds"] < wall
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(" (")[0] for line in lines] == ["epoch 0", "epoch 1", "epoch 2"]


def test_early_stopping_is_logged_once_and_ends_the_loop(tiny_db, monkeypatch, caplog):
    asked: list[int] = []
    monkeypatch.setattr(Progress, "out_of_patience", lambda self, patience: (asked.append(self.epoch), self.epoch >= 2)[1])
    caplog.set_level(logging.INFO, logger="benchmark.train")
    result = run(tiny_db, epochs=6, patience=1)
    assert [e["epoch"] for e in result.history] == [0, 1]
    assert sum("stopping early" in r.getMessage() for r in caplog.records) == 1
    assert asked == [0, 1, 2]  # asked before each epoch; the loop ends at the first yes


class Board:
    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def log_epoch(self, entry: dict, last: bool) -> None:
        self.calls.append((entry["epoch"], last))


def test_tensorboard_gets_each_epochs_entry_and_the_last_flag(tiny_db, monkeypatch):
    board = Board()
    monkeypatch.setattr(train_module, "open_epoch_log", lambda *a: board)
    run(tiny_db, epochs=3)
    assert board.calls == [(0, False), (1, False), (2, True)]


def test_progress_bars_only_when_asked_and_transient(tiny_db, monkeypatch, capsys):
    bars: list[dict] = []
    real = train_module.tqdm

    def spy(iterable, **kwargs):
        bars.append(kwargs)
        return real(iterable, **kwargs)

    monkeypatch.setattr(train_module, "tqdm", spy)
    run(tiny_db, epochs=1)
    assert bars and all(b["disable"] for b in bars)
    assert capsys.readouterr().err == ""
    bars.clear()
    cfg = tiny_config("no_coupling", epochs=1)
    train(cfg, tiny_db, METHODS.get("no_coupling")(), CPU, progress=True)
    assert bars and not any(b["disable"] for b in bars)
    assert all(b["leave"] is False and b["dynamic_ncols"] is True for b in bars)  # erased when done, fit the terminal
    assert "epoch 0" in capsys.readouterr().err


# ----- loaders ---------------------------------------------------------------------------------------
def loader_calls(tiny_db, monkeypatch, method: str = "no_coupling", methods: Any = None) -> list[dict]:
    calls: list[dict] = []
    real = train_module.make_loader

    def spy(data, batch_size, **kwargs):
        calls.append(kwargs)
        return real(data, batch_size, **kwargs)

    monkeypatch.setattr(train_module, "make_loader", spy)
    cfg = tiny_config(method, epochs=1)
    train(cfg, tiny_db, (methods or METHODS.get(method))(), CPU, progress=False)
    return calls


def test_the_training_loader_shuffles_and_the_evaluation_loaders_do_not(tiny_db, monkeypatch):
    train_call, val_call, test_call = loader_calls(tiny_db, monkeypatch)
    assert train_call["train"] is True and val_call["train"] is False and test_call["train"] is False
    assert all(c["pin_memory"] is False for c in (train_call, val_call, test_call))  # no GPU: nothing to pin for
    assert train_call["shard"] is None  # one process: the whole split
    assert train_call["keep_tasks"] == ["classes", "attributes"]  # images annotating neither task are left out


def test_a_method_that_reads_unannotated_images_gets_them(tiny_db, monkeypatch):
    class ReadsEverything(METHODS.get("no_coupling")):
        uses_unannotated_samples = True

    train_call = loader_calls(tiny_db, monkeypatch, methods=ReadsEverything)[0]
    assert train_call["keep_tasks"] is None


# ----- the network -----------------------------------------------------------------------------------
def trainer(tiny_db, method: str = "no_coupling", **options: Any) -> Trainer:
    return build_trainer(tiny_config(method), tiny_db.problem(), METHODS.get(method)(), CPU, TrainOptions(**options))


def first_conv(tr: Trainer) -> torch.Tensor:
    return next(m.weight for m in tr.model.modules() if isinstance(m, nn.Conv2d))


def test_the_network_is_built_as_asked(tiny_db, monkeypatch):
    plain = trainer(tiny_db)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in plain.model.modules())  # one CPU process: plain BN
    assert first_conv(plain).is_contiguous()
    assert getattr(plain.model.backbone, "_compiled_call_impl", None) is None
    fast = trainer(tiny_db, channels_last=True)
    assert first_conv(fast).is_contiguous(memory_format=torch.channels_last) and not first_conv(fast).is_contiguous()
    monkeypatch.setattr(torch._functorch.config, "donated_buffer", True)
    compiled = trainer(tiny_db, compile="eager")
    assert compiled.model.backbone._compiled_call_impl is not None
    assert torch._functorch.config.donated_buffer is False  # several backwards through one compiled graph


@pytest.mark.parametrize("channels_last", [False, True])
def test_inputs_reach_the_device_in_the_networks_memory_format(tiny_db, channels_last, monkeypatch):
    tr = trainer(tiny_db, channels_last=channels_last)
    batch = next(iter(tr.loader(tiny_db.split("train", None, 16), 8, train=False)))
    seen: list[dict] = []
    real_to = type(batch).to
    monkeypatch.setattr(type(batch), "to", lambda self, device, **kw: (seen.append(kw), real_to(self, device, **kw))[1])
    images = tr.on_device(batch).inputs
    assert seen == [{"non_blocking": True}]
    assert images.is_contiguous() is (not channels_last)
    features = torch.randn(8, 5)
    flat = dataclasses.replace(batch, inputs=features)  # not an image batch: no memory format to convert to
    moved = tr.on_device(flat).inputs
    assert torch.equal(moved, features) and moved.is_contiguous()


def test_steps_clear_gradients_to_none(tiny_db, monkeypatch):
    tr = trainer(tiny_db)
    calls: list[dict] = []
    real = tr.optimizer.zero_grad
    monkeypatch.setattr(tr.optimizer, "zero_grad", lambda **kw: (calls.append(kw), real(**kw))[1])
    batch = next(iter(tr.loader(tiny_db.split("train", None, 16), 8, train=True)))
    train_module.train_step(tr, batch, 0, 0)
    assert calls == [{"set_to_none": True}]  # Adam skips a parameter no loss reached instead of moving it on momentum


def test_a_weighting_method_logs_its_weights_with_the_losses(tiny_db):
    result = run(tiny_db, "imtl_g", epochs=1)
    names = set(result.history[0]["train_loss"])
    assert {"classes", "attributes", "weight/classes", "weight/attributes"} <= names


def test_a_representation_weighting_needs_a_network_with_one(tiny_db):
    class PerTaskPaths(METHODS.get("imtl_g")):
        def build(self, backbone, heads, problem):
            model = super().build(backbone, heads, problem)
            model.has_shared_representation = False
            return model

    with pytest.raises(ValueError, match="weighs gradients at the shared representation, but its network"):
        build_trainer(tiny_config("imtl_g"), tiny_db.problem(), PerTaskPaths(), CPU, TrainOptions())
    # a network without a shared representation is fine for a method that asks no gradient of it
    routed = trainer(tiny_db, "task_routing")
    assert not routed.model.has_shared_representation


# ----- refusing bad losses ---------------------------------------------------------------------------
def test_check_finite_names_the_first_bad_loss():
    finite = {"classes": torch.tensor(1.0), "attributes": torch.tensor([0.5, 0.25])}
    assert check_finite(finite, 0, 0) is None
    bad = {"classes": torch.tensor(1.0), "dm": torch.tensor([0.5, math.inf]), "sca": torch.tensor(math.nan)}
    with pytest.raises(NonFiniteLossError, match="loss 'dm' is inf at epoch 2, step 7; lower --lr"):
        check_finite(bad, 2, 7)
    with pytest.raises(NonFiniteLossError, match="loss 'classes' is nan"):
        check_finite({"classes": torch.tensor(math.nan)}, 0, 0)


def test_under_two_processes_each_trains_on_its_own_shard(tiny_db, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(train_module, "make_loader", lambda data, batch_size, **kw: calls.append(kw))
    monkeypatch.setattr(train_module, "world_size", lambda: 2)
    monkeypatch.setattr(train_module, "rank", lambda: 1)
    tr = trainer(tiny_db)
    train_module.training_loaders(tiny_config("no_coupling"), tiny_db, tr, torch.Generator())
    assert calls[0]["shard"] == (1, 2) and calls[0]["train"] is True


def test_linked_runs_are_attached_before_the_network_is_built(tiny_db):
    order: list[str] = []

    class Recording(METHODS.get("no_coupling")):
        def attach(self, role, run):
            order.append(f"attach {role}")

        def build(self, backbone, heads, problem):
            order.append("build")
            return super().build(backbone, heads, problem)

    train(tiny_config("no_coupling", epochs=1), tiny_db, Recording(), CPU, progress=False,
          linked={"teacher": object(), "policy": object()})  # type: ignore[dict-item]
    assert order == ["attach teacher", "attach policy", "build"]


def test_a_checkpoint_left_behind_is_not_resumed_unless_asked(tiny_db, tmp_path, caplog):
    checkpoint = tmp_path / "run.ckpt"
    cfg = tiny_config("no_coupling", epochs=1)
    train(cfg, tiny_db, METHODS.get("no_coupling")(), CPU, progress=False, checkpoint=checkpoint)
    assert checkpoint.is_file()
    caplog.set_level(logging.INFO, logger="benchmark.train")
    again = train(tiny_config("no_coupling", epochs=2), tiny_db, METHODS.get("no_coupling")(), CPU, progress=False,
                  checkpoint=checkpoint)
    assert again.resumed_from is None and [e["epoch"] for e in again.history] == [0, 1]
    assert any("starting over discards it" in r.getMessage() for r in caplog.records)
