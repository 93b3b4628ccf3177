"""REPORT.md's leakage note in a task's block: what the run found between the task's splits (meta['leakage'],
written by harness/screening.py before any cell) and what `eval.leakage` did with it."""

from __future__ import annotations

from harness.analysis import leakage

SHOWN = 3  # matched pairs named


def leakage_note(meta: dict) -> str:
    """'' for a run stored before leakage was checked."""
    stored = meta.get("leakage")
    if not stored:
        return ""
    found, how = leakage.sentences(stored), f"compared on the {stored['compared']}"
    if not found:
        return f"Leakage: no test example also appears in train or validation ({how})."
    flagged, action = len(stored["test_ids"]), stored["action"]
    if action == "exclude":
        done = (
            f"The {flagged} flagged test example(s) were excluded before any cell (`eval.leakage: exclude`): "
            f"every technique is scored on the remaining {stored['n_test'] - len(stored['excluded_ids'])}."
        )
    else:
        done = (
            f"They were scored (`eval.leakage: warn`): {stored['scored_flagged']} of the {stored['scored']} "
            "held-out examples scored are among them; `exclude` drops them, `error` stops the run."
        )
    return " ".join(["**Leakage**:", *found, done, f"E.g. {_pairs(stored)} ({how})."])


def _pairs(stored: dict) -> str:
    groups = ("test_in_train", "test_in_validation", "answers_in_pool", "questions_in_corpus", "validation_in_train")
    matches = [m for name in groups for m in stored.get(name) or []][:SHOWN]
    return "; ".join(f"`{m['id']}` ~ `{m['other']}` ({_kind(m)})" for m in matches)


def _kind(match: dict) -> str:
    return f"near, {match['similarity']:.2f}" if match["kind"] == "near" else match["kind"]
