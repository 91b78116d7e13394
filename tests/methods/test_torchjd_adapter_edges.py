"""The TorchJD adapter's edges (``methods/torchjd_weightings.py``), from mutation testing (docs/mutation.md): the
guards around TorchJD's weightings (no annotated task, a degenerate Gram matrix, weights of the wrong size or not
finite), the error naming the method, the message when TorchJD is missing, and each weighting's defaults.

That the adapter hands TorchJD the engine's Gram matrix and returns its weights is in test_torchjd_weightings.py;
these pin what it leaves open. A stub subclass (:class:`Stub`) answers with chosen weights and records whether
it was asked, so the fallbacks are seen on their own rather than behind TorchJD's own handling of the same inputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import sys

import pytest
import torch
from torch import Tensor

from methods import METHODS
from methods.base import TaskGradients
from methods.torchjd_weightings import ProjectedWeighting, TorchJDWeighting, torchjd_aggregation
from tests.methods.tiny_mtl import representation_gradients

torchjd = pytest.importorskip("torchjd")
from torchjd import aggregation as A  # noqa: E402
from torchjd.linalg import QuadprogProjector  # noqa: E402


class Stub(TorchJDWeighting):
    """A TorchJD weighting that answers ``answer`` and records each Gram matrix it is asked about."""

    name = "stub_weighting"  # as the registry would set it, without registering a method

    def __init__(self, answer: Tensor | None = None) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[Tensor] = []

    def weights_from_gram(self, gram: Tensor, gradients: TaskGradients) -> Tensor:
        self.asked.append(gram.clone())
        return self.answer


class Unnamed(TorchJDWeighting):
    """A TorchJD weighting that is not registered (``name`` stays empty)."""


class UnnamedProjected(ProjectedWeighting):
    """A projected weighting that is not registered (``name`` stays empty)."""

    torchjd_class = "UPGradWeighting"


#: three task gradients at z that conflict (a well-posed Gram matrix of trace 6.25)
VECTORS = [torch.tensor([1.0, 0.0, 0.5]), torch.tensor([-0.5, 1.0, 0.0]), torch.tensor([0.2, -0.3, 2.0])]
EQUAL = torch.full((3,), 1.0 / 3.0, dtype=torch.float64)


def _gradients(vectors: list[Tensor], step: int = 0) -> TaskGradients:
    """The engine's :class:`TaskGradients` of ``vectors`` (float64 at z), at training step ``step``."""
    gradients = representation_gradients([v.double() for v in vectors], [1.0] * len(vectors))
    return dataclasses.replace(gradients, step=step)


def _torchjd_methods() -> list[str]:
    return sorted(n for n in METHODS.names()
                  if isinstance(METHODS.get(n), type) and issubclass(METHODS.get(n), TorchJDWeighting))


# ----- no annotated task -----------------------------------------------------------------------

def test_no_annotated_task_gives_an_empty_weight_vector():
    """No annotated task gives an empty (0,) float64 weight vector without asking the solver (not 1/0, not a
    weight for a task that is not there)."""
    stub = Stub(answer=torch.tensor([1.0]))
    gradients = _gradients([])
    assert gradients.tasks == [] and gradients.gram.shape == (0, 0)
    weights = stub.weighting(gradients)
    assert weights.shape == (0,) and weights.dtype == torch.float64
    assert stub.asked == []


# ----- a degenerate Gram matrix ----------------------------------------------------------------

@pytest.mark.parametrize("case", ["zero_trace", "inf_gradient", "nan_gradient"])
def test_degenerate_gram_gives_equal_weights_without_calling_the_solver(case):
    """A Gram matrix with zero trace (no gradient) or non-finite entries (overflowed fp16 gradients, whose step the
    grad scaler skips) gives equal weights 1/T without calling the solver, even where the trace is positive or NaN."""
    vectors = [v.clone() for v in VECTORS]
    if case == "zero_trace":
        vectors = [torch.zeros(3) for _ in vectors]
    else:
        vectors[1][0] = float("inf") if case == "inf_gradient" else float("nan")
    gradients = _gradients(vectors)
    trace = float(gradients.gram.diagonal().sum())
    assert trace == 0.0 if case == "zero_trace" else not torch.isfinite(gradients.gram).all()
    stub = Stub(answer=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    torch.testing.assert_close(stub.weighting(gradients), EQUAL, atol=0.0, rtol=0.0)
    assert stub.asked == []


@pytest.mark.parametrize("name", _torchjd_methods())
def test_every_torchjd_weighting_gives_equal_weights_for_no_gradient(name):
    """Each TorchJD-backed method, given gradients that are all zero, gives 1/T to each task (its solver would
    divide by the zero norm)."""
    method = METHODS.get(name)()
    torch.testing.assert_close(method.weighting(_gradients([torch.zeros(3)] * 3)), EQUAL, atol=0.0, rtol=0.0)


def test_a_well_posed_gram_matrix_goes_to_the_solver_and_its_weights_are_kept():
    """The counterpart of the fallbacks: a finite Gram matrix of positive trace goes to the solver, float64 on the
    CPU, and finite weights of the right size come back unchanged."""
    answer = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    stub = Stub(answer=answer)
    gradients = _gradients(VECTORS)
    torch.testing.assert_close(stub.weighting(gradients), answer, atol=0.0, rtol=0.0)
    assert len(stub.asked) == 1 and stub.asked[0].dtype == torch.float64
    torch.testing.assert_close(stub.asked[0], gradients.gram)


# ----- TorchJD's answer unusable ---------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    torch.tensor([0.5, 0.5]),                       # too few, finite
    torch.tensor([0.25, 0.25, 0.25, 0.25]),         # too many, finite
    torch.tensor([0.5, float("nan"), 0.2]),         # the right size, not finite
    torch.tensor([0.5, float("inf"), 0.2]),
], ids=["two_for_three", "four_for_three", "nan", "inf"])
def test_unusable_torchjd_weights_give_equal_weights_and_a_warning(answer, caplog):
    """TorchJD weights of the wrong size or non-finite give equal weights 1/T and a warning naming the method, the
    weights, the number of tasks and the step."""
    stub = Stub(answer=answer)
    with caplog.at_level(logging.WARNING, logger="methods.torchjd_weightings"):
        weights = stub.weighting(_gradients(VECTORS, step=7))
    torch.testing.assert_close(weights, EQUAL, atol=0.0, rtol=0.0)
    assert len(stub.asked) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "methods.torchjd_weightings"]
    assert len(messages) == 1
    assert messages[0].startswith("stub_weighting: TorchJD returned weights ")
    assert messages[0].endswith("for 3 tasks at step 7; equal weights for this step")


# ----- errors name the method ------------------------------------------------------------------

@pytest.mark.parametrize("name", _torchjd_methods())
@pytest.mark.parametrize("option, value", [("gradients", "shared_layer"), ("head_gradient", "scaled")])
def test_option_errors_name_the_method_by_its_registry_name(name, option, value):
    """Option errors name the method by its registry name (the name a user typed), not its class name."""
    with pytest.raises(ValueError, match=rf"^{name}: {option}={value!r} is not one of "):
        METHODS.get(name)(**{option: value})


def test_option_errors_of_an_unregistered_weighting_name_its_class():
    """A TorchJD weighting outside the registry (a plugin's base, a test's stub) is named by its class."""
    with pytest.raises(ValueError, match=r"^Unnamed: gradients='z' is not one of "):
        Unnamed(gradients="z")


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("option", ["norm_eps", "reg_eps"])
def test_projector_option_errors_name_the_method_by_its_registry_name(name, option):
    """TorchJD's refusal of a negative projector setting is prefixed by the method's registry name."""
    with pytest.raises(ValueError, match=rf"^{name}: {option} must be non-negative"):
        METHODS.get(name)(**{option: -1.0})


def test_projector_option_errors_of_an_unregistered_weighting_name_its_class():
    """A projected weighting outside the registry is named by its class in TorchJD's refusal."""
    with pytest.raises(ValueError, match=r"^UnnamedProjected: norm_eps must be non-negative"):
        UnnamedProjected(norm_eps=-1.0)


# ----- TorchJD missing -------------------------------------------------------------------------

def test_a_missing_torchjd_is_explained_with_what_to_install(monkeypatch):
    """Without TorchJD, asking for a TorchJD weighting raises an ImportError that says which torchjd is needed and
    the pip command that installs it (with the extras the solvers need), chained to the original error.
    ``None`` in ``sys.modules`` makes the import fail even though torchjd was imported before (Python's cache)."""
    for module in ("torchjd", "torchjd.aggregation", "torchjd.linalg"):
        monkeypatch.setitem(sys.modules, module, None)
    install = re.escape("pip install 'torchjd[quadprog-projector,nash-mtl,cagrad]>=0.18,<0.19'")
    message = rf"^the TorchJD weightings need torchjd 0\.18 \(.*\); install it with {install}$"
    with pytest.raises(ImportError, match=message) as info:
        torchjd_aggregation()
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(ImportError, match=install):
        METHODS.get("cagrad")()


# ----- defaults --------------------------------------------------------------------------------

#: each TorchJD weighting's documented defaults (class docstrings), besides gradients=representation, head_gradient=own
DEFAULTS = {
    "aligned_mtl": {"scale_mode": "min"},                                  # the paper's Algorithm 1
    "cagrad": {"c": 0.4, "norm_eps": 1e-4},                                # paper: c = 0.4; TorchJD's norm_eps
    "dualproj": {"norm_eps": 1e-4, "reg_eps": 1e-4},                       # TorchJD's QuadprogProjector
    "imtl_g": {},
    "mgda": {"epsilon": 1e-3, "max_iters": 100},                           # TorchJD's defaults
    "nash_mtl": {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20},  # the paper (and its code)
    "pcgrad": {},
    "upgrad": {"norm_eps": 1e-4, "reg_eps": 1e-4},                         # TorchJD's QuadprogProjector
}

#: the defaults documented as TorchJD's: the TorchJD class (and argument) they come from
TORCHJD_DEFAULTS = {
    ("cagrad", "norm_eps"): (A.CAGradWeighting, "norm_eps"),
    ("dualproj", "norm_eps"): (QuadprogProjector, "norm_eps"),
    ("dualproj", "reg_eps"): (QuadprogProjector, "reg_eps"),
    ("mgda", "epsilon"): (A.MGDAWeighting, "epsilon"),
    ("mgda", "max_iters"): (A.MGDAWeighting, "max_iters"),
    ("upgrad", "norm_eps"): (QuadprogProjector, "norm_eps"),
    ("upgrad", "reg_eps"): (QuadprogProjector, "reg_eps"),
}


def test_every_torchjd_weighting_has_its_defaults_listed():
    """Every registered TorchJD-backed method is in DEFAULTS (a new one must state its paper's defaults here)."""
    assert sorted(DEFAULTS) == _torchjd_methods()


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_torchjd_weightings_defaults_are_its_papers(name):
    """Each TorchJD weighting's defaults are its paper's (CAGrad's c = 0.4, Nash-MTL's 20 iterations, ...) or, where
    the docstring says so, TorchJD's own; and the solver is built with them."""
    method = METHODS.get(name)()
    expected = DEFAULTS[name] | {"gradients": "representation", "head_gradient": "own"}
    assert method.hparams() == expected
    for (method_name, option), (cls, argument) in TORCHJD_DEFAULTS.items():
        if method_name == name:
            assert inspect.signature(cls).parameters[argument].default == expected[option]
    if name == "cagrad":
        assert (method.solver.c, method.solver.norm_eps) == (0.4, 1e-4)
    elif name == "mgda":
        assert (method.solver.epsilon, method.solver.max_iters) == (1e-3, 100)
    elif name in ("upgrad", "dualproj"):
        assert (method.solver.projector.norm_eps, method.solver.projector.reg_eps) == (1e-4, 1e-4)
    elif name == "aligned_mtl":
        assert method.solver.scale_mode == "min"
