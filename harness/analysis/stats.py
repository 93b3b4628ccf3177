"""Paired statistics on per-example metric values, pooled over seeds.

A technique's predictions hold one dict per (seed, example): `correct` (0/1) under a binary metric, or
`value` (a float, with `correct` None) under a continuous one (rouge_l, chrf); `parsed` (its answer),
`id` and `seed` (None in single-seed runs of older versions). Two techniques are compared only on the
(seed, id) keys both have, so an example is always paired with itself under the same seed. The p-value
is McNemar's exact test for 0/1 values and the Wilcoxon signed-rank test for continuous ones.

Uncertainty comes from two sources: which examples the test split happened to hold, and which seeds
(few-shot draws, training order) the run happened to use. The bootstrap here resamples both
(`_two_level_bootstrap`); with one seed it is the ordinary paired bootstrap over examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
_CHUNK = 250  # bootstrap replicates computed at once: bounds memory to _CHUNK x examples floats

Key = tuple  # (seed, id)


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
    p_value: float  # exact McNemar (binary metric) or Wilcoxon signed-rank (continuous) on every seed's pairs, pooled
    n_pairs: int
    n_seeds: int


def paired_difference(
    a: Sequence[dict], b: Sequence[dict], samples: int = 2000, seed: int = 0, binary: bool = True
) -> Difference | None:
    """a's mean per-example value minus b's on the (seed, id) pairs both scored; None when they share
    none. `binary`: the metric's values are 0/1 (its descriptor says), which picks the paired test."""
    first, second = keyed(a), keyed(b)
    keys = [k for k in first if k in second]
    if not keys:
        return None
    x = [first[k] for k in keys]
    y = [second[k] for k in keys]
    diffs = {k: float(first[k]) - float(second[k]) for k in keys}
    low, high = _two_level_bootstrap(diffs, samples, seed)
    return Difference(
        float(np.mean(x) - np.mean(y)), low, high, paired_test_p(x, y, binary), len(keys), len({k[0] for k in keys})
    )


def mean_ci_over_seeds(predictions: Sequence[dict], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of one technique's mean per-example value, resampling seeds and examples."""
    return _two_level_bootstrap({k: float(v) for k, v in keyed(predictions).items()}, samples, seed)


def _two_level_bootstrap(values: dict[Key, float], samples: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of values keyed by (seed, id).

    Each replicate draws seeds with replacement, then example ids with replacement, the same ids for
    every drawn seed (examples are shared across seeds, so their difficulty must stay paired too),
    and takes the mean over the drawn cells. Drawing counts from a multinomial is the same as drawing
    indices with replacement, and lets a replicate's mean be one weighted sum.
    """
    if not values:
        return (float("nan"), float("nan"))
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
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(np.concatenate(means), [tail, 1 - tail])
    return float(low), float(high)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
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
