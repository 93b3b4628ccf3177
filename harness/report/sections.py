"""REPORT.md's sections: one registry, read in order by report/markdown.render_markdown.

A section is a function of what the report reads and returns its markdown ("" leaves it out):

- scope "report": a `ReportView` (every task's stores, rows with verdicts, predictions); the text
  carries its own `## heading`. The title, the recommendation, the results, cost at volume, how each
  figure was measured, failures, wrong answers, the recipe and the environment are such sections.
- scope "task": a `TaskView` (one task's store, its rows with verdicts, its predictions); its text goes
  into that task's block under `## Results`, after the results table (plots, per-label results, the
  study's sections, ...).

A new section is one file with one `register(Section(...))` (built in: imported by markdown.py; a
user's: a file the recipe names in `plugins:`, loaded again by `harness report`). It goes at the end of
its scope, or before the section named by `before`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.registry import Registry
from harness.results import RunStore, task_name


@dataclass(frozen=True)
class TaskView:
    store: RunStore
    rows: list[dict]  # the task's rows in recipe order, with verdicts (analysis/decision.with_verdicts)
    predictions: dict[str, list[dict]]  # technique -> its predictions, for every finished technique
    folder: Path  # where REPORT.md and its plots/ go
    texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # see `text`

    @property
    def name(self) -> str:
        return task_name(self.store)


@dataclass(frozen=True)
class ReportView:
    tasks: list[TaskView]
    folder: Path
    texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # see `text`

    @property
    def stores(self) -> list[RunStore]:
        return [t.store for t in self.tasks]

    @property
    def meta(self) -> dict:
        return self.tasks[0].store.meta

    @property
    def recipe(self) -> dict:
        return self.meta["recipe"]

    @property
    def many(self) -> bool:
        """Several tasks: each task's part is named."""
        return len(self.tasks) > 1


@dataclass(frozen=True)
class Section:
    name: str
    render: Callable[[Any], str]  # (ReportView or TaskView, by scope) -> markdown, "" for none
    scope: Literal["report", "task"] = "report"
    before: str | None = None  # a registered section of the same scope this one goes before


SECTIONS: Registry[Section] = Registry("report section")


def register(section: Section) -> Section:
    if section.before is not None and section.before not in SECTIONS:
        raise ValueError(f"report section {section.name!r}: {SECTIONS.unknown(section.before)}")
    return SECTIONS.add(section.name, section)


def ordered(scope: str) -> list[Section]:
    """The scope's sections: registration order, each with `before` moved ahead of the one it names."""
    placed: list[Section] = []
    for section in (SECTIONS.get(name) for name in SECTIONS.in_order()):
        if section.scope != scope:
            continue
        names = [s.name for s in placed]
        placed.insert(names.index(section.before) if section.before in names else len(placed), section)
    return placed


def text(view: Any, section: Section) -> str:
    """The section's text for the view, rendered once: REPORT.md and REPORT.html show the same text, and
    a section that draws a plot or runs a test does it once."""
    if section.name not in view.texts:
        view.texts[section.name] = section.render(view)
    return view.texts[section.name]


def render(view: Any, scope: str) -> list[str]:
    """The non-empty texts of the scope's sections."""
    return [t for t in (text(view, section) for section in ordered(scope)) if t]
