"""Tests of the synthetic deformable category: template symmetry, keypoints against the rasterizer, truth,
determinism, splits, the template file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from datamodules.category.synthetic import (
    BASIS_NAMES,
    KEYPOINT_NAMES,
    SyntheticCategory,
    bird_template,
    mirror_vertex_permutation,
    pose_rotation,
    save_template,
)
from datamodules.registry import READERS
from datamodules.schema import check_sample
from geometry.cameras import WeakPerspectiveCameras
from geometry.mesh_io import load_obj
from geometry.mesh_raster import rasterize_meshes
from geometry.rotations import axis_angle_to_matrix
from helpers import TOL, assert_close

M = torch.tensor([-1.0, 1.0, 1.0])  # the left-right mirror of the template frame
TOL32 = TOL[torch.float32]


def _pixels(xy_img: torch.Tensor, size: int) -> torch.Tensor:
    """Reference: normalized image coordinates -> 0-based pixels, x = (2 u + 1) / S - 1 inverted."""
    return ((xy_img + 1) * size - 1) / 2


def _camera(sample: dict) -> WeakPerspectiveCameras:
    return WeakPerspectiveCameras(
        sample["true_scale"][None], sample["true_rotation"][None], sample["true_translation"][None]
    )


@pytest.fixture(scope="module")
def ds() -> SyntheticCategory:
    return SyntheticCategory(split="train", num_samples=32, image_size=64, seed=3)


def test_registered_schema_and_shapes(ds):
    assert READERS["synthetic_category"] is SyntheticCategory and SyntheticCategory.SCHEMA == "category"
    s = ds[5]
    check_sample(s, "category", "synthetic_category[5]")
    V, K, F = 642, len(KEYPOINT_NAMES), 1280
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
    assert s["mask"].shape == (1, 64, 64) and set(s["mask"].unique().tolist()) <= {0.0, 1.0}
    assert s["keypoints"].shape == (K, 3) and s["bbox"].shape == (4,)
    assert s["true_rotation"].shape == (3, 3) and s["true_scale"].shape == (1,)
    assert s["true_translation"].shape == (2,) and s["true_verts"].shape == (V, 3)
    assert s["true_coeffs"].shape == (len(BASIS_NAMES),) and s["name"] == "synthetic_category/train/000005"
    assert ds.template_verts.shape == (V, 3) and ds.template_faces.shape == (F, 3)
    assert ds.true_basis.shape == (len(BASIS_NAMES), V, 3) and len(ds.KEYPOINT_FLIP) == K
    assert_close(torch.linalg.det(s["true_rotation"]), torch.tensor(1.0), what="det R")
    with pytest.raises(IndexError):
        ds[32]


def test_template_and_basis_are_symmetric_about_x0():
    tpl = bird_template(3)
    vf = tpl.vertex_flip
    assert torch.equal(vf[vf], torch.arange(len(vf))), "the vertex flip must be an involution"
    assert_close(tpl.verts[vf] * M, tpl.verts, what="template mirrored")
    # the mirror maps faces onto faces (orientation reversed)
    faces = {tuple(sorted(f)) for f in tpl.faces.tolist()}
    assert {tuple(sorted(f)) for f in vf[tpl.faces].tolist()} == faces
    assert_close(tpl.basis[:, vf] * M, tpl.basis, what="basis mirrored")
    assert_close(tpl.basis.norm(dim=-1).amax(-1), torch.ones(len(BASIS_NAMES)), what="basis max norm 1")
    # components are linearly independent (a true rank-6 basis)
    assert int(torch.linalg.matrix_rank(tpl.basis.reshape(len(BASIS_NAMES), -1).double())) == len(BASIS_NAMES)
    # an asymmetric mesh has no mirror permutation
    with pytest.raises(ValueError, match="not symmetric"):
        mirror_vertex_permutation(tpl.verts + torch.tensor([0.1, 0.0, 0.0]))


def test_keypoint_flip_swaps_left_and_right_and_the_frame_is_the_documented_one():
    tpl = bird_template(3)
    kv, kf = tpl.keypoint_vertices, tpl.keypoint_flip
    assert torch.equal(tpl.vertex_flip[kv], kv[kf]), "keypoint flip must follow the vertex mirror"
    for k, name in enumerate(KEYPOINT_NAMES):
        partner = KEYPOINT_NAMES[int(kf[k])]
        if name.startswith(("left_", "right_")):
            side, part = name.split("_", 1)
            assert partner == ("right_" if side == "left" else "left_") + part
            assert (tpl.verts[kv[k], 0] > 0) == (side == "right"), f"{name}: the bird's right is +x"
        else:
            assert partner == name and float(tpl.verts[kv[k], 0]) == 0.0, f"{name} must lie on the midline"
    v = dict(zip(KEYPOINT_NAMES, tpl.verts[kv]))
    assert float(v["beak"][2]) == float(tpl.verts[:, 2].max()), "the beak is the front (+z) tip"
    assert float(v["tail"][2]) == float(tpl.verts[:, 2].min()), "the tail is the back (-z) tip"
    assert v["left_foot"][1] > v["belly"][1] > 0 > v["back"][1], "+y is down"


def test_truth_is_consistent_keypoints_are_projected_vertices(ds):
    for i in range(4):
        s = ds[i]
        expected = ds.template_verts + torch.einsum("k,kvd->vd", s["true_coeffs"], ds.true_basis)
        assert_close(s["true_verts"], expected, what="verts = T + sum c_k B_k")
        # weak perspective by hand: s (X R)_xy + t, then normalized -> pixels
        xy = s["true_scale"] * (s["true_verts"][ds.keypoint_vertices] @ s["true_rotation"])[:, :2]
        xy = xy + s["true_translation"]
        assert_close(s["keypoints"][:, :2], _pixels(xy, 64), atol=1e-4, rtol=0, what=f"[{i}] keypoint pixels")
        # bbox = inclusive bounds of the mask
        rows, cols = s["mask"][0].nonzero().unbind(1)
        bbox = torch.stack([cols.min(), rows.min(), cols.max(), rows.max()]).float()
        assert torch.equal(s["bbox"], bbox), f"[{i}] bbox {s['bbox'].tolist()} != mask bounds {bbox.tolist()}"


def test_rasterized_surface_lands_on_its_pixel_and_visible_keypoints_on_the_mask(ds):
    """The mask is the rasterization of the true mesh; a surface point of the face the rasterizer shows at
    pixel (i, j) projects (true camera, the keypoints' pixel conversion) onto the pixel centre (j, i); a
    keypoint is visible iff the pixel under it is in the mask and its vertex is no deeper than the
    rasterized surface there + visibility_eps (a reference z-buffer test at the keypoint's own pixel)."""
    faces = ds.template_faces
    n_visible = 0
    for i in range(8):
        s = ds[i]
        cam = _camera(s)
        verts_ndc = cam.transform_points_rasterizer(s["true_verts"][None], 64)
        frags = rasterize_meshes(verts_ndc, faces, 64)
        p2f = frags.pix_to_face[0, :, :, 0]
        assert torch.equal(p2f >= 0, s["mask"][0] > 0.5), f"[{i}] mask != rasterized silhouette"
        rows, cols = (p2f >= 0).nonzero().unbind(1)
        f = p2f[rows, cols]
        bary = frags.bary_coords[0, rows, cols, 0].double()  # (P, 3)
        world = (bary[:, :, None] * s["true_verts"].double()[faces[f]]).sum(1)
        cam64 = WeakPerspectiveCameras(*(x.double() for x in (cam.scale, cam.R, cam.trans)))
        uv = _pixels(cam64.project(world)[0], 64)
        expected = torch.stack([cols, rows], -1).double()
        # float32 barycentrics of small faces: ~5e-3 px; a half-pixel convention slip would be 0.5 px
        assert_close(uv, expected, atol=2e-2, rtol=0, what=f"[{i}] surface pixel")
        kp = s["keypoints"]
        u, v = kp[:, :2].round().long().unbind(1)
        inside = (u >= 0) & (u < 64) & (v >= 0) & (v < 64)
        uc, vc = u.clamp(0, 63), v.clamp(0, 63)
        z = verts_ndc[0, ds.keypoint_vertices, 2]
        ref = inside & (p2f[vc, uc] >= 0) & (z <= frags.zbuf[0, vc, uc, 0] + ds.visibility_eps)
        assert torch.equal(kp[:, 2] > 0, ref), f"[{i}] visibility {kp[:, 2].tolist()} != {ref.int().tolist()}"
        assert bool((s["mask"][0, vc, uc][ref] == 1).all()), f"[{i}] a visible keypoint is off the mask"
        n_visible += int(ref.sum())
    assert n_visible >= 8 * len(KEYPOINT_NAMES) // 4, f"only {n_visible} visible keypoints in 8 samples"


def test_pose_convention_side_view_from_above():
    """Azimuth 90 deg shows the bird's right side with the beak to the image right; elevation > 0 looks from
    above (the back is seen, the belly is not)."""
    ds = SyntheticCategory(
        num_samples=1,
        image_size=96,
        deformation_std=0.0,
        azimuth_range=(90, 90),
        elevation_range=(30, 30),
        roll_range=(0, 0),
        translation_range=0.0,
        scale_range=(0.7, 0.7),
    )
    kp = dict(zip(KEYPOINT_NAMES, ds[0]["keypoints"]))
    assert kp["beak"][0] > kp["tail"][0] + 40, "beak right of the tail"
    assert kp["right_foot"][1] > kp["crown"][1] + 20, "feet below the head (y down)"
    assert kp["right_eye"][2] == 1 and kp["left_eye"][2] == 0, "the right side faces the camera"
    assert kp["back"][2] == 1 and kp["belly"][2] == 0, "seen from above"


def test_pose_rotation_matches_axis_angle_composition():
    g = torch.Generator().manual_seed(0)
    a, e, r = (torch.rand(5, generator=g, dtype=torch.float64) * 4 - 2 for _ in range(3))
    z = torch.zeros_like(a)

    def about(axis: int, angle: torch.Tensor) -> torch.Tensor:
        return axis_angle_to_matrix(torch.stack([angle if j == axis else z for j in range(3)], -1))

    expected = (about(2, r) @ about(0, e) @ about(1, a)).transpose(1, 2)
    assert_close(pose_rotation(a, e, r), expected, what="(Rz Rx Ry)^T")
    with pytest.raises(ValueError, match="elevation"):
        pose_rotation(a, e[:3], r)


def test_deterministic_per_seed_and_disjoint_splits():
    a = SyntheticCategory(split="val", num_samples=6, seed=7)
    b = SyntheticCategory(split="val", num_samples=6, seed=7)
    for i in (0, 5, 2):  # any order
        sa, sb = a[i], b[i]
        for key, value in sa.items():
            if torch.is_tensor(value):
                assert torch.equal(value, sb[key]), f"{key} of val[{i}] changed between two readers"
    other_seed = SyntheticCategory(split="val", num_samples=6, seed=8)[0]
    assert not torch.equal(other_seed["true_rotation"], a[0]["true_rotation"])
    splits = {sp: SyntheticCategory(split=sp, num_samples=4, seed=7) for sp in ("train", "val", "test")}
    coeffs = {sp: torch.stack([d[i]["true_coeffs"] for i in range(4)]) for sp, d in splits.items()}
    for s1, s2 in (("train", "val"), ("train", "test"), ("val", "test")):
        d = torch.cdist(coeffs[s1], coeffs[s2])
        assert float(d.min()) > 1e-4, f"{s1} and {s2} share an instance"
    assert splits["test"][1]["name"] == "synthetic_category/test/000001"


def test_backgrounds_level_and_bad_arguments():
    s = SyntheticCategory(num_samples=1, background="plain", level=2)[0]
    outside = s["image"][:, s["mask"][0] == 0]
    assert_close(outside, outside[:, :1].expand_as(outside), what="plain background")
    assert s["true_verts"].shape == (162, 3)
    for kwargs, match in (
        (dict(split="training"), "split"),
        (dict(image_size=(64, 48)), "image_size"),
        (dict(num_basis=7), "num_basis"),
        (dict(background="checker"), "background"),
        (dict(level=1), "level"),
        (dict(scale_range=(0.7, 0.5)), "scale_range"),
    ):
        with pytest.raises(ValueError, match=match):
            SyntheticCategory(num_samples=1, **kwargs)
    few = SyntheticCategory(num_samples=1, num_basis=2, deformation_std=0.0)
    assert few.true_basis.shape[0] == 2 and torch.equal(few[0]["true_verts"], few.template_verts)


def test_save_template_round_trips_through_load_obj(tmp_path):
    path = save_template(tmp_path / "bird.obj", level=2)
    tpl = bird_template(2)
    mesh = load_obj(path)
    assert torch.equal(mesh.faces, tpl.faces)
    assert_close(mesh.verts, tpl.verts, atol=1e-6, rtol=0, what="obj verts (6 decimals)")
    meta = json.loads((tmp_path / "bird.json").read_text())
    assert meta["keypoint_vertices"] == tpl.keypoint_vertices.tolist()
    assert meta["keypoint_flip"] == tpl.keypoint_flip.tolist() and meta["keypoint_names"] == list(
        KEYPOINT_NAMES
    )
    with pytest.raises(FileExistsError):
        save_template(tmp_path / "bird.obj", level=2)
    with pytest.raises(ValueError, match=".obj"):
        save_template(tmp_path / "bird.ply")
    assert math.isclose(float(mesh.verts[:, 0].sum()), 0.0, abs_tol=1e-4), "symmetric about x = 0"
