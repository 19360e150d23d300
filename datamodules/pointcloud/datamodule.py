"""The point-cloud (SSL) LightningDataModule: readers of the "point_cloud" schema, resized, batched.

Entries, mixed train batches, DDP sharding and the once-per-sample evaluation loaders are the generic
machinery of `datamodules.base.MixedDataModule`; this module holds what is specific to point clouds: every
sample is resized to `image_size` x `image_size` (the lineage trains at 64 x 64: ssl_3d_recon `main.py`
`--H 64 --W 64`), the image bilinearly (antialiased when shrinking) and the mask bilinearly then thresholded
at 1/2 (CAPNet resizes the depth map with `cv2.resize` and thresholds after: capnet `src/utils.py`). A
non-square image is stretched (DRC renderings are square; the Pix3D reader crops squares). `pose` and
`points` are unchanged (the lineage's intrinsics scale with the image: `camera.lineage_intrinsics`). No
augmentation: the method's randomness (sampled projection poses) belongs to the model.

Collate (`collate_point_cloud`): `image` (B, 3, S, S), `mask` (B, 1, S, S), `pose` (B, 2), `points`
(B, P, 3) (all samples of a batch must have the same P), `name` a list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch.utils.data import Dataset

from datamodules.base import MixedDataModule
from datamodules.collate import collate_samples
from datamodules.mixing import TransformedDataset
from datamodules.registry import DATAMODULES

__all__ = ["PointCloudDataModule", "TransformedPointCloud", "collate_point_cloud", "resize_sample"]


def resize_sample(sample: dict[str, Any], size: int) -> dict[str, Any]:
    """`image` (3, H, W) and `mask` (1, H, W) resized to (size, size); a new dict, other keys shared."""
    out = dict(sample)
    image, mask = sample["image"], sample["mask"]
    if tuple(image.shape[-2:]) != (size, size):
        shrink = image.shape[-1] > size or image.shape[-2] > size
        out["image"] = F.interpolate(
            image[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
        )[0].clamp(0, 1)
    if tuple(mask.shape[-2:]) != (size, size):
        m = F.interpolate(mask[None].float(), size=(size, size), mode="bilinear", align_corners=False)[0]
        out["mask"] = (m >= 0.5).float()
    return out


class TransformedPointCloud(TransformedDataset):
    """Resizes every sample of a point-cloud reader to `size` x `size` (int or (index, aug_seed) keys)."""

    def __init__(self, dataset: Dataset, size: int):
        super().__init__(dataset)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected a positive int, got {size!r}")
        self.size = size

    def transform(self, sample: dict[str, Any], aug_seed: int | None) -> dict[str, Any]:
        return resize_sample(sample, self.size)


collate_point_cloud = collate_samples  # the shared rules (datamodules/collate.py), under the family's name


@DATAMODULES.register("point_cloud")
class PointCloudDataModule(MixedDataModule):
    """Point-cloud data of any mix of readers of the "point_cloud" schema (resize and collate: the module
    docstring; entries, mixing, DDP and evaluation loaders: `datamodules.base.MixedDataModule`).

    Args:
        train, val, test: lists of `{"reader": NAME, **reader_kwargs}`; test defaults to val.
        image_size: side of the square images, pixels (the lineage: 64).
        batch_size: samples per batch per process; >= len(train).
        num_workers, pin_memory: DataLoader options.
        seed: seed of the train order.
        check_files: in `setup`, check that every file the readers list exists and is non-empty.
        root_dir: folder that the entries' relative `root`s are relative to; None = the working directory.
    Batches: `image` (B, 3, S, S), `mask` (B, 1, S, S), `pose` (B, 2) radians, `points` (B, P, 3), `name` list.
    """

    SCHEMA = "point_cloud"
    collate = staticmethod(collate_point_cloud)

    def __init__(
        self,
        train: Sequence[dict[str, Any]],
        val: Sequence[dict[str, Any]],
        test: Sequence[dict[str, Any]] | None = None,
        image_size: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        check_files: bool = True,
        root_dir: str | None = None,
    ):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size: expected a positive int (square images), got {image_size!r}")
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
        self.image_size = image_size

    def wrap(self, dataset: Dataset, split: str) -> TransformedPointCloud:
        """Every split: resize to image_size (no augmentation)."""
        return TransformedPointCloud(dataset, self.image_size)
