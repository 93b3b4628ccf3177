"""The decision report from stored fixtures (no model): significance, Pareto front, the recommendation,
best-value marking, plots and exports; `harness check` exit codes and `harness compare` output."""

import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.report import decision, write_report
from harness.results import RunStore, make_row

N = 60


def outcomes(n_right: int, offset: int = 0) -> list[bool]:
    """N examples, n_right of them right, starting at `offset` (wrapping): overlap controls agreement."""
    return [((i - offset) % N) < n_right for i in range(N)]


def make_run(folder, techniques: dict[str, tuple[list[bool], float, int]], task="t", recipe_check=None) -> RunStore:
    """A stored run: technique -> (per-example correctness, cost in $, peak memory in MiB)."""
    recipe = {"name": "fixture", "model": {"id": "m"}, "techniques": [{"name": n} for n in techniques],
              "eval": {"heldout": {"wrong_examples": 2}}, "check": recipe_check or {}}
    meta = {"recipe": recipe, "task": {"name": task, "metric": "accuracy", "n_test": N}, "run_id": "r",
            "usd_per_hour": {"cpu": 0.1}}
    store = RunStore(folder, meta)
    for name, (correct, cost, mib) in techniques.items():
        score = sum(correct) / N
        row = make_row(name, "prompt", "ok", metric="accuracy", score=score, ci_low=score - 0.1, ci_high=score + 0.1,
                       cost_usd=cost, peak_memory_bytes=mib * 2**20, n_eval=N, wall_seconds=cost * 36000)
        predictions = [{"id": f"e{i}", "input": f"q{i}", "expected": "a", "predicted": "a" if c else "b",
                        "correct": c} for i, c in enumerate(correct)]
        store.record(row, predictions)
    return store


def test_mcnemar_counts_only_discordant_pairs():
    assert decision.mcnemar_p([True] * 10, [True] * 10) == 1.0
    assert decision.mcnemar_p([True] * 12 + [False] * 8, [False] * 12 + [True] * 8) > 0.05  # 12 vs 8 flips
    assert decision.mcnemar_p([True] * 20, [False] * 20) < 1e-5
    with pytest.raises(ValueError):
        decision.mcnemar_p([True], [True, False])


def test_pareto_front_keeps_only_undominated_points():
    points = [("cheap-bad", 1, 0.2), ("mid", 2, 0.6), ("dominated", 3, 0.5), ("top", 5, 0.8), ("tie-cost", 5, 0.7)]
    assert decision.pareto_front(points) == ["cheap-bad", "mid", "top"]


def test_cheap_technique_tied_with_the_best_is_recommended(tmp_path):
    store = make_run(tmp_path, {
        "zero": (outcomes(6), 0.001, 900),              # far below: significantly worse
        "rag": (outcomes(40), 0.002, 1200),             # close to the best
        "lora": (outcomes(42), 0.010, 4000),            # the best, but 5x the cost
    })
    rows = store.ordered_rows()
    predictions = {n: store.predictions(n) for n in ("zero", "rag", "lora")}
    verdicts = decision.paired_vs_best(rows, predictions)
    assert verdicts["lora"].marker == "best" and verdicts["rag"].marker == "tied" and verdicts["zero"].marker == "worse"
    pick = decision.recommend(rows, predictions)
    assert pick.technique == "rag" and "not significantly below the best, lora" in pick.reason
    assert len(pick.upgrades) == 1 and pick.upgrades[0].startswith("**lora**: +0.033 score, within noise")
    assert "5.0x the cost" in pick.upgrades[0]


def test_significantly_worse_cheap_technique_is_not_recommended(tmp_path):
    store = make_run(tmp_path, {"zero": (outcomes(10), 0.001, 900), "lora": (outcomes(50), 0.010, 4000)})
    predictions = {n: store.predictions(n) for n in ("zero", "lora")}
    pick = decision.recommend(store.ordered_rows(), predictions)
    assert pick.technique == "lora" and "every cheaper technique scores significantly lower" in pick.reason
    assert pick.upgrades == []


def test_report_marks_best_values_significance_plots_and_exports(tmp_path):
    store = make_run(tmp_path, {"zero": (outcomes(6), 0.001, 900), "rag": (outcomes(40), 0.002, 1200),
                                "lora": (outcomes(42), 0.010, 4000)})
    report = write_report([store]).read_text()
    assert "**Use rag**" in report
    assert "| zero | prompt | ok | 0.100 [0.000, 0.200] | accuracy | 60 | ▼ p=0.000 |" in report
    assert "| lora | prompt | ok | **0.700 [0.600, 0.800]** | accuracy | 60 | best |" in report
    assert "| rag | prompt | ok | 0.667 [0.567, 0.767] | accuracy | 60 | ≈ p=0.500 |" in report
    assert "| **$0.0010** |" in report and "**900 MiB**" in report  # cheapest and smallest in bold
    for axis in ("memory", "cost"):
        png = tmp_path / "plots" / f"t-score-vs-{axis}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"(plots/t-score-vs-{axis}.png)" in report
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[0].startswith("task,technique,kind,status") and len(csv) == 4
    assert (tmp_path / "results.parquet").is_file()


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def baseline(tmp_path):
    return make_run(tmp_path / "base", {"zero": (outcomes(20), 0.001, 1000), "lora": (outcomes(40), 0.010, 4000)},
                    recipe_check={"max_drop": {"score": 0.05}}).run_dir


def test_check_passes_within_thresholds(tmp_path, baseline):
    make_run(tmp_path / "run", {"zero": (outcomes(19), 0.0011, 1050), "lora": (outcomes(40), 0.010, 4000)})
    result = run_cli("check", tmp_path / "run", "--baseline", baseline / "results.json", "--max-drop", "score=0.02",
                     "--max-increase", "peak_memory_bytes=10%")
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output and "2 technique(s)" in result.output


@pytest.mark.parametrize("run, flags, technique, metric, problem", [
    ({"zero": (outcomes(15), 0.001, 1000), "lora": (outcomes(40), 0.01, 4000)}, ["--max-drop", "score=0.02"],
     "zero", "score", "dropped"),
    ({"zero": (outcomes(20), 0.001, 1200), "lora": (outcomes(40), 0.01, 4000)},
     ["--max-increase", "peak_memory_bytes=10%"], "zero", "peak_memory", "rose"),
    ({"zero": (outcomes(20), 0.0013, 1000), "lora": (outcomes(40), 0.01, 4000)},
     ["--max-increase", "cost_usd=20%"], "zero", "cost_usd", "rose"),
    ({"zero": (outcomes(20), 0.001, 1000)}, [], "lora", "status", "missing"),
])
def test_check_fails_on_each_kind_of_regression(tmp_path, baseline, run, flags, technique, metric, problem):
    make_run(tmp_path / "run", run)
    result = run_cli("check", tmp_path / "run", "--baseline", baseline, *flags)
    assert result.exit_code == 1, result.output
    assert "1 regression(s)" in result.output
    (line,) = [line for line in result.output.splitlines() if f" {technique} " in line]  # the one regression
    assert metric in line and problem in line


def test_check_uses_the_recipes_thresholds_and_rejects_bad_ones(tmp_path, baseline):
    make_run(tmp_path / "run", {"zero": (outcomes(17), 0.001, 1000), "lora": (outcomes(40), 0.01, 4000)},
             recipe_check={"max_drop": {"score": 0.06}})
    assert run_cli("check", tmp_path / "run", "--baseline", baseline).exit_code == 0  # 0.05 drop < 0.06
    assert run_cli("check", tmp_path / "run", "--baseline", baseline, "--max-drop", "score=0.01").exit_code == 1
    bad = run_cli("check", tmp_path / "run", "--baseline", baseline, "--max-drop", "score>0.01")
    assert bad.exit_code == 2 and "METRIC=AMOUNT" in bad.output


def test_compare_shows_deltas_and_paired_significance(tmp_path, baseline):
    make_run(tmp_path / "run", {"zero": (outcomes(45), 0.001, 1000), "new": (outcomes(5), 0.001, 1000)})
    result = CliRunner().invoke(main, ["compare", str(baseline), str(tmp_path / "run")], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    zero_score = next(line for line in lines if "zero" in line and "score" in line)
    assert "0.333" in zero_score and "0.750" in zero_score and "+0.417" in zero_score and "p=0.000" in zero_score
    assert any("lora" in line and "only in A" in line for line in lines)
    assert any("new" in line and "only in B" in line for line in lines)
