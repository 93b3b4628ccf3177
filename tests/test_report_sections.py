"""REPORT.md is its registered sections (harness/report/sections.py): a new one is one file and one
registration, placed where it asks, and `harness report` loads the run's plugins to find it."""

import json
import sys

import pytest
from conftest import run_cli

from harness.report import render_markdown, sections
from harness.results import RunStore
from harness.rows import make_row

SECTION_PLUGIN = """
from harness.report import sections


def slowest(report):
    rows = [r for task in report.tasks for r in task.rows if r.get("wall_seconds") is not None]
    worst = max(rows, key=lambda r: r["wall_seconds"])
    return f"## Slowest technique\\n\\n{worst['technique']} ({worst['wall_seconds']:.0f}s)"


def answered(task):
    return f"{sum(len(p) for p in task.predictions.values())} answers scored on {task.name}."


sections.register(sections.Section("slowest", slowest, before="recipe"))
sections.register(sections.Section("answered", answered, scope="task"))
"""


@pytest.fixture
def section_plugin(write):
    path = write("my_section.py", SECTION_PLUGIN)
    yield path
    for name in ("slowest", "answered"):  # the registry is process-wide
        sections.SECTIONS._items.pop(name, None)
    sys.modules.pop("harness_plugin_my_section", None)


def stored_run(tmp_path, plugins) -> RunStore:
    meta = {
        "recipe": {"name": "r", "model": {"id": "m"}, "plugins": plugins, "techniques": [{"name": "a"}, {"name": "b"}]},
        "task": {"name": "t", "metric": "exact_match"},
        "seed": 0,
    }
    store = RunStore(tmp_path, meta)
    for name, seconds in (("a", 12.0), ("b", 30.0)):
        row = make_row(name, "prompt", "ok", metric="exact_match", score=0.5, ci_low=0.2, ci_high=0.8, n_eval=2)
        row["wall_seconds"] = seconds
        store.record(
            row, [{"id": i, "input": "q", "expected": "x", "predicted": "x", "correct": i == 0} for i in (0, 1)]
        )
    return store


def test_a_plugin_section_is_placed_where_it_asks(section_plugin, tmp_path):
    text = render_markdown([stored_run(tmp_path, [str(section_plugin)])], tmp_path)
    assert "## Slowest technique\n\nb (30s)" in text
    assert text.index("## Slowest technique") < text.index("## Recipe") < text.index("## Environment")
    # the task section sits in the task's block, after the results table and before the next ## section
    assert text.index("| technique |") < text.index("4 answers scored on t.") < text.index("## How each figure")


def test_the_built_in_sections_come_in_their_order(tmp_path):
    text = render_markdown([stored_run(tmp_path, [])], tmp_path)
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["## Recommendation", "## Results", "## How each figure was measured"]
    assert heads[-2:] == ["## Recipe", "## Environment"]
    assert "Slowest" not in text


def test_a_section_before_an_unknown_one_is_an_error():
    with pytest.raises(ValueError, match="unknown report section 'recipie'"):
        sections.register(sections.Section("x", lambda report: "", before="recipie"))


def test_figures_that_are_no_number_or_negative_do_not_break_the_report(tmp_path):
    """A results.json whose rows hold NaN, infinite and negative figures (written before such figures were
    stored as null; an endpoint's garbage usage) renders: REPORT.md, its plots and the exports (before: a
    ValueError in the cost formatting and in the recommendation, and no REPORT.md for any technique)."""
    from harness import figures

    nan, inf = float("nan"), float("inf")
    api = make_row("api", "api", "ok", metric="exact_match", score=0.5, ci_low=nan, ci_high=inf, n_eval=2)
    api.update(api_input_tokens=nan, api_output_tokens=-5, cost_usd=nan, serving_usd_per_request=nan)
    api.update(train_cost_usd=0.0, wall_seconds=inf, eval_seconds=-1.0, latency_p50_seconds=nan)
    zero = make_row("zero", "prompt", "ok", metric="exact_match", score=1.0, ci_low=0.5, ci_high=1.0, n_eval=2)
    zero.update(cost_usd=-0.5, serving_usd_per_request=-1e-6, train_cost_usd=0.0, peak_memory_bytes=-(2**20))
    zero.update(wall_seconds=nan, eval_seconds=inf)
    meta = {
        "recipe": {"name": "r", "model": {"id": "m"}, "techniques": [{"name": "api"}, {"name": "zero"}]},
        "task": {"name": "t", "metric": "exact_match"},
        "seed": 0,
        "usd_per_hour": {"cpu": 1.0},
    }
    results = {"version": 2, "meta": meta, "rows": [api.as_dict(), zero.as_dict()], "cells": []}
    (tmp_path / "results.json").write_text(json.dumps(results))  # NaN and Infinity, as json.dumps writes them
    answers = [{"id": i, "input": "q", "expected": "x", "predicted": "x", "correct": i == 0} for i in (0, 1)]
    (tmp_path / "predictions").mkdir()
    for name in ("api", "zero"):
        (tmp_path / "predictions" / f"{name}.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    result = run_cli("report", tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "REPORT.md").read_text()
    assert "| api |" in text and "| zero |" in text and "$nan" not in text and "inf" not in text.replace("info", "")
    # the formatting itself: a figure that is no number shows as missing, whatever reaches it
    shown = {figures.get(key).format(value) for key in ("cost_usd", "wall_seconds", "score") for value in (nan, inf)}
    assert shown == {"–"}
    assert figures.fmt_usd(-inf) == figures.fmt_bytes(nan) == figures.fmt_count(-inf) == "–"
    assert figures.fmt_usd(-0.5) == "-$0.5000" and "| -$0.0010 |" in text
