"""lm-eval on a model in memory: base, fully fine-tuned, or peft-wrapped (LoRA/QLoRA, 4-bit included).

Scores go into the result row as flat keys `lm_eval:<task>:<metric>` and `..._stderr`, so the
report gets one column per task and metric; each item's own value (lm-eval's `log_samples`) goes into
`lm_eval_samples`, so a technique's lm-eval figures can be compared with the base model's item by item
(analysis/forgetting.py), as the held-out score is. A task that cannot run (unknown name, dataset not
available offline) becomes an entry in `lm_eval_errors`, and the other tasks still run.
`evaluate_lm_eval` is a cell's lm-eval phase, measured, as its row's lm-eval fields.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Callable
from typing import Any, Protocol

from harness.config import LmEvalSettings
from harness.evaluate.context import Context
from harness.figures import LM_EVAL_PREFIX
from harness.tasks import BUNDLED_TASKS

BUNDLED_LM_EVAL = BUNDLED_TASKS / "lm-eval"  # this project's lm-eval task YAML (offline, local data)
PREFIX = LM_EVAL_PREFIX


class SharedScores(Protocol):
    """The lm-eval results the cells of one process share (techniques.base.Shared)."""

    base_lm_eval: dict | None  # the base model's scores: prompt and rag read the same model
    lm_eval_failed: dict  # tasks that cannot run here, for any model


class LmEvalContext(Context, Protocol):
    @property
    def shared(self) -> SharedScores: ...


def evaluate_lm_eval(ctx: LmEvalContext, label: str, model, tokenizer, base_model: bool = False) -> dict:
    """The recipe's lm-eval tasks on this model, measured; techniques that only read the base model
    (prompt, rag) share one run, since their lm-eval prompts are the same."""
    from harness.measure import measure

    settings = ctx.recipe.eval.lm_eval
    if not settings.tasks or not ctx.final:  # search trials and learning-curve sizes skip it
        return {}
    if base_model and ctx.shared.base_lm_eval is not None:
        # the scores are shared; the time and memory belong to the technique that ran lm-eval
        return ctx.shared.base_lm_eval | {
            "lm_eval_seconds": 0.0,
            "lm_eval_peak_memory_bytes": None,
            "lm_eval_shared": True,
        }
    job = ctx.progress.add_task(f"{label}: lm-eval", total=len(settings.tasks))
    with measure(ctx.device) as phase:
        scores, errors = score(
            model,
            tokenizer,
            settings,
            on_task=lambda name: ctx.progress.update(job, description=f"{label}: lm-eval {name}", advance=1),
            failed=ctx.shared.lm_eval_failed,
        )
    ctx.progress.remove_task(job)
    gpu = phase.gpu_figures("lm_eval")
    values = scores | {
        "lm_eval_base": base_model or None,  # these are the base model's scores: the reference for forgetting
        "lm_eval_errors": errors or None,
        "lm_eval_seconds": phase.seconds,
        "lm_eval_peak_memory_bytes": phase.peak_bytes,
    }
    if base_model:  # a technique sharing these scores spent none of this memory or energy
        ctx.shared.base_lm_eval = values
    return values | gpu


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
) -> tuple[dict[str, Any], dict[str, str]]:
    """(row values, errors per task) for the model on each of settings.tasks: the figures as flat keys,
    and `lm_eval_samples` (see `per_item`) when any task ran.

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
    values: dict[str, Any] = {}
    items: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
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
                    log_samples=True,  # each item's value: the paired test against the base model
                    verbosity="ERROR",
                )
        except Exception as exc:  # noqa: BLE001 — one task's missing data must not stop the others
            errors[name] = failed[name] = unavailable_message(name, exc)
            continue
        values.update(flatten(output["results"], name))
        items.update(per_item(output.get("samples") or {}, name))
    tokenizer.padding_side = padding_side  # HFLM may change it; generation needs its own
    if items:
        values["lm_eval_samples"] = items
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


def per_item(samples: dict, name: str) -> dict[str, dict[str, float]]:
    """lm-eval's logged samples -> {"<task>:<metric>": {item id: value}}, keyed like `flatten`'s figures
    (without the prefix). Only numeric per-item values count: those whose mean is the figure (acc,
    acc_norm, exact_match); a corpus-level metric's items (BLEU's pairs) have no such value and the
    figure stays untested. A group's subtasks count toward the group's figure, with ids
    "<subtask>/<doc_id>"."""
    items: dict[str, dict[str, float]] = {}
    for task, logged in samples.items():
        for sample in logged:
            filter_name = sample.get("filter", "none")
            for metric in sample.get("metrics", []):
                value = sample.get(metric)
                if not isinstance(value, (int, float)):
                    continue
                label = metric if filter_name == "none" else f"{metric}[{filter_name}]"
                items.setdefault(f"{name}:{label}", {})[f"{task}/{sample['doc_id']}"] = float(value)
    return items


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
