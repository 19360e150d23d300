"""The depth LightningDataModule: mixes several readers of the depth sample schema in every batch.

Each split is a list of reader entries `{"reader": NAME, **kwargs}`, built as `READERS[NAME](**kwargs)`.

Per sample (all splits): centre-crop to the aspect ratio of `image_size`, then resize to `image_size`
(image: bilinear with antialiasing, i.e. area-like when shrinking; depth and valid: nearest, so that no
depth is invented across an edge); `intrinsics` (0-based pixel centres, see `synthetic.py`) follow:
the crop shifts the principal point, the resize maps u -> (u + 0.5) * sx - 0.5. `ordinal` pairs move with
the pixels; pairs falling outside the crop are dropped. On train with `augment`, a horizontal flip with
probability 1/2 mirrors the image, depth, valid, `ordinal` x and the principal point (cx -> W - 1 - cx);
its coin comes from the batch sampler (seed, epoch, position), so it does not depend on workers.

Train batches: `MixedBatchSampler` puts exactly batch_size // n_datasets samples of every train dataset in
every batch (batch_size is per process). An epoch is one pass over the smallest dataset (others contribute
a fresh random subset each epoch). Under DDP the sampler shards whole batches across ranks (batch b goes to
rank b % world_size, the remainder is dropped so ranks stay in step); rank and world size come from the
trainer when attached, else from torch.distributed. Lightning's own distributed sampler injection is
supported too: it re-instantiates the sampler with `sampler=DistributedSampler(...)`, whose rank, world
size and epoch the sampler then uses.

Val / test: no augmentation, no shuffle, one DataLoader per entry; with several entries Lightning passes
`dataloader_idx` = the entry's position in the list (`dataset_names(split)` gives the names). Under DDP
they use a non-shuffling, non-padding distributed sampler, so every sample is scored exactly once.

Collate (`collate_depth`): tensors are stacked; `depth_type` and `name` (and other strings) become lists;
`ordinal` (M, 5) is padded with zero rows to the batch maximum M, with `ordinal_valid` (B, M) bool;
`intrinsics` is stacked when any sample has it, with NaN for samples that lack it, and `has_intrinsics`
(B,) bool says which are real; numbers present in every sample become a (B,) tensor, numbers missing in
some (e.g. `max_depth`) a list with None.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler
from torch.utils.data.sampler import BatchSampler

from datamodules.depth.synthetic import stable_seed
from datamodules.registry import DATAMODULES, READERS

# ----------------------------------------------------------------------------------------------------------
# Per-sample transforms


def center_crop_resize(sample: dict[str, Any], size: Sequence[int]) -> dict[str, Any]:
    """Centre-crop `sample` to the aspect ratio of size (H, W), then resize to it; returns a new dict.

    image bilinear (antialiased), depth / valid nearest, intrinsics and ordinal pixels mapped along.
    """
    out_h, out_w = int(size[0]), int(size[1])
    image = sample["image"]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"sample['image']: expected shape (3, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if w * out_h > h * out_w:  # too wide: crop columns
        crop_h, crop_w = h, max(1, round(h * out_w / out_h))
    else:
        crop_h, crop_w = max(1, round(w * out_h / out_w)), w
    y0, x0 = (h - crop_h) // 2, (w - crop_w) // 2
    sy, sx = out_h / crop_h, out_w / crop_w
    out = dict(sample)

    def crop(x: Tensor) -> Tensor:
        return x[..., y0 : y0 + crop_h, x0 : x0 + crop_w]

    same = (crop_h, crop_w) == (out_h, out_w)
    img = crop(image)
    if not same:
        img = F.interpolate(
            img[None], size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True
        )
        img = img[0].clamp(0, 1)
    out["image"] = img.contiguous()
    for key in ("depth", "valid"):
        x = crop(sample[key])
        if not same:
            dtype = x.dtype
            x = F.interpolate(x[None].float(), size=(out_h, out_w), mode="nearest-exact")[0].to(dtype)
        out[key] = x.contiguous()
    if "intrinsics" in sample:
        k = sample["intrinsics"].clone()
        k[0, 2] = (k[0, 2] - x0 + 0.5) * sx - 0.5
        k[1, 2] = (k[1, 2] - y0 + 0.5) * sy - 0.5
        k[0, 0] = k[0, 0] * sx
        k[1, 1] = k[1, 1] * sy
        k[0, 1] = k[0, 1] * sx
        out["intrinsics"] = k
    if "ordinal" in sample:
        out["ordinal"] = _map_ordinal(sample["ordinal"], y0, x0, crop_h, crop_w, sy, sx)
    return out


def resize_image_only(sample: dict[str, Any], short_side: int, multiple: int = 32) -> dict[str, Any]:
    """GP2's evaluation resize: only the image is resized, its shorter side to `short_side` and both sides to
    multiples of `multiple`, aspect kept ("smallest_equal" in GP2's datasets/validation_datasets.py); depth,
    valid, intrinsics and ordinal stay at the dataset's own resolution, and the prediction is upsampled to
    it for the metrics (lightning_modules.gp2.module.GP2Module.predict_like)."""
    image = sample["image"]
    h, w = image.shape[-2:]
    scale = short_side / min(h, w)
    out_h = max(multiple, round(h * scale / multiple) * multiple)
    out_w = max(multiple, round(w * scale / multiple) * multiple)
    out = dict(sample)
    if (out_h, out_w) != (h, w):
        img = F.interpolate(
            image[None], size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True
        )
        out["image"] = img[0].clamp(0, 1).contiguous()
    return out


def _map_ordinal(ordinal: Tensor, y0: int, x0: int, crop_h: int, crop_w: int, sy: float, sx: float) -> Tensor:
    """(M, 5) (yA, xA, yB, xB, rel) pairs through the crop and resize; pairs leaving the crop are dropped."""
    if ordinal.ndim != 2 or ordinal.shape[1] != 5:
        raise ValueError(f"sample['ordinal']: expected shape (M, 5), got {tuple(ordinal.shape)}")
    ys, xs = ordinal[:, [0, 2]].double() - y0, ordinal[:, [1, 3]].double() - x0
    inside = ((ys >= 0) & (ys < crop_h) & (xs >= 0) & (xs < crop_w)).all(1)
    out = ordinal.clone()
    # The output pixel that contains the input pixel's centre.
    out[:, [0, 2]] = torch.floor((ys + 0.5) * sy).clamp(max=round(crop_h * sy) - 1).to(ordinal.dtype)
    out[:, [1, 3]] = torch.floor((xs + 0.5) * sx).clamp(max=round(crop_w * sx) - 1).to(ordinal.dtype)
    return out[inside]


def hflip(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror a sample left-right: image, depth, valid, ordinal x (x -> W - 1 - x), cx -> W - 1 - cx."""
    out = dict(sample)
    w = sample["image"].shape[-1]
    for key in ("image", "depth", "valid"):
        out[key] = sample[key].flip(-1)
    if "intrinsics" in sample:
        k = sample["intrinsics"].clone()
        k[0, 2] = (w - 1) - k[0, 2]
        k[0, 1] = -k[0, 1]
        out["intrinsics"] = k
    if "ordinal" in sample:
        o = sample["ordinal"].clone()
        o[:, [1, 3]] = (w - 1) - o[:, [1, 3]]
        out["ordinal"] = o
    return out


class TransformedDepth(Dataset):
    """Applies centre-crop + resize (and, with `augment`, the sampler-seeded flip) to a depth dataset.

    Indexed by an int, or by (index, aug_seed) as yielded by `MixedBatchSampler`.
    """

    def __init__(
        self, dataset: Dataset, image_size: Sequence[int], augment: bool = False, native: bool = False
    ):
        self.dataset, self.image_size, self.augment, self.native = dataset, tuple(image_size), augment, native

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, aug_seed = key if isinstance(key, tuple) else (key, None)
        if self.native:
            return resize_image_only(self.dataset[index], min(self.image_size))
        sample = center_crop_resize(self.dataset[index], self.image_size)
        if self.augment and aug_seed is not None:
            g = torch.Generator().manual_seed(int(aug_seed))
            if torch.rand(1, generator=g).item() < 0.5:
                sample = hflip(sample)
        return sample


class MixedDataset(ConcatDataset):
    """ConcatDataset whose items may also be indexed by (index, aug_seed) pairs (passed on to the part)."""

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, aug_seed = key if isinstance(key, tuple) else (key, None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        d = bisect.bisect_right(self.cumulative_sizes, index)
        local = index - (self.cumulative_sizes[d - 1] if d > 0 else 0)
        return self.datasets[d][(local, aug_seed) if aug_seed is not None else local]


# ----------------------------------------------------------------------------------------------------------
# Mixed batches


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


# ----------------------------------------------------------------------------------------------------------
# Collate


def collate_depth(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch depth samples (rules in the module docstring)."""
    if not samples:
        raise ValueError("samples: expected at least one sample")
    keys: list[str] = []
    for s in samples:
        keys += [k for k in s if k not in keys]
    batch: dict[str, Any] = {}
    for key in keys:
        values = [s.get(key) for s in samples]
        present = [v is not None for v in values]
        if key == "ordinal":
            batch["ordinal"], batch["ordinal_valid"] = _pad_ordinal(values)
        elif key == "intrinsics":
            ref = next(v for v in values if v is not None)
            nan = torch.full_like(ref, math.nan)
            batch["intrinsics"] = torch.stack([v if v is not None else nan for v in values])
            batch["has_intrinsics"] = torch.tensor(present)
        elif all(present) and isinstance(values[0], Tensor):
            batch[key] = torch.stack(values)
        elif all(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    if "intrinsics" not in batch:
        batch["has_intrinsics"] = torch.zeros(len(samples), dtype=torch.bool)
    return batch


def _pad_ordinal(values: list[Tensor | None]) -> tuple[Tensor, Tensor]:
    """(B, M, 5) zero-padded pairs and (B, M) bool of real rows; samples without `ordinal` have M = 0."""
    ref = next(v for v in values if v is not None)
    m = max(len(v) for v in values if v is not None)
    out = ref.new_zeros(len(values), m, 5)
    mask = torch.zeros(len(values), m, dtype=torch.bool)
    for i, v in enumerate(values):
        if v is not None:
            out[i, : len(v)] = v
            mask[i, : len(v)] = True
    return out, mask


# ----------------------------------------------------------------------------------------------------------
# DataModule


def _build(entries: Sequence[dict[str, Any]] | None, split: str) -> list[Dataset]:
    datasets = []
    for i, entry in enumerate(entries or []):
        if "reader" not in entry:
            raise ValueError(f"{split}[{i}]: expected a dict with a 'reader' key, got {dict(entry)}")
        kwargs = {k: v for k, v in dict(entry).items() if k != "reader"}
        try:
            datasets.append(READERS[entry["reader"]](**kwargs))
        except (TypeError, ValueError) as e:  # wrong arguments: say which entry (files name themselves)
            raise type(e)(f"data.{split}[{i}] ({entry['reader']}): {e}") from e
    return datasets


@DATAMODULES.register("depth")
class DepthDataModule(pl.LightningDataModule):
    """Depth data of any mix of readers (see the module docstring for resizing, mixing, DDP and collate).

    Args:
        train, val, test: lists of `{"reader": NAME, **reader_kwargs}`; test defaults to val.
        image_size: (H, W) of every batch.
        batch_size: samples per batch per process; >= len(train).
        num_workers, pin_memory: DataLoader options.
        seed: seed of the train order and augmentation.
        augment: horizontal flips on train.
        eval_resize: "crop" (val/test samples centre-cropped and resized to image_size, like train) or
            "native" (GP2's protocol: the image's shorter side resized to min(image_size), a multiple of 32,
            and the ground truth kept at its own resolution; batches of one dataset must share a size).
    """

    def __init__(
        self,
        train: Sequence[dict[str, Any]],
        val: Sequence[dict[str, Any]],
        test: Sequence[dict[str, Any]] | None = None,
        image_size: Sequence[int] = (64, 64),
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        pin_memory: bool = False,
        eval_resize: str = "crop",
    ):
        super().__init__()
        if eval_resize not in ("crop", "native"):
            raise ValueError(f"eval_resize must be 'crop' or 'native', got {eval_resize!r}")
        self.eval_resize = eval_resize
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive sizes, got {image_size}")
        if not train:
            raise ValueError("train: expected at least one reader entry")
        if batch_size < len(train):
            raise ValueError(
                f"batch_size ({batch_size}) must be >= the number of train datasets ({len(train)}): every "
                "batch holds batch_size // n_datasets samples of each"
            )
        self.train_entries, self.val_entries = list(train), list(val)
        self.test_entries = list(test) if test is not None else list(val)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.augment, self.pin_memory = augment, pin_memory
        self.train_set: MixedDataset | None = None
        self.val_sets: list[TransformedDepth] = []
        self.test_sets: list[TransformedDepth] = []

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            parts = [
                TransformedDepth(d, self.image_size, self.augment)
                for d in _build(self.train_entries, "train")
            ]
            self.train_set = MixedDataset(parts)
        if stage in (None, "fit", "validate") and not self.val_sets:
            native = self.eval_resize == "native"
            self.val_sets = [
                TransformedDepth(d, self.image_size, native=native) for d in _build(self.val_entries, "val")
            ]
        if stage in (None, "test") and not self.test_sets:
            native = self.eval_resize == "native"
            self.test_sets = [
                TransformedDepth(d, self.image_size, native=native) for d in _build(self.test_entries, "test")
            ]

    def dataset_names(self, split: str) -> list[str]:
        """Reader names of `split` ("train", "val", "test") in order: names of the dataloader_idx values."""
        entries = {"train": self.train_entries, "val": self.val_entries, "test": self.test_entries}[split]
        return [e["reader"] for e in entries]

    def _replicas(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_depth,
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

    def _eval_loaders(self, datasets: list[TransformedDepth]) -> DataLoader | list[DataLoader]:
        world, rank = self._replicas()
        loaders = []
        for d in datasets:
            # no padding: each sample is scored once (DistributedSampler would repeat some to even out ranks)
            sampler = UnrepeatedDistributedSampler(d, world, rank, shuffle=False) if world > 1 else None
            loaders.append(self._loader(d, batch_size=self.batch_size, shuffle=False, sampler=sampler))
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.val_sets:
            self.setup("validate")
        return self._eval_loaders(self.val_sets)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.test_sets:
            self.setup("test")
        return self._eval_loaders(self.test_sets)
