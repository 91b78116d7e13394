"""DM and SCA coupling (Kollias et al., AAAI-24, Eqs. 2-6): hand-computed values, gradients, masks, numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datasets.affect_tables import ACTION_UNITS, EXPRESSIONS, affect_domain_prior
from methods.coupling import attribute_distribution, co_annotation_scores, dm_loss, sca_loss

HAPPY = EXPRESSIONS.index("happiness")
AU = {a: i for i, a in enumerate(ACTION_UNITS)}


def logits_for(p: list[list[float]]) -> torch.Tensor:
    """Class logits whose softmax is ``p``."""
    return torch.log(torch.tensor(p, dtype=torch.float64))


def test_paper_example_happy_implies_au12_au25_au6():
    binary = torch.as_tensor(affect_domain_prior() > 0, dtype=torch.float64)
    p_class = torch.zeros(1, 7, dtype=torch.float64)
    p_class[0, HAPPY] = 1.0
    q = attribute_distribution(p_class, binary)[0]
    expected = torch.zeros(17, dtype=torch.float64)
    expected[[AU[12], AU[25], AU[6]]] = 1.0
    assert torch.equal(q, expected)


def test_paper_example_soft_co_annotation_of_happy():
    weights = torch.as_tensor(affect_domain_prior(), dtype=torch.float64)
    y = torch.zeros(3, 17, dtype=torch.float64)
    y[0, [AU[12], AU[25], AU[6]]] = 1  # every happy AU
    y[1, [AU[12], AU[25]]] = 1         # the prototypical ones only
    y[2, [AU[6]]] = 1
    scores = co_annotation_scores(y, torch.ones(3, 17, dtype=torch.bool), weights)[:, HAPPY]
    assert torch.allclose(scores, torch.tensor([2.51 / 2.51, 2.0 / 2.51, 0.51 / 2.51], dtype=torch.float64))
    neutral = co_annotation_scores(y, torch.ones(3, 17, dtype=torch.bool), weights)[:, 0]
    assert torch.equal(neutral, torch.zeros(3, dtype=torch.float64)), "neutral has no row: I = 0"


def test_dm_loss_by_hand():
    r = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    class_logits = logits_for([[0.25, 0.75]])               # q = [0.25 + 0.375, 0.375] = [0.625, 0.375]
    attr_logits = torch.logit(torch.tensor([[0.5, 0.8]], dtype=torch.float64))
    paper = -(0.5 * math.log(0.625) + 0.8 * math.log(0.375))
    bernoulli = paper - (0.5 * math.log(0.375) + 0.2 * math.log(0.625))
    assert dm_loss(class_logits, attr_logits, r).item() == pytest.approx(paper, rel=1e-12)
    assert dm_loss(class_logits, attr_logits, r, form="bernoulli").item() == pytest.approx(bernoulli, rel=1e-12)
    assert dm_loss(class_logits, attr_logits, r, reduction="mean").item() == pytest.approx(paper / 2, rel=1e-12)


def test_sca_loss_by_hand():
    w = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)          # I = [1/1, 0.5/1] = [1, 0.5]
    class_logits = logits_for([[0.25, 0.75]])
    log_q = torch.log_softmax(torch.tensor([1.0, 0.5], dtype=torch.float64), 0)
    paper = -(0.25 * log_q[0] + 0.75 * log_q[1]).item()
    soft = -(log_q[0].exp() * math.log(0.25) + log_q[1].exp() * math.log(0.75)).item()
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert sca_loss(class_logits, y, mask, w).item() == pytest.approx(paper, rel=1e-12)
    assert sca_loss(class_logits, y, mask, w, form="soft_target").item() == pytest.approx(soft, rel=1e-12)
    log_q2 = torch.log_softmax(torch.tensor([1.0, 0.5], dtype=torch.float64) / 0.5, 0)
    tempered = -(0.25 * log_q2[0] + 0.75 * log_q2[1]).item()
    assert sca_loss(class_logits, y, mask, w, temperature=0.5).item() == pytest.approx(tempered, rel=1e-12)


def test_literal_temperature_leaves_the_soft_label_nearly_flat():
    """At tau = 1 the soft label q = softmax(I) of a fully happy image is nearly flat, so ``sca_loss`` of a
    prediction certain of happiness stays high; at tau = 0.1 it is near 0."""
    weights = torch.as_tensor(affect_domain_prior(), dtype=torch.float64)
    y = torch.zeros(1, 17, dtype=torch.float64)
    y[0, [AU[12], AU[25], AU[6]]] = 1
    mask = torch.ones(1, 17, dtype=torch.bool)
    scores = co_annotation_scores(y, mask, weights)
    q1, q01 = scores.softmax(1)[0, HAPPY].item(), (scores / 0.1).softmax(1)[0, HAPPY].item()
    assert q1 < 0.32 and q01 > 0.9  # e / (e + 6) ~ 0.31 at tau = 1
    certain = torch.full((1, 7), -30.0, dtype=torch.float64)
    certain[0, HAPPY] = 30.0  # p(happy | x) = 1 to double precision: L_SCA = -log q(happy)
    literal = sca_loss(certain, y, mask, weights).item()
    assert literal == pytest.approx(-math.log(q1), rel=1e-9) and literal > -math.log(0.32)
    assert sca_loss(certain, y, mask, weights, temperature=0.1).item() == pytest.approx(-math.log(q01), rel=1e-9)
    assert sca_loss(certain, y, mask, weights, temperature=0.1).item() < -math.log(0.9)


def test_masked_attributes_are_left_out_of_sca():
    w = torch.rand(4, 5, dtype=torch.float64)
    y = (torch.rand(6, 5) > 0.5).double()
    mask = torch.rand(6, 5) > 0.3
    mask[0] = False  # an image without attribute labels takes no part
    logits = torch.randn(6, 4, dtype=torch.float64)
    base = sca_loss(logits, y, mask, w)
    y2 = torch.where(mask, y, torch.full_like(y, float("nan")))  # garbage where not annotated
    logits2 = logits.clone()
    logits2[0] = 100.0
    assert torch.allclose(sca_loss(logits2, y2, mask, w), base)
    expected = sca_loss(logits[1:], y[1:], mask[1:], w)
    assert torch.allclose(base, expected)


def test_nothing_annotated_gives_zero_with_a_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = sca_loss(logits, torch.zeros(3, 5), torch.zeros(3, 5, dtype=torch.bool), torch.rand(4, 5))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(3, 4))
    empty = dm_loss(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 5), torch.rand(4, 5))
    assert empty.item() == 0.0


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("form", ["paper", "bernoulli"])
def test_dm_gradients_match_the_closed_form(form):
    """dL_DM/dz and dL_DM/da (undetached) against the derivative of Eq. 3 worked out by hand, batch of 5.

    With s = softmax(z), q = s R, p = sigmoid(a) and g = dL/dq per entry (paper: -p/q; bernoulli:
    -p/q + (1-p)/(1-q)): dL/dz[b, c] = s[b, c] sum_i g[b, i] (R[c, i] - q[b, i]) / B and
    dL/da[b, i] = h[b, i] p (1 - p) / B with h = -log q (paper) or -log q + log(1 - q) (bernoulli).
    """
    gen = torch.Generator().manual_seed(1)
    r = torch.rand(4, 3, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    cls = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    att = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    dm_loss(cls, att, r, form=form, detach_target=False).backward()
    s, R = _softmax(cls.detach().numpy()), r.numpy()
    q, p = s @ R, 1 / (1 + np.exp(-att.detach().numpy()))
    g = -p / q + ((1 - p) / (1 - q) if form == "bernoulli" else 0.0)
    h = -np.log(q) + (np.log(1 - q) if form == "bernoulli" else 0.0)
    B = len(s)
    grad_z = s * (g @ R.T - (g * q).sum(axis=1, keepdims=True)) / B  # sum_i g (R[c, i] - q[b, i])
    np.testing.assert_allclose(cls.grad.numpy(), grad_z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(att.grad.numpy(), h * p * (1 - p) / B, rtol=1e-10, atol=1e-12)
    att.grad = None
    dm_loss(cls, att, r, form=form).backward()  # the default detaches p: no gradient to the attribute head
    assert att.grad is None or torch.equal(att.grad, torch.zeros_like(att))


@pytest.mark.parametrize("form", ["paper", "soft_target"])
def test_sca_gradients_match_the_closed_form(form):
    """dL_SCA/dz against the derivative of Eqs. 5-6 by hand, over the images with attribute labels.

    With s = softmax(z), q = softmax(I / tau), l = -log q and B' images with labels: paper
    dL/dz[b, c] = s[b, c] (l[b, c] - sum_c' s[b, c'] l[b, c']) / B'; soft_target dL/dz = (s - q) / B'.
    """
    gen = torch.Generator().manual_seed(2)
    w = torch.rand(4, 3, generator=gen, dtype=torch.float64)
    y = (torch.rand(6, 3, generator=gen) > 0.5).double()
    mask = torch.rand(6, 3, generator=gen) > 0.2
    mask[0] = False  # an image without attribute labels: no gradient, not counted in B'
    mask[1] = True
    cls = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    tau = 0.7
    sca_loss(cls, y, mask, w, form=form, temperature=tau).backward()
    keep = mask.any(dim=1).numpy()
    m, yy, W = mask.numpy().astype(float), y.numpy(), w.numpy()
    num, den = (yy * m) @ W.T, m @ W.T
    scores = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    q, s = _softmax(scores / tau), _softmax(cls.detach().numpy())
    n = keep.sum()
    if form == "paper":
        ell = -np.log(q)
        grad = s * (ell - (s * ell).sum(axis=1, keepdims=True)) / n
    else:
        grad = (s - q) / n
    expected = np.where(keep[:, None], grad, 0.0)
    np.testing.assert_allclose(cls.grad.numpy(), expected, rtol=1e-10, atol=1e-12)


def _fit_attributes_to_dm(detach: bool) -> torch.Tensor:
    """Minimise L_DM over attribute logits alone; returns the final attribute probabilities."""
    r = torch.tensor([[0.9, 0.8], [0.7, 0.9]])
    cls = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    att = torch.zeros(2, 2, requires_grad=True)
    opt = torch.optim.SGD([att], lr=10.0)
    for _ in range(500):
        opt.zero_grad()
        loss = dm_loss(cls, att, r, detach_target=detach)
        if loss.requires_grad:
            loss.backward()
        opt.step()
    return torch.sigmoid(att.detach())


def test_default_detach_stops_the_literal_form_from_driving_p_to_zero():
    assert _fit_attributes_to_dm(detach=False).max() < 0.05  # undetached: p -> 0 whatever the image shows
    assert torch.equal(_fit_attributes_to_dm(detach=True), torch.full((2, 2), 0.5))  # default: untouched


def test_extreme_inputs_stay_finite():
    r = torch.as_tensor(affect_domain_prior(), dtype=torch.float32)
    cls = torch.tensor([[1e4] + [-1e4] * 6, [0.0] * 7])  # certain neutral (q = 0 everywhere) and uniform
    att = torch.tensor([[1e4] * 17, [-1e4] * 17])
    for form in ("paper", "bernoulli"):
        loss = dm_loss(cls.requires_grad_(), att, r, form=form)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(cls.grad).all()
        cls.grad = None
    y = torch.ones(2, 17)
    s = sca_loss(cls, y, torch.ones(2, 17, dtype=torch.bool), r)
    assert torch.isfinite(s)


def test_exclude_drops_unrelated_classes():
    r = torch.as_tensor(affect_domain_prior(), dtype=torch.float64)
    related = (r > 0).any(dim=1)
    assert related.tolist() == [False] + [True] * 6
    cls = torch.randn(4, 7, dtype=torch.float64)
    att = torch.randn(4, 17, dtype=torch.float64)
    shifted = cls.clone()
    shifted[:, 0] += 5.0  # neutral's logit cannot matter once excluded
    assert torch.allclose(dm_loss(cls, att, r, class_mask=related), dm_loss(shifted, att, r, class_mask=related))
    assert not torch.allclose(dm_loss(cls, att, r), dm_loss(shifted, att, r))
    y, mask = (torch.rand(4, 17) > 0.5).double(), torch.ones(4, 17, dtype=torch.bool)
    assert torch.allclose(sca_loss(cls, y, mask, r, class_mask=related), sca_loss(shifted, y, mask, r, class_mask=related))
    np.testing.assert_array_equal(r[0].numpy(), np.zeros(17))
