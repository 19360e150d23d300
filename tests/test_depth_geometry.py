"""geometry.depth: unprojection of depth maps, projection, analytic planes and spheres, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from geometry.cameras import FoVPerspectiveCameras, intrinsics_from_fov, ndc_pixel_centers
from geometry.depth import (
    pixel_grid,
    project_points,
    unproject_depth,
    unproject_depth_fov,
    valid_points_padded,
)
from helpers import TOL, assert_close

DTYPES = [torch.float32, torch.float64]


def _K(dtype=torch.float64) -> torch.Tensor:
    """Two intrinsics of a 12 x 16 image, the second with skew and an off-centre principal point."""
    return torch.tensor(
        [[[14.0, 0.0, 7.5], [0.0, 14.0, 5.5], [0, 0, 1]], [[20.0, 0.7, 9.0], [0.0, 18.0, 4.0], [0, 0, 1]]],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("frame", ["opencv", "pytorch3d"])
def test_project_unproject_round_trip(dtype, frame):
    g = torch.Generator().manual_seed(0)
    depth = (torch.rand(2, 1, 12, 16, generator=g, dtype=torch.float64) * 4 + 0.5).to(dtype)
    K = _K(dtype)
    points, valid = unproject_depth(depth, K, frame=frame)
    assert points.shape == (2, 12 * 16, 3) and valid.shape == (2, 12 * 16) and bool(valid.all())
    pixels, z, ok = project_points(points, K, frame=frame)
    assert bool(ok.all()), "every point has z > 0"
    tol = TOL[dtype]
    assert_close(
        pixels,
        pixel_grid(12, 16, dtype=dtype).expand(2, -1, -1),
        atol=100 * tol["atol"],
        rtol=0,
        what="pixels of unprojected depth",
    )
    assert_close(z, depth.flatten(1), what="depth of unprojected depth")
    # and the other way: unproject(project(points)) at those pixels gives the points back
    assert_close(points[..., 2], depth.flatten(1), what="z is the depth (z-depth, not ray length)")


def test_pixel_grid_order_matches_flatten():
    uv = pixel_grid(3, 4)
    assert uv.shape == (12, 2)
    # exact: integer-valued pixel coordinates, no arithmetic
    assert uv[4 * 2 + 1].tolist() == [1.0, 2.0], "row-major: index i*W+j holds (u, v) = (j, i)"


@pytest.mark.parametrize("hw", [(12, 16), (9, 9), (16, 10)])
def test_fronto_parallel_plane_has_analytic_extent(hw):
    H, W = hw
    z, fov = 2.5, 70.0
    depth = torch.full((1, 1, H, W), z, dtype=torch.float64)
    points, _ = unproject_depth_fov(depth, fov)
    t = math.tan(math.radians(fov) / 2)
    # pixel centres 0 .. W-1, cx = (W-1)/2, f = W / (2 tan): outermost centres at +-(W-1)/W * z tan
    x_max = (W - 1) / W * z * t
    y_max = (H - 1) / W * z * t  # square pixels: the same focal length vertically
    p = points[0]
    assert_close(p[:, 2], torch.full((H * W,), z, dtype=torch.float64), what="plane z")
    got = torch.stack([p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max()])
    assert_close(
        got,
        torch.tensor([-x_max, x_max, -y_max, y_max], dtype=torch.float64),
        atol=1e-14,
        rtol=0,
        what="plane x/y extent",
    )
    # OpenCV frame: first pixel (top-left) is at -x (left), -y (up); PyTorch3D frame flips x and y
    assert p[0, 0] < 0 and p[0, 1] < 0
    p3d, _ = unproject_depth_fov(depth, fov, frame="pytorch3d")
    assert p3d[0, 0, 0] > 0 and p3d[0, 0, 1] > 0, "PyTorch3D view: top-left pixel is at +x (left), +y (up)"
    # consecutive pixels are z / f apart
    f = W / (2 * t)
    assert p[1, 0] - p[0, 0] == pytest.approx(z / f, abs=1e-14)


def test_unprojection_agrees_with_fov_camera_ndc():
    """Square image: pytorch3d-frame points project with FoVPerspectiveCameras to the pixel-centre NDC."""
    S, fov = 10, 50.0
    depth = torch.rand(1, 1, S, S, dtype=torch.float64) + 1.0
    points, _ = unproject_depth_fov(depth, fov, frame="pytorch3d")
    cam = FoVPerspectiveCameras(
        torch.eye(3, dtype=torch.float64)[None], torch.zeros(1, 3, dtype=torch.float64), fov
    )
    ndc = cam.view_to_ndc(points)  # (1, S*S, 3)
    assert_close(
        ndc[0, :, :2],
        ndc_pixel_centers(S, dtype=torch.float64).reshape(-1, 2),
        atol=1e-12,
        rtol=0,
        what="ndc of unprojected pixel centres",
    )
    assert_close(ndc[0, :, 2], depth.flatten(), what="z_view")


def _sphere_depth(K: torch.Tensor, H: int, W: int, centre: torch.Tensor, r: float) -> torch.Tensor:
    """Analytic z-depth of a sphere: nearest ray-sphere hit through each pixel centre (0 on a miss)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=K.dtype), torch.arange(W, dtype=K.dtype), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (H, W, 3)
    d = pix @ torch.linalg.inv(K).T  # rays with z = 1
    # |t d - c|^2 = r^2 -> t^2 |d|^2 - 2 t d.c + |c|^2 - r^2 = 0; z = t since d_z = 1
    a, b, c = (d * d).sum(-1), (d * centre).sum(-1), (centre * centre).sum() - r * r
    disc = b * b - a * c
    t = (b - disc.clamp(min=0).sqrt()) / a
    return torch.where(disc > 0, t, torch.zeros_like(t))


def test_sphere_depth_unprojects_to_sphere():
    H, W, r = 40, 48, 1.0
    K = intrinsics_from_fov(torch.tensor([60.0], dtype=torch.float64), H, W)
    centre = torch.tensor([0.3, -0.2, 4.0], dtype=torch.float64)
    depth = _sphere_depth(K[0], H, W, centre, r)[None, None]
    points, valid = unproject_depth(depth, K)
    hits = int(valid.sum())
    assert 200 < hits < H * W, f"sphere should cover part of the image, covers {hits} pixels"
    radius = (points[valid] - centre).norm(dim=-1)
    assert_close(radius, torch.full_like(radius, r), atol=1e-9, rtol=0, what="distance of points to centre")
    assert bool((points[~valid] == 0).all()), "invalid pixels give zero points"  # exact: the 0 fill


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_and_invalid_depth(dtype):
    depth = torch.rand(2, 1, 5, 6, dtype=dtype) + 1.0
    depth[0, 0, 0, 0] = 0.0
    depth[0, 0, 1, 2] = float("nan")
    depth[1, 0, 4, 5] = float("inf")
    depth[1, 0, 2, 3] = -1.0
    mask = torch.ones(2, 1, 5, 6, dtype=torch.bool)
    mask[1, 0, 0, :] = False
    K = intrinsics_from_fov(torch.tensor([60.0, 40.0], dtype=dtype), 5, 6)
    d = depth.clone().requires_grad_(True)
    points, valid = unproject_depth(d, K, mask=mask)
    expected = torch.isfinite(depth) & (depth > 0) & mask
    assert torch.equal(valid, expected.flatten(1)), "valid = finite, positive depth inside the mask"
    # exact zeros below: invalid pixels are filled with 0 and take no part in any arithmetic
    assert torch.isfinite(points).all() and bool((points[~valid] == 0).all())
    points.sum().backward()
    assert torch.isfinite(d.grad).all() and bool((d.grad.flatten(1)[~valid] == 0).all()), (
        "no gradient to invalid"
    )
    padded, lengths = valid_points_padded(points, valid)
    assert lengths.tolist() == valid.sum(1).tolist()
    for b in range(2):  # slow reference: boolean selection per element
        ref = points[b][valid[b]]
        # exact: padding is a gather of the valid points (and a 0 fill), no arithmetic
        assert torch.equal(padded[b, : lengths[b]], ref), f"padded points {b}"
        assert bool((padded[b, lengths[b] :] == 0).all())


def test_unproject_depth_fov_matches_intrinsics_and_batches_fov():
    depth = torch.rand(2, 1, 7, 9, dtype=torch.float64) + 0.5
    fov = torch.tensor([45.0, 80.0], dtype=torch.float64)
    a = unproject_depth_fov(depth, fov).points
    b = unproject_depth(depth, intrinsics_from_fov(fov, 7, 9)).points
    assert_close(a, b, what="unproject_depth_fov")
    # each batch element uses its own fov: at equal depth the x extents scale with tan(fov / 2)
    flat = unproject_depth_fov(torch.ones_like(depth), fov).points[..., 0].amax(dim=1)  # (2,)
    ratio = math.tan(math.radians(40.0)) / math.tan(math.radians(22.5))
    assert (flat[1] / flat[0]).item() == pytest.approx(ratio, rel=1e-12)
    single = unproject_depth_fov(depth, 45.0).points
    assert_close(single[0], a[0], what="float fov")


def test_gradcheck_unproject_and_project():
    depth = (torch.rand(2, 1, 3, 4, dtype=torch.float64) + 1.0).requires_grad_(True)
    K = _K().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d, k: unproject_depth(d, k, frame="pytorch3d").points, (depth, K))
    points = (torch.rand(2, 5, 3, dtype=torch.float64) + torch.tensor([0.0, 0.0, 1.0])).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, k: tuple(project_points(p, k))[:2], (points, K))
    fov = torch.tensor([50.0, 65.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, f: unproject_depth_fov(d, f).points, (depth, fov))


def test_shape_errors_name_the_argument():
    K = _K()
    with pytest.raises(ValueError, match="depth"):
        unproject_depth(torch.ones(2, 12, 16), K)
    with pytest.raises(ValueError, match="K"):
        unproject_depth(torch.ones(2, 1, 12, 16), K[0])
    with pytest.raises(ValueError, match="mask"):
        unproject_depth(torch.ones(2, 1, 12, 16), K, mask=torch.ones(2, 1, 12, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="points"):
        project_points(torch.ones(2, 5, 2), K)
    with pytest.raises(ValueError, match="frame"):
        project_points(torch.ones(2, 5, 3), K, frame="opengl")
    with pytest.raises(ValueError, match="fov_deg"):
        unproject_depth_fov(torch.ones(2, 1, 4, 4), torch.ones(3))
    with pytest.raises(ValueError, match="valid"):
        valid_points_padded(torch.ones(2, 5, 3), torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_points_behind_camera_is_invalid_not_nan(dtype):
    # regression: z = 0 gave inf/NaN pixels silently; now those points are flagged and zeroed
    K = _K(dtype)
    points = torch.tensor(
        [[[0.1, 0.2, 0.0], [0.0, 0.0, 0.0], [0.3, -0.2, -1.0], [0.4, -0.6, 2.0]]] * 2, dtype=dtype
    ).requires_grad_(True)
    proj = project_points(points, K)
    assert proj.valid.tolist() == [[False, False, False, True]] * 2, f"valid {proj.valid.tolist()}"
    assert bool(torch.isfinite(proj.pixels).all()), f"non-finite pixels {proj.pixels}"
    assert bool((proj.pixels[:, :3] == 0).all()), "invalid pixels must be zero"  # exact: the 0 fill
    # analytic projection of the valid point: u = fx x / z + s y / z + cx, v = fy y / z + cy
    expected = torch.tensor(
        [[14 * 0.2 + 7.5, 14 * -0.3 + 5.5], [20 * 0.2 + 0.7 * -0.3 + 9.0, 18 * -0.3 + 4.0]], dtype=dtype
    )
    assert_close(proj.pixels[:, 3], expected, **TOL[dtype], what="valid point")
    assert_close(proj.depth, points[..., 2].detach(), **TOL[dtype], what="depth is z")
    proj.pixels.sum().backward()
    assert bool(torch.isfinite(points.grad).all()), f"non-finite gradient {points.grad}"
    assert bool((points.grad[:, :3] == 0).all()), "invalid points get no gradient"  # exact: masked out


def test_masked_median_requires_a_bool_mask():
    # regression: a float mask was used as-is (torch.where on a float condition) instead of being rejected
    from geometry.depth_align import masked_median

    x = torch.tensor([[3.0, 1.0, 2.0, 4.0]])
    # exact: the median is one of the inputs, selected, not computed
    assert masked_median(x, torch.ones(1, 4, dtype=torch.bool)).tolist() == [2.0], "lower median"
    for bad in (torch.ones(1, 4), torch.ones(1, 4, dtype=torch.uint8)):
        with pytest.raises(ValueError, match="mask"):
            masked_median(x, bad)
