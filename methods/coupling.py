"""The two coupling losses of Kollias, Sharmanska & Zafeiriou (AAAI-24), as pure functions.

Notation: p(c|x) is the class softmax (B, N); p_i(x) the attribute sigmoid (B, M); R (N, M) the
relatedness p(attribute i | class c); y (B, M) attribute labels with mask m (B, M).

- Distribution matching (Sec. 3.2, Eqs. 2-3): q_i(x) = sum_c p(c|x) R[c, i] and
  L_DM = E_x sum_i -p_i(x) log q_i(x), over every training image.
- Soft co-annotation (Sec. 3.3, Eqs. 4-6): I(c|x) = sum_i w[c, i] y_i / sum_i w[c, i],
  q(c|x) = softmax_c I(c|x), L_SCA = E_x sum_c -p(c|x) log q(c|x), over images with attribute labels.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.collectives import as_global_mean

DMForm = Literal["paper", "bernoulli"]
SCAForm = Literal["paper", "soft_target"]


def attribute_distribution(p_class: Tensor, relatedness: Tensor) -> Tensor:
    """q_i(x) = sum_c p(c|x) R[c, i] (Eq. 2): the attribute probabilities the class prediction implies."""
    return p_class @ relatedness  # (B, N) @ (N, M) -> (B, M)


def dm_loss(class_logits: Tensor, attribute_logits: Tensor, relatedness: Tensor, *, form: DMForm = "paper",
            detach_target: bool = True, reduction: Literal["sum", "mean"] = "sum", eps: float = 1e-6,
            class_mask: Tensor | None = None) -> Tensor:
    """Distribution-matching loss (Eq. 3), averaged over the batch.

    Args:
        class_logits: (B, N). attribute_logits: (B, M). relatedness: (N, M) weights in [0, 1].
        form: ``paper``: sum_i -p_i log q_i (the attribute prediction p acts as a soft target, as in
            distillation); ``bernoulli``: sum_i -[p_i log q_i + (1 - p_i) log(1 - q_i)].
        detach_target: stop the gradient through p_i. Undetached, the paper form is minimised by
            p_i -> 0 whatever the image shows, so the default detaches.
        reduction: ``sum`` over attributes as printed, or ``mean`` (divided by M).
        eps: q is clamped to [eps, 1 - eps] so the loss stays finite.
        class_mask: (N,) bool, classes taking part; p(c|x) is renormalised over them.
    """
    if class_mask is not None:
        class_logits, relatedness = class_logits[:, class_mask], relatedness[class_mask]
    q = attribute_distribution(class_logits.softmax(dim=1), relatedness).clamp(eps, 1.0 - eps)
    p = torch.sigmoid(attribute_logits)
    if detach_target:
        p = p.detach()
    per_entry = -p * torch.log(q)
    if form == "bernoulli":
        per_entry = per_entry - (1.0 - p) * torch.log1p(-q)
    elif form != "paper":
        raise ValueError(f"dm_form must be 'paper' or 'bernoulli', got {form!r}")
    per_image = per_entry.sum(dim=1) if reduction == "sum" else per_entry.mean(dim=1)
    # under torchrun: the mean over the global batch's images (each process's share of it)
    return as_global_mean(per_image.mean() if len(per_image) else class_logits.sum() * 0.0, len(per_image))


def co_annotation_scores(labels: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """I(c|x) = sum_i w[c, i] y_i / sum_i w[c, i] (Eq. 4), over the annotated attributes of each image.

    A class whose weights are all zero on the annotated attributes (e.g. neutral) scores 0.

    Args:
        labels: (B, M) in {0, 1}. mask: (B, M) bool, True where annotated. weights: (N, M).
    """
    m = mask.to(weights.dtype)
    y = torch.where(mask, labels.to(weights.dtype), torch.zeros_like(m))
    numerator = y @ weights.T  # (B, M) @ (M, N) -> (B, N)
    denominator = m @ weights.T
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-12), torch.zeros_like(numerator))


def sca_loss(class_logits: Tensor, labels: Tensor, mask: Tensor, weights: Tensor, *, form: SCAForm = "paper",
             temperature: float = 1.0, class_mask: Tensor | None = None) -> Tensor:
    """Soft co-annotation loss (Eqs. 5-6), averaged over images with at least one attribute label.

    Args:
        class_logits: (B, N). labels, mask: (B, M) attribute labels and annotation mask. weights: (N, M).
        form: ``paper``: sum_c -p(c|x) log q(c|x) as printed; ``soft_target``: sum_c -q(c|x) log p(c|x),
            the soft co-annotation q acting as the target of the class head.
        temperature: tau in q = softmax(I / tau); tau = 1 is literal (q is then nearly flat).
        class_mask: (N,) bool, classes taking part; others are dropped from both softmaxes.
    """
    if temperature <= 0:
        raise ValueError(f"sca_temperature must be > 0, got {temperature}")
    has_labels = mask.any(dim=1)
    if not bool(has_labels.any()):  # the share is still taken: under torchrun every process joins the count
        return as_global_mean(class_logits.sum() * 0.0, has_labels.sum())
    logits, scores = class_logits[has_labels], co_annotation_scores(labels[has_labels], mask[has_labels], weights)
    if class_mask is not None:
        logits, scores = logits[:, class_mask], scores[:, class_mask]
    log_q = F.log_softmax(scores / temperature, dim=1)
    if form == "paper":
        per_image = -(logits.softmax(dim=1) * log_q).sum(dim=1)
    elif form == "soft_target":
        per_image = -(log_q.exp() * F.log_softmax(logits, dim=1)).sum(dim=1)
    else:
        raise ValueError(f"sca_form must be 'paper' or 'soft_target', got {form!r}")
    return as_global_mean(per_image.mean(), has_labels.sum())  # over the global batch's images with labels
