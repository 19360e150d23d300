"""Name -> class registries for dataset readers and datamodules.

Experiments pick components by name from these registries; no Python is imported from config strings.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict):
    """A dict of name -> class with a decorator to register and a helpful lookup error."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self[name] = obj
            return obj

        return deco

    def __missing__(self, name: str):
        close = difflib.get_close_matches(str(name), list(self), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown {self.kind} {name!r}{hint} Available: {', '.join(sorted(self))}")


READERS = Registry("dataset reader")
DATAMODULES = Registry("datamodule")
