"""``sweep --executor ray``: a 4-run grid (two teachers shipped to their student's task) on a local Ray, on CPU.

Ray starts in a few seconds and each worker imports torch, so this is the one Ray test.
"""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.experiment import load
from benchmark.grid import expand
from benchmark.linked import model_path
from results import ResultsStore
from tests.test_experiment import write
from tests.test_sweep import GRID

pytest.importorskip("ray", reason="the ray executor needs Ray (pip install -e '.[dev]')")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ray_trains_the_grid_and_only_the_driver_writes(tmp_path, capsys):
    path = write(tmp_path, GRID + "[resources]\ncpus = 1\n[execution]\nchannels_last = true\n")
    workdir, logs = tmp_path / "w", tmp_path / "tb"
    assert main(["sweep", str(path), "--executor", "ray", "--workdir", str(workdir), "--quiet",
                 "--tensorboard", str(logs)]) == 0
    assert "2 grid runs + 2 dependencies; 0 already done, 4 completed, 0 failed" in capsys.readouterr().out
    store = ResultsStore(workdir / "results.sqlite")
    runs = {r.run_id: r for r in store.runs()}
    planned = {r.cfg.run_id for r in expand(load(path))}
    assert planned < set(runs) and len(runs) == 4 and all(r.status == "completed" for r in runs.values())
    (student,) = [r for r in runs.values() if r.method == "student_teacher"]
    teachers = {r.method_options["task"]: r for r in runs.values() if r.method == "single_task"}
    assert set(student.linked_run_ids.values()) == {t.run_id for t in teachers.values()}
    # the links hold the teachers as the driver stored them: their records travelled with their weights
    assert {link["finished_at"] for link in student.links.values()} == {t.finished_at for t in teachers.values()}
    assert all(model_path(workdir, run_id).stat().st_size > 0 for run_id in runs)
    # the file's execution reached the workers; TensorBoard logs were written on the driver, one folder a run
    assert all(r.environment["execution"]["channels_last"] is True for r in runs.values())
    assert {p.name for p in logs.iterdir()} == set(runs)
    # nothing else in the work dir: the workers trained (and checkpointed) in scratch folders of their own
    left = {p.name for p in workdir.iterdir()}
    assert left <= {"models", "results.sqlite", "results.sqlite-wal", "results.sqlite-shm"}
