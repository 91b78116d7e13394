"""The records the store holds: a run and its metrics."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
STATUSES = (RUNNING, COMPLETED, FAILED)


@dataclass(frozen=True)
class Metric:
    """One metric value of one task on one split."""

    split: str
    task: str
    metric: str
    value: float
    higher_is_better: bool
    primary: bool = False


@dataclass
class RunRecord:
    """A stored run: what was run, where, how it went, and its metrics.

    ``config`` is the run's full resolved config (``benchmark.config.RunConfig.to_dict``);
    ``links`` names other runs this one built on (teachers, a policy run), by role: each entry holds
    the linked run's ``run_id``, ``method``, ``finished_at`` and ``wall_time_s`` (its total cost,
    its own links included) as they stood when this run used it. ``wall_time_s`` is this run's own
    training time; :attr:`total_wall_time_s` adds the linked runs'.
    """

    run_id: str
    protocol_id: str
    status: str
    method: str
    db: str
    backbone: str
    seed: int
    fold: int | None
    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str | None = None
    wall_time_s: float | None = None
    peak_memory_mb: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    links: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)

    @property
    def method_options(self) -> dict[str, Any]:
        return dict(self.config.get("method_options", {}))

    @property
    def linked_run_ids(self) -> dict[str, str]:
        """``{role: run_id}`` of the runs this one built on."""
        return {role: link["run_id"] for role, link in self.links.items()}

    @property
    def total_wall_time_s(self) -> float | None:
        """Own wall time plus every linked run's total: the cost of this result from nothing (None if unknown)."""
        parts = [self.wall_time_s] + [link.get("wall_time_s") for link in self.links.values()]
        return None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]

    @property
    def cause(self) -> str | None:
        """The one-line cause of a failure (:func:`error_cause` of ``error``); None when there is no error."""
        return None if self.error is None else error_cause(self.error)

    def metric_values(self, split: str = "test") -> dict[tuple[str, str], float]:
        """``{(task, metric): value}`` on ``split``."""
        return {(m.task, m.metric): m.value for m in self.metrics if m.split == split}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data["metrics"] = [Metric(**m) for m in data.get("metrics", [])]
        return cls(**data)


#: How long a one-line cause may get before it is cut (with "...").
CAUSE_CHARS = 160
#: A line of a formatted traceback that names an exception: ``OSError: ...``, ``datasets.files.CorruptDataError: ...``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)(:|$)")


def error_cause(error: str, limit: int | None = CAUSE_CHARS) -> str:
    """The one line that says why a run failed, out of its stored error (the cause, a blank line, the traceback).

    The cause is the error's first line, except for an error re-raised from a DataLoader worker, whose
    first line only says where it was caught: then it is the worker's last exception line. ``limit``
    cuts a longer line (with "..."); None keeps it whole.
    """
    paragraphs = error.strip().split("\n\n")
    cause = paragraphs[0].splitlines()[0].rstrip() if paragraphs[0] else ""
    if "DataLoader worker process" in cause:  # torch: "X: Caught X in DataLoader worker process 0. Original Traceback"
        message, i = [paragraphs[0]], 1  # the worker's traceback, with any chained exceptions it shows
        while i + 1 < len(paragraphs) and paragraphs[i].startswith(("The above exception", "During handling")):
            message, i = message + paragraphs[i:i + 2], i + 2
        found = [line for part in message for line in part.splitlines()
                 if _EXCEPTION_LINE.match(line) and "DataLoader worker process" not in line]
        cause = found[-1].rstrip() if found else cause
    return cause if limit is None or len(cause) <= limit else cause[: limit - 3] + "..."
