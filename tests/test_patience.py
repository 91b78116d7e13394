"""Early stopping (``--patience``, a preset key of experiment files): when it stops, what it keeps, its identity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import benchmark.checkpoint
from benchmark.checkpoint import checkpoint_path, load_checkpoint
from benchmark.config import RunConfig
from benchmark.experiment import ExperimentError, load
from benchmark.protocol import ProtocolError
from benchmark.runner import RunRequest, execute, resolve_configs
from benchmark.train import train
from datasets.synthetic import SyntheticDb
from methods import METHODS
from results import ResultsStore
from tests.conftest import TINY_DB, tiny_config

CPU = torch.device("cpu")


def _scores(values: list[float]) -> Callable[[Any, Any], float]:
    """A stand-in for the validation score: ``values`` epoch by epoch (so the best epoch is known)."""
    it: Iterator[float] = iter(values)
    return lambda val, problem: next(it)


def _train(db: SyntheticDb, epochs: int, patience: int | None):
    cfg = tiny_config("no_coupling", epochs=epochs, patience=patience, db_options=db.options())
    return train(cfg, db, METHODS.get("no_coupling")(), CPU, progress=False)


def test_training_stops_patience_epochs_after_the_best_and_keeps_the_best(tiny_db, monkeypatch) -> None:
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores([0.0, 1.0, 0.5, 0.2, 0.9, 0.8]))
    result = _train(tiny_db, epochs=6, patience=2)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3], "epochs 2 and 3 are the two without a better score"
    assert result.best_epoch == 1


def test_a_better_score_resets_the_count(tiny_db, monkeypatch) -> None:
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores([0.0, 1.0, 0.5, 1.5, 0.2, 0.1]))
    result = _train(tiny_db, epochs=6, patience=2)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3, 4, 5] and result.best_epoch == 3


def test_stopping_early_gives_the_result_of_training_every_epoch(tiny_db, monkeypatch) -> None:
    """When validation peaks ``patience`` epochs before the end, the chosen epoch and the test metrics are equal."""
    scores = [0.0, 1.0, 0.5, 0.2]
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores(scores))
    full = _train(tiny_db, epochs=4, patience=None)
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores(scores))
    stopped = _train(tiny_db, epochs=4, patience=1)
    assert len(full.history) == 4 and len(stopped.history) == 3
    assert stopped.best_epoch == full.best_epoch == 1
    assert stopped.test == full.test and stopped.val == full.val


def test_a_resumed_run_that_had_stopped_trains_no_further(tiny_db, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(benchmark.checkpoint, "selection_score", _scores([1.0, 0.0, 0.0]))
    cfg = tiny_config("no_coupling", epochs=5, patience=1, db_options=tiny_db.options())
    with ResultsStore(tmp_path / "results.sqlite") as store:
        record = execute(cfg, tiny_db, store, CPU, progress=False, checkpoints="keep")
    assert len(record.history) == 2
    saved = torch.load(checkpoint_path(tmp_path, cfg.run_id), weights_only=True)
    assert saved["progress"]["epoch"] == 2
    with ResultsStore(tmp_path / "results.sqlite") as store:  # resumed from that checkpoint: no epoch trained
        again = execute(cfg, tiny_db, store, CPU, progress=False, resume=True, force=True)
    assert len(again.history) == 2 and again.best_epoch == 0
    assert again.metric_values() == record.metric_values()


def test_patience_is_part_of_the_identity_and_absent_means_earlier_ids() -> None:
    plain = tiny_config("no_coupling")
    assert "patience" not in plain.to_dict(), "runs stored before --patience existed keep their ids"
    assert RunConfig.from_dict(plain.to_dict()) == plain
    stopping = tiny_config("no_coupling", patience=3)
    assert stopping.to_dict()["patience"] == 3 and stopping.run_id != plain.run_id
    assert stopping.protocol_id != plain.protocol_id, "a different stopping rule is a different protocol"
    assert RunConfig.from_dict(stopping.to_dict()) == stopping


@pytest.mark.parametrize("patience", [0, -1, 5, 2.5, True])
def test_a_patience_out_of_range_is_refused_before_anything_runs(patience) -> None:
    with pytest.raises(ProtocolError, match="--patience"):
        resolve_configs(RunRequest(method="no_coupling", db="synthetic", epochs=5, patience=patience,
                                   db_set=[f"{k}={v}" for k, v in TINY_DB.items()]))


def test_the_cli_and_experiment_files_pass_patience_on(tmp_path) -> None:
    from benchmark.cli import build_parser

    args = build_parser().parse_args(["run", "--method", "no_coupling", "--db", "synthetic", "--patience", "4"])
    assert args.patience == 4
    entries = '[[methods]]\nname = "no_coupling"\n[[dbs]]\nname = "synthetic"\n'
    (tmp_path / "good.toml").write_text('seeds = [0]\n[preset]\nepochs = 6\npatience = 2\n' + entries)
    assert load(tmp_path / "good.toml").preset["patience"] == 2
    (tmp_path / "bad.toml").write_text('[preset]\npatience = 0\n' + entries)
    with pytest.raises(ExperimentError, match="patience must be a positive int"):
        load(tmp_path / "bad.toml")
