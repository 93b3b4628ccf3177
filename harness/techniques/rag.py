"""kind: rag — the base model prompted with passages retrieved from the task's corpus.

`Augmenter` is shared with the fine-tuned kinds: a `retrieval:` block on full/lora/qlora trains
and scores with the same passage-augmented prompts ("LoRA + RAG").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from harness import kinds
from harness.config import RetrievalSettings, TechniqueBase
from harness.retrieval import recall_at_k
from harness.tasks import Example
from harness.techniques.base import Outcome, RunContext
from harness.techniques.prompt import score_base_model


class RagTechnique(TechniqueBase):
    """RAG baseline: the base model, prompted with passages retrieved from the task's corpus."""

    kind: Literal["rag"]
    shots: int = Field(0, ge=0, le=64)
    retrieval: RetrievalSettings = RetrievalSettings()


class Augmenter:
    """Retrieves passages for examples (batched, once per example) and writes them into the user turn,
    best first, within a token budget of the reading model's tokenizer."""

    def __init__(self, settings: RetrievalSettings, index, tokenizer):
        self.settings, self.index, self.tokenizer = settings, index, tokenizer
        self.retrieved: dict[str, list[int]] = {}  # example id -> chunk indices, best first
        self.passages_used: dict[str, int] = {}
        self.search_seconds = 0.0

    def retrieve(self, examples: Sequence[Example]) -> None:
        todo = [e for e in examples if e.id not in self.retrieved]
        if not todo:
            return
        start = time.perf_counter()
        results = self.index.retriever.search([e.input for e in todo], self.settings.k)
        self.search_seconds += time.perf_counter() - start
        self.retrieved.update((e.id, r) for e, r in zip(todo, results))

    def __call__(self, example: Example, question: str) -> str:
        self.retrieve([example])
        passages: list[str] = []
        budget = self.settings.context_tokens
        for rank, index in enumerate(self.retrieved[example.id], start=1):
            chunk, text = self.index.chunks[index], self.index.chunks[index].text
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > budget:
                if passages:  # lower-ranked passages are dropped before a better one is cut
                    break
                ids = ids[:budget]
                text = self.tokenizer.decode(ids)
            passages.append(f"[{rank}] ({chunk.doc_id}) {text}")
            budget -= len(ids)
        self.passages_used[example.id] = len(passages)
        return self.settings.template.format(passages="\n\n".join(passages), question=question)

    def retrieved_docs(self, example: Example) -> list[str]:
        return [self.index.chunks[i].doc_id for i in self.retrieved.get(example.id, [])]

    def annotate(self, outcome: Outcome, examples: Sequence[Example]) -> None:
        """Add retrieval figures to the row and each prediction: recall@k, and whether a wrong answer
        was a retrieval miss (gold document not retrieved) or a reading miss (retrieved, misread)."""
        by_id = {e.id: e for e in examples}
        recalls, retrieval_misses, reading_misses = [], 0, 0
        # Under a continuous metric (rouge_l, chrf) predictions carry `correct` None: no answer is
        # simply wrong, so there are no misses to split.
        binary = all(p.get("correct") is not None for p in outcome.predictions)
        for prediction in outcome.predictions:
            example = by_id[prediction["id"]]
            docs = self.retrieved_docs(example)
            prediction.update(retrieved=docs, passages_in_prompt=self.passages_used.get(example.id))
            if example.gold_docs:
                recall = recall_at_k(example.gold_docs, docs)
                recalls.append(recall)
                prediction.update(gold_docs=list(example.gold_docs), recall=recall)
                if binary and not prediction["correct"]:
                    retrieval_misses += recall < 1
                    reading_misses += recall == 1
        s = self.settings
        outcome.values.update(
            retriever=s.retriever,
            retrieval_k=s.k,
            index_seconds=self.index.seconds,
            index_cached=self.index.cached,
            index_chunks=len(self.index.chunks),
            retrieval_seconds=self.search_seconds,
            retrieval_seconds_per_request=self.search_seconds / max(len(self.retrieved), 1),
            recall_at_k=sum(recalls) / len(recalls) if recalls else None,
            retrieval_misses=retrieval_misses if recalls and binary else None,
            reading_misses=reading_misses if recalls and binary else None,
            passages_in_prompt=sum(self.passages_used.values()) / max(len(self.passages_used), 1),
        )


def augmenter(ctx: RunContext, settings: RetrievalSettings, tokenizer, examples: Sequence[Example]) -> Augmenter:
    """An Augmenter over the run's (cached) index, with retrieval already done for `examples`."""
    augment = Augmenter(settings, ctx.index(settings), tokenizer)
    augment.retrieve(examples)
    return augment


def run_rag(spec: RagTechnique, ctx: RunContext) -> Outcome:
    _, tokenizer = ctx.base_model()
    examples = ctx.heldout_examples()
    augment = augmenter(ctx, spec.retrieval, tokenizer, examples)
    outcome = score_base_model(spec, ctx, augment)
    augment.annotate(outcome, examples)
    return outcome


kinds.register(
    kinds.Kind(
        "rag",
        RagTechnique,
        run_rag,
        "the base model prompted with passages retrieved from the task's corpus",
        reads_base_model=True,
        needs=lambda spec: (kinds.CORPUS,),
    )
)
