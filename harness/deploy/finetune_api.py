"""`harness serve-finetune --base MODEL`: a local server that speaks the OpenAI fine-tuning API, so kind
api_finetune (techniques/api_finetune.py) runs for real, on your own hardware, against this protocol.

    POST /v1/files                              multipart (purpose=fine-tune, file=JSONL chat lines): a file id
    POST /v1/fine_tuning/jobs                   {model, training_file, validation_file?, hyperparameters?, seed?,
                                                suffix?}: a job, trained in the background
    GET  /v1/fine_tuning/jobs[/{id}[/events]]   the jobs, a job (status, fine_tuned_model, trained_tokens,
                                                error), its events newest first
    POST /v1/fine_tuning/jobs/{id}/cancel       stops the job's training at its next step
    POST /v1/chat/completions                   {model: the base's name or a fine_tuned_model, messages, ...}
    GET  /v1/models, /health

A job trains a LoRA adapter on the uploaded file through the harness's own training path (train.train on
the file's records, techniques/finetune.lora_config, the server's train settings; n_epochs, batch_size
and learning_rate_multiplier x the server's learning rate from the job), one job at a time on a worker
thread; its events are the trainer's progress. The trained model, merged as the harness scores a LoRA,
is then served under the job's `fine_tuned_model` by server.py's ChatServer (its request checks, its
Batcher), exactly as `harness serve` answers; the adapter is saved under --work-dir.

With a key (the environment variable --api-key-env names), every request must carry it as a bearer
token; without, none is asked for. The key is never written or echoed.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness.config import HeldoutEval, ModelSpec, TrainSettings
from harness.deploy.loader import Served
from harness.deploy.server import BadRequest, ChatServer, Listener, error, json_object, read_body, send

MAX_FILE_BYTES = 512_000_000  # an upload larger than this is refused unread
ROLES = ("system", "user", "assistant")
BASE_LEARNING_RATE = 2e-4  # LoRA's default here (kinds lora/qlora); a job's multiplier scales it
# One training at a time in a process, whichever server it is for: the seed a job sets (the global RNGs) and
# accelerate's state are process-wide, so two at once would neither be reproducible nor run
TRAINING = threading.Lock()


class ApiError(Exception):
    """A request the server refuses: HTTP `status` with this message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


@dataclass
class Job:
    """A fine-tuning job as the API shows it, plus its events and the files it trains on."""

    id: str
    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: dict
    seed: int
    suffix: str | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating_files"
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict | None = None
    events: list[dict] = field(default_factory=list)

    def view(self) -> dict:
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "hyperparameters": self.hyperparameters,
            "seed": self.seed,
            "suffix": self.suffix,
            "error": self.error,
        }

    def event(self, message: str, level: str = "info") -> None:
        self.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{self.id.removeprefix('ftjob-')[:8]}-{len(self.events):06d}",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "message",
            }
        )


class JobFailed(Exception):
    """Why a job failed: its `error` object's message and code."""

    def __init__(self, message: str, code: str = "training_failed"):
        super().__init__(message)
        self.code = code


@dataclass
class Tuned(Served):
    """A model this server answers for (the base, or a fine-tuned one): the client's messages as they are
    (no task adds shots or a system message here), generated with `heldout`'s settings."""

    heldout: HeldoutEval = field(default_factory=HeldoutEval)

    @property
    def settings(self):
        return self.heldout

    def conversation(self, messages: list[dict]) -> list[dict]:
        return [dict(m) for m in messages]


class FineTuneServer:
    """The server (see the module's docstring). `train` and `lora` are the training every job gets, with
    the job's hyperparameters applied. Test hooks: `rate_limit_polls` answers the first n GETs of a job with
    HTTP 429; `hold` (an Event) keeps every job queued until it is set. `jobs_created` counts jobs."""

    def __init__(
        self,
        base: ModelSpec,
        *,
        name: str | None = None,
        device: str = "cpu",
        port: int = 0,
        key: str | None = None,
        train: TrainSettings | None = None,
        lora: Any = None,
        learning_rate: float = BASE_LEARNING_RATE,
        heldout: HeldoutEval | None = None,
        work_dir: Path | None = None,
        rate_limit_polls: int = 0,
        hold: threading.Event | None = None,
    ):
        from harness.techniques.finetune import LoraSettings
        from harness.worker import preload

        preload()  # the training libraries, before a job's thread needs them: trl's lazy imports race in threads
        self.base, self.name, self.device, self.key = base, name or base.id, device, key
        self.train = train or TrainSettings()
        self.lora = lora or LoraSettings()
        self.learning_rate, self.heldout = learning_rate, heldout or HeldoutEval()
        self.work_dir = Path(work_dir) if work_dir else None
        self.rate_limit_polls, self.hold = rate_limit_polls, hold
        self.files: dict[str, dict] = {}  # id -> {object, content}
        self.jobs: dict[str, Job] = {}
        self.models: dict[str, ChatServer] = {}  # served model name -> its answering ChatServer
        self.jobs_created = self.polls = 0
        self.lock = threading.Lock()
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.worker = threading.Thread(target=self.train_jobs, name="fine-tuning", daemon=True)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 — http.server's naming
                server.route(self, "GET")

            def do_POST(self):  # noqa: N802
                server.route(self, "POST")

            def log_message(self, *args):
                pass

        self.httpd = Listener(("127.0.0.1", port), Handler)  # loopback only
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FineTuneServer:
        """Serve from background threads (tests); `serve_forever` blocks instead."""
        self.worker.start()
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="http", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.worker.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()
        for job in self.jobs.values():  # a job mid-training stops at its next step
            if job.status not in ("succeeded", "failed"):
                job.status = "cancelled"
        if self.hold is not None:
            self.hold.set()
        self.queue.put(None)
        for chat in self.models.values():
            chat.stop()

    # --- routes ------------------------------------------------------------------------------------

    def route(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            return send(handler, 200, {"status": "ok", "models": sorted(self.models)})
        try:
            self.authorize(handler)
            if method == "POST" and path == "/v1/chat/completions":
                return self.chat(handler)
            payload = self.answer(handler, method, path)
        except BadRequest as exc:  # the body: too large, not JSON, not an object
            return refuse(handler, ApiError(400, str(exc)))
        except ApiError as exc:
            return refuse(handler, exc)
        send(handler, 200, payload)

    def authorize(self, handler: BaseHTTPRequestHandler) -> None:
        if self.key is not None and handler.headers.get("Authorization") != f"Bearer {self.key}":
            raise ApiError(401, "Incorrect or missing API key: send it as `Authorization: Bearer <key>`")

    def answer(self, handler: BaseHTTPRequestHandler, method: str, path: str) -> dict:
        if method == "GET" and path == "/v1/models":
            data = [{"id": name, "object": "model", "created": 0, "owned_by": "harness"} for name in self.models]
            return {"object": "list", "data": data}
        if method == "POST" and path == "/v1/files":
            return self.upload(handler)
        if method == "POST" and path == "/v1/fine_tuning/jobs":
            return self.create(json_object(handler))
        if method == "GET" and path == "/v1/fine_tuning/jobs":
            return {"object": "list", "data": [j.view() for j in reversed(self.jobs.values())], "has_more": False}
        match = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)(/events|/cancel)?", path)
        if match is None:
            raise ApiError(404, f"no route {method} {path}")
        job = self.jobs.get(match.group(1))
        if job is None:
            raise ApiError(404, f"no fine-tuning job {match.group(1)!r}")
        if method == "POST" and match.group(2) == "/cancel":
            return self.cancel(job)
        if method == "GET" and match.group(2) == "/events":
            limit = int(parse_qs(urlsplit(handler.path).query).get("limit", ["20"])[0])
            return {"object": "list", "data": list(reversed(job.events))[:limit], "has_more": len(job.events) > limit}
        if method == "GET" and match.group(2) is None:
            with self.lock:
                self.polls += 1
                limited = self.polls <= self.rate_limit_polls
            if limited:
                raise ApiError(429, "Rate limit reached for requests", "rate_limit_exceeded")
            return job.view()
        raise ApiError(404, f"no route {method} {path}")

    def upload(self, handler: BaseHTTPRequestHandler) -> dict:
        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_FILE_BYTES:
            raise ApiError(413, f"a file of {length} bytes; at most {MAX_FILE_BYTES}")
        head = f"Content-Type: {handler.headers.get('Content-Type', '')}\r\n\r\n".encode()
        form = BytesParser(policy=HTTP).parsebytes(head + handler.rfile.read(length))
        parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
        if "file" not in parts:
            raise ApiError(400, "a multipart/form-data upload needs a `file` part (and `purpose`)")
        purpose = str(parts["purpose"].get_content()).strip() if "purpose" in parts else ""
        if purpose != "fine-tune":
            raise ApiError(400, f"purpose must be fine-tune (got {purpose!r})")
        content = parts["file"].get_payload(decode=True) or b""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        file = {
            "object": "file",
            "id": file_id,
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": parts["file"].get_filename() or "upload.jsonl",
            "purpose": purpose,
        }
        with self.lock:
            self.files[file_id] = {"object": file, "content": content}
        return file

    def create(self, body: dict) -> dict:
        if body.get("model") != self.name:
            raise ApiError(
                400, f"model {body.get('model')!r} cannot be fine-tuned here; this server fine-tunes {self.name!r}"
            )
        for key in ("training_file", "validation_file"):
            if body.get(key) is not None and body[key] not in self.files:
                raise ApiError(400, f"{key} {body[key]!r}: no such file")
        if body.get("training_file") is None:
            raise ApiError(400, "training_file is required")
        method = body.get("method") or {}
        hyper = (method.get(method.get("type") or "supervised") or {}).get("hyperparameters") or body.get(
            "hyperparameters"
        )
        job = Job(
            id=f"ftjob-{uuid.uuid4().hex[:24]}",
            model=self.name,
            training_file=body["training_file"],
            validation_file=body.get("validation_file"),
            hyperparameters=checked_hyperparameters(hyper or {}),
            seed=int(body.get("seed") or 0),
            suffix=body.get("suffix"),
        )
        job.event(f"Created fine-tuning job: {job.id}")
        with self.lock:
            self.jobs[job.id] = job
            self.jobs_created += 1
        self.queue.put(job)
        return job.view()

    def cancel(self, job: Job) -> dict:
        if job.status not in ("succeeded", "failed", "cancelled"):
            job.status = "cancelled"
            job.finished_at = int(time.time())
            job.event("Fine-tuning job cancelled")
        return job.view()

    def chat(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer through the ChatServer of the model the request names (its checks, its Batcher)."""
        body = read_body(handler)
        try:
            model = json.loads(body or b"null").get("model")
        except (ValueError, AttributeError):
            model = None
        if model not in self.models and model == self.name:
            self.serve_base()
        if model not in self.models:
            raise ApiError(
                404, f"The model {model!r} does not exist; this server has: {', '.join(self.models) or 'none yet'}"
            )
        connection, handler.rfile = handler.rfile, io.BytesIO(body)  # ChatServer.post reads the body itself
        try:
            self.models[model].post(handler)
        finally:
            handler.rfile = connection  # the connection's next request (keep-alive)

    # --- training ----------------------------------------------------------------------------------

    def train_jobs(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.hold is not None:
                self.hold.wait()
            if job.status == "cancelled":
                continue
            try:
                model, tokenizer, trained_tokens = self.fine_tune(job)
            except JobFailed as exc:
                self.finish(job, "failed", error={"message": str(exc), "code": exc.code, "param": None})
                continue
            except Exception as exc:  # noqa: BLE001 — the job fails with the reason; the server serves on
                self.finish(job, "failed", error={"message": f"{type(exc).__name__}: {exc}", "code": "server_error"})
                continue
            if job.status == "cancelled":
                continue
            name = f"ft:{self.name}:{job.suffix or 'harness'}:{job.id.removeprefix('ftjob-')[:8]}"
            self.add_model(name, model, tokenizer)
            job.trained_tokens = trained_tokens
            job.fine_tuned_model = name
            self.finish(job, "succeeded")

    def finish(self, job: Job, status: str, error: dict | None = None) -> None:
        job.error, job.finished_at = error, int(time.time())
        job.event(f"Job {status}" + (f": {error['message']}" if error else ""), "error" if error else "info")
        job.status = status  # last: a client that sees the status sees the rest

    def fine_tune(self, job: Job):
        """(the merged model as the harness scores a LoRA, its tokenizer, tokens trained on)."""
        from transformers import TrainerCallback

        from harness import models
        from harness.techniques.finetune import save_artifact, scored_model

        records = (
            self.records(job.training_file),
            self.records(job.validation_file) if job.validation_file else [],
        )
        job.status = "running"
        job.event(f"Training {len(records[0])} examples on {self.name} (LoRA rank {self.lora.rank})")

        class Cancelled(TrainerCallback):  # a cancel stops the training at the next step
            def on_step_end(self, args, state, control, **kwargs):
                if job.status == "cancelled":
                    control.should_training_stop = True

        with TRAINING:
            model, tokenizer, stats = self.train_lora(job, records, Cancelled())
        if stats.validation_loss is not None:
            job.event(f"Validation loss {stats.validation_loss:.4f}")
        model = model.to(models.resolve_dtype(self.base, self.device)).eval()
        if self.work_dir is not None:
            save_artifact(model, tokenizer, self.work_dir / job.id)
        model, _ = scored_model(model, merge_adapters=True, quantized=False)
        return model.eval(), tokenizer, stats.tokens

    def train_lora(self, job: Job, records: tuple[list[dict], list[dict]], cancelled):
        """train.train on the file's records, seeded and loaded as the harness's worker does for a cell."""
        import torch
        from transformers import set_seed

        from harness import models, train
        from harness.techniques.finetune import lora_config

        set_seed(job.seed)  # as the worker seeds a cell before it loads the model and trains
        model, tokenizer = models.load(self.base, self.device, torch.float32)
        try:
            model, stats, _ = train.train(
                model,
                tokenizer,
                None,
                self.settings(job.hyperparameters),
                "lora",
                device=self.device,
                seed=job.seed,
                progress=JobProgress(job),
                label="fine-tuning",
                peft_config=lora_config(self.lora),
                callbacks=[cancelled],
                records=records,
            )
        except ValueError as exc:  # the harness's own refusal of the data (e.g. every example too long)
            raise JobFailed(str(exc), "invalid_training_file") from None
        return model, tokenizer, stats

    def settings(self, hyper: dict) -> TrainSettings:
        """The server's training settings with the job's hyperparameters."""
        update: dict[str, Any] = {"learning_rate": self.learning_rate * float(hyper.get("learning_rate_multiplier", 1))}
        if "n_epochs" in hyper:
            update["epochs"] = float(hyper["n_epochs"])
        if "batch_size" in hyper:
            update["batch_size"] = int(hyper["batch_size"])
        return self.train.model_copy(update=update)

    def records(self, file_id: str) -> list[dict]:
        """The file's chat lines as the trainer's records (one per assistant turn, as train.sft_records)."""
        from harness.train import turn_records

        records = []
        for number, line in enumerate(self.files[file_id]["content"].decode(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                messages = json.loads(line)["messages"]
                valid = isinstance(messages, list) and all(
                    isinstance(m, dict)
                    and m.get("role") in ("system", "user", "assistant")
                    and isinstance(m.get("content"), str)
                    for m in messages
                )
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid or not any(m["role"] == "assistant" for m in messages):
                raise JobFailed(
                    f"invalid file {file_id}: line {number} is not a JSON object with `messages` (a list of "
                    "{role, content}, at least one assistant turn)",
                    "invalid_training_file",
                )
            records += turn_records(messages)
        if not records:
            raise JobFailed(f"invalid file {file_id}: it has no training examples", "invalid_training_file")
        return records

    # --- serving -----------------------------------------------------------------------------------

    def add_model(self, name: str, model, tokenizer) -> None:
        chat = ChatServer(Tuned(name, None, None, model, tokenizer, heldout=self.heldout))
        chat.httpd.server_close()  # requests reach it through this server's routes, not a port of its own
        self.models[name] = chat

    def serve_base(self) -> None:
        """The base model answers too (under --name), loaded on its first request."""
        from harness import models

        with self.lock:
            if self.name not in self.models:
                self.add_model(self.name, *models.load(self.base, self.device))


class JobProgress:
    """The progress API train.train reports to (rich's, as worker.LineProgress), as the job's events."""

    def __init__(self, job: Job):
        self.job = job
        self.bars: dict[int, dict] = {}

    def add_task(self, description: str, total: float | None = None, **_) -> int:
        self.bars[len(self.bars) + 1] = {"description": description, "total": total}
        return len(self.bars)

    def update(self, bar: int, completed: float | None = None, description: str | None = None, **_) -> None:
        state = self.bars[bar]
        state["description"] = description or state["description"]
        if completed is not None:
            self.job.event(f"Step {completed:.0f}/{state['total']:.0f}: {state['description']}")

    def advance(self, bar: int, amount: float = 1) -> None:
        pass

    def remove_task(self, bar: int) -> None:
        self.bars.pop(bar, None)


def checked_hyperparameters(hyper: dict) -> dict:
    """The job's hyperparameters, "auto" and unknown keys refused as a provider does."""
    rules = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256), "learning_rate_multiplier": (float, 1e-6, 100)}
    checked = {}
    for key, value in hyper.items():
        if value in (None, "auto"):
            continue
        if key not in rules:
            raise ApiError(400, f"unknown hyperparameter {key!r}; this server takes {', '.join(rules)}")
        kind, low, high = rules[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ApiError(400, f"hyperparameters.{key} must be a number from {low:g} to {high:g}")
        checked[key] = kind(value)
    return checked


def refuse(handler: BaseHTTPRequestHandler, exc: ApiError) -> None:
    """The error in OpenAI's shape; a 429 says when to come back (at once: the limit is a test's)."""
    send(handler, exc.status, error(str(exc), exc.kind), {"Retry-After": "0"} if exc.status == 429 else None)


def required_key(env: str) -> str:
    """The key clients must send, from the environment variable `env` names (never from the command line)."""
    from harness.yamlconfig import ConfigError

    key = os.environ.get(env, "").strip()
    if not key:
        raise ConfigError(f"environment variable {env} (--api-key-env) is not set; export the key under that name")
    return key
