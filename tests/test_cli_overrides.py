"""`run` and `validate` take overrides the same ways (KEY=VALUE words after the recipe, or --set KEY=VALUE),
parse them with one parser and reject a bad one with the same message."""

import json

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness.cli import _validated

PROMPT_ONLY = "  - {name: zero, kind: prompt}\n"
BAD_OVERRIDES = {
    "techniques.0.shotz=1": "unknown key 'techniques.0.shotz' (did you mean 'techniques.0.shots'?)",
    "=3": "override '=3': expected key=value",
    "eval.heldout.limit=lots": "eval.heldout.limit",
}


def error_line(result) -> str:
    return next(line for line in result.output.splitlines() if line.startswith("error:"))


@pytest.mark.parametrize("override", list(BAD_OVERRIDES))
def test_a_bad_override_gets_the_same_error_from_run_and_validate_in_either_form(
    override, write, tiny_model_dir, tmp_path
):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", PROMPT_ONLY))
    forms = {
        (command, form): run_cli(command, recipe, *([override] if form == "word" else ["--set", override]))
        for command in ("run", "validate")
        for form in ("word", "--set")
    }
    for result in forms.values():
        assert result.exit_code == 2, result.output
        assert BAD_OVERRIDES[override] in result.output
    assert len({error_line(result) for result in forms.values()}) == 1, {k: r.output for k, r in forms.items()}
    assert not (tmp_path / "out").exists()  # run stopped before making a run folder


def test_validate_applies_override_words_and_set_to_every_recipe(write, tiny_model_dir, tmp_path):
    first = write("a.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", PROMPT_ONLY))
    oddly_named = write("b=c.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", PROMPT_ONLY))  # a file: a recipe
    words = run_cli("validate", first, "task=product-catalogue", oddly_named)
    with_set = run_cli("validate", first, oddly_named, "--set", "task=product-catalogue")
    assert words.exit_code == 0, words.output
    assert words.output == with_set.output
    assert words.output.count("on product-catalogue") == 2, words.output


def test_run_stores_the_recipe_validate_checks_with_the_same_overrides(write, tiny_model_dir, tmp_path):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", PROMPT_ONLY))
    overrides = ["seed=3", "eval.heldout.limit=4"]
    result = run_cli("run", recipe, overrides[0], "--set", overrides[1])
    assert result.exit_code == 0, result.output
    stored = json.loads((only_run_dir(tmp_path / "out") / "results.json").read_text())["meta"]["recipe"]
    assert stored == _validated(str(recipe), overrides).model_dump(mode="json")
    assert stored["seed"] == 3 and stored["eval"]["heldout"]["limit"] == 4


def test_run_takes_one_recipe_and_no_overrides_on_resume(write, tiny_model_dir, tmp_path):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", PROMPT_ONLY))
    two = run_cli("run", recipe, recipe)
    assert two.exit_code == 2 and "one RECIPE at a time" in two.output
    resumed = run_cli("run", "--resume", tmp_path, "--set", "seed=1")
    assert resumed.exit_code == 2 and "--resume reuses the stored recipe" in resumed.output
