"""`harness task init` / `harness task check`, and leakage between splits (eval.leakage: warn | exclude | error)."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli, tiny_recipe

from harness.analysis import leakage
from harness.tasks import Example

PROMPT = "  - {name: zero, kind: prompt}\n"


def ex(id: str, text: str, output: str = "a") -> Example:
    return Example(id=id, input=text, output=output)


TRAIN = [
    ex("r1", "I want my money back for order 1021, it never came.", "refund"),
    ex("r2", "The parcel for order 2044 is two weeks late.", "delivery"),
    ex("r3", "I cannot sign in; the reset email never arrives.", "login"),
    ex("r4", "Please cancel my subscription before the next renewal.", "refund"),
    ex("r5", "My tracking number shows no movement since Monday.", "delivery"),
    ex("r6", "Two-factor codes are rejected every time I log in.", "login"),
    ex("r7", "You charged me twice for the same blender.", "refund"),
    ex("r8", "The courier left my box at the wrong address.", "delivery"),
    ex("r9", "My account was locked after three wrong passwords.", "login"),
]
PLANTED = [  # test examples: two exact (after normalisation), two near, two clean
    ex("e1", "i want my MONEY back for order 1021 -- it never came!", "refund"),
    ex("e2", "  The parcel for order 2044 is two weeks   late", "delivery"),
    ex("n1", "Hi, I cannot sign in; the reset email never arrives.", "login"),
    ex("n2", "Please cancel my subscription before the next renewal. Thanks!", "refund"),
    ex("c1", "Where do I change the delivery address of a pending order?", "delivery"),
    ex("c2", "Is there a student discount on yearly plans?", "refund"),
]


def test_exact_and_near_duplicates_are_found_on_the_question_not_the_answer():
    found = leakage.find(TRAIN, [], PLANTED, classification=True)
    kinds = {m.id: (m.kind, m.other) for m in found.test_in_train}
    assert kinds == {"e1": ("exact", "r1"), "e2": ("exact", "r2"), "n1": ("near", "r3"), "n2": ("near", "r4")}
    assert all(leakage.NEAR_THRESHOLD <= m.similarity < 1 for m in found.test_in_train if m.kind == "near")
    assert found.test_ids == ["e1", "e2", "n1", "n2"]
    # the same questions with other answers still leak; a stricter threshold keeps the exact ones only
    assert len(leakage.find(TRAIN, [], [ex("x", PLANTED[2].input, "refund")], True).test_in_train) == 1
    strict = leakage.find(TRAIN, [], PLANTED, classification=True, threshold=0.99)
    assert [m.id for m in strict.test_in_train] == ["e1", "e2"]
    assert leakage.sentences(found.as_dict()) == ["4 of 6 test examples also appear in train (2 exact, 2 near)."]
    # a validation split is compared with both; its own leaks are reported, not acted on
    split = leakage.find(TRAIN[:3], [*TRAIN[3:], PLANTED[4]], PLANTED, classification=True)
    assert [m.id for m in split.test_in_validation] == ["c1", "n2"] and split.validation_in_train == []
    assert leakage.sentences(split.as_dict())[1] == "2 of 6 test examples also appear in validation (1 exact, 1 near)."


def test_near_pairs_match_a_brute_force_jaccard():
    # prefix filtering must miss no pair at or above the threshold
    texts = [f"order {i} arrived {'late' if i % 2 else 'broken'} and the box was {'wet' * (i % 3)}" for i in range(30)]
    sets = [leakage.shingles(leakage.normalise(t)) for t in texts]
    for threshold in (0.6, 0.8, 0.95):
        fast = leakage._near_pairs(sets[:10], sets[10:], threshold)
        for q, s in enumerate(sets[:10]):
            best = max((leakage.jaccard(s, o), -i) for i, o in enumerate(sets[10:]))
            assert (q in fast) == (best[0] >= threshold)
            if q in fast:
                assert fast[q][1] == pytest.approx(best[0])


def test_answers_in_the_pool_and_questions_in_the_corpus():
    train = [ex("t1", "What does the warranty cover?", "Parts and labour for two years, shipping excluded.")]
    test = [
        ex("q1", "What is covered by the warranty?", "parts and labour for two years, shipping excluded"),
        ex("q2", "How long is the warranty?", "2 years"),  # short: recurs by chance, not checked
        ex("q3", "Which countries do you ship to?", "Every country in the European Union."),
    ]
    corpus = [("faq", "Which countries do you ship to? Every country in the European Union."), ("x", "2 years")]
    found = leakage.find(train, [], test, classification=False, corpus=corpus)
    assert [(m.id, m.other) for m in found.answers_in_pool] == [("q1", "t1")]
    assert [(m.id, m.other) for m in found.questions_in_corpus] == [("q3", "faq")]
    assert not leakage.find(train, [], test, classification=True).answers_in_pool  # labels repeat by design


def write_planted_task(folder) -> None:
    folder.mkdir(parents=True)
    for name, rows in (("train.jsonl", TRAIN), ("test.jsonl", PLANTED)):
        lines = [json.dumps({"id": e.id, "text": e.input, "label": e.output}) for e in rows]
        (folder / name).write_text("\n".join(lines) + "\n")
    (folder / "task.yaml").write_text(
        "name: planted\ndata: {train: train.jsonl, test: test.jsonl}\nfields: {id: id, input: text, output: label}\n"
        "labels: [refund, delivery, login]\nmetric: accuracy\n"
    )


@pytest.fixture
def planted(tmp_path):
    write_planted_task(tmp_path / "planted")
    return tmp_path / "planted"


def test_error_stops_before_any_cell_naming_the_examples(planted, tmp_path, write):
    text = f"name: x\ntask: {planted}\noutput_dir: {tmp_path / 'out'}\ntechniques:\n{PROMPT}eval: {{leakage: error}}\n"
    recipe = write("r.yaml", text)
    for command in ("validate", "run"):
        result = run_cli(command, recipe)
        assert result.exit_code == 2, result.output
        assert "4 of 6 test examples also appear in train (2 exact, 2 near)" in result.output
        assert "e1 ~ r1 (exact)" in result.output and "n1 ~ r3 (near 0." in result.output
    assert not (tmp_path / "out").exists()
    assert run_cli("validate", recipe, "eval.leakage=warn").exit_code == 0
    bad = run_cli("validate", recipe, "eval.leakage=drop")
    assert bad.exit_code == 2 and "'warn', 'exclude' or 'error'" in bad.output


def test_warn_scores_them_and_the_report_says_how_many_were_scored(planted):
    from harness.config import LeakageSettings
    from harness.report.leakage import leakage_note
    from harness.screening import screen
    from harness.tasks import load_task

    task = load_task(str(planted))
    kept, stored = screen(task, LeakageSettings(), limit=3)
    assert kept is task and stored["excluded_ids"] == [] and stored["scored_flagged"] == 3
    note = leakage_note({"leakage": stored})
    assert note.startswith("**Leakage**: 4 of 6 test examples also appear in train (2 exact, 2 near).")
    assert "They were scored (`eval.leakage: warn`): 3 of the 3 held-out examples scored are among them" in note
    assert leakage_note({}) == ""  # a run stored before leakage was checked


def test_task_check_shows_sizes_labels_token_lengths_and_leakage(planted, tiny_model_dir, tmp_path, write):
    (planted / "test.jsonl").write_text(
        (planted / "test.jsonl").read_text() + json.dumps({"id": "c3", "text": PLANTED[4].input, "label": "refund"})
    )
    recipe = write(
        "r.yaml",
        f"name: x\nmodel: {tiny_model_dir}\ntask: {planted}\ntechniques:\n{PROMPT}"
        "  - {name: ft, kind: full, train: {max_length: 40}}\n",
    )
    result = run_cli("task", "check", planted, "--recipe", recipe)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"tokens: the tokenizer of {tiny_model_dir}" in " ".join(out.split())
    assert "> 40 tokens" in out
    assert "│ test  │ 7 " in out and "1 (1 with another answer)" in out  # c3 repeats c1 with another label
    assert "│ login    │ 3 (33%) │ 1 (14%) │" in out
    assert "5 of 7 test examples also appear in train (2 exact, 3 near)" not in out  # c3 is a repeat, not a leak
    assert "4 of 7 test examples also appear in train (2 exact, 2 near)" in out


def write_csv(path, examples) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["ticket_id", "customer message", "category", "other"])
        writer.writeheader()
        writer.writerows(
            {"ticket_id": e.id, "customer message": e.input, "category": e.output, "other": 1} for e in examples
        )


def test_init_on_csv_files_writes_a_task_that_runs_and_exclude_drops_leaked_examples_from_every_cell(
    tiny_model_dir, tmp_path, write
):
    write_csv(tmp_path / "train.csv", TRAIN)
    write_csv(tmp_path / "test.csv", PLANTED)
    folder = tmp_path / "mine"
    result = run_cli(
        "task", "init", tmp_path / "train.csv", "--test", tmp_path / "test.csv", "--name", "mine", "--out", folder
    )
    assert result.exit_code == 0, result.output
    assert "9 train, 6 test; metric accuracy; labels delivery, login, refund" in result.output
    text = (folder / "task.yaml").read_text()
    for line in (
        "  train: train.csv\n  test: test.csv\n",
        "  id: ticket_id   # column `ticket_id`: its name",
        "  input: customer message   # column `customer message`: its name",
        "  output: category   # column `category`: its name",
        "  # unused columns: `other`",
        "labels: [delivery, login, refund]",
        "metric: accuracy   # the labels are about balanced",
    ):
        assert line in text, line
    assert (folder / "test.csv").read_text() == (tmp_path / "test.csv").read_text()
    out = tmp_path / "out"
    recipe_text = tiny_recipe(tiny_model_dir, out, PROMPT).replace("task: ticket-routing", f"task: {folder}")
    recipe = write("r.yaml", recipe_text.replace("limit: 12", "limit: 4") + "  leakage: exclude\n")
    assert run_cli("validate", recipe).exit_code == 0
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    assert "leakage: 4 of 6 test examples also appear in train (2 exact, 2 near)" in result.output
    (run_dir,) = (out / "tiny").iterdir()
    stored = json.loads((run_dir / "results.json").read_text())
    assert stored["meta"]["leakage"]["excluded_ids"] == ["e1", "e2", "n1", "n2"]
    assert {r["technique"]: r["status"] for r in stored["rows"]} == {"majority": "ok", "zero": "ok"}
    for technique in ("zero", "majority"):  # the cell's worker and the driver's floor dropped the same ones
        ids = {p["id"] for p in map(json.loads, (run_dir / "predictions" / f"{technique}.jsonl").open())}
        assert ids == {"c1", "c2"}, technique
    report = (run_dir / "REPORT.md").read_text()
    assert "4 of 6 test examples also appear in train (2 exact, 2 near)." in report
    assert "excluded before any cell (`eval.leakage: exclude`): every technique is scored on the remaining 2" in report
    again = run_cli("task", "init", tmp_path / "train.csv", "--name", "mine", "--out", folder)
    assert again.exit_code == 2 and "exists already" in again.output


def test_init_holds_out_a_stratified_fifth_without_a_test_file(tmp_path):
    rows = [ex(f"T{i:02d}", f"Message number {i} about {label}", label) for i, label in enumerate(["a", "b"] * 10)]
    write_csv(tmp_path / "data.csv", rows)
    result = run_cli("task", "init", tmp_path / "data.csv", "--name", "split", "--out", tmp_path / "split")
    assert result.exit_code == 0, result.output
    assert "16 train, 4 test; metric accuracy; labels a, b" in result.output
    assert (
        "  test_fraction: 0.2   # held-out share cut from the data, stratified by label"
        in (tmp_path / "split" / "task.yaml").read_text()
    )


def test_init_recognises_chat_alpaca_preference_and_free_text_records():
    from harness.task_init import propose

    turns = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}] for i in range(4)]
    chat = [{"messages": messages} for messages in turns]
    assert propose(chat).format == "chat"
    alpaca = [{"instruction": "Sum", "input": f"{i}+1", "output": str(i + 1)} for i in range(6)]
    assert (propose(alpaca).format, propose(alpaca).metric, propose(alpaca).labels) == ("alpaca", "contains", None)
    pairs = [{"prompt": f"p{i}", "chosen": "good reply here, thanks a lot", "rejected": "no"} for i in range(4)]
    found = propose(pairs)
    assert found.fields == {"chosen": "chosen", "rejected": "rejected", "output": "chosen", "input": "prompt"}
    free = [{"question": f"Explain item {i}", "answer": f"Item {i} is a long explanation of words"} for i in range(6)]
    assert (propose(free).metric, propose(free).labels) == ("rouge_l", None)
    skewed = [{"text": f"t{i}", "label": "spam" if i < 9 else "ham"} for i in range(12)]
    assert (propose(skewed).labels, propose(skewed).metric) == (["ham", "spam"], "macro_f1")


def test_init_on_a_sharegpt_file_writes_a_task_that_loads_its_conversations(tmp_path):
    from harness.tasks import load_task

    def conversation(i):
        return {
            "conversations": [
                {"from": "human", "value": f"My order {i} is late."},
                {"from": "gpt", "value": "Which team should take it?"},
                {"from": "human", "value": "Which team then?"},
                {"from": "gpt", "value": "shipping" if i % 2 else "billing"},
            ]
        }

    source = tmp_path / "chats.jsonl"
    source.write_text("".join(json.dumps(conversation(i)) + "\n" for i in range(10)))
    result = run_cli("task", "init", source, "--name", "chats", "--out", tmp_path / "chats")
    assert result.exit_code == 0, result.output
    task = load_task(str(tmp_path / "chats"))
    assert task.spec.data.format == "sharegpt" and task.spec.metric == "contains"  # chat answers: free text
    first = task.train[0]
    assert first.input == "Which team then?" and [role for role, _ in first.history] == ["user", "assistant"]


def test_leakage_compares_a_conversations_earlier_turns_too():
    def chat(id, opening):
        return Example(id=id, input="Which team then?", output="a", history=(("user", opening), ("assistant", "ok")))

    train = [chat("r1", "My parcel for order 2044 is two weeks late.")]
    test = [chat("t1", "My parcel for order 2044 is two weeks late!"), chat("t2", "I was charged twice.")]
    assert [m.id for m in leakage.find(train, [], test, classification=True).test_in_train] == ["t1"]
