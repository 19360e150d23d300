"""The camera of the SSL point-cloud lineage (CAPNet, DIFFER, SSL-3D), as pure functions.

Facts from the official code, val-iisc/ssl_3d_recon `src/proj_codes.py` (`world2cam`,
`perspective_transform`) and `main.py` (it calls `world2cam(pcl, az, el, 2., 2., ...)`):
* world -> camera: `X_cam = R X - (0, 0, d)` with column-vector points, `R = R_el R_az`, where R_az is the
  right-handed rotation by `azimuth` about the x axis and R_el the one by `elevation` about the y axis:
      R_az = [[1, 0, 0], [0, cos a, -sin a], [0, sin a, cos a]]
      R_el = [[cos e, 0, sin e], [0, 1, 0], [-sin e, 0, cos e]]
  and the camera distance d = 2 (the DRC renderings are made at distance 2 too: shubhtuls/drc
  `preprocess/synthetic/rendering/renderer/BlenderRenderer.py`, `dist_low, dist_high = 2, 2`).
  The object sits at X_cam z = -d, in front of the camera; with azimuth = elevation = 0 the camera centre is
  (0, 0, d) in the world, and elevation > 0 moves it towards -x, i.e. up in the image (looks from above).
* intrinsics for 64 x 64 images: `K = [[120, 0, -32], [0, 120, -32], [0, 0, 1]]`, and the projection is
  `(K X_cam)[:2] / |z|` with depth `|z|`. Because z < 0 this is `120 x / |z| + 32`: focal length 120 px,
  principal point 32. (DRC renders with a 60 mm lens on a 32 mm sensor at 224 px: 60 / 32 * 224 = 420 px,
  i.e. 120 px at 64 px.)
* the first projected coordinate is the image ROW and the second the COLUMN, both 0-based pixels with
  pixel centres at integers: `cont_proj` / `get_depth` compare them with `tf.meshgrid(range(H), range(W),
  indexing='ij')`. So the camera frame is x down, y right, z towards the viewer (right-handed).
For other image sizes S the intrinsics scale with S / 64 (`lineage_intrinsics`).

World frame: the lineage's ShapeNet frame, in which the image-vertical axis is x (up = -x at elevation 0)
and azimuth turns the object about it. `project_to_ndc` maps the projection to PyTorch3D NDC (+X left,
+Y up) for `geometry.rasterize_meshes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geometry.cameras import _check_shape, pixel_to_ndc

__all__ = [
    "CAMERA_DISTANCE",
    "LINEAGE_FOCAL",
    "LINEAGE_IMAGE_SIZE",
    "LINEAGE_PRINCIPAL",
    "lineage_intrinsics",
    "project",
    "project_to_ndc",
    "world2cam",
    "world2cam_rotation",
]

CAMERA_DISTANCE = 2.0  # ssl_3d_recon main.py: world2cam(..., 2., 2., ...)
LINEAGE_FOCAL = 120.0  # ssl_3d_recon src/proj_codes.py perspective_transform K
LINEAGE_PRINCIPAL = 32.0  # idem (stored as -32: the camera looks along -z)
LINEAGE_IMAGE_SIZE = 64  # ssl_3d_recon main.py --H 64 --W 64


def lineage_intrinsics(image_size: int = LINEAGE_IMAGE_SIZE, dtype: torch.dtype = torch.float32) -> Tensor:
    """The lineage's K (3, 3) for S x S images: `[[f, 0, -c], [0, f, -c], [0, 0, 1]]`, f = 120 S / 64,
    c = 32 S / 64 (exactly the official matrix at S = 64; the -c is because z < 0 in front of the camera)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
    s = image_size / LINEAGE_IMAGE_SIZE
    f, c = LINEAGE_FOCAL * s, LINEAGE_PRINCIPAL * s
    return torch.tensor([[f, 0.0, -c], [0.0, f, -c], [0.0, 0.0, 1.0]], dtype=dtype)


def world2cam_rotation(azimuth: Tensor, elevation: Tensor) -> Tensor:
    """R = R_el R_az (B, 3, 3) of `world2cam` (column-vector convention: X_cam = R X - t).

    Args:
        azimuth, elevation: (B,) radians.
    """
    sizes: dict[str, int] = {}
    _check_shape(azimuth, "azimuth", ["B"], sizes)
    _check_shape(elevation, "elevation", ["B"], sizes)
    one, zero = torch.ones_like(azimuth), torch.zeros_like(azimuth)
    ca, sa = torch.cos(azimuth), torch.sin(azimuth)
    ce, se = torch.cos(elevation), torch.sin(elevation)
    r_az = torch.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1).view(-1, 3, 3)
    r_el = torch.stack([ce, zero, se, zero, one, zero, -se, zero, ce], -1).view(-1, 3, 3)
    return r_el @ r_az


def world2cam(
    points: Tensor, azimuth: Tensor, elevation: Tensor, distance: float | Tensor = CAMERA_DISTANCE
) -> Tensor:
    """World -> lineage camera coordinates (ssl_3d_recon `src/proj_codes.py` `world2cam`).

    Args:
        points: (B, P, 3) world points (row vectors).
        azimuth, elevation: (B,) radians.
        distance: camera distance d, a float or (B,).
    Returns:
        (B, P, 3) `R X - (0, 0, d)` per point, R = `world2cam_rotation(azimuth, elevation)`.
    """
    sizes: dict[str, int] = {}
    _check_shape(points, "points", ["B", "P", 3], sizes)
    _check_shape(azimuth, "azimuth", ["B"], sizes)
    _check_shape(elevation, "elevation", ["B"], sizes)
    d = torch.as_tensor(distance, dtype=points.dtype, device=points.device)
    if d.dim() == 0:
        d = d.expand(points.shape[0])
    _check_shape(d, "distance", ["B"], sizes)
    rot = world2cam_rotation(azimuth.to(points.dtype), elevation.to(points.dtype))  # (B, 3, 3)
    out = points @ rot.transpose(1, 2)  # (B, P, 3) = (R X^T)^T
    return out - torch.stack([torch.zeros_like(d), torch.zeros_like(d), d], -1)[:, None, :]


def project(points_cam: Tensor, intrinsics: Tensor) -> Tensor:
    """Perspective projection of the lineage (ssl_3d_recon `perspective_transform`).

    Args:
        points_cam: (B, P, 3) camera coordinates from `world2cam` (z < 0 in front of the camera).
        intrinsics: (3, 3) or (B, 3, 3), e.g. `lineage_intrinsics(S)`.
    Returns:
        (B, P, 3): `(K X)[:2] / |z|` and `|z|`, i.e. (row, column, depth): 0-based pixel row and column
        (centres at integers; NOT (x, y) = (column, row)) and the positive depth.
    """
    sizes: dict[str, int] = {}
    _check_shape(points_cam, "points_cam", ["B", "P", 3], sizes)
    k = intrinsics[None] if torch.is_tensor(intrinsics) and intrinsics.dim() == 2 else intrinsics
    _check_shape(k, "intrinsics", ["B'", 3, 3])
    if k.shape[0] not in (1, sizes["B"]):
        raise ValueError(
            f"Expected intrinsics of shape (3, 3) or (B, 3, 3) with B={sizes['B']}, got {tuple(k.shape)}"
        )
    hom = points_cam @ k.to(points_cam).transpose(1, 2)  # (B, P, 3) = (K X)^T
    depth = points_cam[..., 2].abs()  # (B, P)
    return torch.cat([hom[..., :2] / depth[..., None], hom[..., 2:].abs()], -1)


def project_to_ndc(points_cam: Tensor, intrinsics: Tensor, image_size: int) -> Tensor:
    """`project` mapped to the rasterizer's input (B, P, 3): PyTorch3D NDC x, y (+X left, +Y up, the pixel
    centres of `geometry.cameras.pixel_to_ndc`) and the depth, for `geometry.rasterize_meshes` at S x S."""
    rcd = project(points_cam, intrinsics)  # (B, P, 3) row, column, depth
    xy = pixel_to_ndc(torch.stack([rcd[..., 1], rcd[..., 0]], -1), image_size)  # uv = (column, row)
    return torch.cat([xy, rcd[..., 2:]], -1)
