"""The generic LightningDataModule of every family: reader entries in, mixed train batches and
once-per-sample evaluation loaders out.

Each split is a list of reader entries `{"reader": NAME, **kwargs}`, built as `READERS[NAME](**kwargs)`
(`datamodules.entries`). The entries are checked when the datamodule is created (dicts with a "reader",
readers of the datamodule's `SCHEMA`), without opening anything; `setup(stage)` opens only the splits
that the stage needs ("fit": train and val, "validate": val, "test": test, None: all), so that evaluation
does not need the training data on disk, and checks that every file the readers' items list exists and is
non-empty (`Reader.check_files`), so that a runner calling `setup` first stops before writing anything.

Train batches: `MixedBatchSampler` (`datamodules.mixing`) puts exactly batch_size // n_datasets samples of
every train dataset in every batch (batch_size is per process) and shards whole batches across DDP ranks;
rank and world size come from the trainer when attached, else from torch.distributed.

Val / test: no augmentation, no shuffle, one DataLoader per entry; with several entries Lightning passes
`dataloader_idx` = the entry's position in the list (`dataset_names(split)` gives the names). Under DDP
they use a non-shuffling, non-padding distributed sampler, so every sample is scored exactly once
(`datamodules.eval_loaders`).

A family's datamodule subclasses `MixedDataModule` and provides `SCHEMA` (a key of
`datamodules.schema.SCHEMAS`), `wrap(dataset, split)` (its per-sample transforms; on "train" the wrapped
dataset is indexed by the sampler's (index, aug_seed) pairs, e.g. a `datamodules.mixing.TransformedDataset`)
and `collate` (a staticmethod, so that DataLoader workers receive a plain function).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from datamodules.entries import build_entries, check_entries, entry_name, with_root_dir
from datamodules.eval_loaders import eval_loaders, replicas
from datamodules.mixing import MixedBatchSampler, MixedDataset
from datamodules.schema import get_schema


class MixedDataModule(pl.LightningDataModule):
    """Data of any mix of readers of one sample schema (see the module docstring).

    Args:
        train, val, test: lists of `{"reader": NAME, **reader_kwargs}`; test defaults to val.
        batch_size: samples per batch per process; >= len(train).
        num_workers, pin_memory: DataLoader options.
        seed: seed of the train order and augmentation.
        check_files: in `setup`, check that every file the readers list exists and is non-empty.
        root_dir: folder that the entries' relative `root`s are relative to (e.g. the data folder that holds
            every dataset: `data.root_dir=/datasets`); None = the working directory.
    Subclasses set `SCHEMA` and implement `wrap` and `collate`.
    """

    SCHEMA: str = ""

    def __init__(
        self,
        train: Sequence[Mapping[str, Any]],
        val: Sequence[Mapping[str, Any]],
        test: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        check_files: bool = True,
        root_dir: str | None = None,
    ):
        super().__init__()
        get_schema(self.SCHEMA)  # a subclass without a known SCHEMA is a programming error
        if not train:
            raise ValueError("train: expected at least one reader entry")
        if batch_size < len(train):
            raise ValueError(
                f"batch_size ({batch_size}) must be >= the number of train datasets ({len(train)}): every "
                "batch holds batch_size // n_datasets samples of each"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        owner = type(self).__name__
        self.root_dir = root_dir
        self.train_entries = with_root_dir(check_entries(train, "train", self.SCHEMA, owner), root_dir)
        self.val_entries = with_root_dir(check_entries(val, "val", self.SCHEMA, owner), root_dir)
        self.test_entries = (
            with_root_dir(check_entries(test, "test", self.SCHEMA, owner), root_dir)
            if test is not None
            else list(self.val_entries)
        )
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.pin_memory, self.check_files = pin_memory, bool(check_files)
        self.train_set: MixedDataset | None = None
        self.val_sets: list[Dataset] = []
        self.test_sets: list[Dataset] = []

    # -------------------------------------------------------------------------------- subclass hooks
    def wrap(self, dataset: Dataset, split: str) -> Dataset:
        """The dataset of `split` with the family's per-sample transforms; on "train" it must accept the
        sampler's (index, aug_seed) keys."""
        raise NotImplementedError(f"{type(self).__name__} must implement wrap(dataset, split)")

    @staticmethod
    def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Batch a list of samples (override with a staticmethod)."""
        raise NotImplementedError("a MixedDataModule subclass must define collate (a staticmethod)")

    # ---------------------------------------------------------------------------------------- setup
    def _entries(self, split: str) -> list[dict[str, Any]]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
        return {"train": self.train_entries, "val": self.val_entries, "test": self.test_entries}[split]

    def _open(self, split: str) -> list[Dataset]:
        """Build the readers of `split`, check their files, and wrap them."""
        entries = self._entries(split)
        datasets = build_entries(entries, split)
        if self.check_files:
            for i, (entry, d) in enumerate(zip(entries, datasets, strict=True)):
                if callable(getattr(d, "check_files", None)):
                    try:
                        d.check_files()
                    except (FileNotFoundError, ValueError) as e:
                        raise type(e)(f"{entry_name(split, i, entry)}: {e}") from e
        return [self.wrap(d, split) for d in datasets]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = MixedDataset(self._open("train"))
        if stage in (None, "fit", "validate") and not self.val_sets:
            self.val_sets = self._open("val")
        if stage in (None, "test") and not self.test_sets:
            self.test_sets = self._open("test")

    def dataset_names(self, split: str) -> list[str]:
        """Reader names of `split` ("train", "val", "test") in order: names of the dataloader_idx values."""
        return [e["reader"] for e in self._entries(split)]

    # ---------------------------------------------------------------------------------------- loaders
    def _replicas(self) -> tuple[int, int]:
        """(world_size, global_rank) of this process (`datamodules.eval_loaders.replicas`)."""
        return replicas(getattr(self, "trainer", None))

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=self.collate,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        world, rank = self._replicas()
        sizes = [len(d) for d in self.train_set.datasets]  # type: ignore[arg-type]
        sampler = MixedBatchSampler(sizes, self.batch_size, seed=self.seed, num_replicas=world, rank=rank)
        return self._loader(self.train_set, batch_sampler=sampler)

    def _eval_loaders(self, datasets: list[Dataset]) -> DataLoader | list[DataLoader]:
        world, rank = self._replicas()
        return eval_loaders(datasets, self._loader, self.batch_size, world, rank)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.val_sets:
            self.setup("validate")
        return self._eval_loaders(self.val_sets)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.test_sets:
            self.setup("test")
        return self._eval_loaders(self.test_sets)
