"""Edges of methods/coupling.py (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import pytest
import torch

from methods.coupling import dm_loss, sca_loss


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_sca_temperature_must_be_positive(temperature: float) -> None:
    logits = torch.zeros(1, 2)
    labels, mask, weights = torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), torch.eye(2)
    with pytest.raises(ValueError, match="sca_temperature must be > 0"):
        sca_loss(logits, labels, mask, weights, temperature=temperature)


def test_bernoulli_dm_stays_finite_when_the_class_implies_an_attribute_for_certain() -> None:
    """q = 1 (R = 1 for every class) is clamped to 1 - eps, so log(1 - q) stays finite."""
    class_logits, attr_logits = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.3, -0.2]])
    relatedness = torch.tensor([[1.0, 0.5], [1.0, 0.5]])
    for form in ("paper", "bernoulli"):
        value = dm_loss(class_logits, attr_logits, relatedness, form=form, eps=1e-6)
        assert torch.isfinite(value)
    p = torch.sigmoid(attr_logits)[0]
    q1 = torch.tensor(1.0 - 1e-6)  # the clamped q of the first attribute
    expected = -(p[0] * torch.log(q1) + (1 - p[0]) * torch.log1p(-q1)) \
        - (p[1] * torch.log(torch.tensor(0.5)) + (1 - p[1]) * torch.log1p(torch.tensor(-0.5)))
    got = dm_loss(class_logits, attr_logits, relatedness, form="bernoulli", eps=1e-6)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_loss_options_are_keyword_only() -> None:
    """form, detach_target, reduction, temperature... cannot be passed by position (a swapped flag would pass silently)."""
    class_logits, attr_logits, relatedness = torch.zeros(1, 2), torch.zeros(1, 2), torch.full((2, 2), 0.5)
    with pytest.raises(TypeError):
        dm_loss(class_logits, attr_logits, relatedness, "bernoulli")  # type: ignore[misc]
    with pytest.raises(TypeError):
        sca_loss(class_logits, torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), relatedness, "paper")  # type: ignore[misc]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_dm_on_an_empty_batch_is_zero_with_a_gradient(reduction: str) -> None:
    """A process whose share of the batch is empty contributes 0 (not NaN), whatever the reduction."""
    class_logits = torch.zeros(0, 2, requires_grad=True)
    value = dm_loss(class_logits, torch.zeros(0, 3), torch.full((2, 3), 0.5), reduction=reduction)
    assert value.item() == 0.0
    value.backward()
    assert class_logits.grad is not None
