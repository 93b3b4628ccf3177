"""A technique's search space (config.SearchSpec) against the technique's own schema: a trial's params
applied and validated, the space checked when the recipe is read, and the trial budget.

Below the recipe schema, which checks every `search:` with check_search while it validates a recipe
(so a bad axis names the recipe's file and line); the cell plan (planning.py), the search (search.py) and
the worker apply params through apply_params.
"""

from __future__ import annotations

from typing import Any

from harness import kinds
from harness.yamlconfig import ConfigError, set_dotted, validate

UNTUNABLE = {"name", "kind", "search"}


def apply_params(spec, params: dict[str, Any], source: str = "search space"):
    """The technique spec with dotted settings replaced, validated by the technique's own schema."""
    if not params:
        return spec
    data = spec.model_dump()
    for key, value in params.items():
        if key.split(".")[0] in UNTUNABLE:
            raise ConfigError(f"{source}: technique {spec.name!r}: {key!r} cannot be searched")
        set_dotted(data, key, value, what=f"{source}: technique {spec.name!r}: {key}")
    return validate(data, type(spec), source=f"{source} of technique {spec.name!r}")


def axis_values(axis) -> list:
    """Values that represent an axis when checking it: a list's values, or a range's two ends."""
    if isinstance(axis, list):
        return axis
    kind = next(k for k in ("log_uniform", "uniform", "int") if getattr(axis, k) is not None)
    return list(getattr(axis, kind))


def check_search(spec, budget: int | None) -> None:
    """Every axis names a real setting of the technique and its values pass the technique's schema; the
    objective suits the kind; the trial count is the recipe's budget, so no technique is tuned harder."""
    search = spec.search
    if search.objective == "validation_loss" and not kinds.trained(spec.kind):
        trained = ", ".join(k for k in kinds.known() if kinds.trained(k))
        raise ValueError(
            f"technique {spec.name!r}: objective validation_loss needs a trained kind "
            f"({trained}); {spec.kind} has no training loss: use validation_score"
        )
    if search.trials is None and budget is None:
        raise ValueError(f"technique {spec.name!r}: give `search.trials` or the recipe's `search_budget`")
    if budget is not None and search.trials is not None and search.trials != budget:
        raise ValueError(
            f"technique {spec.name!r}: search.trials ({search.trials}) differs from search_budget "
            f"({budget}); every technique gets the same budget, so drop `trials`"
        )
    for key, axis in search.space.items():
        for value in axis_values(axis):
            try:
                apply_params(spec, {key: value})
            except ConfigError as exc:
                raise ValueError(f"search.space.{key}: {exc}") from None


def trials_for(spec, budget: int | None) -> int:
    """The technique's trial budget; an exhaustive grid smaller than the budget runs each point once."""
    trials = spec.search.trials or budget
    if trials is None:  # check_search refuses such a recipe
        raise ValueError(f"technique {spec.name!r}: give `search.trials` or the recipe's `search_budget`")
    if spec.search.is_grid:
        points = 1
        for axis in spec.search.space.values():
            points *= len(axis)
        trials = min(trials, points)
    return trials
