"""A run as a study, on the tiny model: search on validation, seeds, train sizes, cells in processes,
a killed cell, and an interrupted study that resumes without redoing finished cells or trials."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe, tiny_study

from harness import planning, results, search
from harness.config import load_recipe

LORA_SEARCH = """\
  - {name: zero, kind: prompt}
  - name: lora
    kind: lora
    train: {max_steps: 2, batch_size: 4, limit: 16}
    lora: {rank: 2, alpha: 4}
    search: {space: {train.learning_rate: [1.0e-4, 1.0e-3, 1.0e-2]}, objective: validation_loss}
"""
STUDY = """\
seeds: [0, 1]
search_budget: 3
train_sizes: [8, all]
eval:
  validation: {size: 10}
  heldout: {limit: 12, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200}
"""


def study_recipe(write, tiny_model_dir, out, techniques=LORA_SEARCH, extra=STUDY):
    text = tiny_study(tiny_model_dir, out, techniques, extra)
    return write("study.yaml", text)


class FakeCells:
    """Stands in for the executor in the selection test: each trial's validation figure comes from a
    table, as does the test score it would have had, which the search must never see."""

    def __init__(self, run_dir, validation: dict, test: dict):
        self.run_dir, self.validation, self.test, self.ran = run_dir, validation, test, []

    def __call__(self, cells):
        self.ran += cells
        out = [
            {
                "cell": c.to_dict(),
                "row": {
                    "status": "ok",
                    "objective": self.validation[c.params["shots"]],
                    "wall_seconds": 1.0,
                    "cost_usd": 0.0,
                },
                "predictions": [],
            }
            for c in cells
        ]
        for cell, result in zip(cells, out):  # as the real runner leaves them
            results.write_atomic(planning.cell_path(self.run_dir, cell), json.dumps(result))
        return out


def test_search_keeps_the_validation_winner_not_the_test_winner(write, tmp_path):
    recipe = load_recipe(
        write(
            "r.yaml",
            """
name: s
task: ticket-routing
search_budget: 4
techniques:
  - {name: few, kind: prompt, search: {space: {shots: [0, 1, 2, 4]}}}
eval: {validation: {fraction: 0.1}}
""",
        )
    )
    cells = FakeCells(tmp_path, validation={0: 0.2, 1: 0.7, 2: 0.5, 4: 0.4}, test={0: 0.2, 1: 0.3, 2: 0.5, 4: 0.9})
    trials = search.tune(recipe.techniques[0], recipe, tmp_path, cells, jobs=1)
    assert sorted(c.params["shots"] for c in cells.ran) == [0, 1, 2, 4]  # the grid, each point once
    assert all(c.split == "validation" for c in cells.ran)
    summary = planning.search_summary([planning.cell_row(t) for t in trials], "validation_score")
    assert summary["chosen"] == {"shots": 1} and summary["search_best"] == 0.7  # not shots=4, the test winner
    assert summary["search_trials"] == 4
    # a second call (a resumed run) reads the finished trials back and runs nothing
    again = FakeCells(tmp_path, cells.validation, cells.test)
    assert len(search.tune(recipe.techniques[0], recipe, tmp_path, again, jobs=1)) == 4 and again.ran == []


def test_a_small_search_spreads_its_trials_and_each_technique_draws_its_own(write, tmp_path):
    # 3 trials on [1e-5, 3e-3]: TPE sampled them at random from the run's seed, the same three values for
    # every technique (2.29e-4, 5.91e-4, 3.11e-4: a 2.6x band of a 300x range)
    import math

    space = "search: {space: {train.learning_rate: {log_uniform: [1.0e-5, 3.0e-3]}}, objective: validation_loss}"
    recipe = load_recipe(
        write(
            "r.yaml",
            f"name: s\ntask: ticket-routing\nsearch_budget: 3\neval: {{validation: {{fraction: 0.1}}}}\n"
            f"techniques:\n  - {{name: a, kind: lora, {space}}}\n  - {{name: b, kind: lora, {space}}}\n",
        )
    )

    def fake(cells):  # a loss that is lowest at 1e-3
        out = []
        for c in cells:
            loss = abs(math.log10(c.params["train.learning_rate"]) + 3)
            result = {"cell": c.to_dict(), "row": {"status": "ok", "objective": loss}, "predictions": []}
            results.write_atomic(planning.cell_path(tmp_path, c), json.dumps(result))
            out.append(result)
        return out

    drawn = {}
    for technique in recipe.techniques:
        trials = search.tune(technique, recipe, tmp_path, fake, jobs=1)
        drawn[technique.name] = sorted(t["cell"]["params"]["train.learning_rate"] for t in trials)
    assert drawn["a"] != drawn["b"]  # independent draws
    for values in drawn.values():
        assert all(1e-5 <= v <= 3e-3 for v in values)
        assert values[-1] / values[0] > 10, values  # spread over the (log) range, not a narrow band


def test_search_space_errors_name_the_setting(write):
    from harness.config import ConfigError

    base = "name: s\ntask: ticket-routing\neval: {validation: {size: 8}}\ntechniques:\n"
    with pytest.raises(ConfigError, match="lora.rnak"):
        load_recipe(
            write("a.yaml", base + "  - {name: l, kind: lora, search: {trials: 2, space: {lora.rnak: [2, 4]}}}\n")
        )
    with pytest.raises(ConfigError, match="validation_loss needs a trained kind"):
        load_recipe(
            write(
                "b.yaml",
                base + "  - {name: p, kind: prompt, search: {trials: 2, space: {shots: [1]}, "
                "objective: validation_loss}}\n",
            )
        )
    with pytest.raises(ConfigError, match="same budget"):
        load_recipe(
            write(
                "c.yaml",
                base.replace("eval:", "search_budget: 4\neval:")
                + "  - {name: p, kind: prompt, search: {trials: 2, space: {shots: [1, 2]}}}\n",
            )
        )
    with pytest.raises(ConfigError, match="add `eval: {validation"):
        load_recipe(
            write(
                "d.yaml",
                "name: s\ntask: ticket-routing\ntechniques:\n"
                "  - {name: p, kind: prompt, search: {trials: 2, space: {shots: [1, 2]}}}\n",
            )
        )


@pytest.fixture(scope="module")
def killed_then_resumed_study(tiny_model_dir, tmp_path_factory):
    """The study recipe run as a user would: killed (the driver's whole process group, SIGKILL) once the second
    search trial finished, then `--resume`d to the end. Returns the run folder and the cell files that existed
    at the kill with their mtimes. Two tests read it: one run serves both (a study costs half a minute)."""
    folder = tmp_path_factory.mktemp("study")
    recipe = folder / "study.yaml"
    recipe.write_text(tiny_study(tiny_model_dir, folder / "out", LORA_SEARCH, STUDY))
    harness = os.path.join(os.path.dirname(sys.executable), "harness")
    driver = subprocess.Popen(
        [harness, "run", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )  # its own process group: driver and cells die together
    deadline = time.monotonic() + 240
    while not list((folder / "out").glob("tiny/*/cells/lora.trial-1.json")):
        assert driver.poll() is None and time.monotonic() < deadline, "the study ended before it was killed"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    run_dir = only_run_dir(folder / "out")
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*.json")}
    result = run_cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir, before


def test_study_searches_on_validation_then_runs_seeds_and_sizes_on_test(killed_then_resumed_study):
    run_dir, _ = killed_then_resumed_study
    store = results.RunStore.open(run_dir)
    cells = {c["cell"]: c for c in store.cells}
    assert set(cells) == {
        "zero.seed-0",
        "lora.trial-0",
        "lora.trial-1",
        "lora.trial-2",
        "lora.seed-0",
        "lora.seed-1",
        "lora.seed-0.n-8",
        "lora.seed-1.n-8",
    }
    trials = [cells[f"lora.trial-{i}"] for i in range(3)]
    assert all(t["split"] == "validation" and t["objective"] == t["validation_loss"] for t in trials)
    assert all(t["score"] is None for t in trials)  # a validation-loss trial generates nothing
    best = min(trials, key=lambda t: t["objective"])
    rows = {r["technique"]: r for r in store.rows}
    lora = rows["lora"]
    assert lora["chosen"] == best["params"] and lora["search_trials"] == 3
    assert all(cells[c]["params"] == best["params"] for c in ("lora.seed-0", "lora.seed-1", "lora.seed-0.n-8"))
    assert cells["lora.seed-0.n-8"]["train_examples"] == 8 and cells["lora.seed-0"]["train_examples"] == 16
    # seeds: per-seed scores, their spread, predictions paired by seed
    assert lora["n_seeds"] == 2 and len(lora["seed_scores"]) == 2
    assert lora["score"] == pytest.approx(sum(lora["seed_scores"]) / 2) and lora["score_std"] >= 0
    predictions = store.predictions("lora")
    assert sorted({p["seed"] for p in predictions}) == [0, 1] and len(predictions) == 24
    # zero-shot does not depend on the seed: one cell, reused for both seeds
    assert rows["zero"]["seed_invariant"] and rows["zero"]["score_std"] == 0
    assert len(store.predictions("zero")) == 24
    # test and validation never meet
    test_ids = {p["id"] for p in predictions}
    validation = json.loads((run_dir / "cells" / "lora.trial-0.json").read_text())
    assert validation["row"]["n_eval"] is None and not test_ids & {p["id"] for p in validation["predictions"]}
    assert rows["majority"]["kind"] == "baseline"
    # only the reported configuration leaves an artifact
    assert sorted(p.name for p in (run_dir / "artifacts").iterdir()) == ["lora.seed-0", "lora.seed-1"]
    report = (run_dir / "REPORT.md").read_text()
    assert "learning-curve.png" in report and (run_dir / "plots" / "ticket-routing-learning-curve.png").is_file()
    assert "search.png" in report and "Every tuned technique got 3 trials" in report


def test_a_cell_killed_by_sigkill_is_a_failed_row_and_the_rest_finish(write, tiny_model_dir, tmp_path, monkeypatch):
    two = "  - {name: zero, kind: prompt}\n  - {name: few, kind: prompt, shots: 2}\n"
    monkeypatch.setenv("HARNESS_FAULT_KILL_CELL", "zero.seed-0")  # zero's process kills itself
    result = run_cli("run", write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", two)))
    assert result.exit_code == 1
    run_dir = only_run_dir(tmp_path / "out")
    rows = {r["technique"]: r for r in results.RunStore.open(run_dir).rows}
    assert rows["zero"]["status"] == "failed" and "killed by SIGKILL" in rows["zero"]["error"]
    assert "[cell] zero.seed-0" in rows["zero"]["error"]  # the log's last lines come along
    assert rows["few"]["status"] == "ok"  # it shared zero's process, and got a fresh one
    assert "killed by SIGKILL" in (run_dir / "REPORT.md").read_text()
    monkeypatch.delenv("HARNESS_FAULT_KILL_CELL")
    resumed = run_cli("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert results.RunStore.open(run_dir).ordered_rows()[0]["status"] == "ok"


def test_a_study_killed_midway_resumes_without_redoing_finished_cells_or_trials(killed_then_resumed_study):
    run_dir, before = killed_then_resumed_study
    assert "lora.trial-0.json" in before and "lora.seed-0.json" not in before
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*.json")}
    assert all(after[name] == mtime for name, mtime in before.items())  # nothing finished was redone
    assert len(after) == 8
    import optuna

    trials = optuna.load_study(study_name="lora", storage=f"sqlite:///{run_dir / 'search.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3  # the budget, not one trial more
    assert all(r["status"] == "ok" for r in results.RunStore.open(run_dir).rows)


def test_a_trial_whose_validation_loss_trails_the_median_is_pruned(write, tiny_model_dir, tmp_path):
    techniques = """\
  - name: lora
    kind: lora
    train: {max_steps: 8, batch_size: 4, limit: 32}
    lora: {rank: 2, alpha: 4}
    search: {space: {train.learning_rate: [1.0e-7, 1.0e-2, 2.0e-2, 3.0e-2]}, objective: validation_loss}
"""  # the seeded grid visits 1e-7 last, after two trials that always finish (PRUNE_STARTUP_TRIALS)
    extra = (
        "search_budget: 4\neval:\n  validation: {size: 10}\n"
        "  heldout: {limit: 4, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 100}\n"
    )
    result = run_cli("run", study_recipe(write, tiny_model_dir, tmp_path / "out", techniques, extra))
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    store = results.RunStore.open(run_dir)
    trials = [c for c in store.cells if c["trial"] is not None]
    pruned = [t for t in trials if t.get("pruned")]
    hopeless = next(t for t in trials if t["params"]["train.learning_rate"] < 1e-6)
    assert hopeless in pruned and all(t["train_steps"] < 8 for t in pruned)  # stopped before the end
    import optuna

    states = {
        t.number: t.state.name
        for t in optuna.load_study(study_name="lora", storage=f"sqlite:///{run_dir / 'search.db'}").trials
    }
    assert sorted(states.values()).count("PRUNED") == len(pruned)
    lora = next(r for r in store.rows if r["technique"] == "lora")
    assert lora["search_pruned"] == len(pruned) and lora["chosen"]["train.learning_rate"] > 1e-2


# kill (SIGKILL: no handler runs, each cell must notice alone) in the default suite; terminate with -m slow
@pytest.mark.parametrize("how", [pytest.param("terminate", marks=pytest.mark.slow), "kill"])
def test_a_terminated_driver_stops_its_cells_and_keeps_finished_ones(write, tiny_model_dir, tmp_path, how):
    # terminate: SIGTERM, as `kill` or a closing terminal sends (SIGHUP likewise): the driver stops its jobs.
    # kill: SIGKILL, no handler runs: each cell watches the driver and ends with it (executors/local.die_with)
    import psutil

    techniques = (
        "  - {name: zero, kind: prompt}\n"
        "  - {name: lora, kind: lora, train: {max_steps: 2000, batch_size: 4}, lora: {rank: 2, alpha: 4}}\n"
    )
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", techniques))
    harness = os.path.join(os.path.dirname(sys.executable), "harness")
    driver = subprocess.Popen([harness, "run", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("tiny/*/logs/lora.seed-0.log")):  # lora's cell has started
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    processes = psutil.Process(driver.pid).children(recursive=True)  # fork server and the running cell
    getattr(driver, how)()
    driver.wait(timeout=60)
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive, f"left running after the driver stopped: {[p.cmdline()[:3] for p in alive]}"
    run_dir = only_run_dir(tmp_path / "out")
    assert planning.read_result(run_dir, planning.Cell("zero", 0))["row"]["status"] == "ok"  # kept for --resume
