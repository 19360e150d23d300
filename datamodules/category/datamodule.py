"""The category (TTP) LightningDataModule: readers of the category schema, cropped, mirrored, batched.

Entries, mixed train batches, DDP sharding and the once-per-sample evaluation loaders are the generic
machinery of `datamodules.base.MixedDataModule` (see its module docstring); this module holds what is
specific to categories: the per-sample crop (`datamodules.category.crop`: bbox padded by `pad_frac`, made
square, resized to `image_size`, keypoints and bbox in normalized crop coordinates) on every split, and on
train a mirror with probability 1/2 (with `mirror`) and an optional bbox jitter (`jitter_frac`, CMR's
train-time jitter; 0 by default). Their randomness comes from the batch sampler's aug_seed (seed, epoch,
position), so it depends neither on workers nor on processes. Mirroring permutes keypoints by the reader's
`KEYPOINT_FLIP` (and `true_verts` by its `vertex_flip` when the samples carry them).

Collate (`collate_category`): tensors are stacked (keys present in every sample must agree in shape, e.g.
the same keypoint set); a tensor key missing in some samples (e.g. `sfm_pose` when CUB and the synthetic
category are mixed, `mask` when PASCAL3D+ without masks is mixed in) is stacked with NaN for those samples
and `has_<key>` (B,) bool says which are real (a loss must select with it: NaN marks what is missing);
numbers become a (B,) float tensor; strings (`name`) and anything else become lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from datamodules.base import MixedDataModule
from datamodules.category.crop import PAD_FRAC, crop_sample, mirror_sample
from datamodules.collate import collate_samples
from datamodules.mixing import TransformedDataset
from datamodules.registry import DATAMODULES

__all__ = ["CategoryDataModule", "TransformedCategory", "collate_category"]


def _reader_name(dataset: Dataset) -> str:
    return str(getattr(dataset, "NAME", type(dataset).__name__))


class TransformedCategory(TransformedDataset):
    """Crops every sample of a category reader (and, with `mirror` / `jitter_frac`, augments it).

    Indexed by an int (no augmentation) or by (index, aug_seed) as yielded by `MixedBatchSampler`.

    Args:
        dataset: a reader of the category schema; with `mirror` it must have `KEYPOINT_FLIP` (list of K
            ints) and, when its samples have `true_verts`, `vertex_flip` (V,).
        size: output side in pixels; pad_frac: of the crop.
        mirror: mirror with probability 1/2 (needs an aug_seed).
        jitter_frac: each bbox side moves by U(-1, 1) * jitter_frac of the bbox size (needs an aug_seed).
    """

    def __init__(
        self,
        dataset: Dataset,
        size: int,
        pad_frac: float = PAD_FRAC,
        mirror: bool = False,
        jitter_frac: float = 0.0,
    ):
        super().__init__(dataset)
        if size < 1:
            raise ValueError(f"size: expected >= 1, got {size}")
        if jitter_frac < 0:
            raise ValueError(f"jitter_frac: expected >= 0, got {jitter_frac}")
        self.size, self.pad_frac, self.mirror, self.jitter_frac = int(size), pad_frac, mirror, jitter_frac
        flip = getattr(dataset, "KEYPOINT_FLIP", None)
        self.keypoint_flip = None if flip is None or len(flip) == 0 else [int(i) for i in flip]
        self.vertex_flip = getattr(dataset, "vertex_flip", None)
        if mirror and self.keypoint_flip is None:
            raise ValueError(
                f"reader {_reader_name(dataset)!r} has no KEYPOINT_FLIP (the keypoint left-right permutation), "
                "which mirroring needs; give it one or set mirror=False"
            )
        if self.keypoint_flip is not None and sorted(self.keypoint_flip) != list(
            range(len(self.keypoint_flip))
        ):
            raise ValueError(
                f"reader {_reader_name(dataset)!r}: KEYPOINT_FLIP must be a permutation of range(K), got "
                f"{self.keypoint_flip}"
            )

    def transform(self, sample: dict[str, Any], aug_seed: int | None) -> dict[str, Any]:
        augment = aug_seed is not None and (self.mirror or self.jitter_frac > 0)
        g = torch.Generator().manual_seed(int(aug_seed)) if augment else None
        flip = bool(torch.rand(1, generator=g).item() < 0.5) if g is not None else False
        jitter = None
        if g is not None and self.jitter_frac > 0:
            jitter = self.jitter_frac * (1 - 2 * torch.rand(4, generator=g, dtype=torch.float64))
        out = crop_sample(sample, self.size, self.pad_frac, jitter)
        if self.mirror and flip:
            out = mirror_sample(out, self.keypoint_flip, self.vertex_flip)
        return out


collate_category = collate_samples  # the shared rules (datamodules/collate.py), under the family's name


@DATAMODULES.register("category")
class CategoryDataModule(MixedDataModule):
    """Category (TTP) data of any mix of readers of the category schema (crop, mirror and collate: the
    module docstring; entries, mixing, DDP and evaluation loaders: `datamodules.base.MixedDataModule`).

    Args:
        train, val, test: lists of `{"reader": NAME, **reader_kwargs}`; test defaults to val.
        image_size: side of the square crops, pixels (CMR and TTP: 256).
        batch_size: samples per batch per process; >= len(train).
        num_workers, pin_memory: DataLoader options.
        seed: seed of the train order and augmentation.
        mirror: on train, mirror each sample with probability 1/2 (readers need `KEYPOINT_FLIP`).
        pad_frac: bbox padding on each side, fraction of its width / height (CMR: 0.05).
        jitter_frac: on train, random move of each bbox side, fraction of its size (CMR: 0.05; 0: none).
        check_files: in `setup`, check that every file the readers list exists and is non-empty.
        root_dir: folder that the entries' relative `root`s are relative to; None = the working directory.
    Batches: `image` (B, 3, S, S), `mask` (B, 1, S, S), `keypoints` (B, K, 3) normalized x, y and
    visibility, `bbox` (B, 4) normalized, `name` list, plus what the readers add (`sfm_pose` (B, 7), the
    synthetic truth `true_*`).
    """

    SCHEMA = "category"
    collate = staticmethod(collate_category)

    def __init__(
        self,
        train: Sequence[dict[str, Any]],
        val: Sequence[dict[str, Any]],
        test: Sequence[dict[str, Any]] | None = None,
        image_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        mirror: bool = True,
        pad_frac: float = PAD_FRAC,
        jitter_frac: float = 0.0,
        pin_memory: bool = False,
        check_files: bool = True,
        root_dir: str | None = None,
    ):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size: expected a positive int (square crops), got {image_size!r}")
        if pad_frac < 0:
            raise ValueError(f"pad_frac: expected >= 0, got {pad_frac}")
        if jitter_frac < 0:
            raise ValueError(f"jitter_frac: expected >= 0, got {jitter_frac}")
        super().__init__(
            train,
            val,
            test,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            pin_memory=pin_memory,
            check_files=check_files,
            root_dir=root_dir,
        )
        self.image_size, self.mirror = image_size, bool(mirror)
        self.pad_frac, self.jitter_frac = float(pad_frac), float(jitter_frac)

    def wrap(self, dataset: Dataset, split: str) -> TransformedCategory:
        """Train: crop + seeded mirror / jitter; val / test: crop only."""
        if split == "train":
            return TransformedCategory(dataset, self.image_size, self.pad_frac, self.mirror, self.jitter_frac)
        return TransformedCategory(dataset, self.image_size, self.pad_frac)
