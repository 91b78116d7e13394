"""Networks that run the shared backbone once per task along a task-specific path (AdaShare, Task Routing).

Both architecture baselines keep one set of backbone weights but route each task differently
through it (AdaShare skips residual blocks per task, Task Routing masks channels per task), so a
forward pass is one backbone pass per task. :class:`TaskPathModel` holds that loop; a subclass
says how to route a pass (:meth:`TaskPathModel.route`) and which tasks a training forward runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from methods.base import ModelOutput, MultiTaskModel


@dataclass
class PerTaskOutput(ModelOutput):
    """A forward pass with one representation per task.

    ``features`` (the contract's one tensor, (B, D)) is the representation of the first task run
    in the pass: there is no representation every task shares, so a method that needs one (MGDA-UB's
    gradient with respect to z) has nothing meaningful to use here. ``task_features`` holds each
    task's own (B, D) representation.
    """

    task_features: dict[str, Tensor] = field(default_factory=dict)


class TaskPathModel(MultiTaskModel):
    """Hard-shared weights, one backbone pass per task, each pass routed for its task.

    ``forward(inputs, tasks)`` runs the listed tasks in turn; without ``tasks`` it runs every task
    in eval mode and :meth:`training_tasks` in training mode.
    """

    has_shared_representation = False  # a pass per task: no z every head reads

    def route(self, task_index: int) -> None:
        """Set the backbone up for a pass of task ``task_index`` (its index in :attr:`tasks`)."""
        raise NotImplementedError

    def training_tasks(self) -> list[str]:
        """The tasks a training forward without ``tasks`` runs; default all of them."""
        return self.tasks

    def forward(self, inputs: Tensor, tasks: Sequence[str] | None = None) -> PerTaskOutput:
        if tasks is None:
            names = self.training_tasks() if self.training else self.tasks
        else:
            names = list(tasks)
        unknown = [t for t in names if t not in self.heads]
        if unknown or not names:
            raise ValueError(f"tasks {list(names)}: this model has heads for {self.tasks} (got unknown {unknown})")
        features: dict[str, Tensor] = {}
        for name in names:
            self.route(self.tasks.index(name))
            features[name] = self.backbone(inputs)
        logits = {t: self.heads[t](features[t]) for t in names}
        return PerTaskOutput(features[names[0]], logits, features)
