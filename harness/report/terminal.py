"""The results table for the terminal (rich), the legend of its marks, and the recommendation."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from harness.analysis.decision import ALPHA, recommend, sentence, with_verdicts, workload_volume
from harness.report.columns import visible_columns
from harness.results import RunStore, task_name

STATUS_STYLE = {"ok": "green", "failed": "red", "skipped": "yellow"}
LEGEND = (
    f"sig: ★ best score · ≈ not significantly different from the best · ▼ significantly worse (paired test, "
    f"Holm-adjusted p < {ALPHA}) · ⚠ a floor warning, listed in REPORT.md"
)


def terminal_table(store: RunStore) -> Table:
    rows = with_verdicts(store.answering_rows(), store.finished_predictions())
    meta = store.meta
    title = f"{meta['recipe']['name']} — {meta['recipe']['model']['id']} on {meta['task']['name']}"
    table = Table(
        title=title,
        caption=f"{store.run_dir}",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    columns = visible_columns(rows, "terminal")
    for column in columns:
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(column.render(row) for column in columns), style=STATUS_STYLE.get(row["status"]))
    return table


def verdict_lines(stores: list[RunStore]) -> list[Text]:
    """Under the table(s): the legend of the sig marks, then each task's recommendation, the sentence
    REPORT.md gives (prefixed with the task in a multi-task run)."""
    lines = [Text(LEGEND, style="dim")]
    for store in stores:
        pick = recommend(store.answering_rows(), store.finished_predictions(), volume=workload_volume(store.meta))
        prefix = f"{task_name(store)}: " if len(stores) > 1 else ""
        line = Text(prefix + sentence(pick))
        if pick.technique:
            line.stylize("bold", len(prefix), len(prefix) + len(f"Use {pick.technique}"))
        lines.append(line)
        lines += [Text(prefix + reward_model_line(r)) for r in store.reward_model_rows()]  # not in the table
    return lines


def reward_model_line(row) -> str:
    """A reward model (kind reward), which the ranked table leaves out, in one line."""
    if row["status"] != "ok" or row.get("reward_accuracy") is None:
        return f"reward model {row['technique']}: {row['status']}" + (f" ({row['error']})" if row.get("error") else "")
    return (
        f"reward model {row['technique']}: ranks {row['reward_accuracy']:.0%} of {row.get('reward_pairs')} held-out "
        f"pairs right (chosen above rejected), mean margin {row.get('reward_margin') or 0:.2f}"
    )
