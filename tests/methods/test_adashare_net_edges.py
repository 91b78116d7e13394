"""AdaShare's network at its edges, on a three-block timm ResNet small enough to count by hand.

Boundaries of the schedule and of the evaluation epoch, ties and certainties of the policy, the
pairs of L_sharing, the stored weight/policy split, the parameter counts of a policy, and the
options a search rebuilt from its stored name (``adashare`` with ``phase=search``) reports.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from timm.models.resnet import BasicBlock
from torch import nn

from methods.adashare import AdaShare
from methods.adashare_search import AdaShareSearch
from methods.adashare_net import (FixedPolicyNet, Schedule, SearchNet, deterministic_policy, policy_samples,
                                  policy_string, residual_blocks, sampled_policy, sharing_loss, used_parameters)

# Parameter counts of the tiny backbone (timm's convolutions have no bias):
STEM = 3 * 4 * 9                                     # 3x3 conv, 3 -> 4 channels
PLAIN = 2 * (4 * 4 * 9) + 2 * 2 * 4                  # BasicBlock(4, 4): two 3x3 convs and two BNs = 304
SHORTCUT = 4 * 8 + 2 * 8                             # 1x1 conv 4 -> 8 and its BN = 48
DOWN = 4 * 8 * 9 + 8 * 8 * 9 + 2 * 2 * 8 + SHORTCUT  # BasicBlock(4, 8, stride 2) with its downsample = 944
WIDE = 2 * (8 * 8 * 9) + 2 * 2 * 8                   # BasicBlock(8, 8) = 1184
HEADS = (8 * 3 + 3) + (8 * 2 + 2)                    # Linear(8, 3) and Linear(8, 2)
TOTAL = STEM + PLAIN + DOWN + WIDE + HEADS           # 2585


def _backbone() -> nn.Module:
    """Stem, a shape-keeping block, a downsampling block (with a projection shortcut), a wider block, pooling."""
    down = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), BasicBlock(4, 4),
                         BasicBlock(4, 8, stride=2, downsample=down), BasicBlock(8, 8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    backbone = _backbone()
    heads = nn.ModuleDict({"a": nn.Linear(8, 3), "b": nn.Linear(8, 2)})
    return backbone, heads, residual_blocks(backbone)


def _fixed(policy) -> FixedPolicyNet:
    backbone, heads, blocks = _parts()
    return FixedPolicyNet(backbone, heads, blocks, None if policy is None else torch.tensor(policy))


def _search(warmup_epochs: int = 0, curriculum_speed: int = 1, **kwargs) -> SearchNet:
    backbone, heads, blocks = _parts()
    return SearchNet(backbone, heads, blocks, Schedule(warmup_epochs, curriculum_speed, 5.0, 0.965), **kwargs)


def test_the_tiny_backbone_has_the_counted_parameters():
    backbone, heads, blocks = _parts()
    assert [sum(p.numel() for p in b.parameters()) for b in blocks] == [PLAIN, DOWN, WIDE]
    assert sum(p.numel() for p in backbone.parameters()) + sum(p.numel() for p in heads.parameters()) == TOTAL == 2585


# ----- the schedule -----------------------------------------------------------------------------
def test_a_schedule_is_frozen():
    schedule = Schedule(warmup_epochs=1, curriculum_speed=3, temperature=5.0, temperature_decay=0.965)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.warmup_epochs = 0  # type: ignore[misc]
    assert schedule.warmup_epochs == 1


def test_the_schedule_at_the_first_policy_epoch():
    schedule = Schedule(warmup_epochs=3, curriculum_speed=2, temperature=4.0, temperature_decay=0.5)
    assert [schedule.policy_epoch(e) for e in (0, 2, 3, 4)] == [-3, -1, 0, 1]
    assert [schedule.open_blocks(e, 3) for e in range(10)] == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert [schedule.temperature_at(e) for e in (0, 2, 3, 4, 5)] == [4.0, 4.0, 4.0, 2.0, 1.0]


# ----- the search network -------------------------------------------------------------------------
def test_the_search_starts_from_equal_logits_of_one_half():
    net = _search()
    # the released code's "equal" initialisation: 0.5 for execute and skip of every block of every task
    assert torch.equal(net.policy_logits.detach(), torch.full((2, 3, 2), 0.5))
    assert torch.equal(net.policy_logits.detach().softmax(-1), torch.full((2, 3, 2), 0.5))


def test_the_search_samples_soft_gates_unless_asked_for_hard_ones():
    net = _search()  # hard_sampling left at its default
    assert net.hard_sampling is False
    net.train()
    torch.manual_seed(0)
    net.epochs_done.fill_(5)  # every block open
    for task in (0, 1):
        values = [v.detach() for v in net.gate_values(task)]
        assert len(values) == 3 and all(isinstance(v, torch.Tensor) and v.shape == (2,) for v in values)
        assert all(0 < float(v[0]) < 1 and 0 < float(v[1]) < 1 for v in values)  # soft, not one-hot
    hard = _search(hard_sampling=True)
    hard.train()
    hard.epochs_done.fill_(5)
    assert all(sorted(v.tolist()) == pytest.approx([0.0, 1.0], abs=1e-6) for v in hard.gate_values(0))  # one-hot


def test_evaluation_uses_the_epoch_last_trained_and_epoch_zero_before_any():
    net = _search(warmup_epochs=1, curriculum_speed=1)
    cases = {0: (0, 0), 1: (1, 0), 2: (2, 1), 5: (5, 4)}  # epochs_done: (training epoch, evaluated epoch)
    for done, (trained, evaluated) in cases.items():
        net.epochs_done.fill_(done)
        net.train()
        assert net.current_epoch() == trained
        net.eval()
        assert net.current_epoch() == evaluated
        assert net.open_blocks() == Schedule(1, 1, 5.0, 0.965).open_blocks(evaluated, 3)
    # after one warm-up epoch the evaluation still runs every block, whatever the logits say
    net.epochs_done.fill_(1)
    with torch.no_grad():
        net.policy_logits[..., 1] = 9.0  # skip favoured everywhere
    assert net.gate_values(0) == net.gate_values(1) == [None, None, None]
    assert net.execution_counts() == [2, 2, 2]
    # without warm-up, the evaluation before any epoch is that of epoch 0: the last block follows the policy
    fresh = _search(warmup_epochs=0, curriculum_speed=1)
    with torch.no_grad():
        fresh.policy_logits[..., 1] = 9.0
    fresh.eval()
    assert fresh.current_epoch() == 0 and fresh.open_blocks() == 1
    assert fresh.gate_values(0) == [None, None, False]


def test_search_execution_counts_are_per_block():
    net = _search(warmup_epochs=0, curriculum_speed=1)
    with torch.no_grad():
        net.policy_logits.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],
                                              [[0.0, 1.0], [2.0, 2.0], [0.0, 1.0]]]))
    net.eval()
    net.epochs_done.fill_(9)  # all three blocks open
    # block 1: task a only; block 2: task b only (a tie executes); block 3: nobody
    assert net.execution_counts() == [1, 1, 0]
    net.epochs_done.fill_(2)  # evaluates epoch 1: the last two blocks open, block 1 executed by both
    assert net.execution_counts() == [2, 1, 0]
    assert used_parameters(net) == TOTAL + 12 - WIDE  # + the (2, 3, 2) logits; block 3 has no shortcut


# ----- the policy ---------------------------------------------------------------------------------
def test_tied_logits_execute():
    logits = torch.full((2, 3, 2), 0.5)  # the initial logits: execute and skip equally likely
    assert deterministic_policy(logits, 3).all()
    logits[1, 2, 1] = 0.5 + 1e-6  # skip barely ahead: that block is skipped, the tie next to it executed
    assert deterministic_policy(logits, 3).tolist() == [[True, True, True], [True, True, False]]
    assert deterministic_policy(logits, 1).tolist() == [[True, True, True], [True, True, False]]


def test_a_block_that_prefers_skipping_is_never_drawn_for_every_task():
    logits = torch.zeros(2, 8, 2)
    logits[..., 1] = 30.0  # every task of every block: skip with probability 1 - e^-30
    for seed in range(20):
        assert not sampled_policy(logits, 8, seed).any()
    logits[1, :, :] = torch.tensor([30.0, 0.0])  # task b now executes with probability 1 - e^-30
    for seed in range(20):
        assert sampled_policy(logits, 8, seed).tolist() == [[False] * 8, [True] * 8]


def test_a_block_of_execute_probability_zero_is_never_drawn_even_by_a_draw_of_zero():
    logits = torch.zeros(2, 64, 2)
    logits[..., 0] = -math.inf  # P(execute) = 0 exactly
    seed = 145792  # its uniform draws for a (2, 64) policy include exactly 0.0, at task 1, block 62
    draws = torch.rand((2, 64), generator=torch.Generator().manual_seed(seed))
    assert float(draws[1, 62]) == 0.0
    assert not sampled_policy(logits, 64, seed).any()
    logits[..., 0], logits[..., 1] = 0.0, -math.inf  # P(execute) = 1: every draw (< 1) executes
    assert sampled_policy(logits, 64, seed).all()


def test_policy_string_is_first_block_first_with_1_for_execute():
    assert policy_string(torch.tensor([True, False, False, True, True])) == "10011"
    assert policy_string(torch.tensor([1, 0], dtype=torch.int8)) == "10"
    assert policy_string(torch.tensor([], dtype=torch.bool)) == ""


# ----- the policy losses --------------------------------------------------------------------------
def test_sharing_loss_compares_the_execute_logits_only():
    logits = torch.tensor([[[1.0, 5.0], [0.0, 0.0]],
                           [[1.0, -3.0], [2.0, 7.0]]])  # execute logits differ by 0 (block 1) and 2 (block 2)
    assert math.isclose(float(sharing_loss(logits, "increasing")), 0 * 1 / 2 + 2 * 2 / 2)
    assert math.isclose(float(sharing_loss(logits, "decreasing")), 0 * 2 / 2 + 2 * 1 / 2)
    three = torch.zeros(3, 1, 2)
    three[:, 0, 0] = torch.tensor([0.0, 1.0, 3.0])
    three[:, 0, 1] = torch.tensor([9.0, -9.0, 4.0])
    assert math.isclose(float(sharing_loss(three)), 1 + 3 + 2)  # the three pairs, each once


def test_a_single_task_has_no_pair_to_share_with():
    assert float(sharing_loss(torch.tensor([[[0.5, 0.5], [2.0, -1.0]]]))) == 0.0
    # an empty sum, not a task compared with itself: even a task certain to execute block 1 gives 0, not NaN
    assert float(sharing_loss(torch.tensor([[[math.inf, 0.0], [2.0, -1.0]]]))) == 0.0


# ----- the weight/policy split ------------------------------------------------------------------
#: The split of samples 0..63, '1' = updates the policy: part of what a stored search was trained with.
GOLDEN_SPLIT = {
    (0, 0.5): "1110010101110110111000111001100111101101100110001011001110011000",
    (0, 0.25): "1100010101010010111000101001100001101101100010001000001000000000",
    (1, 0.5): "1101001110111111100110110010100101101100101001010110010111111001",
    (1, 0.25): "1001001100001001100110110010100001100100100001010100010001000000",
    (12345, 0.5): "1001001000000010111011010101111111001011110000100010001011100000",
    (12345, 0.25): "1001000000000000101001000101100010000000100000000000000001100000",
}


@pytest.mark.parametrize("seed, fraction", GOLDEN_SPLIT)
def test_the_split_is_the_stored_one(seed, fraction):
    split = policy_samples(torch.arange(64), seed, fraction)
    assert "".join("1" if s else "0" for s in split.tolist()) == GOLDEN_SPLIT[seed, fraction]


def test_the_split_at_a_fraction_that_reads_every_bit_of_the_hash():
    # 0.5 and 0.25 read only the top bits of a sample's 32-bit hash; 0.3 and 0.7 read all of them
    index = torch.arange(2 ** 20)
    for seed, fraction, count, index_sum in ((0, 0.3, 314316, 164794623627), (1, 0.7, 733920, 384778002333)):
        split = policy_samples(index, seed, fraction)
        assert (int(split.sum()), int(index[split].sum())) == (count, index_sum)


def test_the_split_at_fractions_zero_and_one():
    index = torch.arange(4096)
    for seed in (0, 1, 7):
        # fraction 0: no sample updates the policy, not even index 0, whose hash under seed 0 is exactly 0
        assert not policy_samples(index, seed, 0.0).any()
        assert policy_samples(index, seed, 1.0).all()
    assert bool(policy_samples(torch.tensor([0]), 0, 1e-300))  # hash 0: on the policy side for any fraction > 0


# ----- the retraining network -------------------------------------------------------------------
def test_an_unset_policy_is_minus_one_and_executes_nothing():
    net = _fixed(None)
    assert net.policy.dtype == torch.int8 and torch.equal(net.policy, torch.full((2, 3), -1, dtype=torch.int8))
    assert net.execution_counts() == [0, 0, 0]
    with pytest.raises(RuntimeError, match="has no policy"):
        net(torch.randn(1, 3, 8, 8))


def test_a_policy_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"policy is \(2, 4\).*network has \(2, 3\)"):
        _fixed([[1, 1, 1, 1], [1, 1, 1, 1]])


def test_fixed_execution_counts_and_used_parameters_by_hand():
    cases = {  # policy (task a, task b): (tasks per block, parameters used)
        ((1, 0, 0), (0, 0, 1)): ([1, 0, 1], TOTAL - (DOWN - SHORTCUT)),  # block 2 skipped, its projection kept
        ((0, 1, 1), (0, 1, 0)): ([0, 2, 1], TOTAL - PLAIN),              # block 1: identity shortcut, nothing kept
        ((0, 0, 0), (0, 0, 0)): ([0, 0, 0], STEM + SHORTCUT + HEADS),
        ((1, 1, 1), (1, 1, 1)): ([2, 2, 2], TOTAL),
    }
    for policy, (counts, used) in cases.items():
        net = _fixed(policy)
        assert net.execution_counts() == counts, policy
        assert used_parameters(net) == used, policy
    assert STEM + SHORTCUT + HEADS == 201


def test_a_bare_backbone_call_after_a_routed_pass_executes_every_block():
    net = _fixed([[1, 0, 1], [0, 1, 0]])  # task b, run last, skips blocks 1 and 3
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        every_block = net.backbone(x)
        out = net(x)
        assert not torch.allclose(out.task_features["b"], every_block)
        assert torch.equal(net.backbone(x), every_block)
    assert all(g.value is None and g.shortcut is None for g in net.gates)
    search = _search()
    search.train()
    search.epochs_done.fill_(5)
    search(torch.randn(2, 3, 8, 8))  # soft Gumbel gates on every block
    assert all(g.value is None and g.shortcut is None for g in search.gates)


# ----- the retraining's options as a rebuilt search -----------------------------------------------
def test_a_search_rebuilt_from_its_stored_name_reports_the_stored_defaults():
    rebuilt = AdaShare(phase="search")
    assert type(rebuilt) is AdaShareSearch
    assert rebuilt.hparams() == {**AdaShare().hparams(), "phase": "search"}
    assert rebuilt.stored_as == {"phase": "search", "retrain_policy": "argmax", "sample_seed": 0}
    assert AdaShare(phase="search", sample_seed=3).hparams()["sample_seed"] == 3
