"""lm-eval through HFLM on models in memory: the bundled general-ability task, base and LoRA-wrapped,
and the clear errors for tasks that cannot run."""

import pytest

from harness import models
from harness.config import LmEvalSettings, ModelSpec
from harness.evaluate import lmeval

KEYS = [
    "lm_eval:general_ability:acc",
    "lm_eval:general_ability:acc_stderr",
    "lm_eval:general_ability:acc_norm",
    "lm_eval:general_ability:acc_norm_stderr",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return models.load(ModelSpec(id=str(tiny_model_dir), dtype="float32"), "cpu")


def test_bundled_task_scores_the_base_model(tiny):
    model, tokenizer = tiny
    values, errors = lmeval.score(model, tokenizer, LmEvalSettings(tasks=["general_ability"], limit=8, batch_size=4))
    assert errors == {}
    assert sorted(values) == sorted([*KEYS, "lm_eval_samples"])
    assert values["lm_eval:general_ability:acc"] in {i / 8 for i in range(9)}  # 8 items scored
    # each item's value (log_samples), for the paired test against the base model: their mean is the figure
    items = values["lm_eval_samples"]
    assert sorted(items) == ["general_ability:acc", "general_ability:acc_norm"]
    for figure, by_item in items.items():
        assert sorted(by_item) == [f"general_ability/{i}" for i in range(8)]
        assert sum(by_item.values()) / 8 == pytest.approx(values[f"lm_eval:{figure}"])
    assert 0 < values["lm_eval:general_ability:acc_stderr"] < 0.5
    assert tokenizer.padding_side == "left"  # restored for generation


def test_bundled_task_scores_a_lora_wrapped_model(tiny):
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    settings = LmEvalSettings(tasks=["general_ability"], limit=8, batch_size=4)
    base, _ = lmeval.score(model, tokenizer, settings)
    wrapped = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    try:
        for name, param in wrapped.named_parameters():
            if "lora_" in name:
                torch.nn.init.normal_(param, std=1.0)  # an update larger than the weights: scores must move
        lora, errors = lmeval.score(wrapped, tokenizer, settings)
    finally:
        wrapped.unload()
    assert errors == {} and sorted(lora) == sorted([*KEYS, "lm_eval_samples"])
    assert lora != base  # the adapters were in the forward pass


def test_unknown_and_unavailable_tasks_fail_clearly_and_the_others_run(tiny, tmp_path):
    (tmp_path / "missing_data.yaml").write_text(
        "task: missing_data\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'nowhere.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\n"
        "doc_to_choice: '{{c}}'\ndoc_to_target: 0\n"
    )
    model, tokenizer = tiny
    failed = {}
    settings = LmEvalSettings(
        tasks=["missing_data", "general_abilty", "general_ability"], limit=4, include_path=[str(tmp_path)]
    )
    values, errors = lmeval.score(model, tokenizer, settings, failed=failed)
    assert "lm_eval:general_ability:acc" in values
    assert set(errors) == {"missing_data", "general_abilty"} and failed == errors
    assert errors["missing_data"].startswith("lm-eval task 'missing_data' could not run")
    assert "local files" in errors["missing_data"]
    assert "unknown lm-eval task 'general_abilty'" in errors["general_abilty"]
    assert "Did you mean: general_ability" in errors["general_abilty"]
