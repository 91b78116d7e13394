"""A sweep's plan: its runs in dependency order, what to do with each, and the executor protocol.

Kept apart from ``benchmark/sweep.py`` (planning and the command) so that the executors
(``sweep_backends.py``, ``sweep_ray.py``) and the sweep import it, not each other.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmark.config import RunConfig
from benchmark.grid import DbSpec
from benchmark.run_graph import RunGraph
from results import RunRecord

#: What a sweep does with a run: nothing (completed in the store), train it, or resume an unfinished one.
DONE, RUN, RESUME = "done", "run", "resume"


@dataclass
class Node:
    """One run of the plan: its config and db, the file entries asking for it (none: a dependency only),
    and the run ids it builds on directly (one per role, as the run graph has them)."""

    cfg: RunConfig
    db: DbSpec
    sources: list[str]
    needs: list[str]
    action: str = RUN
    retrain: bool = False  # a completed run trained again because a run to train needs its missing weights file
    replaced: RunRecord | None = field(default=None, repr=False)  # the stored record a retrain replaces

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    @property
    def in_grid(self) -> bool:
        return bool(self.sources)

    def forced(self, force: bool) -> bool:
        """Whether the runner trains this run again over a completed one: the grid's own runs under ``--force``,
        and a dependency retrained for its weights (``--retrain-missing-weights``)."""
        return (force and self.in_grid) or self.retrain


@dataclass
class Plan:
    """The runs of a sweep, every dependency before the runs that need it: the nodes of ``graph`` in its order."""

    path: Path
    nodes: list[Node]
    graph: RunGraph = field(repr=False)

    def __post_init__(self) -> None:
        self.by_id = {n.run_id: n for n in self.nodes}

    def closure(self, node: Node) -> list[Node]:
        """Every run ``node`` builds on, directly or through a chain, in plan order."""
        return [self.by_id[cfg.run_id] for cfg in self.graph.closure(node.run_id)]

    def count(self, action: str, in_grid: bool | None = None) -> int:
        return sum(n.action == action and (in_grid is None or n.in_grid == in_grid) for n in self.nodes)


@dataclass
class Outcome:
    """How one run ended, as a backend reports it."""

    ok: bool
    error: str | None = None
    wall_time_s: float | None = None


class Backend(Protocol):
    """Trains the runs of a plan: ``slots`` at a time; ``finish`` records the result on the driver's side."""

    slots: int

    def submit(self, node: Node, closure: list[Node]) -> Future:
        """Start training ``node`` (``closure``: the completed runs it builds on); a future of its :class:`Outcome`."""

    def finish(self, node: Node, future: Future) -> Outcome:
        """The outcome of a finished ``future``, with the run recorded in the store (failed ones too)."""

    def close(self) -> None:
        """Release the workers."""
