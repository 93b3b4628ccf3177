"""The extension contract: a technique kind is one file and one registration (harness/kinds.py)."""

import json
import sys
from typing import Literal

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import kinds
from harness.config import TechniqueBase, TrainedTechnique, load_recipe
from harness.yamlconfig import ConfigError

# A kind written as a user would, in a file of its own: the base model with a system prompt of the
# recipe's choosing. Nothing else in the harness is edited to add it.
TOY_KIND = """
from typing import Literal

from harness import kinds, prompting
from harness.config import TechniqueBase
from harness.evaluate.phase import evaluate_heldout
from harness.figures import Figure


class InstructedTechnique(TechniqueBase):
    kind: Literal["instructed"]
    instruction: str = "Answer with one word."


def run_instructed(spec, ctx):
    model, tokenizer = ctx.base_model()
    def prompt_for(example):
        messages = prompting.messages(ctx.task, example)
        messages[0] = {"role": "system", "content": spec.instruction}
        return prompting.render(tokenizer, messages)
    outcome = evaluate_heldout(ctx, spec.name, model, tokenizer, prompt_for)
    outcome.values.update(trainable_params=0, instruction_words=len(spec.instruction.split()))
    return outcome


kinds.register(kinds.Kind("instructed", InstructedTechnique, run_instructed, "a custom system prompt",
                          reads_base_model=True,
                          figures=(Figure("instruction_words", "words in the instruction", "count"),)))
"""


@pytest.fixture
def toy_plugin(write):
    path = write("instructed_kind.py", TOY_KIND)
    yield path
    # the registry is process-wide: the next test loads the plugin afresh, and others never see it
    kinds.KINDS._items.pop("instructed", None)
    sys.modules.pop("harness_plugin_instructed_kind", None)


def test_a_kind_added_by_a_plugin_file_alone_runs_end_to_end(toy_plugin, write, tiny_model_dir, tmp_path):
    techniques = (
        "  - {name: plain, kind: prompt}\n"
        "  - {name: told, kind: instructed, instruction: Reply with the team name only.}\n"
    )
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", techniques, f"plugins: [{toy_plugin}]"))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    rows = {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    told = rows["told"]
    assert told["status"] == "ok", told["error"]
    assert told["kind"] == "instructed" and told["n_eval"] == 12 and told["instruction_words"] == 6
    assert told["ci_low"] <= told["score"] <= told["ci_high"]
    # reads_base_model: it shared the prompt technique's process and loaded model
    cells = json.loads((run_dir / "results.json").read_text())["cells"]
    assert {c["technique"] for c in cells} >= {"plain", "told"}
    # its figure travels with the kind: labelled in the report, checkable by `check:`, known to compare
    from harness import figures

    assert figures.get("instruction_words").label == "words in the instruction"
    assert "instruction_words" in figures.known()
    assert "| told | instructed | ok |" in (run_dir / "REPORT.md").read_text()


def test_a_row_key_that_nothing_declares_is_found():
    from harness.rows import make_row, undeclared

    # shared figures, an lm-eval score, a secondary metric and a descriptive field are declared for any kind
    row = make_row(
        "t", "lora", "ok", train_loss_last=1.0, judge_model="m", score_accuracy=0.5, **{"lm_eval:x:acc": 0.1}
    )
    assert undeclared(row) == []
    # a kind's own figure belongs to that kind alone
    assert undeclared(make_row("t", "cpt", "ok", cpt_blocks=3, cpt_adapter="lora")) == []
    assert undeclared(make_row("t", "lora", "ok", cpt_blocks=3, made_up=1)) == ["cpt_blocks", "made_up"]


def test_a_plugin_kinds_settings_get_the_usual_recipe_errors(toy_plugin, write):
    base = f"name: x\ntask: ticket-routing\nplugins: [{toy_plugin}]\ntechniques:\n"
    path = write("a.yaml", base + "  - {name: t, kind: instructed, instructoin: hi}\n")
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert f"{path}:5: unknown key 'techniques.0.instructoin' (did you mean 'techniques.0.instruction'?)" in message
    path = write("b.yaml", base + "  - {name: t, kind: instructd}\n")
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert "techniques.0.kind: unknown value 'instructd' (did you mean 'instructed'?)" in message


def test_without_the_plugin_the_kind_is_unknown_and_a_missing_plugin_is_named(write):
    path = write("a.yaml", "name: x\ntask: ticket-routing\ntechniques:\n  - {name: t, kind: instructed}\n")
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert "unknown value 'instructed'; known: prompt, rag, full, lora, qlora" in message
    path = write(
        "b.yaml", "name: x\ntask: ticket-routing\nplugins: [./nowhere.py]\ntechniques:\n  - {name: t, kind: prompt}\n"
    )
    # a path in a recipe is its folder's, and the error names where it looked
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert f"plugin file {path.parent / 'nowhere.py'} not found" in message


def test_the_descriptor_is_checked_when_a_kind_registers():
    class NoKind(TechniqueBase):
        pass

    class Trained(TrainedTechnique):
        kind: Literal["trained-toy"]

    with pytest.raises(TypeError, match="needs `kind: Literal"):
        kinds.Kind("nokind", NoKind, lambda spec, ctx: None)
    with pytest.raises(TypeError, match="needs a default_learning_rate"):
        kinds.Kind("trained-toy", Trained, lambda spec, ctx: None, trained=True)
    with pytest.raises(ValueError, match="registered twice"):
        kinds.register(kinds.get("lora"))


def test_every_builtin_kind_describes_itself():
    for name in kinds.known():
        kind = kinds.get(name)
        assert kind.description and kind.settings.model_fields["kind"].annotation.__args__ == (name,)
        assert kind.trained == (kind.default_learning_rate is not None)


def test_retrievers_are_a_registry_too(write):
    from harness import retrieval

    path = write(
        "r.yaml",
        "name: x\ntask: product-catalogue\ntechniques:\n  - {name: r, kind: rag, retrieval: {retriever: bm52}}\n",
    )
    message = str(pytest.raises(ConfigError, load_recipe, path).value)
    assert "unknown retriever 'bm52' (did you mean 'bm25'?); known: bm25, dense, hybrid" in message

    class FirstChunks:  # a toy retriever: the first k chunks for every query
        def __init__(self, chunks):
            self.chunks = chunks

        def search(self, queries, k):
            return [list(range(min(k, len(self.chunks))))] * len(queries)

    retrieval.RETRIEVERS.add("first", lambda chunks, model, device, cache: FirstChunks(chunks))
    try:
        path = write(
            "s.yaml",
            "name: x\ntask: product-catalogue\ntechniques:\n"
            "  - {name: r, kind: rag, retrieval: {retriever: first, k: 2}}\n",
        )
        assert load_recipe(path).techniques[0].retrieval.retriever == "first"
        chunks = retrieval.chunk_documents([("a", "one two three"), ("b", "four five")], 8, 2)
        built = retrieval.build_retriever("first", chunks, embedding_model="", device="cpu", cache_root=None)
        assert built.search(["q"], 2) == [[0, 1]]
    finally:
        retrieval.RETRIEVERS._items.pop("first")


def test_harness_kinds_lists_every_kind_metric_and_retriever():
    from harness import executors, tracking

    result = run_cli("kinds")
    assert result.exit_code == 0, result.output
    for name in [*kinds.known(), "rouge_l", "hybrid", *executors.known(), *tracking.known()]:
        assert name in result.output


def test_what_a_kind_needs_from_a_task_decides_whether_it_applies_the_same_way_for_every_kind(write):
    """Each kind's `needs` (not a special case per kind in the worker) names what a task lacks, and a
    technique that starts from one that does not apply does not apply either."""
    from harness.tasks import load_task

    recipe = load_recipe(
        write(
            "r.yaml",
            "name: x\ntask: ticket-routing\ntechniques:\n  - {name: zero, kind: prompt}\n"
            "  - {name: rag, kind: rag}\n  - {name: cpt, kind: cpt}\n  - {name: dpo, kind: dpo}\n"
            "  - {name: rl, kind: grpo, init_from: dpo}\n"
            "  - {name: hosted, kind: api, base_url: 'https://api.example.com/v1', model: m, retrieval: {}}\n",
        )
    )
    routing, catalogue, replies = map(load_task, ("ticket-routing", "product-catalogue", "support-replies"))
    reasons = {t.name: kinds.inapplicable(t, routing, recipe) for t in recipe.techniques}
    assert reasons["zero"] is None
    for name in ("rag", "cpt", "hosted"):
        assert reasons[name].startswith(f"task 'ticket-routing' has no corpus, which {name!r} needs")
    assert "has no preference pairs, which 'dpo' needs (kind dpo); fix: add `fields: {chosen:" in reasons["dpo"]
    assert reasons["rl"] == f"'rl' starts from 'dpo', which does not apply: {reasons['dpo']}"
    assert all(kinds.inapplicable(t, replies, recipe) is None for t in recipe.techniques if t.kind in ("dpo", "grpo"))
    assert kinds.inapplicable(recipe.technique("cpt"), catalogue, recipe) is None


def test_validate_names_the_techniques_a_run_will_skip_and_why(write):
    text = "name: x\ntask: [ticket-routing, support-replies]\ntechniques:\n  - {name: zero, kind: prompt}\n"
    result = run_cli("validate", write("r.yaml", text + "  - {name: dpo, kind: dpo}\n"))
    assert result.exit_code == 0, result.output
    assert "skipped when run: dpo on ticket-routing: task 'ticket-routing' has no preference pairs" in result.output
    assert "on support-replies" not in result.output and "zero on" not in result.output
