"""The category (TTP) crop as pure functions: pad the bbox, square it, crop, resize; mirror; normalize.

As CMR's data loader (akanazawa/cmr data/base.py `forward_img`, utils/image.py `peturb_bbox`,
`square_bbox`), which TTP follows: the bbox (x1, y1, x2, y2), inclusive 0-based pixels of width
w = x2 - x1 + 1 and height h, grows by `pad_frac` (CMR's padding_frac, 0.05) of w and h on each side (plus an
optional train-time jitter of each side, CMR's jitter_frac, in the same units), is rounded to integer pixels
(half up) and made square about its centre (side L = the larger of its width and height); the L x L crop,
zeros outside the image (mask 0; CMR pads the image with 1), is resized to `size` x `size` (bilinear,
antialiased when shrinking; the mask too, so it becomes a float in [0, 1]; the mask is optional, as
PASCAL3D+ ships none).

Coordinates after the crop are **normalized image coordinates of the crop** (x right, y down, [-1, 1] over
the crop, pixel centres at (2 j + 1) / size - 1, `geometry.cameras`): a pixel u of the original image, with
the crop's first column x0, lands at crop pixel (u - x0 + 0.5) * size / L - 0.5, converted with
`geometry.pixel_to_ndc` and `geometry.ndc_to_image_coords`; so x_crop = 2 (u - x0 + 0.5) / L - 1. Mapped:
- `keypoints` (K, 3): x, y as above; hidden keypoints (visibility 0) get x = y = 0 (CMR's `normalize_kp`).
- `bbox` (4,): its corner pixel centres x1, y1, x2, y2, in crop coordinates.
- `sfm_pose` (7,) (s, tx, ty, qw, qx, qy, qz), CMR's layout with s and t in 0-based pixels of the
  original image: s -> 2 s / L, t -> crop coordinates; the quaternion is unchanged.
- the synthetic truth `true_scale` (1,), `true_translation` (2,) (a `WeakPerspectiveCameras` in normalized
  coordinates of the square original image): s -> s W / L, t -> crop coordinates, so the true camera
  projects `true_verts` onto the crop's keypoints. `true_rotation`, `true_verts`, `true_coeffs` unchanged.

Mirroring (`mirror_sample`, on a cropped sample): image and mask flipped left-right (torch.flip), x -> -x,
keypoints permuted by the reader's flip permutation (`kp'[k] = flip(kp[keypoint_flip[k]])`, as CMR's
`kp_flip[kp_perm]`), bbox x1' = -x2, x2' = -x1. A pose present is **adjusted, not dropped**: the mirrored
object is the original reflected by M = diag(-1, 1, 1) in its template frame (x = 0 is the symmetry plane),
so R' = M R M (CMR's `flip_R`, for row- and column-vector R alike; the quaternion (w, x, y, z) becomes
(w, x, -y, -z)), tx' = -tx, s unchanged; `true_verts` become M true_verts[vertex_flip] (needs the reader's
vertex flip permutation) and `true_coeffs` stay (the true basis is symmetric: the reflected shape has the
same coefficients).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from geometry.cameras import image_coords_to_ndc, ndc_to_image_coords, ndc_to_pixel, pixel_to_ndc

__all__ = ["PAD_FRAC", "crop_box", "crop_image", "crop_sample", "mirror_sample", "pixels_to_crop"]

PAD_FRAC = 0.05  # CMR's padding_frac (akanazawa/cmr data/base.py), TTP's crop
_MIRROR = (-1.0, 1.0, 1.0)


def _check_vector(x: Any, name: str, n: int) -> Tensor:
    if not torch.is_tensor(x) or x.shape != (n,):
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"Expected {name} to be a tensor of shape ({n},), got {shape}")
    return x


def crop_box(bbox: Tensor, pad_frac: float = PAD_FRAC, jitter: Tensor | None = None) -> tuple[int, int, int]:
    """The square crop of a bbox: (x0, y0, L), the first column and row of the L x L crop (integers).

    Args:
        bbox: (4,) x1, y1, x2, y2, inclusive 0-based pixels.
        pad_frac: each side moves out by pad_frac * w (x) or pad_frac * h (y), w = x2 - x1 + 1.
        jitter: optional (4,) extra outward moves of the sides x1, y1, x2, y2 in units of w, h.
    """
    _check_vector(bbox, "bbox", 4)
    if pad_frac < 0:
        raise ValueError(f"pad_frac: expected >= 0, got {pad_frac}")
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if not (math.isfinite(x1 + y1 + x2 + y2) and x2 >= x1 and y2 >= y1):
        raise ValueError(f"bbox: expected finite x1 <= x2 and y1 <= y2, got {bbox.tolist()}")
    j = [0.0] * 4 if jitter is None else [float(v) for v in _check_vector(jitter, "jitter", 4)]
    w, h = x2 - x1 + 1, y2 - y1 + 1
    box = [x1 - (pad_frac + j[0]) * w, y1 - (pad_frac + j[1]) * h, x2 + (pad_frac + j[2]) * w]
    box.append(y2 + (pad_frac + j[3]) * h)
    bx1, by1, bx2, by2 = (math.floor(v + 0.5) for v in box)
    bw, bh = max(bx2 - bx1 + 1, 1), max(by2 - by1 + 1, 1)
    side = max(bw, bh)
    return bx1 - math.floor((side - bw) / 2 + 0.5), by1 - math.floor((side - bh) / 2 + 0.5), side


def crop_image(image: Tensor, x0: int, y0: int, side: int, size: int) -> Tensor:
    """The side x side crop of image (C, H, W) at column x0, row y0 (zeros outside), resized to size x size.

    Bilinear (align_corners=False), antialiased when shrinking. Returns (C, size, size), the input's dtype
    for floats (float32 otherwise).
    """
    if image.dim() != 3:
        raise ValueError(f"Expected image to be of shape (C, H, W), got {tuple(image.shape)}")
    if side < 1 or size < 1:
        raise ValueError(f"side and size: expected >= 1, got {side}, {size}")
    image = image if image.is_floating_point() else image.float()
    c, h, w = image.shape
    out = image.new_zeros(c, side, side)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    if side == size:
        return out
    return F.interpolate(out[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[
        0
    ]


def pixels_to_crop(uv: Tensor, x0: int, y0: int, side: int) -> Tensor:
    """0-based pixels (..., 2) (x = column, y = row) of the original image -> normalized crop coordinates.

    The crop's pixel (u - x0 + 0.5) * size / side - 0.5, through `geometry.pixel_to_ndc` and
    `ndc_to_image_coords` (the result does not depend on size): x = 2 (u - x0 + 0.5) / side - 1.
    """
    if not torch.is_tensor(uv) or uv.dim() < 1 or uv.shape[-1] != 2:
        shape = tuple(uv.shape) if torch.is_tensor(uv) else type(uv).__name__
        raise ValueError(f"Expected uv to be of shape (..., 2), got {shape}")
    crop_uv = uv - uv.new_tensor([x0 - 0.5, y0 - 0.5]) - 0.5  # pixels of the crop at its own resolution
    return ndc_to_image_coords(pixel_to_ndc(crop_uv, side), side)


def crop_sample(
    sample: Mapping[str, Any], size: int, pad_frac: float = PAD_FRAC, jitter: Tensor | None = None
) -> dict[str, Any]:
    """Crop a category sample about its bbox and resize to size x size (rules in the module docstring).

    Args:
        sample: `image` (3, H, W), `keypoints` (K, 3) pixels + visibility, `bbox` (4,) pixels; optional
            `mask` (1, H, W), `sfm_pose` (7,), `true_scale` (1,), `true_translation` (2,); other keys pass.
        size: output side in pixels.
        pad_frac, jitter: of `crop_box`.
    Returns:
        a new dict: `image` (3, size, size), `mask` (1, size, size) float (when given), `keypoints` (K, 3)
        and `bbox` (4,) in normalized crop coordinates, mapped poses.
    """
    for key in ("image", "keypoints", "bbox"):
        if key not in sample:
            raise KeyError(f"sample: missing key {key!r} of the category schema (has: {', '.join(sample)})")
    image, kp = sample["image"], sample["keypoints"]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"Expected sample['image'] to be of shape (3, H, W), got {tuple(image.shape)}")
    if "mask" in sample and sample["mask"].shape != (1, *image.shape[1:]):
        raise ValueError(
            f"Expected sample['mask'] to be of shape (1, {image.shape[1]}, {image.shape[2]}), got "
            f"{tuple(sample['mask'].shape)}"
        )
    if kp.dim() != 2 or kp.shape[1] != 3:
        raise ValueError(f"Expected sample['keypoints'] to be of shape (K, 3), got {tuple(kp.shape)}")
    x0, y0, side = crop_box(sample["bbox"], pad_frac, jitter)
    out = dict(sample)
    out["image"] = crop_image(image, x0, y0, side, size).clamp(0, 1)
    if "mask" in sample:  # optional (PASCAL3D+ ships none)
        out["mask"] = crop_image(sample["mask"], x0, y0, side, size).clamp(0, 1)
    vis = kp[:, 2:] > 0
    xy = pixels_to_crop(kp[:, :2].to(torch.float32), x0, y0, side)
    out["keypoints"] = torch.cat([torch.where(vis, xy, torch.zeros_like(xy)), kp[:, 2:].to(xy.dtype)], -1)
    corners = pixels_to_crop(sample["bbox"].to(torch.float32).view(2, 2), x0, y0, side)
    out["bbox"] = corners.reshape(4)
    if "sfm_pose" in sample:
        pose = _check_vector(sample["sfm_pose"], "sample['sfm_pose']", 7).to(torch.float32).clone()
        pose[0] = pose[0] * 2.0 / side
        pose[1:3] = pixels_to_crop(pose[1:3], x0, y0, side)
        out["sfm_pose"] = pose
    if "true_scale" in sample or "true_translation" in sample:
        h, w = image.shape[1:]
        if h != w:
            raise ValueError(
                f"sample: true_scale / true_translation need a square image (normalized coordinates of equal "
                f"scale in x and y), got {h} x {w}"
            )
        if "true_scale" in sample:
            out["true_scale"] = _check_vector(sample["true_scale"], "sample['true_scale']", 1) * (w / side)
        if "true_translation" in sample:
            t = _check_vector(sample["true_translation"], "sample['true_translation']", 2)
            out["true_translation"] = pixels_to_crop(ndc_to_pixel(image_coords_to_ndc(t, w), w), x0, y0, side)
    return out


def _mirror_rotation(r: Tensor) -> Tensor:
    """M R M, M = diag(-1, 1, 1): negates the entries (0, 1), (0, 2), (1, 0), (2, 0)."""
    m = r.new_tensor(_MIRROR)
    return r * m[:, None] * m[None, :]


def mirror_sample(
    sample: Mapping[str, Any], keypoint_flip: Sequence[int] | Tensor, vertex_flip: Tensor | None = None
) -> dict[str, Any]:
    """Mirror a cropped category sample left-right (rules in the module docstring).

    Args:
        sample: a `crop_sample` output (normalized crop coordinates).
        keypoint_flip: (K,) the keypoint each keypoint becomes in the mirror (the reader's `KEYPOINT_FLIP`).
        vertex_flip: (V,) long vertex mirror permutation, needed when the sample has `true_verts`.
    Returns:
        a new dict.
    """
    kp = sample["keypoints"]
    flip = torch.as_tensor(keypoint_flip, dtype=torch.long)
    if flip.shape != (kp.shape[0],) or not torch.equal(flip.sort().values, torch.arange(kp.shape[0])):
        raise ValueError(
            f"keypoint_flip: expected a permutation of range({kp.shape[0]}) (the sample's K keypoints), got "
            f"{flip.tolist()}"
        )
    out = dict(sample)
    out["image"] = sample["image"].flip(-1)
    if "mask" in sample:
        out["mask"] = sample["mask"].flip(-1)
    sign = kp.new_tensor([-1.0, 1.0, 1.0])
    out["keypoints"] = (kp * sign)[flip]
    x1, y1, x2, y2 = sample["bbox"].unbind(-1)
    out["bbox"] = torch.stack([-x2, y1, -x1, y2], -1)
    if "sfm_pose" in sample:
        pose = sample["sfm_pose"].clone()
        pose[1] = -pose[1]
        pose[5:7] = -pose[5:7]  # quaternion (w, x, y, z) of M R M: (w, x, -y, -z)
        out["sfm_pose"] = pose
    if "true_rotation" in sample:
        out["true_rotation"] = _mirror_rotation(sample["true_rotation"])
    if "true_translation" in sample:
        out["true_translation"] = sample["true_translation"] * sample["true_translation"].new_tensor(
            [-1.0, 1.0]
        )
    if "true_verts" in sample:
        if vertex_flip is None:
            raise ValueError(
                "mirror_sample: the sample has 'true_verts'; mirroring it needs vertex_flip (V,)"
            )
        verts = sample["true_verts"]
        vf = torch.as_tensor(vertex_flip, dtype=torch.long)
        if vf.shape != (verts.shape[0],):
            raise ValueError(f"Expected vertex_flip of shape ({verts.shape[0]},), got {tuple(vf.shape)}")
        out["true_verts"] = (verts * verts.new_tensor(_MIRROR))[vf]
    return out
