"""Readers of the SSL point-cloud family's real data, registered in `datamodules.READERS`: ShapeNet with the
DRC renderings and the lineage's splits ("shapenet_drc"), and Pix3D chairs ("pix3d").

Both return the "point_cloud" schema: `image` (3, H, W) float32 in [0, 1]; `mask` (1, H, W) float32 0 / 1;
`pose` (2,) float32 azimuth, elevation in radians (the arguments of `datamodules.pointcloud.camera.world2cam`);
`points` (P, 3) float32 ground truth; `name` str. Images come at their stored size; the datamodule resizes.

ShapeNet (facts from val-iisc/ssl_3d_recon `src/utils/create_tf_records.py`, val-iisc/capnet `src/utils.py`
and shubhtuls/drc `preprocess/synthetic/rendering/renderer/BlenderRenderer.py`):
* a split file `splits/images_list_<synset>_<split>.npy` is an (N, 1) object array of "<model>_<view>"
  strings written by Python 2 (loaded with allow_pickle and encoding="latin1"); one view per model.
* `view.txt` holds one line per rendered view, "azimuth elevation tilt distance" in degrees (DRC writes
  `' '.join([az, el, tilt, dist])`); line `view` (0-based) gives the pose, its first two numbers converted to
  radians as `read_pose` does.
* `render_<view>.png` is the RGB(A) rendering (224 x 224); RGB is used, as `tf.image.decode_png(..., 3)`.
* the mask comes from `depth_<view>.png` as CAPNet derives it: `cv2.imread(depth)[:, :, 0]` (an 8-bit
  read, which keeps the high byte v >> 8 of a 16-bit PNG) then `< 254` is the object (DRC writes background
  depth 10 m as 65535). `mask_source="alpha"` uses the rendering's alpha > 0 instead, and "mask_png" reads
  `mask_<view>.png` (> 127), the files that ssl_3d_recon's record writers read (their generation is not in
  the released code).
* `camera_<view>.mat` (DRC: `K`, `extrinsic`, `quat`, `pos`) is checked for `K` (3, 3) and `extrinsic`
  (4, 4) with `check_camera` (the schema has no slot for it; the pose is view.txt's).
* the ground truth is `ShapeNet_v1/<synset>/<model>/pcl_1024_fps_trimesh.npy`, a (1024, 3) array (read as
  is, the frame in which the lineage's world2cam reproduces the renderings).

Pix3D: `pix3d.json` records with `img`, `mask`, `model` (paths relative to the root), `category`, `bbox`
(x1, y1, x2, y2 pixels), `truncated`, `occluded`, `slightly_occluded`, `cam_position`. The evaluation set is
the untruncated, unoccluded chairs (the Pix3D paper's protocol; ssl_3d_recon releases no Pix3D list, and
CAPNet's README lists its Pix3D code as to-do): records with category "chair" and none of the three flags
(`exclude_slightly_occluded=False` keeps the slightly occluded ones). Image and mask are cropped to the
bbox made square about its centre (zero padding outside the image). The ground truth is `num_points`
points sampled on the model .obj (seeded per record), centred and scaled to a unit bounding-box diagonal,
in Pix3D's model frame (the official evaluation aligns predictions to the ground truth first:
`src/evaluation/align_pcl_transform.py`); `pose` is the azimuth atan2(x, z) and elevation asin(y / |c|)
of `cam_position` c in that Y-up frame, not converted to the lineage's frame.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.files import load_png_uint, load_rgb, open_image, read_json, read_mat, require_file
from datamodules.pointcloud.synthetic import normalize_unit_diagonal
from datamodules.readers_base import Reader
from datamodules.registry import READERS
from datamodules.seeding import stable_seed
from geometry.mesh import sample_points_from_meshes
from geometry.mesh_io import load_obj

__all__ = [
    "SHAPENET_SYNSETS",
    "Pix3DReader",
    "ShapeNetDRCReader",
    "drc_mask_from_depth",
    "load_split_ids",
    "read_view_pose",
]

SHAPENET_SYNSETS = {"airplane": "02691156", "car": "02958343", "chair": "03001627"}
"""Category -> ShapeNet synset of the lineage's three classes (ssl_3d_recon `src/utils/create_tf_records.py`)."""
MASK_SOURCES = ("depth", "alpha", "mask_png")


def load_split_ids(path: str | Path) -> list[str]:
    """The "<model>_<view>" strings of a lineage split file (an object array written by Python 2's numpy).

    Raises:
        FileNotFoundError naming a missing file; ValueError naming a file that is not such an array.
    """
    path = require_file(path)
    try:
        arr = np.load(path, allow_pickle=True, encoding="latin1")
    except Exception as err:  # UnpicklingError, ValueError, OSError, EOFError: all mean "unreadable"
        raise ValueError(f"cannot read split file {path}: {type(err).__name__}: {err}") from err
    if not isinstance(arr, np.ndarray) or arr.size == 0:
        raise ValueError(f"{path}: expected a non-empty array of '<model>_<view>' strings")
    out = []
    for v in arr.reshape(-1):
        if isinstance(v, bytes):
            v = v.decode("latin1")
        if not isinstance(v, str):
            raise ValueError(
                f"{path}: expected '<model>_<view>' strings, got an element of type {type(v).__name__}"
            )
        out.append(v.strip())
    return out


def read_view_pose(path: str | Path, view: int) -> tuple[float, float]:
    """(azimuth, elevation) in radians of line `view` (0-based) of a DRC view.txt ("az el tilt dist", degrees).

    Raises:
        FileNotFoundError naming a missing file; ValueError naming the file when it has too few lines or the
        line does not start with two numbers.
    """
    path = require_file(path)
    lines = path.read_text().splitlines()
    if view >= len(lines):
        raise ValueError(f"{path}: has {len(lines)} line(s), view {view} needs at least {view + 1}")
    fields = lines[view].split()
    try:
        az, el = float(fields[0]), float(fields[1])
    except (IndexError, ValueError):
        raise ValueError(
            f"{path}: line {view + 1} must start with 'azimuth elevation' in degrees, got {lines[view]!r}"
        ) from None
    if not (math.isfinite(az) and math.isfinite(el)):
        raise ValueError(f"{path}: line {view + 1} has a non-finite pose {lines[view]!r}")
    return math.radians(az), math.radians(el)


def drc_mask_from_depth(depth: np.ndarray, bits: int) -> np.ndarray:
    """CAPNet's mask (H, W) bool from a DRC depth PNG's stored values (capnet `src/utils.py`: the 8-bit
    `cv2.imread(depth)[:, :, 0] < 254` is the object). An 8-bit read of a 16-bit PNG keeps the high byte
    (OpenCV `modules/imgcodecs/src/grfmt_png.cpp` calls `png_set_strip_16`), so a 16-bit value v is the
    object iff v >> 8 < 254, i.e. v < 65024 (depth < 9.92 m in DRC's 10 m / 65535 scale)."""
    if bits not in (8, 16):
        raise ValueError(f"bits: expected 8 or 16, got {bits!r}")
    v8 = depth.astype(np.int64) >> 8 if bits == 16 else depth
    return v8 < 254


def _load_points(path: Path, num_points: int | None) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"ground-truth cloud not found: {path}") from None
    except Exception as err:
        raise ValueError(f"cannot read ground-truth cloud {path}: {type(err).__name__}: {err}") from err
    want = f"({num_points if num_points else 'P'}, 3)"
    if arr.ndim != 2 or arr.shape[1] != 3 or (num_points and arr.shape[0] != num_points) or arr.shape[0] == 0:
        raise ValueError(f"{path}: expected a ground-truth cloud of shape {want}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
        raise ValueError(f"{path}: expected finite float points, got dtype {arr.dtype} (or NaN / inf)")
    return torch.from_numpy(arr.astype(np.float32))


def _category_synset(category: str, reader: str) -> str:
    if category in SHAPENET_SYNSETS:
        return SHAPENET_SYNSETS[category]
    if category in SHAPENET_SYNSETS.values():
        return category
    names = ", ".join(f"{k!r} ({v})" for k, v in SHAPENET_SYNSETS.items())
    raise ValueError(f"{reader}: category: expected one of {names}, got {category!r}")


# ------------------------------------------------------------------------------------------ ShapeNet
class DRCItem(NamedTuple):
    synset: str
    model: str
    view: int


@READERS.register("shapenet_drc")
class ShapeNetDRCReader(Reader):
    """ShapeNet DRC renderings with the lineage's splits and ground-truth clouds (module docstring).

    Args:
        root: folder holding ShapeNet_rendered/, ShapeNet_v1/ and splits/ (`LAYOUT`).
        split: "train", "val" or "test".
        category: "car", "chair", "airplane" or their synset id.
        mask_source: "depth" (CAPNet's derivation, default), "alpha" or "mask_png".
        check_camera: read camera_<view>.mat and check its `K` and `extrinsic`.
        num_points: expected number of ground-truth points (None: any).
    """

    NAME = "shapenet_drc"
    SCHEMA = "point_cloud"
    SPLITS = ("train", "val", "test")
    LAYOUT = (
        "<root>/\n"
        "  splits/images_list_<synset>_<split>.npy   (N, 1) object array of '<model>_<view>'\n"
        "  ShapeNet_rendered/<synset>/<model>/render_<view>.png, depth_<view>.png, camera_<view>.mat, view.txt\n"
        "  ShapeNet_v1/<synset>/<model>/pcl_1024_fps_trimesh.npy   (1024, 3)\n"
        "synsets: airplane 02691156, car 02958343, chair 03001627"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        category: str = "chair",
        mask_source: str = "depth",
        check_camera: bool = True,
        num_points: int | None = 1024,
    ):
        self.synset = _category_synset(category, self.NAME)
        if mask_source not in MASK_SOURCES:
            raise ValueError(
                f"mask_source: expected one of {', '.join(map(repr, MASK_SOURCES))}, got {mask_source!r}"
            )
        self.mask_source, self.check_camera, self.num_points = mask_source, bool(check_camera), num_points
        super().__init__(root, split)

    def split_file(self) -> Path:
        return self.root / "splits" / f"images_list_{self.synset}_{self.split}.npy"

    def _index(self) -> list[DRCItem]:
        path = self.split_file()
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.NAME}: split file not found: {path}\nexpected layout:\n{self.LAYOUT}"
            )
        items = []
        for k, entry in enumerate(load_split_ids(path)):
            model, sep, view = entry.rpartition("_")
            if not sep or not model or not view.isdigit():
                raise ValueError(
                    f"{path}: entry {k} is {entry!r}, expected '<model>_<view>' with an integer view"
                )
            items.append(DRCItem(self.synset, model, int(view)))
        return items

    def _model_dir(self, item: DRCItem) -> Path:
        return self.root / "ShapeNet_rendered" / item.synset / item.model

    def _pcl_path(self, item: DRCItem) -> Path:
        return self.root / "ShapeNet_v1" / item.synset / item.model / "pcl_1024_fps_trimesh.npy"

    def _files(self, item: DRCItem) -> list[Path]:
        d, v = self._model_dir(item), item.view
        mask = {"depth": [d / f"depth_{v}.png"], "alpha": [], "mask_png": [d / f"mask_{v}.png"]}[
            self.mask_source
        ]
        camera = [d / f"camera_{v}.mat"] if self.check_camera else []
        return [d / f"render_{v}.png", *mask, *camera, d / "view.txt", self._pcl_path(item)]

    def _mask(self, item: DRCItem) -> torch.Tensor:
        d, v = self._model_dir(item), item.view
        if self.mask_source == "alpha":
            img = open_image(d / f"render_{v}.png")
            if "A" not in img.getbands():
                raise ValueError(
                    f"{d / f'render_{v}.png'}: mask_source='alpha' needs an RGBA PNG, got mode {img.mode!r}"
                )
            mask = np.asarray(img.getchannel("A")) > 0
        elif self.mask_source == "mask_png":
            mask = load_png_uint(d / f"mask_{v}.png", bits=8) > 127
        else:
            path = d / f"depth_{v}.png"
            img = open_image(path)
            if img.mode not in ("L", "I;16", "I;16B", "I;16L", "I"):
                raise ValueError(
                    f"{path}: expected a single-channel 8/16-bit depth PNG, got PIL mode {img.mode!r}"
                )
            mask = drc_mask_from_depth(np.array(img).astype(np.int64), 8 if img.mode == "L" else 16)
        return torch.from_numpy(np.ascontiguousarray(mask)).float()[None]

    def _load(self, item: DRCItem) -> dict[str, Any]:
        d, v = self._model_dir(item), item.view
        image = load_rgb(d / f"render_{v}.png")
        mask = self._mask(item)
        if mask.shape[1:] != image.shape[1:]:
            raise ValueError(
                f"{d}: mask of view {v} is {tuple(mask.shape[1:])}, the rendering {tuple(image.shape[1:])}"
            )
        if self.check_camera:
            path = d / f"camera_{v}.mat"
            mat = read_mat(path, keys=("K", "extrinsic"))
            for key, shape in (("K", (3, 3)), ("extrinsic", (4, 4))):
                if np.shape(mat[key]) != shape:
                    raise ValueError(f"{path}: expected {key!r} of shape {shape}, got {np.shape(mat[key])}")
        az, el = read_view_pose(d / "view.txt", v)
        return {
            "image": image,
            "mask": mask,
            "pose": torch.tensor([az, el], dtype=torch.float32),
            "points": _load_points(self._pcl_path(item), self.num_points),
            "name": f"{self.NAME}/{item.synset}/{item.model}_{v}",
        }


# ------------------------------------------------------------------------------------------ Pix3D
class Pix3DItem(NamedTuple):
    index: int  # position in pix3d.json
    image: Path
    mask: Path
    model: Path
    bbox: tuple[float, float, float, float]
    cam_position: tuple[float, float, float]


def square_crop(x: torch.Tensor, bbox: tuple[float, float, float, float]) -> torch.Tensor:
    """(C, H, W) -> (C, L, L): the square of side L = max(w, h) centred on bbox (x1, y1, x2, y2 pixels),
    zeros outside the image."""
    x1, y1, x2, y2 = bbox
    side = max(1, int(round(max(x2 - x1, y2 - y1))))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    _, h, w = x.shape
    pad = (max(0, -left), max(0, left + side - w), max(0, -top), max(0, top + side - h))
    xp = F.pad(x, pad)
    left, top = left + pad[0], top + pad[2]
    return xp[:, top : top + side, left : left + side]


@READERS.register("pix3d")
class Pix3DReader(Reader):
    """Pix3D's untruncated, unoccluded images of one category (module docstring), an evaluation set.

    Args:
        root: the Pix3D folder (`LAYOUT`).
        split: "test" (or "val": the same list).
        category: a Pix3D category (the lineage evaluates "chair").
        num_points: points sampled on the model.
        exclude_slightly_occluded: also drop records flagged `slightly_occluded`.
        seed: seed of the surface sampling (per record).
    """

    NAME = "pix3d"
    SCHEMA = "point_cloud"
    SPLITS = ("test", "val")
    LAYOUT = (
        "<root>/\n"
        "  pix3d.json   list of records: img, mask, model, category, bbox, truncated, occluded, "
        "slightly_occluded, cam_position\n"
        "  img/<category>/<name>.<ext>, mask/<category>/<name>.png, model/<category>/<model>/model.obj"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        category: str = "chair",
        num_points: int = 1024,
        exclude_slightly_occluded: bool = True,
        seed: int = 0,
    ):
        self.category, self.num_points = category, int(num_points)
        self.exclude_slightly_occluded, self.seed = bool(exclude_slightly_occluded), int(seed)
        super().__init__(root, split)

    def _index(self) -> list[Pix3DItem]:
        path = self.root / "pix3d.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.NAME}: annotation file not found: {path}\nexpected layout:\n{self.LAYOUT}"
            )
        records = read_json(path)
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
        items = []
        for k, r in enumerate(records):
            if not isinstance(r, dict):
                raise ValueError(f"{path}: record {k} is not an object")
            if r.get("category") != self.category:
                continue
            try:
                flags = [bool(r["truncated"]), bool(r["occluded"])]
                if self.exclude_slightly_occluded:
                    flags.append(bool(r["slightly_occluded"]))
                bbox = tuple(float(b) for b in r["bbox"])
                cam = tuple(float(c) for c in r["cam_position"])
                img, mask, model = r["img"], r["mask"], r["model"]
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}: record {k} ({r.get('img')!r}) lacks or has a bad field: {err!r}"
                ) from None
            if len(bbox) != 4 or len(cam) != 3:
                raise ValueError(
                    f"{path}: record {k} ({img!r}): expected bbox of 4 and cam_position of 3 numbers"
                )
            if any(flags):
                continue
            items.append(Pix3DItem(k, self.root / img, self.root / mask, self.root / model, bbox, cam))  # type: ignore[arg-type]
        return items

    def _files(self, item: Pix3DItem) -> list[Path]:
        return [item.image, item.mask, item.model]

    def _load(self, item: Pix3DItem) -> dict[str, Any]:
        if not item.mask.is_file():
            raise FileNotFoundError(
                f"{self.NAME}: record {item.index} of pix3d.json points to a missing mask: {item.mask}"
            )
        image = load_rgb(item.image)
        mask = torch.from_numpy(load_png_uint(item.mask) > 127).float()[None]
        if mask.shape[1:] != image.shape[1:]:
            raise ValueError(
                f"{item.mask}: mask is {tuple(mask.shape[1:])}, its image {item.image} {tuple(image.shape[1:])}"
            )
        if not item.model.is_file():
            raise FileNotFoundError(
                f"{self.NAME}: record {item.index} of pix3d.json points to a missing model: {item.model}"
            )
        mesh = load_obj(item.model)
        if mesh.faces.shape[0] == 0:
            raise ValueError(f"{item.model}: the model has no faces")
        g = torch.Generator().manual_seed(
            stable_seed(self.seed, zlib.crc32(self.category.encode()), item.index)
        )
        points = sample_points_from_meshes(mesh.verts[None], mesh.faces, self.num_points, generator=g)[0]
        x, y, z = item.cam_position
        r = math.sqrt(x * x + y * y + z * z)
        if r == 0:
            raise ValueError(f"{self.NAME}: record {item.index} of pix3d.json has cam_position (0, 0, 0)")
        return {
            "image": square_crop(image, item.bbox),
            "mask": square_crop(mask, item.bbox),
            "pose": torch.tensor([math.atan2(x, z), math.asin(y / r)], dtype=torch.float32),
            "points": normalize_unit_diagonal(points),
            "name": f"{self.NAME}/{item.image.relative_to(self.root).as_posix()}",
        }
