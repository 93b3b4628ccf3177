"""Reports render stored results and import nothing that runs cells: the terminal table, REPORT.md and
REPORT.html share one column list; the numbers they show come from harness.analysis."""

from __future__ import annotations

from pathlib import Path

from harness.report import markdown
from harness.report.export import frame
from harness.report.html import write_html
from harness.report.markdown import render_markdown
from harness.report.terminal import terminal_table
from harness.results import RunStore, report_folder, to_json

__all__ = ["render", "render_markdown", "write_report", "terminal_table"]


def render(stores: list[RunStore], fmt: str, folder: Path) -> str:
    """The run as `fmt`: json (meta and rows per task), csv, or md (the REPORT.md text)."""
    if fmt == "json":
        rows = [{"meta": s.meta, "rows": [r.as_dict() for r in s.ordered_rows()]} for s in stores]
        return to_json(rows, indent=2)
    if fmt == "csv":
        return frame(stores).to_csv(index=False)
    return render_markdown(stores, folder)


def write_report(stores: list[RunStore], folder: Path | None = None) -> Path:
    """Write REPORT.md (its plots and exports) and REPORT.html beside it, from one view of the run (each
    section rendered once); the path of REPORT.md."""
    folder = Path(folder) if folder is not None else report_folder(stores)
    report = markdown.view(stores, folder)
    path = markdown.write_report(stores, folder, report)
    write_html(report)
    return path
