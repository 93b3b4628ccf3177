"""REPORT.md: the results table, how each figure was measured, failures, wrong answers, recipe, environment."""

from __future__ import annotations

import yaml

from harness.evaluate import lmeval
from harness.report.columns import visible_columns
from harness.results import RunStore, write_atomic


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[str]], right: list[bool] | None = None) -> str:
    right = right or [False] * len(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def results_section(rows: list[dict]) -> str:
    columns = visible_columns(rows, "markdown")
    return _table([c.header for c in columns], [[c.render(r) for c in columns] for r in rows],
                  [c.numeric for c in columns])


def measurement_section(meta: dict, rows: list[dict]) -> str:
    methods = sorted({r["peak_memory_method"] for r in rows if r.get("peak_memory_method")})
    prices = ", ".join(f"{device}: ${price:.2f}/h" for device, price in meta.get("usd_per_hour", {}).items())
    load = meta.get("model_load_seconds")
    lines = [
        f"- **score**: the task's metric (`{meta['task']['metric']}`) on {meta['task']['n_test']} held-out examples "
        "(or the recipe's `eval.heldout.limit`), greedy decoding; the interval is a 95% percentile bootstrap "
        "over examples.",
        "- **no label**: share of answers that named none of the task's labels (classification tasks).",
        f"- **peak mem**: {'; '.join(methods) or 'not measured'}; the highest of the technique's phases. "
        "Process RSS counts everything the process holds (the Python runtime and libraries, ~0.5 GiB, and the "
        "base model shared by prompt-only techniques); memory is released between techniques, but for "
        "isolated figures per kind use `bench/bench_train.py`, which runs each in a fresh process.",
        "- **wall**: the technique from start to finish (its training and evaluation; prompt-only techniques "
        f"share one base-model load{f', which took {load:.1f}s' if load is not None else ''}, counted in none).",
        f"- **cost**: wall hours x the recipe's price per device-hour ({prices or 'none set'}).",
        "- **ex/s**: held-out examples scored per second (prompt processing and generation).",
    ]
    if any(r.get("retriever") for r in rows):
        lines += [
            "- **recall**: retrieval recall@k, the share of examples' gold documents among the k retrieved passages "
            "(only where the task's data names them); **wrong: not retrieved / misread** splits the wrong answers "
            "into retrieval misses and reading misses. **index**: building (or loading from the cache) the corpus index.",
        ]
    if lmeval.columns(rows):
        lines += [
            "- **lm-eval columns** (`task metric`): lm-eval's `simple_evaluate` on each technique's model in memory "
            "(LoRA/QLoRA with adapters, 4-bit where trained so), ± lm-eval's standard error. Prompt-only and RAG "
            "techniques read the same base model, so they share one lm-eval run.",
        ]
    return "\n".join(lines)


def wrong_answers_section(store: RunStore, rows: list[dict], limit: int) -> str:
    parts = []
    for row in rows:
        wrong = [p for p in store.predictions(row["technique"]) if not p["correct"]][:limit]
        if not wrong:
            continue
        headers = ["input", "expected", "answer"]
        cells = [[_clip(p["input"]), p["expected"], _clip(p["predicted"], 80) or "(empty)"] for p in wrong]
        if any("recall" in p for p in wrong):  # RAG: was the answer's document in the prompt?
            headers.append("gold retrieved")
            cells = [c + [{None: "–", 1.0: "yes"}.get(p.get("recall"), "no")] for c, p in zip(cells, wrong)]
        table = _table(headers, cells)
        parts.append(f"### {row['technique']}\n\n{table}")
    return "\n\n".join(parts) or "No wrong answers stored."


def render_markdown(store: RunStore) -> str:
    meta = store.meta
    rows = store.ordered_rows()
    recipe = meta["recipe"]
    failures = [r for r in rows if r["status"] == "failed"]
    env = meta.get("versions", {})
    sections = [
        f"# {recipe['name']}: {recipe['model']['id']} on {meta['task']['name']}",
        f"Run `{meta.get('run_id')}`, started {meta.get('created')} on {meta.get('device_name')}; seed {meta.get('seed')}.",
        "## Results",
        results_section(rows) if rows else "No technique has finished yet.",
        "## How each figure was measured",
        measurement_section(meta, rows),
    ]
    if failures:
        sections += ["## Failures", "\n".join(f"- **{r['technique']}**: {_cell(r['error'] or '')}" for r in failures)]
    lm_eval_errors = {task: error for r in rows for task, error in (r.get("lm_eval_errors") or {}).items()}
    if lm_eval_errors:
        sections += ["## lm-eval tasks that could not run",
                     "\n".join(f"- **{task}**: {_cell(error)}" for task, error in lm_eval_errors.items())]
    limit = recipe.get("eval", {}).get("heldout", {}).get("wrong_examples", 5)
    if limit:
        sections += [f"## Wrong answers (up to {limit} per technique)", wrong_answers_section(store, rows, limit)]
    sections += [
        "## Recipe",
        "```yaml\n" + yaml.safe_dump(recipe, sort_keys=False).strip() + "\n```",
        "## Environment",
        f"python {meta.get('python')} on {meta.get('platform')}; git commit `{meta.get('git_commit')}`\n\n"
        + ", ".join(f"{name} {version}" for name, version in env.items() if version),
    ]
    return "\n\n".join(sections) + "\n"


def write_markdown(store: RunStore) -> None:
    write_atomic(store.run_dir / "REPORT.md", render_markdown(store))
