"""Stored runs grouped for comparison: blocks (one db under one protocol), variants (one method with
its hyperparameters) and their per-metric statistics against the single-task runs.

A multi-task value is compared with the ``single_task`` run of the same task with the same protocol
(db and its options, backbone, pretrained weights, seed, fold, epochs, batch size, learning rate,
image size), found through the stored ``protocol_id``: the comparison is paired seed by seed and
fold by fold, then averaged (Kollias et al., AAAI-24, Sec. 1 define negative transfer against the
single-task models).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reports.spec import (EARLIER_STAGE_LINKS, METHOD_ORDER, RUN_SPECIFIC_OPTIONS, SHOWN_OPTIONS, SINGLE_TASK,
                          TASK_OPTION, task_role)
from reports.stats import Stat, paired_test, relative_difference
from results import COMPLETED, RunRecord

#: Config fields that do not define a block: the method, and the seed and fold it is averaged over.
_NOT_PROTOCOL = ("method", "method_options", "seed", "fold")


@dataclass(frozen=True)
class Column:
    """One (task, metric) of a block's test split."""

    task: str
    metric: str
    higher_is_better: bool
    primary: bool
    role: str | None


@dataclass
class Variant:
    """One method with one set of hyperparameters, and its runs in a block."""

    method: str
    options: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.method, tuple(sorted((k, str(v)) for k, v in self.options.items()))

    @property
    def is_reference(self) -> bool:
        return self.method == SINGLE_TASK

    def options_text(self, keys: Iterable[str] | None = None) -> str:
        shown = sorted(self.options if keys is None else [k for k in keys if k in self.options])
        return ", ".join(f"{k}={self.options[k]}" for k in shown)


@dataclass
class Block:
    """The runs of one db under one protocol: everything but method, seed and fold is equal."""

    db: str
    label: str
    runs: list[RunRecord]
    columns: list[Column]

    @property
    def backbone(self) -> str:
        return self.runs[0].backbone

    @property
    def cross_validated(self) -> bool:
        return any(r.fold is not None for r in self.runs)

    def references(self) -> dict[tuple[str, str], RunRecord]:
        """The single-task run of each (protocol_id, task)."""
        refs: dict[tuple[str, str], RunRecord] = {}
        for r in self.runs:
            if r.method == SINGLE_TASK:
                refs.setdefault((r.protocol_id, str(r.method_options.get(TASK_OPTION))), r)
        return refs

    def variants(self) -> list[Variant]:
        """The block's variants, single-task first, then :data:`METHOD_ORDER`, then the rest by name."""
        found: dict[tuple, Variant] = {}
        for r in self.runs:
            v = Variant(r.method, row_options(r))
            found.setdefault(v.key, v).runs.append(r)
        rank = {m: i for i, m in enumerate(METHOD_ORDER)}
        return sorted(found.values(), key=lambda v: (rank.get(v.method, len(rank)), v.method, v.key[1]))

    def split_by_run(self) -> list[Block]:
        """One block per seed/fold (protocol id), for the per-run view."""
        by_protocol: dict[str, list[RunRecord]] = {}
        for r in self.runs:
            by_protocol.setdefault(r.protocol_id, []).append(r)
        parts = [Block(self.db, f"{self.label}, {where(rs[0])}", rs, self.columns) for rs in by_protocol.values()]
        return sorted(parts, key=lambda b: (b.runs[0].fold if b.runs[0].fold is not None else -1, b.runs[0].seed))


def row_options(run: RunRecord) -> dict[str, Any]:
    """The hyperparameters that make a row: the single-task's task and run-specific ids left out."""
    skip = set(RUN_SPECIFIC_OPTIONS) | ({TASK_OPTION} if run.method == SINGLE_TASK else set())
    return {k: v for k, v in run.method_options.items() if k not in skip}


def shown_options(method: str, variants: list[Variant]) -> list[str]:
    """:data:`SHOWN_OPTIONS` and the hyperparameters that differ between the variants of ``method``."""
    same = [v for v in variants if v.method == method]
    keys = {k for v in same for k in v.options}
    return [*SHOWN_OPTIONS, *sorted(k for k in keys if len({str(v.options.get(k)) for v in same}) > 1)]


def variant_label(variant: Variant, variants: list[Variant]) -> str:
    """``method`` or ``method [relatedness=db]``: the name plus what tells it apart."""
    text = variant.options_text(dict.fromkeys(shown_options(variant.method, variants)))
    return variant.method + (f" [{text}]" if text else "")


def where(run: RunRecord) -> str:
    """``seed 1`` or ``seed 0, fold 2``."""
    return f"seed {run.seed}" + (f", fold {run.fold}" if run.fold is not None else "")


def later_stages_only(records: list[RunRecord]) -> list[RunRecord]:
    """Drop runs that another run names as its earlier stage (e.g. AdaShare's policy search)."""
    earlier = {run_id for r in records for role in EARLIER_STAGE_LINKS for run_id in _linked_ids(r.links.get(role))}
    return [r for r in records if r.run_id not in earlier]


def _linked_ids(link: Any) -> list[str]:
    """Run ids in a ``links`` entry: ``{"run_id": ...}`` as the runner writes it, a bare id, or a list."""
    if isinstance(link, dict):
        return [str(link["run_id"])] if "run_id" in link else []
    if isinstance(link, str):
        return [link]
    return [i for item in link or () for i in _linked_ids(item)]


def build_blocks(records: Iterable[RunRecord], dbs: Iterable[str] | None = None,
                 backbone: str | None = None) -> list[Block]:
    """Completed runs of ``dbs`` (default: all) grouped into blocks, ordered by db, backbone, protocol."""
    runs = [r for r in records if r.status == COMPLETED and (backbone is None or r.backbone == backbone)]
    runs = later_stages_only(runs)
    wanted = list(dict.fromkeys(dbs)) if dbs is not None else sorted({r.db for r in runs})
    blocks = []
    for db in wanted:
        groups: dict[str, list[RunRecord]] = {}
        for r in runs:
            if r.db == db:
                groups.setdefault(_protocol_key(r), []).append(r)
        labels = _protocol_labels(groups)
        blocks += [Block(db, labels[key], rs, _columns(rs)) for key, rs in groups.items()]
    order = {db: i for i, db in enumerate(wanted)}
    return sorted(blocks, key=lambda b: (order[b.db], b.backbone, b.label))


def _protocol_key(run: RunRecord) -> str:
    return json.dumps({k: v for k, v in run.config.items() if k not in _NOT_PROTOCOL}, sort_keys=True, default=str)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in config.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": str(v)})
    return out


def _protocol_labels(groups: dict[str, list[RunRecord]]) -> dict[str, str]:
    """The backbone, plus the settings that tell a db's protocols apart when it has several."""
    flat = {key: _flat(json.loads(key)) for key in groups}
    differing = sorted({k for f in flat.values() for k in f if len({g.get(k) for g in flat.values()}) > 1})
    differing = [k for k in differing if k not in ("backbone", "pretrained")]
    labels = {}
    for key, f in flat.items():
        extra = ", ".join(f"{k.removeprefix('db_options.')}={f.get(k, '–')}" for k in differing)
        weights = weights_label(json.loads(key).get("pretrained"))
        labels[key] = f["backbone"] + (f" [{weights}]" if weights else "") + (f" ({extra})" if extra else "")
    return labels


def weights_label(pretrained: str | None) -> str:
    """A short name of a run's pretrained weights for table titles ("" from scratch): timm's
    ``arch.tag``, a packaged file's name, a local file's name."""
    if not pretrained:
        return ""
    if pretrained.startswith("timm:"):
        return pretrained.removeprefix("timm:")
    name = pretrained.rsplit("/", 1)[-1]
    return f"{name} (ImageNet)" if pretrained.startswith("package:") else name


def _columns(runs: list[RunRecord]) -> list[Column]:
    """Test-split (task, metric) columns: class tasks first, the primary metric first within a task."""
    found: dict[tuple[str, str], Column] = {}
    metrics_of: dict[str, set[str]] = {}
    for r in runs:
        for m in r.metrics:
            if m.split == "test":
                metrics_of.setdefault(m.task, set()).add(m.metric)
                old = found.get((m.task, m.metric))
                found[(m.task, m.metric)] = Column(m.task, m.metric, m.higher_is_better,
                                                   m.primary or bool(old and old.primary), None)
    roles = {t: task_role(ms) for t, ms in metrics_of.items()}
    rank = {"classes": 0, "attributes": 1}
    cols = [Column(c.task, c.metric, c.higher_is_better, c.primary, roles[c.task]) for c in found.values()]
    return sorted(cols, key=lambda c: (rank.get(c.role or "", 2), c.task, not c.primary, c.metric))


def column_stat(block: Block, variant: Variant, column: Column, test: str = "ttest") -> Stat:
    """``variant``'s values in ``column`` over its runs, paired with the single-task runs."""
    base = dict(task=column.task, metric=column.metric, higher_is_better=column.higher_is_better,
                primary=column.primary)
    cell = (column.task, column.metric)
    if variant.is_reference:
        runs = [r for r in variant.runs if str(r.method_options.get(TASK_OPTION)) == column.task]
        values, notes = _values(runs, cell, variant.method)
        if not runs:
            notes = [f"no single_task run of {column.task!r} on {block.db}"]
        return Stat(**base, values=tuple(values), notes=tuple(notes), is_reference=True)
    refs = block.references()
    values, notes = _values(variant.runs, cell, variant.method)
    deltas = []
    for r in variant.runs:
        value, ref = r.metric_values().get(cell), refs.get((r.protocol_id, column.task))
        if ref is None:
            notes.append(f"no single_task run of {column.task!r} with this protocol ({where(r)})")
            continue
        ref_value = ref.metric_values().get(cell)
        if not usable(ref_value):
            notes.append(f"the single_task run of {column.task!r} has no usable {column.metric} ({where(r)})")
        elif usable(value):
            deltas.append(value - ref_value)
    p_value, why = paired_test(deltas, test)
    return Stat(**base, values=tuple(values), deltas=tuple(deltas), p_value=p_value,
                notes=tuple(dict.fromkeys(notes + ([why] if why else []))))


def usable(value: float | None) -> bool:
    """Whether a stored value can be compared: present and not NaN."""
    return value is not None and value == value  # NaN != NaN


def _values(runs: list[RunRecord], cell: tuple[str, str], method: str) -> tuple[list[float], list[str]]:
    """The runs' usable values of ``cell`` and why any run gives none."""
    values, notes = [], []
    present = [r for r in runs if cell in r.metric_values()]
    if runs and not present:
        return [], [f"task {cell[0]!r} is not trained by {method}"]
    for r in runs:
        value = r.metric_values().get(cell)
        if usable(value):
            values.append(value)
        else:
            notes.append(f"no {cell[1]} of {cell[0]!r} in the {method} run ({where(r)})" if value is None
                         else f"{cell[1]} of {cell[0]!r} is NaN in the {method} run ({where(r)})")
    return values, notes


def delta_m(block: Block, variant: Variant, primary_only: bool) -> Stat:
    """Δm in %: mean signed relative difference to single-task over the block's columns, per paired run.

    ``primary_only=False``: over every metric of every task (Navon et al., ICML 2022, Sec. 6).
    ``primary_only=True``: over one primary metric per task (Maninis, Radosavovic & Kokkinos, CVPR 2019).
    Each run gets its own Δm against the single-task runs with its protocol; the cell averages them.
    """
    name = delta_m_name(primary_only)
    columns = [c for c in block.columns if c.primary or not primary_only]
    refs = block.references()
    values, notes = [], []
    for r in variant.runs:
        value = run_delta_m(r, columns, refs)
        if value is not None:
            values.append(value)
        else:
            notes.append(f"{name} leaves out {where(r)}: not every metric has a single-task value to compare with")
    return Stat("", name, True, False, tuple(values), notes=tuple(notes), unit="%")


def delta_m_name(primary_only: bool) -> str:
    """The header of a Δm column: over one primary metric per task, or over every metric."""
    return "Δm (tasks)" if primary_only else "Δm (metrics)"


def run_delta_m(run: RunRecord, columns: list[Column], refs: dict[tuple[str, str], RunRecord]) -> float | None:
    """One run's Δm in % over ``columns`` against the single-task runs ``refs`` of its protocol
    (:meth:`Block.references`); None when a column has no value or no single-task value to compare with."""
    own, parts = run.metric_values(), []
    for c in columns:
        ref = refs.get((run.protocol_id, c.task))
        ref_value = ref.metric_values().get((c.task, c.metric)) if ref else None
        value = own.get((c.task, c.metric))
        parts.append(relative_difference(value, ref_value, c.higher_is_better)
                     if usable(value) and usable(ref_value) else None)
    if not parts or any(p is None for p in parts):
        return None
    return 100.0 * sum(parts) / len(parts)


def paired_runs(variant: Variant, baseline: Variant) -> tuple[list[tuple[RunRecord, RunRecord]], list[RunRecord]]:
    """``variant``'s runs each with ``baseline``'s run of the same protocol (same seed and fold: the stored
    ``protocol_id``), and the runs of ``variant`` that have none."""
    theirs = {r.protocol_id: r for r in baseline.runs}
    pairs = [(r, theirs[r.protocol_id]) for r in variant.runs if r.protocol_id in theirs]
    return pairs, [r for r in variant.runs if r.protocol_id not in theirs]


def verdict(stats: list[Stat]) -> tuple[bool | None, str]:
    """Negative transfer (Kollias et al., AAAI-24, Sec. 1): worse than single-task on at least one
    task, judged on each task's primary metric; ``(None, why)`` when that cannot be told."""
    primary = [s for s in stats if s.primary and not s.is_reference]
    worse = [s.task for s in primary if s.worse]
    if worse:
        return True, ""
    missing = [s.task for s in primary if s.worse is None]
    if missing or not primary:
        return None, f"no single-task comparison for {', '.join(repr(t) for t in missing) or 'any task'}"
    return False, ""


def relative_differences(block: Block, variant: Variant, column: Column) -> list[float]:
    """Per paired run, the signed relative difference to single-task in % (positive = better)."""
    refs, cell, out = block.references(), (column.task, column.metric), []
    for r in variant.runs:
        ref = refs.get((r.protocol_id, column.task))
        value, ref_value = r.metric_values().get(cell), ref.metric_values().get(cell) if ref else None
        rel = relative_difference(value, ref_value, column.higher_is_better) \
            if usable(value) and usable(ref_value) else None
        if rel is not None:
            out.append(100.0 * rel)
    return out
