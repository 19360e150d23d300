"""File helpers shared by the readers of every family: checking roots, splits and files, reading images,
PNGs, JSON and split lists. Errors name the file and, for a missing dataset root, the expected layout.

Images come back as (3, H, W) float32 in [0, 1]; single-channel PNGs (depth maps, masks) as (H, W) integer
arrays with their stored values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

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


def open_image(path: str | Path) -> Image.Image:
    """Open and decode an image file with PIL; FileNotFoundError / ValueError name the file."""
    path = require_file(path)
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return img


def load_rgb(path: str | Path) -> torch.Tensor:
    """Read an 8-bit image file (any PIL format, grey images are repeated) as (3, H, W) float32 in [0, 1]."""
    img = open_image(Path(path))
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def rgb_from_array(arr: np.ndarray, what: str) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) float32 in [0, 1]; `what` names the source in errors."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)


def load_png_uint(path: str | Path) -> np.ndarray:
    """Read a single-channel 8- or 16-bit PNG (a depth map, a mask) as an (H, W) int64 array of its stored
    values."""
    img = open_image(Path(path))
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
        raise ValueError(f"{path}: expected a single-channel 8/16-bit PNG, got PIL mode {img.mode!r}")
    arr = np.array(img)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel image, got array shape {arr.shape}")
    return arr.astype(np.int64)


def png_text(path: str | Path) -> dict[str, str]:
    """The text chunks (tEXt / iTXt) of a PNG file, e.g. a `depth_scale` written by the folder format."""
    img = open_image(Path(path))
    return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}


def read_json(path: str | Path) -> dict[str, Any]:
    """Parse a JSON file; FileNotFoundError / ValueError name the file."""
    path = require_file(path)
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot parse JSON file {path}: {err}") from err


def read_split_list(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a split file, stripped."""
    lines = require_file(path).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
