"""DM and SCA (Kollias et al., AAAI-24, Eqs. 2-6) by hand where the older fixtures coincide (issue 18).

- SCA's indicator I(c|x) (Eq. 4) divides by the weights of the *annotated* attributes only: with a
  partial annotation, dividing by all of a class's weights gives another number.
- L_DM and L_SCA are means over the batch's images: a batch of several images tells a mean from a sum
  or from a mean over entries, which a batch of one cannot.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datasets.affect_tables import ACTION_UNITS, EXPRESSIONS, affect_domain_prior
from methods.coupling import co_annotation_scores, dm_loss, sca_loss

C = {e: i for i, e in enumerate(EXPRESSIONS)}
AU = {a: i for i, a in enumerate(ACTION_UNITS)}


def _partially_annotated() -> tuple[torch.Tensor, torch.Tensor]:
    """Three images, each with a few AUs annotated (the rest missing, labels there set to garbage 1).

    0: only AU12 annotated, present.       1: AU12 absent, AU6 present.       2: AU1 present, AU4 absent.
    """
    labels = torch.ones(3, len(ACTION_UNITS), dtype=torch.float64)  # 1 where not annotated: must not count
    mask = torch.zeros(3, len(ACTION_UNITS), dtype=torch.bool)
    mask[0, AU[12]] = True
    mask[1, [AU[12], AU[6]]] = True
    labels[1, AU[12]] = 0
    mask[2, [AU[1], AU[4]]] = True
    labels[2, AU[4]] = 0
    return labels, mask


def _expected_scores() -> np.ndarray:
    """I(c|x) by hand from the prior's weights on the annotated AUs of each image (Eq. 4)."""
    expected = np.zeros((3, len(EXPRESSIONS)))
    expected[0, C["happiness"]] = 1.0 / 1.0               # AU12 alone: 1, not 1 / (1 + 1 + 0.51)
    expected[1, C["happiness"]] = 0.51 / (1.0 + 0.51)     # AU6 of {AU12, AU6}
    expected[1, C["sadness"]] = 0.5 / 0.5                 # sadness has AU6 only among the two
    expected[2, C["fear"]] = 1.0 / (1.0 + 1.0)            # AU1 of {AU1, AU4}
    expected[2, C["sadness"]] = 0.6 / (0.6 + 1.0)
    expected[2, C["surprise"]] = 1.0 / 1.0
    # anger (AU4 1.0, AU1 0): 0 / 1; disgust (AU4 0.31): 0 / 0.31; neutral: no weights, 0
    return expected


def test_indicator_divides_by_the_weights_of_the_annotated_attributes_only() -> None:
    """For 'happy' with only AU12 annotated and present, I(happy) = 1, not 1 / 2.51."""
    weights = torch.as_tensor(affect_domain_prior(), dtype=torch.float64)
    labels, mask = _partially_annotated()
    scores = co_annotation_scores(labels, mask, weights)
    assert scores[0, C["happiness"]].item() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(scores.numpy(), _expected_scores(), rtol=1e-12, atol=1e-15)


def test_sca_loss_with_partial_annotation_by_hand() -> None:
    """L_SCA (Eqs. 5-6) from hand-computed I on partially annotated images, plus one unannotated image."""
    weights = torch.as_tensor(affect_domain_prior(), dtype=torch.float64)
    labels, mask = _partially_annotated()
    labels = torch.cat([labels, torch.ones(1, len(ACTION_UNITS), dtype=torch.float64)])
    mask = torch.cat([mask, torch.zeros(1, len(ACTION_UNITS), dtype=torch.bool)])  # image 3: no AU labels
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, len(EXPRESSIONS), generator=gen, dtype=torch.float64)
    tau = 0.5
    i_by_hand = _expected_scores() / tau
    log_q = i_by_hand - np.log(np.exp(i_by_hand).sum(axis=1, keepdims=True))
    p = torch.softmax(logits[:3], dim=1).numpy()
    paper = float(np.mean(-(p * log_q).sum(axis=1)))  # mean over the 3 images with labels, not over 4
    soft = float(np.mean(-(np.exp(log_q) * np.log(p)).sum(axis=1)))
    assert sca_loss(logits, labels, mask, weights, temperature=tau).item() == pytest.approx(paper, rel=1e-10)
    assert sca_loss(logits, labels, mask, weights, temperature=tau, form="soft_target").item() == \
        pytest.approx(soft, rel=1e-10)


def test_dm_loss_by_hand_is_the_mean_over_a_batch_of_several_images() -> None:
    """L_DM (Eq. 3) over three images: the batch mean of per-image sums over attributes."""
    r = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    p_class = [[0.25, 0.75], [0.9, 0.1], [0.5, 0.5]]
    p_attr = [[0.5, 0.8], [0.1, 0.3], [0.7, 0.6]]
    # q = p_class @ r: [0.625, 0.375], [0.95, 0.05], [0.75, 0.25]
    q = [[0.625, 0.375], [0.95, 0.05], [0.75, 0.25]]
    paper_each = [-sum(p * math.log(qq) for p, qq in zip(pa, qa)) for pa, qa in zip(p_attr, q)]
    bern_each = [pe - sum((1 - p) * math.log(1 - qq) for p, qq in zip(pa, qa))
                 for pe, pa, qa in zip(paper_each, p_attr, q)]
    class_logits = torch.log(torch.tensor(p_class, dtype=torch.float64))
    attr_logits = torch.logit(torch.tensor(p_attr, dtype=torch.float64))
    paper = dm_loss(class_logits, attr_logits, r).item()
    bernoulli = dm_loss(class_logits, attr_logits, r, form="bernoulli").item()
    per_entry = dm_loss(class_logits, attr_logits, r, reduction="mean").item()
    assert paper == pytest.approx(sum(paper_each) / 3, rel=1e-12)  # not the sum over images, nor / (B * M)
    assert bernoulli == pytest.approx(sum(bern_each) / 3, rel=1e-12)
    assert per_entry == pytest.approx(sum(paper_each) / 6, rel=1e-12)  # reduction="mean": / M as well


def test_dm_class_mask_renormalises_over_a_batch_of_several_images() -> None:
    """With a class left out, p(c|x) is renormalised over the others before q (Eq. 2), image by image."""
    r = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)  # class 0 has no attributes
    p_class = torch.tensor([[0.5, 0.125, 0.375], [0.2, 0.72, 0.08]], dtype=torch.float64)
    attr = torch.tensor([[0.5, 0.8], [0.4, 0.2]], dtype=torch.float64)
    # renormalised over classes 1, 2: [0.25, 0.75] and [0.9, 0.1] -> q [0.625, 0.375] and [0.95, 0.05]
    expected = (-(0.5 * math.log(0.625) + 0.8 * math.log(0.375)) - (0.4 * math.log(0.95) + 0.2 * math.log(0.05))) / 2
    got = dm_loss(torch.log(p_class), torch.logit(attr), r, class_mask=torch.tensor([False, True, True]))
    assert got.item() == pytest.approx(expected, rel=1e-12)
