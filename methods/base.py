"""The method contract: five hooks whose defaults are plain hard sharing with summed losses.

A strategy is a subclass of :class:`Method` that overrides only what it changes, so the
no-coupling baseline is the base class unchanged and every other strategy reads as a diff.
The training loop (``benchmark/train.py``) is the only caller of the hooks.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmark.registry import Registry
from benchmark.tasks import Batch, Problem

#: Methods by name; third-party packages add theirs under the ``mtlbench.methods`` entry-point group.
METHODS: Registry = Registry("method", "mtlbench.methods")


@dataclass
class ModelOutput:
    """What a forward pass gives: the shared representation z (B, D) and each task's logits."""

    features: Tensor
    logits: dict[str, Tensor]


class MultiTaskModel(nn.Module):
    """Hard parameter sharing: one backbone producing z, one linear head per task.

    Args:
        backbone: maps an image batch (B, 3, H, W) to features (B, D).
        heads: one module per task, mapping (B, D) to that task's logits.
    """

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    @property
    def tasks(self) -> list[str]:
        """The tasks this model has a head for."""
        return list(self.heads.keys())

    def forward(self, inputs: Tensor, tasks: Sequence[str] | None = None) -> ModelOutput:
        features = self.backbone(inputs)
        names = self.tasks if tasks is None else tasks
        return ModelOutput(features, {t: self.heads[t](features) for t in names})

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters every task uses (the backbone)."""
        return self.backbone.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters only ``task`` uses (its head)."""
        return self.heads[task].parameters()


@dataclass
class StepContext:
    """What a hook may read during one training step; hooks never stash it on ``self``."""

    model: MultiTaskModel
    batch: Batch
    outputs: ModelOutput
    problem: Problem
    step: int
    epoch: int
    label_smoothing: float = 0.0  # the run's, for methods that recompute task losses on part of a batch
    #: fp16 mixed precision: the gradients of the losses handed to ``backward`` come multiplied by this
    #: factor (their values do not); a hook that computes with gradient values (norms, Gram matrices)
    #: divides them by it first, and scales gradients it sets itself by it. 1.0 otherwise.
    loss_scale: float = 1.0
    attribute_loss: str = "per_image"  # the run's attribute-loss reduction (benchmark.config.ATTRIBUTE_LOSSES), likewise


class Method(nn.Module):
    """Hard sharing with summed task losses; subclass and override only the hooks you change.

    Hyperparameters are keyword-only ``__init__`` arguments with defaults, each stored under its
    own name and nothing else; problem-sized state is made in :meth:`build`.
    """

    name: ClassVar[str] = ""
    #: Whether training keeps images annotated for none of the model's tasks (e.g. for losses
    #: on unlabelled data); otherwise the runner drops them, as they carry no gradient.
    uses_unannotated_samples: ClassVar[bool] = False
    #: Backbones the method is known to work with, the first being the one the contract tests
    #: use; empty means any (the built-in ``smallcnn`` included).
    supported_backbones: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()

    # ----- hyperparameters -------------------------------------------------------------
    @classmethod
    def hyperparameters(cls) -> dict[str, inspect.Parameter]:
        """The keyword-only ``__init__`` parameters, by name."""
        params = inspect.signature(cls.__init__).parameters
        return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def hparams(self) -> dict[str, Any]:
        """Current hyperparameter values, as stored with a run."""
        return {n: getattr(self, n) for n in self.hyperparameters()}

    @classmethod
    def expand(cls, options: dict[str, Any], problem: Problem) -> list[dict[str, Any]]:
        """The runs one request stands for (``single_task`` makes one per task); default one."""
        return [dict(options)]

    # ----- linked runs (multi-stage protocols as separate stored runs) ---------------------
    @classmethod
    def dependencies(cls, options: dict[str, Any], problem: Problem) -> dict[str, Dependency]:
        """Runs this one builds on, by role (student-teacher's teachers, AdaShare's policy run); default none.

        The runner trains each under the same protocol as this run (db and its options, backbone,
        seed, fold, epochs, ...) or reuses it completed from the store, and hands it to
        :meth:`attach` before :meth:`build`. ``options`` are this run's resolved hyperparameters.
        """
        return {}

    def attach(self, role: str, run: LinkedRun) -> None:
        """Receive a completed run declared by :meth:`dependencies`, before :meth:`build`; override to use it."""
        raise NotImplementedError(f"{type(self).__name__} declares a dependency {role!r} (run {run.run_id}) "
                                  f"but does not override attach() to receive it")

    # ----- the five hooks ---------------------------------------------------------------
    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        """Assemble the network; default hard sharing of ``backbone`` under every head."""
        return MultiTaskModel(backbone, heads)

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """Add or reweight loss terms; default the task losses as they are."""
        return task_losses

    def backward(self, losses: dict[str, Tensor], ctx: StepContext) -> Tensor:
        """Turn the loss terms into gradients; default backward of their sum. Returns the total."""
        total = torch.stack(list(losses.values())).sum()
        total.backward()
        return total.detach()

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups; default one group with every trainable parameter."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Per-epoch schedule changes (temperatures, phases); default nothing."""


@dataclass(frozen=True)
class Dependency:
    """A run another run builds on: a registered method and its hyperparameters (the rest of the protocol is shared).

    Args:
        method: registry name of the method, e.g. ``"single_task"``.
        options: its hyperparameters; those left out take their defaults.
    """

    method: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LinkedRun:
    """A completed run handed to :meth:`Method.attach`: its network at its best epoch and its method state.

    Args:
        role: the role it plays for the receiving method (e.g. ``"teacher:classes"``).
        run_id: its id in the results store.
        config: its resolved run config (``RunConfig.to_dict``).
        method: its method, rebuilt with its stored hyperparameters and state.
        model: its network with its stored best-epoch weights, on the training device.
    """

    role: str
    run_id: str
    config: dict[str, Any]
    method: Method
    model: MultiTaskModel
