"""File loading and validation shared by the depth dataset readers.

Every reader turns its dataset's own files into one sample schema (see `make_sample`):
`image` (3, H, W) float32 in [0, 1], `depth` (1, H, W) float32, `valid` (1, H, W) bool, `depth_type`,
optional `intrinsics` (3, 3) float32, optional `max_depth` float, `name` str.
Errors name the file and, for a missing dataset root, the expected layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

DEPTH_TYPES = ("absolute", "uts", "utss_disparity", "ordinal")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")


def require_dir(path: str | Path, layout: str) -> Path:
    """Return `path` as a Path, or raise FileNotFoundError naming it and the expected `layout`."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {path}\nexpected layout:\n{layout}")
    return path


def require_file(path: str | Path, layout: str | None = None) -> Path:
    """Return `path` as a Path, or raise FileNotFoundError naming it (and the expected `layout`)."""
    path = Path(path)
    if not path.is_file():
        hint = f"\nexpected layout:\n{layout}" if layout else ""
        raise FileNotFoundError(f"file not found: {path}{hint}")
    return path


def check_split(split: str, allowed: Sequence[str], reader: str) -> str:
    """Raise ValueError naming the allowed values when `split` is not one of them."""
    if split not in allowed:
        raise ValueError(
            f"{reader}: unknown split {split!r}; allowed values: {', '.join(map(repr, allowed))}"
        )
    return split


def _open_image(path: Path) -> Image.Image:
    require_file(path)
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return img


def load_rgb(path: str | Path) -> torch.Tensor:
    """Read an 8-bit image file (any PIL format, grey images are repeated) as (3, H, W) float32 in [0, 1]."""
    img = _open_image(Path(path))
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def rgb_from_array(arr: np.ndarray, what: str) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) float32 in [0, 1]; `what` names the source in errors."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)


def load_png_uint(path: str | Path) -> np.ndarray:
    """Read a single-channel 8- or 16-bit PNG as an (H, W) integer array with its stored values."""
    img = _open_image(Path(path))
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
        raise ValueError(f"{path}: expected a single-channel 8/16-bit PNG, got PIL mode {img.mode!r}")
    arr = np.array(img)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel image, got array shape {arr.shape}")
    return arr.astype(np.int64)


def png_text(path: str | Path) -> dict[str, str]:
    """The text chunks (tEXt / iTXt) of a PNG file, e.g. a `depth_scale` written by the folder format."""
    img = _open_image(Path(path))
    return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}


def read_json(path: str | Path) -> dict[str, Any]:
    path = require_file(path)
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot parse JSON file {path}: {err}") from err


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


def read_split_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a split file, stripped."""
    lines = require_file(path).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
