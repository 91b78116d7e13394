"""The committed reference results stay valid: their run identities, their method options and the page built on them.

A run's id is the hash of its whole config (``RunConfig.run_id``); ``sweep`` skips a cell whose id the store
holds, and ``import`` + ``sweep`` continues a grid from a committed export. A change that renames runs (a new
``RunConfig`` field without its old implicit value in ``LATER_FIELDS``, a new method option) would orphan every
committed result silently: the next sweep would retrain them all and the tables would mix two protocols. These
tests fail on such a change instead, and on a ``docs/results.md`` whose numbers no longer match the exports.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmark.config import RunConfig
from benchmark.options import resolve
from methods import METHODS
from reports.docpage import main as docpage
from results import RunRecord
from results.store import read_jsonl
from tests.conftest import REPO

EXPORTS = sorted((REPO / "results" / "reference").glob("*.jsonl"))


def records(path: Path) -> list[RunRecord]:
    with path.open() as lines:
        return read_jsonl(lines, str(path))


def test_there_are_reference_exports():
    assert {"cad.jsonl", "celeba.jsonl", "study_cad.jsonl"} <= {p.name for p in EXPORTS}


@pytest.mark.parametrize("path", EXPORTS, ids=[p.stem for p in EXPORTS])
def test_committed_runs_keep_their_identity(path: Path):
    runs = records(path)
    assert runs, f"{path.name} holds no run"
    for run in runs:
        cfg = RunConfig.from_dict(run.config)
        assert cfg.run_id == run.run_id, (
            f"{path.name}: run {run.run_id} ({cfg.describe()}) now hashes to {cfg.run_id}: a change to RunConfig "
            f"renamed the committed runs; give a new field its old implicit value in LATER_FIELDS")
        assert cfg.protocol_id == run.protocol_id


@pytest.mark.parametrize("path", EXPORTS, ids=[p.stem for p in EXPORTS])
def test_committed_runs_name_every_option_their_method_has(path: Path):
    """A method option added since would be filled with its default in a new request, so the same request would
    get another run id than the committed run: the sweep would train it again."""
    for run in records(path):
        added = sorted(set(resolve(METHODS.get(run.method), run.method_options)) - set(run.method_options))
        assert not added, (f"{path.name}: {run.method} has gained {added} since run {run.run_id} was stored; the "
                           f"same request now gets another run id (keep the run ids: see docs/plugins.md)")


@pytest.mark.parametrize("path", EXPORTS, ids=[p.stem for p in EXPORTS])
def test_completed_runs_carry_finite_test_metrics_for_every_task(path: Path):
    for run in records(path):
        if run.status != "completed":
            continue
        tasks = {m.task for m in run.metrics if m.split == "test"}
        assert tasks, f"{path.name}: run {run.run_id} has no test metric"
        assert all(math.isfinite(m.value) for m in run.metrics), f"{path.name}: run {run.run_id}"


def test_the_results_page_matches_the_exports(monkeypatch, capsys):
    """The generated tables of ``docs/results.md`` and README's headline are what the committed exports render to."""
    monkeypatch.chdir(REPO)
    assert docpage(["docs/results.md", "README.md", "--check"]) == 0, capsys.readouterr().err
