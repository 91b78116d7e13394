"""The versus layout: every variant against one chosen baseline variant, paired seed by seed.

db ``vs`` (seeds 0-2, backbone ``tiny``) has a lower-is-better primary metric on its attribute task, so the
sign flip can be checked by hand. Primary values (classes accuracy, higher is better; attributes f1_mean,
here read as an error, lower is better):

- single_task              classes .50, attributes .40 in every seed
- no_coupling (baseline)   classes .60 .62 .64, attributes .30 .30 .30
- dmsca (domain, λ=1.0)    classes .65 .62 .66, attributes .25 .35 .28
- dmsca (db, λ=0.5)        classes .61 .63 .65, attributes .30 .29 .31
- student_teacher          seeds 0, 1 and 3; seed 3 has no no_coupling run (left out, with a note)
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from scipy import stats as scipy_stats

from benchmark.cli import main
from reports import Baseline, ReportOptions, build_tables, render
from reports.versus import wins_ties_losses
from results import Metric, RunRecord
from tests.reports.report_store import record, single_tasks

DB = "vs"
BASELINE = {0: (.60, .30), 1: (.62, .30), 2: (.64, .30)}
DOMAIN = {0: (.65, .25), 1: (.62, .35), 2: (.66, .28)}
DB_SOURCE = {0: (.61, .30), 1: (.63, .29), 2: (.65, .31)}
STUDENT = {0: (.61, .31), 1: (.60, .28), 3: (.70, .20)}


def lower_is_better(run: RunRecord) -> RunRecord:
    """``run`` with its attribute metrics read as errors (lower is better)."""
    metrics = [dataclasses.replace(m, higher_is_better=False) if m.task == "attributes" else m for m in run.metrics]
    return dataclasses.replace(run, metrics=metrics)


def multi_task(method: str, values: dict[int, tuple[float, float]], **options: object) -> list[RunRecord]:
    """One run per seed; ``values`` maps a seed to its (classes accuracy, attributes f1_mean)."""
    return [record(method, seed, {"classes": (c, .5), "attributes": (a, .9)}, db=DB, options=dict(options))
            for seed, (c, a) in values.items()]


def versus_records() -> list[RunRecord]:
    runs = [r for seed in (0, 1, 2) for r in single_tasks(seed, (.50, .5), (.40, .9), db=DB)]
    runs += multi_task("no_coupling", BASELINE)
    runs += multi_task("dmsca", DOMAIN, relatedness="domain", lambda_dm=1.0)
    runs += multi_task("dmsca", DB_SOURCE, relatedness="db", lambda_dm=0.5)
    runs += multi_task("student_teacher", STUDENT)
    return [lower_is_better(r) for r in runs]


def table(baseline: Baseline, test: str = "ttest"):
    (only,) = build_tables(versus_records(), "versus", options=ReportOptions(test=test, versus=baseline))
    return only


def row(tab, method: str, options: str = ""):
    return next(r for r in tab.rows if r.cells[0].text == method and r.cells[1].text == options)


def cell(tab, r, header: str):
    return r.cells[tab.columns.index(header)]


def test_columns_rows_and_title():
    tab = table(Baseline("no_coupling"))
    assert tab.title == f"Variants against no_coupling on {DB} (tiny)"
    assert tab.columns == ["method", "options", "classes: accuracy", "classes: accuracy W/T/L", "attributes: f1_mean",
                           "attributes: f1_mean W/T/L", "Δm (tasks)"]
    # single_task and the baseline are no rows; the rest in the block's variant order
    assert [(r.cells[0].text, r.cells[1].text) for r in tab.rows] == [
        ("student_teacher", ""), ("dmsca", "lambda_dm=0.5, relatedness=db"),
        ("dmsca", "lambda_dm=1.0, relatedness=domain")]


def test_paired_differences_wins_ties_losses_and_the_sign_of_a_lower_is_better_metric():
    tab = table(Baseline("no_coupling"))
    dmsca = row(tab, "dmsca", "lambda_dm=1.0, relatedness=domain")
    classes = cell(tab, dmsca, "classes: accuracy").stats[0]
    assert classes.values == pytest.approx((.05, 0.0, .02)) and classes.values[1] == 0.0  # an exact tie
    assert classes.mean == pytest.approx(.07 / 3)
    assert classes.p_value == pytest.approx(scipy_stats.ttest_1samp([.05, 0.0, .02], 0.0).pvalue)
    assert cell(tab, dmsca, "classes: accuracy W/T/L").text == "2/1/0"
    # lower is better: baseline − variant, so .25 against .30 is +.05 (better) and .35 is -.05 (worse)
    attributes = cell(tab, dmsca, "attributes: f1_mean").stats[0]
    assert attributes.values == pytest.approx((.05, -.05, .02)) and attributes.higher_is_better
    assert cell(tab, dmsca, "attributes: f1_mean W/T/L").text == "2/0/1"
    # Δm (tasks) per run: no_coupling 22.5, 24.5, 26.5; dmsca 33.75, 18.25, 31.0 (in %)
    delta_m = cell(tab, dmsca, "Δm (tasks)").stats[0]
    assert delta_m.values == pytest.approx((11.25, -6.25, 4.5)) and delta_m.unit == "%"


def test_wilcoxon_is_used_when_asked():
    dmsca = row(tab := table(Baseline("no_coupling"), test="wilcoxon"), "dmsca", "lambda_dm=0.5, relatedness=db")
    classes = cell(tab, dmsca, "classes: accuracy").stats[0]
    assert classes.values == pytest.approx((.01, .01, .01))
    assert classes.p_value is None  # identical differences: the test is undefined, and a note says so
    assert "paired test undefined: the differences to the baseline are identical in every run" in classes.notes
    assert cell(tab, dmsca, "classes: accuracy W/T/L").notes == ()  # the test's note is the difference's only


def test_wins_ties_losses():
    assert wins_ties_losses([.1, 0.0, -.2, .3]) == "2/1/1" and wins_ties_losses([]) == ""


def test_a_run_without_a_baseline_run_of_its_protocol_is_left_out_with_a_note():
    tab = table(Baseline("no_coupling"))
    student = row(tab, "student_teacher")
    note = "no baseline (no_coupling) run with this protocol (seed 3): left out of the comparison"
    classes = cell(tab, student, "classes: accuracy").stats[0]
    assert classes.values == pytest.approx((.01, -.02)) and note in classes.notes
    assert cell(tab, student, "classes: accuracy W/T/L").text == "1/0/1"
    assert note in cell(tab, student, "classes: accuracy W/T/L").notes
    assert note in cell(tab, student, "Δm (tasks)").stats[0].notes
    assert note in tab.notes()


def test_the_baseline_is_picked_by_its_options():
    tab = table(Baseline("dmsca", (("relatedness", "db"),)))
    assert tab.title == f"Variants against dmsca [lambda_dm=0.5, relatedness=db] on {DB} (tiny)"
    assert [r.cells[0].text for r in tab.rows] == ["no_coupling", "student_teacher", "dmsca"]
    nc = row(tab, "no_coupling")
    assert cell(tab, nc, "classes: accuracy").stats[0].values == pytest.approx((-.01, -.01, -.01))
    # values match as values however they are written, as the paper layouts' filters do: 1, "1", "1.0" are 1.0
    for written in (1.0, 1, "1", "1.0", " 1.00 "):
        assert table(Baseline("dmsca", (("lambda_dm", written),))).title.startswith("Variants against dmsca [lambda_dm=1.0")


@pytest.mark.parametrize("stored, written, same", [(True, "true", True), (True, "True", True), (False, "true", False),
                                                    (1.0, "1", True), (0.1, "0.1", True), (1e-3, "0.001", True),
                                                    (0.3, "0.30000001", False), ("db", "db", True), ("db", "DB", False)])
def test_option_values_match_as_values(stored, written, same):
    from reports.spec import same_value

    assert same_value(stored, written) is same


@pytest.mark.parametrize("baseline, message", [
    (Baseline("gradnorm"), f"--versus gradnorm: gradnorm has no completed run on {DB} (tiny); methods with runs "
                           "there: no_coupling, student_teacher, dmsca"),
    (Baseline("dmsca", (("relatedness", "affwild2"),)),
     f"no dmsca variant on {DB} (tiny) has relatedness=affwild2 (stored: relatedness=db/domain); its variants "
     "there: dmsca [lambda_dm=0.5, relatedness=db]; dmsca [lambda_dm=1.0, relatedness=domain]"),
    (Baseline("dmsca"), f"--versus dmsca matches 2 dmsca variants on {DB} (tiny): dmsca [lambda_dm=0.5, "
                        "relatedness=db]; dmsca [lambda_dm=1.0, relatedness=domain]; add KEY=VALUE pairs to pick one"),
    (Baseline("single_task"), "the negative-transfer layout compares every method with it"),
    (None, "the versus layout needs a baseline"),
])
def test_no_or_several_matching_variants_are_errors_naming_the_block(baseline, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_tables(versus_records(), "versus", options=ReportOptions(versus=baseline))


def test_a_block_without_the_baselines_method_is_left_out_with_a_note():
    """A store that also holds a db (or backbone) where the baseline's method never ran still renders the blocks
    that have it, and says which block it left out; with no block holding the method it is the error above."""
    other = [r for seed in (0, 1) for r in single_tasks(seed, (.5, .5), (.4, .9), db="other")]
    other += [record("no_coupling", seed, {"classes": (.6, .5), "attributes": (.3, .9)}, db="other") for seed in (0, 1)]
    tables = build_tables(versus_records() + other, "versus",
                          options=ReportOptions(versus=Baseline("dmsca", (("relatedness", "db"),))))
    assert [t.name for t in tables] == ["versus_dmsca_vs"]
    assert any(line.startswith("Not shown: other (") and "no completed dmsca run" in line for line in tables[0].legend)
    with pytest.raises(ValueError, match="dmsca has no completed run on other"):
        build_tables(other, "versus", options=ReportOptions(versus=Baseline("dmsca")))


@pytest.mark.parametrize("fmt", ["markdown", "latex", "csv", "json"])
def test_every_format_renders(fmt):
    text = render(table(Baseline("no_coupling")), fmt)
    assert "no_coupling" in text
    if fmt == "markdown":
        line = next(x for x in text.splitlines() if x.startswith("| dmsca ") and "lambda_dm=1.0" in x)
        assert "| 0.023 ± 0.025 " in line and "| 2/1/0 " in line and "| 2/0/1 " in line
        assert "Positive is better: for a lower-is-better metric the difference is baseline minus variant." in text
    if fmt == "latex":
        body = text.split("\\midrule")[1].split("\\bottomrule")[0]
        assert all(line.count(" & ") == 6 for line in body.strip().splitlines())
        assert "The baseline: no\\_coupling." in text and "variant minus baseline" in text and "\\label{tab:versus_no_coupling_vs}" in text
    if fmt == "json":
        records = json.loads(text)
        first = next(r for r in records if r["options"] == "lambda_dm=1.0, relatedness=domain")
        assert first["classes: accuracy W/T/L"] == "2/1/0" and first["mean"] == pytest.approx(.07 / 3)


# ----- the command line ------------------------------------------------------------------------
@pytest.fixture
def runs_file(tmp_path):
    path = tmp_path / "vs.jsonl"
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in versus_records()))
    return path


def report(runs_file, *args: str) -> int:
    return main(["report", "--runs", str(runs_file), "--workdir", str(runs_file.parent / "none"), "--quiet", *args])


def test_the_command_prints_and_writes_the_versus_table(runs_file, tmp_path, capsys):
    assert report(runs_file, "--layout", "versus", "--versus", "no_coupling", "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"### Variants against no_coupling on {DB} (tiny).")
    assert (tmp_path / "out" / f"versus_no_coupling_{DB}.md").read_text() == out


def test_versus_values_are_parsed_as_the_method_options(runs_file, capsys):
    """``lambda_dm=1`` is dmsca's float 1.0, as stored; ``relatedness=db`` picks the other variant."""
    assert report(runs_file, "--layout", "versus", "--versus", "dmsca:lambda_dm=1") == 0
    assert "Variants against dmsca [lambda_dm=1.0, relatedness=domain]" in capsys.readouterr().out
    assert report(runs_file, "--layout", "versus", "--versus", "dmsca:relatedness=db") == 0
    assert "Variants against dmsca [lambda_dm=0.5, relatedness=db]" in capsys.readouterr().out
    assert report(runs_file, "--layout", "versus", "--versus", "dmsca:lambda_dm=1, ") == 0  # a trailing comma is fine
    capsys.readouterr()
    assert report(runs_file, "--layout", "versus", "--versus", "dmsca:lamda_dm=1") == 2
    assert "has no option 'lamda_dm'" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--layout", "versus"], "--layout versus needs --versus METHOD"),
    (["--layout", "versus", "--format", "html"], "--layout versus needs --versus METHOD"),
    (["--versus", "no_coupling"], "--versus is for --layout versus (not negative-transfer)"),
    (["--layout", "table2", "--versus", "no_coupling"], "--versus is for --layout versus (not table2)"),
    (["--layout", "versus", "--versus", "dmsca"], "matches 2 dmsca variants on vs (tiny)"),
    (["--layout", "versus", "--versus", "no_coupling:oops"], "'oops' is not of the form key=value"),
    (["--layout", "versus", "--versus", "dmsca:lambda_dm=1,lambda_dm=2"], "'lambda_dm' is given twice"),
    (["--layout", "versus", "--versus", "dm sca"], "expected METHOD or METHOD:KEY=VALUE"),
    (["--layout", "versus", "--versus", "no_coupling", "--per-run"], "--per-run is for the negative-transfer layout"),
])
def test_command_line_errors(runs_file, capsys, args, message):
    assert report(runs_file, *args) == 2
    assert message in capsys.readouterr().err


def test_a_variant_of_the_baselines_method_shows_the_options_that_differ_from_it():
    tab = table(Baseline("dmsca", (("lambda_dm", "1.0"),)))
    rows = {c[0]: c[1] for c in ([cell.text for cell in r.cells[:2]] for r in tab.rows)}
    assert rows == {"no_coupling": "", "student_teacher": "", "dmsca": "lambda_dm=0.5, relatedness=db"}
    assert "Options: for a variant of the baseline's method, those that differ from the baseline's." in tab.legend


def test_out_names_the_file_after_the_parsed_baseline(runs_file, tmp_path, capsys):
    for written in ("dmsca:lambda_dm=1", "dmsca:lambda_dm=1.0"):
        assert report(runs_file, "--layout", "versus", "--versus", written, "--out", str(tmp_path / "out")) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"versus_dmsca_lambda_dm_1.0_{DB}.md"]


def test_a_docpage_marker_and_the_command_pick_the_same_baseline_however_values_are_written(runs_file, capsys):
    from reports.docpage import render_block

    assert report(runs_file, "--layout", "versus", "--versus", "dmsca:lambda_dm=1") == 0
    printed = capsys.readouterr().out
    block = render_block(f"table --runs {runs_file} --layout versus --versus dmsca:lambda_dm=1")
    assert block.strip() == printed.strip()
