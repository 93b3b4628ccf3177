"""The recipe schema: what a user writes in recipes/*.yaml, validated into frozen objects.

Each technique kind's settings model lives in its own file (harness/techniques/) and is found through
the kind registry (harness/kinds.py); the blocks several kinds share (training, retrieval, search) live
here. The schema checks what the file says, each error at its line; what lies outside the file (the
model resolves, each task takes the settings) is checked by harness/preflight.py before a run starts.
Nothing this module imports imports it back.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.embeddings import DEFAULT_EMBEDDING_MODEL
from harness.searchspace import check_search
from harness.tasks import BUNDLED_TASKS, TaskRef, TaskSpec, task_ref
from harness.yamlconfig import (
    BuiltModel,
    ByKind,
    Chooser,
    ConfigError,
    RelativeToFile,
    Seed,
    Strict,
    at_most,
    expand_path,
    load_yaml_model,
    name_or_path,
)

DEFAULT_MODEL = "smollm2-135m-instruct"
RANDOM_PREFIX = "random:"


def _names_a_model(value: str) -> bool:
    """An alias, random:<arch> or hub id, unless a folder of that name sits beside the recipe: a value
    that starts with . or names a .gguf or config.json is a path."""
    return not value.startswith(".") and Path(value).suffix not in (".gguf", ".json")


_local_model = name_or_path(_names_a_model)


def _model_path(value: str, folder: Path) -> str:
    """A model id written in a recipe; after random:, the path of a config.json is the recipe folder's too."""
    if value.startswith(RANDOM_PREFIX):
        return RANDOM_PREFIX + _model_path(value.removeprefix(RANDOM_PREFIX), folder)
    return _local_model.resolve(value, folder)


ModelPath = RelativeToFile(_model_path)


class ModelSpec(Strict):
    # alias, local directory, .gguf file, hub id, or random:<arch|config.json>
    id: Annotated[str, ModelPath] = DEFAULT_MODEL
    # auto: bf16 on CUDA (fp16 where bf16 is missing) and on CPUs with avx512_bf16/AMX, else fp32
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    _expand = field_validator("id")(classmethod(lambda cls, v: expand_path(v)))

    @field_validator("id")
    @classmethod
    def _not_empty(cls, value):
        if not value.strip():  # an empty id would reach the loader as a hub id ''
            raise ValueError(
                "empty model id; give an alias (see `harness models`), a local directory, a .gguf "
                "file, a hub id or random:<arch>"
            )
        return value


class Range(Strict):
    """A numeric search axis: exactly one of log_uniform, uniform (floats) or int (integers), as [low, high]."""

    log_uniform: tuple[float, float] | None = None  # sampled evenly in log space: learning rates
    uniform: tuple[float, float] | None = None
    int: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _one_range(self):
        given = [
            (k, v)
            for k, v in (("log_uniform", self.log_uniform), ("uniform", self.uniform), ("int", self.int))
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of log_uniform, uniform or int, e.g. {log_uniform: [1.0e-5, 3.0e-3]}")
        kind, (low, high) = given[0]
        if not low < high or (kind == "log_uniform" and low <= 0):
            raise ValueError(
                f"{kind}: need low < high{' and low > 0' if kind == 'log_uniform' else ''}, got [{low}, {high}]"
            )
        return self


Choice = bool | int | float | str


class SearchSpec(Strict):
    """Tune the technique on the validation split; the chosen values are then scored once on test.

    space: a dotted setting inside the technique (as for overrides) -> a list of values, or a Range."""

    trials: int | None = Field(None, ge=1)  # None: the recipe's search_budget
    space: dict[str, list[Choice] | Range] = Field(min_length=1)
    # validation_score: the task metric; validation_loss: trained kinds, nothing generated; validation_macro_f1:
    # classification tasks, where the score (accuracy) and the loss can favour always answering the majority label
    objective: Literal["validation_score", "validation_loss", "validation_macro_f1"] = "validation_score"
    pruning: bool = True  # validation_loss: stop a trial whose loss trails the median of earlier ones mid-training

    @field_validator("space")
    @classmethod
    def _non_empty_lists(cls, space):
        for key, axis in space.items():
            if isinstance(axis, list) and not axis:
                raise ValueError(f"search axis {key!r} has no values")
        return space

    @property
    def is_grid(self) -> bool:
        return all(isinstance(axis, list) for axis in self.space.values())


class TechniqueBase(Strict):
    """What every technique kind has: a name (used as a file name in the run folder) and an optional search."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=80)
    search: SearchSpec | None = None


class TokenPrices(Strict):
    input: float = Field(ge=0)  # USD per 1000 prompt tokens
    output: float = Field(ge=0)  # USD per 1000 completion tokens


class EndpointSettings(Strict):
    """An OpenAI-compatible chat-completions endpoint and how to call it: kind api's settings (an api
    technique takes these keys beside its own) and an endpoint judge's (`eval.judge.endpoint`). The
    client that uses them is harness/endpoint.py's `Endpoint`."""

    base_url: str  # http(s)://host[:port]/v1 — requests go to {base_url}/chat/completions
    model: str = Field(min_length=1)  # the endpoint's model name
    api_key_env: str | None = None  # environment variable holding the key (a bearer token); None: send no key
    usd_per_1k_tokens: TokenPrices | None = None  # the endpoint's price; None: the cost is unknown (null)
    concurrency: int = Field(4, ge=1, le=256)  # requests in flight; higher: faster, sooner rate limited
    max_retries: int = Field(4, ge=0, le=20)  # on 429 / 5xx / timeouts / connection errors
    backoff_seconds: float = Field(1.0, ge=0, le=60)  # first retry's wait; doubles per retry, with jitter
    timeout_seconds: float = Field(60.0, gt=0, le=3600)  # per request
    cache: bool = True  # reuse stored responses (false: always ask the endpoint, e.g. to measure latency)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"base_url must be an http:// or https:// URL with a host, e.g. "
                f"http://127.0.0.1:8000/v1 (got {value!r})"
            )
        if parts.username or parts.password:
            raise ValueError("base_url must not carry credentials; name the key's environment variable in api_key_env")
        if parts.query or parts.fragment:
            raise ValueError("base_url takes no query string or fragment; requests go to {base_url}/chat/completions")
        return value.strip().rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not (value.replace("_", "a").isalnum() and not value[:1].isdigit()):
            from pydantic_core import PydanticCustomError

            # no_echo: the error does not repeat the value, so a key pasted here stays off screens and CI logs
            raise PydanticCustomError(
                "no_echo",
                "api_key_env names an environment variable (letters, digits, _; "
                "e.g. OPENAI_API_KEY), not the key itself",
            )
        return value


DEFAULT_RAG_TEMPLATE = "Use these passages to answer.\n\n{passages}\n\nQuestion: {question}"


class RetrievalSettings(Strict):
    """Retrieve passages from the task's corpus and put them in the prompt, before the question."""

    retriever: str = "bm25"  # bm25 | dense | hybrid (reciprocal rank fusion of both) | any registered retriever
    k: int = Field(3, ge=1, le=100)  # passages retrieved per question (recall@k is measured at this k)
    chunk_size: int = Field(120, ge=8)  # words per passage
    chunk_overlap: int = Field(20, ge=0)  # words shared by consecutive passages of a document
    context_tokens: int = Field(1024, ge=16)  # token budget for the passages; lower-ranked ones are dropped first
    # dense/hybrid: bundled offline, or a local path or hub id
    embedding_model: Annotated[str, _local_model] = DEFAULT_EMBEDDING_MODEL
    template: str = DEFAULT_RAG_TEMPLATE  # the user turn; placeholders {passages} and {question}

    @field_validator("retriever")
    @classmethod
    def _registered(cls, name):
        from harness.retrieval import RETRIEVERS  # lazily: numpy; retrieval imports nothing of the schema

        if name not in RETRIEVERS:
            raise ValueError(RETRIEVERS.unknown(name))
        return name

    @model_validator(mode="after")
    def _check(self):
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        for placeholder in ("{passages}", "{question}"):
            if placeholder not in self.template:
                raise ValueError(f"template must contain {placeholder}")
        return self


class DistributedSettings(Strict):
    """One training cell as several processes (ranks), shaped after accelerate's config: DDP replicates
    the model on each rank, FSDP (full shard, ZeRO-3-like) and DeepSpeed ZeRO shard it. The cell is still
    one cell: training runs in the ranks, then one process evaluates the gathered model once."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = "ddp"
    processes: int = Field(2, ge=1)  # ranks per node: on CUDA one GPU each, on the CPU cores split between them
    nodes: int = Field(1, ge=1)  # machines; more than one needs a cluster executor (slurm, ray)
    zero_stage: Literal[2, 3] | None = None  # deepspeed only: 2 shards gradients + optimizer, 3 the weights too
    offload: Literal["none", "cpu"] = "none"  # fsdp/deepspeed: optimizer state (and weights) in host memory
    timeout_seconds: int = Field(600, ge=10)  # a collective that does not return by then fails the cell

    @model_validator(mode="after")
    def _coherent(self):
        if self.zero_stage is not None and self.strategy != "deepspeed":
            raise ValueError(f"zero_stage is a deepspeed setting; strategy {self.strategy!r} does not take it")
        if self.offload != "none" and self.strategy == "ddp":
            raise ValueError("offload needs a sharding strategy (fsdp or deepspeed); ddp keeps all state on each rank")
        return self

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes


LEARNING_RATE_WHY = "a step that large makes training diverge; typical rates are 1e-5 (full) to 3e-4 (LoRA)"
BATCH_WHY = "a batch is held in memory at once, and no device holds more; use gradient_accumulation"
MAX_BATCH = 65_536


class TrainSettings(Strict):
    """Training through TRL's SFTTrainer; the loss covers the answer only (prompt tokens are masked)."""

    epochs: float = Field(1.0, gt=0)  # passes over the train split (ignored when max_steps is set)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps
    # None: the kind's default (5e-5 full, 2e-4 lora/qlora)
    learning_rate: Annotated[float, at_most(1.0, LEARNING_RATE_WHY)] | None = Field(None, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)  # share of steps spent ramping the learning rate up
    # examples per device step; higher: faster, more memory
    batch_size: Annotated[int, at_most(MAX_BATCH, BATCH_WHY)] = Field(8, ge=1)
    gradient_accumulation: int = Field(1, ge=1)  # effective batch = batch_size x this, at no memory cost
    gradient_checkpointing: bool = False  # trades ~30% speed for much less activation memory
    max_length: int = Field(512, ge=8)  # longer examples are truncated
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where the hardware has it
    limit: int | None = Field(None, ge=1)  # train on the first N train examples only
    logging_steps: int = Field(5, ge=1)
    # several processes for one cell (DDP, FSDP, DeepSpeed ZeRO); None: one process, one device
    distributed: DistributedSettings | None = None


class TrainedTechnique(TechniqueBase):
    """What every trained kind has: its training settings, and optional retrieval ("LoRA + RAG")."""

    train: TrainSettings = TrainSettings()
    retrieval: RetrievalSettings | None = None  # train and score with retrieved passages


def _kind_models() -> dict:
    from harness import kinds  # the registry imports the kind modules, which import this one

    return {name: kinds.get(name).settings for name in kinds.known()}


def _unavailable_kinds() -> dict:
    from harness import kinds

    return kinds.unavailable()


_by_kind = ByKind(_kind_models, unavailable=_unavailable_kinds)
# A technique entry: validated by the settings model of its `kind:` (see harness/kinds.py), so a new
# kind extends recipes by registering itself, without an edit here.
TechniqueSpec = Annotated[Any, WrapValidator(_by_kind), _by_kind]


BOOTSTRAP_WHY = "the 95% interval settles within a few thousand resamples, and each one costs time"


class HeldoutEval(Strict):
    # generate: greedy answers, parsed for a label (any task). loglikelihood (tasks with `labels:`): each
    # label scored as the assistant's answer (summed token log-probabilities), the likeliest one is the
    # prediction: no answer names no label, so prompt-only scores reflect knowledge, not answer format
    mode: Literal["generate", "loglikelihood"] = "generate"
    limit: int | None = Field(None, ge=1)  # score only the first N test examples (None: all)
    batch_size: int = Field(16, ge=1)  # higher: faster generation, more memory
    max_new_tokens: int = Field(16, ge=1, le=4096)  # the longest answer the model may write (generate)
    # resamples for the 95% confidence interval
    bootstrap_samples: Annotated[int, at_most(100_000, BOOTSTRAP_WHY)] = Field(1000, ge=100)
    wrong_examples: int = Field(5, ge=0)  # wrong answers shown per technique in REPORT.md
    # the first N prompts are also answered one at a time, timed: latency at batch size 1 (0: not measured)
    latency_samples: int = Field(8, ge=0)
    # LoRA adapters (not QLoRA's) merged into the base weights before scoring, as a LoRA model is served;
    # false scores the adapters unmerged (slower: 0.76-0.84x the examples/s on 2 CPU cores), as trained
    merge_adapters: bool = True
    # the prompt prefix every held-out prompt shares (system message, few-shot turns) encoded once and its
    # key/value cache reused by every batch: 2.8-3.4x the examples/s of 4-shot prompts on 2 CPU cores
    reuse_prefix: bool = True

    def check_task(self, task) -> None:
        """Loglikelihood scoring ranks the task's labels; a task without them is an error before the run starts."""
        if self.mode == "loglikelihood" and not task.labels:
            raise ConfigError(
                f"eval.heldout.mode: loglikelihood scores each of a task's labels as the answer, but task "
                f"{task.name!r} has no `labels:` list; use `eval.heldout.mode: generate` for it, or add the label "
                f"set to {task.where}"
            )


class LmEvalSettings(Strict):
    """lm-eval tasks scored on every technique's model, in memory (lm-eval's HFLM + simple_evaluate)."""

    tasks: list[str] = []  # bundled (tasks/lm-eval/) or standard lm-eval task names
    include_path: list[Annotated[str, RelativeToFile()]] = []  # more folders of lm-eval task YAML
    limit: int | None = Field(None, ge=1)  # items per task (None: all)
    num_fewshot: int | None = Field(None, ge=0)  # None: each task's own default
    batch_size: int = Field(16, ge=1)

    @field_validator("include_path")
    @classmethod
    def _inside_the_recipes_repository(cls, paths: list[str], info: ValidationInfo) -> list[str]:
        """lm-eval task YAML can import Python (`!function`), so it is read only from the recipe's own
        repository (docs/trust.md); `folder`, the recipe file's, is in the context of a file's validation."""
        paths = [expand_path(p) for p in paths]
        folder = (info.context or {}).get("folder")
        if folder is None:  # a stored recipe: its paths were checked when it was read
            return paths
        root = repository_of(folder)
        for path in paths:
            if not Path(path).resolve().is_relative_to(root):
                raise ValueError(
                    f"{path} is outside {root}, the recipe's repository; lm-eval task YAML can run Python "
                    f"(`!function`), so it is read only from there: copy that task folder into {root}"
                )
        return paths


def repository_of(folder: Path) -> Path:
    """The git repository that holds `folder` (its top folder), else `folder` itself; resolved."""
    folder = folder.resolve()
    return next((p for p in (folder, *folder.parents) if (p / ".git").exists()), folder)


class ValidationSplit(Strict):
    """Cut from the train split before anything trains; every choice (search, validation loss) looks only here."""

    fraction: float | None = Field(None, gt=0, lt=0.5)  # share of the train split
    size: int | None = Field(None, ge=2)  # or a number of examples
    seed: Seed = 0  # fixes which examples; stratified by label for classification tasks

    @model_validator(mode="after")
    def _one_of(self):
        if (self.fraction is None) == (self.size is None):
            raise ValueError("give exactly one of fraction or size, e.g. {fraction: 0.15} or {size: 64}")
        return self


class JudgeSettings(Strict):
    """An LLM judge that grades every technique's held-out answers by the task's `judge:` rubric (only on
    tasks that have one): exactly one of `model:` (a local model, loaded like the recipe's `model:` and
    decoded greedily) or `endpoint:` (an OpenAI-compatible chat endpoint, asked at temperature 0 through
    kind api's client). harness/evaluate/judge.py's `build` makes the judge from whichever is set."""

    # alias, local directory, .gguf file, hub id or random:<arch>; {id: ..., dtype: ...}
    model: Annotated[ModelSpec | None, ModelPath] = None
    endpoint: EndpointSettings | None = None  # {base_url, model, api_key_env, usd_per_1k_tokens, concurrency, ...}
    max_new_tokens: int = Field(64, ge=1, le=4096)  # the judge's reply: "Score: N" and a one-sentence reason
    batch_size: int = Field(8, ge=1)  # a local judge's batch (prompts are long); unused by an endpoint judge,
    # which sends endpoint.concurrency requests at a time (not an error: the recipe stored in a run folder,
    # validated again on --resume, carries the default)

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, value):
        return {"id": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_judge(self):
        if (self.model is None) == (self.endpoint is None):
            raise ValueError(
                ("give one judge, not both: " if self.model is not None else "name the judge: ")
                + "exactly one of `model:` (a local model, e.g. {model: smollm2-135m-instruct}) or "
                "`endpoint:` (an OpenAI-compatible chat endpoint, e.g. {endpoint: {base_url: "
                "https://api.openai.com/v1, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY}})"
            )
        return self

    def check_task(self, task) -> None:
        """A task without a rubric is not judged: say so, since the recipe asked for a judge."""
        if task.spec.judge is None:
            import warnings

            from harness.yamlconfig import ConfigWarning

            warnings.warn(
                f"eval.judge is set, but task {task.name!r} has no `judge:` rubric, so its answers are not "
                f"judged; add `judge: {{rubric: ...}}` to {task.where}",
                ConfigWarning,
                stacklevel=2,
            )


class LeakageSettings(Strict):
    """What a run does with test examples that also appear in train or validation, exactly or nearly, or whose
    answer or question is elsewhere (harness/analysis/leakage.py says what is compared); `eval.leakage: exclude`
    is short for {action: exclude}."""

    # warn: scored, and reported; exclude: dropped from the test split before any cell (counted; the same
    # examples for every technique); error: the run stops before any cell, naming them
    action: Literal["warn", "exclude", "error"] = "warn"
    near_threshold: float = Field(0.85, ge=0.5, le=1)  # Jaccard of character 5-grams at which two texts are near

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"action": value} if isinstance(value, str) else value


class ServingLoad(Strict):
    """eval.serving: the load test (`harness loadtest`): held-out prompts sent to the served technique at
    each concurrency through kind api's client; throughput, latency p50/p95 per level into the row."""

    concurrency: list[Annotated[int, Field(ge=1, le=256)]] = Field([1, 4, 16], min_length=1)
    requests: int = Field(64, ge=1, le=100_000)  # per level (the held-out prompts, repeated as needed)
    techniques: list[str] | None = None  # only these (default: every finished technique that runs here)

    @field_validator("concurrency")
    @classmethod
    def _ascending(cls, levels: list[int]) -> list[int]:
        return sorted(set(levels))


class EvalSpec(Strict):
    heldout: HeldoutEval = HeldoutEval()
    validation: ValidationSplit | None = None  # needed by search; gives trained kinds a validation loss
    lm_eval: LmEvalSettings = LmEvalSettings()
    judge: JudgeSettings | None = None  # grade answers with an LLM judge, on tasks with a `judge:` rubric
    leakage: LeakageSettings = LeakageSettings()  # warn | exclude | error, or {action, near_threshold}
    serving: ServingLoad | None = None  # the load test's levels: {concurrency: [1, 4, 16], requests: 64}
    # a `kind: reward` technique of this recipe that scores every technique's held-out answers (reward_score)
    reward_model: str | None = None


DEVICE_KINDS = ("cpu", "cuda")  # what a row's device starts with: the keys of cost.usd_per_hour


class CostSpec(Strict):
    # Dollars per device-hour; the defaults are typical on-demand cloud prices and the report states them.
    usd_per_hour: dict[str, Annotated[float, Field(ge=0)]] = {"cpu": 0.10, "cuda": 2.50}
    # Dollars per kWh of electricity: prices the GPU energy NVML measured (rows' energy_cost_usd, beside
    # cost_usd, which device-hours price); unset, no energy cost is given.
    usd_per_kwh: Annotated[float, Field(ge=0)] | None = None

    @field_validator("usd_per_hour")
    @classmethod
    def _known_devices(cls, prices):
        for device in prices:
            if device not in DEVICE_KINDS:  # a misspelt device would leave its rows without a cost
                hint = difflib.get_close_matches(device, DEVICE_KINDS, n=1)
                raise ValueError(
                    f"unknown device {device!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                    f"prices are per device kind: {', '.join(DEVICE_KINDS)}"
                )
        return prices


class Workload(Strict):
    """The production volume the recommendation compares costs at: training once plus this many requests."""

    requests: int = Field(ge=1)  # requests served in one period
    period: str = "month"  # only named in the report ("1M requests a month")
    # the latency a served request may take (p95); the load test's cost per request is the throughput of the
    # highest concurrency that meets it (eval.serving, docs/deploy.md)
    latency_p95_seconds: float | None = Field(None, gt=0)


ENGINE_FIELDS = ("python", "port", "run", "technique", "model")


class EngineSettings(Strict):
    """A serving engine launched for a technique (vLLM, SGLang, TGI, llama.cpp's server, or the built-in
    one): a command with {port} and any of {model} (the technique exported as a merged HF folder), {run},
    {technique} and {python} (this interpreter), e.g. "vllm serve {model} --port {port}"."""

    command: str = Field(min_length=1)
    ready_seconds: float = Field(600, gt=0)  # how long it may take to answer GET /v1/models

    @field_validator("command")
    @classmethod
    def _placeholders(cls, command: str) -> str:
        import string

        try:
            used = {name for _, name, _, _ in string.Formatter().parse(command) if name is not None}
        except ValueError as exc:
            raise ValueError(f"the command is no template: {exc}") from None
        unknown = sorted(used - set(ENGINE_FIELDS))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; known: {', '.join(ENGINE_FIELDS)}")
        if "port" not in used:
            raise ValueError("the command must take {port}: the load test picks a free port and waits on it")
        return command


class ServingSpec(Strict):
    """How `harness serve` and the load test serve a technique (docs/deploy.md)."""

    max_batch: int = Field(16, ge=1, le=1024)  # the built-in server's largest batch of concurrent requests
    batch_wait_ms: float = Field(5.0, ge=0, le=1000)  # how long it collects requests after the first
    engine: EngineSettings | None = None  # None: the built-in server


class CheckSpec(Strict):
    """Thresholds for `harness check RUN --baseline BASE` (command-line flags replace them)."""

    max_drop: dict[str, float | str] = {}  # metric: absolute amount or "N%" of the baseline, e.g. {score: 0.02}
    max_increase: dict[str, float | str] = {}  # e.g. {peak_memory_bytes: "10%", cost_usd: "20%"}
    # a score drop over max_drop fails only when the paired test on the same examples gives p < alpha
    alpha: float = Field(0.05, gt=0, lt=1)
    significance: bool = True  # false: the thresholds alone, as on runs stored without predictions

    @field_validator("max_drop", "max_increase")
    @classmethod
    def _known_metrics(cls, limits):
        from harness import figures  # the row's figures; a metric no row has would never be checked

        known = figures.known()

        for metric, amount in limits.items():
            if metric not in known and not metric.startswith(figures.LM_EVAL_PREFIX):
                hint = difflib.get_close_matches(metric, known, n=1)
                raise ValueError(
                    f"unknown metric {metric!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                    "name a figure of the result rows, e.g. score, peak_memory_bytes, cost_usd, "
                    "or an lm-eval score lm_eval:<task>:<metric>"
                )
            if not (amount >= 0 if isinstance(amount, float) else re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*%?\s*", amount)):
                raise ValueError(f"{metric}: {amount!r} is neither an amount (0.02) nor a percentage ('10%')")
        return limits


def _executor_models() -> dict:
    from harness import executors  # the registry imports the executor modules, which import this one

    return {name: executors.get(name).settings for name in executors.known()}


_by_executor = ByKind(_executor_models, default="local")
# The `executor:` block: validated by the settings model of its `kind:` (local when it names none), each
# in its executor's file (harness/executors/), so a new executor extends recipes by registering itself.
ExecutorSpec = Annotated[Any, WrapValidator(_by_executor), _by_executor]


class TrackingSpec(Strict):
    """Experiment trackers that receive the training curves (through the Trainer's `report_to`) and one
    summary per technique once the report is written (harness/tracking/). A tracker that fails warns;
    the comparison goes on. Its fields, one optional settings block per registered tracker, are added by
    `tracking_model()`, so a new tracker extends recipes by registering itself."""

    @model_validator(mode="before")
    @classmethod
    def _bare_key_enables(cls, data):
        if not isinstance(data, dict):
            return data
        # `tensorboard:` alone asks for it with its defaults
        return {name: {} if value is None else value for name, value in data.items()}

    @model_serializer(mode="wrap")
    def _omit_unused(self, handler):
        # An unused tracker is left out, not dumped as null: null means "on, with its defaults" (above), so
        # the recipe a worker reads back from its JSON would otherwise switch every tracker on.
        return {name: value for name, value in handler(self).items() if value is not None}

    @property
    def backends(self) -> list[str]:
        """The trackers this recipe uses, in registration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    def check_installed(self) -> None:
        """Fail before the run, importing nothing, when a chosen tracker's package is missing."""
        from importlib.util import find_spec

        from harness import tracking

        for name in self.backends:
            backend = tracking.get(name)
            if not any(find_spec(module) for module in backend.modules):
                raise ConfigError(
                    f"tracking.{name} needs the {' or '.join(backend.modules)} package, which is not installed: "
                    f"pip install {backend.install}"
                )


_tracking_models: dict[tuple[str, ...], type[TrackingSpec]] = {}


def tracking_model() -> type[TrackingSpec]:
    """TrackingSpec with an optional field per registered tracker (harness/tracking/); built again once a
    plugin has registered another."""
    from harness import tracking  # the registry imports the tracker modules, which import this one

    names = tuple(tracking.known())
    if names not in _tracking_models:
        fields: dict[str, Any] = {name: (tracking.get(name).settings | None, None) for name in names}
        _tracking_models[names] = create_model("TrackingSpec", __base__=TrackingSpec, **fields)
    return _tracking_models[names]


_tracking = BuiltModel(tracking_model)
TrackingField = Annotated[Any, WrapValidator(_tracking), _tracking]


def _bundled_task(name: str) -> bool:
    return (BUNDLED_TASKS / name / "task.yaml").is_file()


class TaskRefs(Chooser):
    """`task:`: a bundled task's name or a task folder (text), a task given inline (a mapping, read as a
    task.yaml), or a list of them. One validator rather than a union, whose errors would list every
    alternative's ("task.str: Input should be a valid string", "task.TaskSpec.metrik: ...")."""

    def model_for(self, value: Any) -> type[BaseModel] | None:
        return TaskSpec if isinstance(value, dict) else None

    def __call__(self, value: Any, handler: Any) -> Any:
        if isinstance(value, list):
            return [self._one(item, (i,)) for i, item in enumerate(value)]
        return self._one(value, ())

    def _one(self, value: Any, loc: tuple) -> str | TaskSpec:
        if isinstance(value, (str, TaskSpec)):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "task_type", "expected a task name, a task folder, a task's mapping (inline) or a list of them"
            )
        try:
            return TaskSpec.model_validate(value)
        except ValidationError as exc:  # its errors, at the list item they belong to
            errors = [
                {"type": PydanticCustomError(e["type"], e["msg"]), "loc": loc + e["loc"], "input": e["input"]}
                for e in exc.errors()
            ]
            raise ValidationError.from_exception_data("task", errors) from None  # type: ignore[arg-type]


_task_refs = TaskRefs()


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # also the reports/<name>/ folder
    model: Annotated[ModelSpec, ModelPath] = ModelSpec()
    # a bundled task name (see `harness tasks`), a task folder path, or a task given inline (a task.yaml's
    # mapping whose data is a hub dataset); or a list of them
    task: Annotated[Any, WrapValidator(_task_refs), _task_refs, name_or_path(_bundled_task)]
    # Modules or .py files that register more technique kinds, executors, trackers, metrics or retrievers
    # (docs/ARCHITECTURE.md); imported before the keys that may name them are read, by the driver and by
    # every worker (harness/plugins.py)
    plugins: list[Annotated[str, name_or_path(lambda ref: not ref.endswith(".py"))]] = []
    seed: Seed = 0
    seeds: list[Seed] | None = Field(None, min_length=1)  # repeat every chosen configuration; replaces `seed`
    search_budget: int | None = Field(None, ge=1)  # trials for every technique that has `search:` (equal budgets)
    # learning curves (trained kinds): train on the first N examples; `all`: the whole train split
    train_sizes: list[Annotated[int, Field(ge=1)] | Literal["all"]] | None = Field(None, min_length=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: Annotated[str, RelativeToFile()] = "reports"
    techniques: list[TechniqueSpec] = Field(min_length=1)
    eval: EvalSpec = EvalSpec()
    cost: CostSpec = CostSpec()
    workload: Workload | None = None  # e.g. {requests: 1000000, period: month}; else the report gives volume ranges
    check: CheckSpec = CheckSpec()
    serving: ServingSpec = ServingSpec()  # how `harness serve` and the load test serve a technique
    executor: ExecutorSpec = Field(default_factory=lambda: _executor_models()["local"]())
    # e.g. {mlflow: {uri: sqlite:///mlflow.db}, tensorboard: {}}
    tracking: TrackingField = Field(default_factory=lambda: tracking_model()())

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, value):
        return {"id": value} if isinstance(value, str) else value

    _expand = field_validator("output_dir")(classmethod(lambda cls, v: expand_path(v)))

    @field_validator("task")
    @classmethod
    def _tasks(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one task")
            if any(value.count(v) > 1 for v in value):
                raise ValueError("each task may appear once")
            return [expand_path(v) if isinstance(v, str) else v for v in value]
        return expand_path(value) if isinstance(value, str) else value

    @field_validator("plugins")
    @classmethod
    def _load_plugins(cls, refs):
        from harness import plugins

        resolved = []
        for ref in refs:
            ref = expand_path(ref)
            if ref.endswith(".py"):
                if not Path(ref).is_file():
                    raise ValueError(
                        f"plugin file {ref} not found (a path in a recipe is relative to the recipe's folder; "
                        "on the command line, to the working directory)"
                    )
                ref = str(Path(ref).resolve())  # workers may run elsewhere
            try:  # `harness validate` checks it is there and runs none of its code (docs/trust.md)
                if plugins.importing():
                    plugins.load(ref)
                else:
                    plugins.check(ref)
            except Exception as exc:  # noqa: BLE001 — the plugin's own error, reported as a recipe error
                raise ValueError(f"plugin {ref!r} failed to load: {type(exc).__name__}: {exc}") from None
            resolved.append(ref)
        return resolved

    @property
    def tasks(self) -> list[TaskRef]:
        return self.task if isinstance(self.task, list) else [self.task]

    def for_task(self, task: TaskRef | dict) -> Recipe:
        """The recipe narrowed to one of its tasks (a multi-task run is one run per task); an inline task
        may come as the mapping a run's meta stored."""
        return self.model_copy(update={"task": task_ref(task)})

    @model_validator(mode="after")
    def _unique_names(self):
        names = [t.name for t in self.techniques]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"technique names must be unique; repeated: {', '.join(duplicates)}")
        reserved = sorted(set(names) & {"majority", "echo-input"})  # analysis/floor.NAMES: the floor rows
        if reserved:
            raise ValueError(f"the technique name '{reserved[0]}' is reserved for the task's floor row; rename it")
        return self

    @field_validator("seeds", "train_sizes")
    @classmethod
    def _distinct(cls, values):
        if values is not None and len(set(map(str, values))) != len(values):
            raise ValueError("each value may appear once")
        return values

    @model_validator(mode="after")
    def _searches(self):
        searched = [t for t in self.techniques if t.search is not None]
        if searched and self.eval.validation is None:
            raise ValueError(
                f"technique {searched[0].name!r} has `search:`, which chooses on a validation split: "
                "add `eval: {validation: {fraction: 0.15}}` (or `size: N`)"
            )
        for technique in searched:
            check_search(technique, self.search_budget)  # its axes against the technique's own schema
        return self

    @model_validator(mode="after")
    def _init_from(self):
        """`init_from` names another trained technique of this recipe, and the chain has no loop."""
        from harness import kinds

        by_name = {t.name: t for t in self.techniques}
        for technique in self.techniques:
            source, seen = getattr(technique, "init_from", None), {technique.name}
            while source is not None:
                if source not in by_name:
                    hint = difflib.get_close_matches(source, list(by_name), n=1)
                    raise ValueError(
                        f"technique {technique.name!r}: init_from {source!r} is not a technique of this "
                        f"recipe" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    )
                if source in seen:
                    raise ValueError(f"technique {technique.name!r}: init_from makes a loop through {source!r}")
                if not kinds.generates(by_name[source].kind):
                    raise ValueError(
                        f"technique {technique.name!r}: init_from {source!r} is a {by_name[source].kind} model, which "
                        "scores answers and writes none; to train against it, use `reward: {model: "
                        f"{source}}}` (kinds grpo, rloo)"
                    )
                if not kinds.trained(by_name[source].kind):
                    raise ValueError(
                        f"technique {technique.name!r}: init_from {source!r} must name a trained "
                        f"technique; {by_name[source].kind} does not change the model"
                    )
                seen.add(source)
                source = getattr(by_name[source], "init_from", None)
        return self

    @model_validator(mode="after")
    def _reward_models(self):
        """`reward: {model: ...}` and `eval.reward_model` name a `kind: reward` technique of this recipe."""
        named = [(f"technique {t.name!r}: reward.model", getattr(t, "reward", None)) for t in self.techniques]
        wanted = [(where, getattr(source, "model", None)) for where, source in named]
        wanted.append(("eval.reward_model", self.eval.reward_model))
        by_name = {t.name: t for t in self.techniques}
        reward_models = [t.name for t in self.techniques if t.kind == "reward"]
        for where, name in wanted:
            if name is None or (name in by_name and by_name[name].kind == "reward"):
                continue
            hint = difflib.get_close_matches(name, reward_models, n=1)
            problem = (
                f"is kind {by_name[name].kind}, not a reward model"
                if name in by_name
                else "is not a technique of this recipe"
            )
            if hint:
                suggestion = f" (did you mean {hint[0]!r}?)"
            else:
                suggestion = f" (one of: {', '.join(reward_models)})" if reward_models else " (the recipe has none)"
            raise ValueError(f"{where} {name!r} {problem}; it must name a `kind: reward` technique{suggestion}")
        return self

    @model_validator(mode="after")
    def _load_tested(self):
        serving = self.eval.serving
        unknown = sorted(set(serving.techniques or []) - {t.name for t in self.techniques}) if serving else []
        if unknown:
            raise ValueError(f"eval.serving.techniques: {unknown[0]!r} is not a technique of this recipe")
        return self

    @model_validator(mode="after")
    def _executor_keys(self):
        gpus = self.executor.gpus_per_cell
        if isinstance(gpus, dict):
            known = {t.name for t in self.techniques} | {t.kind for t in self.techniques}
            unknown = sorted(set(gpus) - known)
            if unknown:
                raise ValueError(
                    f"executor.gpus_per_cell: {unknown[0]!r} is neither a technique name nor a kind "
                    f"in this recipe (known: {', '.join(sorted(known))})"
                )
        return self

    @property
    def run_seeds(self) -> list[int]:
        """The seeds every chosen configuration runs with."""
        return list(self.seeds) if self.seeds else [self.seed]

    def technique(self, name: str):
        return next(t for t in self.techniques if t.name == name)


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    return load_yaml_model(path, Recipe, overrides)


def stored_recipe(data: dict) -> Recipe:
    """The recipe a run folder stored (results.json's meta), for --resume and workers. A run stored
    before each executor had a settings model of its own kept every executor's keys under `executor:`;
    those its executor does not take are dropped, so such a run still resumes."""
    executor = data.get("executor")
    model = _by_executor.model_for(executor)
    if isinstance(executor, dict) and model is not None:
        data = {**data, "executor": {key: value for key, value in executor.items() if key in model.model_fields}}
    return Recipe.model_validate(data)


__all__ = ["ConfigError", "Recipe", "load_recipe", "stored_recipe", "DEFAULT_MODEL"]
