"""Markdown building blocks every report section uses: an escaped table cell, a table, a clipped text, and
a safe file name for a name read from results.json."""

from __future__ import annotations

import hashlib
import re

# What a file name may not hold: a path separator, NUL or another control character
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
_MAX_NAME_BYTES = 120  # file systems allow 255 bytes; a plot's name adds its suffix to this part


def file_name(name: str) -> str:
    """A task or technique name (read from results.json, which anyone may have written) as part of one file
    name inside the report folder: kept as it is when it is safe; else its unsafe characters become '_',
    a leading dot goes, it is cut short, and a hash of the whole name keeps two such names apart."""
    if name and not _UNSAFE.search(name) and not name.startswith(".") and len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    safe = _UNSAFE.sub("_", name).lstrip(".").encode()[: _MAX_NAME_BYTES - 9].decode(errors="ignore")
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


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
