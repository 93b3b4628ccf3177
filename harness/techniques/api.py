"""kind: api — a hosted model behind an OpenAI-compatible chat-completions endpoint, as a baseline.

The endpoint gets exactly the messages the prompt-only technique builds (system, k shots drawn by the
recipe's seed, the question; with `retrieval:`, the passages rag.py's Augmenter writes into the user
turn), and its answers are scored like every technique's (heldout.score_answers: the same metric, CI
and predictions). The row adds what the endpoint reports and charges: tokens from each response's
`usage`, `cost_usd` = tokens x the technique's `usd_per_1k_tokens` (this kind's own cost; not
device-hours), request, retry and cache counts, and latency per request.

Responses are cached on disk (harness cache dir / "api", one JSON file per response, keyed by the
sha256 of base_url, model, messages, max_tokens and temperature), so a resumed or repeated run does
not pay twice. The API key is read from the environment variable `api_key_env` names when the cell
runs; it is sent as a bearer token and never written: not into the cache key or files, the row, the
logs or results.json.

Requests go through urllib (httpx is not among this project's dependencies), `concurrency` at a time
from a thread pool. A 429, a 5xx, a timeout or a connection error is retried `max_retries` times with
exponential backoff and jitter (a Retry-After header wins); what still fails fails the cell with the
reason, and the other cells run on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness import kinds, prompting
from harness.config import EndpointSettings, RetrievalSettings, TechniqueBase, TokenPrices
from harness.tasks import Example
from harness.techniques.base import Outcome, RunContext, evaluate_answers, latency_figures

MAX_BACKOFF_SECONDS = 60.0  # no single wait between retries is longer (but a server's Retry-After, up to 10 min)
MAX_RETRY_AFTER_SECONDS = 600.0
RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx


class ApiTechnique(EndpointSettings, TechniqueBase):  # name and search first in its fields
    """A hosted model through an OpenAI-compatible chat-completions endpoint, prompted as kind prompt is.
    The endpoint's keys (base_url, model, api_key_env, usd_per_1k_tokens, concurrency, retries, timeout,
    cache) are config.EndpointSettings, which an endpoint judge (eval.judge.endpoint) shares."""

    kind: Literal["api"]
    shots: int = Field(0, ge=0, le=64)  # as kind prompt: examples from train, drawn by the recipe's seed
    retrieval: RetrievalSettings | None = None  # RAG through the endpoint; context_tokens counts words here
    temperature: float = Field(0.0, ge=0, le=2)  # 0: greedy, like the local techniques


class WordTokens:
    """The part of a tokenizer the Augmenter uses, counting whitespace-separated words. The endpoint's
    tokenizer is unknown here, so a retrieval budget (`context_tokens`) is in words for this kind
    (an English word is about 1.3 tokens of most tokenizers)."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": text.split()}

    def decode(self, ids: list[str]) -> str:
        return " ".join(ids)


@dataclass
class Reply:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    cached: bool
    latency: float | None  # seconds of the request that answered (None when served from the cache)


class EndpointError(RuntimeError):
    """A request that failed for good: the cell fails with this message."""


class Endpoint:
    """One technique's (or an endpoint judge's) client: cached, retried, thread-safe chat completions.
    `spec`: the endpoint's settings (an ApiTechnique, or eval.judge.endpoint)."""

    def __init__(
        self,
        spec: EndpointSettings,
        key: str | None,
        cache_root: Path | None,
        max_tokens: int,
        seed: int,
        temperature: float = 0.0,
    ):
        self.spec, self.key, self.cache_root, self.max_tokens = spec, key, cache_root, max_tokens
        self.temperature = temperature
        self.seed = seed  # in the cache key only when sampling (temperature > 0): each seed its own samples
        self.url = f"{spec.base_url}/chat/completions"
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set when one request failed for good: the others give up
        self.requests = self.retries = 0
        self.jitter = random.Random()

    # --- the cache ---------------------------------------------------------------------------------

    def request_body(self, messages: list[dict]) -> dict:
        return {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def cache_key(self, body: dict) -> str:
        keyed = {"base_url": self.spec.base_url, **body}
        if self.temperature > 0:
            keyed["seed"] = self.seed
        return hashlib.sha256(json.dumps(keyed, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def cached(self, key: str) -> dict | None:
        if self.cache_root is None:
            return None
        path = self.cache_root / f"{key}.json"
        try:
            stored = json.loads(path.read_text())
            _content(stored["response"])  # a stored file that does not parse is asked again
            return stored["response"]
        except (OSError, ValueError, KeyError, TypeError, EndpointError):
            return None

    def store(self, key: str, body: dict, response: dict, latency: float) -> None:
        if self.cache_root is None:
            return
        from harness.results import write_atomic

        record = {
            "request": {"base_url": self.spec.base_url, **body},
            "response": response,
            "latency_seconds": latency,
            "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomic(self.cache_root / f"{key}.json", json.dumps(record, ensure_ascii=False))

    # --- requests ----------------------------------------------------------------------------------

    def complete(self, messages: list[dict]) -> Reply:
        body = self.request_body(messages)
        key = self.cache_key(body)
        response = self.cached(key)
        if response is not None:
            return _reply(response, cached=True, latency=None)
        response, latency = self.post(body)
        self.store(key, body, response, latency)
        return _reply(response, cached=False, latency=latency)

    def post(self, body: dict) -> tuple[dict, float]:
        """The response to one request, retried on 429 / 5xx / timeouts / connection errors."""
        import http.client
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        for attempt in range(self.spec.max_retries + 1):
            if self.stop.is_set():
                raise EndpointError("stopped: another request of this technique failed")
            with self.lock:
                self.requests += 1
                self.retries += attempt > 0
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            start = time.perf_counter()
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.spec.timeout_seconds) as answer:
                    raw = answer.read()
                latency = time.perf_counter() - start
            except urllib.error.HTTPError as exc:
                detail = self.redact(_read_error(exc))
                if exc.code not in RETRYABLE_STATUS and exc.code < 500:
                    hint = (
                        (
                            f"; check the key in ${self.spec.api_key_env}"
                            if self.spec.api_key_env
                            else "; the endpoint wants a key: set api_key_env"
                        )
                        if exc.code in (401, 403)
                        else ""
                    )
                    raise EndpointError(f"HTTP {exc.code} from {self.url}: {detail}{hint}") from None
                reason = (
                    f"HTTP 429 rate limited by {self.url}"
                    if exc.code == 429
                    else f"HTTP {exc.code} from {self.url}: {detail}"
                )
                retry_after = _retry_after(exc.headers.get("Retry-After"))
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, refusals
                reason = self.network_reason(exc)
            else:
                try:
                    response = json.loads(raw)
                    _content(response)
                except (ValueError, EndpointError) as exc:
                    raise EndpointError(
                        f"{self.url} answered with no chat completion: "
                        f"{self.redact(raw[:300].decode(errors='replace'))!r}"
                    ) from exc
                return response, latency
            if attempt == self.spec.max_retries:
                break
            self.stop.wait(self.delay(attempt, retry_after))
        retries = self.spec.max_retries
        raise EndpointError(f"{reason} after {retries} {'retry' if retries == 1 else 'retries'}")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half to all of base x 2^attempt); a server's Retry-After wins."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        ceiling = min(self.spec.backoff_seconds * 2**attempt, MAX_BACKOFF_SECONDS)
        return self.jitter.uniform(ceiling / 2, ceiling)

    def network_reason(self, exc: BaseException) -> str:
        cause = getattr(exc, "reason", exc)
        endpoint = f"endpoint {self.spec.base_url}"
        if isinstance(cause, ConnectionRefusedError):
            return f"{endpoint} refused the connection"
        if isinstance(cause, TimeoutError) or "timed out" in str(cause):
            return f"{endpoint} did not answer within {self.spec.timeout_seconds:g}s"
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


def _content(response: dict) -> str:
    try:
        return response["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EndpointError("no choices[0].message in the response") from exc


def _reply(response: dict, cached: bool, latency: float | None) -> Reply:
    usage = response.get("usage") or {}
    return Reply(
        _content(response).strip(), usage.get("prompt_tokens"), usage.get("completion_tokens"), cached, latency
    )


def api_key(spec: EndpointSettings, owner: str | None = None) -> str | None:
    """The key from the environment variable `api_key_env` names; `owner` names the settings in the error
    (default: the technique's name)."""
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env, "").strip()
    if not key:
        owner = owner or repr(getattr(spec, "name", "the endpoint"))  # an api technique's name
        raise EndpointError(
            f"environment variable {spec.api_key_env} (api_key_env of {owner}) is not set; "
            "export the endpoint's key under that name where the cells run"
        )
    return key


def run_api(spec: ApiTechnique, ctx: RunContext) -> Outcome:
    try:
        return _run_api(spec, ctx)
    except EndpointError as exc:  # the row's error: the reason alone, as a RuntimeError
        raise RuntimeError(str(exc)) from None


def _run_api(spec: ApiTechnique, ctx: RunContext) -> Outcome:
    if ctx.recipe.eval.heldout.mode != "generate":
        raise EndpointError(
            "kind api generates its answers, but the recipe's eval.heldout.mode is "
            f"{ctx.recipe.eval.heldout.mode}: scoring each label needs the model's log-likelihoods, "
            "which a chat-completions endpoint does not return; compare it in a recipe with "
            "eval.heldout.mode: generate"
        )

    endpoint = Endpoint(
        spec, api_key(spec), cache_root(spec), ctx.recipe.eval.heldout.max_new_tokens, ctx.recipe.seed, spec.temperature
    )
    shots = prompting.draw_shots(ctx.task, spec.shots, ctx.recipe.seed)
    augment = None
    if spec.retrieval is not None:
        from harness.techniques.rag import augmenter

        augment = augmenter(ctx, spec.retrieval, WordTokens(), ctx.heldout_examples())
    replies: list[Reply] = []

    def answer(examples: list[Example], on_batch):
        from harness.evaluate.heldout import Answered

        conversations = [prompting.messages(ctx.task, e, shots, augment) for e in examples]
        replies.extend(ask_all(endpoint, conversations, spec.concurrency, on_batch))
        inputs = tuple(r.input_tokens for r in replies if r.input_tokens is not None)
        outputs = tuple(r.output_tokens for r in replies if r.output_tokens is not None)
        complete = len(inputs) == len(outputs) == len(replies)
        # the endpoint's reported usage per request (its tokenizer's count): the serving figures' tokens
        return Answered([r.text for r in replies], inputs if complete else (), outputs if complete else ())

    outcome = evaluate_answers(ctx, spec.name, answer)
    if augment is not None:
        augment.annotate(outcome, ctx.heldout_examples())
    outcome.values.update(reply_figures(spec, endpoint, replies))
    return outcome


def ask_all(endpoint: Endpoint, conversations: list[list[dict]], concurrency: int, on_batch) -> list[Reply]:
    """Replies in order, `concurrency` requests in flight; the first request that fails for good stops
    the rest (the replies already received are in the cache, so a resumed run does not ask again)."""
    replies: list[Reply | None] = [None] * len(conversations)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="api") as pool:
        pending = {pool.submit(endpoint.complete, c): i for i, c in enumerate(conversations)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                error = future.exception()
                if error is not None:
                    endpoint.stop.set()
                    for other in pending:
                        other.cancel()
                    raise error
                replies[index] = future.result()
            on_batch(len(done))
    return replies  # type: ignore[return-value]


def cache_root(spec: EndpointSettings) -> Path | None:
    """Where responses are stored (None: `cache: false`)."""
    from harness import models

    return models.cache_dir() / "api" if spec.cache else None


def token_cost(prices: TokenPrices | None, replies: list[Reply]) -> float | None:
    """USD for these replies at the endpoint's prices; None without prices or when a reply lacks usage."""
    usage = [(r.input_tokens, r.output_tokens) for r in replies]
    known = [(i, o) for i, o in usage if i is not None and o is not None]
    if prices is None or len(known) < len(replies):
        return None
    return sum((i * prices.input + o * prices.output) / 1000 for i, o in known)


def reply_figures(spec: ApiTechnique, endpoint: Endpoint, replies: list[Reply]) -> dict:
    """The row's api figures. Tokens and cost_usd cover every answer (a cached one at the usage stored
    with it), so a repeated run reports the same cost; api_billed_usd is what this cell's requests cost."""
    fresh = [r for r in replies if not r.cached]
    complete = all(r.input_tokens is not None and r.output_tokens is not None for r in replies)
    input_tokens = sum(r.input_tokens or 0 for r in replies)
    output_tokens = sum(r.output_tokens or 0 for r in replies)

    def price(rs: list[Reply]) -> float | None:
        return token_cost(spec.usd_per_1k_tokens, rs) if complete else None

    latencies = [r.latency for r in fresh if r.latency is not None]
    values = {
        "api_model": spec.model,
        "api_base_url": spec.base_url,
        "api_input_tokens": input_tokens if complete else None,
        "api_output_tokens": output_tokens if complete else None,
        "api_usage_missing": sum(not (r.input_tokens is not None and r.output_tokens is not None) for r in replies),
        "cost_usd": price(replies),
        "api_billed_usd": price(fresh),
        "api_requests": endpoint.requests,
        "api_cached": len(replies) - len(fresh),
        "api_retries": endpoint.retries,
        **latency_figures(latencies),
        # the model runs elsewhere: this process's memory is not the technique's, and neither are its params
        "eval_peak_memory_bytes": None,
        "peak_memory_method": "not measured (hosted model)",
        "trainable_params": 0,
        "total_params": None,
    }
    if fresh != replies:  # answers read from the cache say nothing about the endpoint's speed
        values.update(eval_tokens_per_second=None, eval_examples_per_second=None)
    return values


kinds.register(
    kinds.Kind(
        "api",
        ApiTechnique,
        run_api,
        "a hosted model through an OpenAI-compatible chat-completions endpoint",
        reads_base_model=False,
        trained=False,
        needs_corpus=lambda spec: spec.retrieval is not None,
        hosted=True,
    )
)
