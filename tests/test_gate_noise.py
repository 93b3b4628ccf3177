"""The noise-aware CI gate on a real tiny run: a score drop over its threshold fails only when the paired
test says it is significant, the threshold alone where predictions are missing; `harness calibrate`'s
spread and suggested thresholds, and `check --noise-from`; at the documented defaults a re-run that differs
only in time and cost passes; changes are printed in the figure's unit."""

import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, tiny_recipe

from harness import gate
from harness.analysis.stats import mcnemar_p
from harness.calibrate import noise_thresholds
from harness.config import CheckSpec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    """One zero-shot run of the tiny model on 12 held-out examples, shared by every test here."""
    folder = tmp_path_factory.mktemp("noise")
    text = tiny_recipe(tiny_model_dir, folder / "out", "  - {name: zero, kind: prompt}\n")
    recipe = folder / "r.yaml"
    recipe.write_text(text.replace("heldout: {limit: 12", "heldout: {latency_samples: 0, limit: 12"))
    assert run_cli("run", recipe).exit_code in (0, 1)
    (run_dir,) = (folder / "out" / "tiny").iterdir()
    return run_dir


def variant(run_dir, folder, right: int = 0, task: str | None = None, **figures):
    """A copy of the run in which `right` more answers of `zero` are right and `figures` are set.

    Why edited copies: the tiny model answers greedily and zero-shot draws no examples, so re-running it
    gives the same answers; a known drop (and a known spread) is made by editing stored predictions."""
    shutil.copytree(run_dir, folder)
    path = folder / "predictions" / "zero.jsonl"
    predictions = [json.loads(line) for line in path.read_text().splitlines()]
    wrong = [p for p in predictions if not p["correct"]]
    assert len(wrong) >= right, "the tiny run has too few wrong answers to make this baseline"
    for p in wrong[:right]:
        p["correct"] = True
    path.write_text("".join(json.dumps(p) + "\n" for p in predictions))
    results = json.loads((folder / "results.json").read_text())
    (row,) = [r for r in results["rows"] if r["technique"] == "zero"]
    row |= {"score": sum(p["correct"] for p in predictions) / len(predictions)} | figures
    if task:
        results["meta"]["task"]["name"] = task
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def read(run_dir, technique):
    return [json.loads(line) for line in (run_dir / "predictions" / f"{technique}.jsonl").read_text().splitlines()]


def zero_row(run_dir) -> dict:
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    return next(r for r in rows if r["technique"] == "zero")


def zero_score_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if " zero " in line and " score " in line]
    return line


def test_a_drop_over_the_threshold_fails_only_when_significant(tiny_run, tmp_path):
    # one answer more right in the baseline: a drop of 1/12 = 0.083, over 0.02, but McNemar p = 1
    noise = run_cli("check", tiny_run, "--baseline", variant(tiny_run, tmp_path / "one", right=1))
    assert noise.exit_code == 0, noise.output
    assert "over threshold but not significant (p=1): noise" in zero_score_line(noise.output)
    assert "p < 0.05" in noise.output and "check passed" in noise.output
    assert run_cli("check", tiny_run, "--baseline", tmp_path / "one", "--no-significance").exit_code == 1

    # six answers right in the baseline only: McNemar p = 2 / 2**6 = 0.031, significant at 0.05, not at 0.01
    six = variant(tiny_run, tmp_path / "six", right=6)
    p = mcnemar_p(*([p["correct"] for p in read(run, "zero")] for run in (six, tiny_run)))
    assert p == pytest.approx(2 / 2**6)
    real = run_cli("check", tiny_run, "--baseline", six)
    assert real.exit_code == 1, real.output
    line = zero_score_line(real.output)
    assert "FAIL" in line and f"dropped by 0.500, over 0.02 and significant (p={p:.2g} < 0.05)" in line
    assert run_cli("check", tiny_run, "--baseline", six, "--alpha", "0.01").exit_code == 0


def test_without_predictions_the_threshold_alone_decides_and_the_row_says_so(tiny_run, tmp_path):
    baseline = variant(tiny_run, tmp_path / "base", right=1, peak_memory_bytes=1)  # memory grew "a lot"
    shutil.rmtree(baseline / "predictions")  # a baseline committed as results.json alone
    flags = ("--max-drop", "score=0.1", "--max-increase", "peak_memory_bytes=10%")
    result = run_cli("check", tiny_run, "--baseline", baseline / "results.json", *flags)
    assert result.exit_code == 1, result.output
    assert "1 regression(s)" in result.output  # memory, which has no per-example values: its threshold rules
    line = zero_score_line(result.output)  # a drop of 1/12, within 0.1: unpaired, and it says so
    assert "pass" in line and "within threshold; threshold alone: no per-example predictions in the baseline" in line
    result = run_cli("check", tiny_run, "--baseline", baseline, "--max-drop", "score=0.02")
    line = zero_score_line(result.output)
    assert result.exit_code == 1 and "FAIL" in line
    assert "over 0.02; threshold alone: no per-example predictions in the baseline" in line


def test_calibrate_suggests_thresholds_from_the_spread_of_the_runs(tiny_run, tmp_path):
    measured = zero_row(tiny_run)
    memory, seconds = measured["peak_memory_bytes"], measured["wall_seconds"]
    runs = [
        tiny_run,  # re-runs on other machines: one answer more right, memory and wall time moved
        variant(tiny_run, tmp_path / "b", right=1, peak_memory_bytes=int(memory * 1.04), wall_seconds=seconds * 1.3),
        variant(tiny_run, tmp_path / "c", peak_memory_bytes=int(memory * 0.99), wall_seconds=seconds * 0.8),
    ]
    out = tmp_path / "check.yaml"
    result = run_cli("calibrate", *runs, "--write", out)
    assert result.exit_code == 0, result.output
    block = yaml.safe_load(out.read_text())["check"]
    assert out.read_text() in result.output  # the block printed is the one written

    def allowance(metric):  # max(3 std, range) of the rows' values, a share of the mean for memory and time
        values = [zero_row(run)[metric] for run in runs]
        moved = max(3 * statistics.stdev(values), max(values) - min(values))
        return moved if metric == "score" else moved / statistics.fmean(values)

    assert block["max_drop"]["score"] == math.ceil(allowance("score") * 1000) / 1000
    for metric in ("peak_memory_bytes", "wall_seconds"):
        assert block["max_increase"][metric] == f"{math.ceil(allowance(metric) * 100)}%"
        assert f"{allowance(metric):.1%}" in next(line for line in result.output.splitlines() if f" {metric} " in line)
    CheckSpec(**block)  # a recipe's check: takes it as written

    # check --noise-from: the same thresholds for figures no flag names; the flag's own for score
    drops, rises = gate.thresholds_from({}, ("score=0.3",), (), noise_thresholds(runs, tiny_run))
    assert [str(t) for t in drops] == ["0.3"] and {t.metric: str(t) for t in rises}["peak_memory_bytes"] == (
        block["max_increase"]["peak_memory_bytes"]
    )
    noisy = variant(tiny_run, tmp_path / "d", peak_memory_bytes=int(memory * 1.5))  # beyond the measured spread
    result = run_cli("check", noisy, "--baseline", tiny_run, *(f for run in runs for f in ("--noise-from", run)))
    assert result.exit_code == 1, result.output
    assert f"peak_memory_bytes may rise {block['max_increase']['peak_memory_bytes']}" in result.output
    (line,) = [line for line in result.output.splitlines() if " peak_memory_bytes " in line and "│" in line]
    assert "FAIL" in line and "rose by" in line


def figure_line(output: str, metric: str) -> str:
    (line,) = [line for line in output.splitlines() if f" {metric} " in line and "│" in line]
    return line


def bundled_check(recipe: str) -> dict:
    return yaml.safe_load((REPO / "recipes" / f"{recipe}.yaml").read_text()).get("check") or {}


@pytest.mark.parametrize("recipe", ["ci", "demo", None])
def test_a_rerun_that_differs_in_time_and_cost_only_passes_at_the_documented_defaults(tiny_run, tmp_path, recipe):
    # a re-run of the same commit on a busy shared CPU: twice the time, hence twice the cost, and memory a
    # little up; checked with no flag, under the bundled recipe's `check:` (None: the built-in default)
    row = zero_row(tiny_run)
    slower = {k: row[k] * 2 for k in ("wall_seconds", "eval_seconds", "cost_usd") if row.get(k)}
    rerun = variant(tiny_run, tmp_path / "rerun", peak_memory_bytes=int(row["peak_memory_bytes"] * 1.03), **slower)
    results = json.loads((rerun / "results.json").read_text())
    results["meta"]["recipe"]["check"] = bundled_check(recipe) if recipe else None
    (rerun / "results.json").write_text(json.dumps(results))
    result = run_cli("check", rerun, "--baseline", tiny_run)
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output and "note:" not in result.output


def test_no_bundled_recipe_or_documented_command_sets_a_fixed_time_or_cost_threshold():
    documented = [
        gate.parse_threshold(amount)
        for doc in ("README.md", "docs/ci-example.yml")
        for line in (REPO / doc).read_text().splitlines()
        if "harness check" in line or "--max-" in line
        for amount in re.findall(r"[a-z_:]+=[0-9.]+%?", line)
    ]
    assert {t.metric for t in documented} >= {"score", "peak_memory_bytes"}
    assert gate.load_dependent(documented) == []
    for recipe in sorted((REPO / "recipes").glob("*.yaml")):
        limits = bundled_check(recipe.stem)
        named = [
            gate.parse_threshold(f"{m}={v}") for d in ("max_drop", "max_increase") for m, v in limits.get(d, {}).items()
        ]
        assert gate.load_dependent(named) == [], recipe.name


def test_a_change_is_printed_in_the_figures_unit_and_a_fixed_time_or_cost_threshold_is_noted(tiny_run, tmp_path):
    mib = 2**20
    baseline = variant(tiny_run, tmp_path / "base", peak_memory_bytes=955 * mib, wall_seconds=65.0, cost_usd=0.0018)
    run = variant(tiny_run, tmp_path / "run", peak_memory_bytes=1167 * mib, wall_seconds=84.0, cost_usd=0.0036)
    flags = ("--max-increase", "peak_memory_bytes=15%", "wall_seconds=10", "cost_usd=50%")
    result = run_cli("check", run, "--baseline", baseline, *flags)
    assert result.exit_code == 1, result.output
    assert "rose by 212 MiB (+22%), over 15%" in figure_line(result.output, "peak_memory_bytes")
    assert "rose by 19.0s (+29%), over 10.0s" in figure_line(result.output, "wall_seconds")
    assert "rose by $0.0018 (+100%), over 50%" in figure_line(result.output, "cost_usd")
    assert "wall_seconds may rise 10.0s" in result.output  # an amount in its unit, in the rules line too
    assert "note: wall_seconds, cost_usd: time and cost move with the machine's load" in result.output


def test_calibrate_refuses_one_run_or_runs_of_another_task_or_recipe(tiny_run, tmp_path):
    one = run_cli("calibrate", tiny_run)
    assert one.exit_code == 2 and "needs at least 2 runs of the same recipe" in one.output and "got 1" in one.output
    other_task = variant(tiny_run, tmp_path / "task", task="other-task")
    result = run_cli("calibrate", tiny_run, other_task)
    assert result.exit_code == 2 and "the run and the first run compare different tasks" in result.output
    result = run_cli("check", tiny_run, "--baseline", tiny_run, "--noise-from", other_task, "--noise-from", other_task)
    assert result.exit_code == 2 and "the --noise-from run and the baseline compare different tasks" in result.output
    result = run_cli("check", tiny_run, "--baseline", tiny_run, "--noise-from", tiny_run)
    assert result.exit_code == 2 and "--noise-from needs at least 2 runs" in result.output
    renamed = variant(tiny_run, tmp_path / "renamed")
    results = json.loads((renamed / "results.json").read_text())
    results["rows"].append(dict(zero_row(renamed), technique="few"))  # a technique the first run lacks
    (renamed / "results.json").write_text(json.dumps(results))
    result = run_cli("calibrate", tiny_run, renamed)
    assert result.exit_code == 2 and "harness calibrate compares re-runs of one recipe" in result.output
    assert "techniques: few, zero" in result.output
