"""The results page: one self-contained HTML file for a store (inline style and script, figures as
base64 PNG), which opens from the file system with no server and no network.

Per db: the negative-transfer table of each protocol with the paired differences and NT verdicts,
the relative-difference figure, the paper's layouts that have something to compare (Kollias et al.,
AAAI-24, Tables 2-5), training curves per method, the relatedness heat maps the caller could
resolve, and the list of runs (config, status, wall time, links between linked runs, the cause of a
failure). Tables are :func:`reports.layouts.build_tables`' rows drawn by :mod:`reports.html_tables`,
so every number is the one the Markdown, LaTeX and CSV reports print. Tables sort by a click on a
column header; check boxes filter every table row, figure and run by method.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports.compare import Block, build_blocks, variant_label, where
from reports.figures import relatedness_plot, relative_difference_plot, training_curves_plot
from reports.html_assets import CSS, JS
from reports.html_tables import esc, table_html
from reports.layouts import build_tables
from reports.spec import METHOD_ORDER, SHOWN_OPTIONS, TASK_OPTION
from reports.table import ReportOptions, Table
from results import COMPLETED, RunRecord

PAPER_LAYOUTS = ("table2", "table3", "table4", "table5")
DPI, MAX_INCHES = 90, 14.0  # embedded PNGs: screen resolution; larger figures get fewer dots per inch
MAX_CURVE_RUNS = 10  # lines in one training-curve figure (one colour each)
ERROR_CHARS = 200


@dataclass(frozen=True)
class HeatMap:
    """A relatedness matrix p(attribute | class) for a db's section; the caller resolves it from the db,
    which reports cannot open."""

    title: str
    matrix: np.ndarray
    classes: Sequence[str]
    attributes: Sequence[str]


def html_page(records: Iterable[RunRecord], dbs: Sequence[str] | None = None, backbone: str | None = None,
              options: ReportOptions = ReportOptions(), heat_maps: Mapping[str, Sequence[HeatMap] | str] | None = None,
              title: str = "mtlbench results", source: str = "", generated: str = "") -> str:
    """The page for ``records`` (every status: completed runs fill the tables, all are listed).

    Args:
        dbs: the dbs to show, in order (default: every db in ``records``). backbone: only its runs.
        options: how cells aggregate and test, as for the other formats.
        heat_maps: per db, its relatedness heat maps, or a sentence saying why there are none.
        title, source, generated: the page's heading, where the runs came from, when it was made.
    """
    runs = [r for r in records if backbone is None or r.backbone == backbone]
    dbs = list(dict.fromkeys(dbs)) if dbs else sorted({r.db for r in runs})
    runs = [r for r in runs if r.db in dbs]
    ids = (f"t{i}" for i in itertools.count(1))
    body = [_overview(runs, dbs, backbone, options, ids)]
    body += [_db_section(db, [r for r in runs if r.db == db], runs, backbone, options,
                         (heat_maps or {}).get(db, ""), ids) for db in dbs]
    nav = "".join(f'<a href="#{_slug(db)}">{esc(db)}</a>' for db in dbs)
    status = Counter(r.status for r in runs)
    meta = (f"{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(status.items()))}) of {len(dbs)} "
            f"db{'s' if len(dbs) != 1 else ''}{f' with backbone {backbone}' if backbone else ''}"
            + (f" · from {esc(source)}" if source else "") + (f" · generated {esc(generated)}" if generated else ""))
    return "\n".join([
        '<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header class="page"><h1>{esc(title)}</h1><div class="meta">{meta}</div><nav class="dbs">{nav}</nav></header>',
        _method_filter(runs), "<main>", *body, "</main>",
        "<footer>Made by <span class=\"mono\">python -m benchmark report --format html</span> from stored runs; "
        "the numbers are those of the Markdown, LaTeX and CSV reports. Click a column header to sort; the check "
        "boxes show or hide a method's rows, figures and runs.</footer>",
        f"<script>{JS}</script>", "</body></html>"]) + "\n"


def _slug(db: str) -> str:
    return "db-" + re.sub(r"[^A-Za-z0-9_-]+", "-", db)


def method_order(methods: Iterable[str]) -> list[str]:
    """Methods as the tables order them: :data:`METHOD_ORDER`, then the rest by name."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(set(methods), key=lambda m: (rank.get(m, len(rank)), m))


def _method_filter(runs: list[RunRecord]) -> str:
    counts = Counter(r.method for r in runs)
    boxes = "".join(f'<label><input type="checkbox" value="{esc(m)}" checked>{esc(m)} '
                    f'<span class="n">({counts[m]})</span></label>' for m in method_order(counts))
    return (f'<div class="controls" id="method-filter"><span class="label">Methods</span>{boxes}'
            '<button type="button" data-set="all">all</button><button type="button" data-set="none">none</button></div>')


def figure_html(fig: Figure, caption: str, method: str = "") -> str:
    """``fig`` as an embedded PNG (``data:`` URI) in a ``<figure>``."""
    FigureCanvasAgg(fig)
    inches = max(fig.get_size_inches())
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI if inches <= MAX_INCHES else max(30, int(DPI * MAX_INCHES / inches)),
                bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    attrs = f' data-method="{esc(method)}"' if method else ""
    return (f'<figure{attrs}><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def applies(table: Table) -> bool:
    """Whether a paper layout compares something: at least two of its rows hold a value."""
    return sum(any(s.values for c in row.cells for s in c.stats) for row in table.rows) >= 2


def _overview(runs: list[RunRecord], dbs: list[str], backbone: str | None, options: ReportOptions,
              ids: Iterator[str]) -> str:
    """Runs per db and status; with several dbs, the Table 5 layout across them."""
    rows = []
    for db in dbs:
        mine = [r for r in runs if r.db == db]
        status, methods = Counter(r.status for r in mine), method_order(r.method for r in mine)
        rows.append(f'<tr><td><a href="#{_slug(db)}">{esc(db)}</a></td>'
                    + "".join(f'<td class="num" data-sort="{status[s]}">{status[s]}</td>'
                              for s in ("completed", "failed", "running"))
                    + f'<td data-sort="{len(methods)}">{esc(", ".join(methods))}</td>'
                    + f'<td>{esc(", ".join(sorted({r.backbone for r in mine})))}</td></tr>')
    out = ['<section class="overview"><h3>Overview</h3>', '<div class="scroll"><table class="sortable runs-per-db">',
           "<thead><tr>" + "".join(f'<th data-col="{i}">{h}</th>' for i, h in
                                   enumerate(["db", "completed", "failed", "running", "methods", "backbones"]))
           + "</tr></thead><tbody>", *rows, "</tbody></table></div>"]
    completed = [r for r in runs if r.status == COMPLETED]
    if len({r.db for r in completed}) > 1:
        for table in build_tables(completed, "table5", [db for db in dbs if any(r.db == db for r in completed)],
                                  backbone, options):
            out.append(table_html(table, next(ids), "table5"))
    return "\n".join(out + ["</section>"])


def _db_section(db: str, mine: list[RunRecord], every: list[RunRecord], backbone: str | None,
                options: ReportOptions, heat_maps: Sequence[HeatMap] | str, ids: Iterator[str]) -> str:
    completed = [r for r in mine if r.status == COMPLETED]
    out = [f'<section class="db" id="{_slug(db)}"><h2>{esc(db)}</h2>']
    if not completed:
        out.append('<p class="empty">No completed run of this db yet: nothing to compare; its runs are listed below.</p>')
    else:
        blocks = build_blocks(completed, [db], backbone)
        tables = build_tables(completed, "negative-transfer", [db], backbone, options)
        for block, table in zip(blocks, tables):
            out += _block_html(block, table, options, ids)
        paper = [(layout, t) for layout in PAPER_LAYOUTS for t in build_tables(completed, layout, [db], backbone, options)
                 if applies(t)]
        if paper:
            out.append(f"<details open><summary>Paper layouts (Kollias et al., AAAI-24): "
                       f"{', '.join(layout.replace('table', 'Table ') for layout, _ in paper)}</summary>")
            out += [table_html(t, next(ids), layout) for layout, t in paper]
            out.append("</details>")
        out.append(_curves(blocks))
    out.append(_heat_maps(db, heat_maps))
    out.append(run_list(mine, every))
    return "\n".join(out + ["</section>"])


def _block_html(block: Block, table: Table, options: ReportOptions, ids: Iterator[str]) -> list[str]:
    out = [table_html(table, next(ids), "negative-transfer")]  # its title names the db and protocol
    if any(not v.is_reference for v in block.variants()):
        out.append(figure_html(relative_difference_plot(block, options.spread),
                               f"Relative difference to single-task per task on {block.db} ({block.label}), "
                               f"primary metrics, test split; below zero is negative transfer."))
    return out


def curve_runs(block: Block) -> list[tuple[str, str, list[RunRecord], list[str]]]:
    """Per method variant with per-epoch histories: (method, title, runs, labels), at most
    :data:`MAX_CURVE_RUNS` runs each (single-task: both tasks' runs)."""
    out = []
    variants = block.variants()
    for v in variants:
        runs = sorted((r for r in v.runs if r.history), key=lambda r: (str(r.method_options.get(TASK_OPTION, "")),
                                                                        -1 if r.fold is None else r.fold, r.seed))
        if not runs:
            continue
        shown = runs[:MAX_CURVE_RUNS]
        labels = [(f"{r.method_options[TASK_OPTION]}, " if v.is_reference else "") + where(r) for r in shown]
        more = f" (first {len(shown)} of {len(runs)} runs)" if len(runs) > len(shown) else ""
        out.append((v.method, f"{variant_label(v, variants)} on {block.db} ({block.label}){more}", shown, labels))
    return out


def _curves(blocks: list[Block]) -> str:
    figures = [figure_html(training_curves_plot(runs, labels, title), f"Training curves: {title}. Top: validation "
                           "primary metric per epoch (the chosen epoch circled); bottom: training loss per term.", method)
               for block in blocks for method, title, runs, labels in curve_runs(block)]
    if not figures:
        return '<p class="empty">No per-epoch history stored: no training curves.</p>'
    return (f"<details><summary>Training curves per method ({len(figures)} figures)</summary>"
            f'<div class="figures">{"".join(figures)}</div></details>')


def _heat_maps(db: str, heat_maps: Sequence[HeatMap] | str) -> str:
    if isinstance(heat_maps, str):
        why = heat_maps or "not resolved for this page"
        return f'<p class="empty">Relatedness heat map: {esc(why)}.</p>'
    figures = [figure_html(relatedness_plot(h.matrix, h.classes, h.attributes, h.title), h.title) for h in heat_maps]
    return (f"<details open><summary>Task relatedness p(attribute | class) ({len(figures)})</summary>"
            f'<div class="figures">{"".join(figures)}</div></details>')


RUN_COLUMNS = ["run", "method", "options", "seed", "fold", "backbone", "status", "best epoch / epochs", "wall time",
               "started", "links", "cause of failure", "config"]


def run_list(mine: list[RunRecord], every: list[RunRecord]) -> str:
    """Every run of a db: what it ran, how it went, and the runs it built on or that built on it."""
    on_page = {r.run_id for r in every}
    used_by: dict[str, list[tuple[str, RunRecord]]] = {}
    for r in every:
        for role, run_id in r.linked_run_ids.items():
            used_by.setdefault(run_id, []).append((role, r))
    rank = {m: i for i, m in enumerate(method_order(r.method for r in mine))}
    shown = shown_run_options(mine)
    rows = [_run_row(r, on_page, used_by.get(r.run_id, []), shown[r.method]) for r in
            sorted(mine, key=lambda r: (rank[r.method], r.seed, -1 if r.fold is None else r.fold, r.started_at))]
    head = "".join(f'<th data-col="{i}">{esc(h)}</th>' for i, h in enumerate(RUN_COLUMNS))
    status = Counter(r.status for r in mine)
    return (f"<details><summary>Runs ({len(mine)}: {', '.join(f'{n} {s}' for s, n in sorted(status.items()))})"
            f'</summary><div class="scroll"><table class="sortable runs"><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(rows) + "</tbody></table></div></details>")


def shown_run_options(runs: list[RunRecord]) -> dict[str, list[str]]:
    """Per method, the hyperparameters its run list shows: the task, :data:`SHOWN_OPTIONS`, and those
    that differ between its runs (every one is in the run's config and the cell's tooltip)."""
    out = {}
    for method in {r.method for r in runs}:
        mine = [r.method_options for r in runs if r.method == method]
        keys = {k for options in mine for k in options}
        differ = {k for k in keys if len({str(options.get(k)) for options in mine}) > 1}
        out[method] = sorted(k for k in keys if k in differ or k == TASK_OPTION or k in SHOWN_OPTIONS)
    return out


def _run_link(run_id: str, on_page: set[str]) -> str:
    if run_id in on_page:
        return f'<a class="mono" href="#run-{esc(run_id)}" title="{esc(run_id)}">{esc(run_id[:10])}</a>'
    return f'<span class="mono" title="{esc(run_id)}: not in this page">{esc(run_id[:10])}</span>'


def _run_row(r: RunRecord, on_page: set[str], used_by: list[tuple[str, RunRecord]], shown: list[str]) -> str:
    every = ", ".join(f"{k}={v}" for k, v in sorted(r.method_options.items()))
    options = ", ".join(f"{k}={r.method_options[k]}" for k in shown if k in r.method_options)
    epochs = r.config.get("epochs")
    best = "–" if r.best_epoch is None else str(r.best_epoch)
    wall = "–" if r.wall_time_s is None else f"{r.wall_time_s:.1f} s"
    if r.links and r.total_wall_time_s is not None:
        wall += f" ({r.total_wall_time_s:.1f} s with linked runs)"
    links = [f"{esc(role)}: {_run_link(run_id, on_page)}" for role, run_id in r.linked_run_ids.items()]
    links += [f"{esc(role)} of {_run_link(other.run_id, on_page)} ({esc(other.method)})" for role, other in used_by]
    error = (r.error or "").strip().splitlines()[0] if r.error else ""
    short = error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS - 1] + "…"
    cfg = r.config
    brief = " · ".join(f"{label} {cfg[k]}" for k, label in (("epochs", "epochs"), ("batch_size", "batch"), ("lr", "lr"),
                                                            ("image_size", "px")) if k in cfg)
    config = (f"<details><summary>{esc(brief or 'config')}</summary>"
              f'<pre class="config">{esc(json.dumps(cfg, indent=1, sort_keys=True, default=str))}</pre></details>')
    cells = [(r.run_id, f'<span class="mono" title="{esc(r.run_id)}">{esc(r.run_id[:10])}</span>'),
             (r.method, esc(r.method)), (options, f'<span title="{esc(every)}">{esc(options)}</span>'),
             (r.seed, r.seed),
             ("" if r.fold is None else r.fold, "–" if r.fold is None else r.fold), (r.backbone, esc(r.backbone)),
             (r.status, f'<span class="badge {esc(r.status)}">{esc(r.status)}</span>'),
             ("" if r.best_epoch is None else r.best_epoch, f"{best} / {epochs if epochs is not None else '–'}"),
             ("" if r.wall_time_s is None else r.wall_time_s, wall.replace(" s", "\u00a0s")),
             (r.started_at, f'<span title="{esc(r.started_at)}">{esc(r.started_at[:16].replace("T", " "))}</span>'),
             (len(links) or "", "<br>".join(links)),
             (short, f'<span class="error" title="{esc((r.error or "")[:2000])}">{esc(short)}</span>' if short else ""),
             (brief, config)]
    tds = "".join(f'<td data-sort="{esc(key)}">{text}</td>' for key, text in cells)
    return f'<tr id="run-{esc(r.run_id)}" data-method="{esc(r.method)}">{tds}</tr>'
