"""The run graph of linked runs: order, roles, shared dependencies once, cycles refused, one graph for every caller."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from benchmark.bench import untrained_links
from benchmark.config import RunConfig
from benchmark.experiment import ExperimentError, load
from benchmark.grid import expand
from benchmark.linked import load_linked, train_dependencies
from benchmark.options import resolve
from benchmark.run_graph import DependencyCycleError, RunGraph, dependency_configs, run_graph
from benchmark.runner import execute
from benchmark.sweep import build_plan
from benchmark.tasks import Problem
from methods import METHODS, Dependency, Method
from methods.adashare import POLICY_RUN
from results import ResultsStore
from tests.conftest import REPO, tiny_config
from tests.test_experiment import write
from tests.test_sweep import GRID

CPU = torch.device("cpu")


@pytest.fixture
def problem(tiny_db) -> Problem:
    return tiny_db.problem()


def student(**options: Any) -> RunConfig:
    """A student_teacher run on the tiny db, its hyperparameters resolved as the runner resolves them."""
    return tiny_config("student_teacher", resolve(METHODS.get("student_teacher"), options), epochs=1)


def teacher_roles(problem: Problem) -> list[str]:
    return [f"teacher:{t}" for t in problem.task_names]


# ----- the walk ----------------------------------------------------------------------------------
def test_dependencies_come_first_with_their_roles(problem):
    cfg = student()
    graph = run_graph(cfg, problem)
    teachers = dependency_configs(cfg, problem)
    assert list(teachers) == teacher_roles(problem)
    assert graph.order() == [*teachers.values(), cfg]  # the declared order, then the run that needs them
    assert graph.dependencies(cfg.run_id) == teachers and graph.needs(cfg.run_id) == [t.run_id for t in teachers.values()]
    assert graph.closure(cfg.run_id) == list(teachers.values())
    assert all(graph.dependencies(t.run_id) == {} and graph.closure(t.run_id) == [] for t in teachers.values())
    for role, teacher in teachers.items():  # a teacher is the single_task run of its task, under the student's protocol
        assert teacher.method == "single_task" and teacher.method_options["task"] == role.removeprefix("teacher:")
        assert teacher.protocol_id == cfg.protocol_id


def test_a_chain_is_walked_to_its_end(problem):
    retrain = tiny_config("adashare", resolve(METHODS.get("adashare"), {}), backbone="resnet18")
    graph = run_graph(retrain, problem)
    [search] = graph.closure(retrain.run_id)
    assert graph.order() == [search, retrain] and list(graph.dependencies(retrain.run_id)) == [POLICY_RUN]
    assert search.method_options["phase"] == "search" and graph.dependencies(search.run_id) == {}


def test_a_shared_dependency_is_one_node_resolved_and_made_once(problem):
    asked: list[str] = []

    def counting(cfg, p):
        asked.append(cfg.run_id)
        return dependency_configs(cfg, p)

    graph = RunGraph(counting)
    first, second = graph.add(student(), problem), graph.add(student(pseudo_weight=0.5), problem)
    teachers = list(dependency_configs(first, problem).values())
    assert graph.order() == [*teachers, first, second] and len(graph) == 4
    assert sorted(asked) == sorted(c.run_id for c in graph.order())  # each run's declarations read once
    assert graph.needs(first.run_id) == graph.needs(second.run_id)
    made: dict[str, str] = {}
    calls: list[str] = []

    def make(cfg, deps):
        calls.append(cfg.run_id)
        return f"{cfg.method}({','.join(f'{r}={v}' for r, (_, v) in deps.items())})"

    graph.build(first.run_id, make, made)
    graph.build(second.run_id, make, made)
    assert calls == [c.run_id for c in graph.order()]  # the teachers once, for both students
    assert made[second.run_id] == "student_teacher(" + ",".join(
        f"{r}=single_task()" for r in teacher_roles(problem)) + ")"
    assert graph.build_dependencies(first.run_id, make, made) == {
        r: (t, "single_task()") for r, t in zip(teacher_roles(problem), teachers)}


def test_a_diamond_keeps_its_shared_bottom_once_and_first():
    cfgs = {name: tiny_config("no_coupling", seed=i) for i, name in enumerate(["top", "left", "right", "bottom"])}
    edges = {"top": ["left", "right"], "left": ["bottom"], "right": ["bottom"], "bottom": []}
    name = {c.run_id: n for n, c in cfgs.items()}
    graph = RunGraph(lambda cfg, _: {f"on:{d}": cfgs[d] for d in edges[name[cfg.run_id]]})
    graph.add(cfgs["top"], None)  # type: ignore[arg-type]  # the fake declarations need no problem
    assert [name[c.run_id] for c in graph.order()] == ["bottom", "left", "right", "top"]
    assert [name[c.run_id] for c in graph.closure(cfgs["top"].run_id)] == ["bottom", "left", "right"]
    assert list(graph.dependencies(cfgs["top"].run_id)) == ["on:left", "on:right"]


def test_a_run_not_in_the_graph_is_named():
    with pytest.raises(KeyError, match="not in the run graph"):
        RunGraph().dependencies("nope")


# ----- cycles ------------------------------------------------------------------------------------
def chain_method(then: str) -> type[Method]:
    """A fake method whose run builds on a run of the method named ``then`` (role ``next``)."""

    class Chain(Method):
        def __init__(self, *, then: str = then) -> None:
            super().__init__()
            self.then = then

        @classmethod
        def dependencies(cls, options: dict[str, Any], problem: Problem) -> dict[str, Dependency]:
            return {"next": Dependency(options["then"])}

    return Chain


@pytest.fixture
def loop(monkeypatch) -> list[str]:
    """Registers ``loop_a`` -> ``loop_b`` -> ``loop_a`` for the test; the names around the cycle."""
    for name, then in (("loop_a", "loop_b"), ("loop_b", "loop_a")):
        cls = chain_method(then)
        monkeypatch.setattr(cls, "name", name)
        monkeypatch.setitem(METHODS._classes, name, cls)
    return ["loop_a", "loop_b", "loop_a"]


def test_a_cycle_is_refused_naming_it(loop, problem):
    start = tiny_config("loop_a", {"then": "loop_b"})
    with pytest.raises(DependencyCycleError) as info:
        run_graph(start, problem)
    cycle = info.value.cycle
    assert [c.method for c in cycle] == loop and cycle[0] == cycle[-1] == start
    message = str(info.value)
    assert message.startswith(f"run {start.run_id} (loop_a[then=loop_b] on synthetic")
    assert f"depends on itself through runs {' -> '.join(c.run_id for c in cycle)}" in message
    assert message.endswith("fix the dependencies() of loop_a, loop_b")


def test_a_method_on_itself_is_a_cycle_of_one(monkeypatch, problem):
    single = METHODS.get("single_task")
    monkeypatch.setattr(single, "dependencies", classmethod(lambda cls, o, p: {"me": Dependency("single_task", o)}))
    cfg = tiny_config("single_task", resolve(single, {"task": "classes"}))
    with pytest.raises(DependencyCycleError, match=f"through runs {cfg.run_id} -> {cfg.run_id};"):
        run_graph(cfg, problem)


def cycle_message(cfg, problem: Problem) -> str:
    """What the graph says of the cycle ``cfg`` starts."""
    with pytest.raises(DependencyCycleError) as info:
        run_graph(cfg, problem)
    return str(info.value)


def test_every_caller_refuses_the_cycle_through_the_one_graph(loop, problem, tiny_db, tmp_path):
    """No caller keeps its own walk: each meets the graph's error, before anything is stored or built."""
    cfg = tiny_config("loop_a", {"then": "loop_b"}, db_options=tiny_db.options())
    store = ResultsStore(tmp_path / "results.sqlite")
    callers = {
        "run": lambda: execute(cfg, tiny_db, store, CPU, progress=False),
        "linked (load)": lambda: load_linked("next", cfg, tmp_path, problem, CPU),
        "linked (train)": lambda: train_dependencies(cfg, tiny_db, CPU),
        "bench": lambda: untrained_links(cfg, problem, CPU),
    }
    for caller, call in callers.items():
        with pytest.raises(DependencyCycleError) as info:
            call()
        assert str(info.value) == cycle_message(cfg, problem), caller
    assert store.runs() == []
    with pytest.raises(DependencyCycleError) as info:  # on a placeholder protocol of its own: other run ids
        step_time().build_method("loop_a", "smallcnn", problem)
    assert [c.method for c in info.value.cycle] == loop
    path = write(tmp_path, GRID.replace('["student_teacher", "no_coupling"]', '["loop_a"]'))
    [run] = expand(load(path))
    with pytest.raises(ExperimentError) as info:
        build_plan(path, [run], None, tmp_path, force=False)
    assert str(info.value) == f"{path}: {cycle_message(run.cfg, problem)}"


# ----- one graph for every caller ------------------------------------------------------------------
def test_the_plan_bench_step_time_and_training_link_the_graphs_runs(tmp_path):
    path = write(tmp_path, GRID)
    grid = expand(load(path))
    [run] = [r for r in grid if r.cfg.method == "student_teacher"]
    cfg, db = run.cfg, run.db.open()
    problem = db.problem(cfg.fold)
    graph = run_graph(cfg, problem)
    deps = graph.dependencies(cfg.run_id)
    assert list(deps) == teacher_roles(problem)

    plan = build_plan(path, grid, None, tmp_path, force=False)
    [node] = [n for n in plan.nodes if n.cfg.method == "student_teacher"]
    assert node.needs == graph.needs(cfg.run_id)
    assert [n.cfg for n in plan.closure(node)] == graph.closure(cfg.run_id) == list(deps.values())

    untrained = untrained_links(cfg, problem, CPU)
    assert {r: link.config for r, link in untrained.items()} == {r: d.to_dict() for r, d in deps.items()}

    setup = step_time().build_method("student_teacher", "smallcnn", problem)
    assert list(setup.method._teachers) == [r.removeprefix("teacher:") for r in deps]

    trained = train_dependencies(cfg, db, CPU)
    assert {r: link.run_id for r, link in trained.items()} == {r: d.run_id for r, d in deps.items()}


def step_time():
    """``benchmarks/step_time.py``, imported as its sibling scripts import it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import step_time as module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module
