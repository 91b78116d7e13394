"""The run graph: the runs a run builds on (``Method.dependencies``), resolved recursively, walked once.

Multi-stage protocols are separate stored runs linked by role (DESIGN.md, Sec. 4): a student-teacher
run builds on one ``single_task`` run per task (roles ``teacher:<task>``), an AdaShare retraining on
its policy search (role ``policy_run``). This module is the one place that resolves those declarations
into :class:`RunConfig` s and walks them: nodes are configs keyed by run id, an edge goes from a run to
a run it builds on and is labelled by the role. Cycles are found here, once, while the graph is built
(:class:`DependencyCycleError` names the cycle). Everyone who needs linked runs takes them from here:
the runner (``run``) trains them in order, ``sweep`` plans them, ``bench`` and ``benchmarks/`` build
them untrained, :mod:`benchmark.linked` loads or trains them for ``Method.attach``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from benchmark.config import RunConfig
from benchmark.options import resolve
from benchmark.tasks import Problem
from methods import METHODS

T = TypeVar("T")

#: How a node's direct dependencies are found: its config and its problem -> their configs, by role.
Declared = Callable[[RunConfig, Problem], dict[str, RunConfig]]
#: What :meth:`RunGraph.build` makes of one node from its config and its dependencies' (config, value) by role.
Make = Callable[[RunConfig, dict[str, tuple[RunConfig, T]]], T]


class DependencyCycleError(ValueError):
    """Linked runs that build on each other in a cycle (a method's ``dependencies()`` is wrong).

    Args:
        cycle: the configs around the cycle, the first one repeated at the end.
    """

    def __init__(self, cycle: tuple[RunConfig, ...]) -> None:
        self.cycle = cycle
        head = cycle[0]
        methods = ", ".join(dict.fromkeys(c.method for c in cycle))
        super().__init__(f"run {head.run_id} ({head.describe()}) depends on itself through runs "
                         f"{' -> '.join(c.run_id for c in cycle)}; fix the dependencies() of {methods}")


def dependency_configs(cfg: RunConfig, problem: Problem) -> dict[str, RunConfig]:
    """The configs of the runs ``cfg``'s method declares it builds on, by role (one level, no walk).

    A dependency keeps every protocol field of ``cfg`` (db and its options, backbone, pretrained
    weights, seed, fold, epochs, batch size, lr, image size) and takes its own method and fully
    resolved hyperparameters, so its run id is the one the same request on the command line gets.
    """
    declared = METHODS.get(cfg.method).dependencies(dict(cfg.method_options), problem)
    out = {}
    for role, dep in declared.items():
        options = resolve(METHODS.get(dep.method), dep.options)
        out[role] = dataclasses.replace(cfg, method=dep.method, method_options=options)
    return out


class RunGraph:
    """Runs and the runs they build on, every dependency before the runs that need it.

    Add runs with :meth:`add` (their dependencies come along, recursively, each run once however many
    runs need it); read the order with :meth:`order`, a run's direct dependencies by role with
    :meth:`dependencies`, everything it builds on with :meth:`closure`; make something of each run,
    dependencies first, with :meth:`build`.

    Args:
        declared: how a run's direct dependencies are found; :func:`dependency_configs` (what its
            method declares) unless a caller wraps it (to word its errors) or a test fakes it.
    """

    def __init__(self, declared: Declared = dependency_configs) -> None:
        self._declared = declared
        self._configs: dict[str, RunConfig] = {}  # insertion order: dependencies first
        self._edges: dict[str, dict[str, str]] = {}  # run id -> {role: run id of the dependency}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._configs

    def __len__(self) -> int:
        return len(self._configs)

    # ----- building ------------------------------------------------------------------------
    def add(self, cfg: RunConfig, problem: Problem) -> RunConfig:
        """Add ``cfg`` and everything it builds on (``problem``: its db's problem for its fold); returns ``cfg``.

        Raises :class:`DependencyCycleError` when the runs build on each other in a cycle; whatever
        resolving a declaration raises (an unknown method, a bad option) passes through.
        """
        self._visit(cfg, problem, ())
        return cfg

    def _visit(self, cfg: RunConfig, problem: Problem, path: tuple[RunConfig, ...]) -> None:
        """Depth first; a run is recorded after its dependencies, so insertion order is a valid order."""
        if cfg.run_id in self._configs:
            return
        ids = [c.run_id for c in path]
        if cfg.run_id in ids:
            raise DependencyCycleError(path[ids.index(cfg.run_id):] + (cfg,))
        deps = self._declared(cfg, problem)
        for dep in deps.values():
            self._visit(dep, problem, path + (cfg,))
        self._configs[cfg.run_id] = cfg
        self._edges[cfg.run_id] = {role: dep.run_id for role, dep in deps.items()}

    # ----- reading -------------------------------------------------------------------------
    def config(self, run_id: str) -> RunConfig:
        """The config of the run ``run_id`` (a KeyError names it if it is not in the graph)."""
        if run_id not in self._configs:
            raise KeyError(f"run {run_id} is not in the run graph; add() it (or the run that needs it) first")
        return self._configs[run_id]

    def order(self) -> list[RunConfig]:
        """Every run, each after every run it builds on (depth first, in the order runs were added)."""
        return list(self._configs.values())

    def dependencies(self, run_id: str) -> dict[str, RunConfig]:
        """The runs ``run_id`` builds on directly, by role, in the order its method declares them."""
        self.config(run_id)
        return {role: self._configs[dep] for role, dep in self._edges[run_id].items()}

    def needs(self, run_id: str) -> list[str]:
        """The run ids of :meth:`dependencies` (one per role)."""
        return [dep.run_id for dep in self.dependencies(run_id).values()]

    def closure(self, run_id: str) -> list[RunConfig]:
        """Every run ``run_id`` builds on, directly or through a chain, in :meth:`order` (itself excluded)."""
        seen: set[str] = set()
        stack = self.needs(run_id)
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack += self.needs(dep)
        return [c for c in self._configs.values() if c.run_id in seen]

    # ----- making something of each run ----------------------------------------------------
    def build(self, run_id: str, make: Make[T], made: dict[str, T] | None = None) -> T:
        """``make`` of ``run_id``, after ``make`` of everything it builds on, each run once.

        ``make(cfg, deps)`` gets a run's config and, by role, each direct dependency's config and
        what ``make`` gave for it. ``made`` (by run id) keeps the results: pass one dict to several
        calls to share them; a run already in it is not made again.
        """
        made = {} if made is None else made
        for cfg in [*self.closure(run_id), self.config(run_id)]:
            if cfg.run_id not in made:
                deps = {role: (dep, made[dep.run_id]) for role, dep in self.dependencies(cfg.run_id).items()}
                made[cfg.run_id] = make(cfg, deps)
        return made[run_id]

    def build_dependencies(self, run_id: str, make: Make[T], made: dict[str, T] | None = None
                           ) -> dict[str, tuple[RunConfig, T]]:
        """:meth:`build` of each run ``run_id`` builds on directly (not of itself): (config, result) by role."""
        made = {} if made is None else made
        return {role: (dep, self.build(dep.run_id, make, made)) for role, dep in self.dependencies(run_id).items()}


def run_graph(cfg: RunConfig, problem: Problem) -> RunGraph:
    """The graph of ``cfg`` and every run it builds on (``problem``: its db's problem for its fold)."""
    graph = RunGraph()
    graph.add(cfg, problem)
    return graph
