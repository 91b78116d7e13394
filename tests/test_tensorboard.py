"""TensorBoard logs: written live by ``run``/``sweep --tensorboard`` and exported from stored histories,
read back with TensorBoard's own event reader (EventAccumulator)."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from benchmark.cli import main  # noqa: E402
from benchmark.tensorboard import epoch_scalars  # noqa: E402
from results import ResultsStore  # noqa: E402
from tests.conftest import TINY_DB  # noqa: E402
from tests.test_experiment import TINY, write  # noqa: E402

DB_SET = [x for k, v in TINY_DB.items() for x in ("--db-set", f"{k}={v}")]


def read(folder) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """{tag: [(step, value)]} and the text tags of the event files in ``folder``."""
    events = EventAccumulator(str(folder))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    return scalars, events.Tags()["tensors"]


def run(workdir, *args: str) -> int:
    return main(["run", "--db", "synthetic", *DB_SET, "--epochs", "2", "--workdir", str(workdir), "--quiet", *args])


def test_a_training_run_logs_every_loss_term_and_metric(tmp_path):
    board = tmp_path / "tb"
    assert run(tmp_path, "--method", "dmsca", "--set", "relatedness=domain", "--tensorboard", str(board)) == 0
    (stored,) = ResultsStore(tmp_path / "results.sqlite").runs()
    assert [p.name for p in board.iterdir()] == [stored.run_id]  # one sub-folder per run id
    scalars, texts = read(board / stored.run_id)
    assert {"train_loss/classes", "train_loss/attributes", "train_loss/coupling/dm", "train_loss/coupling/sca",
            "val/classes/accuracy", "val/attributes/f1_mean", "val/score", "time/epoch_seconds"} <= set(scalars)
    assert "run/text_summary" in texts
    for entry in stored.history:  # the values the store holds, epoch by epoch
        for tag, value in epoch_scalars(entry).items():
            assert dict(scalars[tag])[entry["epoch"]] == pytest.approx(value, rel=1e-6)
    assert [step for step, _ in scalars["train_loss/coupling/dm"]] == [0, 1]
    # --tensorboard is not part of the run's identity: the same run without it is the stored one
    assert run(tmp_path, "--method", "dmsca", "--set", "relatedness=domain") == 0
    assert [r.run_id for r in ResultsStore(tmp_path / "results.sqlite").runs()] == [stored.run_id]


def test_gradient_methods_log_their_task_weights(tmp_path):
    board = tmp_path / "tb"
    assert run(tmp_path, "--method", "mgda_ub", "--tensorboard", str(board), "--epochs", "1") == 0
    (stored,) = ResultsStore(tmp_path / "results.sqlite").runs()
    scalars, _ = read(board / stored.run_id)
    weights = {tag: values for tag, values in scalars.items() if tag.startswith("task_weight/")}
    assert set(weights) == {"task_weight/classes", "task_weight/attributes"}
    assert all(0.0 <= v <= 1.0 for values in weights.values() for _, v in values)  # MGDA: convex weights


def test_weights_in_a_history_are_task_weights_not_losses():
    entry = {"epoch": 3, "train_loss": {"classes": 0.5, "weight/classes": 0.25, "distill/attributes": 0.1},
             "val": {"classes": {"accuracy": 0.7}}, "val_score": 0.7, "seconds": 1.5}
    assert epoch_scalars(entry) == {"train_loss/classes": 0.5, "task_weight/classes": 0.25,
                                    "train_loss/distill/attributes": 0.1, "val/classes/accuracy": 0.7,
                                    "val/score": 0.7, "time/epoch_seconds": 1.5}


def test_stored_runs_export_to_the_same_layout(tmp_path, capsys):
    assert run(tmp_path, "--method", "no_coupling", "--epochs", "1", "--tensorboard", str(tmp_path / "live")) == 0
    (stored,) = ResultsStore(tmp_path / "results.sqlite").runs()
    out = tmp_path / "exported"
    assert main(["tensorboard", "--workdir", str(tmp_path), "--out", str(out), "--quiet"]) == 0
    assert "wrote 1 runs" in capsys.readouterr().err
    live, _ = read(tmp_path / "live" / stored.run_id)
    exported, texts = read(out / stored.run_id)
    assert {t: v for t, v in exported.items() if not t.startswith("test/")} == live and "run/text_summary" in texts
    accuracy = next(m.value for m in stored.metrics if (m.split, m.task, m.metric) == ("test", "classes", "accuracy"))
    assert exported["test/classes/accuracy"] == [(stored.best_epoch, pytest.approx(accuracy))]
    assert main(["tensorboard", "--workdir", str(tmp_path), "--out", str(out), "--quiet"]) == 0
    assert "kept 1 already there" in capsys.readouterr().err
    assert main(["tensorboard", "--workdir", str(tmp_path), "--out", str(out), "--replace", "--quiet"]) == 0
    assert len(list((out / stored.run_id).glob("events.out.tfevents.*"))) == 1
    assert main(["tensorboard", "--workdir", str(tmp_path), "--out", str(out), "--db", "cad", "--quiet"]) == 2


def test_sweep_logs_each_run_in_its_folder(tmp_path):
    text = f'methods = ["no_coupling"]\nseeds = [0, 1]\n[preset]\nepochs = 1\n[[dbs]]\nname = "synthetic"\noptions = {TINY}\n'
    board = tmp_path / "tb"
    assert main(["sweep", str(write(tmp_path, text)), "--workdir", str(tmp_path / "w"), "--quiet",
                 "--tensorboard", str(board)]) == 0
    ids = sorted(r.run_id for r in ResultsStore(tmp_path / "w" / "results.sqlite").runs())
    assert sorted(p.name for p in board.iterdir()) == ids
    assert all("val/score" in read(board / i)[0] for i in ids)
