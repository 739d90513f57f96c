"""The dashboard's SVG charts: log axes where the space is loguniform, every child drawn, the best marked."""

from __future__ import annotations

import re

import pytest

from service.api.ui.charts import Axis, Trial, line_chart, parallel, scatter

TRIALS = [Trial(index=i, params={"--lr": lr, "--opt": opt}, metric=m, best=i == 2, stopped=i == 0)
          for i, (lr, opt, m) in enumerate([(0.001, "sgd", 0.5), (0.01, "adam", 0.7), (0.1, "adam", 0.9)])]


def test_a_log_axis_spaces_decades_evenly_and_labels_them() -> None:
    axis = Axis.fit([0.001, 0.01, 0.1], log=True)
    assert axis.fraction(0.01) - axis.fraction(0.001) == pytest.approx(axis.fraction(0.1) - axis.fraction(0.01))
    labels = [label for _, label in axis.ticks()]
    assert {"0.001", "0.01", "0.1"} <= set(labels)
    assert all(0 <= frac <= 1 for frac, _ in axis.ticks())


def test_text_values_get_a_categorical_axis() -> None:
    axis = Axis.fit(["sgd", "adam", "sgd"])
    assert axis.categories == ("sgd", "adam")
    assert axis.fraction("sgd") < axis.fraction("adam")


def test_scatter_draws_every_scored_child_and_marks_the_best() -> None:
    svg = scatter("accuracy", "--lr", [*TRIALS, Trial(index=3, params={"--lr": 0.05}, metric=None)], log=True)
    assert svg.count("<circle") == 3
    assert svg.count('class="best"') == 1
    assert svg.count('class="stopped"') == 1
    assert 'aria-label="accuracy against --lr (log scale)"' in svg


def test_parallel_coordinates_have_an_axis_per_parameter_and_the_metric() -> None:
    svg = parallel("accuracy", ["--lr", "--opt"], {"--lr": True, "--opt": False}, TRIALS)
    assert svg.count('class="axis"') == 3
    assert svg.count("<polyline") == 3
    assert svg.rfind('class="best"') > svg.rfind('class="series"')  # the best line is drawn on top


def test_labels_are_escaped_and_long_histories_are_thinned() -> None:
    svg = line_chart("<b>loss</b>", [(float(i), 1 / (i + 1)) for i in range(5000)])
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    points = re.search(r'points="([^"]+)"', svg)
    assert points
    assert len(points.group(1).split()) <= 401


def test_a_confusion_matrix_has_a_cell_per_pair_shaded_by_its_share_of_the_row() -> None:
    from service.api.ui.charts import confusion_matrix

    svg = confusion_matrix([0, 1, 2], [[8, 2, 0], [0, 10, 0], [1, 0, 4]], title="Confusion matrix: accuracy 0.88")
    assert svg.count('<g class="cell hit">') == 3
    assert svg.count('<g class="cell miss">') == 6
    assert "<title>true 0, predicted 1: 2</title>" in svg
    shades = [float(v) for v in re.findall(r'fill-opacity="([0-9.]+)"', svg)]
    assert shades[0] == pytest.approx(0.08 + 0.92 * 0.8)  # 8 of row 0's 10
    assert shades[2] == pytest.approx(0.08)  # an empty cell keeps a faint shade, so the grid stays visible
    assert 'aria-label="Confusion matrix: accuracy 0.88"' in svg
