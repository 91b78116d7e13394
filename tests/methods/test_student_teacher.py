"""student_teacher: pseudo-labels exactly where labels are missing, the loss by hand, and learning a task from teachers alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.linked import train_dependencies
from benchmark.tasks import Batch, Problem, TaskSpec, task_loss
from benchmark.train import train
from datasets.synthetic import SyntheticDb
from methods import METHODS, LinkedRun, Method, ModelOutput, MultiTaskModel, StepContext
from methods.student_teacher import StudentTeacher
from tests.conftest import tiny_config

CLASSES = TaskSpec("classes", "multiclass", ("a", "b", "c"))
ATTRIBUTES = TaskSpec("attributes", "attributes", ("x", "y"))
PROBLEM = Problem("fake", (CLASSES, ATTRIBUTES))
# Teacher features = the input itself (B, 3, 1, 1) -> (B, 3): class logits = features, attribute logits = first two.
FEATURES = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [-1.0, 0.2, 3.0], [0.3, -0.4, 0.1]])
STUDENT = {"classes": torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [0.0, 0.5, -0.5], [2.0, 1.0, 0.0]]),
           "attributes": torch.tensor([[0.5, -0.5], [1.0, 2.0], [-1.0, 0.0], [0.3, 0.7]])}
# Row 0: both labels. Row 1: attributes only. Row 2: class only, attribute "y" missing. Row 3: nothing.
TARGETS = {"classes": torch.tensor([2, -1, 0, -1]), "attributes": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])}
MASKS = {"classes": torch.tensor([True, False, True, False]),
         "attributes": torch.tensor([[True, True], [True, True], [True, False], [False, False]])}


def teacher(task: str, seen: list) -> MultiTaskModel:
    """A teacher whose logits are its input features; ``seen`` records every input batch it gets."""
    head = nn.Linear(3, CLASSES.num_outputs if task == "classes" else ATTRIBUTES.num_outputs, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3)[: head.out_features])
    model = MultiTaskModel(nn.Flatten(), nn.ModuleDict({task: head}))
    model.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0].flatten(1).clone()))
    return model


def step(method: StudentTeacher, rows: slice = slice(None), attribute_loss: str = "per_image") -> tuple[dict, dict]:
    """One ``losses`` call on the fixed batch (rows ``rows``); returns (out, the real task losses)."""
    logits = {t: v[rows].clone().requires_grad_() for t, v in STUDENT.items()}
    targets, masks = {t: v[rows] for t, v in TARGETS.items()}, {t: v[rows] for t, v in MASKS.items()}
    batch = Batch(FEATURES[rows, :, None, None], targets, masks, torch.arange(4)[rows])
    real = {t: task_loss(PROBLEM.task(t), logits[t], targets[t], masks[t], attribute_loss=attribute_loss) for t in logits}
    ctx = StepContext(None, batch, ModelOutput(torch.zeros(len(batch), 3), logits), PROBLEM, 0, 0,  # type: ignore[arg-type]
                      attribute_loss=attribute_loss)
    return method.losses(real, ctx), real


def with_teachers(**options) -> tuple[StudentTeacher, dict[str, list]]:
    method, seen = StudentTeacher(**options), {"classes": [], "attributes": []}
    for task in seen:
        method.attach(f"teacher:{task}", LinkedRun(f"teacher:{task}", f"run-{task}", {}, Method(), teacher(task, seen[task])))
    return method, seen


def softmax(z: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def bce(logit: float, q: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(q * math.log(p) + (1 - q) * math.log(1 - p))


def test_teachers_label_only_the_missing_rows():
    method, seen = with_teachers()
    step(method)
    assert torch.equal(torch.cat(seen["classes"]), FEATURES[[1, 3]])        # rows without a class label
    assert torch.equal(torch.cat(seen["attributes"]), FEATURES[[2, 3]])     # rows with a missing attribute
    seen["classes"].clear(), seen["attributes"].clear()
    out, real = step(method, slice(0, 1))                                   # a fully annotated row
    assert seen == {"classes": [], "attributes": []}
    assert out["distill/classes"].item() == 0.0 and torch.equal(out["classes"], real["classes"])


@pytest.mark.parametrize("attribute_loss", ["pooled", "per_image"])
@pytest.mark.parametrize("balance", ["union", "separate"])
def test_loss_matches_a_hand_computation(balance, attribute_loss):
    w, t = 0.5, 2.0
    method, _ = with_teachers(pseudo_weight=w, temperature=t, balance=balance)
    out, _ = step(method, attribute_loss=attribute_loss)
    s, f = STUDENT["classes"].tolist(), FEATURES.tolist()
    real = [-math.log(softmax(s[0])[2]), -math.log(softmax(s[2])[0])]
    pseudo = [-sum(q * math.log(p) for q, p in zip(softmax(f[i], t), softmax(s[i]))) for i in (1, 3)]
    a, fa = STUDENT["attributes"].tolist(), FEATURES[:, :2].tolist()
    real_att = [bce(a[0][0], 1), bce(a[0][1], 0), bce(a[1][0], 0), bce(a[1][1], 1), bce(a[2][0], 1)]
    pseudo_att = [bce(a[2][1], 1 / (1 + math.exp(-fa[2][1] / t)))] + [bce(a[3][j], 1 / (1 + math.exp(-fa[3][j] / t))) for j in (0, 1)]
    if attribute_loss == "per_image":  # a unit is an image: its entries' mean (real rows 0, 1, 2; pseudo rows 2, 3)
        real_att = [(real_att[0] + real_att[1]) / 2, (real_att[2] + real_att[3]) / 2, real_att[4]]
        pseudo_att = [pseudo_att[0], (pseudo_att[1] + pseudo_att[2]) / 2]
    for task, r, p in (("classes", real, pseudo), ("attributes", real_att, pseudo_att)):
        if balance == "union":
            expected_real, expected_pseudo = sum(r) / (len(r) + w * len(p)), w * sum(p) / (len(r) + w * len(p))
        else:
            expected_real, expected_pseudo = sum(r) / len(r), w * sum(p) / len(p)
        assert out[task].item() == pytest.approx(expected_real, rel=1e-5)
        assert out[f"distill/{task}"].item() == pytest.approx(expected_pseudo, rel=1e-5)


def test_hard_labels_and_the_confidence_threshold():
    # class teacher on row 1 (features 0.5, 1.5, 0): max p = 0.63 -> kept at 0.59; row 3: max p = 0.43 -> dropped
    method, _ = with_teachers(pseudo_labels="hard", threshold=0.59, balance="separate")
    out, _ = step(method)
    expected = -math.log(softmax(STUDENT["classes"][1].tolist())[1])  # hard label of row 1 is class 1
    assert out["distill/classes"].item() == pytest.approx(expected, rel=1e-5)
    # attributes: confidences of (2, y), (3, x), (3, y) are 0.550, 0.574, 0.599 -> only (3, y), hard label 0
    assert out["distill/attributes"].item() == pytest.approx(bce(STUDENT["attributes"][3, 1].item(), 0.0), rel=1e-5)


def test_zero_pseudo_weight_is_no_coupling_and_the_gradient_flows_to_the_student():
    method, _ = with_teachers(pseudo_weight=0.0)
    out, real = step(method)
    for task in real:
        assert torch.equal(out[task], real[task]) and out[f"distill/{task}"].item() == 0.0
    out, _ = step(with_teachers()[0])
    assert out["distill/classes"].requires_grad and out["distill/attributes"].requires_grad


def test_without_a_teacher_the_error_says_how_to_get_one():
    with pytest.raises(RuntimeError, match="through the runner"):
        step(StudentTeacher())
    with pytest.raises(ValueError, match="teacher:<task>"):
        StudentTeacher().attach("policy", LinkedRun("policy", "r", {}, Method(), teacher("classes", [])))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        StudentTeacher(temperature=0.0)


def test_teachers_are_neither_trained_nor_saved_with_the_student():
    method, _ = with_teachers()
    assert method.state_dict() == {} and list(method.parameters()) == []
    assert all(not p.requires_grad for t in method._teachers.values() for p in t.parameters())
    assert not StudentTeacher.uses_unannotated_samples and StudentTeacher(include_unannotated=True).uses_unannotated_samples


def test_declares_one_single_task_teacher_per_task():
    deps = StudentTeacher.dependencies({}, PROBLEM)
    assert {r: (d.method, d.options) for r, d in deps.items()} == {
        "teacher:classes": ("single_task", {"task": "classes"}), "teacher:attributes": ("single_task", {"task": "attributes"})}


class NoTrainClassLabels(SyntheticDb):
    """The synthetic db with every training class label removed: the student's data holds no real class label."""

    def split(self, split, fold=None, image_size=None):
        data = super().split(split, fold, image_size)
        if split == "train":  # new tensors: the generator's cached ones must stay intact for the teachers
            data.targets["classes"] = torch.full_like(data.targets["classes"], -1)
            data.masks["classes"] = torch.zeros_like(data.masks["classes"])
        return data


def test_student_learns_a_task_it_has_no_real_label_of_from_its_teacher():
    options = dict(n_train=300, n_val=100, n_test=200, image_size=16, ratio="1:1", n_classes=4)
    full, masked, cpu = SyntheticDb(**options), NoTrainClassLabels(**options), torch.device("cpu")
    cfg = tiny_config("student_teacher", StudentTeacher().hparams(), epochs=3, db_options=full.options())
    teachers = train_dependencies(cfg, full, cpu)  # teachers see the class labels of 150 images
    student = train(cfg, masked, StudentTeacher(), cpu, progress=False, linked=teachers)
    control_cfg = tiny_config("no_coupling", {}, epochs=3, db_options=full.options())
    control = train(control_cfg, masked, METHODS.get("no_coupling")(), cpu, progress=False)
    chance = 1 / 4
    accuracy = student.test["classes"]["accuracy"]
    assert accuracy > chance + 0.2 and accuracy > control.test["classes"]["accuracy"] + 0.2, (accuracy, control.test)


def test_zero_pseudo_weight_trains_bit_identically_to_no_coupling(tiny_db):
    cpu = torch.device("cpu")
    options = {**StudentTeacher().hparams(), "pseudo_weight": 0.0}
    cfg = tiny_config("student_teacher", options, db_options=tiny_db.options())
    student = train(cfg, tiny_db, StudentTeacher(pseudo_weight=0.0), cpu, progress=False,
                    linked=train_dependencies(cfg, tiny_db, cpu))
    baseline = train(tiny_config("no_coupling", {}, db_options=tiny_db.options()), tiny_db,
                     METHODS.get("no_coupling")(), cpu, progress=False)
    a, b = student.model.state_dict(), baseline.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b) and student.test == baseline.test
