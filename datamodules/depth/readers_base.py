"""Base class of the depth dataset readers: the generic `Reader` plus the depth schema and `max_depth`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.readers_base import Reader

_UNSET: Any = object()


class DepthReader(Reader):
    """A map-style dataset over one real depth dataset in its own file format (see `Reader`).

    Subclasses set `NAME`, `SPLITS`, `LAYOUT`, `MAX_DEPTH` (metres, or None), and implement `_index()`
    (cheap: paths only), `_load(item)` (reads the files) and `_files(item)` (the files it reads).
    Samples follow `datamodules.depth.io.make_sample` (schema "depth"). Readers only read: nothing is
    written under `root`.
    """

    SCHEMA = "depth"
    MAX_DEPTH: float | None = None

    def __init__(self, root: str | Path, split: str, max_depth: float | None = _UNSET):
        self.max_depth = self.MAX_DEPTH if max_depth is _UNSET else max_depth
        super().__init__(root, split)
