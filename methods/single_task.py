"""``single_task``: one model per task, the reference every multi-task cell is compared with."""

from __future__ import annotations

from typing import Any

from torch import nn

from benchmark.tasks import Problem
from methods.base import METHODS, Method, MultiTaskModel


@METHODS.register("single_task")
class SingleTask(Method):
    """One network per task, trained on that task's annotated images only ("ST", Kollias et al., AAAI-24, Tab. 2).

    Negative transfer is defined against it: a multi-task model that is worse than the
    single-task model on at least one task shows negative transfer.

    Args:
        task: the task to train; left unset, one run is made per task of the db.
    """

    def __init__(self, *, task: str | None = None) -> None:
        super().__init__()
        self.task = task

    @classmethod
    def expand(cls, options: dict[str, Any], problem: Problem) -> list[dict[str, Any]]:
        if options.get("task") is None:
            return [{**options, "task": name} for name in problem.task_names]
        problem.task(options["task"])  # raises, listing the tasks, if unknown
        return [dict(options)]

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        if self.task is None:
            raise ValueError("single_task needs a task: pass --set task=NAME or let the runner expand it")
        problem.task(self.task)
        return MultiTaskModel(backbone, nn.ModuleDict({self.task: heads[self.task]}))
