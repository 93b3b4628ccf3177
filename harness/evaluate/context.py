"""The cell as the evaluate/ modules see it: what they read (`Context`), report progress to (`Progress`)
and return (`Outcome`).

techniques/base.py's RunContext is a Context, and it re-exports Outcome and Progress as part of the runner
contract. They are defined here, and Context is a Protocol, so that evaluate/ never imports the
techniques: the techniques import evaluate/, not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.config import Recipe
    from harness.tasks import Example, Task


class Progress(Protocol):
    """The part of rich's Progress API the techniques use; worker.LineProgress (a cell's) has it too."""

    def add_task(self, description: str, *, total: float | None = ...) -> Any: ...
    def update(
        self,
        task_id: Any,
        /,
        *,
        completed: float | None = ...,
        description: str | None = ...,
        advance: float | None = ...,
    ) -> None: ...
    def advance(self, task_id: Any, amount: float = ..., /) -> None: ...
    def remove_task(self, task_id: Any, /) -> None: ...


@dataclass
class Outcome:
    values: dict[str, Any]  # row fields measured by the technique (score, eval_seconds, ...)
    predictions: list[dict] = field(default_factory=list)


class Context(Protocol):
    """What evaluation reads of a cell (techniques.base.RunContext has all of it)."""

    recipe: Recipe  # narrowed to one task and to the cell's seed
    task: Task
    device: str
    progress: Progress

    @property
    def final(self) -> bool:
        """The configuration the technique's row reports (search trials and smaller learning-curve sizes are not)."""
        ...

    def heldout_examples(self) -> list[Example]:
        """The examples this cell is scored on."""
        ...
