"""REPORT.html, the report as one self-contained page (page.py), and the page's inline plots (svg.py)."""

from __future__ import annotations

from pathlib import Path

from harness.report.html.page import embedded_json, render_html
from harness.report.markdown import view
from harness.report.sections import ReportView
from harness.results import RunStore, write_atomic

__all__ = ["embedded_json", "write_html", "write_stores_html"]


def write_html(report: ReportView) -> Path:
    """Write REPORT.html beside REPORT.md, in the report's folder."""
    path = report.folder / "REPORT.html"
    write_atomic(path, render_html(report))
    return path


def write_stores_html(stores: list[RunStore], folder: Path) -> Path:
    """REPORT.html of stored runs into folder (REPORT.md's folder), from a view of them made here."""
    return write_html(view(stores, Path(folder)))
