"""`harness serve RUN --technique NAME`: the technique behind an OpenAI-compatible endpoint on 127.0.0.1.

    POST /v1/chat/completions   {messages, max_tokens?, temperature? (0 only), model?}: the technique's answer
    GET  /v1/models             the one model served: the technique's name
    GET  /health                200 once the model is loaded

The technique adds what it added in the run (deploy/loader.Served.conversation: shots, retrieved
passages) server-side, and answers greedily, as it was scored; a request that asks for sampling
(temperature > 0) or several choices is refused with the reason.

Streaming (`stream: true`): the answer comes as server-sent events in OpenAI's chunk shape, one event per
decoding step that adds text (`data: {"choices": [{"delta": {"content": ...}}]}`), then the finish reason,
the usage when `stream_options.include_usage` asks for it, and `data: [DONE]`. The deltas join to exactly
the unstreamed answer (whitespace at its ends is held back, as the answer is stripped), so a client's time
to first token is the time to the first generated text, queueing and the batch's prefill included.

Dynamic batching: a request waits in a queue; the batching thread takes the first one waiting, then
collects others for up to `batch_wait_ms` or until `max_batch` are in hand, and answers them together
through the run's own batched generation (heldout.generate_counted, via Served.answer), so concurrent
requests share the model's forward passes as the held-out run's batches did. Requests that ask for
different max_tokens are answered in one group per value.

`launched(...)` starts a server from a command template (the recipe's `serving.engine.command`, or this
one's) in its own process group and waits until it answers, for the load test (deploy/loadtest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness.deploy.loader import Served
from harness.evaluate import heldout

MAX_BODY_BYTES = 4_000_000  # a chat request is kilobytes; more is refused unread
# fault injection for tests: "<technique>:<n>" makes that technique's server SIGKILL itself after n answers
# (a server that dies during a load test)
FAULT_ENV = "HARNESS_FAULT_SERVE_KILL_AFTER"
BUILTIN_COMMAND = "{python} -m harness.cli serve {run} --technique {technique} --port {port}"


class BadRequest(ValueError):
    """A request the technique does not answer: HTTP 400 with this message."""


@dataclass
class Pending:
    messages: list[dict]
    max_tokens: int
    future: Future
    stream: TextStream | None = None  # a streamed request's text as it is generated


@dataclass
class Asked:
    """A valid chat request, as the server answers it."""

    messages: list[dict]
    max_tokens: int
    stream: bool = False
    include_usage: bool = False


class TextStream:
    """One streamed request's answer as it grows: fed each decoding step's token, it queues the text added
    since the last step (None once the generation has ended). What it queues is always a prefix of the
    answer's stripped text: leading and trailing whitespace and a half-decoded character wait for more."""

    def __init__(self, tokenizer, stop_ids: set[int]):
        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.tokens: list[int] = []
        self.sent = ""
        self.stopped = False
        self.deltas: queue.Queue[str | None] = queue.Queue()

    def feed(self, token: int) -> None:
        if self.stopped or token in self.stop_ids:
            self.stopped = True
            return
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).strip()
        if text.startswith(self.sent) and not text.endswith("\ufffd") and len(text) > len(self.sent):
            self.deltas.put(text[len(self.sent) :])
            self.sent = text

    def close(self) -> None:
        self.deltas.put(None)


class Batcher:
    """Collects concurrent requests into batches for one model (see the module's docstring)."""

    def __init__(self, served: Served, max_batch: int = 16, wait_seconds: float = 0.005):
        self.served, self.max_batch, self.wait_seconds = served, max_batch, wait_seconds
        self.queue: queue.Queue[Pending | None] = queue.Queue()
        self.batches: list[int] = []  # the size of every batch answered (tests, the server's log)
        self.thread = threading.Thread(target=self.loop, name="batcher", daemon=True)
        self.thread.start()

    def submit(self, messages: list[dict], max_tokens: int, stream: bool = False) -> Pending:
        """Queue a request; its `future` gets (answer, prompt tokens, output tokens, max_tokens), and a
        streamed one's `stream` its text as it grows."""
        stop_ids = heldout.stop_token_ids(self.served.model, self.served.tokenizer)
        pending = Pending(
            messages, max_tokens, Future(), TextStream(self.served.tokenizer, stop_ids) if stream else None
        )
        self.queue.put(pending)
        return pending

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)

    def loop(self) -> None:
        while (first := self.queue.get()) is not None:
            batch = [first, *self.collect()]
            self.batches.append(len(batch))
            for max_tokens in dict.fromkeys(p.max_tokens for p in batch):
                self.answer([p for p in batch if p.max_tokens == max_tokens], max_tokens)

    def collect(self) -> list:
        """Requests that arrive within `wait_seconds`, up to max_batch - 1 more."""
        more: list = []
        deadline = time.monotonic() + self.wait_seconds
        while len(more) < self.max_batch - 1:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self.queue.put(None)  # stop after answering what is in hand
                break
            more.append(item)
        return more

    def answer(self, group: list[Pending], max_tokens: int) -> None:
        streams = [p.stream for p in group]

        def on_step(indices: list[int], tokens: list[int]) -> None:
            for i, token in zip(indices, tokens):  # i: the request's place in the group
                if (stream := streams[i]) is not None:
                    stream.feed(token)

        try:
            generation = self.served.answer(
                [p.messages for p in group],
                max_tokens,
                batch_size=len(group),
                on_step=on_step if any(streams) else None,
            )
        except Exception as exc:  # noqa: BLE001 — every waiting request gets the reason; the server stays up
            for pending in group:
                pending.future.set_exception(exc)
        else:
            for i, pending in enumerate(group):
                pending.future.set_result(
                    (generation.answers[i], generation.prompt_tokens[i], generation.output_tokens[i], max_tokens)
                )
        for stream in streams:
            if stream is not None:
                stream.close()


class Listener(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: 16 clients connecting at once while the model holds the CPU got
    # a connection reset (measured: few-shot, 16 in flight, on 2 cores)
    request_queue_size = 256


class ChatServer:
    """The built-in server: a ThreadingHTTPServer whose handler threads wait on the Batcher."""

    def __init__(self, served: Served, port: int = 0, max_batch: int = 16, batch_wait_ms: float = 5.0):
        self.served = served
        self.batcher = Batcher(served, max_batch, batch_wait_ms / 1000)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a client's connection serves its next request

            def do_GET(self):  # noqa: N802 — http.server's naming
                server.get(self)

            def do_POST(self):  # noqa: N802
                server.post(self)

            def log_message(self, *args):  # one line per request would flood a load test's log
                pass

        self.httpd = Listener(("127.0.0.1", port), Handler)  # loopback only
        self.thread: threading.Thread | None = None
        self.answered = 0
        fault = os.environ.get(FAULT_ENV, "").rpartition(":")
        self.kill_after = int(fault[2]) if fault[0] == served.name else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> ChatServer:
        """Serve from a background thread (tests, a notebook); `serve_forever` blocks instead."""
        # polled every 50 ms for `stop` (socketserver's 0.5 s made every stop take half a second)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="http", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C, SIGTERM as `harness run` turns it into one)."""
        try:
            self.httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        if self.thread is not None:  # serve_forever runs in another thread: ask it to return
            self.httpd.shutdown()
        self.httpd.server_close()
        self.batcher.stop()

    # --- routes ------------------------------------------------------------------------------------

    def get(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path.rstrip("/") == "/v1/models":
            model = {"id": self.served.name, "object": "model", "created": 0, "owned_by": "harness"}
            return send(handler, 200, {"object": "list", "data": [model]})
        if handler.path.rstrip("/") == "/health":
            return send(handler, 200, {"status": "ok", "technique": self.served.name})
        send(handler, 404, error(f"no route GET {handler.path}"))

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path.rstrip("/") != "/v1/chat/completions":
            return send(handler, 404, error(f"no route POST {handler.path}"))
        try:
            asked = self.parse(handler)
        except BadRequest as exc:
            return send(handler, 400, error(str(exc)))
        pending = self.batcher.submit(asked.messages, asked.max_tokens, stream=asked.stream)
        if asked.stream:
            self.stream(handler, pending, asked.include_usage)
        else:
            try:
                text, prompt_tokens, output_tokens, limit = pending.future.result()
            except Exception as exc:  # noqa: BLE001 — the generation's failure, as the server's error
                return send(handler, 500, error(f"{type(exc).__name__}: {exc}", "server_error"))
            send(handler, 200, completion(self.served.name, text, prompt_tokens, output_tokens, limit))
        self.answered += 1
        if self.kill_after is not None and self.answered >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def stream(self, handler: BaseHTTPRequestHandler, pending: Pending, include_usage: bool) -> None:
        """The answer as server-sent events (see the module's docstring); a generation that fails ends the
        stream with an error event. A client that hangs up stops only its own stream."""
        assert pending.stream is not None
        events = EventWriter(handler, self.served.name)
        try:
            events.delta({"role": "assistant", "content": ""})
            while (text := pending.stream.deltas.get()) is not None:
                events.delta({"content": text})
            try:
                answer, prompt_tokens, output_tokens, limit = pending.future.result()
            except Exception as exc:  # noqa: BLE001 — the generation's failure, in the stream
                events.write(error(f"{type(exc).__name__}: {exc}", "server_error"))
            else:
                if answer.startswith(pending.stream.sent) and len(answer) > len(pending.stream.sent):
                    events.delta({"content": answer[len(pending.stream.sent) :]})
                events.delta({}, finish_reason="length" if output_tokens >= limit else "stop")
                if include_usage:
                    events.write(events.chunk([]) | {"usage": usage(prompt_tokens, output_tokens)})
            events.done()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def parse(self, handler: BaseHTTPRequestHandler) -> Asked:
        body = json_object(handler, "a JSON object with `messages`")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("`messages` must be a non-empty list of {role, content}")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                raise BadRequest("each message needs a role: system, user or assistant")
            if not isinstance(message.get("content"), str):
                raise BadRequest("each message's content must be text")
        if float(body.get("temperature") or 0) > 0:
            raise BadRequest("the technique answers greedily, as it was scored: send temperature 0 (or none)")
        if int(body.get("n") or 1) != 1:
            raise BadRequest("one choice per request (n: 1)")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise BadRequest("stream_options must be an object, e.g. {include_usage: true}")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is None:
            max_tokens = self.served.settings.max_new_tokens
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
            raise BadRequest("max_tokens must be a whole number from 1 to 4096")
        return Asked(messages, max_tokens, bool(body.get("stream")), bool(options.get("include_usage")))


def completion(model: str, text: str, prompt_tokens: int, output_tokens: int, limit: int) -> dict:
    """A chat completion in OpenAI's response shape."""
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if output_tokens >= limit else "stop",
            }
        ],
        "usage": usage(prompt_tokens, output_tokens),
    }


def usage(prompt_tokens: int, output_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": prompt_tokens + output_tokens,
    }


class EventWriter:
    """A streamed chat completion: server-sent events in chunked transfer encoding (the connection stays
    open for the client's next request)."""

    def __init__(self, handler: BaseHTTPRequestHandler, model: str):
        self.handler, self.model = handler, model
        self.id, self.created = f"chatcmpl-{time.time_ns()}", int(time.time())
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    def chunk(self, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def delta(self, delta: dict, finish_reason: str | None = None) -> None:
        self.write(self.chunk([{"index": 0, "delta": delta, "finish_reason": finish_reason}]))

    def write(self, payload: dict) -> None:
        self.send(f"data: {json.dumps(payload)}\n\n".encode())

    def done(self) -> None:
        self.send(b"data: [DONE]\n\n")
        self.handler.wfile.write(b"0\r\n\r\n")  # the chunked body's end
        self.handler.wfile.flush()

    def send(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()


def error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind}}


def send(handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body; one above MAX_BODY_BYTES is refused unread (BadRequest)."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length > MAX_BODY_BYTES:
        raise BadRequest(f"request body of {length} bytes; at most {MAX_BODY_BYTES}")
    return handler.rfile.read(length)


def json_object(handler: BaseHTTPRequestHandler, what: str = "a JSON object") -> dict:
    """The request's body as a JSON object, else BadRequest saying what it should be."""
    try:
        body = json.loads(read_body(handler) or b"null")
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be {what}")
    return body


# --- a server in its own process -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Launched:
    process: subprocess.Popen
    base_url: str
    log: Path

    def failure(self) -> str | None:
        """Why the server is gone (its exit and the end of its log), or None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:  # killed: its log's last line says nothing of why
            return f"the server was killed by {signal.Signals(-code).name}"
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return f"the server exited with code {code}" + (f": {lines[-1]}" if lines else "")  # a traceback's last line


@contextlib.contextmanager
def launched(template: str, values: dict, log: Path, ready_seconds: float = 600) -> Iterator[Launched]:
    """Start the server `template` describes ({python}, {port} and the names in `values` filled in), wait
    until GET /v1/models answers, yield it, and stop its whole process group afterwards."""
    port = free_port()
    fields = {"python": shlex.quote(sys.executable), "port": port} | {k: shlex.quote(str(v)) for k, v in values.items()}
    command = template.format(**fields)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            shlex.split(command), stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Launched(process, f"http://127.0.0.1:{port}/v1", log)
    try:
        wait_ready(server, ready_seconds, command)
        yield server
    finally:
        stop_group(process)


def wait_ready(server: Launched, seconds: float, command: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        failure = server.failure()
        if failure:
            raise RuntimeError(f"`{command}` did not start: {failure}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"`{command}` did not answer GET /v1/models within {seconds:g}s (log: {server.log})")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (an engine may fork workers), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


def engine_command(run_dir: str | Path, technique: str, serving) -> tuple[str, dict, float]:
    """(command template, its values, seconds it may take to be ready) of the server for `technique`: the
    recipe's `serving.engine` (config.ServingSpec), else the built-in server with the recipe's batching.
    An engine given {model} gets the technique exported as a merged folder (made once, in the run folder's
    deploy/); it knows nothing of a technique's shots or retrieval, so those need {technique} (a server that
    applies them: the built-in one) or no engine."""
    engine = serving.engine
    if engine is None:
        template = BUILTIN_COMMAND + f" --max-batch {serving.max_batch} --batch-wait-ms {serving.batch_wait_ms:g}"
        return template, {"run": run_dir, "technique": technique}, 600.0
    values: dict = {"run": run_dir, "technique": technique}
    if "{model}" in engine.command:
        from harness.deploy import loader

        spec, _ = loader.context(loader.open_run(run_dir), technique)
        adds = [
            what
            for what, present in (("shots", getattr(spec, "shots", 0)), ("retrieval", getattr(spec, "retrieval", None)))
            if present
        ]
        if adds and "{technique}" not in engine.command:
            raise RuntimeError(
                f"serving.engine serves the exported model ({{model}}), which knows nothing of {technique!r}'s "
                f"{' and '.join(adds)}: serve it with the built-in server (no serving.engine), or an engine command "
                "that takes {technique}"
            )
        values["model"] = exported_model(run_dir, technique)
    return engine.command, values, engine.ready_seconds


def exported_model(run_dir: str | Path, technique: str) -> Path:
    """The technique exported as a merged HF folder in RUN/deploy/<technique>-merged (made on first use)."""
    import shutil

    from harness.deploy.export import export

    folder = Path(run_dir) / "deploy" / f"{technique}-merged"
    if not (folder / "config.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # a half-written earlier attempt
        export(run_dir, technique, "merged", folder)
    return folder
