"""The trust model (docs/trust.md): what checks or reports runs no code from its input, reads nothing
outside the recipe's repository, writes nothing outside the report folder, and bounds what YAML costs."""

import sys
import time

import pytest
from conftest import run_cli

from harness.config import load_recipe
from harness.results import RunStore
from harness.rows import make_row
from harness.yamlconfig import ConfigError

# A plugin whose import leaves a mark: the tests tell from the mark whether any of its code ran
MARKING_PLUGIN = "from pathlib import Path\nPath(__file__).with_suffix('.ran').write_text('imported')\n"
RECIPE = "name: x\nmodel: random:tiny-llama\ntask: ticket-routing\nplugins: [{plugin}]\ntechniques:\n  - {technique}\n"


@pytest.fixture
def marking_plugin(write, request):
    path = write(f"mark_{request.node.name.split('[')[0][-20:]}.py", MARKING_PLUGIN)
    yield path
    sys.modules.pop(f"harness_plugin_{path.stem}", None)


def test_validate_runs_no_plugin_code_unless_asked(marking_plugin, write):
    mark = marking_plugin.with_suffix(".ran")
    # a recipe that fails validation ran its plugin before: its code ran on a recipe that was refused
    bad = write("bad.yaml", RECIPE.format(plugin=marking_plugin.name, technique="{name: t, kind: prompt, shotz: 1}"))
    result = run_cli("validate", bad)
    assert result.exit_code == 2 and "unknown key 'techniques.0.shotz'" in result.output, result.output
    assert not mark.exists()
    good = write("good.yaml", RECIPE.format(plugin=marking_plugin.name, technique="{name: t, kind: prompt}"))
    result = run_cli("validate", good)
    assert result.exit_code == 0 and not mark.exists(), result.output
    result = run_cli("validate", good, "--import-plugins")
    assert result.exit_code == 0 and mark.read_text() == "imported", result.output


def test_validate_says_what_a_plugin_would_have_registered_is_unknown(marking_plugin, write):
    recipe = write("r.yaml", RECIPE.format(plugin=marking_plugin.name, technique="{name: t, kind: instructed}"))
    result = run_cli("validate", recipe)
    assert result.exit_code == 2 and "unknown value 'instructed'" in result.output, result.output
    assert "were checked, not imported" in result.output and "--import-plugins" in result.output
    missing = write("m.yaml", RECIPE.format(plugin="nowhere.py", technique="{name: t, kind: prompt}"))
    assert "plugin file" in run_cli("validate", missing).output  # a missing one is still named


def test_report_imports_no_plugin_a_results_folder_names(marking_plugin, tmp_path):
    store = scored_run(tmp_path / "run", "t", plugins=[str(marking_plugin)])
    with pytest.warns(UserWarning, match="sections they register are left out; `harness report --import-plugins`"):
        result = run_cli("report", store.run_dir)
    assert result.exit_code == 0, result.output
    assert not marking_plugin.with_suffix(".ran").exists()
    assert run_cli("report", store.run_dir, "--import-plugins").exit_code == 0
    assert marking_plugin.with_suffix(".ran").exists()


def scored_run(run_dir, task: str, plugins=()) -> RunStore:
    """A stored run of two scored techniques with memory figures (so the trade-off plot is drawn)."""
    meta = {
        "recipe": {"name": "r", "model": {"id": "m"}, "plugins": list(plugins), "techniques": [{"name": "a"}]},
        "task": {"name": task, "metric": "exact_match"},
        "seed": 0,
    }
    run_dir.mkdir(parents=True)
    store = RunStore(run_dir, meta)
    for name, score in (("a", 0.5), ("b", 1.0)):
        row = make_row(name, "prompt", "ok", metric="exact_match", score=score, ci_low=0.0, ci_high=1.0, n_eval=2)
        row["peak_memory_bytes"] = 2**30 * (1 + score)
        store.record(
            row, [{"id": i, "input": "q", "expected": "x", "predicted": "x", "correct": i == 0} for i in (0, 1)]
        )
    store.save()
    return store


@pytest.mark.parametrize("task", ["../../escape", "/tmp-escape", ".hidden", "x" * 300, "nul\x00byte"])
def test_report_writes_only_inside_the_report_folder(tmp_path, task):
    store = scored_run(tmp_path / "deep" / "run", task)
    result = run_cli("report", store.run_dir)
    assert result.exit_code == 0, result.output
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert written and all(p.is_relative_to(store.run_dir) for p in written), sorted(map(str, written))
    plots = list((store.run_dir / "plots").iterdir())
    assert plots and all(p.name.endswith(".png") and not p.name.startswith(".") for p in plots)
    assert "plots/" in (store.run_dir / "REPORT.md").read_text()


def test_lm_eval_include_paths_stay_inside_the_recipes_repository(write, tmp_path):
    text = "name: x\ntask: ticket-routing\ntechniques:\n  - {name: t, kind: prompt}\neval:\n  lm_eval:\n"
    recipe = write("repo/recipes/r.yaml", text + "    include_path: [/etc]\n")
    (tmp_path / "repo" / ".git").mkdir()
    message = str(pytest.raises(ConfigError, load_recipe, recipe).value)
    assert f"{recipe}:7: eval.lm_eval.include_path" in message and "/etc is outside" in message
    assert "`!function`" in message  # says why: task YAML can run Python
    escaping = write("repo/recipes/e.yaml", text + "    include_path: [../../elsewhere]\n")
    assert "is outside" in str(pytest.raises(ConfigError, load_recipe, escaping).value)
    # inside the repository, beside the recipe or above it, is fine
    inside = write("repo/recipes/i.yaml", text + "    include_path: [../lm-tasks, here]\n")
    assert load_recipe(inside).eval.lm_eval.include_path == [
        str(tmp_path / "repo/lm-tasks"),
        str(recipe.parent / "here"),
    ]


def test_nested_yaml_aliases_are_refused_before_they_expand(write):
    # each level aliases the one before ten times: 10**7 values from 7 short lines
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    recipe = write("bomb.yaml", "\n".join(levels) + "\nname: x\ntask: ticket-routing\ntechniques: *a6\n")
    assert recipe.stat().st_size < 500
    start = time.perf_counter()
    message = str(pytest.raises(ConfigError, load_recipe, recipe).value)
    assert time.perf_counter() - start < 2
    assert f"{recipe}:5: the YAML here expands to more than 100,000 values" in message
    # an alias of a small mapping, as a recipe uses one, is fine
    techniques = "techniques:\n  - &few {name: a, kind: prompt, shots: 2}\n  - {<<: *few, name: b}\n"
    recipe = load_recipe(write("ok.yaml", "name: x\ntask: ticket-routing\n" + techniques))
    assert [(t.name, t.shots) for t in recipe.techniques] == [("a", 2), ("b", 2)]


def test_report_writes_no_plot_through_a_linked_plots_folder(tmp_path):
    store = scored_run(tmp_path / "run", "t")
    (tmp_path / "elsewhere").mkdir()
    (store.run_dir / "plots").symlink_to(tmp_path / "elsewhere")  # a results folder is data, links and all
    result = run_cli("report", store.run_dir)
    assert result.exit_code == 0, result.output
    assert "is a link to" in result.output and "the report writes only into its own folder" in result.output
    assert not list((tmp_path / "elsewhere").iterdir())
    assert (store.run_dir / "REPORT.md").is_file()
