"""Base class of the real-dataset readers of every family: split and root checks, indexing, item access, and
a cheap check that every file the items will read is there before training starts.

A family derives its own base from `Reader` (e.g. `datamodules.depth.readers_base.DepthReader`), and each
dataset's reader derives from that and is registered in `datamodules.READERS`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from datamodules.files import check_split, require_dir


class Reader(Dataset):
    """A map-style dataset over one real dataset in its own file format.

    Subclasses set `NAME` (the registry name), `SCHEMA` (the sample schema they return, a key of
    `datamodules.schema.SCHEMAS`), `SPLITS`, `LAYOUT` (a short directory-tree hint for error messages), and
    implement `_index()` (cheap: paths only, one item per sample), `_load(item)` (reads the files; returns one
    sample of `SCHEMA`) and, where an item knows its files, `_files(item)` (the files `_load(item)` reads).
    Readers only read: nothing is written under `root`.
    """

    NAME: str = ""
    SCHEMA: str = ""
    SPLITS: Sequence[str] = ("train", "val", "test")
    LAYOUT: str = ""

    def __init__(self, root: str | Path, split: str):
        self.split = check_split(split, self.SPLITS, self.NAME)
        self.root = require_dir(root, self.LAYOUT)
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

    def _files(self, item: Any) -> Sequence[Path]:
        """The files that `_load(item)` reads (needed ones only, not optional ones); default none."""
        return ()

    def files(self) -> list[Path]:
        """Every file the indexed items read, each once, in index order."""
        return list(dict.fromkeys(Path(p) for item in self.items for p in self._files(item)))

    def check_files(self) -> int:
        """Check that every file of `files()` exists and is non-empty, without reading it (one stat each).

        Returns:
            the number of files checked.
        Raises:
            FileNotFoundError when some are missing (naming the first, with how many are missing and empty),
            else ValueError when some have 0 bytes (naming the first, with how many).
        """
        files = self.files()
        missing, empty = [], []
        for path in files:
            try:
                st = os.stat(path)
            except OSError:  # FileNotFoundError, NotADirectoryError, PermissionError, ...
                missing.append(path)
                continue
            if not stat.S_ISREG(st.st_mode):
                missing.append(path)
            elif st.st_size == 0:
                empty.append(path)
        if not missing and not empty:
            return len(files)
        where = f"{self.NAME} (split {self.split!r} under {self.root})"
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(files)} listed files are missing, the first: {missing[0]}")
        if empty:
            parts.append(
                f"{len(empty)} of {len(files)} listed files are empty (0 bytes), the first: {empty[0]}"
            )
        message = f"{where}: {'; '.join(parts)}\nexpected layout:\n{self.LAYOUT}"
        raise (FileNotFoundError if missing else ValueError)(message)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.items)
        if not -n <= index < n:
            raise IndexError(f"{self.NAME}: index {index} out of range for {n} samples")
        return self._load(self.items[index % n])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
