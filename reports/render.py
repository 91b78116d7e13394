"""Rendering: one :class:`~reports.table.Table` to Markdown (tabulate), LaTeX (booktabs), CSV or JSON.

Every format reads the same rows. Markdown and LaTeX draw cells as ``mean ± spread``, the paired
difference where the table shows it, a marker where a value is worse than single-task (▼, or
``$\\downarrow$`` in LaTeX), a marker where the paired test is significant (``*``), the run count
(in the caption when every value rests on the same number of runs) and a footnote number where a
cell is empty or partly filled, the footnote saying why. CSV and JSON are long form: one line per
value, with every number unrounded.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable

from tabulate import tabulate

from reports.stats import Stat
from reports.table import Cell, Table

FORMATS = ("markdown", "latex", "csv", "json")
SUFFIXES = {"markdown": "md", "latex": "tex", "csv": "csv", "json": "json"}
DIGITS, PERCENT_DIGITS = 3, 2


@dataclass(frozen=True)
class Style:
    """How one format draws the parts of a cell."""

    pm: str
    worse: str
    sig: str
    empty: str
    minus: str
    parts: str
    note: Callable[[int], str]
    runs: Callable[[str], str]
    escape: Callable[[str], str]


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "–": "--", "▼": r"$\downarrow$",
                  "≥": r"$\geq$", "<": r"$<$", ">": r"$>$"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the few non-ASCII symbols we use spelled out."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


MARKDOWN = Style(" ± ", "▼", "*", "–", "-", " – ", lambda k: f" [{k}]", lambda s: f" ({s})", lambda s: s)
LATEX = Style(r" $\pm$ ", r"$\downarrow$", r"$^{*}$", "--", "$-$", " -- ", lambda k: rf"\textsuperscript{{{k}}}",
              lambda s: rf" {{\scriptsize ({s})}}", latex_escape)


def _number(x: float, style: Style, digits: int, signed: bool = False) -> str:
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", style.minus, 1) if text.startswith("-") else text


def stat_text(stat: Stat, table: Table, style: Style, per_cell_n: bool, notes: list[str]) -> str:
    """One value: mean ± spread, (Δ), markers, run count, footnotes."""
    refs = "".join(style.note(notes.index(n) + 1) for n in stat.notes)
    if not stat.values:
        return style.empty + refs
    digits = PERCENT_DIGITS if stat.unit else DIGITS
    unit = style.escape(stat.unit)
    text = _number(stat.mean, style, digits) + unit
    spread = stat.spread(table.spread)
    if spread is not None:
        text += style.pm + _number(spread, style, digits) + unit
    if table.show_delta and stat.delta is not None:
        text += f" ({_number(stat.delta, style, digits, signed=True)})"
    marks = (style.worse if stat.worse else "") + (style.sig if stat.significant(table.alpha) else "")
    text += f" {marks}" if marks else ""
    if per_cell_n:
        paired = f", {stat.n_pairs} paired" if table.show_delta and stat.n_pairs not in (0, stat.n) else ""
        text += style.runs(f"n={stat.n}{paired}")
    return text + refs


def cell_text(cell: Cell, table: Table, style: Style, per_cell_n: bool, notes: list[str]) -> str:
    refs = "".join(style.note(notes.index(n) + 1) for n in cell.notes)
    if cell.stats and not any(s.values for s in cell.stats):  # one dash for an empty cell, however many parts
        why = dict.fromkeys(n for s in cell.stats for n in s.notes)
        return style.empty + "".join(style.note(notes.index(n) + 1) for n in why) + refs
    if cell.stats:
        return style.parts.join(stat_text(s, table, style, per_cell_n, notes) for s in cell.stats) + refs
    return (style.escape(cell.text) or (style.empty if cell.notes else "")) + refs


def flat_headers(table: Table) -> list[str]:
    """Column headers with their group label in front (``synthetic: classes Acc``)."""
    owners = [label for label, span in table.groups for _ in range(span)]
    owners += [""] * (len(table.columns) - len(owners))
    return [f"{g}: {c}" if g else c for g, c in zip(owners, table.columns)]


def caption(table: Table, style: Style) -> list[str]:
    """Title and legend sentences, markers drawn in ``style``, and where the run counts are."""
    n = table.uniform_n()
    runs = f"Every value rests on n = {n} runs." if n else "In brackets after a value: n, the runs it rests on."
    lines = [table.title + "."] + table.legend + [runs]
    out = []
    for line in lines:
        escaped = style.escape(line.replace("{worse}", "\0W").replace("{sig}", "\0S"))
        out.append(escaped.replace("\0W", style.worse.strip()).replace("\0S", style.sig.strip()))
    return out


def _body(table: Table, style: Style) -> tuple[list[list[str]], list[str]]:
    notes, per_cell_n = table.notes(), table.uniform_n() is None
    return [[cell_text(c, table, style, per_cell_n, notes) for c in row.cells] for row in table.rows], notes


def to_markdown(table: Table) -> str:
    rows, notes = _body(table, MARKDOWN)
    body = tabulate(rows, headers=flat_headers(table), tablefmt="github", disable_numparse=True)
    head, *rest = caption(table, MARKDOWN)
    lines = [f"### {head}", "", body, ""] + rest + [f"[{k}] {n}" for k, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def _value_columns(table: Table) -> list[bool]:
    return [any(len(r.cells) > i and r.cells[i].stats for r in table.rows) for i in range(len(table.columns))]


def to_latex(table: Table) -> str:
    """A ``table`` environment with a booktabs ``tabular``; needs ``\\usepackage{booktabs}``."""
    rows, notes = _body(table, LATEX)
    align = "".join("c" if v else "l" for v in _value_columns(table))
    out = ["% generated by mtlbench (python -m benchmark report); needs \\usepackage{booktabs}",
           "\\begin{table}[t]", "\\centering", f"\\caption{{{' '.join(caption(table, LATEX))}}}",
           f"\\label{{tab:{table.name}}}", f"\\begin{{tabular}}{{{align}}}", "\\toprule"]
    if any(label for label, _ in table.groups):
        spans, rules, start = [], [], 1
        for label, span in table.groups:
            spans.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}" if label else " & ".join([""] * span))
            rules += [f"\\cmidrule(lr){{{start}-{start + span - 1}}}"] if label else []
            start += span
        out += [" & ".join(spans) + " \\\\", " ".join(rules)]
    out += [" & ".join(latex_escape(c) for c in table.columns) + " \\\\", "\\midrule"]
    for i, (row, text) in enumerate(zip(table.rows, rows)):
        if i and row.section != table.rows[i - 1].section:
            out.append("\\midrule")
        out.append(" & ".join(text) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if notes:
        out += ["\\par\\smallskip\\footnotesize"] + [f"\\textsuperscript{{{k}}}{latex_escape(n)}\\\\"
                                                    for k, n in enumerate(notes, 1)]
    return "\n".join(out + ["\\end{table}"]) + "\n"


LONG_FIELDS = ["column", "part", "task", "metric", "mean", "spread", "spread_kind", "n", "delta", "n_pairs",
               "p_value", "p_adjust", "worse_than_single_task", "significant", "notes"]


def long_records(table: Table) -> list[dict[str, Any]]:
    """One record per value: the row's label cells by header, then the value's numbers unrounded."""
    is_value, headers = _value_columns(table), flat_headers(table)
    records = []
    for row in table.rows:
        labels = {headers[i]: c.text for i, c in enumerate(row.cells) if not is_value[i]}
        for i, cell in enumerate(row.cells):
            for part, s in enumerate(cell.stats):
                records.append({"table": table.name, **labels, "column": headers[i], "part": part, "task": s.task,
                                "metric": s.metric, "mean": s.mean, "spread": s.spread(table.spread),
                                "spread_kind": table.spread, "n": s.n, "delta": s.delta, "n_pairs": s.n_pairs,
                                "p_value": s.p_value, "p_adjust": table.p_adjust, "worse_than_single_task": s.worse,
                                "significant": s.significant(table.alpha), "notes": "; ".join(s.notes + cell.notes)})
    return records


def to_csv(tables: list[Table]) -> str:
    records = [r for t in tables for r in long_records(t)]
    fields = list(dict.fromkeys(k for r in records for k in r)) or ["table"] + LONG_FIELDS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
    return out.getvalue()


def render(tables: Table | list[Table], fmt: str) -> str:
    """``tables`` as Markdown, LaTeX, CSV or JSON text."""
    tables = [tables] if isinstance(tables, Table) else tables
    if fmt == "markdown":
        return "\n".join(to_markdown(t) for t in tables)
    if fmt == "latex":
        return "\n".join(to_latex(t) for t in tables)
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "json":
        return json.dumps([r for t in tables for r in long_records(t)], indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
