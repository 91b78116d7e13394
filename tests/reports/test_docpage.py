"""``python -m reports.docpage``: generated blocks of a Markdown page re-rendered from run exports, prose kept."""

from __future__ import annotations

import json

import pytest

from reports import build_tables, render
from reports.docpage import main, refresh
from tests.reports.report_store import toy_records

PAGE = """# Results

Prose that mentions `<!-- mtlbench: ... -->` markers is left alone.

<!-- mtlbench: table --runs {runs} --db toy -->
stale
<!-- /mtlbench -->

Between blocks.

<!-- mtlbench: runs --runs {runs} --db toy -->
<!-- /mtlbench -->

<!-- mtlbench: table --runs {missing} --db toy -->
<!-- /mtlbench -->
"""


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("toy.jsonl", "w") as f:
        for r in toy_records():
            f.write(json.dumps(r.to_json()) + "\n")
    path = tmp_path / "page.md"
    path.write_text(PAGE.format(runs="toy.jsonl", missing="not_yet.jsonl"))
    return path


def test_blocks_hold_the_report_of_their_command_and_prose_is_kept(page):
    assert main([str(page)]) == 0
    text = page.read_text()
    expected = render(build_tables([r for r in toy_records() if r.db == "toy"], "negative-transfer", ["toy"], None),
                      "markdown")
    assert expected.strip() in text
    assert "stale" not in text
    assert "Prose that mentions `<!-- mtlbench: ... -->` markers is left alone." in text
    assert "Between blocks." in text
    assert "| single_task |" in text and "h of training in all" in text  # the runs block
    assert "no completed run in not_yet.jsonl" in text


def test_check_says_stale_then_up_to_date(page, capsys):
    assert main([str(page), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert "stale" in page.read_text()  # --check writes nothing
    main([str(page)])
    assert main([str(page), "--check"]) == 0
    assert refresh(page.read_text()) == page.read_text()


def test_a_bad_marker_names_itself(tmp_path):
    with pytest.raises(ValueError, match="bad docpage marker"):
        refresh("<!-- mtlbench: table --nope -->\n<!-- /mtlbench -->\n")


def test_the_runs_block_gives_each_runs_chosen_epoch_of_the_epochs_it_trained():
    from reports.docpage import run_summary

    record = toy_records()[0]
    stopped = record.__class__(**{**record.__dict__, "best_epoch": 3,
                                  "history": [{"epoch": e} for e in range(10)],
                                  "config": {**record.config, "epochs": 30, "patience": 6}})
    table = run_summary([stopped])
    assert "| 30, 6 | 4/10 |" in table, table  # chose its 4th epoch, stopped after the 10th of at most 30


def test_the_losses_block_averages_each_term_at_the_first_and_the_chosen_epoch():
    from reports.docpage import loss_terms

    record = toy_records()[0]

    def run(run_id: str, best: int | None, history: list[dict]) -> object:
        return record.__class__(**{**record.__dict__, "run_id": run_id, "best_epoch": best, "history": history})

    a = run("a", 1, [{"epoch": 0, "train_loss": {"task": 2.0, "coupling/dm": 10.0}},
                     {"epoch": 1, "train_loss": {"task": 0.5, "coupling/dm": 4.0}},
                     {"epoch": 2, "train_loss": {"task": 0.1, "coupling/dm": 3.0}}])
    b = run("b", 0, [{"epoch": 0, "train_loss": {"task": 1.0, "coupling/dm": 6.0}}])
    lost = run("c", 5, [{"epoch": 0, "train_loss": {"task": 9.0}}])  # its chosen epoch is not in its history
    table = loss_terms([a, b, lost])
    line = next(row for row in table.splitlines() if row.startswith(f"| {record.method} |"))
    assert line.endswith("| 2 | coupling/dm 8.000 → 5.000; task 1.500 → 0.750 |"), line
    assert "1 runs without their chosen epoch in the history are left out" in table
    assert f"| {record.method} |" not in loss_terms([lost])  # no row for a group without a usable run


def test_runs_of_two_backbones_are_summarised_apart():
    from reports.docpage import loss_terms, run_summary

    record = toy_records()[0]
    runs = [record.__class__(**{**record.__dict__, "run_id": name, "backbone": name, "best_epoch": 0,
                                "history": [{"epoch": 0, "train_loss": {"task": value}}]})
            for name, value in (("resnet18", 1.0), ("smallcnn", 3.0))]
    table = loss_terms(runs)
    assert f"| {record.method} (resnet18) |" in table and "task 1.000 → 1.000" in table
    assert f"| {record.method} (smallcnn) |" in table and "task 3.000 → 3.000" in table
    assert f"| {record.method} (resnet18) |" in run_summary(runs) and f"| {record.method} |" in run_summary(runs[:1])


def test_a_versus_block_renders_the_versus_layout_against_its_baseline(tmp_path, monkeypatch):
    from reports.spec import Baseline
    from reports.table import ReportOptions

    monkeypatch.chdir(tmp_path)
    records = [r for r in toy_records() if r.db == "toy"]
    with open("toy.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r.to_json()) + "\n")
    page = "<!-- mtlbench: table --runs toy.jsonl --db toy --layout versus --versus no_coupling -->\n<!-- /mtlbench -->\n"
    expected = render(build_tables(records, "versus", ["toy"], None,
                                   ReportOptions(versus=Baseline.parse("no_coupling"))), "markdown")
    assert expected.strip() in refresh(page)
    assert "against no_coupling" in expected


@pytest.mark.parametrize("spec, message", [(":a=1", "expected METHOD"), ("dmsca:lambda_dm", "not of the form"),
                                           ("dmsca:=1", "not of the form")])
def test_a_malformed_versus_names_what_is_wrong(spec, message):
    from reports.spec import Baseline

    with pytest.raises(ValueError, match=message):
        Baseline.parse(spec)
    assert Baseline.parse("dmsca: lambda_dm = 1.0 ,").options == (("lambda_dm", "1.0"),)


def test_check_draws_no_figure_and_a_redrawn_figure_is_byte_for_byte_the_same(page, monkeypatch):
    """``--check`` writes nothing, figures included; an unchanged figure redrawn leaves its files as they were
    (the PDF carries no creation date), so re-rendering a page does not touch committed figures."""
    page.write_text(page.read_text() + "\n<!-- mtlbench: figure --runs toy.jsonl --db toy --out figs/toy -->\n"
                    "<!-- /mtlbench -->\n")
    assert main([str(page), "--check"]) == 1
    assert not (page.parent / "figs").exists()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # what matplotlib would stamp as the creation date
    assert main([str(page)]) == 0
    assert "![toy / " in page.read_text() and "(figs/toy.png)" in page.read_text()
    files = {p.name: p.read_bytes() for p in (page.parent / "figs").iterdir()}
    assert set(files) == {"toy.png", "toy.pdf"}
    assert main([str(page), "--check"]) == 0  # the link a check computes is the one the drawing wrote
    for p in (page.parent / "figs").iterdir():
        p.unlink()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")  # a day later
    assert main([str(page)]) == 0
    assert {p.name: p.read_bytes() for p in (page.parent / "figs").iterdir()} == files
