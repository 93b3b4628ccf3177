"""The bundled lm-eval tasks (tasks/lm-eval/*/*.yaml) as `harness tasks` lists them: read from their YAML
alone, without importing lm-eval (it imports torch, and the listing commands stay light)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.evaluate.lmeval import BUNDLED_LM_EVAL


@dataclass(frozen=True)
class LmEvalTask:
    name: str
    description: str  # the YAML's header comment: what the task measures
    docs: int | None  # records in its local data files; None when they cannot be told without running it
    metrics: tuple[str, ...]
    path: Path


class _TagTolerantLoader(yaml.SafeLoader):
    """lm-eval YAML carries tags such as `!function utils.load_items`; a listing reads them as nothing."""


_TagTolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def bundled_lm_eval_tasks(folder: Path = BUNDLED_LM_EVAL) -> list[LmEvalTask]:
    """Every task YAML under `folder` (a file naming one `task:`; groups and included fragments are skipped)."""
    found = []
    for path in sorted(folder.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_TagTolerantLoader)
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            continue
        metrics = tuple(m["metric"] for m in data.get("metric_list") or [] if isinstance(m, dict) and "metric" in m)
        found.append(LmEvalTask(data["task"], _header_comment(text), _count_docs(path, data), metrics, path))
    return found


def _header_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _count_docs(path: Path, data: dict) -> int | None:
    """Records in the task's JSONL data: the files `dataset_kwargs.data_files` names, or, for a
    `custom_dataset` hook (code, not run here), the JSONL files beside the YAML, which is where the bundled
    hooks read. None for anything else (a hub dataset, another format)."""
    if data.get("dataset_path") == "json":
        files = (data.get("dataset_kwargs") or {}).get("data_files")
        named = [files] if isinstance(files, str) else list(files.values() if isinstance(files, dict) else files or [])
        candidates = [path.parent / f for f in named if isinstance(f, str)]
    elif "custom_dataset" in data:
        candidates = sorted(path.parent.glob("*.jsonl"))
    else:
        return None
    if not candidates or not all(f.suffix == ".jsonl" and f.is_file() for f in candidates):
        return None
    return sum(1 for f in candidates for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
