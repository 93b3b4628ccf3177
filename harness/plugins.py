"""Plugins: code outside the harness that registers technique kinds, executors, trackers, metrics,
retrievers or report sections. A recipe's `plugins:` entries (a module name or a .py file) are imported
when the recipe is read, by the driver and by every worker, before the settings that may name what they
register (and again by `harness report`, which reads no recipe); an installed package declares its
module under the `adapt_harness.plugins` entry-point group, imported before the first lookup of a
technique kind, an executor or a tracker.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path

ENTRY_POINT_GROUP = "adapt_harness.plugins"

_installed = False


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
