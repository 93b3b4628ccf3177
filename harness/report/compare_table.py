"""`harness compare A B`: one line per task, technique and figure, with B - A and whether it is better."""

from __future__ import annotations

from rich.table import Table

from harness import figures, gate


def fmt_delta(metric: str, value) -> str:
    return "–" if value is None else ("+" if value > 0 else "") + fmt_figure(metric, value)


def fmt_figure(metric: str, value) -> str:
    figure = figures.get(metric)
    if value is None:
        return "–"
    return figure.format(value) if figure is not None else f"{value:.3f}"


def compare_table(run_a, run_b) -> Table:
    table = Table(
        "task",
        "technique",
        "figure",
        "A",
        "B",
        "B - A",
        "paired p",
        header_style="bold",
        title=f"A: {run_a}\nB: {run_b}",
    )
    for pair in gate.pairs(run_a, run_b):
        if pair.a is None or pair.b is None:
            table.add_row(pair.task, pair.technique, "", "", "", "", "only in " + ("B" if pair.a is None else "A"))
            continue
        for metric in gate.compared_metrics(pair):
            old, new = pair.a.get(metric), pair.b.get(metric)
            delta = None if old is None or new is None else new - old
            note = ""
            if metric == "score":
                p = pair.score_p()
                note = "not paired" if p is None else f"p={p:.3f}" + (" significant" if p < 0.05 else "")
            style = None
            if delta:
                style = "green" if (delta > 0) == gate.better(metric) else "red"
            table.add_row(
                pair.task,
                pair.technique,
                metric.removeprefix("lm_eval:"),
                fmt_figure(metric, old),
                fmt_figure(metric, new),
                fmt_delta(metric, delta),
                note,
                style=style,
            )
    return table
