"""Whether a search's chosen value sits at an edge of the range it searched: the best may then lie
beyond the range, and the report says to widen it (a learning rate chosen at the top of its range is the
usual case)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

EDGE = 0.1  # the outer tenth of a range (in log space for log_uniform) counts as its edge


def position(axis, value) -> tuple[float, bool] | None:
    """Where `value` lies in a searched axis, 0 (low end) to 1 (high end), and whether the axis is on a
    log scale; None for an axis with no order (a list of non-numbers, or fewer than 3 values)."""
    if isinstance(axis, list):
        numbers = sorted(v for v in axis if isinstance(v, int | float) and not isinstance(v, bool))
        if len(numbers) < 3 or len(numbers) != len(axis) or value not in numbers:
            return None
        return numbers.index(value) / (len(numbers) - 1), False
    kind = next((k for k in ("log_uniform", "uniform", "int") if axis.get(k) is not None), None)
    if kind is None:
        return None
    low, high = axis[kind]
    if kind == "log_uniform":
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low) if high > low else 0.5, kind == "log_uniform"


def at_edge(space: Mapping[str, Any], chosen: Mapping[str, Any]) -> list[str]:
    """A sentence for each chosen value at the low or high edge of its axis (`space` as the recipe
    stores it: a list, or {log_uniform|uniform|int: [low, high]})."""
    notes = []
    for key, axis in space.items():
        if key not in chosen:
            continue
        found = position(axis, chosen[key])
        if found is None:
            continue
        where, _ = found
        if EDGE < where < 1 - EDGE:
            continue
        edge = "bottom" if where <= EDGE else "top"
        bounds = axis if isinstance(axis, list) else next(v for v in axis.values() if v is not None)
        notes.append(
            f"{key}={chosen[key]:g} is at the {edge} of the searched range {list(bounds)}: the best value may "
            "lie beyond it; widen the range that way"
        )
    return notes
