"""REPORT.md's "Serving under load" section: the load test's levels per technique (harness loadtest,
deploy/loadtest.py), the level each technique's cost per request is read at, why a load test stopped,
and a plot of throughput against p95 latency."""

from __future__ import annotations

from collections.abc import Sequence

from harness import figures
from harness.report import plots, sections
from harness.report.text import cell, table
from harness.results import task_name
from harness.rows import RowLike


def load_tested(rows: Sequence[RowLike]) -> list[RowLike]:
    return [r for r in rows if r.get("serving_levels") or r.get("serving_error")]


def serving_section(report: sections.ReportView) -> str:
    parts = []
    for task in report.tasks:
        rows = load_tested(task.store.ordered_rows())
        if not rows:
            continue
        name = plots.plot_path(task_name(task.store), "serving.png")
        target = (report.recipe.get("workload") or {}).get("latency_p95_seconds")
        title = f"{task.name}: served throughput against latency"
        plot = plots.plot_serving(rows, title, task.folder / name, target)
        text = "\n\n".join(p for p in (levels_table(rows), stopped(rows), f"![serving]({name})" if plot else "") if p)
        parts.append(f"**{task.name}**\n\n{text}" if report.many else text)
    if not parts:
        return ""
    engine = next(
        (r.get("serving_engine") for t in report.tasks for r in load_tested(t.rows) if r.get("serving_engine")), None
    )
    intro = (
        "Each technique served "
        + (f"by `{engine}` " if engine else "")
        + "on this machine and sent held-out prompts at each concurrency through kind api's client (`harness "
        "loadtest`): closed loop, the client on the same machine. Latency is per request as the client saw it "
        "(queueing, retrieval and generation); time to first token (TTFT) is from the request to the first "
        "streamed text (queueing and the batch's prefill included; – where the server did not stream). `*` marks "
        "the level a technique's cost per request is read at."
    )
    return "\n\n".join(["## Serving under load", intro, *parts])


def levels_table(rows: Sequence[RowLike]) -> str:
    seconds = figures.fmt_seconds
    cells = []
    for row in rows:
        for level in row.get("serving_levels") or []:
            costed = level["concurrency"] == row.get("served_concurrency")
            cells.append(
                [
                    row["technique"],
                    f"{level['concurrency']}{' *' if costed else ''}",
                    f"{level['requests_per_second']:.2f}",
                    figures.FORMATS["rate"](level["tokens_per_second"]),
                    seconds(level["latency_p50_seconds"]),
                    seconds(level["latency_p95_seconds"]),
                    seconds(level.get("ttft_p50_seconds")),
                    seconds(level.get("ttft_p95_seconds")),
                ]
            )
    if not cells:
        return ""
    headers = ["technique", "concurrency", "requests/s", "tokens/s"]
    headers += ["latency p50", "latency p95", "TTFT p50", "TTFT p95"]
    return table(headers, cells, [False] + [True] * 7)


def stopped(rows: Sequence[RowLike]) -> str:
    return "\n".join(
        f"- **{r['technique']}**: load test stopped: {cell(r['serving_error'])}" for r in rows if r.get("serving_error")
    )


def cost_basis(row: RowLike) -> str:
    """Where a row's cost per request comes from, for the Cost at volume table."""
    concurrency = row.get("served_concurrency")
    return f"served, {concurrency} in flight" if concurrency is not None else "batch run"
