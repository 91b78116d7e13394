"""``nash_mtl``'s edges (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game", through TorchJD's
``NashMTL`` weighting), from mutation testing (docs/mutation.md): the cap on the number of tasks, the square root
of a Gram matrix that rounding leaves slightly indefinite, the paper's defaults, one state per non-empty subset of
annotated tasks, the one-task closed form with ``max_norm`` above 1, and TorchJD's schedule of solves and reuses
(``update_weights_every``) with the cvxpy problem built once per subset.

That the adapter gives TorchJD's weights, the one-task closed form for ``max_norm`` <= 1 and the state_dict round
trip are in test_torchjd_weightings.py; these pin what it leaves open.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from methods import METHODS
from methods.nash_mtl import MAX_TASKS, NashMTL, gram_factor
from tests.methods.tiny_mtl import representation_gradients

torchjd = pytest.importorskip("torchjd")
from torchjd import aggregation as A  # noqa: E402
from torchjd.aggregation._nash_mtl import _NashMTLWeighting  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are solving a parameterized problem that is not DPP")


def _built(tasks, **options) -> NashMTL:
    """A ``nash_mtl`` method built for ``tasks`` (identity heads: only the task names matter to it)."""
    method = METHODS.get("nash_mtl")(**options)
    method.build(torch.nn.Identity(), torch.nn.ModuleDict({t: torch.nn.Identity() for t in tasks}), None)
    return method


#: four different pairs of task gradients (rows), one per call: a solve on any of them gives another α
PAIRS = [torch.tensor(rows, dtype=torch.float64) for rows in (
    [[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0]],
    [[2.0, 0.3, 0.0], [0.1, 0.4, -1.0]],
    [[0.2, -1.0, 0.7], [1.5, 0.5, 0.5]],
    [[0.0, 3.0, 1.0], [-1.0, 0.2, 0.1]],
)]


def _torchjd_sequence(update_weights_every: int, pairs=PAIRS) -> list[torch.Tensor]:
    """TorchJD's own stateful NashMTL weighting (max_norm 1, 20 iterations) on a square root of each pair's Gram."""
    weighting = A.NashMTL(n_tasks=2, max_norm=1.0, update_weights_every=update_weights_every, optim_niter=20).weighting
    return [weighting(gram_factor(v @ v.T)).double() for v in pairs]


# ----- the number of tasks ---------------------------------------------------------------------

def test_twelve_tasks_are_accepted_and_thirteen_refused_with_the_limit_named():
    """mtlbench keeps one Nash-MTL state per non-empty subset of tasks (2^T - 1 rows): up to MAX_TASKS = 12 tasks
    (4095 rows) are built, a 13th task is refused at build() with a message naming the limit and the count."""
    assert MAX_TASKS == 12
    method = _built([f"t{i}" for i in range(12)])
    assert tuple(method.alpha.shape) == (4095, 12) and tuple(method.calls.shape) == (4095,)
    with pytest.raises(ValueError, match=r"nash_mtl keeps a state per subset of tasks and supports at most 12 tasks; "
                                         r"this problem has 13"):
        _built([f"t{i}" for i in range(13)])


# ----- the square root of the Gram matrix ------------------------------------------------------

def test_gram_factor_of_parallel_gradients_is_finite_though_rounding_makes_an_eigenvalue_negative():
    """Parallel task gradients give a rank-one PSD Gram matrix whose computed eigenvalues include a tiny negative
    one; gram_factor clamps it to 0, so the square root stays real (no NaN) and still reproduces the Gram matrix."""
    vectors = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    gram = vectors @ vectors.T
    assert float(torch.linalg.eigh(gram)[0].min()) < 0.0  # the rounding this test is about
    factor = gram_factor(gram)
    assert bool(torch.isfinite(factor).all())
    torch.testing.assert_close(factor @ factor.T, gram, atol=1e-12, rtol=1e-12)


def test_parallel_gradients_get_the_bargaining_solution_equal_contributions_clipped():
    """Nash-MTL on parallel gradients g_t = c_t v: G α = 1/α gives every task the same contribution α_t c_t = 1/√T,
    ‖Σ α_t g_t‖ = √T, clipped to max_norm = 1: α_t = 1/(T c_t), i.e. (1/3, 1/6, 1/9); the engine's rank-one Gram
    matrix must reach TorchJD as a finite square root (a NaN one makes cvxpy refuse the problem)."""
    vectors = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    method = _built(["t0", "t1", "t2"])
    weights = method.weighting(representation_gradients([v for v in vectors], [1.0, 1.0, 1.0]))
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 1 / 6, 1 / 9], dtype=torch.float64), atol=1e-4, rtol=1e-4)


# ----- the paper's defaults --------------------------------------------------------------------

def test_defaults_are_the_papers_solve_every_step_with_twenty_iterations():
    """Navon et al.'s Algorithm 1 solves for α at every step (update_weights_every = 1) with 20 iterations of the
    sequential convex approximation (optim_niter = 20), clipping at max_norm = 1 (their code); the class docstring
    says so, the defaults must be these, and a default method solves anew at each call, as TorchJD's defaults do."""
    doc = inspect.getdoc(NashMTL)
    assert "(paper: 1)" in doc and "(paper: 20)" in doc and "paper's code: 1.0" in doc
    defaults = {name: p.default for name, p in inspect.signature(NashMTL).parameters.items()}
    assert defaults["update_weights_every"] == 1 and defaults["optim_niter"] == 20 and defaults["max_norm"] == 1.0
    method = _built(["a", "b"])
    assert (method.update_weights_every, method.optim_niter, method.max_norm) == (1, 20, 1.0)
    got = [method.weighting(representation_gradients([v for v in pair], [1.0, 1.0], tasks=["a", "b"])) for pair in PAIRS[:2]]
    solver = method._solvers[2][0]  # subset {a, b}: bit mask 3, row 2
    assert (solver.update_weights_every, solver.optim_niter, solver.max_norm) == (1, 20, 1.0)
    for have, want in zip(got, _torchjd_sequence(1, PAIRS[:2])):
        torch.testing.assert_close(have, want, atol=1e-12, rtol=1e-9)


# ----- one state per subset of annotated tasks -------------------------------------------------

def test_one_state_row_per_non_empty_subset_of_tasks_indexed_by_bit_mask_minus_one():
    """With T tasks there are 2^T - 1 non-empty subsets a batch can annotate, each with its own α and call count:
    the buffers (saved in checkpoints) have exactly that many rows, row r for the subset of bit mask r + 1."""
    method = _built(["a", "b"])
    assert tuple(method.alpha.shape) == (3, 2) and tuple(method.calls.shape) == (3,)
    g = {"a": torch.tensor([3.0, 4.0], dtype=torch.float64), "b": torch.tensor([0.0, 2.0], dtype=torch.float64)}
    for subset in (["a"], ["b"], ["a", "b"]):
        method.weighting(representation_gradients([g[t] for t in subset], [1.0] * len(subset), tasks=subset))
    assert method.calls.tolist() == [1, 1, 1]
    assert method.alpha[0].tolist() == pytest.approx([1 / 5, 0.0]) and method.alpha[1].tolist() == pytest.approx([0.0, 1 / 2])
    assert bool((method.alpha[2] > 0).all())
    assert tuple(_built(["a", "b", "c"]).alpha.shape) == (7, 3)


# ----- one annotated task ----------------------------------------------------------------------

@pytest.mark.parametrize("max_norm", [1.5, 3.0])
def test_one_task_is_not_clipped_up_when_max_norm_exceeds_one(max_norm):
    """For one task G α = 1/α gives α = 1/‖g‖ and ‖α g‖ = 1; TorchJD's clipping only scales down (norm > max_norm),
    so with max_norm above 1 the weight stays 1/‖g‖ (0.2 for ‖g‖ = 5), never max_norm/‖g‖."""
    method = _built(["a", "b"], max_norm=max_norm)
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    weights = method.weighting(representation_gradients([g], [1.0], tasks=["a"]))
    torch.testing.assert_close(weights, torch.tensor([0.2], dtype=torch.float64))


# ----- TorchJD's schedule of solves and reuses -------------------------------------------------

def test_update_weights_every_two_solves_on_even_calls_and_reuses_alpha_on_odd_ones():
    """With update_weights_every = 2 a subset's α is solved at its calls 0, 2, ... and reused at 1, 3, ... (TorchJD:
    step % update_weights_every == 0), counted per subset in ``calls``: the weights are TorchJD's own stateful
    weighting's on the same sequence, and the stored α is unchanged by a reuse call."""
    method = _built(["a", "b"], update_weights_every=2)
    got, alphas = [], []
    for pair in PAIRS:
        got.append(method.weighting(representation_gradients([v for v in pair], [1.0, 1.0], tasks=["a", "b"])))
        alphas.append(method.alpha[2].clone())
    for have, want in zip(got, _torchjd_sequence(2)):
        torch.testing.assert_close(have, want, atol=1e-12, rtol=1e-9)
    assert torch.equal(alphas[1], alphas[0]) and torch.equal(alphas[3], alphas[2])  # reuse calls
    assert not torch.allclose(alphas[2], alphas[0])  # call 2 solved anew
    assert int(method.calls[2]) == 4


@pytest.mark.parametrize("update_weights_every", [1, 2])
def test_each_subsets_cvxpy_problem_is_built_once_at_its_first_solve(update_weights_every, monkeypatch):
    """TorchJD builds its cvxpy problem at step 0 and only re-parametrises it at later solves; mtlbench must keep
    that per subset (``solved_before``): one build for a subset over many calls, however solves and reuses alternate,
    rather than a rebuild (and recompilation) at every solve."""
    builds = []
    original = _NashMTLWeighting._init_optim_problem

    def counting(self):
        builds.append(self.n_tasks)
        return original(self)

    monkeypatch.setattr(_NashMTLWeighting, "_init_optim_problem", counting)
    method = _built(["a", "b", "c"], update_weights_every=update_weights_every)
    grads = {"a": PAIRS[0][0], "b": PAIRS[0][1], "c": PAIRS[1][0]}
    for call in range(4):
        for subset in (["a", "b"], ["a", "b", "c"]):
            vectors = [grads[t] * (1.0 + 0.3 * call) ** i for i, t in enumerate(subset)]
            method.weighting(representation_gradients(vectors, [1.0] * len(subset), tasks=subset))
    assert sorted(builds) == [2, 3]
    assert method.calls.tolist() == [0, 0, 4, 0, 0, 0, 4]
