"""``sweep``: dependencies first and once, skip-if-done, --force, failures stored while the rest runs, --jobs."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future

import pytest
import torch

from benchmark import runner, sweep_backends
from benchmark.checkpoint import checkpoint_path
from benchmark.cli import main
from benchmark.experiment import ExperimentError, load
from benchmark.grid import expand
from benchmark.linked import model_path
from benchmark.run_graph import RunGraph
from benchmark.runner import execute
from benchmark.sweep import DONE, RESUME, RUN, Node, Outcome, Plan, Progress, build_plan, run_plan
from benchmark.train import train
from results import ResultsStore
from tests.conftest import TINY_DB, tiny_config
from tests.test_experiment import TINY, write

# The student-teacher needs two single_task teachers: 2 grid runs + 2 dependencies = 4 runs.
GRID = f"""
methods = ["student_teacher", "no_coupling"]
[preset]
epochs = 1
[[dbs]]
name = "synthetic"
options = {TINY}
"""


@pytest.fixture
def trained(monkeypatch) -> list[str]:
    """``method[task]`` of every run the runner trains in this process, in order."""
    calls: list[str] = []

    def counting(cfg, *args, **kwargs):
        calls.append(cfg.method + (f"[{cfg.method_options['task']}]" if cfg.method == "single_task" else ""))
        return train(cfg, *args, **kwargs)

    monkeypatch.setattr(runner, "train", counting)
    return calls


def sweep(tmp_path, *args: str, text: str = GRID) -> int:
    return main(["sweep", str(write(tmp_path, text)), "--workdir", str(tmp_path / "w"), "--quiet", *args])


def test_dependencies_first_once_then_skipped_then_forced(tmp_path, trained, capsys):
    assert sweep(tmp_path) == 0
    assert trained == ["single_task[classes]", "single_task[attributes]", "student_teacher", "no_coupling"]
    out = capsys.readouterr().out
    assert "2 grid runs + 2 dependencies; 0 already done, 4 completed, 0 failed" in out
    store = ResultsStore(tmp_path / "w" / "results.sqlite")
    (student,) = store.runs(method="student_teacher")
    teachers = {r.run_id for r in store.runs(method="single_task")}
    assert set(student.linked_run_ids.values()) == teachers and all(r.status == "completed" for r in store.runs())
    assert all(model_path(tmp_path / "w", r.run_id).is_file() for r in store.runs())

    assert sweep(tmp_path) == 0  # everything is done: nothing trains
    assert len(trained) == 4 and "4 already done, 0 completed" in capsys.readouterr().out
    assert sweep(tmp_path, "--force") == 0  # the grid's runs again, never the dependencies outside it
    assert trained[4:] == ["student_teacher", "no_coupling"]


def test_a_run_in_the_grid_and_needed_as_a_dependency_trains_once(tmp_path, trained):
    text = GRID.replace('["student_teacher", "no_coupling"]', '["student_teacher", "single_task", '
                        '{ name = "student_teacher", options = { pseudo_weight = 0.5 } }]')
    assert sweep(tmp_path, "--force", text=text) == 0
    assert trained == ["single_task[classes]", "single_task[attributes]", "student_teacher", "student_teacher"]


def test_a_failed_run_is_stored_its_dependants_wait_and_the_rest_goes_on(tmp_path, monkeypatch, capsys):
    def failing(cfg, *args, **kwargs):
        if cfg.method_options.get("task") == "classes":
            raise FloatingPointError("loss 'classes' is nan at epoch 0, step 0")
        return train(cfg, *args, **kwargs)

    monkeypatch.setattr(runner, "train", failing)
    assert sweep(tmp_path) == 1
    out = capsys.readouterr().out
    assert "2 completed, 1 failed, 1 not started" in out and "FAILED" in out and "NOT RUN" in out
    store = ResultsStore(tmp_path / "w" / "results.sqlite")
    status = {(r.method, r.method_options.get("task")): (r.status, r.cause) for r in store.runs()}  # the traceback follows
    assert status[("single_task", "classes")] == (
        "failed", "FloatingPointError: loss 'classes' is nan at epoch 0, step 0")
    assert status[("no_coupling", None)][0] == "completed" and ("student_teacher", None) not in status
    # the other teacher trains although its student will not: it is a result of its own
    assert status[("single_task", "attributes")][0] == "completed"


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, trained, capsys):
    assert sweep(tmp_path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert trained == [] and not (tmp_path / "w").exists()  # no store is made either
    assert "2 grid runs + 2 dependencies; 0 done, 4 to run" in out
    rows = [line for line in out.splitlines() if line.startswith("|") and "run_id" not in line and "---" not in line]
    assert [r.split("|")[3].strip() for r in rows] == ["dependency", "dependency", "grid", "grid"]
    assert "single_task [task=classes]" in rows[0] and rows[2].split("|")[-2].split() == [
        rows[0].split("|")[4].strip(), rows[1].split("|")[4].strip()]  # the student needs both teachers
    assert sweep(tmp_path) == 0
    assert sweep(tmp_path, "--dry-run") == 0 and "4 done, 0 to run" in capsys.readouterr().out


def test_unfinished_runs_are_resumed_and_missing_weights_stop_the_plan(tmp_path, monkeypatch):
    path = write(tmp_path, GRID)
    grid = expand(load(path))
    assert [n.action for n in build_plan(path, grid, None, tmp_path, force=False).nodes] == [RUN] * 4
    assert sweep(tmp_path) == 0
    store = ResultsStore(tmp_path / "w" / "results.sqlite")
    (student_run,) = [r for r in grid if r.cfg.method == "student_teacher"]
    # train it again keeping its checkpoint, then leave it as Ctrl-C after the last epoch would
    execute(student_run.cfg, student_run.db.open(), store, torch.device("cpu"), force=True, progress=False,
            workdir=tmp_path / "w", checkpoints="keep")
    assert checkpoint_path(tmp_path / "w", student_run.cfg.run_id).is_file()
    teacher, student = store.runs(method="single_task")[0], store.runs(method="student_teacher")[0]
    store.delete(student.run_id)
    student.status, student.error = "failed", "interrupted"
    store.put(student)
    plan = build_plan(path, grid, store, tmp_path / "w", force=False)
    assert [n.action for n in plan.nodes if n.run_id == student.run_id] == [RESUME]
    assert sum(n.action == DONE for n in plan.nodes) == 3
    calls = []

    def recording(cfg, *args, **kwargs):
        calls.append((cfg.method, kwargs["resume"], kwargs["force"]))
        return execute(cfg, *args, **kwargs)

    monkeypatch.setattr(sweep_backends, "execute", recording)
    assert sweep(tmp_path) == 0 and calls == [("student_teacher", True, False)]
    resumed = store.get(student.run_id)
    assert resumed.status == "completed" and resumed.environment["execution"]["resumed"] is True
    model_path(tmp_path / "w", teacher.run_id).unlink()
    with pytest.raises(ExperimentError, match=f"run {teacher.run_id} .*{teacher.run_id}.pt is missing"):
        build_plan(path, grid, store, tmp_path / "w", force=True)  # the student again, on that teacher


class FakeBackend:
    """Finishes the oldest run in flight at each submit (the run named ``fails`` fails); records what ran with what."""

    def __init__(self, slots: int, fails: str) -> None:
        self.slots, self.fails, self.pending, self.most, self.order = slots, fails, {}, 0, []

    def submit(self, node, closure):
        future: Future = Future()
        self.pending[node.run_id] = future
        self.most = max(self.most, len(self.pending))
        self.order.append((node.run_id, [n.run_id for n in closure]))
        oldest = next(iter(self.pending))
        self.pending.pop(oldest).set_result(Outcome(ok=oldest != self.fails, error="boom"))
        return future

    def finish(self, node, future):
        return future.result()

    def close(self):
        pass


def test_the_scheduler_keeps_to_its_slots_and_never_starts_a_run_before_its_dependencies():
    cfgs = {name: tiny_config("no_coupling", seed=i) for i, name in enumerate("abcdef")}
    ids = {name: cfg.run_id for name, cfg in cfgs.items()}
    needs = {"a": [], "b": [], "c": ["a"], "d": ["b"], "e": ["d"], "f": []}  # b fails: d and e must not start
    by_id = {v: k for k, v in ids.items()}
    graph = RunGraph(lambda cfg, _: {f"on:{d}": cfgs[d] for d in needs[by_id[cfg.run_id]]})  # faked declarations
    for cfg in cfgs.values():
        graph.add(cfg, None)  # type: ignore[arg-type]  # the fake needs no problem
    nodes = [Node(cfg, None, ["grid"], graph.needs(cfg.run_id), RUN) for cfg in graph.order()]
    backend = FakeBackend(slots=2, fails=ids["b"])
    summary = run_plan(Plan("grid.toml", nodes, graph), backend, Progress(6, enabled=False))
    name = {v: k for k, v in ids.items()}
    started = [name[run_id] for run_id, _ in backend.order]
    assert backend.most <= 2 and started == ["a", "b", "c", "f"]
    assert dict(backend.order)[ids["c"]] == [ids["a"]]  # the closure handed to the backend
    assert [name[n.run_id] for n, _ in summary.failed] == ["b"]
    assert [(name[n.run_id], name[dep]) for n, dep in summary.blocked] == [("d", "b"), ("e", "d")]
    assert sorted(name[n.run_id] for n in summary.completed) == ["a", "c", "f"]


@pytest.mark.slow
def test_jobs_train_in_worker_processes_that_write_the_store(tmp_path):
    assert sweep(tmp_path, "--jobs", "2") == 0
    store = ResultsStore(tmp_path / "w" / "results.sqlite")
    runs = {r.method + str(r.method_options.get("task", "")): r for r in store.runs()}
    assert len(runs) == 4 and all(r.status == "completed" for r in runs.values())
    threads = max(1, (os.cpu_count() or 1) // 2)  # each worker has its share of the cores, not all of them
    assert all(f"x{threads} threads" in r.environment["device"] for r in runs.values())
    student = runs["student_teacher"]
    assert all(runs[f"single_task{t}"].finished_at <= student.started_at for t in ("classes", "attributes"))
    teachers = {runs["single_taskclasses"].run_id, runs["single_taskattributes"].run_id}
    assert set(student.linked_run_ids.values()) == teachers
    assert {r.config["db_options"]["n_train"] for r in runs.values()} == {TINY_DB["n_train"]}


def test_adashare_retrainings_share_their_policy_search_which_is_planned_first(tmp_path):
    text = GRID.replace('["student_teacher", "no_coupling"]', '["adashare", { name = "adashare", options = '
                        '{ sample_seed = 1 } }]\nbackbones = ["resnet18"]')
    path = write(tmp_path, text)
    plan = build_plan(path, expand(load(path)), None, tmp_path, force=False)
    (search,) = [n for n in plan.nodes if n.cfg.method_options["phase"] == "search"]
    retrainings = [n for n in plan.nodes if n.cfg.method_options["phase"] == "retrain"]
    assert plan.nodes[0] is search and not search.in_grid  # a dependency, trained once, first
    assert len(retrainings) == 2 and all(n.needs == [search.run_id] for n in retrainings)


@pytest.mark.parametrize("table, flag, expected", [("", (), False), ("[execution]\nchannels_last = true\n", (), True),
                                                   ("", ("--channels-last",), True),
                                                   ("[execution]\nchannels_last = true\n", ("--no-channels-last",), False)],
                         ids=["default", "file", "flag", "flag-over-file"])
def test_execution_channels_last_from_the_file_or_the_flag_reaches_every_run_but_not_its_id(
        tmp_path, monkeypatch, table, flag, expected):
    seen = []

    def recording(cfg, *args, options, **kwargs):
        seen.append(options.channels_last)
        return train(cfg, *args, options=options, **kwargs)

    monkeypatch.setattr(runner, "train", recording)
    text = GRID.replace('methods = ["student_teacher", "no_coupling"]', 'methods = ["no_coupling"]') + table
    assert sweep(tmp_path, *flag, text=text) == 0
    (run,) = ResultsStore(tmp_path / "w" / "results.sqlite").runs()
    assert seen == [expected] and run.environment["execution"]["channels_last"] is expected
    plain = expand(load(write(tmp_path, GRID.replace('["student_teacher", "no_coupling"]', '["no_coupling"]'))))
    assert run.run_id == plain[0].cfg.run_id  # how a run executes is not what it is


@pytest.mark.parametrize("text, message", [(GRID + "[execution]\nchannels_last = 1\n", "channels_last must be true or false"),
                                           (GRID + "[execution]\nchannel_last = true\n", "unknown key 'channel_last'"),
                                           ("execution = 3\n" + GRID, "must be a table"),
                                           (GRID + "[resources]\ncpus = -1\n", "cpus must be a number >= 0"),
                                           (GRID + "[resources]\ngpus = true\n", "gpus must be a number >= 0")])
def test_a_bad_execution_or_resources_table_names_the_key_and_the_fix(tmp_path, text, message):
    with pytest.raises(ExperimentError, match=message):
        load(write(tmp_path, text))


TWO_BACKBONES = f"""
methods = ["no_coupling", "dmsca"]
[preset]
epochs = 1
[[dbs]]
name = "synthetic"
options = {TINY}
[[backbones]]
name = "smallcnn"
[[backbones]]
name = "resnet18"
"""


@pytest.mark.parametrize("args, expected", [
    ([], {("no_coupling", "smallcnn"), ("dmsca", "smallcnn"), ("no_coupling", "resnet18"), ("dmsca", "resnet18")}),
    (["--methods", "dmsca"], {("dmsca", "smallcnn"), ("dmsca", "resnet18")}),
    (["--backbones", "resnet18"], {("no_coupling", "resnet18"), ("dmsca", "resnet18")}),
    (["--methods", "no_coupling", "--backbones", "smallcnn"], {("no_coupling", "smallcnn")}),
])
def test_methods_and_backbones_restrict_the_grid_to_those_entries(tmp_path, capsys, args, expected):
    """``--methods`` / ``--backbones`` keep only the file's entries of those names (run ids unchanged)."""
    assert sweep(tmp_path, "--dry-run", *args, text=TWO_BACKBONES) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if "| grid " in line]
    assert {(r[5].strip().split(" ")[0], r[7].strip()) for r in rows} == expected


@pytest.mark.parametrize("flag, message", [
    ("--methods", "--methods mgda_ub: no such method entry in the file (its methods: no_coupling, dmsca)"),
    ("--backbones", "--backbones vgg16: no such backbone entry in the file (its backbones: smallcnn, resnet18)"),
])
def test_an_entry_not_in_the_file_is_an_error_naming_the_files_entries(tmp_path, capsys, flag, message):
    name = "mgda_ub" if flag == "--methods" else "vgg16"
    assert sweep(tmp_path, "--dry-run", flag, name, text=TWO_BACKBONES) != 0
    assert message in capsys.readouterr().err


def test_retrain_missing_weights_trains_the_teacher_again_and_reproduces_it(tmp_path, monkeypatch, capsys):
    """A store imported from an export has runs but no weights: the sweep names them and stops, or with
    --retrain-missing-weights trains them again under the same run id, to the same numbers on this machine."""
    assert sweep(tmp_path) == 0
    store = ResultsStore(tmp_path / "w" / "results.sqlite")
    teachers = {r.run_id: r for r in store.runs(method="single_task")}
    (student,) = store.runs(method="student_teacher")
    lost = next(iter(teachers))
    model_path(tmp_path / "w", lost).unlink()
    assert sweep(tmp_path) == 0  # nothing to train: a completed run needs no weights of its teachers
    capsys.readouterr()
    assert sweep(tmp_path, "--force", "--methods", "student_teacher") == 2
    err = capsys.readouterr().err
    assert f"run {lost} (" in err and "sweep again with --retrain-missing-weights" in err
    assert sweep(tmp_path, "--dry-run", "--force", "--methods", "student_teacher", "--retrain-missing-weights") == 0
    table = capsys.readouterr().out
    states = {line.split("|")[4].strip(): line.split("|")[2].strip() for line in table.splitlines()
              if line.count("|") > 5}
    assert states[lost] == "to retrain (weights missing)" and states[student.run_id] == "to run"
    assert [state for run_id, state in states.items() if run_id in teachers and run_id != lost] == ["done"]
    calls = []

    def recording(cfg, *args, **kwargs):
        calls.append((cfg.run_id, kwargs["force"]))
        return execute(cfg, *args, **kwargs)

    monkeypatch.setattr(sweep_backends, "execute", recording)
    capsys.readouterr()
    assert sweep(tmp_path, "--force", "--methods", "student_teacher", "--retrain-missing-weights") == 0
    assert calls == [(lost, True), (student.run_id, True)]  # the other teacher kept its weights and is not retrained
    assert f"retrained {lost} (single_task" in (out := capsys.readouterr().out)
    assert "test metrics identical to the record it replaced" in out
    assert model_path(tmp_path / "w", lost).is_file()
    again = store.get(lost)
    assert again.wall_time_s != teachers[lost].wall_time_s  # a new record (timestamps have one-second steps)
    assert again.metrics == teachers[lost].metrics and again.best_epoch == teachers[lost].best_epoch


def test_each_backend_forces_exactly_the_grid_runs_under_force_and_the_retrained_ones():
    cfg = tiny_config("no_coupling")
    grid, dep, retrained = (Node(cfg, None, ["grid"], []), Node(cfg, None, [], []),
                            Node(cfg, None, [], [], RUN, retrain=True))
    assert [n.forced(False) for n in (grid, dep, retrained)] == [False, False, True]
    assert [n.forced(True) for n in (grid, dep, retrained)] == [True, False, True]

    class Pool:
        def __init__(self):
            self.jobs = []

        def submit(self, fn, job):
            self.jobs.append(job)
            return Future()

    backend = sweep_backends.ProcessBackend.__new__(sweep_backends.ProcessBackend)
    backend.workdir, backend.device, backend.force, backend.options = "w", "cpu", False, None
    backend.pool = Pool()
    for node in (grid, dep, retrained):
        backend.submit(node, [])
    assert [job.force for job in backend.pool.jobs] == [False, False, True]


def test_the_summary_says_how_far_a_retrained_run_moved_from_the_record_it_replaced():
    from benchmark.sweep import retrain_comparison
    from tests.reports.report_store import record

    old = record("single_task", 0, {"classes": (.50, .40)}, options={"task": "classes"})
    moved = dataclasses.replace(record("single_task", 0, {"classes": (.52, .40)}, options={"task": "classes"}),
                                run_id=old.run_id, best_epoch=3)
    node = Node(tiny_config("single_task", {"task": "classes"}), None, [], [], RUN, retrain=True, replaced=old)
    untouched = Node(tiny_config("no_coupling"), None, ["grid"], [], RUN)

    class Store:
        def __init__(self, new):
            self.new = new

        def get(self, run_id):
            return self.new

    plan = Plan("grid.toml", [node, untouched], RunGraph(lambda *a: {}))
    (line,) = retrain_comparison(plan, Store(moved))
    assert "test metrics differ from the record it replaced, most in classes accuracy (0.5000 -> 0.5200)" in line
    assert line.endswith(f"best epoch {old.best_epoch} -> 3")
    (same,) = retrain_comparison(plan, Store(old))
    assert "test metrics identical to the record it replaced" in same
    assert retrain_comparison(plan, Store(dataclasses.replace(moved, status="failed"))) == []
