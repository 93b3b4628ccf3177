"""Bad recipe values: `harness validate` answers each with one error naming the file, the line and the fix
(exit code 2), never a traceback (run_cli lets any other exception through) and never `ok` for a value
that would mean nothing (a boolean as a number, an unbounded count, a negative price, a misspelt device).
Bad task data has its own table in test_task_errors.py; stored results that were not written by the
harness are the tests at the end."""

import json
import shutil

import pytest
from conftest import REPO, run_cli, tiny_recipe

PROMPT = "name: t\ntask: ticket-routing\ntechniques:\n  - {name: zero, kind: prompt}\n"  # line 5 is the case's
LORA = "name: t\ntask: ticket-routing\ntechniques:\n  - name: l\n    kind: lora\n"  # line 6 is the case's

# case: (recipe text, overrides, line of the error, what the error says)
CASES = {
    "complex key": (PROMPT + "? [a, b]\n: 1\n", [], 5, "a key must be a name, not a list"),
    "negative seed": (PROMPT + "seed: -1\n", [], 5, "seed: a seed is a whole number from 0 to 4294967295"),
    "seed over 32 bits": (PROMPT + f"seed: {2**32}\n", [], 5, "seed: a seed is a whole number"),
    "boolean seed": (PROMPT + "seeds: [true]\n", [], 5, "seeds.0: a number is needed, not a boolean"),
    "negative validation seed": (
        PROMPT + "eval: {validation: {fraction: 0.2, seed: -1}}\n",
        [],
        5,
        "eval.validation.seed: a seed is a whole number",
    ),
    "max_steps: yes": (LORA + "    train: {max_steps: yes}\n", [], 6, "max_steps: a number is needed, not a boolean"),
    "huge learning rate": (LORA + "    train: {learning_rate: 1000}\n", [], 6, "at most 1.0: a step that large"),
    "infinite learning rate": (LORA + "    train: {learning_rate: .inf}\n", [], 6, "finite number"),
    # found by bench/probe_recipes.py (1,840 seeded mutations): the one meaningless value accepted
    "huge batch": (LORA + "    train: {batch_size: 1000000000000}\n", [], 6, "at most 65536: a batch is held"),
    "no LoRA target modules": (LORA + "    lora: {target_modules: []}\n", [], 6, "give at least one module name"),
    "endless bootstrap": (
        PROMPT + "eval: {heldout: {bootstrap_samples: 1000000000000}}\n",
        [],
        5,
        "bootstrap_samples: at most 100000",
    ),
    "negative price": (PROMPT + "cost: {usd_per_hour: {cpu: -1}}\n", [], 5, "greater than or equal to 0"),
    "negative electricity price": (PROMPT + "cost: {usd_per_kwh: -0.2}\n", [], 5, "greater than or equal to 0"),
    "infinite electricity price": (PROMPT + "cost: {usd_per_kwh: .inf}\n", [], 5, "finite number"),
    "misspelt price key": (
        PROMPT + "cost: {usd_per_hour: {cdua: 2.5}}\n",
        [],
        5,
        "unknown device 'cdua' (did you mean 'cuda'?)",
    ),
    "negative GPUs": (PROMPT + "executor: {gpus_per_cell: -1}\n", [], 5, "cannot ask for -1 GPUs"),
    "negative GPUs of a kind": (PROMPT + "executor: {gpus_per_cell: {prompt: -1}}\n", [], 5, "-1 GPUs (prompt)"),
    "more cores than the machine": (PROMPT + "executor: {cpus_per_cell: 100000}\n", [], None, "this machine has"),
    "a model folder without a model": (PROMPT + "model: /etc\n", [], None, "/etc has no config.json"),
    "output_dir a device": (PROMPT + "output_dir: /dev/null\n", [], None, "output_dir: /dev/null is not a folder"),
    "output_dir under a file": (PROMPT + "output_dir: /etc/hostname/runs\n", [], None, "/etc/hostname is not one"),
    "override that is not YAML": (
        PROMPT,
        ["techniques.zero.name={x"],
        None,
        "override 'techniques.zero.name={x': the value is not valid YAML",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_recipe_value_is_one_error_naming_line_and_fix(write, case):
    text, overrides, line, message = CASES[case]
    path = write("r.yaml", text)
    result = run_cli("validate", path, *overrides)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    if line is not None:
        assert f"{path}:{line}: " in result.output, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_numbers_yaml_reads_as_text_and_booleans_where_they_are_meant_still_pass(write):
    # YAML 1.1 reads 1e-4 as a string (pydantic parses it), and a boolean setting or search choice stays one
    path = write(
        "r.yaml",
        LORA
        + "    train: {learning_rate: 1e-4, gradient_checkpointing: yes}\n"
        + "    search: {trials: 2, space: {lora.use_dora: [true, false]}}\n"
        + "eval: {validation: {fraction: 0.2}}\nseeds: [0, 4294967295]\n",
    )
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output


def copy_run(tmp_path, name="run"):
    """A finished single-task run folder (the committed demo example's ticket-routing run)."""
    return shutil.copytree(REPO / "reports/demo-example/ticket-routing", tmp_path / name)


def edit_results(run_dir, change):
    path = run_dir / "results.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_plot_that_cannot_be_written_leaves_the_report_written(tmp_path):
    # the plots folder cannot be written (here a file stands in its place): the plots fail, not REPORT.md
    import shutil

    run_dir = copy_run(tmp_path)
    shutil.rmtree(run_dir / "plots", ignore_errors=True)
    (run_dir / "plots").write_text("not a folder")
    (run_dir / "REPORT.md").unlink()
    result = run_cli("report", run_dir)
    assert result.exit_code == 0, result.output
    assert "left out of the report" in result.output
    assert "## Recommendation" in (run_dir / "REPORT.md").read_text()


@pytest.mark.parametrize("command", ["report", "check"])
def test_a_technique_name_that_is_a_path_is_an_error_not_a_read_elsewhere(tmp_path, command):
    run_dir = copy_run(tmp_path)
    (run_dir / "evil.jsonl").write_text('{"x": 1}\n')  # what predictions/../evil.jsonl would read

    def rename(data):
        for row in data["rows"] + data["cells"]:
            if row["technique"] == "zero-shot":
                row["technique"] = "../evil"

    edit_results(run_dir, rename)
    args = [command, run_dir] + (["--baseline", copy_run(tmp_path, "base")] if command == "check" else [])
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert "technique '../evil' is not a plain file name" in result.output


def test_a_predictions_file_without_example_ids_is_an_error(tmp_path):
    run_dir = copy_run(tmp_path)
    (run_dir / "predictions/zero-shot.jsonl").write_text('{"x": 1}\n')
    result = run_cli("report", run_dir)
    assert result.exit_code == 2, result.output
    assert "zero-shot.jsonl:1: not a prediction (no example 'id')" in result.output


def test_lora_target_modules_the_model_lacks_stop_the_run_before_any_cell(tiny_model_dir, tmp_path, write):
    from harness import preflight
    from harness.config import load_recipe

    out = tmp_path / "out"
    techniques = "  - {name: l, kind: lora, lora: {target_modules: [q_proj, nope]}}"
    path = write("r.yaml", tiny_recipe(tiny_model_dir, out, techniques))
    result = run_cli("run", path)
    assert result.exit_code == 2, result.output
    assert "technique 'l': lora.target_modules 'nope' names no module of" in result.output
    assert not out.exists()  # no run folder: nothing ran
    fixed = load_recipe(path, ["techniques.l.lora.target_modules=[q_proj, v_proj]"])
    preflight.check_lora_targets(fixed)  # names of the model's layers pass
