"""kind: api — a hosted model behind an OpenAI-compatible chat-completions endpoint, as a baseline.

The endpoint gets exactly the messages the prompt-only technique builds (system, k shots drawn by the
recipe's seed, the question; with `retrieval:`, the passages rag.py's Augmenter writes into the user
turn), and its answers are scored like every technique's (heldout.score_answers: the same metric, CI
and predictions). The row adds what the endpoint reports and charges: tokens from each response's
`usage`, `cost_usd` = tokens x the technique's `usd_per_1k_tokens` (this kind's own cost; not
device-hours), request, retry and cache counts, and latency per request.

The requests go through harness/endpoint.py's client: its response cache (so a resumed or repeated
run does not pay twice), `concurrency` requests in flight, retries with backoff, and the key read from
`api_key_env` when the cell runs and never written (not into the cache, the row, the logs or
results.json). A request that still fails fails the cell with the reason, and the other cells run on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness import kinds, prompting
from harness.config import EndpointSettings, RetrievalSettings, TechniqueBase
from harness.endpoint import Endpoint, EndpointError, Reply, token_cost
from harness.evaluate.phase import evaluate_answers
from harness.evaluate.serving import latency_figures
from harness.figures import Figure
from harness.tasks import Example
from harness.techniques.base import Outcome, RunContext


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


def run_api(spec: ApiTechnique, ctx: RunContext) -> Outcome:
    try:
        return _run_api(spec, ctx)
    except EndpointError as exc:  # the row's error: the reason alone, as a RuntimeError
        raise RuntimeError(str(exc)) from None


def require_generate(ctx: RunContext, kind: str = "api") -> None:
    """A hosted model's answers are generated: a recipe that scores labels by likelihood cannot score it."""
    if ctx.recipe.eval.heldout.mode != "generate":
        raise EndpointError(
            f"kind {kind} generates its answers, but the recipe's eval.heldout.mode is "
            f"{ctx.recipe.eval.heldout.mode}: scoring each label needs the model's log-likelihoods, "
            "which a chat-completions endpoint does not return; compare it in a recipe with "
            "eval.heldout.mode: generate"
        )


def _run_api(spec: ApiTechnique, ctx: RunContext) -> Outcome:
    require_generate(ctx)
    max_tokens = ctx.recipe.eval.heldout.max_new_tokens
    endpoint = Endpoint(spec, max_tokens, temperature=spec.temperature, seed=ctx.recipe.seed)
    shots = prompting.draw_shots(ctx.task, spec.shots, ctx.recipe.seed)
    augment = None
    if spec.retrieval is not None:
        from harness.techniques.rag import augmenter

        augment = augmenter(ctx, spec.retrieval, WordTokens(), ctx.heldout_examples())
    replies: list[Reply] = []

    def answer(examples: list[Example], on_batch):
        from harness.evaluate.heldout import Answered

        conversations = [prompting.messages(ctx.task, e, shots, augment) for e in examples]
        replies.extend(endpoint.ask_all(conversations, on_batch))
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


# The row figures and fields of a hosted model's answers (kind api_finetune's rows have them too)
API_FIGURES: tuple[Figure, ...] = (
    Figure("api_input_tokens", "prompt tokens sent (api)", "count"),
    Figure("api_output_tokens", "completion tokens (api)", "count"),
    Figure("api_billed_usd", "billed in this run (api)", "usd", "lower"),
    Figure("api_requests", "HTTP requests sent (api)", "count"),
    Figure("api_cached", "answers from the response cache (api)", "count"),
    Figure("api_retries", "retried requests (api)", "count", "lower"),
    Figure("api_usage_missing", "responses without usage (api)", "count", "lower"),
    Figure(
        "latency_p50_seconds",
        "request latency p50 (api: per HTTP request)",
        "seconds",
        "lower",
    ),
    Figure(
        "latency_p95_seconds",
        "request latency p95 (api: per HTTP request)",
        "seconds",
        "lower",
    ),
)
API_FIELDS = {"api_model": "the hosted model's name", "api_base_url": "the endpoint's base URL"}


kinds.register(
    kinds.Kind(
        "api",
        ApiTechnique,
        run_api,
        "a hosted model through an OpenAI-compatible chat-completions endpoint",
        reads_base_model=False,
        trained=False,
        hosted=True,
        figures=API_FIGURES,
        fields=API_FIELDS,
    )
)
