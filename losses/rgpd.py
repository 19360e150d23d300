"""Losses of "Robust Geometry-Preserving Depth Estimation Using Differentiable Rendering" (Zhang et al.,
ICCV 2023; shared/papers/rgpd-robust-geometry-preserving-depth.md), as pure functions on `(B, 1, H, W)`
depth maps, `(B, C, H, W)` images, bool masks `(B, 1, H, W)` and intrinsics `(B, 3, 3)`.

No official code exists: the paper is the specification, and every choice where it is silent is marked
"choice" with the section it fills in.

    ssi_normalize, ssi_mad_loss          Sec. 3, Eq. 1-3: median / mean-absolute-deviation normalization, L1
    min_z, novel_view_transform,     Sec. 4.1, Eq. 5-6: rotation by theta about the vertical axis through
      sample_novel_views               T_center = [0, 0, min_z(P)], shift t along the optical (z) axis
    invert_transform                 Eq. 10-11 (the inverse rigid transform)
    render_novel                     Eq. 6 / 9: z-buffered point splatting (`geometry.render_depth_novel_view`)
    consistency_losses               Sec. 4.1-4.2, Eq. 7-12: render, re-predict, align, render back, L^C
    multi_focal_consistency          Eq. 13-14: the minimum of L^C over horizontal FOVs {50, 60, 70} deg
    rgpd_total_loss                       Eq. 15: L = L^SSI + beta L^C_{f*}, beta = 0.1 (Sec. 5)
    render_fov                       Sec. 5.1 "RenderFOV": test-time FOV selection by mean consistency
    point_cloud_rmse                 Sec. 5 / Table 2: RMSE between pixel-corresponding 3D points

Frames: the OpenCV camera frame of `geometry.depth` (x right, y down, z forward; pixel (i, j) at
(u, v) = (j, i)); rigid transforms are PyTorch3D row-vector ones, `X' = X @ R + t`, as
`geometry.render_depth_novel_view` takes them. The paper writes column vectors, `X' = R_p X + T`; the
row-vector form of a paper transform is `R = R_p^T`, `t = T^T`.

Batch order: the functions that evaluate several focal lengths or views at once call `net_fn` ONCE on all
rendered images, flattened FOV-major: `multi_focal_consistency` index `f * B + b`, `render_fov` index
`(f * V + v) * B + b` with view `v = i_theta * len(ts) + i_t`.

Bad input: a non-positive or non-finite focal length (in K) or a FOV outside (0, 180) degrees raises
ValueError naming the argument; an empty or constant map, a novel view that covers no pixel, or a
re-prediction without structure gives a zero loss for that sample (no NaN values or gradients) and is
counted in the returned `valid` / `num_skipped`.

Gradients: depth consistency is differentiable w.r.t. the predicted depth (through the z-buffer depth of
the splatted points) and w.r.t. the network's re-prediction of the rendered image. The z-buffer selection
is hard (`render_depth_novel_view`, one point per pixel), so the rendered image I_pred is differentiable
w.r.t. the colours it carries but not w.r.t. the point positions: unlike the paper's soft SynSin renderer
[34], the image consistency term passes no gradient to the depth (it still ranks FOVs in `render_fov`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from geometry.cameras import _check_shape, intrinsics_from_fov
from geometry.depth import unproject_depth
from geometry.depth_align import align_lstsq_scale_shift, check_map, check_map_and_mask, masked_median
from geometry.point_raster import NovelView, render_depth_novel_view

__all__ = [
    "CRITERIA",
    "DEFAULT_FOV",
    "RENDER_FOVS",
    "RENDER_THETAS",
    "RENDER_TS",
    "TRAIN_FOVS",
    "ConsistencyLoss",
    "MultiFocalConsistency",
    "PointCloudRMSE",
    "RenderFOVResult",
    "RigidTransform",
    "SSILoss",
    "SSINormalization",
    "consistency_losses",
    "invert_transform",
    "min_z",
    "multi_focal_consistency",
    "novel_view_transform",
    "point_cloud_rmse",
    "render_fov",
    "render_novel",
    "sample_novel_views",
    "ssi_mad_loss",
    "ssi_normalize",
    "rgpd_total_loss",
]

NetFn = Callable[[torch.Tensor], torch.Tensor]
"""A depth network: images `(N, C, H, W)` -> depth up to scale and shift `(N, 1, H, W)` (an affine
function of z-depth; a GP2-style log-disparity network is passed as `lambda x: net(x).neg().exp()`)."""

TRAIN_FOVS = (50.0, 60.0, 70.0)  # Sec. 5 "Implementation details": the focal set F of the MFL loss
RENDER_FOVS = (40.0, 50.0, 60.0, 70.0, 80.0)  # Sec. 5.1 RenderFOV candidates
RENDER_TS = (-0.5, 0.5)  # Sec. 5.1 RenderFOV camera shifts, multiples of min_z(P)
RENDER_THETAS = (-20.0, 20.0)  # Sec. 5.1 RenderFOV rotation angles, degrees
DEFAULT_FOV = 60.0  # Sec. 5.1: LeReS's initial FOV; RenderFOV's fallback when no candidate can be scored
CRITERIA = ("depth", "image", "total")


class SSINormalization(NamedTuple):
    """Output of `ssi_normalize`: normalized map `(B, 1, H, W)` (0 outside the mask and for invalid samples),
    median mu `(B,)`, mean absolute deviation sigma `(B,)`, valid `(B,)` bool (>= 1 pixel, sigma > 0)."""

    normalized: torch.Tensor
    median: torch.Tensor
    mad: torch.Tensor
    valid: torch.Tensor


class SSILoss(NamedTuple):
    """Output of `ssi_mad_loss`: loss (`(B,)` for reduction "none", else a scalar) and valid `(B,)` bool."""

    loss: torch.Tensor
    valid: torch.Tensor


class RigidTransform(NamedTuple):
    """Row-vector rigid transform `X' = X @ R + t`: R `(B, 3, 3)`, t `(B, 3)`."""

    R: torch.Tensor
    t: torch.Tensor


class ConsistencyLoss(NamedTuple):
    """Output of `consistency_losses`; every loss `(B,)`, 0 where the sample is not valid.

    total = depth + alpha * image (Eq. 12). valid: `(B,)` bool, the depth term could be computed (the novel
    view covers pixels, and both rendered and re-predicted depth have structure there). image_valid: `(B,)`
    bool, the back-rendered view covers pixels of the input. num_skipped: 0-dim long, `(~valid).sum()`.
    novel: the forward render (NovelView depth D', valid M', features I'); pred_novel: `(B, 1, H, W)` the
    re-prediction D'_pred; back: the render back to the input view (depth D_pred, features I_pred).
    """

    total: torch.Tensor
    depth: torch.Tensor
    image: torch.Tensor
    valid: torch.Tensor
    image_valid: torch.Tensor
    num_skipped: torch.Tensor
    novel: NovelView
    pred_novel: torch.Tensor
    back: NovelView


class MultiFocalConsistency(NamedTuple):
    """Output of `multi_focal_consistency`.

    loss: `(B,)` L^C_{f*} = min over the valid FOVs (Eq. 14), 0 where none is valid. per_fov: `(B, F)` total
    consistency of each FOV (0 where not valid); depth, image: `(B, F)` its two terms. fov_index: `(B,)` long
    argmin f* (over the valid FOVs; 0 where none). valid: `(B, F)` bool. num_skipped: 0-dim long, the
    images without any valid FOV.
    """

    loss: torch.Tensor
    per_fov: torch.Tensor
    depth: torch.Tensor
    image: torch.Tensor
    fov_index: torch.Tensor
    valid: torch.Tensor
    num_skipped: torch.Tensor


class RenderFOVResult(NamedTuple):
    """Output of `render_fov`.

    fov: `(B,)` chosen horizontal FOV in degrees; index: `(B,)` long into the candidates; consistency:
    `(B, F)` the criterion averaged over the valid views of each FOV (+inf where no view is valid);
    num_valid_views: `(B, F)` long; num_skipped: 0-dim long, images where no FOV had a valid view (they get
    DEFAULT_FOV's nearest candidate).
    """

    fov: torch.Tensor
    index: torch.Tensor
    consistency: torch.Tensor
    num_valid_views: torch.Tensor
    num_skipped: torch.Tensor


class PointCloudRMSE(NamedTuple):
    """Output of `point_cloud_rmse`: rmse `(B,)` (0 where not valid), scale `(B,)` the median-ratio
    alignment s applied to the prediction (1 where not valid), valid `(B,)` bool (>= 1 common pixel)."""

    rmse: torch.Tensor
    scale: torch.Tensor
    valid: torch.Tensor


# ----------------------------------------------------------------------------------------------- checks
def _check_focal(K: torch.Tensor, name: str) -> None:
    """ValueError unless K `(B, 3, 3)` has finite positive focal lengths K[:, 0, 0] and K[:, 1, 1]."""
    f = torch.stack([K[:, 0, 0], K[:, 1, 1]], dim=1).detach()  # (B, 2)
    if not bool((torch.isfinite(f) & (f > 0)).all()):
        bad = f[~(torch.isfinite(f) & (f > 0))].flatten()[0].item()
        raise ValueError(
            f"Expected {name} to have finite positive focal lengths K[:, 0, 0], K[:, 1, 1], got {bad}"
        )


def _check_fovs(fovs: Sequence[float], name: str) -> torch.Tensor:
    """Horizontal FOVs in degrees as a float64 `(F,)` tensor; ValueError unless all lie in (0, 180)."""
    fov = torch.as_tensor(fovs, dtype=torch.float64).flatten()
    if fov.numel() == 0 or not bool((torch.isfinite(fov) & (fov > 0) & (fov < 180)).all()):
        raise ValueError(
            f"Expected {name} to be a non-empty sequence of FOVs in (0, 180) degrees (focal lengths "
            f"W / (2 tan(FOV / 2)) > 0, Eq. 13), got {tuple(fov.tolist())}"
        )
    return fov


def _mask_or_default(depth: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`mask` (checked) or all-True, and-ed with finite positive depth: `(B, 1, H, W)` bool."""
    if mask is None:
        mask = torch.ones_like(depth, dtype=torch.bool)
    check_map_and_mask(("depth",), (depth,), mask)
    return mask & torch.isfinite(depth) & (depth > 0)


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of `x` `(B, ...)` over bool `m` (same shape) per sample, 0 without valid entries; and counts."""
    xf = torch.where(m, x, torch.zeros_like(x)).flatten(1)
    n = m.flatten(1).sum(dim=1)  # (B,)
    return xf.sum(dim=1) / n.clamp_min(1).to(x.dtype), n


# -------------------------------------------------------------------------------------- SSI (Eq. 1-3)
def ssi_normalize(d: torch.Tensor, mask: torch.Tensor) -> SSINormalization:
    """Eq. 1-2: `(d - mu) / sigma`, mu = median of d over the mask, sigma = mean |d - mu| over the mask.

    Choice (Eq. 1 says "median"): the lower median of an even count (torch.median's convention, as
    `geometry.masked_median` and GP2's `losses.depth.normalize_disparity`, which this equals on valid
    samples). A sample is not valid when its mask is empty or the map is constant on it (sigma <= 4 eps |mu|,
    the rounding level); its normalized map is 0 and nothing is divided by sigma, so no NaN/inf values or
    gradients arise.

    Args:
        d: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool (non-finite values of d must lie outside it).
    Returns:
        SSINormalization(normalized `(B, 1, H, W)`, median `(B,)`, mad `(B,)`, valid `(B,)`).
    """
    check_map_and_mask(("d",), (d,), mask)
    x = torch.where(mask, d, torch.zeros_like(d))
    mu = masked_median(x, mask)  # (B,), 0 for an empty mask
    c = torch.where(mask, x - mu[:, None, None, None], torch.zeros_like(x))
    sigma, n = _masked_mean(c.abs(), mask)  # (B,)
    eps = torch.finfo(d.dtype).eps
    valid = (n > 0) & (sigma.detach() > 4 * eps * mu.detach().abs()) & (sigma.detach() > 0)
    safe = torch.where(valid, sigma, torch.ones_like(sigma))
    normalized = torch.where(valid[:, None, None, None], c / safe[:, None, None, None], torch.zeros_like(c))
    return SSINormalization(normalized, mu, sigma, valid)


def _reduce(loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":  # over the valid samples, 0 if there is none
        return loss.sum() / valid.sum().clamp_min(1).to(loss.dtype)
    raise ValueError(f"Expected reduction to be one of ('none', 'mean', 'sum'), got {reduction!r}")


def ssi_mad_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, reduction: str = "mean"
) -> SSILoss:
    """Eq. 3: `L^SSI = (1/|M|) sum_{i in M} |pred_hat(i) - target_hat(i)|` with `ssi_normalize` of each map.

    Choice: Eq. 3 writes |D_hat - D_hat*| without the sum; the mean over the valid pixels (MiDaS's form) is
    used. Pixels where either map is non-finite are dropped from the mask. A sample whose mask is empty or
    where either map is constant on it is not valid and has loss 0 (zero gradient).

    Args:
        pred, target: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool.
        reduction: "none" -> `(B,)`; "mean" -> mean over the valid samples (0 if none); "sum".
    Returns:
        SSILoss(loss, valid `(B,)` bool).
    """
    check_map_and_mask(("pred", "target"), (pred, target), mask)
    m = mask & torch.isfinite(pred) & torch.isfinite(target)
    p, t = ssi_normalize(pred, m), ssi_normalize(target, m)
    valid = p.valid & t.valid
    per, _ = _masked_mean((p.normalized - t.normalized).abs(), m)  # (B,)
    per = torch.where(valid, per, torch.zeros_like(per))
    return SSILoss(_reduce(per, valid, reduction), valid)


# ---------------------------------------------------------------------------------- novel views (Eq. 5-6)
def min_z(depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """min_z(P) of Sec. 4.1: the smallest depth of the unprojected cloud (z = d, Eq. 4), per sample.

    Detached (choice: the view is a sampling parameter, not differentiated). Pixels outside `mask` or with
    non-finite or non-positive depth are ignored; a sample without valid pixels gets 0.

    Args:
        depth: `(B, 1, H, W)`; mask: optional `(B, 1, H, W)` bool.
    Returns:
        `(B,)`.
    """
    check_map("depth", depth)
    m = _mask_or_default(depth, mask)
    d = torch.where(m, depth.detach(), torch.full_like(depth, math.inf)).flatten(1).amin(dim=1)
    return torch.where(torch.isfinite(d), d, torch.zeros_like(d))


def novel_view_transform(theta_deg: torch.Tensor, shift: torch.Tensor, min_z: torch.Tensor) -> RigidTransform:
    """Eq. 5-6 as a row-vector transform: rotate by theta about the vertical axis through
    T_center = [0, 0, min_z], then shift by t along the optical (z) axis.

    The paper's camera maps P to `R_p (P - T_center) + T + T_center` (Eq. 6: Render(P - T_center, R_p,
    T + T_center)) with R_p the rotation about the camera's y (vertical) axis of Eq. 5 and T = [0, 0, t]. In
    row vectors: `X' = X @ R + t_row`, `R = R_p^T`, `t_row = T + T_center - R_p T_center`.

    Args:
        theta_deg: `(B,)` degrees; shift: `(B,)` t (depth units, not multiples of min_z); min_z: `(B,)`.
    Returns:
        RigidTransform(R `(B, 3, 3)`, t `(B, 3)`), dtype / device of min_z.
    """
    _check_shape(min_z, "min_z", ("B",))
    B = min_z.shape[0]
    theta = torch.deg2rad(torch.as_tensor(theta_deg, dtype=min_z.dtype, device=min_z.device))
    shift = torch.as_tensor(shift, dtype=min_z.dtype, device=min_z.device)
    _check_shape(theta, "theta_deg", (B,))
    _check_shape(shift, "shift", (B,))
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    R_p = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(B, 3, 3)  # Eq. 5
    center = torch.stack([zero, zero, min_z], dim=-1)  # (B, 3) T_center
    T = torch.stack([zero, zero, shift], dim=-1)  # (B, 3)
    t_row = T + center - (R_p @ center.unsqueeze(-1)).squeeze(-1)
    return RigidTransform(R_p.transpose(1, 2), t_row)


def sample_novel_views(
    min_z: torch.Tensor,
    generator: torch.Generator | None = None,
    theta_range: tuple[float, float] = (-30.0, 30.0),
    t_range: tuple[float, float] = (-1.0, 2.0),
) -> RigidTransform:
    """Random novel views of Sec. 4.1: theta ~ U(theta_range) degrees, t ~ U(t_range) * min_z.

    Sec. 4.1: "t and theta are randomly sampled from [-min_z(P), 2 min_z(P)] and [-30, 30] deg".

    Args:
        min_z: `(B,)` from `min_z(depth)`; generator: optional torch.Generator (its device is used for the
            draws, which are then moved to min_z's device); theta_range: degrees; t_range: multiples of min_z.
    Returns:
        RigidTransform(R `(B, 3, 3)`, t `(B, 3)`) for `render_depth_novel_view` / `consistency_losses`.
    """
    _check_shape(min_z, "min_z", ("B",))
    B = min_z.shape[0]
    dev = generator.device if generator is not None else min_z.device
    u = torch.rand(2, B, generator=generator, device=dev, dtype=torch.float64).to(min_z.device)
    theta = theta_range[0] + (theta_range[1] - theta_range[0]) * u[0]
    frac = t_range[0] + (t_range[1] - t_range[0]) * u[1]
    return novel_view_transform(theta.to(min_z.dtype), frac.to(min_z.dtype) * min_z, min_z)


def invert_transform(R: torch.Tensor, t: torch.Tensor) -> RigidTransform:
    """Inverse of the row-vector rigid transform `X' = X @ R + t`: `X = X' @ R^T - t @ R^T`.

    For a `novel_view_transform` this is Eq. 10-11 (R_inv = R_p^T, T_inv = -R_p^T (T + T_center) + T_center).
    R: `(B, 3, 3)` rotation, t: `(B, 3)` -> RigidTransform(`(B, 3, 3)`, `(B, 3)`).
    """
    sizes: dict[str, int] = {}
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(t, "t", ("B", 3), sizes)
    Rt = R.transpose(1, 2)
    return RigidTransform(Rt, -(t.unsqueeze(1) @ Rt).squeeze(1))


def render_novel(
    depth: torch.Tensor,
    image: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor | None = None,
    radius: float = 0.75,
) -> NovelView:
    """Eq. 6: unproject depth with K (Eq. 4), move with `X' = X @ R + t`, z-buffer splat depth and image.

    The novel camera has the intrinsics K of the input (Sec. 4.1 only moves the camera).

    Args:
        depth: `(B, 1, H, W)`; image: `(B, C, H, W)` (any C: colours or other per-pixel features);
        K: `(B, 3, 3)`; R: `(B, 3, 3)`; t: `(B, 3)`; mask: optional `(B, 1, H, W)` bool of pixels to splat;
        radius: splat radius in pixels (`render_depth_novel_view`).
    Returns:
        NovelView(depth D' `(B, 1, H, W)` (0 where not covered), valid `(B, 1, H, W)` bool,
        features I' `(B, C, H, W)` (0 where not covered)).
    """
    sizes: dict[str, int] = {}
    _check_shape(depth, "depth", ("B", 1, "H", "W"), sizes)
    _check_shape(image, "image", ("B", "C", "H", "W"), sizes)
    _check_shape(K, "K", ("B", 3, 3), sizes)
    _check_focal(K, "K")
    m = _mask_or_default(depth, mask)
    d = torch.where(m, depth, torch.zeros_like(depth))  # <= 0 is missing for the renderer
    return render_depth_novel_view(d, K, R, t, features=image, radius=radius)


# ------------------------------------------------------------------------------ consistency (Eq. 7-12)
def consistency_losses(
    net_fn: NetFn,
    image: torch.Tensor,
    pred_depth: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    alpha: float = 1.0,
    mask: torch.Tensor | None = None,
    radius: float = 0.75,
) -> ConsistencyLoss:
    """The consistency loss L^C = L^C-depth + alpha L^C-img of Sec. 4.1-4.2 (Eq. 6-12), batched.

    1. D', I' = render of pred_depth (unprojected with K) and image into the novel view (R, t) (Eq. 6);
       M' = the pixels the splat covers.
    2. D'_pred = net_fn(I'); (a, b) = least squares of a D'_pred + b to D' on M' (Eq. 7-8; Eq. 7 as
       printed lacks the square, the text says least squares;
       `geometry.align_lstsq_scale_shift`).
    3. D_pred, I_pred = render of a D'_pred + b (unprojected with K, pixels of M' only) and I' back to the
       input view with the inverse transform (Eq. 9-11).
    4. L^C-depth = SSI_{M_depth}(D', D'_pred) (Eq. 3), M_depth = M' (and D'_pred finite);
       L^C-img = mean over M_img of the per-pixel channel-mean |I_pred - I|, M_img = the input pixels the
       back render covers (within `mask`). Choice (Sec. 4.2 "pixels that are not occluded during rendering"):
       the covered pixels of each render; pixels where a D'_pred + b <= 0 are not rendered back.

    net_fn is called once on all B rendered images (holes are 0). The loss of a sample is 0 and it is
    counted in num_skipped when the depth term is undefined: the novel view covers no pixel, or D' or
    D'_pred is constant on it.

    Args:
        net_fn: images `(B, C, H, W)` -> `(B, 1, H, W)` depth up to scale and shift (see NetFn).
        image: `(B, C, H, W)`; pred_depth: `(B, 1, H, W)` depth up to scale (<= 0 / non-finite = missing);
        K: `(B, 3, 3)` intrinsics of pred_depth (ValueError for focal lengths <= 0); R: `(B, 3, 3)`,
        t: `(B, 3)` the novel view, e.g. `sample_novel_views(min_z(pred_depth), g)`; alpha: Eq. 12 weight
        (1.0 in Sec. 5); mask: optional `(B, 1, H, W)` bool valid input pixels; radius: splat radius, px.
    Returns:
        ConsistencyLoss(total, depth, image `(B,)`, valid, image_valid `(B,)`, num_skipped, novel,
        pred_novel, back).
    """
    sizes: dict[str, int] = {}
    _check_shape(pred_depth, "pred_depth", ("B", 1, "H", "W"), sizes)
    _check_shape(image, "image", ("B", "C", "H", "W"), sizes)
    _check_shape(K, "K", ("B", 3, 3), sizes)
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(t, "t", ("B", 3), sizes)
    _check_focal(K, "K")
    m = _mask_or_default(pred_depth, mask)

    novel = render_novel(pred_depth, image, K, R, t, mask=m, radius=radius)  # Eq. 6
    pred_novel = net_fn(novel.features)  # D'_pred
    _check_shape(pred_novel, "net_fn(image)", ("B", 1, "H", "W"), sizes)
    m_depth = novel.valid & torch.isfinite(pred_novel)
    pn = torch.where(m_depth, pred_novel, torch.zeros_like(pred_novel))  # no NaN reaches a gradient
    l_depth = ssi_mad_loss(pn, novel.depth, m_depth, reduction="none")  # SSI_{M_depth}(D', D'_pred)

    aligned = align_lstsq_scale_shift(pn, novel.depth, m_depth).aligned  # Eq. 7-8
    back_depth = torch.where(m_depth, aligned, torch.zeros_like(aligned))
    R_inv, t_inv = invert_transform(R, t)  # Eq. 10-11
    back = render_depth_novel_view(back_depth, K, R_inv, t_inv, features=novel.features, radius=radius)
    m_img = back.valid & m
    l1 = (back.features - image).abs().mean(dim=1, keepdim=True)  # (B, 1, H, W)
    l_img, n_img = _masked_mean(l1, m_img)  # Eq. 12's L1_{M_img}(I_pred, I)

    valid = l_depth.valid
    image_valid = n_img > 0
    l_img = torch.where(valid & image_valid, l_img, torch.zeros_like(l_img))
    total = torch.where(valid, l_depth.loss + alpha * l_img, torch.zeros_like(l_img))
    return ConsistencyLoss(
        total, l_depth.loss, l_img, valid, image_valid, (~valid).sum(), novel, pred_novel, back
    )


def _repeat(x: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """`(B, ...)` -> `(n * B, ...)`, block-major (index `k * B + b`)."""
    if x is None:
        return None
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])


def _fov_intrinsics(fovs: torch.Tensor, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
    """Eq. 13 intrinsics of each FOV, principal point at the image centre: `(F, 3, 3)` like `like`."""
    return intrinsics_from_fov(fovs.to(like.device), H, W).to(like.dtype)


def multi_focal_consistency(
    net_fn: NetFn,
    image: torch.Tensor,
    pred_depth: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    fovs: Sequence[float] = TRAIN_FOVS,
    alpha: float = 1.0,
    mask: torch.Tensor | None = None,
    radius: float = 0.75,
) -> MultiFocalConsistency:
    """The multi-focal-length loss of Sec. 4.2 (Eq. 13-14): `min_{f in F} L^C_f` per image.

    f = W / (2 tan(FOV / 2)) for each horizontal FOV (Eq. 13), principal point at the image centre
    (choice: Eq. 4's optical centre (u0, v0) is unknown for web images). All F focal lengths run in one
    `consistency_losses` call on F * B samples (net_fn sees them FOV-major, index `f * B + b`). Choice
    (Sec. 4.2 is silent): the same novel view (R, t) for every FOV of an image; it depends on min_z, which
    does not depend on f. The minimum is taken over the valid FOVs only (an invalid FOV's 0 is not a
    minimum); the gradient flows through the chosen FOV.

    Args:
        net_fn: as in `consistency_losses`; image: `(B, C, H, W)`; pred_depth: `(B, 1, H, W)`; R: `(B, 3, 3)`,
        t: `(B, 3)`; fovs: F degrees in (0, 180) ({50, 60, 70} in Sec. 5); alpha: Eq. 12; mask: optional
        `(B, 1, H, W)` bool; radius: splat radius, px.
    Returns:
        MultiFocalConsistency(loss `(B,)`, per_fov, depth, image `(B, F)`, fov_index `(B,)`, valid `(B, F)`,
        num_skipped).
    """
    fov = _check_fovs(fovs, "fovs")
    sizes: dict[str, int] = {}
    _check_shape(pred_depth, "pred_depth", ("B", 1, "H", "W"), sizes)
    _check_shape(image, "image", ("B", "C", "H", "W"), sizes)
    _check_shape(R, "R", ("B", 3, 3), sizes)
    _check_shape(t, "t", ("B", 3), sizes)
    B, _, H, W = pred_depth.shape
    F = fov.numel()
    K = _fov_intrinsics(fov, H, W, pred_depth).repeat_interleave(B, dim=0)  # (F * B, 3, 3), f-major
    out = consistency_losses(
        net_fn,
        _repeat(image, F),
        _repeat(pred_depth, F),
        K,
        _repeat(R, F),
        _repeat(t, F),
        alpha=alpha,
        mask=_repeat(mask, F),
        radius=radius,
    )

    def per_image(x: torch.Tensor) -> torch.Tensor:
        return x.view(F, B).transpose(0, 1)  # (B, F)

    per_fov, valid = per_image(out.total), per_image(out.valid)
    key = torch.where(valid, per_fov.detach(), torch.full_like(per_fov, math.inf))
    idx = key.argmin(dim=1)  # (B,); all-inf rows give 0
    any_valid = valid.any(dim=1)
    loss = per_fov.gather(1, idx[:, None]).squeeze(1)
    loss = torch.where(any_valid, loss, torch.zeros_like(loss))
    return MultiFocalConsistency(
        loss, per_fov, per_image(out.depth), per_image(out.image), idx, valid, (~any_valid).sum()
    )


def rgpd_total_loss(l_ssi: torch.Tensor, l_c: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Eq. 15: `L = L^SSI + beta L^C_{f*}`, beta = 0.1 (Sec. 5). Any broadcastable shapes."""
    return l_ssi + beta * l_c


# ------------------------------------------------------------------------------ RenderFOV (Sec. 5.1)
def _view_grid(
    thetas: Sequence[float], ts: Sequence[float], mz: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta_deg, shift) `(V * B,)` view-major for V = len(thetas) * len(ts), v = i_theta * len(ts) + i_t."""
    th = torch.as_tensor(thetas, dtype=mz.dtype, device=mz.device).flatten()
    tt = torch.as_tensor(ts, dtype=mz.dtype, device=mz.device).flatten()
    if th.numel() == 0 or tt.numel() == 0:
        raise ValueError(
            f"Expected thetas and ts to be non-empty, got {tuple(th.tolist())}, {tuple(tt.tolist())}"
        )
    g_th, g_t = torch.meshgrid(th, tt, indexing="ij")  # (T, S)
    g_th, g_t = g_th.reshape(-1, 1), g_t.reshape(-1, 1)  # (V, 1)
    B = mz.shape[0]
    return g_th.expand(-1, B).reshape(-1), (g_t * mz[None]).reshape(-1)


@torch.no_grad()
def render_fov(
    net_fn: NetFn,
    image: torch.Tensor,
    pred_depth: torch.Tensor,
    fovs: Sequence[float] = RENDER_FOVS,
    ts: Sequence[float] = RENDER_TS,
    thetas: Sequence[float] = RENDER_THETAS,
    mask: torch.Tensor | None = None,
    criterion: str = "depth",
    alpha: float = 1.0,
    radius: float = 0.75,
) -> RenderFOVResult:
    """RenderFOV (Sec. 5.1): the candidate FOV whose mean consistency over a grid of views is smallest.

    For every FOV in `fovs` and every view of the grid thetas x ts (rotation theta degrees about T_center,
    shift t = ts * min_z(P)), `consistency_losses` is evaluated, all F * V * B renders in one call (net_fn
    sees them in the order `(f * V + v) * B + b`); the criterion ("depth": L^C-depth, the paper's default,
    Table 2; "image": L^C-img; "total": Eq. 12) is averaged over the valid views of each FOV. Runs under
    torch.no_grad (test time).

    Args:
        net_fn: as in `consistency_losses`; image: `(B, C, H, W)`; pred_depth: `(B, 1, H, W)`;
        fovs: F candidate horizontal FOVs, degrees ({40, ..., 80}); ts: shifts as multiples of min_z
        ({-0.5, 0.5}); thetas: degrees ({-20, 20}); mask: optional `(B, 1, H, W)` bool; criterion; alpha;
        radius: as in `consistency_losses`.
    Returns:
        RenderFOVResult(fov `(B,)` degrees, index `(B,)`, consistency `(B, F)`, num_valid_views `(B, F)`,
        num_skipped).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"Expected criterion to be one of {CRITERIA}, got {criterion!r}")
    fov = _check_fovs(fovs, "fovs")
    sizes: dict[str, int] = {}
    _check_shape(pred_depth, "pred_depth", ("B", 1, "H", "W"), sizes)
    _check_shape(image, "image", ("B", "C", "H", "W"), sizes)
    B, _, H, W = pred_depth.shape
    F = fov.numel()
    mz = min_z(pred_depth, mask)  # (B,)
    theta, shift = _view_grid(thetas, ts, mz)  # (V * B,)
    V = theta.numel() // B
    R, t = novel_view_transform(theta, shift, _repeat(mz, V))  # (V * B, ...)
    K = _fov_intrinsics(fov, H, W, pred_depth).repeat_interleave(V * B, dim=0)  # (F * V * B, 3, 3)
    n = F * V
    out = consistency_losses(
        net_fn,
        _repeat(image, n),
        _repeat(pred_depth, n),
        K,
        _repeat(R, F),
        _repeat(t, F),
        alpha=alpha,
        mask=_repeat(mask, n),
        radius=radius,
    )
    value = {"depth": out.depth, "image": out.image, "total": out.total}[criterion]
    ok = out.valid & out.image_valid if criterion == "image" else out.valid
    value, ok = value.view(F, V, B).permute(2, 0, 1), ok.view(F, V, B).permute(2, 0, 1)  # (B, F, V)
    count = ok.sum(dim=2)  # (B, F)
    mean = torch.where(ok, value, torch.zeros_like(value)).sum(dim=2) / count.clamp_min(1).to(value.dtype)
    consistency = torch.where(count > 0, mean, torch.full_like(mean, math.inf))
    scored = (count > 0).any(dim=1)  # (B,)
    fallback = (fov - DEFAULT_FOV).abs().argmin().to(pred_depth.device)
    index = torch.where(scored, consistency.argmin(dim=1), fallback)
    chosen = fov.to(device=pred_depth.device, dtype=pred_depth.dtype)[index]
    return RenderFOVResult(chosen, index, consistency, count, (~scored).sum())


# ------------------------------------------------------------------------------ Table 2 point-cloud RMSE
def point_cloud_rmse(
    pred_depth: torch.Tensor,
    gt_depth: torch.Tensor,
    K_pred: torch.Tensor,
    K_gt: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> PointCloudRMSE:
    """Table 2's point-cloud error: RMSE between pixel-corresponding points of the aligned prediction and
    the ground truth.

    Sec. 5 "Evaluation Metrics": the prediction is scale aligned with `s = median(D* / D)` (lower median,
    `geometry.masked_median`), unprojected with the estimated intrinsics K_pred (e.g. RenderFOV's FOV),
    the ground truth with K_gt, and `rmse = sqrt(mean_i ||s P_pred(i) - P_gt(i)||^2)` over the pixels i valid
    in both (choice: the paper's "RMSE between the point clouds ... following [22]" with the per-pixel
    correspondence the two unprojections of one image give; no nearest-neighbour matching). Per image;
    a dataset figure is the mean over the valid images.

    Args:
        pred_depth, gt_depth: `(B, 1, H, W)` (<= 0 / non-finite = missing); K_pred, K_gt: `(B, 3, 3)`
        (ValueError for focal lengths <= 0); mask: optional `(B, 1, H, W)` bool.
    Returns:
        PointCloudRMSE(rmse `(B,)`, scale `(B,)`, valid `(B,)`).
    """
    sizes: dict[str, int] = {}
    _check_shape(pred_depth, "pred_depth", ("B", 1, "H", "W"), sizes)
    _check_shape(gt_depth, "gt_depth", ("B", 1, "H", "W"), sizes)
    _check_shape(K_pred, "K_pred", ("B", 3, 3), sizes)
    _check_shape(K_gt, "K_gt", ("B", 3, 3), sizes)
    _check_focal(K_pred, "K_pred")
    _check_focal(K_gt, "K_gt")
    m = _mask_or_default(pred_depth, mask) & torch.isfinite(gt_depth) & (gt_depth > 0)
    ratio = torch.where(m, gt_depth, torch.ones_like(gt_depth)) / torch.where(
        m, pred_depth, torch.ones_like(pred_depth)
    )
    n = m.flatten(1).sum(dim=1)
    valid = n > 0
    scale = torch.where(valid, masked_median(ratio, m), torch.ones_like(n, dtype=pred_depth.dtype))
    p = unproject_depth(pred_depth * scale[:, None, None, None], K_pred, mask=m).points  # (B, HW, 3)
    g = unproject_depth(gt_depth, K_gt, mask=m).points
    sq = ((p - g) ** 2).sum(dim=-1)  # (B, HW), 0 outside m
    mse = sq.sum(dim=1) / n.clamp_min(1).to(sq.dtype)
    rmse = torch.where(valid, mse.clamp_min(0).sqrt(), torch.zeros_like(mse))
    return PointCloudRMSE(rmse, scale, valid)
