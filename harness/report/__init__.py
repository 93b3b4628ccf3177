"""Reports are pure functions of stored results: the terminal table and REPORT.md share one column list."""

from harness.report.markdown import render_markdown, write_report
from harness.report.terminal import terminal_table

__all__ = ["render_markdown", "write_report", "terminal_table"]
