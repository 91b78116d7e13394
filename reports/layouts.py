"""Tables from stored runs: negative transfer, versus, the paper's Tables 2-5, and the training terms (losses).

Kollias, Sharmanska & Zafeiriou (AAAI-24): Table 2 compares ST / NC MT / S-T NC MT / C MT (DM) /
C MT (DB) on the task pairings, Table 3 ablates the coupling losses per relatedness source, Table 4
repeats single-task / no coupling / coupling per backbone and db with Acc and F1 of both tasks, and
Table 5 compares methods across dbs as "classes–attributes". Which runs fill which row is the data
table in :mod:`reports.spec`. Rows only: rendering is :mod:`reports.render`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reports.compare import Block, Column, Variant, build_blocks, column_stat
from reports.negative_transfer import negative_transfer
from reports.spec import ANY, EXPECTED_VALUES, LAYOUT_ROWS, METRIC_LABELS, SINGLE_TASK, TASK_ROLES, RowSpec, matches
from reports.stats import ADJUSTMENTS, SPREADS, TESTS, Stat
from reports.table import Cell, ReportOptions, Row, Table, adjust_p_values, legend
from reports.training_terms import training_terms
from reports.versus import versus
from results import RunRecord

LAYOUTS = ("negative-transfer", "versus", "table2", "table3", "table4", "table5", "losses")


@dataclass(frozen=True)
class LayoutRow:
    """One row of a paper layout: a label and the variant key filling it (None: nothing stored)."""

    label: str
    method: str
    key: tuple | None
    selector: dict  # the options that pick this row's runs, for the note of an empty cell


def build_tables(records: Iterable[RunRecord], layout: str, dbs: Iterable[str] | None = None,
                 backbone: str | None = None, options: ReportOptions = ReportOptions()) -> list[Table]:
    """The tables of ``layout`` for ``dbs`` (default: every db in ``records``); ``versus`` needs ``options.versus``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {list(LAYOUTS)}")
    if options.spread not in SPREADS or options.test not in TESTS or options.adjust not in ADJUSTMENTS:
        raise ValueError(f"spread must be one of {list(SPREADS)}, test one of {list(TESTS)} and adjust one of "
                         f"{list(ADJUSTMENTS)}")
    blocks = build_blocks(records, dbs, backbone)
    if not blocks:
        what = ", ".join(dbs) if dbs else "any db"
        raise ValueError(f"no completed run of {what}{f' with backbone {backbone}' if backbone else ''} "
                         f"in the store; train some with 'python -m benchmark run ...'")
    if layout == "losses":  # what the runs optimised: no test, nothing to adjust; blocks without a history left out
        tables = [training_terms(b, options) for b in blocks]
        return [t for t in tables if t.rows] or tables[:1]
    if layout in ("negative-transfer", "versus"):
        per_block = negative_transfer if layout == "negative-transfer" else versus
        left_out = [] if layout == "negative-transfer" else without_baseline(blocks, options)
        kept = [b for b in blocks if all(b is not x for x in left_out)] or blocks[:1]  # none has it: the first one says why
        tables = [per_block(b, options) for b in kept]
        for t in tables:
            t.legend += [f"Not shown: {b.db} ({b.label}), which has no completed {options.versus.method} run to "
                         f"compare with." for b in left_out]
        for i, t in enumerate(tables):  # one db under several protocols: keep LaTeX labels unique
            if [u.name for u in tables].count(t.name) > 1:
                t.name += f"_{i + 1}"
    else:
        tables = [{"table2": table2, "table3": table3, "table4": table4, "table5": table5}[layout](blocks, options)]
    return [adjust_p_values(t, options.adjust) for t in tables]


def without_baseline(blocks: list[Block], options: ReportOptions) -> list[Block]:
    """The blocks (db, protocol) of a versus report that hold no run of the baseline's method: they are left
    out with a note, so a store that also holds other backbones or dbs still renders (an error only when no
    block has the method, or when one has it but no variant matches the options)."""
    if options.versus is None or options.versus.method == SINGLE_TASK:
        return []
    return [b for b in blocks if all(r.method != options.versus.method for r in b.runs)]


# ----- the paper's layouts --------------------------------------------------------------------
def expand(spec: RowSpec, variants: list[Variant]) -> list[LayoutRow]:
    """The rows ``spec`` stands for: one per matching variant (sub-labelled), or one empty row."""
    label, method, selector = spec
    found = {v.key: v for v in variants if matches(v.method, v.options, spec)}
    if not found:
        return [LayoutRow(label, method, None, selector)]
    keys = {k for v in found.values() for k in v.options}
    differing = sorted(k for k in keys if len({str(v.options.get(k)) for v in found.values()}) > 1)
    return [LayoutRow(label + (f" [{v.options_text(differing)}]" if differing else ""), method, key,
                      {**selector, **{k: v.options.get(k) for k in differing}})
            for key, v in sorted(found.items(), key=lambda kv: kv[0])]


def _missing(row: LayoutRow, block: Block) -> str:
    """Why ``row`` has nothing in ``block``, naming the filtered options its method was stored with."""
    sel = {k: v for k, v in row.selector.items() if v != ANY}
    text = f"no {row.method} run{' with ' + _pairs(sel) if sel else ''} on {block.db} ({block.label})"
    stored = {k: sorted({str(v.options.get(k)) for v in block.variants() if v.method == row.method}) for k in sel}
    found = "; ".join(f"{k}={'/'.join(vs)}" for k, vs in stored.items() if vs)
    return text + (f" (stored: {found})" if found else "")


def _pairs(options: dict) -> str:
    """``k=v, ...``; a tuple of alternatives reads ``k=a or b``."""
    return ", ".join(f"{k}={' or '.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in options.items())


def _value(row: LayoutRow, block: Block, column: Column | None, options: ReportOptions) -> Stat:
    """The stat of ``row`` in ``column`` of ``block``; an empty stat saying why when there is none."""
    variant = {v.key: v for v in block.variants()}.get(row.key)
    if column is None:
        return Stat("", "", notes=(f"{block.db} has no task with the metrics this column needs",))
    if variant is None:
        return Stat(column.task, column.metric, notes=(_missing(row, block),))
    return column_stat(block, variant, column, options.test)


def _titles(blocks: list[Block]) -> list[str]:
    dbs = [b.db for b in blocks]
    return [b.db if dbs.count(b.db) == 1 else f"{b.db}, {b.label}" for b in blocks]


def _primary(block: Block) -> list[Column]:
    return [c for c in block.columns if c.primary]


def _all_variants(blocks: list[Block]) -> list[Variant]:
    return [v for b in blocks for v in b.variants()]


def _by_db_table(name: str, title: str, lead: list[str], lead_rows: list[tuple[list[str], LayoutRow]],
                 blocks: list[Block], options: ReportOptions) -> Table:
    """Rows x (db, primary metric of each task) columns, as Tables 2 and 3."""
    columns = list(lead)
    groups = [("", len(lead))]
    for block, head in zip(blocks, _titles(blocks)):
        cols = _primary(block)
        columns += [f"{c.task} {METRIC_LABELS.get(c.metric, c.metric)}" for c in cols]
        groups.append((head, len(cols)))
    rows = []
    for texts, row in lead_rows:
        cells = [Cell(t) for t in texts]
        cells += [Cell(stats=(_value(row, b, c, options),)) for b in blocks for c in _primary(b)]
        rows.append(Row(cells, section=texts[0] if len(texts) > 1 else "", method=row.method))
    return Table(name, title, columns, rows, groups, legend(_cv(blocks), options, delta=False),
                 spread=options.spread, alpha=options.alpha)


def table2(blocks: list[Block], options: ReportOptions) -> Table:
    """Kollias et al. (AAAI-24), Table 2: ST, NC MT, S-T NC MT, C MT (DM), C MT (DB) per pairing."""
    variants = _all_variants(blocks)
    rows = [([r.label], r) for spec in LAYOUT_ROWS["table2"] for r in expand(spec, variants)]
    return _by_db_table("table2", "Single-task vs multi-task without and with coupling (Table 2 layout)",
                        ["method"], rows, blocks, options)


def table3(blocks: list[Block], options: ReportOptions) -> Table:
    """Kollias et al. (AAAI-24), Table 3: ablation of the coupling losses under each relatedness source."""
    variants = _all_variants(blocks)
    rows: list[tuple[list[str], LayoutRow]] = []
    repeated = [s for s in LAYOUT_ROWS["table3"] if ANY in s[2].values()]
    for spec in LAYOUT_ROWS["table3"]:
        if spec not in repeated:
            rows += [(["–", r.label], r) for r in expand(spec, variants)]
    for option, value in _values_found(repeated, variants):
        for label, method, selector in repeated:
            spec = (label, method, {**selector, option: value})
            rows += [([str(value), r.label], r) for r in expand(spec, variants)]
    return _by_db_table("table3", "Ablation of the coupling losses per relatedness source (Table 3 layout)",
                        ["relatedness", "method"], rows, blocks, options)


def _values_found(specs: list[RowSpec], variants: list[Variant]) -> list[tuple[str, str]]:
    """(option, value) pairs the "*" rows are repeated for: expected values first, then the rest found."""
    options = list(dict.fromkeys(k for _, _, sel in specs for k, v in sel.items() if v == ANY))
    pairs = []
    for option in options:
        found = {str(v.options[option]) for spec in specs for v in variants if matches(v.method, v.options, spec)}
        expected = [x for x in EXPECTED_VALUES.get(option, ()) if x in found or not found]
        pairs += [(option, x) for x in expected + sorted(found - set(expected))]
    return pairs


def _role_column(block: Block, role: str, metric: str | None = None) -> Column | None:
    """The block's column of the task playing ``role``: ``metric``, or its primary metric."""
    for c in block.columns:
        if c.role == role and (c.metric == metric if metric else c.primary):
            return c
    return None


def table4(blocks: list[Block], options: ReportOptions) -> Table:
    """Kollias et al. (AAAI-24), Table 4: per db and backbone, 2×ST / MT without / MT with coupling, Acc and F1."""
    metrics = [(role, m) for role, ms in TASK_ROLES.items() for m in ms]
    columns = ["db", "backbone", "method"] + [METRIC_LABELS.get(m, m) for _, m in metrics]
    groups = [("", 3)] + [(role, len(ms)) for role, ms in TASK_ROLES.items()]
    rows = []
    for block in blocks:
        variants = block.variants()
        role_columns = [_role_column(block, role, m) for role, m in metrics]
        for spec in LAYOUT_ROWS["table4"]:
            for r in expand(spec, variants):
                cells = [Cell(block.db), Cell(block.label), Cell(r.label)]
                cells += [Cell(stats=(_value(r, block, c, options),)) for c in role_columns]
                rows.append(Row(cells, section=f"{block.db}, {block.label}", method=r.method))
    names = "; ".join(f"{role}: {', '.join(ms)}" for role, ms in TASK_ROLES.items())
    return Table("table4", "Single-task, multi-task without and with coupling per db and backbone (Table 4 layout)",
                 columns, rows, groups, legend(_cv(blocks), options, delta=False) + [f"Metrics: {names}."],
                 spread=options.spread, alpha=options.alpha)


#: Table 5 prints "Accuracy (Classes–Attributes)": class accuracy and the mean per-attribute accuracy.
TABLE5_METRIC = {"classes": "accuracy", "attributes": "accuracy_mean"}


def table5(blocks: list[Block], options: ReportOptions) -> Table:
    """Kollias et al. (AAAI-24), Table 5: methods x dbs, each cell "Accuracy (classes–attributes)"; plugins as extra rows."""
    variants = _all_variants(blocks)
    specs = LAYOUT_ROWS["table5"]
    rows = [r for spec in specs for r in expand(spec, variants)]
    extra = sorted({v.method for v in variants if not any(matches(v.method, v.options, s) for s in specs)})
    rows += [r for method in extra for r in expand((method, method, {}), variants)]
    table_rows = []
    for r in rows:
        cells = [Cell(r.label)]
        for b in blocks:
            cells.append(Cell(stats=tuple(_value(r, b, _role_column(b, role, TABLE5_METRIC[role]), options)
                                          for role in TASK_ROLES)))
        table_rows.append(Row(cells, method=r.method))
    shown = dict.fromkeys(f"{c.task} {c.metric}" for b in blocks for role in TASK_ROLES
                          if (c := _role_column(b, role, TABLE5_METRIC[role])) is not None)
    text = f"Cells read classes–attributes accuracy, as the paper's Table 5 ({', '.join(shown)})."
    return Table("table5", "Methods across dbs (Table 5 layout)", ["method"] + _titles(blocks), table_rows,
                 legend=legend(_cv(blocks), options, delta=False) + [text], spread=options.spread, alpha=options.alpha)


def _cv(blocks: list[Block]) -> bool:
    return any(b.cross_validated for b in blocks)
