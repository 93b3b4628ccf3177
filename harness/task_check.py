"""`harness task check TASK [--recipe R]`: is this task's data fit to compare on? No model is loaded.

Per split (train, the recipe's validation split when it cuts one, test): sizes, empty and repeated
records, the label distribution, token lengths of each example as trained (its prompt and answer through
the model's chat template: the recipe's model's tokenizer, else the default model's; no shots or retrieved
passages) against each trained technique's `train.max_length`, and what leaked between the splits
(harness/analysis/leakage.py, at the recipe's `eval.leakage.near_threshold`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness import screening
from harness.analysis import leakage
from harness.config import DEFAULT_MODEL, LeakageSettings, Recipe, TrainSettings
from harness.tasks import Example, Task, load_task, with_validation

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class SplitFacts:
    name: str
    size: int
    empty: int  # examples with no prompt text (instruction, context, input all empty)
    repeated: int  # examples whose prompt text repeats an earlier one of the same split
    conflicting: int  # ... of those, with another answer
    labels: Counter
    tokens: list[int]  # per example: prompt and answer as trained


@dataclass(frozen=True)
class TaskFacts:
    task: Task
    splits: list[SplitFacts]
    max_lengths: list[int]  # the distinct train.max_length of the recipe's trained techniques (default: 512)
    tokens_from: str  # which tokenizer counted, or how tokens were estimated
    leakage: leakage.Leakage
    recipe_note: str  # where the settings came from


def check(task_ref: str, recipe: Recipe | None = None) -> TaskFacts:
    """The facts `harness task check` shows, for `task_ref` under `recipe` (its validation split, model,
    max lengths and leakage threshold), or under the defaults."""
    task = load_task(task_ref)
    if recipe is not None:
        task = with_validation(task, recipe.eval.validation)
    settings = recipe.eval.leakage if recipe is not None else LeakageSettings()
    model_id = recipe.model.id if recipe is not None else DEFAULT_MODEL
    count, tokens_from = token_counter(model_id)
    splits = [("train", task.train), ("validation", task.validation), ("test", task.test)]
    facts = [split_facts(name, examples, task, count) for name, examples in splits if examples or name != "validation"]
    return TaskFacts(
        task=task,
        splits=facts,
        max_lengths=max_lengths(recipe),
        tokens_from=tokens_from,
        leakage=screening.find(task, settings.near_threshold),
        recipe_note=f"recipe {recipe.name}" if recipe is not None else "no recipe: the default settings",
    )


def max_lengths(recipe: Recipe | None) -> list[int]:
    from harness import kinds

    techniques = recipe.techniques if recipe is not None else []
    trained = [t.train.max_length for t in techniques if kinds.trained(t.kind) and t.kind != "cpt"]
    return sorted(set(trained)) or [TrainSettings().max_length]


def split_facts(name: str, examples: Sequence[Example], task: Task, count) -> SplitFacts:
    seen: dict[str, str] = {}
    repeated = conflicting = empty = 0
    for example in examples:
        text = leakage.key(example)
        if not text:
            empty += 1
        elif text in seen:
            repeated += 1
            conflicting += seen[text] != example.output
        else:
            seen[text] = example.output
    labels = Counter(e.output for e in examples) if task.is_classification else Counter()
    return SplitFacts(name, len(examples), empty, repeated, conflicting, labels, count(task, examples))


def token_counter(model_id: str):
    """(count(task, examples) -> tokens per example, what counted): the model's tokenizer when it is on this
    machine (no weights are read), else the default model's, else an estimate from characters."""
    from harness import models

    tokenizer, source = models.tokenizer_at_hand(model_id), f"the tokenizer of {model_id}"
    if tokenizer is None and model_id != DEFAULT_MODEL:
        tokenizer, source = models.tokenizer_at_hand(DEFAULT_MODEL), f"the default model's tokenizer ({DEFAULT_MODEL})"
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        from harness.planner import CHARS_PER_TOKEN, TEMPLATE_TOKENS

        def estimate(task: Task, examples: Sequence[Example]) -> list[int]:
            return [
                round(sum(len(m["content"]) / CHARS_PER_TOKEN + TEMPLATE_TOKENS for m in conversation(task, e)))
                for e in examples
            ]

        return estimate, f"estimated at {CHARS_PER_TOKEN:g} characters per token (no tokenizer on this machine)"

    def count(task: Task, examples: Sequence[Example]) -> list[int]:
        if not examples:
            return []
        texts = [tokenizer.apply_chat_template(conversation(task, e), tokenize=False) for e in examples]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return count, source


def conversation(task: Task, example: Example) -> list[dict]:
    """The example as trained: its prompt (system message, the task's template) and its answer."""
    from harness import prompting

    return [*prompting.messages(task, example), {"role": "assistant", "content": example.output}]


def percentiles(tokens: list[int]) -> list[int]:
    """p50, p90, p99 and the maximum (nearest rank: a length some example has)."""
    if not tokens:
        return [0] * (len(PERCENTILES) + 1)
    values = np.percentile(tokens, PERCENTILES, method="inverted_cdf")
    return [int(v) for v in values] + [max(tokens)]


# --- the terminal's view ---------------------------------------------------------------------------

SHOWN = 12  # leaked pairs listed


def render(facts: TaskFacts) -> list:
    """What the command prints: rich tables and lines."""
    from rich.markup import escape

    task = facts.task
    out: list = [
        f"[bold]{escape(task.name)}[/] ({escape(str(task.path))}); {escape(facts.recipe_note)}; tokens: "
        f"{escape(facts.tokens_from)}"
    ]
    out.append(splits_table(facts))
    if task.is_classification:
        out.append(labels_table(facts))
    stored = facts.leakage.as_dict()
    found = leakage.sentences(stored)
    how = f"checked: {'; '.join(stored['checked'])}; compared on the {stored['compared']}"
    if not found:
        out.append(f"[green]leakage: none found[/] ({escape(how)})")
    else:
        out.append(f"[bold yellow]leakage:[/] {escape(' '.join(found))} ({escape(how)})")
        out.append(leakage_table(facts))
    return out


def splits_table(facts: TaskFacts):
    from rich.table import Table

    over = [f"> {n} tokens" for n in facts.max_lengths]
    table = Table(
        "split", "examples", "empty", "repeated", "p50", "p90", "p99", "max", *over,
        header_style="bold",
        title="splits: prompt + answer tokens as trained (train.max_length cuts the longer ones)",
    )  # fmt: skip
    for split in facts.splits:
        repeated = f"{split.repeated}" + (f" ({split.conflicting} with another answer)" if split.conflicting else "")
        cut = [_share(sum(t > n for t in split.tokens), split.size) for n in facts.max_lengths]
        table.add_row(
            split.name, str(split.size), str(split.empty), repeated, *map(str, percentiles(split.tokens)), *cut
        )
    return table


def labels_table(facts: TaskFacts):
    from rich.table import Table

    table = Table("label", *(s.name for s in facts.splits), header_style="bold", title="labels")
    for label in facts.task.labels or []:
        table.add_row(label, *(_share(s.labels[label], s.size) for s in facts.splits))
    return table


def leakage_table(facts: TaskFacts):
    from rich.markup import escape
    from rich.table import Table

    task, found = facts.task, facts.leakage
    splits = {"test": task.test, "validation": task.validation, "train": task.train}
    by_id = {(split, e.id): e for split, examples in splits.items() for e in examples}
    groups = [
        ("test", "train", found.test_in_train),
        ("test", "validation", found.test_in_validation),
        ("validation", "train", found.validation_in_train),
        ("test", "train", found.answers_in_pool),
    ]
    rows = [(split, other, m) for split, other, group in groups for m in group]
    rows += [("test", "corpus", m) for m in found.questions_in_corpus]
    table = Table(
        "example", "text", "also in", "its text", "kind", "similarity", header_style="bold",
        title=f"leaked examples ({min(len(rows), SHOWN)} of {len(rows)} shown)"
        + ("; kind answer: the test answer is in its text" if found.answers_in_pool else ""),
    )  # fmt: skip
    for split, other, match in rows[:SHOWN]:
        found_in = by_id.get((other, match.other))
        table.add_row(
            f"{split} {escape(match.id)}",
            escape(_clip(prompt_text(by_id[(split, match.id)]))),
            f"{other} {escape(match.other)}",
            escape(_clip(prompt_text(found_in))) if found_in is not None else "",
            match.kind,
            f"{match.similarity:.2f}",
        )
    return table


def prompt_text(example: Example) -> str:
    return " ".join(filter(None, [example.instruction, example.context, example.input, example.choices]))


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _share(n: int, total: int) -> str:
    return f"{n} ({n / total:.0%})" if total else "0"
