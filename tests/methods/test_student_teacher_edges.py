"""student_teacher edge cases: option boundaries and defaults, the teachers' targets by hand, what counts as annotated,
the normalisations (by pseudo-labelled entries, across processes) and the batches that leave nothing to learn from."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import methods.student_teacher as student_teacher
from benchmark.tasks import Batch, Problem, TaskSpec, task_loss
from methods import LinkedRun, Method, ModelOutput, MultiTaskModel, StepContext
from methods.student_teacher import StudentTeacher

CLASSES = TaskSpec("classes", "multiclass", ("a", "b", "c"))
ATTRIBUTES = TaskSpec("attributes", "attributes", ("x", "y"))
PROBLEM = Problem("fake", (CLASSES, ATTRIBUTES))


def identity_teacher(spec: TaskSpec) -> MultiTaskModel:
    """A single-task teacher whose logits are the first ``num_outputs`` input features (inputs (B, 3, 1, 1))."""
    head = nn.Linear(3, spec.num_outputs, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3)[: spec.num_outputs])
    return MultiTaskModel(nn.Flatten(), nn.ModuleDict({spec.name: head}))


def with_teachers(**options: object) -> StudentTeacher:
    """A StudentTeacher under ``options`` with an identity teacher attached for both tasks."""
    method = StudentTeacher(**options)  # type: ignore[arg-type]
    for spec in PROBLEM.tasks:
        role = f"teacher:{spec.name}"
        method.attach(role, LinkedRun(role, f"run-{spec.name}", {}, Method(), identity_teacher(spec)))
    return method


def run_losses(method: StudentTeacher, features: list[list[float]], student: dict[str, Tensor],
               targets: dict[str, Tensor], masks: dict[str, Tensor], attribute_loss: str = "per_image",
               inputs: Tensor | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """One ``losses`` call on the tasks of ``student``; returns (out, the real task losses, the student logits)."""
    logits = {t: v.clone().requires_grad_() for t, v in student.items()}
    if inputs is None:
        inputs = torch.tensor(features)[:, :, None, None]
    batch = Batch(inputs, targets, masks, torch.arange(len(features)))
    real = {t: task_loss(PROBLEM.task(t), logits[t], targets[t], masks[t], attribute_loss=attribute_loss) for t in logits}
    ctx = StepContext(None, batch, ModelOutput(torch.zeros(len(features), 3), logits), PROBLEM, 0, 0,  # type: ignore[arg-type]
                      attribute_loss=attribute_loss)
    return method.losses(real, ctx), real, logits


def softmax(z: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def soft_ce(q: list[float], z: list[float]) -> float:
    """-sum_k q_k log softmax(z)_k."""
    return -sum(qk * math.log(pk) for qk, pk in zip(q, softmax(z)))


def bce(logit: float, q: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(q * math.log(p) + (1 - q) * math.log(1 - p))


# ----- options ----------------------------------------------------------------------------------
def test_defaults_are_the_documented_ones() -> None:
    """T = 1 (plain probabilities), soft labels, no threshold, w = 1, union, and no unannotated images by default."""
    method = StudentTeacher()
    assert method.hparams() == {"temperature": 1.0, "pseudo_labels": "soft", "threshold": 0.0, "pseudo_weight": 1.0,
                                "balance": "union", "include_unannotated": False}
    assert method.uses_unannotated_samples is False  # the paper's union of datasets holds no unannotated image
    # behaviourally: the default soft targets are the teacher's untempered softmax
    method = with_teachers()
    z = [1.0, -0.5, 2.0]
    q, keep = method.teacher_targets("classes", CLASSES, torch.tensor([z])[:, :, None, None])
    assert q[0].tolist() == pytest.approx(softmax(z), rel=1e-6) and keep.tolist() == [True]


@pytest.mark.parametrize("options", [{"threshold": 0.0}, {"threshold": 1.0}, {"pseudo_weight": 0.0}])
def test_boundary_options_are_accepted(options: dict[str, float]) -> None:
    """threshold in the closed interval [0, 1] and pseudo_weight 0 (no_coupling) are valid."""
    method = StudentTeacher(**options)  # type: ignore[arg-type]
    assert all(getattr(method, k) == v for k, v in options.items())


@pytest.mark.parametrize(("options", "message"), [
    ({"threshold": -0.5}, r"threshold must be in \[0, 1\], got -0.5"),
    ({"threshold": 1.5}, r"threshold must be in \[0, 1\], got 1.5"),
    ({"pseudo_weight": -0.5}, "pseudo_weight must be >= 0, got -0.5"),
])
def test_options_outside_their_range_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudentTeacher(**options)  # type: ignore[arg-type]


def test_a_teacher_role_whose_model_lacks_the_task_is_refused() -> None:
    """Role ``teacher:attributes`` with a model that has only a ``classes`` head: an error, not a broken teacher."""
    run = LinkedRun("teacher:attributes", "r", {}, Method(), identity_teacher(CLASSES))
    method = StudentTeacher()
    with pytest.raises(ValueError, match="teacher:<task>"):
        method.attach("teacher:attributes", run)
    assert method._teachers == {}


# ----- the teachers' targets --------------------------------------------------------------------
def test_class_targets_by_hand() -> None:
    """Per row: hard = one-hot argmax of the row's softmax, soft = softmax(z / T), confidence = max_k p_k at T = 1."""
    rows = [[0.0, 0.0, 5.0], [0.0, 0.0, 6.0], [1.0, 0.0, 0.0]]  # max p = 0.987, 0.995, 0.576
    inputs = torch.tensor(rows)[:, :, None, None]
    q, keep = with_teachers(pseudo_labels="hard", threshold=0.9).teacher_targets("classes", CLASSES, inputs)
    assert q.tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    assert keep.tolist() == [max(softmax(r)) >= 0.9 for r in rows] == [True, True, False]
    q, keep = with_teachers(temperature=2.0, threshold=0.9).teacher_targets("classes", CLASSES, inputs)
    for got, row in zip(q.tolist(), rows):
        assert got == pytest.approx(softmax(row, 2.0), rel=1e-6)
    assert keep.tolist() == [True, True, False]  # the threshold reads the confidence at T = 1, not T = 2


def test_attribute_targets_by_hand_at_the_boundaries() -> None:
    """p exactly 0.5 gives the hard label 0 (p > 0.5 is 1); a confidence equal to the threshold is kept."""
    inputs = torch.tensor([[0.0, 2.0, 0.0], [-3.0, 20.0, 0.0]])[:, :, None, None]  # p = (.5, .881), (.047, 1.0)
    q, keep = with_teachers(pseudo_labels="hard", threshold=0.5).teacher_targets("attributes", ATTRIBUTES, inputs)
    assert q.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert keep.tolist() == [[True, True], [True, True]]  # confidence max(p, 1 - p) = 0.5 >= 0.5
    _, keep = with_teachers(threshold=1.0).teacher_targets("attributes", ATTRIBUTES, inputs)
    assert keep.tolist() == [[False, False], [False, True]]  # only the entry of confidence exactly 1 passes 1


def test_teacher_targets_carry_no_gradient() -> None:
    """The teachers run without a gradient, even on inputs that require one: no gradient reaches the images."""
    method = with_teachers()
    inputs = torch.tensor([[0.5, 1.5, 0.0]])[:, :, None, None].requires_grad_()
    q, keep = method.teacher_targets("classes", CLASSES, inputs)
    assert not q.requires_grad and keep.dtype == torch.bool
    features = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
    inputs = torch.tensor(features)[:, :, None, None].requires_grad_()
    out, _, logits = run_losses(method, features, {"classes": torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]])},
                                {"classes": torch.tensor([2, -1])}, {"classes": torch.tensor([True, False])},
                                inputs=inputs)
    (out["classes"] + out["distill/classes"]).backward()
    assert inputs.grad is None and logits["classes"].grad is not None


def test_the_teacher_is_moved_to_the_device_of_the_inputs() -> None:
    """``teacher(task, device)`` moves the attached teacher (in place) where it is not already."""
    method = with_teachers()
    attached = method._teachers["classes"]
    assert method.teacher("classes", torch.device("cpu")) is attached
    assert next(attached.parameters()).device.type == "cpu"
    moved = method.teacher("classes", torch.device("meta"))
    assert moved is attached and all(p.device.type == "meta" for p in moved.parameters())
    assert next(method._teachers["attributes"].parameters()).device.type == "cpu"  # the other teacher stays


# ----- what counts as annotated ------------------------------------------------------------------
def test_a_class_label_counts_only_where_masked_in_and_a_class_index() -> None:
    """As task_loss counts: mask True with target -1 is missing, and so is mask False over a leftover index."""
    features = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [-1.0, 0.2, 3.0], [0.3, -0.4, 0.1]]
    student = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [0.0, 0.5, -0.5], [2.0, 1.0, 0.0]])
    targets, masks = torch.tensor([2, -1, 1, 0]), torch.tensor([True, True, False, True])  # real rows: 0 and 3
    out, real, _ = run_losses(with_teachers(), features, {"classes": student}, {"classes": targets}, {"classes": masks})
    s = student.tolist()
    assert real["classes"].item() == pytest.approx((soft_ce([0, 0, 1], s[0]) + soft_ce([1, 0, 0], s[3])) / 2, rel=1e-6)
    pseudo = [soft_ce(softmax(features[i]), s[i]) for i in (1, 2)]  # the teacher labels rows 1 and 2
    assert out["classes"].item() == pytest.approx(real["classes"].item() * 2 / 4, rel=1e-6)
    assert out["distill/classes"].item() == pytest.approx(sum(pseudo) / 4, rel=1e-6)


def test_mixed_batches_with_soft_class_targets() -> None:
    """Mixed (MixAugment) rows carry (B, N) class probabilities and a (B,) mask: the mask alone says what is annotated."""
    features = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [-1.0, 0.2, 3.0], [0.3, -0.4, 0.1]]
    student = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [0.0, 0.5, -0.5], [2.0, 1.0, 0.0]])
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.0, 0.0], [0.0, 0.4, 0.6], [0.0, 0.0, 0.0]])
    masks = torch.tensor([True, False, True, False])
    out, real, _ = run_losses(with_teachers(pseudo_weight=0.5), features, {"classes": student},
                              {"classes": targets}, {"classes": masks})
    s, t = student.tolist(), targets.tolist()
    assert real["classes"].item() == pytest.approx((soft_ce(t[0], s[0]) + soft_ce(t[2], s[2])) / 2, rel=1e-6)
    pseudo = [soft_ce(softmax(features[i]), s[i]) for i in (1, 3)]
    denominator = 2 + 0.5 * 2
    assert out["classes"].item() == pytest.approx(real["classes"].item() * 2 / denominator, rel=1e-6)
    assert out["distill/classes"].item() == pytest.approx(0.5 * sum(pseudo) / denominator, rel=1e-6)


# ----- normalisation -----------------------------------------------------------------------------
def test_separate_divides_by_the_pseudo_labelled_entries_only() -> None:
    """Hard attribute labels, threshold 0.5 (an entry of confidence exactly 0.5 kept), pooled: the mean over the 3
    pseudo-labelled entries, whatever the number of real ones."""
    features = [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, -2.0, 0.0]]
    student = torch.tensor([[0.5, -0.5], [1.0, 2.0], [-1.0, 0.3]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    masks = torch.tensor([[True, True], [True, False], [False, False]])  # real: 3 entries; missing: (1, y), (2, x), (2, y)
    method = with_teachers(pseudo_labels="hard", threshold=0.5, balance="separate", pseudo_weight=0.5)
    out, real, _ = run_losses(method, features, {"attributes": student}, {"attributes": targets},
                              {"attributes": masks}, attribute_loss="pooled")
    s = student.tolist()
    # teacher: (1, y) logit 0 -> p = 0.5 -> hard 0 (kept: confidence 0.5); row 2: logits (1, -2) -> hard (1, 0)
    pseudo = [bce(s[1][1], 0.0), bce(s[2][0], 1.0), bce(s[2][1], 0.0)]
    assert torch.equal(out["attributes"], real["attributes"])
    assert out["distill/attributes"].item() == pytest.approx(0.5 * sum(pseudo) / 3, rel=1e-6)


def test_separate_without_any_pseudo_label_adds_exactly_zero() -> None:
    """A fully annotated batch: no pseudo entry, a pseudo term of exactly 0 (not 0 / 0) and the real loss unchanged."""
    features = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
    student = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]])
    out, real, _ = run_losses(with_teachers(balance="separate"), features, {"classes": student},
                              {"classes": torch.tensor([2, 0])}, {"classes": torch.tensor([True, True])})
    assert out["distill/classes"].item() == 0.0 and torch.isfinite(out["distill/classes"])
    assert torch.equal(out["classes"], real["classes"])


@pytest.mark.parametrize("options", [{"pseudo_weight": 0.0}, {"threshold": 1.0}])
def test_union_with_nothing_to_learn_from_is_an_exact_differentiable_zero(options: dict[str, float]) -> None:
    """No real label of the task and no weighted pseudo-label (w = 0, or none passes threshold 1): both terms are
    exactly 0, finite, and still in the graph (gradient 0), though the teacher's labels have a nonzero loss."""
    features = [[0.5, 1.5, 0.0], [0.3, -0.4, 0.1]]  # confidences below 1
    student = torch.tensor([[1.0, -1.0, 0.0], [2.0, 1.0, 0.0]])
    method = with_teachers(**options)
    out, _, logits = run_losses(method, features, {"classes": student}, {"classes": torch.tensor([-1, -1])},
                                {"classes": torch.tensor([False, False])})
    for name in ("classes", "distill/classes"):
        assert out[name].item() == 0.0 and bool(torch.isfinite(out[name])) and out[name].requires_grad
    (out["classes"] + out["distill/classes"]).backward()
    assert torch.equal(logits["classes"].grad, torch.zeros_like(student))


@pytest.mark.parametrize("balance", ["union", "separate"])
def test_counts_are_the_global_batch_per_process(monkeypatch: pytest.MonkeyPatch, balance: str) -> None:
    """Under torchrun with 2 processes, the other one holding no entry: the counts are global count / 2, so this
    process's pseudo term (averaged with the other's 0) is twice the single-process one, the global mean."""
    features = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.3, -0.4, 0.1]]
    student = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [2.0, 1.0, 0.0]])
    args = (features, {"classes": student}, {"classes": torch.tensor([2, -1, -1])},
            {"classes": torch.tensor([True, False, False])})
    alone = run_losses(with_teachers(balance=balance), *args)[0]["distill/classes"].item()
    monkeypatch.setattr(student_teacher, "world_size", lambda: 2)
    monkeypatch.setattr(student_teacher, "global_count", lambda n: n.to(torch.float64))  # the other process adds 0
    shared = run_losses(with_teachers(balance=balance), *args)[0]["distill/classes"].item()
    assert alone > 0 and shared == pytest.approx(2 * alone, rel=1e-6)


@pytest.mark.parametrize("pseudo_labels", ["soft", "hard"])
def test_label_smoothing_leaves_the_teachers_targets_as_they_come(pseudo_labels: str) -> None:
    """The run's label smoothing is for real labels (the task losses handed in); the pseudo term is the same under
    any smoothing: -sum_k q_k log p_k with the teacher's q (soft) or its one-hot argmax (hard)."""
    features = [[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]]
    student = torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, -1.0]])
    targets = torch.tensor([1, -1])
    masks = torch.tensor([True, False])  # row 1 gets the teacher's label
    method = with_teachers(pseudo_labels=pseudo_labels, balance="separate")
    logits = {"classes": student.clone().requires_grad_()}
    batch = Batch(torch.tensor(features)[:, :, None, None], {"classes": targets}, {"classes": masks}, torch.arange(2))
    real = {"classes": task_loss(CLASSES, logits["classes"], targets, masks, 0.3)}
    ctx = StepContext(None, batch, ModelOutput(torch.zeros(2, 3), logits), PROBLEM, 0, 0,  # type: ignore[arg-type]
                      label_smoothing=0.3)
    out = method.losses(real, ctx)
    q = softmax(features[1]) if pseudo_labels == "soft" else [0.0, 1.0, 0.0]
    assert out["distill/classes"].item() == pytest.approx(soft_ce(q, student[1].tolist()), rel=1e-6)
    assert torch.equal(out["classes"], real["classes"])  # the real term keeps its smoothing
