"""Edges of ``reports.compare``: why a cell has no value, the per-run split's order, column order,
the weights name in a title, the verdict's "cannot tell" message and per-run relative differences.

Runs are hand-made in memory (:mod:`tests.reports.report_store`); nothing trains.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from reports import Stat, build_blocks, column_stat, delta_m, verdict
from reports.compare import Column, relative_differences, variant_label, weights_label
from results import Metric
from tests.reports.report_store import record, single_tasks, toy_records


def _variant(block, method: str):
    (found,) = [v for v in block.variants() if v.method == method]
    return found


def _column(block, task: str, metric: str):
    (found,) = [c for c in block.columns if (c.task, c.metric) == (task, metric)]
    return found


def _set_metric(run, task: str, metric: str, value: float | None) -> None:
    """Replace (``value``) or drop (None) one test metric of ``run``."""
    out = []
    for m in run.metrics:
        if (m.split, m.task, m.metric) == ("test", task, metric):
            if value is not None:
                out.append(dataclasses.replace(m, value=value))
        else:
            out.append(m)
    run.metrics = out


# --- why a cell has no value -------------------------------------------------------------------------

def test_a_missing_and_a_nan_metric_get_their_own_note_naming_metric_task_method_and_run():
    runs = []
    for seed in (0, 1, 2):
        runs += single_tasks(seed, (.60, .50), (.80, .90))
    missing = record("no_coupling", 0, {"classes": (.55, .52), "attributes": (.82, .90)})
    nan = record("no_coupling", 1, {"classes": (.56, .52), "attributes": (.82, .90)})
    fine = record("no_coupling", 2, {"classes": (.57, .52), "attributes": (.82, .90)})
    _set_metric(missing, "classes", "accuracy", None)
    _set_metric(nan, "classes", "accuracy", math.nan)
    (block,) = build_blocks([*runs, missing, nan, fine])
    stat = column_stat(block, _variant(block, "no_coupling"), _column(block, "classes", "accuracy"))
    assert stat.values == pytest.approx((.57,))
    assert stat.notes[:2] == ("no accuracy of 'classes' in the no_coupling run (seed 0)",
                              "accuracy of 'classes' is NaN in the no_coupling run (seed 1)")
    # the other metric of the task is untouched
    f1 = column_stat(block, _variant(block, "no_coupling"), _column(block, "classes", "f1_macro"))
    assert f1.values == pytest.approx((.52, .52, .52)) and not any("f1_macro" in n for n in f1.notes)


def test_a_task_no_run_of_the_method_reports_gets_one_not_trained_note():
    runs = []
    for seed in (0, 1):
        runs += single_tasks(seed, (.60, .50), (.80, .90))
        runs.append(record("no_coupling", seed, {"classes": (.55, .52)}))  # no attributes task at all
    (block,) = build_blocks(runs)
    stat = column_stat(block, _variant(block, "no_coupling"), _column(block, "attributes", "f1_mean"))
    assert stat.values == () and stat.deltas == ()
    assert stat.notes[0] == "task 'attributes' is not trained by no_coupling"
    assert not any(n.startswith("no f1_mean") for n in stat.notes)


# --- the per-run split -------------------------------------------------------------------------------

def _labels(parts):
    return [p.label for p in parts]


def test_split_by_run_orders_by_fold_then_seed_whatever_the_stored_order():
    runs = []
    for fold, seed in ((1, 1), (0, 1), (1, 0), (0, 0)):
        runs += single_tasks(seed, (.70, .60), (.50, .70), db="cv", fold=fold)
        runs.append(record("no_coupling", seed, {"classes": (.72, .61), "attributes": (.48, .69)}, db="cv", fold=fold))
    (block,) = build_blocks(runs)
    parts = block.split_by_run()
    assert _labels(parts) == [f"tiny, seed {s}, fold {f}" for f, s in ((0, 0), (0, 1), (1, 0), (1, 1))]
    assert all(len(p.runs) == 3 and {r.fold for r in p.runs} == {int(p.label[-1])} for p in parts)


def test_split_by_run_puts_the_runs_without_a_fold_first():
    runs = []
    for fold in (1, 0, None):  # one protocol without cross-validation next to two folds: one block
        runs += single_tasks(0, (.70, .60), (.50, .70), db="cv", fold=fold)
        runs.append(record("no_coupling", 0, {"classes": (.72, .61), "attributes": (.48, .69)}, db="cv", fold=fold))
    (block,) = build_blocks(runs)
    assert _labels(block.split_by_run()) == ["tiny, seed 0", "tiny, seed 0, fold 0", "tiny, seed 0, fold 1"]


@pytest.mark.parametrize("fold", [None, 0])
def test_split_by_run_copes_with_a_single_run_per_protocol(fold):
    runs = [record("no_coupling", seed, {"classes": (.72, .61)}, db="cv", fold=fold) for seed in (2, 0, 1)]
    (block,) = build_blocks(runs)
    parts = block.split_by_run()
    suffix = "" if fold is None else f", fold {fold}"
    assert _labels(parts) == [f"tiny, seed {s}{suffix}" for s in (0, 1, 2)]
    assert [p.runs for p in parts] == [[runs[1]], [runs[2]], [runs[0]]]


# --- columns -----------------------------------------------------------------------------------------

def test_a_column_is_a_frozen_hashable_value():
    """Columns key the per-block lookups (sets, dict keys), so they are immutable values."""
    column = Column("classes", "accuracy", True, True, "classes")
    assert {column: 1}[Column("classes", "accuracy", True, True, "classes")] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        column.metric = "f1_macro"


def test_columns_put_the_class_task_then_the_attribute_task_then_the_others():
    runs = single_tasks(0, (.60, .50), (.80, .90))
    age = record("single_task", 0, {}, options={"task": "age"})
    age.metrics = [Metric("test", "age", "mae", 3.0, False, True), Metric("val", "age", "mae", 2.0, False, True)]
    (block,) = build_blocks([age, *runs])
    assert [(c.task, c.metric, c.role) for c in block.columns] == [
        ("classes", "accuracy", "classes"), ("classes", "f1_macro", "classes"),
        ("attributes", "f1_mean", "attributes"), ("attributes", "accuracy_mean", "attributes"),
        ("age", "mae", None)]


# --- the weights' name in a title --------------------------------------------------------------------

@pytest.mark.parametrize("pretrained, label", [
    ("mine.pth", "mine.pth"),  # a local file given without a folder
    ("a/b/c.pth", "c.pth"),  # only the last path part, however deep
    ("/data/weights/run1/r50.pth", "r50.pth"),
    ("timm:resnet50.a1_in1k", "resnet50.a1_in1k"),
])
def test_weights_label_keeps_the_file_name_or_the_timm_tag(pretrained, label):
    assert weights_label(pretrained) == label
    run = record("single_task", 0, {"classes": (0.6, 0.5)}, options={"task": "classes"})
    run.config["pretrained"] = pretrained
    (block,) = build_blocks([run])
    assert block.label == f"tiny [{label}]"


# --- the verdict when it cannot tell -----------------------------------------------------------------

def _primary(task: str, deltas: tuple[float, ...] = (), *, reference: bool = False) -> Stat:
    return Stat(task, "m", True, True, values=(.5,) * max(1, len(deltas)), deltas=deltas, is_reference=reference)


def test_verdict_names_the_tasks_without_a_single_task_comparison():
    assert verdict([_primary("classes"), _primary("attributes", (.1,))]) == (
        None, "no single-task comparison for 'classes'")
    assert verdict([_primary("classes"), _primary("attributes")]) == (
        None, "no single-task comparison for 'classes', 'attributes'")


def test_verdict_without_any_primary_comparison_says_any_task():
    assert verdict([]) == (None, "no single-task comparison for any task")
    assert verdict([_primary("classes", reference=True)]) == (None, "no single-task comparison for any task")


# --- per-run relative differences --------------------------------------------------------------------

def test_relative_differences_pair_each_run_with_its_single_task_run():
    (block,) = build_blocks(toy_records(), ["toy"])
    nc = _variant(block, "no_coupling")
    acc = relative_differences(block, nc, _column(block, "classes", "accuracy"))
    assert acc == pytest.approx([100 * (.55 - .60) / .60, 100 * (.58 - .62) / .62, 100 * (.58 - .64) / .64])
    # fixed_weights' seed 3 has no single-task run: left out, not zero
    (fw,) = [v for v in block.variants() if v.method == "fixed_weights"]
    assert len(fw.runs) == 3
    assert relative_differences(block, fw, _column(block, "classes", "accuracy")) == pytest.approx(
        [100 * (.59 - .60) / .60, 100 * (.59 - .62) / .62])


# --- which runs make the blocks ----------------------------------------------------------------------

def test_blocks_hold_only_completed_runs_of_the_asked_backbone():
    done = single_tasks(0, (.60, .50), (.80, .90))
    failed = record("no_coupling", 0, {"classes": (.55, .52)})
    failed.status = "failed"
    running = dataclasses.replace(record("no_coupling", 1, {"classes": (.56, .52)}), status="running")
    other = record("no_coupling", 0, {"classes": (.57, .52)})
    other.backbone, other.config["backbone"] = "big", "big"
    (big, block) = build_blocks([*done, failed, running, other])  # ordered by backbone
    assert block.runs == done and big.runs == [other] and big.backbone == "big"
    (block,) = build_blocks([*done, failed, running, other], backbone="tiny")
    assert block.runs == done
    (big,) = build_blocks([*done, failed, running, other], backbone="big")
    assert big.runs == [other]


# --- row labels --------------------------------------------------------------------------------------

def test_a_hyperparameter_with_two_values_tells_the_rows_apart():
    runs = single_tasks(0, (.60, .50), (.80, .90))
    for lam in (0.5, 1.0):
        runs.append(record("dmsca", 0, {"classes": (.62, .52)}, options={"relatedness": "db", "lambda_dm": lam}))
    runs.append(record("no_coupling", 0, {"classes": (.55, .52)}, options={"lambda_dm": 9}))
    (block,) = build_blocks(runs)
    variants = block.variants()
    assert [variant_label(v, variants) for v in variants] == [
        "single_task", "no_coupling",
        "dmsca [lambda_dm=0.5, relatedness=db]", "dmsca [lambda_dm=1.0, relatedness=db]"]


# --- the Δm cell -------------------------------------------------------------------------------------

@pytest.mark.parametrize("primary_only", [True, False])
def test_delta_m_is_higher_is_better_and_never_a_primary_metric(primary_only):
    """Δm is signed "positive = better", and it is no task's primary metric: the verdict ignores it."""
    (block,) = build_blocks(toy_records(), ["toy"])
    nc = _variant(block, "no_coupling")
    stats = [column_stat(block, nc, c) for c in block.columns]
    dm = delta_m(block, nc, primary_only)
    assert (dm.task, dm.higher_is_better, dm.primary, dm.unit) == ("", True, False, "%")
    assert len(dm.values) == 3 and dm.deltas == ()
    assert verdict([*stats, dm]) == verdict(stats) == (True, "")
    assert verdict([dm]) == (None, "no single-task comparison for any task")


def test_a_protocol_does_not_depend_on_the_order_of_the_stored_config_keys():
    """The same settings written in another order (a sweep file's db options, a record read back) are one block."""
    runs = single_tasks(0, (.60, .50), (.80, .90), db_options={"size": 10, "ratio": "1:3"})
    other = record("no_coupling", 0, {"classes": (.55, .52)}, db_options={"ratio": "1:3", "size": 10})
    other.config = dict(reversed(other.config.items()))
    (block,) = build_blocks([*runs, other])
    assert block.runs == [*runs, other] and block.label == "tiny"


def test_a_run_without_a_single_task_partner_is_noted_and_the_later_runs_still_pair():
    runs = [record("no_coupling", 0, {"classes": (.55, .52)})]  # seed 0 has no single-task run
    for seed in (1, 2):
        runs += single_tasks(seed, (.60, .50), (.80, .90))
        runs.append(record("no_coupling", seed, {"classes": (.55 + seed / 100, .52)}))
    (block,) = build_blocks(runs)
    nc = _variant(block, "no_coupling")
    assert [r.seed for r in nc.runs] == [0, 1, 2]
    stat = column_stat(block, nc, _column(block, "classes", "accuracy"))
    assert stat.values == pytest.approx((.55, .56, .57)) and stat.deltas == pytest.approx((-.04, -.03))
    assert stat.notes[0] == "no single_task run of 'classes' with this protocol (seed 0)"


@pytest.mark.parametrize("link", [
    lambda i: i,  # a bare id
    lambda i: [i],  # a list of ids
    lambda i: [{"run_id": i}, {"method": "no id"}],  # a list of runner entries
    lambda i: {"run_id": i, "method": "adashare"},  # the runner's entry
], ids=["bare", "ids", "entries", "entry"])
def test_an_earlier_stage_named_in_any_link_form_is_left_out(link):
    policy = record("adashare", 0, {"classes": (.10, .10)}, options={"phase": "policy"})
    other = record("adashare", 1, {"classes": (.20, .10)}, options={"phase": "policy"})  # linked by no run
    retrain = record("adashare", 0, {"classes": (.61, .51)}, options={"phase": "retrain"},
                     links={"policy_run": link(policy.run_id)})
    (block,) = build_blocks([policy, other, retrain])
    assert block.runs == [other, retrain]
