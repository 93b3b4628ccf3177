"""Serving figures of a row: tokens per request and latency at batch size 1, as means and percentiles."""

from __future__ import annotations


def percentile(values, q: float | None = None) -> float | None:
    """The q-th percentile of values (their mean when q is None); None when nothing was measured."""
    import numpy as np

    return None if not len(values) else float(np.mean(values) if q is None else np.percentile(values, q))


def serving_figures(prompt_tokens, output_tokens, latencies=()) -> dict:
    """Per request: prompt and generated tokens (mean, p95) and latency at batch size 1 (p50, p95); None
    where nothing was measured."""
    return {
        "prompt_tokens_mean": percentile(prompt_tokens),
        "prompt_tokens_p95": percentile(prompt_tokens, 95),
        "output_tokens_mean": percentile(output_tokens),
        "output_tokens_p95": percentile(output_tokens, 95),
        **latency_figures(latencies),
    }


def latency_figures(latencies) -> dict:
    return {"latency_p50_seconds": percentile(latencies, 50), "latency_p95_seconds": percentile(latencies, 95)}
