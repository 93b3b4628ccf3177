"""REPORT.md sections for a study (a run whose cells span search trials, seeds and training-set sizes):
the hyperparameter search, the score per seed, and learning curves against the techniques that do not
train. Pure functions of a RunStore; each returns "" (or an empty result) when the run has no such
cells, so the report of a plain run is unchanged. Headings are level 4: they sit under a task's ###.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from harness import kinds
from harness.analysis import decision
from harness.analysis.floor import KIND as FLOOR_KIND
from harness.analysis.search_range import at_edge, log_scale, ordered
from harness.planning import chosen_trial, mean_std
from harness.report import plots, text
from harness.report.columns import fmt_number, fmt_seconds
from harness.results import RunStore, task_name
from harness.rows import Row, RowLike

OBJECTIVES = {  # objective: (words, which end is best)
    "validation_score": ("validation score", "higher is better"),
    "validation_loss": ("validation loss", "lower is better"),
    "validation_macro_f1": ("validation macro-F1", "higher is better"),
}


# --- shared helpers ------------------------------------------------------------------------------


def _techniques(store: RunStore) -> list[Row]:
    return store.meta.get("recipe", {}).get("techniques", [])


def _by_recipe_order(store: RunStore, names) -> list[str]:
    """Distinct names in the recipe's technique order (names the recipe lacks, e.g. a baseline, last)."""
    order = [t.get("name") for t in _techniques(store)]
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


def _value(value) -> str:
    """A hyperparameter value: floats in 3 significant digits (learning rates read 0.0003, not 0.00030000)."""
    return format(value, ".3g") if isinstance(value, float) else str(value)


def _plot_link(title: str, name: str) -> str:
    return f"![{title}]({name})"


def _metric(store: RunStore) -> str:
    return store.meta.get("task", {}).get("metric") or "score"


# --- search --------------------------------------------------------------------------------------


def _objective(spec: RowLike) -> str:
    return (spec.get("search") or {}).get("objective") or "validation_score"


def _objective_text(objective: str) -> str:
    words, direction = OBJECTIVES[objective]
    return f"{words}, {direction}"


def _trials(store: RunStore) -> dict[str, list[Row]]:
    """technique -> its search-trial cells, by trial number, in recipe order."""
    trials = [c for c in store.cells if c.get("trial") is not None]
    return {
        name: sorted((c for c in trials if c["technique"] == name), key=lambda c: c["trial"])
        for name in _by_recipe_order(store, (c["technique"] for c in trials))
    }


def _budget_sentence(store: RunStore, tuned: Sequence[RowLike]) -> str:
    recipe = store.meta.get("recipe", {})
    budgets = {t["name"]: (t.get("search") or {}).get("trials") or recipe.get("search_budget") for t in tuned}
    objectives = {_objective(t) for t in tuned}
    objective = (
        _objective_text(objectives.pop())
        if len(objectives) == 1
        else "; ".join(f"{t['name']}: {_objective_text(_objective(t))}" for t in tuned)
    )
    seeds = recipe.get("seeds") or []
    per_seed = f" and seed ({len(seeds)} seeds)" if len(seeds) > 1 else ""
    if len(set(budgets.values())) == 1:
        budget = f"Every tuned technique got {next(iter(budgets.values()))} trials"
    else:  # config.py forbids this for recipes; an edited or older results.json may still hold it
        each = ", ".join(f"{name}: {trials}" for name, trials in budgets.items())
        budget = f"Tuned techniques got unequal budgets ({each} trials)"
    return (
        f"{budget} on the validation split (objective: {objective}); "
        f"the test split was scored once per chosen configuration{per_seed}."
    )


def _untuned_warning(store: RunStore, tuned: Sequence[RowLike]) -> str:
    """Name the techniques that ran untuned beside tuned ones: their budgets differ, and the table must say so."""
    names = {t["name"] for t in tuned}
    untuned = [t["name"] for t in _techniques(store) if t["name"] not in names and t.get("kind") != "baseline"]
    if not untuned:
        return ""
    return (
        f"⚠ Not tuned: {', '.join(untuned)} ran with the recipe's settings (0 trials), so they had a "
        "smaller budget than the tuned techniques."
    )


def _summary_table(trials: dict[str, list[Row]], objectives: dict[str, str], chosen: dict[str, RowLike | None]) -> str:
    headers = [
        "technique",
        "objective",
        "trials run",
        "failed",
        "chosen values",
        "best objective",
        "search time",
        "search cost",
    ]
    rows = []
    for name, cells in trials.items():
        pick = chosen[name]
        values = ", ".join(f"{k}={_value(v)}" for k, v in (pick or {}).get("params", {}).items()) or "–"
        rows.append(
            [
                name,
                _objective_text(objectives[name]),
                str(len(cells)),
                str(sum(c["status"] != "ok" for c in cells)),
                values,
                fmt_number(pick and pick["objective"], ".4f"),
                fmt_seconds(sum(c.get("wall_seconds") or 0 for c in cells)),
                f"${sum(c.get('cost_usd') or 0 for c in cells):.4f}",
            ]
        )
    return text.table(headers, rows, [False, False, True, True, False, True, True, True])


def _trials_table(trials: dict[str, list[Row]], chosen: dict[str, RowLike | None]) -> str:
    """Every trial, one column per searched setting (union over techniques; – where a technique has none)."""
    keys = list(dict.fromkeys(k for cells in trials.values() for c in cells for k in c.get("params", {})))
    rows = []
    for name, cells in trials.items():
        for c in cells:
            status = (f"pruned at step {c.get('train_steps')}" if c.get("pruned") else c["status"]) + (
                f": {text.clip(c['error'], 80)}" if c.get("error") else ""
            )
            # a pruned trial's loss is from the step it stopped at: not comparable with finished trials'
            objective = "–" if c.get("pruned") else fmt_number(c.get("objective"), ".4f")
            partial = fmt_number(c.get("objective"), ".4f") if c.get("pruned") else "–"
            rows.append(
                [name, f"{c['trial']}{' (chosen)' if c is chosen[name] else ''}"]
                + [_value(c["params"][k]) if k in c.get("params", {}) else "–" for k in keys]
                + [objective, partial, status]
            )
    return text.table(
        ["technique", "trial", *keys, "objective", "when pruned (partial)", "status"],
        rows,
        [False, True] + [True] * len(keys) + [True, True, False],
    )


def _edge_warnings(specs: Mapping[str, RowLike], chosen: dict[str, RowLike | None]) -> str:
    """⚠ lines for chosen values at an edge of their searched range (analysis/search_range.py)."""
    lines = [
        f"⚠ {name}: {note}."
        for name, pick in chosen.items()
        if pick is not None
        for note in at_edge((specs.get(name, {}).get("search") or {}).get("space") or {}, pick.get("params", {}))
    ]
    return "\n\n".join(lines)


def search_points(trials: dict[str, list[Row]], specs: Mapping[str, RowLike]) -> dict[str, dict]:
    """What the search plot draws per technique: x is the searched value when one numeric setting was
    searched (log scale for log_uniform), else the trial number; finished trials apart from pruned ones."""
    out = {}
    for name, cells in trials.items():
        space = (specs.get(name, {}).get("search") or {}).get("space") or {}
        ranged = [k for k, axis in space.items() if ordered(axis)]
        key = ranged[0] if len(space) == 1 and ranged else "trial"
        log = key != "trial" and log_scale(space[key])
        valued = [c for c in cells if c["status"] == "ok" and c.get("objective") is not None]
        out[name] = {
            "x_label": key,
            "log": log,
            "finished": [(_x(c, key), c["objective"]) for c in valued if not c.get("pruned")],
            "pruned": [(_x(c, key), c["objective"]) for c in valued if c.get("pruned")],
        }
    return out


def _x(cell: RowLike, key: str) -> float:
    """A trial's place on the search plot's x axis: its searched value, or its number."""
    return cell["trial"] if key == "trial" else cell["params"][key]


def search_section(store: RunStore, folder: Path) -> str:
    """The search's budget, a warning naming untuned techniques, a summary and a full table of trials, and
    a plot of objective vs trial (written to folder/plots/<task>-search.png); "" when nothing was searched."""
    trials = _trials(store)
    if not trials:
        return ""
    specs = {t["name"]: t for t in _techniques(store)}
    tuned = [specs.get(name, {"name": name}) for name in trials]
    objectives = {t["name"]: _objective(t) for t in tuned}
    chosen = {name: chosen_trial(cells, objectives[name]) for name, cells in trials.items()}
    parts = [
        "#### Hyperparameter search",
        _budget_sentence(store, tuned),
        _untuned_warning(store, tuned),
        _summary_table(trials, objectives, chosen),
        _edge_warnings(specs, chosen),
        "Every trial:",
        _trials_table(trials, chosen),
    ]
    name, title = plots.plot_path(task_name(store), "search.png"), f"{task_name(store)}: search trials"
    if plots.plot_search(*_plot_data(trials, specs, objectives, chosen), title, folder / name):
        parts.append(_plot_link(title, name))
    return "\n\n".join(p for p in parts if p)


def search_plot(store: RunStore) -> tuple[dict[str, dict], dict[str, float], dict[str, str]]:
    """What a search plot draws (the PNG's and REPORT.html's): per searched technique its points
    (search_points), the x of its chosen trial, and its objective's axis label; empty without a search."""
    trials = _trials(store)
    specs = {t["name"]: t for t in _techniques(store)}
    objectives = {name: _objective(specs.get(name, {"name": name})) for name in trials}
    chosen = {name: chosen_trial(cells, objectives[name]) for name, cells in trials.items()}
    return _plot_data(trials, specs, objectives, chosen)


def _plot_data(
    trials: dict[str, list[Row]],
    specs: Mapping[str, RowLike],
    objectives: dict[str, str],
    chosen: dict[str, RowLike | None],
) -> tuple[dict[str, dict], dict[str, float], dict[str, str]]:
    points = search_points(trials, specs)
    marked = {t: _x(c, points[t]["x_label"]) for t, c in chosen.items() if c is not None}
    return points, marked, {t: _objective_text(o) for t, o in objectives.items()}


# --- seeds ---------------------------------------------------------------------------------------


def seeds_section(store: RunStore) -> str:
    """Per-seed test scores, technique x seed, then mean ± std; "" unless the recipe ran several seeds."""
    seeds = store.meta.get("recipe", {}).get("seeds") or []
    rows = [r for r in store.ordered_rows() if r["status"] == "ok" and r.get("seed_scores")]
    if len(seeds) < 2 or not rows:
        return ""
    table = []
    for row in rows:
        mean, std = mean_std(row["seed_scores"])
        scores = [fmt_number(s, ".3f") for s in row["seed_scores"]]
        table.append([row["technique"], *scores, f"{mean:.3f} ± {std:.3f}"])
    lines = [
        "#### Scores per seed",
        f"The chosen configuration of each technique, scored on the test split ({_metric(store)}) once per seed; "
        "± is the standard deviation over seeds.",
        text.table(
            ["technique", *(f"seed {s}" for s in seeds), "mean ± std"], table, [False] + [True] * (len(seeds) + 1)
        ),
    ]
    invariant = [r["technique"] for r in rows if r.get("seed_invariant")]
    if invariant:
        lines.append(f"Seed-independent (one run serves every seed): {', '.join(invariant)}.")
    return "\n\n".join(lines)


# --- learning curves -----------------------------------------------------------------------------


def learning_curves(store: RunStore) -> dict:
    """From the finished test cells: {"curves": {trained technique: [(train_examples, mean score over seeds,
    std, n seeds), ...] by size}, "levels": {non-training technique: (mean score, ci_low, ci_high)}}.
    Levels take the merged row's 95% CI (over examples, and seeds where several), falling back to the cell's."""
    cells = [c for c in store.cells if c.get("split") == "test" and c["status"] == "ok" and c.get("score") is not None]
    curves, levels = {}, {}
    for name in _by_recipe_order(store, (c["technique"] for c in cells)):
        mine = [c for c in cells if c["technique"] == name]
        if mine[0]["kind"] == FLOOR_KIND or kinds.reads_base_model(mine[0]["kind"]):  # training-free
            row = next((r for r in store.rows if r["technique"] == name and r["status"] == "ok"), mine[0])
            levels[name] = (mean_std([c["score"] for c in mine])[0], row.get("ci_low"), row.get("ci_high"))
            continue
        sizes = sorted({c["train_examples"] for c in mine if c.get("train_examples") is not None})
        curves[name] = [_point(n, [c["score"] for c in mine if c.get("train_examples") == n]) for n in sizes]
    return {"curves": curves, "levels": levels}


def _point(n: int, scores: list[float]) -> tuple[int, float, float, int]:
    return (n, *mean_std(scores), len(scores))


def _has_curve(curves: dict) -> bool:
    """A curve needs two training-set sizes; one size per technique is a plain (or seeds-only) study."""
    return any(len(points) >= 2 for points in curves.values())


def _crossover(name: str, points: list[tuple], reference: tuple[str, float]) -> str:
    """Where the trained technique's mean passes the best non-training score and stays above it."""
    ref_name, ref_score = reference
    above = [p[1] > ref_score for p in points]
    largest = points[-1][0]
    if not any(above):
        return f"{name} does not reach {ref_name} ({ref_score:.3f}) with up to {largest} training examples."
    if not above[-1]:
        sizes = ", ".join(str(p[0]) for p, a in zip(points, above) if a)
        return (
            f"{name} beats {ref_name} ({ref_score:.3f}) at {sizes} training examples but not at the largest "
            f"size tried ({largest})."
        )
    first = next(i for i in range(len(points)) if all(above[i:]))
    n, mean, std, seeds = points[first]
    spread = f" ± {std:.3f} over {seeds} seeds" if seeds > 1 else ""
    return f"{name} passes {ref_name} ({ref_score:.3f}) from about {n} training examples ({mean:.3f}{spread})."


def _best_level(levels: dict) -> tuple[str, float] | None:
    if not levels:
        return None
    name = max(levels, key=lambda n: levels[n][0])
    return name, levels[name][0]


def learning_curve_section(store: RunStore, folder: Path) -> str:
    """A plot of score vs training examples (folder/plots/<task>-learning-curve.png) and one sentence per
    trained technique on where it overtakes the best non-training technique; "" without a curve."""
    data = learning_curves(store)
    curves, levels = data["curves"], data["levels"]
    if not _has_curve(curves):
        return ""
    parts = [
        "#### Learning curves",
        f"Test score ({_metric(store)}) against the number of training examples; each point is the mean over "
        "seeds (error bars: standard deviation). Techniques that do not train are horizontal lines, shaded over "
        "their 95% CI.",
    ]
    reference = _best_level(levels)
    if reference:
        parts.append("\n".join(f"- {_crossover(name, points, reference)}" for name, points in curves.items() if points))
    name, title = plots.plot_path(task_name(store), "learning-curve.png"), f"{task_name(store)}: learning curves"
    if plots.plot_learning_curve(curves, levels, f"score ({_metric(store)})", title, folder / name):
        parts.append(_plot_link(title, name))
    return "\n\n".join(parts)


def data_size_advice(
    store: RunStore, n_available: int | None = None, not_above_floor: Collection[str] | None = None
) -> str | None:
    """One line for the recommendation: which technique scores best (mean test score) with n_available
    training examples (default: the largest size tried). A trained technique counts at the largest size
    tried that does not exceed n_available; the techniques that do not train count at any size. None
    without a learning curve.

    It obeys the recommendation's floor rule: the floor row is never advised, nor a technique not
    significantly above it (`not_above_floor`, by default decision.not_above_floor on the store). That
    test is on the predictions stored for the technique's row (its largest size); at a smaller size, where
    none are stored, a point is also dropped unless its mean is above the floor's score (without that it
    cannot be significantly above). When nothing is left, the line says so instead of naming one."""
    data = learning_curves(store)
    curves, levels = data["curves"], data["levels"]
    if not _has_curve(curves):
        return None
    floor_row = next((r for r in store.rows if r["kind"] == FLOOR_KIND and r.get("score") is not None), None)
    if not_above_floor is None:
        not_above_floor = decision.not_above_floor(store.rows, store.finished_predictions())
    excluded = set(not_above_floor) | {name for name in levels if _is_floor(store, name)}
    floor_score = floor_row["score"] if floor_row is not None else float("-inf")
    tested_size = {r["technique"]: r.get("train_examples") for r in store.rows}
    sizes = sorted({p[0] for points in curves.values() for p in points})
    n = sizes[-1] if n_available is None else n_available
    options = {name: (score, "without training") for name, (score, _, _) in levels.items() if name not in excluded}
    for name, points in curves.items():
        usable = [p for p in points if p[0] <= n]  # never credit a technique with more data than the user has
        if usable and name not in excluded and (usable[-1][0] == tested_size.get(name) or usable[-1][1] > floor_score):
            options[name] = (usable[-1][1], f"with {usable[-1][0]} examples")
    few = "" if n >= sizes[0] else f" (below the smallest size tried, {sizes[0]})"
    if not options:
        if floor_row is None:
            return None
        return f"With {n} training examples{few}, no technique is advised: {decision.nothing_above_floor(floor_row)}."
    ranked = sorted(options, key=lambda name: -options[name][0])

    def say(name: str) -> str:
        return f"{options[name][0]:.3f} {options[name][1]}"

    runner_up = f" (next: {ranked[1]}, {say(ranked[1])})" if len(ranked) > 1 else ""
    return f"With {n} training examples{few}, use {ranked[0]}: mean test score {say(ranked[0])}{runner_up}."


def _is_floor(store: RunStore, name: str) -> bool:
    return any(r["technique"] == name and r["kind"] == FLOOR_KIND for r in store.rows)
