"""Cost of ownership: train once, then pay for every request served.

A technique's cost at V requests is `train_cost_usd + V * serving_usd_per_request`, a line in V. Two
lines cross once unless they are parallel or one is below the other everywhere (cheaper both to start
and per request). Everything here is a pure function of rows (the per-row figures also of the
recipe's device prices), so the worker that stores the figures, the report's "Cost at volume" section
and the recommendation share one arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness import kinds
from harness.rows import RowLike

API_TOKEN_FIELDS = ("api_input_tokens", "api_output_tokens")  # a row priced by its tokens (kind api)


def price_per_second(device: str | None, usd_per_hour: dict[str, float]) -> float | None:
    """The recipe's price for the row's device type (cpu, cuda), per second; None when it has none."""
    price = usd_per_hour.get((device or "").split(":")[0])
    return None if price is None else price / 3600


def priced_by_tokens(row: RowLike) -> bool:
    """Whether the row's cost comes from token prices (kind api) rather than device time."""
    return any(row.get(key) is not None for key in API_TOKEN_FIELDS) and row.get("cost_usd") is not None


def serving_usd_per_request(row: RowLike, price: float | None) -> float | None:
    """One request's cost: a token-priced row's cost (a hosted fine-tuning's serving tokens) per request;
    else device time per request at the recipe's batch size (evaluation seconds / examples, plus retrieval
    per request) times the price."""
    n = row.get("n_eval")
    if not n:
        return None
    if "api_serving_usd" in row:  # a hosted fine-tuned model (api_finetune): its serving tokens' bill alone
        return None if row["api_serving_usd"] is None else row["api_serving_usd"] / n
    if priced_by_tokens(row):
        return row["cost_usd"] / n
    if price is None or row.get("eval_seconds") is None:
        return None
    return price * (row["eval_seconds"] / n + (row.get("retrieval_seconds_per_request") or 0.0))


def run_costs(row: RowLike, usd_per_hour: dict[str, float]) -> dict:
    """The cost figures of a finished cell's row, from its measured seconds:

    - `cost_usd`: what this run spent on the technique, wall time less its lm-eval run (a token-priced
      row keeps its own);
    - `lm_eval_cost_usd`: the lm-eval run, on a line of its own (0 for a technique that reused the
      shared base-model scores; None without lm-eval);
    - `train_cost_usd`: training, once (0 for a technique that does not train; a hosted fine-tuning's
      own, from its billed tokens);
    - `judge_cost_usd` (only where an LLM judge graded the answers, eval.judge): a local judge's own
      seconds, which are not in the wall time; an endpoint judge's row keeps its own (its tokens at the
      endpoint's price, or None);
    - `serving_usd_per_request`: see serving_usd_per_request."""
    price = price_per_second(row.get("device"), usd_per_hour)
    lm_eval = row.get("lm_eval_seconds")
    hosted = priced_by_tokens(row) or kinds.hosted(row.get("kind") or "")
    if hosted:  # a hosted model: its bill, or unknown
        cost = row.get("cost_usd")
    else:
        cost = None if price is None else price * ((row.get("wall_seconds") or 0.0) - (lm_eval or 0.0))
    train, judge = row.get("train_seconds"), row.get("judge_seconds")
    if hosted and "train_cost_usd" in row:  # a provider's fine-tuning: its bill for the trained tokens, or unknown
        train_cost = row["train_cost_usd"]
    else:
        train_cost = 0.0 if not train else None if price is None else price * train
    return {
        "cost_usd": cost,
        "lm_eval_cost_usd": None if price is None or lm_eval is None else price * lm_eval,
        "train_cost_usd": train_cost,
        "serving_usd_per_request": serving_usd_per_request(row, price),
    } | (
        {}
        if judge is None or "judge_cost_usd" in row  # an endpoint judge priced itself
        else {"judge_cost_usd": None if price is None else price * judge}
    )


ENERGY_KEYS = ("train_energy_wh", "eval_energy_wh", "lm_eval_energy_wh")


def energy_figures(row: RowLike, usd_per_kwh: float | None) -> dict:
    """`energy_wh`: the GPU energy of the row's measured phases (NVML, CUDA only), and `energy_cost_usd` at
    the recipe's electricity price (cost.usd_per_kwh) where one is given; nothing when no phase's energy
    was measured (the CPU, or no NVML)."""
    measured = [row[key] for key in ENERGY_KEYS if row.get(key) is not None]
    if not measured:
        return {}
    total = sum(measured)
    return {"energy_wh": total} | ({} if usd_per_kwh is None else {"energy_cost_usd": total / 1000 * usd_per_kwh})


def with_starting_model(row: RowLike, *sources: RowLike | None) -> RowLike:
    """A technique that needs another's trained model (its `init_from`, the reward model it is trained
    against) owns that training too: its train_cost_usd adds each source's (which holds its own sources'),
    and own_train_cost_usd keeps its own."""
    found = [s for s in sources if s is not None]
    own = row.get("train_cost_usd")
    if own is None or not found:
        return row
    inherited = [s.get("train_cost_usd") for s in found]
    total = None if None in inherited else own + sum(inherited)  # type: ignore[arg-type]
    return {**row, "own_train_cost_usd": own, "train_cost_usd": total}


# --- cost lines --------------------------------------------------------------------------------


def line(row: RowLike) -> tuple[float, float] | None:
    """(one-off training cost, cost per request), or None when the row lacks either."""
    train, serving = row.get("train_cost_usd"), row.get("serving_usd_per_request")
    return None if train is None or serving is None else (train, serving)


def _known_line(row: RowLike) -> tuple[float, float]:
    """line() of a row that has one (a `costed` row)."""
    costs = line(row)
    if costs is None:
        raise ValueError(f"{row.get('technique')!r} has no cost line (training and per-request costs)")
    return costs


def total_cost(row: RowLike, volume: float) -> float | None:
    """Training once plus `volume` requests."""
    costs = line(row)
    return None if costs is None else costs[0] + volume * costs[1]


def costed(rows: Sequence[RowLike]) -> list[RowLike]:
    """Finished rows that have a cost line."""
    return [r for r in rows if r.get("status", "ok") == "ok" and line(r) is not None]


def break_even(a: RowLike, b: RowLike) -> float | None:
    """The request volume (> 0) at which a's and b's costs are equal; None when they never cross
    (parallel, or one cheaper both to start and per request)."""
    (ta, sa), (tb, sb) = _known_line(a), _known_line(b)
    if sa == sb:
        return None
    volume = (tb - ta) / (sa - sb)
    return volume if volume > 0 else None


@dataclass(frozen=True)
class Crossing:
    before: str  # cheaper below the volume (cheaper to start)
    after: str  # cheaper above it (cheaper per request)
    volume: float


def crossings(rows: Sequence[RowLike]) -> list[Crossing]:
    """Every pair of techniques whose costs cross, by volume."""
    rows = costed(rows)
    found = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            volume = break_even(a, b)
            if volume is not None:
                first, second = (a, b) if _known_line(a)[0] < _known_line(b)[0] else (b, a)
                found.append(Crossing(first["technique"], second["technique"], volume))
    return sorted(found, key=lambda c: c.volume)


def cheapest_to_start(rows: Sequence[RowLike]) -> RowLike | None:
    """The lowest training cost (ties: the cheaper per request)."""
    rows = costed(rows)
    return min(rows, key=_known_line) if rows else None


def cheapest_per_request(rows: Sequence[RowLike]) -> RowLike | None:
    """The lowest serving cost per request (ties: the cheaper to start)."""
    rows = costed(rows)
    return min(rows, key=lambda r: _known_line(r)[::-1]) if rows else None


def cheapest_ranges(rows: Sequence[RowLike]) -> list[tuple[str, float, float]]:
    """(technique, from volume, to volume) for the technique that costs least over each range of
    request volumes, from 0 to infinity: the lower envelope of the cost lines."""
    lines = {r["technique"]: _known_line(r) for r in costed(rows)}
    if not lines:
        return []
    current, volume, ranges = min(lines, key=lambda n: lines[n]), 0.0, []
    while True:
        start, per_request = lines[current]
        # the line that meets the current one soonest after `volume`, among those cheaper per request
        meets = [((t - start) / (per_request - s), s, n) for n, (t, s) in lines.items() if s < per_request]
        if not meets:
            ranges.append((current, volume, math.inf))
            return ranges
        at, _, following = min((max(at, volume), s, n) for at, s, n in meets)
        if at > volume:
            ranges.append((current, volume, at))
        current, volume = following, at


# --- words -------------------------------------------------------------------------------------


def volume_text(volume: float) -> str:
    """A request count rounded to two significant figures: 40k, 1.2M, 850."""
    rounded = float(f"{max(volume, 1):.2g}")
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if rounded >= size:
            return f"{rounded / size:g}{unit}"
    return f"{rounded:g}"
