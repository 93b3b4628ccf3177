"""The result row, typed: a core every row has (identity, status, score and CI, timings, memory, cost)
and the figures the row's kind declares.

A `Row` is a pydantic model that also behaves like the dict it is stored as (`row["score"]`,
`row.get("lm_eval:...")`, `**row`, `row | {...}`), so the renderers read stored rows and rows they
build alike; assigning a core field validates it.
Every key a row may carry beyond the core is declared once: a shared figure in figures.py (label, unit,
better end), a kind's figure in its `Kind(figures=...)`, an lm-eval score (`lm_eval:<task>:<metric>`)
or a secondary metric (`score_<metric>`), or a descriptive field below. The worker checks the rows a
kind returns (`undeclared`), so a figure no report knows how to label cannot be stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["ok", "failed", "skipped"]
Number = int | float  # ints stay ints (counts, bytes), floats floats
RowLike = Mapping[str, Any]  # what the analysis and the renderers read: a Row, or a dict a test builds

# Fields that are not figures (no unit, never compared or plotted), by who writes them.
FIELDS = {
    # the worker and the kinds' shared evaluation
    "eval_mode": "how answers were obtained: generate or loglikelihood (eval.heldout.mode)",
    "train_precision": "the training precision train.precision resolved to (fp32, bf16, ...)",
    "train_curve": "the Trainer's logged history: loss and learning rate per logging step",
    "train_strategy": "how a multi-process cell trained: ddp, fsdp or deepspeed (train.distributed)",
    "rank_peak_memory_bytes": "a multi-process cell's training peak memory on each rank, rank 0 first",
    "rank_state_bytes": "the parameter and optimizer-state bytes each rank held after training (a shard under FSDP)",
    "adapters_merged": "whether LoRA adapters were merged into the base model for scoring",
    "init_from": "the technique whose trained model this one started from",
    "lm_eval_errors": "lm-eval task -> why it could not run",
    "lm_eval_shared": "whether the lm-eval scores are the shared base model's",
    "lm_eval_base": "whether the lm-eval scores are the base model's (the reference for forgetting)",
    "lm_eval_samples": "each lm-eval figure's per-item values: {task:metric: {item: value}} in a cell, "
    "{seed: that} in a technique's row",
    "retriever": "the retriever of a technique with retrieval (bm25, dense, hybrid)",
    "index_cached": "whether the corpus index came from the on-disk cache",
    "judge_model": "the LLM judge's model or endpoint",
    "judge_error": "why the LLM judge failed (the technique's own results stand)",
    "reward_model": "the reward model (eval.reward_model) that scored the answers",
    "reward_error": "why eval.reward_model could not score the answers (the technique's own results stand)",
    "majority_label": "the label the majority floor always answers",
    # an exported artifact scored (harness export --score: deploy/score.py)
    "export_of": "the technique whose exported artifact this row scored",
    "export_format": "the export's format: adapter, merged or gguf",
    "export_folder": "where the scored export lies",
    # the load test (harness loadtest: deploy/loadtest.py)
    "serving_levels": "per concurrency level: requests/s, tokens/s, latency and TTFT p50/p95 of the served technique",
    "serving_error": "why the load test stopped (the server failed); the technique's other figures stand",
    "serving_cost_basis": "which figure serving_usd_per_request comes from: a served level, or the batch run",
    "serving_engine": "the command that served the technique in the load test",
    # a cell (results.json `cells`, cells/<id>.json)
    "cell": "the cell's id",
    "seed": "the cell's seed",
    "split": "the split the cell scored: test, or validation for a search trial",
    "trial": "the search trial's number",
    "train_size": "the cell's training-set size (learning curves)",
    "objective": "a search trial's objective value",
    "pruned": "whether the search pruned the trial",
    "executor": "the executor that ran the cell",
    "node": "the machine the cell ran on",
    # a technique's merged row (planning.merge, planning.search_summary)
    "params": "the chosen configuration's values (search, dotted keys)",
    "chosen": "the values the search chose",
    "search_objective": "validation_score, validation_loss or validation_macro_f1",
    "seed_scores": "the score under each seed",
    "seed_invariant": "whether one cell served every seed (greedy zero-shot)",
}


class Row(BaseModel, MutableMapping):
    """One technique's (or one cell's) result."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    # identity
    technique: str
    kind: str
    status: Status
    error: str | None = None
    # score
    metric: str | None = None
    score: Number | None = None
    ci_low: Number | None = None
    ci_high: Number | None = None
    n_eval: int | None = None
    invalid_rate: Number | None = None
    # time
    wall_seconds: Number | None = None
    train_seconds: Number | None = None
    eval_seconds: Number | None = None
    # memory and where it ran
    peak_memory_bytes: Number | None = None
    peak_memory_method: str | None = None
    device: str | None = None
    dtype: str | None = None
    # size and throughput
    trainable_params: Number | None = None
    total_params: Number | None = None
    train_tokens: Number | None = None
    train_tokens_per_second: Number | None = None
    eval_tokens_per_second: Number | None = None
    # cost
    cost_usd: Number | None = None
    artifact_bytes: Number | None = None

    # --- read like the stored dict -------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        try:
            return (self.__pydantic_extra__ or {})[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)  # a core field is validated; an extra is stored as given

    def __delitem__(self, key: str) -> None:
        if key in type(self).model_fields:
            raise KeyError(f"{key!r} is part of every row; set it to None instead")
        del (self.__pydantic_extra__ or {})[key]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a Mapping's keys, not pydantic's (key, value)
        yield from type(self).model_fields
        yield from self.__pydantic_extra__ or {}

    def __len__(self) -> int:
        return len(type(self).model_fields) + len(self.__pydantic_extra__ or {})

    def __or__(self, values: Mapping[str, Any]) -> Row:
        """A copy with `values` set (validated), as `dict | dict` would give."""
        return type(self).model_validate(self.as_dict() | dict(values))

    __eq__ = BaseModel.__eq__
    __hash__ = None  # type: ignore[assignment]  # mutable, like the dict it stands for

    def as_dict(self) -> dict[str, Any]:
        """The row as stored in results.json and the cell files."""
        return dict(self.items())


CORE: tuple[str, ...] = tuple(Row.model_fields)


def make_row(technique: str, kind: str, status: str, **values: Any) -> Row:
    """A row; values not in the typed core are the row's figures (secondary metrics stay flat, so
    pandas loads rows as they are)."""
    return Row.model_validate(values | {"technique": technique, "kind": kind, "status": status})


def declared(key: str, kind: str) -> bool:
    """Whether a row of `kind` may carry `key` (see the module's docstring)."""
    from harness import figures, kinds

    return key in CORE or key in FIELDS or key in kinds.declared_fields(kind) or figures.get(key, kind) is not None


def undeclared(row: Mapping[str, Any]) -> list[str]:
    """The keys of `row` that nothing declares."""
    return [key for key in row if not declared(key, row["kind"])]
