"""Classification on the tiny model: loglikelihood scoring of labels, the confusion matrix and per-label F1
in REPORT.md, the terminal's legend and recommendation, and the pull-request summary."""

import pytest
from conftest import only_run_dir, run_cli, tiny_recipe

from harness import metrics, results

LABELS = ["billing", "shipping", "technical", "account", "returns", "feedback"]
TWO = """\
  - {name: zero, kind: prompt, shots: 0}
  - {name: few, kind: prompt, shots: 2}
"""


@pytest.fixture(scope="module")
def loglik_run(tiny_model_dir, tmp_path_factory):
    """One tiny run, scored by loglikelihood, shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("loglik")
    recipe = folder / "r.yaml"
    recipe.write_text(
        tiny_recipe(tiny_model_dir, folder / "out", TWO).replace(
            "heldout: {limit: 12", "heldout: {mode: loglikelihood, limit: 12"
        )
    )
    result = run_cli("run", recipe)
    assert result.exit_code == 0, result.output
    return only_run_dir(folder / "out"), result.output


def test_loglikelihood_mode_always_names_a_label_the_likeliest(loglik_run):
    run_dir, _ = loglik_run
    store = results.RunStore.open(run_dir)
    rows = {r["technique"]: r for r in store.rows}
    assert set(rows) == {"zero", "few", "majority"}
    for name in ("zero", "few"):
        row = rows[name]
        assert row["status"] == "ok" and row["eval_mode"] == "loglikelihood" and row["n_eval"] == 12
        assert row["invalid_rate"] == 0 and row["eval_tokens_per_second"] is None
        predictions = store.predictions(name)
        assert len(predictions) == 12
        for p in predictions:
            scores = p["label_loglikelihoods"]
            assert list(scores) == LABELS and all(v < 0 for v in scores.values())
            assert p["parsed"] == p["predicted"] and p["parsed"] in LABELS
            assert scores[p["parsed"]] == max(scores.values())  # the argmax (rounding may tie; then any maximum)
            assert p["correct"] == (p["parsed"] == p["expected"])
        assert sum(p["correct"] for p in predictions) / 12 == pytest.approx(row["score"])
    report = (run_dir / "REPORT.md").read_text()
    assert "| accuracy (loglik) |" in report and "the likeliest label" in report
    # `harness run` writes REPORT.html beside it, its example browser holding the predictions as stored
    from harness.report.html import embedded_json

    page = (run_dir / "REPORT.html").read_text()
    assert embedded_json(page, "examples-0")["predictions"] == store.finished_predictions()


def test_loglikelihood_mode_on_a_task_without_labels_fails_before_the_run(write, tiny_model_dir, tmp_path):
    text = tiny_recipe(tiny_model_dir, tmp_path / "out", TWO, "").replace(
        "task: ticket-routing", "task: support-replies"
    )
    recipe = write("r.yaml", text.replace("heldout: {limit: 12", "heldout: {mode: loglikelihood, limit: 12"))
    for command in ("validate", "run"):
        result = run_cli(command, recipe)
        assert result.exit_code == 2, result.output
        assert "loglikelihood scores each of a task's labels" in result.output
        assert "'support-replies' has no `labels:`" in result.output and "mode: generate" in result.output
    assert not (tmp_path / "out").exists()


def test_labels_scored_over_the_prompts_cache_match_scoring_prompt_and_label_whole(tiny_model_dir):
    # the prompt is encoded once and its cache reused per batch of labels: the same log-likelihoods as
    # encoding prompt + label for every label, for labels of one token and of several, in uneven batches
    from harness import models
    from harness.config import ModelSpec
    from harness.evaluate.heldout import label_logprobs
    from harness.evaluate.preference import completion_logprobs

    model, tokenizer = models.load(ModelSpec(id=str(tiny_model_dir)), "cpu")
    labels = [*LABELS, "a much longer label of several words", "x"]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Route: my card was charged twice"}],
                                           tokenize=False, add_generation_prompt=True)  # fmt: skip
    whole = completion_logprobs(model, tokenizer, [prompt] * len(labels), labels, 3)
    assert len({len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels}) > 2
    for batch_size in (1, 3, len(labels)):
        assert label_logprobs(model, tokenizer, prompt, labels, batch_size) == pytest.approx(whole, rel=1e-4)


def test_generate_is_the_default_mode():
    from harness.config import HeldoutEval

    assert HeldoutEval().mode == "generate"


def _details_table(report: str, technique: str) -> list[list[str]]:
    """The body rows of a technique's per-label table in REPORT.md."""
    block = report.split(f"<summary><b>{technique}</b>")[1].split("</details>")[0]
    lines = [line for line in block.splitlines() if line.startswith("| ")][1:]  # past the header
    return [[cell.strip().strip("*") for cell in line.strip("|").split("|")] for line in lines]


def test_the_confusion_table_counts_every_prediction(loglik_run):
    run_dir, _ = loglik_run
    store = results.RunStore.open(run_dir)
    report = (run_dir / "REPORT.md").read_text()
    for name in ("zero", "few"):
        predictions = store.predictions(name)
        table = _details_table(report, name)
        assert [row[0] for row in table] == LABELS
        counts = [[int(n) for n in row[1 : 1 + len(LABELS)]] for row in table]  # no "no label" column here
        assert sum(map(sum, counts)) == next(r["n_eval"] for r in store.rows if r["technique"] == name) == 12
        for i, expected in enumerate(LABELS):
            for j, answered in enumerate(LABELS):
                assert counts[i][j] == sum(p["expected"] == expected and p["parsed"] == answered for p in predictions)
    assert "majority</b>" not in report  # the floor answers one label by construction


def test_confusion_adds_a_no_label_column_and_per_label_f1():
    from harness.report.confusion import confusion, confusion_section

    labels = ["a", "b"]
    predictions = [
        {"expected": e, "parsed": p}
        for e, p in [("a", "a"), ("a", "a"), ("a", "b"), ("b", "b"), ("b", metrics.INVALID)]
    ]
    c = confusion(predictions, labels)
    assert c.columns == ["a", "b", metrics.INVALID] and c.counts == [[2, 1, 0], [0, 1, 1]] and c.total == 5
    assert c.precision == [1.0, 0.5] and c.recall == [pytest.approx(2 / 3), 0.5] and c.support == [3, 2]
    assert c.f1 == [pytest.approx(0.8), pytest.approx(0.5)]
    rows = [
        {
            "technique": "t",
            "kind": "prompt",
            "status": "ok",
            "metric": "accuracy",
            "score": 0.6,
            "vs_best_marker": "best",
        }
    ]
    text = confusion_section(rows, {"t": predictions}, labels, seeds=1)
    assert "<details open><summary><b>t</b>: accuracy 0.600, macro-F1 0.650; 5 answers</summary>" in text
    assert "| expected ↓ answered → | a | b | no label | precision | recall | F1 |" in text
    assert "| b | 0 | **1** | 1 | 0.50 | 0.50 | 0.50 |" in text
    assert confusion_section(rows, {"t": predictions}, None) == ""  # not a classification task


def test_a_many_label_task_shows_the_labels_with_most_support_the_most_confused_pairs_and_a_csv(tmp_path):
    from harness.report.confusion import MAX_LABELS, confusion_section

    labels = [f"intent{i:02d}" for i in range(80)]
    predictions = []
    for i, label in enumerate(labels):  # label i has 80 - i examples; intent00 is answered intent01 7 times
        wrong = 7 if i == 0 else 0
        predictions += [{"expected": label, "parsed": label}] * (80 - i - wrong)
        predictions += [{"expected": label, "parsed": labels[1]}] * wrong
    predictions += [{"expected": labels[79], "parsed": metrics.INVALID}]
    rows = [{"technique": "t", "kind": "lora", "status": "ok", "metric": "accuracy", "score": 0.9}]
    text = confusion_section(rows, {"t": predictions}, labels, csv_folder=tmp_path / "plots", prefix="intents-")
    table = [line for line in text.splitlines() if line.startswith("| intent")]
    assert len(table) == MAX_LABELS  # was 80 rows of 80 columns
    assert table[0].startswith("| intent00 |") and not any(line.startswith("| intent79") for line in table)
    assert "| expected ↓ answered → | intent00 |" in text and "| other labels | no label |" in text
    assert "- intent00 → intent01: 7" in text and "- intent79 → no label: 1" in text
    assert "[intents-t-confusion.csv](plots/intents-t-confusion.csv)" in text
    whole = (tmp_path / "plots" / "intents-t-confusion.csv").read_text().splitlines()
    assert len(whole) == 1 + 80 and whole[0].startswith("expected,intent00,") and whole[0].endswith(",support")


def _recommendation(run_dir, strong=lambda head: head) -> str:
    from harness.analysis import decision

    store = results.RunStore.open(run_dir)
    return decision.sentence(decision.recommend(store.ordered_rows(), store.finished_predictions()), strong)


def test_run_and_report_print_the_legend_and_the_recommendation(loglik_run):
    from harness.report.terminal import LEGEND

    run_dir, run_output = loglik_run
    sentence = _recommendation(run_dir)
    assert sentence.startswith(("Use ", "No recommendation: "))
    report = (run_dir / "REPORT.md").read_text()
    assert _recommendation(run_dir, lambda head: f"**{head}**") in report  # the same sentence as REPORT.md
    result = run_cli("report", run_dir)
    assert result.exit_code == 0, result.output
    for output in (run_output, result.output):
        assert LEGEND in output and "★ best score" in output and "▼ significantly worse" in output
        assert sentence in output
    assert result.output.index("sig") < result.output.index(LEGEND) < result.output.index(sentence)
    assert f"\n{LEGEND}\n" in run_output  # on a line of its own, also after the live table of a log (CI)


def test_report_format_pr_writes_a_short_summary(loglik_run):
    run_dir, _ = loglik_run
    result = run_cli("report", run_dir, "--format", "pr", "--link", "https://ci.example/artifacts/1")
    assert result.exit_code == 0, result.output
    text = (run_dir / "PR.md").read_text()
    assert result.output == text and len(text.splitlines()) < 60
    assert text.startswith("### tiny: ") and "on ticket-routing" in text
    assert "| technique | accuracy (loglik) [95% CI] | vs best | peak mem | cost |" in text
    assert all(f"| {name} | " in text for name in ("zero", "few", "majority"))
    assert _recommendation(run_dir, lambda head: f"**{head}**") in text
    assert text.rstrip().endswith("[REPORT.md](https://ci.example/artifacts/1)")
    default = run_cli("report", run_dir, "--format", "pr")  # without --link: the report's path
    assert default.output.rstrip().endswith("REPORT.md)") and "REPORT.md](" in default.output
