"""REPORT.md is its registered sections (harness/report/sections.py): a new one is one file and one
registration, placed where it asks, and `harness report` loads the run's plugins to find it."""

import sys

import pytest

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
