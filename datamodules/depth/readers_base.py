"""Base class of the depth dataset readers: split checking, root checking, indexing, item access."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from datamodules.depth.io import check_split, require_dir

_UNSET: Any = object()


class DepthReader(Dataset):
    """A map-style dataset over one real depth dataset in its own file format.

    Subclasses set `NAME`, `SPLITS`, `LAYOUT` (a short directory-tree hint for error messages), `MAX_DEPTH`
    (metres, or None), and implement `_index()` (cheap: paths only) and `_load(item)` (reads the files).
    Samples follow `datamodules.depth.io.make_sample`. Readers only read: nothing is written under `root`.
    """

    NAME: str = ""
    SPLITS: Sequence[str] = ("train", "val", "test")
    LAYOUT: str = ""
    MAX_DEPTH: float | None = None

    def __init__(self, root: str | Path, split: str, max_depth: float | None = _UNSET):
        self.split = check_split(split, self.SPLITS, self.NAME)
        self.root = require_dir(root, self.LAYOUT)
        self.max_depth = self.MAX_DEPTH if max_depth is _UNSET else max_depth
        self.items: list[Any] = list(self._index())
        if not self.items:
            raise FileNotFoundError(
                f"{self.NAME}: no samples found for split {split!r} under {self.root}\n"
                f"expected layout:\n{self.LAYOUT}"
            )

    def _index(self) -> Sequence[Any]:
        raise NotImplementedError

    def _load(self, item: Any) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.items)
        if not -n <= index < n:
            raise IndexError(f"{self.NAME}: index {index} out of range for {n} samples")
        return self._load(self.items[index % n])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
