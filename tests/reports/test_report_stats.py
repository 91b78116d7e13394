"""Aggregation, flags, Δm and the paired test against hand-computed values on the hand-made store."""

from __future__ import annotations

import math

import pytest

from reports import ReportOptions, build_blocks, build_tables, column_stat, delta_m, verdict
from reports.stats import paired_test, relative_difference, spread
from tests.reports.report_store import record, single_tasks, toy_records


def _block(db: str = "toy"):
    (block,) = build_blocks(toy_records(), [db])
    return block


def _variant(block, method: str, **options):
    found = [v for v in block.variants() if v.method == method
             and all(str(v.options.get(k)) == str(x) for k, x in options.items())]
    assert len(found) == 1, [v.key for v in block.variants()]
    return found[0]


def _stats(block, variant):
    return {(c.task, c.metric): column_stat(block, variant, c) for c in block.columns}


def test_cells_are_paired_with_single_task_and_flagged_where_worse():
    block = _block()
    stats = _stats(block, _variant(block, "no_coupling"))
    acc = stats[("classes", "accuracy")]
    assert acc.values == pytest.approx((.55, .58, .58)) and acc.deltas == pytest.approx((-.05, -.04, -.06))
    assert acc.mean == pytest.approx(1.71 / 3) and acc.delta == pytest.approx(-.05) and acc.worse is True
    assert stats[("classes", "f1_macro")].delta == pytest.approx(.04 / 3) and not stats[("classes", "f1_macro")].worse
    assert stats[("attributes", "f1_mean")].delta == pytest.approx(.07 / 3) and not stats[("attributes", "f1_mean")].worse
    # negative transfer: worse on the primary metric (accuracy) of the class task
    assert verdict(list(stats.values())) == (True, "")
    coupled = _stats(block, _variant(block, "dmsca", relatedness="domain"))
    assert verdict(list(coupled.values())) == (False, "")
    # student_teacher is worse on a non-primary metric only: flagged there, but no negative transfer
    st = _stats(block, _variant(block, "student_teacher"))
    assert st[("attributes", "accuracy_mean")].worse is True and verdict(list(st.values()))[0] is False


def test_delta_m_in_both_conventions_matches_hand_computation():
    block = _block()
    nc = _variant(block, "no_coupling")
    # (value - single-task) / single-task per metric, seed by seed (all metrics higher-is-better)
    acc = [(.55 - .60) / .60, (.58 - .62) / .62, (.58 - .64) / .64]
    f1 = [(.52 - .50) / .50, (.53 - .52) / .52, (.55 - .54) / .54]
    att_f1 = [(.82 - .80) / .80, (.83 - .80) / .80, (.85 - .83) / .83]
    att_acc = [(.90 - .90) / .90, (.92 - .91) / .91, (.93 - .92) / .92]
    every = [100 * (a + b + c + d) / 4 for a, b, c, d in zip(acc, f1, att_f1, att_acc)]
    primary = [100 * (a + c) / 2 for a, c in zip(acc, att_f1)]
    metrics, tasks = delta_m(block, nc, primary_only=False), delta_m(block, nc, primary_only=True)
    assert metrics.values == pytest.approx(every) and tasks.values == pytest.approx(primary)
    assert metrics.mean == pytest.approx(sum(every) / 3) and tasks.mean == pytest.approx(-2.5834, abs=1e-4)
    assert metrics.unit == "%" and metrics.metric == "Δm (metrics)" and tasks.metric == "Δm (tasks)"


def test_delta_m_leaves_out_an_unpaired_run_and_says_so():
    block = _block()
    plugin = _variant(block, "fixed_weights")
    dm = delta_m(block, plugin, primary_only=True)
    assert len(dm.values) == 2 and dm.values[0] == pytest.approx(100 * ((.59 - .60) / .60 + (.82 - .80) / .80) / 2)
    assert dm.notes == ("Δm (tasks) leaves out seed 3: not every metric has a single-task value to compare with",)


def test_cell_without_reference_says_why_and_rests_on_the_paired_runs():
    block = _block()
    acc = _stats(block, _variant(block, "fixed_weights"))[("classes", "accuracy")]
    assert acc.n == 3 and acc.n_pairs == 2 and acc.delta == pytest.approx((-.01 - .03) / 2)
    assert "no single_task run of 'classes' with this protocol (seed 3)" in acc.notes


def test_paired_t_test_matches_the_closed_form_for_two_degrees_of_freedom():
    # t with 2 degrees of freedom: two-sided p = 1 - |t| / sqrt(t^2 + 2)
    deltas = [-.05, -.04, -.06]
    t = (-.05) / (.01 / math.sqrt(3))
    p, why = paired_test(deltas)
    assert why == "" and p == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2), rel=1e-6)
    acc = _stats(_block(), _variant(_block(), "no_coupling"))[("classes", "accuracy")]
    assert acc.p_value == pytest.approx(p) and acc.significant(0.05) and not acc.significant(0.01)


def test_paired_test_needs_three_pairs_and_wilcoxon_is_exact():
    assert paired_test([.1, .2]) == (None, "")
    assert paired_test([.1, .2, .3], "wilcoxon")[0] == pytest.approx(0.25)  # the smallest exact p with n = 3
    assert paired_test([.01, .01, .01])[0] is None  # identical differences: the t statistic is undefined
    with pytest.raises(ValueError, match="unknown paired test 'sign'"):
        paired_test([.1, .2, .3], "sign")


def test_spread_conventions():
    values = [1.0, 2.0, 4.0]
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert spread(values, "std") == pytest.approx(sd)
    assert spread(values, "sem") == pytest.approx(sd / math.sqrt(3))
    assert spread(values, "half_range") == pytest.approx(1.5)
    assert spread([1.0], "std") is None


def test_lower_is_better_metric_flips_the_sign():
    assert relative_difference(0.8, 1.0, higher_is_better=False) == pytest.approx(0.2)
    assert relative_difference(1.2, 1.0, higher_is_better=True) == pytest.approx(0.2)
    assert relative_difference(1.0, 0.0, higher_is_better=True) is None


def test_adashare_shows_only_the_retraining_run():
    block = _block()
    adashare = [v for v in block.variants() if v.method == "adashare"]
    assert len(adashare) == 1 and adashare[0].options == {"phase": "retrain"} and len(adashare[0].runs) == 1
    assert all(r.method_options.get("phase") != "policy" for r in block.runs)


def test_folds_of_a_cross_validated_db_are_aggregated():
    (table,) = build_tables(toy_records(), "negative-transfer", ["cvtoy"])
    block = _block("cvtoy")
    acc = _stats(block, _variant(block, "single_task"))[("classes", "accuracy")]
    assert acc.values == pytest.approx((.70, .71, .72)) and acc.is_reference
    assert block.cross_validated and "over seeds and folds" in table.legend[0]


def test_protocols_that_differ_are_separate_tables():
    runs = single_tasks(0, (.6, .5), (.8, .9)) + single_tasks(0, (.7, .5), (.8, .9), epochs=5)
    runs.append(record("no_coupling", 0, {"classes": (.65, .5), "attributes": (.8, .9)}, epochs=5))
    tables = build_tables(runs, "negative-transfer", ["toy"])
    assert [t.title for t in tables] == ["Negative transfer on toy (tiny (epochs=2))",
                                         "Negative transfer on toy (tiny (epochs=5))"]
    assert len({t.name for t in tables}) == 2


def test_unknown_methods_are_extra_rows():
    (nt,) = build_tables(toy_records(), "negative-transfer", ["toy"])
    assert "fixed_weights" in [row.cells[0].text for row in nt.rows]
    (t5,) = build_tables(toy_records(), "table5", ["toy"])
    assert [row.cells[0].text for row in t5.rows][-3:] == ["dm_only", "fixed_weights", "sca_only"]


def test_per_run_rows():
    (table,) = build_tables(toy_records(), "negative-transfer", ["cvtoy"], options=ReportOptions(per_run=True))
    assert table.columns[2] == "run" and len(table.rows) == 9
    assert [row.cells[2].text for row in table.rows[:3]] == ["seed 0, fold 0"] * 3


def test_no_run_is_a_clear_error():
    with pytest.raises(ValueError, match="no completed run of nowhere"):
        build_tables(toy_records(), "table2", ["nowhere"])
    with pytest.raises(ValueError, match="unknown layout 'table9'"):
        build_tables(toy_records(), "table9")
