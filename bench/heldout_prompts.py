"""The held-out prompts the harness renders for a task (k shots drawn by seed 0), for the bench scripts."""

from __future__ import annotations


def heldout_prompts(task_name: str, tokenizer, shots: int, limit: int) -> list[str]:
    from harness import prompting
    from harness.tasks import load_task

    task = load_task(task_name)
    drawn = prompting.draw_shots(task, shots, 0)
    return [prompting.render(tokenizer, prompting.messages(task, e, drawn)) for e in task.test[:limit]]
