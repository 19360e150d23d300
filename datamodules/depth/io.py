"""Depth-specific file loading and validation for the depth dataset readers.

Every reader turns its dataset's own files into the depth sample schema (`datamodules.schema`, assembled by
`make_sample`): `image` (3, H, W) float32 in [0, 1], `depth` (1, H, W) float32, `valid` (1, H, W) bool,
`depth_type`, optional `intrinsics` (3, 3) float32, optional `max_depth` float, `name` str.
Errors name the file. The generic helpers (roots, splits, images, PNGs, HDF5 / .mat files, JSON, split
lists) live in `datamodules.files` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datamodules.files import (
    IMAGE_SUFFIXES,
    check_split,
    h5_dataset,
    load_png_uint,
    load_rgb,
    open_h5,
    open_image,
    png_text,
    read_h5_array,
    read_json,
    read_mat,
    read_numbered_lines,
    read_split_list,
    require_dir,
    require_file,
    rgb_from_array,
)
from losses.depth import DENSE_DEPTH_TYPES, DEPTH_TYPES

__all__ = [
    "DENSE_DEPTH_TYPES",
    "DEPTH_TYPES",
    "IMAGE_SUFFIXES",
    "border_mask",
    "check_same_size",
    "check_split",
    "h5_dataset",
    "intrinsics_matrix",
    "load_png_uint",
    "load_rgb",
    "make_sample",
    "open_h5",
    "open_image",
    "png_text",
    "read_h5_array",
    "read_json",
    "read_mat",
    "read_numbered_lines",
    "read_split_list",
    "require_dir",
    "require_file",
    "rgb_from_array",
]


def check_same_size(image: torch.Tensor, depth: torch.Tensor, image_path: Any, depth_path: Any) -> None:
    """Raise ValueError naming both files and both (H, W) sizes when image and depth differ in size."""
    if tuple(image.shape[-2:]) != tuple(depth.shape[-2:]):
        raise ValueError(
            f"image/depth size mismatch: image {image_path} is {tuple(image.shape[-2:])} (H, W) but "
            f"depth {depth_path} is {tuple(depth.shape[-2:])} (H, W)"
        )


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """Pinhole intrinsics (3, 3) float32 [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in 0-based pixels."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def border_mask(height: int, width: int, border: int) -> torch.Tensor:
    """(1, H, W) bool, False on the `border` outermost pixels on every side."""
    mask = torch.zeros(1, height, width, dtype=torch.bool)
    if 2 * border < min(height, width):
        mask[:, border : height - border, border : width - border] = True
    return mask


def make_sample(
    image: torch.Tensor,
    depth: torch.Tensor | np.ndarray,
    depth_type: str,
    name: str,
    *,
    image_path: Any = "<image>",
    depth_path: Any = "<depth>",
    extra_valid: torch.Tensor | None = None,
    intrinsics: torch.Tensor | None = None,
    max_depth: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble one sample of the depth schema.

    Args:
        image: (3, H, W) float in [0, 1].
        depth: (H, W) or (1, H, W); NaN / inf / <= 0 values become invalid and are stored as 0, so that
            no non-finite value can reach a loss.
        depth_type: one of DEPTH_TYPES.
        extra_valid: optional (1, H, W) bool, and-ed into the validity mask (border crops, confidences).
        intrinsics: optional (3, 3).
        extra: further keys copied into the sample (e.g. `ordinal`).
    Returns:
        dict with `image`, `depth`, `valid`, `depth_type`, `name`, and `intrinsics` / `max_depth` when given.
    """
    if depth_type not in DEPTH_TYPES:
        raise ValueError(f"depth_type must be one of {DEPTH_TYPES}, got {depth_type!r}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected shape (3, H, W), got {tuple(image.shape)}")
    if isinstance(depth, np.ndarray):
        depth_t = torch.from_numpy(np.array(depth, dtype=np.float32))  # a writable copy
    else:
        depth_t = depth.to(torch.float32)
    if depth_t.ndim == 2:
        depth_t = depth_t[None]
    if depth_t.ndim != 3 or depth_t.shape[0] != 1:
        raise ValueError(f"depth: expected shape (H, W) or (1, H, W), got {tuple(depth_t.shape)}")
    check_same_size(image, depth_t, image_path, depth_path)
    valid = torch.isfinite(depth_t) & (depth_t > 0)
    if extra_valid is not None:
        if extra_valid.shape != valid.shape:
            raise ValueError(
                f"extra_valid: expected shape {tuple(valid.shape)}, got {tuple(extra_valid.shape)}"
            )
        valid &= extra_valid.to(torch.bool)
    depth_t = torch.where(torch.isfinite(depth_t), depth_t, torch.zeros_like(depth_t))
    sample: dict[str, Any] = {
        "image": image.to(torch.float32).contiguous(),
        "depth": depth_t.contiguous(),
        "valid": valid,
        "depth_type": depth_type,
        "name": str(name),
    }
    if intrinsics is not None:
        k = torch.as_tensor(intrinsics, dtype=torch.float32)
        if k.shape != (3, 3):
            raise ValueError(f"intrinsics: expected shape (3, 3), got {tuple(k.shape)}")
        sample["intrinsics"] = k
    if max_depth is not None:
        sample["max_depth"] = float(max_depth)
    sample.update(extra)
    return sample
