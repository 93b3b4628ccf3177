"""The recipe's `eval.leakage` applied to a task before any cell: find what leaked between its splits
(harness/analysis/leakage.py), then report it (warn), drop those test examples (exclude) or stop (error).

The driver screens the task once (pipeline.run_task) and stores what it found and dropped in the run's
meta (`leakage`); each cell's worker drops the same stored ids (`as_screened`) rather than deciding
again, so every technique, seed and training size is scored on the same examples.
"""

from __future__ import annotations

import dataclasses

from harness.analysis import leakage
from harness.tasks import Task, heldout_examples
from harness.yamlconfig import ConfigError

SHOWN = 5  # matches named in an error


def find(task: Task, threshold: float = leakage.NEAR_THRESHOLD) -> leakage.Leakage:
    """Every leakage check on the task's splits (its validation split when one is cut), its corpus included."""
    corpus = None
    if task.corpus_path is not None:
        from harness.retrieval import load_corpus  # lazily: numpy, only for a task with a corpus

        corpus = load_corpus(task.corpus_path)
    return leakage.find(task.train, task.validation, task.test, task.is_classification, corpus, threshold)


def screen(task: Task, settings, limit: int | None = None) -> tuple[Task, dict]:
    """(the task to score, meta['leakage']) under `settings` (the recipe's eval.leakage); `limit`, the recipe's
    eval.heldout.limit, counts how many of the scored examples leaked."""
    found = find(task, settings.near_threshold)
    flagged = found.test_ids
    if flagged and settings.action == "error":
        raise ConfigError(error_message(task, found))
    stored = found.as_dict() | {"action": settings.action, "excluded_ids": []}
    if settings.action == "exclude":
        stored["excluded_ids"] = flagged
        task = as_screened(task, stored)
    scored = {e.id for e in heldout_examples(task, limit)}
    stored["scored"] = len(scored)
    stored["scored_flagged"] = sum(1 for i in flagged if i in scored)
    return task, stored


def as_screened(task: Task, stored: dict | None) -> Task:
    """The task without the test examples a run excluded (meta['leakage']['excluded_ids']); unchanged for a
    run that excluded none, or was stored before leakage was checked."""
    dropped = set((stored or {}).get("excluded_ids") or [])
    if not dropped:
        return task
    kept = tuple(e for e in task.test if e.id not in dropped)
    if not kept:
        raise ConfigError(
            f"eval.leakage: exclude drops all {len(task.test)} test examples of task {task.name!r}: every one also "
            "appears in train or validation; fix the task's splits (e.g. a separate data.test with new examples)"
        )
    return dataclasses.replace(task, test=kept)


def error_message(task: Task, found: leakage.Leakage) -> str:
    lines = leakage.sentences(found.as_dict())
    matches = [*found.test_in_train, *found.test_in_validation, *found.answers_in_pool, *found.questions_in_corpus]
    named = "; ".join(f"{m.id} ~ {m.other} ({m.kind}{_similarity(m)})" for m in matches[:SHOWN])
    more = f" and {len(matches) - SHOWN} more" if len(matches) > SHOWN else ""
    return (
        f"eval.leakage: error: task {task.name!r}: {' '.join(lines)} Test example ~ where it appears: {named}{more}. "
        "Fix: remove them from the test data (or train), or set eval.leakage to exclude (drop them, counted) or "
        "warn (score them, reported); `harness task check` lists them all"
    )


def _similarity(match: leakage.Match) -> str:
    return f" {match.similarity:.2f}" if match.kind == "near" else ""
