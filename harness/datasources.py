"""A task's records read with the `datasets` library: a dataset on the Hugging Face Hub (`data.hub`), or a
folder in the task folder (`data.dataset`) that holds data files laid out like a hub repository
(`data/train-*.parquet`, ...) or that `Dataset.save_to_disk` / `DatasetDict.save_to_disk` wrote.

`data.train` and `data.test` each name one split, in the `datasets` syntax (`train`, `train[:1000]`,
`train[10%:]`). A dataset is arrow-backed and memory-mapped: only the rows a split names (and,
with `data.limit`, a seeded random sample of them, taken with `Dataset.select`) become Python records
for the converters in harness/tasks.py; nothing is streamed, since a hub dataset is downloaded and
prepared whole into the datasets cache either way. Offline (`HF_HUB_OFFLINE` / `HF_DATASETS_OFFLINE`)
a hub id is read from that cache, and one not there fails at once, naming the id and the cache folder.

What was read (the id, configuration, asked revision, the commit the cache holds, the split, its size
and the dataset's fingerprint) is returned beside the records, for the run's meta and its report.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.yamlconfig import ConfigError

if TYPE_CHECKING:
    from datasets import Dataset

    from harness.tasks import DataSpec


@dataclass(frozen=True)
class Records:
    """One split's records as the task converters read them, and where they came from."""

    where: str  # the source as an error names it: a file's path, or a dataset and its split
    stem: str  # an example without an id of its own is <stem>-<number>
    rows: list[tuple[int, object]]  # (line or row number, record)
    source: dict = field(default_factory=dict)  # what the run's meta records about the source
    separator: str = ":"  # between `where` and a number: path:line, or "dataset split train, row 3"
    short: str = ""  # `where` within a message that already named it: the file's name, the split

    def at(self, number: int, brief: bool = False) -> str:
        return f"{self.short if brief and self.short else self.where}{self.separator}{number}"


def sample(n: int, limit: int | None, seed: int) -> list[int]:
    """Positions of the rows to read: all n, or `limit` of them drawn at random (seeded), in their order.
    Random rather than the first: a dataset sorted by label (IMDB's is) would give one label only."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def read_split(data: DataSpec, location: str | Path, split: str) -> Records:
    """The records of `split` (a split spec such as `train[:100]`) of the dataset at `location`: a hub id,
    or a folder already checked to lie in the task folder."""
    splits, source = open_dataset(data, location)
    label = f"{location}" + (f" ({data.name})" if data.name else "")
    name, start, stop = _rows(split, splits, label)
    full = splits[name]
    numbers = [start + i for i in sample(stop - start, data.limit, data.split_seed)]
    read = {name: {"rows": len(full), "read": len(numbers), "fingerprint": full._fingerprint}}
    return Records(
        where=f"{label} split {split}",
        stem=name,  # an example without an id is <split>-<row>, the row's index in its split
        rows=list(zip(numbers, _records(full.select(numbers)))),
        source={**source, "split": split, "splits": read},
        separator=", row ",
        short=f"split {split}",
    )


def open_dataset(data: DataSpec, location: str | Path) -> tuple[Mapping[str, Dataset], dict]:
    """Every split of the dataset (memory-mapped, nothing read into memory yet) and what names it."""
    import datasets

    if isinstance(location, Path):
        if not location.exists():
            raise ConfigError(f"data.dataset: {location} not found; fix: name a folder inside the task folder")
        saved = (location / "dataset_dict.json").is_file() or (location / "state.json").is_file()
        if saved:
            if data.name is not None:
                raise ConfigError(f"data.name: {location} was written by save_to_disk and has no configurations")
            loaded = _reading(str(location), lambda: datasets.load_from_disk(str(location)))
        else:
            loaded = _reading(
                str(location), lambda: datasets.load_dataset(str(location), data.name, cache_dir=cache_dir())
            )
        splits = {"train": loaded} if isinstance(loaded, datasets.Dataset) else loaded
        return splits, {"dataset": location.name, "config": data.name}
    if Path(location).exists():  # the datasets library would read that folder, not the hub's dataset
        raise ConfigError(
            f"data.hub {location!r} is also a path here ({Path(location).resolve()}), which the datasets library "
            "would read instead of the hub dataset; fix: run from another folder, or copy the data into the task "
            "folder and name it with `data.dataset`"
        )
    _check_hub(location, data.revision)
    splits = _reading(
        location, lambda: datasets.load_dataset(location, data.name, revision=data.revision, cache_dir=cache_dir())
    )
    first = next(iter(splits.values()))
    commit = Path(first.cache_files[0]["filename"]).parent.name if first.cache_files else None
    config = first.info.config_name
    if data.revision and _is_commit(data.revision) and commit and not commit.startswith(data.revision):
        # offline, the datasets cache answers with the commit it holds, whatever revision was asked
        raise ConfigError(
            f"data.revision {data.revision!r}: the datasets cache holds commit {commit} of {location!r}, not that "
            "one; fix: load that revision once while online, or pin the commit the cache holds"
        )
    return splits, {"hub": location, "config": config, "revision": data.revision, "commit": commit}


def _is_commit(revision: str) -> bool:
    """A commit hash (or its prefix), which a cache folder's name can be checked against; a branch or tag
    name cannot."""
    return len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision)


def check_unchanged(recorded: dict, now: dict, where: str) -> None:
    """A hub dataset read again (by a cell's process, or on --resume) is the one the run recorded: a dataset
    without a pinned `revision` may have had a commit since, and finished cells would then pass for scores
    on other data. Hub datasets only: their fingerprint follows the commit, where a local folder's also
    follows its path and file times, which differ on another machine."""
    for role, source in recorded.items():
        if "hub" not in source:
            continue
        for split, part in source.get("splits", {}).items():
            current = now.get(role, {}).get("splits", {}).get(split, {}).get("fingerprint")
            if current != part["fingerprint"]:
                raise ConfigError(
                    f"{where}: hub dataset {source['hub']!r} changed since this run started: its {split} split "
                    f"(the task's {role}) has fingerprint {current}, the run recorded {part['fingerprint']} "
                    f"(commit {source.get('commit')}); the finished cells scored the recorded data, so start a "
                    "new run, and pin `data.revision` to keep a dataset fixed"
                )


def cache_dir() -> str:
    """The datasets cache: HF_DATASETS_CACHE as the environment has it now, else the library's. Read at each
    load because a cell's process is forked from a server whose library was imported earlier; the driver
    passes its cache to the cell (executors.base.cell_env), so both read the data from one place."""
    import datasets

    return os.environ.get("HF_DATASETS_CACHE") or str(datasets.config.HF_DATASETS_CACHE)


def _reading(label: str, load: Any) -> Any:
    """`load()`, its failures (a missing configuration, files it cannot read, an uncached id offline) told
    as a ConfigError that names the dataset."""
    import datasets

    verbosity, bars = datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    datasets.logging.set_verbosity_error()  # not "Using the latest cached version..." in every process that loads
    datasets.disable_progress_bars()  # "Generating train split" would come before a data error's `error:` line
    try:
        return load()
    except ConnectionError:  # offline (or unreachable) and not in the cache
        raise ConfigError(_not_cached(label)) from None
    except (ValueError, FileNotFoundError, RuntimeError, datasets.exceptions.DatasetNotFoundError) as exc:
        reason = str(exc).strip().replace("\n", "; ")
        raise ConfigError(f"dataset {label!r} could not be read ({type(exc).__name__}: {reason})") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def _not_cached(dataset_id: str) -> str:

    return (
        f"dataset {dataset_id!r} is not in the datasets cache ({cache_dir()}) and the hub "
        f"is off (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set); fix: load it once while online "
        f"(python -c \"import datasets; datasets.load_dataset('{dataset_id}')\"), or point HF_HOME at the cache "
        "that holds it, or copy its files into the task folder and name that folder with `data.dataset`"
    )


def _check_hub(dataset_id: str, revision: str | None) -> None:
    """Online, one quick request: a hub that does not answer would cost the datasets client about half a
    minute of retries per load (measured: 23 s), in every cell's process."""
    import datasets
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    if datasets.config.HF_HUB_OFFLINE:
        return  # the cache alone answers, in milliseconds
    try:
        huggingface_hub.HfApi().dataset_info(dataset_id, revision=revision, timeout=10)
    except HFValidationError as exc:
        raise ConfigError(f"data.hub {dataset_id!r} is not a hub dataset id ({exc})") from None
    except RevisionNotFoundError:
        raise ConfigError(f"data.revision {revision!r} is not a revision of hub dataset {dataset_id!r}") from None
    except RepositoryNotFoundError:
        raise ConfigError(
            f"dataset {dataset_id!r} is not on the hub (or is private or gated: log in with `hf auth login` or "
            "set HF_TOKEN); fix: check the id"
        ) from None
    except Exception as exc:  # noqa: BLE001 — no network, DNS, proxy, timeout: the load would fail the same way
        raise ConfigError(
            f"dataset {dataset_id!r}: the hub cannot be reached ({type(exc).__name__}: {exc}); fix: connect, set "
            f"HF_ENDPOINT to a mirror, or set HF_HUB_OFFLINE=1 to read it from the datasets cache "
            f"({cache_dir()}) where it was loaded before"
        ) from None


def _rows(split: str, splits: Mapping[str, Dataset], label: str) -> tuple[str, int, int]:
    """(split name, first row, end row) of a split spec such as `train[:10%]`. One split: the rows of two
    (`train+validation`) would share ids and row numbers."""
    import datasets

    fix = f"fix: name one of its splits: {', '.join(splits)} (e.g. `train`, `train[:1000]`, `train[:10%]`)"
    name = split.split("[")[0].strip()
    if "+" in split:
        raise ConfigError(f"dataset {label!r}: {split!r} joins splits; name one split for each of train and test")
    if name not in splits:
        raise ConfigError(f"dataset {label!r} has no split {name!r}; {fix}")
    try:
        (part,) = datasets.ReadInstruction.from_spec(split).to_absolute({name: len(splits[name])})
    except ValueError as exc:
        raise ConfigError(f"dataset {label!r}: cannot read split {split!r} ({exc}); {fix}") from None
    return part.splitname, part.from_, part.to


def _records(rows: Dataset) -> list[dict]:
    """The rows as records; a class-label column (ints in the arrow table) becomes its label names, so that
    `labels:` and the answers are the names, as the dataset's card shows them."""
    import datasets

    named = {col: f for col, f in rows.features.items() if isinstance(f, datasets.ClassLabel)}
    records = rows.to_list()
    for record in records:
        for col, feature in named.items():
            if isinstance(record.get(col), int) and record[col] >= 0:  # -1: no label
                record[col] = feature.int2str(record[col])
    return records
