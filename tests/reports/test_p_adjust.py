"""``--adjust holm``: a table's p-values corrected for the number of cells it tests (Holm, 1979).

A study table tests many cells at once (the CAD study: 11 variants x 2 tasks); at p < 0.05 per cell about
one in twenty null cells gets a marker by chance. Holm's step-down adjustment holds the family-wise error
rate over the table at the level.
"""
from __future__ import annotations

import pytest

from reports import Baseline, ReportOptions, build_tables, render
from reports.docpage import render_block
from reports.html_tables import _tooltip
from reports.stats import Stat, holm
from reports.table import Cell, Row, Table, adjust_p_values
from tests.reports.test_versus import report, runs_file, versus_records  # noqa: F401 (fixture)


def test_holm_by_hand():
    # sorted: .005 x 4 = .02; .01 x 3 = .03; .03 x 2 = .06; .04 x 1 = .04 -> stays .06 (step-down is monotone)
    assert holm([.01, .04, .03, .005]) == pytest.approx([.03, .06, .06, .02])
    assert holm([.6, .9]) == pytest.approx([1.0, 1.0])  # 2 x .6 = 1.2, capped at 1
    assert holm([.02]) == pytest.approx([.02]) and holm([]) == []


def step_down_rejects(p: list[float], alpha: float) -> list[bool]:
    """Holm's procedure as he states it: walk the p-values from the smallest, rejecting H_(j) while
    p_(j) <= alpha / (m - j + 1) (j from 1), and stop at the first that is not."""
    m, rejected = len(p), [False] * len(p)
    for j, i in enumerate(sorted(range(m), key=lambda k: p[k])):
        if p[i] > alpha / (m - j):
            break
        rejected[i] = True
    return rejected


@pytest.mark.parametrize("p", [[.001, .2, .04, .04, .7], [.3, .01, .02, .5, .049, .9], [.012, .013, .011, .6]])
@pytest.mark.parametrize("alpha", [.01, .025, .05, .1, .2])
def test_an_adjusted_p_value_is_below_alpha_exactly_where_the_step_down_procedure_rejects(p, alpha):
    assert [a <= alpha for a in holm(p)] == step_down_rejects(p, alpha)
    assert all(a >= raw for a, raw in zip(holm(p), p))


def test_holm_refuses_what_is_not_a_p_value():
    with pytest.raises(ValueError, match="p-values must lie in \\[0, 1\\]"):
        holm([.01, float("nan")])
    with pytest.raises(ValueError, match="1.5"):
        holm([1.5])
    with pytest.raises(ValueError, match=r"got \[-0.5\]$"):  # only the bad value is named: 0 and 1 are p-values
        holm([0.0, 1.0, -0.5])
    assert holm([0.0, 1.0]) == [0.0, 1.0]


def p_values_of(table) -> list[float]:
    return [s.p_value for row in table.rows for c in row.cells for s in c.stats if s.p_value is not None]


@pytest.mark.parametrize("layout, baseline", [("versus", Baseline("no_coupling")), ("negative-transfer", None)])
def test_a_table_adjusts_every_tested_cell_together(layout, baseline):
    (plain,) = build_tables(versus_records(), layout, options=ReportOptions(versus=baseline))
    (held,) = build_tables(versus_records(), layout, options=ReportOptions(versus=baseline, adjust="holm"))
    raw = p_values_of(plain)
    assert len(raw) >= 3
    assert p_values_of(held) == pytest.approx(holm(raw))
    assert held.legend[:len(plain.legend)] == plain.legend
    assert held.legend[-1].startswith(f"p-values Holm-adjusted (Holm, Scand. J. Statist. 1979) over every tested "
                                      f"cell of the table ({len(raw)} tests)")
    assert held.legend[-1].endswith("with the family-wise error rate held at 0.05.")
    assert (plain.p_adjust, held.p_adjust) == ("none", "holm")
    for fmt in ("csv", "json"):  # no caption there: each value says how its p-value was adjusted
        assert "p_adjust" in render([held], fmt) and "holm" in render([held], fmt)
        assert "holm" not in render([plain], fmt)
    # the values, differences and untested cells are those of the plain table
    for a, b in zip(plain.rows, held.rows):
        for ca, cb in zip(a.cells, b.cells):
            assert [s.values for s in ca.stats] == [s.values for s in cb.stats] and ca.text == cb.text


def test_adjusting_removes_a_marker_the_per_cell_test_gave():
    """Three cells at p = .01, .03, .04: each passes alone; Holm keeps .01 (x3 = .03) and drops the others."""
    stats = [Stat("classes", "accuracy", values=(.6, .7, .8), deltas=(.1, .2, .3), p_value=p) for p in (.01, .03, .04)]
    plain = Table("t", "T", ["method", "classes: accuracy"],
                  [Row([Cell(text=f"m{i}"), Cell(stats=(s,))]) for i, s in enumerate(stats)], show_delta=True)
    held = adjust_p_values(plain, "holm")
    assert [s.significant(.05) for s in plain.stats()] == [True, True, True]
    assert [s.p_value for s in held.stats()] == pytest.approx([.03, .06, .06])
    assert [s.significant(.05) for s in held.stats()] == [True, False, False]
    assert render([plain], "markdown").count(" *") == 3 and render([held], "markdown").count(" *") == 1
    assert adjust_p_values(plain, "none") is plain
    assert _tooltip(held.rows[0].cells[1], held).endswith("p=0.03 (holm-adjusted)")  # the HTML page's hover text
    assert _tooltip(plain.rows[0].cells[1], plain).endswith("p=0.01")


def test_none_leaves_the_table_as_it_was_and_an_unknown_adjustment_is_an_error():
    (plain,) = build_tables(versus_records(), "negative-transfer")
    (none,) = build_tables(versus_records(), "negative-transfer", options=ReportOptions(adjust="none"))
    assert render([plain], "markdown") == render([none], "markdown")
    with pytest.raises(ValueError, match="adjust one of \\['none', 'holm'\\]"):
        build_tables(versus_records(), "negative-transfer", options=ReportOptions(adjust="bonferroni"))


def test_the_command_and_a_docpage_marker_take_adjust(runs_file, capsys):  # noqa: F811
    assert report(runs_file, "--layout", "versus", "--versus", "no_coupling", "--adjust", "holm") == 0
    out = capsys.readouterr().out
    assert "p-values Holm-adjusted" in out
    block = render_block(f"table --runs {runs_file} --layout versus --versus no_coupling --adjust holm")
    assert block.rstrip("\n") == out.rstrip("\n")
    with pytest.raises(SystemExit):
        report(runs_file, "--adjust", "bonferroni")
    assert "invalid choice: 'bonferroni'" in capsys.readouterr().err


def test_ties_take_the_same_adjusted_value_and_the_order_of_the_raw_values_is_kept():
    p = [.2, .01, .04, .01]
    adjusted = holm(p)
    assert adjusted[1] == adjusted[3] == pytest.approx(.04)
    by_raw = [adjusted[i] for i in sorted(range(len(p)), key=lambda i: p[i])]
    assert by_raw == sorted(by_raw)  # a smaller raw p never gets a larger adjusted one
