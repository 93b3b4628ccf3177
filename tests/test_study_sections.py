"""The study sections of REPORT.md (search, seeds, learning curves) from hand-built stored cells; no model."""

import pytest

from harness.report import plots, study_sections
from harness.results import RunStore
from harness.rows import make_row

SEEDS = [0, 1, 2]
SIZES = [64, 256, 1024]  # the recipe's train_sizes [64, 256, "all"]; "all" is 1024 examples
SEARCH = {"trials": None, "space": {"train.learning_rate": {"log_uniform": [1e-5, 1e-3]}, "lora.rank": [8, 16]}}


def cell(technique, kind, seed=0, split="test", score=None, status="ok", **values) -> dict:
    """A cell row as harness.planning stores it: a technique row plus where the cell sits in the matrix."""
    trial, size = values.pop("trial", None), values.pop("train_size", None)
    name = f"{technique}.seed-{seed}" + (f".n-{size}" if size else "")
    name = f"{technique}.trial-{trial}" if trial is not None else name
    row = make_row(
        technique,
        kind,
        status,
        metric="accuracy",
        score=score,
        n_eval=100,
        ci_low=None if score is None else score - 0.05,
        ci_high=None if score is None else score + 0.05,
        **values,
    )
    return row | {
        "cell": name,
        "seed": seed,
        "split": split,
        "trial": trial,
        "params": values.get("params", {}),
        "train_size": size,
        "train_examples": values.get("train_examples"),
        "objective": values.get("objective"),
    }


def trials(technique, objectives, params, failed=()) -> list[dict]:
    return [
        cell(
            technique,
            technique,
            split="validation",
            trial=i,
            params=p,
            wall_seconds=30.0,
            cost_usd=0.001,
            status="failed" if i in failed else "ok",
            error="CUDA out of memory" if i in failed else None,
            objective=None if i in failed else o,
            score=None if i in failed else 0.5,
        )
        for i, (o, p) in enumerate(zip(objectives, params))
    ]


def curve(technique, kind, means) -> list[dict]:
    """Test cells at every size and seed: mean `means[i]` at SIZES[i], seeds spread by ±0.01."""
    return [
        cell(
            technique,
            kind,
            seed=s,
            score=mean + (s - 1) * 0.01,
            train_examples=n,
            train_size=None if n == SIZES[-1] else n,
        )
        for n, mean in zip(SIZES, means)
        for s in SEEDS
    ]


def merged(technique, kind, cells, **values) -> dict:
    """The technique's row: its main (all-data) test cells merged over seeds, as harness.planning.merge does."""
    main = [c for c in cells if c["technique"] == technique and c["split"] == "test" and c["train_size"] is None]
    scores = [main[0]["score"]] * len(SEEDS) if len(main) == 1 else [c["score"] for c in main]
    mean = sum(scores) / len(scores)
    return make_row(
        technique,
        kind,
        "ok",
        metric="accuracy",
        score=mean,
        ci_low=mean - 0.06,
        ci_high=mean + 0.06,
        seed_scores=scores,
        n_seeds=len(SEEDS),
        seed_invariant=len(main) == 1,
        **values,
    )


@pytest.fixture
def study_store(tmp_path) -> RunStore:
    lr = [1e-4, 3e-4, 1e-3, 3e-5]
    cells = (
        trials(
            "lora",
            [0.55, 0.68, None, 0.60],
            [{"train.learning_rate": v, "lora.rank": r} for v, r in zip(lr, [8, 16, 16, 8])],
            failed={2},
        )
        + trials("qlora", [1.40, 1.10, 1.25, 1.60], [{"train.learning_rate": v} for v in lr])
        + [cell("zero-shot", "prompt", score=0.30), cell("majority", "baseline", score=0.25)]
        + [cell("few-shot", "prompt", seed=s, score=0.44 + 0.01 * s) for s in SEEDS]
        + [cell("rag", "rag", seed=s, score=0.60 + 0.01 * s) for s in SEEDS]
        + curve("lora", "lora", [0.50, 0.65, 0.72])  # passes rag (0.61) from 256 on
        + curve("full", "full", [0.30, 0.45, 0.55])  # never reaches rag
        + curve("qlora", "qlora", [0.50, 0.62, 0.60])  # above rag at 256 only
    )
    kinds = {
        "zero-shot": "prompt",
        "few-shot": "prompt",
        "rag": "rag",
        "full": "full",
        "lora": "lora",
        "qlora": "qlora",
    }
    techniques = [{"name": n, "kind": k, "search": None} for n, k in kinds.items()]
    techniques[4]["search"] = SEARCH | {"objective": "validation_score"}
    techniques[5]["search"] = SEARCH | {"objective": "validation_loss"}
    recipe = {
        "name": "study",
        "model": {"id": "m"},
        "seeds": SEEDS,
        "search_budget": 4,
        "train_sizes": [64, 256, "all"],
        "techniques": techniques,
    }
    rows = [merged(n, k, cells) for n, k in kinds.items()] + [merged("majority", "baseline", cells)]
    meta = {"recipe": recipe, "task": {"name": "t", "metric": "accuracy"}}
    return RunStore(tmp_path, meta, rows, cells)


def table_rows(text: str, first: str) -> list[list[str]]:
    """The cells of the markdown table rows whose first cell is `first`."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return [r for r in rows if r[0] == first]


def test_search_section_states_the_budget_and_warns_about_untuned_techniques(study_store, tmp_path):
    text = study_sections.search_section(study_store, tmp_path)
    assert (
        "Every tuned technique got 4 trials on the validation split (objective: lora: validation score, higher is "
        "better; qlora: validation loss, lower is better); the test split was scored once per chosen "
        "configuration and seed (3 seeds)."
    ) in text
    assert "⚠ Not tuned: zero-shot, few-shot, rag, full ran with the recipe's settings" in text
    assert "majority" not in text  # the floor row has nothing to tune


def test_search_section_summarises_each_search_and_lists_every_trial(study_store, tmp_path):
    text = study_sections.search_section(study_store, tmp_path)
    summary = {r[0]: r for r in table_rows(text, "lora") + table_rows(text, "qlora") if len(r) == 8}
    assert summary["lora"][2:6] == ["4", "1", "train.learning_rate=0.0003, lora.rank=16", "0.6800"]
    assert summary["qlora"][4:6] == ["train.learning_rate=0.0003", "1.1000"]  # lowest loss wins
    assert summary["lora"][6:] == ["120.0s", "$0.0040"]
    trial_rows = [r for r in table_rows(text, "lora") + table_rows(text, "qlora") if len(r) == 7]
    assert [(r[0], r[1]) for r in trial_rows] == [
        ("lora", "0"),
        ("lora", "1 (chosen)"),
        ("lora", "2"),
        ("lora", "3"),
        ("qlora", "0"),
        ("qlora", "1 (chosen)"),
        ("qlora", "2"),
        ("qlora", "3"),
    ]
    assert trial_rows[2][2:] == ["0.001", "16", "–", "–", "failed: CUDA out of memory"]
    assert trial_rows[4][2:4] == ["0.0001", "–"]  # qlora did not search the rank


def test_a_chosen_value_at_the_edge_is_flagged_and_a_pruned_loss_stays_apart(study_store, tmp_path):
    qlora = [c for c in study_store.cells if c["technique"] == "qlora" and c["trial"] is not None]
    qlora[2]["objective"] = 1.0  # lr 1e-3, the top of [1e-5, 1e-3], now the lowest finished loss
    qlora[3].update(objective=0.9, pruned=True, train_steps=5)  # lower still, but a partial loss
    text = study_sections.search_section(study_store, tmp_path)
    assert (
        "⚠ qlora: train.learning_rate=0.001 is at the top of the searched range [1e-05, 0.001]: the best value "
        "may lie beyond it; widen the range that way."
    ) in text
    assert "⚠ lora:" not in text  # its chosen 3e-4 lies inside
    pruned = [r for r in table_rows(text, "qlora") if len(r) == 7][3]
    assert pruned[4:] == ["–", "0.9000", "pruned at step 5"]  # objective, partial, status
    one_axis = {"space": {"train.learning_rate": SEARCH["space"]["train.learning_rate"]}}
    points = study_sections.search_points(study_sections._trials(study_store), {"qlora": {"search": one_axis}})
    assert points["qlora"]["x_label"] == "train.learning_rate" and points["qlora"]["log"]  # x: the value, log
    assert points["lora"]["x_label"] == "trial"  # several settings searched: x is the trial number
    assert points["qlora"]["pruned"] == [(3e-5, 0.9)] and (3e-5, 0.9) not in points["qlora"]["finished"]


def test_search_plot_is_written_and_linked_relative_to_the_report(study_store, tmp_path):
    text = study_sections.search_section(study_store, tmp_path)
    assert "![t: search trials](plots/t-search.png)" in text
    assert (tmp_path / "plots/t-search.png").read_bytes().startswith(b"\x89PNG")


def test_seeds_section_has_a_score_per_seed_then_mean_and_std(study_store):
    text = study_sections.seeds_section(study_store)
    assert "| technique | seed 0 | seed 1 | seed 2 | mean ± std |" in text
    assert table_rows(text, "few-shot") == [["few-shot", "0.440", "0.450", "0.460", "0.450 ± 0.010"]]
    assert table_rows(text, "lora") == [["lora", "0.710", "0.720", "0.730", "0.720 ± 0.010"]]
    assert table_rows(text, "zero-shot") == [["zero-shot", "0.300", "0.300", "0.300", "0.300 ± 0.000"]]
    assert "Seed-independent (one run serves every seed): zero-shot, majority." in text


def test_learning_curves_average_seeds_per_size(study_store):
    data = study_sections.learning_curves(study_store)
    assert list(data["curves"]) == ["full", "lora", "qlora"]
    assert [p[0] for p in data["curves"]["lora"]] == SIZES
    n, mean, std, seeds = data["curves"]["lora"][1]
    assert (n, seeds) == (256, 3) and mean == pytest.approx(0.65) and std == pytest.approx(0.01)
    assert set(data["levels"]) == {"zero-shot", "few-shot", "rag", "majority"}
    assert data["levels"]["rag"] == pytest.approx((0.61, 0.55, 0.67))  # the merged row's CI over seeds


def test_learning_curve_section_says_where_each_trained_technique_overtakes(study_store, tmp_path):
    text = study_sections.learning_curve_section(study_store, tmp_path)
    assert "lora passes rag (0.610) from about 256 training examples (0.650 ± 0.010 over 3 seeds)." in text
    assert "full does not reach rag (0.610) with up to 1024 training examples." in text
    assert "qlora beats rag (0.610) at 256 training examples but not at the largest size tried (1024)." in text
    assert "![t: learning curves](plots/t-learning-curve.png)" in text
    assert (tmp_path / "plots/t-learning-curve.png").read_bytes().startswith(b"\x89PNG")


def test_learning_curve_ignores_failed_and_validation_cells(study_store, tmp_path):
    study_store.cells.append(cell("full", "full", score=0.99, status="failed", train_examples=2048))
    study_store.cells.append(cell("full", "full", split="validation", score=0.99, train_examples=4096, trial=9))
    assert [p[0] for p in study_sections.learning_curves(study_store)["curves"]["full"]] == SIZES


def test_data_size_advice_picks_by_the_users_data_size(study_store):
    assert study_sections.data_size_advice(study_store) == (
        "With 1024 training examples, use lora: mean test score 0.720 with 1024 examples "
        "(next: rag, 0.610 without training)."
    )
    assert study_sections.data_size_advice(study_store, 100).startswith("With 100 training examples, use rag: ")
    assert study_sections.data_size_advice(study_store, 32).startswith(
        "With 32 training examples (below the smallest size tried, 64), use rag"
    )


def test_plain_run_gets_no_study_sections(tmp_path):
    meta = {
        "recipe": {"name": "plain", "seed": 0, "techniques": [{"name": "a", "kind": "prompt"}]},
        "task": {"name": "t", "metric": "accuracy"},
    }
    store = RunStore(tmp_path, meta, [make_row("a", "prompt", "ok", score=0.5, ci_low=0.4, ci_high=0.6)])
    assert study_sections.search_section(store, tmp_path) == ""
    assert study_sections.seeds_section(store) == ""
    assert study_sections.learning_curve_section(store, tmp_path) == ""
    assert study_sections.learning_curves(store) == {"curves": {}, "levels": {}}
    assert study_sections.data_size_advice(store) is None
    assert not (tmp_path / "plots").exists()


def test_seeds_only_study_has_no_search_or_curve(study_store, tmp_path):
    study_store.cells = [c for c in study_store.cells if c["trial"] is None and c["train_size"] is None]
    assert study_sections.search_section(study_store, tmp_path) == ""
    assert study_sections.learning_curve_section(study_store, tmp_path) == ""  # one size per technique: no curve
    assert study_sections.seeds_section(study_store) != ""


def test_plots_return_none_when_there_is_nothing_to_draw(tmp_path):
    empty = {"x_label": "trial", "log": False, "finished": [], "pruned": []}
    assert plots.plot_search({"lora": empty}, {}, {"lora": "validation score"}, "x", tmp_path / "s.png") is None
    assert plots.plot_learning_curve({}, {"rag": (0.5, 0.4, 0.6)}, "score", "x", tmp_path / "c.png") is None
    assert not list(tmp_path.iterdir())


def test_search_plot_splits_score_and_loss_into_panels(tmp_path):
    path = plots.plot_search(
        {
            "a": {"x_label": "trial", "log": False, "finished": [(0, 0.5), (1, 0.7)], "pruned": []},
            "b": {"x_label": "trial", "log": False, "finished": [(0, 1.2), (1, 1.0)], "pruned": [(2, 1.4)]},
        },
        {"a": 1, "b": 1},
        {"a": "validation score", "b": "validation loss"},
        "x",
        tmp_path / "s.png",
    )
    from PIL import Image

    width, height = Image.open(path).size
    assert width > 1.5 * height  # two panels side by side
