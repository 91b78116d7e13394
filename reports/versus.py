"""The versus layout of one db under one protocol: every variant against one chosen variant, the baseline.

The negative-transfer table compares every method with single-task; this one asks whether a variant is
better than another method or setting (dmsca's alternatives against its paper defaults, every method
against ``no_coupling``). Each run of a variant is paired with the baseline's run of the same protocol
(same seed and fold: the stored ``protocol_id``), and the paired differences on each task's primary
metric are averaged, tested (:func:`reports.stats.paired_test`) and counted as wins, ties and losses;
the last column is the paired difference in Δm over the tasks (Maninis et al., CVPR 2019). Every
difference is oriented so that positive means the variant is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reports.compare import (Block, Column, Variant, delta_m_name, paired_runs, run_delta_m, shown_options, usable,
                             variant_label, where)
from reports.spec import SINGLE_TASK, Baseline, matches
from reports.stats import MIN_PAIRS, SPREADS, TESTS, Stat, paired_test
from reports.table import Cell, ReportOptions, Row, Table
from results import RunRecord

Pairs = list[tuple[RunRecord, RunRecord]]


@dataclass(frozen=True)
class Against:
    """What the rows of one versus table are compared with: the baseline variant of ``block``."""

    block: Block
    baseline: Variant
    label: str
    options: ReportOptions

    @property
    def columns(self) -> list[Column]:
        """The compared columns: each task's primary metric."""
        return [c for c in self.block.columns if c.primary]


def versus(block: Block, options: ReportOptions) -> Table:
    """One row per variant of ``block`` but single-task and the baseline (``options.versus``): per primary
    metric the mean paired difference to the baseline and the wins/ties/losses, then the difference in Δm."""
    if options.versus is None:
        raise ValueError("the versus layout needs a baseline: --versus METHOD or METHOD:KEY=VALUE,...")
    variants = block.variants()
    baseline = find_baseline(block, options.versus, variants)
    against = Against(block, baseline, variant_label(baseline, variants), options)
    headers = ["method", "options"]
    for c in against.columns:
        headers += [f"{c.task}: {c.metric}", f"{c.task}: {c.metric} W/T/L"]
    headers.append(delta_m_name(primary_only=True))
    rows = [versus_row(against, v, variants) for v in variants if not v.is_reference and v.key != baseline.key]
    return Table(f"versus_{baseline.method}_{block.db}", f"Variants against {against.label} on {block.db} "
                 f"({block.label})", headers, rows, legend=versus_legend(against.label, block.cross_validated, options),
                 spread=options.spread, alpha=options.alpha)


def find_baseline(block: Block, baseline: Baseline, variants: list[Variant]) -> Variant:
    """The one variant of ``baseline.method`` in ``block`` whose options hold ``baseline.options``; a
    ValueError naming the block and the variants there when none or several do."""
    where_block = f"{block.db} ({block.label})"
    if baseline.method == SINGLE_TASK:
        raise ValueError(f"--versus {baseline.text}: single_task trains one task per run; the negative-transfer "
                         "layout compares every method with it")
    same = [v for v in variants if v.method == baseline.method]
    if not same:
        methods = ", ".join(dict.fromkeys(v.method for v in variants if not v.is_reference)) or "none"
        raise ValueError(f"--versus {baseline.text}: {baseline.method} has no completed run on {where_block}; "
                         f"methods with runs there: {methods}")
    found = [v for v in same if matches(v.method, v.options, baseline.spec)]
    if not found:
        stored = "; ".join(f"{k}={'/'.join(sorted({str(v.options.get(k, '–')) for v in same}))}"
                           for k, _ in baseline.options)
        raise ValueError(f"--versus {baseline.text}: no {baseline.method} variant on {where_block} has "
                         f"{', '.join(f'{k}={v}' for k, v in baseline.options)} (stored: {stored}); its variants "
                         f"there: {_labels(same, variants)}")
    if len(found) > 1:
        raise ValueError(f"--versus {baseline.text} matches {len(found)} {baseline.method} variants on {where_block}: "
                         f"{_labels(found, variants)}; add KEY=VALUE pairs to pick one "
                         f"(e.g. --versus {baseline.method}:KEY=VALUE,...)")
    return found[0]


def _labels(chosen: list[Variant], variants: list[Variant]) -> str:
    return "; ".join(variant_label(v, variants) for v in chosen)


def versus_row(against: Against, variant: Variant, variants: list[Variant]) -> Row:
    """``variant``'s row: method, options, (difference, W/T/L) per primary metric, difference in Δm."""
    pairs, unpaired = paired_runs(variant, against.baseline)
    left_out = [f"no baseline ({against.baseline.method}) run with this protocol ({where(r)}): left out of the "
                "comparison" for r in unpaired]
    cells = [Cell(variant.method), Cell(options_text(variant, against.baseline, variants))]
    for column in against.columns:
        diffs, notes = differences(variant, column, pairs)
        cells += [Cell(stats=(_paired_stat(column, diffs, left_out + notes, against),)),
                  Cell(wins_ties_losses(diffs), notes=tuple(dict.fromkeys(left_out + notes)))]
    cells.append(Cell(stats=(delta_m_difference(against, pairs, left_out),)))
    return Row(cells, method=variant.method)


def options_text(variant: Variant, baseline: Variant, variants: list[Variant]) -> str:
    """A variant of the baseline's method: the options whose values differ from the baseline's (what the row
    tests); another method: the options the negative-transfer table shows."""
    if variant.method != baseline.method:
        return variant.options_text(dict.fromkeys(shown_options(variant.method, variants)))
    keys = [k for k in sorted({*variant.options, *baseline.options})
            if str(variant.options.get(k)) != str(baseline.options.get(k)) and k in variant.options]
    return variant.options_text(keys)


def differences(variant: Variant, column: Column, pairs: Pairs) -> tuple[list[float], list[str]]:
    """Per (variant run, baseline run) pair, variant − baseline in ``column``, or baseline − variant for a
    lower-is-better metric, so positive is better; and why a pair gives no difference."""
    cell = (column.task, column.metric)
    if pairs and not any(cell in run.metric_values() for run, _ in pairs):
        return [], [f"task {column.task!r} is not trained by {variant.method}"]
    diffs, notes = [], []
    for run, base in pairs:
        value, ref = run.metric_values().get(cell), base.metric_values().get(cell)
        if not usable(value):
            notes.append(f"no usable {column.metric} of {column.task!r} in the {variant.method} run ({where(run)})")
        elif not usable(ref):
            notes.append(f"the baseline run has no usable {column.metric} of {column.task!r} ({where(run)})")
        else:
            diffs.append(value - ref if column.higher_is_better else ref - value)
    return diffs, notes


def delta_m_difference(against: Against, pairs: Pairs, left_out: list[str]) -> Stat:
    """Per pair, the variant's Δm over the primary metrics minus the baseline's (both against single-task)."""
    name, refs = delta_m_name(primary_only=True), against.block.references()
    diffs, notes = [], list(left_out)
    for run, base in pairs:
        own, theirs = run_delta_m(run, against.columns, refs), run_delta_m(base, against.columns, refs)
        if own is None or theirs is None:
            whose = f"the {run.method} run" if own is None else "the baseline's run"
            notes.append(f"{name} leaves out {where(run)}: not every primary metric of {whose} has a single-task "
                         "value to compare with")
        else:
            diffs.append(own - theirs)
    return _paired_stat(Column("", name, True, False, None), diffs, notes, against, unit="%")


def _paired_stat(column: Column, diffs: list[float], notes: list[str], against: Against, unit: str = "") -> Stat:
    """The oriented differences in ``column`` as the values of a stat (so higher is better), with the paired
    test's p-value."""
    p_value, why = paired_test(diffs, against.options.test, against="the baseline")
    return Stat(column.task, column.metric, True, column.primary, tuple(diffs), p_value=p_value,
                notes=tuple(dict.fromkeys(notes + ([why] if why else []))), unit=unit)


def wins_ties_losses(diffs: Sequence[float]) -> str:
    """``wins/ties/losses`` over oriented paired differences (a tie: exactly equal values); "" without a pair."""
    if not diffs:
        return ""
    return f"{sum(d > 0 for d in diffs)}/{sum(d == 0 for d in diffs)}/{sum(d < 0 for d in diffs)}"


def versus_legend(label: str, cross_validated: bool, options: ReportOptions) -> list[str]:
    """Caption sentences: what is compared, the sign convention, W/T/L, Δm and the paired test."""
    over = "seeds and folds" if cross_validated else "seeds"
    return [
        f"The baseline: {label}. Each run is paired with the baseline's run of the same protocol (db, backbone, "
        f"seed, fold, epochs, ...); a cell is the mean ± {SPREADS[options.spread]} over {over} of the paired "
        "difference variant minus baseline "
        "on the test split, on each task's primary metric.",
        "Positive is better: for a lower-is-better metric the difference is baseline minus variant.",
        "W/T/L: paired runs where the variant is better than, equal to, worse than the baseline.",
        "Options: for a variant of the baseline's method, those that differ from the baseline's.",
        "Δm (tasks): the variant's Δm over one primary metric per task (relative to single-task, Maninis et al., "
        "CVPR 2019) minus the baseline's, run by run: a difference of percentages, in percentage points.",
        f"{{sig}}: p < {options.alpha:g}, {TESTS[options.test]} of the paired differences to the baseline over "
        f"seeds/folds; tested where a cell has at least {MIN_PAIRS} pairs.",
    ]
