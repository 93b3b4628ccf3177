"""The columns of the results table, shared by the terminal and markdown renderers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import figures
from harness.analysis.floor import KIND as FLOOR_KIND
from harness.figures import fmt_bytes, fmt_count, fmt_number, fmt_seconds  # noqa: F401  (re-exported)
from harness.rows import RowLike


def fmt_score(row: RowLike) -> str:
    """The score and its 95% CI; the score alone when the interval is missing (lost to a broken figure)."""
    if row.get("score") is None:
        return "–"
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return fmt_number(row["score"], ".3f")
    return f"{row['score']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def fmt_ci(row: RowLike) -> str:
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return "–"
    return f"{row['ci_low']:.2f}–{row['ci_high']:.2f}"


def fmt_seed_spread(row: RowLike) -> str:
    """The standard deviation of the per-seed scores; "–" for single-seed rows, so the column hides itself."""
    if (row.get("n_seeds") or 1) < 2 or row.get("score_std") is None:
        return "–"
    return f"±{row['score_std']:.3f}"


def fmt_macro_f1(row: RowLike) -> str:
    """Macro-F1 beside an accuracy score: a classifier that answers the majority label scores high accuracy
    and low macro-F1, so the pair shows it at a glance."""
    if row.get("metric") != "accuracy":
        return "–"
    return fmt_number(row.get("score_macro_f1"), ".3f")


def fmt_metric(row: RowLike) -> str:
    """The metric, and how answers were obtained when not by generation: 'accuracy (loglik)'."""
    if not row.get("metric"):
        return "–"
    return row["metric"] + (" (loglik)" if row.get("eval_mode") == "loglikelihood" else "")


def fmt_sig(row: RowLike) -> str:
    """The terminal's one-glyph verdict, with ⚠ when the technique carries a floor warning."""
    mark = {"best": "★", "tied": "≈", "worse": "▼"}.get(row.get("vs_best_marker") or "", "–")
    return mark + ("⚠" if row.get("floor_flags") else "")


def fmt_params(row: RowLike) -> str:
    trainable, total = row.get("trainable_params"), row.get("total_params")
    if total is None:
        return "–"
    share = f" ({trainable / total:.2%})" if trainable else ""
    return f"{fmt_count(trainable)} / {fmt_count(total)}{share}"


def fmt_recall(row: RowLike) -> str:
    return "–" if row.get("recall_at_k") is None else f"{row['recall_at_k']:.2f}@{row['retrieval_k']}"


def fmt_misses(row: RowLike) -> str:
    if row.get("retrieval_misses") is None:
        return "–"
    return f"{row['retrieval_misses']} / {row['reading_misses']}"


def fmt_latency(row: RowLike) -> str:
    if row.get("latency_p50_seconds") is None:
        return "–"
    return f"{row['latency_p50_seconds']:.2f}s / {row['latency_p95_seconds']:.2f}s"


def fmt_api_tokens(row: RowLike) -> str:
    if row.get("api_input_tokens") is None:
        return "–"
    return f"{fmt_count(row['api_input_tokens'])} / {fmt_count(row['api_output_tokens'])}"


@dataclass(frozen=True)
class Column:
    header: str
    render: Callable[[RowLike], str]
    numeric: bool = True  # right-aligned
    where: str = "both"  # "both", "markdown" or "terminal": the terminal table must fit 80 columns
    key: str | None = None  # the row figure behind the cell: its best value is marked (harness/figures.py)

    @property
    def best(self) -> str | None:
        """ "max" or "min": which end of `key` is best, from the figure table; None: nothing to mark."""
        figure = figures.get(self.key) if self.key else None
        return None if figure is None or figure.better is None else ("max" if figure.better == "higher" else "min")


def _competes(row: RowLike) -> bool:
    """Finished techniques compete for the bold best value; the floor is a reference, not a rival."""
    return row["status"] == "ok" and row.get("kind") != FLOOR_KIND


def best_values(columns: list[Column], rows: Sequence[RowLike]) -> dict[str, float]:
    """Column header -> the best figure among finished rows, where at least two rows have one."""
    best = {}
    for column in columns:
        if column.best is None or column.key is None:
            continue
        values = [r[column.key] for r in rows if _competes(r) and r.get(column.key) is not None]
        if len(values) >= 2:
            best[column.header] = max(values) if column.best == "max" else min(values)
    return best


TRAIN_PEAK, SERVE_PEAK = "train_peak_memory_bytes", "eval_peak_memory_bytes"  # REPORT.md's memory columns

COLUMNS = (
    Column("technique", lambda r: r["technique"], numeric=False, where="markdown"),
    Column(
        "technique",
        lambda r: r["technique"] + ("" if r["status"] == "ok" else f" ({r['status']})"),
        numeric=False,
        where="terminal",
    ),  # the status rides along, saving a column
    Column("kind", lambda r: r["kind"], numeric=False, where="markdown"),
    Column("status", lambda r: r["status"], numeric=False, where="markdown"),
    Column("score [95% CI]", fmt_score, where="markdown", key="score"),
    Column("score", lambda r: fmt_number(r.get("score"), ".3f"), where="terminal"),
    Column("95% CI", fmt_ci, where="terminal"),
    Column("± seeds", fmt_seed_spread, where="markdown"),
    Column("macro-F1", fmt_macro_f1, where="markdown", key="score_macro_f1"),
    Column("metric", fmt_metric, numeric=False, where="markdown"),
    Column("n", lambda r: fmt_number(r.get("n_eval"), "d"), where="markdown"),
    Column("no label", lambda r: fmt_number(r.get("invalid_rate"), ".0%"), where="markdown"),
    Column("vs best", lambda r: r.get("vs_best") or "–", where="markdown"),
    Column(
        "judge", lambda r: fmt_number(r.get("judge_score"), ".3f"), where="markdown", key="judge_score"
    ),  # an LLM judge's mean rubric score, 0-1 (eval.judge; tasks with `judge:`)
    Column("sig", fmt_sig, where="terminal"),
    Column(
        "prefers chosen",
        lambda r: fmt_number(r.get("preference_accuracy"), ".0%"),
        where="markdown",
        key="preference_accuracy",
    ),  # preference tasks: held-out pairs ranked the chosen answer first
    Column("pref. margin", lambda r: fmt_number(r.get("preference_margin"), ".1f"), where="markdown"),
    Column("recall", fmt_recall),
    Column("wrong: not retrieved / misread", fmt_misses, where="markdown"),
    Column("wall", lambda r: fmt_seconds(r.get("wall_seconds"))),
    Column("train", lambda r: fmt_seconds(r.get("train_seconds")), where="markdown", key="train_seconds"),
    Column("eval", lambda r: fmt_seconds(r.get("eval_seconds")), where="markdown"),
    Column("index", lambda r: fmt_seconds(r.get("index_seconds")), where="markdown"),
    Column("lm-eval time", lambda r: fmt_seconds(r.get("lm_eval_seconds")), where="markdown"),
    Column("peak mem", lambda r: fmt_bytes(r.get("peak_memory_bytes")), where="terminal", key="peak_memory_bytes"),
    # the figures users compare: what training needs (trained kinds), and what serving the model needs
    Column("train mem", lambda r: fmt_bytes(r.get(TRAIN_PEAK)), where="markdown", key=TRAIN_PEAK),
    Column("serve mem", lambda r: fmt_bytes(r.get(SERVE_PEAK)), where="markdown", key=SERVE_PEAK),
    Column("trainable / total params", fmt_params, where="markdown"),
    Column(
        "train tok/s",
        lambda r: fmt_number(r.get("train_tokens_per_second"), ".0f"),
        where="markdown",
        key="train_tokens_per_second",
    ),
    Column("ex/s", lambda r: fmt_number(r.get("eval_examples_per_second"), ".2f"), where="markdown"),
    Column("latency p50 / p95", fmt_latency, where="markdown"),  # kind api: per request
    Column("api tokens in / out", fmt_api_tokens, where="markdown"),
    Column("cost", lambda r: "–" if r.get("cost_usd") is None else f"${r['cost_usd']:.4f}", key="cost_usd"),
    Column("artifact", lambda r: fmt_bytes(r.get("artifact_bytes")), where="markdown", key="artifact_bytes"),
)


def lm_eval_columns(rows: Sequence[RowLike], target: str) -> list[Column]:
    """One column per lm-eval task and metric, with lm-eval's stderr in markdown; the terminal, which
    must fit 80 columns, gets each task's first metric only."""
    keys, seen_tasks = [], set()
    for key in figures.lm_eval_keys(rows):
        task = key.split(":")[1]
        if target == "markdown" or task not in seen_tasks:
            keys.append(key)
            seen_tasks.add(task)

    def render(key: str) -> Callable[[RowLike], str]:
        def cell(row: RowLike) -> str:
            value, stderr = row.get(key), row.get(key + "_stderr")
            if value is None:
                return "–"
            return f"{value:.3f} ±{stderr:.3f}" if target == "markdown" and stderr is not None else f"{value:.3f}"

        return cell

    def header(key: str) -> str:
        task, metric = key.removeprefix(figures.LM_EVAL_PREFIX).split(":", 1)
        return f"{task} {metric}" if target == "markdown" else (task if len(task) <= 8 else task[:7] + "…")

    return [Column(header(key), render(key), where=target, key=key) for key in keys]


def visible_columns(rows: Sequence[RowLike], target: str) -> list[Column]:
    """The target's columns ("markdown" or "terminal"), less those empty in every row (e.g. 'train'
    before any fine-tuning ran), then the lm-eval columns."""
    always = {"technique", "kind", "status", "score [95% CI]", "score"}
    fixed = [
        c
        for c in COLUMNS
        if c.where in ("both", target) and (c.header in always or any(c.render(r) != "–" for r in rows))
    ]
    return fixed + lm_eval_columns(rows, target)


# --- the headline: the few figures a decision reads first (REPORT.md's first table, REPORT.html's sortable one)

HEADLINE = ("technique", "status", "score [95% CI]", "vs best", "macro-F1", "judge", "train mem", "serve mem")


def cost_column(volume: float | None, period: str | None = None) -> Column:
    """What owning each technique costs: training once plus `volume` requests (the recipe's workload), or,
    without a workload, serving 1k requests (analysis/ownership.py)."""
    from harness.analysis import ownership

    if volume:
        header = f"cost at {ownership.volume_text(volume)} requests" + (f" / {period}" if period else "")
        return Column(header, lambda r: figures.fmt_usd(ownership.total_cost(r, volume)))
    return Column(
        "serving per 1k requests",
        lambda r: (
            "–" if r.get("serving_usd_per_request") is None else figures.fmt_usd(1000 * r["serving_usd_per_request"])
        ),
    )


def headline_columns(rows: Sequence[RowLike], workload: dict | None = None) -> list[Column]:
    """The headline table's columns (at most ten): the technique, its score and verdict, the memory it needs
    to train and to serve, its cost at the workload and its latency; those empty in every row left out, as in
    the full table (visible_columns), whose definitions these are."""
    shown = {c.header: c for c in visible_columns(rows, "markdown")}
    columns = [shown[header] for header in HEADLINE if header in shown]
    if "status" in shown and all(r["status"] == "ok" for r in rows):
        columns.remove(shown["status"])  # every row finished: the column says nothing
    workload = workload or {}
    cost = cost_column(workload.get("requests"), workload.get("period"))
    columns += [
        c for c in (cost, shown.get("latency p50 / p95")) if c is not None and any(c.render(r) != "–" for r in rows)
    ]
    return columns
