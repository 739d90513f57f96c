"""Charts as inline SVG, drawn on the server: no script, no library to ship, readable without JS.

A chart is a few dozen elements (at most a few hundred points after thinning), so writing the
markup directly is smaller and faster than any charting bundle, and the browser test can read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 12, 38
MAX_POINTS = 400


@dataclass(frozen=True)
class Axis:
    """Maps data values to pixels; numeric (linear or log) or categorical."""

    low: float
    high: float
    log: bool = False
    categories: tuple[str, ...] = ()

    @classmethod
    def fit(cls, values: Sequence[float | str], *, log: bool = False) -> Axis:
        if any(isinstance(v, str) for v in values):
            return cls(0, 1, categories=tuple(dict.fromkeys(str(v) for v in values)))
        nums = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(float(v))]
        if log:
            nums = [v for v in nums if v > 0]
        if not nums:
            return cls(0, 1, log=log)
        low, high = min(nums), max(nums)
        if low == high:
            low, high = (low / 2, high * 2) if log else (low - 0.5, high + 0.5)
        # A margin, so the extreme points (often the best one) are not cut by the frame.
        if log:
            margin = (high / low) ** 0.05
            return cls(low / margin, high * margin, log=True)
        margin = (high - low) * 0.05
        return cls(low - margin, high + margin)

    def fraction(self, value: float | str) -> float:
        """Where `value` falls, 0..1."""
        if self.categories:
            index = self.categories.index(str(value))
            return (index + 0.5) / len(self.categories)
        v = float(value)
        if self.log:
            return (math.log10(max(v, 1e-300)) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))
        return (v - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        """(fraction, label) pairs for the axis."""
        if self.categories:
            return [((i + 0.5) / len(self.categories), c[:12]) for i, c in enumerate(self.categories)]
        if self.log:
            first, last = math.floor(math.log10(self.low)), math.ceil(math.log10(self.high))
            steps = (1, 2, 5) if last - first <= 2 else (1,)  # a short range also gets 2s and 5s
            marks = [m * 10.0**e for e in range(first, last + 1) for m in steps if self.low <= m * 10.0**e <= self.high]
            marks = marks or [self.low, self.high]
        else:
            marks = _nice_ticks(self.low, self.high)
        return [(self.fraction(m), _fmt(m)) for m in marks]


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(count + 2) if start + i * step <= high + step * 1e-9]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:.4g}"


def _frame(title: str, x_label: str, y_label: str, x: Axis, y: Axis, body: list[str], *, css: str = "") -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart {css}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for frac, label in y.ticks():
        py = TOP + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py:.1f}" y2="{py:.1f}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    for frac, label in x.ticks():
        px = LEFT + plot_w * frac
        parts.append(f'<text class="tick" x="{px:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                     f"{escape(label)}</text>")
    parts.append(f'<text class="label" x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    parts.append(f'<text class="label" transform="translate(12 {TOP + plot_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    parts += body
    parts.append("</svg>")
    return Markup("".join(parts))


def _xy(x: Axis, y: Axis, xv: float | str, yv: float) -> tuple[float, float]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    return LEFT + plot_w * x.fraction(xv), TOP + plot_h * (1 - y.fraction(yv))


def line_chart(name: str, points: Sequence[tuple[float, float]]) -> Markup:
    """A metric's history: value against step (or the point's order when steps are missing)."""
    if len(points) > MAX_POINTS:  # thin evenly, keeping the last point
        stride = math.ceil(len(points) / MAX_POINTS)
        points = [*points[::stride], points[-1]]
    x = Axis.fit([p[0] for p in points])
    y = Axis.fit([p[1] for p in points])
    coords = [_xy(x, y, px, py) for px, py in points]
    body = []
    if len(coords) > 1:
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        body.append(f'<polyline class="series" points="{path}"/>')
    body += [f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="3"/>' for cx, cy in coords[-60:]]
    return _frame(f"{name} by step", "step", name, x, y, body, css="line")


@dataclass(frozen=True)
class Trial:
    """One sweep child as the charts see it."""

    index: int
    params: dict[str, float | str]
    metric: float | None
    best: bool = False
    stopped: bool = False


def scatter(metric: str, param: str, trials: Sequence[Trial], *, log: bool) -> Markup:
    """The primary metric against one searched parameter; log x where the space is loguniform."""
    shown = [t for t in trials if t.metric is not None and param in t.params]
    x = Axis.fit([t.params[param] for t in shown], log=log)
    y = Axis.fit([t.metric for t in shown if t.metric is not None])
    body = []
    for t in shown:
        cx, cy = _xy(x, y, t.params[param], t.metric or 0.0)
        css = "best" if t.best else "stopped" if t.stopped else "dot"
        body.append(f'<circle class="{css}" cx="{cx:.1f}" cy="{cy:.1f}" r="{6 if t.best else 4}">'
                    f"<title>#{t.index}: {escape(param)}={escape(str(t.params[param]))}, "
                    f"{escape(metric)}={t.metric:.4g}</title></circle>")
    scale = " (log scale)" if log and not x.categories else ""
    return _frame(f"{metric} against {param}{scale}", f"{param}{scale}", metric, x, y, body, css="scatter")


def parallel(metric: str, params: Sequence[str], logs: dict[str, bool], trials: Sequence[Trial]) -> Markup:
    """Parallel coordinates: one vertical axis per parameter and one for the metric, a line per child."""
    shown = [t for t in trials if t.metric is not None and all(p in t.params for p in params)]
    names = [*params, metric]
    axes = {p: Axis.fit([t.params[p] for t in shown], log=logs.get(p, False)) for p in params}
    axes[metric] = Axis.fit([t.metric for t in shown if t.metric is not None])
    plot_w, plot_h = WIDTH - 2 * LEFT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(names) - 1, 1)
    parts = [f'<svg class="chart parallel" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="parallel coordinates of {escape(metric)}">',
             f"<title>{escape(', '.join(names))}: one line per child</title>"]
    for i, name in enumerate(names):
        ax = LEFT + i * step
        parts.append(f'<line class="axis" x1="{ax:.1f}" x2="{ax:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                     f'<text class="label" x="{ax:.1f}" y="{HEIGHT - 4}" text-anchor="middle">'
                     f"{escape(name[:18])}</text>")
        for frac, label in axes[name].ticks()[:: max(1, len(axes[name].ticks()) // 3)]:
            parts.append(f'<text class="tick" x="{ax + 4:.1f}" y="{TOP + plot_h * (1 - frac) + 4:.1f}">'
                         f"{escape(label)}</text>")
    for t in sorted(shown, key=lambda t: t.best):  # the best line drawn last, on top
        values = [*(t.params[p] for p in params), t.metric or 0.0]
        path = " ".join(f"{LEFT + i * step:.1f},{TOP + plot_h * (1 - axes[n].fraction(v)):.1f}"
                        for i, (n, v) in enumerate(zip(names, values, strict=True)))
        css = "best" if t.best else "stopped" if t.stopped else "series"
        parts.append(f'<polyline class="{css}" points="{path}"><title>#{t.index}</title></polyline>')
    parts.append("</svg>")
    return Markup("".join(parts))


def confusion_matrix(labels: Sequence[int | str], matrix: Sequence[Sequence[int]], *, title: str) -> Markup:
    """Rows are the true labels, columns the predicted ones; a cell's shade is its share of its row."""
    n = len(labels)
    cell = max(12, min(32, 360 // max(n, 1)))
    left, top = 44, 34
    size_w, size_h = left + cell * n + 8, top + cell * n + 8
    parts = [
        f'<svg class="chart confusion" viewBox="0 0 {size_w} {size_h}" width="{size_w}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="label" x="{left + cell * n / 2}" y="12" text-anchor="middle">predicted</text>',
        f'<text class="label" transform="translate(10 {top + cell * n / 2}) rotate(-90)" '
        f'text-anchor="middle">true</text>',
    ]
    for i, label in enumerate(labels):
        parts.append(f'<text class="tick" x="{left + cell * (i + 0.5):.1f}" y="{top - 6}" '
                     f'text-anchor="middle">{escape(str(label))}</text>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{top + cell * (i + 0.5) + 4:.1f}" '
                     f'text-anchor="end">{escape(str(label))}</text>')
    for r, row in enumerate(matrix):
        total = sum(row) or 1
        for c, count in enumerate(row):
            share = count / total
            css = "cell hit" if r == c else "cell miss"
            x, y = left + cell * c, top + cell * r
            parts.append(
                f'<g class="{css}"><title>true {escape(str(labels[r]))}, predicted {escape(str(labels[c]))}: '
                f"{count}</title>"
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill-opacity="{0.08 + 0.92 * share:.3f}"/>'
            )
            if count and cell >= 18:
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle">'
                             f"{count}</text>")
            parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
