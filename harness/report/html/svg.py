"""Inline SVG plots for REPORT.html: no library and no script; every point and line carries a native
tooltip (<title>), so hovering shows its values. The same figures as the PNGs (report/plots.py): score vs
memory and vs cost with the Pareto front, cost at volume with its break-evens, training curves, learning
curves, search trials."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from harness.analysis import ownership
from harness.analysis.decision import pareto_front, scored_rows
from harness.analysis.floor import KIND as FLOOR_KIND
from harness.figures import fmt_usd
from harness.report.columns import fmt_score
from harness.report.plots import AXES, CURVE_PANELS
from harness.rows import RowLike

WIDTH, HEIGHT = 520, 340
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 34, 48  # margins: room for the tick labels and axis titles
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


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


@dataclass
class Chart:
    """One plot's frame: data ranges (logarithmic axes take powers of ten as ticks), axis titles, and the
    SVG elements drawn into it."""

    title: str
    x: tuple[float, float]
    y: tuple[float, float]
    x_label: str
    y_label: str
    x_tick: Callable[[float], str] = "{:g}".format
    y_tick: Callable[[float], str] = "{:.2f}".format
    x_log: bool = False
    y_log: bool = False
    parts: list[str] = field(default_factory=list)

    def _scale(self, value: float, span: tuple[float, float], log: bool) -> float:
        low, high = (math.log10(v) for v in span) if log else span
        return ((math.log10(value) if log else value) - low) / (high - low)

    def px(self, x: float) -> float:
        return LEFT + self._scale(x, self.x, self.x_log) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - self._scale(y, self.y, self.y_log) * (HEIGHT - TOP - BOTTOM)

    def _ticks(self, span: tuple[float, float], log: bool) -> list[float]:
        if not log:
            return nice_ticks(*span)
        return [10.0**p for p in range(math.ceil(math.log10(span[0])), math.floor(math.log10(span[1])) + 1)]

    def line(self, points: Sequence[tuple[float, float]], css: str, tip: str, colour: str | None = None) -> None:
        path = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in points)
        stroke = f' style="stroke:{colour}"' if colour else ""
        self.parts.append(f'<polyline class="{css}"{stroke} points="{path}"><title>{escape(tip)}</title></polyline>')

    def dot(self, x: float, y: float, tip: str, css: str = "point", colour: str | None = None) -> None:
        fill = f' style="fill:{colour}"' if colour else ""
        self.parts.append(
            f'<g class="{css}"><title>{escape(tip)}</title>'
            f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="4"{fill}/></g>'
        )

    def svg(self, legend: Sequence[tuple[str, str]] = ()) -> str:
        frame = [
            f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(self.title)}">',  # inline in HTML: no namespace needed
            f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{escape(self.title)}</text>',
        ]
        for x in self._ticks(self.x, self.x_log):
            frame.append(
                f'<line class="grid" x1="{self.px(x):.1f}" x2="{self.px(x):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
            )
            frame.append(_text(self.px(x), HEIGHT - BOTTOM + 16, self.x_tick(x)))
        for y in self._ticks(self.y, self.y_log):
            frame.append(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{self.py(y):.1f}" y2="{self.py(y):.1f}"/>'
            )
            frame.append(_text(LEFT - 6, self.py(y) + 4, self.y_tick(y), "end"))
        frame.append(_text(WIDTH / 2, HEIGHT - 10, self.x_label))
        frame.append(_text(0, 0, self.y_label, extra=f' transform="translate(14 {HEIGHT / 2}) rotate(-90)"'))
        keys = [
            _text(WIDTH - RIGHT - 4, TOP + 12 + 13 * i, name, "end", f' style="fill:{colour}"')
            for i, (name, colour) in enumerate(legend)
        ]
        return "\n".join([*frame, *self.parts, *keys, "</svg>"])


def _text(x: float, y: float, content: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'


def colours(rows: Sequence[RowLike]) -> dict[str, str]:
    """One colour per technique, the same in every plot of a task."""
    return {r["technique"]: COLOURS[i % len(COLOURS)] for i, r in enumerate(rows)}


def tradeoff_svg(rows: Sequence[RowLike], axis: str, title: str) -> str:
    """Score (95% CI as a bar) against the axis's figure (plots.AXES: memory or cost) for each scored
    technique, the Pareto front dashed; "" when fewer than two techniques have both figures."""
    key, label, scale, tick = AXES[axis]
    points = [(r["technique"], r[key] * scale, r) for r in scored_rows(rows) if r.get(key) is not None]
    if len(points) < 2:
        return ""
    lows = [r["score"] if r.get("ci_low") is None else r["ci_low"] for *_, r in points]
    highs = [r["score"] if r.get("ci_high") is None else r["ci_high"] for *_, r in points]
    metric = points[0][2].get("metric") or "metric"
    chart = Chart(
        title,
        _padded([x for _, x, _ in points]),
        _padded(lows + highs),
        label,
        f"score ({metric}), 95% CI",
        tick.format,
    )
    front = pareto_front([(name, x, r["score"]) for name, x, r in points])
    by_name = {name: (x, r["score"]) for name, x, r in points}
    chart.line([by_name[n] for n in front], "front", f"Pareto front: {', '.join(front)}")
    for (name, x, row), low, high in zip(points, lows, highs):
        on_front = name in front
        tip = f"{name}\nscore {fmt_score(row)}\n{label}: {tick.format(x)}" + (" (Pareto front)" if on_front else "")
        px, py = chart.px(x), chart.py(row["score"])
        chart.parts.append(
            f'<g class="point{" front-point" if on_front else ""}"><title>{escape(tip)}</title>'
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{chart.py(low):.1f}" y2="{chart.py(high):.1f}"/>'
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5"/>{_text(px + 7, py - 7, name, "start")}</g>'
        )
    return chart.svg()


def _total(row: RowLike, volume: float) -> float:
    """Training plus `volume` requests, for a row that has a cost line (ownership.costed)."""
    return ownership.total_cost(row, volume) or 0.0


def cost_at_volume_svg(rows: Sequence[RowLike], title: str, workload: float | None = None) -> str:
    """Each technique's cost of ownership (training once, then each request) against request volume, both
    axes logarithmic, as plots.plot_cost_at_volume draws it; each break-even a dot, the workload dashed."""
    costed = [r for r in ownership.costed(rows) if r["kind"] != FLOOR_KIND and _total(r, 1) > 0]
    if not costed:
        return ""
    crossings = ownership.crossings(costed)
    marks = [c.volume for c in crossings] + ([workload] if workload else [])
    top = max(6, math.ceil(math.log10(10 * max(marks, default=1))))
    volumes = [10 ** (top * i / 60) for i in range(61)]
    totals = [t for r in costed for t in (_total(r, 1), _total(r, 10**top))]
    chart = Chart(
        title, (1, 10**top), (min(totals) / 1.5, max(totals) * 1.5), "requests served (log scale)",
        "cost: training + serving (USD, log scale)", ownership.volume_text, fmt_usd, x_log=True, y_log=True,
    )  # fmt: skip
    palette = colours(rows)
    for row in costed:
        train, serve = ownership.line(row) or (0.0, 0.0)
        tip = f"{row['technique']}: {fmt_usd(train)} training, {fmt_usd(1000 * serve)} per 1k requests"
        if workload:
            tip += f"\nat {ownership.volume_text(workload)} requests: {fmt_usd(_total(row, workload))}"
        chart.line([(v, _total(row, v)) for v in volumes], "cost", tip, palette[row["technique"]])
    by_name = {r["technique"]: r for r in costed}
    for c in crossings:
        cost = _total(by_name[c.after], c.volume)
        tip = f"{c.after} becomes cheaper than {c.before} after about {ownership.volume_text(c.volume)} requests"
        chart.dot(c.volume, cost, f"{tip} ({fmt_usd(cost)})", "point break-even")
    if workload:
        chart.line(
            [(workload, chart.y[0]), (workload, chart.y[1])],
            "workload",
            f"workload: {ownership.volume_text(workload)} requests",
        )
    return chart.svg([(r["technique"], palette[r["technique"]]) for r in costed])


def training_svgs(rows: Sequence[RowLike], title: str) -> list[str]:
    """Per logged figure (plots.CURVE_PANELS: loss, GRPO's reward, DPO's reward accuracy), each trained
    technique's curve against the optimizer step, every logged point with its value on hover."""
    palette = colours(rows)
    curves = {
        r["technique"]: r["train_curve"]
        for r in rows
        if r.get("status") == "ok" and len(r.get("train_curve") or []) >= 2
    }
    charts = []
    for key, label in CURVE_PANELS:
        series = {
            name: [(p["step"], p[key]) for p in curve if isinstance(p.get(key), (int, float)) and "step" in p]
            for name, curve in curves.items()
        }
        series = {name: points for name, points in series.items() if len(points) >= 2}
        if not series:
            continue
        xs, ys = [x for s in series.values() for x, _ in s], [y for s in series.values() for _, y in s]
        chart = Chart(
            f"{title}: {label}", _padded(xs), _padded(ys), "optimizer step", label, "{:g}".format, "{:.3g}".format
        )
        for name, points in series.items():
            chart.line(points, "curve", f"{name}: {label}", palette[name])
            for x, y in points:
                chart.dot(x, y, f"{name}, step {x:g}: {label} {y:.4g}", "point", palette[name])
        charts.append(chart.svg([(name, palette[name]) for name in series]))
    return charts


def learning_curve_svg(
    curves: dict[str, Sequence[tuple[int, float, float, int]]],
    levels: dict[str, tuple[float, float | None, float | None]],
    y_label: str,
    title: str,
) -> str:
    """Score against training examples (log axis), as plots.plot_learning_curve draws it: per trained
    technique its (examples, mean, std, seeds) points, each with its std bar and values on hover; per
    technique that does not train, a dashed level at its score with its 95% CI on hover. "" without a curve
    (a technique with points at two sizes)."""
    drawn = {name: list(points) for name, points in curves.items() if len(points) >= 2}
    if not drawn:
        return ""
    sizes = [p[0] for points in drawn.values() for p in points]
    ys = [y for points in drawn.values() for n, mean, std, _ in points for y in (mean - std, mean + std)]
    ys += [v for level in levels.values() for v in level if v is not None]
    x_span = (min(sizes) / 1.3, max(sizes) * 1.3)
    chart = Chart(title, x_span, _padded(ys), "training examples (log scale)", y_label, "{:g}".format, x_log=True)
    palette = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate([*drawn, *levels])}
    for name, (score, low, high) in levels.items():
        band = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        chart.line([(x_span[0], score), (x_span[1], score)], "level", f"{name} (no training): {score:.3f}{band}",
                   palette[name])  # fmt: skip
    for name, points in drawn.items():
        chart.line([(n, mean) for n, mean, _, _ in points], "curve", f"{name}: learning curve", palette[name])
        for n, mean, std, seeds in points:
            spread = f" ± {std:.3f} over {seeds} seeds" if seeds > 1 else ""
            px = chart.px(n)
            chart.parts.append(
                f'<line class="bar" style="stroke:{palette[name]}" x1="{px:.1f}" x2="{px:.1f}" '
                f'y1="{chart.py(mean - std):.1f}" y2="{chart.py(mean + std):.1f}"/>'
            )
            chart.dot(n, mean, f"{name}, {n} training examples: {mean:.3f}{spread}", "point", palette[name])
    return chart.svg([(name, palette[name]) for name in [*drawn, *levels]])


def search_svgs(points: dict[str, dict], chosen: dict[str, float], labels: dict[str, str], title: str) -> list[str]:
    """Objective against the searched value (or trial number), as plots.plot_search draws it, one chart per
    (objective, x axis): each trial a point with its value on hover, pruned ones marked (their objective is
    from the step they stopped at), the chosen trial ringed. Input: study_sections.search_plot."""
    drawn = {name: p for name, p in points.items() if p["finished"] or p["pruned"]}
    panels = list(dict.fromkeys((labels[name], p["x_label"], p["log"]) for name, p in drawn.items()))
    palette = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(drawn)}
    charts = []
    for label, x_label, log in panels:
        series = {n: p for n, p in drawn.items() if (labels[n], p["x_label"], p["log"]) == (label, x_label, log)}
        xs = [x for p in series.values() for x, _ in p["finished"] + p["pruned"]]
        ys = [y for p in series.values() for _, y in p["finished"] + p["pruned"]]
        x_span = (min(xs) / 2, max(xs) * 2) if log else _padded(xs)
        chart = Chart(title, x_span, _padded(ys), x_label, label, "{:g}".format, "{:.3g}".format, x_log=log)
        for name, p in series.items():
            finished = sorted(p["finished"])
            if len(finished) >= 2:
                chart.line(finished, "curve", f"{name}: finished trials", palette[name])
            for x, y in finished:
                ring = " (chosen)" if chosen.get(name) == x else ""
                chart.dot(x, y, f"{name}, {x_label} {x:g}: {label} {y:.4g}{ring}", "point", palette[name])
                if ring:
                    chart.parts.append(
                        f'<circle class="chosen" cx="{chart.px(x):.1f}" cy="{chart.py(y):.1f}" r="8" '
                        f'style="stroke:{palette[name]}"/>'
                    )
            for x, y in p["pruned"]:
                chart.dot(x, y, f"{name}, {x_label} {x:g}: {label} {y:.4g} (pruned, partial)", "point pruned")
        charts.append(chart.svg([(name, palette[name]) for name in series]))
    return charts
