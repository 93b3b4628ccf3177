"""The held-out prompts the harness renders for a task (k shots drawn by seed 0), for the bench scripts."""

from __future__ import annotations


def heldout_prompts(task_name: str, tokenizer, shots: int, limit: int) -> list[str]:
    from harness import prompting
    from harness.tasks import load_task

    task = load_task(task_name)
    drawn = prompting.draw_shots(task, shots, 0)
    return [prompting.render(tokenizer, prompting.messages(task, e, drawn)) for e in task.test[:limit]]


def add_heldout_arguments(parser) -> None:
    """The options every held-out bench script takes: which model, tasks and prompts, and how they are generated."""
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="+", default=["ticket-routing", "product-catalogue"])
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
