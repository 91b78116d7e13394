"""``TaskPathModel``'s edges (the per-task-path loop of AdaShare and Task Routing), from mutation testing
(docs/mutation.md): a forward pass refuses an empty task list and a task without a head, each on its own, with a
ValueError naming them, before running any backbone pass.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.task_paths import PerTaskOutput, TaskPathModel
from tests.methods.tiny_mtl import IN_FEATURES, WIDTH, tiny_backbone


class _Recording(TaskPathModel):
    """A task-path model whose route only records the task index it was asked for."""

    def __init__(self, training_tasks: list[str] | None = None) -> None:
        torch.manual_seed(0)
        super().__init__(tiny_backbone(), nn.ModuleDict({"a": nn.Linear(WIDTH, 2), "b": nn.Linear(WIDTH, 3)}))
        self.routed: list[int] = []
        self._training_tasks = training_tasks

    def route(self, task_index: int) -> None:
        self.routed.append(task_index)

    def training_tasks(self) -> list[str]:
        return self.tasks if self._training_tasks is None else self._training_tasks


def _inputs() -> torch.Tensor:
    return torch.randn(4, IN_FEATURES, generator=torch.Generator().manual_seed(0))


def test_listed_tasks_run_one_routed_pass_each():
    """The reference case: the listed tasks run in order, one routed pass each, the first one's z as features."""
    model = _Recording()
    out = model(_inputs(), ["b", "a"])
    assert isinstance(out, PerTaskOutput) and model.routed == [1, 0]
    assert list(out.logits) == ["b", "a"] and out.features is out.task_features["b"]


@pytest.mark.parametrize("tasks", [[], ()])
def test_an_empty_task_list_is_refused(tasks):
    """No task to run (and no unknown one) is refused with a ValueError naming the model's tasks, not an
    IndexError after an empty loop."""
    model = _Recording()
    with pytest.raises(ValueError, match=r"tasks \[\]: this model has heads for \['a', 'b'\] \(got unknown \[\]\)"):
        model(_inputs(), tasks)
    assert model.routed == []


def test_an_empty_training_selection_is_refused():
    """A training forward whose ``training_tasks`` selects nothing is refused the same way."""
    model = _Recording(training_tasks=[]).train()
    with pytest.raises(ValueError, match=r"tasks \[\]: this model has heads for"):
        model(_inputs())
    assert model.routed == []


@pytest.mark.parametrize("tasks", [["nope"], ["a", "nope"]])
def test_a_task_without_a_head_is_refused_before_any_pass(tasks):
    """A task with no head, alone or after a known one, is refused with a ValueError naming it, before any
    backbone pass is routed."""
    model = _Recording()
    with pytest.raises(ValueError, match=r"this model has heads for \['a', 'b'\] \(got unknown \['nope'\]\)"):
        model(_inputs(), tasks)
    assert model.routed == []
