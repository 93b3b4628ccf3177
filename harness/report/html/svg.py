"""Inline SVG plots for REPORT.html: no library, no script, and a native tooltip (<title>) on every point,
so hovering shows the values. The same points and Pareto front as the PNGs (report/plots.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from harness.analysis.decision import pareto_front, scored_rows
from harness.report.columns import fmt_score
from harness.report.plots import AXES
from harness.rows import RowLike

WIDTH, HEIGHT = 520, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 34, 48  # margins: room for the tick labels and axis titles


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _padded(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or (abs(high) * 0.1 or 0.05)
    return low - pad, high + pad


def tradeoff_svg(rows: Sequence[RowLike], axis: str, title: str) -> str:
    """Score (95% CI as a bar) against the axis's figure (plots.AXES: memory or cost) for each scored
    technique, the Pareto front dashed; "" when fewer than two techniques have both figures."""
    key, label, scale, tick = AXES[axis]
    points = [(r["technique"], r[key] * scale, r) for r in scored_rows(rows) if r.get(key) is not None]
    if len(points) < 2:
        return ""
    xs = [x for _, x, _ in points]
    lows = [r["score"] if r.get("ci_low") is None else r["ci_low"] for *_, r in points]
    highs = [r["score"] if r.get("ci_high") is None else r["ci_high"] for *_, r in points]
    (x0, x1), (y0, y1) = _padded(xs), _padded(lows + highs)

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def py(y: float) -> float:
        return HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',  # inline in HTML: no namespace needed
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{escape(title)}</text>',
    ]
    for x in nice_ticks(x0, x1):
        parts.append(f'<line class="grid" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
        parts.append(
            f'<text x="{px(x):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(tick.format(x))}</text>'
        )
    for y in nice_ticks(y0, y1):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    metric = points[0][2].get("metric") or "metric"
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(label)}</text>')
    parts.append(
        f'<text transform="translate(14 {HEIGHT / 2}) rotate(-90)" text-anchor="middle">'
        f"score ({escape(metric)}), 95% CI</text>"
    )
    front = pareto_front([(name, x, r["score"]) for name, x, r in points])
    by_name = {name: (x, r["score"]) for name, x, r in points}
    path = " ".join(f"{px(by_name[n][0]):.1f},{py(by_name[n][1]):.1f}" for n in front)
    parts.append(
        f'<polyline class="front" points="{path}"><title>Pareto front: {escape(", ".join(front))}</title></polyline>'
    )
    for (name, x, row), low, high in zip(points, lows, highs):
        tip = f"{name}\nscore {fmt_score(row)}\n{label}: {tick.format(x)}" + (
            " (Pareto front)" if name in front else ""
        )
        css = "point front-point" if name in front else "point"
        parts += [
            f'<g class="{css}"><title>{escape(tip)}</title>',
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(low):.1f}" y2="{py(high):.1f}"/>',
            f'<circle cx="{px(x):.1f}" cy="{py(row["score"]):.1f}" r="5"/>',
            f'<text x="{px(x) + 7:.1f}" y="{py(row["score"]) - 7:.1f}">{escape(name)}</text></g>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)
