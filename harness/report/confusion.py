"""Per-label results of a classification task: each technique's confusion matrix and precision, recall and
F1 per label (scikit-learn), from its stored predictions, so REPORT.md shows which labels a technique
confuses and whether it answered at all. A task with many labels shows the labels with the most support
and the most confused pairs; its whole matrix goes to a CSV beside the report, so REPORT.md stays readable."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.analysis.floor import KIND as FLOOR_KIND
from harness.metrics import INVALID
from harness.report.text import cell as text_cell
from harness.report.text import file_name
from harness.results import own_folder, write_atomic
from harness.rows import RowLike
from harness.yamlconfig import ConfigWarning

NO_LABEL = "no label"  # the column of answers that named none of the labels
OTHER = "other labels"  # a capped table's column of answers that named a label not shown
MAX_LABELS = 12  # above this many labels, the table shows the labels with the most support
CONFUSED_PAIRS = 10  # the most confused (expected, answered) pairs listed under a capped table


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
        + [NO_LABEL if col == INVALID else text_cell(col) for col in c.columns]
        + ["precision", "recall", "F1"]
    )
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for i, label in enumerate(c.labels):
        counts = [f"**{n}**" if j == i and n else str(n) for j, n in enumerate(c.counts[i])]
        figures = [f"{c.precision[i]:.2f}", f"{c.recall[i]:.2f}", f"{c.f1[i]:.2f}"]
        lines.append("| " + " | ".join([text_cell(label)] + counts + figures) + " |")
    return "\n".join(lines)


def capped(c: Confusion, keep: int = MAX_LABELS) -> Confusion:
    """The `keep` labels with the most support (ties by label order), every other label's answers summed in
    one column; precision, recall and F1 stay each label's own."""
    rows = sorted(range(len(c.labels)), key=lambda i: -c.support[i])[:keep]
    rows.sort()
    shown = set(rows)
    columns = [c.labels[i] for i in rows] + [OTHER] + c.columns[len(c.labels) :]  # then INVALID, when present
    counts = []
    for i in rows:
        line = c.counts[i]
        other = sum(n for j, n in enumerate(line[: len(c.labels)]) if j not in shown)
        counts.append([line[j] for j in rows] + [other] + line[len(c.labels) :])

    def pick(values: list) -> list:
        return [values[i] for i in rows]

    return Confusion(pick(c.labels), columns, counts, pick(c.precision), pick(c.recall), pick(c.f1), pick(c.support))


def most_confused(c: Confusion, n: int = CONFUSED_PAIRS) -> list[tuple[str, str, int]]:
    """The (expected, answered, count) pairs of wrong answers, most frequent first."""
    pairs = [
        (label, NO_LABEL if answered == INVALID else answered, count)
        for i, label in enumerate(c.labels)
        for j, (answered, count) in enumerate(zip(c.columns, c.counts[i]))
        if j != i and count
    ]
    return sorted(pairs, key=lambda pair: -pair[2])[:n]


def matrix_csv(c: Confusion) -> str:
    """The whole matrix with each label's figures, for a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "expected",
            *[NO_LABEL if col == INVALID else col for col in c.columns],
            "precision",
            "recall",
            "F1",
            "support",
        ]
    )
    for i, label in enumerate(c.labels):
        writer.writerow([label, *c.counts[i], c.precision[i], c.recall[i], c.f1[i], c.support[i]])
    return out.getvalue()


def confusion_section(
    rows: Sequence[RowLike],
    predictions: dict[str, list[dict]],
    labels: Sequence[str] | None,
    seeds: int = 1,
    csv_folder: Path | None = None,
    prefix: str = "",
) -> str:
    """One collapsible block per finished technique of a classification task (the best one open); empty
    for a task without labels. `rows` carry `vs_best_marker` (decision.with_verdicts). Above MAX_LABELS
    labels a block shows the labels with the most support and the most confused pairs, and the whole
    matrix is written to `csv_folder`/`prefix`<technique>-confusion.csv (linked relative to the report)."""
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
        body = (
            confusion_table(c) if len(labels) <= MAX_LABELS else _capped_body(c, row["technique"], csv_folder, prefix)
        )
        blocks.append(f"<details{opened}><summary>{summary}</summary>\n\n{body}\n\n</details>")
    if not blocks:
        return ""
    intro = (
        "Per label: rows are the expected label, columns the label answered (**no label**: the answer named "
        "none), then each label's precision, recall and F1 (scikit-learn); one block per technique."
    )
    return "\n\n".join([intro] + blocks)


def _capped_body(c: Confusion, technique: str, csv_folder: Path | None, prefix: str) -> str:
    """A many-label task's block: the labels with the most support, the most confused pairs, the CSV."""
    lines = [
        f"The {MAX_LABELS} labels of {len(c.labels)} with the most support (**{OTHER}**: answers naming any "
        "other label):",
        "",
        confusion_table(capped(c)),
    ]
    pairs = most_confused(c)
    if pairs:
        lines += ["", "Most confused (expected → answered: count):", ""]
        lines += [f"- {text_cell(expected)} → {text_cell(answered)}: {count}" for expected, answered, count in pairs]
    if csv_folder is not None:
        name = f"{prefix}{file_name(technique)}-confusion.csv"  # prefix: the task's, already safe
        try:
            write_atomic(own_folder(csv_folder) / name, matrix_csv(c))  # a name linked elsewhere is replaced
            lines += ["", f"The whole matrix: [{name}](plots/{name})."]
        except OSError as exc:  # an extra, like a plot: REPORT.md is still written
            warnings.warn(f"{csv_folder / name} left out of the report: {exc}", ConfigWarning, stacklevel=2)
    return "\n".join(lines)
