"""``mgda_ub``'s edges (Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as Multi-Objective Optimization"), from
mutation testing (docs/mutation.md): the documented Frank-Wolfe defaults, refused and accepted solver options, no
annotated task, the equal-weight fallback for a non-finite Gram matrix, and the normalisers' guards (a slightly
negative Gram diagonal is clipped, a zero normaliser is floored so that n_t² stays a positive float).

The comparison with an exact QP on a real network is in test_mgda_ub.py; these pin what it leaves open.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from methods.base import TaskGradients
from methods.mgda_ub import MgdaUB
from methods.min_norm import frank_wolfe, solve
from tests.methods.tiny_mtl import representation_gradients

FLOOR = np.finfo(np.float64).tiny ** 0.5  # the normalisers' floor: its square is still a normal float

# Three tasks whose min-norm point lies inside the edge e1-e2 (α = (1/2, 1/2, 0)): from α = 1/3 the
# plain Frank-Wolfe of the paper never sets α_3 to 0 and zigzags (sublinear), away steps drop it at once.
FACE_GRAM = np.array([[1.0, -0.5, 0.9], [-0.5, 1.0, 0.9], [0.9, 0.9, 1.0]])


def _gradients(gram, losses=None) -> TaskGradients:
    """TaskGradients for a given Gram matrix (the weighting reads only ``gram`` and ``losses``)."""
    gram = torch.as_tensor(np.asarray(gram, dtype=np.float64))
    count = gram.shape[0]
    losses = torch.ones(count, dtype=torch.float64) if losses is None else torch.as_tensor(losses, dtype=torch.float64)
    names = [f"t{i}" for i in range(count)]
    return TaskGradients(names, [], losses, dict(zip(names, losses)), gram, torch.zeros(count, 0, dtype=torch.float64))


def test_defaults_are_the_documented_ones():
    """The defaults: the paper's Algorithm 2 (no normalisation, own head gradients, raw-loss scaling), and the
    min-norm solver's documented Frank-Wolfe settings (1000 iterations, tol 1e-12, away steps on), the same as
    ``min_norm.solve`` and ``min_norm.frank_wolfe`` use. (The paper gives no iteration limit; the authors' code
    has 250.)"""
    method = MgdaUB()
    assert (method.normalization, method.batch_reduction, method.solver, method.head_gradient) == (
        "none", "flatten", "auto", "own")
    assert method.scale_by_normalizer is False
    assert method.max_iter == 1000 and method.tol == 1e-12 and method.away_steps is True
    for function in (solve, frank_wolfe):
        params = inspect.signature(function).parameters
        assert (method.max_iter, method.tol, method.away_steps) == (
            params["max_iter"].default, params["tol"].default, params["away_steps"].default), function.__name__


def test_default_frank_wolfe_takes_away_steps_and_stops_at_1000_iterations():
    """The defaults reach the solver: with away steps (default) Frank-Wolfe finds the face's min-norm point at
    once; the paper's plain version (away_steps=False) zigzags and stops, unconverged, at the default limit of
    exactly 1000 iterations."""
    method = MgdaUB(solver="frank_wolfe")
    weights = method.weighting(_gradients(FACE_GRAM))
    assert method.last_solution.converged and method.last_solution.iterations <= 5
    np.testing.assert_allclose(weights.numpy(), [0.5, 0.5, 0.0], atol=1e-12)
    plain = MgdaUB(solver="frank_wolfe", away_steps=False)
    plain.weighting(_gradients(FACE_GRAM))
    assert not plain.last_solution.converged and plain.last_solution.iterations == 1000


@pytest.mark.parametrize("option", [{"max_iter": 1}, {"tol": 0.0}])
def test_smallest_valid_solver_options_are_accepted(option):
    """Option validation, each option on its own: max_iter = 1 and tol = 0 are valid (and run)."""
    method = MgdaUB(solver="frank_wolfe", **option)
    for key, value in option.items():
        assert getattr(method, key) == value
    weights = method.weighting(_gradients(FACE_GRAM))
    assert weights.shape == (3,) and float(weights.sum()) == pytest.approx(1.0)
    if option.get("max_iter") == 1:
        assert method.last_solution.iterations <= 1


@pytest.mark.parametrize(("option", "named"), [({"max_iter": 0}, "max_iter >= 1"), ({"tol": -1e-9}, "tol >= 0"),
                                               ({"tol": -0.5}, "tol >= 0")])
def test_invalid_solver_options_are_refused_with_a_message_naming_them(option, named):
    """Option validation, each option on its own (the other at its default): max_iter = 0 and any negative tol
    are refused with a ValueError naming the option."""
    with pytest.raises(ValueError, match=named):
        MgdaUB(**option)


def test_no_annotated_task_gets_an_empty_float64_weight_vector():
    """A batch that annotates no task: no weights at all (shape (0,), float64), and no solve."""
    method = MgdaUB()
    weights = method.weighting(representation_gradients([], []))
    assert weights.shape == (0,) and weights.dtype == torch.float64
    assert method.last_solution is None


@pytest.mark.parametrize("count", [2, 3])
def test_non_finite_gram_falls_back_to_equal_weights(count):
    """Overflowed (fp16) task gradients give a non-finite Gram matrix: equal weights 1/T for that step (which
    the grad scaler skips), without a solve."""
    grads = [torch.tensor([[float("inf"), 1.0]])] + [torch.tensor([[1.0, float(i)]]) for i in range(count - 1)]
    method = MgdaUB()
    weights = method.weighting(representation_gradients(grads, [1.0] * count))
    assert weights.dtype == torch.float64
    assert weights.tolist() == [1.0 / count] * count
    assert method.last_solution is None


@pytest.mark.parametrize("normalization", ["l2", "loss+"])
def test_slightly_negative_gram_diagonal_is_clipped_to_a_zero_norm(normalization):
    """A Gram diagonal a rounding error below 0 counts as ‖g_t‖ = 0 (floored), not as a NaN square root: the
    normalisers stay finite and the zero gradient is the min-norm point (weight 1)."""
    gram = np.array([[-1e-30, 0.0], [0.0, 4.0]])
    method = MgdaUB(normalization=normalization)
    norms = method.normalizers(gram, np.array([1.0, 1.0]))
    assert np.isfinite(norms).all()
    np.testing.assert_array_equal(norms, [FLOOR, 2.0])
    assert method.weighting(_gradients(gram)).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("normalization", ["l2", "loss", "loss+"])
def test_zero_normaliser_is_floored_so_its_square_stays_positive(normalization):
    """A zero-norm gradient (or a zero loss) gives n_t = 0: the floor √tiny keeps n_t² a positive normal float,
    so G / (n nᵀ) is 0 there rather than 0/0, the weighting is finite and the zero gradient gets weight 1 (also
    with ``scale_by_normalizer``, whose 1/n_t stays finite)."""
    zero, other = torch.zeros(3, 4), torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    losses = [0.0 if normalization == "loss" else 1.0, 1.0]
    gradients = representation_gradients([zero, other], losses)
    method = MgdaUB(normalization=normalization)
    norms = method.normalizers(gradients.gram.numpy(), gradients.losses.numpy())
    assert norms[0] == FLOOR and norms[0] ** 2 > 0 and norms[0] ** 2 >= np.finfo(np.float64).tiny
    assert method.weighting(gradients).tolist() == [1.0, 0.0]
    scaled = MgdaUB(normalization=normalization, scale_by_normalizer=True).weighting(gradients)
    assert np.isfinite(scaled.numpy()).all() and float(scaled[0]) == pytest.approx(1.0 / FLOOR)
