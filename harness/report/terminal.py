"""The results table for the terminal (rich)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from harness.report.columns import visible_columns
from harness.report.decision import with_verdicts
from harness.results import RunStore

STATUS_STYLE = {"ok": "green", "failed": "red", "skipped": "yellow"}


def terminal_table(store: RunStore) -> Table:
    rows = with_verdicts(store.ordered_rows(), store.finished_predictions())
    meta = store.meta
    title = f"{meta['recipe']['name']} — {meta['recipe']['model']['id']} on {meta['task']['name']}"
    table = Table(title=title, caption=f"{store.run_dir}", header_style="bold", box=box.SIMPLE_HEAD,
                  padding=(0, 1), collapse_padding=True, pad_edge=False)
    columns = visible_columns(rows, "terminal")
    for column in columns:
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(column.render(row) for column in columns), style=STATUS_STYLE.get(row["status"]))
    return table
