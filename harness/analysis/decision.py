"""The numbers a decision rests on: which differences are real, the floor (analysis/floor.py), the Pareto
front, and the recommendation.

Everything here is computed from stored rows and per-example predictions, so a report can be
re-rendered (and tested) without a model. Scores are means over the run's seeds; differences pair
each example with itself under the same seed (see analysis/stats.py). Every p-value that decides
something is Holm-adjusted within its family (all comparisons against the best of one table; all
comparisons against the floor; all upgrades over the pick).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import figures
from harness.analysis import forgetting, ownership
from harness.analysis.floor import KIND as FLOOR_KIND
from harness.analysis.floor import MAJORITY as FLOOR_MAJORITY
from harness.analysis.floor import answer_text
from harness.analysis.stats import (
    Difference,
    collapsed_answer,
    collapsed_seeds,
    holm,
    keyed,
    mcnemar_p,
    paired_difference,
    paired_test_p,
    samples_for,
)
from harness.figures import fmt_usd
from harness.metrics import INVALID
from harness.rows import RowLike

ALPHA = 0.05  # significance level of the paired tests
COST_TOLERANCE = 0.15  # costs within this share of the cheapest count as equal (wall time is noisy)
COLLAPSE_SHARE = 0.9  # one answer above this share of all answers: the technique collapsed onto it

__all__ = [
    "ALPHA",
    "COST_TOLERANCE",
    "VersusBest",
    "Recommendation",
    "mcnemar_p",
    "paired_p",
    "scored_rows",
    "paired_vs_best",
    "floor_flags",
    "versus_floor",
    "not_above_floor",
    "recommend",
    "sentence",
    "pareto_front",
    "with_verdicts",
]


@dataclass(frozen=True)
class VersusBest:
    p_value: float | None  # raw p of the paired bootstrap (agrees with the CI); None for the best, or nothing shared
    marker: str  # "best", "tied" (not significantly worse), "worse" (significantly), or "" (untested)
    diff: float | None = None  # this technique's mean per-example value minus the best's
    ci_low: float | None = None
    ci_high: float | None = None
    p_adjusted: float | None = None  # Holm over every comparison against the best in the table


def paired_p(predictions: dict[str, list[dict]], a: str, b: str, binary: bool = True) -> float | None:
    """The paired p between two techniques' per-example values (McNemar when `binary`, else Wilcoxon);
    None unless they scored the same (seed, id) pairs (`harness compare` reads None as "not paired")."""
    first, second = keyed(predictions.get(a, [])), keyed(predictions.get(b, []))
    if first.keys() != second.keys() and _one_seed(first) and _one_seed(second):
        # a run stored before predictions carried a seed, against a one-seed run: pair by example id
        first, second = ({i: v for (_, i), v in d.items()} for d in (first, second))
    if not first or first.keys() != second.keys():
        return None
    return paired_test_p(list(first.values()), [second[k] for k in first], binary)


def _one_seed(outcomes: dict) -> bool:
    return len({seed for seed, _ in outcomes}) == 1


def scored_rows(rows: Sequence[RowLike]) -> list[RowLike]:
    return [r for r in rows if r["status"] == "ok" and r.get("score") is not None]


def _techniques(rows: Sequence[RowLike]) -> list[RowLike]:
    """Scored rows that are real techniques, not the floor."""
    return [r for r in scored_rows(rows) if r["kind"] != FLOOR_KIND]


def _floor(rows: Sequence[RowLike]) -> RowLike | None:
    return next((r for r in scored_rows(rows) if r["kind"] == FLOOR_KIND), None)


def _best(rows: Sequence[RowLike]) -> RowLike | None:
    techniques = _techniques(rows)
    return max(techniques, key=lambda r: r["score"]) if techniques else None


def _differences(
    predictions: dict[str, list[dict]], names: Sequence[str], against: RowLike
) -> tuple[dict[str, Difference | None], dict[str, float]]:
    """Each name's paired difference to the row `against`, and the Holm-adjusted p of those that were
    tested. The bootstrap's p agrees with its interval; Holm can only raise it, so a significant
    adjusted p always comes with an interval that excludes 0."""
    reference, samples = predictions.get(against["technique"], []), samples_for(len(names), ALPHA)
    differences = {n: paired_difference(predictions.get(n, []), reference, samples) for n in names}
    return differences, holm({n: d.p_value for n, d in differences.items() if d is not None})


def paired_vs_best(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> dict[str, VersusBest]:
    """Each scored row (the floor included) against the highest-scoring technique: the paired difference
    with its two-level bootstrap CI, and the paired test's p, raw and Holm-adjusted over the table."""
    best = _best(rows)
    if best is None:
        return {}
    others = [r["technique"] for r in scored_rows(rows) if r is not best]
    differences, adjusted = _differences(predictions, others, best)
    verdicts = {best["technique"]: VersusBest(None, "best")}
    for name, d in differences.items():
        if d is None:
            verdicts[name] = VersusBest(None, "")
            continue
        marker = "worse" if adjusted[name] < ALPHA and d.diff < 0 else "tied"
        verdicts[name] = VersusBest(d.p_value, marker, d.diff, d.ci_low, d.ci_high, adjusted[name])
    return verdicts


# --- the floor ----------------------------------------------------------------------------------

# how a technique stands against its task's floor, as the report words it
RELATIONS = {
    "above": "significantly above",
    "same": "not significantly different from",
    "below": "significantly below",
}


@dataclass(frozen=True)
class VersusFloor:
    relation: str  # a key of RELATIONS
    diff: float  # this technique's mean per-example value minus the floor's
    ci_low: float
    ci_high: float
    p_adjusted: float  # Holm over every technique's comparison with the floor


def versus_floor(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> dict[str, VersusFloor]:
    """Each technique against its task's floor (analysis/floor.py), by the same paired test and interval
    as against the best, Holm-adjusted over the techniques. Significant means both agree: an adjusted
    p < ALPHA and a CI that excludes 0 on the difference's side. Absent: techniques with no predictions
    paired with the floor's, and every technique under macro-F1 (the test is on per-example correctness,
    which is what accuracy averages; the majority answer already scores low on macro-F1 itself)."""
    floor = _floor(rows)
    if floor is None or floor["technique"] not in predictions:
        return {}
    names = [r["technique"] for r in _techniques(rows) if r.get("metric") != "macro_f1"]
    differences, adjusted = _differences(predictions, names, floor)
    verdicts = {}
    for name, d in differences.items():
        if d is None:
            continue
        significant = adjusted[name] < ALPHA
        relation = "above" if significant and d.ci_low > 0 else "below" if significant and d.ci_high < 0 else "same"
        verdicts[name] = VersusFloor(relation, d.diff, d.ci_low, d.ci_high, adjusted[name])
    return verdicts


def floor_sentence(v: VersusFloor, floor: RowLike) -> str:
    """'significantly below always answering 'yes' (which scores 0.600; difference -0.215 [...], Holm p = 0.00)'."""
    return (
        f"{RELATIONS[v.relation]} {floor_answer(floor)} (which scores {floor['score']:.3f}; "
        f"difference {_interval(v)}, Holm p = {v.p_adjusted:.2f})"
    )


def not_above_floor(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> dict[str, str]:
    """technique -> how it stands against the floor, for those not significantly above it: they are
    never recommended nor advised."""
    floor = _floor(rows)
    return {
        name: floor_sentence(v, floor)
        for name, v in versus_floor(rows, predictions).items()
        if floor is not None and v.relation != "above"
    }


def _collapsed(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> dict[str, str]:
    """technique -> the label its answers collapsed onto, for classification runs (those with a majority
    floor). Each seed is checked on its own answers; the flag names the seeds unless all collapsed alike."""
    if (_floor(rows) or {}).get("technique") != FLOOR_MAJORITY:
        return {}
    flags = {}
    for row in _techniques(rows):
        answers = predictions.get(row["technique"], [])
        by_seed = collapsed_seeds(answers, COLLAPSE_SHARE)
        seeds = len({p.get("seed") for p in answers})
        if by_seed and len(by_seed) == seeds and len({label for label, _ in by_seed.values()}) == 1:
            label, share = collapsed_answer(answers, COLLAPSE_SHARE) or next(iter(by_seed.values()))
            flags[row["technique"]] = (
                f"named no label in {share:.0%} of answers"  # not a label: the format itself was not learned
                if label == INVALID
                else f"answers collapsed onto '{label}' ({share:.0%} of answers)"
            )
        elif by_seed:
            flags[row["technique"]] = f"answers collapsed in {len(by_seed)} of {seeds} seeds: " + "; ".join(
                f"seed {seed} "
                + ("named no label" if label == INVALID else f"onto '{label}'")
                + f" ({share:.0%} of its answers)"
                for seed, (label, share) in by_seed.items()
            )
    return flags


def floor_flags(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> dict[str, list[str]]:
    """technique -> warnings, for runs with a floor row: not significantly above that floor, and (classification)
    answers collapsed onto one label. Techniques without a warning are absent."""
    flags: dict[str, list[str]] = {}
    for source in (not_above_floor(rows, predictions), _collapsed(rows, predictions)):
        for name, text in source.items():
            flags.setdefault(name, []).append(text)
    return flags


def floor_answer(floor: RowLike) -> str:
    """What the floor row answered: "always answering 'billing'", "echoing the input"."""
    return answer_text(floor)


# --- the recommendation --------------------------------------------------------------------------


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
    volumes: str = ""  # without a workload: the request volumes over which the pick costs least to own


def sentence(pick: Recommendation, strong: Callable[[str], str] = lambda text: text) -> str:
    """The recommendation as one sentence, as REPORT.md, the terminal and the PR summary give it;
    `strong` marks its head ('Use lora') up, e.g. in bold."""
    if not pick.technique:
        return f"No recommendation: {pick.reason}."
    return f"{strong(f'Use {pick.technique}')}: {pick.reason}." + (f" {pick.volumes}" if pick.volumes else "")


def workload_volume(meta: dict) -> float | None:
    """The requests of the run's recipe `workload:`, the volume its recommendation compares costs at."""
    return (meta.get("recipe", {}).get("workload") or {}).get("requests")


def recommend(
    rows: Sequence[RowLike],
    predictions: dict[str, list[dict]],
    cost_key: str = "cost_usd",
    cost_tolerance: float = COST_TOLERANCE,
    volume: float | None = None,
) -> Recommendation:
    """The cheapest technique significantly above its task's floor whose score is not significantly below
    the best; none when no technique clears the floor (all scoring 0.000 recommends nothing).

    With a `volume` (the recipe's workload), the cost compared is each technique's cost of ownership at
    that many requests (training once, then serving each; see analysis/ownership.py); without one, the
    run's cost (`cost_key`), and `volumes` says over which request volumes the pick is also the
    cheapest to own. Costs within `cost_tolerance` of the cheapest such technique count as equal (wall
    time, hence cost, varies from run to run), and the tie goes to lower peak memory, then higher
    score. Also returns what each costlier option buys over the pick."""
    if volume is not None:
        rows = [{**r, "cost_at_volume": ownership.total_cost(r, volume)} for r in rows]
        cost_key = "cost_at_volume"
    verdicts, below = paired_vs_best(rows, predictions), not_above_floor(rows, predictions)
    techniques, floor = _techniques(rows), _floor(rows)
    if floor is not None and techniques and all(r["technique"] in below for r in techniques):
        return Recommendation(None, nothing_above_floor(floor), [])
    priced = [r for r in techniques if r.get(cost_key) is not None]
    if not priced:
        return Recommendation(None, "no technique finished with a score and a cost", [])
    eligible = [
        r for r in priced if r["technique"] not in below and verdicts[r["technique"]].marker in ("best", "tied")
    ]
    if not eligible:
        return Recommendation(
            None,
            "no technique with a cost is both significantly above the floor and not significantly below the best",
            [],
        )
    cheapest = min(r[cost_key] for r in eligible)
    same_cost = [r for r in eligible if r[cost_key] <= cheapest + abs(cheapest) * cost_tolerance]  # < 0: a credit
    pick = min(same_cost, key=lambda r: (_memory(r), -r["score"]))
    reason = _reason(pick, _best(rows), verdicts, priced, below, same_cost, cost_key, cost_tolerance)
    at = "" if volume is None else f" at {ownership.volume_text(volume)} requests"
    if volume is not None:
        reason += f";{at} (training once, then serving each) it costs {fmt_usd(pick[cost_key])}"
    return Recommendation(
        pick["technique"],
        reason,
        _upgrades(pick, priced, predictions, cost_key, at),
        "" if volume is not None else volume_range(pick, eligible),
    )


def nothing_above_floor(floor: RowLike) -> str:
    """Why there is no recommendation (and no data-size advice) when every technique fails the floor."""
    return (
        f"no technique scores significantly above the task's floor, {floor_answer(floor)} "
        f"(which scores {floor['score']:.3f})"
    )


def volume_range(pick: RowLike, eligible: Sequence[RowLike]) -> str:
    """Over which request volumes the pick costs least to own (training once, then serving each request)
    among the techniques not significantly below the best; "" when fewer than two have a cost line."""
    ranges = ownership.cheapest_ranges(eligible)
    if len(ownership.costed(eligible)) < 2 or not ranges:
        return ""
    name, text = pick["technique"], ownership.volume_text
    if len(ranges) == 1:
        if ranges[0][0] == name:
            return (
                "It is also the cheapest to own at any request volume (training once, then serving each "
                "request) among the techniques not significantly below the best."
            )
        return (
            f"To own (training once, then serving each request), {ranges[0][0]} costs less at any request "
            "volume at a score not significantly below the best; set `workload:` to decide at your volume."
        )
    if ranges[0][0] == name:
        later = "; ".join(f"above ~{text(start)}, {other}" for other, start, _ in ranges[1:])
        return (
            f"This holds for fewer than ~{text(ranges[0][2])} requests (training once, then serving each); "
            f"{later} costs less at a score not significantly below the best."
        )
    spans = ", ".join(f"{other} {_span(start, end)}" for other, start, end in ranges)
    return (
        f"To own (training once, then serving each request), among the techniques not significantly below "
        f"the best the cheapest is {spans}; set `workload:` to decide at your volume."
    )


def _span(start: float, end: float) -> str:
    text = ownership.volume_text
    if start == 0:
        return f"below ~{text(end)} requests"
    return f"above ~{text(start)}" if end == float("inf") else f"from ~{text(start)} to ~{text(end)}"


def _memory(row: RowLike) -> float:
    """Peak memory for ordering; unmeasured sorts last, so it never wins a tie by default."""
    value = row.get("peak_memory_bytes")
    return float("inf") if value is None else value


def _reason(pick, best, verdicts, priced, below, same_cost, cost_key, tolerance) -> str:
    if pick is best:
        text = f"it has the highest score ({_score(pick)})"
        cheaper = [r for r in priced if r[cost_key] < pick[cost_key] and r not in same_cost]
        if cheaper:
            text += ", and every cheaper technique scores significantly lower"
            text += " or is not significantly above the floor" if any(r["technique"] in below for r in cheaper) else ""
    else:
        v = verdicts[pick["technique"]]
        text = (
            f"its score ({_score(pick)}) is not significantly below the best, {best['technique']} "
            f"({_score(best)}; difference {_interval(v)}, Holm p = {v.p_adjusted:.2f})"
        )
        if best.get(cost_key) is not None and pick[cost_key] < best[cost_key]:
            text += ", and it costs less"
    rivals = [r["technique"] for r in same_cost if r is not pick]
    if rivals:
        rule = "lower peak memory" if any(_memory(r) != _memory(pick) for r in same_cost) else "higher score"
        text += (
            f"; {', '.join(rivals)} cost{'s' if len(rivals) == 1 else ''} about as much (within {tolerance:.0%} "
            f"of the cheapest, which counts as equal), and the tie goes to {rule}"
        )
    return text


def _upgrades(
    pick: RowLike, priced: Sequence[RowLike], predictions: dict[str, list[dict]], cost_key: str, at: str = ""
) -> list[str]:
    """What each option costing at least as much as the pick buys over it: the paired difference with its
    CI and Holm-adjusted p, the cost ratio, the memory and lm-eval changes."""
    costlier = sorted((r for r in priced if r is not pick and r[cost_key] >= pick[cost_key]), key=lambda r: r[cost_key])
    differences, adjusted = _differences(predictions, [r["technique"] for r in costlier], pick)
    lm_eval = forgetting.compare(costlier, pick, _lm_eval_figures([*costlier, pick]))
    lines = []
    for row in costlier:
        d = differences[row["technique"]]
        if d is None:
            change = f"{row['score'] - pick['score']:+.3f} score"
        else:
            p = adjusted[row["technique"]]
            noise = f"significant (Holm p = {p:.3f})" if p < ALPHA else f"within noise (Holm p = {p:.2f})"
            change = f"{d.diff:+.3f} score {_ci(d)}, {noise}"
        ratio = f"{row[cost_key] / pick[cost_key]:.1f}x the cost{at}" if pick[cost_key] else f"a higher cost{at}"
        lines.append(
            f"**{row['technique']}**: {change}, for {ratio}{_memory_delta(row, pick)}"
            + _lm_eval_delta(row, pick, lm_eval)
        )
    return lines


def _score(row: RowLike) -> str:
    seeds = row.get("n_seeds") or 1
    return f"{row['score']:.3f}" + (f", mean of {seeds} seeds" if seeds > 1 else "")


def _ci(d: Difference | VersusBest | VersusFloor) -> str:
    return f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def _interval(d: Difference | VersusBest | VersusFloor) -> str:
    """A difference with its 95% CI: '+0.033 [-0.050, +0.117]'."""
    return f"{d.diff:+.3f} {_ci(d)}"


def _lm_eval_figures(rows: Sequence[RowLike]) -> list[str]:
    """Each lm-eval task's first metric ("<task>:<metric>"): the figure an upgrade line quotes."""
    firsts: dict[str, str] = {}
    for key in figures.lm_eval_keys(rows):
        figure = key.removeprefix(figures.LM_EVAL_PREFIX)
        firsts.setdefault(figure.split(":")[0], figure)
    return list(firsts.values())


def _lm_eval_delta(row: RowLike, pick: RowLike, tested: dict[tuple[str, str], forgetting.Change]) -> str:
    """The change in each lm-eval task's first metric, item by item against the pick with its CI and
    Holm p, and what the test says (not the sign); a bare, untested delta where the rows hold no
    per-item values (runs stored before lm-eval's items were kept)."""
    deltas = []
    for figure in _lm_eval_figures([row, pick]):
        key, label = figures.LM_EVAL_PREFIX + figure, figure.replace(":", " ")
        if row.get(key) is None or pick.get(key) is None:
            continue
        change = tested.get((row["technique"], figure))
        if change is None:
            deltas.append(f"{label} {row[key] - pick[key]:+.3f} (untested: no per-item values)")
            continue
        direction = "lower" if change.difference.diff < 0 else "higher"
        verdict = f"significantly {direction}" if change.significant(ALPHA) else "no measurable change"
        deltas.append(f"{label} {change.interval()}, {verdict} (Holm p = {change.p_adjusted:.3f})")
    return f"; {', '.join(deltas)}" if deltas else ""


def _memory_delta(row: RowLike, pick: RowLike) -> str:
    a, b = row.get("peak_memory_bytes"), pick.get("peak_memory_bytes")
    return "" if a is None or b is None else f" and {(a - b) / 2**30:+.2f} GiB peak memory"


# --- the table's annotations ---------------------------------------------------------------------


def vs_best_text(v: VersusBest, flagged: bool = False) -> str:
    """The 'vs best' cell: 'best', '≈ −0.033 [−0.117, +0.050] p=1.000' (tied) or '▼ ...' (worse), with
    the Holm-adjusted p; ' ⚠' when the technique carries a floor warning."""
    if v.marker == "best":
        text = "best"
    elif v.marker == "":
        text = "untested"
    else:
        symbol = "≈" if v.marker == "tied" else "▼"
        text = f"{symbol} {_interval(v)} p={v.p_adjusted:.3f}".replace("-", "−")
    return text + (" ⚠" if flagged else "")


def with_verdicts(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> list[dict]:
    """Copies of rows with `vs_best_marker`, `vs_best` (the table's text) and `floor_flags` (warnings)."""
    verdicts, flags = paired_vs_best(rows, predictions), floor_flags(rows, predictions)
    annotated = []
    for row in rows:
        v, warnings = verdicts.get(row["technique"]), flags.get(row["technique"], [])
        annotated.append(
            {
                **row,
                "vs_best_marker": v.marker if v else None,
                "vs_best": vs_best_text(v, bool(warnings)) if v else None,
                "floor_flags": warnings,
            }
        )
    return annotated
