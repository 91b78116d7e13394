"""The results page (``report --format html``) from the hand-made store, read back with ``html.parser``:
every table present, every cell's text equal to the Markdown report's, figures embedded, runs listed."""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest

from benchmark.cli import main
from reports import ReportOptions, build_tables, render
from reports.html import HeatMap, html_page
from results import FAILED, RUNNING, ResultsStore
from tests.reports.html_page_parser import markdown_tables, parse_page
from tests.reports.report_store import record, toy_records

ERROR = "NonFiniteLossError: loss 'classes' is nan at epoch 0, step 3; lower --lr or check the data for bad labels"


def _history(epochs: int, coupling: bool = False) -> list[dict]:
    out = []
    for e in range(epochs):
        loss = {"classes": 1.0 / (e + 1), "attributes": 0.5 / (e + 1)} | ({"coupling/dm": 0.2 / (e + 1)} if coupling else {})
        out.append({"epoch": e, "train_loss": loss, "val_score": 0.5 + e / 20,
                    "val": {"classes": {"accuracy": 0.5 + e / 10}, "attributes": {"f1_mean": 0.7 + e / 30}}})
    return out


def store_records(histories: bool = True) -> list:
    """The hand-made store, with histories on no_coupling and dmsca (relatedness=domain) when asked, and a
    failed and a running run."""
    runs = []
    for r in toy_records():
        if histories and r.db == "toy" and r.method in ("no_coupling", "dmsca") and r.method_options.get(
                "relatedness", "domain") == "domain":
            r = dataclasses.replace(r, history=_history(3, coupling=r.method == "dmsca"))
        runs.append(r)
    failed = dataclasses.replace(record("gradnorm", 0, {}), status=FAILED, error=ERROR + "\nTraceback (most recent ...)",
                                 metrics=[], best_epoch=None, wall_time_s=1.5)
    running = dataclasses.replace(record("mgda_ub", 0, {}), status=RUNNING, metrics=[], best_epoch=None)
    return runs + [failed, running]


@pytest.fixture(scope="module")
def page():
    heat = HeatMap("toy: p(attribute | class), source domain", np.array([[0.9, 0.1], [0.3, 0.7]]), ("a", "b"),
                   ("x", "y"))
    text = html_page(store_records(), heat_maps={"toy": [heat], "cvtoy": "its files are not here"}, source="test")
    return text, parse_page(text)


def _completed():
    return [r for r in store_records() if r.status == "completed"]


def _assert_same(html_table, md_table) -> None:
    title, headers, rows, notes = md_table
    assert html_table.title == title
    assert html_table.headers == headers
    assert html_table.rows == rows  # every cell's text, numbers, markers and footnote numbers included
    assert html_table.notes == notes


@pytest.mark.parametrize("db", ["toy", "cvtoy"])
def test_negative_transfer_tables_equal_the_markdown(page, db):
    _, parsed = page
    tables = [t for t in parsed.tables if t.section == f"db-{db}" and t.kind == "negative-transfer"]
    expected = markdown_tables(render(build_tables(_completed(), "negative-transfer", [db]), "markdown"))
    assert len(tables) == len(expected) == 1
    _assert_same(tables[0], expected[0])
    assert "NT" in tables[0].headers and any(row[-3] == "yes" for row in tables[0].rows)
    assert all(m for m in tables[0].row_methods)  # the method filter reaches every row


@pytest.mark.parametrize("db", ["toy", "cvtoy"])
@pytest.mark.parametrize("layout", ["table2", "table3", "table4", "table5"])
def test_paper_layouts_equal_the_markdown(page, db, layout):
    _, parsed = page
    tables = [t for t in parsed.tables if t.section == f"db-{db}" and t.kind == layout]
    (expected,) = markdown_tables(render(build_tables(_completed(), layout, [db]), "markdown"))
    assert len(tables) == 1
    _assert_same(tables[0], expected)


def test_overview_compares_the_dbs_in_table5(page):
    _, parsed = page
    (table,) = [t for t in parsed.tables if t.section == "overview" and t.kind == "table5"]
    (expected,) = markdown_tables(render(build_tables(_completed(), "table5", ["cvtoy", "toy"]), "markdown"))
    _assert_same(table, expected)
    (counts,) = [t for t in parsed.tables if "runs-per-db" in t.classes]
    assert counts.rows[1][:4] == ["toy", str(len([r for r in _completed() if r.db == "toy"])), "1", "1"]


def test_value_cells_sort_by_their_mean(page):
    _, parsed = page
    (table,) = [t for t in parsed.tables if t.section == "db-toy" and t.kind == "negative-transfer"]
    column = table.headers.index("classes: accuracy")
    row = next(i for i, r in enumerate(table.rows) if r[0] == "no_coupling")
    assert float(table.sort_keys[row][column]) == pytest.approx(1.71 / 3)
    assert table.sort_keys[row][0] == "no_coupling"


def test_the_page_is_self_contained(page):
    text, parsed = page
    assert parsed.scripts_with_src == 0 and parsed.stylesheets == 0 and "<style>" in text and "<script>" in text
    assert all(h.startswith("#") for h in parsed.hrefs)  # nothing to fetch: only links within the page
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert parsed.images
    for image in parsed.images:
        src = image["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert image["alt"]


def test_figures_per_db(page):
    text, parsed = page
    alts = [i["alt"] for i in parsed.images]
    assert sum(a.startswith("Relative difference") and "on toy" in a for a in alts) == 1
    assert sum(a.startswith("Relative difference") and "on cvtoy" in a for a in alts) == 1
    curves = [a for a in alts if a.startswith("Training curves")]
    assert len(curves) == 2  # no_coupling, dmsca (domain): the toy runs with a history
    assert "toy: p(attribute | class), source domain" in alts
    assert "Relatedness heat map: its files are not here." in text  # cvtoy: why there is none
    assert {"no_coupling", "dmsca"} <= set(m for m in parsed.figure_methods if m)


def test_run_list_has_status_links_and_failure_cause(page):
    _, parsed = page
    (runs,) = [t for t in parsed.tables if t.section == "db-toy" and "runs" in t.classes.split()]
    assert len(runs.rows) == len([r for r in store_records() if r.db == "toy"])
    column = {h: i for i, h in enumerate(runs.headers)}
    failed = next(r for r in runs.rows if r[column["status"]] == "failed")
    assert failed[column["method"]] == "gradnorm" and failed[column["cause of failure"]] == ERROR
    assert any(r[column["status"]] == "running" for r in runs.rows)
    policy = next(r for r in toy_records() if r.method_options.get("phase") == "policy")
    retrain = next(r for r in toy_records() if r.method_options.get("phase") == "retrain")
    assert f"#run-{policy.run_id}" in parsed.hrefs and f"#run-{retrain.run_id}" in parsed.hrefs
    assert f"run-{policy.run_id}" in parsed.row_ids
    row = runs.rows[runs.row_methods.index("adashare")]
    assert row[column["links"]].startswith("policy_run")
    assert sorted(set(parsed.filter_values)) == sorted({r.method for r in store_records()})


def test_a_store_of_single_task_runs_only_has_no_paper_layout(tmp_path):
    only = [r for r in toy_records() if r.method == "single_task" and r.db == "toy"]
    parsed = parse_page(html_page(only))
    assert [t.kind for t in parsed.tables if t.kind] == ["negative-transfer"]
    assert not parsed.images


def test_report_command_writes_the_page(tmp_path, capsys):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        for run in store_records(histories=False):
            store.put(run)
    out = tmp_path / "site"
    assert main(["report", "--workdir", str(tmp_path), "--format", "html", "--out", str(out), "--quiet",
                 "--spread", "sem"]) == 0
    text = (out / "index.html").read_text()
    parsed = parse_page(text)
    md = markdown_tables(render(build_tables(_completed(), "negative-transfer", ["toy"],
                                             options=ReportOptions(spread="sem")), "markdown"))
    (table,) = [t for t in parsed.tables if t.section == "db-toy" and t.kind == "negative-transfer"]
    _assert_same(table, md[0])
    assert "wrote" in capsys.readouterr().err
    assert main(["report", "--workdir", str(tmp_path), "--format", "html", "--db", "toy", "--backbone", "none",
                 "--quiet"]) == 2  # nothing to show is an error that says so
    assert "no run of toy with backbone none" in capsys.readouterr().err
    assert main(["report", "--workdir", str(tmp_path), "--format", "html", "--db", "cvtoy", "--quiet"]) == 0
    assert (tmp_path / "report" / "index.html").is_file()  # default: WORKDIR/report/
