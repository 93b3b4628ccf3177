"""REPORT.html, the report as one self-contained page (page.py), and the page's inline plots (svg.py)."""

from __future__ import annotations

from pathlib import Path

from harness.report.html.page import embedded_json, stores_html
from harness.results import RunStore, write_atomic

__all__ = ["embedded_json", "write_html"]


def write_html(stores: list[RunStore], folder: Path) -> Path:
    """Write REPORT.html beside REPORT.md in folder."""
    path = Path(folder) / "REPORT.html"
    write_atomic(path, stores_html(stores, Path(folder)))
    return path
