"""The row's numeric figures: a label, a unit (which decides the format), and which end is better.
The report's columns (report/columns.py), the trade-off plots' axes (report/plots.py), the `check:` keys
a recipe may name (config.py) and `harness compare` / `check` (gate.py) all read them through `get`.
The table here holds the figures rows of many kinds share; a figure of one kind is declared by that kind
(`Kind(figures=...)` in its file), so it travels with the kind. lm-eval scores (`lm_eval:<task>:<metric>`)
and secondary metrics (`score_<metric>`) are figures too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LM_EVAL_PREFIX = "lm_eval:"
Unit = Literal["score", "bytes", "seconds", "usd", "count", "share", "rate", "number", "wh"]


def missing(value) -> bool:
    """No figure to show: None, or a float that is no number (NaN or infinite, from a broken measurement
    or a results.json written before such figures were stored as null)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_bytes(value) -> str:
    if missing(value):
        return "–"
    if value < 0:  # a difference, or a broken figure: the unit stays
        return "-" + fmt_bytes(-value)
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.2f} {unit}" if unit == "GiB" else f"{value / size:.0f} {unit}"
    return f"{value} B"


def fmt_seconds(value) -> str:
    if missing(value):
        return "–"
    if value < 0:  # a difference, or a broken figure: the unit stays
        return "-" + fmt_seconds(-value)
    if value == 0:  # nothing spent (e.g. lm-eval scores shared with another technique)
        return "0s"
    if value < 1:  # a request's latency, a retrieval
        return f"{value * 1000:.0f}ms" if value >= 0.001 else f"{value * 1000:.2f}ms"
    return f"{value:.1f}s" if value < 600 else f"{value / 60:.1f}min"


def fmt_usd(value) -> str:
    """Dollars and cents from $1, four places below that, two significant figures below $0.0001 (a request)."""
    if missing(value):
        return "–"
    if value < 0:
        return "-" + fmt_usd(-value)
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    if value >= 1e-4:
        return f"${value:.4f}"
    return f"${value:.{1 - math.floor(math.log10(value))}f}"


def fmt_count(value) -> str:
    if missing(value):
        return "–"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def fmt_number(value, spec: str) -> str:
    return "–" if missing(value) else format(value, spec)


FORMATS = {
    "score": lambda v: fmt_number(v, ".3f"),
    "bytes": fmt_bytes,
    "seconds": fmt_seconds,
    "usd": fmt_usd,
    "count": fmt_count,
    "share": lambda v: fmt_number(v, ".0%"),
    "rate": lambda v: fmt_number(v, ".1f"),
    "number": lambda v: fmt_number(v, ".3f"),
    "wh": lambda v: "–" if missing(v) else f"{v:.3g} Wh",
}


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: Unit
    better: Literal["higher", "lower"] | None = None  # None: neither end (a count, a setting)
    compared: bool = False  # `harness compare` lists it, and `check` tests it, by default

    def format(self, value) -> str:
        """The value for a table; a negative amount (a difference) keeps its unit."""
        return FORMATS[self.unit](value)

    def improved(self, change: float) -> bool:
        return (change > 0) == (self.better != "lower")


_TABLE = (
    Figure("score", "score", "score", "higher", compared=True),
    Figure("ci_low", "95% CI low", "score", "higher"),
    Figure("ci_high", "95% CI high", "score", "higher"),
    Figure("score_std", "score std over seeds", "score", "lower"),
    Figure("chance_score", "uniform-guess score", "score"),
    Figure("invalid_rate", "answers naming no label", "share", "lower"),
    Figure("preference_accuracy", "prefers chosen", "share", "higher"),
    Figure("preference_margin", "preference margin (log-likelihood)", "rate", "higher"),
    # an LLM judge's grades (eval.judge + the task's `judge:` rubric); agreement and correlation describe
    # the judge against the task metric, higher meaning the two tell the same story
    Figure("judge_score", "judge score (rubric, 0-1)", "score", "higher"),
    # eval.reward_model: a kind reward technique's mean score of the answers, and its rank correlation
    # with the task metric's per-example values (as the judge's)
    Figure("reward_score", "reward model's score of the answers", "number", "higher"),
    Figure("reward_spearman", "reward model-metric Spearman correlation", "number", "higher"),
    Figure("reward_seconds", "reward model scoring time", "seconds", "lower"),
    Figure("judge_unparsed", "judge replies without a score", "count", "lower"),
    Figure("judge_agreement", "judge agrees with the metric", "share", "higher"),
    Figure("judge_kappa", "judge-metric Cohen's kappa", "number", "higher"),
    Figure("judge_spearman", "judge-metric Spearman correlation", "number", "higher"),
    Figure("judge_scale", "judge's top score", "count"),
    Figure("judge_seconds", "judge time", "seconds", "lower"),
    Figure("judge_peak_memory_bytes", "judge peak memory", "bytes", "lower"),
    Figure("judge_cost_usd", "judge cost", "usd", "lower"),
    Figure("judge_input_tokens", "prompt tokens sent to the judge endpoint", "count"),
    Figure("judge_output_tokens", "completion tokens of the judge endpoint", "count"),
    Figure("judge_requests", "HTTP requests sent to the judge endpoint", "count"),
    Figure("judge_retries", "retried judge requests", "count", "lower"),
    Figure("judge_cached", "judge replies from the response cache", "count"),
    Figure("wall_seconds", "wall time", "seconds", "lower", compared=True),
    Figure("train_seconds", "training time", "seconds", "lower", compared=True),
    Figure("eval_seconds", "evaluation time", "seconds", "lower", compared=True),
    Figure("model_load_seconds", "model load time", "seconds", "lower"),
    Figure("lm_eval_seconds", "lm-eval time", "seconds", "lower"),
    Figure("index_seconds", "index build time", "seconds", "lower"),
    Figure("retrieval_seconds", "retrieval time", "seconds", "lower"),
    Figure("search_seconds", "search time", "seconds", "lower"),
    Figure("peak_memory_bytes", "peak memory", "bytes", "lower", compared=True),
    Figure("eval_peak_memory_bytes", "evaluation peak memory", "bytes", "lower"),
    Figure("train_peak_memory_bytes", "training peak memory", "bytes", "lower"),
    Figure("lm_eval_peak_memory_bytes", "lm-eval peak memory", "bytes", "lower"),
    # the memory and time plan's estimate for a trained cell (analysis/memory_plan.estimate_for_row), recorded
    # beside the measured train_peak_memory_bytes and train_seconds
    Figure("planned_peak_memory_bytes", "planned peak memory (estimate)", "bytes", "lower"),
    Figure("planned_seconds", "planned training time (estimate)", "seconds", "lower"),
    # CUDA only (harness/measure.py): beside each phase's allocator peak, the allocator's reserved peak and,
    # where NVML answers, the GPU's used memory at its sampled peak and the energy it drew
    *(
        figure
        for phase, name in (("train", "training"), ("eval", "evaluation"), ("lm_eval", "lm-eval"))
        for figure in (
            Figure(f"{phase}_reserved_peak_bytes", f"{name} reserved peak memory (CUDA allocator)", "bytes", "lower"),
            Figure(f"{phase}_device_peak_bytes", f"{name} device peak memory (NVML, as nvidia-smi)", "bytes", "lower"),
            Figure(f"{phase}_energy_wh", f"{name} GPU energy (NVML)", "wh", "lower"),
        )
    ),
    Figure("energy_wh", "GPU energy (NVML; training, evaluation and lm-eval)", "wh", "lower"),
    Figure("energy_cost_usd", "GPU energy cost (energy x cost.usd_per_kwh)", "usd", "lower"),
    Figure("artifact_bytes", "artifact size", "bytes", "lower", compared=True),
    Figure("cost_usd", "cost", "usd", "lower", compared=True),
    Figure("search_cost_usd", "search cost", "usd", "lower"),
    Figure("lm_eval_cost_usd", "lm-eval cost", "usd", "lower"),
    Figure("train_cost_usd", "training cost (one-off; with init_from, the starting model's too)", "usd", "lower"),
    Figure("own_train_cost_usd", "training cost of this technique's own phase (init_from)", "usd", "lower"),
    Figure("serving_usd_per_request", "serving cost per request", "usd", "lower"),
    Figure("prompt_tokens_mean", "prompt tokens per request (mean)", "rate", "lower"),
    Figure("prompt_tokens_p95", "prompt tokens per request (p95)", "rate", "lower"),
    Figure("output_tokens_mean", "generated tokens per request (mean)", "rate", "lower"),
    Figure("output_tokens_p95", "generated tokens per request (p95)", "rate", "lower"),
    Figure("latency_p50_seconds", "latency per request at batch size 1 (p50)", "seconds", "lower"),
    Figure("latency_p95_seconds", "latency per request at batch size 1 (p95)", "seconds", "lower"),
    Figure("retrieval_seconds_per_request", "retrieval time per request", "seconds", "lower"),
    # an exported artifact scored (harness export --score) against the in-memory technique it came from
    Figure("export_score_diff", "score change of the export (paired, vs in memory)", "number", "higher"),
    Figure("export_diff_ci_low", "export score change 95% CI low", "number", "higher"),
    Figure("export_diff_ci_high", "export score change 95% CI high", "number", "higher"),
    Figure("export_p_value", "export vs in memory: paired p", "number"),
    Figure("export_answers_changed", "answers that differ from the in-memory technique's", "count", "lower"),
    # the load test (harness loadtest, eval.serving) at the level the cost per request is read at
    Figure("batch_serving_usd_per_request", "serving cost per request from the batch run", "usd", "lower"),
    Figure("served_concurrency", "requests in flight (load test level costed)", "count"),
    Figure("served_requests_per_second", "served requests/s (load test)", "number", "higher"),
    Figure("served_tokens_per_second", "served generated tokens/s (load test)", "rate", "higher"),
    Figure("served_latency_p50_seconds", "served request latency p50 (load test)", "seconds", "lower"),
    Figure("served_latency_p95_seconds", "served request latency p95 (load test)", "seconds", "lower"),
    Figure("trainable_params", "trainable parameters", "count"),
    Figure("total_params", "parameters", "count"),
    Figure("train_tokens", "training tokens", "count"),
    Figure("train_tokens_per_second", "training tokens/s", "rate", "higher"),
    Figure("eval_tokens_per_second", "generated tokens/s", "rate", "higher"),
    Figure("eval_examples_per_second", "requests/s at the recipe's batch size", "number", "higher"),
    Figure("train_steps", "training steps", "count"),
    Figure("train_world_size", "training processes (ranks, train.distributed)", "count"),
    Figure("train_examples", "training examples", "count"),
    Figure("train_truncated_examples", "truncated training examples", "count", "lower"),
    Figure("train_loss_first", "first training loss", "number", "lower"),
    Figure("train_loss_last", "last training loss", "number", "lower"),
    Figure("validation_loss", "validation loss", "number", "lower"),
    Figure("n_eval", "examples scored", "count"),
    Figure("n_seeds", "seeds", "count"),
    Figure("index_chunks", "corpus chunks", "count"),
    Figure("retrieval_k", "passages retrieved", "count"),
    Figure("recall_at_k", "retrieval recall@k", "share", "higher"),
    Figure("retrieval_misses", "wrong: gold passage not retrieved", "count", "lower"),
    Figure("reading_misses", "wrong: retrieved but misread", "count", "lower"),
    Figure("passages_in_prompt", "passages in the prompt", "number"),
    Figure("search_trials", "search trials", "count"),
    Figure("search_pruned", "search trials pruned", "count"),
    Figure("search_failed", "search trials failed", "count", "lower"),
    Figure("search_best", "best validation figure", "number"),
)
FIGURES: dict[str, Figure] = {f.key: f for f in _TABLE}


def get(key: str, kind: str | None = None) -> Figure | None:
    """The figure for a row key: a shared one (the table above), a secondary metric's (score_<metric>),
    an lm-eval score, or one a technique kind declares (`kind`'s, or any registered kind's)."""
    own = _kind_figures(kind) if kind else {}
    if key in own:  # a kind may give a shared key its own meaning (an api row's latency is per HTTP request)
        return own[key]
    if key in FIGURES:
        return FIGURES[key]
    if key.startswith(LM_EVAL_PREFIX):
        return Figure(key, key.removeprefix(LM_EVAL_PREFIX), "score", "higher")
    if key.startswith("score_"):
        from harness import metrics

        name = key.removeprefix("score_")
        if name in metrics.METRICS:
            return Figure(key, name, "score", "higher" if metrics.get(name).higher_is_better else "lower")
    return None if kind else _kind_figures(None).get(key)


def _kind_figures(kind: str | None) -> dict[str, Figure]:
    from harness import kinds

    return kinds.declared_figures(kind)


def lm_eval_keys(rows) -> list[str]:
    """The lm-eval score keys present in any row (stderr keys excluded), in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update((k, None) for k in row if k.startswith(LM_EVAL_PREFIX) and not k.endswith("_stderr"))
    return list(keys)


def known() -> list[str]:
    """Every figure key a `check:` threshold may name (lm-eval scores aside)."""
    from harness import metrics

    return list(dict.fromkeys([*FIGURES, *_kind_figures(None), *(f"score_{n}" for n in metrics.METRICS.in_order())]))


def compared() -> list[str]:
    return [key for key, figure in (FIGURES | _kind_figures(None)).items() if figure.compared]
