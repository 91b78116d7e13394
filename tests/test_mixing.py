"""MixAugment / mixup under missing labels: partners within annotation groups, soft targets only where both
partners are annotated, the mixup loss identity, and the loader wiring (``benchmark/mixing.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.data import AUGMENTATIONS, augmentation, make_loader
from benchmark.mixing import BatchMixer, annotation_groups, beta_draw, cutmix_inputs, mix_targets, partners
from benchmark.tasks import Batch, TaskSpec, masked_binary_cross_entropy, masked_cross_entropy, task_loss
from datasets.base import TensorTaskDataset

N_CLASSES, N_ATTR = 4, 3


def joined_batch(n: int = 12) -> Batch:
    """Rows 0..5 carry only a class (dataset A), rows 6..11 only attributes (dataset B; attribute 2 never)."""
    g = torch.Generator().manual_seed(0)
    inputs = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, 4, 4).clone()
    cls = torch.where(torch.arange(n) < n // 2, torch.arange(n) % N_CLASSES, torch.tensor(-1))
    attr = torch.randint(0, 2, (n, N_ATTR), generator=g).float()
    attr_mask = (torch.arange(n) >= n // 2)[:, None].expand(n, N_ATTR).clone()
    attr_mask[:, 2] = False
    attr[~attr_mask] = 0.0
    return Batch(inputs, {"classes": cls, "attributes": attr}, {"classes": cls >= 0, "attributes": attr_mask},
                 torch.arange(n))


def test_partners_stay_within_annotation_groups():
    batch = joined_batch()
    groups = annotation_groups(batch)
    assert groups[:6].unique().numel() == 1 and groups[6:].unique().numel() == 1 and groups[0] != groups[6]
    for seed in range(5):
        partner = partners(groups, torch.Generator().manual_seed(seed))
        assert sorted(partner.tolist()) == list(range(12)), "a permutation"
        assert (groups[partner] == groups).all(), "an expression-only image is never mixed with an AU-only one"


def replay(batch: Batch, seed: int) -> tuple[float, torch.Tensor, torch.Generator]:
    """The lam and partners ``BatchMixer.mix`` draws from a generator seeded ``seed`` (same order)."""
    g = torch.Generator().manual_seed(seed)
    lam = beta_draw(1.0, g)
    return lam, partners(annotation_groups(batch), g), g


def test_mixaugment_keeps_real_rows_and_adds_virtual_ones_with_lam_mixed_targets():
    batch = joined_batch()
    mixer = BatchMixer(mode="mixup", keep_real=True, flip=False)
    mixer.num_classes = {"classes": N_CLASSES}
    out = mixer.mix(batch, torch.Generator().manual_seed(3))
    lam, partner, _ = replay(batch, 3)
    assert 0 < lam < 1 and (partner != torch.arange(12)).any()
    assert len(out) == 24 and torch.equal(out.inputs[:12], batch.inputs), "MixAugment: the real rows, then the virtual"
    assert torch.allclose(out.inputs[12:], lam * batch.inputs + (1 - lam) * batch.inputs[partner])
    real_cls = out.targets["classes"][:12]
    assert real_cls.shape == (12, N_CLASSES) and torch.equal(real_cls[:6].argmax(1), batch.targets["classes"][:6])
    assert torch.equal(out.masks["classes"][:12], batch.masks["classes"])
    one_hot = F.one_hot(batch.targets["classes"][:6], N_CLASSES).float()
    expected = lam * one_hot + (1 - lam) * one_hot[partner[:6]]
    assert torch.allclose(out.targets["classes"][12:18], expected)
    cls_mask, attr_mask = out.masks["classes"][12:], out.masks["attributes"][12:]
    assert cls_mask[:6].all() and not cls_mask[6:].any(), "classes known exactly where both partners had one"
    assert attr_mask[6:, :2].all() and not attr_mask[:, 2].any() and not attr_mask[:6].any()
    attr = batch.targets["attributes"]
    assert torch.allclose(out.targets["attributes"][18:, :2], (lam * attr + (1 - lam) * attr[partner])[6:, :2])
    assert torch.equal(out.index[12:], batch.index), "a virtual row keeps its first image's index"


def test_virtual_targets_are_the_lam_mix_where_both_are_annotated():
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    mixed, both = mix_targets(target, mask, torch.tensor([1, 0, 2]), 0.25, None)
    assert both.tolist() == [[True, False], [True, False], [True, True]]
    assert mixed.tolist() == [[0.25, 0.0], [0.75, 0.0], [1.0, 1.0]]  # 0.25*y_i + 0.75*y_partner; 0 where masked
    cls, known = mix_targets(torch.tensor([2, 0, -1]), torch.tensor([True, True, False]), torch.tensor([1, 0, 2]), 0.25, 3)
    assert known.tolist() == [True, True, False]
    assert cls.tolist() == [[0.75, 0.0, 0.25], [0.25, 0.0, 0.75], [0.0, 0.0, 0.0]]


def test_soft_target_losses_equal_the_mixup_loss():
    """CE(p, lam*a + (1-lam)*b) = lam*CE(p, a) + (1-lam)*CE(p, b), and the same for BCE (linear in the target)."""
    g = torch.Generator().manual_seed(1)
    logits, lam = torch.randn(5, N_CLASSES, generator=g), 0.3
    a, b = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([3, 3, 0, 1, 1])
    soft = lam * F.one_hot(a, N_CLASSES).float() + (1 - lam) * F.one_hot(b, N_CLASSES).float()
    mask = torch.tensor([True, True, False, True, True])
    expected = lam * F.cross_entropy(logits[mask], a[mask]) + (1 - lam) * F.cross_entropy(logits[mask], b[mask])
    assert masked_cross_entropy(logits, soft, mask) == pytest.approx(float(expected), abs=1e-6)
    assert masked_cross_entropy(logits, soft[:, :2] * 0, torch.zeros(5, dtype=torch.bool)) == 0.0
    narrow = F.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).float()  # K = 2 < N = 4: padded with zeros
    assert masked_cross_entropy(logits, narrow, mask) == pytest.approx(
        float(F.cross_entropy(logits[mask], torch.tensor([0, 1, 1, 0, 1])[mask])), abs=1e-6)
    attr_logits, ya, yb = torch.randn(5, 3, generator=g), torch.randint(0, 2, (5, 3), generator=g).float(), \
        torch.randint(0, 2, (5, 3), generator=g).float()
    amask = torch.rand(5, 3, generator=g) > 0.3
    mixed = masked_binary_cross_entropy(attr_logits, lam * ya + (1 - lam) * yb, amask)
    parts = lam * masked_binary_cross_entropy(attr_logits, ya, amask) + (1 - lam) * masked_binary_cross_entropy(attr_logits, yb, amask)
    assert float(mixed) == pytest.approx(float(parts), abs=1e-6)
    spec = TaskSpec("c", "multiclass", tuple("abcd"))
    assert task_loss(spec, logits, soft, mask) == pytest.approx(float(expected), abs=1e-6)


def test_cutmix_pastes_a_box_and_lam_is_the_area_left():
    batch = joined_batch()
    batch.inputs = batch.inputs[:, :, :1, :1].expand(12, 3, 16, 16).clone()
    out = BatchMixer(mode="cutmix", keep_real=False, flip=False).mix(batch, torch.Generator().manual_seed(7))
    lam, partner, g = replay(batch, 7)
    expected, area_left = cutmix_inputs(batch.inputs, partner, lam, g)
    assert len(out) == 12 and torch.equal(out.inputs, expected)
    moved = [r for r in range(6) if partner[r] != r and batch.targets["classes"][r] != batch.targets["classes"][partner[r]]]
    assert moved, "the seed gives some rows a partner of another class"
    for r in moved:
        pasted = float((out.inputs[r, 0] != batch.inputs[r, 0]).float().mean())  # the box's share of the image
        assert area_left == pytest.approx(1 - pasted)
        assert float(out.targets["classes"][r, batch.targets["classes"][r]]) == pytest.approx(area_left)


def test_beta_draw_is_seeded_and_in_range():
    draws = [beta_draw(1.0, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(0 <= d <= 1 for d in draws) and len(set(draws)) > 10
    assert beta_draw(0.4, torch.Generator().manual_seed(2)) == beta_draw(0.4, torch.Generator().manual_seed(2))


def test_loader_mixes_training_batches_only_and_repeatably():
    batch = joined_batch()
    assert {"mixup", "mixaugment", "mixaugment_cutmix"} <= set(AUGMENTATIONS)
    data = TensorTaskDataset(batch.inputs, batch.targets, batch.masks)
    data.transform = augmentation("mixaugment")

    def first(seed: int) -> Batch:
        torch.manual_seed(seed)
        return next(iter(make_loader(data, 6, train=True, generator=torch.Generator().manual_seed(seed), workers=0)))

    one, two = first(0), first(0)
    assert len(one) == 12 and torch.equal(one.inputs, two.inputs) and torch.equal(one.targets["classes"], two.targets["classes"])
    assert one.targets["classes"].shape == (12, N_CLASSES) and one.targets["classes"].is_floating_point()
    evaluation = next(iter(make_loader(data, 6, train=False, workers=0)))
    assert len(evaluation) == 6 and not evaluation.targets["classes"].is_floating_point()
