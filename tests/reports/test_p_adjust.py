"""``--adjust holm``: a table's p-values corrected for the number of cells it tests (Holm, 1979).

A study table tests many cells at once (the CAD study: 11 variants x 2 tasks); at p < 0.05 per cell about
one in twenty null cells gets a marker by chance. Holm's step-down adjustment holds the family-wise error
rate over the table at the level.
"""
from __future__ import annotations

import itertools

import pytest

from reports import Baseline, ReportOptions, build_tables, render
from reports.docpage import render_block
from reports.stats import Stat, holm
from reports.table import Cell, Row, Table, adjust_p_values
from tests.reports.test_versus import report, runs_file, versus_records  # noqa: F401 (fixture)


def test_holm_by_hand():
    # sorted: .005 x 4 = .02; .01 x 3 = .03; .03 x 2 = .06; .04 x 1 = .04 -> stays .06 (step-down is monotone)
    assert holm([.01, .04, .03, .005]) == pytest.approx([.03, .06, .06, .02])
    assert holm([.6, .9]) == pytest.approx([1.0, 1.0])  # 2 x .6 = 1.2, capped at 1
    assert holm([.02]) == pytest.approx([.02]) and holm([]) == []


@pytest.mark.parametrize("p", [[.001, .2, .04, .04, .7], [.3, .01, .02, .5, .049, .9]])
def test_holm_is_the_closed_form_of_its_definition(p):
    """adjusted p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)) over the sorted values, checked by brute force."""
    m = len(p)
    ranked = sorted(p)
    for i, value in enumerate(p):
        rank = max(j for j, v in enumerate(ranked) if v == value)  # ties: the largest rank gives the same max
        expected = max(min(1.0, (m - j) * ranked[j]) for j in range(rank + 1))
        assert holm(p)[i] == pytest.approx(expected)
    assert all(a >= b for a, b in zip(holm(p), p))


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


def test_ties_take_the_same_adjusted_value():
    p = [.01, .01, .2]
    assert holm(p)[0] == holm(p)[1] == pytest.approx(.03)
    assert list(itertools.accumulate(sorted(holm(p)), max)) == sorted(holm(p))
