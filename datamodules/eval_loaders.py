"""Evaluation (val / test) loaders that score every sample exactly once, also under DDP.

One DataLoader per evaluation dataset, in entry order: with several, Lightning passes `dataloader_idx` = the
entry's position. No shuffle and no augmentation. Under DDP each loader uses a non-shuffling, non-padding
distributed sampler (`UnrepeatedDistributedSampler`): Lightning's default `DistributedSampler` would repeat
samples to give every rank the same count, which biases metrics over small datasets. Rank and world size
come from the trainer when one is attached, else from torch.distributed, else (1 process) 1 and 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler


def replicas(trainer: Any = None) -> tuple[int, int]:
    """(world_size, global_rank): from `trainer` when given, else torch.distributed, else (1, 0)."""
    if trainer is not None:
        return int(trainer.world_size), int(trainer.global_rank)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def eval_sampler(dataset: Dataset, num_replicas: int, rank: int) -> Sampler | None:
    """The sampler of an evaluation loader: None in one process, else the rank's unpadded, ordered shard
    (rank r gets indices r, r + num_replicas, ...; together the ranks hold every index once)."""
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank: expected 0 <= rank < num_replicas ({num_replicas}), got {rank}")
    if num_replicas == 1:
        return None
    return UnrepeatedDistributedSampler(dataset, num_replicas, rank, shuffle=False)


def eval_loaders(
    datasets: Sequence[Dataset],
    make_loader: Callable[..., DataLoader],
    batch_size: int,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader | list[DataLoader]:
    """One ordered loader per dataset, `make_loader(dataset, batch_size=, shuffle=False, sampler=)`; a single
    loader is returned bare (as Lightning expects for one dataloader), several (or none) as a list."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    loaders = [
        make_loader(d, batch_size=batch_size, shuffle=False, sampler=eval_sampler(d, num_replicas, rank))
        for d in datasets
    ]
    return loaders[0] if len(loaders) == 1 else loaders
