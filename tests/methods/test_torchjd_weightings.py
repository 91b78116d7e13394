"""The TorchJD weightings: through mtlbench's gradient engine the backbone gets what TorchJD itself gives.

For each method, the same tiny network and batch go (a) through TorchJD directly, its aggregator on
the Jacobian of the task losses with respect to z (or, with ``gradients=shared_parameters``, TorchJD's
own ``mtl_backward`` + ``jac_to_grad``), and (b) through ``weighted_step`` (the training loop's engine
with the method's weighting); the backbone's gradients must agree to 1e-6.
"""

from __future__ import annotations

import pytest
import torch

from methods import METHODS
from methods.nash_mtl import gram_factor
from methods.weighting_support import step_seed
from tests.methods.tiny_mtl import forward, representation_gradients, tiny_batch, tiny_model, tiny_problem, weighted_step

torchjd = pytest.importorskip("torchjd")
from torchjd import aggregation as A  # noqa: E402
from torchjd.autojac import jac_to_grad, mtl_backward  # noqa: E402
from torchjd.linalg import QuadprogProjector  # noqa: E402

#: method name -> (its options, the TorchJD aggregator with the same settings)
AGGREGATORS = {
    "upgrad": ({}, lambda: A.UPGrad(projector=QuadprogProjector(norm_eps=1e-4, reg_eps=1e-4))),
    "dualproj": ({}, lambda: A.DualProj(projector=QuadprogProjector(norm_eps=1e-4, reg_eps=1e-4))),
    "pcgrad": ({}, lambda: A.PCGrad()),
    "cagrad": ({"c": 0.4}, lambda: A.CAGrad(c=0.4)),
    "imtl_g": ({}, lambda: A.IMTLG()),
    "aligned_mtl": ({"scale_mode": "min"}, lambda: A.AlignedMTL(scale_mode="min")),
    "mgda": ({}, lambda: A.MGDA(epsilon=1e-3, max_iters=100)),
    "nash_mtl": ({}, None),  # needs the number of tasks: see _aggregator
}
NAMES = sorted(AGGREGATORS)


def _aggregator(name: str, n_tasks: int):
    return A.NashMTL(n_tasks=n_tasks, max_norm=1.0, update_weights_every=1, optim_niter=20) if name == "nash_mtl" \
        else AGGREGATORS[name][1]()


def _setup(name: str, n_tasks: int = 3, unannotated: tuple[str, ...] = (), **options):
    method = METHODS.get(name)(**(AGGREGATORS[name][0] | options))
    problem = tiny_problem(n_tasks)
    model = tiny_model(method, problem)
    losses, ctx = forward(method, model, tiny_batch(problem, seed=1, unannotated=unannotated), problem)
    return method, problem, model, losses, ctx


def _backbone_grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.backbone.parameters()]


def _direct_at_z(name: str, losses, ctx, tasks: list[str], step_seed_of=None) -> torch.Tensor:
    """TorchJD's aggregation of the (float64) Jacobian of ``tasks``' losses w.r.t. z, shaped like z."""
    z = ctx.outputs.features
    jacobian = torch.stack([torch.autograd.grad(losses[t], z, retain_graph=True)[0].flatten() for t in tasks]).double()
    aggregator = _aggregator(name, len(tasks))
    if step_seed_of is not None:  # PCGrad: the order mtlbench draws, from the run's seed and the step
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed_of)
            return aggregator(jacobian).view_as(z)
    return aggregator(jacobian).view_as(z)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("unannotated", [(), ("att0",)], ids=["all_annotated", "one_task_absent"])
def test_the_engine_gives_the_backbone_torchjds_update_at_z(name, unannotated):
    method, problem, model, losses, ctx = _setup(name, unannotated=unannotated)
    tasks = [t for t in problem.task_names if t not in unannotated]  # an absent task is left out, not a zero row
    seed = step_seed(int(method.seed), ctx.step) if name == "pcgrad" else None
    direction = _direct_at_z(name, losses, ctx, tasks, seed)
    torch.autograd.backward(ctx.outputs.features, direction.to(ctx.outputs.features.dtype), retain_graph=True)
    expected = _backbone_grads(model)
    model.zero_grad(set_to_none=True)
    weights = weighted_step(method, losses, ctx)
    for got, want in zip(_backbone_grads(model), expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert all(weights[t] == 0.0 for t in unannotated)


@pytest.mark.parametrize("name", ["upgrad", "mgda", "imtl_g", "cagrad"])
def test_shared_parameters_option_matches_torchjds_mtl_backward(name):
    method, problem, model, losses, ctx = _setup(name, gradients="shared_parameters")
    assert method.gradient_request().wrt == "shared_parameters"
    tasks = problem.task_names
    params = list(model.backbone.parameters())
    mtl_backward([losses[t] for t in tasks], features=ctx.outputs.features, shared_params=params, retain_graph=True)
    jac_to_grad(params, _aggregator(name, len(tasks)))
    expected = _backbone_grads(model)
    model.zero_grad(set_to_none=True)
    weighted_step(method, losses, ctx)
    for got, want in zip(_backbone_grads(model), expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_heads_get_their_own_gradient_by_default_and_weighted_on_request():
    for head_gradient in ("own", "weighted"):
        method, problem, model, losses, ctx = _setup("upgrad", head_gradient=head_gradient)
        own = {t: torch.autograd.grad(losses[t], list(model.task_parameters(t)), retain_graph=True) for t in problem.task_names}
        weights = weighted_step(method, losses, ctx)
        for t in problem.task_names:
            factor = 1.0 if head_gradient == "own" else weights[t]
            for param, grad in zip(model.task_parameters(t), own[t]):
                torch.testing.assert_close(param.grad, factor * grad)


@pytest.mark.parametrize("name", NAMES)
def test_the_adapter_hands_torchjd_the_engines_gram_matrix(name):
    """On a hand-made 3x3 Gram matrix, weighting() returns exactly TorchJD's weights (nash: of a matching J)."""
    vectors = torch.tensor([[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0], [0.2, -0.3, 2.0]], dtype=torch.float64)
    gradients = representation_gradients([v for v in vectors], [1.0, 2.0, 3.0])
    method = METHODS.get(name)(**AGGREGATORS[name][0])
    if name == "nash_mtl":
        method.build(torch.nn.Identity(), torch.nn.ModuleDict({t: torch.nn.Identity() for t in gradients.tasks}), None)
        expected = _aggregator(name, 3).weighting(gram_factor(vectors @ vectors.T))
    elif name == "pcgrad":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(int(method.seed), gradients.step))
            expected = A.PCGradWeighting()(vectors @ vectors.T)
    else:
        expected = _aggregator(name, 3).gramian_weighting(vectors @ vectors.T)
    torch.testing.assert_close(method.weighting(gradients), expected.double(), atol=1e-12, rtol=1e-9)


def test_gram_factor_is_a_square_root_of_the_gram_matrix():
    vectors = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gram = vectors @ vectors.T
    factor = gram_factor(gram)
    torch.testing.assert_close(factor @ factor.T, gram, atol=1e-12, rtol=1e-12)


def test_nash_mtl_state_survives_a_state_dict_round_trip():
    """The warm start and the reuse counter live in buffers: a method restored from them continues identically."""
    first, problem, first_model, losses, ctx = _setup("nash_mtl", update_weights_every=2)
    weighted_step(first, losses, ctx)  # solves (call 0); call 1 reuses
    restored = METHODS.get("nash_mtl")(update_weights_every=2)
    restored_model = tiny_model(restored, problem)  # the same initial weights; no optimizer step was taken
    restored.load_state_dict(first.state_dict())
    assert restored._solvers == {} and int(restored.calls.sum()) == 1
    for step in (1, 2, 3):  # a reuse step, a solve warm-started from the buffer, a reuse
        out = []
        for method, model in ((first, first_model), (restored, restored_model)):
            losses, ctx = forward(method, model, tiny_batch(problem, seed=1 + step), problem, step=step)
            out.append(weighted_step(method, losses, ctx))
        assert out[0] == out[1]
    assert torch.equal(first.alpha, restored.alpha) and torch.equal(first.calls, restored.calls)
    assert int(first.calls.sum()) == 4


def test_pcgrad_draws_from_the_run_seed_and_step_only():
    vectors = torch.tensor([[1.0, 0.0], [-1.0, 0.2], [0.3, -1.0]], dtype=torch.float64)
    gradients = representation_gradients([v for v in vectors], [1.0, 1.0, 1.0])
    method = METHODS.get("pcgrad")()
    state = torch.get_rng_state()
    first = method.weighting(gradients)
    assert torch.equal(torch.get_rng_state(), state), "the run's random stream is left untouched"
    assert torch.equal(method.weighting(gradients), first)


@pytest.mark.parametrize("run_seed", [12345, 2**62 + 7, 2**63 + 5])
def test_pcgrad_takes_the_runs_seed_as_torch_gives_it_folded_into_int64(run_seed):
    """build() stores torch.initial_seed() (what train() seeded) modulo 2**63, the int64 buffer's range: a seed
    above 2**63 (torch takes any uint64) is folded, one below kept as it is."""
    method = METHODS.get("pcgrad")()
    with torch.random.fork_rng(devices=[]):
        tiny_model(method, tiny_problem(2), seed=run_seed)  # seeds torch with run_seed, then builds
    assert int(method.seed) == run_seed % 2**63


@pytest.mark.parametrize("name, options, message", [
    ("upgrad", {"gradients": "shared_layer"}, "gradients='shared_layer' is not one of"),
    ("cagrad", {"c": -1.0}, "cagrad: c must be non-negative"),
    ("mgda", {"max_iters": 0}, "mgda: max_iters must be a positive integer"),
    ("nash_mtl", {"optim_niter": 0}, "nash_mtl: optim_niter must be a positive integer"),
    ("aligned_mtl", {"scale_mode": "max"}, "scale_mode='max' is not one of"),
    ("pcgrad", {"head_gradient": "scaled"}, "head_gradient='scaled' is not one of"),
])
def test_bad_hyperparameters_are_refused_with_the_methods_name(name, options, message):
    with pytest.raises(ValueError, match=message):
        METHODS.get(name)(**options)


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_that_annotates_one_task_gets_a_finite_weight_for_it(name):
    """Disjoint annotations give batches with one annotated task (found by the synthetic evidence sweep: Nash-MTL's
    cvxpy problem could not be built for one task). Every weighting must then give that task one finite weight."""
    method, problem, model, losses, ctx = _setup(name, n_tasks=2, unannotated=("att0",))
    weights = weighted_step(method, losses, ctx)
    assert weights["att0"] == 0.0
    present = [t for t in problem.task_names if t != "att0"]
    assert len(present) == 1 and bool(torch.isfinite(torch.tensor(weights[present[0]]))) and weights[present[0]] > 0
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.backbone.parameters() if p.grad is not None)


@pytest.mark.parametrize("max_norm", [1.0, 0.25, 0.0])
def test_nash_mtl_for_one_task_is_its_closed_form(max_norm):
    """G α = 1/α with T = 1 gives α = 1/‖g‖; clipping ‖α g‖ (= 1) to max_norm scales it (0: no clipping)."""
    method = METHODS.get("nash_mtl")(max_norm=max_norm)
    method.build(torch.nn.Identity(), torch.nn.ModuleDict({t: torch.nn.Identity() for t in ("a", "b")}), None)
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ‖g‖ = 5
    weights = method.weighting(representation_gradients([g], [1.0], tasks=["b"]))
    expected = (min(1.0, max_norm) if max_norm > 0 else 1.0) / 5.0
    torch.testing.assert_close(weights, torch.tensor([expected], dtype=torch.float64))
    assert int(method.calls[1]) == 1 and float(method.alpha[1, 1]) == pytest.approx(expected)  # subset {b}: row 2 - 1
