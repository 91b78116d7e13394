"""Figures stay readable: whole-number epoch ticks on training curves, heat maps of bounded size with a slim colour bar."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from reports.figures import COLORBAR_INCHES, relatedness_figure, relatedness_plot, training_curves_plot
from tests.reports.report_store import record


def test_training_curves_have_whole_epoch_ticks():
    history = [{"epoch": e, "train_loss": {"classes": 1.0 / (e + 1)}, "val": {"classes": {"accuracy": .5 + .1 * e}},
                "val_score": .5 + .1 * e} for e in range(3)]  # three epochs: matplotlib's own ticks are 0, 0.25, ...
    fig = training_curves_plot([record("no_coupling", 0, {"classes": (.6, .5)}, history=history)])
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_large_heat_map_is_bounded_and_its_colour_bar_slim(tmp_path):
    n, m = 3000, 40  # as tall as CelebA's identities need: the figure is capped, not the matrix
    matrix = np.random.default_rng(0).random((n, m))
    png, _ = relatedness_figure(matrix, [f"id{i}" for i in range(n)], [f"attr{j}" for j in range(m)], tmp_path / "big")
    width, height = Image.open(png).size
    assert width <= 2200 and height <= 1600
    fig = relatedness_plot(matrix, [f"id{i}" for i in range(n)], [f"attr{j}" for j in range(m)])
    FigureCanvasAgg(fig).draw()
    (heat,) = fig.axes
    (bar,) = heat.child_axes  # the colour bar sits in its own slot beside the map
    inches = fig.get_figwidth()
    assert bar.get_position().width * inches <= COLORBAR_INCHES * 1.01  # the colour bar: a slim strip
    assert heat.get_position().width * inches > 20 * bar.get_position().width * inches


def test_a_small_heat_map_keeps_its_values_and_a_slim_bar():
    fig = relatedness_plot(np.array([[0.1, 0.9], [0.5, 0.2]]), ["a", "b"], ["x", "y"])
    FigureCanvasAgg(fig).draw()
    (heat,) = fig.axes
    (bar,) = heat.child_axes  # the colour bar sits in its own slot beside the map
    assert len(heat.texts) == 4
    assert bar.get_position().width < 0.25 * heat.get_position().width
