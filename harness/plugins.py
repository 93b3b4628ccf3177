"""Plugins: code outside the harness that registers technique kinds, executors, trackers, metrics,
retrievers or report sections. A recipe's `plugins:` entries (a module name or a .py file) are imported
when the recipe is read, by the driver and by every worker, before the settings that may name what they
register (and again by `harness report`, which reads no recipe); an installed package declares its
module under the `adapt_harness.plugins` entry-point group, imported before the first lookup of a
technique kind, an executor or a tracker.

Importing a plugin runs its code, so the commands that only read (`harness validate`, `harness report`)
import a recipe's or a run's plugins only when asked (`--import-plugins`, docs/trust.md): without it they
check that each plugin exists and leave what it would register unknown.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

ENTRY_POINT_GROUP = "adapt_harness.plugins"

_installed = False

# Inside `not_imported()`: the plugins checked and not imported (None: they are imported)
_not_imported: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("plugins_not_imported", default=None)


@contextlib.contextmanager
def not_imported() -> Iterator[list[str]]:
    """Within this block a recipe's `plugins:` are checked (`check`), not imported: no plugin code runs.
    Yields the list of those checked, so an error can say that what they register is unknown here."""
    skipped: list[str] = []
    token = _not_imported.set(skipped)
    try:
        yield skipped
    finally:
        _not_imported.reset(token)


def importing() -> bool:
    """Whether a recipe's `plugins:` are imported here (False inside `not_imported()`)."""
    return _not_imported.get() is None


def check(ref: str) -> None:
    """That a plugin exists, running none of its code: a .py file is a file; a module name's top-level
    package is installed (finding a submodule would import its package, which runs code)."""
    if ref.endswith(".py"):
        if not Path(ref).is_file():
            raise ImportError(f"no file {ref}")
    elif importlib.util.find_spec(ref.split(".")[0]) is None:
        raise ModuleNotFoundError(f"no module named {ref.split('.')[0]!r}")
    skipped = _not_imported.get()
    if skipped is not None:
        skipped.append(ref)


def load(ref: str) -> None:
    """Import a recipe's `plugins:` entry (a module name, or a .py file) so what it registers exists."""
    if not ref.endswith(".py"):
        importlib.import_module(ref)
        return
    name = "harness_plugin_" + Path(ref).stem.replace("-", "_")
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, ref)
    if spec is None or spec.loader is None:  # never for a .py path
        raise ImportError(f"cannot load the plugin file {ref}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def load_installed() -> None:
    """Import every installed package's entry point, once (a registry calls this before its first lookup)."""
    global _installed
    if _installed:
        return
    _installed = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
