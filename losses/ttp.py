"""TTP losses (Kokkinos & Kokkinos, NeurIPS 2021, "To The Point: Correspondence-driven monocular 3D category
reconstruction", Sec. 3.4), as pure functions, with the definitions and weights of the official code
(github.com/fkokkinos/to_the_point_3d_reconstruction; files cited per function: `nnutils/loss_utils.py`,
`main.py`, `utils/image.py`, `data/image_utils.py`). Where paper and code differ, the code is followed
(it trained the reported models) and the paper's form is named in the docstring.

Conventions (DESIGN.md): 2D points `u (B, N, 2)` are normalized image coordinates, x right, y down, each axis
in [-1, 1] over its own side. These are exactly `grid_sample`'s coordinates with `align_corners=False`
(geometry/cameras.py docstring), so images, masks and distance transforms are sampled at `u` directly with
`align_corners=False` (the official code samples with `align_corners=True` in its own pixel convention).
Masks `(B, 1, H, W)` (bool or float, > 0.5 is foreground), images `(B, 3, H, W)` in [0, 1].

Reductions: every per-sample loss takes `reduction="mean"` (scalar: mean over the batch, the official code's
reduction) or `"none"` (`(B,)`). Losses stay finite (no NaN value or gradient) for empty masks, zero
visibility and zero-length edges.

Equivariance pieces: `random_affine` draws the official augmentation (rotation +-40 deg, translation +-0.15 of
the side, scale [0.7, 1.2], main.py `equiv_*` flags), `warp_images` / `warp_points` apply one affine to images
and to points consistently, `flip_images` / `flip_points` / `mirror_camera` implement the horizontal mirror.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geometry.cameras import _check_shape, image_hw, ndc_to_image_coords, pixel_to_ndc
from geometry.mesh import mesh_edges
from geometry.mesh_losses import arap_energy
from geometry.pointcloud import knn_points
from geometry.rotations import so3_relative_angle

__all__ = [
    "TTP_WEIGHTS",
    "EQUIVARIANCE_RANGES",
    "LPIPS_TRUNK_FILES",
    "LPIPSTextureLoss",
    "arap_basis",
    "arap_deformed",
    "cycle_loss",
    "deformation_l2",
    "edge_length_consistency",
    "equivariance_loss",
    "flip_equivariance_loss",
    "flip_images",
    "flip_points",
    "flip_rotation_loss",
    "keypoint_reprojection",
    "mask_distance_transform",
    "mask_l1",
    "mask_pixel_points",
    "mirror_camera",
    "mirror_rotation",
    "points_in_mask",
    "random_affine",
    "silhouette_consistency",
    "silhouette_coverage",
    "texture_pixel_loss",
    "visibility_loss",
    "warp_images",
    "warp_points",
]

TTP_WEIGHTS: dict[str, float] = {
    # From the CUB training command of the official README (fkokkinos/to_the_point_3d_reconstruction,
    # README.md "Training on CUB"), flag in brackets; flags the command leaves out take main.py's defaults.
    "mask": 2.0,  # [--mask_loss_wt 2.]           mask_l1
    "keypoint": 0.0,  # [--kp_loss_wt 0.]         keypoint_reprojection (main.py default 30. with keypoints)
    "cycle": 3.0,  # [--rigid_wt 3.]             cycle_loss(u, proj, points_in_mask(proj, mask)) +
    "edge_length": 3.0,  # [--rigid_wt 3.]       edge_length_consistency: main.py's rigid_loss is their sum
    "silhouette_coverage": 3.0,  # [--bdt_reg_wt 3.]      silhouette_coverage (num_samples 500, main.py)
    "silhouette_consistency": 1.0,  # [--tex_dt_loss_wt 1.] silhouette_consistency
    "texture": 1.0,  # [--tex_loss_wt 1.]        LPIPSTextureLoss (alex), averaged with the mirrored view
    "visibility": 1.0,  # [--vis_loss_wt 1.]     visibility_loss
    "equivariance": 1.0,  # [--equiv_loss_wt 1.] equivariance_loss
    # [--flip_train, main.py default --equiv_cam_loss_wt 0.1, added inside the equivariance term, so
    # 0.1 * equiv_loss_wt]: flip_rotation_loss (the official cam_flip_loss also compares scale/translation).
    "flip_rotation": 0.1,
    "flip_points": 0.0,  # not a term of the official code (the brief's point flip term; off by default)
    "laplacian_deformed": 1.0,  # [--triangle_reg_wt 1.] geometry.mesh_laplacian_smoothing(verts, method="cot")
    "laplacian_basis": 1.0,  # [--tri_basis_wt 1.] mesh_laplacian_smoothing(template + basis_k, "uniform")
    "arap_deformed": 3.0,  # [--arap_reg_wt 3.]  arap_deformed
    "arap_basis": 0.1,  # [--arap_basis_loss_wt 0.1] arap_basis
    "deformation_l2": 5.0,  # [--def_loss_wt 5.] deformation_l2(verts - template)
    "coeffs_l2": 0.0,  # [--betas_loss_wt 0.]   (official: mean L2 norm of the coefficients)
}
"""Loss weights of the official CUB training command (no keypoints). The same command trains the first
epochs rigid (no deformation, `drop_deform` in main.py): deformation terms apply once deformation is on.
Other settings of that command: `--basis_k 16 --def_steps 4 --weighted_camera --flip_train`."""

EQUIVARIANCE_RANGES: dict[str, float | tuple[float, float]] = {
    # main.py flags equiv_degrees, equiv_t, equiv_s_min / equiv_s_max (kornia RandomAffine, padding "border")
    "degrees": 40.0,
    "translate": 0.15,
    "scale": (0.7, 1.2),
}

LPIPS_TRUNK_FILES: dict[str, tuple[str, str]] = {
    # torchvision's ImageNet checkpoints (torchvision.models.AlexNet_Weights / VGG16_Weights.IMAGENET1K_V1),
    # the trunks lpips builds with torchvision (lpips/pretrained_networks.py).
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}


# ----------------------------------------------------------------------------------------------- helpers
def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean() if per_sample.numel() > 0 else per_sample.sum()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _as_float(x: Tensor, like: Tensor) -> Tensor:
    return x.to(dtype=like.dtype, device=like.device)


def _binary(mask: Tensor) -> Tensor:
    return mask > 0.5 if mask.dtype != torch.bool else mask


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt with value and gradient 0 at x = 0 (instead of an infinite gradient)."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den == 0 (num is 0 there too for non-negative weighted sums)."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def _check_points(name: str, u: Tensor, sizes: dict[str, int]) -> None:
    _check_shape(u, name, ("B", "N", 2), sizes)


def _sample_map(x: Tensor, u: Tensor, mode: str = "bilinear", padding_mode: str = "border") -> Tensor:
    """x (B, C, H, W) at points u (B, N, 2) -> (B, C, N)."""
    out = F.grid_sample(x, u[:, :, None, :], mode=mode, padding_mode=padding_mode, align_corners=False)
    return out[..., 0]


# ------------------------------------------------------------------------------------------ silhouettes
def mask_distance_transform(mask: Tensor) -> Tensor:
    """Euclidean distance transform of the background, divided by max(H, W) (data-side, CPU scipy).

    As `compute_dt` of the official code (data/image_utils.py: `distance_transform_edt(1 - mask) /
    max(mask.shape)`): 0 on the mask, the distance in pixels to the nearest mask pixel centre outside it.
    A sample whose mask is empty gets all zeros (no silhouette information, no penalty).

    Args:
        mask: (B, 1, H, W) bool or float (> 0.5 is foreground).
    Returns:
        (B, 1, H, W) float32 (the mask's dtype if floating), on the mask's device.
    """
    from scipy.ndimage import distance_transform_edt

    _check_shape(mask, "mask", ("B", 1, "H", "W"))
    B, _, H, W = mask.shape
    m = _binary(mask).detach().cpu().numpy()[:, 0]  # (B, H, W) bool
    out = np.zeros((B, 1, H, W), dtype=np.float64)
    for b in range(B):  # scipy is per image; this is data preprocessing, not a training hot path
        if m[b].any():
            out[b, 0] = distance_transform_edt(~m[b]) / max(H, W)
    dtype = mask.dtype if mask.dtype.is_floating_point else torch.float32
    return torch.from_numpy(out).to(dtype=dtype, device=mask.device)


def silhouette_consistency(u: Tensor, mask_dt: Tensor, reduction: str = "mean") -> Tensor:
    """Points outside the silhouette, penalized by their distance to it (paper Sec. 3.4, first Chamfer term).

    `mask_dt` (from `mask_distance_transform`) is sampled bilinearly at u with border padding and averaged
    over the N points (official `texture_dt_loss_v`, nnutils/loss_utils.py). A point on the mask costs 0, a
    point at the centre of a pixel k pixels from the mask costs k / max(H, W).

    Args:
        u: (B, N, 2) normalized image coordinates; mask_dt: (B, 1, H, W).
    Returns:
        scalar (reduction "mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_points("u", u, sizes)
    _check_shape(mask_dt, "mask_dt", ("B", 1, "H", "W"), sizes)
    _check_reduction(reduction)
    d = _sample_map(_as_float(mask_dt, u), u)[:, 0]  # (B, N)
    per = d.sum(1) / max(u.shape[1], 1)
    return _reduce(per, reduction)


def mask_pixel_points(
    mask: Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Up to `num_samples` random foreground pixel centres of each mask, as normalized image coordinates.

    Sampled without replacement; a mask with fewer foreground pixels than num_samples gives all of them
    (the official `compute_inner_points`, utils/image.py, raises there). Batched (random keys + topk).

    Args:
        mask: (B, 1, H, W); num_samples: None = every pixel; generator: on mask's device.
        dtype: of the returned points.
    Returns:
        points (B, S, 2) padded with zeros, lengths (B,) int64 (number of real points, valid ones first).
    """
    _check_shape(mask, "mask", ("B", 1, "H", "W"))
    if num_samples is not None and num_samples < 0:
        raise ValueError(f"num_samples must be >= 0 or None, got {num_samples}")
    B, _, H, W = mask.shape
    fg = _binary(mask).reshape(B, H * W)
    S = H * W if num_samples is None else min(int(num_samples), H * W)
    keys = torch.rand(B, H * W, generator=generator, device=mask.device)
    keys = torch.where(fg, keys, torch.full_like(keys, 2.0))  # background sorts last
    k, idx = keys.topk(S, dim=1, largest=False, sorted=True)  # (B, S)
    lengths = (k < 1.5).sum(1)
    uv = torch.stack([idx % W, idx // W], dim=-1).to(dtype)  # (col, row) pixel centres
    pts = ndc_to_image_coords(pixel_to_ndc(uv, (H, W)), (H, W))
    pts = torch.where((k < 1.5)[..., None], pts, torch.zeros_like(pts))
    return pts, lengths


def silhouette_coverage(
    u: Tensor,
    mask: Tensor,
    num_samples: int | None = 500,
    squared: bool = True,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Mask pixels to their nearest point u (paper Sec. 3.4, second Chamfer term, "silhouette coverage").

    `num_samples` foreground pixel centres p are drawn per mask (all of them if the mask has fewer) and
    `mean_p min_i d(p, u_i)` is taken, d the squared distance as the official `bds_loss` (cdist ** 2,
    nnutils/loss_utils.py; 500 samples, main.py), or the Euclidean distance of the paper's formula with
    squared=False. Nearest neighbours by `geometry.knn_points`.

    Empty masks: the sample's loss is 0 and reduction "mean" averages over the samples with a non-empty
    mask only (0 when every mask is empty).

    Args:
        u: (B, N, 2), N >= 1; mask: (B, 1, H, W); generator: seeds the pixel draw (on mask's device).
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_points("u", u, sizes)
    _check_shape(mask, "mask", ("B", 1, "H", "W"), sizes)
    _check_reduction(reduction)
    if u.shape[1] == 0:
        raise ValueError("Expected u to have at least one point (N >= 1), got shape (B, 0, 2)")
    pts, lengths = mask_pixel_points(mask, num_samples, generator, dtype=u.dtype)
    if pts.shape[1] == 0:
        per = u.sum((1, 2)) * 0.0
    else:
        d = knn_points(pts, u, lengths1=lengths, K=1).dists[..., 0]  # (B, S) squared, 0 on padding
        d = d if squared else _safe_sqrt(d)
        per = d.sum(1) / lengths.clamp(min=1).to(d.dtype)
    if reduction == "none":
        return per
    nonempty = (lengths > 0).to(per.dtype)
    return (per * nonempty).sum() / nonempty.sum().clamp(min=1.0)


def mask_l1(soft_silhouette: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
    """Region similarity `|S - f_render|` (paper Sec. 3.4), mean over pixels (official L1Loss, main.py).

    Args:
        soft_silhouette: (B, 1, H, W) rendered silhouette in [0, 1]; mask: (B, 1, H, W).
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_shape(soft_silhouette, "soft_silhouette", ("B", 1, "H", "W"), sizes)
    _check_shape(mask, "mask", ("B", 1, "H", "W"), sizes)
    _check_reduction(reduction)
    per = (soft_silhouette - _as_float(mask, soft_silhouette)).abs().flatten(1).mean(1)
    return _reduce(per, reduction)


# -------------------------------------------------------------------------------------- cycle, visibility
def points_in_mask(points: Tensor, mask: Tensor) -> Tensor:
    """1 where a point falls on a foreground pixel (nearest pixel), else 0; outside the image 0.

    The weights of the official cycle loss (`cycle_loss(..., mask)`, nnutils/loss_utils.py).

    Args:
        points: (B, N, 2); mask: (B, 1, H, W).
    Returns:
        (B, N) float (points' dtype), no gradient.
    """
    sizes: dict[str, int] = {}
    _check_points("points", points, sizes)
    _check_shape(mask, "mask", ("B", 1, "H", "W"), sizes)
    m = _binary(mask).to(points.dtype)
    inside = _sample_map(m, points.detach(), mode="nearest", padding_mode="zeros")[:, 0]
    return (inside > 0.5).to(points.dtype)


def cycle_loss(
    u: Tensor,
    projected_verts: Tensor,
    visibility: Tensor | None = None,
    detach_projection: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Cycle loss `sum_i ||u_i - pi(V)_i||^2` between regressed points and the projected fitted mesh.

    Per sample: the mean over the N points of the squared distance, or with visibility weights w the
    weighted mean `sum_i w_i d_i / sum_i w_i` (0 when all w are 0); the weights are constants (detached).
    The official code (`cycle_loss`, nnutils/loss_utils.py; main.py `rigid_loss`) weights by
    `points_in_mask(projected_verts, mask)` and detaches the projection (the gradient trains u only):
    detach_projection=True.

    Args:
        u: (B, N, 2); projected_verts: (B, N, 2); visibility: (B, N) or None.
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_points("u", u, sizes)
    _check_points("projected_verts", projected_verts, sizes)
    _check_reduction(reduction)
    p = projected_verts.detach() if detach_projection else projected_verts
    d2 = (u - p).pow(2).sum(-1)  # (B, N)
    if visibility is None:
        per = d2.sum(1) / max(u.shape[1], 1)
    else:
        _check_shape(visibility, "visibility", ("B", "N"), sizes)
        w = _as_float(visibility.detach(), d2)
        per = _safe_div((w * d2).sum(1), w.sum(1))
    return _reduce(per, reduction)


def edge_length_consistency(
    u: Tensor, projected_verts: Tensor, faces: Tensor, detach_projection: bool = True, reduction: str = "mean"
) -> Tensor:
    """Squared difference of mesh edge lengths between the point mesh u and the projected mesh.

    The second half of the official `rigid_loss` (`locally_rigid_fn(mesh_3d_proj, mesh_flow)`, main.py and
    nnutils/loss_utils.py): per sample `mean_e (|u_a - u_b| - |p_a - p_b|)^2` over the unique edges e = (a, b)
    of faces (geometry.mesh_edges); the projection is detached there.

    Args:
        u: (B, N, 2); projected_verts: (B, N, 2); faces: (F, 3) over the N points.
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_points("u", u, sizes)
    _check_points("projected_verts", projected_verts, sizes)
    _check_shape(faces, "faces", ("F", 3))
    _check_reduction(reduction)
    p = projected_verts.detach() if detach_projection else projected_verts
    e = mesh_edges(faces.long())  # (E, 2)
    if e.shape[0] == 0:
        return _reduce(u.sum((1, 2)) * 0.0, reduction)
    lu = _safe_sqrt((u[:, e[:, 0]] - u[:, e[:, 1]]).pow(2).sum(-1))  # (B, E)
    lp = _safe_sqrt((p[:, e[:, 0]] - p[:, e[:, 1]]).pow(2).sum(-1))
    per = (lu - lp).pow(2).mean(1)
    return _reduce(per, reduction)


def visibility_loss(
    v: Tensor, zbuffer_visibility: Tensor, kind: str = "mse", reduction: str = "mean"
) -> Tensor:
    """Predicted visibilities v against the rendered z-buffer's vertex visibility (paper L_vis).

    kind "mse": mean squared error, the official code (`vis_loss`: `F.mse_loss(vis_pred, visible_vertices)`,
    nnutils/loss_utils.py; its target is "vertex of a face that wins a pixel", geometry.vertex_visibility
    method="faces"); "l1": the paper's `sum_i |v_i - v_i^gt|` as a mean; "bce": binary cross-entropy.
    The target is a constant (detached). Mean over the N points.

    Args:
        v: (B, N) in [0, 1]; zbuffer_visibility: (B, N) bool or float.
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_shape(v, "v", ("B", "N"), sizes)
    _check_shape(zbuffer_visibility, "zbuffer_visibility", ("B", "N"), sizes)
    _check_reduction(reduction)
    t = _as_float(zbuffer_visibility.detach(), v)
    if kind == "mse":
        err = (v - t).pow(2)
    elif kind == "l1":
        err = (v - t).abs()
    elif kind == "bce":
        err = F.binary_cross_entropy(v, t, reduction="none")  # log clamped at -100 by torch: finite
    else:
        raise ValueError(f"kind must be 'mse', 'l1' or 'bce', got {kind!r}")
    per = err.sum(1) / max(v.shape[1], 1)
    return _reduce(per, reduction)


def keypoint_reprojection(
    projected_kp: Tensor, kp: Tensor, visibility: Tensor, reduction: str = "mean"
) -> Tensor:
    """Optional keypoint loss `sum_i ||k_i - pi(K_i V)||_1` over annotated keypoints (paper Sec. 3.4).

    As the official `kp_l1_loss` (nnutils/loss_utils.py): `|vis * pred - vis * gt|` averaged over all K
    keypoints and both coordinates (so the invisible ones count as zeros in the mean).

    Args:
        projected_kp: (B, K, 2); kp: (B, K, 2) normalized image coordinates; visibility: (B, K) (> 0 visible).
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_shape(projected_kp, "projected_kp", ("B", "K", 2), sizes)
    _check_shape(kp, "kp", ("B", "K", 2), sizes)
    _check_shape(visibility, "visibility", ("B", "K"), sizes)
    _check_reduction(reduction)
    vis = (visibility.detach() > 0).to(projected_kp.dtype)[..., None]
    err = (vis * (projected_kp - _as_float(kp, projected_kp))).abs()
    per = err.flatten(1).sum(1) / max(err[0].numel(), 1)
    return _reduce(per, reduction)


# ------------------------------------------------------------------------------------------ equivariance
def random_affine(
    batch_size: int,
    degrees: float = 40.0,
    translate: float = 0.15,
    scale: tuple[float, float] = (0.7, 1.2),
    image_size: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random affine warps of normalized image coordinates, `u' = A[:, :, :2] u + A[:, :, 2]`.

    As kornia's RandomAffine of the official code (main.py `equiv_augm`, ranges EQUIVARIANCE_RANGES): a
    rotation by an angle uniform in [-degrees, degrees] (clockwise on screen for positive angles, y down) and
    an isotropic scale uniform in `scale`, both about the image centre and in pixel units (so non-square
    images are not sheared), then a translation uniform in [-translate, translate] times each image side
    (2 * translate in normalized units).

    Args:
        batch_size: B; image_size: (H, W) or S (None = square).
        generator: seeded generator on `device`.
    Returns:
        (B, 2, 3) affine matrices.
    """
    h, w = (1, 1) if image_size is None else image_hw(image_size)
    r = torch.rand(batch_size, 4, generator=generator, dtype=dtype, device=device)
    angle = (2.0 * r[:, 0] - 1.0) * math.radians(degrees)
    s = scale[0] + (scale[1] - scale[0]) * r[:, 1]
    t = (2.0 * r[:, 2:] - 1.0) * (2.0 * translate)  # (B, 2)
    c, sn = torch.cos(angle) * s, torch.sin(angle) * s
    # rotation in pixel units, D R D^-1 with D = diag(2 / W, 2 / H)
    row0 = torch.stack([c, -sn * (h / w), t[:, 0]], dim=-1)
    row1 = torch.stack([sn * (w / h), c, t[:, 1]], dim=-1)
    return torch.stack([row0, row1], dim=1)


def _check_affine(affine: Tensor, sizes: dict[str, int]) -> None:
    _check_shape(affine, "affine", ("B", 2, 3), sizes)


def warp_points(u: Tensor, affine: Tensor) -> Tensor:
    """Apply affine (B, 2, 3) to points u (B, N, 2) -> (B, N, 2)."""
    sizes: dict[str, int] = {}
    _check_points("u", u, sizes)
    _check_affine(affine, sizes)
    A = _as_float(affine, u)
    return u @ A[:, :, :2].transpose(1, 2) + A[:, None, :, 2]


def warp_images(
    images: Tensor, affine: Tensor, mode: str = "bilinear", padding_mode: str = "border"
) -> Tensor:
    """Warp images so that the content at u moves to `warp_points(u, affine)`.

    Each output pixel samples the input at the inverse affine of its centre (affine_grid / grid_sample with
    align_corners=False, the frame of u); padding "border" as the official kornia augmentation (padding_mode=1).

    Args:
        images: (B, C, H, W); affine: (B, 2, 3).
    Returns:
        (B, C, H, W)
    """
    sizes: dict[str, int] = {}
    _check_shape(images, "images", ("B", "C", "H", "W"), sizes)
    _check_affine(affine, sizes)
    A = _as_float(affine, images)
    L_inv = torch.linalg.inv(A[:, :, :2])
    theta = torch.cat([L_inv, -(L_inv @ A[:, :, 2:])], dim=2)  # output -> input coordinates
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def equivariance_loss(
    u_warped_pred: Tensor,
    u_pred: Tensor,
    affine: Tensor,
    detach_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Points predicted on the warped image against the warped predictions, `u' - T_s(u)` (paper L_eqv).

    Mean squared error over the N points and 2 coordinates with the target `T_s(u)` detached, as the official
    code (main.py: `F.mse_loss(tex_flow_augm, tex_flow_trans.detach())`); the paper writes an L1 sum.

    Args:
        u_warped_pred: (B, N, 2) predictions for `warp_images(image, affine)`; u_pred: (B, N, 2) for image;
        affine: (B, 2, 3).
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_points("u_warped_pred", u_warped_pred, sizes)
    _check_points("u_pred", u_pred, sizes)
    _check_affine(affine, sizes)
    _check_reduction(reduction)
    target = warp_points(u_pred, affine)
    target = target.detach() if detach_target else target
    per = (u_warped_pred - target).pow(2).flatten(1).sum(1) / max(2 * u_pred.shape[1], 1)
    return _reduce(per, reduction)


def flip_images(images: Tensor) -> Tensor:
    """Horizontal mirror of images or masks (B, C, H, W) -> (B, C, H, W) (official `mirror_sample`)."""
    _check_shape(images, "images", ("B", "C", "H", "W"))
    return torch.flip(images, dims=(3,))


def _check_perm(perm: Tensor, n: int) -> None:
    _check_shape(perm, "perm", (n,))
    if perm.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"Expected perm to be an integer tensor of shape ({n},), got dtype {perm.dtype}")


def flip_points(u: Tensor, perm: Tensor | None = None) -> Tensor:
    """Where the points land in the mirrored image: `u'_k = (-x, y)` of `u_{perm[k]}`.

    Pixel centre column j maps to W - 1 - j, which is x -> -x in normalized coordinates. perm (N,) is the
    template's bilateral symmetry, perm[k] the vertex mirror-symmetric to k (an involution): the mirrored image
    shows vertex k where the original showed vertex perm[k]. None = no permutation.

    Args:
        u: (B, N, 2); perm: (N,) int64 or None.
    Returns:
        (B, N, 2)
    """
    _check_points("u", u, {})
    if perm is not None:
        _check_perm(perm, u.shape[1])
        u = u[:, perm.to(u.device).long()]
    return u * u.new_tensor([-1.0, 1.0])


def flip_equivariance_loss(
    u_flip_pred: Tensor, u_pred: Tensor, perm: Tensor, detach_target: bool = True, reduction: str = "mean"
) -> Tensor:
    """Points predicted on the mirrored image against the flipped-and-permuted predictions (MSE).

    Not a separate term of the official code (its flip term compares cameras, see flip_rotation_loss); the
    same form as equivariance_loss with `T_v(u) = flip_points(u, perm)`, target detached.

    Args:
        u_flip_pred: (B, N, 2) predictions for `flip_images(image)`; u_pred: (B, N, 2); perm: (N,).
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_points("u_flip_pred", u_flip_pred, sizes)
    _check_points("u_pred", u_pred, sizes)
    _check_reduction(reduction)
    target = flip_points(u_pred, perm)
    target = target.detach() if detach_target else target
    per = (u_flip_pred - target).pow(2).flatten(1).sum(1) / max(2 * u_pred.shape[1], 1)
    return _reduce(per, reduction)


def mirror_rotation(R: Tensor, sym_axis: int = 0) -> Tensor:
    """The rotation that sees the mirrored image of a bilaterally symmetric object: `R' = S R M`.

    For geometry.WeakPerspectiveCameras (`x_img = s (X @ R)[:2] + t`, row vectors), M = diag(-1, 1, 1)
    negates the image x column and S reflects the template across its symmetry plane `X[sym_axis] = 0`
    (det S R M = +1). With sym_axis = 0, R' = M R M: the official `mirror_camera` (main.py: quaternion
    (w, x, y, z) -> (w, x, -y, -z)).

    Args:
        R: (B, 3, 3); sym_axis: 0, 1 or 2.
    Returns:
        (B, 3, 3)
    """
    _check_shape(R, "R", ("B", 3, 3))
    if sym_axis not in (0, 1, 2):
        raise ValueError(f"sym_axis must be 0, 1 or 2, got {sym_axis!r}")
    col = R.new_tensor([-1.0, 1.0, 1.0])
    row = torch.ones(3, dtype=R.dtype, device=R.device)
    row[sym_axis] = -1.0
    return R * row[:, None] * col[None, :]


def mirror_camera(R: Tensor, trans: Tensor, sym_axis: int = 0) -> tuple[Tensor, Tensor]:
    """Weak-perspective camera of the mirrored image: `(mirror_rotation(R), (-t_x, t_y))`, scale unchanged.

    Projecting template vertex k with it gives `flip_points(project(verts), perm)[:, k]`.

    Args:
        R: (B, 3, 3); trans: (B, 2).
    Returns:
        R' (B, 3, 3), trans' (B, 2)
    """
    sizes: dict[str, int] = {}
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(trans, "trans", ("B", 2), sizes)
    return mirror_rotation(R, sym_axis), trans * trans.new_tensor([-1.0, 1.0])


def flip_rotation_loss(
    R_flip_pred: Tensor,
    R_pred: Tensor,
    sym_axis: int = 0,
    cos_bound: float = 1e-4,
    reduction: str = "mean",
) -> Tensor:
    """Rotation term of the paper's L_eqv: `arccos((Tr(T_v(R) R'^T) - 1) / 2)`, the geodesic angle.

    T_v(R) = mirror_rotation(R) is the reflected rotation of the original image and R' the rotation estimated
    for the mirrored image (the paper writes Tr(T_v(R) R'); the angle between rotations uses R'^T). Angles by
    geometry.so3_relative_angle (acos linearly extrapolated within cos_bound of +-1: finite gradients, a
    bias of ~sqrt(2 cos_bound) at 0). The official `cam_flip_loss` (nnutils/loss_utils.py) also averages an
    MSE of the scale/offset and the translation error; here only the paper's rotation term.

    Args:
        R_flip_pred: (B, 3, 3) for the mirrored image; R_pred: (B, 3, 3) for the image.
    Returns:
        scalar ("mean") or (B,) ("none"), radians.
    """
    sizes: dict[str, int] = {}
    _check_shape(R_flip_pred, "R_flip_pred", ("B", 3, 3), sizes)
    _check_shape(R_pred, "R_pred", ("B", 3, 3), sizes)
    _check_reduction(reduction)
    per = so3_relative_angle(mirror_rotation(R_pred, sym_axis), R_flip_pred, cos_bound=cos_bound)
    return _reduce(per, reduction)


# ---------------------------------------------------------------------------------------- shape priors
def _arap_scale(energy: Tensor, V: int) -> Tensor:
    # Official `arap_loss` (nnutils/loss_utils.py): squared residuals, summed over the neighbours of each
    # vertex and averaged over all vertices (of all meshes), with w_ij = cot a + cot b (`laplacian_cot`),
    # twice geometry.arap_energy's Sorkine-Alexa (cot a + cot b) / 2: factor 2 so the official weights apply.
    # (The official code also clamps negative cotangents to 0; geometry.arap_energy does not.)
    return 2.0 * energy / max(V, 1)


def arap_basis(template: Tensor, basis: Tensor, faces: Tensor, weights: str = "cot") -> Tensor:
    """ARAP of each basis component, template -> template + basis_k, averaged over the K components.

    Paper Sec. 3.4 ("the same loss is applied on each basis component"); official `arap_basis_loss`
    (main.py), normalized as `arap_deformed`.

    Args:
        template: (V, 3); basis: (K, V, 3) vertex offsets of each component; faces: (F, 3).
    Returns:
        scalar.
    """
    sizes: dict[str, int] = {}
    _check_shape(template, "template", ("V", 3), sizes)
    _check_shape(basis, "basis", ("K", "V", 3), sizes)
    _check_shape(faces, "faces", ("F", 3))
    if basis.shape[0] == 0:
        return basis.sum() * 0.0
    rest = template[None].expand_as(basis)
    energy = arap_energy(rest, rest + basis, faces, weights=weights)  # (K,)
    return _arap_scale(energy, template.shape[0]).mean()


def arap_deformed(
    template: Tensor, verts: Tensor, faces: Tensor, weights: str = "cot", reduction: str = "mean"
) -> Tensor:
    """ARAP energy of the deformed mesh against the template (paper L_arap, geometry.arap_energy).

    Per sample `2 E / V`, E the Sorkine-Alexa energy with cot weights of the template; i.e. the official
    `arap_loss` (squared residuals, w_ij = cot a + cot b, mean over vertices).

    Args:
        template: (V, 3) or (B, V, 3); verts: (B, V, 3); faces: (F, 3).
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    sizes: dict[str, int] = {}
    _check_shape(verts, "verts", ("B", "V", 3), sizes)
    if torch.is_tensor(template) and template.dim() == 2:
        _check_shape(template, "template", ("V", 3), sizes)
        template = template[None].expand_as(verts)
    else:
        _check_shape(template, "template", ("B", "V", 3), sizes)
    _check_shape(faces, "faces", ("F", 3))
    _check_reduction(reduction)
    per = _arap_scale(arap_energy(template, verts, faces, weights=weights), verts.shape[1])
    return _reduce(per, reduction)


def deformation_l2(x: Tensor, reduction: str = "mean") -> Tensor:
    """L2 penalty on deformations: per sample the mean of x^2 over all but the batch dimension.

    With x = verts - template (B, V, 3) this is the official `deform_loss` (main.py:
    `(pred_v - mean_v).pow(2).mean()`); it also takes basis coefficients (B, K).

    Args:
        x: (B, ...) offsets or coefficients.
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    if not torch.is_tensor(x) or x.dim() < 2:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"Expected x to be of shape (B, ...) with at least 2 dims, got {shape}")
    _check_reduction(reduction)
    flat = x.flatten(1)
    per = flat.pow(2).sum(1) / max(flat.shape[1], 1)
    return _reduce(per, reduction)


# --------------------------------------------------------------------------------------------- texture
def _check_texture_inputs(render: Tensor, image: Tensor, mask: Tensor, render_mirror: Tensor | None) -> None:
    sizes: dict[str, int] = {}
    _check_shape(render, "render", ("B", 3, "H", "W"), sizes)
    _check_shape(image, "image", ("B", 3, "H", "W"), sizes)
    _check_shape(mask, "mask", ("B", 1, "H", "W"), sizes)
    if render_mirror is not None:
        _check_shape(render_mirror, "render_mirror", ("B", 3, "H", "W"), sizes)


def _texture_pairs(render: Tensor, image: Tensor, mask: Tensor, render_mirror: Tensor | None):
    """[(render * S, image * S)] plus the mirrored view's pair against the flipped image and mask."""
    m = _as_float(mask, render)
    img = _as_float(image, render)
    pairs = [(render * m, img * m)]
    if render_mirror is not None:
        mf, imf = flip_images(m), flip_images(img)
        pairs.append((render_mirror * mf, imf * mf))
    return pairs


def texture_pixel_loss(
    render: Tensor,
    image: Tensor,
    mask: Tensor,
    render_mirror: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Pixel-space L1 texture loss `|I~ * S - I * S|`, mean over channels and pixels (paper L_pixel with an L1
    dist instead of LPIPS).

    With render_mirror (the textured mesh rendered from the mirrored viewpoint, `mirror_camera`), the loss is
    the average of the two views, the mirrored one against the horizontally flipped image and mask (paper
    Sec. 3.4; main.py `0.5 * texture_loss(...) + 0.5 * texture_loss(..._flip)`).

    Args:
        render, image: (B, 3, H, W); mask: (B, 1, H, W); render_mirror: (B, 3, H, W) or None.
    Returns:
        scalar ("mean") or (B,) ("none").
    """
    _check_texture_inputs(render, image, mask, render_mirror)
    _check_reduction(reduction)
    terms = [(a - b).abs().flatten(1).mean(1) for a, b in _texture_pairs(render, image, mask, render_mirror)]
    per = sum(terms) / len(terms)
    return _reduce(per, reduction)


def _load_lpips_trunk(net: nn.Module, state: dict, path: Path) -> None:
    """Load a torchvision `features.*` state dict into lpips' `slice{k}.{i}.*` trunk (strict)."""
    mapped = {}
    for key in net.state_dict():
        src = "features." + key.split(".", 1)[1]  # slice3.6.weight -> features.6.weight
        if src not in state:
            raise KeyError(f"LPIPS trunk file {path} has no key {src!r} (expected torchvision's state dict)")
        mapped[key] = state[src]
    try:
        net.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise ValueError(f"LPIPS trunk file {path} does not fit the trunk: {err}") from None


class LPIPSTextureLoss(nn.Module):
    """Perceptual texture loss LPIPS(I~ * S, I * S) (paper Sec. 3.4, Zhang et al. 2018), averaged with the
    mirrored view.

    As the official `PerceptualTextureLoss` (nnutils/loss_utils.py): `lpips.LPIPS(net='alex', lpips=True,
    spatial=False)` on the masked images mapped to [-1, 1]. The linear layers are lpips' calibrated weights
    (shipped in the lpips package); the trunk's ImageNet weights are loaded from a local torchvision
    checkpoint, never downloaded and never left random: `trunk_path`, else
    `torch.hub.get_dir()/checkpoints/<LPIPS_TRUNK_FILES[net][0]>`; FileNotFoundError if absent.
    The LPIPS network is frozen and stays in eval mode (its linear layers have dropout) whatever `train()` says.

    Args:
        net: "alex" (official) or "vgg".
        trunk_path: local torchvision checkpoint of the trunk, or None for the torch hub cache.
        version: LPIPS version ("0.1").
    forward(render, image, mask, render_mirror=None, reduction="mean"): render, image (B, 3, H, W) in [0, 1],
        mask (B, 1, H, W), render_mirror (B, 3, H, W) or None -> scalar or (B,).
    """

    def __init__(self, net: str = "alex", trunk_path: str | Path | None = None, version: str = "0.1"):
        super().__init__()
        if net not in LPIPS_TRUNK_FILES:
            raise ValueError(f"net must be one of {sorted(LPIPS_TRUNK_FILES)}, got {net!r}")
        import lpips

        fname, url = LPIPS_TRUNK_FILES[net]
        path = (
            Path(trunk_path) if trunk_path is not None else Path(torch.hub.get_dir()) / "checkpoints" / fname
        )
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS trunk weights not found at {path}: put torchvision's {fname} (download {url}) there, "
                f"or pass trunk_path=<local copy of {fname}>"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        with warnings.catch_warnings():  # torchvision's deprecation of `pretrained=False` inside lpips
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(
                net=net, version=version, lpips=True, spatial=False, pnet_rand=True, verbose=False
            )
        _load_lpips_trunk(model.net, state, path)
        self.trunk_path = path
        self.lpips = model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> LPIPSTextureLoss:
        super().train(mode)
        self.lpips.eval()
        return self

    def forward(
        self,
        render: Tensor,
        image: Tensor,
        mask: Tensor,
        render_mirror: Tensor | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        _check_texture_inputs(render, image, mask, render_mirror)
        _check_reduction(reduction)
        terms = [
            self.lpips(2.0 * a - 1.0, 2.0 * b - 1.0).reshape(-1)
            for a, b in _texture_pairs(render, image, mask, render_mirror)
        ]
        per = sum(terms) / len(terms)
        return _reduce(per, reduction)
