"""Markdown building blocks every report section uses: an escaped table cell, a table, a clipped text."""

from __future__ import annotations


def cell(text: str) -> str:
    """Text that stays inside one table cell: pipes escaped, newlines flattened."""
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[str]], right: list[bool] | None = None) -> str:
    """A markdown table; `right` marks the right-aligned (numeric) columns."""
    right = right or [False] * len(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
