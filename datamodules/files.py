"""File helpers shared by the readers of every family: checking roots, splits and files, reading images,
PNGs, HDF5 and MATLAB files, JSON and split lists. Errors name the file and, for a missing dataset root, the
expected layout.

Images come back as (3, H, W) float32 in [0, 1]; single-channel PNGs (depth maps, masks) as (H, W) integer
arrays with their stored values. A truncated or undecodable file raises ValueError naming it, never a partial
decode (see `open_image`); a missing HDF5 / .mat key raises ValueError naming the file, the key and the keys
present.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the 12-byte chunk that ends every complete PNG file


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
    """Open and fully decode an image file with PIL; FileNotFoundError / ValueError name the file.

    A truncated file always raises: PIL's `ImageFile.LOAD_TRUNCATED_IMAGES` is forced off while decoding (a
    library that sets it globally would otherwise get a partially grey image), and a PNG must end with its
    IEND chunk (PIL decodes a PNG cut after its last IDAT chunk without complaint; the IEND chunk must lie in the last 1 KiB)."""
    path = require_file(path)
    allow_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allow_truncated
    if img.format == "PNG":  # bytes after IEND are tolerated (harmless, and some writers append them)
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 1024))
            if PNG_IEND not in f.read():
                raise ValueError(f"cannot read image file {path}: truncated PNG (it does not end with IEND)")
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


_PNG_BITS = {"L": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32}


def load_png_uint(path: str | Path, bits: int | None = None) -> np.ndarray:
    """Read a single-channel 8- or 16-bit PNG (a depth map, a mask) as an (H, W) int64 array of its stored
    values; `bits=8` or `bits=16` refuses (ValueError naming the file) a PNG of another bit depth."""
    img = open_image(Path(path))
    if img.mode not in _PNG_BITS:
        raise ValueError(f"{path}: expected a single-channel 8/16-bit PNG, got PIL mode {img.mode!r}")
    if bits is not None and _PNG_BITS[img.mode] != bits:
        raise ValueError(
            f"{path}: expected a {bits}-bit single-channel PNG, but it is {_PNG_BITS[img.mode]}-bit "
            f"(PIL mode {img.mode!r})"
        )
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


def read_numbered_lines(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) of the non-empty, non-comment (`#`) lines of a text file."""
    lines = require_file(path).read_text().splitlines()
    return [
        (i, ln.strip()) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.lstrip().startswith("#")
    ]


def read_split_list(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a split file, stripped."""
    return [ln for _, ln in read_numbered_lines(path)]


def open_h5(path: str | Path):
    """Open an HDF5 file (MATLAB v7.3 files are HDF5) read-only as an `h5py.File`; FileNotFoundError names a
    missing file, ValueError one that HDF5 cannot open (truncated, 0 bytes, not HDF5)."""
    import h5py

    path = require_file(path)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"cannot read HDF5 file {path}: {err}") from err


def h5_dataset(f: Any, key: str, path: str | Path):
    """The dataset `key` of an open HDF5 file, or ValueError naming the file, the key and the keys present."""
    import h5py

    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path}: has no dataset {key!r} (keys present: {sorted(f.keys())})")
    return obj


def read_h5_array(path: str | Path, key: str) -> np.ndarray:
    """Read the whole dataset `key` of an HDF5 file as an array; errors name the file (see `open_h5`)."""
    with open_h5(path) as f:
        ds = h5_dataset(f, key, path)
        try:
            return np.asarray(ds[()])
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"cannot read dataset {key!r} of HDF5 file {path}: {err}") from err


def read_mat(path: str | Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """Load a MATLAB v4-v7.2 .mat file with scipy.io.loadmat; ValueError names a file that cannot be read
    (truncated, not a .mat) and, for a missing variable of `keys`, the variable and those present."""
    import scipy.io

    path = require_file(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # MatReadError, OSError, IndexError, ValueError, ...: all mean "unreadable"
        raise ValueError(f"cannot read MATLAB file {path}: {type(err).__name__}: {err}") from err
    present = sorted(k for k in mat if not k.startswith("__"))
    for key in keys:
        if key not in mat:
            raise ValueError(f"{path}: has no variable {key!r} (variables present: {present})")
    return mat
