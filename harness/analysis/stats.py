"""Paired statistics on per-example metric values, pooled over seeds.

A technique's predictions hold one dict per (seed, example): `correct` (0/1) under a binary metric, or
`value` (a float, with `correct` None) under a continuous one (rouge_l, chrf); `parsed` (its answer),
`id` and `seed` (None in single-seed runs of older versions). Two techniques are compared only on the
(seed, id) keys both have, so an example is always paired with itself under the same seed.

Uncertainty comes from two sources: which examples the test split happened to hold, and which seeds
(few-shot draws, training order) the run happened to use. The bootstrap here resamples both
(`_two_level_replicates`); with one seed it is the ordinary paired bootstrap over examples. A
comparison's interval and its p-value come from the same replicates (`paired_difference`), so they
always agree. McNemar's and Wilcoxon's tests remain for `harness compare`/`check`, which pair one
technique's two runs and show no interval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

CONFIDENCE = 0.95
_CHUNK = 250  # bootstrap replicates computed at once: bounds memory to _CHUNK x examples floats

Key = tuple  # (seed, id)
Name = TypeVar("Name", bound=Hashable)


def mcnemar_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact McNemar test on paired 0/1 outcomes (bools or 0/1 numbers): two-sided p that a and b are
    equally often right.

    Only the discordant pairs count (a right and b wrong, or the reverse); under the null each is a
    fair coin flip, so the p-value is a binomial test on them. Pooling the discordant pairs of several
    seeds is the stratified test: with one matched pair per stratum, Cochran–Mantel–Haenszel reduces
    to exactly this.
    """
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError("paired outcomes need the same examples")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    return 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Wilcoxon signed-rank test on the paired differences a - b (scipy's defaults: zero differences
    dropped, exact for small samples): two-sided p that the differences are symmetric about zero.

    Used for continuous per-example values, where McNemar's right/wrong pairs do not exist; it uses
    the size of each difference, not only its sign, and assumes no distribution. Pooling the pairs of
    several seeds treats each (seed, example) as one pair, like McNemar's pooled test.
    """
    from scipy.stats import wilcoxon

    if len(a) != len(b):
        raise ValueError("paired outcomes need the same examples")
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not differences.any():
        return 1.0  # every pair tied: nothing to test (scipy would fail on no nonzero differences)
    return float(wilcoxon(differences).pvalue)


def paired_test_p(a: Sequence[float], b: Sequence[float], binary: bool) -> float:
    """The paired test that suits the metric: McNemar on 0/1 values, Wilcoxon on continuous ones."""
    return mcnemar_p(a, b) if binary else wilcoxon_p(a, b)


def value_of(prediction: dict) -> float:
    """A prediction's per-example value: `value` under a continuous metric, else its 0/1 `correct`."""
    value = prediction.get("value")
    return float(prediction["correct"]) if value is None else float(value)


def keyed(predictions: Sequence[dict]) -> dict[Key, float]:
    """(seed, id) -> per-example value, the pairing key of every comparison."""
    return {(p.get("seed"), p["id"]): value_of(p) for p in predictions}


@dataclass(frozen=True)
class Difference:
    diff: float  # mean(a) - mean(b) over the shared (seed, id) pairs
    ci_low: float  # 95% two-level paired bootstrap interval of diff
    ci_high: float
    p_value: float  # the same bootstrap's two-sided p: below 1 - CONFIDENCE exactly when the interval excludes 0
    n_pairs: int
    n_seeds: int


def paired_difference(a: Sequence[dict], b: Sequence[dict], samples: int = 2000, seed: int = 0) -> Difference | None:
    """a's mean per-example value minus b's on the (seed, id) pairs both scored, with its two-level
    bootstrap interval and p-value; None when they share no pair.

    Why the bootstrap decides, not a classical test: McNemar's (or Wilcoxon's) test on the pooled
    (seed, example) pairs treats every pair as independent, so two seeds that disagree (one seed much
    worse, the other a little better) still give a tiny p while the interval, which resamples seeds,
    spans 0: "significantly worse" beside an interval that includes 0. A stratified test
    (Cochran–Mantel–Haenszel over seeds, or per-seed McNemar combined) would not fix this: it conditions
    on the seeds that happened to run, treating seed-to-seed variation as fixed, and with one matched
    pair per stratum it equals the pooled McNemar. The interval's own test does: p is the share of
    replicates on the far side of 0 (see `interval_and_p`), so p < 1 - CONFIDENCE if and only if the
    interval excludes 0, under a 0/1 metric and a continuous one alike."""
    first, second = keyed(a), keyed(b)
    keys = [k for k in first if k in second]
    if not keys:
        return None
    diffs = {k: first[k] - second[k] for k in keys}
    low, high, p = interval_and_p(_two_level_replicates(diffs, samples, seed))
    diff = float(np.mean([first[k] for k in keys]) - np.mean([second[k] for k in keys]))
    return Difference(diff, low, high, p, len(keys), len({k[0] for k in keys}))


def samples_for(comparisons: int, alpha: float = 1 - CONFIDENCE) -> int:
    """Bootstrap replicates for a family of `comparisons` Holm-adjusted p-values: the smallest bootstrap
    p is 2 / (replicates + 1), and Holm multiplies it by up to `comparisons`; this keeps that product at
    a tenth of alpha, so a clear difference stays significant in a large table."""
    return max(2000, math.ceil(20 * comparisons / alpha))


def mean_ci_over_seeds(predictions: Sequence[dict], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of one technique's mean per-example value, resampling seeds and examples."""
    values = {k: float(v) for k, v in keyed(predictions).items()}
    if not values:
        return (float("nan"), float("nan"))
    low, high, _ = interval_and_p(_two_level_replicates(values, samples, seed))
    return low, high


def interval_and_p(replicates: np.ndarray) -> tuple[float, float, float]:
    """(low, high, p): the bootstrap's percentile interval at CONFIDENCE and its two-sided p-value for 0,
    defined so that p < 1 - CONFIDENCE if and only if 0 lies outside [low, high].

    p = 2 (k + 1) / (B + 1), k the replicates on the smaller side of 0 (at or below it, or at or above
    it), B the replicates: the share of resampled differences on the far side of 0, with the +1 that
    keeps a finite bootstrap from claiming p = 0. The interval is the set of values this p does not
    reject: its ends are the r-th smallest and r-th largest replicate, r = ceil(tail (B + 1) - 1) (the
    usual percentile interval up to one replicate)."""
    ordered = np.sort(np.asarray(replicates, dtype=float))
    count, tail = len(ordered), (1 - CONFIDENCE) / 2
    rank = math.ceil(tail * (count + 1) - 1)
    if rank < 1:
        raise ValueError(f"{count} bootstrap replicates cannot give a {CONFIDENCE:.0%} interval")
    below, above = np.count_nonzero(ordered <= 0), np.count_nonzero(ordered >= 0)
    p = min(1.0, 2 * (min(below, above) + 1) / (count + 1))
    return float(ordered[rank - 1]), float(ordered[count - rank]), float(p)


def _two_level_replicates(values: dict[Key, float], samples: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of the mean of values keyed by (seed, id).

    Each replicate draws seeds with replacement, then example ids with replacement, the same ids for
    every drawn seed (examples are shared across seeds, so their difficulty must stay paired too),
    and takes the mean over the drawn cells. Drawing counts from a multinomial is the same as drawing
    indices with replacement, and lets a replicate's mean be one weighted sum.
    """
    seeds = sorted({k[0] for k in values}, key=repr)  # repr: None (older runs) sorts with ints
    ids = sorted({k[1] for k in values}, key=repr)
    grid = np.zeros((len(seeds), len(ids)))
    present = np.zeros_like(grid)  # a seed may lack some ids (e.g. an interrupted run): they weigh 0
    row, column = {s: i for i, s in enumerate(seeds)}, {e: j for j, e in enumerate(ids)}
    for (s, e), value in values.items():
        grid[row[s], column[e]], present[row[s], column[e]] = value, 1.0
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, samples, _CHUNK):
        n = min(_CHUNK, samples - start)
        seed_counts = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=n)
        id_counts = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n)
        total = np.einsum("rs,sn,rn->r", seed_counts, grid * present, id_counts)
        weight = np.einsum("rs,sn,rn->r", seed_counts, present, id_counts)
        means.append(total[weight > 0] / weight[weight > 0])
    return np.concatenate(means)


def holm(pvalues: Mapping[Name, float]) -> dict[Name, float]:
    """Holm–Bonferroni adjusted p-values: the k-th smallest of m is multiplied by (m - k + 1), then made
    non-decreasing in that order and capped at 1. Rejecting where adjusted p < alpha keeps the chance
    of any false "significant" among the family at most alpha."""
    order = sorted(pvalues, key=pvalues.__getitem__)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def collapsed_answer(predictions: Sequence[dict], threshold: float = 0.9) -> tuple[str, float] | None:
    """(answer, share) when one parsed answer makes up more than `threshold` of all answers, else None:
    a classifier that answers one label almost always has learned the label prior, not the task."""
    answers = [p["parsed"] for p in predictions if p.get("parsed") is not None]
    if not answers:
        return None
    label, count = Counter(answers).most_common(1)[0]
    share = count / len(answers)
    return (label, share) if share > threshold else None


def collapsed_seeds(predictions: Sequence[dict], threshold: float = 0.9) -> dict:
    """seed -> (answer, share) for every seed whose own answers collapsed (`collapsed_answer`), in seed
    order. Checked per seed because pooling hides one: a seed answering 'yes' 200/200 times beside one
    that learned the task pools to well under the threshold."""
    by_seed: dict = {}
    for prediction in predictions:
        by_seed.setdefault(prediction.get("seed"), []).append(prediction)
    found = {seed: collapsed_answer(answers, threshold) for seed, answers in by_seed.items()}
    return {seed: found[seed] for seed in sorted(by_seed, key=repr) if found[seed] is not None}


def judge_agreement(judge_scores: Sequence[float], metric_values: Sequence[float], binary: bool) -> dict:
    """How a judge's scores (normalised to [0, 1]) line up with the task metric's per-example values, on
    the examples the judge scored. Under a 0/1 metric: `judge_agreement`, the share of examples where
    "the judge passes it" (score >= 0.5) equals the metric's verdict, and Cohen's kappa
    (`judge_kappa`: that agreement beyond what the two rates alone would give by chance). Under a
    continuous metric: `judge_spearman`, the rank correlation. A figure that cannot be computed (no
    examples; kappa or Spearman with a constant side) is None."""
    judge = np.asarray(judge_scores, dtype=float)
    metric = np.asarray(metric_values, dtype=float)
    if len(judge) != len(metric):
        raise ValueError("judge scores and metric values must pair up")
    if binary:
        if not len(judge):
            return {"judge_agreement": None, "judge_kappa": None}
        passes, correct = judge >= 0.5, metric >= 0.5
        return {"judge_agreement": float(np.mean(passes == correct)), "judge_kappa": _kappa(passes, correct)}
    if len(judge) < 2 or np.ptp(judge) == 0 or np.ptp(metric) == 0:
        return {"judge_spearman": None}  # a rank correlation needs two values that vary
    from scipy.stats import spearmanr

    rho = float(spearmanr(judge, metric).statistic)
    return {"judge_spearman": None if np.isnan(rho) else rho}


def _kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two 0/1 raters; None when it is undefined (both raters say one thing throughout,
    so chance agreement is 1)."""
    if len(set(a.tolist()) | set(b.tolist())) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    kappa = float(cohen_kappa_score(a, b))
    return None if np.isnan(kappa) else kappa
