"""Writers of tiny datasets in the layouts of the SSL point-cloud family's real data, for
tests/test_pointcloud_data.py: ShapeNet with DRC renderings and the lineage's split files, and Pix3D.

* split files: (N, 1) object arrays of "<model>_<view>" strings as Python 2's numpy wrote them (a protocol-2
  pickle whose strings are Python 2 `str`, i.e. SHORT_BINSTRING opcodes), see `save_py2_object_npy`;
* DRC: render_<i>.png RGBA 8-bit, depth_<i>.png 16-bit grey (depth * 65535 / 10, background 65535),
  camera_<i>.mat with K, extrinsic, quat, pos (scipy.io.savemat, as DRC's BlenderRenderer), view.txt lines
  "az el tilt dist";
* Pix3D: pix3d.json, img/, mask/ (8-bit 0 / 255), model/<...>/model.obj.
Each writer returns what it wrote.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

DRC_DEPTH_MAX = 10.0  # shubhtuls/drc BlenderRenderer.depthToint16(maxVal=10)


def save_py2_object_npy(path: Path, strings: list[str], shape: tuple[int, ...] | None = None) -> Path:
    """An object-array .npy of `strings` (shape (N, 1) by default) whose pickle holds Python 2 `str`s.

    The header is numpy's format 1.0 and the body a protocol-2 pickle of the array whose BINUNICODE string
    opcodes are rewritten to SHORT_BINSTRING, the opcode Python 2 used for `str` (the lineage's files;
    loading them in Python 3 needs an `encoding`)."""
    arr = np.empty((len(strings), 1) if shape is None else shape, dtype=object)
    arr.reshape(-1)[:] = strings
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
    header, pkl = head.getvalue(), pickle.dumps(arr, protocol=2)
    out, last = bytearray(), 0
    for op, arg, pos in pickletools.genops(pkl):
        if op.name == "BINUNICODE" and isinstance(arg, str) and arg in strings:
            raw = arg.encode("latin1")
            assert len(raw) < 256
            out += pkl[last:pos] + b"U" + struct.pack("<B", len(raw)) + raw
            last = pos + 1 + 4 + len(arg.encode("utf-8"))
    out += pkl[last:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + bytes(out))
    return path


def save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path, format="PNG")
    return path


def save_depth16(path: Path, depth: np.ndarray) -> np.ndarray:
    """DRC's depth PNG: depth (H, W) metres, NaN / >= 10 = background, stored as uint16 depth * 65535 / 10."""
    d = np.where(np.isfinite(depth), np.minimum(depth, DRC_DEPTH_MAX), DRC_DEPTH_MAX)
    v = (d * 65535 / DRC_DEPTH_MAX).astype(np.uint16)
    save_png(path, v)
    return v


def write_drc_view(
    model_dir: Path, view: int, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray | None = None
) -> dict:
    """render_<view>.png (RGBA, alpha = object), depth_<view>.png, camera_<view>.mat; returns the arrays."""
    obj = np.isfinite(depth)
    rgba = np.dstack([rgb, obj.astype(np.uint8) * 255])
    save_png(model_dir / f"render_{view}.png", rgba, mode="RGBA")
    stored = save_depth16(model_dir / f"depth_{view}.png", depth)
    K = np.array([[420.0, 0, 112], [0, 420.0, 112], [0, 0, 1]]) if K is None else K
    ext = np.eye(4)
    ext[2, 3] = 2.0
    scipy.io.savemat(
        model_dir / f"camera_{view}.mat",
        {"K": K, "extrinsic": ext, "quat": np.array([[1.0, 0, 0, 0]]), "pos": np.array([[2.0, 0, 0]])},
    )
    return {"rgb": rgb, "depth16": stored, "object": obj}


def write_view_txt(model_dir: Path, poses_deg: list[tuple[float, float]]) -> Path:
    """DRC's view.txt: one "az el tilt dist" line per view (integers az, el; tilt 0; dist 2.0)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "view.txt"
    path.write_text("".join(f"{az} {el} 0 2.0\n" for az, el in poses_deg))
    return path


def write_drc_dataset(
    root: Path,
    synset: str,
    split: str,
    models: dict[str, list[tuple[float, float]]],
    entries: list[str],
    size: int = 16,
    seed: int = 0,
) -> dict:
    """A tiny ShapeNet_rendered / ShapeNet_v1 / splits tree.

    Args:
        models: model id -> its views' (azimuth, elevation) in degrees (one render per view).
        entries: the split's "<model>_<view>" strings.
    Returns:
        {"views": {(model, view): write_drc_view output}, "points": {model: (1024, 3)}, "split": path}.
    """
    rng = np.random.default_rng(seed)
    out: dict = {"views": {}, "points": {}}
    for model, poses in models.items():
        mdir = root / "ShapeNet_rendered" / synset / model
        write_view_txt(mdir, poses)
        for v in range(len(poses)):
            rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            depth = np.full((size, size), np.nan)
            r0, c0 = rng.integers(1, size // 2, 2)
            depth[r0 : r0 + size // 3, c0 : c0 + size // 4] = rng.uniform(1.5, 2.5)
            out["views"][(model, v)] = write_drc_view(mdir, v, rgb, depth)
        pts = rng.uniform(-0.5, 0.5, (1024, 3))
        pdir = root / "ShapeNet_v1" / synset / model
        pdir.mkdir(parents=True, exist_ok=True)
        np.save(pdir / "pcl_1024_fps_trimesh.npy", pts)
        out["points"][model] = pts
    out["split"] = save_py2_object_npy(root / "splits" / f"images_list_{synset}_{split}.npy", entries)
    return out


BOX_OBJ = "".join(f"v {x} {y} {z}\n" for x in (0, 2) for y in (0, 1) for z in (0, 4)) + "".join(
    f"f {a} {b} {c}\n"
    for a, b, c in [
        (1, 3, 2), (2, 3, 4), (5, 6, 7), (6, 8, 7), (1, 2, 5), (2, 6, 5),
        (3, 7, 4), (4, 7, 8), (1, 5, 3), (3, 5, 7), (2, 4, 6), (4, 8, 6),
    ]
)  # fmt: skip
"""A 2 x 1 x 4 box (x, y, z) with a corner at the origin, as an .obj."""


def write_pix3d(root: Path, records: list[dict], size: tuple[int, int] = (20, 30)) -> list[dict]:
    """pix3d.json with `records` (each: name, category, bbox, truncated, occluded, slightly_occluded,
    cam_position; optional write_mask=False), and for each an image (H, W) = size, a mask (the bbox
    filled) and the box model. Returns the full records written, with the image / mask arrays."""
    h, w = size
    rng = np.random.default_rng(0)
    full = []
    for r in records:
        name, cat = r["name"], r["category"]
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        x1, y1, x2, y2 = r["bbox"]
        mask[y1 : y2 + 1, x1 : x2 + 1] = 255
        rec = {
            "img": f"img/{cat}/{name}.png",
            "mask": f"mask/{cat}/{name}.png",
            "model": f"model/{cat}/{name}_model/model.obj",
            "category": cat,
            "img_size": [w, h],
            "bbox": list(r["bbox"]),
            "truncated": r.get("truncated", False),
            "occluded": r.get("occluded", False),
            "slightly_occluded": r.get("slightly_occluded", False),
            "cam_position": list(r.get("cam_position", (0.0, 0.0, 2.0))),
        }
        save_png(root / rec["img"], img)
        if r.get("write_mask", True):
            save_png(root / rec["mask"], mask, mode="L")
        (root / rec["model"]).parent.mkdir(parents=True, exist_ok=True)
        (root / rec["model"]).write_text(BOX_OBJ)
        full.append({**rec, "image_array": img, "mask_array": mask})
    (root / "pix3d.json").write_text(
        json.dumps([{k: v for k, v in r.items() if not k.endswith("_array")} for r in full])
    )
    return full
