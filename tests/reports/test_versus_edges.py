"""Edge cases of the versus layout (reports/versus.py), worked out by hand on tiny stores.

Every store here has single-task runs with classes accuracy .50 and attributes f1_mean .40 (both primary,
higher is better); the non-primary metrics (f1_macro, accuracy_mean) are set far from them so that a Δm over
every metric would differ from the Δm over the primary ones.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from reports import Baseline, ReportOptions, build_tables
from reports.compare import build_blocks
from reports.versus import Against
from tests.reports.report_store import record, single_tasks

DB = "ve"


def st(seeds, **kw):
    return [r for s in seeds for r in single_tasks(s, (.50, .50), (.40, .90), db=DB, **kw)]


def run(method, seed, classes, attributes=None, options=None, **kw):
    """A run with classes accuracy ``classes`` and attributes f1_mean ``attributes`` (None: no attributes task);
    the non-primary metrics are .99 / .01."""
    values = {"classes": (classes, .99)}
    if attributes is not None:
        values["attributes"] = (attributes, .01)
    return record(method, seed, values, db=DB, options=options, **kw)


def versus_table(records, baseline=Baseline("no_coupling")):
    (only,) = build_tables(records, "versus", options=ReportOptions(versus=baseline))
    return only


def rows(tab):
    return {(r.cells[0].text, r.cells[1].text): r for r in tab.rows}


def stat(tab, r, header):
    return r.cells[tab.columns.index(header)].stats[0]


# ----- Δm over the primary metrics ---------------------------------------------------------------------------
def test_delta_m_is_over_the_primary_metrics_and_is_a_higher_is_better_non_primary_percentage():
    # Δm (tasks) per run, relative to single-task (.50, .40):
    #   no_coupling seed 0: (.60-.50)/.50=.20, (.44-.40)/.40=.10 -> 15.0 %; seed 1: .10, .05 -> 7.5 %
    #   dmsca       seed 0: (.65-.50)/.50=.30, (.48-.40)/.40=.20 -> 25.0 %; seed 1: .20, .00 -> 10.0 %
    # paired differences: 10.0 and 2.5 percentage points
    records = st((0, 1)) + [run("no_coupling", 0, .60, .44), run("no_coupling", 1, .55, .42),
                            run("dmsca", 0, .65, .48), run("dmsca", 1, .60, .40)]
    tab = versus_table(records)
    assert tab.columns[-1] == "Δm (tasks)"
    (dmsca,) = tab.rows
    delta_m = stat(tab, dmsca, "Δm (tasks)")
    assert delta_m.metric == "Δm (tasks)" and delta_m.task == ""
    assert delta_m.values == pytest.approx((10.0, 2.5))
    assert delta_m.mean == pytest.approx(6.25)
    assert delta_m.higher_is_better is True and delta_m.primary is False and delta_m.unit == "%"
    assert delta_m.p_value is None  # two pairs, fewer than MIN_PAIRS = 3: untested
    assert delta_m.notes == ()
    # the per-metric cells are primary
    assert stat(tab, dmsca, "classes: accuracy").primary is True
    assert stat(tab, dmsca, "classes: accuracy").values == pytest.approx((.05, .05))


def test_delta_m_notes_name_whose_run_lacks_a_primary_metric():
    # seed 0 paired normally; seed 1: the dmsca run has no attributes metric; seed 2: the baseline's has none
    records = st((0, 1, 2)) + [run("no_coupling", 0, .60, .44), run("no_coupling", 1, .60, .44),
                               run("no_coupling", 2, .60), run("dmsca", 0, .65, .48), run("dmsca", 1, .65),
                               run("dmsca", 2, .65, .48)]
    tab = versus_table(records)
    (dmsca,) = tab.rows
    delta_m = stat(tab, dmsca, "Δm (tasks)")
    assert delta_m.values == pytest.approx((25.0 - 15.0,))
    assert delta_m.notes[:2] == (
        "Δm (tasks) leaves out seed 1: not every primary metric of the dmsca run has a single-task value to compare with",
        "Δm (tasks) leaves out seed 2: not every primary metric of the baseline's run has a single-task value to "
        "compare with")
    attributes = stat(tab, dmsca, "attributes: f1_mean")
    assert attributes.values == pytest.approx((.08 - .04,))
    assert "no usable f1_mean of 'attributes' in the dmsca run (seed 1)" in attributes.notes
    assert "the baseline run has no usable f1_mean of 'attributes' (seed 2)" in attributes.notes


def test_a_nan_in_the_baselines_run_leaves_the_pair_out_of_delta_m_with_a_note():
    records = st((0, 1)) + [run("no_coupling", 0, .60, .44), run("no_coupling", 1, .60, math.nan),
                            run("dmsca", 0, .65, .48), run("dmsca", 1, .65, .48)]
    tab = versus_table(records)
    delta_m = stat(tab, tab.rows[0], "Δm (tasks)")
    assert delta_m.values == pytest.approx((10.0,))
    assert delta_m.notes[0] == ("Δm (tasks) leaves out seed 1: not every primary metric of the baseline's run has a "
                                "single-task value to compare with")


# ----- a task absent from every paired run; a variant without any pair ------------------------------------------
def test_a_task_absent_from_every_paired_run_is_not_trained_and_a_variant_without_pairs_only_says_left_out():
    records = st((0, 1)) + [run("no_coupling", 0, .60, .44), run("no_coupling", 1, .60, .44),
                            run("student_teacher", 0, .62), run("student_teacher", 1, .58),  # classes only
                            run("dmsca", 7, .65, .48)]  # seed 7: no no_coupling run
    tab = versus_table(records)
    by = rows(tab)
    student = by[("student_teacher", "")]
    attributes = stat(tab, student, "attributes: f1_mean")
    assert attributes.values == () and attributes.p_value is None
    assert attributes.notes[0] == "task 'attributes' is not trained by student_teacher"
    assert not any("no usable" in n for n in attributes.notes)
    assert stat(tab, student, "classes: accuracy").values == pytest.approx((.02, -.02))
    w_t_l = student.cells[tab.columns.index("attributes: f1_mean W/T/L")]
    assert w_t_l.text == "" and w_t_l.notes == ("task 'attributes' is not trained by student_teacher",)

    dmsca = by[("dmsca", "")]
    left_out = "no baseline (no_coupling) run with this protocol (seed 7): left out of the comparison"
    for header in ("classes: accuracy", "attributes: f1_mean"):
        cell_stat = stat(tab, dmsca, header)
        assert cell_stat.values == ()
        assert left_out in cell_stat.notes
        assert not any("not trained" in n for n in cell_stat.notes)
        assert dmsca.cells[tab.columns.index(f"{header} W/T/L")].notes == (left_out,)


# ----- the legend ------------------------------------------------------------------------------------------------
def test_the_legend_says_seeds_and_folds_for_a_cross_validated_db_and_seeds_otherwise():
    fixed = versus_table(st((0, 1)) + [run("no_coupling", s, .60, .44) for s in (0, 1)]
                         + [run("dmsca", s, .65, .48) for s in (0, 1)])
    assert "the mean ± std over seeds of the paired difference" in fixed.legend[0]
    assert "seeds and folds" not in fixed.legend[0]
    folds = [r for f in (0, 1) for r in single_tasks(0, (.50, .50), (.40, .90), db=DB, fold=f)]
    folds += [run("no_coupling", 0, .60, .44, fold=f) for f in (0, 1)] + [run("dmsca", 0, .65, .48, fold=f)
                                                                          for f in (0, 1)]
    cv = versus_table(folds)
    assert "the mean ± std over seeds and folds of the paired difference" in cv.legend[0]
    assert stat(cv, cv.rows[0], "Δm (tasks)").values == pytest.approx((10.0, 10.0))


# ----- the options column ---------------------------------------------------------------------------------------
def test_options_a_variant_of_the_baselines_method_shows_only_what_differs_another_method_what_it_shows_anyway():
    """Baseline dmsca (domain, λ=1.0). Its other variants show only the options whose values differ from the
    baseline's, though both options differ among dmsca's variants; other methods show :data:`SHOWN_OPTIONS`
    (relatedness, even when equal to the baseline's) and what differs among their own variants, never a constant
    option (adashare's temperature)."""
    records = st((0,)) + [
        run("dmsca", 0, .65, .48, options={"relatedness": "domain", "lambda_dm": 1.0}),
        run("dmsca", 0, .66, .48, options={"relatedness": "db", "lambda_dm": 1.0}),
        run("dmsca", 0, .67, .48, options={"relatedness": "domain", "lambda_dm": 0.5}),
        run("dm_only", 0, .61, .44, options={"relatedness": "domain"}),
        run("adashare", 0, .62, .44, options={"temperature": 5.0}),
        run("no_coupling", 0, .60, .44)]
    tab = versus_table(records, Baseline("dmsca", (("relatedness", "domain"), ("lambda_dm", "1"))))
    assert tab.title.startswith("Variants against dmsca [lambda_dm=1.0, relatedness=domain] on ve")
    assert sorted(rows(tab)) == sorted([("dmsca", "relatedness=db"), ("dmsca", "lambda_dm=0.5"),
                                        ("dm_only", "relatedness=domain"), ("adashare", ""), ("no_coupling", "")])
    db = rows(tab)[("dmsca", "relatedness=db")]
    assert stat(tab, db, "classes: accuracy").values == pytest.approx((.01,))


def test_options_of_a_baseline_variant_missing_from_the_row_are_not_shown():
    records = st((0,)) + [
        run("dmsca", 0, .65, .48, options={"relatedness": "domain", "lambda_dm": 1.0}),
        run("dmsca", 0, .66, .48, options={"relatedness": "db"})]
    tab = versus_table(records, Baseline("dmsca", (("lambda_dm", 1.0),)))
    assert list(rows(tab)) == [("dmsca", "relatedness=db")]


# ----- the baseline lookup ----------------------------------------------------------------------------------------
def test_the_one_matching_variant_is_the_baseline():
    """Exactly one variant must match (none or several is an error, see test_versus.py); it is the baseline,
    whatever its position among the method's variants."""
    records = st((0,)) + [run("dmsca", 0, .60 + i / 100, .44, options={"relatedness": rel, "lambda_dm": 1.0})
                          for i, rel in enumerate(("a", "b", "c"))]
    for rel in ("a", "b", "c"):
        tab = versus_table(records, Baseline("dmsca", (("relatedness", rel),)))
        assert tab.title.startswith(f"Variants against dmsca [relatedness={rel}] on ve")
        assert sorted(rows(tab)) == sorted(("dmsca", f"relatedness={o}") for o in "abc" if o != rel)


# ----- Against --------------------------------------------------------------------------------------------------
def test_against_is_frozen():
    records = st((0,)) + [run("no_coupling", 0, .60, .44)]
    (block,) = build_blocks(records)
    variants = block.variants()
    baseline = next(v for v in variants if v.method == "no_coupling")
    against = Against(block, baseline, "no_coupling", ReportOptions())
    with pytest.raises(dataclasses.FrozenInstanceError):
        against.label = "other"  # type: ignore[misc]
    assert [c.metric for c in against.columns] == ["accuracy", "f1_mean"]
