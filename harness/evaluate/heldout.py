"""Held-out evaluation: batched greedy generation over the test split (or, with `mode: loglikelihood`,
the likeliest of the task's labels), then scoring with a 95% CI.

Answering and scoring are separate steps: `model_answers` answers with a local model, and a technique
whose answers come from elsewhere (kind api: a hosted endpoint) scores them with the same
`score_answers`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import metrics
from harness.config import HeldoutEval
from harness.tasks import Example, Task, heldout_examples  # noqa: F401  (heldout_examples lived here)


@dataclass(frozen=True)
class HeldoutResult:
    metric: str
    score: float
    ci_low: float
    ci_high: float
    metrics: dict[str, float]
    invalid_rate: float | None
    generated_tokens: int
    predictions: list[dict]  # one per example: id, input, expected, predicted, parsed, correct (and value;
    # label_loglikelihoods under mode: loglikelihood)
    prompt_tokens: tuple[int, ...] = ()  # per example: the tokens the model read (padding excluded; generate mode)
    output_tokens: tuple[int, ...] = ()  # per example: the tokens it wrote (up to and including a stop token)


@dataclass(frozen=True)
class Generation:
    answers: list[str]
    prompt_tokens: list[int]  # per prompt, in the prompts' order
    output_tokens: list[int]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> tuple[list[str], int]:
    """Greedy answers for prompts (left-padded batches, similar lengths together); also the token count."""
    generation = generate_counted(model, tokenizer, prompts, batch_size, max_new_tokens, on_batch)
    return generation.answers, sum(generation.output_tokens)


def generate_counted(
    model,
    tokenizer,
    prompts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    on_batch: Callable[[int], None] = lambda n: None,
    reuse_prefix: bool = True,
    on_step: Callable[[list[int], list[int]], None] | None = None,
) -> Generation:
    """As `generate`, with each request's prompt and output token counts. With `reuse_prefix`, the tokens
    every prompt starts with (system message, few-shot turns) are encoded once (see prefix_cache).
    `on_step(indices, tokens)` is called at every decoding step with the prompts' indices in the batch and
    the token each was given (a streaming server's hook: deploy/server.py)."""
    import torch

    from harness.evaluate import prefix_cache

    # Prompts rendered by a chat template already carry their special tokens.
    add_special = not getattr(tokenizer, "chat_template", None)
    token_lists = tokenizer(list(prompts), add_special_tokens=add_special)["input_ids"]
    shared = prefix_cache.shared_prefix_length(token_lists) if reuse_prefix else 0
    shared = shared if shared >= prefix_cache.MIN_SHARED_TOKENS else 0
    prefix = token_lists[0][:shared] if shared else []
    cached = prefix_cache.encode_prefix(model, prefix) if shared else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    prompt_tokens, output_tokens = [0] * len(prompts), [0] * len(prompts)
    stop_ids = stop_token_ids(model, tokenizer)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        encoded = prefix_cache.batch_inputs(prefix, [token_lists[i][shared:] for i in batch], pad_id, model.device)
        reused = {"past_key_values": prefix_cache.cache_for_batch(cached, len(batch))} if cached is not None else {}
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                **reused,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad_id,
                eos_token_id=sorted(stop_ids),
                streamer=_StepStreamer(batch, on_step) if on_step else None,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        for i, row, read in zip(batch, new_tokens.tolist(), encoded["attention_mask"].sum(dim=1).tolist()):
            prompt_tokens[i], output_tokens[i] = int(read), _length_until_stop(row, stop_ids)
        for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            answers[i] = text.strip()
        on_batch(len(batch))
    return Generation(answers, prompt_tokens, output_tokens)


def latencies(
    model, tokenizer, prompts: Sequence[str], settings: HeldoutEval, labels: Sequence[str] = ()
) -> list[float]:
    """Seconds to answer each prompt alone (batch size 1), as the scored run answers (greedy generation, or
    the labels' log-likelihoods); after one untimed request, since the first at a new batch shape pays set-up."""

    def answer(prompt: str) -> None:  # reads the output: on CUDA, synchronized
        if settings.mode == "loglikelihood":
            loglikelihood_answers(model, tokenizer, [prompt], labels, 1)
        else:
            generate_counted(model, tokenizer, [prompt], 1, settings.max_new_tokens)

    seconds = []
    for prompt in prompts[:1]:
        answer(prompt)
    for prompt in prompts:
        start = time.perf_counter()
        answer(prompt)
        seconds.append(time.perf_counter() - start)
    return seconds


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def stop_token_ids(model, tokenizer) -> set[int]:
    """The tokens that end an answer: the tokenizer's end of sequence and the model's generation config's."""
    return {tokenizer.eos_token_id, *_as_list(getattr(model.generation_config, "eos_token_id", None))} - {None}


class _StepStreamer:
    """transformers' streamer protocol (put/end) for a batch: generate puts the prompt ids first (2-D), then
    one token per sequence (1-D) at each step; the steps go to `on_step` with the batch's prompt indices."""

    def __init__(self, indices: list[int], on_step: Callable[[list[int], list[int]], None]):
        self.indices, self.on_step = indices, on_step

    def put(self, value) -> None:
        if value.dim() == 1:
            self.on_step(self.indices, value.tolist())

    def end(self) -> None:
        pass


def _length_until_stop(tokens: list[int], stop_ids: set[int]) -> int:
    for n, token in enumerate(tokens):
        if token in stop_ids:
            return n + 1
    return len(tokens)


def loglikelihood_answers(
    model,
    tokenizer,
    prompts: Sequence[str],
    labels: Sequence[str],
    batch_size: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> tuple[list[str], list[dict[str, float]]]:
    """For each prompt, every label scored as the assistant's answer (the summed log-probabilities of its
    tokens after the rendered prompt); the answer is the likeliest label (the first one listed on a tie).
    `batch_size` labels are scored at a time, over the prompt's cached keys and values."""
    answers, scores = [], []
    for prompt in prompts:
        by_label = dict(zip(labels, label_logprobs(model, tokenizer, prompt, labels, batch_size)))
        answers.append(max(by_label, key=by_label.__getitem__))
        scores.append(by_label)
        on_batch(1)
    return answers, scores


def label_logprobs(model, tokenizer, prompt: str, labels: Sequence[str], batch_size: int) -> list[float]:
    """Each label's summed log-probability as the answer to `prompt`, from the same tokens as
    preference.completion_logprobs (the prompt's ids, then the label's), but the prompt is encoded once:
    its last position gives every label's first token, and its key/value cache is copied under each batch
    of labels, which encodes only their other tokens. Re-encoding prompt + label per label cost a full
    forward pass of the prompt for each label."""
    import torch

    from harness.evaluate.preference import encoding
    from harness.evaluate.prefix_cache import cache_for_batch

    add_special, pad = encoding(tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
    label_ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    totals = []
    with torch.inference_mode():
        # logits of the last position only: the vocabulary projection of every prompt token is not needed
        encoded = model(input_ids=torch.tensor([prompt_ids], device=model.device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(encoded.logits[0, -1].float(), dim=-1)
        for start in range(0, len(label_ids), batch_size):
            group = label_ids[start : start + batch_size]
            scores = [first[ids[0]].item() if ids else 0.0 for ids in group]
            read = [ids[:-1] for ids in group]  # each label's tokens but its last predict the next
            width = max(map(len, read))
            if width:
                logits = model(  # right-padded: every label's tokens keep their positions after the prompt
                    input_ids=torch.tensor([r + [pad] * (width - len(r)) for r in read], device=model.device),
                    attention_mask=torch.tensor(
                        [[1] * (len(prompt_ids) + len(r)) + [0] * (width - len(r)) for r in read], device=model.device
                    ),
                    cache=cache_for_batch(encoded.cache, len(group)),
                    use_cache=True,
                ).logits.float()
                logps = torch.log_softmax(logits, dim=-1)
                for i, ids in enumerate(group):
                    scores[i] += sum(logps[i, j, ids[j + 1]].item() for j in range(len(ids) - 1))
            totals += scores
    return totals


@dataclass(frozen=True)
class Answered:
    """One answer per prompt, and what producing them measured."""

    answers: list[str]
    prompt_tokens: tuple[int, ...] = ()  # per prompt: tokens read (generation; an endpoint's reported usage)
    output_tokens: tuple[int, ...] = ()  # per prompt: tokens written
    label_scores: list[dict[str, float]] | None = None  # mode loglikelihood: every label's log-likelihood


def model_answers(
    model,
    tokenizer,
    task: Task,
    prompts: Sequence[str],
    settings: HeldoutEval,
    on_batch: Callable[[int], None] = lambda n: None,
) -> Answered:
    """A local model's answers under `settings.mode`: greedy generation with its token counts, or the
    likeliest label with every label's log-likelihood."""
    if settings.mode == "loglikelihood":
        settings.check_task(task)
        assert task.labels is not None  # check_task
        answers, label_scores = loglikelihood_answers(
            model, tokenizer, prompts, task.labels, settings.batch_size, on_batch
        )
        return Answered(answers, label_scores=label_scores)
    generation = generate_counted(
        model, tokenizer, prompts, settings.batch_size, settings.max_new_tokens, on_batch, settings.reuse_prefix
    )
    return Answered(generation.answers, tuple(generation.prompt_tokens), tuple(generation.output_tokens))


def evaluate(
    model,
    tokenizer,
    task: Task,
    examples: Sequence[Example],
    prompt_for: Callable[[Example], str],
    settings: HeldoutEval,
    seed: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> HeldoutResult:
    answered = model_answers(model, tokenizer, task, [prompt_for(e) for e in examples], settings, on_batch)
    return score_answers(task, examples, answered, settings, seed)


def score_answers(
    task: Task, examples: Sequence[Example], answered: Answered, settings: HeldoutEval, seed: int
) -> HeldoutResult:
    """Score answers (one per example, however they were produced) with the task's metric and its
    bootstrap 95% CI; the predictions every technique stores."""
    answers = list(answered.answers)
    expected = [e.output for e in examples]
    metric = task.spec.metric
    scored = metrics.score(metric, expected, answers, task.labels)
    low, high = metrics.metric_ci(metric, scored, expected, task.labels, settings.bootstrap_samples, seed)
    predictions = [
        {"id": e.id, "input": e.input, "expected": e.output, "predicted": a, "parsed": p, **metrics.outcome(metric, v)}
        for e, a, p, v in zip(examples, answers, scored.parsed, scored.correct)
    ]
    for prediction, by_label in zip(predictions, answered.label_scores or []):
        prediction["label_loglikelihoods"] = {label: round(value, 4) for label, value in by_label.items()}
    return HeldoutResult(
        metric,
        scored.metrics[metric],
        low,
        high,
        scored.metrics,
        scored.invalid_rate,
        sum(answered.output_tokens),
        predictions,
        answered.prompt_tokens,
        answered.output_tokens,
    )
