"""Readers for relative-depth datasets (DIW, MegaDepth, ReDWeb) and the generic folder format.

Registered in `datamodules.READERS` when `datamodules.depth.readers` is imported. Layouts are documented in
docs/depth_datasets.md; samples follow `datamodules.depth.io.make_sample`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.depth.io import intrinsics_matrix, make_sample
from datamodules.depth.readers_base import _UNSET, DepthReader
from datamodules.files import (
    IMAGE_SUFFIXES,
    h5_dataset,
    load_png_uint,
    load_rgb,
    open_h5,
    png_text,
    read_json,
    read_numbered_lines,
    require_dir,
    require_file,
)
from datamodules.registry import READERS
from losses.depth import DEPTH_TYPES

# ------------------------------------------------------------------------------------------------------ DIW


def parse_diw_csv(path: Path) -> list[tuple[str, list[str]]]:
    """A DIW annotation CSV: per sample one line with the image path, then one line
    `yA,xA,yB,xB,relation,width,height` (1-based pixels; relation '>' = A farther, '<' = A nearer).

    Column order from the official code of Chen et al. 2016 (`DataLoader_DIW` of relative_depth, also in its
    PyTorch port): columns 0-3 are y_A, x_A, y_B, x_B minus 1, column 4 the relation, 5 / 6 the original
    width / height. Returns [(image path string, coordinate fields)]. A coordinate line with too few fields,
    a non-numeric coordinate / size or an unknown relation raises ValueError naming `file:line`."""
    lines = [
        (i, ln.strip()) for i, ln in enumerate(require_file(path).read_text().splitlines(), 1) if ln.strip()
    ]
    if len(lines) % 2:
        raise ValueError(
            f"{path}: expected pairs of lines (image path, then yA,xA,yB,xB,rel,...), got {len(lines)} "
            f"non-empty lines (the last: {path}:{lines[-1][0]})"
        )
    out = []
    for k in range(0, len(lines), 2):
        image = lines[k][1].split(",")[0].strip()
        lineno, line = lines[k + 1]
        fields = [f.strip() for f in line.split(",")]
        where = f"{path}:{lineno}"
        if len(fields) < 5 or len(fields) == 6 or fields[4] not in (">", "<"):
            raise ValueError(f"{where}: expected 'yA,xA,yB,xB,>|<[,width,height]', got {line!r}")
        numeric = fields[:4] + fields[5:7]
        try:
            values = [float(v) for v in numeric]
        except ValueError:
            values = [math.nan]
        if not all(math.isfinite(v) and v == int(v) for v in values):
            raise ValueError(f"{where}: coordinates and sizes must be integers, got {line!r}")
        out.append((image, fields))
    return out


def diw_to_zero_based(coord: int, orig_size: int | None, size: int) -> int:
    """1-based DIW coordinate -> 0-based pixel; rescaled as the official loader does when the CSV's original
    size differs from the image's (floor((c - 1) / orig * size), clamped)."""
    if orig_size is None or orig_size == size:
        return coord - 1
    return min(size - 1, max(0, math.floor((coord - 1) / orig_size * size)))


@READERS.register("diw")
class DIWReader(DepthReader):
    """Depth in the Wild (Chen et al., NIPS 2016): one ordinal pair per image.

    Sample: `depth` zeros and `valid` all False (no metric depth), `depth_type` "ordinal", `ordinal` (1, 5)
    float32 rows (yA, xA, yB, xB, rel) in 0-based pixels of the returned image, rel +1 when A is farther.
    """

    NAME = "diw"
    LAYOUT = (
        "<root>/\n"
        "  DIW_train_val.csv (or DIW_train.csv + DIW_val.csv)   DIW_test.csv\n"
        "  DIW_train_val/<id>.thumb   DIW_test/<id>.thumb\n"
        "  (image paths as written in the CSVs, relative to root)"
    )

    def _index(self) -> list[tuple[str, list[str]]]:
        if self.split == "test":
            csv = self.root / "DIW_test.csv"
        elif self.split == "val":
            csv = self.root / "DIW_val.csv"
        else:
            csv = self.root / "DIW_train.csv"
            if not csv.is_file():
                csv = self.root / "DIW_train_val.csv"
        self.csv = require_file(csv, self.LAYOUT)
        return parse_diw_csv(self.csv)

    def _candidates(self, written: str) -> list[Path]:
        p = Path(written)
        return ([p] if p.is_absolute() else []) + [
            Path(os.path.normpath(self.root / written.lstrip("/"))),
            self.root / p.parent.name / p.name,
        ]

    def _files(self, item: tuple[str, list[str]]) -> list[Path]:
        candidates = self._candidates(item[0])
        return [next((c for c in candidates if c.is_file()), candidates[0])]

    def _image_path(self, written: str) -> Path:
        candidates = self._candidates(written)
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(
            f"diw: image {written!r} listed in {self.csv} not found; tried " + ", ".join(map(str, candidates))
        )

    def _load(self, item: tuple[str, list[str]]) -> dict[str, Any]:
        written, fields = item
        img_path = self._image_path(written)
        image = load_rgb(img_path)
        h, w = image.shape[-2:]
        orig_w = int(float(fields[5])) if len(fields) > 6 else None
        orig_h = int(float(fields[6])) if len(fields) > 6 else None
        ya, xa, yb, xb = (int(float(v)) for v in fields[:4])
        ya, yb = (diw_to_zero_based(v, orig_h, h) for v in (ya, yb))
        xa, xb = (diw_to_zero_based(v, orig_w, w) for v in (xa, xb))
        if not (0 <= ya < h and 0 <= yb < h and 0 <= xa < w and 0 <= xb < w):
            raise ValueError(f"diw: pair {fields[:4]} (1-based) of {img_path} lies outside the {h}x{w} image")
        rel = 1.0 if fields[4] == ">" else -1.0
        ordinal = torch.tensor([[ya, xa, yb, xb, rel]], dtype=torch.float32)  # (M=1, 5)
        return make_sample(
            image,
            torch.zeros(1, h, w),
            "ordinal",
            f"diw/{img_path.stem}",
            image_path=img_path,
            depth_path=self.csv,
            max_depth=self.max_depth,
            ordinal=ordinal,
        )


# ------------------------------------------------------------------------------------- split files (shared)


def names_for_split(
    root: Path,
    split: str,
    all_names: list[str],
    layout: str,
    what: str,
    path_of: Callable[[str], Path] | None = None,
) -> list[str]:
    """Datasets without an official split: `<root>/splits/<split>.txt` lists the `what`s to use; without it,
    "train" uses everything and other splits raise FileNotFoundError naming the file to create.

    A split file that lists a `what` which is not in the dataset raises FileNotFoundError naming the split
    file, the first such entry (as the path `path_of(name)` where given) and how many there are: a split is
    never silently shortened."""
    split_file = root / "splits" / f"{split}.txt"
    if split_file.is_file():
        listed = read_numbered_lines(split_file)
        present = set(all_names)
        missing = [(lineno, name) for lineno, name in listed if name not in present]
        if missing:
            lineno, name = missing[0]
            first = f"{path_of(name)} ({what} {name!r}, {split_file}:{lineno})" if path_of else repr(name)
            raise FileNotFoundError(
                f"{split_file}: {len(missing)} of {len(listed)} listed {what}s are not in the dataset, "
                f"the first: {first}\nexpected layout:\n{layout}"
            )
        wanted = {name for _, name in listed}
        return [n for n in all_names if n in wanted]
    if split == "train":
        return all_names
    raise FileNotFoundError(
        f"split {split!r} needs {split_file} (one {what} per line); only 'train' defaults to all data\n"
        f"expected layout:\n{layout}"
    )


# ------------------------------------------------------------------------------------------------ MegaDepth


def read_megadepth_depth(path: Path) -> np.ndarray:
    """The dataset "depth" of a MegaDepth `depths/<name>.h5` as (H, W) float32 (0 = no depth).

    MegaDepth v1 stores its ordinal depth maps (from semantic segmentation: -1 marks the ordering mask) under
    the same file names, in the same `depths/` folders and under the same key "depth" as its SfM/MVS depth
    maps; they differ only in their values (MegaDepth issue #1; COTR and others filter them by a negative
    minimum). A file with any negative value, or a "depth" that is not a 2-D float array, is not a depth map:
    ValueError naming it. Unreadable files and a missing key also raise naming the file."""
    with open_h5(path) as f:
        ds = h5_dataset(f, "depth", path)
        if ds.ndim != 2 or not np.issubdtype(ds.dtype, np.floating):
            raise ValueError(
                f"{path}: not a MegaDepth depth map: 'depth' is {ds.dtype} of shape {ds.shape}, expected a "
                "2-D float array"
            )
        try:
            depth = np.asarray(ds[()], dtype=np.float32)
        except (OSError, RuntimeError) as err:
            raise ValueError(f"cannot read dataset 'depth' of HDF5 file {path}: {err}") from err
    negative = int((depth < 0).sum())
    if negative:
        raise ValueError(
            f"{path}: not a depth map: {negative} negative values (min {float(depth.min()):g}). MegaDepth "
            "stores ordinal (semantic) depth maps under the same names and key as depth maps; leave this "
            "image out with valid_list= (see docs/depth_datasets.md)"
        )
    return depth


def _read_path_list(path: Path) -> list[tuple[int, str]]:
    """(line or position, entry) of a JSON list of strings or a text file of one entry per line."""
    if path.suffix == ".json":
        entries = read_json(path)
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"{path}: expected a JSON list of image paths")
        return list(enumerate(entries, 1))
    return read_numbered_lines(path)


@READERS.register("megadepth")
class MegaDepthReader(DepthReader):
    """MegaDepth v1 (Li & Snavely, CVPR 2018): SfM/MVS depth, up to scale ("uts"), in `.h5` files with the
    dataset key "depth" (float32, 0 = no depth).

    Only `<scene>/dense<k>/depths/<image stem>.h5` files are read (never the `semantic_map/` tree, whose
    `<name>.jpg.h5` files hold segmentations). MegaDepth also ships ordinal depth maps with the same names
    in `depths/`: reading one raises ValueError naming it (see `read_megadepth_depth`); `valid_list` (a
    JSON list, e.g. COTR's `megadepth_valid_list.json`, or a text file: image paths relative to
    MegaDepth_v1, `<scene>/dense<k>/imgs/<name>.jpg`) keeps only the listed images of the split's scenes.
    """

    NAME = "megadepth"
    LAYOUT = (
        "<root>/  (MegaDepth_v1/, or a folder holding phoenix/S6/zl548/MegaDepth_v1/)\n"
        "  <scene>/dense<k>/imgs/<name>.jpg\n"
        "  <scene>/dense<k>/depths/<name>.h5     (dataset 'depth')\n"
        "  splits/{train,val,test}.txt           (optional: scene ids; without it 'train' = all scenes)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        valid_list: str | Path | None = None,
        max_depth: float | None = _UNSET,
    ):
        self.valid_list = None if valid_list is None else Path(valid_list)
        super().__init__(root, split, max_depth)

    def _index(self) -> list[tuple[Path, Path]]:
        nested = self.root / "phoenix" / "S6" / "zl548" / "MegaDepth_v1"
        base = nested if nested.is_dir() else self.root
        scenes = sorted(p.name for p in base.iterdir() if p.is_dir() and any(p.glob("dense*/imgs")))
        scenes = names_for_split(self.root, self.split, scenes, self.LAYOUT, "scene id", lambda n: base / n)
        items = []
        for scene in scenes:
            for img in sorted((base / scene).glob("dense*/imgs/*")):
                if img.suffix in IMAGE_SUFFIXES:
                    items.append((img, img.parent.parent / "depths" / f"{img.stem}.h5"))
        if self.valid_list is not None:
            listed = _read_path_list(require_file(self.valid_list))
            chosen = set(scenes)
            have = {img.relative_to(base).as_posix() for img, _ in items}
            mine = [(pos, e.strip().lstrip("./")) for pos, e in listed if e.strip().split("/")[0] in chosen]
            missing = [(pos, e) for pos, e in mine if e not in have]
            if missing:
                pos, e = missing[0]
                raise FileNotFoundError(
                    f"{self.valid_list}: {len(missing)} of {len(mine)} listed images of the split's scenes "
                    f"are not in the dataset, the first: {base / e} (entry {pos})"
                )
            keep = {e for _, e in mine}
            items = [it for it in items if it[0].relative_to(base).as_posix() in keep]
        return items

    def _files(self, item: tuple[Path, Path]) -> list[Path]:
        return list(item)

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        img_path, depth_path = item
        image = load_rgb(img_path)
        depth = read_megadepth_depth(depth_path)
        return make_sample(
            image,
            depth,
            "uts",
            f"megadepth/{img_path.parent.parent.parent.name}/{img_path.parent.parent.name}/{img_path.stem}",
            image_path=img_path,
            depth_path=depth_path,
            max_depth=self.max_depth,
        )


# --------------------------------------------------------------------------------------------------- ReDWeb


@READERS.register("redweb")
class ReDWebReader(DepthReader):
    """ReDWeb V1 (Xian et al., CVPR 2018): 8-bit relative depth maps `RDs/<name>.png` for `Imgs/<name>.jpg`.

    The stored values grow with distance (0 nearest, 255 sky/background): MiDaS treats them as negative
    disparity, masking 255 (MiDaS issue #16). This reader returns the disparity-like (255 - v) / 255, larger =
    nearer, as "utss_disparity" (an affine map of the stored values), with v == 255 invalid.
    """

    NAME = "redweb"
    LAYOUT = (
        "<root>/  (ReDWeb_V1/)\n"
        "  Imgs/<name>.jpg\n"
        "  RDs/<name>.png\n"
        "  splits/{train,val,test}.txt   (optional: image names; without it 'train' = all images)"
    )

    def _index(self) -> list[tuple[Path, Path]]:
        imgs = require_dir(self.root / "Imgs", self.LAYOUT)
        require_dir(self.root / "RDs", self.LAYOUT)
        by_name: dict[str, Path] = {}
        for p in sorted(imgs.iterdir()):
            if p.suffix in IMAGE_SUFFIXES:
                by_name.setdefault(p.stem, p)
        names = names_for_split(
            self.root, self.split, sorted(by_name), self.LAYOUT, "image name", lambda n: imgs / f"{n}.jpg"
        )
        return [(by_name[name], self.root / "RDs" / f"{name}.png") for name in names]

    def _files(self, item: tuple[Path, Path]) -> list[Path]:
        return list(item)

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        img_path, rd_path = item
        image = load_rgb(img_path)
        rd = load_png_uint(rd_path, bits=8)
        if rd.max(initial=0) > 255:
            raise ValueError(
                f"{rd_path}: expected an 8-bit relative depth map, found values up to {rd.max()}"
            )
        disp = (255.0 - rd.astype(np.float32)) / 255.0
        keep = torch.from_numpy(rd != 255)[None]  # 255 = sky / background, masked as in MiDaS
        return make_sample(
            image,
            disp,
            "utss_disparity",
            f"redweb/{img_path.stem}",
            image_path=img_path,
            depth_path=rd_path,
            extra_valid=keep,
            max_depth=self.max_depth,
        )


# -------------------------------------------------------------------------------------------- folder format


def _intrinsics_from_meta(value: Any, where: Path) -> torch.Tensor:
    k = torch.as_tensor(value, dtype=torch.float32)
    if k.shape == (4,):
        return intrinsics_matrix(*k.tolist())
    if k.shape != (3, 3):
        raise ValueError(
            f"{where}: 'intrinsics' must be [fx, fy, cx, cy] or a 3x3 matrix, got shape {tuple(k.shape)}"
        )
    return k


@READERS.register("folder")
class FolderReader(DepthReader):
    """The suite's generic folder format (defined in docs/depth_datasets.md).

    `<root>/<split>/<name>.{png,jpg}` with `<name>.depth.{npy,png}` or `<name>.disp.{npy,png}`; metadata in
    `<root>/<split>/meta.json`, overridden key by key by `<name>.json`: `depth_type` (required for depth),
    `depth_scale` (16-bit PNGs: stored value / depth_scale; may instead be a PNG text chunk), `intrinsics`
    ([fx, fy, cx, cy] or 3x3, 0-based pixels), `max_depth`. `.npy` values are used as stored.
    """

    NAME = "folder"
    LAYOUT = (
        "<root>/<split>/\n"
        "  meta.json                   {'depth_type': 'absolute', 'depth_scale': 1000,\n"
        "                               'intrinsics': [fx, fy, cx, cy]}\n"
        "  <name>.png|.jpg             RGB image\n"
        "  <name>.depth.npy|.png       depth (or <name>.disp.npy|.png: disparity, larger = nearer)\n"
        "  <name>.json                 optional per-image overrides of meta.json"
    )

    def _index(self) -> list[tuple[Path, Path, str]]:
        folder = require_dir(self.root / self.split, self.LAYOUT)
        self.meta = read_json(folder / "meta.json") if (folder / "meta.json").is_file() else {}
        images: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if p.suffix not in IMAGE_SUFFIXES or ".depth." in p.name or ".disp." in p.name:
                continue
            if p.stem in images:
                raise ValueError(f"folder: two images named {p.stem!r}: {images[p.stem]} and {p}")
            images[p.stem] = p
        items = []
        for name, img in images.items():
            for kind in ("depth", "disp"):
                found = [folder / f"{name}.{kind}{ext}" for ext in (".npy", ".png")]
                found = [f for f in found if f.is_file()]
                if found:
                    items.append((img, found[0], kind))
                    break
            else:
                raise FileNotFoundError(
                    f"folder: no depth for {img}; expected {folder / (name + '.depth.npy')} (or .depth.png, "
                    f".disp.npy, .disp.png)\nexpected layout:\n{self.LAYOUT}"
                )
        return items

    def _files(self, item: tuple[Path, Path, str]) -> list[Path]:
        return [item[0], item[1]]  # <name>.json overrides are optional

    def _load(self, item: tuple[Path, Path, str]) -> dict[str, Any]:
        img_path, depth_path, kind = item
        meta = dict(self.meta)
        own = img_path.with_suffix(".json")
        if own.is_file():
            meta.update(read_json(own))
        where = own if own.is_file() else img_path.parent / "meta.json"
        depth_type = meta.get("depth_type", "utss_disparity" if kind == "disp" else None)
        if depth_type is None:
            raise ValueError(
                f"folder: {where} must name 'depth_type' (one of {DEPTH_TYPES[:3]}) for {depth_path}"
            )
        if depth_type not in DEPTH_TYPES[:3] or (kind == "disp") != (depth_type == "utss_disparity"):
            raise ValueError(
                f"folder: depth_type {depth_type!r} in {where} does not fit {depth_path.name} "
                "(.disp files are 'utss_disparity'; .depth files 'absolute' or 'uts')"
            )
        image = load_rgb(img_path)
        if depth_path.suffix == ".npy":
            try:
                values = np.load(depth_path, allow_pickle=False)
            except (ValueError, OSError) as err:
                raise ValueError(f"cannot read depth file {depth_path}: {err}") from err
            values = np.asarray(values, dtype=np.float32)
            if values.ndim == 3 and values.shape[0] == 1:
                values = values[0]
        else:
            scale = meta.get("depth_scale", png_text(depth_path).get("depth_scale"))
            if scale is None:
                raise ValueError(
                    f"folder: {depth_path} is a PNG but neither {where} nor its text chunks "
                    "give 'depth_scale'"
                )
            values = load_png_uint(depth_path).astype(np.float32) / float(scale)
        k = _intrinsics_from_meta(meta["intrinsics"], where) if "intrinsics" in meta else None
        max_depth = self.max_depth if self.max_depth is not None else meta.get("max_depth")
        return make_sample(
            image,
            values,
            depth_type,
            f"folder/{self.split}/{img_path.stem}",
            image_path=img_path,
            depth_path=depth_path,
            intrinsics=k,
            max_depth=max_depth,
        )
