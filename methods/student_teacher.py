"""``student_teacher``: single-task teachers label what each image lacks; a multi-task student learns from both."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.collectives import global_count, world_size
from benchmark.tasks import Problem, TaskSpec, attribute_count
from methods.base import METHODS, Dependency, LinkedRun, Method, MultiTaskModel, StepContext

log = logging.getLogger(__name__)

#: Role prefix of a teacher: ``teacher:<task>``, as stored in the student run's links.
TEACHER = "teacher:"


@METHODS.register("student_teacher")
class StudentTeacher(Method):
    """Single-task teachers co-annotate missing labels for a no-coupling multi-task student ("S-T NC MT", Kollias et al., AAAI-24, Tab. 2).

    One ``single_task`` teacher per task (a linked run under the same protocol) predicts each
    task's labels for the images lacking them; the student, plain hard sharing, learns from the
    real labels where they exist and the teachers' labels elsewhere, which is the teacher-student
    scheme for incomplete labels of Deng, Chen & Shi (FG 2020, Sec. 3) with single-task teachers.
    Per task t, with l the student's loss on one entry (soft cross-entropy -sum_k q_k log p_k for
    classes, binary cross-entropy on soft targets q for attributes) and w = ``pseudo_weight``:

        union:    L_t = (sum_real l + w sum_pseudo l) / (n_real + w n_pseudo)
        separate: L_t = mean_real l + w mean_pseudo l

    Stored as the terms ``t`` (real part) and ``distill/t`` (pseudo part); w = 0 is no_coupling.
    The run's ``label_smoothing`` applies to the real labels only: a teacher's target is used as it
    comes (soft targets already carry the teacher's uncertainty, as in knowledge distillation).

    The frozen teachers are state of the method, run on each batch inside ``losses`` (eval mode,
    no gradient) on the rows lacking the task's label: the contract has no hook that sees the
    training set before training, and this way a teacher labels exactly the (augmented) image the
    student sees. They are held outside the module tree, so they are in neither ``param_groups``
    nor the student's ``state_dict``: their weights are their own runs' model files, which the
    student's links name. Their forward passes count in the student's wall time.

    Args:
        temperature: T of the teachers' outputs, q = softmax(z / T) or sigmoid(z / T); > 1 softens.
        pseudo_labels: ``"soft"`` (the teacher's tempered probabilities) or ``"hard"`` (its argmax
            for classes, p > 0.5 for attributes, as 0/1 targets).
        threshold: keep a pseudo-label only where the teacher's confidence at T = 1 (max_k p_k for
            classes, max(p, 1 - p) per attribute) is at least this; 0 keeps every one.
        pseudo_weight: w, the weight of a pseudo-labelled entry relative to a real one.
        balance: ``"union"`` (one mean over the real and pseudo units, the units ``task_loss`` averages:
            class labels and, for attributes, entries under the pooled loss or each image's mean under the
            per-image loss, so a partly annotated image is one real and one pseudo unit) or ``"separate"``
            (mean over real units + w * mean over pseudo units).
        include_unannotated: also train on images annotated for no task, every label from the
            teachers (the paper's union of datasets holds no such image).
    """

    def __init__(self, *, temperature: float = 1.0, pseudo_labels: Literal["soft", "hard"] = "soft",
                 threshold: float = 0.0, pseudo_weight: float = 1.0, balance: Literal["union", "separate"] = "union",
                 include_unannotated: bool = False) -> None:
        super().__init__()
        problems = [(temperature <= 0, f"temperature must be > 0, got {temperature}"),
                    (pseudo_labels not in ("soft", "hard"), f"pseudo_labels must be 'soft' or 'hard', got {pseudo_labels!r}"),
                    (not 0 <= threshold <= 1, f"threshold must be in [0, 1], got {threshold}"),
                    (pseudo_weight < 0, f"pseudo_weight must be >= 0, got {pseudo_weight}"),
                    (balance not in ("union", "separate"), f"balance must be 'union' or 'separate', got {balance!r}")]
        errors = [message for bad, message in problems if bad]
        if errors:
            raise ValueError("student_teacher: " + "; ".join(errors))
        self.temperature = temperature
        self.pseudo_labels = pseudo_labels
        self.threshold = threshold
        self.pseudo_weight = pseudo_weight
        self.balance = balance
        self.include_unannotated = include_unannotated
        self.uses_unannotated_samples = include_unannotated  # read by the training loop's data filter
        self._teachers: dict[str, MultiTaskModel] = {}  # a plain dict: not submodules, not in state_dict

    # ----- linked runs --------------------------------------------------------------------
    @classmethod
    def dependencies(cls, options: dict[str, Any], problem: Problem) -> dict[str, Dependency]:
        """One ``single_task`` teacher per task, role ``teacher:<task>``."""
        return {TEACHER + t: Dependency("single_task", {"task": t}) for t in problem.task_names}

    def attach(self, role: str, run: LinkedRun) -> None:
        """Keep the teacher of ``role``'s task, frozen in eval mode."""
        task = role.removeprefix(TEACHER)
        if not role.startswith(TEACHER) or task not in run.model.tasks:
            raise ValueError(f"student_teacher takes roles 'teacher:<task>' with a model of that task; got "
                             f"{role!r} with a model of {run.model.tasks} (run {run.run_id})")
        self._teachers[task] = run.model.eval().requires_grad_(False)
        log.info("student_teacher: teacher of %r is run %s", task, run.run_id)

    # ----- the loss -------------------------------------------------------------------------
    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        out = dict(task_losses)
        for task, real_loss in task_losses.items():
            spec = ctx.problem.task(task)
            target, mask = ctx.batch.targets[task], ctx.batch.masks[task]
            soft = target.is_floating_point()  # mixed batches (benchmark/mixing.py) carry class probabilities
            annotated = mask & (target >= 0) if spec.kind == "multiclass" and not soft else mask
            rows = ~annotated if annotated.ndim == 1 else ~annotated.all(dim=1)  # (B,) rows with a gap
            logits = ctx.outputs.logits[task]
            pseudo_sum, n_pseudo = logits.sum() * 0.0, torch.zeros((), dtype=torch.long, device=logits.device)
            if bool(rows.any()):
                q, keep = self.teacher_targets(task, spec, ctx.batch.inputs[rows])
                if spec.kind == "attributes":
                    keep = keep & ~annotated[rows]  # a teacher fills only the entries that are missing
                pseudo_sum = soft_loss_sum(spec, logits[rows], q, keep, ctx.attribute_loss)
                n_pseudo = attribute_count(keep, ctx.attribute_loss) if spec.kind == "attributes" else keep.sum()
            # what task_loss is a mean over: entries, or images for a per-image attribute loss
            n_real = attribute_count(annotated, ctx.attribute_loss) if spec.kind == "attributes" else annotated.sum()
            # counts of the global batch per process (torchrun; the counts themselves alone), as task_loss divides
            n_real, n_pseudo = (float(global_count(n)) / world_size() for n in (n_real, n_pseudo))
            out[task], out[f"distill/{task}"] = self.combine(real_loss, n_real, pseudo_sum, n_pseudo)
        return out

    def combine(self, real_loss: Tensor, n_real: float, pseudo_sum: Tensor, n_pseudo: float) -> tuple[Tensor, Tensor]:
        """(real term, pseudo term) of one task under ``balance``; their sum is the task's loss."""
        w = self.pseudo_weight
        if self.balance == "separate":
            return real_loss, w * pseudo_sum / (n_pseudo or 1)
        denominator = n_real + w * n_pseudo
        if denominator == 0:
            return real_loss * 0.0, pseudo_sum * 0.0
        return real_loss * (n_real / denominator), (w / denominator) * pseudo_sum

    @torch.no_grad()
    def teacher_targets(self, task: str, spec: TaskSpec, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """The teacher's targets q for ``inputs`` and where its confidence passes ``threshold``.

        Returns q (R, K) and keep (R,) for classes; q (R, M) and keep (R, M) for attributes.
        """
        logits = self.teacher(task, inputs.device)(inputs, tasks=[task]).logits[task].float()
        if spec.kind == "multiclass":
            probs = logits.softmax(dim=-1)
            confidence = probs.max(dim=-1).values
            hard = F.one_hot(probs.argmax(dim=-1), spec.num_outputs).to(logits.dtype)
            soft = (logits / self.temperature).softmax(dim=-1)
        else:
            probs = logits.sigmoid()
            confidence = torch.maximum(probs, 1.0 - probs)
            hard = (probs > 0.5).to(logits.dtype)
            soft = (logits / self.temperature).sigmoid()
        return (hard if self.pseudo_labels == "hard" else soft), confidence >= self.threshold

    def teacher(self, task: str, device: torch.device) -> MultiTaskModel:
        """The attached teacher of ``task``, on ``device``; an error says how to get one."""
        if task not in self._teachers:
            raise RuntimeError(f"student_teacher has no teacher for task {task!r}. Run it through the runner "
                               f"('python -m benchmark run --method student_teacher ...' trains or reuses the "
                               f"single_task teachers), or attach a LinkedRun with role '{TEACHER}{task}' first")
        teacher = self._teachers[task]
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        return teacher


def soft_loss_sum(spec: TaskSpec, logits: Tensor, q: Tensor, keep: Tensor, attribute_loss: str = "per_image") -> Tensor:
    """Sum over kept units of the student's loss against soft targets ``q``.

    Classes: -sum_k q_k log softmax(z)_k per row; attributes: BCE(sigmoid(z), q) per entry, summed over
    entries (``pooled``) or, as the run's attribute loss is reduced (``per_image``), averaged over each
    row's kept entries and summed over rows (see :func:`benchmark.tasks.masked_binary_cross_entropy`).
    """
    if spec.kind == "multiclass":
        per_entry = -(q * logits.log_softmax(dim=-1)).sum(dim=-1)  # (R, K) -> (R,)
        return (per_entry * keep.to(per_entry.dtype)).sum()
    per_entry = F.binary_cross_entropy_with_logits(logits, q.to(logits.dtype), reduction="none")  # (R, M)
    weight = keep.to(per_entry.dtype)
    if attribute_loss == "pooled":
        return (per_entry * weight).sum()
    return ((per_entry * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)).sum()  # (R, M) -> (R,) -> ()
