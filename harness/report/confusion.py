"""Per-label results of a classification task: each technique's confusion matrix and precision, recall and
F1 per label (scikit-learn), from its stored predictions, so REPORT.md shows which labels a technique
confuses and whether it answered at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.analysis.floor import KIND as FLOOR_KIND
from harness.metrics import INVALID
from harness.rows import RowLike

NO_LABEL = "no label"  # the column of answers that named none of the labels


@dataclass(frozen=True)
class Confusion:
    labels: list[str]  # the rows: the expected label
    columns: list[str]  # the label answered: every label, then INVALID when some answer named none
    counts: list[list[int]]  # counts[i][j]: expected labels[i], answered columns[j]
    precision: list[float]  # per label, in `labels` order (scikit-learn; 0 where undefined)
    recall: list[float]
    f1: list[float]
    support: list[int]  # answers expected to be each label

    @property
    def total(self) -> int:
        return sum(map(sum, self.counts))


def confusion(predictions: Sequence[dict], labels: Sequence[str]) -> Confusion:
    """The confusion matrix and per-label figures of stored predictions (at least one; expected vs parsed
    label); with several seeds the predictions of every seed are counted."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    expected = [p["expected"] for p in predictions]
    parsed = [p["parsed"] for p in predictions]
    columns = list(labels) + ([INVALID] if INVALID in parsed else [])
    counts = confusion_matrix(expected, parsed, labels=columns)[: len(labels)].tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        expected, parsed, labels=list(labels), zero_division=0
    )
    return Confusion(
        list(labels),
        columns,
        counts,
        [float(v) for v in precision],
        [float(v) for v in recall],
        [float(v) for v in f1],
        [int(v) for v in support],
    )


def confusion_table(c: Confusion) -> str:
    """Rows expected, columns answered (the diagonal, the right answers, in bold), then precision, recall
    and F1 of each label."""
    headers = (
        ["expected ↓ answered →"]
        + [NO_LABEL if col == INVALID else _cell(col) for col in c.columns]
        + ["precision", "recall", "F1"]
    )
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for i, label in enumerate(c.labels):
        counts = [f"**{n}**" if j == i and n else str(n) for j, n in enumerate(c.counts[i])]
        figures = [f"{c.precision[i]:.2f}", f"{c.recall[i]:.2f}", f"{c.f1[i]:.2f}"]
        lines.append("| " + " | ".join([_cell(label)] + counts + figures) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def confusion_section(
    rows: Sequence[RowLike], predictions: dict[str, list[dict]], labels: Sequence[str] | None, seeds: int = 1
) -> str:
    """One collapsible block per finished technique of a classification task (the best one open); empty
    for a task without labels. `rows` carry `vs_best_marker` (decision.with_verdicts)."""
    if not labels:
        return ""
    blocks = []
    for row in rows:
        if row["status"] != "ok" or row.get("kind") == FLOOR_KIND or not predictions.get(row["technique"]):
            continue
        c = confusion(predictions[row["technique"]], labels)
        pooled = f", pooled over {seeds} seeds" if seeds > 1 else ""
        macro = sum(c.f1) / len(c.f1)
        summary = (
            f"<b>{row['technique']}</b>: {row.get('metric') or 'score'} {row['score']:.3f}, macro-F1 "
            f"{macro:.3f}; {c.total} answers{pooled}"
        )
        opened = " open" if row.get("vs_best_marker") == "best" else ""
        blocks.append(f"<details{opened}><summary>{summary}</summary>\n\n{confusion_table(c)}\n\n</details>")
    if not blocks:
        return ""
    intro = (
        "Per label: rows are the expected label, columns the label answered (**no label**: the answer named "
        "none), then each label's precision, recall and F1 (scikit-learn); one block per technique."
    )
    return "\n\n".join([intro] + blocks)
