"""The training protocol the reported numbers rest on (issue 18), checked directly on the tiny synthetic db.

- Every evaluation runs the network in eval mode (BatchNorm on its running statistics, which the
  evaluation leaves unchanged), and the trained model comes back in eval mode.
- Each epoch is scored on the validation split; the test split is loaded once, after the last epoch.
- The returned weights, the saved weights and the ``test`` metrics are those of the chosen epoch,
  also when it is not the last one.

The synthetic db's validation and test images differ, so an evaluation on the wrong split shows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import benchmark.checkpoint
import benchmark.train
from benchmark.backbones import create_backbone, create_heads
from benchmark.data import make_loader
from benchmark.evaluate import evaluate
from benchmark.linked import model_path
from benchmark.runner import execute
from benchmark.train import TrainResult, train
from datasets.synthetic import SyntheticDb
from methods import METHODS, MultiTaskModel
from results import ResultsStore
from tests.conftest import tiny_config

CPU = torch.device("cpu")
Metrics = dict[str, dict[str, float]]


def _model(db: SyntheticDb) -> MultiTaskModel:
    """A freshly built no-coupling network on the small CNN (which has BatchNorm)."""
    problem = db.problem()
    torch.manual_seed(0)
    backbone, width = create_backbone("smallcnn")
    return METHODS.get("no_coupling")().build(backbone, create_heads(problem.tasks, width), problem)


def _evaluate_on(model: MultiTaskModel, db: SyntheticDb, split: str,
                 split_fn: Callable[..., Any] | None = None) -> Metrics:
    """``model`` evaluated on ``split`` of ``db``, on a loader built here (not the one the loop built)."""
    data = (split_fn or db.split)(split, None, 16)
    with torch.random.fork_rng():
        return evaluate(model, make_loader(data, 16, train=False), db.problem(), CPU)


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@dataclass
class Evaluation:
    """One call of ``evaluate`` made by the training loop, as a spy saw it."""

    metrics: Metrics
    modes: list[bool]                 # module.training of every module's forward during the call
    buffers_changed: list[str]        # buffers (BN running stats) the call changed
    state: dict[str, torch.Tensor]    # the weights it evaluated
    on_val: Metrics                   # the same weights evaluated here on the validation split
    on_test: Metrics                  # ... and on the test split


@dataclass
class Spy:
    """Records the loop's evaluations and the db's split loads, in the order they happen."""

    db: SyntheticDb
    events: list[str] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_split, real_evaluate = self.db.split, benchmark.train.evaluate

        def split(name: str, fold: int | None = None, image_size: int | None = None):
            self.events.append(f"split:{name}")
            return real_split(name, fold, image_size)

        def spying(model: MultiTaskModel, loader, problem, device) -> Metrics:
            before, modes = _buffers(model), []
            handles = [m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
                       for m in model.modules()]
            try:
                metrics = real_evaluate(model, loader, problem, device)
            finally:
                for h in handles:
                    h.remove()
            after = _buffers(model)
            changed = [k for k in before if not torch.equal(before[k], after[k])]
            self.events.append("evaluate")
            self.evaluations.append(Evaluation(metrics, modes, changed, copy.deepcopy(model.state_dict()),
                                               _evaluate_on(model, self.db, "val", real_split),
                                               _evaluate_on(model, self.db, "test", real_split)))
            return metrics

        monkeypatch.setattr(self.db, "split", split)
        monkeypatch.setattr(benchmark.train, "evaluate", spying)


def _scores(values: list[float]) -> Callable[[Metrics, Any], float]:
    """A stand-in for the validation score: ``values`` epoch by epoch (so the best epoch is known)."""
    it: Iterator[float] = iter(values)
    return lambda val, problem: next(it)


def _train(db: SyntheticDb, epochs: int) -> TrainResult:
    cfg = tiny_config("no_coupling", epochs=epochs, db_options=db.options())
    return train(cfg, db, METHODS.get("no_coupling")(), CPU, progress=False)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----- eval mode -------------------------------------------------------------------------------------


def test_evaluate_runs_every_module_in_eval_mode_and_leaves_batchnorm_statistics(tiny_db) -> None:
    """Guards ``model.eval()`` in ``benchmark/evaluate.py``: handed a model in train mode, it evaluates in eval mode."""
    model = _model(tiny_db)
    assert _has_batchnorm(model)
    model.train()
    modes: list[bool] = []
    for m in model.modules():
        m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    before = _buffers(model)
    first = _evaluate_on(model, tiny_db, "val")
    assert modes and not any(modes), "a module ran in training mode during evaluation"
    after = _buffers(model)
    assert [k for k in before if not torch.equal(before[k], after[k])] == [], "evaluation changed BN statistics"
    model.train()
    assert _evaluate_on(model, tiny_db, "val") == first  # the same numbers whatever mode it was handed in


def test_training_evaluates_in_eval_mode_and_returns_the_model_in_eval_mode(tiny_db, monkeypatch) -> None:
    """Every evaluation of the loop (each epoch's, then the test) in eval mode, BN statistics untouched."""
    spy = Spy(tiny_db)
    spy.install(monkeypatch)
    result = _train(tiny_db, epochs=2)
    assert result.model is not None and _has_batchnorm(result.model)
    assert len(spy.evaluations) == 3  # two epochs, then the test
    for i, ev in enumerate(spy.evaluations):
        assert ev.modes and not any(ev.modes), f"evaluation {i} ran a module in training mode"
        assert ev.buffers_changed == [], f"evaluation {i} changed {ev.buffers_changed}"
    assert not any(m.training for m in result.model.modules()), "train() returned the model in training mode"


# ----- validation for selection, test once ---------------------------------------------------------


def test_epochs_are_scored_on_val_and_test_is_loaded_once_after_the_last_epoch(tiny_db, monkeypatch) -> None:
    """Guards ``training_loaders``/``finish`` in ``benchmark/train.py`` against selecting the epoch on test."""
    spy = Spy(tiny_db)
    spy.install(monkeypatch)
    result = _train(tiny_db, epochs=3)
    # the order of loads and evaluations: train and val before training, test after the 3rd epoch's evaluation
    assert spy.events == ["split:train", "split:val", "evaluate", "evaluate", "evaluate", "split:test", "evaluate"]
    per_epoch, final = spy.evaluations[:3], spy.evaluations[3]
    # this db's val and test give different numbers, so the checks below tell the splits apart
    assert any(ev.on_val != ev.on_test for ev in per_epoch)
    for epoch, ev in enumerate(per_epoch):
        assert result.history[epoch]["epoch"] == epoch
        assert result.history[epoch]["val"] == ev.on_val == ev.metrics, f"epoch {epoch} was not scored on val"
    assert result.test == final.on_test == final.metrics
    assert result.val == result.history[result.best_epoch]["val"]


# ----- the chosen epoch's weights --------------------------------------------------------------------


def test_the_returned_model_and_test_metrics_are_the_chosen_epochs_not_the_last(tiny_db, monkeypatch) -> None:
    """Guards the best-state restore in ``finish``: validation made to prefer the middle of three epochs."""
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores([0.0, 1.0, -1.0]))
    spy = Spy(tiny_db)
    spy.install(monkeypatch)
    result = _train(tiny_db, epochs=3)
    assert result.best_epoch == 1 and [h["val_score"] for h in result.history] == [0.0, 1.0, -1.0]
    epochs, final = spy.evaluations[:3], spy.evaluations[3]
    assert not _same_state(epochs[1].state, epochs[2].state), "the epochs must differ for this test to mean anything"
    assert _same_state(result.model.state_dict(), epochs[1].state), "the returned model is not the chosen epoch's"
    assert _same_state(final.state, epochs[1].state), "the test split was evaluated on other weights"
    assert result.test == epochs[1].on_test
    assert result.val == result.history[1]["val"] == epochs[1].on_val


def test_the_saved_weights_and_stored_metrics_are_the_chosen_epochs(tiny_db, monkeypatch, tmp_path) -> None:
    """Through the runner: ``models/<run_id>.pt`` and the stored test metrics come from the chosen epoch."""
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores([1.0, 0.0]))
    spy = Spy(tiny_db)
    spy.install(monkeypatch)
    cfg = tiny_config("no_coupling", epochs=2, db_options=tiny_db.options())
    record = execute(cfg, tiny_db, ResultsStore(tmp_path / "results.sqlite"), CPU, progress=False, checkpoints="off")
    assert record.best_epoch == 0
    epochs = spy.evaluations[:2]
    assert not _same_state(epochs[0].state, epochs[1].state)
    saved = torch.load(model_path(tmp_path, cfg.run_id), map_location="cpu", weights_only=True)["model"]
    assert _same_state(saved, epochs[0].state), "the saved weights are not the chosen epoch's"
    stored = {(m.task, m.metric): m.value for m in record.metrics if m.split == "test"}
    expected = {(t, name): v for t, values in epochs[0].on_test.items() for name, v in values.items()}
    assert stored == pytest.approx(expected)


def test_a_runs_progress_label_names_what_sets_it_apart() -> None:
    """The label shows options away from the registered method's defaults, and options with none (the task)."""
    from benchmark.train import run_label
    from methods.adashare_search import AdaShareSearch

    cfg = tiny_config("single_task", {"task": "classes"})
    assert run_label(cfg, METHODS.get("single_task")(task="classes")) == "single_task[task=classes] synthetic seed 0"
    stored_search = tiny_config("adashare", {**METHODS.get("adashare")().hparams(), "phase": "search"}, fold=1)
    label = run_label(stored_search, AdaShareSearch())  # a stored search: labelled from adashare's defaults
    assert label == "adashare[phase=search] synthetic fold 1 seed 0", label
