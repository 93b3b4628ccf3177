"""Forgetting: a technique's lm-eval figures against another model's, item by item, with a test.

A technique's row carries `lm_eval_samples`, each lm-eval item's value per seed
({seed: {"<task>:<metric>": {item: value}}}, from lm-eval's `log_samples`); the base model's scores
are the row marked `lm_eval_base` (a prompt-only technique reads the base model). Each figure is
compared as the held-out score is (stats.paired_difference: the same item under the same seed, the
two-level bootstrap's interval and its p, which agree), Holm-adjusted over the family, and the verdict
comes from the test, not from the sign: a change of +0.026 on 125 items is "no measurable change".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.analysis.stats import Difference, holm, paired_difference, samples_for
from harness.figures import LM_EVAL_PREFIX
from harness.rows import RowLike


@dataclass(frozen=True)
class Change:
    """One lm-eval figure of one technique against the reference model's."""

    technique: str
    figure: str  # "<task>:<metric>", the row key without its lm_eval: prefix
    difference: Difference  # the technique's mean per-item value minus the reference's
    p_adjusted: float  # Holm over the family

    def significant(self, alpha: float) -> bool:
        return self.p_adjusted < alpha

    def verdict(self, alpha: float) -> str:
        """'forgets' (significantly below the reference), 'gains' (above) or 'no measurable change'."""
        if not self.significant(alpha):
            return "no measurable change"
        return "forgets" if self.difference.diff < 0 else "gains"

    def interval(self) -> str:
        d = self.difference
        return f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def items(row: RowLike, figure: str) -> list[dict]:
    """One figure's per-item values of a row, shaped as predictions (id, seed, value) for stats."""
    per_seed = row.get("lm_eval_samples") or {}
    return [
        {"id": item, "seed": seed, "value": value}
        for seed, figures in per_seed.items()
        for item, value in (figures.get(figure) or {}).items()
    ]


def tested_figures(row: RowLike) -> list[str]:
    """The lm-eval figures of a row that have per-item values, in the row's order."""
    per_seed = row.get("lm_eval_samples") or {}
    present = {figure for figures in per_seed.values() for figure in figures}
    return [k.removeprefix(LM_EVAL_PREFIX) for k in row if k.removeprefix(LM_EVAL_PREFIX) in present]


def compare(
    rows: Sequence[RowLike], reference: RowLike, figures: Iterable[str] | None = None
) -> dict[tuple[str, str], Change]:
    """(technique, figure) -> each row's figure against the reference's (only `figures`, when given),
    Holm-adjusted over every comparison made. Pairs without shared items are left out."""
    wanted = None if figures is None else set(figures)
    pairs = [
        (row, figure)
        for row in rows
        for figure in tested_figures(row)
        if (wanted is None or figure in wanted) and figure in tested_figures(reference)
    ]
    samples = samples_for(len(pairs))
    differences = {
        (row["technique"], figure): paired_difference(items(row, figure), items(reference, figure), samples)
        for row, figure in pairs
    }
    tested = {key: d for key, d in differences.items() if d is not None}
    adjusted = holm({key: d.p_value for key, d in tested.items()})
    return {key: Change(key[0], key[1], d, adjusted[key]) for key, d in tested.items()}


def base_row(rows: Sequence[RowLike]) -> RowLike | None:
    """The row holding the base model's lm-eval items, if any."""
    return next((r for r in rows if r.get("lm_eval_base") and r.get("lm_eval_samples")), None)


def versus_base(rows: Sequence[RowLike]) -> dict[tuple[str, str], Change]:
    """Every technique that changed the model (not marked `lm_eval_base`) against the base model, on
    each of its lm-eval figures, Holm-adjusted over all of them."""
    base = base_row(rows)
    if base is None:
        return {}
    changed = [r for r in rows if r["status"] == "ok" and not r.get("lm_eval_base") and r.get("lm_eval_samples")]
    return compare(changed, base)
