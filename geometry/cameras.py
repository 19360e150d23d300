"""Cameras with PyTorch3D's conventions, and every conversion between NDC, pixels and image coordinates.

Conventions (PyTorch3D, see tests/data/pytorch3d/README.md section 1):
* World -> view with **row vectors**: `X_view = X_world @ R + T`, `R` (B, 3, 3), `T` (B, 3). View space:
  +X left, +Y up, +Z from the camera into the scene.
* NDC: +X left, +Y up; the **shorter** image side spans [-1, 1], the longer one [-L/S, L/S] (square pixels).
  The rasterizers consume `(x_ndc, y_ndc, z_view)`, which is what `transform_points` returns.
* Pixel centre of (row i, col j) in an H x W image, S = min(H, W) (PyTorch3D's rasterizer):
  `x_ndc = (W - 2 j - 1) / S`, `y_ndc = (H - 2 i - 1) / S`; for square images `x_ndc = 1 - (2 j + 1) / W`.

Two other 2D frames, which `geometry` converts to and from:
* **Pixels** `(u, v)` = (column, row), OpenCV convention: x right, y down, the centre of pixel (i, j) is at
  `(u, v) = (j, i)` (so the image spans [-0.5, W - 0.5]). Intrinsics `K` map the OpenCV camera frame
  (x right, y down, z forward) to these pixels: `(u, v, 1) ~ K @ (x, y, z)`.
* **Normalized image coordinates**, the project's 2D keypoint frame (DESIGN.md): x right, y down, each axis
  in [-1, 1] over its own side, `x = (2 u + 1) / W - 1`, `y = (2 v + 1) / H - 1` (torch's `grid_sample`
  with `align_corners=False`). For square images `x_img = -x_ndc`, `y_img = -y_ndc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "FoVOrthographicCameras",
    "FoVPerspectiveCameras",
    "IntrinsicsCameras",
    "LookAt",
    "WeakPerspectiveCameras",
    "camera_position_from_spherical_angles",
    "focal_from_fov",
    "image_coords_to_ndc",
    "image_hw",
    "intrinsics_from_fov",
    "look_at_rotation",
    "look_at_view_transform",
    "ndc_pixel_centers",
    "ndc_to_image_coords",
    "ndc_to_pixel",
    "opencv_to_pytorch3d_view",
    "pixel_index_to_ndc",
    "pixel_to_ndc",
    "pytorch3d_view_to_opencv",
    "view_to_world",
    "world_to_view",
]

_FLIP_XY = (-1.0, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------- checks
def _check_shape(
    x: object, name: str, spec: Sequence[int | str], sizes: dict[str, int] | None = None
) -> None:
    """Raise ValueError unless `x` is a tensor of shape `spec`; letters in spec must agree with `sizes`.

    Letters seen for the first time are recorded in `sizes` (so several arguments can share B, P, ...).
    """
    expected = "(" + ", ".join(str(s) for s in spec) + ")"
    if not torch.is_tensor(x):
        raise ValueError(f"Expected {name} to be a tensor of shape {expected}, got {type(x).__name__}")
    sizes = {} if sizes is None else sizes
    ok = x.dim() == len(spec)
    if ok:
        for d, s in zip(x.shape, spec):
            if isinstance(s, int):
                ok = ok and d == s
            elif s in sizes:
                ok = ok and d == sizes[s]
    if not ok:
        known = {k: v for k, v in sizes.items() if k in spec}
        extra = f" with {known}" if known else ""
        raise ValueError(f"Expected {name} to be of shape {expected}{extra}, got {tuple(x.shape)}")
    for d, s in zip(x.shape, spec):
        if isinstance(s, str):
            sizes.setdefault(s, d)


def _check_last2(x: object, name: str) -> None:
    if not torch.is_tensor(x) or x.dim() < 1 or x.shape[-1] != 2:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"Expected {name} to be of shape (..., 2), got {shape}")


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int S (square) or an (H, W) pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    if len(image_size) != 2:
        raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _as_batch(value: float | torch.Tensor, n: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float or (B,) tensor -> (B,) tensor with `like`'s dtype and device."""
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        return v.expand(n)
    if v.shape != (n,):
        raise ValueError(f"Expected {name} to be a float or of shape (B,) with B={n}, got {tuple(v.shape)}")
    return v


# ---------------------------------------------------------------------------------- 2D frame conversions
def ndc_to_image_coords(xy_ndc: torch.Tensor, image_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """NDC (x left, y up, shorter side in [-1, 1]) -> normalized image coordinates (x right, y down).

    Args:
        xy_ndc: (..., 2)
        image_size: (H, W) or S; None means square.
    Returns:
        (..., 2) with each axis in [-1, 1] over its own image side.
    """
    _check_last2(xy_ndc, "xy_ndc")
    h, w = (1, 1) if image_size is None else image_hw(image_size)
    s = min(h, w)
    factor = xy_ndc.new_tensor([-s / w, -s / h])
    return xy_ndc * factor


def image_coords_to_ndc(xy_img: torch.Tensor, image_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """Normalized image coordinates (x right, y down, [-1, 1] per side) -> NDC; inverts ndc_to_image_coords.

    Args:
        xy_img: (..., 2)
        image_size: (H, W) or S; None means square.
    Returns:
        (..., 2)
    """
    _check_last2(xy_img, "xy_img")
    h, w = (1, 1) if image_size is None else image_hw(image_size)
    s = min(h, w)
    factor = xy_img.new_tensor([-w / s, -h / s])
    return xy_img * factor


def ndc_to_pixel(xy_ndc: torch.Tensor, image_size: int | Sequence[int]) -> torch.Tensor:
    """NDC -> pixel coordinates (u, v) = (column, row), centre of pixel (i, j) at (j, i).

    `u = (W - 1 - S x_ndc) / 2`, `v = (H - 1 - S y_ndc) / 2`, S = min(H, W) (README section 1.3).

    Args:
        xy_ndc: (..., 2)
        image_size: (H, W) or S.
    Returns:
        (..., 2)
    """
    _check_last2(xy_ndc, "xy_ndc")
    h, w = image_hw(image_size)
    s = min(h, w)
    return (xy_ndc.new_tensor([w - 1.0, h - 1.0]) - s * xy_ndc) * 0.5


def pixel_to_ndc(uv: torch.Tensor, image_size: int | Sequence[int]) -> torch.Tensor:
    """Pixel coordinates (u, v) = (column, row), centres at integers -> NDC. Inverse of ndc_to_pixel.

    Args:
        uv: (..., 2)
        image_size: (H, W) or S.
    Returns:
        (..., 2)
    """
    _check_last2(uv, "uv")
    h, w = image_hw(image_size)
    s = min(h, w)
    return (uv.new_tensor([w - 1.0, h - 1.0]) - 2.0 * uv) / s


def _ndc_half_range(size: int, other: int) -> float:
    """Half the NDC extent of an image side of `size` pixels when the other side has `other` pixels: the
    shorter side spans [-1, 1], a longer one [-size / other, size / other]."""
    return size / other if size > other else 1.0


def pixel_index_to_ndc(
    index: torch.Tensor, size: int, other: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """NDC coordinate of the centres of pixels `index` (columns, or rows) along an image side of `size` pixels,
    the other side having `other`: `(size - 1 - 2 index) / min(size, other)`, evaluated in the order of
    PyTorch3D's PixToNonSquareNdc so that the rasterizers match it bit for bit.

    Args:
        index: integer tensor of any shape. Returns: same shape, `dtype`.
    """
    off = _ndc_half_range(size, other)
    rev = (size - 1 - index).to(dtype)
    return -off + (2.0 * off * rev + off) / size


def ndc_pixel_centers(
    image_size: int | Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """NDC (x, y) of every pixel centre, as the rasterizers sample them.

    Returns:
        (H, W, 2) with `[i, j] = ((W - 2 j - 1) / S, (H - 2 i - 1) / S)`, S = min(H, W).
    """
    h, w = image_hw(image_size)
    x = pixel_index_to_ndc(torch.arange(w, device=device), w, h, dtype)  # (W,)
    y = pixel_index_to_ndc(torch.arange(h, device=device), h, w, dtype)  # (H,)
    return torch.stack(torch.broadcast_tensors(x[None, :], y[:, None]), dim=-1)


def opencv_to_pytorch3d_view(points: torch.Tensor) -> torch.Tensor:
    """OpenCV camera frame (x right, y down, z forward) -> PyTorch3D view frame (x left, y up, z forward).

    Args:
        points: (..., 3)
    Returns:
        (..., 3) = points * (-1, -1, 1). The map is its own inverse.
    """
    if not torch.is_tensor(points) or points.dim() < 1 or points.shape[-1] != 3:
        shape = tuple(points.shape) if torch.is_tensor(points) else type(points).__name__
        raise ValueError(f"Expected points to be of shape (..., 3), got {shape}")
    return points * points.new_tensor(_FLIP_XY)


def pytorch3d_view_to_opencv(points: torch.Tensor) -> torch.Tensor:
    """PyTorch3D view frame -> OpenCV camera frame; see `opencv_to_pytorch3d_view`.

    Args:
        points: (..., 3)
    Returns:
        (..., 3)
    """
    return opencv_to_pytorch3d_view(points)


# ------------------------------------------------------------------------------------------ intrinsics
def focal_from_fov(fov_deg: float | torch.Tensor, width: int) -> float | torch.Tensor:
    """Focal length in pixels of a horizontal field of view spanning `width` pixels: `W / (2 tan(fov/2))`.

    Args:
        fov_deg: float or tensor (any shape), degrees.
        width: image width in pixels (the image spans W pixels, [-0.5, W - 0.5] in pixel coordinates).
    Returns:
        same type and shape as fov_deg.
    """
    if torch.is_tensor(fov_deg):
        return width / (2.0 * torch.tan(torch.deg2rad(fov_deg) * 0.5))
    return width / (2.0 * math.tan(math.radians(fov_deg) * 0.5))


def intrinsics_from_fov(fov_deg: float | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pinhole intrinsics for a horizontal field of view, principal point at the image centre.

    `fx = fy = W / (2 tan(fov/2))`, `cx = (W - 1) / 2`, `cy = (H - 1) / 2` (pixel centres at integers).
    For a square image this is the FoVPerspectiveCameras of the same fov (`FoVPerspectiveCameras.intrinsics`).

    Args:
        fov_deg: (B,) degrees (a float gives B = 1).
        height, width: image size in pixels.
    Returns:
        (B, 3, 3)
    """
    fov = torch.as_tensor(fov_deg)
    if not fov.is_floating_point():  # an integer fov would truncate the focal length
        fov = fov.to(torch.get_default_dtype())
    if fov.dim() == 0:
        fov = fov[None]
    _check_shape(fov, "fov_deg", ("B",))
    f = focal_from_fov(fov, width)  # (B,)
    return _make_K(f, f, height, width)


def _make_K(fx: torch.Tensor, fy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 3, 3) intrinsics with focal lengths fx, fy (B,) and the principal point at the image centre,
    `((W - 1) / 2, (H - 1) / 2)` (pixel centres at integers)."""
    K = fx.new_zeros(fx.shape[0], 3, 3)
    K[:, 0, 0] = fx
    K[:, 1, 1] = fy
    K[:, 0, 2] = (width - 1) * 0.5
    K[:, 1, 2] = (height - 1) * 0.5
    K[:, 2, 2] = 1.0
    return K


# ------------------------------------------------------------------------------------------- look at
def _result_dtype_device(
    values: Sequence[object], dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[torch.dtype, torch.device | str | None]:
    """dtype and device of a result built from `values` (tensors, floats, sequences).

    An explicit dtype / device wins; otherwise dtype is that of the first floating-point tensor in `values`
    (the default dtype when there is none) and device that of the first tensor (floating ones first).
    """
    tensors = [v for v in values if torch.is_tensor(v)]
    floating = [v for v in tensors if v.is_floating_point()]
    if dtype is None:
        dtype = floating[0].dtype if floating else torch.get_default_dtype()
    if device is None and tensors:
        device = (floating or tensors)[0].device
    return dtype, device


class LookAt(NamedTuple):
    R: torch.Tensor  # (N, 3, 3)
    T: torch.Tensor  # (N, 3)


def camera_position_from_spherical_angles(
    distance: float | torch.Tensor,
    elevation: float | torch.Tensor,
    azimuth: float | torch.Tensor,
    degrees: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Camera centre `dist * (cos(elev) sin(azim), sin(elev), cos(elev) cos(azim))` (PyTorch3D).

    Args:
        distance, elevation, azimuth: floats or (N,) tensors, broadcast together.
        device, dtype: of the result; None takes them from the tensor arguments (`_result_dtype_device`).
    Returns:
        (N, 3)
    """
    dtype, device = _result_dtype_device((distance, elevation, azimuth), dtype, device)
    d, e, a = (
        torch.as_tensor(v, dtype=dtype, device=device).reshape(-1) for v in (distance, elevation, azimuth)
    )
    d, e, a = torch.broadcast_tensors(d, e, a)
    if degrees:
        e, a = torch.deg2rad(e), torch.deg2rad(a)
    return torch.stack(
        [d * torch.cos(e) * torch.sin(a), d * torch.sin(e), d * torch.cos(e) * torch.cos(a)], dim=-1
    )


def look_at_rotation(
    camera_position: torch.Tensor,
    at: torch.Tensor | Sequence = ((0, 0, 0),),
    up: torch.Tensor | Sequence = ((0, 1, 0),),
) -> torch.Tensor:
    """World-to-view rotation of cameras at `camera_position` looking at `at` (PyTorch3D's look_at_rotation).

    z = normalize(at - C), x = normalize(up x z), y = normalize(z x x); R = [x | y | z] (columns).
    When `up` is parallel to the viewing direction (x undefined), x is taken as normalize(e x z) with e the
    world axis least aligned with z, so R stays a rotation (PyTorch3D returns a degenerate matrix there).

    Args:
        camera_position: (N, 3)
        at, up: (N, 3) or (1, 3) tensors or nested sequences.
    Returns:
        (N, 3, 3)
    """
    _check_shape(camera_position, "camera_position", ("N", 3))
    at_t = torch.as_tensor(at, dtype=camera_position.dtype, device=camera_position.device).reshape(-1, 3)
    up_t = torch.as_tensor(up, dtype=camera_position.dtype, device=camera_position.device).reshape(-1, 3)
    c, at_t, up_t = torch.broadcast_tensors(camera_position, at_t, up_t)
    z = F.normalize(at_t - c, dim=-1, eps=1e-5)
    x = F.normalize(torch.linalg.cross(up_t, z, dim=-1), dim=-1, eps=1e-5)
    degenerate = torch.isclose(x, x.new_zeros(()), atol=5e-3).all(dim=-1, keepdim=True)  # (N, 1)
    # no data-dependent branch (no host sync; works for tensors without data, e.g. on the meta device)
    e = torch.eye(3, dtype=z.dtype, device=z.device)[z.abs().argmin(dim=-1)]  # (N, 3)
    x = torch.where(degenerate, F.normalize(torch.linalg.cross(e, z, dim=-1), dim=-1, eps=1e-5), x)
    y = F.normalize(torch.linalg.cross(z, x, dim=-1), dim=-1, eps=1e-5)
    return torch.stack([x, y, z], dim=-1)  # columns


def look_at_view_transform(
    dist: float | torch.Tensor = 1.0,
    elev: float | torch.Tensor = 0.0,
    azim: float | torch.Tensor = 0.0,
    degrees: bool = True,
    eye: torch.Tensor | Sequence | None = None,
    at: torch.Tensor | Sequence = ((0, 0, 0),),
    up: torch.Tensor | Sequence = ((0, 1, 0),),
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LookAt:
    """(R, T) of cameras on a sphere around `at` (PyTorch3D's look_at_view_transform).

    Camera centre C from (dist, elev, azim) (or `eye` when given), R from `look_at_rotation`, `T = -C @ R`,
    so that `X_view = (X_world - C) @ R`. For azim = elev = 0 the camera is on +Z_world looking at the
    origin and world +X appears on the right of the image.

    Args:
        dist, elev, azim: floats or (N,) tensors (angles in degrees unless degrees=False), broadcast.
        eye: (N, 3) camera centres; overrides dist/elev/azim.
        at, up: (N, 3) or (1, 3).
        device, dtype: of the result; None takes them from the tensor arguments (eye, dist, elev, azim,
            at, up in this order): dtype of the first floating-point one (else the default dtype), device of
            the first tensor. Every argument is moved to that device and dtype.
    Returns:
        LookAt(R (N, 3, 3), T (N, 3)); unpacks as `R, T = look_at_view_transform(...)`.
    """
    dtype, device = _result_dtype_device((eye, dist, elev, azim, at, up), dtype, device)
    at_t = torch.as_tensor(at, dtype=dtype, device=device).reshape(-1, 3)
    up_t = torch.as_tensor(up, dtype=dtype, device=device).reshape(-1, 3)
    if eye is not None:
        C = torch.as_tensor(eye, dtype=dtype, device=device).reshape(-1, 3)
    else:
        C = camera_position_from_spherical_angles(
            dist, elev, azim, degrees=degrees, device=device, dtype=dtype
        )
        C = C + at_t
    R = look_at_rotation(C, at_t, up_t)
    C = C.expand(R.shape[0], 3)
    T = -(C[:, None, :] @ R)[:, 0, :]
    return LookAt(R, T)


# ------------------------------------------------------------------------------------ world <-> view
def world_to_view(points: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """`X_view = X_world @ R + T` (row vectors).

    Args:
        points: (B, P, 3) or (P, 3) (shared by all B cameras).
        R: (B, 3, 3); T: (B, 3).
    Returns:
        (B, P, 3)
    """
    sizes: dict[str, int] = {}
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(T, "T", ("B", 3), sizes)
    points = _batch_points(points, "points", sizes)
    return points @ R + T[:, None, :]


def view_to_world(points: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """`X_world = (X_view - T) @ R^T`, the inverse of `world_to_view` for rotations R.

    Args:
        points: (B, P, 3) or (P, 3); R: (B, 3, 3); T: (B, 3).
    Returns:
        (B, P, 3)
    """
    sizes: dict[str, int] = {}
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(T, "T", ("B", 3), sizes)
    points = _batch_points(points, "points", sizes)
    return (points - T[:, None, :]) @ R.transpose(-1, -2)


def _batch_points(points: torch.Tensor, name: str, sizes: dict[str, int]) -> torch.Tensor:
    if torch.is_tensor(points) and points.dim() == 2:
        _check_shape(points, name, ("P", 3))
        return points.expand(sizes["B"], -1, -1)
    _check_shape(points, name, ("B", "P", 3), sizes)
    return points


# ------------------------------------------------------------------------------------------- cameras
class _Cameras:
    """World -> view -> NDC for a batch of B cameras. Subclasses define view_to_ndc / ndc_to_view."""

    R: torch.Tensor
    T: torch.Tensor

    def _check_RT(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        _check_shape(self.R, "R", ("B", 3, 3), sizes)
        _check_shape(self.T, "T", ("B", 3), sizes)
        return sizes

    def __len__(self) -> int:
        return self.R.shape[0]

    def world_to_view(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) world points -> (B, P, 3) view points."""
        return world_to_view(points, self.R, self.T)

    def view_to_world(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) world points."""
        return view_to_world(points, self.R, self.T)

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transform_points(self, points: torch.Tensor) -> torch.Tensor:
        """World points -> `(x_ndc, y_ndc, z_view)`, exactly what PyTorch3D's rasterizers consume.

        (PyTorch3D's own `transform_points` returns the projected depth as third value; its rasterizers then
        replace it by z_view. The depth here is already z_view.)

        Args:
            points: (B, P, 3) or (P, 3) world points.
        Returns:
            (B, P, 3)
        """
        return self.view_to_ndc(self.world_to_view(points))

    def unproject_points(self, xy_depth: torch.Tensor, world_coordinates: bool = True) -> torch.Tensor:
        """`(x_ndc, y_ndc, z_view)` -> world points (or view points). Inverse of `transform_points`.

        Args:
            xy_depth: (B, P, 3) or (P, 3)
            world_coordinates: False returns view coordinates.
        Returns:
            (B, P, 3)
        """
        view = self.ndc_to_view(xy_depth)
        return self.view_to_world(view) if world_coordinates else view

    def _xy_depth(self, points: torch.Tensor, name: str) -> torch.Tensor:
        return _batch_points(points, name, self._check_RT())


@dataclass
class FoVPerspectiveCameras(_Cameras):
    """PyTorch3D's FoVPerspectiveCameras: `x_ndc = x / (z tan(fov/2) aspect)`, `y_ndc = y / (z tan(fov/2))`.

    Attributes:
        R: (B, 3, 3); T: (B, 3); fov: float or (B,) vertical field of view (degrees unless degrees=False).
        znear, zfar: only used by `projection_matrix` (the rasterizers use z_view).
    """

    R: torch.Tensor
    T: torch.Tensor
    fov: float | torch.Tensor = 60.0
    degrees: bool = True
    aspect_ratio: float = 1.0
    znear: float = 1.0
    zfar: float = 100.0

    def __post_init__(self) -> None:
        b = self._check_RT()["B"]
        fov = _as_batch(self.fov, b, self.R, "fov")
        self._tan_half = torch.tan((torch.deg2rad(fov) if self.degrees else fov) * 0.5)  # (B,)

    def is_perspective(self) -> bool:
        return True

    def _scale(self) -> torch.Tensor:
        """(B, 1, 2): ndc = xy / z * scale."""
        t = self._tan_half
        return torch.stack([1.0 / (t * self.aspect_ratio), 1.0 / t], dim=-1)[:, None, :]

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = self._xy_depth(points, "points")
        z = points[..., 2:]
        return torch.cat([points[..., :2] / z * self._scale(), z], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = self._xy_depth(xy_depth, "xy_depth")
        z = xy_depth[..., 2:]
        return torch.cat([xy_depth[..., :2] / self._scale() * z, z], dim=-1)

    def projection_matrix(self) -> torch.Tensor:
        """(B, 4, 4) row-vector projection: `[x, y, z, 1] @ P = [X, Y, Z, W]`, ndc = (X/W, Y/W)."""
        t = self._tan_half
        P = torch.zeros(t.shape[0], 4, 4, dtype=t.dtype, device=t.device)
        P[:, 0, 0] = 1.0 / (t * self.aspect_ratio)
        P[:, 1, 1] = 1.0 / t
        P[:, 2, 2] = self.zfar / (self.zfar - self.znear)
        P[:, 3, 2] = -self.zfar * self.znear / (self.zfar - self.znear)
        P[:, 2, 3] = 1.0
        return P

    def intrinsics(self, image_size: int | Sequence[int]) -> torch.Tensor:
        """(B, 3, 3) pixel intrinsics K (OpenCV frame and pixel convention) of this camera in an image.

        Projecting `pytorch3d_view_to_opencv(view points)` with K gives `ndc_to_pixel(transform_points)`.
        """
        h, w = image_hw(image_size)
        s = min(h, w)
        t = self._tan_half
        return _make_K(s / (2.0 * t * self.aspect_ratio), s / (2.0 * t), h, w)


@dataclass
class FoVOrthographicCameras(_Cameras):
    """PyTorch3D's FoVOrthographicCameras: `x_ndc = (2 s_x x - (max_x + min_x)) / (max_x - min_x)`, also y.

    Attributes:
        R: (B, 3, 3); T: (B, 3); min_x, max_x, min_y, max_y: view-space bounds mapped to NDC [-1, 1];
        scale_xyz: (B, 3) or None (ones). znear, zfar: only used by `projection_matrix`.
    """

    R: torch.Tensor
    T: torch.Tensor
    min_x: float = -1.0
    max_x: float = 1.0
    min_y: float = -1.0
    max_y: float = 1.0
    scale_xyz: torch.Tensor | None = None
    znear: float = 1.0
    zfar: float = 100.0

    def __post_init__(self) -> None:
        sizes = self._check_RT()
        if self.scale_xyz is None:
            self.scale_xyz = self.R.new_ones(sizes["B"], 3)
        _check_shape(self.scale_xyz, "scale_xyz", ("B", 3), sizes)

    def is_perspective(self) -> bool:
        return False

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ndc_xy = view_xy * a + b, a (B, 1, 2), b (1, 1, 2)."""
        wx, wy = self.max_x - self.min_x, self.max_y - self.min_y
        a = self.scale_xyz[:, None, :2] * self.R.new_tensor([2.0 / wx, 2.0 / wy])
        b = self.R.new_tensor([-(self.max_x + self.min_x) / wx, -(self.max_y + self.min_y) / wy])[None, None]
        return a, b

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = self._xy_depth(points, "points")
        a, b = self._affine()
        return torch.cat([points[..., :2] * a + b, points[..., 2:]], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = self._xy_depth(xy_depth, "xy_depth")
        a, b = self._affine()
        return torch.cat([(xy_depth[..., :2] - b) / a, xy_depth[..., 2:]], dim=-1)

    def projection_matrix(self) -> torch.Tensor:
        """(B, 4, 4) row-vector projection `[x, y, z, 1] @ P` (README 1.2; W = 1)."""
        a, b = self._affine()
        B = self.R.shape[0]
        P = self.R.new_zeros(B, 4, 4)
        P[:, 0, 0] = a[:, 0, 0]
        P[:, 1, 1] = a[:, 0, 1]
        P[:, 3, 0] = b[0, 0, 0]
        P[:, 3, 1] = b[0, 0, 1]
        P[:, 2, 2] = self.scale_xyz[:, 2] / (self.zfar - self.znear)
        P[:, 3, 2] = -self.znear / (self.zfar - self.znear)
        P[:, 3, 3] = 1.0
        return P


@dataclass
class IntrinsicsCameras(_Cameras):
    """Perspective camera given by pixel intrinsics K (OpenCV convention) of an H x W image.

    View space is PyTorch3D's (x left, y up); K acts on the OpenCV frame `view * (-1, -1, 1)`, and pixels
    map to NDC with `pixel_to_ndc`. Skew K[0, 1] is supported.

    Attributes:
        R: (B, 3, 3); T: (B, 3); K: (B, 3, 3); image_size: (H, W) or S.
    """

    R: torch.Tensor
    T: torch.Tensor
    K: torch.Tensor
    image_size: int | Sequence[int]

    def __post_init__(self) -> None:
        _check_shape(self.K, "K", ("B", 3, 3), self._check_RT())

    def is_perspective(self) -> bool:
        return True

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = self._xy_depth(points, "points")
        uv = _project_opencv(pytorch3d_view_to_opencv(points), self.K)
        return torch.cat([pixel_to_ndc(uv, self.image_size), points[..., 2:]], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = self._xy_depth(xy_depth, "xy_depth")
        uv = ndc_to_pixel(xy_depth[..., :2], self.image_size)
        return opencv_to_pytorch3d_view(_unproject_opencv(uv, xy_depth[..., 2:], self.K))


def _project_opencv(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) OpenCV-frame points, K (B, 3, 3) -> (B, P, 2) pixels."""
    z = points[..., 2]
    xn, yn = points[..., 0] / z, points[..., 1] / z  # (B, P)
    k = K[:, None]  # (B, 1, 3, 3)
    u = k[..., 0, 0] * xn + k[..., 0, 1] * yn + k[..., 0, 2]
    v = k[..., 1, 1] * yn + k[..., 1, 2]
    return torch.stack([u, v], dim=-1)


def _unproject_opencv(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, P, 2) pixels, (B, P, 1) depth z, K (B, 3, 3) upper triangular -> (B, P, 3) OpenCV-frame points."""
    k = K[:, None]  # (B, 1, 3, 3)
    yn = (uv[..., 1] - k[..., 1, 2]) / k[..., 1, 1]
    xn = (uv[..., 0] - k[..., 0, 2] - k[..., 0, 1] * yn) / k[..., 0, 0]
    return torch.stack([xn, yn, torch.ones_like(xn)], dim=-1) * depth


@dataclass
class WeakPerspectiveCameras:
    """The weak-perspective (scaled orthographic) camera of CMR and TTP.

    `x_img = s * (X @ R)[..., :2] + t` gives **normalized image coordinates** directly: x right, y down, each
    in [-1, 1] over its image side, the frame of the keypoints (DESIGN.md), so a keypoint loss is
    `|project(X) - kp|`. The rotated frame `X @ R` is x right, y down, z into the image (right-handed).
    Kanazawa et al., "Learning Category-Specific Mesh Reconstruction from Image Collections" (ECCV 2018), and
    "To The Point" use this model; there R comes from a quaternion / 6D head.

    Attributes:
        scale: (B, 1); R: (B, 3, 3) rotation applied to row vectors; trans: (B, 2);
        z_offset: added to the depth `(X @ R)_z` so a rasterizer sees z_view > 0 (only ordering matters).
    """

    scale: torch.Tensor
    R: torch.Tensor
    trans: torch.Tensor
    z_offset: float = 10.0

    def __post_init__(self) -> None:
        sizes: dict[str, int] = {}
        _check_shape(self.scale, "scale", ("B", 1), sizes)
        _check_shape(self.R, "R", ("B", 3, 3), sizes)
        _check_shape(self.trans, "trans", ("B", 2), sizes)

    def __len__(self) -> int:
        return self.R.shape[0]

    def _rotate(self, points: torch.Tensor) -> torch.Tensor:
        return _batch_points(points, "points", {"B": self.R.shape[0]}) @ self.R

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B, P, 3) or (P, 3) -> (B, P, 2) normalized image coordinates (x right, y down)."""
        return self.scale[:, None, :] * self._rotate(points)[..., :2] + self.trans[:, None, :]

    def transform_points(
        self, points: torch.Tensor, image_size: int | Sequence[int] | None = None
    ) -> torch.Tensor:
        """World points -> `(x_ndc, y_ndc, z)` for the rasterizers, z = `(X @ R)_z + z_offset`.

        Args:
            points: (B, P, 3) or (P, 3)
            image_size: (H, W) or S of the rendered image; None = square.
        Returns:
            (B, P, 3)
        """
        rot = self._rotate(points)
        xy = self.scale[:, None, :] * rot[..., :2] + self.trans[:, None, :]
        return torch.cat([image_coords_to_ndc(xy, image_size), rot[..., 2:] + self.z_offset], dim=-1)

    def to_orthographic(self) -> FoVOrthographicCameras:
        """The same camera as a PyTorch3D-convention FoVOrthographicCameras (square images).

        View = `X @ (R diag(-1, -1, 1)) + (-t_x / s, -t_y / s, z_offset)`, scale_xyz = (s, s, 1), bounds +-1.
        """
        flip = self.R.new_tensor(_FLIP_XY)
        R = self.R * flip  # columns 0, 1 negated
        s = self.scale  # (B, 1)
        T = torch.cat([-self.trans / s, torch.full_like(s, self.z_offset)], dim=-1)
        scale_xyz = torch.cat([s, s, torch.ones_like(s)], dim=-1)
        return FoVOrthographicCameras(R=R, T=T, scale_xyz=scale_xyz)
