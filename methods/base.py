"""The method contract: five hooks whose defaults are plain hard sharing with summed losses.

A strategy is a subclass of :class:`Method` that overrides only what it changes, so the
no-coupling baseline is the base class unchanged and every other strategy reads as a diff.
The training loop (``benchmark/train.py``) calls the hooks of a run; ``build`` and ``attach`` are also
called where linked runs are rebuilt (``benchmark/linked.py``) and by the ``bench`` command.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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

    #: Whether one backbone pass gives every head the same z (hard sharing); per-task-path networks
    #: (AdaShare, Task Routing) run a pass per task and have none to take gradients at.
    has_shared_representation: ClassVar[bool] = True

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


GradientTarget = Literal["representation", "shared_layer", "shared_parameters"]


@dataclass(frozen=True)
class GradientRequest:
    """What a weighting method asks the training loop's gradient engine for (``benchmark/gradient_engine.py``).

    Args:
        wrt: the per-task gradients: ``representation`` (∂L_t/∂z at the shared representation the heads
            read, the "upper bound" form of Sener & Koltun 2018, one backbone backward in all),
            ``shared_layer`` (∂L_t/∂W of one shared layer, ``layer``), or ``shared_parameters`` (of
            every shared parameter, flattened; one backbone backward per task).
        batch_reduction: for ``representation``: g_t (B, D) as one B·D vector (``flatten``) or summed
            over the batch first (``sum``).
        head_gradient: for ``representation``: each head gets its own task's gradient (``own``) or
            w_t times it (``weighted``, what back-propagating Σ w_t L_t gives). Other targets apply the
            weights as Σ w_t L_t, so heads are weighted.
        layer: for ``shared_layer``: the module name, or ``auto`` (the last shared conv/linear layer that ran).
    """

    wrt: GradientTarget = "representation"
    batch_reduction: Literal["flatten", "sum"] = "flatten"
    head_gradient: Literal["own", "weighted"] = "weighted"
    layer: str = "auto"


@dataclass(frozen=True)
class TaskGradients:
    """What the gradient engine hands :meth:`Method.weighting`: the tasks' gradients, true and global.

    Gradients are unscaled (no mixed-precision loss scale) and of the global batch (every process
    under ``torchrun`` sees the same values). Only tasks the global batch annotates are in ``tasks``;
    the others (``absent``) get weight 0 without being asked.

    Args:
        tasks: the annotated tasks, in loss order; the weights returned are for these.
        absent: the tasks without an annotated entry in this batch.
        losses: (T,) float64 losses of ``tasks``, detached.
        all_losses: every task's loss by name (absent ones too), float64 scalars.
        gram: (T, T) float64 Gram matrix G_ij = <g_i, g_j> of the tasks' gradients.
        vectors: (T, N) gradients themselves: float64 at z (this process's share under ``torchrun``), in
            the parameters' dtype (float32) for parameter targets, whose Gram is also taken in that dtype.
        step, epoch: where training is.
    """

    tasks: list[str]
    absent: list[str]
    losses: Tensor
    all_losses: dict[str, Tensor]
    gram: Tensor
    vectors: Tensor
    step: int = 0
    epoch: int = 0


@dataclass(frozen=True)
class Weighting:
    """A weighting's answer: one weight per annotated task, and optionally a loss of the method's own
    parameters (GradNorm's L_grad on its task weights), back-propagated by the engine like every loss."""

    weights: Tensor
    loss: Tensor | None = None


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
    #: Whether :meth:`build` keeps one representation z that every head reads (hard sharing); False for
    #: networks that run a backbone pass per task (AdaShare, Task Routing).
    builds_shared_representation: ClassVar[bool] = True
    #: Where the runner stores this method's runs when it is another registered method under other options
    #: (an alias that keeps earlier run ids): ``(name, options added)``; None stores it under its own name.
    stored_as: ClassVar[tuple[str, dict[str, Any]] | None] = None

    def __init__(self) -> None:
        super().__init__()

    # ----- hyperparameters -------------------------------------------------------------
    @classmethod
    def hyperparameters(cls) -> dict[str, inspect.Parameter]:
        """The keyword-only ``__init__`` parameters, by name."""
        params = inspect.signature(cls.__init__).parameters
        return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def keep_hyperparameters(self, values: dict[str, Any]) -> None:
        """Set each hyperparameter as an attribute from ``values`` (an ``__init__``'s ``locals()``)."""
        for name in self.hyperparameters():
            setattr(self, name, values[name])

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

    def backward(self, losses: dict[str, Tensor], ctx: StepContext) -> None:
        """Turn the loss terms into gradients (left in ``.grad``); default backward of their sum.

        A method that weighs per-task gradients overrides :meth:`gradient_request` and :meth:`weighting`
        instead: the loop's gradient engine then does the backward.
        """
        torch.stack(list(losses.values())).sum().backward()

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups; default one group with every trainable parameter."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Per-epoch schedule changes (temperatures, phases); default nothing."""

    # ----- gradient weighting (the loop's gradient engine calls it instead of backward) -----------
    def gradient_request(self) -> GradientRequest | None:
        """The per-task gradients :meth:`weighting` needs; None (default) means no weighting: :meth:`backward` runs."""
        return None

    def check_capabilities(self) -> None:
        """Refuse, before anything is stored, what the gradient engine cannot serve: gradients at a shared
        representation from a method whose network has none."""
        request = self.gradient_request()
        if request is not None and request.wrt == "representation" and not self.builds_shared_representation:
            raise ValueError(f"method {self.name or type(self).__name__!r} weighs gradients at the shared "
                             f"representation z, but its network runs a backbone pass per task and has no z; "
                             f"ask for GradientRequest(wrt='shared_parameters') instead")

    def weighting(self, gradients: TaskGradients) -> Weighting | Tensor:
        """Task weights (one per ``gradients.tasks``) from the tasks' gradients; the loop applies them."""
        raise NotImplementedError(f"{type(self).__name__} asks for gradients (gradient_request) but does not "
                                  f"override weighting() to weigh them")


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
