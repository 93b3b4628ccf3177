"""REPORT.md: the recommendation, one results table per task (best values in bold, paired significance
against the best), trade-off plots, per-label results of classification tasks (confusion matrix, F1 per
label), how each figure was measured, failures, wrong answers, recipe and environment.
Rendered from stored results only, so `harness report` can redo it at any time."""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path

import yaml

from harness import figures, metrics, plugins
from harness.analysis import decision, floor, forgetting, ownership
from harness.report import plots, sections, study_sections
from harness.report import serving as serving_report
from harness.report.columns import Column, best_values, headline_columns, visible_columns
from harness.report.confusion import confusion_section
from harness.report.export import write_exports
from harness.report.leakage import leakage_note
from harness.report.text import cell as _cell
from harness.report.text import clip as _clip
from harness.report.text import file_name
from harness.report.text import table as _table
from harness.results import RunStore, report_folder, task_name, write_atomic
from harness.rows import RowLike


def results_table(rows: Sequence[RowLike], columns: Sequence[Column] | None = None) -> str:
    """The results table (every visible column unless `columns` are given); the best figure of each column
    (among finished techniques) in bold."""
    columns = list(columns) if columns is not None else visible_columns(rows, "markdown")
    best = best_values(columns, rows)

    def cell(column, row) -> str:
        text = column.render(row)
        is_best = column.header in best and row["status"] == "ok" and row.get(column.key) == best[column.header]
        return f"**{text}**" if is_best else text

    return _table(
        [c.header for c in columns], [[cell(c, r) for c in columns] for r in rows], [c.numeric for c in columns]
    )


def headline_and_full_tables(task: sections.TaskView) -> str:
    """The headline table (at most ten columns: what a decision reads first), then every figure in a folded
    section (GitHub and most markdown viewers fold <details>), so the report stays readable in a PR."""
    headline = results_table(task.rows, headline_columns(task.rows, task.store.meta.get("recipe", {}).get("workload")))
    full = results_table(task.rows)
    return f"{headline}\n\n<details><summary>Every figure</summary>\n\n{full}\n\n</details>"


def recommendation_section(
    rows: Sequence[RowLike], predictions: dict[str, list[dict]], volume: float | None = None
) -> str:
    """The pick and why (at the workload's `volume` when the recipe gives one, else with the volumes its
    verdict holds for), what each costlier option buys, the floor warnings, and whether the pick forgets
    what the base model could do (an lm-eval figure significantly below the base model's)."""
    pick = decision.recommend(rows, predictions, volume=volume)
    lines = [decision.sentence(pick, lambda head: f"**{head}**")]
    if pick.upgrades:
        lines += ["", "Each costlier option, against it:", ""] + [f"- {line}" for line in pick.upgrades]
    flags = decision.floor_flags(rows, predictions)
    warnings = [f"- **{name}** {text}" for name, texts in flags.items() for text in texts]
    warnings += [
        f"- **{c.technique}** forgets {c.figure.replace(':', ' ')}: {c.interval()} against the base model "
        f"(Holm p = {c.p_adjusted:.3f}; see Forgetting)"
        for c in forgetting.versus_base(rows).values()
        if c.technique == pick.technique and c.verdict(decision.ALPHA) == "forgets"
    ]
    if warnings:
        lines += ["", "Watch out:", "", *warnings]
    return "\n".join(lines)


def plots_section(store: RunStore, rows: Sequence[RowLike], folder: Path) -> str:
    """Draw the trade-off plots into folder/plots/ and link them (paths relative to the report)."""
    links = []
    for axis in plots.AXES:
        name = plots.plot_path(task_name(store), f"score-vs-{axis}.png")
        title = f"{task_name(store)}: score vs {axis}"
        if plots.plot_tradeoff(rows, axis, title, folder / name):
            links.append(f"![{title}]({name})")
    name, title = plots.plot_path(task_name(store), "training.png"), f"{task_name(store)}: training curves"
    if plots.plot_training(rows, title, folder / name):
        links.append(f"![{title}]({name})")
    return " ".join(links)


def cost_at_volume_section(store: RunStore, rows: Sequence[RowLike], folder: Path, workload: dict | None) -> str:
    """Each technique's cost of ownership (training once, then serving each request): a plot against
    request volume, a table, and where the cheapest technique changes."""
    rows = [r for r in ownership.costed(rows) if r["kind"] != floor.KIND]
    if not rows:
        return ""
    volume = workload["requests"] if workload else None
    name, title = plots.plot_path(task_name(store), "cost-at-volume.png"), f"{task_name(store)}: cost at volume"
    plot = plots.plot_cost_at_volume(rows, title, folder / name, volume)
    headers = [
        "technique",
        "training (one-off)",
        "per 1k requests",
        "latency p50 / p95 (batch 1)",
        "tokens in / out (mean)",
    ]
    served = any(r.get("served_concurrency") is not None for r in rows)
    if served:  # load-tested (harness loadtest): say which per-request figure each row's cost uses
        headers.insert(3, "per request from")
    if volume and workload:
        headers.append(f"at {ownership.volume_text(volume)} requests a {workload.get('period') or 'period'}")
    usd, seconds = figures.fmt_usd, figures.fmt_seconds
    cells = []
    for r in rows:
        tokens = (
            f"{r['prompt_tokens_mean']:.0f} / {r['output_tokens_mean']:.1f}"
            if r.get("prompt_tokens_mean") is not None
            else "–"
        )
        cells.append(
            [
                r["technique"],
                usd(r["train_cost_usd"]),
                usd(1000 * r["serving_usd_per_request"]),
                *([serving_report.cost_basis(r)] if served else []),
                f"{seconds(r.get('latency_p50_seconds'))} / {seconds(r.get('latency_p95_seconds'))}",
                tokens,
            ]
            + ([usd(ownership.total_cost(r, volume))] if volume else [])
        )
    parts = [
        f"![{title}]({name})" if plot else "",
        _table(headers, cells, [False] + [True] * (len(headers) - 1)),
        break_even_text(rows),
        batch_break_evens(rows) if served else "",
    ]
    return "\n\n".join(p for p in parts if p)


def batch_break_evens(rows: Sequence[RowLike]) -> str:
    """The break-evens had every cost per request come from the batch run, beside the served ones above."""
    batch = [
        dict(r) | {"serving_usd_per_request": r.get("batch_serving_usd_per_request", r["serving_usd_per_request"])}
        for r in rows
    ]
    text = break_even_text(ownership.costed(batch))
    return f"On the batch run's per-request costs instead (eval.heldout.batch_size): {text}" if text else ""


def break_even_text(rows: Sequence[RowLike]) -> str:
    """Where costs cross: the cheapest to start against the cheapest per request, then every other pair."""
    start, serve = ownership.cheapest_to_start(rows), ownership.cheapest_per_request(rows)
    if start is None or serve is None or len(rows) < 2:
        return ""
    if start is serve:
        head = (
            f"{start['technique']} is both the cheapest to start and the cheapest per request: it costs least "
            "at every volume."
        )
    else:
        volume = ownership.break_even(start, serve)
        head = (
            f"{start['technique']} is the cheapest to start ({figures.fmt_usd(start['train_cost_usd'])} of "
            f"training), {serve['technique']} the cheapest per request "
            f"({figures.fmt_usd(1000 * serve['serving_usd_per_request'])} per 1k)"
            + (
                f": {serve['technique']} becomes cheaper than {start['technique']} after about "
                f"{ownership.volume_text(volume)} requests."
                if volume
                else "."
            )
        )
    pair = {start["technique"], serve["technique"]}
    others = [
        f"- {c.after} becomes cheaper than {c.before} after about {ownership.volume_text(c.volume)} requests."
        for c in ownership.crossings(rows)
        if {c.before, c.after} != pair
    ]
    return "\n\n".join([head] + (["\n".join(others)] if others else []))


def floor_note(rows: Sequence[RowLike], predictions: dict[str, list[dict]]) -> str:
    """What an answer that needs no model scores (the task's floor, analysis/floor.py), and where each
    technique stands against it by the paired test: significantly above, not significantly different,
    significantly below. A classification task adds uniform chance."""
    row = next((r for r in rows if r["kind"] == floor.KIND and r.get("score") is not None), None)
    if row is None:
        return ""
    if row["technique"] == floor.ECHO:
        head = f"Floor: echoing the input back as the answer scores {row['score']:.3f}."
    else:
        head = (
            f"Floor: always answering '{row['majority_label']}' (the most common training label) scores "
            f"{row['score']:.3f}; guessing uniformly among the labels would score {row['chance_score']:.3f}."
        )
    verdicts = decision.versus_floor(rows, predictions)
    groups = [
        f"{words.capitalize()} it: {', '.join(name for name, v in verdicts.items() if v.relation == relation)}."
        for relation, words in decision.RELATIONS.items()
        if any(v.relation == relation for v in verdicts.values())
    ]
    return " ".join([head, *groups])


def forgetting_section(rows: Sequence[RowLike]) -> str:
    """Each technique's lm-eval figures against the base model's, item by item under the same seed, with
    the verdict from the test ('forgets', 'gains', 'no measurable change'), not from the sign."""
    changes = forgetting.versus_base(rows)
    base = forgetting.base_row(rows)
    if not changes or base is None:
        return ""
    by_name = {r["technique"]: r for r in rows}
    cells = [
        [
            change.technique,
            change.figure.replace(":", " "),
            _score_text(base.get(figures.LM_EVAL_PREFIX + change.figure)),
            _score_text(by_name[change.technique].get(figures.LM_EVAL_PREFIX + change.figure)),
            change.interval().replace("-", "−"),
            f"{change.p_adjusted:.3f}",
            change.verdict(decision.ALPHA),
        ]
        for change in changes.values()
    ]
    header = (
        f"Forgetting: each technique's lm-eval figures against the base model's ({base['technique']}), item by "
        "item under the same seed; the difference's 95% CI and p come from the same two-level paired bootstrap "
        f'as vs best, and p is Holm-adjusted over these {len(changes)} comparisons. "forgets" / "gains": '
        f"significantly below / above the base model (adjusted p < {decision.ALPHA}); otherwise no measurable "
        "change, whatever the sign."
    )
    table = _table(
        ["technique", "lm-eval figure", "base", "technique's", "difference [95% CI]", "Holm p", "verdict"],
        cells,
        [False, False, True, True, False, True, False],
    )
    return f"{header}\n\n{table}"


def _score_text(value) -> str:
    return "–" if value is None else f"{value:.3f}"


METRIC_NAMES = {
    "exact_match": "exact match",
    "contains": "contains",
    "accuracy": "accuracy",
    "macro_f1": "label correctness",
    "rouge_l": "ROUGE-L",
    "chrf": "chrF",
    "embedding_similarity": "embedding similarity",
}


def _count(value) -> str:
    return "–" if value is None else f"{value:g}"


def reward_models_section(store: RunStore, rows: Sequence[RowLike]) -> str:
    """The reward models (kind reward) in a table of their own, never ranked on the task's metric: held-out
    pair accuracy (reward(chosen) > reward(rejected)) with its 95% CI, the mean margin, training figures and
    who used each; then, under `eval.reward_model`, how its scores of every technique's answers line up with
    the task's metric, beside the judge's where one graded the same answers."""
    models = store.reward_model_rows()
    if not models:
        return ""
    used_by = {
        m["technique"]: [r["technique"] for r in rows if r.get("trained_against") == m["technique"]] for m in models
    }
    table = _table(
        ["reward model", "pairs ranked right [95% CI]", "margin", "pairs", "train", "train mem", "trained against it"],
        [
            [
                m["technique"],
                _accuracy(m),
                figures.fmt_number(m.get("reward_margin"), ".2f"),
                _count(m.get("reward_pairs")),
                figures.fmt_seconds(m.get("train_seconds")),
                figures.fmt_bytes(m.get("train_peak_memory_bytes")),
                ", ".join(used_by[m["technique"]]) or "–",
            ]
            if m["status"] == "ok"
            else [m["technique"], m["status"], "–", "–", "–", "–", ", ".join(used_by[m["technique"]]) or "–"]
            for m in models
        ],
        [False, True, True, True, True, True, False],
    )
    head = (
        "**Reward models** (a score per message and reply; they answer nothing, so they are not ranked above): "
        "the share of held-out pairs where the chosen reply scores above the rejected one."
    )
    return "\n\n".join(filter(None, [head, table, reward_score_note(store, rows)]))


def _accuracy(row: RowLike) -> str:
    if row.get("reward_accuracy") is None:
        return "–"
    low, high = row.get("reward_accuracy_ci_low"), row.get("reward_accuracy_ci_high")
    interval = f" [{low:.0%}, {high:.0%}]" if low is not None and high is not None else ""
    return f"{row['reward_accuracy']:.0%}{interval}"


def reward_score_note(store: RunStore, rows: Sequence[RowLike]) -> str:
    """`eval.reward_model`: each technique's mean reward and the rank correlation (Spearman) of the reward
    with the task's metric on its answers, the judge's beside it where it graded them."""
    scored = [r for r in rows if r["status"] == "ok" and r.get("reward_model")]
    failed = [r for r in rows if r["status"] == "ok" and r.get("reward_error")]
    if not scored and not failed:
        return ""
    metric = store.meta["task"]["metric"]
    name = METRIC_NAMES.get(metric, metric)
    parts = []
    if scored:
        both = [r for r in scored if r.get("reward_spearman") is not None and r.get("judge_spearman") is not None]
        each = [
            f"{r['technique']} {figures.fmt_number(r.get('reward_score'), '.2f')} "
            f"(Spearman with {name} {figures.fmt_number(r.get('reward_spearman'), '.2f')}"
            + (f"; judge {r['judge_spearman']:.2f})" if r.get("judge_spearman") is not None else ")")
            for r in scored
        ]
        parts.append(
            f"**Reward model `{scored[0]['reward_model']}` on every technique's answers**: " + "; ".join(each) + "."
        )
        flat_judge = [r["technique"] for r in scored if r.get("judge_model") and r.get("judge_spearman") is None]
        if flat_judge and not both:
            parts.append(
                f"The judge graded the same answers but its grades have no rank correlation with {name} "
                f"(too few scored, or all alike) on {', '.join(flat_judge)}, so only the reward model ranks them."
            )
        if both:
            wins = sum(abs(r["reward_spearman"]) > abs(r["judge_spearman"]) for r in both)
            parts.append(
                f"It tracks {name} more closely than the judge on {wins} of {len(both)} techniques' answers "
                f"(mean Spearman {statistics.fmean(r['reward_spearman'] for r in both):.2f} against the judge's "
                f"{statistics.fmean(r['judge_spearman'] for r in both):.2f})."
            )
    if failed:
        parts.append(
            "Not scored by the reward model: "
            + "; ".join(f"{r['technique']}: {_cell(r['reward_error'])}" for r in failed)
            + "."
        )
    return " ".join(parts)


def judge_note(store: RunStore, rows: Sequence[RowLike]) -> str:
    """One sentence under the table: which judge graded the answers by the task's rubric, and how far its
    grades agree with the task's metric (agreement and Cohen's kappa under a 0/1 metric, Spearman's rank
    correlation under a continuous one); then replies it gave no score in, and judges that failed."""
    judged = [r for r in rows if r["status"] == "ok" and r.get("judge_model")]
    failed = [r for r in rows if r["status"] == "ok" and r.get("judge_error") and not r.get("judge_model")]
    if not judged and not failed:
        return ""
    parts = []
    if judged:
        metric = judged[0].get("metric") or store.meta["task"]["metric"]
        name, scale = METRIC_NAMES.get(metric, metric), judged[0].get("judge_scale")
        scored = [r for r in judged if r.get("judge_score") is not None]
        head = f"**Judge** (`{judged[0]['judge_model']}`, the task's rubric scored 1–{scale}"
        if not scored:
            parts.append(f"{head}): none of its replies carried a score, so nothing is compared with {name}.")
        elif metrics.is_binary(metric):
            each = [
                f"{r['judge_agreement']:.0%} of {r['technique']}'s answers"
                + (f" (kappa {r['judge_kappa']:.2f})" if r.get("judge_kappa") is not None else "")
                for r in scored
                if r.get("judge_agreement") is not None
            ]
            parts.append(f"{head}, shown as 0–1 in the judge column): it agrees with {name} on {', '.join(each)}.")
        else:
            each = [
                f"{r['judge_spearman']:.2f} on {r['technique']}'s answers"
                if r.get("judge_spearman") is not None
                else f"– on {r['technique']}'s (too few scored replies, or no spread)"
                for r in scored
            ]
            parts.append(
                f"{head}, shown as 0–1 in the judge column): it correlates with {name} at Spearman {', '.join(each)}."
            )
        unparsed = [r for r in judged if r.get("judge_unparsed")]
        if unparsed and scored:
            parts.append(
                "Replies without a score (not counted): "
                + ", ".join(
                    f"{r['technique']} {_count(r['judge_unparsed'])} of {_count(r.get('n_eval'))}" for r in unparsed
                )
                + "."
            )
    parts += [f"The judge failed on {r['technique']}: {_cell(r['judge_error'])}." for r in failed]
    return " ".join(parts)


def judge_lowest_section(store: RunStore, rows: Sequence[RowLike], limit: int) -> str:
    """Per technique, the `limit` answers the judge scored lowest (lowest first), with its reasons."""
    parts = []
    for row in rows:
        if not row.get("judge_model"):
            continue
        scale = row.get("judge_scale") or (store.meta["task"].get("judge") or {}).get("scale")
        scored = [p for p in store.predictions(row["technique"]) if p.get("judge_score") is not None]
        lowest = sorted(scored, key=lambda p: p["judge_score"])[:limit]
        if not lowest:
            continue
        cells = [
            [
                _clip(p["input"]),
                _clip(p["predicted"], 80) or "(empty)",
                f"{round(p['judge_score'] * (scale - 1) + 1)}/{scale}" if scale else f"{p['judge_score']:.2f}",
                _clip(p.get("judge_reason") or "", 200),
            ]
            for p in lowest
        ]
        parts.append(
            f"**{task_name(store)} / {row['technique']}**\n\n"
            + _table(["input", "answer", "judge", "judge's reply"], cells)
        )
    return "\n\n".join(parts)


def task_block(task: sections.TaskView) -> list[str]:
    """A task's part of the results: its heading, the dataset it read (when it read one), then its sections
    (the results table first)."""
    heading = [f"### {task.name}", *filter(None, [data_line(task.store.meta["task"].get("data") or {})])]
    if not task.rows:
        return [*heading, "No technique has finished yet."]
    return [*heading, *sections.render(task, "task")]


def data_line(sources: dict) -> str:
    """Which dataset each split was read from (a task's `data.hub` / `data.dataset`): its id, configuration,
    revision, the commit the cache held, each split's rows and fingerprint; empty for data files (the task
    folder names them)."""
    parts = []
    for role, source in sources.items():
        name = source.get("hub") or source.get("dataset")
        if name is None:
            continue
        details = [f"config `{source['config']}`" if source.get("config") else ""]
        details += [f"revision `{source['revision']}`" if source.get("revision") else ""]
        details += [f"commit `{source['commit']}`" if source.get("commit") else ""]
        splits = ", ".join(
            f"{split} {part['read']} of {part['rows']} rows, fingerprint `{part['fingerprint']}`"
            for split, part in source.get("splits", {}).items()
        )
        what = "hub dataset" if source.get("hub") else "dataset folder"
        parts.append(
            f"{role} from {what} `{name}` ({', '.join(filter(None, details))}{'; ' if any(details) else ''}"
            f"split `{source['split']}`: {splits})"
        )
    return f"Data: {'; '.join(parts)}." if parts else ""


def floor_definitions(metas: list[dict]) -> str:
    """The floor of each metric in the run (analysis/floor.FLOORS), and the row that holds it."""
    used = dict.fromkeys(m["task"]["metric"] for m in metas)
    return " ".join(f"Under `{metric}`, {floor.floor_text(metric)}." for metric in used) + (
        f" The row is `{floor.MAJORITY}` on a classification task, `{floor.ECHO}` on an open-ended one "
        "(a run stored before open-ended floors has none)."
    )


def _answers_text(rows: Sequence[RowLike]) -> str:
    """How the held-out answers were obtained: greedy decoding, or the likeliest label.

    The likeliest label is eval.heldout.mode: loglikelihood."""
    modes = {
        r.get("eval_mode") or "generate" for r in rows if r.get("kind") != floor.KIND and r.get("score") is not None
    }
    loglik = (
        "the likeliest label (each of the task's labels scored as the answer by the summed log-probabilities "
        "of its tokens; metric marked (loglik))"
    )
    if modes == {"loglikelihood"}:
        return loglik
    return "greedy decoding" + (f", or {loglik}" if "loglikelihood" in modes else "")


def preparation_lines(metas: list[dict]) -> list[str]:
    """What one-time work the driver did before the cells (pipeline.prepare), so that no row includes it."""
    steps = {(s["step"], s["seconds"]): s for m in metas for s in m.get("prepared") or []}
    if not steps:
        return []
    done = "; ".join(f"{step} ({figures.fmt_seconds(seconds)})" for step, seconds in steps)
    return [
        f"- **excluded, one-time preparation**: {done}, done before the first cell, so in no technique's wall, "
        "cost or peak mem (later runs on this machine read the cached result)."
    ]


def gpu_measurement_lines(meta: dict, rows: Sequence[RowLike]) -> list[str]:
    """How GPU memory and energy were read (harness/measure.py), where any row has those figures."""
    gpu = ("_reserved_peak_bytes", "_device_peak_bytes", "_energy_wh")
    if not any(key.endswith(gpu) and r.get(key) is not None for r in rows for key in r):
        return []
    price = meta.get("usd_per_kwh")
    priced = f", priced at ${price:.2f}/kWh as `energy_cost_usd`" if price is not None else ""
    return [
        "- **GPU memory and energy** (CUDA rows): **train mem** / **serve mem** lead with the CUDA allocator's "
        "peak (max_memory_allocated: the tensors the phase held, what `harness plan` estimates). Beside it, per "
        "phase in results.json: the allocator's reserved peak (`*_reserved_peak_bytes`: those tensors and the "
        "cache's free blocks), the device-level peak NVML sampled every 20 ms (`*_device_peak_bytes`: what "
        "nvidia-smi shows, the CUDA context and every process on the GPU included), and the energy the GPU drew, "
        f"from NVML's counter (`*_energy_wh`; `energy_wh` for the technique{priced})."
    ]


def measurement_section(metas: list[dict], rows: Sequence[RowLike]) -> str:
    meta = metas[0]
    methods = sorted({r["peak_memory_method"] for r in rows if r.get("peak_memory_method")})
    prices = ", ".join(f"{device}: ${price:.2f}/h" for device, price in meta.get("usd_per_hour", {}).items())
    loads = [m["model_load_seconds"] for m in metas if m.get("model_load_seconds") is not None]
    metrics = ", ".join(sorted({f"`{m['task']['metric']}` ({m['task']['name']})" for m in metas}))
    lines = [
        f"- **score**: the task's metric ({metrics}) on the held-out examples (all of them, or the recipe's "
        f"`eval.heldout.limit`), {_answers_text(rows)}, averaged over the run's seeds; **± seeds** is the standard "
        "deviation of the per-seed scores (shown for multi-seed runs). The interval is a 95% percentile bootstrap: "
        "over examples, and with several seeds over seeds and examples together (see vs best).",
        "- **vs best** (terminal: **sig**): each technique against the best-scoring one, paired on the same "
        "example under the same seed: the difference in mean per-example value (the score itself, except "
        "under macro-F1, where it is accuracy) with its 95% CI from a two-level paired bootstrap (each replicate "
        "draws seeds with replacement, then examples with replacement, the same examples for every seed), and "
        "the p of the same bootstrap (twice the share of replicates on the far side of 0), so p < "
        f"{decision.ALPHA} exactly when the interval excludes 0: a test that pooled the (seed, example) pairs "
        "would ignore how much seeds disagree. The p is Holm-adjusted over the table's comparisons, which can "
        "leave a difference whose interval just excludes 0 not significant, never the reverse. ≈: not "
        f"significantly different (adjusted p ≥ {decision.ALPHA}); ▼: significantly worse. "
        "**Bold**: the best figure in its column (the floor never sets it).",
        "- **macro-F1**: beside an accuracy score; answering the majority label every time keeps accuracy high "
        "and macro-F1 low.",
        "- **Floor**: what an answer that needs no model scores, as a row scored like a technique. "
        + floor_definitions(metas)
        + " A technique not significantly above it (the same paired test and interval, Holm-adjusted over the "
        "techniques; not under macro-F1) is flagged ⚠, named significantly below or not significantly different "
        "from it, and never recommended nor advised at a data size; when none is above it, there is no "
        f"recommendation. A technique with more than {decision.COLLAPSE_SHARE:.0%} of its answers on one label, "
        "in any one seed, is flagged ⚠ too (answers collapsed; the flag names the seeds unless all collapsed "
        "alike), as a warning; both are listed under the recommendation.",
        "- **Recommendation**: the cheapest technique significantly above the floor that is not significantly "
        f"worse than the best. Costs within {decision.COST_TOLERANCE:.0%} of the cheapest such technique count "
        "as equal (wall time, hence cost, varies between runs); the tie goes to lower peak memory, then higher "
        "score. With a `workload:` in the recipe, the cost compared is the cost at that many requests (see Cost "
        "at volume); without one, the run's cost, with the request volumes over which the pick is also the "
        "cheapest to own. Computed from these numbers, not written by hand.",
        "- **no label**: share of answers that named none of the task's labels (classification tasks).",
        f"- **train mem** / **serve mem**: {'; '.join(methods) or 'not measured'}. **train mem** is the "
        "training phase's peak (trained kinds): what a technique needs to be made. **serve mem** is the held-out "
        "phase's peak: what it needs to answer, the model as scored (merged adapters, a 4-bit base), measured "
        "after training's memory was handed back. `peak_memory_bytes` in results.csv, the plots and the gate "
        "is the highest of every phase, lm-eval's too. Process RSS counts everything the process holds (the "
        "Python runtime and libraries, ~0.5 GiB, and the base model shared by prompt-only techniques); memory "
        "is released between techniques and phases, but for isolated figures per kind use "
        "`bench/bench_train.py`, which runs each in a fresh process.",
        "- **wall**: the technique from start to finish (training, evaluation, lm-eval; prompt-only and RAG "
        "techniques share one base-model load"
        f"{f' ({max(loads):.1f}s at most)' if loads else ''}, counted in none).",
        *preparation_lines(metas),
        f"- **cost**: what this run spent on the technique: wall hours, less its lm-eval run (billed on its own "
        "line, `lm_eval_cost_usd`, to the technique that ran it), x the recipe's price per device-hour "
        f"({prices or 'none set'}). Not what the technique costs in production: see Cost at volume.",
        "- **ex/s**: held-out requests scored per second at the recipe's batch size (prompt processing and "
        "generation).",
        "- **Cost at volume**: training cost = training seconds x the price, paid once (a search's trials and a "
        "RAG index build are not in it); serving cost per request = evaluation seconds / examples at the "
        "recipe's batch size, plus retrieval per request, x the price (a technique priced by tokens costs its "
        "tokens); cost at V requests = training + V x serving. **Latency**: the first "
        "`eval.heldout.latency_samples` held-out prompts, each answered alone (batch size 1) with the same "
        "greedy settings; p50 and p95. **Tokens**: per request, the prompt tokens the model read (padding "
        "excluded) and the tokens it generated.",
    ]
    lines += gpu_measurement_lines(meta, rows)
    if any(r.get("kind") == "api" for r in rows):
        lines.append(
            "- **api rows** (a hosted model behind an OpenAI-compatible endpoint): **cost** is the tokens the "
            "endpoint reported (`usage`) x the technique's `usd_per_1k_tokens`, for every answer (those served "
            "from the response cache at their stored usage; `api_billed_usd` is what this run's requests cost), "
            "not device-hours; **peak mem** is not measured (the model runs elsewhere); **latency p50 / p95** is "
            "per request, over the requests this run sent (retries and backoff not included). The hosted "
            "model's size and hardware are unknown, so its cost is the endpoint's price, not a like-for-like "
            "compute figure."
        )
    if any(r.get("kind") == "api_finetune" for r in rows):
        lines.append(
            "- **api_finetune rows** (a provider's fine-tuning API): **training cost** is the tokens the job was "
            "billed for (`trained_tokens`) x the technique's `train_usd_per_1k_tokens`, paid once; **serving** is "
            "the fine-tuned model's tokens x its `usd_per_1k_tokens`, per request, as for api rows; **cost** adds "
            "the two. The provider's method (LoRA or full), hardware and training time are its own; its job's "
            "duration is `finetune_job_seconds`."
        )
    if any(r.get("retriever") for r in rows):
        lines.append(
            "- **recall**: retrieval recall@k, the share of examples' gold documents among the k retrieved passages "
            "(only where the task's data names them); **wrong: not retrieved / misread** splits the wrong answers "
            "into retrieval misses and reading misses. "
            "**index**: building (or loading from the cache) the corpus index."
        )
    if any(r.get("judge_model") for r in rows):
        lines.append(
            "- **judge**: an LLM judge (the recipe's `eval.judge`: a local model, greedy, or an OpenAI-compatible "
            "endpoint at temperature 0) reads each held-out question (the "
            "task's user text, without shots or passages), the reference answer, the answer and the task's rubric, "
            "and replies `Score: N` (1 to the rubric's scale) with a reason; the column is the mean of (N - 1) / "
            "(scale - 1) over the replies that carried a score. Under a 0/1 metric, agreement is the share of "
            'answers where "the judge passes it" (score ≥ 0.5) matches the metric, with Cohen\'s kappa; under a '
            "continuous one, Spearman's rank correlation with the metric's values. The judge's time, memory and "
            "cost (`judge_seconds`, `judge_peak_memory_bytes`, `judge_cost_usd`; its model load included) are "
            "measured apart from the technique's: not in wall, eval, peak mem, cost or the serving figures."
            + (
                " An endpoint judge's cost is its tokens at the endpoint's `usd_per_1k_tokens` (unknown without "
                "them), and its memory is not measured (the model runs elsewhere)."
                if any(r.get("judge_requests") is not None for r in rows)
                else ""
            )
        )
    if figures.lm_eval_keys(rows):
        lines.append(
            "- **lm-eval columns** (`task metric`): lm-eval's `simple_evaluate` on each technique's model in memory "
            "(LoRA/QLoRA with adapters, 4-bit where trained so), ± lm-eval's standard error. Prompt-only and RAG "
            "techniques read the same base model, so they share one lm-eval run. A drop after fine-tuning is "
            "what the technique forgot."
        )
    return "\n".join(lines)


def _wrong(predictions: list[dict], limit: int) -> list[dict]:
    """The answers to show: the first `limit` wrong ones under a 0/1 metric; under a continuous one
    (predictions carry `value`, nothing is simply wrong) the `limit` lowest-scoring, lowest first."""
    if any(p.get("value") is not None for p in predictions):
        return sorted((p for p in predictions if p["value"] < 1), key=lambda p: p["value"])[:limit]
    return [p for p in predictions if not p["correct"]][:limit]


def wrong_answers_section(store: RunStore, rows: Sequence[RowLike], limit: int) -> str:
    parts = []
    for row in rows:
        if row["kind"] == floor.KIND:
            continue  # the floor answers the same thing whatever the question: its misses say nothing
        wrong = _wrong(store.predictions(row["technique"]), limit)
        if not wrong:
            continue
        title = f"**{task_name(store)} / {row['technique']}**"
        headers = ["input", "expected", "answer"]
        cells = [[_clip(p["input"]), p["expected"], _clip(p["predicted"], 80) or "(empty)"] for p in wrong]
        if wrong[0].get("value") is not None:
            title += f" (lowest {row.get('metric') or 'score'} first)"
            headers.append(row.get("metric") or "score")
            cells = [c + [f"{p['value']:.3f}"] for c, p in zip(cells, wrong)]
        if any("recall" in p for p in wrong):  # RAG: was the answer's document in the prompt?
            headers.append("gold retrieved")
            cells = [c + [{None: "–", 1.0: "yes"}.get(p.get("recall"), "no")] for c, p in zip(cells, wrong)]
        parts.append(f"{title}\n\n{_table(headers, cells)}")
    return "\n\n".join(parts)


def render_markdown(stores: list[RunStore], folder: Path, report: sections.ReportView | None = None) -> str:
    """The report of one run (one store) or of a multi-task run (one store per task): its registered
    sections in order (report/sections.py); `report`: the view to render (default: made from the stores)."""
    load_plugins(stores[0].meta)
    return "\n\n".join(sections.render(report or view(stores, folder), "report")) + "\n"


def view(stores: list[RunStore], folder: Path) -> sections.ReportView:
    """What the sections read: each task's rows with verdicts (computed now, never stored) and predictions."""
    tasks = []
    for store in stores:
        predictions = store.finished_predictions()  # read once: the tests and the table both need them
        rows = decision.with_verdicts(store.answering_rows(), predictions)
        tasks.append(sections.TaskView(store, rows, predictions, folder))
    return sections.ReportView(tasks, folder)


def load_plugins(meta: dict) -> None:
    """The run's `plugins:` again, for the report sections they register (`harness report` reads no recipe).
    A results folder is data, so `harness report` imports them only with --import-plugins (docs/trust.md)."""
    refs = [ref for ref in meta.get("recipe", {}).get("plugins") or [] if isinstance(ref, str)]
    if refs and not plugins.importing():
        warnings.warn(
            f"the run's plugins ({', '.join(refs)}) are not imported, so the report sections they register are "
            "left out; `harness report --import-plugins` imports them (which runs their code)",
            stacklevel=2,
        )
        return
    for ref in refs:
        try:
            plugins.load(ref)
        except (ImportError, OSError) as exc:
            warnings.warn(f"plugin {ref} not loaded, its report sections are left out: {exc}", stacklevel=2)


# --- the built-in sections -----------------------------------------------------------------------


def title(report: sections.ReportView) -> str:
    meta, recipe = report.meta, report.recipe
    tasks = ", ".join(t.name for t in report.tasks)
    seeds = meta.get("seeds") or [meta.get("seed")]
    return (
        f"# {recipe['name']}: {recipe['model']['id']} on {tasks}\n\n"
        f"Run `{meta.get('run_id')}`, started {meta.get('created')} on {meta.get('device_name')}; "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}."
    )


def recommendation(report: sections.ReportView) -> str:
    parts = ["## Recommendation"]
    for task in report.tasks:
        text = recommendation_section(task.rows, task.predictions, decision.workload_volume(report.meta))
        # where train sizes were given: which technique at that size, by the recommendation's floor rule
        advice = study_sections.data_size_advice(
            task.store, not_above_floor=decision.not_above_floor(task.rows, task.predictions)
        )
        text += f"\n\n{advice}" if advice else ""
        parts.append(f"**{task.name}**: {text}" if report.many else text)
    return "\n\n".join(parts)


def results(report: sections.ReportView) -> str:
    link = "Every figure, interactive plots and each example's answers side by side: [REPORT.html](REPORT.html)."
    return "\n\n".join(["## Results", link, *(text for task in report.tasks for text in task_block(task))])


def cost_at_volume(report: sections.ReportView) -> str:
    workload = report.recipe.get("workload")
    texts = [
        (t, cost_at_volume_section(t.store, t.store.answering_rows(), report.folder, workload)) for t in report.tasks
    ]
    if not any(text for _, text in texts):
        return ""
    intro = (
        "Training once, then serving each request at the measured device time (the recipe's batch "
        "size; for a load-tested technique, its served throughput: see Serving under load) and the "
        "recipe's price per device-hour; see how each figure was measured."
    )
    # the task named in bold, as in the recommendation: the ### headings are the results' per task
    parts = [f"**{t.name}**\n\n{text}" if report.many else text for t, text in texts if text]
    return "\n\n".join(["## Cost at volume", intro, *parts])


def measurement(report: sections.ReportView) -> str:
    rows = [r for store in report.stores for r in store.ordered_rows()]
    return "## How each figure was measured\n\n" + measurement_section([s.meta for s in report.stores], rows)


def failures(report: sections.ReportView) -> str:
    not_ok = [(t.name, r) for t in report.tasks for r in t.store.ordered_rows() if r["status"] != "ok"]
    if not not_ok:
        return ""
    lines = [
        f"- **{r['technique']}**{f' on {task}' if report.many else ''} {r['status']}: {_cell(r['error'] or '')}"
        for task, r in not_ok
    ]
    return "## Failures and skipped techniques\n\n" + "\n".join(lines)


def lm_eval_errors(report: sections.ReportView) -> str:
    rows = [r for store in report.stores for r in store.ordered_rows()]
    errors = {task: error for r in rows for task, error in (r.get("lm_eval_errors") or {}).items()}
    if not errors:
        return ""
    return "## lm-eval tasks that could not run\n\n" + "\n".join(
        f"- **{task}**: {_cell(error)}" for task, error in errors.items()
    )


def _answers_limit(report: sections.ReportView) -> int:
    return report.recipe.get("eval", {}).get("heldout", {}).get("wrong_examples", 5)


def wrong_answers(report: sections.ReportView) -> str:
    limit = _answers_limit(report)
    texts = (wrong_answers_section(s, s.ordered_rows(), limit) for s in report.stores)
    wrong = "\n\n".join(filter(None, texts))
    return f"## Wrong answers (up to {limit} per technique)\n\n{wrong}" if limit and wrong else ""


def judge_lowest(report: sections.ReportView) -> str:
    limit = _answers_limit(report)
    lowest = "\n\n".join(filter(None, (judge_lowest_section(s, s.ordered_rows(), limit) for s in report.stores)))
    if not (limit and lowest):
        return ""
    return f"## The judge's lowest-scored answers (up to {limit} per technique)\n\n{lowest}"


def recipe_yaml(report: sections.ReportView) -> str:
    return "## Recipe\n\n```yaml\n" + yaml.safe_dump(report.recipe, sort_keys=False).strip() + "\n```"


def environment(report: sections.ReportView) -> str:
    meta = report.meta
    versions = ", ".join(f"{name} {version}" for name, version in meta.get("versions", {}).items() if version)
    return (
        f"## Environment\n\npython {meta.get('python')} on {meta.get('platform')}; "
        f"git commit `{meta.get('git_commit')}`\n\n{versions}"
    )


def per_label(task: sections.TaskView) -> str:
    labels, seeds = task.store.meta["task"].get("labels"), len(task.store.meta.get("seeds") or [0])
    return confusion_section(
        task.rows, task.predictions, labels, seeds, task.folder / "plots", f"{file_name(task.name)}-"
    )


Section = sections.Section
for _section in (
    Section("title", title),
    Section("recommendation", recommendation),
    Section("results", results),
    Section("cost at volume", cost_at_volume),
    Section("serving", serving_report.serving_section),
    Section("measurement", measurement),
    Section("failures", failures),
    Section("lm-eval errors", lm_eval_errors),
    Section("wrong answers", wrong_answers),
    Section("judge lowest", judge_lowest),
    Section("recipe", recipe_yaml),
    Section("environment", environment),
    # a task's block under Results, after its heading
    Section("results table", headline_and_full_tables, "task"),
    Section("floor", lambda task: floor_note(task.rows, task.predictions), "task"),
    Section("leakage", lambda task: leakage_note(task.store.meta), "task"),
    Section("forgetting", lambda task: forgetting_section(task.rows), "task"),
    Section("judge", lambda task: judge_note(task.store, task.rows), "task"),
    Section("reward models", lambda task: reward_models_section(task.store, task.rows), "task"),
    Section("plots", lambda task: plots_section(task.store, task.rows, task.folder), "task"),
    Section("per label", per_label, "task"),
    Section("seeds", lambda task: study_sections.seeds_section(task.store), "task"),
    Section("learning curves", lambda task: study_sections.learning_curve_section(task.store, task.folder), "task"),
    Section("search", lambda task: study_sections.search_section(task.store, task.folder), "task"),
):
    sections.register(_section)


def write_report(stores: list[RunStore], folder: Path | None = None, report: sections.ReportView | None = None) -> Path:
    """Write REPORT.md, its plots and the results.csv/parquet exports into folder (default: the run's
    report folder, see results.report_folder)."""
    folder = Path(folder) if folder is not None else report_folder(stores)
    path = folder / "REPORT.md"
    write_atomic(path, render_markdown(stores, folder, report))
    write_exports(stores, folder)
    return path
