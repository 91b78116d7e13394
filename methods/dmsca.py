"""``dmsca``: distribution matching + soft co-annotation coupling (Kollias, Sharmanska & Zafeiriou, AAAI-24)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.relatedness import load_csv
from benchmark.tasks import Problem
from methods.base import METHODS, Method, MultiTaskModel, StepContext
from methods.coupling import DMForm, SCAForm, dm_loss, sca_loss

log = logging.getLogger(__name__)

Weights = Literal["auto", "binary", "graded"]


def resolve_relatedness(problem: Problem, source: str) -> tuple[str, np.ndarray]:
    """(resolved source name, R) for ``source``: ``auto`` (domain knowledge if the db has it, else
    ``db``), a source the problem knows (``domain``, ``db``, a named table) or a CSV file path."""
    classes, attributes = problem.pair()
    if source == "auto":
        source = "domain" if "domain" in problem.priors else "db"
    if source in problem.relatedness_sources():
        matrix = problem.relatedness(source)
    elif source.endswith(".csv") or Path(source).is_file():
        matrix = load_csv(source, classes.labels, attributes.labels)
    else:
        raise ValueError(f"relatedness={source!r} is neither a source of db {problem.db!r} "
                         f"({', '.join(['auto', *problem.relatedness_sources()])}) nor a CSV file")
    expected = (classes.num_outputs, attributes.num_outputs)
    if matrix.shape != expected:
        raise ValueError(f"relatedness {source!r} has shape {matrix.shape}; db {problem.db!r} needs {expected}")
    return source, matrix


@METHODS.register("dmsca")
class DMSCA(Method):
    """Coupling by distribution matching + soft co-annotation ("C MT", Kollias et al., AAAI-24, Eqs. 2-6).

    L = L_cls + L_att + lambda_dm L_DM + lambda_sca L_SCA, with both coupling terms built from the
    relatedness R[c, i] = p(attribute i | class c). No change to the network, nothing at inference.

    Args:
        relatedness: ``auto``, ``domain``, ``db`` (counted on the training split), a named prior of
            the db, or a CSV path (``python -m benchmark relatedness`` writes one).
        lambda_dm: weight of L_DM. lambda_sca: weight of L_SCA.
        dm_form: ``paper`` (-p log q) or ``bernoulli``. dm_detach_target: no gradient through p_i.
        dm_reduction: ``sum`` over attributes (as printed) or ``mean``.
        dm_weights, sca_weights: ``binary`` (R > 0), ``graded`` (R as is) or ``auto``: binary for
            DM when the source is a domain-knowledge table the db marks so (the affect case), graded
            otherwise; SCA graded (prototypical 1, observational their fraction).
        sca_form: ``paper`` (-p log q) or ``soft_target`` (-q log p). sca_temperature: tau in softmax(I / tau).
        unrelated_classes: ``zero`` (a class without related attributes keeps a zero row in DM and
            I = 0 in SCA, as printed) or ``exclude`` (dropped from both couplings).
        eps: clamp of q in L_DM.
    """

    uses_unannotated_samples = True  # L_DM is over every training image, labelled or not

    def __init__(self, *, relatedness: str = "auto", lambda_dm: float = 1.0, lambda_sca: float = 1.0,
                 dm_form: DMForm = "paper", dm_detach_target: bool = True,
                 dm_reduction: Literal["sum", "mean"] = "sum", dm_weights: Weights = "auto",
                 sca_weights: Weights = "auto", sca_form: SCAForm = "paper", sca_temperature: float = 1.0,
                 unrelated_classes: Literal["zero", "exclude"] = "zero", eps: float = 1e-6) -> None:
        super().__init__()
        finite = all(math.isfinite(v) for v in (lambda_dm, lambda_sca, eps, sca_temperature))
        if not finite or lambda_dm < 0 or lambda_sca < 0 or eps <= 0:  # a negative weight would reward the loss
            raise ValueError(f"dmsca: lambda_dm and lambda_sca must be >= 0 and eps > 0 (all finite), got "
                             f"lambda_dm={lambda_dm}, lambda_sca={lambda_sca}, eps={eps}")
        if sca_temperature <= 0:  # SCA divides its scores by it (coupling.sca_loss)
            raise ValueError(f"dmsca: sca_temperature must be > 0 (1 is the paper's), got {sca_temperature}")
        self.relatedness, self.lambda_dm, self.lambda_sca = relatedness, lambda_dm, lambda_sca
        self.dm_form, self.dm_detach_target, self.dm_reduction = dm_form, dm_detach_target, dm_reduction
        self.dm_weights, self.sca_weights = dm_weights, sca_weights
        self.sca_form, self.sca_temperature = sca_form, sca_temperature
        self.unrelated_classes, self.eps = unrelated_classes, eps

    @classmethod
    def expand(cls, options: dict[str, Any], problem: Problem) -> list[dict[str, Any]]:
        """Resolve ``auto`` to the source it stands for, so the stored run names it (and fail early)."""
        source, _ = resolve_relatedness(problem, options["relatedness"])
        return [{**options, "relatedness": source}]

    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        classes, attributes = problem.pair()
        self.class_task, self.attribute_task = classes.name, attributes.name
        source, matrix = resolve_relatedness(problem, self.relatedness)
        binary_dm = self.dm_weights == "binary" or (self.dm_weights == "auto" and source in problem.binary_sources)
        r = torch.as_tensor(matrix, dtype=torch.float32)
        self.register_buffer("r_dm", (r > 0).float() if binary_dm else r)
        self.register_buffer("w_sca", (r > 0).float() if self.sca_weights == "binary" else r)
        self.register_buffer("related_classes", (r > 0).any(dim=1))
        log.info("dmsca: relatedness %r (%s for DM, %s for SCA); %d of %d classes have related attributes",
                 source, "binary" if binary_dm else "graded", "binary" if self.sca_weights == "binary" else "graded",
                 int(self.related_classes.sum()), len(r))
        return super().build(backbone, heads, problem)

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        logits = ctx.outputs.logits
        if self.class_task not in logits or self.attribute_task not in logits:
            return task_losses
        class_logits, attribute_logits = logits[self.class_task], logits[self.attribute_task]
        keep = self.related_classes if self.unrelated_classes == "exclude" else None
        out = dict(task_losses)
        if self.lambda_dm:
            out["coupling/dm"] = self.lambda_dm * dm_loss(
                class_logits, attribute_logits, self.r_dm, form=self.dm_form, detach_target=self.dm_detach_target,
                reduction=self.dm_reduction, eps=self.eps, class_mask=keep)
        if self.lambda_sca:
            batch = ctx.batch
            out["coupling/sca"] = self.lambda_sca * sca_loss(
                class_logits, batch.targets[self.attribute_task], batch.masks[self.attribute_task], self.w_sca,
                form=self.sca_form, temperature=self.sca_temperature, class_mask=keep)
        return out
