"""lm-eval on a model in memory: base, fully fine-tuned, or peft-wrapped (LoRA/QLoRA, 4-bit included).

Scores go into the result row as flat keys `lm_eval:<task>:<metric>` and `..._stderr`, so the
report gets one column per task and metric. A task that cannot run (unknown name, dataset not
available offline) becomes an entry in `lm_eval_errors`, and the other tasks still run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Callable

from harness.config import LmEvalSettings
from harness.figures import LM_EVAL_PREFIX
from harness.tasks import BUNDLED_TASKS

BUNDLED_LM_EVAL = BUNDLED_TASKS / "lm-eval"  # this project's lm-eval task YAML (offline, local data)
PREFIX = LM_EVAL_PREFIX


@functools.lru_cache(maxsize=4)
def task_manager(include_paths: tuple[str, ...], with_defaults: bool):
    """lm-eval's TaskManager; without lm-eval's own ~15k tasks, building it takes 0.1 s instead of ~10 s."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(BUNDLED_LM_EVAL), *include_paths], include_defaults=with_defaults)


def resolve_tasks(settings: LmEvalSettings):
    """A TaskManager that knows every requested task when possible (lm-eval's own only when needed)."""
    include = tuple(settings.include_path)
    manager = task_manager(include, False)
    if all(name in manager.all_tasks for name in settings.tasks):
        return manager
    return task_manager(include, True)


def unknown_task_message(name: str, manager) -> str:
    import difflib

    close = difflib.get_close_matches(name, manager.all_tasks, n=3)
    return (
        f"unknown lm-eval task {name!r}: neither an lm-eval task nor one of the YAML tasks in {BUNDLED_LM_EVAL} "
        "or eval.lm_eval.include_path." + (f" Did you mean: {', '.join(close)}?" if close else "")
    )


def unavailable_message(name: str, exc: Exception) -> str:
    return (
        f"lm-eval task {name!r} could not run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
        "Standard lm-eval tasks download their dataset from the Hugging Face hub; offline, pre-download it "
        "into the datasets cache or use a task whose YAML points at local files (see tasks/lm-eval/)."
    )


def score(
    model,
    tokenizer,
    settings: LmEvalSettings,
    on_task: Callable[[str], None] = lambda name: None,
    failed: dict[str, str] | None = None,
) -> tuple[dict[str, float | None], dict[str, str]]:
    """(row values, errors per task) for the model on each of settings.tasks.

    `failed` carries tasks that could not run for an earlier model of the same run (their data is
    missing for every model): they are reported again without retrying, and new failures are added.
    """
    failed = {} if failed is None else failed
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    manager = resolve_tasks(settings)
    padding_side = tokenizer.padding_side
    with _quiet():  # it warns that a model object (not a name) was passed: that is the point here
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)
    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        drop_virtual_tokens(lm)
    values, errors = {}, {}
    for name in settings.tasks:
        on_task(name)
        if name in failed or name not in manager.all_tasks:
            errors[name] = failed.setdefault(name, unknown_task_message(name, manager))
            continue
        try:
            with _quiet():
                output = simple_evaluate(
                    model=lm,
                    tasks=[name],
                    task_manager=manager,
                    limit=settings.limit,
                    num_fewshot=settings.num_fewshot,
                    log_samples=False,
                    verbosity="ERROR",
                )
        except Exception as exc:  # noqa: BLE001 — one task's missing data must not stop the others
            errors[name] = failed[name] = unavailable_message(name, exc)
            continue
        values.update(flatten(output["results"], name))
    tokenizer.padding_side = padding_side  # HFLM may change it; generation needs its own
    return values, errors


def drop_virtual_tokens(lm) -> None:
    """peft's prompt tuning and P-tuning put their virtual tokens before the input, and their logits
    too; lm-eval reads the logits by input position, so only the input's last positions are kept."""
    call = lm._model_call

    def model_call(inps, attn_mask=None, labels=None):
        logits = call(inps, attn_mask, labels)
        return logits[:, logits.shape[1] - inps.shape[1] :]

    lm._model_call = model_call


def flatten(results: dict, name: str) -> dict[str, float | None]:
    """lm-eval's {"task": {"acc,none": x, "acc_stderr,none": s, "alias": ...}} -> flat row keys."""
    values: dict[str, float | None] = {}
    for task, metrics in results.items():
        if task != name and name in results:
            continue  # a group's subtasks: the group's own aggregate is the figure to report
        for key, value in metrics.items():
            if "," not in key or not isinstance(value, (int, float)):
                continue
            metric, filter_name = key.split(",", 1)
            label = metric if filter_name == "none" else f"{metric}[{filter_name}]"
            values[f"{PREFIX}{task}:{label}"] = float(value)
    return values


class _quiet:
    """lm-eval logs every request batch at INFO and draws tqdm bars on stderr (it passes disable=False,
    so TQDM_DISABLE does not reach them); the live table is the display."""

    names = ("lm_eval", "huggingface_hub", "datasets")  # the hub clients log each offline retry

    def __enter__(self):
        self.levels = {name: logging.getLogger(name).level for name in self.names}
        for name in self.names:
            logging.getLogger(name).setLevel(logging.ERROR)
        self.stderr = contextlib.redirect_stderr(io.StringIO())
        self.stderr.__enter__()

    def __exit__(self, *exc):
        self.stderr.__exit__(*exc)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
