"""kind: peft — any peft method by name, on the tiny model: a real run, what prompt tuning trains, and
the recipe errors for methods, settings and 4-bit."""

import json

import pytest
import torch
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import models, train
from harness.config import ModelSpec, Recipe, TrainSettings, load_recipe
from harness.searchspace import apply_params
from harness.tasks import load_task
from harness.techniques.finetune import parameter_counts
from harness.techniques.peft_method import allocation_callback, peft_config
from harness.yamlconfig import ConfigError

FAST = TrainSettings(max_steps=3, batch_size=4, learning_rate=3e-2, logging_steps=1, warmup_ratio=0.0, precision="fp32")

TWO_METHODS = """\
  - name: prompt-tuning
    kind: peft
    method: prompt_tuning
    settings: {num_virtual_tokens: 8}
    train: {max_steps: 3, batch_size: 4, logging_steps: 1}
  - {name: ia3, kind: peft, method: IA3, train: {max_steps: 3, batch_size: 4, logging_steps: 1}}
"""


def test_a_run_with_prompt_tuning_and_ia3(write, tiny_model_dir, tmp_path):
    recipe = write("r.yaml", tiny_recipe(tiny_model_dir, tmp_path / "out", TWO_METHODS))
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    rows = {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    for name in ("prompt-tuning", "ia3"):
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert row["kind"] == "peft" and row["train_steps"] == 3 and row["n_eval"] == 12
        assert 0 < row["trainable_params"] < 0.05 * row["total_params"]
        assert row["train_loss_first"] is not None and row["train_loss_last"] is not None
        predictions = (run_dir / "predictions" / f"{name}.jsonl").read_text().splitlines()
        assert len(predictions) == 12
        assert (run_dir / "artifacts" / f"{name}.seed-0" / "adapter_config.json").is_file()
    assert rows["prompt-tuning"]["trainable_params"] == 8 * 64  # virtual tokens x hidden size
    adapter = json.loads((run_dir / "artifacts" / "ia3.seed-0" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "IA3" and adapter["task_type"] == "CAUSAL_LM"
    assert "| prompt-tuning | peft | ok |" in (run_dir / "REPORT.md").read_text()


def test_prompt_tuning_trains_its_virtual_tokens_only(tiny_model_dir):
    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):  # the virtual tokens as training starts
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.prompt = model.prompt_encoder["default"].embedding.weight.detach().clone()

    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    base = {name: param.detach().clone() for name, param in model.named_parameters()}
    config, snapshot = peft_config("prompt_tuning", {"num_virtual_tokens": 8}), Snapshot()
    trained, stats, _ = train.train(
        model,
        tokenizer,
        load_task("ticket-routing"),
        FAST,
        "peft",
        device="cpu",
        seed=0,
        peft_config=config,
        callbacks=[snapshot],
    )
    assert stats.steps == 3 and len(stats.losses) == 3
    trainable, _ = parameter_counts(trained)
    assert trainable == 8 * model.config.hidden_size
    assert [n for n, p in trained.named_parameters() if p.requires_grad] == ["prompt_encoder.default.embedding.weight"]
    after = dict(trained.get_base_model().named_parameters())
    assert after.keys() == base.keys()
    for name, param in after.items():
        assert torch.equal(param, base[name]), name
    assert not torch.equal(trained.prompt_encoder["default"].embedding.weight, snapshot.prompt)  # the tokens moved


def test_adalora_reallocates_its_ranks_while_training(tiny_model_dir):
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu", torch.float32)
    config = peft_config("adalora", {"init_r": 4, "target_r": 2}, FAST)
    assert config.total_step == 3  # from train.max_steps
    trained, _, _ = train.train(
        model,
        tokenizer,
        load_task("ticket-routing"),
        FAST,
        "peft",
        device="cpu",
        seed=0,
        peft_config=config,
        callbacks=[allocation_callback()],
    )
    assert trained.peft_config["default"].rank_pattern  # update_and_allocate ran after optimizer steps


def recipe_error(write, technique: str) -> str:
    path = write("r.yaml", f"name: x\ntask: ticket-routing\ntechniques:\n  - {technique}\n")
    return str(pytest.raises(ConfigError, load_recipe, path).value).replace(f"{path}:", "r.yaml:")


def test_recipe_errors_name_the_method_the_setting_and_the_fix(write):
    message = recipe_error(write, "{name: p, kind: peft, method: promt_tuning}")
    assert "r.yaml:4: techniques.0.method: " in message
    assert "unknown peft method 'promt_tuning' (did you mean 'prompt_tuning'?); known: " in message
    assert "ia3" in message and "prefix_tuning" in message

    message = recipe_error(write, "{name: p, kind: peft, method: prompt_tuning, settings: {num_virtual_tokenz: 8}}")
    assert "r.yaml:4: techniques.0.settings: " in message
    assert (
        "unknown setting 'settings.num_virtual_tokenz' for prompt_tuning (PromptTuningConfig) "
        "(did you mean 'settings.num_virtual_tokens'?)"
    ) in message
    message = recipe_error(write, "{name: p, kind: peft, method: loha, settings: {rank: 4}}")
    assert "unknown setting 'settings.rank' for loha (LoHaConfig); known: " in message
    assert {"r", "alpha", "target_modules"} <= set(message.split("known: ")[1].split(" (got")[0].split(", "))

    message = recipe_error(write, "{name: p, kind: peft, method: prompt_tuning, quantize_4bit: true}")
    assert "r.yaml:4: techniques.0.quantize_4bit: " in message
    assert "peft has no 4-bit (bitsandbytes) layers for prompt_tuning; quantize_4bit works with: " in message
    assert "lora" in message.split("works with:")[1] and "ia3" in message.split("works with:")[1]

    assert "settings.task_type: always CAUSAL_LM" in recipe_error(
        write, "{name: p, kind: peft, method: lora, settings: {task_type: SEQ_CLS}}"
    )
    assert "settings.num_virtual_tokens: Input should be a valid integer" in recipe_error(
        write, "{name: p, kind: peft, method: p_tuning, settings: {num_virtual_tokens: many}}"
    )
    assert "boft: BOFTConfig rejects settings.boft_block_num: You can only specify either" in recipe_error(
        write, "{name: p, kind: peft, method: boft, settings: {boft_block_size: 4, boft_block_num: 4}}"
    )
    assert "give settings.total_step, or train.max_steps" in recipe_error(
        write, "{name: p, kind: peft, method: adalora}"
    )
    assert "needs a task id with every example" in recipe_error(write, "{name: p, kind: peft, method: poly}")


def test_validate_reports_a_peft_error_through_the_cli(write):
    path = write("r.yaml", "name: x\ntask: ticket-routing\ntechniques:\n  - {name: p, kind: peft, method: ia4}\n")
    result = run_cli("validate", path)
    output = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2
    assert f"{path}:4: techniques.0.method: " in output and "unknown peft method 'ia4' (did you mean 'ia3'?)" in output


def test_a_peft_recipe_survives_the_json_round_trip_the_worker_makes(write):
    techniques = """\
  - {name: pt, kind: peft, method: Prompt-Tuning, settings: {num_virtual_tokens: 4, prompt_tuning_init: RANDOM}}
  - name: q
    kind: peft
    method: lora
    quantize_4bit: true
    quantization: {quant_type: fp4}
    settings: {r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}
    train: {max_steps: 2}
  - {name: ada, kind: peft, method: adalora, train: {max_steps: 5}}
"""
    recipe = load_recipe(write("r.yaml", f"name: x\ntask: ticket-routing\ntechniques:\n{techniques}"))
    assert recipe.technique("pt").method == "prompt_tuning"  # lower-cased, one spelling stored
    data = recipe.model_dump(mode="json")
    assert data["techniques"][1]["settings"] == {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    assert Recipe.model_validate(json.loads(json.dumps(data))) == recipe
    # a search trial's params go through the same schema (searchspace.apply_params)
    assert apply_params(recipe.technique("pt"), {"settings.num_virtual_tokens": 2}).settings["num_virtual_tokens"] == 2
    with pytest.raises(ConfigError, match="settings.r: Input should be a valid integer"):
        apply_params(recipe.technique("q"), {"settings.r": "eight"})


def test_lm_eval_reads_a_prompt_tuned_models_logits_at_the_inputs_positions(tiny_model_dir, monkeypatch):
    from peft import get_peft_model

    from harness.config import LmEvalSettings
    from harness.evaluate import lmeval

    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir), dtype="float32"), "cpu")
    tuned = get_peft_model(model, peft_config("prompt_tuning", {"num_virtual_tokens": 8}))
    inputs = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        full = tuned(inputs).logits
    assert full.shape[1] == 8 + 5  # peft returns the virtual tokens' logits first

    class LM:  # lm-eval's HFLM as drop_virtual_tokens sees it
        def _model_call(self, inps, attn_mask=None, labels=None):
            with torch.no_grad():
                return tuned(inps).logits

    lm = LM()
    lmeval.drop_virtual_tokens(lm)
    assert torch.equal(lm._model_call(inputs), full[:, 8:])

    dropped, original = [], lmeval.drop_virtual_tokens
    monkeypatch.setattr(lmeval, "drop_virtual_tokens", lambda lm: (dropped.append(lm), original(lm)))
    settings = LmEvalSettings(tasks=["general_ability"], limit=4, batch_size=4)
    _, errors = lmeval.score(model, tokenizer, settings)  # prompt tuning leaves the base model's layers as they were
    assert errors == {} and not dropped  # a model without virtual tokens is read as it is
    values, errors = lmeval.score(tuned, tokenizer, settings)
    assert errors == {} and len(dropped) == 1 and values["lm_eval:general_ability:acc"] is not None
