import json
import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.cli import _validated
from harness.config import ConfigError, load_recipe

REPO = Path(__file__).resolve().parent.parent

VALID = """\
name: t
task: ticket-routing
techniques:
  - name: zero
    kind: prompt
  - name: few
    kind: prompt
    shots: 2
"""


def test_valid_recipe_gets_defaults_and_is_frozen(write):
    recipe = load_recipe(write("r.yaml", VALID))
    assert recipe.model.id == "smollm2-135m-instruct"
    assert [t.shots for t in recipe.techniques] == [0, 2]
    assert recipe.eval.heldout.batch_size == 16
    with pytest.raises(ValidationError):  # recipes are frozen
        recipe.seed = 3


def test_unknown_key_names_file_line_and_suggestion(write):
    path = write("r.yaml", VALID.replace("    shots: 2", "    shotz: 2"))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert f"{path}:8: unknown key 'techniques.1.shotz' (did you mean 'techniques.1.shots'?)" in str(err.value)


def test_a_settings_key_named_like_the_kind_is_not_repeated_in_the_path(write):
    # `lora:` on a `kind: lora` technique: the union's tag and the key share a name
    path = write(
        "r.yaml",
        "name: x\ntask: ticket-routing\ntechniques:\n  - {name: zero, kind: prompt}\n"
        "  - name: l\n    kind: lora\n    lora: {rnak: 8}\n",
    )
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert f"{path}:7: unknown key 'techniques.1.lora.rnak' (did you mean 'techniques.1.lora.rank'?)" in message


def test_nested_unknown_key_and_wrong_type(write):
    path = write("r.yaml", VALID + "eval:\n  heldout:\n    limt: 5\n    batch_size: many\n")
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert f"{path}:11: unknown key 'eval.heldout.limt' (did you mean 'eval.heldout.limit'?)" in message
    assert f"{path}:12: eval.heldout.batch_size: Input should be a valid integer" in message


def test_missing_field_and_bad_kind(write):
    path = write(
        "r.yaml",
        VALID.replace("task: ticket-routing\n", "").replace("kind: prompt\n    shots", "kind: promt\n    shots"),
    )
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert "missing required key 'task'" in message
    assert (
        f"{path}:6: techniques.1.kind: unknown value 'promt' (did you mean 'prompt'?); "
        "known: prompt, rag, full, lora, qlora" in message
    )


def test_invalid_yaml_names_the_line(write):
    path = write("r.yaml", "name: t\ntechniques: [\n  - bad: : x\n")
    assert f"{path}:3: invalid YAML" in str(pytest.raises(ConfigError, load_recipe, path).value)


@pytest.mark.parametrize(
    "change, line, message",
    [
        (("task: ticket-routing\n", "task: ticket-routing\nmodel: ''\n"), 3, "model.id: Value error, empty model id"),
        (("task: ticket-routing\n", "task: ticket-routing\nmodel: {id: ' ', dtype: float32}\n"), 3, "empty model id"),
        (("", "check:\n  max_drop: {scroe: 0.02}\n"), 10, "unknown metric 'scroe' (did you mean 'score'?)"),
        (
            ("", "check:\n  max_increase:\n    peak_memory: 10%\n"),
            10,
            "unknown metric 'peak_memory' (did you mean 'peak_memory_bytes'?)",
        ),
        (("", "check:\n  max_drop: {score: ten}\n"), 10, "'ten' is neither an amount (0.02) nor a percentage"),
        (("", "check:\n  alpha: 5\n"), 10, "check.alpha: Input should be less than 1"),
        (("", "techniques:\n  - {name: other, kind: prompt}\n"), 9, "duplicate key 'techniques' (first at line 3)"),
        (("    shots: 2\n", "    shots: 2\n    shots: 3\n"), 9, "duplicate key 'techniques.1.shots' (first at line 8)"),
        (("", "eval: &e\n  heldout: *e\n"), 9, "the YAML anchor here is used by an alias inside itself"),
        (("", "executor:\n  slurm: &s [1, *s]\n"), 10, "the YAML anchor here is used by an alias inside itself"),
    ],
    ids=[
        "empty model",
        "blank model id",
        "check key typo",
        "check key typo (increase)",
        "check amount",
        "check alpha",
        "duplicate top-level key",
        "duplicate nested key",
        "recursive alias",
        "recursive alias in a list",
    ],
)
def test_malformed_recipe_names_file_and_line(write, change, line, message):
    old, new = change
    path = write("r.yaml", VALID.replace(old, new) if old else VALID + new)
    assert f"{path}:{line}: " in (error := str(pytest.raises(ConfigError, load_recipe, path).value)), error
    assert message in error


def test_lm_eval_scores_and_every_committed_row_figure_are_checkable_metrics(write):
    from harness import figures

    load_recipe(
        write(
            "r.yaml",
            VALID + "check:\n  max_drop: {score: 0.02, 'lm_eval:general_ability:acc': 0.05}\n"
            "  max_increase: {peak_memory_bytes: 10%, recall_at_k: '5%'}\n",
        )
    )
    stored = {
        key
        for results in (REPO / "reports").rglob("results.json")
        for row in json.loads(results.read_text())["rows"]
        for key, value in row.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith("lm_eval:")
    }
    assert stored and stored <= set(figures.known()), stored - set(figures.known())


def test_duplicate_technique_names_rejected(write):
    path = write("r.yaml", VALID.replace("name: few", "name: zero"))
    assert "repeated: zero" in str(pytest.raises(ConfigError, load_recipe, path).value)


def test_overrides_by_dotted_path_index_and_name(write):
    recipe = load_recipe(
        write("r.yaml", VALID),
        ["seed=7", "eval.heldout.limit=50", "techniques.few.shots=4", "techniques.0.shots=1", "model.dtype=float32"],
    )
    assert recipe.seed == 7 and recipe.eval.heldout.limit == 50
    assert [t.shots for t in recipe.techniques] == [1, 4]
    assert recipe.model.dtype == "float32"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("seed", "expected key=value"),
        ("techniques.nope.shots=1", "no item 'nope'"),
        ("eval.heldout.limitt=3", "did you mean 'eval.heldout.limit'"),
    ],
)
def test_bad_overrides_explain_themselves(write, override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_recipe(write("r.yaml", VALID), [override])


def test_environment_variables_in_paths(write, monkeypatch, tmp_path):
    monkeypatch.setenv("MY_OUT", str(tmp_path / "out"))
    recipe = load_recipe(write("r.yaml", VALID + "output_dir: $MY_OUT/reports\n"))
    assert recipe.output_dir == f"{tmp_path}/out/reports"
    monkeypatch.delenv("MY_OUT")
    with pytest.raises(ConfigError, match="MY_OUT"):
        load_recipe(write("r2.yaml", VALID + "output_dir: $MY_OUT/reports\n"))


def test_too_many_shots_is_caught_before_running(write):
    write("mini/d.jsonl", "".join(f'{{"input": "q{i}", "output": "a{i}"}}\n' for i in range(10)))
    task = write("mini/task.yaml", "name: mini\ndata: {train: d.jsonl}\n").parent
    path = write("r.yaml", VALID.replace("shots: 2", "shots: 9").replace("ticket-routing", str(task)))
    load_recipe(path)  # the schema allows it...
    with pytest.raises(ConfigError, match="shots=9 but the train split has only 8"):
        _validated(str(path), [])  # ...but the task's train split is smaller


def test_a_run_started_from_python_gets_the_same_pre_flight(write, tmp_path):
    from harness import pipeline

    write("mini/d.jsonl", "".join(f'{{"input": "q{i}", "output": "a{i}"}}\n' for i in range(10)))
    task = write("mini/task.yaml", "name: mini\ndata: {train: d.jsonl}\n").parent
    text = VALID.replace("shots: 2", "shots: 9").replace("ticket-routing", str(task))
    path = write("r.yaml", text + f"output_dir: {tmp_path / 'out'}\n")
    with pytest.raises(ConfigError, match=r"^technique 'few' on task 'mini': shots=9 but the train split has only 8"):
        pipeline.run(load_recipe(path))  # no file named: the error names none
    with pytest.raises(ConfigError, match=rf"^{path}: technique 'few' on task 'mini': shots=9"):
        pipeline.run(load_recipe(path), recipe_path=str(path))  # as `harness run` starts it
    assert not (tmp_path / "out").exists()  # stopped before making a run folder


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_recipe_validates_without_loading_a_model(recipe):
    spec = _validated(str(recipe), [])
    assert spec.techniques


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_recipe_validates_from_another_folder(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _validated(os.path.relpath(recipe), []).techniques


def test_relative_paths_in_a_recipe_are_relative_to_its_folder_and_overrides_to_the_working_directory(
    tmp_path, monkeypatch
):
    """`task: ../tasks/mini` in recipes/r.yaml finds tasks/mini from the repository's root, from recipes/ and
    from anywhere else (it was looked up from the working directory); a path given on the command line is
    the working directory's; names (a bundled task, an alias, a hub id, a module) stay names."""
    shutil.copytree(REPO / "tasks" / "ticket-routing", tmp_path / "tasks" / "mini")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "kind.py").write_text("")
    (tmp_path / "recipes" / "models" / "m").mkdir(parents=True)
    (tmp_path / "recipes" / "models" / "m" / "config.json").write_text("{}")  # a model folder holds one
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text(
        VALID.replace("task: ticket-routing", "task: ../tasks/mini")
        + "model: models/m\nplugins: [kind.py, json]\noutput_dir: out\n"
        + "eval: {lm_eval: {include_path: [lm], tasks: [x]}}\ntracking: {mlflow: {uri: 'sqlite:///runs.db'}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (tmp_path, tmp_path / "recipes", elsewhere):
        monkeypatch.chdir(cwd)
        spec = _validated(os.path.relpath(recipe), [])
        assert spec.task == str(tmp_path / "tasks" / "mini")
        assert spec.model.id == str(tmp_path / "recipes" / "models" / "m")
        assert spec.plugins == [str(tmp_path / "recipes" / "kind.py"), "json"]
        assert spec.output_dir == str(tmp_path / "recipes" / "out")
        assert spec.eval.lm_eval.include_path == [str(tmp_path / "recipes" / "lm")]
        assert spec.tracking.mlflow.uri == f"sqlite:///{tmp_path / 'recipes' / 'runs.db'}"
    monkeypatch.chdir(tmp_path)
    overridden = load_recipe("recipes/r.yaml", ["task=tasks/mini", "output_dir=out", "model=random:tiny-llama"])
    assert (overridden.task, overridden.output_dir, overridden.model.id) == ("tasks/mini", "out", "random:tiny-llama")
    named = load_recipe("recipes/r.yaml", ["model=HuggingFaceTB/SmolLM2-135M", "task=ticket-routing"])
    assert (named.model.id, named.task) == ("HuggingFaceTB/SmolLM2-135M", "ticket-routing")
    recipe.write_text(VALID + "model: {id: smollm2-135m-instruct}\n")  # bundled task and alias: names
    assert (load_recipe(recipe).task, load_recipe(recipe).model.id) == ("ticket-routing", "smollm2-135m-instruct")
    recipe.write_text(VALID + "model: random:cfg/config.json\neval: {judge: {model: ./judge}}\n")
    spec = load_recipe(recipe)
    assert spec.model.id == f"random:{tmp_path / 'recipes' / 'cfg' / 'config.json'}"
    assert spec.eval.judge.model.id == str(tmp_path / "recipes" / "judge")


def test_a_recipe_path_not_found_says_where_it_looked(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text(VALID.replace("task: ticket-routing", "task: ../tasks/nope") + "plugins: [nope.py]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_recipe("recipes/r.yaml")
    assert f"plugin file {tmp_path / 'recipes' / 'nope.py'} not found (a path in a recipe is relative to" in str(
        error.value
    )
    recipe.write_text(VALID.replace("task: ticket-routing", "task: ../tasks/nope"))
    with pytest.raises(ConfigError, match=f"no {tmp_path / 'tasks' / 'nope' / 'task.yaml'}"):
        _validated("recipes/r.yaml", [])
