"""Resumable runs: a run interrupted after an epoch and resumed ends bit for bit as an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch

from benchmark.checkpoint import checkpoint_path, save_checkpoint
from benchmark.linked import model_path
from benchmark.options import resolve
from benchmark.runner import RunRequest, execute, resolve_configs
from datasets.synthetic import SyntheticDb
from methods import METHODS
from results import ResultsStore
from tests.conftest import REPO, TINY_DB, tiny_config

CPU = torch.device("cpu")


def _config(name: str, db: SyntheticDb, epochs: int = 3):
    cls = METHODS.get(name)
    return tiny_config(name, cls.expand(resolve(cls, {}), db.problem())[0], epochs=epochs, db_options=db.options())


def _outcome(workdir: Path, run_id: str) -> tuple:
    """What must not depend on an interruption: status, metrics, per-epoch history (but its timings), weights."""
    with ResultsStore(workdir / "results.sqlite") as store:
        record = store.get(run_id)
    assert record is not None
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in record.history]
    weights = torch.load(model_path(workdir, run_id), weights_only=True)["model"]
    return record.status, record.best_epoch, record.metric_values(), history, {k: v.tolist() for k, v in weights.items()}


def _interrupt_after_first_checkpoint():
    """Patch the loop's checkpoint writer: write the first checkpoint, then raise KeyboardInterrupt (Ctrl-C)."""
    def write_then_interrupt(*args, **kwargs):
        save_checkpoint(*args, **kwargs)
        raise KeyboardInterrupt

    return mock.patch("benchmark.train.save_checkpoint", side_effect=write_then_interrupt)


#: The method zoo's stateful ones too: Nash-MTL's warm start, PCGrad's and RLW's seeded draws, UW's learnt
#: variances, DWA's epoch means (3 epochs: epoch 2 uses them), FAMO's logits and their Adam state.
RESUMED = ["no_coupling", "gradnorm", "mgda_ub", "task_routing", "dmsca",
           "upgrad", "pcgrad", "nash_mtl", "uw", "dwa", "rlw", "famo"]


@pytest.mark.parametrize("name", RESUMED)
def test_an_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(name, tmp_path):
    db = SyntheticDb(**TINY_DB)
    cfg = _config(name, db)
    with ResultsStore(tmp_path / "whole" / "results.sqlite") as store:
        execute(cfg, db, store, CPU, progress=False)
    resumed = tmp_path / "resumed"
    with ResultsStore(resumed / "results.sqlite") as store:
        with _interrupt_after_first_checkpoint(), pytest.raises(KeyboardInterrupt):
            execute(cfg, db, store, CPU, progress=False)
        assert store.get(cfg.run_id).status == "failed"  # Ctrl-C: failed, with its checkpoint of epoch 0
        assert torch.load(checkpoint_path(resumed, cfg.run_id), weights_only=True)["progress"]["epoch"] == 1
        record = execute(cfg, db, store, CPU, progress=False, resume=True)
    assert record.environment["execution"]["resumed"] is True
    assert _outcome(resumed, cfg.run_id) == _outcome(tmp_path / "whole", cfg.run_id)
    assert not checkpoint_path(resumed, cfg.run_id).exists(), "a completed run's temporary checkpoint is deleted"


def test_checkpoint_policies_and_starting_over(tmp_path, caplog):
    db = SyntheticDb(**TINY_DB)
    cfg = _config("no_coupling", db, epochs=2)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        execute(cfg, db, store, CPU, progress=False, checkpoints="off")
        assert not (tmp_path / "checkpoints").exists()
        execute(cfg, db, store, CPU, progress=False, checkpoints="keep", force=True)
        saved = torch.load(checkpoint_path(tmp_path, cfg.run_id), weights_only=True)
        assert saved["run_id"] == cfg.run_id and saved["progress"]["epoch"] == 2 and len(saved["progress"]["history"]) == 2
        first = _outcome(tmp_path, cfg.run_id)
        with caplog.at_level("INFO"):  # a checkpoint without --resume: trained from the start, same result
            execute(cfg, db, store, CPU, progress=False, force=True)
        assert "starting over" in caplog.text and _outcome(tmp_path, cfg.run_id) == first


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    db = SyntheticDb(**TINY_DB)
    cfg, other = _config("no_coupling", db, epochs=1), _config("no_coupling", db, epochs=2)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        execute(cfg, db, store, CPU, progress=False, checkpoints="keep")
        target = checkpoint_path(tmp_path, other.run_id)
        checkpoint_path(tmp_path, cfg.run_id).rename(target)
        with pytest.raises(ValueError, match=f"not of run {other.run_id}.*delete it"):
            execute(other, db, store, CPU, progress=False, resume=True)


@pytest.mark.slow
def test_a_killed_cli_run_resumes_with_resume(tmp_path):
    """SIGKILL once the first checkpoint exists (the store says ``running``); ``run --resume`` finishes it."""
    db_set = {"n_train": 400, "n_val": 40, "n_test": 40, "image_size": 16, "ratio": "1:3"}
    work = tmp_path / "killed"
    command = [sys.executable, "-m", "benchmark", "run", "--method", "no_coupling", "--db", "synthetic", "--epochs", "4",
               "--batch-size", "32", "--device", "cpu", "--workdir", str(work), "--quiet",
               *(f"--db-set={k}={v}" for k, v in db_set.items())]
    db, (cfg,) = resolve_configs(RunRequest("no_coupling", "synthetic", epochs=4, batch_size=32,
                                            db_set=[f"{k}={v}" for k, v in db_set.items()]))
    checkpoint = checkpoint_path(work, cfg.run_id)
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stderr.read().decode()
    with ResultsStore(work / "results.sqlite") as store:
        assert store.get(cfg.run_id).status == "running"  # killed: nothing could mark it failed
    subprocess.run(command + ["--resume"], cwd=REPO, check=True, capture_output=True)
    with ResultsStore(tmp_path / "whole" / "results.sqlite") as store:
        execute(cfg, db, store, CPU, progress=False)
    assert _outcome(work, cfg.run_id) == _outcome(tmp_path / "whole", cfg.run_id)


def test_a_channels_last_run_resumes_bit_for_bit(tmp_path):
    """The CPU reference grids run channels-last ([execution] in their experiment files): a resumed run must
    still end as an uninterrupted one (the checkpoint's weights and Adam state go back into a channels-last
    network)."""
    from benchmark.train import TrainOptions

    fast = TrainOptions(channels_last=True)
    db = SyntheticDb(**TINY_DB)
    cfg = _config("dmsca", db)
    with ResultsStore(tmp_path / "whole" / "results.sqlite") as store:
        execute(cfg, db, store, CPU, progress=False, options=fast)
    resumed = tmp_path / "resumed"
    with ResultsStore(resumed / "results.sqlite") as store:
        with _interrupt_after_first_checkpoint(), pytest.raises(KeyboardInterrupt):
            execute(cfg, db, store, CPU, progress=False, options=fast)
        record = execute(cfg, db, store, CPU, progress=False, resume=True, options=fast)
    assert record.environment["execution"]["channels_last"] is True and "earlier" not in record.environment["execution"]
    assert _outcome(resumed, cfg.run_id) == _outcome(tmp_path / "whole", cfg.run_id)


def test_a_run_resumed_in_another_memory_format_says_so(tmp_path, caplog):
    from benchmark.train import TrainOptions

    db = SyntheticDb(**TINY_DB)
    cfg = _config("no_coupling", db, epochs=2)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        with _interrupt_after_first_checkpoint(), pytest.raises(KeyboardInterrupt):
            execute(cfg, db, store, CPU, progress=False, workdir=tmp_path)
        record = execute(cfg, db, store, CPU, progress=False, workdir=tmp_path, resume=True,
                         options=TrainOptions(channels_last=True))
    run = record.environment["execution"]
    assert run["channels_last"] is True and run["resumed"] is True and run["earlier"] == {"channels_last": False}
    assert "ran in two memory formats" in caplog.text
