"""geometry.cameras against PyTorch3D's documented behaviour: the facts of PyTorch3D's tests/test_cameras.py,
docs/notes/cameras.md and pytorch3d/renderer/cameras.py (each test names its source), plus the stored
PyTorch3D outputs of tests/data/pytorch3d/. Expected values are written out here, not computed by PyTorch3D's
code."""

from __future__ import annotations

import math

import pytest
import torch

import geometry
from geometry.cameras import (
    FoVOrthographicCameras,
    FoVPerspectiveCameras,
    IntrinsicsCameras,
    OrthographicCameras,
    PerspectiveCameras,
    camera_position_from_spherical_angles,
    look_at_rotation,
    look_at_view_transform,
    ndc_to_pixel,
)
from geometry.mesh_raster import rasterize_meshes
from geometry.point_raster import rasterize_points
from geometry.rotations import axis_angle_to_matrix
from helpers import TOL, assert_close, load_reference_tensors

F64 = torch.float64
SQ3 = math.sqrt(3.0)


def assert_same_faces(actual, expected, what: str, max_flips: int = 2):
    """Integer pixel-to-face (or point) indices equal, except at most `max_flips` pixels: a pixel centre that
    lies within float rounding of an edge may fall on either side on another CPU (the cameras here reach
    the same NDC coordinates by different float paths). Returns the mask of agreeing pixels."""
    same = actual == expected
    flips = int((~same).sum())
    assert flips <= max_flips, f"{what}: {flips} of {same.numel()} indices differ (allowed {max_flips})"
    return same


def _rotation_checks(R: torch.Tensor, what: str) -> None:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert_close(R.transpose(1, 2) @ R, eye, what=f"{what} orthonormal")
    assert_close(torch.linalg.det(R), torch.ones(R.shape[0], dtype=R.dtype), what=f"{what} det")


# ------------------------------------------------------------------------------ look at: corner case
def _pytorch3d_pole_rotation(elev: float, azim: float, dtype: torch.dtype) -> torch.Tensor:
    """PyTorch3D's float32 look_at_view_transform(dist, elev=+-90, azim) (up = +y): columns
    x = (cos a, 0, -sin a), y = s (sin a, 0, cos a), z = (0, -s, 0), s = sign(elev). Derived from
    look_at_rotation's replacement x = normalize(y x z) (pytorch3d/renderer/cameras.py): float32 pi/2 is
    above pi/2, so cos(elev) < 0 and the residual of up x z points along (cos a, 0, -sin a)."""
    a, s = math.radians(azim), math.copysign(1.0, elev)
    x = [math.cos(a), 0.0, -math.sin(a)]
    y = [s * math.sin(a), 0.0, s * math.cos(a)]
    z = [0.0, -s, 0.0]
    return torch.tensor([x, y, z], dtype=dtype).T[None]  # columns


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("elev", [90.0, -90.0])
@pytest.mark.parametrize("azim", [0.0, 30.0, 90.0, 250.0])
def test_look_at_view_transform_pole_is_pytorch3d_corner_case(dtype, elev, azim):
    R, T = look_at_view_transform(2.7, elev, azim, dtype=dtype)
    assert_close(R, _pytorch3d_pole_rotation(elev, azim, dtype), what="R at the pole")
    C = camera_position_from_spherical_angles(2.7, elev, azim, dtype=dtype)
    assert_close(T, -(C[:, None] @ R)[:, 0], what="T = -C R")
    _rotation_checks(R, "pole R")


@pytest.mark.parametrize("elev", [90.0, -90.0])
@pytest.mark.parametrize("azim", [0.0, 30.0, 90.0, 250.0])
def test_look_at_rotation_pole_from_float32_eye(elev, azim):
    # eye= of the float32 spherical position goes through look_at_rotation's replacement, as in PyTorch3D
    C = camera_position_from_spherical_angles(2.7, elev, azim)
    R, _ = look_at_view_transform(eye=C)
    assert_close(R, _pytorch3d_pole_rotation(elev, azim, torch.float32), what="look_at_rotation at the pole")


def test_look_at_view_transform_corner_case_pytorch3d_test():
    # PyTorch3D tests/test_cameras.py test_look_at_view_transform_corner_case
    position = camera_position_from_spherical_angles(2.7, 90, 90)
    assert_close(position, torch.tensor([[0.0, 2.7, 0.0]]), what="position above the origin")
    R, _ = look_at_view_transform(eye=position)
    assert_close(R[:, :, 0], torch.tensor([[0.0, 0.0, -1.0]]), what="x axis")
    # an eye exactly above the target (PyTorch3D: zero x, y columns) still gives that x axis and a rotation
    R, T = look_at_view_transform(eye=((0.0, 2.0, 0.0),), dtype=F64)
    assert_close(R[:, :, 0], torch.tensor([[0.0, 0.0, -1.0]], dtype=F64), what="x axis, exact eye")
    assert_close(R[:, :, 2], torch.tensor([[0.0, -1.0, 0.0]], dtype=F64), what="z axis, exact eye")
    _rotation_checks(R, "exact eye")


def test_look_at_rotation_near_pole_stays_a_rotation():
    # |up x z| < 1e-5 but above PyTorch3D's degenerate threshold: normalized exactly (documented difference)
    R, _ = look_at_view_transform(2.0, torch.tensor([89.9999, -89.9999], dtype=F64), 40.0)
    _rotation_checks(R, "near pole")


# ------------------------------------------------------------------------ look at: inputs, broadcasting
def test_camera_position_from_spherical_angles_pytorch3d_tests():
    # PyTorch3D tests/test_cameras.py test_camera_position_from_angles_*
    assert_close(
        camera_position_from_spherical_angles(2.7, 90.0, 0.0), torch.tensor([[0.0, 2.7, 0.0]]), what="scalar"
    )
    assert_close(
        camera_position_from_spherical_angles(2.7, math.pi / 2, 0.0, degrees=False),
        torch.tensor([[0.0, 2.7, 0.0]]),
        what="radians",
    )
    assert_close(
        camera_position_from_spherical_angles(2.7, torch.tensor(0.0), 90.0),
        torch.tensor([[2.7, 0.0, 0.0]]),
        what="mixed scalars",
    )
    assert_close(
        camera_position_from_spherical_angles(torch.tensor([2.0, 2.0]), [0.0, 90.0], (90.0, 0.0)),
        torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]),
        what="vectors, lists and tuples",
    )
    expected = torch.tensor([[2.0, 0.0, 0.0], [3.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    dist = torch.tensor([2.0, 3.0, 5.0])
    assert_close(
        camera_position_from_spherical_angles(dist, torch.tensor([0.0]), torch.tensor([90.0])),
        expected,
        what="broadcast (1,)",
    )
    assert_close(
        camera_position_from_spherical_angles(dist, 0.0, torch.tensor(90.0)), expected, what="mixed broadcast"
    )


def test_camera_position_bad_broadcast_raises_value_error():
    # PyTorch3D test_camera_position_from_angles_vectors_bad_broadcast: batch sizes must be N or 1
    with pytest.raises(ValueError, match="non-broadcastable"):
        camera_position_from_spherical_angles(
            torch.tensor([2.0, 3.0, 5.0]), torch.tensor([0.0, 90.0]), torch.tensor([90.0])
        )
    with pytest.raises(ValueError, match="non-broadcastable"):
        look_at_view_transform(torch.tensor([2.0, 3.0, 5.0]), 0.0, 0.0, at=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-broadcastable"):
        look_at_rotation(torch.ones(3, 3), at=torch.zeros(2, 3))


def test_look_at_rotation_accepts_lists_and_broadcasts():
    # PyTorch3D test_look_at_rotation_python_list / _list_broadcast / _tensor_broadcast / _input_fail
    assert_close(look_at_rotation([[0.0, 0.0, -1.0]]), torch.eye(3)[None], what="list")
    assert_close(look_at_rotation((0.0, 0.0, -1.0)), torch.eye(3)[None], what="3-tuple")
    expected = torch.stack([torch.eye(3), torch.diag(torch.tensor([-1.0, 1.0, -1.0]))])
    positions = [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]
    assert_close(look_at_rotation(positions), expected, what="list broadcast")
    assert_close(look_at_rotation(torch.tensor(positions)), expected, what="tensor broadcast")
    assert_close(
        look_at_rotation(positions, at=(0.0, 0.0, 0.0), up=[0.0, 1.0, 0.0]), expected, what="flat at / up"
    )
    with pytest.raises(ValueError, match="camera_position"):
        look_at_rotation([-1.0])


def test_look_at_rotation_tensor_grad():
    # PyTorch3D test_look_at_rotation_tensor_grad: R(C = (0, 0, -1)) summed has zero gradient
    C = torch.tensor([[0.0, 0.0, -1.0]], requires_grad=True)
    look_at_rotation(C).sum().backward()
    assert_close(C.grad, torch.zeros_like(C), what="grad")


def test_look_at_view_transform_eye_tuple_and_at():
    # PyTorch3D test_look_at_view_transform_from_eye_point_tuple and _non_default_at_position
    R, t = look_at_view_transform(math.sqrt(2), math.pi / 4, 0.0, degrees=False)
    R_eye, t_eye = look_at_view_transform(dist=3, elev=2, azim=1, eye=((0.0, 1.0, 1.0),))
    R_only, t_only = look_at_view_transform(eye=((0.0, 1.0, 1.0),))
    for what, (Ra, ta) in {"eye overrides": (R_eye, t_eye), "eye only": (R_only, t_only)}.items():
        assert_close(Ra, R, what=f"{what} R")
        assert_close(ta, t, what=f"{what} T")
    R0, t0 = look_at_view_transform()
    R1, t1 = look_at_view_transform(1.0, 0.0, 0.0, at=((1, 1, 1),))
    assert_close(R1, R0, what="R with at")
    assert_close(t1, t0 + torch.tensor([[1.0, -1.0, 1.0]]), what="T with at")


# ------------------------------------------------------------------- FoV cameras: transform_points
def test_fov_perspective_transform_points_is_projected_depth():
    # PyTorch3D tests/test_cameras.py TestFoVPerspectiveProjection test_perspective / test_transform_points
    far = 10.0
    cam = FoVPerspectiveCameras(znear=1.0, zfar=far, fov=60.0)
    points = torch.tensor([1.0, 2.0, far]).view(1, 1, 3).expand(5, 10, -1)  # one camera, 5 clouds
    expected = torch.tensor([SQ3 / far, 2 * SQ3 / far, 1.0]).view(1, 1, 3).expand(5, 10, -1)
    assert_close(cam.transform_points(points), expected, what="far plane -> depth 1")
    near = torch.tensor([[1.0, 2.0, 1.0]])  # (P, 3) with one camera -> (P, 3)
    assert_close(cam.transform_points(near), torch.tensor([[SQ3, 2 * SQ3, 0.0]]), what="near plane -> 0")
    # the rasterizers' input keeps z_view
    assert_close(
        cam.transform_points_rasterizer(points), torch.cat([expected[..., :2], points[..., 2:]], -1), what="z"
    )


def test_fov_perspective_mixed_inputs_broadcast():
    # PyTorch3D test_perspective_mixed_inputs_broadcast
    cam = FoVPerspectiveCameras(znear=1.0, zfar=torch.tensor([10.0, 20.0]), fov=torch.tensor(60.0))
    z2 = (20.0 / (20.0 - 1.0) * 10.0 + -20.0 / (20.0 - 1.0)) / 10.0
    expected = torch.tensor([[[SQ3 / 10, 2 * SQ3 / 10, 1.0]], [[SQ3 / 10, 2 * SQ3 / 10, z2]]])
    assert_close(cam.transform_points(torch.tensor([[[1.0, 2.0, 10.0]]])), expected, what="two zfar")


def test_fov_orthographic_transform_points_is_projected_depth():
    # PyTorch3D TestFoVOrthographicProjection test_orthographic / _scaled / _mixed_inputs_broadcast
    cam = FoVOrthographicCameras(znear=1.0, zfar=10.0)
    assert_close(cam.transform_points(torch.tensor([[1.0, 2.0, 10.0]])), torch.tensor([[1.0, 2.0, 1.0]]))
    assert_close(cam.transform_points(torch.tensor([[1.0, 2.0, 1.0]])), torch.tensor([[1.0, 2.0, 0.0]]))
    scaled = FoVOrthographicCameras(znear=1.0, zfar=10.0, scale_xyz=[[2.0, 0.5, 20]])
    assert_close(
        scaled.transform_points(torch.tensor([[[1.0, 2.0, 0.5]]])),
        torch.tensor([[[2.0, 1.0, 1.0]]]),
        what="scaled",
    )
    two = FoVOrthographicCameras(znear=1.0, zfar=torch.tensor([10.0, 20.0]))
    z2 = 1.0 / (20.0 - 1.0) * 10.0 + -1.0 / (20.0 - 1.0)
    assert_close(
        two.transform_points(torch.tensor([[[1.0, 2.0, 10.0]]])),
        torch.tensor([[[1.0, 2.0, 1.0]], [[1.0, 2.0, z2]]]),
        what="two zfar",
    )
    assert not cam.is_perspective() and FoVPerspectiveCameras().is_perspective()
    assert_close(cam.get_znear(), torch.tensor([1.0]), what="get_znear")


@pytest.mark.parametrize("name", ["mesh_sil_ico2_persp_64", "mesh_sil_ico2_ortho_64"])
def test_matrices_match_reference(name):
    d = load_reference_tensors(name)
    if "persp" in name:
        cam = FoVPerspectiveCameras(d["R"], d["T"], fov=d["fov_deg"])
    else:
        cam = FoVOrthographicCameras(d["R"], d["T"], -1.6, 1.6, -1.6, 1.6)
    tol = dict(atol=1e-5, rtol=1e-5)  # float32 4x4 products of O(1) values
    assert_close(cam.world_to_view_matrix(), d["world_to_view"], **tol, what="world_to_view")
    assert_close(cam.full_projection_matrix(), d["full_projection"], **tol, what="full_projection")
    # PyTorch3D test_get_camera_center: C = -R T (column vectors)
    assert_close(cam.get_camera_center(), -(d["R"] @ d["T"][:, :, None])[:, :, 0], **tol, what="centre")


def test_fov_constructors_accept_lists_and_broadcast():
    # PyTorch3D test_camera_class_init: FoVPerspectiveCameras(znear=10.0, zfar=(100.0, 200.0))
    cam = FoVPerspectiveCameras(znear=10.0, zfar=(100.0, 200.0))
    assert cam.znear.shape == (2,) and cam.zfar.shape == (2,) and len(cam) == 2
    assert cam.R.shape == (2, 3, 3) and cam.T.shape == (2, 3)
    R = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
    a = FoVPerspectiveCameras(R=R, T=[[0.0, 0.0, 3.0]], fov=[50.0, 70.0])
    b = FoVPerspectiveCameras(
        torch.eye(3).expand(2, 3, 3), torch.tensor([[0.0, 0.0, 3.0]] * 2), fov=torch.tensor([50.0, 70.0])
    )
    X = torch.randn(2, 6, 3)
    assert_close(a.transform_points(X), b.transform_points(X), what="lists == tensors")
    o = FoVOrthographicCameras(
        T=((0.0, 0.0, 2.0),), min_x=[-1.0, -2.0], max_x=2.0, scale_xyz=((1.0, 2.0, 1.0),)
    )
    assert len(o) == 2 and o.min_x.shape == (2,) and o.scale_xyz.shape == (2, 3)
    with pytest.raises(ValueError, match="non-broadcastable"):
        FoVPerspectiveCameras(fov=[50.0, 60.0], znear=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("cls", [FoVPerspectiveCameras, FoVOrthographicCameras])
def test_fov_unproject_points_scaled_depth_input(cls):
    # PyTorch3D TestCamerasCommon test_unproject_points: both depth kinds, world and view coordinates
    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(3, 3, generator=g, dtype=F64))
    T = torch.tensor([[0.1, -0.2, 4.0], [0.0, 0.3, 5.0], [0.2, 0.1, 3.0]], dtype=F64)
    cam = cls(R, T, znear=0.5, zfar=20.0)
    X = torch.randn(3, 40, 3, generator=g, dtype=F64) * 0.3
    view = cam.world_to_view(X)
    proj = cam.transform_points(X)
    xy_depth = torch.cat([proj[..., :2], view[..., 2:]], dim=-1)
    for world, expected in ((True, X), (False, view)):
        for scaled, inp in ((True, proj), (False, xy_depth)):
            out = cam.unproject_points(inp, world_coordinates=world, scaled_depth_input=scaled)
            assert_close(out, expected, what=f"world={world} scaled={scaled}")


# -------------------------------------------------------------- PerspectiveCameras, OrthographicCameras
def test_perspective_cameras_pytorch3d_projection():
    # PyTorch3D TestPerspectiveProjection test_perspective / _scaled; docs/notes/cameras.md formulas
    v = torch.randn(3, 4, 3, dtype=F64) + torch.tensor([0.0, 0.0, 4.0], dtype=F64)
    x, y, z = v.unbind(-1)
    default = PerspectiveCameras(dtype=F64)
    assert_close(default.transform_points(v), torch.stack([x / z, y / z, 1 / z], -1), what="default")
    cam = PerspectiveCameras(focal_length=((10.0, 15.0),), principal_point=((15.0, 30.0),), dtype=F64)
    expected = torch.stack([10 * x / z + 15, 15 * y / z + 30, 1 / z], -1)
    assert_close(cam.transform_points(v), expected, what="scaled")
    assert_close(cam.get_principal_point(), torch.tensor([[15.0, 30.0]], dtype=F64), what="principal point")
    # K (N, 4, 4), column-vector form, instead of focal length and principal point
    K = torch.tensor([[[10.0, 0, 15, 0], [0, 15, 30, 0], [0, 0, 0, 1], [0, 0, 1, 0]]], dtype=F64)
    assert_close(PerspectiveCameras(K=K).transform_points(v), expected, what="K")
    assert cam.is_perspective() and cam.get_znear() is None and cam.in_ndc()


def test_orthographic_cameras_pytorch3d_projection():
    # PyTorch3D TestOrthographicProjection test_orthographic / _scaled
    v = torch.randn(3, 4, 3, dtype=F64)
    assert_close(OrthographicCameras(dtype=F64).transform_points(v), v, what="default")
    cam = OrthographicCameras(focal_length=((10.0, 15.0),), principal_point=((2.5, 3.5),), dtype=F64)
    expected = v * torch.tensor([10.0, 15.0, 1.0], dtype=F64) + torch.tensor([2.5, 3.5, 0.0], dtype=F64)
    assert_close(cam.transform_points(v), expected, what="scaled")
    assert_close(cam.get_principal_point(), torch.tensor([[2.5, 3.5]], dtype=F64), what="principal point")
    assert not cam.is_perspective() and cam.get_znear() is None
    # FoVOrthographicCameras with bounds +-b is focal length 1 / b
    R = axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 0.5]], dtype=F64))
    T = torch.tensor([[0.1, 0.2, 3.0]], dtype=F64)
    fov = FoVOrthographicCameras(R, T, -1.6, 1.6, -1.6, 1.6)
    ortho = OrthographicCameras(focal_length=1 / 1.6, R=R, T=T)
    assert_close(
        ortho.transform_points_rasterizer(v), fov.transform_points_rasterizer(v), what="vs FoV ortho"
    )


def test_focal_length_forms():
    # PyTorch3D: focal_length a float, (N,), (N, 1) or (N, 2); stored as (N, 2)
    for f in (2.0, (2.0,), [[2.0]], torch.tensor([2.0]), ((2.0, 2.0),)):
        cam = PerspectiveCameras(focal_length=f)
        assert_close(cam.focal_length, torch.tensor([[2.0, 2.0]]), what=f"focal {f!r}")
    cam = PerspectiveCameras(focal_length=torch.tensor([1.0, 2.0, 3.0]))
    assert len(cam) == 3 and cam.principal_point.shape == (3, 2)
    with pytest.raises(ValueError, match="focal_length"):
        PerspectiveCameras(focal_length=torch.ones(2, 3))
    with pytest.raises(ValueError, match="image_size"):
        PerspectiveCameras(image_size=((0, 4),))


def test_docs_example_ndc_and_screen_cameras_agree():
    # docs/notes/cameras.md: NDC (1.2, (0.2, 0.5)) == screen (76.8, (115.2, 32)) for a 128 x 256 image
    ndc = PerspectiveCameras(focal_length=(1.2,), principal_point=((0.2, 0.5),), dtype=F64)
    screen = PerspectiveCameras(
        focal_length=(76.8,),
        principal_point=((115.2, 32),),
        in_ndc=False,
        image_size=((128, 256),),
        dtype=F64,
    )
    X = torch.randn(1, 30, 3, dtype=F64) * 0.3 + torch.tensor([0.0, 0.0, 3.0], dtype=F64)
    assert_close(screen.transform_points_ndc(X), ndc.transform_points_ndc(X), what="NDC")
    assert_close(screen.transform_points_rasterizer(X), ndc.transform_points_rasterizer(X), what="rasterizer")
    assert_close(
        screen.transform_points_screen(X),
        ndc.transform_points_screen(X, image_size=(128, 256)),
        what="screen",
    )
    # screen = PyTorch3D screen coordinates: x right from the left edge, px - fx X / Z
    x, y, z = X.unbind(-1)
    assert_close(screen.transform_points_screen(X)[..., 0], 115.2 - 76.8 * x / z, what="screen x")
    assert_close(screen.transform_points_screen(X)[..., 1], 32 - 76.8 * y / z, what="screen y")


def test_equiv_ndc_screen_cameras_non_square():
    # PyTorch3D TestCamerasCommon.init_equiv_cameras_ndc_screen / test_equiv_project_points
    g = torch.Generator().manual_seed(1)
    n = 50
    T = torch.randn(n, 3, generator=g, dtype=F64) * 0.03
    T[:, 2] = 4
    R = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=F64) * 3.0)
    fcl = torch.rand(n, 2, generator=g, dtype=F64) * 3.0 + 0.1
    prc = torch.randn(n, 2, generator=g, dtype=F64) * 0.2
    image_size = torch.randint(2, 64, (n, 2), generator=g)
    scale = image_size.min(dim=1, keepdim=True).values / 2.0
    for cls in (PerspectiveCameras, OrthographicCameras):
        ndc_cam = cls(focal_length=fcl, principal_point=prc, R=R, T=T, image_size=image_size)
        screen_cam = cls(
            focal_length=fcl * scale,
            principal_point=image_size[:, [1, 0]] / 2.0 - prc * scale,
            R=R,
            T=T,
            in_ndc=False,
            image_size=image_size,
        )
        xyz = torch.cat([torch.randn(n, 100, 2, dtype=F64) * 0.3, torch.rand(n, 100, 1, dtype=F64) + 3.1], -1)
        assert_close(
            screen_cam.transform_points_ndc(xyz), ndc_cam.transform_points_ndc(xyz), what=cls.__name__
        )
        assert_close(
            screen_cam.transform_points_screen(xyz), ndc_cam.transform_points_screen(xyz), what="screen"
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda R, T: FoVPerspectiveCameras(R, T, fov=50.0),
        lambda R, T: FoVOrthographicCameras(R, T, -1.5, 1.2, -0.8, 1.1),
        lambda R, T: PerspectiveCameras(focal_length=((1.3, 1.1),), principal_point=((0.1, -0.2),), R=R, T=T),
        lambda R, T: OrthographicCameras(focal_length=0.7, principal_point=((0.1, 0.2),), R=R, T=T),
    ],
    ids=["fov_persp", "fov_ortho", "persp", "ortho"],
)
def test_transform_points_screen_naive(make):
    # PyTorch3D test_project_points_screen with ndc_to_screen_points_naive: x = -s x + W/2, y = -s y + H/2
    g = torch.Generator().manual_seed(2)
    n = 6
    R = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=F64) * 0.2)
    T = torch.tensor([[0.0, 0.0, 4.0]], dtype=F64).expand(n, 3)
    cam = make(R, T)
    xyz = torch.cat(
        [torch.randn(n, 20, 2, generator=g, dtype=F64), torch.rand(n, 20, 1, dtype=F64) + 1.0], -1
    )
    image_size = torch.randint(32, 64, (n, 2), generator=g)
    ndc = cam.transform_points_ndc(xyz)
    h, w = (image_size[:, k, None].to(F64) for k in (0, 1))
    s = torch.minimum(h, w) / 2
    naive = torch.stack([-s * ndc[..., 0] + w / 2, -s * ndc[..., 1] + h / 2, ndc[..., 2]], dim=-1)
    assert_close(cam.transform_points_screen(xyz, image_size=image_size), naive, what="screen")
    # PyTorch3D's screen puts pixel centres at +0.5 of ours (ndc_to_pixel, centres at integers)
    one = cam.transform_points_screen(xyz, image_size=(48, 64))
    assert_close(one[..., :2], ndc_to_pixel(ndc[..., :2], (48, 64)) + 0.5, what="pixel + 0.5")
    with pytest.raises(ValueError, match="image_size"):
        cam.transform_points_screen(xyz)


@pytest.mark.parametrize("cls", [PerspectiveCameras, OrthographicCameras])
@pytest.mark.parametrize("in_ndc", [True, False])
def test_sfm_unproject_points(cls, in_ndc):
    # PyTorch3D test_unproject_points (depth z_view) and the from_ndc option of unproject_points
    g = torch.Generator().manual_seed(3)
    n = 4
    R = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=F64))
    T = torch.tensor([[0.1, -0.2, 4.0]], dtype=F64).expand(n, 3)
    kw = dict(focal_length=torch.rand(n, 2, generator=g, dtype=F64) + 0.5, R=R, T=T)
    kw["principal_point"] = torch.randn(n, 2, generator=g, dtype=F64) * (0.2 if in_ndc else 5.0)
    cam = cls(**kw, in_ndc=in_ndc, image_size=((40, 60),))
    X = torch.randn(n, 30, 3, generator=g, dtype=F64) * 0.3
    view = cam.world_to_view(X)
    xy_depth = torch.cat([cam.transform_points(X)[..., :2], view[..., 2:]], dim=-1)
    assert_close(cam.unproject_points(xy_depth), X, what="world")
    assert_close(cam.unproject_points(xy_depth, world_coordinates=False), view, what="view")
    ndc_depth = torch.cat([cam.transform_points_ndc(X)[..., :2], view[..., 2:]], dim=-1)
    assert_close(cam.unproject_points(ndc_depth, from_ndc=True), X, what="from_ndc")
    assert_close(ndc_depth, cam.transform_points_rasterizer(X), what="rasterizer input")
    # (P, 3) with one camera -> (P, 3), as PyTorch3D's Transform3d
    one = cls(focal_length=1.5, R=R[:1], T=T[:1], dtype=F64)
    assert one.transform_points(X[0]).shape == (30, 3) and one.unproject_points(X[0]).shape == (30, 3)
    assert one.transform_points(X).shape == (n, 30, 3), "one camera over a batch of clouds"


def test_screen_camera_needs_image_size():
    cam = PerspectiveCameras(focal_length=50.0, principal_point=((32.0, 24.0),), in_ndc=False)
    assert not cam.in_ndc()
    with pytest.raises(ValueError, match="image_size"):
        cam.transform_points_ndc(torch.ones(1, 4, 3))


def test_gradcheck_perspective_cameras():
    X = torch.randn(1, 5, 3, dtype=F64) + torch.tensor([0.0, 0.0, 4.0], dtype=F64)
    f = torch.tensor([[1.2, 1.4]], dtype=F64, requires_grad=True)
    p = torch.tensor([[10.0, 12.0]], dtype=F64, requires_grad=True)

    def fn(f, p):
        cam = PerspectiveCameras(focal_length=f * 20, principal_point=p, in_ndc=False, image_size=((24, 32),))
        return cam.transform_points_rasterizer(X), cam.transform_points(X)

    assert torch.autograd.gradcheck(fn, (f, p))


@pytest.mark.parametrize("hw", [(48, 64), (64, 40)])
def test_intrinsics_camera_is_screen_perspective_camera(hw):
    H, W = hw
    R = axis_angle_to_matrix(torch.tensor([[0.2, -0.4, 0.1], [0.0, 0.3, -0.2]], dtype=F64))
    T = torch.tensor([[0.1, -0.2, 4.0], [0.0, 0.3, 5.0]], dtype=F64)
    K = torch.tensor([[[40.0, 0.0, 30.0], [0, 42.0, 20.0], [0, 0, 1]]], dtype=F64).expand(2, 3, 3)
    k_cam = IntrinsicsCameras(R, T, K, hw)
    p_cam = PerspectiveCameras(
        focal_length=((40.0, 42.0),),
        principal_point=((30.5, 20.5),),
        R=R,
        T=T,
        in_ndc=False,
        image_size=(hw,),
    )
    X = torch.randn(2, 25, 3, dtype=F64)
    assert_close(k_cam.transform_points(X), p_cam.transform_points_ndc(X), what="transform_points (NDC, 1/z)")
    assert_close(
        k_cam.transform_points_rasterizer(X), p_cam.transform_points_rasterizer(X), what="rasterizer"
    )
    assert_close(k_cam.transform_points_screen(X), p_cam.transform_points_screen(X), what="screen")


# ------------------------------------------------------------------------------- through the rasterizers
def test_perspective_cameras_rasterize_as_pytorch3d_and_fov():
    d = load_reference_tensors("mesh_sil_ico2_persp_64")
    focal = 1.0 / math.tan(math.radians(30.0))  # fov = 60
    persp = PerspectiveCameras(focal_length=focal, R=d["R"], T=d["T"])
    fov = FoVPerspectiveCameras(d["R"], d["T"], fov=60.0)
    a = rasterize_meshes(
        persp.transform_points_rasterizer(d["verts"]), d["faces"], 64, perspective_correct=True
    )
    b = rasterize_meshes(
        fov.transform_points_rasterizer(d["verts"]), d["faces"], 64, perspective_correct=True
    )
    ref = assert_same_faces(a.pix_to_face[..., 0], d["hard_pix_to_face"], "PyTorch3D's pix_to_face")
    same = assert_same_faces(a.pix_to_face, b.pix_to_face, "FoV pix_to_face")
    assert_close(a.zbuf[same], b.zbuf[same], what="zbuf vs FoV")
    assert_close(a.zbuf[..., 0][ref], d["hard_zbuf"][ref], **TOL[torch.float32], what="zbuf vs PyTorch3D")


@pytest.mark.parametrize("hw", [(48, 64), (64, 40)])
def test_screen_perspective_cameras_rasterize_as_fov_non_square(hw):
    d = load_reference_tensors("mesh_sil_ico3deformed_persp_64")
    H, W = hw
    s = min(hw) / 2.0
    focal = 1.0 / math.tan(math.radians(30.0))
    fov = FoVPerspectiveCameras(d["R"], d["T"], fov=60.0)
    ndc = PerspectiveCameras(focal_length=focal, R=d["R"], T=d["T"])
    screen = PerspectiveCameras(
        focal_length=focal * s,
        principal_point=((W / 2, H / 2),),
        R=d["R"],
        T=d["T"],
        in_ndc=False,
        image_size=hw,
    )
    ref = rasterize_meshes(
        fov.transform_points_rasterizer(d["verts"]), d["faces"], hw, perspective_correct=True
    )
    for what, cam in (("ndc", ndc), ("screen", screen)):
        fr = rasterize_meshes(
            cam.transform_points_rasterizer(d["verts"]), d["faces"], hw, perspective_correct=True
        )
        same = assert_same_faces(fr.pix_to_face, ref.pix_to_face, f"{what} pix_to_face")
        assert_close(fr.zbuf[same], ref.zbuf[same], what=f"{what} zbuf")


def test_orthographic_cameras_rasterize_as_pytorch3d():
    d = load_reference_tensors("mesh_sil_ico2_ortho_64")
    cam = OrthographicCameras(focal_length=1 / 1.6, R=d["R"], T=d["T"])
    fr = rasterize_meshes(cam.transform_points_rasterizer(d["verts"]), d["faces"], 64)
    same = assert_same_faces(fr.pix_to_face[..., 0], d["hard_pix_to_face"], "PyTorch3D's mesh pix_to_face")
    assert_close(fr.zbuf[..., 0][same], d["hard_zbuf"][same], what="mesh zbuf")
    p = load_reference_tensors("points_ortho_64")
    cam = OrthographicCameras(R=p["R"], T=p["T"])
    pf = rasterize_points(cam.transform_points_rasterizer(p["points"]), 64, radius=0.03, points_per_pixel=8)
    same = assert_same_faces(pf.idx, p["idx"].long(), "PyTorch3D's point idx")
    assert_close(pf.zbuf[same], p["zbuf"][same], what="point zbuf")


def test_new_cameras_exported():
    assert geometry.PerspectiveCameras is PerspectiveCameras
    assert geometry.OrthographicCameras is OrthographicCameras
    assert {"PerspectiveCameras", "OrthographicCameras"} <= set(geometry.__all__)


def test_cameras_are_device_agnostic():
    # no host sync on a hot path: every camera runs on the meta device (shapes and devices only)
    R = torch.eye(3, device="meta")[None].expand(2, 3, 3)
    cams = [
        FoVPerspectiveCameras(R),
        FoVOrthographicCameras(R),
        PerspectiveCameras(focal_length=2.0, R=R),
        OrthographicCameras(R=R, principal_point=torch.zeros(2, 2, device="meta")),
        PerspectiveCameras(R=R, in_ndc=False, image_size=(4, 6)),
    ]
    X = torch.zeros(2, 5, 3, device="meta")
    for cam in cams:
        for name in (
            "transform_points",
            "transform_points_ndc",
            "transform_points_rasterizer",
            "unproject_points",
        ):
            out = getattr(cam, name)(X)
            assert out.device.type == "meta" and out.shape == (2, 5, 3), f"{cam} {name}: {out.shape}"
        out = cam.transform_points_screen(X, image_size=(4, 6))
        assert out.device.type == "meta" and out.shape == (2, 5, 3), f"{cam} screen"
