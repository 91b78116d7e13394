"""``dmsca`` and ``relatedness`` from the command line."""

from __future__ import annotations

from benchmark.cli import main
from results import ResultsStore
from tests.conftest import TINY_DB

DB_SET = [x for k, v in TINY_DB.items() for x in ("--db-set", f"{k}={v}")]


def test_relatedness_command_prints_and_writes_csv_and_png(tmp_path, capsys):
    assert main(["relatedness", "--db", "synthetic", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "source 'domain' (6 x 8)" in out and "| circle" in out
    assert (tmp_path / "relatedness_synthetic_domain.csv").read_text().startswith("class,red,striped")
    assert (tmp_path / "relatedness_synthetic_domain.png").stat().st_size > 5000


def test_empirical_relatedness_without_co_annotation_fails_before_storing(tmp_path, capsys):
    code = main(["run", "--method", "dmsca", "--db", "synthetic", *DB_SET, "--set", "relatedness=db",
                 "--epochs", "1", "--workdir", str(tmp_path), "--quiet"])
    assert code == 2
    assert "no co-annotated image" in capsys.readouterr().err
    assert ResultsStore(tmp_path / "results.sqlite").runs() == []


def test_dmsca_runs_with_a_csv_relatedness(tmp_path, capsys):
    assert main(["relatedness", "--db", "synthetic", *DB_SET, "--out", str(tmp_path)]) == 0
    csv = tmp_path / "relatedness_synthetic_domain.csv"
    assert main(["run", "--method", "dmsca", "--db", "synthetic", *DB_SET, "--set", f"relatedness={csv}",
                 "--set", "sca_temperature=0.5", "--epochs", "1", "--workdir", str(tmp_path), "--quiet"]) == 0
    (run,) = ResultsStore(tmp_path / "results.sqlite").runs()
    assert run.status == "completed" and run.method_options["relatedness"] == str(csv)
    losses = run.history[0]["train_loss"]
    assert {"classes", "attributes", "coupling/dm", "coupling/sca"} <= set(losses)


def test_auto_relatedness_is_stored_as_the_source_it_resolved_to(tmp_path):
    assert main(["run", "--method", "dm_only", "--db", "synthetic", *DB_SET, "--epochs", "1",
                 "--workdir", str(tmp_path), "--quiet"]) == 0
    (run,) = ResultsStore(tmp_path / "results.sqlite").runs()
    assert run.method_options["relatedness"] == "domain"
