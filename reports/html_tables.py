"""One :class:`~reports.table.Table` as an HTML ``<table>``, drawn from the same rows as Markdown and LaTeX.

Cell text comes from :func:`reports.render.cell_text` with an HTML :class:`~reports.render.Style`, so
a cell's visible text is the Markdown cell's, character for character (the markers and footnote
numbers are wrapped in elements, not changed; the spaces around ± do not break); only colour, tooltips and sort keys are added. Every
row carries ``data-method`` (the page's method filter), every value cell ``data-sort`` (its first
mean, for sorting by column).
"""

from __future__ import annotations

import html

from reports.render import Style, caption, flat_headers
from reports.render import cell_text as _cell_text
from reports.table import Cell, Table


FOLDED_NOTES = 4  # more notes than this are folded under a summary line


def esc(text: object) -> str:
    """``text`` escaped for HTML element content and attribute values."""
    return html.escape(str(text), quote=True)


def html_style(table_id: str) -> Style:
    """The HTML drawing of a cell's parts; footnote references link to the table's notes.

    ``mean ± spread`` is held together by no-break spaces (and the markers are held to the number they
    mark, in :func:`table_html`), so a narrow column wraps before the paired difference or the run
    count, never inside a value.
    """
    return Style("\u00a0±\u00a0", '<span class="worse" title="worse than single-task">▼</span>',
                 '<span class="sig" title="significant paired test">*</span>', "–", "-", " – ",
                 lambda k: f' <sup class="fn"><a href="#{table_id}-fn{k}">[{k}]</a></sup>',
                 lambda s: f' <span class="n">({esc(s)})</span>', esc)


def _tooltip(cell: Cell, table: Table) -> str:
    """What the numbers rest on: runs, pairs, p-value, for the cell's ``title``."""
    parts = []
    for s in cell.stats:
        if not s.values:
            continue
        text = f"{s.task} {s.metric}: n={s.n}".strip()
        if s.deltas:
            text += f", {s.n_pairs} paired with single-task, mean difference {s.delta:+.4f}"
        if s.p_value is not None:
            text += f", p={s.p_value:.3g}" + ("" if table.p_adjust == "none" else f" ({table.p_adjust}-adjusted)")
        parts.append(text)
    return "; ".join(parts)


def _classes(cell: Cell, table: Table) -> list[str]:
    """``num`` for values; ``worse``/``better`` against single-task, ``sig`` where the test says so."""
    if not cell.stats:
        return []
    compared = [s for s in cell.stats if s.worse is not None and not s.is_reference and not s.unit]
    out = ["num"]
    if any(s.worse for s in compared):
        out.append("worse")
    elif compared:
        out.append("better")
    if any(s.significant(table.alpha) for s in compared):
        out.append("sig")
    return out


def _sort_key(cell: Cell, text: str) -> str:
    """The first value's mean for a value cell (empty sorts last), else the cell's label."""
    if cell.stats:
        mean = next((s.mean for s in cell.stats if s.mean is not None), None)
        return "" if mean is None else repr(mean)
    return cell.text


def table_html(table: Table, table_id: str, kind: str) -> str:
    """``table`` as a sortable ``<table>`` with its caption sentences and numbered notes below it."""
    style = html_style(table_id)
    notes, per_cell_n = table.notes(), table.uniform_n() is None
    head, *rest = caption(table, style)
    out = [f'<div class="table-block" data-table="{esc(table.name)}" data-kind="{esc(kind)}" id="{table_id}">',
           f"<h4>{head}</h4>", '<div class="scroll"><table class="sortable report">', "<thead>"]
    if any(label for label, _ in table.groups):
        out.append("<tr class=\"groups\">" + "".join(f'<th colspan="{span}">{esc(label)}</th>'
                                                     for label, span in table.groups) + "</tr>")
    out.append("<tr>" + "".join(f'<th data-col="{i}" data-header="{esc(flat)}" title="sort by {esc(flat)}">'
                                f"{esc(name)}</th>"
                                for i, (name, flat) in enumerate(zip(table.columns, flat_headers(table)))) + "</tr>")
    out.append("</thead><tbody>")
    for i, row in enumerate(table.rows):
        starts = i > 0 and row.section != table.rows[i - 1].section
        attrs = (f' data-method="{esc(row.method)}"' if row.method else "") + (' class="section-start"' if starts else "")
        out.append(f"<tr{attrs}>")
        for cell in row.cells:
            text = _cell_text(cell, table, style, per_cell_n, notes)
            text = text.replace(" <span class=\"worse\"", "\u00a0<span class=\"worse\"").replace(
                " <span class=\"sig\"", "\u00a0<span class=\"sig\"")  # markers stay with their number
            classes, tip = _classes(cell, table), _tooltip(cell, table)
            out.append(f'<td data-sort="{esc(_sort_key(cell, text))}"'
                       + (f' class="{" ".join(classes)}"' if classes else "")
                       + (f' title="{esc(tip)}"' if tip else "") + f">{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    out.append('<div class="caption">' + " ".join(f"<span>{line}</span>" for line in rest) + "</div>")
    if notes:  # many notes (a sparse layout) fold away; a footnote link opens them
        listing = '<ol class="notes">' + "".join(f'<li id="{table_id}-fn{k}">{esc(n)}</li>'
                                                for k, n in enumerate(notes, 1)) + "</ol>"
        out.append(listing if len(notes) <= FOLDED_NOTES else
                   f'<details class="notes"><summary>{len(notes)} notes: why cells are empty or partly filled'
                   f"</summary>{listing}</details>")
    return "\n".join(out + ["</div>"])
