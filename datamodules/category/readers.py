"""Readers of TTP's real datasets, CUB-200-2011 with CMR's annotation files and PASCAL3D+, registered in
`datamodules.READERS` ("cub", "pascal3d").

`READERS["cub"](root=..., split="test")[i]` is a dict of the "category" schema (`datamodules.schema`):
`image` (3, H, W) float32 in [0, 1]; `mask` (1, H, W) float32 in {0, 1}; `keypoints` (K, 3) float32 as
0-based pixel x, y in the ORIGINAL image and visibility (1 visible, 0 not; x = y = 0 when not visible);
`bbox` (4,) float32 0-based pixel x1, y1, x2, y2 (inclusive: x2 is the box's last column); `name` str;
CUB adds `sfm_pose` (7,), PASCAL3D+ adds `cad_index` (int64 scalar tensor). Readers return the full image:
the crop (pad, square, resize) and the mapping of keypoints to [-1, 1] happen in the datamodule
(`datamodules.category.crop`).

Both datasets store MATLAB's 1-based pixel coordinates (boxes, keypoints, CUB's SfM translation); every
sample is 0-based (subtract 1), as CMR's loader does (akanazawa/cmr data/base.py, "Adjust to 0 indexing").

Mirroring: each reader has `KEYPOINT_FLIP` (and `KEYPOINT_NAMES`), the permutation `perm` such that the
keypoints of the mirrored image are `keypoints[perm]` with x -> W - 1 - x (CMR data/base.py `mirror_image`;
applied by `datamodules.category.crop.mirror_sample`). PASCAL3D+'s depend on the category: the reader
instance has those of its category (per category: `PASCAL3D_KEYPOINT_FLIP`, `PASCAL3D_KEYPOINT_NAMES`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from datamodules.files import load_png_uint, load_rgb, read_split_list, require_dir, require_file
from datamodules.readers_base import Reader
from datamodules.registry import READERS
from geometry.rotations import matrix_to_quaternion

# ------------------------------------------------------------------------------------------ MATLAB files


def read_mat_structs(path: str | Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """Load a MATLAB v5 .mat file as CMR does (`scipy.io.loadmat(struct_as_record=False, squeeze_me=True)`:
    structs come back as `mat_struct` objects with attribute fields, 1 x N struct arrays as (N,) object
    arrays, or a single `mat_struct` when N = 1).

    Raises:
        FileNotFoundError naming a missing file; ValueError naming a file that cannot be read (0 bytes,
        truncated, not a .mat) or, for a missing variable of `keys`, the variable and those present.
    """
    import scipy.io

    path = require_file(path)
    try:
        mat = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)
    except Exception as err:  # MatReadError, OSError, ValueError, ...: all mean "unreadable"
        raise ValueError(f"cannot read MATLAB file {path}: {type(err).__name__}: {err}") from err
    present = sorted(k for k in mat if not k.startswith("__"))
    for key in keys:
        if key not in mat:
            raise ValueError(f"{path}: has no variable {key!r} (variables present: {present})")
    return mat


def _is_struct(value: Any) -> bool:
    return hasattr(value, "_fieldnames")


def struct_list(value: Any, where: str) -> list[Any]:
    """The elements of a loaded MATLAB struct array as a list (a 1 x 1 struct array loads as one struct,
    an empty one as an empty array); ValueError naming `where` when it is not a struct array."""
    if _is_struct(value):
        return [value]
    arr = np.asarray(value)
    if arr.dtype == object and all(_is_struct(v) for v in arr.reshape(-1)):
        return list(arr.reshape(-1))
    if arr.size == 0:
        return []
    raise ValueError(f"{where}: expected a MATLAB struct array, got {type(value).__name__} {arr.dtype}")


def struct_field(struct: Any, name: str, where: str) -> Any:
    """`struct.<name>`, or ValueError naming `where`, the field and the fields present."""
    if not _is_struct(struct):
        raise ValueError(
            f"{where}: expected a MATLAB struct with field {name!r}, got {type(struct).__name__}"
        )
    if name not in struct._fieldnames:
        raise ValueError(f"{where}: has no field {name!r} (fields present: {sorted(struct._fieldnames)})")
    return getattr(struct, name)


def _number(value: Any, where: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{where}: expected one number, got {arr.dtype} array of shape {arr.shape}")
    x = float(arr.reshape(-1)[0])
    if not np.isfinite(x):
        raise ValueError(f"{where}: expected a finite number, got {x}")
    return x


def _array(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A finite float64 array of exactly `shape`, or ValueError naming `where` and both shapes."""
    arr = np.asarray(value)
    if arr.shape != shape or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{where}: expected a numeric array of shape {shape}, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: has non-finite values")
    return arr


# ------------------------------------------------------------------------------------ keypoint helpers


_LR = {"Left": "Right", "Right": "Left", "left": "right", "right": "left", "L_": "R_", "R_": "L_"}
_LR_RE = re.compile("|".join(_LR))


def flip_permutation(names: Sequence[str]) -> tuple[int, ...]:
    """The left/right permutation of keypoint `names`: `perm[k]` is the index of the name with
    Left/left/L_ and Right/right/R_ swapped (itself when it has none), the rule of CMR's `findKpsPerm`
    (akanazawa/cmr preprocess/pascal/pascal_sfm.m). ValueError when a swapped name is not in `names`."""
    index = {n: i for i, n in enumerate(names)}
    perm = []
    for n in names:
        swapped = _LR_RE.sub(lambda m: _LR[m.group(0)], n)
        if swapped not in index:
            raise ValueError(f"keypoint {n!r} has no mirrored keypoint {swapped!r} among {list(names)}")
        perm.append(index[swapped])
    return tuple(perm)


def keypoints_from_one_based(xy: np.ndarray, visible: np.ndarray) -> torch.Tensor:
    """(K, 2) 1-based pixel x, y and (K,) visibility -> (K, 3) float32 0-based x, y, visibility in {0, 1};
    x = y = 0 where not visible (CMR data/base.py subtracts 1 from the visible ones only)."""
    vis = np.asarray(visible, dtype=bool)
    out = np.zeros((len(vis), 3), dtype=np.float64)
    out[vis, :2] = np.asarray(xy, dtype=np.float64)[vis] - 1.0
    out[:, 2] = vis
    return torch.from_numpy(out).float()


class CategoryReader(Reader):
    """Base of the category (TTP) readers: schema "category"; `KEYPOINT_NAMES` (K names) and their mirror
    permutation `KEYPOINT_FLIP` (K indices), class attributes, or set per instance where they depend on
    the reader's arguments (PASCAL3D+'s category)."""

    SCHEMA = "category"
    KEYPOINT_NAMES: tuple[str, ...] = ()
    KEYPOINT_FLIP: tuple[int, ...] = ()


def _mask_tensor(mask: np.ndarray, image: torch.Tensor, what: str, image_path: Path) -> torch.Tensor:
    """(H, W) array (nonzero = object) -> (1, H, W) float32 in {0, 1}; ValueError when its size is not
    the image's."""
    h, w = image.shape[-2:]
    if mask.shape != (h, w):
        raise ValueError(f"{what}: mask is {mask.shape} (H, W) but image {image_path} is {(h, w)} (H, W)")
    return torch.from_numpy(np.ascontiguousarray(mask != 0)).float()[None]


# ------------------------------------------------------------------------------------------------- CUB

# CUB's 15 parts in CUB_200_2011/parts/parts.txt order, as CMR names them (akanazawa/cmr
# preprocess/cub/cub_sfm.m `kp_names`), and CMR's mirror permutation (data/cub.py `kp_perm`, 1-based there).
CUB_KEYPOINT_NAMES = (
    "Back", "Beak", "Belly", "Breast", "Crown", "FHead", "LEye", "LLeg",
    "LWing", "Nape", "REye", "RLeg", "RWing", "Tail", "Throat",
)  # fmt: skip
CUB_KEYPOINT_FLIP = tuple(i - 1 for i in (1, 2, 3, 4, 5, 6, 11, 12, 13, 10, 7, 8, 9, 14, 15))


class CUBItem(NamedTuple):
    """One CUB sample as indexed: the image path, 1-based box and parts, the bit-packed mask."""

    index: int  # 0-based position in the split's struct array
    rel_path: str
    image_path: Path
    bbox: np.ndarray  # (4,) x1, y1, x2, y2, 1-based
    parts: np.ndarray  # (3, 15) x, y, visibility, 1-based
    mask_bits: np.ndarray  # np.packbits of the (H, W) mask
    mask_shape: tuple[int, int]
    sfm: np.ndarray | None  # (7,) s, tx, ty (1-based, as stored), qw, qx, qy, qz


@READERS.register("cub")
class CUBReader(CategoryReader):
    """CUB-200-2011 birds with CMR's cleaned annotation files and SfM poses (akanazawa/cmr doc/train.md).

    `cachedir/cub/data/<split>_cub_cleaned.mat` holds one variable `images`, a 1 x N struct array (CMR's
    doc/files.md in its forks, and data/base.py for the fields it reads) with `rel_path` (under
    CUB_200_2011/images/), `bbox` (struct x1, y1, x2, y2, 1-based), `parts` (3 x 15: x, y, visibility;
    1-based), `mask` (H x W logical, Mask R-CNN), and id, train, test, width, height, class_id (not read).
    `cachedir/cub/sfm/anno_<split>.mat` holds `sfm_anno`, a struct array of the same length and order with
    `scale` (1 x 1), `trans` (2 x 1) and `rot` (3 x 3) (CMR preprocess/cub/cub_sfm.m).

    Splits are CMR's: "train" (5964 images), "testval" (5747) and its random halves "val" / "test"
    (preprocess/cub/split_cub.m: `test = inds(1:half)`, `val = inds(half:end)`), which share one image:
    the overlap is CMR's and is kept, so results stay comparable with CMR / TTP numbers.

    `sfm_pose` (when `sfm=True`) is CMR's (7,) float32 layout (data/base.py `sfm_pose`): (s, tx, ty, qw, qx, qy,
    qz), s and t in the ORIGINAL image's 0-based pixels and q = `geometry.matrix_to_quaternion(rot)` (w >= 0;
    CMR's `quaternion_from_matrix` gives the same rotation, possibly as -q). With R = quaternion_to_matrix(q),
    the SfM mean shape `S` (3, 15) of anno_train.mat projects as `x (2, 15) = s * (R @ S)[:2] + t[:, None]`
    onto the keypoints (a weak-perspective camera, column vectors, x right, y down; cub_sfm.m). In PyTorch3D's
    row-vector convention `X_view = X @ R_p3d` the same rotation is `R_p3d = R.T`. The file's `trans` is
    1-based (cub_sfm.m builds it from the 1-based parts): t = trans - 1.

    Args:
        root: folder holding CUB_200_2011/images/ and CMR's cachedir/ (see LAYOUT).
        split: "train", "val", "test" or "testval".
        sfm: read cachedir/cub/sfm/anno_<split>.mat and return `sfm_pose`; False: no `sfm_pose`.
    The masks of every image are read at construction (bit-packed: ~140 MB for train).
    """

    NAME = "cub"
    SPLITS = ("train", "val", "test", "testval")
    KEYPOINT_NAMES = CUB_KEYPOINT_NAMES
    KEYPOINT_FLIP = CUB_KEYPOINT_FLIP
    LAYOUT = (
        "<root>/\n"
        "  CUB_200_2011/images/<class>/<image>.jpg\n"
        "  cachedir/cub/data/{train,val,test,testval}_cub_cleaned.mat   (CMR: variable `images`)\n"
        "  cachedir/cub/sfm/anno_{train,val,test,testval}.mat           (CMR: variable `sfm_anno`)"
    )

    def __init__(self, root: str | Path, split: str = "train", sfm: bool = True):
        self.sfm = bool(sfm)
        super().__init__(root, split)

    def _index(self) -> list[CUBItem]:
        anno_path = require_file(
            self.root / "cachedir/cub/data" / f"{self.split}_cub_cleaned.mat", self.LAYOUT
        )
        images = struct_list(read_mat_structs(anno_path, ["images"])["images"], f"{anno_path}: images")
        poses: list[Any] = [None] * len(images)
        sfm_path = None
        if self.sfm:
            sfm_path = require_file(self.root / "cachedir/cub/sfm" / f"anno_{self.split}.mat", self.LAYOUT)
            poses = struct_list(read_mat_structs(sfm_path, ["sfm_anno"])["sfm_anno"], f"{sfm_path}: sfm_anno")
            if len(poses) != len(images):
                raise ValueError(
                    f"{sfm_path}: sfm_anno has {len(poses)} entries but {anno_path} has {len(images)} images "
                    "(expected one pose per image, in the same order)"
                )
        img_dir = self.root / "CUB_200_2011" / "images"
        items = []
        for i, (data, pose) in enumerate(zip(images, poses)):
            where = f"{anno_path}: images({i + 1})"  # MATLAB's 1-based struct index
            rel_path = struct_field(data, "rel_path", where)
            if not isinstance(rel_path, str) or not rel_path:
                raise ValueError(f"{where}.rel_path: expected a relative image path, got {rel_path!r}")
            where = f"{where} ({rel_path})"
            box = struct_field(data, "bbox", where)
            bbox = np.array(
                [
                    _number(struct_field(box, k, f"{where}.bbox"), f"{where}.bbox.{k}")
                    for k in ("x1", "y1", "x2", "y2")
                ]
            )
            parts = _array(struct_field(data, "parts", where), (3, len(CUB_KEYPOINT_NAMES)), f"{where}.parts")
            if not np.isin(parts[2], (0.0, 1.0)).all():
                raise ValueError(f"{where}.parts: row 3 (visibility) must be 0 or 1, got {parts[2].tolist()}")
            mask = np.asarray(struct_field(data, "mask", where))
            if mask.ndim != 2 or mask.size == 0:
                raise ValueError(f"{where}.mask: expected an (H, W) mask, got shape {mask.shape}")
            sfm = None
            if pose is not None:
                pwhere = f"{sfm_path}: sfm_anno({i + 1})"
                rot = _array(struct_field(pose, "rot", pwhere), (3, 3), f"{pwhere}.rot")
                if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-4 or np.linalg.det(rot) < 0:
                    raise ValueError(f"{pwhere}.rot: expected a rotation matrix (orthonormal, det +1)")
                trans = _array(
                    np.asarray(struct_field(pose, "trans", pwhere)).reshape(-1), (2,), f"{pwhere}.trans"
                )
                scale = _number(struct_field(pose, "scale", pwhere), f"{pwhere}.scale")
                quat = matrix_to_quaternion(torch.from_numpy(rot)).numpy()  # (4,) w, x, y, z; float64
                sfm = np.concatenate([[scale], trans, quat])
            items.append(
                CUBItem(i, rel_path, img_dir / rel_path, bbox, parts, np.packbits(mask != 0), mask.shape, sfm)
            )
        return items

    def _files(self, item: CUBItem) -> list[Path]:
        return [item.image_path]

    def _load(self, item: CUBItem) -> dict[str, Any]:
        image = load_rgb(item.image_path)
        h, w = item.mask_shape
        mask = np.unpackbits(item.mask_bits, count=h * w).reshape(h, w)
        sample = {
            "image": image,
            "mask": _mask_tensor(mask, image, f"cub {self.split} images({item.index + 1})", item.image_path),
            "keypoints": keypoints_from_one_based(item.parts[:2].T, item.parts[2] > 0),
            "bbox": torch.from_numpy(item.bbox - 1.0).float(),
            "name": f"cub/{Path(item.rel_path).with_suffix('').as_posix()}",
        }
        if item.sfm is not None:
            pose = item.sfm.copy()
            pose[1:3] -= 1.0  # 1-based -> 0-based pixels
            sample["sfm_pose"] = torch.from_numpy(pose).float()
        return sample


# ------------------------------------------------------------------------------------------- PASCAL3D+

# Anchor (keypoint) names of each category as the PASCAL3D+ release 1.1 annotations name the fields of
# `record.objects(j).anchors` (and the CAD models in CAD/<category>.mat), sorted like CMR sorts them
# (akanazawa/cmr preprocess/pascal/extract_class_data_p3d.m: `sort(fieldnames(anchors))`): the order of the
# sample's keypoints.
PASCAL3D_ANCHORS: dict[str, tuple[str, ...]] = {
    cat: tuple(sorted(names.split()))
    for cat, names in {
        "aeroplane": "left_elevator left_wing noselanding right_elevator right_wing rudder_lower rudder_upper tail",
        "bicycle": "head_center left_back_wheel left_front_wheel left_handle left_pedal_center right_back_wheel "
        "right_front_wheel right_handle right_pedal_center seat_back seat_front",
        "boat": "head head_down head_left head_right tail_left tail_right tail",
        "bottle": "mouth body body_left body_right bottom bottom_left bottom_right",
        "bus": "body_back_left_lower body_back_left_upper body_back_right_lower body_back_right_upper "
        "body_front_left_upper body_front_right_upper body_front_left_lower body_front_right_lower "
        "left_back_wheel left_front_wheel right_back_wheel right_front_wheel",
        "car": "left_front_wheel left_back_wheel right_front_wheel right_back_wheel upper_left_windshield "
        "upper_right_windshield upper_left_rearwindow upper_right_rearwindow left_front_light "
        "right_front_light left_back_trunk right_back_trunk",
        "chair": "back_upper_left back_upper_right seat_upper_left seat_upper_right seat_lower_left "
        "seat_lower_right leg_upper_left leg_upper_right leg_lower_left leg_lower_right",
        "diningtable": "leg_upper_left leg_upper_right leg_lower_left leg_lower_right top_upper_left "
        "top_upper_right top_lower_left top_lower_right top_up top_down top_left top_right",
        "motorbike": "back_seat front_seat head_center headlight_center left_back_wheel left_front_wheel "
        "left_handle_center right_back_wheel right_front_wheel right_handle_center",
        "sofa": "front_bottom_left front_bottom_right seat_bottom_left seat_bottom_right left_bottom_back "
        "right_bottom_back top_left_corner top_right_corner seat_top_left seat_top_right",
        "train": "head_left_bottom head_left_top head_right_bottom head_right_top head_top mid1_left_bottom "
        "mid1_left_top mid1_right_bottom mid1_right_top mid2_left_bottom mid2_left_top mid2_right_bottom "
        "mid2_right_top tail_left_bottom tail_left_top tail_right_bottom tail_right_top",
        "tvmonitor": "front_bottom_left front_bottom_right front_top_left front_top_right back_bottom_left "
        "back_bottom_right back_top_left back_top_right",
    }.items()
}

# CMR's renaming of the sorted anchors ("correct inconsistent naming in pascal3d", 1-based indices into the
# sorted names; extract_class_data_p3d.m `kps_correction_inds`): keypoint k of a sample is the sorted anchor
# k, and its name is sorted_names[correction[k] - 1]. Identity for the other categories.
PASCAL3D_NAME_CORRECTION = {
    "car": (1, 6, 7, 8, 5, 2, 3, 4, 9, 12, 11, 10),
    "aeroplane": (4, 5, 3, 1, 2, 6, 7, 8),
}
PASCAL3D_KEYPOINT_NAMES: dict[str, tuple[str, ...]] = {
    cat: tuple(names[i - 1] for i in PASCAL3D_NAME_CORRECTION.get(cat, range(1, len(names) + 1)))
    for cat, names in PASCAL3D_ANCHORS.items()
}
# CMR's kp_perm_inds (pascal_sfm.m `findKpsPerm`) on the corrected names.
PASCAL3D_KEYPOINT_FLIP = {cat: flip_permutation(names) for cat, names in PASCAL3D_KEYPOINT_NAMES.items()}
PASCAL3D_CATEGORIES = tuple(sorted(PASCAL3D_ANCHORS))

# CMR keeps an object when it has more than this many visible keypoints (extract_class_data_p3d.m:
# `min_vis_kps = 3`, dropped when `sum(kps_vis) <= min_vis_kps`).
PASCAL3D_MIN_VISIBLE = 3


class Pascal3DItem(NamedTuple):
    """One kept PASCAL3D+ object: its files, 1-based box and keypoints, CAD index."""

    annotation: Path
    image_path: Path
    mask_path: Path | None
    object_index: int  # 1-based j of record.objects(j), as CMR's voc_rec_id
    bbox: np.ndarray  # (4,) 1-based x1, y1, x2, y2
    xy: np.ndarray  # (K, 2) 1-based, in PASCAL3D_ANCHORS order
    visible: np.ndarray  # (K,) bool
    cad_index: int  # 1-based, as stored
    name: str


def _flag(obj: Any, name: str, where: str) -> bool:
    return _number(struct_field(obj, name, where), f"{where}.{name}") != 0


def parse_pascal3d_object(
    obj: Any, category: str, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Apply CMR's keep rule to one `record.objects(j)` and read it.

    An object is kept when its class is `category`, it is not difficult, truncated or occluded, and more than
    `PASCAL3D_MIN_VISIBLE` anchors have a location (extract_class_data_p3d.m; an anchor is visible when its
    `location` is not empty; an object whose `anchors` is empty has none).

    Returns:
        None when dropped, else (bbox (4,) 1-based, xy (K, 2) 1-based, visible (K,) bool, cad_index).
    Raises:
        ValueError naming `where` and the field for a missing field, an anchor of another name set, or an
        anchor location that is neither empty nor 2 numbers.
    """
    if str(struct_field(obj, "class", where)) != category:
        return None
    if any(_flag(obj, f, where) for f in ("difficult", "truncated", "occluded")):
        return None
    names = PASCAL3D_ANCHORS[category]
    anchors = struct_field(obj, "anchors", where)
    xy = np.zeros((len(names), 2))
    visible = np.zeros(len(names), dtype=bool)
    if _is_struct(anchors):
        fields = set(anchors._fieldnames)
        if fields != set(names):
            raise ValueError(
                f"{where}.anchors: expected the {len(names)} {category} anchors {list(names)}; missing "
                f"{sorted(set(names) - fields)}, unexpected {sorted(fields - set(names))}"
            )
        for k, n in enumerate(names):
            loc = np.asarray(struct_field(getattr(anchors, n), "location", f"{where}.anchors.{n}"))
            if loc.size:
                xy[k] = _array(loc.reshape(-1), (2,), f"{where}.anchors.{n}.location")
                visible[k] = True
    elif np.asarray(anchors).size:
        raise ValueError(f"{where}.anchors: expected a struct of anchors or [], got {type(anchors).__name__}")
    if visible.sum() <= PASCAL3D_MIN_VISIBLE:
        return None
    bbox = _array(np.asarray(struct_field(obj, "bbox", where)).reshape(-1), (4,), f"{where}.bbox")
    cad_index = int(_number(struct_field(obj, "cad_index", where), f"{where}.cad_index"))
    return bbox, xy, visible, cad_index


@READERS.register("pascal3d")
class Pascal3DReader(CategoryReader):
    """PASCAL3D+ release 1.1, one category, read from the raw annotations, with CMR's object selection.

    `Annotations/<category>_{pascal,imagenet}/<id>.mat` holds `record` with `filename` (under
    Images/<category>_<subset>/) and `objects`, a struct array with `class`, `bbox` (x1, y1, x2, y2,
    1-based), `difficult`, `truncated`, `occluded`, `anchors` (one struct per anchor name with `location`
    [x y] 1-based or [] and `status`), `viewpoint` and `cad_index` (1-based index of the CAD model in
    CAD/<category>.mat, i.e. CAD/<category>/<cad_index:02d>.off).

    Objects kept: those of `parse_pascal3d_object` (CMR's rule). CMR then also drops objects without a
    segmentation (PASCAL: VOC's polygon masks; ImageNet: a Mask R-CNN detection of IoU >= 0.8) and those with
    a large SfM reprojection error (preprocess_p3d.m); neither is part of the release, so neither is applied.

    Splits (CMR preprocess_p3d.m / extract_class_data_p3d.m): "train" = the PASCAL objects whose image id is
    in VOC 2012 ImageSets/Main/train.txt, plus every ImageNet object (both of PASCAL3D+'s ImageNet lists;
    CMR's `is_train = 1`) when `imagenet`; "val" = the other PASCAL objects (VOC val), the set CMR and TTP
    report on. Every annotation file of the category's folders is read (CMR lists the folder, not a split
    file); an image that a kept object's record names must exist (FileNotFoundError naming it).

    Keypoints (K, 3) follow the sorted anchor names `PASCAL3D_ANCHORS[category]`; their names, with CMR's
    renaming for car and aeroplane, are the instance's `KEYPOINT_NAMES`, and their mirror permutation its
    `KEYPOINT_FLIP` (`PASCAL3D_KEYPOINT_NAMES[category]`, `PASCAL3D_KEYPOINT_FLIP[category]`).

    Masks: the release has none. With `mask_root`, the sample's `mask` is read from
    `<mask_root>/<category>_<subset>/<id>_<j>.png` (single-channel PNG of the image's size, nonzero = the
    object; j = the 1-based object index in `record.objects`, CMR's `voc_rec_id`), and every kept object needs
    its file. Without `mask_root` the sample has no `mask` key (the "category" schema requires one: a
    training setup that needs masks must configure `mask_root`).

    Args:
        root: the PASCAL3D+_release1.1 folder (see LAYOUT).
        split: "train" or "val".
        category: one of `PASCAL3D_CATEGORIES` (TTP: car, aeroplane, motorbike).
        mask_root: folder of the per-object mask PNGs, or None.
        imagenet: add the ImageNet objects to "train" (CMR and TTP do).
        voc_sets_dir: folder of VOC's train.txt; default <root>/PASCAL/VOCdevkit/VOC2012/ImageSets/Main.
    Samples add `cad_index` (int64 scalar tensor, 1-based as stored) for the 3D IoU against the CAD model.
    """

    NAME = "pascal3d"
    SPLITS = ("train", "val")
    CATEGORIES = PASCAL3D_CATEGORIES
    LAYOUT = (
        "<root>/   (PASCAL3D+_release1.1)\n"
        "  Annotations/<category>_pascal/<id>.mat     Annotations/<category>_imagenet/<id>.mat\n"
        "  Images/<category>_pascal/<id>.jpg          Images/<category>_imagenet/<id>.JPEG\n"
        "  PASCAL/VOCdevkit/VOC2012/ImageSets/Main/train.txt   (VOC 2012 train ids)\n"
        "  CAD/<category>.mat\n"
        "<mask_root>/<category>_{pascal,imagenet}/<id>_<object index, 1-based>.png   (optional)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        category: str = "car",
        mask_root: str | Path | None = None,
        imagenet: bool = True,
        voc_sets_dir: str | Path | None = None,
    ):
        if category not in PASCAL3D_CATEGORIES:
            raise ValueError(
                f"pascal3d: unknown category {category!r}; allowed values: {', '.join(PASCAL3D_CATEGORIES)}"
            )
        self.category = category
        self.KEYPOINT_NAMES = PASCAL3D_KEYPOINT_NAMES[category]
        self.KEYPOINT_FLIP = PASCAL3D_KEYPOINT_FLIP[category]
        self.mask_root = None if mask_root is None else require_dir(mask_root, self.LAYOUT)
        self.imagenet = bool(imagenet)
        self.voc_sets_dir = voc_sets_dir
        super().__init__(root, split)

    def _annotation_files(self, subset: str) -> list[Path]:
        folder = require_dir(self.root / "Annotations" / f"{self.category}_{subset}", self.LAYOUT)
        return sorted(folder.glob("*.mat"))

    def _index(self) -> list[Pascal3DItem]:
        sets_dir = (
            Path(self.voc_sets_dir)
            if self.voc_sets_dir
            else self.root / "PASCAL/VOCdevkit/VOC2012/ImageSets/Main"
        )
        voc_train = set(read_split_list(require_file(sets_dir / "train.txt", self.LAYOUT)))
        files = [
            ("pascal", p)
            for p in self._annotation_files("pascal")
            if (p.stem in voc_train) == (self.split == "train")
        ]
        if self.split == "train" and self.imagenet:
            files += [("imagenet", p) for p in self._annotation_files("imagenet")]
        items = []
        for subset, path in files:
            items += self._read_annotation(path, subset)
        return items

    def _read_annotation(self, path: Path, subset: str) -> list[Pascal3DItem]:
        record = read_mat_structs(path, ["record"])["record"]
        filename = struct_field(record, "filename", f"{path}: record")
        if not isinstance(filename, str) or not filename:
            raise ValueError(f"{path}: record.filename: expected an image file name, got {filename!r}")
        objects = struct_list(struct_field(record, "objects", f"{path}: record"), f"{path}: record.objects")
        items = []
        for j, obj in enumerate(objects, 1):
            parsed = parse_pascal3d_object(obj, self.category, f"{path}: record.objects({j})")
            if parsed is None:
                continue
            bbox, xy, visible, cad_index = parsed
            group = f"{self.category}_{subset}"
            mask_path = None if self.mask_root is None else self.mask_root / group / f"{path.stem}_{j}.png"
            items.append(
                Pascal3DItem(
                    path,
                    self.root / "Images" / group / filename,
                    mask_path,
                    j,
                    bbox,
                    xy,
                    visible,
                    cad_index,
                    f"pascal3d/{group}/{path.stem}_{j}",
                )
            )
        return items

    def _files(self, item: Pascal3DItem) -> list[Path]:
        return [item.image_path] + ([item.mask_path] if item.mask_path is not None else [])

    def _load(self, item: Pascal3DItem) -> dict[str, Any]:
        image = load_rgb(item.image_path)
        sample: dict[str, Any] = {"image": image}
        if item.mask_path is not None:
            sample["mask"] = _mask_tensor(
                load_png_uint(item.mask_path), image, str(item.mask_path), item.image_path
            )
        sample.update(
            keypoints=keypoints_from_one_based(item.xy, item.visible),
            bbox=torch.from_numpy(item.bbox - 1.0).float(),
            cad_index=torch.tensor(item.cad_index, dtype=torch.int64),
            name=item.name,
        )
        return sample


__all__: Sequence[str] = [
    "CUBReader",
    "Pascal3DReader",
    "CategoryReader",
    "CUB_KEYPOINT_NAMES",
    "CUB_KEYPOINT_FLIP",
    "PASCAL3D_ANCHORS",
    "PASCAL3D_CATEGORIES",
    "PASCAL3D_KEYPOINT_FLIP",
    "PASCAL3D_KEYPOINT_NAMES",
    "PASCAL3D_MIN_VISIBLE",
    "flip_permutation",
    "keypoints_from_one_based",
    "parse_pascal3d_object",
    "read_mat_structs",
    "struct_field",
    "struct_list",
]
