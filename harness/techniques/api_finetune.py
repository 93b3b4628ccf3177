"""kind: api_finetune — a provider's fine-tuning API (OpenAI's, Together's, `harness serve-finetune`'s):
upload the train split, let the provider train, then score the fine-tuned model as kind api scores a
prompted one.

    POST {base_url}/files                          the train split as JSONL chat lines (purpose fine-tune),
                                                   and the validation split when the task has one
    POST {base_url}/fine_tuning/jobs               the base model (`model`), the files, `hyperparameters`
                                                   (n_epochs, batch_size, learning_rate_multiplier; unset:
                                                   the provider's "auto"), the recipe's seed
    GET  {base_url}/fine_tuning/jobs/{id}          polled, the wait growing from poll_seconds to max_poll_seconds
    GET  {base_url}/fine_tuning/jobs/{id}/events   shown as the cell's progress and log lines

Each line of the uploaded file is the conversation the local trained kinds learn from: the messages
prompting.messages builds (what the model is scored on, no shots) and the answer as the assistant turn.
Once the job has succeeded, its `fine_tuned_model` is scored through techniques/api.py on the held-out
split, zero-shot, exactly as a kind api row with that model (same client, cache, retries, figures).

Cost: `train_cost_usd` = the job's `trained_tokens` x `train_usd_per_1k_tokens`, paid once; serving is the
scoring requests' tokens x `usd_per_1k_tokens` (the fine-tuned model's inference price), so the row's
serving_usd_per_request and cost at volume are those of the hosted model (analysis/ownership.py).

Resume: the job's id is written to the run folder (state/<cell id>.json, atomically) as soon as the
provider returns it, so a driver killed while the job runs polls the same job on `--resume` instead of
paying for a second one (a job the provider answers 404 for, e.g. a restarted local server's, is
replaced by a new one). A job that failed or was cancelled fails the row with the provider's message
and is forgotten, so a later resume starts a new job. The key is read from `api_key_env` (never written).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness import kinds, prompting
from harness.config import EndpointSettings, TechniqueBase
from harness.endpoint import Endpoint, EndpointError
from harness.figures import Figure
from harness.techniques.api import API_FIELDS, API_FIGURES, ApiTechnique, require_generate, run_api
from harness.techniques.base import Outcome, RunContext
from harness.yamlconfig import Strict

DONE = {"succeeded", "failed", "cancelled"}  # a job's final statuses (OpenAI's names)


class Hyperparameters(Strict):
    """What a fine-tuning API takes; each unset one is the provider's choice ("auto")."""

    n_epochs: int | None = Field(None, ge=1, le=50)
    batch_size: int | None = Field(None, ge=1, le=256)
    learning_rate_multiplier: float | None = Field(None, gt=0, le=100)  # x the provider's base learning rate


class ApiFinetuneTechnique(EndpointSettings, TechniqueBase):  # name and search first in its fields
    """A provider's fine-tuning of `model` on the train split, then its fine-tuned model scored through
    the same endpoint (config.EndpointSettings: base_url, api_key_env, usd_per_1k_tokens = the
    fine-tuned model's inference price, concurrency, retries, timeout, cache)."""

    kind: Literal["api_finetune"]
    hyperparameters: Hyperparameters = Hyperparameters()
    train_usd_per_1k_tokens: float | None = Field(None, ge=0)  # the provider's training price; None: unknown
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")  # in the fine-tuned model's name
    poll_seconds: float = Field(5.0, gt=0, le=600)  # the first wait between polls of the job
    max_poll_seconds: float = Field(60.0, gt=0, le=3600)  # the wait grows 1.5x per poll up to this
    job_timeout_hours: float = Field(24.0, gt=0, le=720)  # give up waiting (the job stays; --resume polls it)


def run_api_finetune(spec: ApiFinetuneTechnique, ctx: RunContext) -> Outcome:
    try:
        require_generate(ctx, spec.kind)  # before the job: a row that cannot be scored must not pay for training
        job = FineTuningJob(spec, ctx).result()
    except EndpointError as exc:  # the row's error: the reason alone, as a RuntimeError
        raise RuntimeError(str(exc)) from None
    scored = ApiTechnique.model_validate(
        spec.model_dump(include=set(EndpointSettings.model_fields))
        | {"name": spec.name, "kind": "api", "model": job.fine_tuned_model}
    )
    outcome = run_api(scored, ctx)
    serving = outcome.values.get("cost_usd")
    price, tokens = spec.train_usd_per_1k_tokens, job.trained_tokens
    train = None if price is None or tokens is None else tokens / 1000 * price  # unknown without either
    outcome.values.update(
        api_serving_usd=serving,
        train_cost_usd=train,
        cost_usd=None if serving is None or train is None else serving + train,
        finetune_base_model=spec.model,
        finetune_job_id=job.id,
        finetune_trained_tokens=job.trained_tokens,
        finetune_job_seconds=job.seconds,
        finetune_requests=job.client.requests,
        finetune_retries=job.client.retries,
        finetune_resumed=job.resumed,
        trainable_params=None,  # the provider's method (LoRA or full) and its size are not reported
    )
    return outcome


class FineTuningJob:
    """One cell's job at the provider: found in the cell's state, or created; polled to its end."""

    def __init__(self, spec: ApiFinetuneTechnique, ctx: RunContext):
        self.spec, self.ctx = spec, ctx
        self.client = Endpoint(spec, max_tokens=1)  # the key is read (and checked) here, before any upload
        self.state_path = Path(ctx.run_dir) / "state" / f"{ctx.cell.id}.json"
        self.id = ""
        self.resumed = False
        self.seen_events: set[str] = set()
        self.fine_tuned_model = ""
        self.trained_tokens: int | None = None
        self.seconds: int | None = None

    def result(self) -> FineTuningJob:
        """The succeeded job (its fine-tuned model, trained tokens, duration); a failed or cancelled job
        raises the provider's message."""
        self.id = self.stored_job() or self.create()
        try:
            job = self.wait()
        except EndpointError as exc:
            if not (self.resumed and exc.status == 404):
                raise
            # the provider no longer knows the stored job (a restarted local server): nothing of it to pay for
            print(f"[fine-tuning] {self.spec.base_url} has no job {self.id} (HTTP 404); creating a new one", flush=True)
            self.resumed = False
            self.id = self.create()
            job = self.wait()
        if job["status"] != "succeeded":
            self.state_path.unlink(missing_ok=True)  # a resume tries again with a new job
            error = job.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise RuntimeError(
                f"fine-tuning job {self.id} {job['status']} at {self.spec.base_url}: {message or 'no reason given'}"
            )
        model = job.get("fine_tuned_model")
        if not isinstance(model, str) or not model.strip():
            raise RuntimeError(f"fine-tuning job {self.id} succeeded but names no fine_tuned_model")
        self.fine_tuned_model = model.strip()
        self.trained_tokens = whole(job.get("trained_tokens"))  # the provider's answers: checked, or unknown
        start, end = whole(job.get("created_at")), whole(job.get("finished_at"))
        self.seconds = None if start is None or end is None else end - start
        return self

    # --- the job's request and its state ----------------------------------------------------------

    def request(self) -> dict:
        """What creating the job asks for, file ids aside: the state keeps it, so a resumed cell whose
        recipe changed makes a new job rather than adopting the old one."""
        hyper = {k: v for k, v in self.spec.hyperparameters.model_dump().items() if v is not None}
        return {
            "base_url": self.spec.base_url,
            "model": self.spec.model,
            "hyperparameters": hyper,
            "seed": self.ctx.recipe.seed,
            "suffix": self.spec.suffix,
        }

    def stored_job(self) -> str | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("request") != self.request() or not state.get("job"):
            return None
        self.resumed = True
        print(f"[fine-tuning] resuming job {state['job']} (created by an earlier attempt of this cell)", flush=True)
        return str(state["job"])

    def create(self) -> str:
        from harness.results import write_atomic

        request = self.request()
        body = {k: request[k] for k in ("model", "hyperparameters", "seed")} | {
            "training_file": self.upload("train", self.ctx.task.train)
        }
        if self.ctx.task.validation:
            body["validation_file"] = self.upload("validation", self.ctx.task.validation)
        if self.spec.suffix:
            body["suffix"] = self.spec.suffix
        job = self.client.call("fine_tuning/jobs", json.dumps(body).encode())
        if not isinstance(job.get("id"), str) or not job["id"]:
            raise EndpointError(f"{self.spec.base_url}/fine_tuning/jobs answered no job id")
        # written before anything else can fail: a crash from here on resumes this job, not a new one
        write_atomic(self.state_path, json.dumps({"job": job["id"], "request": request}))
        print(f"[fine-tuning] created job {job['id']} for {self.spec.model}", flush=True)
        return job["id"]

    def upload(self, split: str, examples) -> str:
        """One split as a JSONL chat file at the provider; its file id."""
        lines = [json.dumps({"messages": conversation(self.ctx.task, e)}, ensure_ascii=False) for e in examples]
        name = f"{self.ctx.task.name}-{split}.jsonl"
        data, content_type = multipart({"purpose": "fine-tune"}, "file", name, "\n".join(lines).encode())
        answer = self.client.call("files", data, content_type)
        if not isinstance(answer.get("id"), str) or not answer["id"]:
            raise EndpointError(f"{self.spec.base_url}/files answered no file id for {name}")
        return answer["id"]

    # --- polling ----------------------------------------------------------------------------------

    def wait(self) -> dict:
        """Poll the job until it ends, showing its new events; the wait grows 1.5x per poll."""
        progress = self.ctx.progress
        bar = progress.add_task(f"{self.spec.name}: fine-tuning job {self.id}", total=None)
        deadline = time.monotonic() + self.spec.job_timeout_hours * 3600
        pause = self.spec.poll_seconds
        try:
            while True:
                job = self.client.call(f"fine_tuning/jobs/{self.id}")
                latest = self.show_events()
                status = str(job.get("status"))
                progress.update(bar, description=f"{self.spec.name}: job {self.id} {status}" + latest)
                if status in DONE:
                    return job
                if time.monotonic() + pause > deadline:
                    raise RuntimeError(
                        f"fine-tuning job {self.id} still {status} after {self.spec.job_timeout_hours:g} h "
                        "(job_timeout_hours); it goes on at the provider: `harness run --resume` polls it again"
                    )
                time.sleep(pause)
                pause = min(pause * 1.5, self.spec.max_poll_seconds)
        finally:
            progress.remove_task(bar)

    def show_events(self) -> str:
        """Print the job's events not shown yet (oldest first) to the cell's log; the newest's message."""
        answer = self.client.call(f"fine_tuning/jobs/{self.id}/events?limit=100")
        events = [e for e in reversed(answer.get("data") or []) if isinstance(e, dict)]  # the API lists newest first
        for event in events:
            if str(event.get("id")) not in self.seen_events:
                self.seen_events.add(str(event.get("id")))
                print(f"[fine-tuning] {self.id}: {event.get('message')}", flush=True)
        return f": {events[-1].get('message')}" if events else ""


def whole(value) -> int | None:
    """A provider's count or Unix time if it is a whole number >= 0, else None (unknown)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def conversation(task, example) -> list[dict]:
    """An example as a chat-file line's messages: what the model is asked (as kind lora trains on it) and
    the answer as the assistant turn."""
    return prompting.messages(task, example) + [{"role": "assistant", "content": example.output}]


def multipart(fields: dict[str, str], file_field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body (form fields and one file) and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/jsonl\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


kinds.register(
    kinds.Kind(
        "api_finetune",
        ApiFinetuneTechnique,
        run_api_finetune,
        "a provider's fine-tuning API (OpenAI-compatible): its fine-tuned model scored as kind api",
        reads_base_model=False,
        trained=False,  # trained elsewhere: no local training loss, learning curve or memory plan
        hosted=True,
        figures=API_FIGURES
        + (
            Figure("api_serving_usd", "serving tokens billed (api_finetune)", "usd", "lower"),
            Figure("finetune_trained_tokens", "tokens trained on, as billed (api_finetune)", "count"),
            Figure("finetune_job_seconds", "fine-tuning job, created to finished", "seconds", "lower"),
            Figure("finetune_requests", "HTTP requests of the fine-tuning job (uploads, polls)", "count"),
            Figure("finetune_retries", "retried requests of the fine-tuning job", "count", "lower"),
        ),
        fields=API_FIELDS
        | {
            "finetune_base_model": "the model the provider fine-tuned",
            "finetune_job_id": "the provider's fine-tuning job id",
            "finetune_resumed": "whether the cell polled a job an earlier attempt created (--resume)",
        },
    )
)
