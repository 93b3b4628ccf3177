"""A client of an OpenAI-compatible chat-completions endpoint: kind api's (techniques/api.py), kind
api_finetune's (its files and jobs too) and an endpoint judge's (evaluate/judge.py).

    endpoint = Endpoint(settings, max_tokens=64)   # settings: config.EndpointSettings
    reply = endpoint.chat(messages)                # one conversation -> Reply (text, tokens, latency)
    replies = endpoint.ask_all(conversations)      # many, `settings.concurrency` in flight, in order
    job = endpoint.call("fine_tuning/jobs/ID")     # another route of the endpoint: a JSON object (api_finetune)

Responses are cached on disk (harness cache dir / "api", one JSON file per response, keyed by the
sha256 of base_url, model, messages, max_tokens and temperature, and the seed when sampling), so a
resumed or repeated run does not pay twice. The API key is read from the environment variable
`api_key_env` names when the Endpoint is made (where the requests run); it is sent as a bearer token
and never written: not into the cache key or files, errors, logs or results.

With `stream=True` (the load test's client) the answer is asked for as server-sent events and the time
to its first text is measured (Reply.ttft); the events are joined into the same completion, validated and
cached as an unstreamed answer is. A server that answers unstreamed anyway is read as usual (no ttft).

Requests go through urllib (httpx is not among this project's dependencies), from a thread pool. A 429,
a 5xx, a timeout or a connection error is retried `max_retries` times with exponential backoff and
jitter (a Retry-After header wins, up to MAX_RETRY_AFTER_SECONDS); what still fails raises EndpointError
with the reason.

What an endpoint answers is not trusted: a redirect is never followed (the key would go with it to
wherever it points); a response is read whole within `timeout_seconds` (a body that drips slower fails
like a timeout) and up to MAX_RESPONSE_BYTES; the key is cut out of an answer that echoes it; its
content must be text and its `usage` token counts whole numbers in range, or the request fails with the
reason; only a response that passed is cached.

This module imports no technique: the techniques and the evaluation both build on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from harness.config import EndpointSettings, TokenPrices

MAX_BACKOFF_SECONDS = 60.0  # no single wait between retries is longer
MAX_RETRY_AFTER_SECONDS = 60.0  # a server's Retry-After is honoured up to this; a longer one is cut (and said)
MAX_RESPONSE_BYTES = 2_000_000  # a chat completion of max_tokens is kilobytes; more is not an answer
MAX_USAGE_TOKENS = 10_000_000  # a usage count above this for one request is not a count
RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx


@dataclass
class Reply:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    cached: bool
    latency: float | None  # seconds of the request that answered (None when served from the cache)
    ttft: float | None = None  # seconds to the first text of a streamed answer (None: not streamed, or cached)


class EndpointError(RuntimeError):
    """A request that failed for good (or a key that is not set): the caller's cell fails with this message.
    `status`: the HTTP status of a refusal that is not retried (404, 401, ...), else None."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Endpoint:
    """One endpoint's client: cached, retried, thread-safe chat completions, with counts of the requests
    and retries made. `owner` names the settings in a missing-key error (default: their `name`, as an api
    technique has)."""

    def __init__(
        self,
        settings: EndpointSettings,
        max_tokens: int,
        *,
        temperature: float = 0.0,
        seed: int = 0,
        owner: str | None = None,
        stream: bool = False,
    ):
        self.settings, self.max_tokens, self.temperature = settings, max_tokens, temperature
        self.stream = stream
        self.seed = seed  # in the cache key only when sampling (temperature > 0): each seed its own samples
        self.key = api_key(settings, owner)
        self.cache_root = cache_root(settings)
        self.url = f"{settings.base_url}/chat/completions"
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set when one request failed for good: the others give up
        self.requests = self.retries = 0
        self.jitter = random.Random()

    # --- the public API ----------------------------------------------------------------------------

    def chat(self, messages: list[dict]) -> Reply:
        """The reply to one conversation: from the cache, else from the endpoint (then cached)."""
        body = self.request_body(messages)
        key = self.cache_key(body)
        response = self.cached(key)
        if response is not None:
            return _reply(response, cached=True, latency=None)
        response, latency, ttft = self.post(body)
        self.store(key, body, response, latency)
        return _reply(response, cached=False, latency=latency, ttft=ttft)

    def ask_all(self, conversations: list[list[dict]], on_batch: Callable[[int], None] = lambda n: None) -> list[Reply]:
        """Replies in order, `settings.concurrency` requests in flight; `on_batch(k)` as k more are done. The
        first request that fails for good stops the rest and raises (the replies already received are in the
        cache, so a resumed run does not ask again)."""
        replies: list[Reply | None] = [None] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="api") as pool:
            pending = {pool.submit(self.chat, c): i for i, c in enumerate(conversations)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    error = future.exception()
                    if error is not None:
                        self.stop.set()
                        for other in pending:
                            other.cancel()
                        raise error
                    replies[index] = future.result()
                on_batch(len(done))
        return replies  # type: ignore[return-value]

    # --- the cache ---------------------------------------------------------------------------------

    def request_body(self, messages: list[dict]) -> dict:
        return {
            "model": self.settings.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def cache_key(self, body: dict) -> str:
        keyed = {"base_url": self.settings.base_url, **body}
        if self.temperature > 0:
            keyed["seed"] = self.seed
        return hashlib.sha256(json.dumps(keyed, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def cached(self, key: str) -> dict | None:
        if self.cache_root is None:
            return None
        path = self.cache_root / f"{key}.json"
        try:
            stored = json.loads(path.read_text())
            return validated(stored["response"])  # a stored file that does not pass is asked again
        except (OSError, ValueError, KeyError, TypeError, EndpointError):
            return None

    def store(self, key: str, body: dict, response: dict, latency: float) -> None:
        if self.cache_root is None:
            return
        from harness.results import write_atomic

        record = {
            "request": {"base_url": self.settings.base_url, **body},
            "response": response,
            "latency_seconds": latency,
            "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomic(self.cache_root / f"{key}.json", json.dumps(record, ensure_ascii=False))

    # --- requests ----------------------------------------------------------------------------------

    def post(self, body: dict) -> tuple[dict, float, float | None]:
        """The response to one chat request, its latency and (streamed) time to first text; retried on 429 /
        5xx / timeouts / connection errors."""
        if self.stream:
            body = body | {"stream": True, "stream_options": {"include_usage": True}}
        raw, latency, ttft = self.send(self.url, json.dumps(body).encode(), "application/json", self.stream)
        try:
            response = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python recurses
            raise EndpointError(
                f"{self.url} answered with no chat completion: {self.redact(raw[:300].decode(errors='replace'))!r}"
            ) from None
        try:
            return validated(response), latency, ttft
        except EndpointError as exc:
            raise EndpointError(f"{self.url} answered a malformed chat completion: {exc}") from None

    def call(self, path: str, body: bytes | None = None, content_type: str = "application/json") -> dict:
        """The JSON object another route of the endpoint answers (`path` under base_url; GET without a
        body, else POST), with the same retries, key handling and limits as a chat request."""
        url = f"{self.settings.base_url}/{path.lstrip('/')}"
        raw, _, _ = self.send(url, body, content_type)
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise EndpointError(f"{url} answered no JSON object: {self.redact(raw[:300].decode(errors='replace'))!r}")
        return answer

    def send(
        self, url: str, data: bytes | None, content_type: str, stream: bool = False
    ) -> tuple[bytes, float, float | None]:
        """The body of the answer to one request (POST with `data`, else GET), its latency and, for a
        `stream`ed answer, the seconds to its first text (its events joined into one completion: see
        joined_events); retried on 429 / 5xx / timeouts / connection errors; the key is cut out of what
        comes back."""
        import http.client
        import urllib.error

        headers = {"Accept": "application/json"} | ({"Content-Type": content_type} if data is not None else {})
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        for attempt in range(self.settings.max_retries + 1):
            if self.stop.is_set():
                raise EndpointError("stopped: another request of this technique failed")
            with self.lock:
                self.requests += 1
                self.retries += attempt > 0
            request = urllib.request.Request(
                url, data=data, headers=headers, method="POST" if data is not None else "GET"
            )
            start = time.perf_counter()
            retry_after = ttft = None
            try:
                with _OPENER.open(request, timeout=self.settings.timeout_seconds) as answer:
                    arrivals: list[tuple[int, float]] = []
                    raw = self.read(answer, start, url, arrivals)
                    if stream and answer.headers.get_content_type() == "text/event-stream":
                        raw, ttft = joined_events(raw, arrivals, start)
                latency = time.perf_counter() - start
            except urllib.error.HTTPError as exc:
                detail = self.redact(_read_error(exc))
                if 300 <= exc.code < 400:
                    where = exc.headers.get("Location") or "elsewhere"
                    raise EndpointError(
                        f"HTTP {exc.code} from {url}: it redirects to {self.redact(where)}, which is not followed "
                        "(the API key would go with the request); set base_url to the address that answers"
                    ) from None
                if exc.code not in RETRYABLE_STATUS and exc.code < 500:
                    message = f"HTTP {exc.code} from {url}: {detail}{self.key_hint(exc.code)}"
                    raise EndpointError(message, exc.code) from None
                reason = (
                    f"HTTP 429 rate limited by {url}" if exc.code == 429 else f"HTTP {exc.code} from {url}: {detail}"
                )
                retry_after = _retry_after(exc.headers.get("Retry-After"))
                if retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS:
                    reason += f" (its Retry-After of {retry_after:g}s was cut to {MAX_RETRY_AFTER_SECONDS:g}s)"
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, refusals
                reason = self.network_reason(exc)
            else:
                if self.key:  # a server that echoes the request's headers: its answer is cached and reported
                    raw = raw.replace(self.key.encode(), b"[redacted]")
                return raw, latency, ttft
            if attempt == self.settings.max_retries:
                break
            self.stop.wait(self.delay(attempt, retry_after))
        retries = self.settings.max_retries
        raise EndpointError(f"{reason} after {retries} {'retry' if retries == 1 else 'retries'}")

    def read(self, answer, start: float, url: str, arrivals: list[tuple[int, float]] | None = None) -> bytes:
        """The whole body, within timeout_seconds of the request's start (a socket timeout bounds each
        read, not their sum: a body that drips would hold the request forever) and MAX_RESPONSE_BYTES.
        `arrivals` gets (bytes read so far, when) after each read: a stream's first text is timed from it."""
        chunks, size = [], 0
        arrivals = [] if arrivals is None else arrivals
        while chunk := answer.read1(65536):
            chunks.append(chunk)
            size += len(chunk)
            arrivals.append((size, time.perf_counter()))
            if size > MAX_RESPONSE_BYTES:
                raise EndpointError(
                    f"{url} answered more than {MAX_RESPONSE_BYTES / 1e6:g} MB; a chat completion is not "
                    "that long, so it was not read"
                )
            if time.perf_counter() - start > self.settings.timeout_seconds:
                raise TimeoutError("timed out while the answer was still arriving")
        return b"".join(chunks)

    def key_hint(self, status: int) -> str:
        """What to check after a 401/403: the key, or that one is needed."""
        if status not in (401, 403):
            return ""
        if self.settings.api_key_env:
            return f"; check the key in ${self.settings.api_key_env}"
        return "; the endpoint wants a key: set api_key_env"

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half to all of base x 2^attempt); a server's Retry-After wins."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        ceiling = min(self.settings.backoff_seconds * 2**attempt, MAX_BACKOFF_SECONDS)
        return self.jitter.uniform(ceiling / 2, ceiling)

    def network_reason(self, exc: BaseException) -> str:
        cause = getattr(exc, "reason", exc)
        endpoint = f"endpoint {self.settings.base_url}"
        if isinstance(cause, ConnectionRefusedError):
            return f"{endpoint} refused the connection"
        if isinstance(cause, TimeoutError) or "timed out" in str(cause):
            return f"{endpoint} did not answer within {self.settings.timeout_seconds:g}s"
        return f"{endpoint} unreachable ({type(cause).__name__}: {self.redact(str(cause))})"

    def redact(self, text: str) -> str:
        """A server that echoes the request's headers must not put the key into a row's error."""
        return text.replace(self.key, "[redacted]") if self.key else text


def _read_error(exc) -> str:
    try:
        text = exc.read()[:300].decode(errors="replace").strip()
    except Exception:  # noqa: BLE001 — the status is the message then
        text = ""
    return text or str(exc.reason)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (a number, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as the HTTPError it is (urllib would follow it with the Authorization header)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _content(response: dict) -> str:
    try:
        content = response["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EndpointError("no choices[0].message in the response") from exc
    if content is not None and not isinstance(content, str):
        raise EndpointError(f"choices[0].message.content is a {type(content).__name__}, not text")
    return content or ""


def validated(response: dict) -> dict:
    """The response, if its content is text and its usage counts are whole numbers in range; else
    EndpointError naming what is wrong (a NaN or negative count would be priced as given)."""
    if not isinstance(response, dict):
        raise EndpointError(f"the response is a {type(response).__name__}, not an object")
    _content(response)
    usage = response.get("usage")
    if usage is None:
        return response
    if not isinstance(usage, dict):
        raise EndpointError(f"usage is a {type(usage).__name__}, not an object")
    for field in ("prompt_tokens", "completion_tokens"):
        count = usage.get(field)
        if isinstance(count, float) and count.is_integer():
            count = usage[field] = int(count)  # 12.0 from a server that writes floats
        if count is None:
            continue
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_USAGE_TOKENS:
            raise EndpointError(f"usage.{field} is {count!r}, not a token count (0 to {MAX_USAGE_TOKENS:,})")
    return response


def _reply(response: dict, cached: bool, latency: float | None, ttft: float | None = None) -> Reply:
    usage = response.get("usage") or {}
    return Reply(
        _content(response).strip(), usage.get("prompt_tokens"), usage.get("completion_tokens"), cached, latency, ttft
    )


def joined_events(raw: bytes, arrivals: list[tuple[int, float]], start: float) -> tuple[bytes, float | None]:
    """A streamed answer (server-sent events of chat.completion.chunk) as one chat completion's JSON, and the
    seconds from `start` to the arrival of the first event with text (`arrivals`: bytes read by when). An
    error event or an event that is not JSON raises EndpointError."""
    text, usage, finish, ttft, offset = [], None, None, None, 0
    for line in raw.split(b"\n"):
        end, offset = offset + len(line) + 1, offset + len(line) + 1
        payload = line[5:].strip() if line.startswith(b"data:") else None
        if not payload or payload == b"[DONE]":
            continue
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise EndpointError(f"a streamed event is not JSON: {payload[:200].decode(errors='replace')!r}") from None
        if not isinstance(event, dict):
            raise EndpointError(f"a streamed event is a {type(event).__name__}, not an object")
        if "error" in event:
            message = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
            raise EndpointError(f"the stream ended with an error: {message}")
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
            if isinstance(delta, str) and delta:
                text.append(delta)
                if ttft is None:
                    ttft = next(when for size, when in arrivals if size >= end - 1) - start
            finish = (choice.get("finish_reason") if isinstance(choice, dict) else None) or finish
    completion = {"choices": [{"message": {"role": "assistant", "content": "".join(text)}, "finish_reason": finish}]}
    return json.dumps(completion | ({"usage": usage} if usage else {})).encode(), ttft


def api_key(settings: EndpointSettings, owner: str | None = None) -> str | None:
    """The key from the environment variable `api_key_env` names; `owner` names the settings in the error
    (default: an api technique's name)."""
    if settings.api_key_env is None:
        return None
    key = os.environ.get(settings.api_key_env, "").strip()
    if not key:
        owner = owner or repr(getattr(settings, "name", "the endpoint"))
        raise EndpointError(
            f"environment variable {settings.api_key_env} (api_key_env of {owner}) is not set; "
            "export the endpoint's key under that name where the cells run"
        )
    return key


def cache_root(settings: EndpointSettings) -> Path | None:
    """Where responses are stored (None: `cache: false`)."""
    from harness import models

    return models.cache_dir() / "api" if settings.cache else None


def token_cost(prices: TokenPrices | None, replies: list[Reply]) -> float | None:
    """USD for these replies at the endpoint's prices; None without prices or when a reply lacks usage."""
    usage = [(r.input_tokens, r.output_tokens) for r in replies]
    known = [(i, o) for i, o in usage if i is not None and o is not None]
    if prices is None or len(known) < len(replies):
        return None
    return sum((i * prices.input + o * prices.output) / 1000 for i, o in known)
