"""The depth LightningDataModule: mixes several readers of the depth sample schema in every batch.

Entries, mixed train batches, DDP sharding and the once-per-sample evaluation loaders are the generic
machinery of `datamodules.base.MixedDataModule` (see its module docstring); this module holds what is
specific to depth: the per-sample transforms and the collate.

Per sample (all splits): centre-crop to the aspect ratio of `image_size`, then resize to `image_size`
(image: bilinear with antialiasing, i.e. area-like when shrinking; depth and valid: nearest, so that no
depth is invented across an edge); `intrinsics` (0-based pixel centres, see `synthetic.py`) follow:
the crop shifts the principal point, the resize maps u -> (u + 0.5) * sx - 0.5. `ordinal` pairs move with
the pixels; pairs falling outside the crop are dropped. On train with `augment`, a horizontal flip with
probability 1/2 mirrors the image, depth, valid, `ordinal` x and the principal point (cx -> W - 1 - cx);
its coin comes from the batch sampler (seed, epoch, position), so it does not depend on workers.
With `eval_resize="native"`, val / test samples get GP2's evaluation resize instead (`resize_image_only`).

Collate (`collate_depth`): tensors are stacked; `depth_type` and `name` (and other strings) become lists;
`ordinal` (M, 5) is padded with zero rows to the batch maximum M, with `ordinal_valid` (B, M) bool;
`intrinsics` is stacked when any sample has it, with NaN for samples that lack it, and `has_intrinsics`
(B,) bool says which are real; numbers present in every sample become a (B,) tensor, numbers missing in
some (e.g. `max_depth`) a list with None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import MixedDataModule
from datamodules.collate import collate_samples
from datamodules.mixing import MixedBatchSampler, MixedDataset, TransformedDataset
from datamodules.registry import DATAMODULES

__all__ = [
    "DepthDataModule",
    "MixedBatchSampler",
    "MixedDataset",
    "TransformedDepth",
    "center_crop_resize",
    "collate_depth",
    "hflip",
    "resize_image_only",
]

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


class TransformedDepth(TransformedDataset):
    """Applies centre-crop + resize (and, with `augment`, the sampler-seeded flip) to a depth dataset.

    Indexed by an int, or by (index, aug_seed) as yielded by `MixedBatchSampler`. With `native`, GP2's
    evaluation resize (`resize_image_only` to min(image_size)) instead.
    """

    def __init__(
        self, dataset: Dataset, image_size: Sequence[int], augment: bool = False, native: bool = False
    ):
        super().__init__(dataset)
        self.image_size, self.augment, self.native = tuple(image_size), augment, native

    def transform(self, sample: dict[str, Any], aug_seed: int | None) -> dict[str, Any]:
        if self.native:
            return resize_image_only(sample, min(self.image_size))
        sample = center_crop_resize(sample, self.image_size)
        if self.augment and aug_seed is not None:
            g = torch.Generator().manual_seed(int(aug_seed))
            if torch.rand(1, generator=g).item() < 0.5:
                sample = hflip(sample)
        return sample


# ----------------------------------------------------------------------------------------------------------
# Collate


def collate_depth(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch depth samples (rules in the module docstring): `datamodules.collate.collate_samples`, with
    DIW's ordinal pairs zero-padded to one length and `has_intrinsics` always present."""
    if not samples:
        raise ValueError("samples: expected at least one sample")
    ordinal = [s.get("ordinal") for s in samples]
    batch = collate_samples([{k: v for k, v in s.items() if k != "ordinal"} for s in samples])
    if any(v is not None for v in ordinal):
        batch["ordinal"], batch["ordinal_valid"] = _pad_ordinal(ordinal)
    if "intrinsics" not in batch:
        batch["has_intrinsics"] = torch.zeros(len(samples), dtype=torch.bool)
    elif "has_intrinsics" not in batch:
        batch["has_intrinsics"] = torch.ones(len(samples), dtype=torch.bool)
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


@DATAMODULES.register("depth")
class DepthDataModule(MixedDataModule):
    """Depth data of any mix of readers (resizing, flips and collate: the module docstring; entries, mixing,
    DDP and evaluation loaders: `datamodules.base.MixedDataModule`).

    Args:
        train, val, test: lists of `{"reader": NAME, **reader_kwargs}` of depth readers; test defaults to val.
        image_size: (H, W) of every batch.
        batch_size: samples per batch per process; >= len(train).
        num_workers, pin_memory: DataLoader options.
        seed: seed of the train order and augmentation.
        augment: horizontal flips on train.
        eval_resize: "crop" (val/test samples centre-cropped and resized to image_size, like train) or
            "native" (GP2's protocol: the image's shorter side resized to min(image_size), a multiple of 32,
            and the ground truth kept at its own resolution; batches of one dataset must share a size).
        check_files: in `setup`, check that every file the readers list exists and is non-empty.
        root_dir: folder that the entries' relative `root`s are relative to; None = the working directory.
    """

    SCHEMA = "depth"
    collate = staticmethod(collate_depth)

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
        check_files: bool = True,
        root_dir: str | None = None,
    ):
        if eval_resize not in ("crop", "native"):
            raise ValueError(f"eval_resize must be 'crop' or 'native', got {eval_resize!r}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive sizes, got {image_size}")
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
        self.eval_resize = eval_resize
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.augment = augment

    def wrap(self, dataset: Dataset, split: str) -> TransformedDepth:
        """Train: crop + resize + seeded flips (with `augment`); val / test: crop + resize, or the native
        evaluation resize."""
        if split == "train":
            return TransformedDepth(dataset, self.image_size, self.augment)
        return TransformedDepth(dataset, self.image_size, native=self.eval_resize == "native")
