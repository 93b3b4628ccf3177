"""The memory and time plan as rich tables (`harness plan`, and the start of `harness run`): renders an
analysis/memory_plan.Plan, computes nothing."""

from __future__ import annotations

from rich.table import Table

from harness.analysis.memory_plan import Plan, TechniquePlan
from harness.figures import fmt_bytes, fmt_count, fmt_seconds


def _bytes(value) -> str:
    return fmt_bytes(None if value is None else int(round(value)))


def _fits(line: TechniquePlan) -> str:
    if line.fits is None:
        return "?"
    return "[green]yes[/]" if line.fits else "[bold red]NO[/]"


def _suggestion(line: TechniquePlan) -> str:
    parts = [line.note] if line.note else []
    if line.suggestion:
        after = f" (-> {_bytes(line.suggested.total)})" if line.suggested is not None else ""
        parts.append(line.suggestion + after)
    return "; ".join(parts) or "–"


def memory_table(plan: Plan) -> Table:
    where = f" on {plan.task}" if plan.task else ""
    table = Table(
        "technique",
        "kind",
        "strategy",
        "params",
        "trainable",
        "weights",
        "grads",
        "optimizer",
        "activations",
        "logits",
        "total / device",
        "device",
        "fits?",
        "suggestion",
        header_style="bold",
        title=f"memory plan: {plan.model}{where} ({plan.device_label})",
        caption=_memory_caption(plan),
    )
    for line in plan.techniques:
        e, s = line.estimate, line.setup
        table.add_row(
            line.technique,
            s.kind + (" (4-bit)" if s.quantized else ""),
            s.describe_strategy,
            fmt_count(plan.shape.params),
            fmt_count(s.trainable),
            _bytes(e.weights),
            _bytes(e.grads),
            _bytes(e.optimizer),
            _bytes(e.activations),
            _bytes(e.logits),
            _bytes(e.total),
            _bytes(line.device_bytes),
            _fits(line),
            _suggestion(line),
        )
    return table


def _memory_caption(plan: Plan) -> str:
    lines = []
    settings = {(t.setup.batch_size, t.setup.seq_len, t.setup.precision) for t in plan.techniques}
    if len(settings) == 1:
        batch, seq, precision = next(iter(settings))
        lines.append(f"per device: micro-batch {batch} x {seq} tokens, {precision}")
    if plan.device == "cpu":
        lines.append("total includes the cell process's baseline (Python + libraries) and allocator slack")
    else:
        lines.append("fits: within 90% of a GPU's memory (the CUDA context and the allocator take the rest)")
    if any(t.estimate.host for t in plan.techniques):
        host = ", ".join(f"{t.technique} {_bytes(t.estimate.host)}" for t in plan.techniques if t.estimate.host)
        lines.append(f"offloaded to host memory per process: {host}")
    return "\n".join(lines + plan.notes)


def time_table(plan: Plan) -> Table:
    where = f" on {plan.task}" if plan.task else ""
    table = Table(
        "technique",
        "cells",
        "train tokens / cell",
        "train tokens (all cells)",
        "estimated time",
        header_style="bold",
        title=f"time plan{where}: {plan.cells} cell(s), about {fmt_seconds(plan.seconds)}",
        caption=f"throughput: {plan.throughput_source}\ntokens: {plan.tokens_source}\n"
        "time: training and held-out evaluation; model loads and lm-eval are not counted",
    )
    for line in plan.techniques:
        table.add_row(
            line.technique,
            str(line.cells),
            fmt_count(round(line.train_tokens)) if line.train_tokens is not None else "–",
            fmt_count(round(line.total_train_tokens)) if line.total_train_tokens is not None else "–",
            fmt_seconds(line.seconds),
        )
    if plan.untrained_cells:
        table.add_row(
            "(untrained techniques)", str(plan.untrained_cells), "–", "–", fmt_seconds(plan.untrained_seconds)
        )
    return table


def plan_tables(plan: Plan) -> list[Table]:
    """The memory table (when something trains), then (for a recipe's task) the time table."""
    return ([memory_table(plan)] if plan.techniques else []) + ([time_table(plan)] if plan.task else [])
