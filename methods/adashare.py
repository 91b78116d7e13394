"""``adashare``: per-task execute/skip policies over residual blocks, searched in one run and retrained in another."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import Tensor, nn

from benchmark.tasks import Problem, task_loss
from methods.adashare_net import (FixedPolicyNet, Schedule, SearchNet, deterministic_policy, policy_samples,
                                  policy_string, residual_blocks, sampled_policy, sharing_loss, sparsity_loss)
from methods.base import METHODS, Dependency, LinkedRun, Method, MultiTaskModel, StepContext

log = logging.getLogger(__name__)

#: The role under which the retraining run links its policy search (``reports.spec.EARLIER_STAGE_LINKS``).
POLICY_RUN = "policy_run"
#: Options that only the retraining reads; the policy search is the same run whatever they are.
RETRAIN_ONLY = ("phase", "retrain_policy", "sample_seed")
PREFIX = "policy/"  # loss terms of the policy samples, e.g. "policy/classes"


@METHODS.register("adashare")
class AdaShare(Method):
    """AdaShare: each task learns which residual blocks to execute or skip (Sun, Panda, Feris & Saenko, NeurIPS 2020).

    Two linked runs. ``phase=search`` learns the policy: ``warmup_epochs`` with every block
    executed, then policy epochs in which every residual block's gate is a Gumbel-softmax sample
    of its task's logits (Sec. 3.2; temperature ``temperature``, times ``temperature_decay`` per
    policy epoch) and a curriculum lets only the last ``p // curriculum_speed + 1`` blocks follow
    the policy in policy epoch p (Sec. 3.4). Each policy step updates the weights on one part of
    the training split and the policy logits on the other (a fixed seeded split of the samples,
    :func:`methods.adashare_net.policy_samples`; the paper's alternating optimisation on two
    training subsets, done here on the two parts of the same batch and forward pass): the weights
    get the gradient of the task losses of their part only, the logits that of the task losses of
    the policy part plus ``sparsity_weight`` L_sparsity + ``sharing_weight`` L_sharing (Sec. 3.3,
    :func:`methods.adashare_net.sparsity_loss`, :func:`methods.adashare_net.sharing_loss`). The learned policy is the logits at the end of the search (method state
    ``learned_logits``, with ``learned_blocks`` the blocks the curriculum opened): the loop's
    model selection also sees warm-up epochs, whose policy is the untrained one.

    ``phase=retrain`` (the default, the run reports show) declares the search, with the same
    options, as its linked run ``policy_run``, fixes its policy (blocks the curriculum never
    opened are executed) and trains the network from scratch with it (Sec. 3.4): a skipped block
    passes its input through its shortcut and is not run. Evaluation always uses a
    deterministic policy. Each task runs its own pass through the backbone (``PerTaskOutput``).

    Args:
        phase: ``retrain`` (train with the policy of the linked search) or ``search``.
        warmup_epochs: search epochs with every block executed before the policy is learned.
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
        retrain_policy: ``argmax`` (execute where the learned execute logit is the larger) or
            ``sample`` (draw each open block from its learned distribution, as the released
            retraining code does).
        sample_seed: seed of the draw when ``retrain_policy=sample``.
    """

    supported_backbones = ("resnet18", "resnet34", "resnet50")
    builds_shared_representation = False  # a pass per task through its own blocks

    def __init__(self, *, phase: Literal["retrain", "search"] = "retrain", warmup_epochs: int = 1,
                 curriculum_speed: int = 3, temperature: float = 5.0, temperature_decay: float = 0.965,
                 hard_sampling: bool = False, sparsity_weight: float = 0.05, sharing_weight: float = 0.05,
                 sharing_depth_weights: Literal["increasing", "decreasing"] = "increasing", policy_lr: float = 0.01,
                 policy_weight_decay: float = 5e-4, policy_fraction: float = 0.5, split_seed: int = 0,
                 retrain_policy: Literal["argmax", "sample"] = "argmax", sample_seed: int = 0) -> None:
        super().__init__()
        check_options(phase, warmup_epochs, curriculum_speed, temperature, temperature_decay, sharing_depth_weights,
                      policy_fraction, retrain_policy, (sparsity_weight, sharing_weight, policy_lr, policy_weight_decay))
        self.phase = phase
        self.warmup_epochs = warmup_epochs
        self.curriculum_speed = curriculum_speed
        self.temperature = temperature
        self.temperature_decay = temperature_decay
        self.hard_sampling = hard_sampling
        self.sparsity_weight = sparsity_weight
        self.sharing_weight = sharing_weight
        self.sharing_depth_weights = sharing_depth_weights
        self.policy_lr = policy_lr
        self.policy_weight_decay = policy_weight_decay
        self.policy_fraction = policy_fraction
        self.split_seed = split_seed
        self.retrain_policy = retrain_policy
        self.sample_seed = sample_seed
        self._policy: Tensor | None = None  # the retraining's fixed policy, from attach()

    # ----- linked runs --------------------------------------------------------------------
    @classmethod
    def dependencies(cls, options: dict[str, Any], problem: Problem) -> dict[str, Dependency]:
        """The retraining builds on the search with the same search options; the search on nothing."""
        if options.get("phase", "retrain") != "retrain":
            return {}
        search = {k: v for k, v in options.items() if k not in RETRAIN_ONLY}
        return {POLICY_RUN: Dependency("adashare", {**search, "phase": "search"})}

    def attach(self, role: str, run: LinkedRun) -> None:
        """Fix the retraining's policy from the search run's learned logits."""
        source = run.method
        if role != POLICY_RUN or self.phase != "retrain" or not isinstance(source, AdaShare) or source.phase != "search":
            raise ValueError(f"adashare (phase={self.phase}) takes only role {POLICY_RUN!r} with an adashare "
                             f"phase=search run; got {role!r} with {type(source).__name__} (run {run.run_id})")
        n_open = int(source.learned_blocks)
        if n_open == 0:
            raise ValueError(f"policy run {run.run_id} learned no policy: all its epochs were warm-up "
                             f"(warmup_epochs={source.warmup_epochs}); train with more --epochs or fewer warmup_epochs")
        logits = source.learned_logits.detach().cpu()
        if self.retrain_policy == "argmax":
            self._policy = deterministic_policy(logits, n_open)
        else:
            self._policy = sampled_policy(logits, n_open, self.sample_seed)
        rows = ", ".join(policy_string(row) for row in self._policy)
        log.info("adashare: policy of run %s (per task, first block first, 1 = execute): %s", run.run_id, rows)

    # ----- the hooks ------------------------------------------------------------------------
    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        blocks = residual_blocks(backbone)
        if self.phase == "retrain":
            return FixedPolicyNet(backbone, heads, blocks, self._policy)
        self.register_buffer("learned_logits", torch.zeros(len(heads), len(blocks), 2))
        self.register_buffer("learned_blocks", torch.zeros((), dtype=torch.long))
        schedule = Schedule(self.warmup_epochs, self.curriculum_speed, self.temperature, self.temperature_decay)
        return SearchNet(backbone, heads, blocks, schedule, self.hard_sampling)

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        model = ctx.model
        if not isinstance(model, SearchNet) or model.open_blocks() == 0:
            return task_losses  # retraining and warm-up: plain task losses over the whole batch
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
        model = ctx.model
        if not isinstance(model, SearchNet) or "sparsity" not in losses:
            super().backward(losses, ctx)
            return
        logits = model.policy_logits
        weights = [p for p in model.parameters() if p.requires_grad and p is not logits]
        weight_total = torch.stack([v for k, v in losses.items() if k in model.tasks]).sum()
        policy_total = torch.stack([v for k, v in losses.items() if k not in model.tasks]).sum()
        torch.autograd.backward(policy_total, inputs=[logits], retain_graph=True)
        torch.autograd.backward(weight_total, inputs=weights)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        if not isinstance(model, SearchNet):
            return super().param_groups(model)
        logits = model.policy_logits
        weights = [p for p in model.parameters() if p.requires_grad and p is not logits]
        return [{"params": weights},
                {"params": [logits], "lr": self.policy_lr, "weight_decay": self.policy_weight_decay}]

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Advance the search's schedule; after a policy epoch, keep its logits as the learned policy."""
        if not isinstance(model, SearchNet):
            return
        model.epochs_done.fill_(epoch + 1)
        n_open = model.schedule.open_blocks(epoch, len(model.gates))
        if n_open:
            self.learned_logits.copy_(model.policy_logits.detach())
            self.learned_blocks.fill_(n_open)
            probs = model.policy_logits.detach().softmax(dim=-1)[..., 0]
            log.info("adashare search, epoch %d: temperature %.3f, %d open blocks, P(execute) per task %s", epoch,
                     model.schedule.temperature_at(epoch), n_open, [[round(float(p), 3) for p in row] for row in probs])


def check_options(phase: str, warmup_epochs: int, curriculum_speed: int, temperature: float, decay: float,
                  depth_weights: str, fraction: float, retrain_policy: str, non_negative: tuple[float, ...]) -> None:
    """Raise one error naming every bad option."""
    problems = [(phase not in ("retrain", "search"), f"phase must be 'retrain' or 'search', got {phase!r}"),
                (warmup_epochs < 0, f"warmup_epochs must be >= 0, got {warmup_epochs}"),
                (curriculum_speed < 1, f"curriculum_speed must be >= 1, got {curriculum_speed}"),
                (temperature <= 0 or not 0 < decay <= 1,
                 f"temperature must be > 0 and temperature_decay in (0, 1], got {temperature}, {decay}"),
                (depth_weights not in ("increasing", "decreasing"),
                 f"sharing_depth_weights must be 'increasing' or 'decreasing', got {depth_weights!r}"),
                (not 0 < fraction < 1, f"policy_fraction must be in (0, 1), got {fraction}"),
                (retrain_policy not in ("argmax", "sample"), f"retrain_policy must be 'argmax' or 'sample', got {retrain_policy!r}"),
                (min(non_negative) < 0, "sparsity_weight, sharing_weight, policy_lr, policy_weight_decay must be >= 0")]
    errors = [message for bad, message in problems if bad]
    if errors:
        raise ValueError("adashare: " + "; ".join(errors))
