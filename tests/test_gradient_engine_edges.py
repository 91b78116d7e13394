"""The gradient engine on hand-checkable float64 networks: each GradientRequest target and reduction, the Gram
matrix and TaskGradients it hands a weighting, how weights, extras, loss scales and a weighting's own loss end up
in ``.grad``, absent tasks, unused parameters, the last-shared-layer search, the empty cases and the collectives.

The network: z = W x + b with W (2, 3) (plus an unused shared parameter ``spare``), two linear heads a, b of one
output; X holds two samples. With L_t = sum of head t's logits the gradient at z is head t's weight on every row,
so the rows and Gram matrices below are worked out by hand; other cases compare with plain torch.autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import benchmark.gradient_engine as engine
from benchmark.gradient_engine import (as_weighting, global_rows, is_annotated, last_shared_layer,
                                       local_parameter_rows, representation_gram, weighted_backward)
from benchmark.tasks import Batch, Problem, TaskSpec
from methods import Method, MultiTaskModel, StepContext
from methods.base import GradientRequest, TaskGradients, Weighting
from tests.methods.tiny_mtl import grads_of

F64 = torch.float64
X = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]], dtype=F64)  # (B=2, 3); X.sum(0) = [1, 1, 4]
PROBLEM = Problem("hand", (TaskSpec("a", "multiclass", ("p", "q")), TaskSpec("b", "multiclass", ("p", "q")),
                           TaskSpec("c", "multiclass", ("p", "q"))))
HEAD_WEIGHTS = {"a": [[1.0, 2.0]], "b": [[3.0, -1.0]]}
Answer = Tensor | Weighting | Sequence[float]


class SpareBackbone(nn.Module):
    """z = lin(x); ``spare`` is a shared parameter no loss uses (registered first, so it leads the flat vectors)."""

    def __init__(self, dtype: torch.dtype = F64) -> None:
        super().__init__()
        self.spare = nn.Parameter(torch.tensor([5.0, 6.0], dtype=dtype))
        self.lin = nn.Linear(3, 2, dtype=dtype)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]))
            self.lin.bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)


class Blind(nn.Module):
    """A head whose logits ignore z: its loss has no gradient at z (nor on the backbone)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor([0.5], dtype=F64))

    def forward(self, z: Tensor) -> Tensor:
        return self.c.expand(z.shape[0], 1)


class NoSharedZ(MultiTaskModel):
    """A network that (as AdaShare does) has no representation shared by every head."""

    has_shared_representation = False


class Scripted(Method):
    """A gradient method that asks for ``request``, records what it is handed and answers ``answer``."""

    def __init__(self, request: GradientRequest, answer: Answer | Callable[[TaskGradients], Answer]) -> None:
        super().__init__()
        self.request = request
        self.answer = answer
        self.seen: list[TaskGradients] = []

    def gradient_request(self) -> GradientRequest:
        return self.request

    def weighting(self, gradients: TaskGradients) -> Answer:
        self.seen.append(gradients)
        return self.answer(gradients) if callable(self.answer) else self.answer


def make_model(blind: bool = False, dtype: torch.dtype = F64) -> MultiTaskModel:
    """Backbone SpareBackbone, heads a, b (or a and the blind head c)."""
    heads: dict[str, nn.Module] = {}
    for name in ("a", "c") if blind else ("a", "b"):
        if name == "c":
            heads[name] = Blind()
            continue
        head = nn.Linear(2, 1, dtype=dtype)
        with torch.no_grad():
            head.weight.copy_(torch.tensor(HEAD_WEIGHTS[name]))
            head.bias.fill_(0.5 if name == "a" else -1.0)
        heads[name] = head
    return MultiTaskModel(SpareBackbone(dtype), nn.ModuleDict(heads))


def make_batch(tasks: Sequence[str], absent: Sequence[str] = ()) -> Batch:
    """Class targets: a present task's only annotated entry is class 0; an absent one has targets -1 (mask set)."""
    targets = {t: torch.tensor([-1, -1]) if t in absent else torch.tensor([0, -1]) for t in tasks}
    masks = {t: torch.tensor([True, True]) for t in tasks}
    return Batch(X.clone(), targets, masks, torch.arange(2))


def task_losses(logits: dict[str, Tensor], linear: bool) -> dict[str, Tensor]:
    """L_t = sum of logits (linear), else a quadratic per task."""
    if linear:
        return {t: value.sum() for t, value in logits.items()}
    quadratic = {"a": lambda v: (v ** 2).mean(), "b": lambda v: 0.5 * ((v - 1.0) ** 2).mean(),
                 "c": lambda v: (v ** 2).sum()}
    return {t: quadratic[t](value) for t, value in logits.items()}


def make_step(model: MultiTaskModel, *, linear: bool = False, absent: Sequence[str] = (),
              loss_scale: float = 1.0) -> tuple[dict[str, Tensor], StepContext]:
    """The losses and StepContext the training loop would hand the engine (step 3, epoch 1)."""
    out = model(X)
    ctx = StepContext(model, make_batch(list(out.logits), absent), out, PROBLEM, step=3, epoch=1,
                      loss_scale=loss_scale)
    return task_losses(out.logits, linear), ctx


def combine(parts: Sequence[tuple[float, list[Tensor]]]) -> list[Tensor]:
    """Σ factor · gradients, parameter by parameter."""
    return [sum(f * grads[i] for f, grads in parts) for i in range(len(parts[0][1]))]


def grad_of(param: Tensor) -> Tensor:
    """``param.grad``, asserting it is set."""
    assert param.grad is not None
    return param.grad


def backbone_used(model: MultiTaskModel) -> list[Tensor]:
    """The shared parameters a loss reaches (the Linear's weight and bias, not ``spare``)."""
    return [model.backbone.lin.weight, model.backbone.lin.bias]


# ----- representation: rows, Gram matrix and TaskGradients by hand ------------------------------
@pytest.mark.parametrize("reduction, rows, gram", [
    ("flatten", [[1.0, 2.0, 1.0, 2.0], [3.0, -1.0, 3.0, -1.0]], [[10.0, 2.0], [2.0, 20.0]]),
    ("sum", [[2.0, 4.0], [6.0, -2.0]], [[20.0, 4.0], [4.0, 40.0]]),
])
def test_representation_rows_and_gram_by_hand(reduction: str, rows: list[list[float]], gram: list[list[float]]) -> None:
    """flatten: row t is g_t (B, D) as one B·D vector; sum: g_t summed over the batch; all float64."""
    model = make_model()
    losses, ctx = make_step(model, linear=True)
    method = Scripted(GradientRequest("representation", reduction), torch.tensor([1.0, 1.0]))
    weighted_backward(method, losses, ctx)
    (seen,) = method.seen
    torch.testing.assert_close(seen.vectors, torch.tensor(rows, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(seen.gram, torch.tensor(gram, dtype=F64), rtol=0, atol=0)
    assert seen.tasks == ["a", "b"] and seen.absent == [] and (seen.step, seen.epoch) == (3, 1)
    expected_losses = torch.stack([losses["a"].detach(), losses["b"].detach()])
    torch.testing.assert_close(seen.losses, expected_losses, rtol=0, atol=0)
    assert seen.losses.dtype == F64 and set(seen.all_losses) == {"a", "b"}


@pytest.mark.parametrize("reduction", ["flatten", "sum"])
def test_representation_rows_are_float64_and_divided_by_the_loss_scale(reduction: str) -> None:
    """A float32 network under fp16 loss scale 2: rows in float64, halved; the backward itself is not rescaled."""
    model = make_model(dtype=torch.float32)
    out = model(X.float())
    ctx = StepContext(model, make_batch(["a", "b"]), out, PROBLEM, 0, 0, loss_scale=2.0)
    losses = task_losses(out.logits, linear=True)
    method = Scripted(GradientRequest("representation", reduction), torch.tensor([1.0, 1.0]))
    weighted_backward(method, losses, ctx)
    vectors = method.seen[0].vectors
    full = torch.tensor([[1.0, 2.0, 1.0, 2.0], [3.0, -1.0, 3.0, -1.0]] if reduction == "flatten" else
                        [[2.0, 4.0], [6.0, -2.0]], dtype=F64)
    assert vectors.dtype == F64 and method.seen[0].gram.dtype == F64
    torch.testing.assert_close(vectors, full / 2.0, rtol=0, atol=0)
    torch.testing.assert_close(method.seen[0].gram, full @ full.T / 4.0, rtol=0, atol=0)
    # the backbone gets Σ w_t g_t as it came (scaled gradients stay scaled for the grad scaler to remove)
    torch.testing.assert_close(grad_of(model.backbone.lin.bias), torch.tensor([8.0, 2.0]))


def test_representation_gram_of_nothing_is_empty_float64() -> None:
    vectors, gram = representation_gram([], "flatten", 1.0)
    assert vectors.shape == (0, 0) and gram.shape == (0, 0)
    assert vectors.dtype == F64 and gram.dtype == F64


# ----- representation: the backward -----------------------------------------------------------
@pytest.mark.parametrize("head_gradient", ["own", "weighted"])
@pytest.mark.parametrize("weights", [(1.0, -1.0), (0.25, 3.0)])
def test_representation_backward_combines_at_z(head_gradient: str, weights: tuple[float, float]) -> None:
    """Backbone: Σ_t w_t ∇L_t through z; heads: ∇L_t (own) or w_t ∇L_t (weighted); returned weights per task."""
    model = make_model()
    losses, ctx = make_step(model)
    shared = backbone_used(model)
    per_task = {t: grads_of(losses[t], shared) for t in ("a", "b")}
    heads = {t: grads_of(losses[t], list(model.heads[t].parameters())) for t in ("a", "b")}
    method = Scripted(GradientRequest("representation", head_gradient=head_gradient), torch.tensor(weights))
    applied = weighted_backward(method, losses, ctx)
    assert applied.keys() == {"weight/a", "weight/b"}
    for t, w in zip(("a", "b"), weights):
        assert torch.equal(applied[f"weight/{t}"], torch.tensor(w))
    for param, expected in zip(shared, combine([(weights[0], per_task["a"]), (weights[1], per_task["b"])])):
        torch.testing.assert_close(grad_of(param), expected)
    assert model.backbone.spare.grad is None  # no loss reaches it
    for t, w in zip(("a", "b"), weights):
        factor = 1.0 if head_gradient == "own" else w
        for param, expected in zip(model.heads[t].parameters(), heads[t]):
            torch.testing.assert_close(grad_of(param), factor * expected)


@pytest.mark.parametrize("head_gradient", ["own", "weighted"])
def test_representation_backward_adds_extras_at_weight_one_and_accumulates(head_gradient: str) -> None:
    """Extras (here on head a's logits and on the backbone weight) get weight 1; existing .grad values are added to."""
    model = make_model()
    out = model(X)
    ctx = StepContext(model, make_batch(["a", "b"]), out, PROBLEM, 0, 0)
    losses = task_losses(out.logits, linear=False)
    losses["extra"] = 0.5 * (out.logits["a"] ** 2).sum() + 0.1 * (model.backbone.lin.weight ** 2).sum()
    params = list(model.parameters())
    per_task = {name: grads_of(losses[name], params) for name in ("a", "b", "extra")}
    preset = [torch.full_like(p, 0.5) for p in params]
    for param, value in zip(params, preset):
        param.grad = value.clone()
    weights = (2.0, -0.5)
    method = Scripted(GradientRequest("representation", head_gradient=head_gradient), torch.tensor(weights))
    applied = weighted_backward(method, losses, ctx)
    assert applied.keys() == {"weight/a", "weight/b"}  # extras are no task
    assert method.seen[0].tasks == ["a", "b"] and method.seen[0].gram.shape == (2, 2)
    head_factor = {t: 1.0 if head_gradient == "own" else w for t, w in zip(("a", "b"), weights)}
    head_ids = {id(p): t for t in ("a", "b") for p in model.heads[t].parameters()}
    for i, param in enumerate(params):
        if id(param) in head_ids:
            t = head_ids[id(param)]
            expected = preset[i] + head_factor[t] * per_task[t][i] + per_task["extra"][i]
        else:
            expected = preset[i] + weights[0] * per_task["a"][i] + weights[1] * per_task["b"][i] + per_task["extra"][i]
        torch.testing.assert_close(grad_of(param), expected)


def test_a_loss_that_does_not_reach_z_is_a_zero_row_and_its_head_still_learns() -> None:
    """Head c ignores z: its row is zeros (not dropped), its weight moves no backbone gradient, its head gets ∇L_c."""
    model = make_model(blind=True)
    losses, ctx = make_step(model)
    shared = backbone_used(model)
    grad_a = grads_of(losses["a"], shared)
    g_a = torch.autograd.grad(losses["a"], ctx.outputs.features, retain_graph=True)[0]
    method = Scripted(GradientRequest("representation", head_gradient="own"), torch.tensor([0.5, 4.0]))
    weighted_backward(method, losses, ctx)
    seen = method.seen[0]
    expected_rows = torch.stack([g_a.flatten(), torch.zeros(4, dtype=F64)])
    torch.testing.assert_close(seen.vectors, expected_rows, rtol=0, atol=0)
    torch.testing.assert_close(seen.gram, expected_rows @ expected_rows.T, rtol=0, atol=0)
    for param, expected in zip(shared, grad_a):
        torch.testing.assert_close(grad_of(param), 0.5 * expected)
    torch.testing.assert_close(grad_of(model.heads["c"].c), torch.tensor([2.0], dtype=F64))  # d/dc of 2 c², own


def test_representation_needs_a_shared_representation() -> None:
    model = make_model()
    model = NoSharedZ(model.backbone, model.heads)
    losses, ctx = make_step(model)
    method = Scripted(GradientRequest("representation"), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="NoSharedZ runs a separate backbone pass per task.*wrt='shared_parameters'"):
        weighted_backward(method, losses, ctx)
    assert method.seen == []


# ----- absent tasks ---------------------------------------------------------------------------
@pytest.mark.parametrize("wrt", ["representation", "shared_parameters"])
def test_an_absent_task_has_weight_zero_and_no_row(wrt: str) -> None:
    """Task a (targets -1) is left out of the Gram matrix (1 x 1, not a zero row), weighted 0 in the backward."""
    model = make_model()
    losses, ctx = make_step(model, linear=True, absent=("a",))
    shared = backbone_used(model)
    grad_b = grads_of(losses["b"], shared)
    head_a = [torch.zeros_like(p) for p in model.heads["a"].parameters()]
    method = Scripted(GradientRequest(wrt, head_gradient="weighted"), torch.tensor([3.0]))
    applied = weighted_backward(method, losses, ctx)
    seen = method.seen[0]
    assert seen.tasks == ["b"] and seen.absent == ["a"]
    torch.testing.assert_close(seen.losses, losses["b"].detach().reshape(1), rtol=0, atol=0)
    torch.testing.assert_close(seen.all_losses["a"], losses["a"].detach(), rtol=0, atol=0)
    expected_gram = 20.0 if wrt == "representation" else 220.0  # ‖[3, -1, 3, -1]‖²; ‖∇_θ L_b‖² by hand
    torch.testing.assert_close(seen.gram, torch.tensor([[expected_gram]], dtype=F64), rtol=0, atol=0)
    assert {k: float(v) for k, v in applied.items()} == {"weight/a": 0.0, "weight/b": 3.0}
    for param, expected in zip(shared, grad_b):
        torch.testing.assert_close(grad_of(param), 3.0 * expected)
    for param, expected in zip(model.heads["a"].parameters(), head_a):
        torch.testing.assert_close(grad_of(param), expected)  # 0 · ∇L_a: zeros


@pytest.mark.parametrize("wrt", ["representation", "shared_parameters"])
def test_no_annotated_task_hands_an_empty_gram_and_leaves_zero_gradients(wrt: str) -> None:
    model = make_model()
    losses, ctx = make_step(model, linear=True, absent=("a", "b"))
    method = Scripted(GradientRequest(wrt), torch.zeros(0))
    applied = weighted_backward(method, losses, ctx)
    seen = method.seen[0]
    assert seen.tasks == [] and seen.absent == ["a", "b"] and seen.losses.shape == (0,)
    assert seen.gram.shape == (0, 0) and seen.vectors.shape == (0, 0)
    assert seen.gram.dtype == F64 and seen.vectors.dtype == F64
    assert {k: float(v) for k, v in applied.items()} == {"weight/a": 0.0, "weight/b": 0.0}
    for param in backbone_used(model):
        assert torch.equal(grad_of(param), torch.zeros_like(param))


# ----- shared parameters ----------------------------------------------------------------------
SHARED_ROWS = [[0.0, 0.0, 1.0, 1.0, 4.0, 2.0, 2.0, 8.0, 2.0, 4.0],  # spare (unused: zeros), W, b of L_a
               [0.0, 0.0, 3.0, 3.0, 12.0, -1.0, -1.0, -4.0, 6.0, -2.0]]


def test_shared_parameter_rows_keep_unused_parameters_as_zero_blocks() -> None:
    """Every shared parameter flattened in order (spare's zero block included); Gram by hand; float64 Gram."""
    model = make_model()
    losses, ctx = make_step(model, linear=True)
    method = Scripted(GradientRequest("shared_parameters"), torch.tensor([1.0, 1.0]))
    weighted_backward(method, losses, ctx)
    seen = method.seen[0]
    torch.testing.assert_close(seen.vectors, torch.tensor(SHARED_ROWS, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(seen.gram, torch.tensor([[110.0, 22.0], [22.0, 220.0]], dtype=F64), rtol=0, atol=0)


def test_parameter_rows_directly() -> None:
    """One row per loss, in the parameters' dtype (float32 here), divided by the loss scale once made global; which
    parameters a loss reaches (not ``spare``); none: 0 x 0 float64."""
    model = make_model(dtype=torch.float32)
    out = model(X.float())
    losses = task_losses(out.logits, linear=True)
    params = list(model.shared_parameters())

    def parameter_gradients(chosen: list[Tensor], wrt: list[Tensor], scale: float) -> Tensor:
        return global_rows(local_parameter_rows(chosen, wrt)[0], scale)

    vectors = parameter_gradients([losses["a"], losses["b"]], params, 2.0)
    assert vectors.dtype == torch.float32
    torch.testing.assert_close(vectors, torch.tensor(SHARED_ROWS) / 2.0, rtol=0, atol=0)
    assert local_parameter_rows([losses["a"], losses["b"]], params)[1] == [False, True, True]  # spare, W, b
    single = parameter_gradients([losses["b"]], [model.backbone.lin.bias], 1.0)
    torch.testing.assert_close(single, torch.tensor([[6.0, -2.0]]), rtol=0, atol=0)
    pair = parameter_gradients([losses["a"]], backbone_used(model), 1.0)  # two blocks: W then b
    torch.testing.assert_close(pair, torch.tensor([SHARED_ROWS[0][2:]]), rtol=0, atol=0)
    empty = parameter_gradients([], params, 1.0)
    assert empty.shape == (0, 0) and empty.dtype == F64


@pytest.mark.parametrize("extra", [False, True])
def test_shared_parameter_backward_weights_heads_and_adds_extras(extra: bool) -> None:
    """Σ_t w_t L_t (+ extras at weight 1): backbone and heads weighted; the unused ``spare`` keeps no gradient.
    Without extras the backbone's gradient is Σ_t w_t of the rows already taken: one backward per task reaches
    it, none more; an extra term needs a backward of its own (the plain one of everything, three in all)."""
    model = make_model()
    losses, ctx = make_step(model)
    terms = ("a", "b", "extra") if extra else ("a", "b")
    if extra:
        losses["extra"] = 0.3 * (model.backbone.lin.bias ** 2).sum() + 0.5 * (ctx.outputs.logits["b"] ** 2).sum()
    params = list(model.parameters())
    per_task = {name: grads_of(losses[name], params) for name in terms}
    weights = (0.25, -2.0)
    passes: list[int] = []
    model.backbone.lin.weight.register_hook(lambda _: passes.append(1))  # once per backward reaching W
    applied = weighted_backward(Scripted(GradientRequest("shared_parameters"), torch.tensor(weights)), losses, ctx)
    assert {k: float(v) for k, v in applied.items()} == {"weight/a": 0.25, "weight/b": -2.0}
    assert len(passes) == (3 if extra else 2)
    expected = combine([(weights[0], per_task["a"]), (weights[1], per_task["b"])]
                       + ([(1.0, per_task["extra"])] if extra else []))
    for param, value in zip(params, expected):
        if param is model.backbone.spare:
            assert param.grad is None
        else:
            torch.testing.assert_close(grad_of(param), value)


def test_shared_parameter_gradients_keep_the_parameters_memory_format() -> None:
    """A channels_last conv weight gets a channels_last gradient holding the right values (the rows are flattened
    in logical order)."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    model = MultiTaskModel(conv, nn.ModuleDict({t: nn.Linear(2, 1) for t in ("a", "b")}))
    model.to(memory_format=torch.channels_last)
    weight = model.backbone[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    out = model(torch.randn(2, 3, 5, 5))
    losses = {t: (v ** 2).mean() for t, v in out.logits.items()}
    ctx = StepContext(model, Batch(torch.zeros(2), {t: torch.tensor([0, 0]) for t in "ab"},
                                   {t: torch.tensor([True, True]) for t in "ab"}, torch.arange(2)), out, PROBLEM, 0, 0)
    expected = combine([(0.5, grads_of(losses["a"], [weight])), (3.0, grads_of(losses["b"], [weight]))])[0]
    weighted_backward(Scripted(GradientRequest("shared_parameters"), torch.tensor([0.5, 3.0])), losses, ctx)
    assert grad_of(weight).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(grad_of(weight), expected)


def test_loss_scale_and_a_weightings_own_loss() -> None:
    """Rows are divided by the loss scale (2); the weighting's own loss is back-propagated times the scale."""
    model = make_model()
    losses, ctx = make_step(model, linear=True, loss_scale=2.0)
    shared = backbone_used(model)
    per_task = {t: grads_of(losses[t], shared) for t in ("a", "b")}
    own = nn.Parameter(torch.tensor([1.0, 2.0], dtype=F64))
    own_loss = ((own * torch.tensor([3.0, -1.0], dtype=F64)).sum()) ** 2  # ∇ = 2 (3 - 2) [3, -1] = [6, -2]
    method = Scripted(GradientRequest("shared_parameters"), Weighting(torch.tensor([0.5, 2.0]), own_loss))
    weighted_backward(method, losses, ctx)
    torch.testing.assert_close(method.seen[0].vectors, torch.tensor(SHARED_ROWS, dtype=F64) / 2.0, rtol=0, atol=0)
    torch.testing.assert_close(method.seen[0].gram, torch.tensor([[110.0, 22.0], [22.0, 220.0]], dtype=F64) / 4.0)
    torch.testing.assert_close(grad_of(own), torch.tensor([12.0, -4.0], dtype=F64))
    for param, expected in zip(shared, combine([(0.5, per_task["a"]), (2.0, per_task["b"])])):
        torch.testing.assert_close(grad_of(param), expected)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_a_weightings_own_loss_at_the_representation(scale: float) -> None:
    model = make_model()
    losses, ctx = make_step(model, linear=True, loss_scale=scale)
    own = nn.Parameter(torch.tensor(3.0, dtype=F64))
    method = Scripted(GradientRequest("representation"), Weighting(torch.tensor([1.0, 1.0]), 0.5 * own ** 2))
    weighted_backward(method, losses, ctx)
    torch.testing.assert_close(grad_of(own), torch.tensor(3.0 * scale, dtype=F64))


# ----- the last shared layer ------------------------------------------------------------------
def deep_model() -> MultiTaskModel:
    """Backbone Linear(3, 4) → tanh → Linear(4, 2); heads a, b."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    heads = nn.ModuleDict({t: nn.Linear(2, 1).double() for t in ("a", "b")})
    return MultiTaskModel(backbone, heads)


def shared_layer_rows(layer: str, compare: str, cache: dict[str, str] | None) -> tuple[Tensor, Tensor]:
    """(rows the engine hands a weighting that asks for ``layer``, rows by autograd of ``compare``'s weight)."""
    model = deep_model()
    losses, ctx = make_step(model)
    weight = model.get_submodule(compare).weight
    expected = torch.stack([grads_of(losses[t], [weight])[0].flatten() for t in ("a", "b")])
    method = Scripted(GradientRequest("shared_layer", layer=layer), torch.tensor([1.0, 1.0]))
    weighted_backward(method, losses, ctx, cache)
    return method.seen[0].vectors, expected


def test_shared_layer_auto_finds_the_last_layer_and_fills_the_cache() -> None:
    cache: dict[str, str] = {}
    vectors, expected = shared_layer_rows("auto", "backbone.2", cache)
    assert vectors.shape == (2, 8) and cache == {"last_shared_layer": "backbone.2"}
    torch.testing.assert_close(vectors, expected, rtol=0, atol=0)
    vectors, expected = shared_layer_rows("auto", "backbone.2", None)  # without a cache too
    torch.testing.assert_close(vectors, expected, rtol=0, atol=0)


def test_shared_layer_auto_reads_the_cache_and_explicit_names_are_used_as_given() -> None:
    cache = {"last_shared_layer": "backbone.0"}
    vectors, expected = shared_layer_rows("auto", "backbone.0", cache)  # the cache's answer, not searched again
    assert vectors.shape == (2, 12) and cache == {"last_shared_layer": "backbone.0"}
    torch.testing.assert_close(vectors, expected, rtol=0, atol=0)
    cache = {}
    vectors, expected = shared_layer_rows("backbone.0", "backbone.0", cache)
    assert vectors.shape == (2, 12) and cache == {}
    torch.testing.assert_close(vectors, expected, rtol=0, atol=0)


@pytest.mark.parametrize("layer", ["backbone.7", "backbone"])
def test_a_layer_name_without_a_weight_is_a_value_error(layer: str) -> None:
    model = deep_model()
    losses, ctx = make_step(model)
    method = Scripted(GradientRequest("shared_layer", layer=layer), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match=f"layer='{layer}' is no module with a weight"):
        weighted_backward(method, losses, ctx)


def test_a_layer_built_without_a_weight_is_a_value_error_not_a_torch_error() -> None:
    model = deep_model()
    model.spare = nn.Linear(2, 2)  # not on the forward path
    model.spare.weight = None  # nn.Module allows it; the engine must name the layer, not fail in torch
    losses, ctx = make_step(model)
    method = Scripted(GradientRequest("shared_layer", layer="spare"), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="layer='spare' is no module with a weight"):
        weighted_backward(method, losses, ctx)


@pytest.mark.parametrize("layer, frozen", [("heads.a", False), ("backbone.0", True)])
def test_a_layer_outside_the_trainable_shared_backbone_is_a_value_error(layer: str, frozen: bool) -> None:
    model = deep_model()
    if frozen:
        model.backbone[0].weight.requires_grad_(False)
    losses, ctx = make_step(model)
    method = Scripted(GradientRequest("shared_layer", layer=layer), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match=f"layer='{layer}' is not a trainable layer of the shared backbone"):
        weighted_backward(method, losses, ctx)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_a_floating_point_error(bad: float) -> None:
    with pytest.raises(FloatingPointError, match="non-finite task weights"):
        as_weighting([1.0, bad], 2)
    model = deep_model()
    losses, ctx = make_step(model)
    method = Scripted(GradientRequest("representation"), torch.tensor([bad, 1.0]))
    with pytest.raises(FloatingPointError):
        weighted_backward(method, losses, ctx)
    assert all(p.grad is None for p in model.parameters())  # nothing was applied


class Fused(nn.Module):
    """One autograd node (an add) consumes both layers' weights, as a compiled network's fused node does."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 2, bias=False)
        self.second = nn.Linear(3, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.first.weight + self.second.weight)


def test_a_fused_node_using_several_layers_is_ambiguous() -> None:
    module = Fused()
    with pytest.raises(ValueError, match=r"which of the layers \['first', 'second'\] ran last"):
        last_shared_layer(module, list(module.parameters()), module(torch.randn(2, 3)))
    # with one of them frozen, the other is the answer
    module.first.weight.requires_grad_(False)
    assert last_shared_layer(module, list(module.parameters()), module(torch.randn(2, 3))) == "second"


# ----- weights --------------------------------------------------------------------------------
def test_as_weighting_accepts_tensors_sequences_and_weightings() -> None:
    from_list = as_weighting([0.5, 2.0], 2)
    assert from_list.loss is None and from_list.weights.dtype == F64
    torch.testing.assert_close(from_list.weights, torch.tensor([0.5, 2.0], dtype=F64), rtol=0, atol=0)
    from_tensor = as_weighting(torch.tensor([[1.0, 3.0]]), 2)  # flattened
    torch.testing.assert_close(from_tensor.weights, torch.tensor([1.0, 3.0], dtype=F64), rtol=0, atol=0)
    loss = torch.tensor(7.0)
    answer = as_weighting(Weighting(torch.tensor([0.25, 0.75], dtype=torch.float32), loss), 2)
    assert answer.loss is loss and answer.weights.dtype == F64
    torch.testing.assert_close(answer.weights, torch.tensor([0.25, 0.75], dtype=F64), rtol=0, atol=0)
    with pytest.raises(ValueError, match="weighting returned 3 weights for 2 annotated tasks"):
        as_weighting([1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError, match="weighting returned 1 weights for 2 annotated tasks"):
        as_weighting(Weighting(torch.tensor([1.0])), 2)


def test_a_weight_count_mismatch_stops_the_step() -> None:
    model = make_model()
    losses, ctx = make_step(model, absent=("b",))
    method = Scripted(GradientRequest("representation"), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="weighting returned 2 weights for 1 annotated tasks"):
        weighted_backward(method, losses, ctx)


# ----- annotations and collectives ------------------------------------------------------------
def test_is_annotated_counts_class_zero_and_reads_soft_targets_by_mask() -> None:
    batch = Batch(torch.zeros(2, 1),
                  {"zero": torch.tensor([0, -1]), "soft": torch.tensor([[-1.0, 0.5], [0.2, 0.8]]),
                   "masked": torch.tensor([[0.0], [1.0]])},
                  {"zero": torch.tensor([True, True]), "soft": torch.tensor([True, False]),
                   "masked": torch.tensor([[False], [False]])}, torch.arange(2))
    assert is_annotated(batch, "zero")  # class 0 is a class
    assert is_annotated(batch, "soft")  # float (mixed) targets: the mask alone
    assert not is_annotated(batch, "masked")


@pytest.mark.parametrize("reduction", ["flatten", "sum"])
def test_representation_gram_over_two_processes(monkeypatch: pytest.MonkeyPatch, reduction: str) -> None:
    """Two processes, the other one's tensors five times these (their mean: 3x). flatten: this process's rows, Gram
    = mean of the processes' Grams / K; sum: the rows are all-reduced first and the Gram is not divided."""
    monkeypatch.setattr(engine, "world_size", lambda: 2)
    monkeypatch.setattr(engine, "all_reduce_mean", lambda value: 3.0 * value)
    g_a = torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=F64)
    g_b = torch.tensor([[3.0, -1.0], [0.0, 1.0]], dtype=F64)
    vectors, gram = representation_gram([g_a, g_b], reduction, 1.0)
    if reduction == "flatten":
        rows = torch.stack([g_a.flatten(), g_b.flatten()])
        expected_vectors, expected_gram = rows, 3.0 * (rows @ rows.T) / 2.0
    else:
        rows = 3.0 * torch.stack([g_a.sum(0), g_b.sum(0)])
        expected_vectors, expected_gram = rows, rows @ rows.T
    torch.testing.assert_close(vectors, expected_vectors, rtol=0, atol=0)
    torch.testing.assert_close(gram, expected_gram, rtol=0, atol=0)
