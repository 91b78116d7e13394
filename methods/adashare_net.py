"""AdaShare's network: a per-task execute/skip gate on every residual block of a timm ResNet.

Sun, Panda, Feris & Saenko, "AdaShare: Learning What To Share For Efficient Deep Multi-Task
Learning", NeurIPS 2020, Sec. 3. Shared by AdaShare's two methods: ``adashare_search``
(``methods/adashare_search.py``) builds :class:`SearchNet` for the policy search, ``adashare``
(``methods/adashare.py``) :class:`FixedPolicyNet` for the retraining.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.task_paths import PerTaskOutput, TaskPathModel

#: Backbones that work: timm's ResNet family (any model built of its BasicBlock / Bottleneck).
RESIDUAL_BACKBONES = "resnet18, resnet34, resnet50, resnet101, resnext50_32x4d, wide_resnet50_2, seresnet50"

#: A gate value: None executes the block, False skips it, a (2,) tensor mixes
#: ``g[0] * block(x) + g[1] * shortcut(x)`` (a Gumbel-softmax sample; column 0 is "execute").
Gate = Tensor | bool | None


def residual_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The residual blocks of ``backbone`` in execution order; an error names the backbones that have them.

    A block is any module of timm's ResNet block types (``BasicBlock``, ``Bottleneck``), found by
    walking the model, so every architecture built of them works without a per-architecture list.
    """
    from timm.models.resnet import BasicBlock, Bottleneck

    blocks = [m for m in backbone.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    if not blocks:
        raise ValueError(f"adashare needs a residual backbone, and {type(backbone).__name__} has no timm ResNet "
                         f"block (BasicBlock/Bottleneck) to skip; use --backbone with one of {RESIDUAL_BACKBONES} "
                         f"(the built-in smallcnn has no residual connections)")
    return blocks


class BlockGate(nn.Module):
    """The execute/skip gate of one residual block, set before each pass; it holds no parameters or buffers.

    Being a child of the block without state, it leaves the backbone's state_dict keys unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.value: Gate = None
        self.shortcut: Tensor | None = None  # the block's own downsample(x), captured during a mixed pass

    def capture(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        """Forward hook on the block's downsample: keep its output so a mixed pass does not run it twice."""
        if isinstance(self.value, Tensor):
            self.shortcut = output


def _gated_forward(block: nn.Module, x: Tensor) -> Tensor:
    """A residual block's forward under its gate; skipping passes x through the block's shortcut.

    The shortcut is the identity, or the block's own ``downsample`` where the block changes shape
    (as AdaShare's released code skips a downsampling block through its projection).
    """
    gate: BlockGate = block.adashare_gate
    if gate.value is None or gate.value is True:
        return type(block).forward(block, x)
    if gate.value is False:  # a skipped block is never run
        return x if block.downsample is None else block.downsample(x)
    gate.shortcut = None
    executed = type(block).forward(block, x)
    shortcut = x if block.downsample is None else gate.shortcut
    gate.shortcut = None
    return gate.value[0] * executed + gate.value[1] * shortcut


def install_gates(blocks: Sequence[nn.Module]) -> list[BlockGate]:
    """Give each block a :class:`BlockGate` and route its forward through it; returns the gates."""
    gates = []
    for block in blocks:
        gate = BlockGate()
        block.adashare_gate = gate
        # an instance attribute shadows the class's forward; partial (not a closure) so deepcopy rebinds it
        block.forward = functools.partial(_gated_forward, block)
        if block.downsample is not None:
            block.downsample.register_forward_hook(gate.capture)
        gates.append(gate)
    return gates


@dataclass(frozen=True)
class Schedule:
    """AdaShare's phases by epoch: warm-up, then policy epochs with a temperature and a curriculum.

    Args:
        warmup_epochs: epochs with every block executed and no policy.
        curriculum_speed: policy epochs per block opened; policy epoch p lets the last
            ``p // curriculum_speed + 1`` blocks follow the policy (the rest are executed).
        temperature: Gumbel-softmax temperature in the first policy epoch.
        temperature_decay: factor applied to the temperature after each policy epoch.
    """

    warmup_epochs: int
    curriculum_speed: int
    temperature: float
    temperature_decay: float

    def policy_epoch(self, epoch: int) -> int:
        """Index of ``epoch`` among the policy epochs; negative during warm-up."""
        return epoch - self.warmup_epochs

    def open_blocks(self, epoch: int, n_blocks: int) -> int:
        """How many blocks, counted from the last, follow the policy in ``epoch`` (0 in warm-up)."""
        p = self.policy_epoch(epoch)
        return 0 if p < 0 else min(n_blocks, p // self.curriculum_speed + 1)

    def temperature_at(self, epoch: int) -> float:
        """The Gumbel-softmax temperature of ``epoch`` (the initial one until the first policy epoch)."""
        return self.temperature * self.temperature_decay ** max(self.policy_epoch(epoch), 0)


def deterministic_policy(logits: Tensor, open_blocks: int) -> Tensor:
    """(T, L) bool, True = execute: argmax of each open block's logits (ties execute); the others execute."""
    execute = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
    if open_blocks:
        tail = logits[:, -open_blocks:]  # (T, k, 2)
        execute[:, -open_blocks:] = tail[..., 0] >= tail[..., 1]
    return execute


def sampled_policy(logits: Tensor, open_blocks: int, seed: int) -> Tensor:
    """(T, L) bool: each open block executed with its learned probability softmax(logits)[0], seeded."""
    execute = torch.ones(logits.shape[:2], dtype=torch.bool)
    if open_blocks:
        p_execute = logits[:, -open_blocks:].detach().float().cpu().softmax(dim=-1)[..., 0]
        draws = torch.rand(p_execute.shape, generator=torch.Generator().manual_seed(seed))
        execute[:, -open_blocks:] = draws < p_execute
    return execute


def sparsity_loss(logits: Tensor, open_blocks: int) -> Tensor:
    """Σ_tasks mean over the open blocks of CE(logits, skip): pushes each open block towards skipping."""
    tail = logits[:, -open_blocks:]  # (T, k, 2)
    skip = torch.ones(tail.shape[0] * tail.shape[1], dtype=torch.long, device=logits.device)
    per_block = F.cross_entropy(tail.reshape(-1, 2), skip, reduction="none").view(tail.shape[:2])  # (T, k)
    return per_block.mean(dim=1).sum()


def sharing_loss(logits: Tensor, depth_weights: str = "increasing") -> Tensor:
    """Σ_{i<j} Σ_l w_l |logits[i, l, 0] - logits[j, l, 0]| over every block l = 1..L.

    ``increasing``: w_l = l / L (AdaShare's released code); ``decreasing``: w_l = (L - l + 1) / L.
    """
    n_tasks, n_blocks = logits.shape[:2]
    depth = torch.arange(1, n_blocks + 1, dtype=logits.dtype, device=logits.device)
    weights = depth / n_blocks if depth_weights == "increasing" else (n_blocks - depth + 1) / n_blocks
    total = logits.new_zeros(())
    for i in range(n_tasks):
        for j in range(i + 1, n_tasks):
            total = total + (weights * (logits[i, :, 0] - logits[j, :, 0]).abs()).sum()
    return total


def policy_samples(index: Tensor, seed: int, fraction: float) -> Tensor:
    """(B,) bool: the samples whose loss updates the policy; the others update the weights.

    A fixed split of the training set by a seeded integer hash of each sample's index, so a
    sample is on the same side in every epoch, as AdaShare's two disjoint training subsets.
    """
    mask32 = 0xFFFFFFFF
    x = (index.to(torch.int64) + seed * 0x632BE5AB) & mask32
    for _ in range(2):  # a 32-bit integer mix (xor-shift-multiply); products stay below 2**63
        x = (((x >> 16) ^ x) * 0x45D9F3B) & mask32
    x = (x >> 16) ^ x
    return x.double() / 2.0 ** 32 < fraction


class GatedNet(TaskPathModel):
    """One backbone pass per task with that task's gate on every residual block."""

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict, blocks: Sequence[nn.Module]) -> None:
        super().__init__(backbone, heads)
        self.blocks = list(blocks)  # plain lists: blocks and gates are registered inside the backbone
        self.gates = install_gates(blocks)

    def gate_values(self, task_index: int) -> list[Gate]:
        raise NotImplementedError

    def route(self, task_index: int) -> None:
        for gate, value in zip(self.gates, self.gate_values(task_index)):
            gate.value = value

    def forward(self, inputs: Tensor, tasks: Sequence[str] | None = None) -> PerTaskOutput:
        try:
            return super().forward(inputs, tasks)
        finally:  # no sample tensor stays on the gates: the model deep-copies, and a bare backbone call executes all
            for gate in self.gates:
                gate.value, gate.shortcut = None, None

    def execution_counts(self) -> list[int]:
        """Per block, how many tasks execute it under the deterministic policy (for parameter counts)."""
        raise NotImplementedError


class SearchNet(GatedNet):
    """The policy-search network: learnable policy logits (T, L, 2), sampled with Gumbel-softmax in training.

    ``epochs_done`` (set by ``adashare_search`` at each epoch's end) places it in the schedule: training
    runs epoch ``epochs_done``; evaluation uses the deterministic policy of the last trained epoch.
    """

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict, blocks: Sequence[nn.Module],
                 schedule: Schedule, hard_sampling: bool = False) -> None:
        super().__init__(backbone, heads, blocks)
        self.schedule = schedule
        self.hard_sampling = hard_sampling
        # equal logits: execute and skip start equally likely (the released code's "equal" initialisation)
        self.policy_logits = nn.Parameter(torch.full((len(heads), len(blocks), 2), 0.5))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    def current_epoch(self) -> int:
        """The epoch whose schedule applies: the one being trained, or in eval mode the last trained."""
        done = int(self.epochs_done)
        return done if self.training else max(done - 1, 0)

    def open_blocks(self) -> int:
        return self.schedule.open_blocks(self.current_epoch(), len(self.gates))

    def gate_values(self, task_index: int) -> list[Gate]:
        n_open = self.open_blocks()
        closed: list[Gate] = [None] * (len(self.gates) - n_open)
        if n_open == 0:
            return closed
        if self.training:
            tau = self.schedule.temperature_at(self.current_epoch())
            sample = F.gumbel_softmax(self.policy_logits[task_index, -n_open:], tau=tau, hard=self.hard_sampling)
            return closed + list(sample.unbind(0))  # (k, 2) -> k gates of (2,)
        execute = deterministic_policy(self.policy_logits.detach(), n_open)[task_index, -n_open:]
        return closed + [None if e else False for e in execute.tolist()]

    def execution_counts(self) -> list[int]:
        return deterministic_policy(self.policy_logits.detach(), self.open_blocks()).sum(dim=0).tolist()


class FixedPolicyNet(GatedNet):
    """The retraining network: a fixed (T, L) execute/skip policy held as a buffer (1 execute, 0 skip, -1 unset)."""

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict, blocks: Sequence[nn.Module],
                 policy: Tensor | None) -> None:
        super().__init__(backbone, heads, blocks)
        shape = (len(heads), len(blocks))
        if policy is not None and tuple(policy.shape) != shape:
            raise ValueError(f"adashare: the policy run's policy is {tuple(policy.shape)} (tasks x blocks) but this "
                             f"network has {shape}; the policy run must use the same db and backbone")
        initial = torch.full(shape, -1, dtype=torch.int8) if policy is None else policy.to(torch.int8)
        self.register_buffer("policy", initial)

    def gate_values(self, task_index: int) -> list[Gate]:
        if bool((self.policy < 0).any()):
            raise RuntimeError("adashare (the retraining) has no policy: run it through the runner ('python -m "
                               "benchmark run --method adashare ...' trains or reuses its policy search), or attach "
                               "a LinkedRun with role 'policy_run' before build, or load a retrained state_dict")
        return [None if bool(e) else False for e in self.policy[task_index]]

    def execution_counts(self) -> list[int]:
        return self.policy.clamp_min(0).sum(dim=0).tolist()


def policy_string(execute: Tensor) -> str:
    """A policy row as a string of 1 (execute) and 0 (skip), first block first."""
    return "".join("1" if bool(e) else "0" for e in execute)


def used_parameters(model: GatedNet) -> int:
    """Parameters some task uses under the deterministic policy: a block no task executes counts only its shortcut."""
    total = sum(p.numel() for p in model.parameters())
    for block, n_tasks in zip(model.blocks, model.execution_counts()):
        if n_tasks == 0:
            shortcut = 0 if block.downsample is None else sum(p.numel() for p in block.downsample.parameters())
            total -= sum(p.numel() for p in block.parameters()) - shortcut
    return total
