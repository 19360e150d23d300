"""Cameras with PyTorch3D's conventions, and every conversion between NDC, pixels and image coordinates.

Conventions (PyTorch3D, see tests/data/pytorch3d/README.md section 1):
* World -> view with **row vectors**: `X_view = X_world @ R + T`, `R` (B, 3, 3), `T` (B, 3). View space:
  +X left, +Y up, +Z from the camera into the scene.
* NDC: +X left, +Y up; the **shorter** image side spans [-1, 1], the longer one [-L/S, L/S] (square pixels).
  The rasterizers consume `(x_ndc, y_ndc, z_view)`, which `transform_points_rasterizer` returns (PyTorch3D's
  MeshRasterizer.transform). `transform_points` is PyTorch3D's: its third value is the projection's depth
  (FoV cameras: z mapped to [0, 1] between znear and zfar; PerspectiveCameras: 1 / z_view), not z_view.
* Camera classes (`FoVPerspectiveCameras`, `FoVOrthographicCameras`, `PerspectiveCameras`,
  `OrthographicCameras`) keep PyTorch3D's argument names and broadcasting (floats, lists, tuples, tensors;
  batch sizes 1 or N); the `*_matrix()` methods return the (N, 4, 4) row-vector matrices of PyTorch3D's
  `get_*_transform().get_matrix()` (tensors, no Transform3d). The FoV classes take R, T first positionally.
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
    "OrthographicCameras",
    "PerspectiveCameras",
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


def _batched(value: object, name: str, trailing: tuple[int, ...], dtype, device) -> torch.Tensor:
    """`value` (float, list, tuple or tensor) -> a tensor (n, *trailing) whose first dim is the batch.

    A value with exactly `trailing` dims is one value for every batch element (n = 1), as PyTorch3D's
    `format_tensor` turns a scalar into a (1,) tensor. Raises ValueError naming `name` otherwise.
    """
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == len(trailing):
        t = t[None]
    if t.dim() != len(trailing) + 1 or tuple(t.shape[1:]) != trailing:
        shape = "(N" + "".join(f", {s}" for s in trailing) + ")"
        one = f"a scalar or {shape}" if not trailing else f"{tuple(trailing)} or {shape}"
        raise ValueError(f"Expected {name} to be {one}, got shape {tuple(t.shape)}")
    return t


def _broadcast_batch(named: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Expand every (n_i, ...) tensor to (N, ...), N = max n_i; each n_i must be 1 or N (ValueError else).

    PyTorch3D's `convert_to_tensors_and_broadcast` (pytorch3d/renderer/utils.py) rule.
    """
    sizes = {k: t.shape[0] for k, t in named.items()}
    n = max(sizes.values())
    if any(s not in (1, n) for s in sizes.values()):
        raise ValueError(f"Expected batch sizes of 1 or N = {n}, got non-broadcastable sizes {sizes}")
    return [t.expand(n, *t.shape[1:]) for t in named.values()]


class LookAt(NamedTuple):
    R: torch.Tensor  # (N, 3, 3)
    T: torch.Tensor  # (N, 3)


def camera_position_from_spherical_angles(
    distance: float | Sequence[float] | torch.Tensor,
    elevation: float | Sequence[float] | torch.Tensor,
    azimuth: float | Sequence[float] | torch.Tensor,
    degrees: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Camera centre `dist * (cos(elev) sin(azim), sin(elev), cos(elev) cos(azim))` (PyTorch3D).

    Args:
        distance, elevation, azimuth: floats, sequences or (N,) / (1,) tensors, broadcast together; a batch
            size other than 1 or N raises ValueError (PyTorch3D's `convert_to_tensors_and_broadcast`).
        device, dtype: of the result; None takes them from the tensor arguments (`_result_dtype_device`).
    Returns:
        (N, 3)
    """
    dtype, device = _result_dtype_device((distance, elevation, azimuth), dtype, device)
    named = {
        k: torch.as_tensor(v, dtype=dtype, device=device).reshape(-1)
        for k, v in (("distance", distance), ("elevation", elevation), ("azimuth", azimuth))
    }
    d, e, a = _broadcast_batch(named)
    if degrees:
        e, a = torch.deg2rad(e), torch.deg2rad(a)
    return torch.stack(
        [d * torch.cos(e) * torch.sin(a), d * torch.sin(e), d * torch.cos(e) * torch.cos(a)], dim=-1
    )


# PyTorch3D look_at_rotation (pytorch3d/renderer/cameras.py): x = normalize(up x z, eps=1e-5) counts as zero
# ("up parallel to the view direction") when every component is within atol 5e-3 of 0, i.e. when every
# component of up x z is <= 1e-5 * 5e-3.
_LOOK_AT_DEGENERATE = 1e-5 * 5e-3


def _look_at_axes(c: torch.Tensor, at: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R (N, 3, 3), degenerate (N, 1) bool) for broadcast (N, 3) camera centres, targets and up vectors."""
    tiny = torch.finfo(c.dtype).tiny
    z = F.normalize(at - c, dim=-1, eps=1e-5)
    cross = torch.linalg.cross(up, z, dim=-1)
    degenerate = (cross.abs() <= _LOOK_AT_DEGENERATE).all(dim=-1, keepdim=True)  # (N, 1)
    x = F.normalize(cross, dim=-1, eps=tiny)
    # Up parallel to z. PyTorch3D keeps y = normalize(z x x_tiny), with x_tiny the residual of up x z, and
    # replaces x by normalize(y x z). The residual's direction is kept here without its eps clamp; when it
    # is exactly zero (an `eye` exactly above `at`), e = the world axis least aligned with z stands in
    # (PyTorch3D returns zero x and y columns there). No data-dependent branch (no host sync, meta device).
    y_res = torch.linalg.cross(z, cross, dim=-1)
    e = torch.eye(3, dtype=z.dtype, device=z.device)[z.abs().argmin(dim=-1)]  # (N, 3)
    y_fallback = torch.linalg.cross(
        z, F.normalize(torch.linalg.cross(e, z, dim=-1), dim=-1, eps=tiny), dim=-1
    )
    has_res = torch.linalg.vector_norm(y_res, dim=-1, keepdim=True) > 0
    y_deg = F.normalize(torch.where(has_res, y_res, y_fallback), dim=-1, eps=tiny)
    x = torch.where(degenerate, F.normalize(torch.linalg.cross(y_deg, z, dim=-1), dim=-1, eps=tiny), x)
    y = F.normalize(torch.linalg.cross(z, x, dim=-1), dim=-1, eps=tiny)
    return torch.stack([x, y, z], dim=-1), degenerate  # columns


def look_at_rotation(
    camera_position: torch.Tensor | Sequence,
    at: torch.Tensor | Sequence = ((0, 0, 0),),
    up: torch.Tensor | Sequence = ((0, 1, 0),),
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """World-to-view rotation of cameras at `camera_position` looking at `at` (PyTorch3D's look_at_rotation).

    z = normalize(at - C), x = normalize(up x z), y = normalize(z x x); R = [x | y | z] (columns).
    When `up` is parallel to the viewing direction (every component of up x z <= 5e-8, PyTorch3D's test),
    PyTorch3D's replacement is used: y from the residual of up x z, x = normalize(y x z); for a camera exactly
    above the target from `look_at_view_transform(elev=90)` this gives PyTorch3D's float32 result. Where
    the residual is exactly zero, x = normalize(e x z) with e the world axis least aligned with z (PyTorch3D
    returns zero columns there). x and y are normalized exactly (PyTorch3D's eps = 1e-5 clamp leaves them
    shorter than 1 when |up x z| < 1e-5), so R is always a rotation.

    Args:
        camera_position, at, up: 3-element sequences, (1, 3) or (N, 3) tensors or nested sequences,
            broadcast together (batch sizes 1 or N, else ValueError).
        device, dtype: of the result; None takes them from the tensor arguments (`_result_dtype_device`).
    Returns:
        (N, 3, 3)
    """
    dtype, device = _result_dtype_device((camera_position, at, up), dtype, device)
    c, at_t, up_t = _broadcast_batch(
        {
            "camera_position": _batched(camera_position, "camera_position", (3,), dtype, device),
            "at": _batched(at, "at", (3,), dtype, device),
            "up": _batched(up, "up", (3,), dtype, device),
        }
    )
    return _look_at_axes(c, at_t, up_t)[0]


def look_at_view_transform(
    dist: float | Sequence[float] | torch.Tensor = 1.0,
    elev: float | Sequence[float] | torch.Tensor = 0.0,
    azim: float | Sequence[float] | torch.Tensor = 0.0,
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

    Camera exactly above or below `at` (elev = +-90 degrees, `up` along world y): PyTorch3D's float32
    corner-case result in every dtype, `x = (cos a, 0, -sin a)`, `y = s (sin a, 0, cos a)`, `z = (0, -s, 0)`
    (a = azim, s = sign(elev)), times sign(up_y) for x and y. (float32 pi/2 is slightly above pi/2, so
    PyTorch3D's replacement in look_at_rotation sees the camera just past the pole; in float64 PyTorch3D
    returns a degenerate matrix.)

    Args:
        dist, elev, azim: floats, sequences or (N,) tensors (angles in degrees unless degrees=False).
        eye: (N, 3) or (1, 3) camera centres (or a 3-sequence); overrides dist/elev/azim.
        at, up: (N, 3) or (1, 3). All arguments broadcast together: batch sizes 1 or N, else ValueError.
        device, dtype: of the result; None takes them from the tensor arguments (eye, dist, elev, azim,
            at, up in this order): dtype of the first floating-point one (else the default dtype), device of
            the first tensor. Every argument is moved to that device and dtype.
    Returns:
        LookAt(R (N, 3, 3), T (N, 3)); unpacks as `R, T = look_at_view_transform(...)`.
    """
    dtype, device = _result_dtype_device((eye, dist, elev, azim, at, up), dtype, device)
    at_t = _batched(at, "at", (3,), dtype, device)
    up_t = _batched(up, "up", (3,), dtype, device)
    if eye is not None:
        C, at_t, up_t = _broadcast_batch(
            {"eye": _batched(eye, "eye", (3,), dtype, device), "at": at_t, "up": up_t}
        )
        R = _look_at_axes(C, at_t, up_t)[0]
    else:
        named = {
            k: torch.as_tensor(v, dtype=dtype, device=device).reshape(-1)
            for k, v in (("dist", dist), ("elev", elev), ("azim", azim))
        }
        d, e, a, at_t, up_t = _broadcast_batch({**named, "at": at_t, "up": up_t})
        C = camera_position_from_spherical_angles(d, e, a, degrees=degrees, device=device, dtype=dtype) + at_t
        R, degenerate = _look_at_axes(C, at_t, up_t)
        # PyTorch3D's float32 corner case, analytically (see the docstring); up along world y only
        if degrees:
            e, a = torch.deg2rad(e), torch.deg2rad(a)
        s = torch.sign(torch.sin(e))
        sa, ca, zero = torch.sin(a), torch.cos(a), torch.zeros_like(a)
        u = torch.sign(up_t[:, 1])
        x = torch.stack([ca, zero, -sa], dim=-1) * u[:, None]
        y = torch.stack([sa, zero, ca], dim=-1) * (s * u)[:, None]
        z = torch.stack([zero, -s, zero], dim=-1)
        along_y = (up_t[:, 0] == 0) & (up_t[:, 2] == 0) & (up_t[:, 1] != 0)
        R = torch.where((degenerate[:, 0] & along_y)[:, None, None], torch.stack([x, y, z], dim=-1), R)
    C = C.expand(R.shape[0], 3)
    T = -(C[:, None, :] @ R)[:, 0, :]
    return LookAt(R, T)


# ------------------------------------------------------------------------------------ world <-> view
def world_to_view(points: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """`X_view = X_world @ R + T` (row vectors).

    Args:
        points: (B, P, 3); (P, 3) shared by all B cameras; or (M, P, 3) with B = 1 (one camera for M clouds).
        R: (B, 3, 3); T: (B, 3).
    Returns:
        (max(B, M), P, 3)
    """
    sizes: dict[str, int] = {}
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(T, "T", ("B", 3), sizes)
    points = _batch_points(points, "points", sizes["B"])
    return points @ R + T[:, None, :]


def view_to_world(points: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """`X_world = (X_view - T) @ R^T`, the inverse of `world_to_view` for rotations R.

    Args:
        points: (B, P, 3), (P, 3) or (M, P, 3) with B = 1 (as `world_to_view`); R: (B, 3, 3); T: (B, 3).
    Returns:
        (max(B, M), P, 3)
    """
    sizes: dict[str, int] = {}
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(T, "T", ("B", 3), sizes)
    points = _batch_points(points, "points", sizes["B"])
    return (points - T[:, None, :]) @ R.transpose(-1, -2)


def _batch_points(points: torch.Tensor, name: str, b: int) -> torch.Tensor:
    """(P, 3) -> (b, P, 3); (M, P, 3) passes when M == b, M == 1 (expanded to b) or b == 1 (one camera for M
    clouds, PyTorch3D's `_broadcast_bmm` rule in pytorch3d/transforms/transform3d.py)."""
    if torch.is_tensor(points) and points.dim() == 2:
        _check_shape(points, name, ("P", 3))
        return points.expand(b, -1, -1)
    _check_shape(points, name, ("M", "P", 3))
    m = points.shape[0]
    if m != b and m != 1 and b != 1:
        raise ValueError(
            f"Expected {name} to be of shape (P, 3) or (M, P, 3) with M = 1 or M = {b} (the number of "
            f"cameras), got {tuple(points.shape)}"
        )
    return points.expand(b, -1, -1) if m == 1 else points


def _apply_homogeneous(points: torch.Tensor, M: torch.Tensor, eps: float | None) -> torch.Tensor:
    """(N', P, 3) points through row-vector (N, 4, 4) matrices, `[p, 1] @ M`, divided by the 4th value.

    eps clamps |w| from below keeping its sign (w == 0 -> +eps), as PyTorch3D's Transform3d.transform_points.
    """
    h = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1) @ M
    w = h[..., 3:]
    if eps is not None:
        w = (w.sign() + (w == 0).to(w.dtype)) * w.abs().clamp(min=eps)
    return h[..., :3] / w


def _image_size_rows(image_size: object, dtype: torch.dtype, device) -> torch.Tensor:
    """An int S, an (H, W) pair or an (N, 2) tensor / nested sequence -> (n, 2) float tensor of (H, W)."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    t = torch.as_tensor(image_size)
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[1] != 2:
        raise ValueError(f"Expected image_size to be an int, (H, W) or of shape (N, 2), got {tuple(t.shape)}")
    if t.device.type == "cpu" and bool((t < 1).any()):  # checked where it costs no device sync
        raise ValueError(f"Expected image_size >= 1, got {t.tolist()}")
    return t.to(device=device, dtype=dtype)


def _camera_params(
    dtype: torch.dtype | None,
    device: torch.device | str | None,
    specs: dict[str, tuple[object, tuple[int, ...], bool]],
) -> dict[str, torch.Tensor]:
    """Camera arguments -> (N, ...) tensors of one dtype and device, broadcast over the batch.

    specs: name -> (value, trailing shape, single) where `single` lets a value of exactly the trailing shape
    stand for every camera (scalars always do). The rule is PyTorch3D's TensorProperties /
    convert_to_tensors_and_broadcast (pytorch3d/renderer/utils.py): floats, lists, tuples and tensors, batch
    sizes 1 or N. dtype / device: explicit, else from the tensor arguments (`_result_dtype_device`).
    """
    dtype, device = _result_dtype_device([v for v, _, _ in specs.values()], dtype, device)
    named = {}
    for k, (v, trailing, single) in specs.items():
        t = torch.as_tensor(v, dtype=dtype, device=device)
        if t.dim() == len(trailing) and (single or not trailing):
            t = t[None]
        if t.dim() != len(trailing) + 1 or tuple(t.shape[1:]) != trailing:
            shape = "(N" + "".join(f", {s}" for s in trailing) + ("," if not trailing else "") + ")"
            raise ValueError(f"Expected {k} to be of shape {shape}, got {tuple(t.shape)}")
        named[k] = t
    return dict(zip(named, _broadcast_batch(named)))


def _focal_rows(focal_length: object, dtype, device) -> torch.Tensor:
    """PyTorch3D's focal_length forms: a float, (N,), (N, 1) or (N, 2) (and nested sequences) -> (n, 1|2)."""
    dtype, device = _result_dtype_device([focal_length], dtype, device)
    t = torch.as_tensor(focal_length, dtype=dtype, device=device)
    t = t.reshape(1, 1) if t.dim() == 0 else (t[:, None] if t.dim() == 1 else t)
    if t.dim() != 2 or t.shape[1] not in (1, 2):
        raise ValueError(
            f"Expected focal_length to be a float or of shape (N,), (N, 1) or (N, 2), got {tuple(t.shape)}"
        )
    return t


_EYE3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_ORTHO_ZNEAR, _ORTHO_ZFAR = 1.0, 100.0  # FoVOrthographicCameras' defaults


# ------------------------------------------------------------------------------------------- cameras
class _Cameras:
    """A batch of N cameras: world -> view (R, T) -> projection space (NDC or screen) -> NDC -> screen.

    PyTorch3D's CamerasBase (pytorch3d/renderer/cameras.py) with plain tensors: every `*_matrix` method
    returns the (N, 4, 4) row-vector matrix that PyTorch3D's `get_*_transform(...).get_matrix()` returns
    (`[x, y, z, 1] @ M`), and the points methods follow Transform3d.transform_points: points (P, 3) or
    (M, P, 3); one camera broadcasts over M clouds and (P, 3) points over the cameras; the result is (P, 3)
    for (P, 3) points and a single camera, else (max(N, M), P, 3).

    Depths: `transform_points` returns the projection's third value (FoV cameras: z mapped to [0, 1] between
    znear and zfar; PerspectiveCameras: 1 / z_view; OrthographicCameras: z_view), as PyTorch3D.
    The rasterizers take `(x_ndc, y_ndc, z_view)`, which `transform_points_rasterizer` returns (what
    PyTorch3D's MeshRasterizer / PointsRasterizer.transform hand to rasterize_meshes / rasterize_points).
    """

    R: torch.Tensor
    T: torch.Tensor

    def __len__(self) -> int:
        return self.R.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(N={len(self)}, dtype={self.R.dtype}, device={self.R.device})"

    @property
    def device(self) -> torch.device:
        return self.R.device

    def is_perspective(self) -> bool:
        raise NotImplementedError

    def in_ndc(self) -> bool:
        """True when the projection space is NDC (False: screen space, PerspectiveCameras(in_ndc=False))."""
        return True

    def get_znear(self) -> torch.Tensor | None:
        return getattr(self, "znear", None)

    def get_image_size(self) -> object:
        return getattr(self, "image_size", None)

    # --- matrices (row vectors)
    def get_camera_center(self) -> torch.Tensor:
        """(N, 3) camera centres in world coordinates, `C = -T @ R^T`."""
        return -(self.T[:, None, :] @ self.R.transpose(1, 2))[:, 0, :]

    def world_to_view_matrix(self) -> torch.Tensor:
        """(N, 4, 4): `[X, 1] @ M = [X @ R + T, 1]`
        (PyTorch3D's get_world_to_view_transform().get_matrix())."""
        M = self.R.new_zeros(len(self), 4, 4)
        M[:, :3, :3] = self.R
        M[:, 3, :3] = self.T
        M[:, 3, 3] = 1.0
        return M

    def projection_matrix(self) -> torch.Tensor:
        """(N, 4, 4) view -> projection space (PyTorch3D's get_projection_transform().get_matrix())."""
        raise NotImplementedError

    def full_projection_matrix(self) -> torch.Tensor:
        """(N, 4, 4) world -> projection space, `world_to_view_matrix() @ projection_matrix()`
        (PyTorch3D's get_full_projection_transform().get_matrix())."""
        return self.world_to_view_matrix() @ self.projection_matrix()

    def ndc_camera_matrix(self) -> torch.Tensor:
        """(N, 4, 4) projection space -> NDC: the identity for cameras in NDC
        (PyTorch3D's get_ndc_camera_transform().get_matrix())."""
        return torch.eye(4, dtype=self.R.dtype, device=self.R.device).expand(len(self), 4, 4)

    # --- points
    def _out(self, result: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return result[0] if points.dim() == 2 and result.shape[0] == 1 else result

    def _transform(self, points: torch.Tensor, M: torch.Tensor, eps: float | None, name: str = "points"):
        out = _apply_homogeneous(_batch_points(points, name, len(self)), M, eps)
        return self._out(out, points)

    def world_to_view(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) world points -> (B, P, 3) view points (PyTorch3D's
        get_world_to_view_transform().transform_points, except that (P, 3) always gives (B, P, 3))."""
        return world_to_view(points, self.R, self.T)

    def view_to_world(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) world points."""
        return view_to_world(points, self.R, self.T)

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = _batch_points(points, "points", len(self))
        ndc = _apply_homogeneous(points, self.projection_matrix() @ self.ndc_camera_matrix(), None)
        return torch.cat([ndc[..., :2], points[..., 2:]], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        raise NotImplementedError

    def transform_points(self, points: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        """World points -> projection space, PyTorch3D's `transform_points`:
        `[X, 1] @ full_projection_matrix()` divided by its 4th value. x, y are NDC (screen-space xy for
        PerspectiveCameras(in_ndc=False)); the depth is the projection's, **not** z_view (see the class
        docstring; the rasterizers take `transform_points_rasterizer`).

        Args:
            points: (P, 3) or (M, P, 3) world points (see the class docstring for the batch rule).
            eps: clamps |w| from below before the division (PyTorch3D's eps), None = no clamp.
        Returns:
            (P, 3) or (max(N, M), P, 3)
        """
        return self._transform(points, self.full_projection_matrix(), eps)

    def transform_points_ndc(self, points: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        """World points -> PyTorch3D NDC (+X left, +Y up), depth as `transform_points`. Same shapes."""
        M = self.full_projection_matrix()
        if not self.in_ndc():
            M = M @ self.ndc_camera_matrix()
        return self._transform(points, M, eps)

    def transform_points_screen(
        self,
        points: torch.Tensor,
        eps: float | None = None,
        with_xyflip: bool = True,
        image_size: object = None,
    ) -> torch.Tensor:
        """World points -> screen (PyTorch3D's transform_points_screen): x right, y down, origin at the
        top-left corner of the top-left pixel, `x = W/2 - s x_ndc`, `y = H/2 - s y_ndc`, s = min(H, W) / 2
        (pixel (i, j) has its centre at (j + 0.5, i + 0.5), i.e. `ndc_to_pixel + 0.5`); depth as
        `transform_points`.

        Args:
            points: (P, 3) or (M, P, 3).
            with_xyflip: False gives `s x_ndc - W/2` (PyTorch3D's flag; keep True).
            image_size: int, (H, W) or (N, 2); None takes the camera's (ValueError when it has none).
        Returns:
            same shape as `transform_points`.
        """
        size = self.get_image_size() if image_size is None else image_size
        if size is None:
            raise ValueError(
                "transform_points_screen needs image_size=(H, W): none given and the camera has none"
            )
        hw = _image_size_rows(size, self.R.dtype, self.R.device)
        h, w = hw[:, 0], hw[:, 1]
        s = torch.minimum(h, w) / 2.0
        f = -1.0 if with_xyflip else 1.0
        S = self.R.new_zeros(hw.shape[0], 4, 4)
        S[:, 0, 0] = f * s
        S[:, 1, 1] = f * s
        S[:, 3, 0] = -f * w / 2.0
        S[:, 3, 1] = -f * h / 2.0
        S[:, 2, 2] = 1.0
        S[:, 3, 3] = 1.0
        M = self.full_projection_matrix()
        if not self.in_ndc():
            M = M @ self.ndc_camera_matrix()
        return self._transform(points, M @ S, eps)

    def transform_points_rasterizer(self, points: torch.Tensor) -> torch.Tensor:
        """World points -> `(x_ndc, y_ndc, z_view)`, the input of `rasterize_meshes` / `rasterize_points`.

        PyTorch3D's MeshRasterizer.transform / PointsRasterizer.transform
        (pytorch3d/renderer/mesh/rasterizer.py, points/rasterizer.py): NDC x, y from the projection (and the
        screen -> NDC transform of screen-space cameras), the third value replaced by the view-space depth.

        Args:
            points: (B, P, 3), (P, 3) or (M, P, 3) with B = 1.
        Returns:
            (max(B, M), P, 3), always batched (the rasterizers take padded batches).
        """
        return self.view_to_ndc(self.world_to_view(points))

    def unproject_points(
        self, xy_depth: torch.Tensor, world_coordinates: bool = True, **kwargs: object
    ) -> torch.Tensor:
        """`(x_ndc, y_ndc, z_view)` -> world points (or view points); see the subclasses' options.

        Args:
            xy_depth: (P, 3) or (M, P, 3), depth in view units (z_view).
            world_coordinates: False returns view coordinates.
        Returns:
            same shape rule as `transform_points`.
        """
        view = self.ndc_to_view(xy_depth)
        out = self.view_to_world(view) if world_coordinates else view
        return self._out(out, xy_depth)


class FoVPerspectiveCameras(_Cameras):
    """PyTorch3D's FoVPerspectiveCameras: `x_ndc = x / (z tan(fov/2) aspect)`, `y_ndc = y / (z tan(fov/2))`,
    projected depth `zfar / (zfar - znear) - zfar znear / ((zfar - znear) z)` (0 at znear, 1 at zfar).

    Args (keywords as PyTorch3D; positional order R, T first, unlike PyTorch3D's znear, zfar, ...):
        R: (N, 3, 3) (default identity); T: (N, 3) (default zeros); lists / tuples as well as tensors.
        fov: float or (N,) vertical field of view (degrees unless degrees=False).
        aspect_ratio, znear, zfar: floats or (N,). All broadcast over the batch (sizes 1 or N).
        device, dtype: explicit, else those of the tensor arguments (the default dtype when there are none).
    Attributes: R, T, fov, aspect_ratio, znear, zfar as (N, ...) tensors; degrees.
    """

    def __init__(
        self,
        R: torch.Tensor | Sequence | None = None,
        T: torch.Tensor | Sequence | None = None,
        fov: float | Sequence[float] | torch.Tensor = 60.0,
        degrees: bool = True,
        aspect_ratio: float | Sequence[float] | torch.Tensor = 1.0,
        znear: float | Sequence[float] | torch.Tensor = 1.0,
        zfar: float | Sequence[float] | torch.Tensor = 100.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = _camera_params(
            dtype,
            device,
            {
                "R": ((_EYE3,) if R is None else R, (3, 3), False),
                "T": (((0.0, 0.0, 0.0),) if T is None else T, (3,), False),
                "fov": (fov, (), True),
                "aspect_ratio": (aspect_ratio, (), True),
                "znear": (znear, (), True),
                "zfar": (zfar, (), True),
            },
        )
        self.R, self.T, self.fov = p["R"], p["T"], p["fov"]
        self.aspect_ratio, self.znear, self.zfar = p["aspect_ratio"], p["znear"], p["zfar"]
        self.degrees = degrees
        self._tan_half = torch.tan((torch.deg2rad(self.fov) if degrees else self.fov) * 0.5)  # (N,)

    def is_perspective(self) -> bool:
        return True

    def _scale(self) -> torch.Tensor:
        """(B, 1, 2): ndc = xy / z * scale."""
        t = self._tan_half
        return torch.stack([1.0 / (t * self.aspect_ratio), 1.0 / t], dim=-1)[:, None, :]

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = _batch_points(points, "points", len(self))
        z = points[..., 2:]
        return torch.cat([points[..., :2] / z * self._scale(), z], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = _batch_points(xy_depth, "xy_depth", len(self))
        z = xy_depth[..., 2:]
        return torch.cat([xy_depth[..., :2] / self._scale() * z, z], dim=-1)

    def projection_matrix(self) -> torch.Tensor:
        """(B, 4, 4) row-vector projection: `[x, y, z, 1] @ P = [X, Y, Z, W]`, ndc = (X/W, Y/W), depth Z/W."""
        t = self._tan_half
        n, f = self.znear, self.zfar
        P = torch.zeros(t.shape[0], 4, 4, dtype=t.dtype, device=t.device)
        P[:, 0, 0] = 1.0 / (t * self.aspect_ratio)
        P[:, 1, 1] = 1.0 / t
        P[:, 2, 2] = f / (f - n)
        P[:, 3, 2] = -f * n / (f - n)
        P[:, 2, 3] = 1.0
        return P

    def unproject_points(
        self,
        xy_depth: torch.Tensor,
        world_coordinates: bool = True,
        scaled_depth_input: bool = False,
        **kwargs: object,
    ) -> torch.Tensor:
        """`(x_ndc, y_ndc, depth)` -> world (or view) points, PyTorch3D's FoV unproject_points.

        Args:
            xy_depth: (P, 3) or (M, P, 3).
            world_coordinates: False returns view coordinates.
            scaled_depth_input: True: the depth is the projected one (`transform_points`' third value);
                False: it is z_view.
        """
        if scaled_depth_input:
            M = self.full_projection_matrix() if world_coordinates else self.projection_matrix()
            return self._transform(xy_depth, torch.linalg.inv(M), None, "xy_depth")
        return super().unproject_points(xy_depth, world_coordinates)

    def intrinsics(self, image_size: int | Sequence[int]) -> torch.Tensor:
        """(B, 3, 3) pixel intrinsics K (OpenCV frame and pixel convention) of this camera in an image.

        Projecting `pytorch3d_view_to_opencv(view points)` with K gives `ndc_to_pixel(transform_points)`.
        """
        h, w = image_hw(image_size)
        s = min(h, w)
        t = self._tan_half
        return _make_K(s / (2.0 * t * self.aspect_ratio), s / (2.0 * t), h, w)


class FoVOrthographicCameras(_Cameras):
    """PyTorch3D's FoVOrthographicCameras: `x_ndc = (2 s_x x - (max_x + min_x)) / (max_x - min_x)`, also y;
    projected depth `(s_z z - znear) / (zfar - znear)`.

    Args (keywords as PyTorch3D; positional order R, T, min_x, max_x, min_y, max_y, unlike PyTorch3D's):
        R: (N, 3, 3) (default identity); T: (N, 3) (default zeros).
        min_x, max_x, min_y, max_y: floats or (N,), view-space bounds mapped to NDC [-1, 1].
        scale_xyz: (N, 3) (default ((1, 1, 1),)). znear, zfar: floats or (N,).
        device, dtype: explicit, else those of the tensor arguments.
    """

    def __init__(
        self,
        R: torch.Tensor | Sequence | None = None,
        T: torch.Tensor | Sequence | None = None,
        min_x: float | Sequence[float] | torch.Tensor = -1.0,
        max_x: float | Sequence[float] | torch.Tensor = 1.0,
        min_y: float | Sequence[float] | torch.Tensor = -1.0,
        max_y: float | Sequence[float] | torch.Tensor = 1.0,
        scale_xyz: torch.Tensor | Sequence | None = None,
        znear: float | Sequence[float] | torch.Tensor = _ORTHO_ZNEAR,
        zfar: float | Sequence[float] | torch.Tensor = _ORTHO_ZFAR,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = _camera_params(
            dtype,
            device,
            {
                "R": ((_EYE3,) if R is None else R, (3, 3), False),
                "T": (((0.0, 0.0, 0.0),) if T is None else T, (3,), False),
                "min_x": (min_x, (), True),
                "max_x": (max_x, (), True),
                "min_y": (min_y, (), True),
                "max_y": (max_y, (), True),
                "scale_xyz": (((1.0, 1.0, 1.0),) if scale_xyz is None else scale_xyz, (3,), False),
                "znear": (znear, (), True),
                "zfar": (zfar, (), True),
            },
        )
        self.R, self.T, self.scale_xyz = p["R"], p["T"], p["scale_xyz"]
        self.min_x, self.max_x, self.min_y, self.max_y = p["min_x"], p["max_x"], p["min_y"], p["max_y"]
        self.znear, self.zfar = p["znear"], p["zfar"]

    def is_perspective(self) -> bool:
        return False

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ndc_xy = view_xy * a + b, a and b (B, 1, 2)."""
        wx, wy = self.max_x - self.min_x, self.max_y - self.min_y
        a = self.scale_xyz[:, None, :2] * torch.stack([2.0 / wx, 2.0 / wy], dim=-1)[:, None, :]
        b = torch.stack([-(self.max_x + self.min_x) / wx, -(self.max_y + self.min_y) / wy], dim=-1)[:, None]
        return a, b

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = _batch_points(points, "points", len(self))
        a, b = self._affine()
        return torch.cat([points[..., :2] * a + b, points[..., 2:]], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = _batch_points(xy_depth, "xy_depth", len(self))
        a, b = self._affine()
        return torch.cat([(xy_depth[..., :2] - b) / a, xy_depth[..., 2:]], dim=-1)

    def projection_matrix(self) -> torch.Tensor:
        """(B, 4, 4) row-vector projection `[x, y, z, 1] @ P` (README 1.2; W = 1)."""
        a, b = self._affine()
        P = self.R.new_zeros(len(self), 4, 4)
        P[:, 0, 0] = a[:, 0, 0]
        P[:, 1, 1] = a[:, 0, 1]
        P[:, 3, 0] = b[:, 0, 0]
        P[:, 3, 1] = b[:, 0, 1]
        P[:, 2, 2] = self.scale_xyz[:, 2] / (self.zfar - self.znear)
        P[:, 3, 2] = -self.znear / (self.zfar - self.znear)
        P[:, 3, 3] = 1.0
        return P

    def unproject_points(
        self,
        xy_depth: torch.Tensor,
        world_coordinates: bool = True,
        scaled_depth_input: bool = False,
        **kwargs: object,
    ) -> torch.Tensor:
        """As FoVPerspectiveCameras.unproject_points (scaled_depth_input: `transform_points`' depth)."""
        if scaled_depth_input:
            M = self.full_projection_matrix() if world_coordinates else self.projection_matrix()
            return self._transform(xy_depth, torch.linalg.inv(M), None, "xy_depth")
        return super().unproject_points(xy_depth, world_coordinates)


class _SfMCameras(_Cameras):
    """PerspectiveCameras / OrthographicCameras (PyTorch3D's multi-view-geometry cameras)."""

    _orthographic: bool

    def __init__(
        self,
        focal_length: float | Sequence | torch.Tensor = 1.0,
        principal_point: Sequence | torch.Tensor = ((0.0, 0.0),),
        R: torch.Tensor | Sequence | None = None,
        T: torch.Tensor | Sequence | None = None,
        K: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        in_ndc: bool = True,
        image_size: Sequence | torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dtype, device = _result_dtype_device([focal_length, principal_point, R, T, K], dtype, device)
        fl = _focal_rows(focal_length, dtype, device)
        specs: dict[str, tuple[object, tuple[int, ...], bool]] = {
            "focal_length": (fl, (fl.shape[1],), False),
            "principal_point": (principal_point, (2,), False),
            "R": ((_EYE3,) if R is None else R, (3, 3), False),
            "T": (((0.0, 0.0, 0.0),) if T is None else T, (3,), False),
        }
        if K is not None:
            specs["K"] = (K, (4, 4), False)
        if image_size is not None:
            specs["image_size"] = (_image_size_rows(image_size, dtype, device), (2,), False)
        p = _camera_params(dtype, device, specs)
        self.focal_length = p["focal_length"].expand(-1, 2)  # (N, 2)
        self.principal_point, self.R, self.T = p["principal_point"], p["R"], p["T"]
        self.K = p.get("K")
        self.image_size = p.get("image_size")
        self._in_ndc = bool(in_ndc)

    def in_ndc(self) -> bool:
        return self._in_ndc

    def is_perspective(self) -> bool:
        return not self._orthographic

    def projection_matrix(self) -> torch.Tensor:
        """(N, 4, 4) row-vector projection (PyTorch3D's `_get_sfm_calibration_matrix`, transposed), or K^T
        when K (N, 4, 4) was given. Perspective: `(fx x/z + px, fy y/z + py, 1/z)`; orthographic:
        `(fx x + px, fy y + py, z)`."""
        if self.K is not None:
            return self.K.transpose(1, 2)
        (fx, fy), (px, py) = self.focal_length.unbind(1), self.principal_point.unbind(1)
        P = fx.new_zeros(len(self), 4, 4)
        P[:, 0, 0] = fx
        P[:, 1, 1] = fy
        row = 3 if self._orthographic else 2
        P[:, row, 0] = px
        P[:, row, 1] = py
        if self._orthographic:
            P[:, 2, 2] = 1.0
            P[:, 3, 3] = 1.0
        else:
            P[:, 3, 2] = 1.0
            P[:, 2, 3] = 1.0
        return P

    def get_principal_point(self) -> torch.Tensor:
        """(N, 2) principal point, read from the projection matrix (as PyTorch3D)."""
        return self.projection_matrix()[:, 3 if self._orthographic else 2, :2]

    def ndc_camera_matrix(self) -> torch.Tensor:
        """(N, 4, 4) projection space -> NDC: identity in NDC; for screen-space cameras PyTorch3D's
        principal-point fix `x - 2 p` followed by screen -> NDC without flip, `(x + W/2) / s`, s = min(H, W)/2
        (PerspectiveCameras.get_ndc_camera_transform). The depth is unchanged."""
        if self._in_ndc:
            return super().ndc_camera_matrix()
        if self.image_size is None:
            raise ValueError(
                f"{type(self).__name__}(in_ndc=False) needs image_size=(H, W) for NDC and screen"
            )
        h, w = self.image_size.unbind(1)
        s = torch.minimum(h, w) / 2.0
        fix = torch.eye(4, dtype=self.R.dtype, device=self.R.device).repeat(len(self), 1, 1)
        fix[:, 3, :2] = -2.0 * self.get_principal_point()
        to_ndc = self.R.new_zeros(len(self), 4, 4)
        to_ndc[:, 0, 0] = 1.0 / s
        to_ndc[:, 1, 1] = 1.0 / s
        to_ndc[:, 3, 0] = w / (2.0 * s)
        to_ndc[:, 3, 1] = h / (2.0 * s)
        to_ndc[:, 2, 2] = 1.0
        to_ndc[:, 3, 3] = 1.0
        return fix @ to_ndc

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = _batch_points(xy_depth, "xy_depth", len(self))
        return self._unproject(xy_depth, self.projection_matrix() @ self.ndc_camera_matrix())

    def _unproject(self, xy_depth: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        z = xy_depth[..., 2:]
        inp = xy_depth if self._orthographic else torch.cat([xy_depth[..., :2], 1.0 / z], dim=-1)
        return _apply_homogeneous(inp, torch.linalg.inv(M), None)

    def unproject_points(
        self,
        xy_depth: torch.Tensor,
        world_coordinates: bool = True,
        from_ndc: bool = False,
        **kwargs: object,
    ) -> torch.Tensor:
        """`(x, y, z_view)` -> world (or view) points, PyTorch3D's unproject_points.

        Args:
            xy_depth: (P, 3) or (M, P, 3): x, y in the camera's projection space (NDC, or screen for
                in_ndc=False, i.e. `transform_points`' x, y), depth z_view.
            world_coordinates: False returns view coordinates.
            from_ndc: True: x, y are NDC even for a screen-space camera.
        """
        M = self.projection_matrix()
        if from_ndc:
            M = M @ self.ndc_camera_matrix()
        if world_coordinates:
            M = self.world_to_view_matrix() @ M
        out = self._unproject(_batch_points(xy_depth, "xy_depth", len(self)), M)
        return self._out(out, xy_depth)


class PerspectiveCameras(_SfMCameras):
    """PyTorch3D's PerspectiveCameras: `x = fx X/Z + px`, `y = fy Y/Z + py`, `z = 1/Z` (view X, Y, Z).

    Parameters in NDC (`in_ndc=True`, default) or in screen space (`in_ndc=False` with `image_size`):
    screen `fx_s = fx_ndc s`, `px_s = W/2 - px_ndc s`, `py_s = H/2 - py_ndc s`, s = min(H, W) / 2
    (docs/notes/cameras.md). Screen space: origin at the top-left corner of the top-left pixel, x right,
    y down, so our pixel coordinates (centres at integers, `ndc_to_pixel`) are screen - 0.5.

    Args (PyTorch3D's, in its order):
        focal_length: float, (N,), (N, 1) or (N, 2) (nested sequences too).
        principal_point: (N, 2) (default ((0, 0),)). R: (N, 3, 3) (identity); T: (N, 3) (zeros).
        K: optional (N, 4, 4) column-vector calibration matrix replacing focal_length / principal_point.
        device; in_ndc; image_size: (H, W) or (N, 2), required when in_ndc=False; dtype (ours).
    FoVPerspectiveCameras(fov) equals PerspectiveCameras(focal_length=1 / tan(fov / 2)) in x, y.
    """

    _orthographic = False


class OrthographicCameras(_SfMCameras):
    """PyTorch3D's OrthographicCameras: `x = fx X + px`, `y = fy Y + py`, `z = Z`; arguments and NDC / screen
    conventions as PerspectiveCameras. FoVOrthographicCameras(bounds +-b) equals focal_length = 1 / b."""

    _orthographic = True


class IntrinsicsCameras(_Cameras):
    """Perspective camera given by pixel intrinsics K (OpenCV convention) of an H x W image.

    View space is PyTorch3D's (x left, y up); K acts on the OpenCV frame `view * (-1, -1, 1)`, and pixels
    map to NDC with `pixel_to_ndc`. Skew K[0, 1] is supported. Without skew this is
    `PerspectiveCameras(focal_length=((fx, fy),), principal_point=((cx + 0.5, cy + 0.5),), in_ndc=False,
    image_size=(H, W))` (PyTorch3D's screen puts pixel centres at +0.5); `transform_points` returns NDC x, y
    and PerspectiveCameras' depth 1 / z_view.

    Args:
        R: (B, 3, 3); T: (B, 3); K: (B, 3, 3) (tensors or nested sequences); image_size: (H, W) or S.
    """

    def __init__(
        self,
        R: torch.Tensor | Sequence,
        T: torch.Tensor | Sequence,
        K: torch.Tensor | Sequence,
        image_size: int | Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = _camera_params(
            dtype, device, {"R": (R, (3, 3), False), "T": (T, (3,), False), "K": (K, (3, 3), False)}
        )
        self.R, self.T, self.K = p["R"], p["T"], p["K"]
        self.image_size = image_size

    def is_perspective(self) -> bool:
        return True

    def projection_matrix(self) -> torch.Tensor:
        """(B, 4, 4) row-vector view -> NDC projection with depth 1 / z: pixels `u = fx x_o/z + k y_o/z + cx`,
        `v = fy y_o/z + cy` (OpenCV x_o = -x, y_o = -y) mapped by `pixel_to_ndc`."""
        h, w = image_hw(self.image_size)
        s = float(min(h, w))
        K = self.K
        P = K.new_zeros(len(self), 4, 4)
        P[:, 0, 0] = 2.0 * K[:, 0, 0] / s
        P[:, 1, 0] = 2.0 * K[:, 0, 1] / s
        P[:, 1, 1] = 2.0 * K[:, 1, 1] / s
        P[:, 2, 0] = (w - 1.0 - 2.0 * K[:, 0, 2]) / s
        P[:, 2, 1] = (h - 1.0 - 2.0 * K[:, 1, 2]) / s
        P[:, 3, 2] = 1.0
        P[:, 2, 3] = 1.0
        return P

    def get_image_size(self) -> tuple[int, int]:
        return image_hw(self.image_size)

    def view_to_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) view points -> (B, P, 3) `(x_ndc, y_ndc, z_view)`."""
        points = _batch_points(points, "points", len(self))
        uv = _project_opencv(pytorch3d_view_to_opencv(points), self.K)
        return torch.cat([pixel_to_ndc(uv, self.image_size), points[..., 2:]], dim=-1)

    def ndc_to_view(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) or (P, 3) `(x_ndc, y_ndc, z_view)` -> (B, P, 3) view points."""
        xy_depth = _batch_points(xy_depth, "xy_depth", len(self))
        uv = ndc_to_pixel(xy_depth[..., :2], self.image_size)
        return opencv_to_pytorch3d_view(_unproject_opencv(uv, xy_depth[..., 2:], self.K))

    def unproject_points(
        self, xy_depth: torch.Tensor, world_coordinates: bool = True, from_ndc: bool = False, **kwargs: object
    ) -> torch.Tensor:
        """`(x_ndc, y_ndc, z_view)` -> world (or view) points; from_ndc has no effect (NDC camera)."""
        return super().unproject_points(xy_depth, world_coordinates)


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
        return _batch_points(points, "points", self.R.shape[0]) @ self.R

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B, P, 3) or (P, 3) -> (B, P, 2) normalized image coordinates (x right, y down)."""
        return self.scale[:, None, :] * self._rotate(points)[..., :2] + self.trans[:, None, :]

    def transform_points_rasterizer(
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

    def transform_points(
        self, points: torch.Tensor, image_size: int | Sequence[int] | None = None
    ) -> torch.Tensor:
        """`transform_points_rasterizer` with the depth of `to_orthographic()`'s PyTorch3D transform_points,
        `(z - znear) / (zfar - znear)` (FoVOrthographicCameras' default znear = 1, zfar = 100).

        Args:
            points: (B, P, 3) or (P, 3); image_size: (H, W) or S; None = square.
        Returns:
            (B, P, 3)
        """
        out = self.transform_points_rasterizer(points, image_size)
        z = (out[..., 2:] - _ORTHO_ZNEAR) / (_ORTHO_ZFAR - _ORTHO_ZNEAR)
        return torch.cat([out[..., :2], z], dim=-1)

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
