"""``dmsca``'s options (Kollias, Sharmanska & Zafeiriou, AAAI-24): registration, the paper-literal defaults,
refused hyperparameters, where R comes from, binary vs graded weights, unrelated classes, and the loss
terms it adds, with values worked out by hand.

The fixture problem has 4 classes (a, b, c, d) and 3 attributes (x, y, z) with

    R = a [1,    0,   0.5]      binary (R > 0): [1, 0, 1]
        b [0,    0.5, 0  ]                      [0, 1, 0]
        c [0,    0,   0  ]   (no related attribute: unrelated)
        d [0.25, 1,   0  ]                      [1, 1, 0]

as both the ``domain`` prior (a table the db marks binary for DM) and a graded ``table`` prior, and
another matrix as the counted ``db`` source. Entries 0, 0.5 and 1 tell ``R > 0`` from ``R >= 0``,
``R > 1`` and ``R > -1``.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.relatedness import RelatednessError, save_csv
from benchmark.tasks import Batch, Problem
from methods import METHODS, ModelOutput, StepContext
from methods.coupling import dm_loss, sca_loss
from methods.dm_only import DMOnly
from methods.dmsca import DMSCA, resolve_relatedness
from methods.sca_only import SCAOnly
from tests.methods.tiny_mtl import forward, tiny_batch, tiny_model, tiny_problem

CLASSES, ATTRIBUTES = "classes", "att0"
R = np.array([[1.0, 0.0, 0.5],
              [0.0, 0.5, 0.0],
              [0.0, 0.0, 0.0],
              [0.25, 1.0, 0.0]])
BINARY = [[1.0, 0.0, 1.0],
          [0.0, 1.0, 0.0],
          [0.0, 0.0, 0.0],
          [1.0, 1.0, 0.0]]
RELATED = [True, True, False, True]  # class c's row is all zeros
COUNTED = np.array([[0.5, 0.25, 0.0],
                    [0.0, 0.75, 1.0],
                    [0.125, 0.0, 0.0],
                    [0.0, 0.0, 0.5]])  # what the "db" source counts on the training split


def problem(*, domain: bool = True, empirical: bool = True, prior: np.ndarray = R) -> Problem:
    """The tiny class/attribute pair with a ``table`` prior, a ``domain`` one (binary for DM) if asked,
    and the counted ``db`` source if asked."""
    priors = {"domain": prior, "table": R.copy()} if domain else {"table": R.copy()}
    return Problem(db="tiny", tasks=tiny_problem().tasks, priors=priors,
                   empirical=(lambda: COUNTED.copy()) if empirical else None,
                   binary_sources=frozenset({"domain"}))


def built(method: DMSCA, where: Problem | None = None) -> DMSCA:
    method.build(nn.Identity(), nn.ModuleDict(), where or problem())
    return method


def as_float32(matrix) -> torch.Tensor:
    return torch.as_tensor(matrix, dtype=torch.float32)


# ----- registration, defaults, refused values -------------------------------------------------

def test_registered_as_dmsca():
    assert "dmsca" in METHODS.names()
    assert METHODS.get("dmsca") is DMSCA and DMSCA.name == "dmsca"


def test_paper_literal_defaults():
    """Eq. 7 as printed: both couplings weighted 1, tau = 1, -p log q with p detached, summed over attributes."""
    assert DMSCA().hparams() == {
        "relatedness": "auto", "lambda_dm": 1.0, "lambda_sca": 1.0, "dm_form": "paper", "dm_detach_target": True,
        "dm_reduction": "sum", "dm_weights": "auto", "sca_weights": "auto", "sca_form": "paper",
        "sca_temperature": 1.0, "unrelated_classes": "zero", "eps": 1e-6,
    }


def test_unannotated_images_are_kept_for_distribution_matching():
    """L_DM is over every training image, so the runner must not drop images labelled for neither task."""
    assert DMSCA.uses_unannotated_samples is True
    assert DMOnly.uses_unannotated_samples is True and SCAOnly.uses_unannotated_samples is False


@pytest.mark.parametrize("name", ["lambda_dm", "lambda_sca"])
@pytest.mark.parametrize("value", [0.0, 0.5, 2.0])
def test_a_coupling_weight_of_zero_or_more_is_accepted(name, value):
    method = DMSCA(**{name: value})
    assert getattr(method, name) == value
    assert method.hparams()[name] == value


@pytest.mark.parametrize("name", ["lambda_dm", "lambda_sca"])
@pytest.mark.parametrize("value", [-0.5, -1e-9])
def test_a_negative_coupling_weight_is_refused(name, value):
    """A negative weight would reward the coupling loss; each weight is checked on its own."""
    with pytest.raises(ValueError, match=re.escape("dmsca: lambda_dm and lambda_sca must be >= 0 and eps > 0")) as err:
        DMSCA(**{name: value})
    assert f"{name}={value}" in str(err.value)


@pytest.mark.parametrize("eps", [0.0, -1e-6])
def test_an_eps_of_zero_or_less_is_refused(eps):
    message = f"eps > 0 (all finite), got lambda_dm=1.0, lambda_sca=1.0, eps={eps}"
    with pytest.raises(ValueError, match=re.escape(message)):
        DMSCA(eps=eps)


@pytest.mark.parametrize("options", [{"lambda_dm": math.nan}, {"lambda_sca": math.inf}, {"eps": math.inf},
                                     {"sca_temperature": math.nan}])
def test_a_value_that_is_not_finite_is_refused_before_anything_runs(options):
    with pytest.raises(ValueError, match=r"dmsca: .*\(all finite\)"):
        DMSCA(**options)


@pytest.mark.parametrize("temperature, refused", [(0.0, True), (-1.0, True), (1e-3, False), (0.1, False)])
def test_a_temperature_of_zero_or_less_is_refused_when_the_method_is_made(temperature, refused):
    if refused:
        with pytest.raises(ValueError, match=re.escape(f"dmsca: sca_temperature must be > 0 (1 is the paper's), "
                                                       f"got {temperature}")):
            DMSCA(sca_temperature=temperature)
    else:
        assert DMSCA(sca_temperature=temperature).sca_temperature == temperature


@pytest.mark.parametrize("eps", [1e-12, 1e-3])
def test_a_small_positive_eps_is_accepted(eps):
    assert DMSCA(eps=eps).eps == eps


# ----- where R comes from -----------------------------------------------------------------

def test_auto_is_domain_knowledge_when_the_db_has_it():
    source, matrix = resolve_relatedness(problem(), "auto")
    assert source == "domain"
    np.testing.assert_array_equal(matrix, R)
    assert DMSCA.expand({"relatedness": "auto", "lambda_dm": 2.0}, problem()) == \
        [{"relatedness": "domain", "lambda_dm": 2.0}], "the stored run names the source auto stood for"


def test_auto_is_the_counted_relatedness_without_domain_knowledge():
    source, matrix = resolve_relatedness(problem(domain=False), "auto")
    assert source == "db"
    np.testing.assert_array_equal(matrix, COUNTED)
    assert DMSCA.expand({"relatedness": "auto"}, problem(domain=False)) == [{"relatedness": "db"}]


@pytest.mark.parametrize("name, expected", [("domain", R), ("table", R), ("db", COUNTED)])
def test_a_named_source(name, expected):
    source, matrix = resolve_relatedness(problem(), name)
    assert source == name
    np.testing.assert_array_equal(matrix, expected)
    assert DMSCA.expand({"relatedness": name}, problem()) == [{"relatedness": name}]


@pytest.mark.parametrize("filename", ["r.csv", "relatedness.txt"])
def test_a_csv_file_by_its_path_whatever_its_suffix(tmp_path, filename):
    """A file written by ``save_csv`` (here with classes and attributes in another order) is read and reordered."""
    path = tmp_path / filename
    save_csv(COUNTED[::-1, ::-1], path, ("d", "c", "b", "a"), ("z", "y", "x"))
    source, matrix = resolve_relatedness(problem(), str(path))
    assert source == str(path)
    np.testing.assert_array_equal(matrix, COUNTED)
    method = built(DMSCA(relatedness=str(path), dm_weights="graded"))
    assert torch.equal(method.r_dm, as_float32(COUNTED))


def test_a_missing_csv_file_is_reported_as_not_found(tmp_path):
    missing = str(tmp_path / "nowhere.csv")
    with pytest.raises(RelatednessError, match=re.escape(f"relatedness file {missing!r} not found")):
        resolve_relatedness(problem(), missing)


def test_an_unknown_source_lists_the_sources_there_are():
    with pytest.raises(ValueError, match=re.escape("relatedness='affwild2' is neither a source of db 'tiny' "
                                                   "(auto, domain, table, db) nor a CSV file")):
        resolve_relatedness(problem(), "affwild2")


def test_a_matrix_of_the_wrong_shape_is_refused():
    wrong = problem(prior=np.ones((3, 3)))  # 3 classes; the db has 4 classes x 3 attributes
    message = re.escape("relatedness 'domain' has shape (3, 3); db 'tiny' needs (4, 3)")
    with pytest.raises(ValueError, match=message):
        resolve_relatedness(wrong, "auto")
    with pytest.raises(ValueError, match=message):
        DMSCA.expand({"relatedness": "auto"}, wrong)  # before anything is stored
    with pytest.raises(ValueError, match=message):
        built(DMSCA(), wrong)


# ----- binary vs graded weights, unrelated classes ---------------------------------------------

@pytest.mark.parametrize("relatedness, dm_weights, expected", [
    ("auto", "auto", BINARY),      # the domain table, which the db marks binary: related / unrelated
    ("domain", "auto", BINARY),
    ("table", "auto", R),          # any other source stays graded under auto
    ("table", "binary", BINARY),
    ("domain", "graded", R),
    ("table", "graded", R),
])
def test_dm_weights(relatedness, dm_weights, expected):
    method = built(DMSCA(relatedness=relatedness, dm_weights=dm_weights))
    assert torch.equal(method.r_dm, as_float32(expected))


@pytest.mark.parametrize("relatedness, sca_weights, expected", [
    ("auto", "auto", R),           # SCA keeps the graded weights even for the binary domain table
    ("table", "auto", R),
    ("domain", "graded", R),
    ("domain", "binary", BINARY),
    ("table", "binary", BINARY),
])
def test_sca_weights(relatedness, sca_weights, expected):
    method = built(DMSCA(relatedness=relatedness, sca_weights=sca_weights))
    assert torch.equal(method.w_sca, as_float32(expected))


@pytest.mark.parametrize("relatedness", ["domain", "table"])
def test_a_class_whose_row_is_all_zero_is_unrelated(relatedness):
    method = built(DMSCA(relatedness=relatedness))
    assert method.related_classes.tolist() == RELATED


def test_the_log_says_which_weights_each_coupling_uses(caplog):
    with caplog.at_level(logging.INFO, logger="methods.dmsca"):
        built(DMSCA())
        built(DMSCA(relatedness="table", sca_weights="binary"))
    assert [r.getMessage() for r in caplog.records if r.name == "methods.dmsca"] == [
        "dmsca: relatedness 'domain' (binary for DM, graded for SCA); 3 of 4 classes have related attributes",
        "dmsca: relatedness 'table' (graded for DM, binary for SCA); 3 of 4 classes have related attributes",
    ]


# ----- the loss terms, by hand --------------------------------------------------------------
#
# One image: uniform class prediction p(c|x) = 1/4, attribute prediction p_i = sigmoid(0) = 1/2, and
# attribute labels y = [1, 0, 1], all annotated.
#
# L_DM (binary R): q = mean of the binary rows = [0.5, 0.5, 0.25], L = -0.5 (log .5 + log .5 + log .25) = 2 log 2.
#   exclude: renormalised over a, b, d, q = [2/3, 2/3, 1/3], L = -0.5 log(4/27) = 0.5 log(27/4).
# L_DM (graded R): q = [1.25, 1.5, 0.5] / 4, L = -0.5 (log 0.3125 + log 0.375 + log 0.125).
# L_SCA (graded w): I = [(1 + 0.5) / 1.5, 0 / 0.5, 0, 0.25 / 1.25] = [1, 0, 0, 0.2]; with p uniform,
#   L = -sum_c p_c log softmax(I)_c = logsumexp(I) - mean(I) = log(e + 2 + e^0.2) - 0.3.
#   exclude: over a, b, d: log(e + 1 + e^0.2) - 0.4.
# L_SCA (binary w): I = [2 / 2, 0 / 1, 0, 1 / 2] = [1, 0, 0, 0.5], L = log(e + 2 + e^0.5) - 0.375.

DM_BINARY = 2 * math.log(2)
DM_BINARY_EXCLUDE = 0.5 * math.log(27 / 4)
DM_GRADED = -0.5 * (math.log(0.3125) + math.log(0.375) + math.log(0.125))
SCA_GRADED = math.log(math.e + 2 + math.exp(0.2)) - 0.3
SCA_GRADED_EXCLUDE = math.log(math.e + 1 + math.exp(0.2)) - 0.4
SCA_BINARY = math.log(math.e + 2 + math.exp(0.5)) - 0.375
TASK_LOSSES = {CLASSES: 0.7, ATTRIBUTES: 0.3}


def hand_step(method: DMSCA, tasks: tuple[str, ...] = (CLASSES, ATTRIBUTES)) -> dict[str, float]:
    """``method.losses`` for the one-image step above, with logits for ``tasks`` only."""
    where = problem()
    model = method.build(nn.Identity(), nn.ModuleDict(), where)
    logits = {CLASSES: torch.zeros(1, 4), ATTRIBUTES: torch.zeros(1, 3)}
    batch = Batch(torch.zeros(1, 1), {CLASSES: torch.tensor([-1]), ATTRIBUTES: torch.tensor([[1.0, 0.0, 1.0]])},
                  {CLASSES: torch.tensor([False]), ATTRIBUTES: torch.ones(1, 3, dtype=torch.bool)}, torch.arange(1))
    ctx = StepContext(model, batch, ModelOutput(torch.zeros(1, 1), {t: logits[t] for t in tasks}), where, 0, 0)
    task_losses = {t: torch.tensor(v) for t, v in TASK_LOSSES.items()}
    return {k: float(v) for k, v in method.losses(task_losses, ctx).items()}


def test_defaults_by_hand():
    """Binary R for DM (the domain table), graded weights and tau = 1 for SCA, both weighted 1."""
    out = hand_step(DMSCA())
    assert out == pytest.approx({**TASK_LOSSES, "coupling/dm": DM_BINARY, "coupling/sca": SCA_GRADED}, rel=1e-6)


def test_each_coupling_term_is_its_lambda_times_the_loss():
    out = hand_step(DMSCA(lambda_dm=2.0, lambda_sca=0.5))
    assert out == pytest.approx({**TASK_LOSSES, "coupling/dm": 2.0 * DM_BINARY, "coupling/sca": 0.5 * SCA_GRADED},
                                rel=1e-6)


def test_graded_dm_and_binary_sca_weights_by_hand():
    out = hand_step(DMSCA(dm_weights="graded", sca_weights="binary"))
    assert out["coupling/dm"] == pytest.approx(DM_GRADED, rel=1e-6)
    assert out["coupling/sca"] == pytest.approx(SCA_BINARY, rel=1e-6)


def test_excluding_unrelated_classes_changes_both_couplings():
    zero = hand_step(DMSCA(unrelated_classes="zero"))
    exclude = hand_step(DMSCA(unrelated_classes="exclude"))
    assert (zero["coupling/dm"], zero["coupling/sca"]) == pytest.approx((DM_BINARY, SCA_GRADED), rel=1e-6)
    assert (exclude["coupling/dm"], exclude["coupling/sca"]) == \
        pytest.approx((DM_BINARY_EXCLUDE, SCA_GRADED_EXCLUDE), rel=1e-6)


@pytest.mark.parametrize("options, coupling", [
    ({}, {"coupling/dm", "coupling/sca"}),
    ({"lambda_dm": 0.0}, {"coupling/sca"}),
    ({"lambda_sca": 0.0}, {"coupling/dm"}),
    ({"lambda_dm": 0.0, "lambda_sca": 0.0}, set()),
])
def test_a_zero_lambda_leaves_its_term_out(options, coupling):
    out = hand_step(DMSCA(**options))
    assert set(out) == {CLASSES, ATTRIBUTES} | coupling
    assert {t: out[t] for t in TASK_LOSSES} == pytest.approx(TASK_LOSSES), "task losses pass through unchanged"


@pytest.mark.parametrize("present", [(CLASSES,), (ATTRIBUTES,), ()])
def test_no_coupling_without_both_tasks_logits(present):
    assert hand_step(DMSCA(lambda_dm=2.0, lambda_sca=0.5), present) == pytest.approx(TASK_LOSSES)


# ----- on a network: the options reach the loss functions --------------------------------------

def test_options_reach_the_coupling_functions_on_a_tiny_network():
    """On a tiny network and a random batch: each term is lambda times ``methods.coupling``'s loss with the
    method's options, on the weights each coupling uses."""
    where = problem()
    method = DMSCA(relatedness="table", lambda_dm=2.0, lambda_sca=0.5, dm_form="bernoulli", dm_reduction="mean",
                   dm_detach_target=False, dm_weights="binary", sca_form="soft_target", sca_temperature=0.5,
                   unrelated_classes="exclude", eps=1e-3)
    model = tiny_model(method, where)
    batch = tiny_batch(where, size=8, seed=3)
    out, ctx = forward(method, model, batch, where)
    cls, att = ctx.outputs.logits[CLASSES], ctx.outputs.logits[ATTRIBUTES]
    keep = torch.tensor(RELATED)
    dm = dm_loss(cls, att, as_float32(BINARY), form="bernoulli", detach_target=False, reduction="mean", eps=1e-3,
                 class_mask=keep)
    sca = sca_loss(cls, batch.targets[ATTRIBUTES], batch.masks[ATTRIBUTES], as_float32(R), form="soft_target",
                   temperature=0.5, class_mask=keep)
    assert torch.allclose(out["coupling/dm"], 2.0 * dm) and torch.allclose(out["coupling/sca"], 0.5 * sca)


def test_by_default_distribution_matching_sends_no_gradient_to_the_attribute_head():
    """p_i is the target of L_DM (detached by default); undetached, L_DM pulls the attribute head too."""
    where = problem()
    for detach in (None, False):
        method = DMSCA(lambda_sca=0.0) if detach is None else DMSCA(lambda_sca=0.0, dm_detach_target=detach)
        model = tiny_model(method, where)
        out, _ = forward(method, model, tiny_batch(where, size=8, seed=4), where)
        (grad,) = torch.autograd.grad(out["coupling/dm"], [model.heads[ATTRIBUTES].weight], allow_unused=True)
        if detach is None:
            assert grad is None or torch.equal(grad, torch.zeros_like(grad))
        else:
            assert grad is not None and grad.abs().max() > 0


def test_the_ablations_keep_dmscas_defaults_for_their_term_and_switch_the_other_off():
    """Table 3's ablations: dm_only is dmsca with λ_SCA = 0 and sca_only is dmsca with λ_DM = 0; every other
    default (λ of the kept term, DM form, detached target, reduction, SCA form and temperature) is dmsca's own,
    so an ablation row differs from the full method in one term only (found by mutation testing)."""
    full = DMSCA().hparams()
    dm, sca = ({k: getattr(m, k) for k in full} for m in (DMOnly(), SCAOnly()))
    assert dm["lambda_sca"] == 0.0 and sca["lambda_dm"] == 0.0
    assert {k: v for k, v in dm.items() if k != "lambda_sca"} == {k: v for k, v in full.items() if k != "lambda_sca"}
    assert {k: v for k, v in sca.items() if k != "lambda_dm"} == {k: v for k, v in full.items() if k != "lambda_dm"}
