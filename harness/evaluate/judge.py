"""LLM-as-judge: a judge model grades held-out answers by the task's rubric.

The judge reads the task prompt (the user text, without shots or retrieved passages, so every technique
is judged on the same question), the reference answer, the answer and the rubric, and replies with a
line `Score: N` (1..scale) and a one-sentence reason. `parse_score` reads N; scores are stored
normalised to [0, 1] as (N - 1) / (scale - 1).

A judge is anything with `judge_answers(prompts) -> replies` (the `Judge` protocol, which also takes an
optional progress callback): it receives the
judge's user texts and returns its raw replies, in order. `build` makes one from the recipe's
`eval.judge`: `LocalJudge` for `model:` (a model loaded with harness.models.load, greedy batched
generation), `EndpointJudge` for `endpoint:` (an OpenAI-compatible chat endpoint through the client
kind api uses too, harness/endpoint.py: its response cache, retries with backoff, and the key read from
the environment and never written). A judge may also have `figures() -> dict`, row figures of its own
(the endpoint judge's tokens and cost).

`judge_heldout` grades a finished cell's answers with it, in a measured phase of its own; the worker
calls it on the cells `judges` selects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from harness.evaluate.context import Context

if TYPE_CHECKING:
    from harness.endpoint import Endpoint, Reply

REASON_CHARS = 300  # the judge's reply kept per prediction
PREFILL = "Score:"  # how a local judge's reply starts (see LocalJudge)
# an endpoint judge's system message; the rubric and the reply's format are in each user message (PROMPT)
SYSTEM = (
    "You grade answers strictly by the rubric you are given, the same way every time. Reply with exactly "
    "the two lines asked for: the score, then a one-sentence reason."
)

PROMPT = """\
You are grading an answer to a task by this rubric:
{rubric}

Task:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

Score the answer from 1 (fails the rubric) to {scale} (meets it fully); the reference shows one good answer.
Reply with exactly two lines:
Score: <an integer from 1 to {scale}>
Reason: <one sentence>"""


class Judge(Protocol):
    name: str  # the judge model (or endpoint), as the report names it

    def judge_answers(self, prompts: Sequence[str], on_batch: Callable[[int], None] = lambda n: None) -> list[str]:
        """The judge's raw reply to each prompt (a user message), in the prompts' order; `on_batch(k)`
        after every k replies (progress)."""
        ...


class JudgedContext(Context, Protocol):
    """A cell whose answers are judged: it builds the recipe's judge once (techniques.base.RunContext.judge)."""

    def judge(self) -> Judge: ...


@dataclass
class LocalJudge:
    """A judge model in this process: each prompt rendered with its chat template, answered greedily. The
    reply is started for it with "Score:" (PREFILL; kept in the returned reply), so that a small model
    writes a number next rather than restating the rubric (seen with SmolLM2-135M-Instruct)."""

    name: str
    model: object
    tokenizer: object
    batch_size: int
    max_new_tokens: int

    def judge_answers(self, prompts: Sequence[str], on_batch: Callable[[int], None] = lambda n: None) -> list[str]:
        from harness import prompting
        from harness.evaluate.heldout import generate

        rendered = [prompting.render(self.tokenizer, [{"role": "user", "content": p}]) + PREFILL for p in prompts]
        answers, _ = generate(self.model, self.tokenizer, rendered, self.batch_size, self.max_new_tokens, on_batch)
        return [f"{PREFILL} {answer}" for answer in answers]


@dataclass
class EndpointJudge:
    """A judge behind an OpenAI-compatible chat endpoint (`eval.judge.endpoint`), asked through
    harness/endpoint.py's client (`Endpoint.ask_all`): each prompt as a user message after the SYSTEM
    instructions, at temperature 0, the endpoint's `concurrency` requests in flight. No reply is prefilled
    (a chat endpoint follows the format asked for). The replies of the last call are kept for `figures`."""

    name: str
    endpoint: Endpoint
    replies: list[Reply] = field(default_factory=list)  # of the last judge_answers

    def judge_answers(self, prompts: Sequence[str], on_batch: Callable[[int], None] = lambda n: None) -> list[str]:
        conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
        self.replies = self.endpoint.ask_all(conversations, on_batch)
        return [r.text for r in self.replies]

    def figures(self) -> dict:
        """The row's endpoint-judge figures: tokens the endpoint reported, `judge_cost_usd` at the endpoint's
        `usd_per_1k_tokens` (cached replies at their stored usage, as kind api's cost_usd; None without
        prices or usage: not the device-hour price, which is not what the endpoint charges), requests,
        retries and cached replies; no peak memory (the judge model runs elsewhere)."""
        from harness.endpoint import token_cost

        inputs = [r.input_tokens for r in self.replies if r.input_tokens is not None]
        outputs = [r.output_tokens for r in self.replies if r.output_tokens is not None]
        complete = len(inputs) == len(outputs) == len(self.replies)
        return {
            "judge_input_tokens": sum(inputs) if complete else None,
            "judge_output_tokens": sum(outputs) if complete else None,
            "judge_cost_usd": token_cost(self.endpoint.settings.usd_per_1k_tokens, self.replies),
            "judge_requests": self.endpoint.requests,
            "judge_retries": self.endpoint.retries,
            "judge_cached": sum(r.cached for r in self.replies),
            "judge_peak_memory_bytes": None,
        }


def build(settings, device: str, loaded: tuple | None = None) -> Judge:
    """The judge the recipe's `eval.judge` describes. `loaded`: (model, tokenizer) already in memory for
    the same model spec (the shared base model), used instead of a second copy."""
    if settings.endpoint is not None:  # nothing loaded here: the key is read now, where the cell runs
        from harness.endpoint import Endpoint

        spec = settings.endpoint
        endpoint = Endpoint(spec, settings.max_new_tokens, temperature=0.0, owner="eval.judge.endpoint")
        return EndpointJudge(spec.model, endpoint)
    if loaded is None:
        from harness import models

        loaded = models.load(settings.model, device)
    model, tokenizer = loaded
    return LocalJudge(settings.model.id, model, tokenizer, settings.batch_size, settings.max_new_tokens)


def judges(ctx: Context) -> bool:
    """Whether this cell's answers are judged: the task has a `judge:` rubric, the recipe an `eval.judge`,
    and this is the configuration the row reports (search trials and smaller learning-curve sizes are not)."""
    return ctx.task.spec.judge is not None and ctx.recipe.eval.judge is not None and ctx.final


def judge_heldout(ctx: JudgedContext, predictions: list[dict], metric: str | None) -> dict:
    """Grade a finished cell's held-out answers with the recipe's judge, by the task's rubric. Adds
    `judge_score` (normalised to [0, 1], None when the reply had no score) and `judge_reason` to each
    prediction, and returns the row's judge figures: the mean score over parsed replies, the unparsed
    count, the judge's own seconds and peak memory (model load included; not part of eval_seconds,
    wall_seconds or the serving figures), the judge's own figures (an endpoint judge's tokens and
    judge_cost_usd; see EndpointJudge.figures), and its agreement with the task metric (see
    analysis/stats.judge_agreement). Run by the worker after the technique's runner returned, so a trained
    model is already freed when the judge loads."""
    from harness import metrics
    from harness.analysis.stats import judge_agreement, value_of
    from harness.measure import measure
    from harness.prompting import question_text

    rubric = ctx.task.spec.judge
    assert rubric is not None  # judges(): only a task with a rubric
    by_id = {e.id: e for e in ctx.heldout_examples()}
    texts = [
        prompt(
            rubric.rubric, rubric.scale, question_text(ctx.task, by_id[p["id"]]), p["expected"], p["predicted"] or ""
        )
        for p in predictions
    ]
    job = ctx.progress.add_task("judging answers", total=len(texts))
    with measure(ctx.device) as phase:
        grader = ctx.judge()
        replies = grader.judge_answers(texts, on_batch=lambda k: ctx.progress.advance(job, k))
    ctx.progress.remove_task(job)
    scored = []
    for prediction, reply in zip(predictions, replies):
        points = parse_score(reply, rubric.scale)
        prediction["judge_score"] = None if points is None else normalise(points, rubric.scale)
        prediction["judge_reason"] = reason(reply)
        if points is not None:
            scored.append((prediction["judge_score"], value_of(prediction)))
    values = {
        "judge_model": grader.name,
        "judge_scale": rubric.scale,
        "judge_score": sum(s for s, _ in scored) / len(scored) if scored else None,
        "judge_unparsed": len(predictions) - len(scored),
        "judge_seconds": phase.seconds,
        "judge_peak_memory_bytes": phase.peak_bytes,
    } | (grader.figures() if hasattr(grader, "figures") else {})  # an endpoint judge's tokens and cost
    return values | judge_agreement([s for s, _ in scored], [v for _, v in scored], metrics.is_binary(metric))


def prompt(rubric: str, scale: int, question: str, reference: str, answer: str) -> str:
    """The judge's user message for one answer."""
    return PROMPT.format(
        rubric=rubric.strip(),
        scale=scale,
        question=question.strip(),
        reference=reference.strip(),
        answer=answer.strip() or "(empty)",
    )


_SCORE_WORD = re.compile(r"score", re.IGNORECASE)
# a whole integer: not part of a longer number or a decimal (4.5), not a denominator (/5, "out of 5")
_INTEGER = re.compile(r"(?<![\d.])(\d+)(?!\d)(?!\.\d)")
_DENOMINATOR = re.compile(r"(?:/|out\s+of)\s*$", re.IGNORECASE)


def _first_integer(text: str) -> int | None:
    for match in _INTEGER.finditer(text):
        if not _DENOMINATOR.search(text[: match.start()]):
            return int(match.group(1))
    return None


def parse_score(reply: str, scale: int) -> int | None:
    """The judge's score: the first integer after the word "score" (any case: "Score: 4", "**score** 4/5"),
    or, in a reply that never says "score", the first integer in it ("I give it 5"); None when there is
    none or it lies outside 1..scale. Decimals and denominators ("/5", "out of 5") are not scores."""
    words = list(_SCORE_WORD.finditer(reply))
    if words:
        found = next((n for n in (_first_integer(reply[w.end() :]) for w in words) if n is not None), None)
    else:
        found = _first_integer(reply)
    return found if found is not None and 1 <= found <= scale else None


def normalise(score: int, scale: int) -> float:
    """1..scale onto [0, 1]."""
    return (score - 1) / (scale - 1)


def reason(reply: str) -> str:
    """The reply as stored beside the prediction: whitespace collapsed, at most REASON_CHARS characters."""
    text = " ".join(reply.split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
