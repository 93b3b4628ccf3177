"""kind: api against a real OpenAI-compatible HTTP server on loopback (tests/openai_server.py) serving the
tiny model: the same answers as the local prompt-only technique, token counts and cost, the response
cache, retries, failures as rows, and the API key never written anywhere."""

import json
import socket
from pathlib import Path

import pytest
from conftest import only_run_dir, run_cli
from openai_server import OpenAIServer

from harness.config import load_recipe
from harness.yamlconfig import ConfigError

KEY = "sk-harness-test-7f3a9c2e51d04b86"
KEY_ENV = "HARNESS_TEST_API_KEY"  # HARNESS_* variables reach the cell processes from the driver's environment
PRICES = {"input": 0.5, "output": 2.0}


@pytest.fixture(scope="module")
def server(lively_model_dir):
    server = OpenAIServer(lively_model_dir, key=KEY).start()
    yield server
    server.stop()


def recipe(
    model_dir: Path, out: Path, techniques: str, task: str = "ticket-routing", limit: int = 12, mode: str = "generate"
) -> str:
    return f"""
name: tiny
model: {{id: {model_dir}, dtype: float32}}   # the server generates in float32 too
task: {task}
seed: 0
device: cpu
output_dir: {out}
techniques:
{techniques}
eval:
  heldout: {{mode: {mode}, limit: {limit}, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200}}
"""


def api_entry(name: str, base_url: str, **settings) -> str:
    fields = {"name": name, "kind": "api", "base_url": base_url, "model": "tiny-lively", **settings}
    return "  - " + json.dumps(fields) + "\n"


def rows_of(run_dir: Path) -> dict[str, dict]:
    return {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}


def predictions_of(run_dir: Path, technique: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions" / f"{technique}.jsonl").open()]


@pytest.fixture(scope="module")
def two_runs(server, lively_model_dir, tmp_path_factory):
    """The same recipe run twice (a local prompt technique and the api one, both 2-shot), sharing a cache;
    the server's request count after each run."""
    tmp = tmp_path_factory.mktemp("api-runs")
    techniques = "  - {name: local-2shot, kind: prompt, shots: 2}\n" + api_entry(
        "hosted-2shot", server.url(), api_key_env=KEY_ENV, shots=2, usd_per_1k_tokens=PRICES, concurrency=3
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(tmp / "cache"))
        patch.setenv(KEY_ENV, KEY)
        runs, seen, outputs = [], [], []
        for attempt in ("first", "second"):
            path = tmp / f"{attempt}.yaml"
            path.write_text(recipe(lively_model_dir, tmp / attempt, techniques))
            result = run_cli("run", path)
            assert result.exit_code == 0, result.output
            runs.append(only_run_dir(tmp / attempt))
            seen.append(server.count())
            outputs.append(result.output)
    return {"runs": runs, "seen": seen, "cache": tmp / "cache", "outputs": outputs, "tmp": tmp}


def test_api_answers_equal_the_local_prompt_technique(two_runs, server):
    run_dir = two_runs["runs"][0]
    rows = rows_of(run_dir)
    local, api = rows["local-2shot"], rows["hosted-2shot"]
    assert local["status"] == "ok" and api["status"] == "ok", (local["error"], api["error"])
    assert api["kind"] == "api" and api["n_eval"] == 12 and api["metric"] == "accuracy"
    # same model, same messages, greedy: the same answer to every example, hence the same score
    ours = {p["id"]: p for p in predictions_of(run_dir, "hosted-2shot")}
    theirs = {p["id"]: p for p in predictions_of(run_dir, "local-2shot")}
    assert ours.keys() == theirs.keys() and len(ours) == 12
    assert [ours[i]["predicted"] for i in ours] == [theirs[i]["predicted"] for i in ours]
    assert len({p["predicted"] for p in ours.values()}) > 3  # the answers differ between prompts
    assert api["score"] == local["score"] and (api["ci_low"], api["ci_high"]) == (local["ci_low"], local["ci_high"])
    # the endpoint got exactly the messages the prompt-only technique builds, with the recipe's limits
    from harness import prompting
    from harness.tasks import load_task

    task = load_task("ticket-routing")
    shots = prompting.draw_shots(task, 2, 0)
    expected = sorted(json.dumps(prompting.messages(task, e, shots)) for e in task.test[:12])
    bodies = [r["body"] for r in server.requests[:12]]
    assert sorted(json.dumps(b["messages"]) for b in bodies) == expected
    assert all(b["max_tokens"] == 4 and b["temperature"] == 0 and b["model"] == "tiny-lively" for b in bodies)
    # tokens from the responses' usage; the cost is theirs at the recipe's prices, not device-hours
    assert api["api_input_tokens"] > 12 * 50 and 12 <= api["api_output_tokens"] <= 12 * 4
    assert api["cost_usd"] == pytest.approx((api["api_input_tokens"] * 0.5 + api["api_output_tokens"] * 2.0) / 1000)
    assert api["api_billed_usd"] == pytest.approx(api["cost_usd"])
    assert (api["api_requests"], api["api_cached"], api["api_retries"], api["api_usage_missing"]) == (12, 0, 0, 0)
    assert 0 < api["latency_p50_seconds"] <= api["latency_p95_seconds"]
    assert api["eval_seconds"] > 0 and api["eval_peak_memory_bytes"] is None and api["peak_memory_bytes"] is None
    assert api["api_model"] == "tiny-lively" and api["api_base_url"] == server.url()
    assert local["cost_usd"] is not None and local.get("api_input_tokens") is None
    report = (run_dir / "REPORT.md").read_text()
    assert "latency p50 / p95" in report and "api tokens in / out" in report and "**api rows**" in report


def test_a_second_run_is_served_from_the_cache(two_runs, server):
    first, second = (rows_of(r)["hosted-2shot"] for r in two_runs["runs"])
    assert two_runs["seen"][1] == two_runs["seen"][0] == 12  # the second run sent the server nothing
    assert second["status"] == "ok"
    assert (second["api_cached"], second["api_requests"], second["api_retries"]) == (12, 0, 0)
    assert second["score"] == first["score"]
    # the technique's cost is the same (cached answers count at their stored usage); this run paid nothing
    assert (second["api_input_tokens"], second["api_output_tokens"]) == (
        first["api_input_tokens"],
        first["api_output_tokens"],
    )
    assert second["cost_usd"] == pytest.approx(first["cost_usd"]) and second["api_billed_usd"] == 0
    assert second["latency_p50_seconds"] is None and second["eval_tokens_per_second"] is None
    assert [p["predicted"] for p in predictions_of(two_runs["runs"][1], "hosted-2shot")] == [
        p["predicted"] for p in predictions_of(two_runs["runs"][0], "hosted-2shot")
    ]
    files = list((two_runs["cache"] / "api").glob("*.json"))
    assert len(files) == 12
    stored = json.loads(files[0].read_text())
    assert stored["request"]["base_url"] == server.url() and stored["response"]["usage"]["prompt_tokens"] > 0


def test_the_key_is_never_written(two_runs, server):
    assert server.requests and all(r["authorized"] for r in server.requests[:12])  # the key was sent
    written = [p for root in (*two_runs["runs"], two_runs["cache"]) for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written) and any(p.name == "results.json" for p in written)
    leaks = [p for p in written if KEY.encode() in p.read_bytes()]
    assert not leaks
    assert all(KEY not in output for output in two_runs["outputs"])


def test_backoff_doubles_with_jitter_and_retry_after_wins():
    from harness.endpoint import Endpoint, _retry_after
    from harness.techniques.api import ApiTechnique

    spec = ApiTechnique(kind="api", name="x", base_url="http://127.0.0.1:9/v1", model="m", backoff_seconds=2)
    endpoint = Endpoint(spec, max_tokens=4)
    for attempt in range(4):
        waits = [endpoint.delay(attempt, None) for _ in range(50)]
        assert all(2 * 2**attempt / 2 <= w <= 2 * 2**attempt for w in waits) and len(set(waits)) > 1
    assert endpoint.delay(10, None) <= 60  # capped
    assert endpoint.delay(3, 0.0) == 0 and endpoint.delay(0, 7.0) == 7.0  # Retry-After wins, either way
    assert _retry_after("0") == 0 and _retry_after("2.5") == 2.5 and _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0 and _retry_after("soon") is None  # a past date: now


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_retries_and_failures_are_rows(server, lively_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("HARNESS_TEST_WRONG_KEY", "not-the-key")
    monkeypatch.delenv("HARNESS_TEST_UNSET_KEY", raising=False)
    fast = {"backoff_seconds": 0.01, "max_retries": 2, "api_key_env": KEY_ENV}
    techniques = (
        "  - {name: local, kind: prompt}\n"
        # a long backoff: the server's Retry-After: 0 must win, or the cell takes a minute
        + api_entry("flaky", server.url("/fail-429-2"), **{**fast, "backoff_seconds": 30}, concurrency=1)
        + api_entry("slow", server.url("/slow-1.5"), **{**fast, "max_retries": 1}, timeout_seconds=0.3)
        + api_entry("rate-limited", server.url("/always-429"), **fast)
        + api_entry("down", server.url("/always-500"), **fast)
        + api_entry("refused", f"http://127.0.0.1:{closed_port()}/v1", **fast)
        + api_entry("no-key", server.url(), **{**fast, "api_key_env": "HARNESS_TEST_UNSET_KEY"})
        + api_entry("wrong-key", server.url(), **{**fast, "api_key_env": "HARNESS_TEST_WRONG_KEY"})
    )
    result = run_cli("run", _write(tmp_path, recipe(lively_model_dir, tmp_path / "out", techniques)))
    assert result.exit_code == 1 and "some techniques failed" in result.output, result.output
    run_dir = only_run_dir(tmp_path / "out")
    rows = rows_of(run_dir)
    assert rows["local"]["status"] == "ok" and rows["local"]["n_eval"] == 12
    flaky = rows["flaky"]  # 429 (Retry-After: 0) twice, then answers
    assert flaky["status"] == "ok" and flaky["api_retries"] == 2 and flaky["api_requests"] == 14
    assert flaky["n_eval"] == 12 and flaky["cost_usd"] is None  # no usd_per_1k_tokens: cost unknown
    assert flaky["wall_seconds"] < 20
    errors = {name: rows[name]["error"] for name in ("rate-limited", "down", "refused", "no-key", "wrong-key", "slow")}
    assert all(rows[name]["status"] == "failed" and rows[name]["cost_usd"] is None for name in errors), errors
    assert errors["rate-limited"].startswith("RuntimeError: HTTP 429 rate limited by ")
    assert errors["rate-limited"].endswith("after 2 retries")
    assert "HTTP 500" in errors["down"] and errors["down"].endswith("after 2 retries")
    assert errors["refused"].endswith("refused the connection after 2 retries")
    assert errors["slow"].endswith("did not answer within 0.3s after 1 retry")
    assert "environment variable HARNESS_TEST_UNSET_KEY" in errors["no-key"] and "is not set" in errors["no-key"]
    assert "HTTP 401" in errors["wrong-key"] and "check the key in $HARNESS_TEST_WRONG_KEY" in errors["wrong-key"]
    # 4 in flight, 3 attempts each; the first failure stops the rest (a few may have started meanwhile)
    assert server.count("/always-429") <= 4 * 3 + 4
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaks


def _write(folder: Path, text: str) -> Path:
    path = folder / "r.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"base_url": "127.0.0.1:8000/v1"}, "base_url must be an http:// or https:// URL"),
        ({"base_url": "https://user:secret@api.example.com/v1"}, "must not carry credentials"),
        ({"usd_per_1k_tokens": {"input": -0.1, "output": 0.6}}, "usd_per_1k_tokens.input"),
        ({"api_key_env": KEY}, "not the key itself"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_invalid_settings_are_recipe_errors(change, message, tmp_path):
    entry = {"name": "hosted", "kind": "api", "base_url": "https://api.example.com/v1", "model": "m", **change}
    path = _write(tmp_path, recipe(Path("random:llama"), tmp_path / "out", "  - " + json.dumps(entry) + "\n"))
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert message in str(error.value) and "r.yaml:" in str(error.value)
    assert KEY not in str(error.value)


def test_retrieval_through_the_endpoint(server, lively_model_dir, tmp_path, monkeypatch):
    """RAG through the endpoint: passages from the task's corpus in the user turn (a word budget), the
    retrieval figures on the row; on a task without a corpus the technique is skipped with the reason."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, KEY)
    before = len(server.requests)
    techniques = api_entry(
        "hosted-rag", server.url(), api_key_env=KEY_ENV, retrieval={"retriever": "bm25", "k": 2, "context_tokens": 60}
    )
    result = run_cli(
        "run",
        _write(tmp_path, recipe(lively_model_dir, tmp_path / "out", techniques, task="product-catalogue", limit=4)),
    )
    assert result.exit_code == 0, result.output
    row = rows_of(only_run_dir(tmp_path / "out"))["hosted-rag"]
    assert row["status"] == "ok", row["error"]
    assert row["retriever"] == "bm25" and row["retrieval_k"] == 2 and row["recall_at_k"] is not None
    assert row["n_eval"] == 4 and row["api_requests"] == 4
    users = [r["body"]["messages"][-1]["content"] for r in server.requests[before:]]
    assert len(users) == 4 and all(u.startswith("Use these passages to answer.") for u in users)
    passages = [u.split("\n\nQuestion: ")[0] for u in users]
    assert all(len(p.split()) <= 60 + 5 + 2 * 2 for p in passages)  # the budget, the header, "[1] (doc)" labels

    run_cli("run", _write(tmp_path, recipe(lively_model_dir, tmp_path / "out2", techniques)))
    row = rows_of(only_run_dir(tmp_path / "out2"))["hosted-rag"]
    assert row["status"] == "skipped" and "has no corpus" in row["error"]


def test_loglikelihood_mode_fails_the_row_with_the_reason(server, lively_model_dir, tmp_path, monkeypatch):
    """A chat-completions endpoint returns no log-likelihoods of given answers, so under
    eval.heldout.mode: loglikelihood the api row fails with the reason, and asks the endpoint nothing."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    before = len(server.requests)
    techniques = "  - {name: local, kind: prompt}\n" + api_entry("hosted", server.url())
    result = run_cli(
        "run", _write(tmp_path, recipe(lively_model_dir, tmp_path / "out", techniques, limit=4, mode="loglikelihood"))
    )
    assert result.exit_code == 1, result.output
    rows = rows_of(only_run_dir(tmp_path / "out"))
    assert rows["local"]["status"] == "ok" and rows["local"]["eval_mode"] == "loglikelihood"
    assert rows["hosted"]["status"] == "failed" and "eval.heldout.mode is loglikelihood" in rows["hosted"]["error"]
    assert len(server.requests) == before


def test_the_readme_entry_is_a_valid_recipe(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("- name: hosted-4shot\n", 1)[1].split("```", 1)[0]
    entry = "  - name: hosted-4shot\n" + "".join(f"  {line}\n" for line in block.splitlines())
    spec = load_recipe(_write(tmp_path, recipe(Path("random:llama"), tmp_path / "out", entry))).techniques[0]
    assert spec.kind == "api" and spec.shots == 4 and spec.retrieval.k == 2 and spec.usd_per_1k_tokens.output == 0.0006


def test_the_kind_is_registered_light_and_needs_a_corpus_only_with_retrieval():
    import subprocess
    import sys

    from harness import kinds
    from harness.techniques.api import ApiTechnique

    kind = kinds.get("api")
    assert kind.description and not kind.trained and not kind.reads_base_model
    spec = ApiTechnique(kind="api", name="x", base_url="https://api.example.com/v1", model="m")
    assert not kinds.needs_corpus(spec) and kinds.needs_corpus(spec.model_copy(update={"retrieval": {}}))
    # validating a recipe imports no ML library: the kind's module imports them when a cell runs
    code = "import sys, harness.techniques.api; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
