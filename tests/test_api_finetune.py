"""kind api_finetune against a real fine-tuning server on loopback (harness/deploy/finetune_api.py, the
`harness serve-finetune` server) that trains a LoRA on the uploaded file with the harness's own training and
serves it: the same answers as a local kind lora with the same settings, the job's billed tokens as training
cost, its events in the cell's log; a job that fails on the server, rate-limited polls, a cell killed while
the job runs and resumed (one job, not two; the whole driver killed under -m slow), a missing or wrong key,
a cancelled job, a job the server forgot; the key is written nowhere."""

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import only_run_dir, run_cli
from test_kill_resume import start_driver

from harness.config import ModelSpec, TrainSettings
from harness.deploy.finetune_api import FineTuneServer
from harness.techniques.finetune import LoraSettings

KEY = "sk-harness-ft-test-4c1d7a0e93b2"
KEY_ENV = "HARNESS_TEST_FT_KEY"  # HARNESS_* variables reach the cell processes from the driver's environment
TRAIN = {"max_steps": 2, "batch_size": 4, "precision": "fp32"}
LORA = {"rank": 2, "alpha": 4}
PRICES = {"input": 0.3, "output": 1.2}


def start_server(model_dir: Path, **options) -> FineTuneServer:
    return FineTuneServer(
        ModelSpec(id=str(model_dir), dtype="float32"),
        name="tiny-lively",
        key=options.pop("key", KEY),
        train=TrainSettings(**(TRAIN | options.pop("train", {}))),
        lora=LoraSettings(**LORA),
        **options,
    ).start()


@pytest.fixture(scope="module")
def server(lively_model_dir):
    server = start_server(lively_model_dir)
    yield server
    server.stop()


def recipe(model_dir: Path, out: Path, techniques: str, limit: int = 8) -> str:
    return f"""
name: tiny
model: {{id: {model_dir}, dtype: float32}}   # the server serves in float32 too
task: ticket-routing
seed: 0
device: cpu
output_dir: {out}
techniques:
{techniques}
eval:
  heldout: {{limit: {limit}, batch_size: 4, max_new_tokens: 4, bootstrap_samples: 200, latency_samples: 0}}
"""


def hosted(name: str, base_url: str, **settings) -> str:
    fields = {
        "name": name,
        "kind": "api_finetune",
        "base_url": base_url,
        "model": "tiny-lively",
        "api_key_env": KEY_ENV,
        "poll_seconds": 0.05,
        "max_poll_seconds": 0.2,
        "backoff_seconds": 0.01,
        **settings,
    }
    return "  - " + json.dumps(fields) + "\n"


def rows_of(run_dir: Path) -> dict[str, dict]:
    return {r["technique"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}


def predicted(run_dir: Path, technique: str) -> list[str]:
    return [json.loads(line)["predicted"] for line in (run_dir / "predictions" / f"{technique}.jsonl").open()]


def written_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def kill_the_cell_when_its_job_exists(out: Path, technique: str) -> threading.Thread:
    """A thread that SIGKILLs `technique`'s cell process (its pid from the logs) once its job's state is written."""

    def kill():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            logs = "".join(p.read_text() for p in out.glob("tiny/*/logs/*.log"))
            pid = re.search(rf"\[cell\] {technique}\.\S+ \(pid (\d+)", logs)
            if pid and list(out.glob(f"tiny/*/state/{technique}.*.json")):
                os.kill(int(pid.group(1)), signal.SIGKILL)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def study(server, lively_model_dir, tmp_path_factory):
    """One run, then its `--resume`: a local LoRA and the hosted fine-tuning of the same model with the same
    settings; a job the server fails (every example longer than that server's max_length); polls rate limited
    twice; an unset key and a wrong key; and a cell SIGKILLed while its job runs (its server holds the job
    until the first run is over), which the resume finishes."""
    tmp = tmp_path_factory.mktemp("api-finetune")
    failing = start_server(lively_model_dir, train={"max_length": 8})
    limited = start_server(lively_model_dir, rate_limit_polls=2)
    hold = threading.Event()
    held = start_server(lively_model_dir, hold=hold)
    techniques = (
        f"  - {{name: lora, kind: lora, train: {json.dumps(TRAIN)}, lora: {json.dumps(LORA)}}}\n"
        + hosted(
            "hosted-ft",
            server.url,
            hyperparameters={"batch_size": 4, "learning_rate_multiplier": 1.0},
            usd_per_1k_tokens=PRICES,
            train_usd_per_1k_tokens=3.0,
        )
        + hosted("too-long", failing.url)
        + hosted("limited", limited.url)
        + hosted("no-key", server.url, api_key_env="HARNESS_TEST_FT_UNSET")
        + hosted("wrong-key", server.url, api_key_env="HARNESS_TEST_FT_WRONG")
        + hosted("crashed", held.url)
    )
    path = tmp / "r.yaml"
    path.write_text(recipe(lively_model_dir, tmp / "out", techniques))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(tmp / "cache"))
        patch.setenv(KEY_ENV, KEY)
        patch.setenv("HARNESS_TEST_FT_WRONG", "not-the-key")
        patch.delenv("HARNESS_TEST_FT_UNSET", raising=False)
        try:
            before = (server.jobs_created, len(server.files))
            killer = kill_the_cell_when_its_job_exists(tmp / "out", "crashed")
            first = run_cli("run", path, "--jobs", 3)  # hosted cells mostly wait: 3 at a time
            killer.join()
            run_dir = only_run_dir(tmp / "out")
            rows = rows_of(run_dir)
            counts = {"server": (server.jobs_created - before[0], len(server.files) - before[1])}
            counts |= {"failing": failing.jobs_created, "held": (held.jobs_created, len(held.files))}
            hold.set()
            resumed = run_cli("run", "--resume", run_dir, "--jobs", 3)
        finally:
            for other in (failing, limited, held):
                other.stop()
    return {
        "run": run_dir,
        "first": first,
        "rows": rows,
        "counts": counts,
        "resumed": resumed,
        "resumed_rows": rows_of(run_dir),
        "held": held,
        "tmp": tmp,
    }


def test_the_fine_tuned_model_answers_as_the_local_lora(study, server):
    run_dir = study["run"]
    rows = study["rows"]
    lora, ft = rows["lora"], rows["hosted-ft"]
    assert lora["status"] == "ok" and ft["status"] == "ok", (lora["error"], ft["error"])
    assert ft["finetune_resumed"] is False
    # the same records, seed and settings: the same adapter, so greedy answers are the same answers
    assert predicted(run_dir, "hosted-ft") == predicted(run_dir, "lora")
    assert len(set(predicted(run_dir, "lora"))) > 2  # the answers differ between prompts
    assert ft["score"] == lora["score"] and ft["n_eval"] == 8
    # billed tokens are the tokens the trainer saw, as the local LoRA counts them
    assert ft["finetune_trained_tokens"] == lora["train_tokens"] > 0
    assert ft["api_model"].startswith("ft:tiny-lively:") and ft["finetune_base_model"] == "tiny-lively"
    job = server.jobs[ft["finetune_job_id"]]
    assert job.status == "succeeded" and job.hyperparameters == {"batch_size": 4, "learning_rate_multiplier": 1.0}
    assert job.validation_file is None  # ticket-routing has no validation split here
    # cost: training once at the training price, serving per request at the fine-tuned model's price
    assert ft["train_cost_usd"] == pytest.approx(ft["finetune_trained_tokens"] / 1000 * 3.0)
    serving = (ft["api_input_tokens"] * 0.3 + ft["api_output_tokens"] * 1.2) / 1000
    assert ft["api_serving_usd"] == pytest.approx(serving)
    assert ft["serving_usd_per_request"] == pytest.approx(serving / 8)
    assert ft["cost_usd"] == pytest.approx(serving + ft["train_cost_usd"])
    assert ft["api_requests"] == 8 and ft["finetune_requests"] >= 4  # an upload, the job, a poll and its events
    report = (run_dir / "REPORT.md").read_text()
    assert "**api_finetune rows**" in report and "hosted-ft" in report.split("## Cost at volume")[1]
    # the job's events are the cell's progress, in its log
    log = "".join(p.read_text() for p in (run_dir / "logs").glob("*hosted-ft*.log"))
    assert f"created job {ft['finetune_job_id']}" in log and "Step 2/2" in log and "Job succeeded" in log


def test_failures_are_rows(study):
    """A job the server fails, rate-limited polls (retried), a key that is not set and a wrong key: each its
    own row with the reason; neither key problem reached an upload."""
    rows = study["rows"]
    assert study["first"].exit_code == 1 and "some techniques failed" in study["first"].output
    error = rows["too-long"]["error"]
    assert rows["too-long"]["status"] == "failed" and study["counts"]["failing"] == 1
    assert "fine-tuning job ftjob-" in error and " failed at " in error and "longer than train.max_length" in error
    assert rows["limited"]["status"] == "ok" and rows["limited"]["finetune_retries"] == 2
    assert "environment variable HARNESS_TEST_FT_UNSET" in rows["no-key"]["error"]
    assert "HTTP 401" in rows["wrong-key"]["error"] and "$HARNESS_TEST_FT_WRONG" in rows["wrong-key"]["error"]
    assert study["counts"]["server"] == (1, 1)  # hosted-ft's job and its file alone


def test_a_cell_killed_while_its_job_runs_resumes_the_same_job(study):
    """The cell's process is SIGKILLed while the job runs at the provider: `--resume` polls the job the
    state file names (the server counts one job created, one upload), and the row says it resumed."""
    assert study["rows"]["crashed"]["status"] == "failed" and study["counts"]["held"] == (1, 1)
    row = study["resumed_rows"]["crashed"]
    assert row["status"] == "ok" and row["finetune_resumed"] is True
    assert (study["held"].jobs_created, len(study["held"].files)) == (1, 1)
    assert row["finetune_job_id"] == next(iter(study["held"].jobs))
    # a failed job's state was forgotten, so the resume tried it with a new job (and failed again)
    assert study["resumed_rows"]["too-long"]["status"] == "failed"


def test_the_key_is_never_written(study):
    files = written_files(study["tmp"])
    assert any(p.name == "results.json" for p in files) and any(p.parent.name == "state" for p in files)
    assert not [p for p in files if KEY.encode() in p.read_bytes()]
    assert KEY not in study["first"].output and KEY not in study["resumed"].output


@pytest.mark.slow
def test_a_killed_driver_resumes_the_same_job(lively_model_dir, tmp_path, monkeypatch):
    """The whole driver (process group and all) is SIGKILLed while the job runs: `--resume` polls the same job."""
    hold = threading.Event()
    server = start_server(lively_model_dir, hold=hold)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, KEY)
    path = tmp_path / "r.yaml"
    path.write_text(recipe(lively_model_dir, tmp_path / "out", hosted("hosted-ft", server.url), limit=2))
    log = tmp_path / "driver.log"
    try:
        driver = start_driver(["run", path], log)
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("out/tiny/*/state/*.json")):
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        run_dir = only_run_dir(tmp_path / "out")
        hold.set()
        result = run_cli("run", "--resume", run_dir)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    row = rows_of(run_dir)["hosted-ft"]
    assert row["status"] == "ok" and row["finetune_resumed"] is True
    assert server.jobs_created == 1 and len(server.files) == 1


def request(url: str, body: bytes | None = None, key: str | None = KEY, content_type="application/json"):
    headers = {"Content-Type": content_type} | ({"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_refuses_a_bad_file_a_wrong_purpose_and_a_missing_key(server):
    from harness.techniques.api_finetune import multipart

    status, answer = request(f"{server.url}/fine_tuning/jobs", key=None)
    assert status == 401 and KEY not in json.dumps(answer)
    body, kind = multipart({"purpose": "assistants"}, "file", "x.jsonl", b"{}")
    assert request(f"{server.url}/files", body, content_type=kind)[0] == 400
    body, kind = multipart({"purpose": "fine-tune"}, "file", "x.jsonl", b'{"messages": []}\nnot json\n')
    status, file = request(f"{server.url}/files", body, content_type=kind)
    assert status == 200 and file["bytes"] == len(b'{"messages": []}\nnot json\n') and file["filename"] == "x.jsonl"
    status, job = request(
        f"{server.url}/fine_tuning/jobs", json.dumps({"model": "tiny-lively", "training_file": file["id"]}).encode()
    )
    assert status == 200 and job["status"] == "validating_files"
    deadline = time.monotonic() + 30
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.02)
        job = request(f"{server.url}/fine_tuning/jobs/{job['id']}")[1]
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_training_file"
    assert "line 1" in job["error"]["message"] and job["fine_tuned_model"] is None
    events = request(f"{server.url}/fine_tuning/jobs/{job['id']}/events")[1]["data"]
    assert events[0]["message"].startswith("Job failed") and events[-1]["message"].startswith("Created")
    wrong = json.dumps({"model": "other", "training_file": file["id"]}).encode()
    assert request(f"{server.url}/fine_tuning/jobs", wrong)[0] == 400


def test_serve_finetune_wants_the_key_it_names(monkeypatch, tiny_model_dir):
    monkeypatch.delenv("HARNESS_TEST_FT_UNSET", raising=False)
    result = run_cli("serve-finetune", "--base", tiny_model_dir, "--api-key-env", "HARNESS_TEST_FT_UNSET", "--port", 0)
    assert result.exit_code != 0 and "HARNESS_TEST_FT_UNSET (--api-key-env) is not set" in result.output
    result = run_cli("serve-finetune", "--base", tiny_model_dir, "--train", '{"max_stepz": 2}', "--port", 0)
    assert result.exit_code != 0 and "max_stepz" in result.output


def searched(text: str) -> str:
    """A recipe with a search budget and the validation split a search chooses on."""
    return text.replace("eval:\n", "eval:\n  validation: {fraction: 0.15}\n") + "search_budget: 4\n"


def test_a_search_over_the_hyperparameters_gets_the_recipes_budget(tmp_path):
    """`search:` over hyperparameters.* is checked against the kind's schema and gets the recipe's
    search_budget, as every technique does; a training-loss objective is refused (no local training)."""
    from harness.config import load_recipe
    from harness.searchspace import apply_params, trials_for
    from harness.yamlconfig import ConfigError

    space = {"hyperparameters.learning_rate_multiplier": {"log_uniform": [0.5, 4]}, "hyperparameters.n_epochs": [1, 3]}
    entry = hosted("hosted-ft", "https://api.example.com/v1", search={"space": space})
    text = searched(recipe(Path("random:llama"), tmp_path / "out", entry))
    (tmp_path / "r.yaml").write_text(text)
    spec = load_recipe(tmp_path / "r.yaml").techniques[0]
    assert trials_for(spec, 4) == 4
    trial = apply_params(spec, {"hyperparameters.learning_rate_multiplier": 2.0, "hyperparameters.n_epochs": 3})
    assert trial.hyperparameters.n_epochs == 3 and trial.hyperparameters.learning_rate_multiplier == 2.0
    for change, message in (
        ({"objective": "validation_loss"}, "needs a trained kind"),
        ({"space": {"hyperparameters.n_epochs": [0, 2]}}, "n_epochs"),
    ):
        bad = hosted("hosted-ft", "https://api.example.com/v1", search={"space": space} | change)
        (tmp_path / "r.yaml").write_text(searched(recipe(Path("random:llama"), tmp_path / "out", bad)))
        with pytest.raises(ConfigError, match=message):
            load_recipe(tmp_path / "r.yaml")


def test_a_cancelled_job_ends_cancelled_with_its_event(lively_model_dir):
    from harness.tasks import load_task
    from harness.techniques.api_finetune import conversation, multipart

    task = load_task("ticket-routing")
    hold = threading.Event()  # queued, never trained
    server = start_server(lively_model_dir, hold=hold)
    try:
        lines = "\n".join(json.dumps({"messages": conversation(task, e)}) for e in task.train[:4]).encode()
        body, kind = multipart({"purpose": "fine-tune"}, "file", "train.jsonl", lines)
        file = request(f"{server.url}/files", body, content_type=kind)[1]
        create = {"model": "tiny-lively", "training_file": file["id"], "hyperparameters": {"n_epochs": "auto"}}
        job = request(f"{server.url}/fine_tuning/jobs", json.dumps(create).encode())[1]
        assert job["hyperparameters"] == {}  # "auto": the server's own
        cancelled = request(f"{server.url}/fine_tuning/jobs/{job['id']}/cancel", b"{}")[1]
        assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
        events = request(f"{server.url}/fine_tuning/jobs/{job['id']}/events?limit=1")[1]
        assert [e["message"] for e in events["data"]] == ["Fine-tuning job cancelled"] and events["has_more"]
        listed = request(f"{server.url}/fine_tuning/jobs")[1]["data"]
        assert [j["id"] for j in listed] == [job["id"]]
    finally:
        server.stop()
    assert server.jobs[job["id"]].status == "cancelled" and server.jobs[job["id"]].fine_tuned_model is None


def test_a_job_the_provider_no_longer_knows_is_replaced(server, lively_model_dir, tmp_path, monkeypatch, capsys):
    """A resumed cell whose stored job the provider answers 404 for (a restarted local server forgets its jobs)
    creates a new job instead of failing on every resume; the new job's id replaces the old in the state."""
    from harness.config import load_recipe
    from harness.planning import Cell
    from harness.tasks import load_task
    from harness.techniques import RunContext
    from harness.techniques.api_finetune import FineTuningJob
    from harness.worker import LineProgress

    monkeypatch.setenv(KEY_ENV, KEY)
    (tmp_path / "r.yaml").write_text(recipe(lively_model_dir, tmp_path / "out", hosted("hosted-ft", server.url)))
    spec_recipe = load_recipe(tmp_path / "r.yaml")
    cell = Cell("hosted-ft", 0)
    ctx = RunContext(spec_recipe, load_task("ticket-routing"), "cpu", tmp_path, LineProgress(), cell=cell)
    job = FineTuningJob(spec_recipe.techniques[0], ctx)
    job.state_path.parent.mkdir(parents=True)
    job.state_path.write_text(json.dumps({"job": "ftjob-gone", "request": job.request()}))
    before = server.jobs_created
    job.result()
    assert server.jobs_created == before + 1 and job.id != "ftjob-gone" and not job.resumed
    assert json.loads(job.state_path.read_text())["job"] == job.id and job.fine_tuned_model in server.models
    assert "has no job ftjob-gone (HTTP 404); creating a new one" in capsys.readouterr().out
