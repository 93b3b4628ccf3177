"""Multi-turn chat data (format chat: OpenAI-style messages; format sharegpt: conversations of {from, value}):
evaluation answers the last assistant turn with the earlier turns as context, training learns every
assistant turn and nothing else, and a record the loader cannot read is an error that shows it."""

import json

import pytest
from conftest import run_rows, tiny_recipe

from harness import models, prompting, train
from harness.config import ModelSpec, TrainSettings
from harness.tasks import load_task
from harness.yamlconfig import ConfigError

SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def conversation(i: int) -> list[tuple[str, str]]:
    """(role, text) turns of conversation i: a system turn, then three user/assistant exchanges."""
    return [
        ("system", "You route support tickets."),
        ("user", f"Hello, ticket {i} here."),
        ("assistant", f"Hi {i}, what is it about?"),
        ("user", "My card was charged twice."),
        ("assistant", "That is a billing matter."),
        ("user", "Which team then?"),
        ("assistant", "billing" if i % 2 else "account"),
    ]


def record(turns, format: str) -> dict:
    if format == "chat":
        return {"messages": [{"role": role, "content": text} for role, text in turns]}
    return {"conversations": [{"from": SHAREGPT_ROLE[role], "value": text} for role, text in turns]}


def chat_task(write, format: str, records=None, name="chats"):
    records = records if records is not None else [record(conversation(i), format) for i in range(8)]
    write(f"{name}/d.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    yaml = f"name: {name}\ndata: {{train: d.jsonl, format: {format}, test_fraction: 0.25}}\nmetric: exact_match\n"
    return write(f"{name}/task.yaml", yaml).parent


@pytest.mark.parametrize("format", ["sharegpt", "chat"])
def test_training_learns_every_assistant_turn_and_nothing_else(tiny_model_dir, write, tmp_path, format):
    task = load_task(str(chat_task(write, format)))
    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu")
    settings = TrainSettings(max_steps=1, batch_size=4, limit=2, precision="fp32")
    trainer = train.make_trainer(model, tokenizer, task, settings, "full", device="cpu", seed=0, work_dir=tmp_path)
    assert len(trainer.train_dataset) == 2 * 3 and trainer.train_examples == 2  # a record per assistant turn
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])  # the first conversation's
    records, _ = train.sft_records(task, settings)
    answers = [text for role, text in task.train[0].history if role == "assistant"] + [task.train[0].output]
    for row, (labels, ids) in enumerate(zip(batch["labels"], batch["input_ids"])):
        prompt, completion = records[row]["prompt"], records[row]["completion"]
        # token by token: every prompt token (system, earlier turns, the assistant header) is masked, every
        # token of this assistant turn and its end-of-turn is a label, and padding is masked
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
        full_ids = tokenizer.apply_chat_template(prompt + completion, return_dict=True)["input_ids"]
        expected = [-100] * len(prompt_ids) + full_ids[len(prompt_ids) :]
        expected += [-100] * (len(labels) - len(expected))
        assert labels.tolist() == expected
        assert ids[: len(full_ids)].tolist() == full_ids
        assert tokenizer.decode(labels[labels != -100]) == answers[row] + "<|im_end|>\n"
        assert [t["content"] for t in prompt if t["role"] == "assistant"] == answers[:row]  # earlier answers: context


def test_a_multi_turn_prompt_has_the_earlier_turns_in_order_and_ends_at_the_last_user_turn(tiny_model_dir, write):
    task = load_task(str(chat_task(write, "sharegpt")))
    example, shot = task.test[0], task.train[0]
    turns = prompting.messages(task, example, shots=[shot], augment=lambda e, q: f"[passage]\n{q}")
    assert [t["role"] for t in turns] == ["system"] + ["user", "assistant"] * 3 + ["user", "assistant"] * 2 + ["user"]
    assert turns[0]["content"] == "You route support tickets."
    # the shot (a whole solved conversation) first, then this example's earlier turns in order, then its question
    assert [t["content"] for t in turns[1:7]] == [*(text for _, text in shot.history), shot.input, shot.output]
    assert [(t["role"], t["content"]) for t in turns[7:11]] == list(example.history)
    assert example.history[0][1].startswith("Hello, ticket") and len(example.history) == 4
    assert turns[-1] == {"role": "user", "content": "[passage]\nWhich team then?"}  # RAG: the last user turn only
    assert example.output not in {t["content"] for t in turns[7:]}
    _, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu")
    rendered = prompting.render(tokenizer, prompting.messages(task, example))
    assert (
        rendered.index(example.history[0][1])
        < rendered.index(example.history[1][1])
        < rendered.index("Which team then?")
    )
    assert rendered.endswith("<|im_start|>user\nWhich team then?<|im_end|>\n<|im_start|>assistant\n")
    judged = prompting.question_text(task, example)  # what a judge reads: the conversation, then the question
    assert judged.startswith(f"User: {example.history[0][1]}") and judged.endswith("User: Which team then?")


def long_turns(text: str) -> list[tuple[str, str]]:
    return [("user", text), ("assistant", "ok")]


BAD_RECORDS = {
    "sharegpt data under format chat": (
        "chat",
        record(long_turns("hi"), "sharegpt"),
        r"no 'messages' list of turns; the record has 'conversations': set `data.format: sharegpt`",
    ),
    "messages under format sharegpt": (
        "sharegpt",
        record(long_turns("hi"), "chat"),
        r"set `data.format: chat` in task.yaml \(\{\"messages\"",
    ),
    "a record of neither shape": (
        "sharegpt",
        {"prompt": "hi", "answer": "ok"},
        r"no 'conversations' list of turns; expected \{\"conversations\": \[\{\"from\": \"system\"\|\"human\"\|\"gpt\"",
    ),
    "two user turns in a row": (
        "chat",
        record([("user", "a"), ("user", "b"), ("assistant", "c")], "chat"),
        r"must alternate user and assistant.*this record's are user, user, assistant",
    ),
    "ending on a user turn": (
        "sharegpt",
        record([("user", "a"), ("assistant", "b"), ("user", "c")], "sharegpt"),
        r"ending with the assistant's answer; this record's are user, assistant, user",
    ),
    "an unknown role": (
        "sharegpt",
        {"conversations": [{"from": "bot", "value": "hi"}, {"from": "gpt", "value": "ok"}]},
        r"turn 1 has from 'bot'; known: 'system', 'user', 'human', 'assistant', 'gpt'",
    ),
    "an empty earlier answer": (
        "chat",
        record([("user", "a"), ("assistant", " "), ("user", "c"), ("assistant", "d")], "chat"),
        r"the assistant message has no content",
    ),
    "conversations under format fields": (
        "fields",
        record(long_turns("hi"), "sharegpt"),
        r"missing field 'input' .*set `data.format: sharegpt`",
    ),
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_a_record_the_loader_cannot_read_is_a_one_line_error_that_shows_it(write, case):
    format, bad, message = BAD_RECORDS[case]
    good = [
        {"input": f"q{i}", "output": f"a{i}"} if format == "fields" else record(conversation(i), format)
        for i in range(6)
    ]
    folder = chat_task(write, format, [*good[:2], bad, *good[2:]])
    with pytest.raises(ConfigError, match=message) as error:
        load_task(str(folder))
    text = str(error.value)
    assert "d.jsonl:3: " in text and "\n" not in text
    assert text.endswith(f"the record: {json.dumps(bad)}") or "has no content" in text


def test_a_long_record_is_shown_cut_short(write):
    bad = record([("user", "x" * 1000), ("user", "y")], "chat")
    with pytest.raises(ConfigError, match="must alternate") as error:
        load_task(str(chat_task(write, "chat", [bad] * 4)))
    shown = str(error.value).split("the record: ")[1]
    assert shown.startswith('{"messages": [{"role": "user", "content": "xxx') and shown.endswith("…")
    assert len(shown) == 241


@pytest.mark.parametrize(
    "format, turn",
    [
        ("chat", {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "refund"}}]}),
        ("chat", {"role": "tool", "content": "refunded"}),
        ("sharegpt", {"from": "function_call", "value": '{"name": "refund"}'}),
        ("sharegpt", {"from": "observation", "value": "refunded"}),
    ],
)
def test_a_tool_turn_is_an_error_naming_the_record(write, format, turn):
    turns = record([("user", "refund me"), ("assistant", "done")], format)
    key = "messages" if format == "chat" else "conversations"
    turns[key].insert(1, turn)
    with pytest.raises(ConfigError, match=r"d\.jsonl:1: turn 2 is a tool or function call .*the record: ") as error:
        load_task(str(chat_task(write, format, [turns] * 4)))
    assert "plain user/assistant text" in str(error.value)


def test_preference_columns_need_format_fields(write):
    folder = chat_task(write, "chat")
    write("chats/task.yaml", (folder / "task.yaml").read_text() + "fields: {chosen: good, rejected: bad}\n")
    with pytest.raises(ConfigError, match=r"apply to `data.format: fields` only, not 'chat'"):
        load_task(str(folder))


def test_a_sharegpt_task_runs_end_to_end(write, tiny_model_dir, tmp_path):
    folder = chat_task(write, "sharegpt", [record(conversation(i), "sharegpt") for i in range(16)])
    techniques = (
        "  - {name: zero-shot, kind: prompt}\n"
        "  - {name: lora, kind: lora, train: {max_steps: 1, batch_size: 4, limit: 4}, lora: {rank: 2, alpha: 4}}\n"
    )
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "out", techniques).replace("ticket-routing", str(folder))
    run_dir, rows = run_rows(write, recipe.replace("limit: 12", "limit: 4"), tmp_path / "out")
    for name in ("zero-shot", "lora"):
        assert rows[name]["status"] == "ok" and rows[name]["n_eval"] == 4, rows[name]["error"]
    assert rows["lora"]["train_examples"] == 4 and rows["lora"]["train_steps"] == 1
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "lora.jsonl").open()]
    assert [p["input"] for p in predictions] == ["Which team then?"] * 4
