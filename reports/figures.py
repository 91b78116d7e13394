"""Figures from stored runs (matplotlib, Agg canvas; each saved as PNG and PDF).

- :func:`relative_difference_figure`: per task, the relative difference of each method to
  single-task; below zero is negative transfer (Kollias et al., AAAI-24, Sec. 1).
- :func:`training_curves_figure`: per task, the validation metric and the training loss per epoch.
- :func:`relatedness_figure`: a relatedness matrix p(attribute | class) as a heat map (Sec. 3.1).

Figures are drawn on their own :class:`~matplotlib.figure.Figure` with the Agg canvas, never through
pyplot's global state, so drawing works headless and leaves the caller's backend alone.
"""

from __future__ import annotations

import textwrap

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.compare import Block, relative_differences, variant_label, where
from reports.stats import spread
from results import RunRecord

log = logging.getLogger(__name__)
FORMATS = ("png", "pdf")
#: Hatches of the bar series past the 20 colours of tab20.
HATCHES = ("//", "..", "xx", "\\\\")


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``fig`` as ``stem.png`` (150 dpi) and ``stem.pdf``; returns the paths.

    The PDF carries no creation date, so redrawing an unchanged figure leaves its file byte for byte as it was
    (a committed figure changes only when what it shows does)."""
    FigureCanvasAgg(fig)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(f".{fmt}") for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def bar_style(index: int, count: int) -> dict[str, Any]:
    """Colour (and hatch) of bar series ``index`` of ``count``, none two alike: matplotlib's default cycle up to
    10 series, its 20-colour ``tab20`` up to 20, then ``tab20`` again with hatching (a method zoo has 16 or more)."""
    if count <= 10:
        return {"color": f"C{index}"}
    style: dict[str, Any] = {"color": matplotlib.colormaps["tab20"](index % 20)}
    if index >= 20:
        style["hatch"] = HATCHES[(index // 20 - 1) % len(HATCHES)]
    return style


def relative_difference_figure(block: Block, stem: Path, spread_kind: str = "std") -> list[Path]:
    """:func:`relative_difference_plot` saved as ``stem.png`` and ``stem.pdf``."""
    return save(relative_difference_plot(block, spread_kind), stem)


def relative_difference_plot(block: Block, spread_kind: str = "std") -> Figure:
    """Grouped bars: x = tasks (primary metric), one bar per method = mean relative difference (%)."""
    columns = [c for c in block.columns if c.primary]
    variants = block.variants()
    others = [v for v in variants if not v.is_reference]
    fig = Figure(figsize=(min(14.0, 4.0 + 0.45 * len(columns) * max(1, len(others))), 3.8))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(others))
    for i, variant in enumerate(others):
        diffs = [relative_differences(block, variant, c) for c in columns]
        means = [float(np.mean(d)) if d else np.nan for d in diffs]
        errors = [spread(d, spread_kind) or np.nan for d in diffs]  # NaN: no error bar on a single run
        x = np.arange(len(columns)) - 0.4 + width * (i + 0.5)
        runs = max((len(d) for d in diffs), default=0)
        ax.bar(x, means, width, yerr=errors, capsize=3, label=f"{variant_label(variant, variants)} (n={runs})",
               **bar_style(i, len(others)))
    ax.axhline(0.0, color="black", linewidth=0.8)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -1.0), max(high, 1.0))
    ax.axhspan(ax.get_ylim()[0], 0.0, color="tab:red", alpha=0.07, zorder=0)
    ax.text(0.01, 0.02, "negative transfer (worse than single-task)", transform=ax.transAxes, fontsize=8,
            color="tab:red", va="bottom")
    ax.set_xticks(np.arange(len(columns)), [f"{c.task}\n({c.metric})" for c in columns])
    ax.set_xlabel("task (primary metric, test split)")
    ax.set_ylabel("relative difference to single-task (%)")
    title = f"{block.db} ({block.label}): change vs single-task, mean ± {spread_kind} over runs"
    ax.set_title(textwrap.fill(title, 60), fontsize=9)  # long backbone/weights labels wrap instead of running off
    if others:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no multi-task run", transform=ax.transAxes, ha="center")
    return fig


def _primary_metric(run: RunRecord, task: str) -> str | None:
    return next((m.metric for m in run.metrics if m.task == task and m.primary), None)


def _curve_tasks(runs: Sequence[RunRecord]) -> list[str]:
    return list(dict.fromkeys(t for r in runs for h in r.history for t in h.get("val", {})))


def training_curves_figure(runs: Sequence[RunRecord], stem: Path, labels: Sequence[str] | None = None,
                           title: str = "") -> list[Path]:
    """:func:`training_curves_plot` saved as ``stem.png`` and ``stem.pdf``."""
    return save(training_curves_plot(runs, labels, title), stem)


def training_curves_plot(runs: Sequence[RunRecord], labels: Sequence[str] | None = None, title: str = "") -> Figure:
    """Per task: validation primary metric (top) and training loss (bottom) per epoch, one line per run.

    A last column shows the validation selection score and any loss terms that are not task losses
    (coupling, distillation, ...). The chosen epoch of each run is marked with a dot.
    """
    tasks = _curve_tasks(runs)
    if not tasks:
        raise ValueError("none of the chosen runs has a per-epoch history to draw")
    labels = list(labels) if labels is not None else [f"{r.method} ({where(r)})" for r in runs]
    fig = Figure(figsize=(3.4 * (len(tasks) + 1), 5.6))
    axes = fig.subplots(2, len(tasks) + 1, squeeze=False)
    for i, (run, label) in enumerate(zip(runs, labels)):
        colour = f"C{i % 10}"  # one colour per run across every panel
        for j, task in enumerate(tasks):
            _draw_task(axes[0][j], axes[1][j], run, task, colour)
        _draw_extra(axes[0][-1], axes[1][-1], run, tasks, label, colour)
    for j, task in enumerate(tasks):
        metric = next((m for r in runs if (m := _primary_metric(r, task))), "metric")
        axes[0][j].set(title=task, xlabel="epoch", ylabel=f"validation {metric}")
        axes[1][j].set(xlabel="epoch", ylabel=f"training loss ({task})")
    axes[0][-1].set(title="model selection", xlabel="epoch", ylabel="validation score (mean of primaries)")
    axes[1][-1].set(xlabel="epoch", ylabel="other loss terms")
    for ax in axes.flat:  # epochs are whole numbers: no tick at 0.5
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not axes[1][-1].lines:
        axes[1][-1].text(0.5, 0.5, "no loss terms\nbesides the tasks'", transform=axes[1][-1].transAxes,
                         ha="center", va="center", fontsize=8)
    handles, names = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(3, max(1, len(names))), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.035 * (len(names) // 3)))
    fig.suptitle(title or "training curves", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _draw_task(top: Axes, bottom: Axes, run: RunRecord, task: str, colour: str) -> None:
    """One run's validation metric (the chosen epoch circled) and training loss for ``task``."""
    metric = _primary_metric(run, task)
    points = [(h["epoch"], h["val"][task][metric]) for h in run.history
              if metric and metric in h.get("val", {}).get(task, {})]
    if points:
        top.plot(*zip(*points), marker=".", color=colour)
        chosen = [v for e, v in points if e == run.best_epoch]
        if chosen:
            top.plot([run.best_epoch], chosen, "o", color=colour, markersize=8, markerfacecolor="none")
    losses = [(h["epoch"], h["train_loss"][task]) for h in run.history if task in h.get("train_loss", {})]
    if losses:
        bottom.plot(*zip(*losses), marker=".", color=colour)


def _draw_extra(top: Axes, bottom: Axes, run: RunRecord, tasks: list[str], label: str, colour: str) -> None:
    """The run's validation selection score (labelled: the figure legend) and non-task loss terms."""
    scores = [(h["epoch"], h["val_score"]) for h in run.history if "val_score" in h]
    top.plot(*zip(*scores) if scores else ([], []), marker=".", color=colour, label=label)
    terms = dict.fromkeys(k for h in run.history for k in h.get("train_loss", {}) if k not in tasks)
    for style, term in zip(("-", "--", ":", "-."), terms):
        points = [(h["epoch"], h["train_loss"][term]) for h in run.history if term in h.get("train_loss", {})]
        bottom.plot(*zip(*points), style, color=colour, label=term)
    if terms:  # one legend entry per term, however many runs drew it
        handles, names = bottom.get_legend_handles_labels()
        unique = dict(zip(names, handles))
        bottom.legend(list(unique.values()), list(unique), fontsize=7)


def relatedness_figure(matrix: np.ndarray, classes: Sequence[str], attributes: Sequence[str], stem: Path,
                       title: str = "") -> list[Path]:
    """:func:`relatedness_plot` saved as ``stem.png`` and ``stem.pdf``."""
    return save(relatedness_plot(matrix, classes, attributes, title), stem)


#: Heat-map size caps (inches; at 150 dpi at most 2100 x 1500 pixels) and the most labels drawn on an axis.
MAX_WIDTH, MAX_HEIGHT, MAX_TICKS = 14.0, 10.0, 60
COLORBAR_INCHES = 0.15  # a slim colour bar, however wide the map


def relatedness_plot(matrix: np.ndarray, classes: Sequence[str], attributes: Sequence[str], title: str = "") -> Figure:
    """Heat map of R[c, i] = p(attribute i | class c) in [0, 1]; values printed when the matrix is small."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(classes), len(attributes)):
        raise ValueError(f"relatedness matrix {matrix.shape} does not match {len(classes)} classes x "
                         f"{len(attributes)} attributes")
    # capped so CelebA's 10,177 identities give a drawable figure; labels only where they can be read
    fig = Figure(figsize=(min(max(4.0, 1.2 + 0.45 * len(attributes)), MAX_WIDTH),
                          min(max(3.0, 1.0 + 0.4 * len(classes)), MAX_HEIGHT)))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest")
    axes_inches = fig.get_figwidth() * (fig.subplotpars.right - fig.subplotpars.left)
    bar = ax.inset_axes((1.02, 0.0, COLORBAR_INCHES / axes_inches, 1.0))  # its own slot: the map keeps its width
    fig.colorbar(image, cax=bar, label="p(attribute | class)")
    if len(attributes) <= MAX_TICKS:
        ax.set_xticks(np.arange(len(attributes)), attributes, rotation=60, ha="right", fontsize=8)
    if len(classes) <= MAX_TICKS:
        ax.set_yticks(np.arange(len(classes)), classes, fontsize=8)
    ax.set_xlabel("attribute")
    ax.set_ylabel("class")
    if matrix.size <= 400:
        for (c, a), value in np.ndenumerate(matrix):
            ax.text(a, c, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if value > 0.6 else "white")
    ax.set_title(title or "task relatedness", fontsize=10)
    return fig
