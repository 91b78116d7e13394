"""A table before rendering: one list of rows of cells, which every format renders from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from reports.spec import Baseline
from reports.stats import ADJUSTMENTS, MIN_PAIRS, SPREADS, TESTS, Stat, holm


@dataclass(frozen=True)
class Cell:
    """A label, or one or more aggregated values (Table 5 holds two: classes–attributes).

    ``notes`` say why the cell is empty or rests on fewer runs than the row has.
    """

    text: str = ""
    stats: tuple[Stat, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def is_value(self) -> bool:
        return bool(self.stats)


@dataclass
class Row:
    """One row; rows of one ``section`` sit together and a rule separates sections.

    ``method`` is the registry name of the method the row stands for ("" for none): the HTML page
    filters rows by it; the text formats do not show it.
    """

    cells: list[Cell]
    section: str = ""
    method: str = ""


@dataclass
class Table:
    """Headers, rows and caption of one table, independent of the output format.

    Args:
        name: file stem when written. title: first caption sentence.
        columns: one header per column. groups: optional header spans above the columns, as
            (label, number of columns); a blank label spans label columns.
        rows: the rows. legend: caption sentences after the title (spread, markers, the test).
        show_delta: value cells also show the paired difference to single-task.
        spread: how ± is computed (a key of ``reports.stats.SPREADS``). alpha: the test's level.
    """

    name: str
    title: str
    columns: list[str]
    rows: list[Row]
    groups: list[tuple[str, int]] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    show_delta: bool = False
    spread: str = "std"
    alpha: float = 0.05
    p_adjust: str = "none"  # how the p-values were adjusted (reports.stats.ADJUSTMENTS); CSV/JSON carry it per value

    def stats(self) -> list[Stat]:
        return [s for row in self.rows for cell in row.cells for s in cell.stats if s.values]

    def uniform_n(self) -> int | None:
        """The run count every filled value rests on, when it is one number (then the caption says it)."""
        counts = {s.n for s in self.stats()}
        partly_paired = any(s.n_pairs not in (0, s.n) for s in self.stats())
        return counts.pop() if len(counts) == 1 and not partly_paired else None

    def notes(self) -> list[str]:
        """Every distinct note, in order of first appearance; footnote k is ``notes()[k - 1]``."""
        found: dict[str, None] = {}
        for row in self.rows:
            for cell in row.cells:
                found.update(dict.fromkeys(cell.notes))
                for s in cell.stats:
                    found.update(dict.fromkeys(s.notes))
        return list(found)


@dataclass(frozen=True)
class ReportOptions:
    """How cells aggregate and test.

    Args:
        spread: ± convention, a key of ``reports.stats.SPREADS`` (default sample std).
        test: paired test, a key of ``reports.stats.TESTS`` (default paired t-test).
        alpha: level below which a cell gets the significance marker.
        per_run: negative-transfer table with one row per run instead of per method.
        versus: the ``versus`` layout's baseline, the variant every other is compared with.
        adjust: multiple-testing adjustment of each table's p-values, a key of ``reports.stats.ADJUSTMENTS``
            (default ``none``, the per-cell test; ``holm`` controls the family-wise error over the table).
    """

    spread: str = "std"
    test: str = "ttest"
    alpha: float = 0.05
    per_run: bool = False
    versus: Baseline | None = None
    adjust: str = "none"


def adjust_p_values(table: Table, adjust: str) -> Table:
    """``table`` with the p-values of its tested cells adjusted together (``reports.stats.ADJUSTMENTS``) and a
    caption sentence saying how and over how many tests; ``none`` or a table without a test leaves it as it is.

    The family is every cell of the table that carries a p-value (every row and column, Δm and a reference row
    such as no_coupling's included): a table is what a reader scans for markers, so it is what the family-wise
    error is controlled over. It grows with the rows a table shows, so the same cell can lose its marker in a
    table that holds more rows.
    """
    if adjust not in ADJUSTMENTS:
        raise ValueError(f"unknown p-value adjustment {adjust!r}; choose one of {list(ADJUSTMENTS)}")
    tested = [s.p_value for row in table.rows for c in row.cells for s in c.stats if s.p_value is not None]
    if adjust == "none" or not tested:
        return table
    adjusted = iter(holm(tested))

    def cell(c: Cell) -> Cell:
        stats = tuple(replace(s, p_value=next(adjusted)) if s.p_value is not None else s for s in c.stats)
        return replace(c, stats=stats)

    rows = [replace(row, cells=[cell(c) for c in row.cells]) for row in table.rows]
    legend = table.legend + [f"p-values {ADJUSTMENTS[adjust]} ({len(tested)} tests): a marked cell is significant "
                             f"with the family-wise error rate held at {table.alpha:g}."]
    return replace(table, rows=rows, legend=legend, p_adjust=adjust)


def legend(cross_validated: bool, options: ReportOptions, delta: bool) -> list[str]:
    """Caption sentences: what ± is, the markers and the paired test; ``{worse}``/``{sig}`` stand for the
    markers, which each format draws its own way."""
    over = "seeds and folds" if cross_validated else "seeds"
    lines = [f"Mean ± {SPREADS[options.spread]} over {over}, test split."]
    if delta:
        lines.append("In brackets: mean paired difference to the single_task run of the same task with the same "
                     "protocol (db, backbone, seed, fold, epochs, ...).")
    lines.append("{worse}: worse than single-task (mean paired difference).")
    lines.append(f"{{sig}}: p < {options.alpha:g}, {TESTS[options.test]} of the differences to single-task over "
                 f"seeds/folds; tested where a cell has at least {MIN_PAIRS} pairs.")
    return lines
