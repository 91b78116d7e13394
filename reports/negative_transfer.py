"""Negative-transfer rows: each multi-task run's test metrics beside the matching single-task runs.

Following Kollias et al. (AAAI-24, Sec. 1), a multi-task model shows negative transfer when it is
worse than the single-task model on at least one task; here "worse" is judged on each task's
primary metric, and every cell is flagged individually. The single-task reference of a run is the
``single_task`` run of the same task with the same protocol (db and its options, backbone, seed,
fold, epochs, batch size, learning rate, ...), found through the stored ``protocol_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from results import COMPLETED, RunRecord

SINGLE_TASK = "single_task"


@dataclass(frozen=True)
class Cell:
    """One task metric of one row, with its single-task reference when there is one."""

    task: str
    metric: str
    value: float | None
    reference: float | None
    higher_is_better: bool
    primary: bool
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.value is None or self.reference is None:
            return None
        return self.value - self.reference

    @property
    def worse(self) -> bool | None:
        """Whether the value is worse than single-task; None when there is nothing to compare."""
        if self.delta is None:
            return None
        return self.delta < 0 if self.higher_is_better else self.delta > 0


@dataclass
class Row:
    """One method on one protocol/seed: its cells, in the table's column order."""

    method: str
    options: str
    backbone: str
    seed: int
    fold: int | None
    run_ids: list[str]
    cells: list[Cell] = field(default_factory=list)

    @property
    def is_reference(self) -> bool:
        return self.method == SINGLE_TASK

    @property
    def negative_transfer(self) -> bool | None:
        """Worse than single-task on the primary metric of at least one task; None if unknown."""
        verdicts = [c.worse for c in self.cells if c.primary]
        if self.is_reference or not verdicts:
            return None
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False


@dataclass
class NegativeTransferTable:
    """Rows sharing one column layout of (task, metric)."""

    db: str
    columns: list[tuple[str, str]]
    rows: list[Row]


def _options(record: RunRecord) -> str:
    opts = {k: v for k, v in record.method_options.items() if not (record.method == SINGLE_TASK and k == "task")}
    return ", ".join(f"{k}={v}" for k, v in sorted(opts.items()))


def build_negative_transfer(records: Iterable[RunRecord], db: str) -> NegativeTransferTable:
    """Rows for every completed run of ``db``: single-task references first, then multi-task runs."""
    runs = [r for r in records if r.db == db and r.status == COMPLETED]
    singles = {(r.protocol_id, r.method_options.get("task")): r for r in runs if r.method == SINGLE_TASK}
    columns: list[tuple[str, str]] = []
    primaries, directions = set(), {}
    for r in runs:
        for m in r.metrics:
            if m.split == "test" and (m.task, m.metric) not in columns:
                columns.append((m.task, m.metric))
            directions[(m.task, m.metric)] = m.higher_is_better
            if m.primary:
                primaries.add((m.task, m.metric))
    columns.sort(key=lambda c: (c[0], (c not in primaries), c[1]))
    rows = [_reference_row(pid, singles, columns, primaries, directions)
            for pid in dict.fromkeys(pid for pid, _ in singles)]
    rows += [_multitask_row(r, singles, columns, primaries, directions) for r in runs if r.method != SINGLE_TASK]
    rows.sort(key=lambda row: (row.backbone, row.fold if row.fold is not None else -1, row.seed,
                               not row.is_reference, row.method, row.options))
    return NegativeTransferTable(db, columns, rows)


def _reference_row(protocol_id, singles, columns, primaries, directions) -> Row:
    by_task = {task: r for (pid, task), r in singles.items() if pid == protocol_id}
    first = next(iter(by_task.values()))
    cells = []
    for task, metric in columns:
        run = by_task.get(task)
        value = run.metric_values().get((task, metric)) if run else None
        cells.append(Cell(task, metric, value, None, directions[(task, metric)], (task, metric) in primaries,
                          "" if run else "no single_task run for this task"))
    return Row(SINGLE_TASK, "", first.backbone, first.seed, first.fold, [r.run_id for r in by_task.values()], cells)


def _multitask_row(run: RunRecord, singles, columns, primaries, directions) -> Row:
    values = run.metric_values()
    cells = []
    for task, metric in columns:
        reference_run = singles.get((run.protocol_id, task))
        reference = reference_run.metric_values().get((task, metric)) if reference_run else None
        note = "" if reference_run else f"no single_task run of {task!r} with this protocol (seed {run.seed})"
        if (task, metric) not in values:
            note = "task not trained by this method"
        cells.append(Cell(task, metric, values.get((task, metric)), reference, directions[(task, metric)],
                          (task, metric) in primaries, note))
    return Row(run.method, _options(run), run.backbone, run.seed, run.fold, [run.run_id], cells)
