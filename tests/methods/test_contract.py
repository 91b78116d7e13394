"""The method contract, checked for every registered method, plugins included (as timm tests every model)."""

from __future__ import annotations

import inspect

import pytest
import torch

from benchmark.backbones import create_backbone, create_heads
from benchmark.linked import train_dependencies
from benchmark.options import resolve
from benchmark.train import train
from methods import METHODS, Method
from tests.conftest import tiny_config

ALL_METHODS = METHODS.names()


def _options(name: str, db) -> dict:
    cls = METHODS.get(name)
    return cls.expand(resolve(cls, {}), db.problem())[0]


_DEPENDENCIES: dict = {}  # trained dependencies (e.g. teachers) by run id, shared across tests


def _backbone(name: str) -> str:
    """The small CNN, or the first backbone a method says it supports (AdaShare needs residual blocks)."""
    supported = METHODS.get(name).supported_backbones
    return supported[0] if supported else "smallcnn"


def _trained(name: str, db, seed: int = 0):
    options = _options(name, db)
    method = METHODS.get(name)(**options)
    cfg = tiny_config(name, options, seed=seed, db_options=db.options(), backbone=_backbone(name))
    # a method declaring linked runs gets them trained in memory, as the runner would from the store
    linked = train_dependencies(cfg, db, torch.device("cpu"), _DEPENDENCIES)
    return method, train(cfg, db, method, torch.device("cpu"), progress=False, linked=linked)


def test_registry_holds_the_builtins_and_the_example_plugin():
    assert {"no_coupling", "single_task", "fixed_weights", "equal_gradient_norms"} <= set(ALL_METHODS)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_hyperparameters_are_keyword_only_with_defaults_and_stored(name):
    cls = METHODS.get(name)
    assert issubclass(cls, Method) and cls.name == name
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    for p in params:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: {p.name} must be keyword-only"
        assert p.default is not inspect.Parameter.empty, f"{name}: {p.name} needs a default"
        assert p.annotation is not inspect.Parameter.empty, f"{name}: {p.name} needs a type hint"
    defaults = {p.name: p.default for p in params}
    assert cls().hparams() == defaults, "each hyperparameter must be stored under its own name"
    assert cls.__doc__ and cls.__doc__.strip(), "a one-line description is shown by 'ls methods'"


@pytest.mark.parametrize("name", ALL_METHODS)
def test_two_epochs_give_finite_losses_and_move_the_shared_weights(name, tiny_db):
    options = _options(name, tiny_db)
    method, result = _trained(name, tiny_db)
    assert len(result.history) == 2
    for epoch in result.history:
        assert epoch["train_loss"] and all(torch.isfinite(torch.tensor(v)) for v in epoch["train_loss"].values())
    torch.manual_seed(0)  # train() seeds with cfg.seed=0 before building, so this rebuilds its initial weights
    initial, _ = create_backbone(_backbone(name))
    trained = result.model.backbone.state_dict()
    changed = [k for k, v in initial.state_dict().items() if v.is_floating_point() and not torch.equal(v, trained[k])]
    assert changed, f"{name} left every shared weight unchanged"
    assert method.hparams() == options, f"{name}: training changed a hyperparameter (state belongs in buffers)"


@pytest.mark.parametrize("name", ALL_METHODS)
def test_bit_identical_under_a_fixed_seed(name, tiny_db):
    _, first = _trained(name, tiny_db, seed=3)
    _, second = _trained(name, tiny_db, seed=3)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.test == second.test


@pytest.mark.parametrize("name", ALL_METHODS)
def test_state_dict_round_trip(name, tiny_db):
    method, result = _trained(name, tiny_db)
    problem = tiny_db.problem()
    fresh = METHODS.get(name)(**method.hparams())
    backbone, width = create_backbone(_backbone(name))
    model = fresh.build(backbone, create_heads(problem.tasks, width), problem)
    model.load_state_dict(result.model.state_dict())
    fresh.load_state_dict(method.state_dict())
    for key, value in method.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key])
    x = torch.randn(4, 3, 16, 16)
    result.model.eval(), model.eval()
    for task, logits in result.model(x).logits.items():
        assert torch.equal(logits, model(x).logits[task])
