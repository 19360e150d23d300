"""Point-cloud (SSL) family data: the lineage's camera, the synthetic object classes, the ShapeNet (DRC) and
Pix3D readers on tiny files written in their layouts (tests/pointcloud_format_writers.py), the datamodule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from pointcloud_format_writers import save_py2_object_npy, write_drc_dataset, write_pix3d

import datamodules.pointcloud  # noqa: F401  (registration)
from datamodules.pointcloud.camera import lineage_intrinsics, project, project_to_ndc, world2cam
from datamodules.pointcloud.readers import drc_mask_from_depth, load_split_ids, square_crop
from datamodules.pointcloud.synthetic import SyntheticShapes
from datamodules.registry import DATAMODULES, READERS
from datamodules.schema import check_sample
from helpers import TOL, assert_close

F64 = torch.float64


# ------------------------------------------------------------------------------------------ camera
def official_world2cam(xyz: np.ndarray, az: float, el: float, d: float) -> np.ndarray:
    """ssl_3d_recon src/proj_codes.py world2cam for one cloud (P, 3), written out with numpy."""
    r_az = np.array([[1, 0, 0], [0, np.cos(az), -np.sin(az)], [0, np.sin(az), np.cos(az)]])
    r_el = np.array([[np.cos(el), 0, np.sin(el)], [0, 1, 0], [-np.sin(el), 0, np.cos(el)]])
    return ((r_el @ r_az) @ xyz.T - np.array([[0.0], [0.0], [d]])).T


def official_perspective(xyz: np.ndarray) -> np.ndarray:
    """ssl_3d_recon src/proj_codes.py perspective_transform for one cloud (P, 3)."""
    K = np.array([[120.0, 0.0, -32.0], [0.0, 120.0, -32.0], [0.0, 0.0, 1.0]])
    out = K @ xyz.T
    return np.concatenate([out[:2] / np.abs(xyz[:, 2]), np.abs(out[2:])]).T


def test_world2cam_and_project_match_the_official_formulas():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 50, 3, generator=g, dtype=F64) - 0.5
    az = (torch.rand(3, generator=g, dtype=F64) * 2 - 1) * math.pi
    el = torch.deg2rad(torch.tensor([-20.0, 10.0, 40.0], dtype=F64))
    cam = world2cam(pts, az, el, 2.0)
    proj = project(cam, lineage_intrinsics(64, F64))
    for b in range(3):
        ref = official_world2cam(pts[b].numpy(), float(az[b]), float(el[b]), 2.0)
        assert_close(cam[b], ref, f"world2cam[{b}]")
        assert_close(proj[b], official_perspective(ref), f"project[{b}]", **TOL[F64])
    assert_close(lineage_intrinsics(64), torch.tensor([[120.0, 0, -32], [0, 120.0, -32], [0, 0, 1]]), "K(64)")
    assert_close(lineage_intrinsics(128)[:2], 2 * lineage_intrinsics(64)[:2], "K scales with the image")


def _axis_points(az: torch.Tensor, el: torch.Tensor, s: list[float]) -> torch.Tensor:
    """World points R^T (0, 0, s_k) (B, K, 3) that world2cam's rotation R brings onto the optical axis."""
    eye = torch.eye(3, dtype=az.dtype).expand(len(az), 3, 3)
    r = world2cam(eye, az, el, 0.0).transpose(1, 2)  # world2cam(I) has rows R e_i, so its transpose is R
    return torch.tensor(s, dtype=az.dtype)[None, :, None] * r[:, 2, :][:, None, :]


def test_points_on_the_optical_axis_project_to_the_principal_point():
    az = torch.tensor([0.3, -2.0], dtype=F64)
    el = torch.tensor([0.5, -0.2], dtype=F64)
    world = torch.cat([torch.zeros(2, 1, 3, dtype=F64), _axis_points(az, el, [0.7, -0.1])], 1)
    rcd = project(world2cam(world, az, el, 2.0), lineage_intrinsics(64, F64))
    assert_close(rcd[..., :2], torch.full((2, 3, 2), 32.0, dtype=F64), "row, column of on-axis points")
    assert_close(rcd[:, 0, 2], torch.full((2,), 2.0, dtype=F64), "depth of the origin")
    assert_close(rcd[:, 1:, 2], 2.0 - torch.tensor([[0.7, -0.1]] * 2, dtype=F64), "depth along the axis")


def test_azimuth_and_elevation_rotate_as_documented():
    k = lineage_intrinsics(64, F64)
    # x is the image-vertical axis: a point on it keeps its row for every azimuth, at elevation 0
    az = torch.linspace(-math.pi, math.pi, 7, dtype=F64)
    rcd = project(world2cam(torch.tensor([[[0.3, 0.0, 0.0]]], dtype=F64).expand(7, 1, 3), az, 0 * az), k)
    assert_close(rcd[:, 0, 0], torch.full((7,), 32 + 120 * 0.3 / 2, dtype=F64), "row of (0.3, 0, 0)")
    assert_close(rcd[:, 0, 1], torch.full((7,), 32.0, dtype=F64), "column of (0.3, 0, 0)")
    # +y is to the right (larger column) at azimuth 0; azimuth 90 deg turns +y towards the camera (+z)
    y = torch.tensor([[[0.0, 0.5, 0.0]]], dtype=F64).expand(2, 1, 3)
    rcd = project(world2cam(y, torch.tensor([0.0, math.pi / 2], dtype=F64), torch.zeros(2, dtype=F64)), k)
    assert_close(rcd[0, 0], torch.tensor([32.0, 32 + 120 * 0.5 / 2, 2.0], dtype=F64), "(0, .5, 0) at az 0")
    assert_close(rcd[1, 0], torch.tensor([32.0, 32.0, 1.5], dtype=F64), "(0, .5, 0) at az 90")
    # elevation e > 0 puts the camera centre at (-2 sin e, 0, 2 cos e): above the object (up = -x)
    e = torch.tensor([math.radians(30.0)], dtype=F64)
    centre = torch.tensor([[[-2 * math.sin(e), 0.0, 2 * math.cos(e)]]], dtype=F64)
    assert_close(
        world2cam(centre, torch.zeros(1, dtype=F64), e, 2.0), torch.zeros(1, 1, 3, dtype=F64), "centre"
    )
    # and the up point (-0.3, 0, 0) moves down the image towards the centre row as the camera rises
    up = torch.tensor([[[-0.3, 0.0, 0.0]]], dtype=F64)
    rows = [float(project(world2cam(up, torch.zeros(1, dtype=F64), torch.tensor([v], dtype=F64)), k)[0, 0, 0])
            for v in (0.0, 0.3, 0.6)]  # fmt: skip
    assert rows[0] < rows[1] < rows[2] < 32, rows


def test_camera_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="points"):
        world2cam(torch.zeros(5, 3), torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="elevation"):
        world2cam(torch.zeros(2, 5, 3), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="intrinsics"):
        project(torch.zeros(2, 5, 3), torch.eye(4))


def test_project_to_ndc_lands_on_the_rasterized_pixel():
    from geometry.mesh_raster import rasterize_meshes

    # a small square around world point q in the x-z plane, seen face-on by the camera on +y (azimuth 90)
    q = torch.tensor([[0.1, -0.2, 0.05]])
    az, el = torch.tensor([math.pi / 2]), torch.tensor([0.0])
    quad = q + torch.tensor([[-1.0, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]]) * 0.03
    cam = world2cam(quad[None], az, el)
    frags = rasterize_meshes(
        project_to_ndc(cam, lineage_intrinsics(64), 64), torch.tensor([[0, 1, 2], [0, 2, 3]]), 64
    )
    rc = project(world2cam(q[None], az, el), lineage_intrinsics(64))[0, 0, :2].round().long()
    assert frags.pix_to_face[0, rc[0], rc[1], 0] >= 0, f"pixel {rc.tolist()} of the projected point is empty"
    covered = (frags.pix_to_face[0, :, :, 0] >= 0).nonzero().float().mean(0)
    assert_close(
        covered,
        project(world2cam(q[None], az, el), lineage_intrinsics(64))[0, 0, :2],
        "centroid",
        atol=0.6,
        rtol=0,
    )  # fmt: skip  (pixel quantization of a ~3.6 px square)


# ------------------------------------------------------------------------------------------ synthetic
@pytest.mark.parametrize("category", ["car", "chair", "airplane"])
def test_synthetic_mask_covers_the_projected_ground_truth(category):
    d = SyntheticShapes(split="val", num_samples=4, category=category)
    inside, inside_dilated, total = 0, 0, 0
    for i in range(len(d)):
        s = check_sample(d[i], "point_cloud", f"synthetic_shapes[{i}]", strict=True)
        assert (
            s["image"].shape == (3, 64, 64)
            and s["mask"].shape == (1, 64, 64)
            and s["points"].shape == (1024, 3)
        )
        mask = s["mask"][0] > 0.5
        assert 0.02 < mask.float().mean() < 0.6, "the object covers part of the image"
        rc = project(world2cam(s["points"][None], s["pose"][:1], s["pose"][1:]), d.intrinsics)[0, :, :2]
        rc = rc.round().long()
        assert bool(((rc >= 0) & (rc < 64)).all()), "every ground-truth point projects into the image"
        dilated = F.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0] > 0.5
        inside += int(mask[rc[:, 0], rc[:, 1]].sum())
        inside_dilated += int(dilated[rc[:, 0], rc[:, 1]].sum())
        total += len(rc)
        # the silhouette is where the points are: most mask pixels have a projected point within 2 px
        near = torch.zeros(64, 64)
        near[rc[:, 0], rc[:, 1]] = 1
        near = F.max_pool2d(near[None, None], 5, 1, 2)[0, 0] > 0
        assert float((mask & near).sum() / mask.sum()) > 0.9
    assert inside_dilated / total > 0.995, (inside_dilated, total)
    assert inside / total > 0.85, (inside, total)  # thin parts (wings, legs) cover few pixel centres


def test_synthetic_normalization_pose_ranges_and_determinism():
    d = SyntheticShapes(split="train", num_samples=16, category="chair", seed=3)
    asm = d.assembly(5)
    lo, hi = asm.verts.min(0).values, asm.verts.max(0).values
    assert_close((hi - lo).norm(), torch.tensor(1.0), "bounding-box diagonal")
    assert_close((hi + lo) / 2, torch.zeros(3), "bounding-box centre", atol=1e-6, rtol=0)
    poses = torch.stack([d[i]["pose"] for i in range(16)])
    assert bool((poses[:, 0].abs() <= math.pi).all())
    assert bool(
        (poses[:, 1] >= math.radians(-20) - 1e-6).all() and (poses[:, 1] <= math.radians(40) + 1e-6).all()
    )
    assert float(poses[:, 0].max() - poses[:, 0].min()) > math.pi, "azimuths spread over the circle"
    a, b = d[7], SyntheticShapes(split="train", num_samples=16, category="chair", seed=3)[7]
    for key in ("image", "pose", "points"):
        assert_close(a[key], b[key], key, atol=0, rtol=0)
    assert torch.equal(a["mask"], b["mask"]) and a["name"] == b["name"]
    c = SyntheticShapes(split="train", num_samples=16, category="chair", seed=4)[7]
    assert not torch.allclose(a["points"], c["points"]), "another seed gives another instance"


def test_synthetic_splits_are_disjoint():
    verts = {  # the car's assembly has the same topology for every instance: compare the meshes directly
        split: torch.stack(
            [SyntheticShapes(split=split, num_samples=8, category="car").assembly(i).verts for i in range(8)]
        )
        for split in ("train", "val", "test")
    }
    for s1, s2 in (("train", "val"), ("train", "test"), ("val", "test")):
        dist = torch.cdist(verts[s1].flatten(1), verts[s2].flatten(1))  # (8, 8) distances between instances
        assert float(dist.min()) > 1e-3, f"{s1} and {s2} share an instance"
    assert (
        float(
            torch.cdist(verts["train"].flatten(1), verts["train"].flatten(1))
            .topk(2, largest=False)
            .values[:, 1]
            .min()
        )
        > 1e-3
    )


def test_synthetic_argument_errors():
    with pytest.raises(ValueError, match="category"):
        SyntheticShapes(category="boat")
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(split="dev")
    with pytest.raises(IndexError):
        SyntheticShapes(num_samples=2)[2]


# ------------------------------------------------------------------------------------------ ShapeNet DRC
CHAIR = "03001627"


def _drc(tmp_path, **kw):
    models = {"m1": [(-150, 23), (40, -5), (179, 39)], "m2": [(0, 0), (-180, -20)]}
    return write_drc_dataset(tmp_path, CHAIR, "val", models, ["m1_2", "m2_0", "m1_0"], **kw)


def test_drc_reads_back_what_was_written(tmp_path):
    truth = _drc(tmp_path)
    r = READERS["shapenet_drc"](root=tmp_path, split="val", category="chair")
    assert (
        len(r) == 3 and r.check_files() == 5 + 5 + 3
    )  # render, depth, camera; view.txt, cloud once per model
    for i, (model, view, az, el) in enumerate([("m1", 2, 179, 39), ("m2", 0, 0, 0), ("m1", 0, -150, 23)]):
        s = check_sample(r[i], "point_cloud", f"shapenet_drc[{i}]", strict=True)
        w = truth["views"][(model, view)]
        assert_close(s["image"], torch.from_numpy(w["rgb"]).permute(2, 0, 1).float() / 255, "image")
        assert torch.equal(s["mask"][0].bool(), torch.from_numpy(w["object"])), "mask from depth"
        assert_close(s["pose"], torch.tensor([math.radians(az), math.radians(el)]), "pose")
        assert_close(s["points"], torch.from_numpy(truth["points"][model]).float(), "points")
        assert s["name"] == f"shapenet_drc/{CHAIR}/{model}_{view}"
    r2 = READERS["shapenet_drc"](root=tmp_path, split="val", category=CHAIR, mask_source="alpha")
    assert torch.equal(r2[0]["mask"][0].bool(), torch.from_numpy(truth["views"][("m1", 2)]["object"]))


def test_drc_mask_threshold_is_capnets():
    # cv2.imread's 8-bit read keeps the high byte; < 254 is the object: 65023 >> 8 = 253, 65024 >> 8 = 254
    depth16 = np.array([[0, 13107, 65023, 65024, 65535]])
    assert drc_mask_from_depth(depth16, 16).tolist() == [[True, True, True, False, False]]
    assert drc_mask_from_depth(np.array([[0, 253, 254, 255]]), 8).tolist() == [[True, True, False, False]]


def test_split_files_of_python2_and_python3(tmp_path):
    ids = ["3657e63abdde316a56de8db8652eec4e_5", "6c0102c7cb1988617f160d15e2f6b9e_7"]
    p2 = save_py2_object_npy(tmp_path / "py2.npy", ids)
    with pytest.raises(ValueError):
        np.load(p2, allow_pickle=False)  # an object array cannot load without pickle
    assert load_split_ids(p2) == ids
    arr = np.empty((2, 1), dtype=object)
    arr[:, 0] = [s.encode() for s in ids]  # bytes elements (numpy's encoding="bytes" view of a Python 2 str)
    np.save(tmp_path / "bytes.npy", arr)
    assert load_split_ids(tmp_path / "bytes.npy") == ids
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npy"):
        load_split_ids(tmp_path / "bad.npy")


def test_drc_corruptions_name_the_file(tmp_path):
    _drc(tmp_path)
    reader = READERS["shapenet_drc"]
    rendered = tmp_path / "ShapeNet_rendered" / CHAIR
    # a split entry whose model is missing
    save_py2_object_npy(tmp_path / "splits" / f"images_list_{CHAIR}_test.npy", ["m1_0", "nomodel_1"])
    r = reader(root=tmp_path, split="test", category="chair")
    with pytest.raises(FileNotFoundError, match="nomodel"):
        r.check_files()
    with pytest.raises(FileNotFoundError, match="nomodel/render_1.png"):
        r[1]
    # a split entry whose view is missing (m2 has views 0 and 1)
    save_py2_object_npy(tmp_path / "splits" / f"images_list_{CHAIR}_train.npy", ["m2_4"])
    with pytest.raises(FileNotFoundError, match="m2/render_4.png"):
        reader(root=tmp_path, split="train", category="chair")[0]
    # a view.txt with too few lines (view 4 exists as files but not in view.txt)
    for name in ("render_4.png", "depth_4.png", "camera_4.mat"):
        (rendered / "m2" / name).write_bytes((rendered / "m2" / name.replace("4", "0")).read_bytes())
    with pytest.raises(ValueError, match=r"m2/view.txt: has 2 line\(s\), view 4"):
        reader(root=tmp_path, split="train", category="chair")[0]
    # a .mat camera without its keys
    scipy.io.savemat(rendered / "m1" / "camera_2.mat", {"quat": np.ones((1, 4))})
    r = reader(root=tmp_path, split="val", category="chair")
    with pytest.raises(ValueError, match=r"m1/camera_2.mat: has no variable 'K'"):
        r[0]
    assert reader(root=tmp_path, split="val", category="chair", check_camera=False)[0]["pose"].shape == (2,)
    # a ground-truth cloud of the wrong shape
    np.save(tmp_path / "ShapeNet_v1" / CHAIR / "m2" / "pcl_1024_fps_trimesh.npy", np.zeros((1000, 3)))
    with pytest.raises(
        ValueError, match=r"m2/pcl_1024_fps_trimesh.npy: expected a ground-truth cloud of shape \(1024, 3\)"
    ):
        r[1]
    # a malformed entry and a missing split file
    save_py2_object_npy(tmp_path / "splits" / f"images_list_{CHAIR}_train.npy", ["m2"])
    with pytest.raises(ValueError, match=f"images_list_{CHAIR}_train.npy: entry 0"):
        reader(root=tmp_path, split="train", category="chair")
    with pytest.raises(FileNotFoundError, match="images_list_02958343_val.npy"):
        reader(root=tmp_path, split="val", category="car")
    with pytest.raises(ValueError, match="category"):
        reader(root=tmp_path, split="val", category="boat")


# ------------------------------------------------------------------------------------------ Pix3D
def _crop_reference(x: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """Slow reference: x (H, W, ...) cropped to [top, top + side) x [left, left + side), zeros outside."""
    out = np.zeros((side, side) + x.shape[2:], x.dtype)
    for i in range(side):
        for j in range(side):
            if 0 <= top + i < x.shape[0] and 0 <= left + j < x.shape[1]:
                out[i, j] = x[top + i, left + j]
    return out


def test_pix3d_reads_the_untruncated_unoccluded_chairs(tmp_path):
    recs = write_pix3d(
        tmp_path,
        [
            {"name": "0001", "category": "chair", "bbox": (5, 4, 14, 9), "cam_position": (1.0, 1.0, 0.0)},
            {"name": "0002", "category": "chair", "bbox": (1, 1, 5, 5), "truncated": True},
            {"name": "0003", "category": "chair", "bbox": (1, 1, 5, 5), "occluded": True},
            {"name": "0004", "category": "chair", "bbox": (0, 10, 3, 19), "slightly_occluded": True},
            {"name": "0005", "category": "sofa", "bbox": (1, 1, 5, 5)},
        ],
    )
    r = READERS["pix3d"](root=tmp_path, split="test")
    assert len(r) == 1 and r.check_files() == 3
    s = check_sample(r[0], "point_cloud", "pix3d[0]", strict=True)
    # bbox 5..14 x 4..9: w = 9, h = 5 -> a 9 x 9 square about the centre (9.5, 6.5): columns 5.., rows 2..
    img = _crop_reference(recs[0]["image_array"], 5, 2, 9)
    assert_close(s["image"], torch.from_numpy(img).permute(2, 0, 1).float() / 255, "cropped image")
    assert torch.equal(
        s["mask"][0].bool(), torch.from_numpy(_crop_reference(recs[0]["mask_array"], 5, 2, 9) > 0)
    )
    assert_close(s["pose"], torch.tensor([math.pi / 2, math.pi / 4]), "azimuth, elevation of cam_position")
    # the box model 2 x 1 x 4, centred and scaled to a unit diagonal: every point on its surface
    half = torch.tensor([1.0, 0.5, 2.0]) / math.sqrt(21.0)
    p = s["points"]
    assert p.shape == (1024, 3) and bool((p.abs() <= half + 1e-6).all())
    assert_close((p.abs() - half).abs().min(1).values, torch.zeros(1024), "on a face", atol=1e-6, rtol=0)
    assert_close(p.max(0).values - p.min(0).values, 2 * half, "extent", atol=0.02, rtol=0)
    # keeping the slightly occluded ones adds record 0004, cropped with zero padding at the image border
    r2 = READERS["pix3d"](root=tmp_path, split="test", exclude_slightly_occluded=False)
    assert len(r2) == 2
    s2 = r2[1]  # bbox 0..3 x 10..19: w = 3, h = 9 -> side 9 about (1.5, 14.5): columns -3.., rows 10..
    img = _crop_reference(recs[3]["image_array"], -3, 10, 9)
    assert_close(s2["image"], torch.from_numpy(img).permute(2, 0, 1).float() / 255, "padded crop")
    assert_close(square_crop(torch.ones(1, 4, 4), (0, 0, 1, 1)), torch.ones(1, 1, 1), "1-pixel crop")


def test_pix3d_record_with_a_missing_mask(tmp_path):
    write_pix3d(tmp_path, [{"name": "0007", "category": "chair", "bbox": (2, 2, 8, 8), "write_mask": False}])
    r = READERS["pix3d"](root=tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="mask/chair/0007.png"):
        r.check_files()
    with pytest.raises(
        FileNotFoundError, match=r"record 0 of pix3d.json points to a missing mask: .*0007.png"
    ):
        r[0]
    with pytest.raises(FileNotFoundError, match="pix3d.json"):
        READERS["pix3d"](root=tmp_path / "img", split="test")


# ------------------------------------------------------------------------------------------ datamodule
def test_datamodule_mixes_synthetic_and_drc(tmp_path):
    truth = _drc(tmp_path)
    dm = DATAMODULES["point_cloud"](
        train=[
            {"reader": "synthetic_shapes", "num_samples": 4, "category": "airplane"},
            {"reader": "shapenet_drc", "root": str(tmp_path), "split": "val", "category": "chair"},
        ],
        val=[{"reader": "shapenet_drc", "root": str(tmp_path), "split": "val", "category": "chair"}],
        image_size=8,
        batch_size=4,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["mask"].shape == (4, 1, 8, 8)
    assert batch["pose"].shape == (4, 2) and batch["points"].shape == (4, 1024, 3) and len(batch["name"]) == 4
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    val = next(iter(dm.val_dataloader()))
    # 16 -> 8 pixels: the mask is the 2 x 2 block average of the object thresholded at 1/2
    obj = torch.from_numpy(truth["views"][("m1", 2)]["object"]).float()
    expected = F.avg_pool2d(obj[None, None], 2)[0, 0] >= 0.5
    assert torch.equal(val["mask"][0, 0].bool(), expected)
    with pytest.raises(ValueError, match="returns samples of schema 'category'"):
        DATAMODULES["point_cloud"](
            train=[{"reader": "synthetic_category"}], val=[{"reader": "synthetic_category"}]
        )
