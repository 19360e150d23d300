"""geometry.cameras vs PyTorch3D's stored cameras, NDC vertices and rasterizer output; analytic values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geometry.cameras import (
    FoVOrthographicCameras,
    FoVPerspectiveCameras,
    IntrinsicsCameras,
    WeakPerspectiveCameras,
    camera_position_from_spherical_angles,
    focal_from_fov,
    image_coords_to_ndc,
    intrinsics_from_fov,
    look_at_rotation,
    look_at_view_transform,
    ndc_pixel_centers,
    ndc_to_image_coords,
    ndc_to_pixel,
    opencv_to_pytorch3d_view,
    pixel_to_ndc,
    view_to_world,
    world_to_view,
)
from geometry.rotations import axis_angle_to_matrix
from helpers import assert_close, load_reference_tensors

MESH_FILES = ["mesh_sil_ico2_persp_64", "mesh_sil_ico2_ortho_64", "mesh_sil_ico3deformed_persp_64"]
# float32 values of O(1) against PyTorch3D: a tighter rtol than TOL[torch.float32]
TOL32 = dict(atol=2e-6, rtol=2e-6)
SIZES = [(64, 64), (48, 64), (64, 40), (1, 3)]


def _camera_for(name: str, d: dict[str, torch.Tensor], R: torch.Tensor, T: torch.Tensor):
    if "persp" in name:
        return FoVPerspectiveCameras(R, T, fov=d["fov_deg"])
    lo_x, hi_x, lo_y, hi_y = (float(v) for v in (-1.6, 1.6, -1.6, 1.6))
    assert torch.allclose(d["ortho_bounds"], torch.tensor([lo_x, hi_x, lo_y, hi_y]))
    return FoVOrthographicCameras(R, T, lo_x, hi_x, lo_y, hi_y)


# ------------------------------------------------------------------------------------------- look at
@pytest.mark.parametrize("name", MESH_FILES)
def test_look_at_matches_reference(name):
    d = load_reference_tensors(name)
    R, T = look_at_view_transform(d["dist"], d["elev"], d["azim"])
    assert_close(R, d["R"], **TOL32, what=f"{name} R")
    assert_close(T, d["T"], **TOL32, what=f"{name} T")
    w2v = d["world_to_view"]
    assert_close(w2v[:, :3, :3], R, **TOL32, what="world_to_view rotation block")
    assert_close(w2v[:, 3, :3], T, **TOL32, what="world_to_view translation row")


def test_look_at_points_file():
    d = load_reference_tensors("points_ortho_64")
    R, T = look_at_view_transform([3.0, 3.0], [0.0, 30.0], [0.0, 60.0])  # views of README section 3
    assert_close(R, d["R"], **TOL32, what="points R")
    assert_close(T, d["T"], **TOL32, what="points T")


def test_look_at_analytic():
    # azim = elev = 0: camera on +Z looking at the origin; x_axis = (-1, 0, 0), world +X on the image's right
    R, T = look_at_view_transform(2.5, 0.0, 0.0, dtype=torch.float64)
    assert_close(
        R[0], torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)), atol=1e-15, rtol=0, what="R"
    )
    assert_close(T[0], torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64), atol=1e-15, rtol=0, what="T")
    # camera centre maps to the view origin; `at` lies on +z_view at distance dist
    R, T = look_at_view_transform(
        torch.tensor([2.0, 3.0]),
        torch.tensor([10.0, -40.0]),
        torch.tensor([70.0, 200.0]),
        at=((0.1, 0.2, -0.3),),
    )
    at_view = world_to_view(torch.tensor([[0.1, 0.2, -0.3]]), R, T)
    assert_close(
        at_view[:, 0], torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]]), atol=1e-5, rtol=0, what="at"
    )
    assert_close(R.transpose(1, 2) @ R, torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0, what="orthonormal")
    assert_close(torch.linalg.det(R), torch.ones(2), atol=1e-6, rtol=0, what="det")
    # a float64 tensor argument gives float64 cameras
    assert look_at_view_transform(torch.tensor([2.0], dtype=torch.float64)).R.dtype == torch.float64


def test_look_at_degenerate_up_gives_rotation():
    R, T = look_at_view_transform(2.0, 90.0, 0.0)  # looking straight down, up parallel to the view axis
    assert_close(R[0].T @ R[0], torch.eye(3), atol=1e-6, rtol=0, what="orthonormal at elev 90")
    assert_close(R[0][:, 2], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6, rtol=0, what="z_axis points down")
    # eye= gives the same as spherical angles
    C = torch.tensor([[0.3, 1.0, -2.0]])
    R2 = look_at_rotation(C)
    R3, T3 = look_at_view_transform(eye=C)
    assert_close(R3, R2, what="eye")
    assert_close(T3, -(C[:, None] @ R2)[:, 0], atol=1e-7, rtol=0, what="T = -C R")


def test_look_at_takes_device_and_dtype_from_tensor_arguments():
    # regression: `at`/`up` on another device than the (float) dist/elev/azim raised a device mismatch;
    # the meta device stands in for CUDA (shapes and devices only)
    R, T = look_at_view_transform(2.0, 10.0, 20.0, at=torch.zeros(1, 3, device="meta"))
    assert R.device.type == "meta" and T.device.type == "meta", f"devices {R.device}, {T.device}"
    assert R.shape == (1, 3, 3) and T.shape == (1, 3), f"shapes {tuple(R.shape)}, {tuple(T.shape)}"
    R, T = look_at_view_transform(torch.ones(3, device="meta"), 0.0, 0.0, up=torch.tensor([[0.0, 1.0, 0.0]]))
    assert R.device.type == "meta" and R.shape == (3, 3, 3), f"{R.device} {tuple(R.shape)}"
    # a float64 `up` (or `at`) makes float64 cameras, with the float64 analytic value
    R, T = look_at_view_transform(2.5, 0.0, 0.0, up=torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    assert R.dtype == torch.float64 and T.dtype == torch.float64, f"dtypes {R.dtype}, {T.dtype}"
    assert_close(T[0], torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64), atol=1e-15, rtol=0, what="T")
    # an explicit dtype wins over the tensors'
    assert look_at_view_transform(torch.tensor([2.0]), dtype=torch.float64).R.dtype == torch.float64


def test_camera_position_from_spherical_angles_keeps_float64():
    # regression: the result was always float32
    d, e, a = (torch.tensor([v], dtype=torch.float64) for v in (2.0, 30.0, 45.0))
    C = camera_position_from_spherical_angles(d, e, a)
    assert C.dtype == torch.float64, f"dtype {C.dtype}"
    c, s = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    expected = torch.tensor([[2 * c * math.sqrt(0.5), 2 * s, 2 * c * math.sqrt(0.5)]], dtype=torch.float64)
    assert_close(C, expected, atol=1e-15, rtol=0, what="float64 camera centre")
    assert camera_position_from_spherical_angles(2.0, 30.0, 45.0).dtype == torch.get_default_dtype()


def test_gradcheck_look_at():
    def fn(dist, elev, azim):
        return tuple(look_at_view_transform(dist, elev, azim, dtype=torch.float64))

    args = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([2.0, 3.0], [10.0, -30.0], [5.0, 120.0])
    ]
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------- world -> NDC (z_view)
@pytest.mark.parametrize("name", MESH_FILES)
def test_world_to_ndc_matches_verts_ndc(name):
    d = load_reference_tensors(name)
    cam = _camera_for(name, d, d["R"], d["T"])
    tol = TOL32
    assert_close(
        cam.transform_points_rasterizer(d["verts"]),
        d["verts_ndc"],
        atol=4 * tol["atol"],
        rtol=4 * tol["rtol"],
        what=f"{name} verts_ndc",
    )
    # PyTorch3D's transform_points: [X, 1] @ full_projection, divided by w (projected depth, not z_view)
    h = torch.cat([d["verts"], torch.ones(d["verts"].shape[0], 1)], dim=-1) @ d["full_projection"]
    assert_close(
        cam.transform_points(d["verts"]),
        h[..., :3] / h[..., 3:],
        atol=4 * tol["atol"],
        rtol=4 * tol["rtol"],
        what=f"{name} transform_points (projected depth)",
    )
    assert_close(cam.projection_matrix(), d["projection"], **TOL32, what=f"{name} projection")
    # full_projection = world_to_view @ projection (row vectors)
    assert_close(
        d["world_to_view"] @ cam.projection_matrix(),
        d["full_projection"],
        atol=1e-5,
        rtol=1e-5,
        what=f"{name} full_projection",
    )


def test_world_to_ndc_matches_points_ndc():
    d = load_reference_tensors("points_ortho_64")
    cam = FoVOrthographicCameras(d["R"], d["T"])  # default bounds +-1
    assert_close(cam.transform_points_rasterizer(d["points"]), d["points_ndc"], **TOL32, what="points_ndc")


@pytest.mark.parametrize("name", ["mesh_sil_ico2_persp_64", "mesh_sil_ico2_ortho_64"])
def test_rasterized_surface_point_lands_on_its_pixel(name):
    """A world point on the face the rasterizer found at pixel (i, j) projects to pixel centre (j, i)."""
    d = load_reference_tensors(name)
    cam = _camera_for(name, d, d["R"], d["T"])
    n, F_ = d["R"].shape[0], d["faces"].shape[0]
    view_idx, rows, cols = torch.nonzero(d["hard_pix_to_face"] >= 0, as_tuple=True)
    face = d["hard_pix_to_face"][view_idx, rows, cols] - view_idx * F_  # packed -> per-mesh face
    bary = d["hard_bary"][view_idx, rows, cols].double()  # (M, 3) 3D (perspective-corrected) barycentrics
    tri = d["verts"].double()[d["faces"][face]]  # (M, 3, 3)
    world = (bary[:, :, None] * tri).sum(1)  # (M, 3)
    cam64 = _camera_for(name, d, d["R"].double(), d["T"].double())
    for b in range(n):
        sel = view_idx == b
        ndc = cam64.transform_points_rasterizer(world[sel][None].expand(n, -1, -1))[b]  # (M_b, 3)
        pix = ndc_to_pixel(ndc[:, :2], d["image_size"].tolist())
        expected = torch.stack([cols[sel], rows[sel]], dim=-1).double()
        assert_close(pix, expected, atol=2e-3, rtol=0, what=f"{name} view {b} pixel of rasterized point")
        assert_close(
            ndc[:, 2],
            d["hard_zbuf"][b, rows[sel], cols[sel]].double(),
            atol=1e-5,
            rtol=1e-5,
            what=f"{name} view {b} zbuf",
        )
    assert cam.is_perspective() == ("persp" in name)


def test_known_point_projects_to_predicted_pixel():
    R, T = look_at_view_transform(3.0, 0.0, 0.0, dtype=torch.float64)
    cam = FoVPerspectiveCameras(R, T, fov=60.0)
    X = torch.tensor([[[0.5, 0.25, 0.0]]], dtype=torch.float64)  # right of and above the origin
    ndc = cam.transform_points_rasterizer(X)[0, 0]
    t = math.tan(math.radians(30.0))
    assert_close(
        ndc,
        torch.tensor([-0.5 / (3 * t), 0.25 / (3 * t), 3.0], dtype=torch.float64),
        atol=1e-14,
        rtol=0,
        what="ndc",
    )
    S = 64
    u, v = ndc_to_pixel(ndc[:2], S).tolist()
    assert u > (S - 1) / 2 and v < (S - 1) / 2, "world +X right and +Y up must land right of and above centre"
    assert u == pytest.approx((S - 1) / 2 + S / 2 * 0.5 / (3 * t), abs=1e-12)
    assert v == pytest.approx((S - 1) / 2 - S / 2 * 0.25 / (3 * t), abs=1e-12)
    x_img, y_img = ndc_to_image_coords(ndc[:2]).tolist()
    assert x_img > 0 and y_img < 0, "normalized image coords: x right, y down"
    # the intrinsics of the same camera give the same pixel
    K = cam.intrinsics(S)
    uv_K = K[0] @ (opencv_to_pytorch3d_view(cam.world_to_view(X))[0, 0])
    assert_close(
        uv_K[:2] / uv_K[2], torch.tensor([u, v], dtype=torch.float64), atol=1e-12, rtol=0, what="K pixel"
    )


# ------------------------------------------------------------------------------------ 2D conversions
@pytest.mark.parametrize("hw", SIZES)
def test_pixel_centers_match_readme_formula(hw):
    H, W = hw
    S = min(H, W)
    grid = ndc_pixel_centers(hw, dtype=torch.float64)
    assert grid.shape == (H, W, 2)
    for i in range(H):  # slow, obviously correct reference
        for j in range(0, W, max(1, W // 7)):
            exp = ((W - 2 * j - 1) / S, (H - 2 * i - 1) / S)
            assert grid[i, j].tolist() == pytest.approx(exp, abs=1e-14), (i, j)
    if H == W:  # README: x_ndc = 1 - (2j+1)/W
        assert grid[0, 0].tolist() == pytest.approx([1 - 1 / W, 1 - 1 / H])
    pix = ndc_to_pixel(grid, hw)
    jj, ii = torch.meshgrid(
        torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64), indexing="xy"
    )
    assert_close(pix, torch.stack([jj, ii], -1), atol=1e-12, rtol=0, what="ndc_to_pixel(pixel centres)")
    # shorter side spans [-1, 1] edge to edge
    edges = pixel_to_ndc(torch.tensor([[-0.5, -0.5], [W - 0.5, H - 0.5]], dtype=torch.float64), hw)
    assert_close(
        edges,
        torch.tensor([[W / S, H / S], [-W / S, -H / S]], dtype=torch.float64),
        atol=1e-14,
        rtol=0,
        what="image edges in NDC",
    )


@pytest.mark.parametrize("hw", SIZES)
def test_conversions_are_inverses(hw):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 7, 2, generator=g, dtype=torch.float64) * 4 - 2
    assert_close(pixel_to_ndc(ndc_to_pixel(xy, hw), hw), xy, what="pixel o ndc")
    assert_close(ndc_to_pixel(pixel_to_ndc(xy, hw), hw), xy, what="ndc o pixel")
    assert_close(image_coords_to_ndc(ndc_to_image_coords(xy, hw), hw), xy, what="img o ndc")
    assert_close(ndc_to_image_coords(image_coords_to_ndc(xy, hw), hw), xy, what="ndc o img")


@pytest.mark.parametrize("hw", SIZES)
def test_image_coords_are_grid_sample_coords(hw):
    """Image coords of pixel centres sample exactly those pixels with grid_sample(align_corners=False)."""
    H, W = hw
    img = torch.rand(1, 2, H, W, dtype=torch.float64)
    coords = ndc_to_image_coords(ndc_pixel_centers(hw, dtype=torch.float64), hw)  # (H, W, 2)
    out = F.grid_sample(img, coords[None], mode="bilinear", align_corners=False)
    assert_close(out, img, atol=1e-12, rtol=0, what="grid_sample at pixel centres")
    jj = torch.arange(W, dtype=torch.float64)
    assert_close(coords[0, :, 0], (2 * jj + 1) / W - 1, atol=1e-14, rtol=0, what="x_img = (2u+1)/W - 1")


def test_conversion_shape_errors():
    with pytest.raises(ValueError, match="xy_ndc"):
        ndc_to_pixel(torch.zeros(3, 3), 8)
    with pytest.raises(ValueError, match="uv"):
        pixel_to_ndc(torch.zeros(3), 8)
    with pytest.raises(ValueError, match="xy_img"):
        image_coords_to_ndc(torch.zeros(2, 1), 8)
    with pytest.raises(ValueError, match="points"):
        opencv_to_pytorch3d_view(torch.zeros(2, 2))


# ------------------------------------------------------------------------------------------ intrinsics
def test_focal_and_intrinsics_from_fov():
    assert focal_from_fov(90.0, 64) == pytest.approx(32.0)
    assert focal_from_fov(60.0, 100) == pytest.approx(50.0 / math.tan(math.radians(30.0)))
    fov = torch.tensor([90.0, 60.0], dtype=torch.float64)
    K = intrinsics_from_fov(fov, 48, 64)
    assert K.shape == (2, 3, 3) and K.dtype == torch.float64
    assert_close(
        K[0],
        torch.tensor([[32.0, 0, 31.5], [0, 32.0, 23.5], [0, 0, 1]], dtype=torch.float64),
        atol=1e-12,
        rtol=0,
        what="K(90 deg, 48x64)",
    )
    # the horizontal fov is the angle between the rays through the left and right image edges
    f = K[1, 0, 0]
    left, right = (-0.5 - K[1, 0, 2]) / f, (63.5 - K[1, 0, 2]) / f
    assert math.degrees(math.atan(right) - math.atan(left)) == pytest.approx(60.0, abs=1e-10)
    # square image: the same camera as FoVPerspectiveCameras (whose fov is vertical = horizontal there)
    cam = FoVPerspectiveCameras(torch.eye(3).expand(2, 3, 3).double(), torch.zeros(2, 3).double(), fov=fov)
    assert_close(
        intrinsics_from_fov(fov, 64, 64), cam.intrinsics(64), atol=1e-12, rtol=0, what="vs FoV camera"
    )
    with pytest.raises(ValueError, match="fov_deg"):
        intrinsics_from_fov(torch.ones(2, 2), 8, 8)


def test_intrinsics_from_integer_fov_is_not_truncated():
    # regression: tensor([60]) gave fx = 6 instead of 8 / (2 tan 30 deg) = 6.928...
    K = intrinsics_from_fov(torch.tensor([60]), 8, 8)
    assert K.dtype == torch.get_default_dtype(), f"dtype {K.dtype}"
    f = 4.0 / math.tan(math.radians(30.0))
    assert K[0, 0, 0].item() == pytest.approx(f, rel=1e-6) and K[0, 1, 1].item() == pytest.approx(f, rel=1e-6)
    assert_close(K, intrinsics_from_fov(torch.tensor([60.0]), 8, 8), what="int vs float fov")


@pytest.mark.parametrize("hw", [(64, 64), (48, 80)])
def test_intrinsics_camera_equals_fov_camera(hw):
    g = torch.Generator().manual_seed(3)
    R = axis_angle_to_matrix(torch.randn(2, 3, generator=g, dtype=torch.float64))
    T = torch.tensor([[0.1, -0.2, 4.0], [0.0, 0.3, 5.0]], dtype=torch.float64)
    X = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    fov_cam = FoVPerspectiveCameras(R, T, fov=torch.tensor([50.0, 70.0], dtype=torch.float64))
    k_cam = IntrinsicsCameras(R, T, fov_cam.intrinsics(hw), hw)
    assert_close(
        k_cam.transform_points_rasterizer(X),
        fov_cam.transform_points_rasterizer(X),
        what="K camera vs FoV camera",
    )
    # pixels from NDC equal pixels from K in the OpenCV frame
    uvw = opencv_to_pytorch3d_view(fov_cam.world_to_view(X)) @ fov_cam.intrinsics(hw).transpose(1, 2)
    assert_close(
        ndc_to_pixel(fov_cam.transform_points(X)[..., :2], hw),
        uvw[..., :2] / uvw[..., 2:],
        what="ndc_to_pixel vs K",
    )


# ------------------------------------------------------------------------------- unprojection & grads
def _cameras64():
    g = torch.Generator().manual_seed(4)
    R = axis_angle_to_matrix(torch.randn(2, 3, generator=g, dtype=torch.float64))
    T = torch.tensor([[0.1, -0.2, 4.0], [0.0, 0.3, 5.0]], dtype=torch.float64)
    K = torch.tensor([[[40.0, 0.5, 30.0], [0, 42.0, 20.0], [0, 0, 1]]], dtype=torch.float64).expand(2, 3, 3)
    return [
        FoVPerspectiveCameras(R, T, fov=torch.tensor([50.0, 70.0], dtype=torch.float64), aspect_ratio=1.3),
        FoVOrthographicCameras(
            R, T, -1.2, 0.8, -0.5, 1.5, scale_xyz=torch.rand(2, 3, generator=g).double() + 0.5
        ),
        IntrinsicsCameras(R, T, K, (48, 64)),
    ]


@pytest.mark.parametrize("cam", _cameras64(), ids=["persp", "ortho", "K"])
def test_unproject_points_inverts_transform_points(cam):
    X = torch.randn(2, 30, 3, dtype=torch.float64)
    # PyTorch3D's contract (CamerasBase.unproject_points): xy of transform_points, depth z_view
    ndc = torch.cat([cam.transform_points(X)[..., :2], cam.world_to_view(X)[..., 2:]], dim=-1)
    assert_close(ndc, cam.transform_points_rasterizer(X), what="rasterizer input = (xy, z_view)")
    assert_close(cam.unproject_points(ndc), X, what="world round trip")
    assert_close(cam.unproject_points(ndc, world_coordinates=False), cam.world_to_view(X), what="view")
    assert_close(view_to_world(world_to_view(X, cam.R, cam.T), cam.R, cam.T), X, what="view_to_world")
    # (P, 3) points are shared by all cameras
    assert_close(cam.transform_points(X[0]), cam.transform_points(X[0].expand(2, -1, -1)), what="shared")


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["persp", "ortho", "K"])
def test_gradcheck_transform_points(idx):
    cam = _cameras64()[idx]
    X = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    R = cam.R.clone().requires_grad_(True)
    T = cam.T.clone().requires_grad_(True)

    def fn(X, R, T):
        if isinstance(cam, FoVPerspectiveCameras):
            return FoVPerspectiveCameras(R, T, fov=cam.fov, aspect_ratio=cam.aspect_ratio).transform_points(X)
        if isinstance(cam, FoVOrthographicCameras):
            return FoVOrthographicCameras(
                R, T, -1.2, 0.8, -0.5, 1.5, scale_xyz=cam.scale_xyz
            ).transform_points(X)
        return IntrinsicsCameras(R, T, cam.K, cam.image_size).transform_points(X)

    assert torch.autograd.gradcheck(fn, (X, R, T), eps=1e-6, atol=1e-6)


def test_gradcheck_fov_and_intrinsics():
    R = torch.eye(3, dtype=torch.float64)[None]
    T = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)
    X = torch.randn(1, 4, 3, dtype=torch.float64)
    fov = torch.tensor([55.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: FoVPerspectiveCameras(R, T, fov=f).transform_points(X), (fov,))
    assert torch.autograd.gradcheck(lambda f: intrinsics_from_fov(f, 30, 40), (fov,))
    K = torch.tensor(
        [[[40.0, 0.5, 30.0], [0, 42.0, 20.0], [0, 0, 1]]], dtype=torch.float64, requires_grad=True
    )
    xy = torch.rand(1, 4, 3, dtype=torch.float64) + 1.0
    assert torch.autograd.gradcheck(lambda k: IntrinsicsCameras(R, T, k, (48, 64)).unproject_points(xy), (K,))


# --------------------------------------------------------------------------------- weak perspective
def test_weak_perspective_analytic_and_equivalent_orthographic():
    s = torch.tensor([[0.5], [1.2]], dtype=torch.float64)
    t = torch.tensor([[0.1, -0.2], [0.0, 0.3]], dtype=torch.float64)
    R = torch.stack(
        [torch.eye(3, dtype=torch.float64), axis_angle_to_matrix(torch.tensor([0.3, -1.0, 0.4]).double())]
    )
    cam = WeakPerspectiveCameras(s, R, t, z_offset=5.0)
    X = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    # R = I: x_img = s X_xy + t
    assert_close(
        cam.project(X)[0],
        torch.tensor([[0.6, -0.2], [0.1, 0.3]], dtype=torch.float64),
        atol=1e-15,
        rtol=0,
        what="s X R + t",
    )
    assert_close(
        cam.transform_points_rasterizer(X)[0],
        torch.tensor([[-0.6, 0.2, 5.0], [-0.1, -0.3, 7.0]], dtype=torch.float64),
        atol=1e-15,
        rtol=0,
        what="ndc = -img, z = (XR)_z + z_offset",
    )
    Xr = torch.randn(2, 25, 3, dtype=torch.float64)
    ortho = cam.to_orthographic()
    assert_close(ortho.transform_points(Xr), cam.transform_points(Xr), what="weak persp == FoVOrthographic")
    assert_close(
        ortho.transform_points_rasterizer(Xr), cam.transform_points_rasterizer(Xr), what="rasterizer input"
    )
    assert_close(ndc_to_image_coords(ortho.transform_points(Xr)[..., :2]), cam.project(Xr), what="to image")
    assert_close(torch.linalg.det(ortho.R), torch.ones(2, dtype=torch.float64), what="ortho R is a rotation")
    # non-square image: NDC of the image coordinates through the shared conversion
    assert_close(
        cam.transform_points(Xr, (40, 64))[..., :2],
        image_coords_to_ndc(cam.project(Xr), (40, 64)),
        what="non-square",
    )


def test_weak_perspective_gradcheck_and_shapes():
    s = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(torch.tensor([[0.2, 0.1, -0.3]], dtype=torch.float64)).requires_grad_(True)
    t = torch.tensor([[0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    X = torch.randn(1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s, R, t, X: WeakPerspectiveCameras(s, R, t).project(X), (s, R, t, X)
    )
    with pytest.raises(ValueError, match="scale"):
        WeakPerspectiveCameras(torch.ones(2), torch.eye(3)[None].expand(2, 3, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="trans"):
        WeakPerspectiveCameras(torch.ones(2, 1), torch.eye(3)[None].expand(2, 3, 3), torch.zeros(3, 2))


def test_camera_shape_errors():
    R, T = torch.eye(3)[None].expand(2, 3, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="T"):
        FoVPerspectiveCameras(R, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="R"):
        FoVOrthographicCameras(torch.eye(3), T)
    with pytest.raises(ValueError, match="fov"):
        FoVPerspectiveCameras(R, T, fov=torch.ones(3))
    with pytest.raises(ValueError, match="K"):
        IntrinsicsCameras(R, T, torch.eye(3), 8)
    with pytest.raises(ValueError, match="points"):
        FoVPerspectiveCameras(R, T).transform_points(torch.zeros(3, 5, 3))
    with pytest.raises(ValueError, match="scale_xyz"):
        FoVOrthographicCameras(R, T, scale_xyz=torch.ones(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    from geometry.depth import unproject_depth
    from geometry.rotations import matrix_to_axis_angle

    dist, elev, azim = (torch.tensor(v, device="cuda") for v in ([2.0, 3.0], [10.0, -30.0], [5.0, 120.0]))
    R, T = look_at_view_transform(dist, elev, azim)
    assert R.device.type == "cuda"
    R_cpu, T_cpu = look_at_view_transform(dist.cpu(), elev.cpu(), azim.cpu())
    assert_close(R.cpu(), R_cpu, **TOL32, what="cuda R")
    X = torch.randn(2, 50, 3)
    ndc = FoVPerspectiveCameras(R, T, fov=45.0).transform_points(X.cuda())
    assert_close(
        ndc.cpu(),
        FoVPerspectiveCameras(R_cpu, T_cpu, fov=45.0).transform_points(X),
        atol=1e-5,
        rtol=1e-5,
        what="cuda ndc",
    )
    assert_close(
        matrix_to_axis_angle(R).cpu(), matrix_to_axis_angle(R_cpu), atol=1e-5, rtol=1e-5, what="cuda aa"
    )
    depth = torch.rand(2, 1, 6, 8) + 1
    K = intrinsics_from_fov(torch.tensor([50.0, 60.0]), 6, 8)
    pts = unproject_depth(depth.cuda(), K.cuda()).points
    assert_close(pts.cpu(), unproject_depth(depth, K).points, atol=1e-5, rtol=1e-5, what="cuda unproject")
