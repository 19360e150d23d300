"""Readers for the real depth datasets in their own file formats, registered in `datamodules.READERS`.

`READERS["nyu"](root=..., split="test")[i]` is a dict (see `datamodules.depth.io.make_sample`):
`image` (3, H, W) float32 in [0, 1], `depth` (1, H, W) float32, `valid` (1, H, W) bool, `depth_type`,
optional `intrinsics` (3, 3) float32 in 0-based pixels, optional `max_depth`, `name`.

This module holds the metric (absolute-depth) datasets: NYUv2, KITTI, TUM RGB-D, Sintel, ETH3D, DIML.
`readers_relative` (imported at the bottom, so that importing this module registers every reader) holds
DIW, MegaDepth, ReDWeb and the generic folder format. Layouts are documented in docs/depth_datasets.md.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch

from datamodules.depth.io import border_mask, intrinsics_matrix, make_sample
from datamodules.depth.readers_base import _UNSET, DepthReader
from datamodules.files import (
    h5_dataset,
    load_png_uint,
    load_rgb,
    open_h5,
    read_mat,
    read_numbered_lines,
    require_file,
    rgb_from_array,
)
from datamodules.registry import READERS

# --------------------------------------------------------------------------------------------------- NYUv2

# RGB intrinsics of the NYU Depth v2 Kinect, from the NYU toolbox `camera_params.m` (Silberman et al. 2012;
# "Calibrated using the RGBDemo Calibration tool", i.e. OpenCV's 0-based pixel convention). The toolbox's own
# `rgb_plane2rgb_world.m` unprojects on a 1-based `meshgrid(1:640, 1:480)` with these same values.
NYU_FX, NYU_FY, NYU_CX, NYU_CY = (
    5.1885790117450188e02,
    5.1946961112127485e02,
    3.2558244941119034e02,
    2.5373616633400465e02,
)


@READERS.register("nyu")
class NYUv2Reader(DepthReader):
    """NYU Depth v2, labeled subset (1449 images; official split 795 train / 654 test).

    `nyu_depth_v2_labeled.mat` is MATLAB v7.3 (HDF5): MATLAB's (H, W, 3, N) `images` is stored transposed
    as (N, 3, W, H) uint8 and (H, W, N) `depths` / `rawDepths` as (N, W, H) float32 metres.
    `splits.mat` (MATLAB v5) holds 1-based `trainNdxs` / `testNdxs`.

    Args:
        raw: use `rawDepths` (Kinect measurements with holes, 0 = missing) instead of the in-painted `depths`.
        border_crop: pixels on each side left out; default 8 for the test split and 0 for train.
        border_mode: "mask" marks the border invalid and keeps the full 480x640 image; "crop" cuts it off
            the image and the depth, as GP2's evaluation does (`img[8:-8, 8:-8]`, `depth[8:-8, 8:-8]`,
            saic-vul/geometry-preserving-de datasets/validation_datasets.py, NYUDataset.getitem), so that
            the network sees the 464x624 crop.
    """

    NAME = "nyu"
    SPLITS = ("train", "test")
    # GP2 eval cap: saic-vul/geometry-preserving-de datasets/validation_datasets.py:176 (NYUDataset)
    MAX_DEPTH = 10.0
    LAYOUT = (
        "<root>/\n"
        "  nyu_depth_v2_labeled.mat   (MATLAB v7.3 / HDF5)\n"
        "  splits.mat                 (trainNdxs, testNdxs)"
    )
    _SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        raw: bool = False,
        border_crop: int | None = None,
        border_mode: str = "mask",
        max_depth: float | None = _UNSET,
    ):
        if border_mode not in ("mask", "crop"):
            raise ValueError(f"nyu: border_mode must be 'mask' or 'crop', got {border_mode!r}")
        self.raw = raw
        self.border_crop = (8 if split == "test" else 0) if border_crop is None else int(border_crop)
        if self.border_crop < 0:
            raise ValueError(f"nyu: border_crop must be >= 0 pixels, got {self.border_crop}")
        self.border_mode = border_mode
        self._h5: h5py.File | None = None
        super().__init__(root, split, max_depth)

    def _index(self) -> list[int]:
        self.mat_path = require_file(self.root / "nyu_depth_v2_labeled.mat", self.LAYOUT)
        splits_path = require_file(self.root / "splits.mat", self.LAYOUT)
        key = self._SPLIT_KEYS[self.split]
        splits = read_mat(splits_path, [key])
        index = np.asarray(splits[key]).reshape(-1).astype(np.int64) - 1  # 1-based MATLAB -> 0-based
        with open_h5(self.mat_path) as f:
            images = h5_dataset(f, "images", self.mat_path)
            depths = h5_dataset(f, "rawDepths" if self.raw else "depths", self.mat_path)
            if images.ndim != 4 or images.shape[1] != 3 or depths.ndim != 3:
                raise ValueError(
                    f"{self.mat_path}: expected images (N, 3, W, H) and depths (N, W, H), "
                    f"got {images.shape} and {depths.shape}"
                )
            if images.shape[0] != depths.shape[0] or images.shape[2:] != depths.shape[1:]:
                raise ValueError(
                    f"{self.mat_path}: images {images.shape} and {depths.name} {depths.shape} do not match "
                    "(expected (N, 3, W, H) and (N, W, H))"
                )
            n = images.shape[0]
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"{splits_path}: {key} has indices outside 1..{n}")
        return index.tolist()

    def _files(self, idx: int) -> list[Path]:
        return [self.mat_path]

    def _file(self) -> h5py.File:
        if self._h5 is None:  # opened lazily, once per DataLoader worker
            self._h5 = open_h5(self.mat_path)
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None  # h5py handles cannot be pickled into workers
        return state

    def _load(self, idx: int) -> dict[str, Any]:
        f = self._file()
        key = "rawDepths" if self.raw else "depths"
        try:
            rgb = np.asarray(h5_dataset(f, "images", self.mat_path)[idx])
            depth = np.asarray(h5_dataset(f, key, self.mat_path)[idx], dtype=np.float32).T  # (W, H) -> (H, W)
        except (OSError, RuntimeError) as err:  # HDF5 read errors inside a damaged file
            raise ValueError(f"cannot read sample {idx} of HDF5 file {self.mat_path}: {err}") from err
        image = rgb_from_array(rgb.transpose(2, 1, 0), f"{self.mat_path}:images[{idx}]")
        h, w = depth.shape
        b = self.border_crop
        K = intrinsics_matrix(NYU_FX, NYU_FY, NYU_CX, NYU_CY)
        extra_valid = border_mask(h, w, b) if b and self.border_mode == "mask" else None
        if b and self.border_mode == "crop":
            if 2 * b >= min(h, w):
                raise ValueError(
                    f"nyu: border_crop={b} leaves nothing of the {h}x{w} images of {self.mat_path}"
                )
            image, depth = image[:, b:-b, b:-b], depth[b:-b, b:-b]
            K = intrinsics_matrix(
                NYU_FX, NYU_FY, NYU_CX - b, NYU_CY - b
            )  # the principal point moves with the crop
        return make_sample(
            image,
            depth,
            "absolute",
            f"nyu/{idx + 1:04d}",
            image_path=f"{self.mat_path}:images",
            depth_path=f"{self.mat_path}:{key}",
            extra_valid=extra_valid,
            intrinsics=K,
            max_depth=self.max_depth,
        )


# --------------------------------------------------------------------------------------------------- KITTI


def parse_kitti_calib(path: Path) -> dict[str, np.ndarray]:
    """`key: v1 v2 ...` lines of a KITTI calibration file (e.g. calib_cam_to_cam.txt) as float arrays."""
    out: dict[str, np.ndarray] = {}
    for line in require_file(path).read_text().splitlines():
        key, sep, values = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. calib_time: 09-Jan-2012 13:57:47
    return out


def read_kitti_depth(path: Path) -> np.ndarray:
    """A KITTI depth PNG as (H, W) float32 metres (uint16 / 256, 0 = no ground truth). Like the KITTI depth
    devkit's `depth_read` ("make sure we have a proper 16bit depth map here.. not 8bit!", asserting a value
    above 255), an 8-bit PNG or a 16-bit one whose values all fit in 8 bits raises ValueError naming it."""
    raw = load_png_uint(path, bits=16)
    if raw.max(initial=0) <= 255:
        raise ValueError(
            f"{path}: not a proper 16-bit KITTI depth map: its largest value is {raw.max(initial=0)} <= 255 "
            "(the KITTI devkit refuses these as 8-bit data)"
        )
    return raw.astype(np.float32) / 256.0


@READERS.register("kitti")
class KITTIReader(DepthReader):
    """KITTI depth-prediction benchmark: annotated depth maps (uint16 PNG, metres = value / 256, 0 = no
    ground truth; KITTI depth devkit readme) on KITTI raw RGB, intrinsics K = P_rect_0X[:, :3] of the drive
    date's calib_cam_to_cam.txt (02 = left colour camera, 03 = right).

    A split file lists `<rgb path relative to raw/> <depth path relative to data_depth_annotated/{train,val}/>
    [focal]` per line, the format of the Eigen split files of BTS (`eigen_train_files_with_gt.txt`);
    lines whose depth is `None` are skipped.
    """

    NAME = "kitti"
    MAX_DEPTH = 80.0
    LAYOUT = (
        "<root>/\n"
        "  raw/<date>/calib_cam_to_cam.txt\n"
        "  raw/<date>/<drive>/image_02/data/<frame>.png\n"
        "  data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_02/<frame>.png\n"
        "  splits/{train,val,test}.txt   lines: <date>/<drive>/image_02/data/<frame>.png "
        "<drive>/proj_depth/groundtruth/image_02/<frame>.png [focal]"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        split_file: str | Path | None = None,
        max_depth: float | None = _UNSET,
    ):
        self.split_file = split_file
        self._calib: dict[str, dict[str, np.ndarray]] = {}
        super().__init__(root, split, max_depth)

    def _index(self) -> list[tuple[Path, Path, str]]:
        split_file = Path(self.split_file) if self.split_file else self.root / "splits" / f"{self.split}.txt"
        require_file(split_file, self.LAYOUT)
        ann = self.root / "data_depth_annotated"
        items, missing = [], []
        for lineno, line in read_numbered_lines(split_file):
            parts = line.split()
            if len(parts) < 2:
                raise ValueError(
                    f"{split_file}:{lineno}: expected '<rgb> <depth> [focal]' per line, got {line!r}"
                )
            rgb_rel, depth_rel = parts[0], parts[1]
            if depth_rel == "None":
                continue
            candidates = [ann / "train" / depth_rel, ann / "val" / depth_rel, ann / depth_rel]
            depth_path = next((p for p in candidates if p.is_file()), None)
            if depth_path is None:
                missing.append((lineno, depth_rel, candidates))
                continue
            cam = re.search(r"image_0([0-3])", rgb_rel)
            if cam is None:
                raise ValueError(
                    f"{split_file}:{lineno}: cannot tell the camera (image_02/image_03) from {rgb_rel!r}"
                )
            items.append((self.root / "raw" / rgb_rel, depth_path, cam.group(1)))
        if missing:
            lineno, depth_rel, candidates = missing[0]
            raise FileNotFoundError(
                f"kitti: {len(missing)} of {len(items) + len(missing)} depth maps listed in {split_file} are "
                f"missing, the first: {depth_rel} ({split_file}:{lineno}); looked in "
                + ", ".join(str(p) for p in candidates)
            )
        return items

    def _files(self, item: tuple[Path, Path, str]) -> list[Path]:
        rgb_path, depth_path, _ = item
        date = rgb_path.relative_to(self.root / "raw").parts[0]
        return [rgb_path, depth_path, self.root / "raw" / date / "calib_cam_to_cam.txt"]

    def _intrinsics(self, rgb_path: Path, cam: str) -> torch.Tensor:
        rel = rgb_path.relative_to(self.root / "raw")
        date = rel.parts[0]
        if date not in self._calib:
            self._calib[date] = parse_kitti_calib(self.root / "raw" / date / "calib_cam_to_cam.txt")
        key = f"P_rect_0{cam}"
        calib = self._calib[date]
        if key not in calib or calib[key].size != 12:
            raise ValueError(f"{self.root / 'raw' / date / 'calib_cam_to_cam.txt'}: no 3x4 {key}")
        return torch.from_numpy(calib[key].reshape(3, 4)[:, :3].copy()).float()

    def _load(self, item: tuple[Path, Path, str]) -> dict[str, Any]:
        rgb_path, depth_path, cam = item
        image = load_rgb(rgb_path)
        depth = read_kitti_depth(depth_path)
        rel = rgb_path.relative_to(self.root / "raw")
        return make_sample(
            image,
            depth,
            "absolute",
            f"kitti/{rel.as_posix()}",
            image_path=rgb_path,
            depth_path=depth_path,
            intrinsics=self._intrinsics(rgb_path, cam),
            max_depth=self.max_depth,
        )


# ----------------------------------------------------------------------------------------------- TUM RGB-D

# Colour-camera intrinsics per Kinect, from the TUM RGB-D "file formats" page
# (cvg.cit.tum.de/data/datasets/rgbd-dataset/file_formats, "Intrinsic Camera Calibration of the Kinect").
TUM_INTRINSICS = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
}
TUM_DEPTH_FACTOR = 5000.0  # "depth images are scaled by a factor of 5000" (same page)


def read_tum_list(path: Path) -> list[tuple[float, str]]:
    """`timestamp filename` lines of a TUM rgb.txt / depth.txt (lines starting with # are comments).
    A line without two fields or with a timestamp that is not a finite number raises ValueError naming
    `file:line`."""
    out = []
    for lineno, line in read_numbered_lines(path):
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{lineno}: expected 'timestamp filename', got {line!r}")
        try:
            t = float(parts[0])
        except ValueError:
            t = math.nan
        if not math.isfinite(t):
            raise ValueError(f"{path}:{lineno}: timestamp {parts[0]!r} is not a number (line {line!r})")
        out.append((t, parts[1]))
    return out


def associate_timestamps(a: np.ndarray, b: np.ndarray, max_difference: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of two timestamp lists by increasing |a - b| <= max_difference
    (the rule of TUM's associate.py). Returns (index in a, index in b) pairs sorted by index in a."""
    pairs = [
        (abs(ta - tb), i, j)
        for i, ta in enumerate(a)
        for j, tb in enumerate(b)
        if abs(ta - tb) <= max_difference
    ]
    pairs.sort()
    used_a, used_b, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j))
    return sorted(out)


def tum_camera(sequence_name: str) -> str:
    """'fr1' / 'fr2' / 'fr3' from a sequence name such as rgbd_dataset_freiburg2_desk; 'fr1' when absent."""
    m = re.search(r"(?:freiburg|fr)([123])", sequence_name)
    return f"fr{m.group(1)}" if m else "fr1"


@READERS.register("tum")
class TUMReader(DepthReader):
    """TUM RGB-D: rgb.txt / depth.txt associated by nearest timestamp (<= `max_time_difference` s), depth PNG
    uint16 / 5000 = metres (0 = missing), intrinsics by Kinect (fr1/fr2/fr3 from the sequence name, fr1 when
    the name does not say). An evaluation-only dataset here: split "test" reads every sequence under root."""

    NAME = "tum"
    SPLITS = ("test",)
    # GP2 eval cap: saic-vul/geometry-preserving-de datasets/validation_datasets.py:149 (TUMDataset)
    MAX_DEPTH = 10.0
    LAYOUT = (
        "<root>/  (one sequence, or a folder of sequences)\n"
        "  rgbd_dataset_freiburg1_desk/\n"
        "    rgb.txt   depth.txt   rgb/<timestamp>.png   depth/<timestamp>.png"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        max_time_difference: float = 0.02,
        max_depth: float | None = _UNSET,
    ):
        self.max_time_difference = max_time_difference
        super().__init__(root, split, max_depth)

    def _index(self) -> list[tuple[Path, Path, str]]:
        if (self.root / "rgb.txt").is_file():
            sequences = [self.root]
        else:
            sequences = sorted(p for p in self.root.iterdir() if (p / "rgb.txt").is_file())
        items = []
        for seq in sequences:
            rgb = read_tum_list(seq / "rgb.txt")
            depth = read_tum_list(require_file(seq / "depth.txt", self.LAYOUT))
            pairs = associate_timestamps(
                np.array([t for t, _ in rgb]), np.array([t for t, _ in depth]), self.max_time_difference
            )
            cam = tum_camera(seq.name)
            items += [(seq / rgb[i][1], seq / depth[j][1], cam) for i, j in pairs]
        return items

    def _files(self, item: tuple[Path, Path, str]) -> list[Path]:
        return [item[0], item[1]]

    def _load(self, item: tuple[Path, Path, str]) -> dict[str, Any]:
        rgb_path, depth_path, cam = item
        image = load_rgb(rgb_path)
        depth = load_png_uint(depth_path, bits=16).astype(np.float32) / TUM_DEPTH_FACTOR
        return make_sample(
            image,
            depth,
            "absolute",
            f"tum/{rgb_path.parent.parent.name}/{rgb_path.stem}",
            image_path=rgb_path,
            depth_path=depth_path,
            intrinsics=intrinsics_matrix(*TUM_INTRINSICS[cam]),
            max_depth=self.max_depth,
        )


# ----------------------------------------------------------------------------------------------- MPI Sintel

SINTEL_TAG = (
    202021.25  # sanity-check float at the start of .dpt / .cam files (Sintel depth SDK, sintel_io.py)
)


class SintelCamera(NamedTuple):
    K: np.ndarray  # (3, 3) intrinsics
    extrinsic: np.ndarray  # (3, 4) world-to-camera [R | t]


def read_sintel_dpt(path: str | Path) -> np.ndarray:
    """Sintel .dpt: float32 tag, int32 width, int32 height, then float32 depth row-major -> (H, W)."""
    path = require_file(path)
    raw = Path(path).read_bytes()
    if len(raw) < 12:
        raise ValueError(f"{path}: truncated .dpt header ({len(raw)} bytes)")
    tag = np.frombuffer(raw, "<f4", 1, 0)[0]
    width, height = (int(v) for v in np.frombuffer(raw, "<i4", 2, 4))
    if tag != np.float32(SINTEL_TAG):
        raise ValueError(f"{path}: wrong .dpt tag {tag} (expected {SINTEL_TAG}); not a Sintel depth file?")
    if width <= 0 or height <= 0 or len(raw) != 12 + 4 * width * height:
        raise ValueError(f"{path}: header says {width}x{height} but the file has {len(raw) - 12} data bytes")
    return np.frombuffer(raw, "<f4", width * height, 12).reshape(height, width).copy()


def read_sintel_cam(path: str | Path) -> SintelCamera:
    """Sintel .cam: float32 tag, (3, 3) float64 intrinsics, (3, 4) float64 extrinsics, row-major."""
    path = require_file(path)
    raw = Path(path).read_bytes()
    if len(raw) != 4 + 8 * 21:
        raise ValueError(f"{path}: expected {4 + 8 * 21} bytes in a Sintel .cam file, got {len(raw)}")
    if np.frombuffer(raw, "<f4", 1, 0)[0] != np.float32(SINTEL_TAG):
        raise ValueError(f"{path}: wrong .cam tag (expected {SINTEL_TAG})")
    k = np.frombuffer(raw, "<f8", 9, 4).reshape(3, 3).copy()
    ext = np.frombuffer(raw, "<f8", 12, 4 + 72).reshape(3, 4).copy()
    return SintelCamera(k, ext)


@READERS.register("sintel")
class SintelReader(DepthReader):
    """MPI Sintel depth (training set: the only one with depth). Absolute depth in the scene's units (metres
    by convention), intrinsics from camdata_left .cam files. Evaluation-only here: split "test"."""

    NAME = "sintel"
    SPLITS = ("test",)
    # GP2 eval cap: saic-vul/geometry-preserving-de datasets/validation_datasets.py:108 (SintelDataset)
    MAX_DEPTH = 72.0
    LAYOUT = (
        "<root>/training/   (or <root>/ itself, GP2's evaluation folder)\n"
        "  final/<scene>/frame_0001.png      (or clean/)\n"
        "  depth/<scene>/frame_0001.dpt\n"
        "  camdata_left/<scene>/frame_0001.cam   (optional: intrinsics)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        render_pass: str = "final",
        max_depth: float | None = _UNSET,
    ):
        if render_pass not in ("final", "clean"):
            raise ValueError(f"sintel: render_pass must be 'final' or 'clean', got {render_pass!r}")
        self.render_pass = render_pass
        super().__init__(root, split, max_depth)

    def _index(self) -> list[tuple[Path, Path, Path]]:
        # the MPI-Sintel download has training/{final,depth,camdata_left}; GP2's evaluation folder holds
        # final/ and depth/ directly (saic-vul/geometry-preserving-de README, "Evaluation"): both are read
        train = self.root / "training" if (self.root / "training").is_dir() else self.root
        image_root = train / self.render_pass
        if not image_root.is_dir() or not (train / "depth").is_dir():
            raise FileNotFoundError(
                f"sintel: {image_root} or {train / 'depth'} not found\nexpected layout:\n{self.LAYOUT}"
            )
        items = []
        for img in sorted(image_root.glob("*/frame_*.png")):
            scene, stem = img.parent.name, img.stem
            items.append(
                (img, train / "depth" / scene / f"{stem}.dpt", train / "camdata_left" / scene / f"{stem}.cam")
            )
        return items

    def _files(self, item: tuple[Path, Path, Path]) -> list[Path]:
        return [item[0], item[1]]  # the .cam file is optional

    def _load(self, item: tuple[Path, Path, Path]) -> dict[str, Any]:
        img_path, dpt_path, cam_path = item
        image = load_rgb(img_path)
        depth = read_sintel_dpt(dpt_path)
        k = torch.from_numpy(read_sintel_cam(cam_path).K).float() if cam_path.is_file() else None
        return make_sample(
            image,
            depth,
            "absolute",
            f"sintel/{img_path.parent.name}/{img_path.stem}",
            image_path=img_path,
            depth_path=dpt_path,
            intrinsics=k,
            max_depth=self.max_depth,
        )


# ---------------------------------------------------------------------------------------------------- ETH3D


def read_colmap_cameras(path: Path) -> dict[int, tuple[str, int, int, list[float]]]:
    """COLMAP cameras.txt (`CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`) -> {id: (model, W, H, params)}.
    A line that does not parse raises ValueError naming `file:line`."""
    cams = {}
    for lineno, line in read_numbered_lines(path):
        parts = line.split()
        try:
            cams[int(parts[0])] = (parts[1], int(parts[2]), int(parts[3]), [float(v) for v in parts[4:]])
        except (ValueError, IndexError):
            raise ValueError(
                f"{path}:{lineno}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got {line!r}"
            ) from None
    return cams


def read_colmap_image_cameras(path: Path) -> dict[str, tuple[int, int]]:
    """COLMAP images.txt -> {image basename: (CAMERA_ID, 1-based line number)}. Each image has two lines (the
    second, its 2D points, may be empty): `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`. A first line whose
    CAMERA_ID is not an integer raises ValueError naming `file:line`."""
    lines = [
        (i, ln)
        for i, ln in enumerate(require_file(path).read_text().splitlines(), 1)
        if not ln.startswith("#")
    ]
    out = {}
    for lineno, line in lines[0::2]:
        parts = line.split()
        if len(parts) >= 10:
            try:
                out[Path(parts[9]).name] = (int(parts[8]), lineno)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: CAMERA_ID {parts[8]!r} is not an integer") from None
    return out


def colmap_image_camera(cache: dict, calib_dir: Path, name: str) -> tuple[str, int, int, list[float]] | None:
    """The COLMAP camera (MODEL, WIDTH, HEIGHT, PARAMS) of image `name` from calib_dir's cameras.txt and
    images.txt, both read once per folder into `cache`; None when calib_dir has no cameras.txt or images.txt
    does not list the image. A CAMERA_ID that cameras.txt does not define raises ValueError naming
    `images.txt:line`."""
    if not (calib_dir / "cameras.txt").is_file():
        return None
    if calib_dir not in cache:
        cache[calib_dir] = (
            read_colmap_cameras(calib_dir / "cameras.txt"),
            read_colmap_image_cameras(calib_dir / "images.txt"),
        )
    cams, image_cams = cache[calib_dir]
    if name not in image_cams:
        return None
    cam_id, lineno = image_cams[name]
    if cam_id not in cams:
        raise ValueError(
            f"{calib_dir / 'images.txt'}:{lineno}: image {name} uses CAMERA_ID {cam_id}, which "
            f"{calib_dir / 'cameras.txt'} does not define (it defines {sorted(cams)})"
        )
    return cams[cam_id]


def colmap_pinhole(model: str, params: list[float]) -> torch.Tensor | None:
    """0-based-pixel K from a COLMAP PINHOLE / SIMPLE_PINHOLE camera; None for distorted models.

    COLMAP puts the centre of the top-left pixel at (0.5, 0.5) (COLMAP docs, "Cameras"), so cx, cy are
    shifted by -0.5 to the suite's convention where that pixel centre is (0, 0)."""
    if model == "PINHOLE":
        fx, fy, cx, cy = params[:4]
    elif model == "SIMPLE_PINHOLE":
        fx, cx, cy = params[:3]
        fy = fx
    else:
        return None
    return intrinsics_matrix(fx, fy, cx - 0.5, cy - 0.5)


@READERS.register("eth3d")
class ETH3DReader(DepthReader):
    """ETH3D high-res multi-view (DSLR) ground-truth depth: raw little-endian float32, width*height values
    row-major, no header (ETH3D documentation, "Training data"); inf / 0 = no ground truth.

    The released depth maps are on the pixel grid of the original (distorted) `images/dslr_images/` JPGs
    (6048x4032); `undistorted=True` pairs `images/dslr_images_undistorted/` instead, for depth maps that were
    rendered for the undistorted images. Intrinsics are given only for PINHOLE cameras
    (`dslr_calibration_undistorted/`); the distorted THIN_PRISM_FISHEYE camera has none (`intrinsics` absent).
    Evaluation-only here: split "test" reads every scene under root.
    """

    NAME = "eth3d"
    SPLITS = ("test",)
    # GP2 eval cap: saic-vul/geometry-preserving-de datasets/validation_datasets.py:201 (ETH3DDataset)
    MAX_DEPTH = 72.0
    DEPTH_DIRS = ("ground_truth_depth", "ground_truth_masked_depth")
    LAYOUT = (
        "<root>/<scene>/\n"
        "  images/dslr_images/DSC_0286.JPG                 (or images/dslr_images_undistorted/)\n"
        "  ground_truth_depth/dslr_images/DSC_0286.JPG     (raw float32, no header)\n"
        "      (or ground_truth_masked_depth/dslr_images/)\n"
        "  dslr_calibration_jpg/{cameras,images}.txt       (or dslr_calibration_undistorted/)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        undistorted: bool = False,
        max_depth: float | None = _UNSET,
    ):
        self.undistorted = undistorted
        self._calib: dict[Path, tuple[dict, dict]] = {}
        super().__init__(root, split, max_depth)

    def _index(self) -> list[tuple[Path, Path, Path]]:
        image_sub = "dslr_images_undistorted" if self.undistorted else "dslr_images"
        calib_sub = "dslr_calibration_undistorted" if self.undistorted else "dslr_calibration_jpg"
        items = []
        for scene in sorted(p for p in self.root.iterdir() if p.is_dir()):
            depth_dir = next(
                (scene / d / "dslr_images" for d in self.DEPTH_DIRS if (scene / d).is_dir()), None
            )
            if depth_dir is None:
                continue
            for dpath in sorted(depth_dir.iterdir()):
                items.append((scene / "images" / image_sub / dpath.name, dpath, scene / calib_sub))
        return items

    def _files(self, item: tuple[Path, Path, Path]) -> list[Path]:
        return [item[0], item[1]]  # the calibration is optional

    def _intrinsics(self, calib_dir: Path, name: str) -> torch.Tensor | None:
        camera = colmap_image_camera(self._calib, calib_dir, name)
        return None if camera is None else colmap_pinhole(camera[0], camera[3])

    def _load(self, item: tuple[Path, Path, Path]) -> dict[str, Any]:
        img_path, depth_path, calib_dir = item
        image = load_rgb(img_path)
        h, w = image.shape[-2:]
        raw = require_file(depth_path).read_bytes()
        if len(raw) != 4 * h * w:
            raise ValueError(
                f"image/depth size mismatch: image {img_path} is {(h, w)} (H, W), which needs "
                f"{4 * h * w} bytes of float32 depth, but depth {depth_path} has {len(raw)} bytes"
            )
        depth = np.frombuffer(raw, "<f4").reshape(h, w)
        return make_sample(
            image,
            depth,
            "absolute",
            f"eth3d/{img_path.parent.parent.parent.name}/{img_path.stem}",
            image_path=img_path,
            depth_path=depth_path,
            intrinsics=self._intrinsics(calib_dir, img_path.name),
            max_depth=self.max_depth,
        )


# ---------------------------------------------------------------------------------------------------- DIML


@READERS.register("diml")
class DIMLReader(DepthReader):
    """DIML/CVL RGB-D, the labelled sample set (dimlrgbd.github.io) with its train/test split.

    Indoor (Kinect v2): `color/<n>_c.png` with `depth_filled/<n>_depth_filled.png`, uint16 millimetres.
    Outdoor (ZED stereo, depth converted from disparity with the calibration): `outleft/<n>.png` with
    `depthmap/<n>.png`, read as uint16 millimetres like indoor. 0 = invalid.
    """

    NAME = "diml"
    SPLITS = ("train", "test")
    LAYOUT = (
        "<root>/{train,test}/{HR,LR}/<scene>/\n"
        "  indoor:  color/<n>_c.png     depth_filled/<n>_depth_filled.png   (uint16 mm)\n"
        "  outdoor: outleft/<n>.png     depthmap/<n>.png                    (uint16 mm)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        scene_type: str = "indoor",
        resolution: str = "HR",
        max_depth: float | None = _UNSET,
    ):
        if scene_type not in ("indoor", "outdoor"):
            raise ValueError(f"diml: scene_type must be 'indoor' or 'outdoor', got {scene_type!r}")
        if resolution not in ("HR", "LR"):
            raise ValueError(f"diml: resolution must be 'HR' or 'LR', got {resolution!r}")
        self.scene_type, self.resolution = scene_type, resolution
        super().__init__(root, split, max_depth)

    def _index(self) -> list[tuple[Path, Path]]:
        base = self.root / self.split / self.resolution
        if not base.is_dir():
            raise FileNotFoundError(f"diml: {base} not found\nexpected layout:\n{self.LAYOUT}")
        items = []
        if self.scene_type == "indoor":
            for img in sorted(base.glob("*/color/*_c.png")):
                stem = img.stem[: -len("_c")]
                items.append((img, img.parent.parent / "depth_filled" / f"{stem}_depth_filled.png"))
        else:
            for img in sorted(base.glob("*/outleft/*.png")):
                items.append((img, img.parent.parent / "depthmap" / img.name))
        return items

    def _files(self, item: tuple[Path, Path]) -> list[Path]:
        return list(item)

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        img_path, depth_path = item
        image = load_rgb(img_path)
        depth = load_png_uint(depth_path, bits=16).astype(np.float32) / 1000.0
        return make_sample(
            image,
            depth,
            "absolute",
            f"diml/{img_path.parent.parent.name}/{img_path.stem}",
            image_path=img_path,
            depth_path=depth_path,
            max_depth=self.max_depth,
        )


# Registers DIW, MegaDepth, ReDWeb and the folder format (kept last: it imports from this package).
from datamodules.depth import readers_relative  # noqa: E402,F401
