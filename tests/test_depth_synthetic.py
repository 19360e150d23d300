"""Tests of the embedded synthetic depth dataset: determinism, analytic depths, variants, intrinsics."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.depth.synthetic import (
    Scene,
    SyntheticDepth,
    camera_rays,
    look_rotation,
    render_scene,
)
from datamodules.registry import READERS
from geometry.cameras import intrinsics_from_fov
from helpers import assert_close

RTOL32 = 1e-5  # float32 ray casting


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs().clamp(min=1e-6)).max().item()


def test_registered_and_schema():
    ds = READERS["synthetic_depth"](root=None, split="val", num_samples=5, image_size=(24, 40))
    assert isinstance(ds, SyntheticDepth) and len(ds) == 5
    s = ds[4]
    assert s["image"].shape == (3, 24, 40) and s["image"].dtype == torch.float32
    assert s["depth"].shape == (1, 24, 40) and s["depth"].dtype == torch.float32
    assert s["valid"].shape == (1, 24, 40) and s["valid"].dtype == torch.bool
    assert s["intrinsics"].shape == (3, 3) and s["depth_type"] == "absolute"
    assert s["name"] == "synthetic_depth/val/000004"
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    # The room is closed: every ray hits a surface.
    assert bool(s["valid"].all()), f"{int((~s['valid']).sum())} pixels miss every surface"
    with pytest.raises(IndexError):
        ds[5]


def test_determinism_and_seed_split_dependence():
    a = SyntheticDepth(split="train", num_samples=10, image_size=(16, 16), seed=3)
    b = SyntheticDepth(split="train", num_samples=10, image_size=(16, 16), seed=3)
    assert torch.equal(a[7]["valid"], b[7]["valid"]) and torch.equal(a[7]["valid"], a[-3]["valid"])
    for key in ("image", "depth", "intrinsics"):  # rendered floats: equal up to rounding
        assert_close(b[7][key], a[7][key], f"{key}: same seed")
        assert_close(a[-3][key], a[7][key], f"{key}: index -3 is index 7")
    other_seed = SyntheticDepth(split="train", num_samples=10, image_size=(16, 16), seed=4)[7]
    other_split = SyntheticDepth(split="val", num_samples=10, image_size=(16, 16), seed=3)[7]
    other_index = a[6]
    for other in (other_seed, other_split, other_index):
        assert (other["depth"] - a[7]["depth"]).abs().max() > 1e-3


def test_depth_and_fov_ranges():
    lo, hi = 45.0, 70.0
    ds = SyntheticDepth(num_samples=40, image_size=(20, 30), seed=1, fov_range=(lo, hi))
    fovs, medians, maxima = [], [], []
    for i in range(len(ds)):
        s = ds[i]
        k = s["intrinsics"]
        fovs.append(math.degrees(2 * math.atan(30 / (2 * k[0, 0].item()))))
        assert_close(k[1, 1], k[0, 0], f"sample {i}: fy = fx")
        assert_close(k[:2, 2], [14.5, 9.5], f"sample {i}: principal point")
        d = s["depth"][s["valid"]]
        medians.append(d.median().item())
        maxima.append(d.max().item())
        assert d.min() > 0.2, f"sample {i}: min depth {d.min():.3f}"
    assert lo - 1e-4 <= min(fovs) and max(fovs) <= hi + 1e-4, (min(fovs), max(fovs))
    assert max(fovs) - min(fovs) > 0.5 * (hi - lo), "fov does not spread over its range"
    assert 1.0 < sorted(medians)[len(medians) // 2] < 10.0, medians
    assert max(maxima) < 15.0 and max(maxima) > 5.0, maxima


def test_floor_plane_analytic_depth():
    h, theta = 1.5, math.radians(20)  # camera 1.5 m above the floor, looking 20 deg down
    scene = Scene(
        cam_to_world=look_rotation(0.3, -theta, 0.0),
        cam_position=torch.tensor([0.2, h, -0.4]),
        planes=torch.tensor([[0.0, 1.0, 0.0, 0.0]]),
    )
    height, width = 31, 41
    k = intrinsics_from_fov(70.0, height, width)[0]
    out = render_scene(scene, k, height, width)
    v = torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    descent = (v - k[1, 2].double()) / k[1, 1].double() * math.cos(theta) + math.sin(theta)
    hits = descent > 1e-6
    expected = h / descent
    assert torch.equal(out.valid[0], hits), "pixels above the horizon must miss, below must hit"
    err = _max_rel(out.depth[0][hits].double(), expected[hits])
    assert err < 1e-4, f"floor depth max rel err {err}"
    # Normals point up; the floor's image follows the Lambertian law with the default light.
    assert torch.allclose(out.normals[:, hits], torch.tensor([0.0, 1.0, 0.0])[:, None], atol=1e-6)


def test_sphere_box_cylinder_centre_depths():
    height = width = 33  # odd: the centre pixel's ray is the optical axis
    k = intrinsics_from_fov(60.0, height, width)[0]
    cam = dict(cam_to_world=look_rotation(0.0, 0.0, 0.0), cam_position=torch.tensor([0.0, 1.2, 0.0]))
    d, r = 4.0, 0.7
    sphere = render_scene(Scene(**cam, spheres=torch.tensor([[0.0, 1.2, d, r]])), k, height, width)
    assert abs(sphere.depth[0, 16, 16].item() - (d - r)) < RTOL32 * d, sphere.depth[0, 16, 16]
    # Silhouette: a pixel is covered iff its ray is within asin(r / d) of the axis (away from the edge).
    rays = camera_rays(k, height, width).double()
    angle = torch.acos(rays[:, 2] / rays.norm(dim=-1)).reshape(height, width)
    edge = math.asin(r / d)
    clear = (angle - edge).abs() > 0.01
    assert torch.equal(sphere.valid[0][clear], (angle < edge)[clear]), "sphere silhouette"

    half = torch.tensor([[0.5, 0.4, 0.3]])
    box = Scene(
        **cam,
        box_centres=torch.tensor([[0.0, 1.2, d]]),
        box_half_sizes=half,
        box_rotations=torch.eye(3)[None],
    )
    out = render_scene(box, k, height, width)
    # The front face is the plane z = d - 0.3: constant z-depth over the whole face.
    x, y = rays[:, 0].reshape(height, width) * (d - 0.3), rays[:, 1].reshape(height, width) * (d - 0.3)
    front = (x.abs() < 0.5 - 1e-3) & (y.abs() < 0.4 - 1e-3)
    assert front.sum() > 20
    err = (out.depth[0][front] - (d - 0.3)).abs().max().item()
    assert err < RTOL32 * d, f"box front face depth max err {err}"
    assert not out.valid[0][(x.abs() > 0.5 * d / (d - 0.3) + 0.05) | (y.abs() > 0.45 * d / (d - 0.3))].any()

    cyl = Scene(**cam, cylinders=torch.tensor([[0.0, d, r, 0.0, 2.0]]))
    out = render_scene(cyl, k, height, width)
    assert abs(out.depth[0, 16, 16].item() - (d - r)) < RTOL32 * d, out.depth[0, 16, 16]
    # Top cap at y = 2 seen from a camera at 3 m looking down along the axis' side: z-depth of the cap.
    above = Scene(
        cam_to_world=look_rotation(0.0, -math.radians(60), 0.0),
        cam_position=torch.tensor([0.0, 3.0, d - 0.8 / math.tan(math.radians(60))]),
        cylinders=torch.tensor([[0.0, d, r, 0.0, 2.0]]),
    )
    out = render_scene(above, k, height, width)
    # The centre ray descends 1 m (3 -> 2) to the cap point (0, 2, d - 0.8/tan60 + 1/tan60): inside the cap.
    expected = 1.0 / math.sin(math.radians(60))
    assert abs(out.depth[0, 16, 16].item() - expected) < 1e-4, (out.depth[0, 16, 16].item(), expected)
    assert torch.allclose(out.normals[:, 16, 16], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)


def test_variant_fractions_and_values():
    n = 20
    kw = dict(split="train", num_samples=n, image_size=(12, 16), seed=5)
    absolute = SyntheticDepth(**kw)
    mixed = SyntheticDepth(**kw, uts_fraction=0.3, utss_fraction=0.25)
    types = [mixed.variant(i).depth_type for i in range(n)]
    assert types.count("uts") == 6 and types.count("utss_disparity") == 5 and types.count("absolute") == 9
    for i in range(n):
        ref, s = absolute[i], mixed[i]
        var = mixed.variant(i)
        assert s["depth_type"] == var.depth_type
        assert torch.equal(s["valid"], ref["valid"])
        assert_close(s["image"], ref["image"], f"sample {i}: the variant does not change the image")
        z, got = ref["depth"][ref["valid"]].double(), s["depth"][s["valid"]].double()
        if var.depth_type == "absolute":
            assert_close(s["depth"], ref["depth"], f"sample {i}: absolute depth")
        elif var.depth_type == "uts":
            assert 0.2 <= var.scale <= 5.0 and var.shift == 0.0  # exact: uts has no shift, a set constant
            assert _max_rel(got, var.scale * z) < 1e-6, f"uts sample {i}"
        else:
            assert 0.1 <= var.scale <= 10.0 and 0.0 <= var.shift <= 0.5 * var.scale
            assert _max_rel(got, var.scale / z + var.shift) < 1e-6, f"utss sample {i}"
            assert got.min() > 0
    # The scale factors differ between samples (a fixed factor would not test scale invariance).
    scales = {round(mixed.variant(i).scale, 6) for i in range(n) if types[i] == "uts"}
    assert len(scales) == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="uts_fraction"):
        SyntheticDepth(uts_fraction=0.7, utss_fraction=0.5)
    with pytest.raises(ValueError, match="fov_range"):
        SyntheticDepth(fov_range=(10.0, 190.0))
    with pytest.raises(ValueError, match="intrinsics"):
        camera_rays(torch.eye(4), 4, 4)
