"""Data entries of a config: `{"reader": NAME, **kwargs}` -> `READERS[NAME](**kwargs)`.

A datamodule's `train`, `val` and `test` arguments are lists of such entries. `check_entries` validates them
without opening anything (the datamodule's `__init__`: eval must not need the training data on disk): each
is a dict with a "reader" key, and a registered reader returns the datamodule's sample schema (its class
attribute `SCHEMA`, see `datamodules.schema`). `build_entries` opens the readers (the datamodule's
`setup`). Errors name the entry as `data.train[0] (nyu)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from datamodules.registry import READERS
from datamodules.schema import get_schema

SPLITS = ("train", "val", "test")


def entry_name(split: str, index: int, entry: Mapping[str, Any]) -> str:
    """How errors name an entry: `data.<split>[<index>] (<reader>)`."""
    return f"data.{split}[{index}] ({entry.get('reader', '?')})"


def with_root_dir(entries: list[dict[str, Any]], root_dir: str | None) -> list[dict[str, Any]]:
    """The entries with every relative `root` joined to `root_dir` (absolute roots and entries without a
    root unchanged); None leaves them as they are (relative to the working directory)."""
    if root_dir is None:
        return entries
    return [
        {**e, "root": str(Path(root_dir) / e["root"])}
        if isinstance(e.get("root"), (str, Path)) and not Path(e["root"]).is_absolute()
        else e
        for e in entries
    ]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(map(repr, SPLITS))}, got {split!r}")


def check_entries(
    entries: Sequence[Mapping[str, Any]] | None, split: str, schema: str, datamodule: str = "the datamodule"
) -> list[dict[str, Any]]:
    """Validate the entries of `split` for a datamodule of sample schema `schema`; nothing is opened.

    Args:
        entries: list of `{"reader": NAME, **reader_kwargs}` (None: no entries).
        split: "train", "val" or "test" (for messages).
        schema: the datamodule's `SCHEMA`, a key of `datamodules.schema.SCHEMAS`.
        datamodule: how messages name the datamodule.
    Returns:
        the entries as a list of plain dicts.
    Raises:
        ValueError naming the entry when it is not a dict with a "reader" key, or when its reader declares
        another schema (or none). A reader name that is not registered is left to `build_entries`, whose
        KeyError lists the registered ones.
    """
    _check_split(split)
    get_schema(schema)
    if entries is None:
        return []
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"data.{split}: expected a list of reader entries, got {type(entries).__name__}")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "reader" not in entry:
            raise ValueError(f"data.{split}[{i}]: expected a dict with a 'reader' key, got {entry!r}")
        name = entry["reader"]
        if not isinstance(name, str):
            raise ValueError(f"data.{split}[{i}]: 'reader' must be a reader name (str), got {name!r}")
        if name in READERS:  # plain dict lookup: an unknown name is reported by build_entries
            got = getattr(READERS[name], "SCHEMA", None)
            if got != schema:
                declared = f"returns samples of schema {got!r}" if got else "declares no sample SCHEMA"
                raise ValueError(
                    f"{entry_name(split, i, entry)}: reader {name!r} {declared}, but {datamodule} reads "
                    f"schema {schema!r}"
                )
        out.append(dict(entry))
    return out


def build_entries(entries: Sequence[Mapping[str, Any]], split: str) -> list[Dataset]:
    """Open every entry as `READERS[NAME](**kwargs)`, in order.

    Errors: an unknown reader name is a KeyError naming the entry and listing the registered readers; wrong
    arguments (TypeError / ValueError) name the entry (`data.val[1] (kitti): ...`); a missing file or
    directory is the reader's own FileNotFoundError, which names the path.
    """
    _check_split(split)
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"data.{split}: expected a list of reader entries, got {type(entries).__name__}")
    datasets = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "reader" not in entry:
            raise ValueError(f"data.{split}[{i}]: expected a dict with a 'reader' key, got {entry!r}")
        kwargs = {k: v for k, v in entry.items() if k != "reader"}
        try:
            cls = READERS[entry["reader"]]
        except KeyError as e:
            raise KeyError(f"data.{split}[{i}]: {e.args[0] if e.args else e}") from e
        try:
            datasets.append(cls(**kwargs))
        except (TypeError, ValueError) as e:  # wrong arguments: say which entry (files name themselves)
            raise type(e)(f"{entry_name(split, i, entry)}: {e}") from e
    return datasets
