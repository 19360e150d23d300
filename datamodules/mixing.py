"""Mixed train batches of several datasets, for the datamodules of every family.

`MixedBatchSampler` puts exactly batch_size // n_datasets samples of every train dataset in every batch
(batch_size is per process). An epoch is one pass over the smallest dataset (others contribute a fresh
random subset each epoch). Under DDP the sampler shards whole batches across ranks (batch b goes to rank
b % world_size, the remainder is dropped so ranks stay in step). Lightning's own distributed sampler
injection is supported too: it re-instantiates the sampler with `sampler=DistributedSampler(...)`, whose
rank, world size and epoch the sampler then uses.

The sampler yields (index, aug_seed) pairs: the index into a `MixedDataset` (the concatenation of the
train datasets) and a seed for that sample's augmentation, drawn from (seed, epoch) like the order, so that
augmentation depends neither on the number of workers nor on which worker loads the sample.
`TransformedDataset` is the usual part of a `MixedDataset`: it applies a per-sample transform that receives
the aug_seed (None when indexed by a plain int, e.g. in evaluation).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, DistributedSampler
from torch.utils.data.sampler import BatchSampler

from datamodules.seeding import stable_seed


def split_key(key: int | tuple[int, int | None]) -> tuple[int, int | None]:
    """An item key -> (index, aug_seed): an int is (key, None), an (index, aug_seed) pair is itself."""
    if isinstance(key, tuple):
        if len(key) != 2:
            raise ValueError(f"key: expected an int or an (index, aug_seed) pair, got {key!r}")
        return key[0], key[1]
    return key, None


class TransformedDataset(Dataset):
    """`dataset[index]` passed through `transform(sample, aug_seed)`; indexed by an int (aug_seed None) or by
    (index, aug_seed) as yielded by `MixedBatchSampler`.

    Args:
        dataset: a map-style dataset of samples.
        transform: callable (sample, aug_seed or None) -> sample; None keeps samples as they are.
            Subclasses may override `transform` instead.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[dict[str, Any], int | None], dict[str, Any]] | None = None,
    ):
        if transform is not None and not callable(transform):
            raise ValueError(
                f"transform: expected a callable (sample, aug_seed) -> sample, got {transform!r}"
            )
        self.dataset, self._transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def transform(self, sample: dict[str, Any], aug_seed: int | None) -> dict[str, Any]:
        return sample if self._transform is None else self._transform(sample, aug_seed)

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict[str, Any]:
        index, aug_seed = split_key(key)
        return self.transform(self.dataset[index], aug_seed)


class MixedDataset(ConcatDataset):
    """ConcatDataset whose items may also be indexed by (index, aug_seed) pairs (passed on to the part)."""

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict[str, Any]:
        index, aug_seed = split_key(key)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        d = bisect.bisect_right(self.cumulative_sizes, index)
        local = index - (self.cumulative_sizes[d - 1] if d > 0 else 0)
        return self.datasets[d][(local, aug_seed) if aug_seed is not None else local]


class _EpochCounter:
    """Stands in for `batch_sampler.sampler` so that Lightning's `set_epoch` call reaches the sampler."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class MixedBatchSampler(BatchSampler):
    """Batches of ConcatDataset indices with exactly batch_size // len(sizes) samples of every dataset.

    Args:
        sizes: length of every concatenated dataset, in ConcatDataset order.
        batch_size: samples per batch (per process); must be >= len(sizes).
        seed: base seed; the order of epoch e comes from (seed, e).
        num_replicas, rank: DDP sharding (defaults: torch.distributed when initialized, else 1 / 0).
        sampler: optional DistributedSampler (Lightning injects one); its rank, world size and epoch override.
        drop_last: kept for Lightning's BatchSampler protocol; incomplete batches are always dropped.
        with_aug_seed: yield (index, aug_seed) pairs instead of indices.
    Global batch b of an epoch goes to rank b % num_replicas; every rank gets the same number of batches.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: Any = None,
        drop_last: bool = True,
        with_aug_seed: bool = True,
    ):
        if len(sizes) == 0 or min(sizes) < 1:
            raise ValueError(f"sizes: expected at least one non-empty dataset, got {list(sizes)}")
        if batch_size < len(sizes):
            raise ValueError(
                f"batch_size ({batch_size}) must be >= the number of train datasets ({len(sizes)})"
            )
        if isinstance(sampler, DistributedSampler):  # injected by Lightning: its sharding wins
            num_replicas, rank = sampler.num_replicas, sampler.rank
        if num_replicas is None or rank is None:
            dist = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = (
                (torch.distributed.get_world_size() if dist else 1) if num_replicas is None else num_replicas
            )
            rank = (torch.distributed.get_rank() if dist else 0) if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.sizes, self.seed = [int(s) for s in sizes], int(seed)
        self.per_dataset = batch_size // len(sizes)
        self.batch_size = self.per_dataset * len(sizes)
        self.num_replicas, self.rank, self.drop_last = int(num_replicas), int(rank), drop_last
        self.with_aug_seed = with_aug_seed
        self.sampler = sampler if sampler is not None else _EpochCounter()
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.global_batches = max(1, min(self.sizes) // self.per_dataset)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def __len__(self) -> int:
        return self.global_batches // self.num_replicas

    def _stream(self, d: int, g: torch.Generator) -> Tensor:
        """global_batches * per_dataset ConcatDataset indices of dataset d: fresh permutations, chained."""
        need, n = self.global_batches * self.per_dataset, self.sizes[d]
        perms = [torch.randperm(n, generator=g) for _ in range(math.ceil(need / n))]
        return torch.cat(perms)[:need] + self.offsets[d]

    def __iter__(self) -> Iterator[list[Any]]:
        g = torch.Generator().manual_seed(stable_seed(self.seed, self.epoch))
        streams = [
            self._stream(d, g).view(self.global_batches, self.per_dataset) for d in range(len(self.sizes))
        ]
        batches = torch.cat(streams, dim=1)  # (global_batches, batch_size)
        aug = torch.randint(0, 2**62, batches.shape, generator=g)
        usable = len(self) * self.num_replicas
        for b in range(self.rank, usable, self.num_replicas):
            idx = batches[b].tolist()
            yield list(zip(idx, aug[b].tolist(), strict=True)) if self.with_aug_seed else idx
