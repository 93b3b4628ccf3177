"""Conversations in task data: OpenAI-style `messages` (format `chat`) and ShareGPT `conversations`
(format `sharegpt`), read into a system message and the user/assistant turns in order.

A conversation may have several turns: an optional system turn first, then user and assistant turns
alternating, starting with the user and ending with the assistant's answer. Evaluation answers the
last assistant turn with the earlier turns as context; training learns every assistant turn.

Tool and function-call turns (role `tool`/`function`, an assistant's `tool_calls`/`function_call`,
ShareGPT's `function_call`/`observation`) are an error naming the record: the harness scores and
trains on text answers, has no tool to run, and a call written as text would teach a format the
model's chat template does not define.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from harness.yamlconfig import ConfigError

# per format: the record's key that holds the turns, and each turn's keys for its role and its text
LAYOUT = {"chat": ("messages", "role", "content"), "sharegpt": ("conversations", "from", "value")}
SHAPES = {
    "fields": "the columns `fields:` names (by default {input, output})",
    "alpaca": '{"instruction": ..., "input": ..., "output": ...}',
    "chat": '{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}',
    "sharegpt": '{"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}, ...]}',
}
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython", "tool_call", "tool_response"}
TOOL_KEYS = ("tool_calls", "function_call")  # an assistant message that calls a tool
PREVIEW_CHARS = 240


@dataclass(frozen=True)
class Conversation:
    system: str
    turns: tuple[tuple[str, str], ...]  # (role, text): user and assistant alternating, user first, assistant last


def is_missing(value: object) -> bool:
    """No value: null, or NaN (JSON's NaN, an empty Parquet or pandas cell), which str() would make "nan"."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def preview(record: object) -> str:
    """The record on one line, cut to PREVIEW_CHARS, for an error message."""
    text = json.dumps(record, ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def format_hint(record: dict, format: str) -> str:
    """' (...set `data.format: X`)' when the record has the turns key of another chat format; else ''."""
    for other, (key, _, _) in LAYOUT.items():
        if other != format and key in record:
            return f"; the record has {key!r}: set `data.format: {other}` in task.yaml ({SHAPES[other]})"
    return ""


def conversation(record: dict, format: str, where: str) -> Conversation:
    """The record's system message and turns, checked; a ConfigError that shows the record otherwise."""
    key, role_key, text_key = LAYOUT[format]
    raw = _as_list(record.get(key))
    if raw is None or not all(isinstance(turn, dict) for turn in raw):
        hint = format_hint(record, format) or f"; expected {SHAPES[format]}"
        raise ConfigError(f"{where}: no {key!r} list of turns{hint}; the record: {preview(record)}")
    roles = [_role(turn, role_key, where, n, record) for n, turn in enumerate(raw, start=1)]
    system = ""
    if roles and roles[0] == "system":
        system = _text(raw[0], text_key, roles[0], where, required=False)
        raw, roles = raw[1:], roles[1:]
    expected = ["user", "assistant"] * (len(roles) // 2)
    if len(roles) < 2 or roles != expected:
        raise ConfigError(
            f"{where}: the turns must alternate user and assistant, starting with the user (after an optional "
            f"system turn) and ending with the assistant's answer; this record's are {', '.join(roles) or 'none'}; "
            f"the record: {preview(record)}"
        )
    turns = tuple(
        (role, _text(turn, text_key, role, where, required=role == "assistant")) for role, turn in zip(roles, raw)
    )
    return Conversation(system=system, turns=turns)


def _as_list(value: object) -> list | None:
    if hasattr(value, "tolist"):  # a Parquet list column reads as a numpy array
        value = value.tolist()
    return value if isinstance(value, list) else None


def _role(turn: dict, role_key: str, where: str, n: int, record: dict) -> str:
    role = turn.get(role_key)
    if role in TOOL_ROLES or any(turn.get(k) for k in TOOL_KEYS):
        raise ConfigError(
            f"{where}: turn {n} is a tool or function call ({role_key}: {role!r}), which the harness does not "
            "train or score on (it compares text answers and runs no tools); fix: leave such conversations out, "
            f"or write the call and its result as plain user/assistant text; the record: {preview(record)}"
        )
    if role not in ROLES:
        raise ConfigError(
            f"{where}: turn {n} has {role_key} {role!r}; known: {', '.join(map(repr, ROLES))}; "
            f"the record: {preview(record)}"
        )
    if role == "system" and n > 1:
        raise ConfigError(
            f"{where}: turn {n} is a system turn; only the first turn may be; the record: {preview(record)}"
        )
    return ROLES[role]


def _text(turn: dict, text_key: str, role: str, where: str, required: bool) -> str:
    """A turn's text; a list or mapping (content parts, a tool call) would reach the model as Python's repr."""
    content = turn.get(text_key)
    if is_missing(content):
        content = ""
    if required and isinstance(content, str) and not content.strip():  # what training learns and scoring expects
        raise ConfigError(f"{where}: the {role} message has no {text_key}; fix: give its text")
    if isinstance(content, (list, dict, bool)):
        raise ConfigError(
            f"{where}: the {role} message's {text_key} is a {type(content).__name__}, not text; "
            "fix: give the text itself as a string"
        )
    return str(content)
