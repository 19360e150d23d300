"""Readers of TTP's real datasets (CUB with CMR's .mat files, PASCAL3D+), on tiny datasets written in those
datasets' own layouts by tests/category_format_writers.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from category_format_writers import (
    CUB_RELS,
    cub_image_struct,
    p3d_object,
    random_rotation,
    save_image,
    save_mask_png,
    savemat,
    struct_array,
    truncate,
    write_cub,
    write_p3d_annotation,
    write_p3d_image,
    write_voc_sets,
)

import datamodules.category.readers  # noqa: F401  (registers the readers)
from datamodules.category.readers import (
    CUB_KEYPOINT_FLIP,
    CUB_KEYPOINT_NAMES,
    PASCAL3D_ANCHORS,
    PASCAL3D_CATEGORIES,
    PASCAL3D_KEYPOINT_FLIP,
    PASCAL3D_KEYPOINT_NAMES,
    CUBReader,
    Pascal3DReader,
    flip_permutation,
)
from datamodules.registry import READERS
from datamodules.schema import check_sample
from geometry.rotations import quaternion_to_matrix
from helpers import TOL, assert_close

JPEG_TOL = 0.06  # mean |difference| of a quality-100 JPEG round trip, in [0, 1] units
F32 = TOL[torch.float32]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def as_float(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def expected_keypoints(parts: np.ndarray) -> np.ndarray:
    """Slow reference: (3, K) 1-based parts -> (K, 3) 0-based x, y, visibility (x = y = 0 when hidden)."""
    out = np.zeros((parts.shape[1], 3))
    for k in range(parts.shape[1]):
        if parts[2, k] > 0:
            out[k] = (parts[0, k] - 1, parts[1, k] - 1, 1)
    return out


# ------------------------------------------------------------------------------------------------- CUB


def test_registry_names_the_readers():
    assert READERS["cub"] is CUBReader and READERS["pascal3d"] is Pascal3DReader
    assert CUBReader.SCHEMA == Pascal3DReader.SCHEMA == "category"


@pytest.mark.parametrize("split", ["train", "val", "test", "testval"])
def test_cub_reads_cmr_files_0_based(tmp_path, rng, split):
    written = write_cub(tmp_path, rng, split=split)
    reader = READERS["cub"](root=tmp_path, split=split)
    assert len(reader) == len(CUB_RELS) and reader.check_files() == len(CUB_RELS)
    for i, s in enumerate(reader):
        check_sample(s, "category", f"cub[{i}]", strict=True)
        st, pose = written["structs"][i], written["poses"][i]
        h, w = st["mask"].shape
        assert s["image"].shape == (3, h, w) and s["image"].dtype == torch.float32
        assert (s["image"] - as_float(written["images"][i])).abs().mean() < JPEG_TOL
        assert s["mask"].shape == (1, h, w) and s["mask"].dtype == torch.float32
        assert torch.equal(s["mask"][0], torch.from_numpy(st["mask"]).float())
        assert_close(s["keypoints"], expected_keypoints(st["parts"]).astype(np.float32), "keypoints", **F32)
        assert 0 < s["keypoints"][:, 2].sum() < 15  # some hidden keypoints, at x = y = 0
        b = st["bbox"]
        assert_close(
            s["bbox"], np.float32([b["x1"] - 1, b["y1"] - 1, b["x2"] - 1, b["y2"] - 1]), "bbox", **F32
        )
        sfm = s["sfm_pose"]  # (s, tx, ty, qw, qx, qy, qz), CMR's layout
        assert sfm.shape == (7,) and sfm.dtype == torch.float32 and sfm[3] >= 0
        assert_close(sfm[:1], np.float32([pose["scale"]]), "scale", **F32)
        assert_close(sfm[1:3], (pose["trans"][:, 0] - 1).astype(np.float32), "trans", atol=1e-5, rtol=1e-5)
        assert_close(quaternion_to_matrix(sfm[3:].double()), pose["rot"], "rot", atol=1e-6, rtol=1e-6)
        assert s["name"] == "cub/" + CUB_RELS[i].rsplit(".", 1)[0]


def test_cub_sfm_pose_projects_onto_the_keypoints(tmp_path, rng):
    """The documented convention: x = scale * (rot @ S)[:2] + trans lands on the 0-based keypoints when
    the file's parts are the 1-based projection (cub_sfm.m builds trans from the 1-based parts)."""
    h, w = 40, 50
    S = rng.uniform(-1, 1, size=(3, 15))
    rot, scale, trans = random_rotation(rng), 8.0, np.array([[25.0], [20.0]])  # file values, 1-based
    parts = np.ones((3, 15))
    parts[:2] = scale * (rot @ S)[:2] + trans
    save_image(tmp_path / "CUB_200_2011/images/a/b.jpg", np.zeros((h, w, 3), np.uint8))
    struct = cub_image_struct("a/b.jpg", np.array([1, 1, w, h]), parts, np.ones((h, w), bool), 0)
    savemat(tmp_path / "cachedir/cub/data/train_cub_cleaned.mat", {"images": struct_array([struct])})
    pose = {"rot": rot, "scale": scale, "trans": trans}
    savemat(tmp_path / "cachedir/cub/sfm/anno_train.mat", {"sfm_anno": struct_array([pose])})
    reader = CUBReader(tmp_path, "train")  # a 1 x 1 struct array loads as one struct, not an array
    assert len(reader) == 1
    s = reader[0]
    p = s["sfm_pose"].double()
    proj = p[0] * (quaternion_to_matrix(p[3:]) @ torch.from_numpy(S))[:2] + p[1:3, None]
    assert_close(proj.T, s["keypoints"][:, :2].double(), "projection", atol=1e-4, rtol=1e-5)
    assert_close(s["bbox"], np.float32([0, 0, w - 1, h - 1]), "bbox", **F32)


def test_cub_without_sfm_and_grey_images(tmp_path, rng):
    write_cub(tmp_path, rng, split="val", sfm=False, grey=1)
    with pytest.raises(FileNotFoundError, match="anno_val.mat"):
        CUBReader(tmp_path, "val")
    reader = CUBReader(tmp_path, "val", sfm=False)
    s = reader[1]
    assert "sfm_pose" not in s and s["image"].shape[0] == 3
    assert torch.equal(s["image"][0], s["image"][1]) and torch.equal(s["image"][0], s["image"][2])


def test_cub_flip_is_cmr_permutation_and_an_involution():
    perm = np.array(CUB_KEYPOINT_FLIP)
    assert sorted(perm) == list(range(15)) and (perm[perm] == np.arange(15)).all()
    for k, name in enumerate(CUB_KEYPOINT_NAMES):  # LEye <-> REye, LLeg <-> RLeg, LWing <-> RWing
        mirrored = (
            {"L": "R", "R": "L"}[name[0]] + name[1:]
            if name[:2] in ("LE", "LL", "LW", "RE", "RL", "RW")
            else name
        )
        assert CUB_KEYPOINT_NAMES[perm[k]] == mirrored, (name, CUB_KEYPOINT_NAMES[perm[k]])
    assert CUBReader.KEYPOINT_FLIP == CUB_KEYPOINT_FLIP


def test_cub_split_and_root_errors(tmp_path, rng):
    with pytest.raises(ValueError, match="unknown split 'all'"):
        CUBReader(tmp_path, "all")
    with pytest.raises(FileNotFoundError, match="dataset directory not found"):
        CUBReader(tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="train_cub_cleaned.mat"):
        CUBReader(tmp_path, "train")


def _rewrite_images(written: dict, change) -> None:
    structs = [dict(s) for s in written["structs"]]
    change(structs)
    savemat(written["anno"], {"images": struct_array(structs)})


CUB_BAD_MAT = {
    "no images variable": (lambda w: savemat(w["anno"], {"imgs": struct_array(w["structs"])}), "'images'"),
    "struct without parts": (
        lambda w: _rewrite_images(w, lambda ss: [s.pop("parts") for s in ss]),
        r"images\(1\).*no field 'parts'",
    ),
    "bbox without y2": (
        lambda w: _rewrite_images(w, lambda ss: ss[1]["bbox"].pop("y2")),
        r"images\(2\).*bbox.*no field 'y2'",
    ),
    "parts of wrong shape": (
        lambda w: _rewrite_images(w, lambda ss: ss[1].update(parts=np.ones((2, 15)))),
        r"images\(2\).*parts.*\(3, 15\)",
    ),
    "parts visibility not 0/1": (
        lambda w: _rewrite_images(w, lambda ss: ss[0]["parts"].__setitem__((2, 3), 2.0)),
        "visibility",
    ),
    "empty mask": (lambda w: _rewrite_images(w, lambda ss: ss[0].update(mask=np.zeros((0, 0)))), "mask"),
    "zero-byte file": (lambda w: w["anno"].write_bytes(b""), "cannot read MATLAB file"),
    "truncated file": (lambda w: truncate(w["anno"], 0.6), "cannot read MATLAB file"),
}


@pytest.mark.parametrize("case", list(CUB_BAD_MAT))
def test_cub_bad_annotation_file_names_it(tmp_path, rng, case):
    written = write_cub(tmp_path, rng)
    corrupt, message = CUB_BAD_MAT[case]
    corrupt(written)
    with pytest.raises(ValueError, match=message) as err:
        CUBReader(tmp_path, "train")
    assert str(written["anno"]) in str(err.value)


CUB_BAD_SFM = {
    "fewer poses": (lambda w: {"sfm_anno": struct_array(w["poses"][:1])}, "1 entries but"),
    "pose without rot": (
        lambda w: {
            "sfm_anno": struct_array([{k: v for k, v in p.items() if k != "rot"} for p in w["poses"]])
        },
        r"sfm_anno\(1\).*no field 'rot'",
    ),
    "rot not a rotation": (
        lambda w: {"sfm_anno": struct_array([dict(p, rot=2 * p["rot"]) for p in w["poses"]])},
        r"sfm_anno\(1\)\.rot.*rotation",
    ),
    "trans of wrong shape": (
        lambda w: {"sfm_anno": struct_array([dict(p, trans=np.ones((3, 1))) for p in w["poses"]])},
        r"trans.*\(2,\)",
    ),
    "no sfm_anno variable": (lambda w: {"S": np.ones((3, 15))}, "'sfm_anno'"),
}


@pytest.mark.parametrize("case", list(CUB_BAD_SFM))
def test_cub_bad_sfm_file_names_it(tmp_path, rng, case):
    written = write_cub(tmp_path, rng)
    variables, message = CUB_BAD_SFM[case]
    savemat(written["sfm"], variables(written))
    with pytest.raises(ValueError, match=message) as err:
        CUBReader(tmp_path, "train")
    assert str(written["sfm"]) in str(err.value)


def test_cub_missing_truncated_or_mismatched_image_names_it(tmp_path, rng):
    write_cub(tmp_path, rng)
    reader = CUBReader(tmp_path, "train")
    first, second = (tmp_path / "CUB_200_2011/images" / rel for rel in CUB_RELS)
    second.unlink()
    with pytest.raises(FileNotFoundError, match=str(second)):
        reader.check_files()
    with pytest.raises(FileNotFoundError, match=str(second)):
        reader[1]
    truncate(first, 0.5)
    with pytest.raises(ValueError, match=str(first)):
        reader[0]
    save_image(first, np.zeros((5, 7, 3), np.uint8))  # not the size of its mask
    with pytest.raises(ValueError, match=r"mask is \(18, 24\).*\(5, 7\)"):
        reader[0]


# ------------------------------------------------------------------------------------------- PASCAL3D+

CAR = PASCAL3D_ANCHORS["car"]


def anchors(n_visible: int, offset: float) -> dict:
    """The first `n_visible` car anchors (sorted order) at 1-based (10 + k + offset, 5 + 2k), others hidden."""
    return {
        n: (np.array([10.0 + k + offset, 5.0 + 2 * k]) if k < n_visible else None) for k, n in enumerate(CAR)
    }


# image id -> subset, (H, W), objects; comment: kept or why not (CMR's rule)
P3D_SPEC = {
    "2008_000001": (
        "pascal",
        (30, 40),
        [
            p3d_object("car", anchors(4, 0), (3, 4, 30, 25), cad_index=2),  # kept: 4 > 3 visible
            p3d_object("car", anchors(3, 1), (1, 1, 9, 9)),  # dropped: only 3 visible
            p3d_object("car", anchors(8, 2), (1, 1, 9, 9), truncated=1),  # dropped: truncated
            p3d_object("car", anchors(8, 3), (1, 1, 9, 9), occluded=1),  # dropped: occluded
            p3d_object("car", anchors(8, 4), (1, 1, 9, 9), difficult=1),  # dropped: difficult
            p3d_object("person", None, (1, 1, 9, 9)),  # dropped: other class
            p3d_object("car", None, (1, 1, 9, 9)),  # dropped: no anchors
            p3d_object("car", anchors(12, 5), (2, 2, 40, 30), cad_index=7),  # kept: all visible
        ],
    ),
    "2008_000002": ("pascal", (20, 24), [p3d_object("car", anchors(6, 6), (5, 6, 20, 18), cad_index=3)]),
    "n02814533_1": (
        "imagenet",
        (22, 26),
        [
            p3d_object("car", anchors(5, 7), (2, 3, 26, 22), cad_index=9),
            p3d_object("car", anchors(9, 8), (2, 3, 26, 22), occluded=1),
        ],
    ),
}
P3D_TRAIN = [
    "pascal3d/car_pascal/2008_000001_1",
    "pascal3d/car_pascal/2008_000001_8",
    "pascal3d/car_imagenet/n02814533_1_1",
]
P3D_VAL = ["pascal3d/car_pascal/2008_000002_1"]


def write_p3d(root, rng, spec=P3D_SPEC, masks: bool = False):
    """The release layout for `spec` (VOC train = 2008_000001, val = 2008_000002); with `masks`, a mask PNG
    under root/masks for every object. Returns the images and masks by image id."""
    images, object_masks = {}, {}
    for image_id, (subset, (h, w), objects) in spec.items():
        write_p3d_annotation(root, "car", subset, image_id, objects, (h, w))
        images[image_id] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        write_p3d_image(root, "car", subset, image_id, images[image_id])
        for j in range(1, len(objects) + 1):
            m = rng.random((h, w)) > 0.5
            object_masks[f"{image_id}_{j}"] = m
            if masks:
                save_mask_png(root / "masks" / f"car_{subset}" / f"{image_id}_{j}.png", m)
    write_voc_sets(root, ["2008_000001", "2008_000003"], ["2008_000002"])
    return images, object_masks


def test_pascal3d_keeps_cmr_objects_per_split(tmp_path, rng):
    write_p3d(tmp_path, rng)
    train = READERS["pascal3d"](root=tmp_path, split="train", category="car")
    assert [it.name for it in train.items] == P3D_TRAIN
    val = Pascal3DReader(tmp_path, "val", category="car")
    assert [it.name for it in val.items] == P3D_VAL
    no_imagenet = Pascal3DReader(tmp_path, "train", category="car", imagenet=False)
    assert [it.name for it in no_imagenet.items] == P3D_TRAIN[:2]
    assert train.check_files() == 2  # two distinct images, no masks configured


def test_pascal3d_sample_is_0_based_in_sorted_anchor_order(tmp_path, rng):
    images, _ = write_p3d(tmp_path, rng)
    reader = Pascal3DReader(tmp_path, "train", category="car")
    objects = {  # name -> (image id, object spec)
        "pascal3d/car_pascal/2008_000001_1": ("2008_000001", P3D_SPEC["2008_000001"][2][0]),
        "pascal3d/car_pascal/2008_000001_8": ("2008_000001", P3D_SPEC["2008_000001"][2][7]),
        "pascal3d/car_imagenet/n02814533_1_1": ("n02814533_1", P3D_SPEC["n02814533_1"][2][0]),
    }
    for i, s in enumerate(reader):
        assert "mask" not in s  # no mask_root
        check_sample(dict(s, mask=None), "category", f"pascal3d[{i}]")
        image_id, obj = objects[s["name"]]
        assert (s["image"] - as_float(images[image_id])).abs().mean() < JPEG_TOL
        expected = np.zeros((len(CAR), 3))
        for k, n in enumerate(CAR):  # slow reference: anchors by sorted name, 1-based -> 0-based
            loc = obj["anchors"][n]["location"]
            if loc.size:
                expected[k] = (loc[0, 0] - 1, loc[0, 1] - 1, 1)
        assert_close(s["keypoints"], expected.astype(np.float32), "keypoints", **F32)
        assert_close(s["bbox"], (obj["bbox"][0] - 1).astype(np.float32), "bbox", **F32)
        assert s["cad_index"].dtype == torch.int64 and s["cad_index"].item() == int(obj["cad_index"])
    assert reader.KEYPOINT_NAMES == PASCAL3D_KEYPOINT_NAMES["car"]
    assert reader.KEYPOINT_FLIP == PASCAL3D_KEYPOINT_FLIP["car"]


def test_pascal3d_masks_from_mask_root(tmp_path, rng):
    _, masks = write_p3d(tmp_path, rng, masks=True)
    reader = Pascal3DReader(tmp_path, "train", category="car", mask_root=tmp_path / "masks")
    assert reader.check_files() == 2 + 3
    for i, s in enumerate(reader):
        check_sample(s, "category", f"pascal3d[{i}]")
        key = s["name"].rsplit("/", 1)[1]
        assert torch.equal(s["mask"][0], torch.from_numpy(masks[key]).float())
    missing = tmp_path / "masks/car_pascal/2008_000001_8.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        reader.check_files()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        reader[1]
    small = tmp_path / "masks/car_pascal/2008_000001_1.png"
    save_mask_png(small, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"mask is \(3, 4\)"):
        reader[0]
    with pytest.raises(FileNotFoundError, match="dataset directory not found"):
        Pascal3DReader(tmp_path, "train", category="car", mask_root=tmp_path / "no_masks")


@pytest.mark.parametrize("category", PASCAL3D_CATEGORIES)
def test_pascal3d_flip_is_a_left_right_involution(category):
    perm = np.array(PASCAL3D_KEYPOINT_FLIP[category])
    names = PASCAL3D_KEYPOINT_NAMES[category]
    assert sorted(perm) == list(range(len(names))) and (perm[perm] == np.arange(len(names))).all()
    assert sorted(names) == list(PASCAL3D_ANCHORS[category])  # a renaming, not new names
    for k, n in enumerate(names):
        swapped = n.replace("left", "#").replace("right", "left").replace("#", "right")
        assert names[perm[k]] == swapped, (n, names[perm[k]])


def test_pascal3d_cmr_renaming_for_car_and_aeroplane():
    # CMR's car keypoint names and kp_perm_inds (1-based), worked out by hand from extract_class_data_p3d.m
    # (kps_correction_inds of the sorted anchors) and pascal_sfm.m (findKpsPerm).
    assert PASCAL3D_KEYPOINT_NAMES["car"][:4] == (
        "left_back_trunk",
        "right_back_wheel",
        "right_front_light",
        "right_front_wheel",
    )
    assert np.array_equal(
        np.array(PASCAL3D_KEYPOINT_FLIP["car"]) + 1, [5, 6, 7, 8, 1, 2, 3, 4, 11, 12, 9, 10]
    )
    assert PASCAL3D_KEYPOINT_NAMES["aeroplane"] == (
        "right_elevator",
        "right_wing",
        "noselanding",
        "left_elevator",
        "left_wing",
        "rudder_lower",
        "rudder_upper",
        "tail",
    )
    assert PASCAL3D_KEYPOINT_NAMES["motorbike"] == PASCAL3D_ANCHORS["motorbike"]
    with pytest.raises(ValueError, match="no mirrored keypoint 'right_x'"):
        flip_permutation(["left_x", "tail"])


def test_pascal3d_argument_errors(tmp_path, rng):
    write_p3d(tmp_path, rng)
    with pytest.raises(ValueError, match="unknown category 'bird'.*aeroplane"):
        Pascal3DReader(tmp_path, "train", category="bird")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        Pascal3DReader(tmp_path, "test")
    (tmp_path / "PASCAL/VOCdevkit/VOC2012/ImageSets/Main/train.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train.txt"):
        Pascal3DReader(tmp_path, "train")


def _with_object(change):
    """P3D_SPEC with the first object of 2008_000001 replaced by change(copy of it)."""
    spec = dict(P3D_SPEC)
    subset, size, objects = spec["2008_000001"]
    objects = [dict(o) for o in objects]
    objects[0] = change(objects[0])
    spec["2008_000001"] = (subset, size, objects)
    return spec


def _bad_location(obj):
    anc = dict(obj["anchors"])
    anc[CAR[2]] = {"location": np.ones((1, 3)), "status": 1.0}
    return dict(obj, anchors=anc)


P3D_BAD = {
    "object without truncated": (
        _with_object(lambda o: {k: v for k, v in o.items() if k != "truncated"}),
        r"objects\(1\).*no field 'truncated'",
    ),
    "object without bbox": (
        _with_object(lambda o: {k: v for k, v in o.items() if k != "bbox"}),
        r"objects\(1\).*no field 'bbox'",
    ),
    "bbox of 3 numbers": (
        _with_object(lambda o: dict(o, bbox=np.ones((1, 3)))),
        r"objects\(1\)\.bbox.*\(4,\)",
    ),
    "location of 3 numbers": (_with_object(_bad_location), rf"anchors\.{CAR[2]}\.location.*\(2,\)"),
    "an anchor missing": (
        _with_object(lambda o: dict(o, anchors={k: v for k, v in o["anchors"].items() if k != CAR[0]})),
        rf"missing \['{CAR[0]}'\]",
    ),
}


@pytest.mark.parametrize("case", list(P3D_BAD))
def test_pascal3d_bad_object_names_file_and_field(tmp_path, rng, case):
    spec, message = P3D_BAD[case]
    write_p3d(tmp_path, rng, spec=spec)
    path = tmp_path / "Annotations/car_pascal/2008_000001.mat"
    with pytest.raises(ValueError, match=message) as err:
        Pascal3DReader(tmp_path, "train")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("case", ["no record", "record without objects", "zero bytes", "truncated"])
def test_pascal3d_bad_annotation_file_names_it(tmp_path, rng, case):
    write_p3d(tmp_path, rng)
    path = tmp_path / "Annotations/car_imagenet/n02814533_1.mat"
    if case == "no record":
        savemat(path, {"rec": {"filename": "a.JPEG"}})
        message = "no variable 'record'"
    elif case == "record without objects":
        savemat(path, {"record": {"filename": "n02814533_1.JPEG", "size": {"width": 26.0}}})
        message = "no field 'objects'"
    elif case == "zero bytes":
        path.write_bytes(b"")
        message = "cannot read MATLAB file"
    else:
        truncate(path, 0.5)
        message = "cannot read MATLAB file"
    with pytest.raises(ValueError, match=message) as err:
        Pascal3DReader(tmp_path, "train")
    assert str(path) in str(err.value)
    assert len(Pascal3DReader(tmp_path, "val")) == 1  # val reads no ImageNet file


def test_pascal3d_missing_or_truncated_image_names_it(tmp_path, rng):
    write_p3d(tmp_path, rng)
    reader = Pascal3DReader(tmp_path, "train")
    image = tmp_path / "Images/car_imagenet/n02814533_1.JPEG"
    truncate(image, 0.5)
    with pytest.raises(ValueError, match=str(image)):
        reader[2]
    image.unlink()
    with pytest.raises(FileNotFoundError, match=str(image)):
        reader.check_files()
    with pytest.raises(FileNotFoundError, match=str(image)):
        reader[2]


def test_pascal3d_flip_follows_the_instance_category(tmp_path, rng):
    names = PASCAL3D_ANCHORS["aeroplane"]
    obj = p3d_object("aeroplane", {n: np.array([1.0 + k, 2.0]) for k, n in enumerate(names)}, (1, 1, 9, 9))
    write_p3d_annotation(tmp_path, "aeroplane", "pascal", "2008_000009", [obj], (10, 12))
    write_p3d_image(tmp_path, "aeroplane", "pascal", "2008_000009", np.zeros((10, 12, 3), np.uint8))
    write_voc_sets(tmp_path, ["2008_000009"], [])
    planes = Pascal3DReader(tmp_path, "train", category="aeroplane", imagenet=False)
    assert planes.KEYPOINT_FLIP == PASCAL3D_KEYPOINT_FLIP["aeroplane"] != PASCAL3D_KEYPOINT_FLIP["car"]
    assert planes.KEYPOINT_NAMES == PASCAL3D_KEYPOINT_NAMES["aeroplane"]
    assert planes[0]["keypoints"].shape == (8, 3)


def test_samples_go_through_the_category_crop_and_mirror(tmp_path, rng):
    """The readers' samples are what `datamodules.category.crop` takes: CUB's (7,) sfm_pose, a mirror by
    the reader's KEYPOINT_FLIP; mirroring twice gives the cropped sample back."""
    from datamodules.category.crop import crop_sample, mirror_sample

    write_cub(tmp_path, rng)
    reader = CUBReader(tmp_path, "train")
    cropped = crop_sample(reader[0], size=16)
    assert cropped["image"].shape == (3, 16, 16) and cropped["sfm_pose"].shape == (7,)
    twice = mirror_sample(mirror_sample(cropped, reader.KEYPOINT_FLIP), reader.KEYPOINT_FLIP)
    for key in ("keypoints", "bbox", "sfm_pose"):
        assert_close(twice[key], cropped[key], key, **F32)
    assert torch.equal(twice["mask"], cropped["mask"])
