"""Figures: written as PNG and PDF, non-empty, with labelled axes, drawing what the store holds."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.image import imread

from reports import build_blocks
from reports.figures import (bar_style, relatedness_figure, relatedness_plot, relative_difference_figure,
                             relative_difference_plot, training_curves_figure, training_curves_plot)
from tests.reports.report_store import record, single_tasks, toy_records


def _history(epochs: int, start: float, extra: bool = False) -> list[dict]:
    out = []
    for e in range(epochs):
        loss = {"classes": 1.0 / (e + 1), "attributes": 0.5 / (e + 1)}
        if extra:
            loss["coupling/dm"] = 0.3 / (e + 1)
        out.append({"epoch": e, "train_loss": loss, "val_score": start + e / 20,
                    "val": {"classes": {"accuracy": start + e / 10}, "attributes": {"f1_mean": start + e / 30}}})
    return out


def _assert_written(paths, tmp_path) -> None:
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    assert all(p.is_file() and p.stat().st_size > 1000 and p.parent == tmp_path for p in paths)
    pixels = imread(next(p for p in paths if p.suffix == ".png"))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and float(np.std(pixels)) > 0.01  # not a blank page


def _labelled(fig) -> None:
    for ax in fig.axes:
        if ax.get_label() != "<colorbar>":
            assert ax.get_xlabel() and ax.get_ylabel(), ax


def test_relative_difference_bars(tmp_path):
    (block,) = build_blocks(toy_records(), ["toy"])
    fig = relative_difference_plot(block)
    _labelled(fig)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "relative difference to single-task (%)"
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names[0] == "no_coupling (n=3)" and "dmsca [relatedness=domain] (n=3)" in names and len(names) == 8
    no_coupling = next(c for c in ax.containers if isinstance(c, BarContainer))  # classes accuracy: below zero
    assert no_coupling.patches[0].get_height() == pytest.approx(100 * (-.05 / .6 - .04 / .62 - .06 / .64) / 3)
    _assert_written(relative_difference_figure(block, tmp_path / "bars"), tmp_path)


@pytest.mark.parametrize("count", [3, 10, 11, 16, 20, 21, 45])
def test_bar_styles_are_all_different(count):
    """Up to 10 series keep matplotlib's default colours (figures drawn before stay byte for byte); more get tab20,
    then tab20 with hatches: no two series look alike."""
    styles = [bar_style(i, count) for i in range(count)]
    keys = {(str(s["color"]), s.get("hatch")) for s in styles}
    assert len(keys) == count
    if count <= 10:
        assert [s["color"] for s in styles] == [f"C{i}" for i in range(count)]


def test_a_method_zoo_gets_a_bar_colour_each(tmp_path):
    """16 methods against single-task (as the zoo on CAD): every bar series has a colour of its own."""
    runs = single_tasks(0, (.60, .50), (.80, .90))
    runs += [record(f"method{i:02d}", 0, {"classes": (.5 + i / 100, .5), "attributes": (.8, .9)}) for i in range(16)]
    (block,) = build_blocks(runs, ["toy"])
    ax = relative_difference_plot(block).axes[0]
    colours = [tuple(c.patches[0].get_facecolor()) for c in ax.containers if isinstance(c, BarContainer)]
    assert len(colours) == 16 and len(set(colours)) == 16


def test_training_curves(tmp_path):
    runs = [record("no_coupling", 0, {"classes": (.6, .5), "attributes": (.8, .9)}, history=_history(4, .5)),
            record("dmsca", 0, {"classes": (.7, .5), "attributes": (.8, .9)}, history=_history(4, .6, extra=True))]
    fig = training_curves_plot(runs, ["no coupling", "coupled"], "toy")
    _labelled(fig)
    top_classes, top_attributes, selection = fig.axes[0], fig.axes[1], fig.axes[2]
    assert top_classes.get_ylabel() == "validation accuracy" and top_attributes.get_ylabel() == "validation f1_mean"
    assert len(selection.get_lines()) == 2 and fig.axes[5].get_legend() is not None  # the coupling term
    _assert_written(training_curves_figure(runs, tmp_path / "curves"), tmp_path)
    with pytest.raises(ValueError, match="none of the chosen runs has a per-epoch history"):
        training_curves_plot([record("no_coupling", 0, {"classes": (.6, .5)})])


def test_relatedness_heat_map(tmp_path):
    matrix = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5]])
    fig = relatedness_plot(matrix, ("cat", "dog"), ("furry", "barks", "tail"), "toy")
    _labelled(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["furry", "barks", "tail"]
    assert ax.images[0].get_array().shape == (2, 3)
    _assert_written(relatedness_figure(matrix, ("cat", "dog"), ("furry", "barks", "tail"), tmp_path / "r"), tmp_path)
    with pytest.raises(ValueError, match="does not match 3 classes x 3 attributes"):
        relatedness_plot(matrix, ("a", "b", "c"), ("x", "y", "z"))
