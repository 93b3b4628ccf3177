"""Load a YAML file into a frozen pydantic model, with errors that name the file, the line and the fix.

Shared by recipes (config.py) and task folders (tasks.py): one mechanism for both.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

M = TypeVar("M", bound=BaseModel)
Path_ = tuple[Any, ...]


class Strict(BaseModel):
    """Base for every schema: unknown keys are errors, loaded objects cannot change, a number is finite
    (`.inf` and `.nan` mean nothing as a setting) and never a YAML boolean (below)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML reads yes/no/on/off/true/false as booleans, which pydantic would take as the numbers 1 and 0
        (`max_steps: yes` trains one step). Strict numbers everywhere would also refuse `1e-5`, which YAML
        1.1 reads as a string, so only booleans are refused, wherever a number is meant."""
        field = cls.model_fields.get(info.field_name or "")
        loc = None if field is None else _boolean_for_number(value, field.annotation)
        if loc is not None:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [{"type": PydanticCustomError("bool_for_number", BOOLEAN_FOR_NUMBER), "loc": loc, "input": True}],
            )
        return value


BOOLEAN_FOR_NUMBER = "a number is needed, not a boolean (YAML reads yes/no/on/off/true/false as booleans)"


def _boolean_for_number(value: Any, tp: Any, loc: tuple = ()) -> tuple | None:
    """Where in `value` a boolean stands where type `tp` wants a number and takes no boolean; None if nowhere."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    if isinstance(value, bool):
        numeric = any(m in (int, float) for m in map(_bare, members))
        return loc if numeric and not any(map(_takes_boolean, members)) else None
    for member in map(_bare, members):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if isinstance(value, (list, tuple)) and origin in (list, tuple) and args:
            for i, item in enumerate(value):
                item_type = args[0] if origin is list or args[-1] is Ellipsis else args[min(i, len(args) - 1)]
                found = _boolean_for_number(item, item_type, (*loc, i))
                if found is not None:
                    return found
        elif isinstance(value, dict) and origin is dict and args:
            for key, item in value.items():
                found = _boolean_for_number(item, args[1], (*loc, key))
                if found is not None:
                    return found
    return None


def _bare(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _takes_boolean(tp: Any) -> bool:
    """The type accepts a boolean as such: bool, Any, a Literal of one, or a model (which decides itself)."""
    tp = _bare(tp)
    if tp is bool or tp is Any:
        return True
    if typing.get_origin(tp) is typing.Literal:
        return any(isinstance(arg, bool) for arg in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(map(_takes_boolean, typing.get_args(tp)))
    return not (tp in (int, float, str, type(None)) or typing.get_origin(tp) in (list, tuple, dict, typing.Literal))


def at_most(high: float, why: str) -> AfterValidator:
    """A bound with its reason, as `Annotated[int, at_most(100_000, "...")]`: the error says why, not
    only that the value is too large."""

    def check(value: Any) -> Any:
        if value is not None and value > high:
            raise PydanticCustomError("too_large", "at most {high}: {why}", {"high": high, "why": why})
        return value

    return AfterValidator(check)


SEED_LIMIT = 2**32  # numpy, torch and scikit-learn take 32-bit seeds


def _seed(value: int) -> int:
    if not 0 <= value < SEED_LIMIT:
        raise PydanticCustomError(
            "seed_range",
            "a seed is a whole number from 0 to {high} (numpy, torch and scikit-learn take 32-bit seeds)",
            {"high": SEED_LIMIT - 1},
        )
    return value


Seed = Annotated[int, AfterValidator(_seed)]


class ConfigError(ValueError):
    """A user-facing configuration problem; the message says where and how to fix it."""


class Chooser:
    """Marks a mapping whose schema is looked up when a value is validated, not when the schema class is
    defined: registries that plugins extend (technique kinds, executors, trackers) decide it. Use as
    `Annotated[Any, WrapValidator(chooser), chooser]`: the validator, and the marker the error messages
    follow to the chosen model's keys."""

    def model_for(self, value: Any) -> type[BaseModel] | None:
        raise NotImplementedError


class ByKind(Chooser):
    """A mapping whose schema is chosen by its `kind:` value from a registry (technique kinds, executors),
    so that registering a kind extends the recipe schema without editing it. `default`: the kind of a
    mapping that names none (None: `kind:` is required)."""

    def __init__(
        self,
        models: typing.Callable[[], dict[str, type[BaseModel]]],
        default: str | None = None,
        unavailable: typing.Callable[[], dict[str, str]] = dict,
    ):
        self.models = models  # kind -> settings model, in the order errors list them
        self.default = default
        self.unavailable = unavailable  # kind -> why it is not offered (a well-known name users will ask for)

    def model_for(self, value: Any) -> type[BaseModel] | None:
        kind = value.get("kind", self.default) if isinstance(value, dict) else None
        return self.models().get(kind) if isinstance(kind, str) else None

    def __call__(self, value: Any, handler: Any) -> BaseModel:
        models = self.models()
        if isinstance(value, BaseModel) and type(value) in models.values():
            return value  # built in code (defaults, model_copy), already valid
        if not isinstance(value, dict):
            raise PydanticCustomError("dict_type", "expected a mapping with a `kind:` key")
        if "kind" not in value and self.default is None:
            raise ValidationError.from_exception_data("kind", [{"type": "missing", "loc": ("kind",), "input": value}])
        kind = value.get("kind", self.default)
        why_not = self.unavailable().get(kind) if isinstance(kind, str) else None
        if why_not is not None:
            raise ValidationError.from_exception_data(
                "kind", [{"type": PydanticCustomError("unavailable_kind", why_not), "loc": ("kind",), "input": kind}]
            )
        if not isinstance(kind, str) or kind not in models:
            hint = difflib.get_close_matches(str(kind), list(models), n=1)
            message = (
                f"unknown value {kind!r}"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; known: {', '.join(models)}"
            )
            raise ValidationError.from_exception_data(
                "kind",
                [{"type": PydanticCustomError("unknown_kind", message), "loc": ("kind",), "input": kind}],
            )
        return models[kind].model_validate({**value, "kind": kind})


class BuiltModel(Chooser):
    """A mapping validated by a model built when it is validated, e.g. `tracking:`, whose keys are the
    trackers registered by then (plugins included)."""

    def __init__(self, model: typing.Callable[[], type[BaseModel]]):
        self.model = model

    def model_for(self, value: Any) -> type[BaseModel]:
        return self.model()

    def __call__(self, value: Any, handler: Any) -> BaseModel:
        model = self.model()
        return value if isinstance(value, model) else model.model_validate(value)


def beside(value: str, folder: Path) -> str:
    """A relative path joined to `folder`; absolute, ~ and $VAR paths as written (expand_path expands them),
    and an empty one (its field's own check names it)."""
    if not value.strip() or value.startswith(("~", "$")) or os.path.isabs(value):
        return value
    return os.path.normpath(folder / value)


@dataclass(frozen=True)
class RelativeToFile:
    """Marks a schema type whose values are paths (`Annotated[str, RelativeToFile()]`): a relative path
    written in a YAML file is relative to that file's folder, as in a docker compose file or a
    Cargo.toml, wherever the command runs; one given on the command line (an override) stays relative
    to the working directory. `anchor_paths` applies it to a file's data before the overrides.
    `resolve(value, folder)`: what the process reads for a value written in a file in `folder`."""

    resolve: Callable[[str, Path], str] = beside


def name_or_path(is_name: Callable[[str], bool]) -> RelativeToFile:
    """A value that is a path or a name (a bundled task, an alias, a hub id, a module): a name is kept as
    written unless a file or folder of that name sits beside the recipe; anything else is a path."""

    def resolve(value: str, folder: Path) -> str:
        anchored = beside(value, folder)
        return value if is_name(value) and not os.path.exists(anchored) else anchored

    return RelativeToFile(resolve)


def anchor_paths(data: Any, schema: Any, folder: Path) -> Any:
    """`data` as read from a file in `folder`, each string (or list of strings) that `schema` marks
    RelativeToFile resolved against the folder; mappings are followed into the schema they validate
    against (a technique's by its `kind:`)."""
    marker = _relative_marker(schema)
    if marker is not None and isinstance(data, str):
        return marker.resolve(data, folder)
    if isinstance(data, dict):
        chosen = _unwrap(schema, None, data)
        return {key: anchor_paths(value, _field_type(chosen, key, data), folder) for key, value in data.items()}
    if isinstance(data, list):
        item = schema if marker is not None else _unwrap(schema, 0, data)
        return [anchor_paths(value, item, folder) for value in data]
    return data


def _relative_marker(tp: Any) -> RelativeToFile | None:
    """The RelativeToFile marker of a type: on it, or on a member of its union."""
    if typing.get_origin(tp) is typing.Annotated:
        found = next((m for m in typing.get_args(tp)[1:] if isinstance(m, RelativeToFile)), None)
        return found or _relative_marker(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(filter(None, map(_relative_marker, typing.get_args(tp))), None)
    return None


def _field_type(model: Any, key: Any, data: Any) -> Any:
    """The type of `key` in a mapping validated by `model`, its field's markers included."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        field_info = model.model_fields.get(key)
        if field_info is None:
            return None
        if not field_info.metadata:
            return field_info.annotation
        args = (field_info.annotation, *field_info.metadata)
        return typing.Annotated[args]
    return _unwrap(model, key, data)


def expand_path(value: str) -> str:
    """Paths in recipes may use ~ and $VARS; an unset variable is an error, not an empty string."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    if "$" in expanded:
        raise ValueError(f"environment variable in {value!r} is not set")
    return expanded


class ConfigWarning(UserWarning):
    """Input that works, but likely not as meant; the CLI prints it as a one-line warning."""


def read_text(path: Path) -> str:
    """A file's text as UTF-8 (a leading BOM, as spreadsheet programs write, dropped); any other
    encoding is a ConfigError naming the line, not a UnicodeDecodeError deep in a parser."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); fix: save the file as UTF-8"
        ) from None


def load_yaml_model(path: str | Path, model: type[M], overrides: Iterable[str] = ()) -> M:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    text = read_text(path)
    try:
        document = yaml.compose(text)
        _bounded_expansion(document, source=str(path))
        lines = _line_map(document, source=str(path))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    data = anchor_paths(data, model, path.parent.resolve())  # the file's paths; the overrides' stay the cwd's
    for override in overrides:
        apply_override(data, override)
    return validate(data, model, source=str(path), lines=lines, folder=path.parent)


def line_of(path: Path, key: Path_) -> int | None:
    """The line of a key path (e.g. ("data", "train")) in a YAML file already read once without error."""
    return _line_map(yaml.compose(read_text(path)), source=str(path)).get(key)


def validate(
    data: dict, model: type[M], source: str, lines: dict[Path_, int] | None = None, folder: Path | None = None
) -> M:
    """`data` as `model`; `folder`, the file's, is in the validation context (a check that a path stays
    inside the file's repository reads it)."""
    try:
        return model.model_validate(data, context={"folder": folder} if folder is not None else None)
    except ValidationError as exc:
        messages = [_describe(err, data, model, source, lines or {}) for err in exc.errors()]
        raise ConfigError("\n".join(messages)) from None


def apply_override(data: dict, override: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML). List items are chosen by index or by `name`."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key=value, e.g. seed=1 or eval.heldout.limit=50")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except (yaml.YAMLError, RecursionError) as exc:
        reason = getattr(exc, "problem", None) or ("nested too deeply" if isinstance(exc, RecursionError) else exc)
        raise ConfigError(
            f"override {override!r}: the value is not valid YAML ({reason}); fix: put text in YAML quotes, "
            f"e.g. '{key}=\"{raw}\"'"
        ) from None
    set_dotted(data, key, value, what=f"override {override!r}")


def set_dotted(data: dict, key: str, value: Any, what: str = "setting") -> None:
    """Set `a.b.c` in nested data to value, creating mappings on the way; list items by index or `name`."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, create=True, where=".".join(parts[: i + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{what}: {'.'.join(parts[:-1])} is not a mapping")


def _child(node: Any, part: str, create: bool, where: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, where)]
    if not isinstance(node, dict):
        raise ConfigError(f"override: {where} is not a mapping")
    if part not in node or node[part] is None:
        if not create:
            raise ConfigError(f"override: {where} not found")
        node[part] = {}
    return node[part]


def _list_index(items: list, part: str, where: str) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    names = [item.get("name") for item in items if isinstance(item, dict)]
    if part in names:
        return names.index(part)
    raise ConfigError(f"override: no item {part!r} in {where} (names: {', '.join(map(str, names))})")


# Nodes a document may hold with its aliases expanded: a recipe or task.yaml has hundreds. Every reader after
# the parser (the line map, the path anchoring, the schema) walks the expanded tree, so nested aliases
# ("billion laughs": 442 bytes took 24.7 s and 2.4 GB) must stop here, before any of them.
MAX_EXPANDED_NODES = 100_000


def _bounded_expansion(document: yaml.Node | None, source: str) -> None:
    """Refuse a document whose aliases expand it beyond MAX_EXPANDED_NODES nodes; counted once per
    distinct node (memoised), so the count itself takes time linear in the file."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 0  # an alias inside its own anchor counts nothing here; _line_map names it
            children: list = []
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            sizes[id(node)] = 1 + sum(size(child) for child in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{source}:{node.start_mark.line + 1}: the YAML here expands to more than "
                    f"{MAX_EXPANDED_NODES:,} values with its aliases (aliases of aliases multiply); fix: write "
                    "the repeated settings out, or alias only small mappings"
                )
        return sizes[id(node)]

    if document is not None:
        size(document)


def _line_map(
    node: yaml.Node | None, path: Path_ = (), source: str = "", inside: frozenset = frozenset()
) -> dict[Path_, int]:
    """Map every key path in the document to its 1-based line. Rejected here, as PyYAML accepts them: a
    duplicate key (the later value would silently win) and an alias inside its own anchor (a structure
    that contains itself; `inside` holds the nodes enclosing this one)."""
    lines: dict[Path_, int] = {}
    if node is None:
        return lines
    if id(node) in inside:
        raise ConfigError(
            f"{source}:{node.start_mark.line + 1}: the YAML anchor here is used by an alias inside itself "
            "(a structure that contains itself); fix: remove that alias"
        )
    inside = inside | {id(node)}
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            child, line = path + (key_node.value,), key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: a list or mapping as a key
                shape = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise ConfigError(
                    f"{source}:{line}: a key must be a name, not a {shape} (a YAML complex key, `? ...`); "
                    "fix: write `name: value`"
                )
            if key_node.value in first:
                raise ConfigError(
                    f"{source}:{line}: duplicate key '{'.'.join(map(str, child))}' (first at line "
                    f"{first[key_node.value]}); fix: keep one of them"
                )
            first[key_node.value] = line
            lines.update(_line_map(value_node, child, source, inside))
            lines[child] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, path + (i,), source, inside))
    return lines


def _data_path(loc: tuple, data: Any) -> Path_:
    """A pydantic loc as a path of keys and indexes in the file (where it can be followed)."""
    path: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        path.append(part)
        if node is not None and not isinstance(node, (dict, list)):
            node = None
    return tuple(path)


def _describe(err: ErrorDetails, data: dict, model: type[BaseModel], source: str, lines: dict[Path_, int]) -> str:
    path = _data_path(err["loc"], data)
    dotted = ".".join(str(p) for p in path) or "(top level)"
    line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), None)
    where = f"{source}:{line}" if line else source
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(model, err["loc"][:-1], data)
        hint = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        fix = f" (did you mean '{'.'.join(map(str, path[:-1] + (hint[0],)))}'?)" if hint else ""
        known = f"; known keys: {', '.join(sorted(allowed))}" if allowed and not hint else ""
        return f"{where}: unknown key '{dotted}'{fix}{known}"
    if err["type"] == "missing":
        return f"{where}: missing required key '{dotted}'"
    # the message names the value and the known ones; no_echo: the value may be a secret (a pasted API key)
    if err["type"] in ("unknown_kind", "unknown_name", "no_echo"):
        return f"{where}: {dotted}: {err['msg']}"
    return f"{where}: {dotted}: {err['msg']} (got {err.get('input')!r})"


def _fields_at(model: Any, loc: tuple, data: Any) -> list[str]:
    """The field names of the schema class that a pydantic loc points into (`data` decides kinds)."""
    current: Any = model
    node = data
    for part in loc:
        current = _unwrap(current, part, node)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        if current is None:
            return []
    current = _unwrap(current, None, node)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _unwrap(tp: Any, part: Any, node: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        chooser = next((m for m in typing.get_args(tp)[1:] if isinstance(m, Chooser)), None)
        if chooser is not None:  # the schema is the one chosen for this mapping (by its `kind:`, say)
            chosen = chooser.model_for(node)
            return chosen if part is None or chosen is None else _unwrap(chosen, part, node)
        return _unwrap(typing.get_args(tp)[0], part, node)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(members[0], part) if len(members) == 1 else (None if part is not None else tp)
    if part is None:
        return tp
    if origin in (list, tuple):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
        field = tp.model_fields[part]
        # pydantic keeps a field's own Annotated markers in its metadata, apart from its annotation
        chooser = next((m for m in field.metadata if isinstance(m, Chooser)), None)
        return field.annotation if chooser is None else typing.Annotated[field.annotation, chooser]
    return None
