"""Depth maps <-> 3D points with pinhole intrinsics.

Frames and pixels (see `geometry.cameras`): K maps the **OpenCV camera frame** (x right, y down, z forward)
to pixel coordinates `(u, v) = (column, row)` with the centre of pixel (i, j) at `(u, v) = (j, i)`:
`u = fx x / z + skew y / z + cx`, `v = fy y / z + cy`. This is the convention of `intrinsics_from_fov`
(principal point `((W - 1) / 2, (H - 1) / 2)`). `frame="pytorch3d"` expresses points in PyTorch3D view
coordinates instead (x left, y up, z forward), i.e. `points * (-1, -1, 1)`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .cameras import (
    _check_shape,
    _project_opencv,
    _unproject_opencv,
    intrinsics_from_fov,
    opencv_to_pytorch3d_view,
)

__all__ = [
    "Projection",
    "Unprojection",
    "pixel_grid",
    "project_points",
    "unproject_depth",
    "unproject_depth_fov",
    "valid_points_padded",
]

FRAMES = ("opencv", "pytorch3d")


class Unprojection(NamedTuple):
    points: torch.Tensor  # (B, H*W, 3), zero where not valid
    valid: torch.Tensor  # (B, H*W) bool


class Projection(NamedTuple):
    pixels: torch.Tensor  # (B, P, 2) (u, v), zero where not valid
    depth: torch.Tensor  # (B, P) z
    valid: torch.Tensor  # (B, P) bool: finite z > 0


def _check_frame(frame: str) -> None:
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")


def pixel_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Pixel-centre coordinates in row-major order (the order of `depth.flatten(2)`).

    Returns:
        (H*W, 2) with row `i * W + j` = (u, v) = (j, i).
    """
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device),
        torch.arange(width, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1).reshape(-1, 2)


def unproject_depth(
    depth: torch.Tensor,
    K: torch.Tensor,
    mask: torch.Tensor | None = None,
    frame: str = "opencv",
) -> Unprojection:
    """Back-project every pixel centre of a z-depth map (distance along the optical axis, not along the ray).

    Args:
        depth: (B, 1, H, W) z-depth.
        K: (B, 3, 3) intrinsics, upper triangular, in the pixel convention of the module docstring.
        mask: (B, 1, H, W) bool or None; pixels outside it are not valid.
        frame: "opencv" (x right, y down) or "pytorch3d" (x left, y up); z forward in both.
    Returns:
        Unprojection(points (B, H*W, 3) row-major pixel order, zeroed where not valid;
        valid (B, H*W) bool: finite depth > 0 and inside mask).
    """
    _check_frame(frame)
    sizes: dict[str, int] = {}
    _check_shape(depth, "depth", ("B", 1, "H", "W"), sizes)
    _check_shape(K, "K", ("B", 3, 3), sizes)
    if mask is not None:
        _check_shape(mask, "mask", ("B", 1, "H", "W"), sizes)
    b, _, h, w = depth.shape
    z = depth.reshape(b, h * w, 1)  # (B, P, 1)
    valid = torch.isfinite(z[..., 0]) & (z[..., 0] > 0)  # (B, P)
    if mask is not None:
        valid = valid & mask.reshape(b, h * w).bool()
    z = torch.where(valid[..., None], z, torch.zeros_like(z))  # no NaN/inf reaches the points or gradients
    uv = pixel_grid(h, w, dtype=depth.dtype, device=depth.device).expand(b, -1, -1)  # (B, P, 2)
    points = _unproject_opencv(uv, z, K.to(depth.dtype))  # (B, P, 3)
    if frame == "pytorch3d":
        points = opencv_to_pytorch3d_view(points)
    return Unprojection(points, valid)


def unproject_depth_fov(
    depth: torch.Tensor,
    fov_deg: float | torch.Tensor,
    mask: torch.Tensor | None = None,
    frame: str = "opencv",
) -> Unprojection:
    """`unproject_depth` with `intrinsics_from_fov(fov_deg, H, W)` (horizontal fov, centred principal point).

    Args:
        depth: (B, 1, H, W); fov_deg: float or (B,) degrees; mask, frame: as in `unproject_depth`.
    Returns:
        Unprojection(points (B, H*W, 3), valid (B, H*W)).
    """
    _check_shape(depth, "depth", ("B", 1, "H", "W"))
    b, _, h, w = depth.shape
    fov = torch.as_tensor(fov_deg, dtype=depth.dtype, device=depth.device)
    fov = fov.expand(b) if fov.dim() == 0 else fov
    _check_shape(fov, "fov_deg", (b,))
    return unproject_depth(depth, intrinsics_from_fov(fov, h, w), mask=mask, frame=frame)


def project_points(points: torch.Tensor, K: torch.Tensor, frame: str = "opencv") -> Projection:
    """Project camera-frame points to pixels, the inverse of `unproject_depth`.

    Args:
        points: (B, P, 3) in the camera frame `frame` ("opencv" or "pytorch3d").
        K: (B, 3, 3)
    Returns:
        Projection(pixels (B, P, 2) as (u, v), zero where not valid; depth (B, P) = z;
        valid (B, P) bool: finite z > 0). Points at or behind the camera give no NaN/inf (values or
        gradients); `pixels, depth, valid = project_points(...)`.
    """
    _check_frame(frame)
    sizes: dict[str, int] = {}
    _check_shape(points, "points", ("B", "P", 3), sizes)
    _check_shape(K, "K", ("B", 3, 3), sizes)
    if frame == "pytorch3d":
        points = opencv_to_pytorch3d_view(points)
    z = points[..., 2]  # (B, P)
    valid = torch.isfinite(z) & (z > 0)
    safe = torch.cat([points[..., :2], torch.where(valid, z, torch.ones_like(z))[..., None]], dim=-1)
    pixels = _project_opencv(safe, K.to(points.dtype))  # (B, P, 2)
    pixels = torch.where(valid[..., None], pixels, torch.zeros_like(pixels))
    return Projection(pixels, z, valid)


def valid_points_padded(points: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the valid points of each batch element to the front (PyTorch3D's padded + lengths layout).

    Args:
        points: (B, P, 3); valid: (B, P) bool.
    Returns:
        (points_padded (B, P_max, 3) with zeros after each length, lengths (B,) int64), where
        P_max = max(lengths) and the valid points keep their order.
    """
    sizes: dict[str, int] = {}
    _check_shape(points, "points", ("B", "P", 3), sizes)
    _check_shape(valid, "valid", ("B", "P"), sizes)
    valid = valid.bool()
    lengths = valid.sum(dim=1)  # (B,)
    p_max = int(lengths.max()) if lengths.numel() else 0
    # stable sort puts valid points first, in their original order
    order = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices[:, :p_max]  # (B, P_max)
    gathered = torch.gather(points, 1, order[..., None].expand(-1, -1, 3))
    keep = torch.arange(p_max, device=points.device)[None, :] < lengths[:, None]  # (B, P_max)
    return torch.where(keep[..., None], gathered, torch.zeros_like(gathered)), lengths
