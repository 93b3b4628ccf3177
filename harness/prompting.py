"""Turn task examples into chat messages and prompt strings.

One function builds the messages for every technique: prompt-only (with k shots as earlier
turns), and later the fine-tuning kinds (which train on exactly these messages) and RAG.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from harness.tasks import Example, Task


def user_text(task: Task, example: Example) -> str:
    return task.spec.prompt.template.format(
        input=example.input,
        instruction=example.instruction,
        context=example.context,
        choices=example.choices,
        labels=", ".join(task.labels or []),
    )


def messages(
    task: Task, example: Example, shots: Sequence[Example] = (), augment: Callable[[Example, str], str] | None = None
) -> list[dict]:
    """System message (task's, else the example's instruction), then k solved shots, then the example's
    conversation: its earlier turns (a multi-turn example's history) and its question.

    `augment` rewrites the question's user text (RAG puts retrieved passages before the question).
    """
    system = task.spec.prompt.system or example.instruction
    turns = [{"role": "system", "content": system}] if system else []
    return turns + shot_turns(task, shots) + conversation(task, example, augment)


def shot_turns(task: Task, shots: Sequence[Example]) -> list[dict]:
    """Each solved shot as a user turn and the assistant's answer (a served technique adds these too)."""
    turns: list[dict] = []
    for shot in shots:
        turns += conversation(task, shot) + [{"role": "assistant", "content": shot.output}]
    return turns


def conversation(task: Task, example: Example, augment: Callable[[Example, str], str] | None = None) -> list[dict]:
    """The example's earlier turns as written, then its question (the last user turn) through the task's
    template: the template shapes the question only, so earlier turns reach the model as the data has them."""
    earlier = [{"role": role, "content": text} for role, text in example.history]
    question = user_text(task, example)
    return earlier + [{"role": "user", "content": augment(example, question) if augment else question}]


def question_text(task: Task, example: Example) -> str:
    """The question as one text (what a judge reads): the user text, after the earlier turns when there are some."""
    if not example.history:
        return user_text(task, example)
    earlier = [f"{role.capitalize()}: {text}" for role, text in example.history]
    return "\n\n".join([*earlier, f"User: {user_text(task, example)}"])


def render(tokenizer, turns: list[dict]) -> str:
    """The prompt string the model sees: the tokenizer's chat template, or a plain layout without one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    lines = [f"{t['role'].capitalize()}: {t['content']}" for t in turns]
    return "\n\n".join(lines) + "\n\nAssistant:"


def draw_shots(task: Task, k: int, seed: int) -> list[Example]:
    """k train examples fixed by seed; the same shots precede every test question."""
    if k > len(task.train):
        raise ValueError(f"shots={k} but the train split has only {len(task.train)} examples")
    return random.Random(seed).sample(list(task.train), k)
