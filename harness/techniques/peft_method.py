"""kind: peft — any peft method by name (prompt tuning, prefix tuning, P-tuning, IA3, LoHa, LoKr, AdaLoRA,
VeRA, OFT, BOFT, FourierFT, LoRA, ...), trained and scored through the same flow as lora (finetune.finetune).

`method` is looked up in peft's own registry (PEFT_TYPE_TO_CONFIG_MAPPING) and `settings` are the
fields of that method's config class, passed through unchanged: every peft option is available
without a schema of ours. Both are checked when the recipe is validated, by building the config, so
validating a recipe that has a `kind: peft` technique imports peft (a few seconds); other recipes
do not.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from harness import kinds
from harness.config import TrainedTechnique
from harness.techniques.base import Outcome, RunContext
from harness.techniques.finetune import QuantSettings, bnb_config, finetune

VIRTUAL_TOKENS = 16  # num_virtual_tokens when a prompt-learning method's settings leave it out
# Methods whose target modules are not "every linear layer": peft's per-architecture default stays
# (IA3 pairs attention and feed-forward modules; the others target norms, embeddings, attention blocks).
PEFT_CHOOSES_TARGETS = frozenset({"adaption_prompt", "ia3", "ln_tuning", "trainable_tokens", "shadow"})
# Methods whose forward needs inputs that supervised fine-tuning on a task does not have.
UNSUPPORTED = {
    "multitask_prompt_tuning": "it needs a task id with every example",
    "poly": "it needs a task id with every example",
}
# peft's prompt-based-methods guide trains soft prompts at 3e-2; the kind's 2e-4 (as lora) barely moves them.
PROMPT_LEARNING_RATE = 3e-2


class PeftTechnique(TrainedTechnique):
    """A peft method chosen by name; the base weights stay frozen and the method's parameters train."""

    kind: Literal["peft"]
    method: str  # a peft method: prompt_tuning, prefix_tuning, p_tuning, ia3, loha, lokr, adalora, vera, oft, lora, ...
    # fields of the method's peft config class, e.g. {num_virtual_tokens: 16} or {r: 8, target_modules: [q_proj]}
    settings: dict[str, Any] = Field({}, validate_default=True)
    quantize_4bit: bool = False  # base model in 4-bit (bitsandbytes), QLoRA-style: methods with 4-bit layers only
    quantization: QuantSettings = QuantSettings()  # used with quantize_4bit

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        name = value.strip().lower().replace("-", "_")
        known = method_names()
        if name in UNSUPPORTED:
            raise ValueError(f"peft method {value!r} cannot be trained here: {UNSUPPORTED[name]}")
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            raise ValueError(
                f"unknown peft method {value!r}"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; known: {', '.join(known)}"
            )
        return name

    @field_validator("settings")
    @classmethod
    def _valid_settings(cls, settings: dict, info: ValidationInfo) -> dict:
        if "method" in info.data:  # else the method's own error is the one to read
            peft_config(info.data["method"], settings, info.data.get("train"))
        return settings

    @field_validator("quantize_4bit")
    @classmethod
    def _quantizable(cls, value: bool, info: ValidationInfo) -> bool:
        method = info.data.get("method")
        if value and method is not None and method not in methods_on_4bit():
            raise ValueError(
                f"peft has no 4-bit (bitsandbytes) layers for {method}; quantize_4bit works with: "
                f"{', '.join(methods_on_4bit())}"
            )
        return value


def run_peft(spec: PeftTechnique, ctx: RunContext) -> Outcome:
    from harness import train

    config = peft_config(spec.method, spec.settings, spec.train)
    quant = bnb_config(spec.quantization, train.precision(spec.train, ctx.device)) if spec.quantize_4bit else None
    if spec.train.learning_rate is None and config.is_prompt_learning:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"learning_rate": PROMPT_LEARNING_RATE})})
    ctx = dataclasses.replace(ctx, callbacks=[*ctx.callbacks, allocation_callback()])
    return finetune(spec, ctx, peft_config=config, quantization_config=quant)


def peft_config(method: str, settings: dict, train=None):
    """The peft config for a method and the recipe's settings (task_type CAUSAL_LM, defaults where peft
    needs one); every mistake is a ValueError that names the setting."""
    config_class = config_classes()[method]
    fields = settable_fields(config_class)
    given = {}
    for key, value in settings.items():
        if key not in fields:
            raise ValueError(unknown_setting(key, method, config_class, fields))
        given[key] = check_type(config_class, key, value)
    base = defaults(method, config_class, fields, train)
    try:
        return config_class(task_type="CAUSAL_LM", **(base | given))
    except Exception as exc:  # noqa: BLE001 — peft's own check, reported as a recipe error
        # the settings that fail on their own (the others left at their defaults), else all of them
        culprits = [key for key in given if _fails(config_class, base | {key: given[key]})] or list(given)
        hint = (
            " (give settings.total_step, or train.max_steps, which it defaults to)"
            if method == "adalora" and "total_step" not in base | given
            else ""
        )
        what = f"rejects {', '.join(f'settings.{key}' for key in culprits)}" if culprits else "needs settings"
        raise ValueError(f"{method}: {config_class.__name__} {what}: {exc}{hint}") from None


def _fails(config_class, values: dict) -> bool:
    try:
        config_class(task_type="CAUSAL_LM", **values)
    except Exception:  # noqa: BLE001
        return True
    return False


def defaults(method: str, config_class, fields: list[str], train) -> dict:
    """What the harness fills in where peft has no usable default (the recipe's settings win)."""
    values: dict[str, Any] = {}
    if "num_virtual_tokens" in fields and prompt_learning(config_class):
        values["num_virtual_tokens"] = VIRTUAL_TOKENS
    if "target_modules" in fields and method not in PEFT_CHOOSES_TARGETS and not prompt_learning(config_class):
        values["target_modules"] = "all-linear"  # as kind lora; peft's own default is often q/v only
    if method == "adalora" and train is not None and train.max_steps:
        values["total_step"] = train.max_steps  # its rank schedule spans the whole run
    return values


def prompt_learning(config_class) -> bool:
    """Soft prompts or prefixes (prompt/prefix/p-tuning, ...): virtual tokens, no layers wrapped."""
    from peft import PromptLearningConfig

    return issubclass(config_class, PromptLearningConfig)


def check_type(config_class, key: str, value: Any) -> Any:
    """The value as the config field's annotation reads it (peft's dataclasses check no types)."""
    from pydantic import TypeAdapter, ValidationError

    annotation: Any = _annotations(config_class).get(key)  # a runtime type, maybe not a class
    field = _field(config_class, key)
    if annotation is None:
        return value
    if field.default is None:
        annotation = typing.Optional[annotation]  # noqa: UP045 (a runtime type, maybe not a class)
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        reasons = dict.fromkeys(error["msg"] for error in exc.errors())  # a union: why each member refused
        raise ValueError(f"settings.{key}: {'; or '.join(reasons)}") from None
    except Exception:  # noqa: BLE001 — an annotation pydantic cannot check: peft checks it when the model is built
        return value


def unknown_setting(key: str, method: str, config_class, fields: list[str]) -> str:
    if key == "task_type":
        return "settings.task_type: always CAUSAL_LM here, not a setting"
    hint = difflib.get_close_matches(key, fields, n=1)
    return f"unknown setting 'settings.{key}' for {method} ({config_class.__name__})" + (
        f" (did you mean 'settings.{hint[0]}'?)" if hint else f"; known: {', '.join(fields)}"
    )


@functools.cache
def config_classes() -> dict[str, type]:
    """method name (peft's PeftType, lower case) -> its config class, from peft's registry."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {peft_type.value.lower(): cls for peft_type, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


def method_names() -> list[str]:
    return sorted(set(config_classes()) - set(UNSUPPORTED))


@functools.cache
def settable_fields(config_class) -> list[str]:
    """The config's own fields; PeftConfig's (task_type, peft_type, inference_mode, ...) are peft's bookkeeping."""
    from peft import PeftConfig

    fixed = {f.name for f in dataclasses.fields(PeftConfig)}
    return [f.name for f in dataclasses.fields(config_class) if f.init and f.name not in fixed]


@functools.cache
def _annotations(config_class) -> dict:
    try:
        return typing.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 — unresolvable annotations: types are then left to peft
        return {}


def _field(config_class, key: str):
    return next(f for f in dataclasses.fields(config_class) if f.name == key)


@functools.cache
def methods_on_4bit() -> list[str]:
    """Methods whose peft tuner has bitsandbytes 4-bit layers (peft/tuners/<method>/bnb.py with a
    Linear4bit): lora, adalora, ia3, ... in peft 0.21. Others cannot wrap a 4-bit base model's layers."""
    import peft.tuners

    root = Path(peft.tuners.__file__).parent
    return [
        m
        for m in method_names()
        if (root / m / "bnb.py").is_file() and "Linear4bit" in (root / m / "bnb.py").read_text()
    ]


def allocation_callback():
    """Calls `update_and_allocate` after every optimizer step for the methods that reallocate their
    budget while training (AdaLoRA's ranks, AdaMSS's subspaces), as peft requires; a no-op for the rest."""
    from transformers import TrainerCallback

    class Allocate(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            tuner = getattr(model, "base_model", None)
            if tuner is not None and hasattr(tuner, "update_and_allocate"):
                tuner.update_and_allocate(state.global_step)

    return Allocate()


kinds.register(
    kinds.Kind(
        "peft",
        PeftTechnique,
        run_peft,
        "any peft method by name (prompt/prefix/p-tuning, IA3, LoHa, LoKr, AdaLoRA, VeRA, ...)",
        trained=True,
        default_learning_rate=2e-4,
    )
)
