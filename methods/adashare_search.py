"""``adashare_search``: AdaShare's policy search, the first of its two linked runs (``adashare`` is the second).

Sun, Panda, Feris & Saenko, "AdaShare: Learning What To Share For Efficient Deep Multi-Task
Learning", NeurIPS 2020, Sec. 3.2-3.4. The network (gates, schedule, policy losses) is
``methods/adashare_net.py``, shared with the retraining (``methods/adashare.py``).

Stored identity: a search that ``adashare`` links is stored, as it always was, under the method name
``adashare`` with ``phase=search`` (and the retraining-only options at their defaults), so runs stored
before the split keep their ids; ``adashare`` builds this class from such a config. The module
docstring of ``methods/adashare.py`` says why and how.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem, task_loss
from methods.adashare_net import (Schedule, SearchNet, policy_samples, residual_blocks, sharing_loss,
                                  sparsity_loss)
from methods.base import METHODS, Method, MultiTaskModel, StepContext

log = logging.getLogger(__name__)

PREFIX = "policy/"  # loss terms of the policy samples, e.g. "policy/classes"


@METHODS.register("adashare_search")
class AdaShareSearch(Method):
    """AdaShare's policy search: which residual blocks each task executes (Sun, Panda, Feris & Saenko, NeurIPS 2020, Sec. 3).

    The first of AdaShare's two linked runs; ``adashare`` declares it and retrains with its policy.
    Stored as ``adashare`` with ``phase=search`` (``stored_as``; the module docstring of
    ``methods/adashare.py`` says why), so ``--method adashare_search`` trains the very run a retraining reuses.

    ``warmup_epochs`` with every block executed, then policy epochs in which every residual
    block's gate is a Gumbel-softmax sample of its task's logits (Sec. 3.2; temperature
    ``temperature``, times ``temperature_decay`` per policy epoch) and a curriculum lets only the
    last ``p // curriculum_speed + 1`` blocks follow the policy in policy epoch p (Sec. 3.4). Each
    policy step updates the weights on one part of the training split and the policy logits on the
    other (a fixed seeded split of the samples, :func:`methods.adashare_net.policy_samples`; the
    paper's alternating optimisation on two training subsets, done here on the two parts of the
    same batch and forward pass): the weights get the gradient of the task losses of their part
    only, the logits that of the task losses of the policy part plus ``sparsity_weight``
    L_sparsity + ``sharing_weight`` L_sharing (Sec. 3.3, :func:`methods.adashare_net.sparsity_loss`,
    :func:`methods.adashare_net.sharing_loss`). The learned policy is the logits at the end of the
    search (method state ``learned_logits``, with ``learned_blocks`` the blocks the curriculum
    opened): the loop's model selection also sees warm-up epochs, whose policy is the untrained one.
    Evaluation uses the deterministic (argmax) policy. Each task runs its own pass through the
    backbone (``PerTaskOutput``).

    Args:
        warmup_epochs: epochs with every block executed before the policy is learned.
        curriculum_speed: policy epochs per block opened (released code: 3).
        temperature: initial Gumbel-softmax temperature (released code: 5).
        temperature_decay: temperature factor per policy epoch (released code: 0.965).
        hard_sampling: straight-through one-hot Gumbel samples instead of soft ones (code default: soft).
        sparsity_weight: weight of L_sparsity (released code: 0.05).
        sharing_weight: weight of L_sharing (released code: 0.05).
        sharing_depth_weights: block weights of L_sharing: ``increasing`` (l / L, released code) or
            ``decreasing`` ((L - l + 1) / L: more pressure to share the lower blocks).
        policy_lr: Adam learning rate of the policy logits (released code: 0.01), their own parameter group.
        policy_weight_decay: Adam weight decay of the policy logits (released code: 5e-4).
        policy_fraction: fraction of training samples that update the policy; the rest update the weights.
        split_seed: seed of the fixed weight/policy split of the training samples.
    """

    stored_as = ("adashare", {"phase": "search"})
    supported_backbones = ("resnet18", "resnet34", "resnet50")
    builds_shared_representation = False  # a pass per task through its own blocks

    def __init__(self, *, warmup_epochs: int = 1, curriculum_speed: int = 3, temperature: float = 5.0,
                 temperature_decay: float = 0.965, hard_sampling: bool = False, sparsity_weight: float = 0.05,
                 sharing_weight: float = 0.05, sharing_depth_weights: Literal["increasing", "decreasing"] = "increasing",
                 policy_lr: float = 0.01, policy_weight_decay: float = 5e-4, policy_fraction: float = 0.5,
                 split_seed: int = 0) -> None:
        super().__init__()
        raise_errors(search_option_errors(warmup_epochs, curriculum_speed, temperature, temperature_decay,
                                          sharing_depth_weights, policy_fraction,
                                          (sparsity_weight, sharing_weight, policy_lr, policy_weight_decay)))
        self.keep_hyperparameters(locals())
        #: The options a search rebuilt from its stored name (``adashare`` with ``phase=search``) was stored
        #: with beyond its own; ``AdaShare`` sets them (methods/adashare.py) so :meth:`hparams` gives that config back.
        self.stored_as: dict[str, Any] = {}

    def hparams(self) -> dict[str, Any]:
        """Its options, and those of its stored name where it was rebuilt from one (``stored_as``)."""
        return {**super().hparams(), **self.stored_as}

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        """The search network (:class:`SearchNet`), and the method state that carries its policy to the retraining."""
        blocks = residual_blocks(backbone)
        self.register_buffer("learned_logits", torch.zeros(len(heads), len(blocks), 2))
        self.register_buffer("learned_blocks", torch.zeros((), dtype=torch.long))
        schedule = Schedule(self.warmup_epochs, self.curriculum_speed, self.temperature, self.temperature_decay)
        return SearchNet(backbone, heads, blocks, schedule, self.hard_sampling)

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """In policy epochs: each task's loss on the weights' samples and on the policy's, and the two policy losses."""
        model = cast(SearchNet, ctx.model)  # the network build() made
        if model.open_blocks() == 0:
            return task_losses  # warm-up: plain task losses over the whole batch
        for_policy = policy_samples(ctx.batch.index, self.split_seed, self.policy_fraction).to(ctx.batch.inputs.device)
        out: dict[str, Tensor] = {}
        for task in task_losses:
            spec, logits = ctx.problem.task(task), ctx.outputs.logits[task]
            target, mask = ctx.batch.targets[task], ctx.batch.masks[task]
            side = for_policy if mask.ndim == 1 else for_policy[:, None]  # (B,) or (B, 1) against (B, M)
            out[task] = task_loss(spec, logits, target, mask & ~side, ctx.label_smoothing, ctx.attribute_loss)
            out[PREFIX + task] = task_loss(spec, logits, target, mask & side, ctx.label_smoothing, ctx.attribute_loss)
        out["sparsity"] = self.sparsity_weight * sparsity_loss(model.policy_logits, model.open_blocks())
        out["sharing"] = self.sharing_weight * sharing_loss(model.policy_logits, self.sharing_depth_weights)
        return out

    def backward(self, losses: dict[str, Tensor], ctx: StepContext) -> None:
        """In policy epochs: weights from their samples' task losses, logits from the rest (two partial backwards)."""
        model = cast(SearchNet, ctx.model)
        if "sparsity" not in losses:  # warm-up: losses() gave the plain task losses
            super().backward(losses, ctx)
            return
        logits = model.policy_logits
        weights = [p for p in model.parameters() if p.requires_grad and p is not logits]
        weight_total = torch.stack([v for k, v in losses.items() if k in model.tasks]).sum()
        policy_total = torch.stack([v for k, v in losses.items() if k not in model.tasks]).sum()
        torch.autograd.backward(policy_total, inputs=[logits], retain_graph=True)
        torch.autograd.backward(weight_total, inputs=weights)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """The weights in the run's group; the policy logits in their own (``policy_lr``, ``policy_weight_decay``)."""
        logits = cast(SearchNet, model).policy_logits
        weights = [p for p in model.parameters() if p.requires_grad and p is not logits]
        return [{"params": weights},
                {"params": [logits], "lr": self.policy_lr, "weight_decay": self.policy_weight_decay}]

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Advance the schedule; after a policy epoch, keep its logits as the learned policy."""
        net = cast(SearchNet, model)
        net.epochs_done.fill_(epoch + 1)
        n_open = net.schedule.open_blocks(epoch, len(net.gates))
        if n_open:
            self.learned_logits.copy_(net.policy_logits.detach())
            self.learned_blocks.fill_(n_open)
            probs = net.policy_logits.detach().softmax(dim=-1)[..., 0]
            log.info("adashare search, epoch %d: temperature %.3f, %d open blocks, P(execute) per task %s", epoch,
                     net.schedule.temperature_at(epoch), n_open, [[round(float(p), 3) for p in row] for row in probs])


def search_option_errors(warmup_epochs: int, curriculum_speed: int, temperature: float, decay: float,
                         depth_weights: str, fraction: float, non_negative: tuple[float, ...]) -> list[str]:
    """What is wrong with the search's options, one message each (empty when nothing is)."""
    problems = [(warmup_epochs < 0, f"warmup_epochs must be >= 0, got {warmup_epochs}"),
                (curriculum_speed < 1, f"curriculum_speed must be >= 1, got {curriculum_speed}"),
                (temperature <= 0 or not 0 < decay <= 1,
                 f"temperature must be > 0 and temperature_decay in (0, 1], got {temperature}, {decay}"),
                (depth_weights not in ("increasing", "decreasing"),
                 f"sharing_depth_weights must be 'increasing' or 'decreasing', got {depth_weights!r}"),
                (not 0 < fraction < 1, f"policy_fraction must be in (0, 1), got {fraction}"),
                (min(non_negative) < 0, "sparsity_weight, sharing_weight, policy_lr, policy_weight_decay must be >= 0")]
    return [message for bad, message in problems if bad]


def raise_errors(errors: list[str]) -> None:
    """Raise one error naming every bad option."""
    if errors:
        raise ValueError("adashare: " + "; ".join(errors))
