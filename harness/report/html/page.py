"""REPORT.html: one self-contained file (styles, script, data and plots inlined; nothing fetched), for a
reader who opens it from disk, a CI artifact or a PR preview.

It renders what REPORT.md renders, from the same pieces: the registered sections' markdown (as HTML, raw
HTML in it escaped), the column definitions of report/columns.py (a sortable headline table, then every
other figure grouped), the trade-off plots as inline SVG, and the example browser, whose data are each
technique's predictions file embedded as JSON and drawn by the script, a page at a time."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from functools import cache
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt

from harness.analysis import floor
from harness.report import plots, sections, study_sections
from harness.report.columns import Column, best_values, headline_columns, visible_columns
from harness.report.confusion import MAX_LABELS, confusion
from harness.report.html import svg
from harness.results import to_json
from harness.rows import RowLike

ASSETS = Path(__file__).parent / "assets"

# The full table's columns, grouped; a column in no group (a plugin's, a new figure's) goes to "other".
GROUPS = {
    "evaluation": ("± seeds", "macro-F1", "metric", "n", "no label", "prefers chosen", "pref. margin"),
    "training": ("train", "train mem", "trainable / total params", "train tok/s", "artifact"),
    "serving": ("wall", "eval", "serve mem", "ex/s", "latency p50 / p95", "api tokens in / out", "cost"),
    "RAG": ("recall", "wrong: not retrieved / misread", "index"),
    "judge": ("judge",),
    "lm-eval": ("lm-eval time",),  # and every lm-eval figure's column
}
# The task sections each group shows under its table; those in no group get their own fold.
SECTION_GROUPS = {
    "seeds": "evaluation",
    "per label": "evaluation",
    "learning curves": "training",
    "forgetting": "lm-eval",
    "search": "search",
}
NOTES = ("floor", "leakage", "judge")  # short task notes, shown under the headline table
REPLACED = {
    "report": ("title", "recommendation", "results", "wrong answers"),  # drawn here, or by the browser
    "task": ("results table", "plots"),  # the headline and figure tables, the SVG plots
}


@cache
def _markdown() -> MarkdownIt:
    """CommonMark with tables; raw HTML off, so text from results.json is escaped, never markup."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")


SVG_PLOTS = ("score-vs-memory.png", "score-vs-cost.png", "cost-at-volume.png", "training.png")  # drawn here


def markdown_html(text: str, folder: Path) -> str:
    """A section's markdown as HTML; its images (plots beside the report) inlined as data URIs, but for
    the plots the page draws as SVG (each task's part has them), which are left out."""
    md = _markdown()
    tokens = md.parse(text)
    for token in tokens:
        if token.children:
            token.children = [c for c in token.children if not (c.type == "image" and _drawn_here(c.attrGet("src")))]
        for child in token.children or []:
            if child.type == "image":
                source = inline_image(folder, str(child.attrGet("src") or ""))
                if source:
                    child.attrSet("src", source)
                else:  # nothing to inline: its alt text, so the page refers to no file
                    child.type, child.tag, child.content, child.children = "text", "", f"[{child.content}]", None
    return md.renderer.render(tokens, md.options, {})


def _drawn_here(src) -> bool:
    return str(src or "").startswith("plots/") and str(src).endswith(SVG_PLOTS)


def inline_image(folder: Path, src: str) -> str | None:
    """A PNG inside the report folder as a data URI; None for anything else (nothing is fetched)."""
    path = (folder / src).resolve()
    if path.suffix != ".png" or not path.is_file() or not path.is_relative_to(folder.resolve()):
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def script_json(data) -> str:
    """JSON to embed in a <script> element: '<', '>' and '&' as \\u escapes, so no text inside it (a
    task's `</script>`) can end the element; the same JSON to a parser."""
    text = to_json(data)
    for char, code in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, code)
    return text


def table_html(columns: Sequence[Column], rows: Sequence[RowLike], css: str = "") -> str:
    """A sortable table (report.js sorts on a header click, by data-sort where a cell has a figure); each
    column's best figure among finished techniques in bold, as in REPORT.md."""
    best = best_values(list(columns), rows)
    head = "".join(f'<th data-numeric="{int(c.numeric)}" title="sort">{escape(c.header)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column.key) if column.key else None
            sort = f' data-sort="{value!r}"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
            text = escape(column.render(row))
            if column.header in best and row["status"] == "ok" and value == best[column.header]:
                text = f"<b>{text}</b>"
            cells.append(f'<td class="{"num" if column.numeric else ""}"{sort}>{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="sortable {css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def fold(title: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{escape(title)}</summary>{body}</details>"


def figure_groups(task: sections.TaskView) -> str:
    """Every figure of the full table, grouped, each group a fold with its task sections beneath."""
    rows = task.rows
    columns = visible_columns(rows, "markdown")
    technique = columns[0]
    headline = {c.header for c in headline_columns(rows)}
    grouped: dict[str, list[Column]] = {name: [] for name in [*GROUPS, "search", "other"]}
    for column in columns[1:]:
        if column.key and column.key.startswith("lm_eval:"):
            grouped["lm-eval"].append(column)
        elif column.header not in headline | {"kind", "status", "score [95% CI]", "vs best"}:
            grouped[next((g for g, headers in GROUPS.items() if column.header in headers), "other")].append(column)
    bodies = {name: [table_html([technique, *cols], rows)] if cols else [] for name, cols in grouped.items()}
    bodies["training"] += svg.training_svgs(rows, task.name)
    bodies["search"] += svg.search_svgs(*study_sections.search_plot(task.store), f"{task.name}: search trials")
    loose = []
    for section in sections.ordered("task"):
        if section.name in REPLACED["task"] or section.name in NOTES:
            continue
        text = sections.text(task, section)
        if not text:
            continue
        group, shown = SECTION_GROUPS.get(section.name), markdown_html(text, task.folder)
        if group:
            bodies[group].append(shown)
        else:
            loose.append(fold(section.name, shown))
    folds = [fold(name, "".join(parts)) for name, parts in bodies.items() if parts]
    everything = table_html(columns, rows, "full")
    return fold("all figures, one table", everything) + "".join(folds) + "".join(loose)


def confusion_html(task: sections.TaskView, index: int) -> str:
    """Each technique's confusion matrix, every cell a button that lists its examples in the browser."""
    labels = task.store.meta["task"].get("labels")
    if not labels or len(labels) > MAX_LABELS:
        return ""
    tables = []
    for row in task.rows:
        answers = task.predictions.get(row["technique"])
        if row["kind"] == floor.KIND or not answers:
            continue
        matrix = confusion(answers, labels)
        head = "".join(f"<th>{escape(c)}</th>" for c in matrix.columns)
        body = "".join(
            f"<tr><th>{escape(label)}</th>"
            + "".join(
                f'<td><button class="cm{" hit" if label == column else ""}" data-browser="{index}" '
                f'data-tech="{escape(row["technique"])}" data-expected="{escape(label)}" data-parsed="{escape(column)}"'
                f"{' disabled' if not count else ''}>{count}</button></td>"
                for column, count in zip(matrix.columns, counts)
            )
            + "</tr>"
            for label, counts in zip(matrix.labels, matrix.counts)
        )
        tables.append(
            f'<div class="matrix"><h4>{escape(row["technique"])}</h4><table class="confusion">'
            f'<thead><tr><th title="expected \\ answered">expected \\ answered</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )
    if not tables:
        return ""
    return fold(
        "confusion matrices: click a cell to list its examples", f'<div class="matrices">{"".join(tables)}</div>', True
    )


def browser_data(task: sections.TaskView) -> dict:
    """What the example browser reads: each finished technique's predictions, as stored."""
    return {
        "task": task.name,
        "metric": task.store.meta["task"].get("metric"),
        "labels": task.store.meta["task"].get("labels"),
        "techniques": [r["technique"] for r in task.rows if r["technique"] in task.predictions],
        "predictions": task.predictions,
    }


def task_html(task: sections.TaskView, index: int, workload: dict | None) -> str:
    if not task.rows:
        return f"<section><h2>{escape(task.name)}</h2><p>No technique has finished yet.</p></section>"
    notes = [markdown_html(sections.text(task, s), task.folder) for s in sections.ordered("task") if s.name in NOTES]
    charts = [svg.tradeoff_svg(task.rows, axis, f"{task.name}: score vs {axis}") for axis in plots.AXES]
    volume = (workload or {}).get("requests")
    charts.append(svg.cost_at_volume_svg(task.rows, f"{task.name}: cost at volume", volume))
    learning = study_sections.learning_curves(task.store)  # a study with train_sizes
    metric = task.store.meta["task"].get("metric") or "score"
    charts.append(
        svg.learning_curve_svg(
            learning["curves"], learning["levels"], f"score ({metric})", f"{task.name}: learning curves"
        )
    )
    return (
        f'<section class="task"><h2>{escape(task.name)}</h2>'
        + table_html(headline_columns(task.rows, workload), task.rows, "headline")
        + "".join(n for n in notes if n)
        + (f'<div class="plots">{"".join(charts)}</div>' if any(charts) else "")
        + "<h3>Every figure</h3>"
        + figure_groups(task)
        + "<h3>Examples</h3>"
        + confusion_html(task, index)
        + f'<div class="browser" data-source="examples-{index}"></div>'
        + f'<script type="application/json" id="examples-{index}">{script_json(browser_data(task))}</script>'
        + "</section>"
    )


def section_fold(name: str, text: str, folder: Path) -> str:
    """A report section folded under its own `## heading` (or its name, when it has none)."""
    heading, _, rest = text.partition("\n")
    if heading.startswith("## "):
        return fold(heading.removeprefix("## "), markdown_html(rest, folder))
    return fold(name.capitalize(), markdown_html(text, folder))


def render_html(report: sections.ReportView) -> str:
    """The page: title, recommendation and warnings, each task's part, then the report's other sections."""
    drawn_here = ("title", "recommendation")
    md = {
        s.name: sections.text(report, s)
        for s in sections.ordered("report")
        if s.name not in REPLACED["report"] or s.name in drawn_here
    }
    workload = report.recipe.get("workload")
    others = [
        section_fold(name, text, report.folder) for name, text in md.items() if text and name not in REPLACED["report"]
    ]
    body = (
        markdown_html(md.get("title", ""), report.folder)
        + markdown_html(md.get("recommendation", ""), report.folder)
        + "".join(task_html(task, i, workload) for i, task in enumerate(report.tasks))
        + "".join(others)
    )
    title = report.recipe.get("name", "report")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(str(title))}: REPORT</title><style>{asset('report.css')}</style></head>"
        f"<body><main>{body}</main><script>{asset('report.js')}</script></body></html>\n"
    )


@cache
def asset(name: str) -> str:
    return (ASSETS / name).read_text()


def embedded_json(page: str, element_id: str):
    """The JSON a page embeds under `element_id` (tests and tools read the browser's data back)."""
    start = page.index(f'id="{element_id}">') + len(f'id="{element_id}">')
    return json.loads(page[start : page.index("</script>", start)])
