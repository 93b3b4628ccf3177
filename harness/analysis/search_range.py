"""Whether a search's chosen value sits at an edge of the range it searched: the best may then lie
beyond the range, and the report says to widen it (a learning rate chosen at the top of its range is the
usual case)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

EDGE = 0.1  # the outer tenth of a range (in log space for log_uniform) counts as its edge


def _numbers(axis: list) -> list | None:
    """A list axis's values in order, when they are at least 3 numbers (else an edge means nothing)."""
    numbers = sorted(v for v in axis if isinstance(v, int | float) and not isinstance(v, bool))
    return numbers if len(numbers) >= 3 and len(numbers) == len(axis) else None


def _bounds(axis: Mapping[str, Any]) -> tuple[str, list] | None:
    """A range axis's kind (log_uniform, uniform, int) and its [low, high]."""
    kind = next((k for k in ("log_uniform", "uniform", "int") if axis.get(k) is not None), None)
    return None if kind is None else (kind, list(axis[kind]))


def ordered(axis) -> bool:
    """Whether an axis's values have an order: a range, or a list of at least 3 numbers."""
    return (_numbers(axis) if isinstance(axis, list) else _bounds(axis)) is not None


def log_scale(axis) -> bool:
    found = None if isinstance(axis, list) else _bounds(axis)
    return found is not None and found[0] == "log_uniform"


def position(axis, value) -> float | None:
    """Where `value` lies in a searched axis, 0 (low end) to 1 (high end) (in log space for log_uniform);
    None for an axis with no order."""
    if isinstance(axis, list):
        numbers = _numbers(axis)
        return None if numbers is None or value not in numbers else numbers.index(value) / (len(numbers) - 1)
    found = _bounds(axis)
    if found is None:
        return None
    kind, (low, high) = found
    if kind == "log_uniform":
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low) if high > low else 0.5


def at_edge(space: Mapping[str, Any], chosen: Mapping[str, Any]) -> list[str]:
    """A sentence for each chosen value at the low or high edge of its axis (`space` as the recipe
    stores it: a list, or {log_uniform|uniform|int: [low, high]})."""
    notes = []
    for key, axis in space.items():
        where = position(axis, chosen[key]) if key in chosen else None
        if where is None or EDGE < where < 1 - EDGE:
            continue
        edge = "bottom" if where <= EDGE else "top"
        bounds = axis if isinstance(axis, list) else _bounds(axis)[1]  # type: ignore[index]
        notes.append(
            f"{key}={chosen[key]:g} is at the {edge} of the searched range {bounds}: the best value may "
            "lie beyond it; widen the range that way"
        )
    return notes
