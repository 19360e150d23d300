"""Readers for the evaluation layouts that GP2 reports on, registered in `datamodules.READERS`.

- `tum_hdf5`: TUM RGB-D as the MannequinChallenge test set (Li et al. 2019, 1815 HDF5 files);
- `eth3d_gp2`: ETH3D as GP2 released it re-rendered (`eth3d.zip`: undistorted DSLR images, dense depth PNGs);
- `kitti_selection`: KITTI's official selected validation set (`depth_selection/val_selection_cropped/`).

Samples follow `datamodules.depth.io.make_sample` (schema "depth"). Unlike the readers of `readers.py`, whose
`valid` marks every stored value and leaves the depth cap to the metrics (through the sample's `max_depth`),
these evaluation-only readers apply GP2's whole validity rule: a pixel is valid iff its depth is > 1e-8 and
strictly below the cap (saic-vul/geometry-preserving-de datasets/validation_datasets.py:49-54,
`BaseDataset.get_mask`: `depth > 1e-8`, then `mask[depth >= cap_max] = 0`). `max_depth=None` removes the cap.
Layouts are documented in docs/depth_datasets.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from datamodules.depth.io import check_same_size, make_sample
from datamodules.depth.readers import colmap_image_camera, colmap_pinhole, read_kitti_depth
from datamodules.depth.readers_base import _UNSET, DepthReader
from datamodules.files import load_png_uint, load_rgb, open_h5, require_file
from datamodules.registry import READERS

MIN_DEPTH = 1e-8  # GP2 datasets/validation_datasets.py:50 (`mask = depth > 1e-8`)


def cap_mask(depth: np.ndarray, max_depth: float | None) -> torch.Tensor:
    """GP2's validity rule as a (1, H, W) bool: depth > 1e-8 and, when a cap is given, depth < max_depth.

    Args:
        depth: (H, W) depth in metres (NaN / inf compare False, so they are invalid too).
        max_depth: the cap in metres, or None for no cap.
    """
    if depth.ndim != 2:
        raise ValueError(f"depth: expected shape (H, W), got {depth.shape}")
    d = torch.from_numpy(np.asarray(depth, dtype=np.float32))
    valid = d > MIN_DEPTH
    if max_depth is not None:
        valid &= d < float(max_depth)
    return valid[None]


# ---------------------------------------------------------------------------------------- TUM (MC hdf5)

TUM_H5_IMAGE, TUM_H5_DEPTH, TUM_H5_K = "/gt/img_1", "/gt/gt_depth", "/gt/intrinsic"


def _h5_array(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """Read dataset `key` of an open HDF5 file; ValueError naming the file, the key and the datasets present
    when it is missing, or when HDF5 cannot read it (a damaged file)."""
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        present: list[str] = []
        f.visititems(lambda name, o: present.append("/" + name) if isinstance(o, h5py.Dataset) else None)
        raise ValueError(f"{path}: has no dataset {key!r} (datasets present: {sorted(present)})")
    try:
        return np.asarray(obj[()])
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"cannot read dataset {key!r} of HDF5 file {path}: {err}") from err


def tum_h5_image(arr: np.ndarray, what: str) -> torch.Tensor:
    """`/gt/img_1` (H, W, 3) -> (3, H, W) float32 in [0, 1].

    MannequinChallenge stores it as float in [0, 1] (google/mannequinchallenge loaders/image_folder.py:117-118
    and :227 feed `np.float32(img)` to the network as is, channels last); GP2 divides by 255 when the maximum
    is above 1 (geometry-preserving-de datasets/validation_datasets.py:40-43, `normalize_img`). So: uint8 is
    divided by 255; float in [0, 1] is kept; float with a maximum in (1, 255] is divided by 255; anything else
    (negative, NaN, above 255, other dtypes, other shapes) raises ValueError naming `what`.
    """
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        img = arr.astype(np.float32)
        if not np.isfinite(img).all() or img.min(initial=0.0) < 0.0 or img.max(initial=0.0) > 255.0:
            raise ValueError(
                f"{what}: expected image values in [0, 1] (or [0, 255]), got range "
                f"[{np.nanmin(img):g}, {np.nanmax(img):g}] with {int((~np.isfinite(img)).sum())} non-finite"
            )
        if img.max(initial=0.0) > 1.0:
            img = img / 255.0
    else:
        raise ValueError(f"{what}: expected a uint8 or float image, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).clamp_(0.0, 1.0).contiguous()


@READERS.register("tum_hdf5")
class TUMHDF5Reader(DepthReader):
    """TUM RGB-D as the MannequinChallenge test set that GP2 reports on (Li et al., "Learning the Depths of
    Moving People by Watching Frozen People"; 1815 files of 384x512, `tum_hdf5.tgz`).

    Each `<name>.jpg.h5` holds `/gt/img_1` (H, W, 3) (float in [0, 1]; uint8 also accepted, see
    `tum_h5_image`), `/gt/gt_depth` (H, W) float metres (<= 1e-8 = no ground truth), and optionally
    `/gt/intrinsic` (3, 3) (0-based pixels: MannequinChallenge unprojects a 0-based pixel grid with it,
    loaders/image_folder.py:106-110,149-158). Files are read in sorted name order. Split: `test`.
    """

    NAME = "tum_hdf5"
    SPLITS = ("test",)
    # GP2 eval cap: saic-vul/geometry-preserving-de datasets/validation_datasets.py:149 (TUMDataset)
    MAX_DEPTH = 10.0
    LAYOUT = (
        "<root>/                     (or <root>/tum_hdf5/, as tum_hdf5.tgz unpacks)\n"
        "  <name>.jpg.h5             /gt/img_1 (H, W, 3), /gt/gt_depth (H, W) metres, [/gt/intrinsic (3, 3)]"
    )

    def __init__(self, root: str | Path, split: str = "test", max_depth: float | None = _UNSET):
        super().__init__(root, split, max_depth)

    def _index(self) -> list[Path]:
        # GP2 globs `<TUM_PATH>/*.h5` (validation_datasets.py:150); the MC archive unpacks to tum_hdf5/
        folder = self.root
        if not any(folder.glob("*.h5")) and (folder / "tum_hdf5").is_dir():
            folder = folder / "tum_hdf5"
        return sorted(p for p in folder.glob("*.h5") if p.is_file())

    def _files(self, path: Path) -> list[Path]:
        return [path]

    def _load(self, path: Path) -> dict[str, Any]:
        with open_h5(path) as f:
            rgb = _h5_array(f, TUM_H5_IMAGE, path)
            depth = _h5_array(f, TUM_H5_DEPTH, path)
            k = _h5_array(f, TUM_H5_K, path) if isinstance(f.get(TUM_H5_K), h5py.Dataset) else None
        image = tum_h5_image(rgb, f"{path}:{TUM_H5_IMAGE}")
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise ValueError(
                f"{path}:{TUM_H5_DEPTH}: expected an (H, W) depth map, got {depth.shape} {depth.dtype}"
            )
        depth = depth.astype(np.float32)
        check_same_size(image, depth, f"{path}:{TUM_H5_IMAGE}", f"{path}:{TUM_H5_DEPTH}")
        intrinsics = None
        if k is not None:
            if k.shape != (3, 3) or not np.isfinite(k).all():
                raise ValueError(f"{path}:{TUM_H5_K}: expected a finite (3, 3) matrix, got shape {k.shape}")
            intrinsics = torch.from_numpy(k.astype(np.float32))
        return make_sample(
            image,
            depth,
            "absolute",
            f"tum_hdf5/{path.name[: -len('.h5')]}",
            image_path=f"{path}:{TUM_H5_IMAGE}",
            depth_path=f"{path}:{TUM_H5_DEPTH}",
            extra_valid=cap_mask(depth, self.max_depth),
            intrinsics=intrinsics,
            max_depth=self.max_depth,
        )


# ------------------------------------------------------------------------------------------ ETH3D (GP2)

ETH3D_IMAGE_SUFFIXES = (".JPG", ".jpg")


class ETH3DItem(NamedTuple):
    image: Path
    depth: Path
    calib: Path  # dslr_calibration_undistorted/ of the scene (optional)


def scaled_colmap_pinhole(
    model: str, cam_size: tuple[int, int], params: list[float], size: tuple[int, int]
) -> torch.Tensor | None:
    """0-based-pixel K of a COLMAP PINHOLE / SIMPLE_PINHOLE camera calibrated at `cam_size` (W, H), for an
    image resized to `size` (W, H); None for distorted models.

    COLMAP's pixel coordinates put pixel edges on integers (top-left centre (0.5, 0.5)), so a resize scales
    them by W'/W, H'/H exactly; `colmap_pinhole` then shifts by -0.5 to the suite's 0-based centres."""
    sx, sy = size[0] / cam_size[0], size[1] / cam_size[1]
    if model == "PINHOLE":
        fx, fy, cx, cy = params[:4]
        return colmap_pinhole(model, [fx * sx, fy * sy, cx * sx, cy * sy])
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = params[:3]
        return colmap_pinhole("PINHOLE", [f * sx, f * sy, cx * sx, cy * sy])
    return None


@READERS.register("eth3d_gp2")
class ETH3DGP2Reader(DepthReader):
    """ETH3D high-res DSLR scenes in the re-rendered layout of GP2's `eth3d.zip` (released with
    saic-vul/geometry-preserving-de v1.0: dense depth rendered from the clean point clouds, "at 4x less
    resolution than the original images", README "Evaluation").

    As GP2's `ETH3DDataset` reads it (datasets/validation_datasets.py:202-214): images
    `<scene>/images_out/dslr_images_undistorted/<name>.JPG`, depth `<scene>/depth/dslr_images_undistorted/
    <name>.png` (the image path with `images_out/` -> `depth/`, `.JPG` -> `.png`), a 16-bit PNG of
    millimetres (metres = value / 1000), 0 = no ground truth. Every image needs its depth PNG and every
    depth PNG its image (FileNotFoundError at index time naming the first orphan).

    GP2 compares at the depth map's resolution (it upsamples the prediction to the depth size,
    metrics/logdisp_metrics.py:37). So when the image is larger than its depth map with the same aspect
    ratio (within 1 %), `resize_image=True` resizes the image to the depth size (antialiased bilinear);
    otherwise, or with `resize_image=False`, a size difference raises naming both files.

    Intrinsics: only when the scene has ETH3D's `dslr_calibration_undistorted/{cameras,images}.txt` (the
    zip is not known to include it; GP2 reads none), scaled from the calibrated size to the sample's.
    Split: `test`.
    """

    NAME = "eth3d_gp2"
    SPLITS = ("test",)
    # GP2 eval cap: saic-vul/geometry-preserving-de datasets/validation_datasets.py:201 (ETH3DDataset)
    MAX_DEPTH = 72.0
    DEPTH_SCALE = 1000.0  # GP2 validation_datasets.py:214: `/ 1000.0` (millimetres)
    LAYOUT = (
        "<root>/<scene>/               (e.g. courtyard/, delivery_area/, ...)\n"
        "  images_out/dslr_images_undistorted/DSC_0286.JPG\n"
        "  depth/dslr_images_undistorted/DSC_0286.png      (16-bit PNG, millimetres, 0 = invalid)\n"
        "  [dslr_calibration_undistorted/{cameras,images}.txt]   (optional, for intrinsics)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        resize_image: bool = True,
        max_depth: float | None = _UNSET,
    ):
        self.resize_image = resize_image
        self._calib: dict[Path, tuple[dict, dict]] = {}
        super().__init__(root, split, max_depth)

    def _index(self) -> list[ETH3DItem]:
        items, orphans = [], []
        for scene in sorted(p for p in self.root.iterdir() if p.is_dir()):
            image_dir = scene / "images_out" / "dslr_images_undistorted"
            depth_dir = scene / "depth" / "dslr_images_undistorted"
            images = (
                {p.stem: p for p in image_dir.iterdir() if p.suffix in ETH3D_IMAGE_SUFFIXES}
                if image_dir.is_dir()
                else {}
            )
            depths = {p.stem: p for p in depth_dir.glob("*.png")} if depth_dir.is_dir() else {}
            for stem in sorted(images.keys() - depths.keys()):
                orphans.append((images[stem], depth_dir / f"{stem}.png"))
            for stem in sorted(depths.keys() - images.keys()):
                orphans.append((depths[stem], image_dir / f"{stem}.JPG"))
            for stem in sorted(images.keys() & depths.keys()):
                items.append(ETH3DItem(images[stem], depths[stem], scene / "dslr_calibration_undistorted"))
        if orphans:
            have, lacks = orphans[0]
            raise FileNotFoundError(
                f"eth3d_gp2: {len(orphans)} image / depth files under {self.root} have no partner, the first: "
                f"{have} (expected {lacks})\nexpected layout:\n{self.LAYOUT}"
            )
        return items

    def _files(self, item: ETH3DItem) -> list[Path]:
        return [item.image, item.depth]  # the calibration is optional

    def _intrinsics(self, calib_dir: Path, name: str, size: tuple[int, int]) -> torch.Tensor | None:
        if not (calib_dir / "images.txt").is_file():  # the calibration is optional: both files or none
            return None
        camera = colmap_image_camera(self._calib, calib_dir, name)
        if camera is None:
            return None
        model, w, h, params = camera
        return scaled_colmap_pinhole(model, (w, h), params, size)

    def _load(self, item: ETH3DItem) -> dict[str, Any]:
        image = load_rgb(item.image)
        depth = load_png_uint(item.depth, bits=16).astype(np.float32) / self.DEPTH_SCALE
        (hi, wi), (hd, wd) = image.shape[-2:], depth.shape
        if (hi, wi) != (hd, wd):
            same_aspect = abs((wi / wd) / (hi / hd) - 1.0) <= 0.01
            if not (self.resize_image and same_aspect and hd <= hi and wd <= wi):
                why = "resize_image=False" if not self.resize_image else "not a same-aspect downscale"
                raise ValueError(
                    f"image/depth size mismatch: image {item.image} is {(hi, wi)} (H, W) but depth "
                    f"{item.depth} is {(hd, wd)} (H, W) ({why})"
                )
            image = F.interpolate(
                image[None], size=(hd, wd), mode="bilinear", align_corners=False, antialias=True
            )[0].clamp_(0.0, 1.0)
        scene = item.image.parents[2].name
        return make_sample(
            image,
            depth,
            "absolute",
            f"eth3d_gp2/{scene}/{item.image.stem}",
            image_path=item.image,
            depth_path=item.depth,
            extra_valid=cap_mask(depth, self.max_depth),
            intrinsics=self._intrinsics(item.calib, item.image.name, (wd, hd)),
            max_depth=self.max_depth,
        )


# ------------------------------------------------------------------------------- KITTI (val selection)

# `<drive>_sync_groundtruth_depth_<frame>_image_0<cam>.png`; the image and the velodyne scan swap the
# middle word (`image`, `velodyne_raw`), the intrinsics are the image's stem + .txt (KITTI depth devkit
# readme, "depth_selection"; e.g. 2011_09_26_drive_0002_sync_groundtruth_depth_0000000005_image_02.png).
KITTI_SELECTION_GT = re.compile(
    r"^(?P<drive>.+_sync)_groundtruth_depth_(?P<frame>\d+)_(?P<cam>image_0[0-3])$"
)


class KITTISelectionItem(NamedTuple):
    gt: Path
    image: Path
    intrinsics: Path
    velodyne: Path
    name: str


def read_kitti_selection_intrinsics(path: Path) -> torch.Tensor:
    """An `intrinsics/<...>.txt` of the KITTI depth selection: 9 whitespace-separated floats, the 3x3 K
    row-major (fx = value 0, cx = 2, fy = 4, cy = 5), already shifted for the crop. -> (3, 3) float32.
    ValueError naming the file when it does not hold exactly 9 finite numbers."""
    text = require_file(path).read_text()
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError:
        raise ValueError(
            f"{path}: expected 9 numbers (3x3 intrinsics, row-major), got {text[:80]!r}"
        ) from None
    if values.size != 9 or not np.isfinite(values).all():
        raise ValueError(f"{path}: expected 9 finite numbers (3x3 intrinsics, row-major), got {values.size}")
    return torch.from_numpy(values.reshape(3, 3)).float()


@READERS.register("kitti_selection")
class KITTISelectionReader(DepthReader):
    """KITTI depth benchmark's selected validation set (`data_depth_selection.zip`: 1000 frames cropped to
    352x1216): RGB, annotated ground truth, the raw velodyne scan projected to the image, and intrinsics.

    Depth PNGs are uint16, metres = value / 256, 0 = no ground truth; 8-bit PNGs are refused like the KITTI
    devkit's `depth_read` (see `read_kitti_depth`). Files are paired by their name stems, from the ground
    truth: a ground-truth file without its image or intrinsics, or an image without ground truth, raises
    FileNotFoundError at index time naming it (never skipped).

    Args:
        velodyne: also read `velodyne_raw/` into the extra key `velodyne` (1, H, W) float32 metres (0 = no
            point); off by default, so that samples keep the shared depth schema. When on, the scan files are
            required.
    """

    NAME = "kitti_selection"
    # "val" is the set's KITTI name; "test" the name of every other evaluation-only reader (the same files)
    SPLITS = ("val", "test")
    MAX_DEPTH = 80.0  # the usual KITTI evaluation cap, as the `kitti` reader
    LAYOUT = (
        "<root>/depth_selection/val_selection_cropped/   (or root = depth_selection/ or val_selection_cropped/)\n"
        "  image/<drive>_sync_image_<frame>_image_02.png\n"
        "  groundtruth_depth/<drive>_sync_groundtruth_depth_<frame>_image_02.png   (uint16, m = v / 256)\n"
        "  velodyne_raw/<drive>_sync_velodyne_raw_<frame>_image_02.png             (uint16, m = v / 256)\n"
        "  intrinsics/<drive>_sync_image_<frame>_image_02.txt                      (9 floats, 3x3 row-major)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        velodyne: bool = False,
        max_depth: float | None = _UNSET,
    ):
        self.velodyne = velodyne
        super().__init__(root, split, max_depth)

    def _base(self) -> Path:
        for base in (
            self.root,
            self.root / "val_selection_cropped",
            self.root / "depth_selection" / "val_selection_cropped",
        ):
            if (base / "groundtruth_depth").is_dir():
                return base
        raise FileNotFoundError(
            f"kitti_selection: no groundtruth_depth/ folder under {self.root} (looked in <root>/, "
            f"<root>/val_selection_cropped/, <root>/depth_selection/val_selection_cropped/)\n"
            f"expected layout:\n{self.LAYOUT}"
        )

    def _index(self) -> list[KITTISelectionItem]:
        base = self._base()
        items, missing = [], []
        gt_stems = set()
        for gt in sorted(p for p in (base / "groundtruth_depth").iterdir() if p.suffix == ".png"):
            m = KITTI_SELECTION_GT.match(gt.stem)
            if m is None:
                raise ValueError(
                    f"{gt}: not a KITTI selection ground-truth name "
                    "(expected <drive>_sync_groundtruth_depth_<frame>_image_0X.png)"
                )
            drive, frame, cam = m.group("drive", "frame", "cam")
            image_stem = f"{drive}_image_{frame}_{cam}"
            gt_stems.add(image_stem)
            item = KITTISelectionItem(
                gt,
                base / "image" / f"{image_stem}.png",
                base / "intrinsics" / f"{image_stem}.txt",
                base / "velodyne_raw" / f"{drive}_velodyne_raw_{frame}_{cam}.png",
                f"kitti_selection/{drive}_{frame}_{cam}",
            )
            needed = [item.image, item.intrinsics] + ([item.velodyne] if self.velodyne else [])
            missing += [(gt, p) for p in needed if not p.is_file()]
            items.append(item)
        image_dir = base / "image"
        if image_dir.is_dir():  # an image without ground truth cannot be scored: refuse it too
            missing += [
                (p, base / "groundtruth_depth")
                for p in sorted(image_dir.glob("*.png"))
                if p.stem not in gt_stems
            ]
        if missing:
            have, lacks = missing[0]
            raise FileNotFoundError(
                f"kitti_selection: {len(missing)} files under {base} lack their partner, the first: {have} "
                f"(expected {lacks})\nexpected layout:\n{self.LAYOUT}"
            )
        return items

    def _files(self, item: KITTISelectionItem) -> list[Path]:
        return [item.image, item.gt, item.intrinsics] + ([item.velodyne] if self.velodyne else [])

    def _load(self, item: KITTISelectionItem) -> dict[str, Any]:
        image = load_rgb(item.image)
        depth = read_kitti_depth(item.gt)
        extra: dict[str, Any] = {}
        if self.velodyne:
            scan = read_kitti_depth(item.velodyne)
            check_same_size(image, scan, item.image, item.velodyne)
            extra["velodyne"] = torch.from_numpy(scan)[None]
        return make_sample(
            image,
            depth,
            "absolute",
            item.name,
            image_path=item.image,
            depth_path=item.gt,
            extra_valid=cap_mask(depth, self.max_depth),
            intrinsics=read_kitti_selection_intrinsics(item.intrinsics),
            max_depth=self.max_depth,
            **extra,
        )
