"""Writers of tiny datasets in the layouts of TTP's real datasets, for tests/test_category_readers.py:
CUB-200-2011 with CMR's cachedir .mat files, and the raw PASCAL3D+ release 1.1.

The .mat files are MATLAB v5 files written with scipy.io.savemat so that
`scipy.io.loadmat(struct_as_record=False, squeeze_me=True)` gives what it gives for the real files: a
1 x N struct array `images` / `sfm_anno` (CMR), `record` with a 1 x N struct array `objects` (PASCAL3D+);
scalars as 1 x 1 doubles, CMR's `trans` as 2 x 1, PASCAL3D+ boxes as 1 x 4, an anchor's `location` as
1 x 2 or the 0 x 0 empty matrix. Each writer returns what it wrote (1-based, as in the files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

CUB_RELS = (
    "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
    "017.Cardinal/Cardinal_0001_17057.jpg",
)


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to `keep` of its bytes (an interrupted download or copy); returns it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def save_image(path: Path, arr: np.ndarray) -> None:
    """(H, W, 3) uint8 as a quality-100 JPEG (suffix .jpg / .JPEG) or a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(arr).save(path, format="JPEG", quality=100, subsampling=0)
    else:
        Image.fromarray(arr).save(path, format="PNG")


def save_mask_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask != 0).astype(np.uint8) * 255, mode="L").save(path, format="PNG")


def struct_array(rows: list[dict]) -> np.ndarray:
    """A 1 x N MATLAB struct array (savemat writes a structured object array as one)."""
    names = list(rows[0]) if rows else ["empty"]
    arr = np.zeros((1, len(rows)), dtype=[(n, object) for n in names])
    for i, row in enumerate(rows):
        for n in names:
            arr[0, i][n] = row[n]
    return arr


def savemat(path: Path, variables: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)
    return path


# ------------------------------------------------------------------------------------------------- CUB


def cub_image_struct(
    rel_path: str, bbox: np.ndarray, parts: np.ndarray, mask: np.ndarray, index: int
) -> dict:
    """One element of CMR's `images` struct array, with every field CMR's files have."""
    h, w = mask.shape
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return {
        "id": float(index + 1),
        "rel_path": rel_path,
        "train": 1.0,
        "test": 0.0,
        "bbox": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
        "width": float(w),
        "height": float(h),
        "parts": parts.astype(np.float64),
        "mask": mask.astype(bool),  # MATLAB logical
        "class_id": 1.0,
    }


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def write_cub(
    root: Path,
    rng: np.random.Generator,
    split: str = "train",
    rels: tuple[str, ...] = CUB_RELS,
    h: int = 18,
    w: int = 24,
    sfm: bool = True,
    grey: int | None = None,
) -> dict:
    """CUB_200_2011/images/<rel> JPEGs and CMR's cachedir/cub/{data/<split>_cub_cleaned.mat,
    sfm/anno_<split>.mat}. Keypoint k of image i is visible unless k % 4 == (i + 1) % 4 (stored as x = y = 0,
    visibility 0, like CMR's files); coordinates are 1-based and integer like the real parts.
    `grey`: index of an image saved as single-channel JPEG (CUB has some)."""
    images, structs, poses = [], [], []
    for i, rel in enumerate(rels):
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        if grey == i:
            img = np.repeat(img[..., :1], 3, axis=2)
            path = root / "CUB_200_2011/images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0], mode="L").save(path, format="JPEG", quality=100)
        else:
            save_image(root / "CUB_200_2011/images" / rel, img)
        parts = np.zeros((3, 15))
        parts[0] = rng.integers(1, w + 1, size=15)
        parts[1] = rng.integers(1, h + 1, size=15)
        parts[2] = (np.arange(15) % 4 != (i + 1) % 4).astype(float)
        parts[:2, parts[2] == 0] = 0.0
        bbox = np.array([2 + i, 3, w - 1, h - 2 - i], dtype=float)
        mask = np.zeros((h, w), dtype=bool)
        mask[3 : h - 2 - i, 2 + i : w - 1] = True
        mask[4, 5 + i] = False
        structs.append(cub_image_struct(rel, bbox, parts, mask, i))
        poses.append(
            {
                "rot": random_rotation(rng),
                "scale": float(rng.uniform(5, 50)),
                "trans": rng.uniform(1, min(h, w), size=(2, 1)),
            }
        )
        images.append(img)
    anno = savemat(root / "cachedir/cub/data" / f"{split}_cub_cleaned.mat", {"images": struct_array(structs)})
    out = {"images": images, "structs": structs, "poses": poses, "anno": anno}
    if sfm:
        out["sfm"] = savemat(
            root / "cachedir/cub/sfm" / f"anno_{split}.mat",
            {"sfm_anno": struct_array(poses), "S": rng.normal(size=(3, 15)), "conv_tri": np.ones((4, 3))},
        )
    return out


# ------------------------------------------------------------------------------------------- PASCAL3D+


def p3d_object(
    cls: str,
    anchors: dict[str, np.ndarray | None] | None,
    bbox: tuple[float, float, float, float],
    difficult: int = 0,
    truncated: int = 0,
    occluded: int = 0,
    cad_index: int = 1,
) -> dict:
    """One element of `record.objects`: anchors name -> 1-based [x, y] (None = not visible, stored as
    the empty matrix with status 5, as the release does), or anchors=None for an object without any
    (other classes: the empty matrix)."""
    if anchors is None:
        anchor_struct: object = np.zeros((0, 0))
    else:
        anchor_struct = {
            n: {
                "location": np.zeros((0, 0)) if loc is None else np.asarray(loc, dtype=float).reshape(1, 2),
                "status": 5.0 if loc is None else 1.0,
            }
            for n, loc in anchors.items()
        }
    return {
        "class": cls,
        "view": "Frontal",
        "bbox": np.asarray(bbox, dtype=float).reshape(1, 4),
        "bndbox": {"xmin": bbox[0], "ymin": bbox[1], "xmax": bbox[2], "ymax": bbox[3]},
        "orglabel": 1.0,
        "truncated": float(truncated),
        "occluded": float(occluded),
        "difficult": float(difficult),
        "anchors": anchor_struct,
        "viewpoint": {"azimuth": 30.0, "elevation": 10.0, "theta": 0.0, "distance": 5.0, "focal": 1.0},
        "cad_index": float(cad_index),
    }


def write_p3d_annotation(
    root: Path, category: str, subset: str, image_id: str, objects: list[dict], size: tuple[int, int]
) -> Path:
    """Annotations/<category>_<subset>/<id>.mat with `record` (filename, size, imgsize, objects, ...)."""
    h, w = size
    ext = "jpg" if subset == "pascal" else "JPEG"
    record = {
        "filename": f"{image_id}.{ext}",
        "folder": f"{category}_{subset}",
        "source": {"database": "PASCAL3D+"},
        "size": {"width": float(w), "height": float(h), "depth": 3.0},
        "segmented": 0.0,
        "imgsize": np.array([[w, h, 3]], dtype=float),
        "database": "ImageNet" if subset == "imagenet" else "PASCAL VOC",
        "objects": struct_array(objects),
    }
    return savemat(root / "Annotations" / f"{category}_{subset}" / f"{image_id}.mat", {"record": record})


def write_p3d_image(root: Path, category: str, subset: str, image_id: str, img: np.ndarray) -> Path:
    ext = "jpg" if subset == "pascal" else "JPEG"
    path = root / "Images" / f"{category}_{subset}" / f"{image_id}.{ext}"
    save_image(path, img)
    return path


def write_voc_sets(root: Path, train: list[str], val: list[str]) -> Path:
    """PASCAL/VOCdevkit/VOC2012/ImageSets/Main/{train,val}.txt as the release ships them (one id a line)."""
    sets = root / "PASCAL/VOCdevkit/VOC2012/ImageSets/Main"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (sets / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return sets


def write_p3d_cad(
    root: Path, category: str, index: int, verts: np.ndarray, polygons: list[list[int]], header: str = "OFF"
) -> Path:
    """CAD/<category>/<index:02d>.off as the release ships its CAD models: `OFF`, then `V F 0`, then V lines
    `x y z` and F lines `n i_1 ... i_n` (0-based; polygons may have more than 3 corners)."""
    path = root / "CAD" / category / f"{index:02d}.off"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header, f"{len(verts)} {len(polygons)} 0"]
    lines += [" ".join(f"{float(c):.9g}" for c in v) for v in np.asarray(verts)]
    lines += [" ".join(str(int(i)) for i in [len(p), *p]) for p in polygons]
    path.write_text("\n".join(lines) + "\n")
    return path
