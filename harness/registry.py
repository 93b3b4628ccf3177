"""One small registry: a name -> implementation table with a clear error for unknown names.

A registry with `builtins` imports those modules (which register the built-in entries) and the
installed plugin packages (harness/plugins.py) at its first lookup, not when it is imported, so that
validating a recipe imports only what it names."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, builtins: tuple[str, ...] = ()):
        self.what = what
        self.builtins = builtins
        self._items: dict[str, T] = {}
        self._loaded = not builtins

    def load(self) -> None:
        """Import the built-in modules and installed plugins, once (they register as they are imported)."""
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtins:
            importlib.import_module(module)
        from harness import plugins  # below this module: plugins import the registries' users

        plugins.load_installed()

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator form of add()."""
        return lambda item: self.add(name, item)

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = item
        return item

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def get(self, name: str) -> T:
        self.load()
        if name not in self._items:
            raise KeyError(self.unknown(name))
        return self._items[name]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def in_order(self) -> list[str]:
        """The names in registration order (built-ins first, as documented)."""
        self.load()
        return list(self._items)

    def unknown(self, name: str) -> str:
        """Why `name` is not registered, with the closest known name."""
        close = difflib.get_close_matches(str(name), self._items, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.what} {name!r}{hint}; known: {', '.join(self.in_order())}"
