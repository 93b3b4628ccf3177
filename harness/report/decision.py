"""The numbers a decision rests on: which differences are real, the Pareto front, and the recommendation.

Everything here is computed from stored rows and per-example predictions, so a report can be
re-rendered (and tested) without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from harness.evaluate import lmeval

ALPHA = 0.05  # significance level of the paired test


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact McNemar test on paired 0/1 outcomes: two-sided p that a and b are equally often right.

    Only the discordant pairs count (a right and b wrong, or the reverse); under the null each is a
    fair coin flip, so the p-value is a binomial test on them.
    """
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError("paired outcomes need the same examples")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    return 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


@dataclass(frozen=True)
class VersusBest:
    p_value: float | None  # None for the best itself, or when the examples differ
    marker: str  # "best", "tied" (not significantly worse), "worse" (significantly), or "" (untested)


def paired_p(predictions: dict[str, list[dict]], a: str, b: str) -> float | None:
    """McNemar p between two techniques' per-example correctness; None unless they scored the same examples."""
    first = {p["id"]: bool(p["correct"]) for p in predictions.get(a, [])}
    second = {p["id"]: bool(p["correct"]) for p in predictions.get(b, [])}
    if not first or first.keys() != second.keys():
        return None
    ids = sorted(first)
    return mcnemar_p([first[i] for i in ids], [second[i] for i in ids])


def scored_rows(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == "ok" and r.get("score") is not None]


def paired_vs_best(rows: Sequence[dict], predictions: dict[str, list[dict]]) -> dict[str, VersusBest]:
    """Each scored technique against the highest-scoring one, McNemar on the shared held-out examples."""
    scored = scored_rows(rows)
    if not scored:
        return {}
    best = max(scored, key=lambda r: r["score"])
    verdicts = {best["technique"]: VersusBest(None, "best")}
    for row in scored:
        if row is not best:
            p = paired_p(predictions, best["technique"], row["technique"])
            marker = "" if p is None else "worse" if p < ALPHA and row["score"] < best["score"] else "tied"
            verdicts[row["technique"]] = VersusBest(p, marker)
    return verdicts


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, cost, score) points no other point beats: cheaper-or-equal and at least as good,
    strictly better in one. Ordered by cost."""
    front = []
    for name, cost, score in points:
        dominated = any(c <= cost and s >= score and (c < cost or s > score) for _, c, s in points)
        if not dominated:
            front.append((cost, name))
    return [name for _, name in sorted(front)]


@dataclass(frozen=True)
class Recommendation:
    technique: str | None
    reason: str
    upgrades: list[str]  # one line per costlier option: what it buys over the recommendation


def recommend(rows: Sequence[dict], predictions: dict[str, list[dict]], cost_key: str = "cost_usd") -> Recommendation:
    """The cheapest technique whose score is not significantly below the best, and what each costlier
    option buys over it (score change with its significance, cost ratio, memory change)."""
    verdicts = paired_vs_best(rows, predictions)
    scored = [r for r in scored_rows(rows) if r.get(cost_key) is not None]
    eligible = [r for r in scored if verdicts[r["technique"]].marker in ("best", "tied")]
    if not eligible:
        return Recommendation(None, "no technique finished with a score and a cost", [])
    pick = min(eligible, key=lambda r: (r[cost_key], r.get("peak_memory_bytes") or 0, -r["score"]))
    best = max(scored_rows(rows), key=lambda r: r["score"])
    if pick is best:
        reason = f"it has the highest score ({pick['score']:.3f}) and every cheaper technique scores significantly lower"
    else:
        reason = (f"its score ({pick['score']:.3f}) is not significantly below the best, {best['technique']} "
                  f"({best['score']:.3f}; McNemar p = {verdicts[pick['technique']].p_value:.2f}), and it costs less")
    upgrades = []
    for row in sorted(scored, key=lambda r: r[cost_key]):
        if row is pick or row[cost_key] < pick[cost_key]:
            continue
        p = paired_p(predictions, row["technique"], pick["technique"])
        noise = "" if p is None else f", significant (p = {p:.3f})" if p < ALPHA else f", within noise (p = {p:.2f})"
        upgrades.append(f"**{row['technique']}**: {row['score'] - pick['score']:+.3f} score{noise}, for "
                        f"{row[cost_key] / pick[cost_key]:.1f}x the cost{_memory_delta(row, pick)}{_lm_eval_delta(row, pick)}")
    return Recommendation(pick["technique"], reason, upgrades)


def _lm_eval_delta(row: dict, pick: dict) -> str:
    """The change in each lm-eval task's first metric: what the costlier option forgets (or gains)."""
    deltas, seen = [], set()
    for key in lmeval.columns([row, pick]):
        task = key.split(":")[1]
        if task not in seen and row.get(key) is not None and pick.get(key) is not None:
            seen.add(task)
            deltas.append(f"{key.removeprefix(lmeval.PREFIX).replace(':', ' ')} {row[key] - pick[key]:+.3f}")
    return f"; {', '.join(deltas)}" if deltas else ""


def _memory_delta(row: dict, pick: dict) -> str:
    a, b = row.get("peak_memory_bytes"), pick.get("peak_memory_bytes")
    return "" if a is None or b is None else f" and {(a - b) / 2**30:+.2f} GiB peak memory"


def with_verdicts(rows: Sequence[dict], predictions: dict[str, list[dict]]) -> list[dict]:
    """Copies of rows with `vs_best_marker` and `vs_best` (marker and p-value, as the table shows them)."""
    verdicts = paired_vs_best(rows, predictions)
    annotated = []
    for row in rows:
        v = verdicts.get(row["technique"])
        text = None
        if v is not None:
            text = {"best": "best", "": "untested"}.get(v.marker) or (
                f"{'≈' if v.marker == 'tied' else '▼'} p={v.p_value:.3f}")
        annotated.append(row | {"vs_best_marker": v.marker if v else None, "vs_best": text})
    return annotated
