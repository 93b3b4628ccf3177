"""LLM-as-judge: the reply parser, agreement with the task metric, the judging step of a cell, the report's
judge note and lowest-scored answers, validation, one `harness run` with the tiny model as its own judge, and
one whose judge is an OpenAI-compatible endpoint (tests/openai_server.py)."""

import dataclasses
import io
import json

import pytest
from conftest import only_run_dir, run_cli, run_rows
from pydantic import ValidationError

from harness.analysis.stats import judge_agreement
from harness.config import JudgeSettings, Recipe
from harness.evaluate import judge
from harness.report import markdown
from harness.results import RunStore
from harness.tasks import JudgeRubric, load_task, load_task_spec
from harness.yamlconfig import ConfigError


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Score: 4\nReason: names the team and a next step.", 4),
        ("score 4/5 - clear reply", 4),
        ("**Score:** 2\nReason: hedges.", 2),
        ("Score:\n3", 3),
        ("I give it 5", 5),
        ("4 out of 5: fine", 4),
        ("Score: 3 out of 5", 3),
        ("garbage <|im_end|> billing shipping", None),
        ("", None),
        ("Score: 0", None),  # outside 1..scale
        ("Score: 7. Point 2 is missing", None),  # the number after "score" is the score, even out of range
        ("Score: 4.5/5", None),  # a decimal is not an integer score, and /5 is a denominator
        ("Score: 10/10", None),
    ],
)
def test_parse_score_reads_the_first_integer_after_score(reply, expected):
    assert judge.parse_score(reply, 5) == expected


def test_normalise_prompt_and_reason():
    assert [judge.normalise(n, 5) for n in (1, 3, 5)] == [0.0, 0.5, 1.0]
    assert judge.normalise(2, 2) == 1.0
    text = judge.prompt("Name the team.", 5, "Customer: hi\nReply:", "Our billing team will ...", "")
    assert "Name the team." in text and "Customer: hi" in text and "Our billing team" in text
    assert "(empty)" in text and "Score: <an integer from 1 to 5>" in text
    long = judge.reason("Score: 3\n" + "word " * 200)
    assert len(long) == judge.REASON_CHARS and long.endswith("…") and "\n" not in long


def test_agreement_and_kappa_on_hand_made_scores():
    # judge passes (>= 0.5): T T F F T; the metric's verdicts: T T F T F -> 3 of 5 agree
    figures = judge_agreement([1.0, 0.75, 0.0, 0.25, 1.0], [1, 1, 0, 1, 0], binary=True)
    assert figures["judge_agreement"] == pytest.approx(0.6)
    # kappa = (p_o - p_e) / (1 - p_e), p_e = 0.6 * 0.6 + 0.4 * 0.4
    assert figures["judge_kappa"] == pytest.approx((0.6 - 0.52) / (1 - 0.52))
    assert judge_agreement([1.0, 1.0], [1, 1], binary=True) == {"judge_agreement": 1.0, "judge_kappa": None}
    assert judge_agreement([], [], binary=True) == {"judge_agreement": None, "judge_kappa": None}
    rho = judge_agreement([0.0, 0.25, 1.0, 0.5], [0.1, 0.3, 0.9, 0.2], binary=False)["judge_spearman"]
    assert rho == pytest.approx(0.8)
    assert judge_agreement([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], binary=False) == {"judge_spearman": None}


# --- the judging step of a cell, with a scripted judge -------------------------------------------


class ScriptedJudge:
    name = "scripted"

    def __init__(self, replies):
        self.replies, self.prompts = replies, []

    def judge_answers(self, prompts, on_batch=lambda n: None):
        self.prompts += list(prompts)
        on_batch(len(prompts))
        return self.replies[: len(prompts)]


def context(task_ref="ticket-routing", judged=True, limit=4):
    from harness.techniques import RunContext
    from harness.worker import LineProgress

    task = load_task(task_ref)
    if task.spec.judge is None:
        task = dataclasses.replace(
            task, spec=task.spec.model_copy(update={"judge": JudgeRubric(rubric="The right team.", scale=5)})
        )
    recipe = Recipe.model_validate(
        {
            "name": "t",
            "task": task_ref,
            "device": "cpu",
            "techniques": [{"name": "zero", "kind": "prompt"}],
            "eval": {"heldout": {"limit": limit}, **({"judge": {"model": "random:tiny-llama"}} if judged else {})},
        }
    )
    return RunContext(recipe=recipe, task=task, device="cpu", run_dir=None, progress=LineProgress(io.StringIO()))


def test_judging_a_cell_stores_scores_reasons_and_agreement_with_a_binary_metric():
    from harness.evaluate.judge import judge_heldout, judges

    ctx = context()
    examples = ctx.heldout_examples()
    correct = [True, True, False, True]
    predictions = [
        {"id": e.id, "input": e.input, "expected": e.output, "predicted": e.output if c else "shipping", "correct": c}
        for e, c in zip(examples, correct)
    ]
    ctx.shared.judge = ScriptedJudge(["Score: 5\nReason: right team.", "score 2/5", "Score: 1 wrong team", "no idea"])
    assert judges(ctx)
    values = judge_heldout(ctx, predictions, "accuracy")
    assert [p["judge_score"] for p in predictions] == [1.0, 0.25, 0.0, None]
    assert (
        predictions[0]["judge_reason"] == "Score: 5 Reason: right team." and predictions[3]["judge_reason"] == "no idea"
    )
    assert values["judge_score"] == pytest.approx((1.0 + 0.25 + 0.0) / 3) and values["judge_unparsed"] == 1
    # parsed: passes T F F against correct T T F -> 2 of 3
    assert values["judge_agreement"] == pytest.approx(2 / 3) and values["judge_kappa"] == pytest.approx(0.4)
    assert "judge_spearman" not in values
    assert values["judge_seconds"] > 0 and values["judge_model"] == "scripted" and values["judge_scale"] == 5
    prompt = ctx.shared.judge.prompts[0]  # the judge reads the user text, the reference and the answer
    assert examples[0].input in prompt and "The right team." in prompt
    assert (
        f"Reference answer:\n{examples[0].output}\n" in prompt and f"Answer to grade:\n{examples[0].output}\n" in prompt
    )


def test_the_worker_drops_the_judge_after_the_cell_and_keeps_the_row_when_it_fails(tmp_path):
    from harness import worker

    ctx = dataclasses.replace(context(limit=2), run_dir=tmp_path)
    predictions = [
        {"id": e.id, "input": e.input, "expected": e.output, "predicted": e.output, "correct": True}
        for e in ctx.heldout_examples()
    ]
    ctx.shared.judge = ScriptedJudge(["Score: 4", "Score: 5"])
    assert worker.judge(ctx, predictions, "accuracy")["judge_score"] == pytest.approx(0.875)
    assert ctx.shared.judge is None  # freed when the cell ends: never in a later cell's memory peak

    class Broken(ScriptedJudge):
        def judge_answers(self, prompts, on_batch=lambda n: None):
            raise RuntimeError("judge fell over")

    ctx.shared.judge = Broken([])
    assert worker.judge(ctx, predictions, "accuracy") == {"judge_error": "RuntimeError: judge fell over"}
    assert not any("judge_score" in p for p in predictions) and ctx.shared.judge is None


def test_a_judge_with_the_recipe_model_reads_the_loaded_base_model():
    ctx = context()
    ctx = dataclasses.replace(
        ctx,
        recipe=ctx.recipe.model_copy(
            update={"eval": ctx.recipe.eval.model_copy(update={"judge": JudgeSettings(model=ctx.recipe.model.id)})}
        ),
    )
    base = (object(), object())
    ctx.shared.base = base  # loaded by the prompt technique: the judge needs no copy of its own
    grader = ctx.judge()
    assert (grader.model, grader.tokenizer) == base and ctx.judge() is grader


def test_without_eval_judge_a_task_with_a_rubric_is_scored_unchanged(tiny_model_dir):
    from harness.worker import run_cell

    ctx = context("support-replies", judged=False, limit=3)
    ctx = dataclasses.replace(
        ctx,
        recipe=ctx.recipe.model_copy(
            update={
                "model": ctx.recipe.model.model_copy(update={"id": str(tiny_model_dir)}),
                "eval": ctx.recipe.eval.model_copy(
                    update={
                        "heldout": ctx.recipe.eval.heldout.model_copy(
                            update={"max_new_tokens": 4, "bootstrap_samples": 100, "latency_samples": 0}
                        )
                    }
                ),
            }
        ),
    )
    assert ctx.task.spec.judge is not None and ctx.recipe.eval.judge is None
    row, predictions = run_cell(ctx.recipe.techniques[0], ctx)
    assert row["status"] == "ok", row["error"]
    assert row["metric"] == "rouge_l" and len(predictions) == 3
    assert not [k for k in row if k.startswith("judge_")] and not [k for p in predictions for k in p if "judge" in k]


# --- the report ----------------------------------------------------------------------------------


def judged_store(tmp_path, metric="exact_match", **figures) -> RunStore:
    meta = {"task": {"name": "t", "metric": metric, "judge": {"rubric": "r", "scale": 5}}, "recipe": {"techniques": []}}
    store = RunStore(tmp_path, meta)
    row = {
        "technique": "zero",
        "kind": "prompt",
        "status": "ok",
        "metric": metric,
        "n_eval": 3,
        "judge_model": "judge-model",
        "judge_scale": 5,
        "judge_unparsed": 1,
        **figures,
    }
    store.record(
        row,
        [
            {
                "id": "a",
                "input": "q1",
                "expected": "x",
                "predicted": "fine",
                "correct": True,
                "judge_score": 1.0,
                "judge_reason": "Score: 5 Reason: good.",
            },
            {
                "id": "b",
                "input": "q2",
                "expected": "x",
                "predicted": "vague",
                "correct": False,
                "judge_score": 0.25,
                "judge_reason": "Score: 2 Reason: hedges.",
            },
            {
                "id": "c",
                "input": "q3",
                "expected": "x",
                "predicted": "??",
                "correct": False,
                "judge_score": None,
                "judge_reason": "blah",
            },
        ],
    )
    return store


def test_report_says_how_the_judge_agrees_and_shows_its_lowest_scores(tmp_path):
    store = judged_store(tmp_path / "binary", judge_score=0.625, judge_agreement=1.0, judge_kappa=1.0)
    note = markdown.judge_note(store, store.rows)
    assert note.startswith("**Judge** (`judge-model`, the task's rubric scored 1–5")
    assert "agrees with exact match on 100% of zero's answers (kappa 1.00)" in note
    assert "Replies without a score (not counted): zero 1 of 3." in note
    lowest = markdown.judge_lowest_section(store, store.rows, 5)
    assert lowest.index("| q2 | vague | 2/5 | Score: 2 Reason: hedges. |") < lowest.index("| q1 | fine | 5/5 |")
    assert "q3" not in lowest  # a reply without a score has no place in a ranking
    assert "| 0.625 |" in markdown.results_table(store.rows)

    store = judged_store(tmp_path / "continuous", "rouge_l", judge_score=0.625, judge_spearman=0.54)
    assert "correlates with ROUGE-L at Spearman 0.54 on zero's answers" in markdown.judge_note(store, store.rows)
    store.rows[0] |= {"judge_score": None, "judge_spearman": None, "judge_unparsed": 3}
    assert markdown.judge_note(store, store.rows) == (
        "**Judge** (`judge-model`, the task's rubric scored 1–5): none "
        "of its replies carried a score, so nothing is compared with ROUGE-L."
    )
    store.rows[0] = {k: v for k, v in store.rows[0].items() if not k.startswith("judge_")} | {
        "judge_error": "OSError: x"
    }
    assert markdown.judge_note(store, store.rows) == "The judge failed on zero: OSError: x."
    store.rows[0].pop("judge_error")
    assert markdown.judge_note(store, store.rows) == "" and "judge" not in markdown.results_table(store.rows)


# --- validation ----------------------------------------------------------------------------------

TASK = "name: t\ndata: {train: d.jsonl}\njudge: %s\n"


@pytest.mark.parametrize(
    "block, message",
    [
        ("{rubric: 'Names the team.', scale: 1}", "judge.scale"),
        ("{rubric: 'Names the team.', scales: 3}", "unknown key 'judge.scales' (did you mean 'judge.scale'?)"),
        ("{rubric: '  '}", "the rubric is empty"),
        ("{scale: 5}", "judge.rubric"),
    ],
)
def test_a_bad_judge_block_in_task_yaml_names_the_file_and_the_key(write, block, message):
    write("task/d.jsonl", "".join(json.dumps({"input": f"q{i}", "output": "a"}) + "\n" for i in range(5)))
    path = write("task/task.yaml", TASK % block)
    error = str(pytest.raises(ConfigError, load_task_spec, str(path.parent)).value)
    assert str(path) in error and message in error, error


def test_a_bad_eval_judge_in_a_recipe_is_a_validation_error(write):
    recipe = "name: r\ntask: support-replies\ntechniques:\n  - {name: zero, kind: prompt}\neval:\n  judge: %s\n"
    result = run_cli("validate", write("r.yaml", recipe % "{model: random:tiny-llama, max_tokens: 8}"))
    assert result.exit_code == 2 and "unknown key 'eval.judge.max_tokens' (did you mean" in result.output
    result = run_cli("validate", write("r.yaml", recipe % "{max_new_tokens: 8}"))
    assert result.exit_code == 2 and "eval.judge: Value error, name the judge: exactly one of `model:`" in result.output
    result = run_cli("validate", write("r.yaml", recipe % "{model: ./no-such-judge}"))
    assert result.exit_code == 2 and "eval.judge.model: model directory not found" in result.output
    with pytest.raises(ValidationError):
        JudgeSettings(model="random:tiny-llama", batch_size=0)
    result = run_cli(
        "validate",
        write("r.yaml", (recipe % "{model: random:tiny-llama}").replace("support-replies", "ticket-routing")),
    )
    assert result.exit_code == 0 and "task 'ticket-routing' has no `judge:` rubric" in result.output


JUDGE_KEY = "sk-judge-test-2b9d41c7e0a35f68"
JUDGE_KEY_ENV = "HARNESS_TEST_JUDGE_KEY"  # HARNESS_* variables reach the cell processes from the driver's environment
ENDPOINT = "{base_url: 'https://api.example.com/v1', model: grader-1, api_key_env: OPENAI_API_KEY}"


@pytest.mark.parametrize(
    "block, message",
    [
        (
            f"{{model: random:tiny-llama, endpoint: {ENDPOINT}}}",
            "eval.judge: Value error, give one judge, not both: exactly one of `model:`",
        ),
        ("{max_new_tokens: 64}", "eval.judge: Value error, name the judge: exactly one of `model:`"),
        (
            "{endpoint: {base_url: 'api.example.com/v1', model: grader-1}}",
            "eval.judge.endpoint.base_url: Value error, base_url must be an http:// or https:// URL",
        ),
        (
            f"{{endpoint: {{base_url: 'https://api.example.com/v1', model: grader-1, api_key_env: {JUDGE_KEY}}}}}",
            "eval.judge.endpoint.api_key_env: api_key_env names an environment variable",
        ),
        (
            "{endpoint: {base_url: 'https://api.example.com/v1', model: grader-1, concurrency: 0}}",
            "eval.judge.endpoint.concurrency",
        ),
    ],
)
def test_an_endpoint_judge_is_exactly_one_judge_with_valid_settings(write, block, message):
    recipe = "name: r\ntask: support-replies\ntechniques:\n  - {name: zero, kind: prompt}\neval:\n  judge: %s\n"
    result = run_cli("validate", write("r.yaml", recipe % block))
    assert result.exit_code == 2 and message in result.output, result.output
    assert JUDGE_KEY not in result.output  # a key pasted where its variable's name belongs is not echoed


def test_a_valid_endpoint_judge_validates_without_contacting_it(write):
    recipe = "name: r\ntask: support-replies\ntechniques:\n  - {name: zero, kind: prompt}\neval:\n  judge: %s\n"
    result = run_cli("validate", write("r.yaml", recipe % f"{{endpoint: {ENDPOINT}, max_new_tokens: 32}}"))
    assert result.exit_code == 0, result.output
    settings = JudgeSettings(endpoint={"base_url": "https://api.example.com/v1/", "model": "grader-1"})
    assert settings.model is None and settings.endpoint.base_url == "https://api.example.com/v1"
    spec = settings.endpoint
    assert (spec.concurrency, spec.max_retries, spec.timeout_seconds, spec.cache) == (4, 4, 60, True)


def test_an_endpoint_judge_without_its_key_leaves_the_row_ok_with_the_reason(tmp_path, monkeypatch):
    from harness import worker

    monkeypatch.delenv("HARNESS_TEST_UNSET_JUDGE_KEY", raising=False)
    ctx = dataclasses.replace(context(limit=2), run_dir=tmp_path)
    ctx = dataclasses.replace(
        ctx,
        recipe=ctx.recipe.model_copy(
            update={
                "eval": ctx.recipe.eval.model_copy(
                    update={
                        "judge": JudgeSettings(
                            endpoint={
                                "base_url": "http://127.0.0.1:9/v1",
                                "model": "grader-1",
                                "api_key_env": "HARNESS_TEST_UNSET_JUDGE_KEY",
                            }
                        )
                    }
                )
            }
        ),
    )
    predictions = [
        {"id": e.id, "input": e.input, "expected": e.output, "predicted": e.output, "correct": True}
        for e in ctx.heldout_examples()
    ]
    figures = worker.judge(ctx, predictions, "accuracy")
    assert figures == {
        "judge_error": "EndpointError: environment variable HARNESS_TEST_UNSET_JUDGE_KEY (api_key_env "
        "of eval.judge.endpoint) is not set; export the endpoint's key under that name "
        "where the cells run"
    }
    assert not any("judge_score" in p for p in predictions)


# --- end to end ----------------------------------------------------------------------------------


def judged_recipe(model_dir, out, limit: int, judge: str) -> str:
    """One prompt technique on support-replies, its `limit` held-out answers judged by `judge` (YAML)."""
    return f"""
name: tiny
model: {model_dir}
task: support-replies
device: cpu
output_dir: {out}
techniques:
  - {{name: zero, kind: prompt}}
eval:
  heldout: {{limit: {limit}, batch_size: {limit}, max_new_tokens: 8, bootstrap_samples: 100, latency_samples: 0}}
  judge: {judge}
"""


def test_run_judges_every_answer_with_the_tiny_model_as_judge(write, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    recipe = judged_recipe(
        tiny_model_dir, out, 6, f"{{model: {{id: {tiny_model_dir}, dtype: float32}}, max_new_tokens: 8, batch_size: 6}}"
    )
    run_dir, rows = run_rows(write, recipe, out)
    row = rows["zero"]
    assert row["status"] == "ok" and row["error"] is None and row.get("judge_error") is None
    assert row["metric"] == "rouge_l" and row["n_eval"] == 6 and row["judge_model"] == str(tiny_model_dir)
    assert row["judge_seconds"] > 0 and row["judge_peak_memory_bytes"] > 0
    assert row["judge_cost_usd"] == pytest.approx(row["judge_seconds"] * 0.10 / 3600)
    # the judge's time is its own: the technique's cost is its wall time, which excludes judging
    assert row["cost_usd"] == pytest.approx(row["wall_seconds"] * 0.10 / 3600)
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "zero.jsonl").open()]
    assert len(predictions) == 6 and all(p["judge_reason"].startswith("Score:") for p in predictions)  # prefilled
    scores = [p["judge_score"] for p in predictions if p["judge_score"] is not None]
    assert row["judge_unparsed"] == 6 - len(scores)  # a random model's replies: most likely all unparsed
    assert all(0 <= s <= 1 for s in scores)
    assert row["judge_score"] == (pytest.approx(sum(scores) / len(scores)) if scores else None)
    assert "judge_spearman" in row and "judge_agreement" not in row  # ROUGE-L is continuous
    report = (run_dir / "REPORT.md").read_text()
    assert "**Judge** (`" in report and "- **judge**: an LLM judge" in report
    if not scores:
        assert "none of its replies carried a score, so nothing is compared with ROUGE-L." in report


@pytest.fixture(scope="module")
def judge_server(tiny_model_dir):
    """The test OpenAI-compatible server; its /judge-4 route grades every answer "Score: 4"."""
    from openai_server import OpenAIServer

    server = OpenAIServer(tiny_model_dir, key=JUDGE_KEY).start()
    yield server
    server.stop()


def test_run_judges_every_answer_through_an_endpoint(write, tiny_model_dir, judge_server, tmp_path, monkeypatch):
    from openai_server import JUDGE_REPLY

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(JUDGE_KEY_ENV, JUDGE_KEY)
    endpoint = {
        "base_url": judge_server.url("/judge-4"),
        "model": "grader-1",
        "api_key_env": JUDGE_KEY_ENV,
        "concurrency": 2,
        "max_retries": 1,
        "timeout_seconds": 30,
        "usd_per_1k_tokens": {"input": 0.5, "output": 2.0},
    }

    def recipe(out):
        return judged_recipe(tiny_model_dir, out, 4, f"{{endpoint: {json.dumps(endpoint)}, max_new_tokens: 64}}")

    result = run_cli("run", write("r.yaml", recipe(tmp_path / "out")))
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "out")
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    row = next(r for r in rows if r["technique"] == "zero")  # beside the task's floor row, which is not judged
    assert row["status"] == "ok" and row.get("judge_error") is None, (row["error"], row.get("judge_error"))
    assert row["n_eval"] == 4 and row["judge_model"] == "grader-1" and row["judge_scale"] == 5
    assert row["judge_score"] == (4 - 1) / (5 - 1) == 0.75 and row["judge_unparsed"] == 0
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "zero.jsonl").open()]
    assert [p["judge_score"] for p in predictions] == [0.75] * 4
    assert all(p["judge_reason"] == "Score: 4 The reply names the team." for p in predictions)  # not prefilled
    # the requests: the rubric instructions as the system message, the judge prompt as the user's, greedy
    sent = [r for r in judge_server.requests if r["prefix"] == "/judge-4"]
    assert len(sent) == 4 and all(r["authorized"] for r in sent)
    for request in sent:
        body = request["body"]
        assert (body["model"], body["temperature"], body["max_tokens"]) == ("grader-1", 0.0, 64)
        system, user = body["messages"]
        assert (system["role"], system["content"], user["role"]) == ("system", judge.SYSTEM, "user")
        assert user["content"].startswith("You are grading an answer to a task by this rubric:\n")
    references = [
        r["body"]["messages"][1]["content"].split("Reference answer:\n")[1].split("\n\nAnswer to grade:")[0]
        for r in sent
    ]
    assert sorted(references) == sorted(p["expected"].strip() for p in predictions)
    # its tokens at the endpoint's price; the time is its own, its memory not measured (the model is elsewhere)
    words_in = sum(len(m["content"].split()) for r in sent for m in r["body"]["messages"])
    words_out = 4 * len(JUDGE_REPLY.split())
    assert (row["judge_input_tokens"], row["judge_output_tokens"]) == (words_in, words_out)
    assert row["judge_cost_usd"] == pytest.approx((words_in * 0.5 + words_out * 2.0) / 1000)
    assert (row["judge_requests"], row["judge_cached"], row["judge_retries"]) == (4, 0, 0)
    assert row["judge_seconds"] > 0 and row["judge_peak_memory_bytes"] is None
    assert row["cost_usd"] == pytest.approx(row["wall_seconds"] * 0.10 / 3600)  # the technique's own, as before
    report = (run_dir / "REPORT.md").read_text()
    assert "**Judge** (`grader-1`, the task's rubric scored 1–5" in report and "An endpoint judge's cost" in report

    # a second run asks the endpoint nothing: the replies come from the response cache, at the same cost
    result = run_cli("run", write("r.yaml", recipe(tmp_path / "again")))
    assert result.exit_code == 0, result.output
    rows = json.loads((only_run_dir(tmp_path / "again") / "results.json").read_text())["rows"]
    again = next(r for r in rows if r["technique"] == "zero")
    assert judge_server.count("/judge-4") == 4 and again["judge_score"] == 0.75
    assert (again["judge_requests"], again["judge_cached"]) == (0, 4)
    assert again["judge_cost_usd"] == pytest.approx(row["judge_cost_usd"])

    # the key was sent, and is written nowhere: not the run folders, the cache or the output
    written = [
        p for root in (tmp_path / "out", tmp_path / "again", tmp_path / "cache") for p in root.rglob("*") if p.is_file()
    ]
    assert any(p.name == "results.json" for p in written) and any(p.suffix == ".log" for p in written)
    assert len(list((tmp_path / "cache" / "api").glob("*.json"))) == 4
    assert not [p for p in written if JUDGE_KEY.encode() in p.read_bytes()]
    assert JUDGE_KEY not in result.output
