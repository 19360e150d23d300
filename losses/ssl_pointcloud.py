"""Losses of "From Image Collections to Point Clouds with Self-supervised Shape and Pose Networks"
(Navaneet et al., CVPR 2020, Eq. 1-11), as pure functions, with the weights of the official code
(github.com/val-iisc/ssl_3d_recon: `main.py`, `multiple_mask_main.py`, `run.sh`, `src/get_losses.py`,
`src/proj_codes.py`; lineage github.com/val-iisc/capnet `src/get_losses.py`). Where paper and code differ,
both are available and the docstring says which is the default.

Conventions (DESIGN.md): images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) in [0, 1], points (B, P, 3),
poses (B, 2) = (azimuth, elevation) in radians; k views per sample are an extra axis (B, k, ...).
Every loss returns a scalar: the mean over the batch (the official `tf.reduce_mean` over the batch) of the
per-sample quantity stated in its docstring.

Cameras: the losses do not fix a camera. `render_views` takes `project(points (N, P, 3), azimuth (N,),
elevation (N,)) -> (N, P, 3)` points as (x_ndc, y_ndc, z_view) (PyTorch3D NDC, z > 0 in front), e.g.
the data's official `world2cam` + perspective, and renders all B * k views with one call of
`geometry.capnet_mask_projection` (silhouettes) and one of `geometry.differ_feature_projection` (colours).

Chamfer inside the losses (Eq. 5, 10) is the official training one, `get_losses.get_chamfer_dist`: squared
nearest-neighbour distances, mean over each cloud's points, both directions added
(`geometry.chamfer_variant(squared=True, reduction="mean")`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from geometry.cameras import _check_shape, image_hw
from geometry.point_raster import capnet_mask_projection, differ_feature_projection
from geometry.pointcloud import chamfer_variant, knn_points

__all__ = [
    "AZIMUTH_SAMPLE_RANGE",
    "ELEVATION_SAMPLE_RANGE",
    "SSL_WEIGHTS",
    "OFFICIAL_SETTINGS",
    "MaskTerms",
    "Neighbours",
    "Views",
    "geometric_cycle_loss",
    "image_loss",
    "mask_affinity_loss",
    "mask_bce_loss",
    "mask_loss",
    "mine_neighbours",
    "nn_mask_loss",
    "pose_cycle_loss",
    "pose_objective",
    "reconstruction_objective",
    "render_views",
    "sample_views",
    "symmetry_loss",
]

SSL_WEIGHTS: dict[str, float] = {
    # From ssl_3d_recon `run.sh` (OURS-CC) and `multiple_mask_run.sh` (OURS-NN, same values), flag in brackets.
    # Reconstruction network, Eq. 6 / 11: alpha (L_I + L_M) + beta L_G + eta L_NN + kappa L_sym.
    "image": 100.0,  # alpha [--lambda_ae 100.]        image_loss (paper: alpha = 100)
    "mask": 100.0,  # alpha [--lambda_ae_mask 100.]    MaskTerms.bce of mask_loss
    "affinity": 1e-4,  # [--lambda_mask_fwd 1e-4 --lambda_mask_bwd 1e-4] MaskTerms.affinity (fwd + bwd)
    "geometric": 1e4,  # beta [--lambda_3d 10000.]     geometric_cycle_loss (paper: beta = 1e4)
    # eta: multiple_mask_main.py adds the neighbour's mask loss with the input's own weights
    # (lambda_ae_mask for the BCE, lambda_mask_fwd/bwd for the affinity), i.e. eta = alpha.
    "nn": 100.0,
    "nn_affinity": 1e-4,
    # kappa: --symmetry_loss is not set by either script (main.py default --lambda_symm 0.); the paper's
    # value is in its supplementary material, not in the text: off by default.
    "symmetry": 0.0,
    # Pose network, Eq. 8: gamma (L_I + L_M) + rho L_pose (paper: gamma = 1, rho = 1).
    "pose_image": 1.0,  # gamma [--lambda_ae_pose 1.]
    "pose_mask": 1.0,  # gamma [--lambda_mask_pose 1.]  (BCE only: main.py's pose_loss has no affinity)
    "pose_cycle": 1.0,  # rho [--lambda_pose 1.]
    # Adam learning rate of both networks [--lr 5e-4] (beta1 [main.py default 0.9]). The paper's Sec. 4.1
    # says 0.00005 (5e-5); the released scripts use 5e-4.
    "lr": 5e-4,
}

OFFICIAL_SETTINGS: dict[str, float | int | str] = {
    # Other settings of the official training (ssl_3d_recon run.sh / main.py defaults), for configs.
    "n_points": 1024,  # [--N_PTS 1024]
    "image_size": 64,  # [--H 64 --W 64]
    "bottleneck": 128,  # [--bottleneck 128]
    # [--N_PROJ 4]: main.py renders N_PROJ views, the predicted one plus N_PROJ - 1 = 3 random ones;
    # the paper's k = 4 random views (Sec. 4.1).
    "n_views": 4,
    "mask_sigma_sq": 0.4,  # [main.py default --sigma_sq 0.4] CAPNet kernel variance, pixels^2
    "color_well_radius": 1.0,  # proj_codes.rgb_cont_proj well_radius=1 (a box kernel), pixels
    "color_beta": 100.0,  # proj_codes.rgb_cont_proj beta=100 (depths in (0, 2])
    "mask_bce": "logits",  # [--loss bce]: sigmoid_cross_entropy_with_logits on the tanh mask
    "batch_size": 2,  # [--batch_size 2]
    "adam_beta1": 0.9,  # [main.py default --beta1 0.9]
    "iterations": 200001,  # [--N_ITERS 200001]
}

AZIMUTH_SAMPLE_RANGE = (-math.pi, math.pi)  # main.py get_feed_dict: azimuth [-180, 180] deg
ELEVATION_SAMPLE_RANGE = (math.radians(-20.0), math.radians(40.0))  # elevation [-20, 40] deg


class MaskTerms(NamedTuple):
    """Mask loss L_M (Eq. 4) split in its weighted parts: bce () (Eq. 2), affinity () (Eq. 3)."""

    bce: Tensor
    affinity: Tensor


class Neighbours(NamedTuple):
    """Output of `mine_neighbours`: idx (B, k) long into the bank, dists (B, k) Euclidean, ascending."""

    idx: Tensor
    dists: Tensor


class Views(NamedTuple):
    """Output of `render_views`: images (B, k, C, H, W) or None, masks (B, k, 1, H, W)."""

    images: Tensor | None
    masks: Tensor


# ----------------------------------------------------------------------------------------------- helpers
def _check_pair_images(pred: Tensor, target: Tensor, name: str, channels: int | str) -> None:
    sizes: dict[str, int] = {}
    _check_shape(pred, f"{name} pred", ["B", channels, "H", "W"], sizes)
    _check_shape(target, f"{name} target", ["B", channels, "H", "W"], sizes)


# ----------------------------------------------------------------------------------------------- views
def sample_views(
    batch_size: int,
    k: int,
    generator: torch.Generator | None = None,
    azimuth_range: tuple[float, float] = AZIMUTH_SAMPLE_RANGE,
    elevation_range: tuple[float, float] = ELEVATION_SAMPLE_RANGE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """k random viewpoints per sample, uniform in the official ranges (main.py `get_feed_dict`: azimuth in
    [-180, 180], elevation in [-20, 40] degrees).

    Returns: (B, k, 2) (azimuth, elevation) in radians. Seeded through `generator` (drawn on the CPU).
    """
    if batch_size < 0 or k < 1:
        raise ValueError(f"batch_size must be >= 0 and k >= 1, got {batch_size}, {k}")
    u = torch.rand(batch_size, k, 2, generator=generator, dtype=torch.float64)
    lo = torch.tensor([azimuth_range[0], elevation_range[0]], dtype=torch.float64)
    hi = torch.tensor([azimuth_range[1], elevation_range[1]], dtype=torch.float64)
    return (lo + (hi - lo) * u).to(device=device, dtype=dtype)


def render_views(
    points: Tensor,
    poses: Tensor,
    project: Callable[[Tensor, Tensor, Tensor], Tensor],
    image_size: int | tuple[int, int],
    colors: Tensor | None = None,
    mask_sigma: float = math.sqrt(0.4),
    color_sigma: float = 1.0,
    color_kernel: str = "box",
    beta: float = 100.0,
    background_color: tuple[float, ...] | Tensor | None = None,
) -> Views:
    """Silhouettes (CAPNet) and colour images (DIFFER) of each cloud from k viewpoints, batched over B * k.

    The official renderer (ssl_3d_recon src/proj_codes.py): `cont_proj` for masks with sigma^2 = 0.4 px^2
    (main.py `--sigma_sq`), `rgb_cont_proj` for colours with a box "well" of radius 1 px and beta = 100
    (`color_kernel="box"`, `color_sigma=1`); `color_kernel="gaussian"` lets the image loss move points too.
    Args:
        points: (B, P, 3) clouds in the world frame.
        poses: (B, k, 2) (azimuth, elevation) in radians.
        project: camera, `project(points (N, P, 3), azimuth (N,), elevation (N,))` -> (N, P, 3) as
            (x_ndc, y_ndc, z_view); called once with N = B * k.
        image_size: int or (H, W).
        colors: optional (B, P, C) per-point features (RGB in [0, 1]).
        mask_sigma: CAPNet kernel std in pixels. color_sigma, color_kernel, beta, background_color: see
            `geometry.differ_feature_projection`.
    Returns:
        Views(images (B, k, C, H, W) or None without colors, masks (B, k, 1, H, W) in [0, 1)).
    """
    sizes: dict[str, int] = {}
    _check_shape(points, "points", ["B", "P", 3], sizes)
    _check_shape(poses, "poses", ["B", "k", 2], sizes)
    if colors is not None:
        _check_shape(colors, "colors", ["B", "P", "C"], sizes)
    H, W = image_hw(image_size)
    B, k = poses.shape[:2]
    P = points.shape[1]
    flat_points = points.unsqueeze(1).expand(B, k, P, 3).reshape(B * k, P, 3)
    flat_poses = poses.reshape(B * k, 2)
    ndc = project(flat_points, flat_poses[:, 0], flat_poses[:, 1])
    _check_shape(ndc, "project(...) output", [B * k, P, 3])
    masks = capnet_mask_projection(ndc[..., :2], (H, W), sigma=mask_sigma, coords="ndc")
    masks = masks.view(B, k, 1, H, W)
    images = None
    if colors is not None:
        C = colors.shape[-1]
        flat_colors = colors.unsqueeze(1).expand(B, k, P, C).reshape(B * k, P, C)
        proj = differ_feature_projection(
            ndc,
            flat_colors,
            (H, W),
            sigma=color_sigma,
            beta=beta,
            kernel=color_kernel,
            background_color=background_color,
        )
        images = proj.features.view(B, k, C, H, W)
    return Views(images, masks)


# ----------------------------------------------------------------------------------------------- Eq. 1-4
def image_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Eq. 1: `L_I = 1/(hw) sum_ij ||I_ij - I^_ij||_2^2` (sum over channels, mean over pixels), batch mean.

    The official `get_img_loss(..., 'l2_sq')`: `reduce_mean(reduce_sum((gt - pred)**2, axis=-1))`.
    Args: pred, target: (B, C, H, W). Returns: ().
    """
    _check_pair_images(pred, target, "image_loss", "C")
    return (pred - target).square().sum(1).mean()


def mask_bce_loss(pred: Tensor, target: Tensor, mode: str = "prob", eps: float = 1e-7) -> Tensor:
    """Eq. 2: `L_bce = 1/(hw) sum_ij -M log M^ - (1 - M) log(1 - M^)`, mean over pixels and batch.

    mode="prob" is Eq. 2 on the mask probabilities, clamped to [eps, 1 - eps] (no log(0)); mode="logits" is
    what the official scripts train with (`--loss bce`: `sigmoid_cross_entropy_with_logits(labels=gt,
    logits=pred)` applied to the tanh mask in [0, 1), get_losses.py).
    Args: pred, target: (B, 1, H, W), target in [0, 1]. Returns: ().
    """
    _check_pair_images(pred, target, "mask_bce_loss", 1)
    if mode == "prob":
        p = pred.clamp(eps, 1 - eps)
        return -(target * torch.log(p) + (1 - target) * torch.log1p(-p)).mean()
    if mode == "logits":
        return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype))
    raise ValueError(f'mode must be "prob" or "logits", got {mode!r}')


_AFFINITY_CHUNK = 1 << 24  # (B, rows, H*W) block of candidate costs evaluated at once


def _weighted_min_sq_dist(
    weight: Tensor, member: Tensor, H: int, W: int, need: Tensor | None = None
) -> Tensor:
    """`D[b, p] = min_{q: member[b, q]} |p - q|^2 * weight[b, q]` over pixels q, 0 where no member.

    weight, member: (B, HW); need: optional (B, HW) bool, the pixels p whose D is used (the others are
    returned as 0: a caller that multiplies D by a constant that is 0 there loses nothing, values or
    gradients). The minimiser is searched without autograd in chunks of rows (no (B, HW, HW) tensor); the
    value is recomputed from it, so gradients reach `weight` at the minimising pixel. Returns (B, HW).
    """
    B, N = weight.shape
    dev = weight.device
    # pixel coordinates in the weight's dtype: the squared distances are integers, exact in float32 up to
    # sides of 2896 pixels
    ii = (torch.arange(N, device=dev) // W).to(weight.dtype)
    jj = (torch.arange(N, device=dev) % W).to(weight.dtype)
    w_det = torch.where(member, weight.detach(), torch.full_like(weight, math.inf))  # (B, N)
    need = torch.ones_like(member) if need is None else need & member.any(1, keepdim=True)
    b_idx, p_idx = need.nonzero(as_tuple=True)  # (K,): the (image, pixel) rows searched
    rows = max(1, _AFFINITY_CHUNK // max(1, N))
    arg = torch.zeros(B, N, dtype=torch.long, device=dev)
    with torch.no_grad():
        for s in range(0, len(b_idx), rows):
            b, p = b_idx[s : s + rows], p_idx[s : s + rows]
            d2 = (ii[p, None] - ii[None]).square() + (jj[p, None] - jj[None]).square()  # (r, N)
            cost = d2 * w_det[b]  # (r, N); inf where not a member
            cost = torch.where(torch.isnan(cost), torch.full_like(cost, math.inf), cost)  # 0 * inf
            arg[b, p] = cost.argmin(-1)
    d2_min = (ii[None] - ii[arg]).square() + (jj[None] - jj[arg]).square()  # (B, N)
    value = d2_min * weight.gather(1, arg)
    return torch.where(need, value, torch.zeros_like(value))


def _sq_distance_to_set(member: Tensor, H: int, W: int, dtype: torch.dtype) -> Tensor:
    """`D[b, p] = min_{q: member[b, q]} |p - q|^2` (B, HW), 0 where no member: `_weighted_min_sq_dist` with
    unit weights, by scipy's exact Euclidean distance transform (linear time instead of quadratic). A
    constant: no gradient."""
    from scipy.ndimage import distance_transform_edt

    m = member.detach().reshape(-1, H, W).cpu().numpy()
    out = torch.zeros(m.shape, dtype=torch.float64)
    for b in range(m.shape[0]):
        if m[b].any():
            out[b] = torch.from_numpy(distance_transform_edt(~m[b]) ** 2)
    # squared distances between pixel centres are integers: round off the transform's sqrt-then-square
    return out.round().to(dtype=dtype, device=member.device).reshape(member.shape)


def mask_affinity_loss(pred: Tensor, target: Tensor, mode: str = "paper", threshold: float = 0.0) -> Tensor:
    """Eq. 3, the affinity (2D Chamfer) term of the mask loss, per image, batch mean.

    mode="paper" (CAPNet, Navaneet et al. AAAI 2019, Eq. 3 and this paper's Eq. 3), pixel coordinates
    (i, j) in pixels, `M_+ = {(k, l): M_kl > threshold}`:

        sum_ij min_{(k,l) in M_+}  ((i-k)^2 + (j-l)^2) M^_ij M_kl
      + sum_ij min_{(k,l) in M^_+} ((i-k)^2 + (j-l)^2) M_ij M^_kl

    (the weight of the minimised pixel stays inside the min, as written; an empty set contributes 0). With a
    binary target the first term is `sum_ij M^_ij dt(i, j)`, dt the squared distance to the target
    silhouette, computed so (scipy's exact distance transform; any other target by the quadratic search);
    the second term's gradient reaches the prediction only at its minimising pixel.

    mode="official": what the released code computes (ssl_3d_recon and capnet `get_losses.py`): there all
    factors of `gt_th * (dist + 1) * pred` are indexed by (i, j), so the min over (k, l) is `dist + 1 = 1` at
    (k, l) = (i, j) and the term reduces to
    `mean_ij M^_ij (M_ij + 1e6 (1 - M_ij)) + mean_ij M_ij (M^_ij + 1e6 (1 - M^_ij))`
    (forward + backward, means over pixels), i.e. a 1e6-weighted penalty on mass outside the other mask.
    Args:
        pred: (B, 1, H, W) predicted mask in [0, 1]. target: (B, 1, H, W) in [0, 1].
        threshold: membership of M_+ and M^_+ in mode "paper".
    Returns: () forward + backward, mean over the batch.
    """
    _check_pair_images(pred, target, "mask_affinity_loss", 1)
    target = target.to(pred.dtype)
    if mode == "official":
        fwd = (pred * (target + 1e6 * (1 - target))).mean()
        bwd = (target * (pred + 1e6 * (1 - pred))).mean()
        return fwd + bwd
    if mode != "paper":
        raise ValueError(f'mode must be "paper" or "official", got {mode!r}')
    B, _, H, W = pred.shape
    p = pred.reshape(B, H * W)
    t = target.reshape(B, H * W)
    member = t > threshold
    if not target.requires_grad and bool((t[member] == 1).all()):
        # a binary target (the data's silhouettes): the min is its squared distance transform
        d_target = _sq_distance_to_set(member, H, W, pred.dtype)  # (B, HW)
    else:
        d_target = _weighted_min_sq_dist(t, member, H, W)  # (B, HW)
    d_pred = _weighted_min_sq_dist(p, p.detach() > threshold, H, W, need=t != 0)  # used as t * d_pred
    return ((p * d_target).sum(1) + (t * d_pred).sum(1)).mean()


def mask_loss(
    pred: Tensor, target: Tensor, bce: str = "prob", affinity: str = "paper", threshold: float = 0.0
) -> MaskTerms:
    """Eq. 4, `L_M = L_bce + L_aff`, returned as its two parts so that each gets its own weight
    (the official code weights them 100 and 1e-4, `SSL_WEIGHTS["mask"]` / `["affinity"]`).

    Args: pred, target: (B, 1, H, W); bce: `mask_bce_loss` mode; affinity: `mask_affinity_loss` mode, or
    "none" (zero, e.g. for the pose network, whose official loss has no affinity term).
    Returns: MaskTerms(bce (), affinity ()).
    """
    b = mask_bce_loss(pred, target, mode=bce)
    if affinity == "none":
        return MaskTerms(b, pred.sum() * 0.0)
    return MaskTerms(b, mask_affinity_loss(pred, target, mode=affinity, threshold=threshold))


# ----------------------------------------------------------------------------------------------- Eq. 5, 7
def _cloud_chamfer(x: Tensor, y: Tensor, x_lengths=None, y_lengths=None) -> Tensor:
    """(N,) official training Chamfer: squared distances, mean per direction, directions added."""
    return chamfer_variant(x, y, squared=True, reduction="mean", x_lengths=x_lengths, y_lengths=y_lengths)


def geometric_cycle_loss(points: Tensor, points_views: Tensor) -> Tensor:
    """Eq. 5: `L_G = sum_{i=1..k} d_Ch(P^, P^_i)`, the reconstructions of the k rendered views against the
    input's reconstruction (official `--_3d_loss_type init_model`), batch mean.

    d_Ch is the official training Chamfer (module doc). Gradients flow into both clouds, as in main.py.
    Args:
        points: (B, P, 3) reconstruction of the input image.
        points_views: (B, k, Q, 3) reconstructions of its k projections.
    Returns: ().
    """
    sizes: dict[str, int] = {}
    _check_shape(points, "points", ["B", "P", 3], sizes)
    _check_shape(points_views, "points_views", ["B", "k", "Q", 3], sizes)
    B, k, Q, _ = points_views.shape
    P = points.shape[1]
    ref = points.unsqueeze(1).expand(B, k, P, 3).reshape(B * k, P, 3)
    d = _cloud_chamfer(ref, points_views.reshape(B * k, Q, 3))  # (B k,)
    return d.view(B, k).sum(1).mean()


def pose_cycle_loss(
    poses: Tensor, poses_pred: Tensor, reduction: str = "paper", wrap: bool = False
) -> Tensor:
    """Eq. 7: `L_pose = 1/k sum_i |v_i - v^_i|`, the k sampled viewpoints against the pose network's
    predictions on the corresponding projections, batch mean.

    reduction="paper": |.| is the L1 norm of the (azimuth, elevation) difference (summed over the two angles,
    mean over the k views); "official": `get_pose_loss(..., 'l1')` = `reduce_mean(abs(gt - pred))`, the mean
    over the angles too (half the paper's value). wrap: compare azimuths on the circle (`atan2(sin, cos)` of
    the difference); off in paper and code.
    Args: poses, poses_pred: (B, k, 2) radians. Returns: ().
    """
    sizes: dict[str, int] = {}
    _check_shape(poses, "poses", ["B", "k", 2], sizes)
    _check_shape(poses_pred, "poses_pred", ["B", "k", 2], sizes)
    diff = poses_pred - poses
    if wrap:
        az = torch.atan2(torch.sin(diff[..., 0]), torch.cos(diff[..., 0]))
        diff = torch.stack([az, diff[..., 1]], dim=-1)
    if reduction == "paper":
        return diff.abs().sum(-1).mean()
    if reduction == "official":
        return diff.abs().mean()
    raise ValueError(f'reduction must be "paper" or "official", got {reduction!r}')


# ----------------------------------------------------------------------------------------------- Eq. 9
def mine_neighbours(
    features: Tensor, k: int, bank: Tensor | None = None, self_indices: Tensor | None = None
) -> Neighbours:
    """Nearest neighbours in feature space (Sec. 3.3: Euclidean distances between the reconstruction
    encoder's features, `ReconstructionNet.encode`), for the nearest-neighbours consistency loss.

    Args:
        features: (B, D) queries.
        k: neighbours per query.
        bank: optional (M, D) features of the whole training set; None searches `features` itself and
            excludes each query's own row.
        self_indices: optional (B,) long, the row of each query in `bank` (excluded), e.g. the training
            index of the sample; ignored when bank is None.
    Returns:
        Neighbours(idx (B, k) long into the bank (or into features), dists (B, k) Euclidean, ascending).
    """
    sizes: dict[str, int] = {}
    _check_shape(features, "features", ["B", "D"], sizes)
    exclude = self_indices
    if bank is None:
        bank = features
        exclude = torch.arange(features.shape[0], device=features.device)
    _check_shape(bank, "bank", ["M", "D"], sizes)
    if exclude is not None:
        _check_shape(exclude, "self_indices", ["B"], sizes)
    M = bank.shape[0]
    avail = M - (1 if exclude is not None else 0)
    if not 1 <= k <= avail:
        raise ValueError(f"k must be in [1, {avail}] for a bank of {M} features, got {k}")
    K = k + (1 if exclude is not None else 0)
    q = features.detach().unsqueeze(0)  # (1, B, D)
    nn = knn_points(q, bank.detach().unsqueeze(0).to(q.dtype), K=K)
    idx, d2 = nn.idx[0], nn.dists[0]  # (B, K)
    if exclude is not None:
        drop = idx == exclude.to(idx.device)[:, None]  # at most one True per row (distinct indices)
        drop[:, -1] |= ~drop.any(1)  # self not among the K (ties): drop the farthest instead
        order = torch.argsort(drop.to(torch.int8), dim=1, stable=True)[:, :k]
        idx, d2 = idx.gather(1, order), d2.gather(1, order)
    return Neighbours(idx, d2.clamp(min=0).sqrt())


def nn_mask_loss(
    masks: Tensor, neighbour_masks: Tensor, bce: str = "prob", affinity: str = "paper", threshold: float = 0.0
) -> MaskTerms:
    """Eq. 9: `L_NN = sum_{i=1..n} L_M^i`, the mask loss (Eq. 4) of the input's cloud rendered from each
    neighbour's predicted viewpoint against that neighbour's silhouette (masks only: colours differ).

    Args:
        masks: (B, n, 1, H, W) projections of the input's reconstruction (e.g. `render_views` with the pose
            network's predictions for the n neighbour images).
        neighbour_masks: (B, n, 1, H, W) ground-truth silhouettes of the neighbours.
        bce, affinity, threshold: see `mask_loss`.
    Returns: MaskTerms(bce, affinity), each summed over the n neighbours, mean over the batch.
    """
    sizes: dict[str, int] = {}
    _check_shape(masks, "masks", ["B", "n", 1, "H", "W"], sizes)
    _check_shape(neighbour_masks, "neighbour_masks", ["B", "n", 1, "H", "W"], sizes)
    B, n, _, H, W = masks.shape
    terms = mask_loss(
        masks.reshape(B * n, 1, H, W),
        neighbour_masks.reshape(B * n, 1, H, W),
        bce=bce,
        affinity=affinity,
        threshold=threshold,
    )  # means over B * n
    return MaskTerms(terms.bce * n, terms.affinity * n)


# ----------------------------------------------------------------------------------------------- Eq. 10
def _split_half(points: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The kept points first (padded with the others), and their numbers: (B, P, 3), (B,)."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    return points.gather(1, order[..., None].expand_as(points)), keep.sum(1)


def symmetry_loss(points: Tensor, mode: str = "halves", axis: int = 1) -> Tensor:
    """Eq. 10, reflection symmetry about the plane normal to `axis` (default 1: the xz-plane), batch mean.

    mode="halves" (Eq. 10): `d_Ch(P^+, P^-)` with P^+ the points of positive coordinate and P^- the mirrored
    points of negative coordinate (points on the plane belong to both); a half that is empty gives 0.
    mode="mirror": `d_Ch(P^, mirror(P^))` on the whole cloud. Both are zero exactly for clouds that are
    their own mirror image. d_Ch: the official training Chamfer (module doc).
    Args: points: (B, P, 3). Returns: ().
    """
    _check_shape(points, "points", ["B", "P", 3])
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    flip = torch.ones(3, dtype=points.dtype, device=points.device)
    flip[axis] = -1
    mirrored = points * flip
    if mode == "mirror":
        return _cloud_chamfer(points, mirrored).mean()
    if mode != "halves":
        raise ValueError(f'mode must be "halves" or "mirror", got {mode!r}')
    c = points[..., axis].detach()
    pos, n_pos = _split_half(points, c >= 0)
    neg, n_neg = _split_half(mirrored, c <= 0)
    return _cloud_chamfer(pos, neg, n_pos, n_neg).mean()


# ----------------------------------------------------------------------------------------------- Eq. 6, 8, 11
def _combine(weights: dict[str, float], **terms: Tensor | None) -> Tensor:
    total = None
    for name, value in terms.items():
        if value is None:
            continue
        if name not in weights:
            raise KeyError(f"weights has no entry {name!r} (keys: {sorted(weights)})")
        part = weights[name] * value
        total = part if total is None else total + part
    if total is None:
        raise ValueError("at least one loss term must be given")
    return total


def reconstruction_objective(
    image: Tensor | None = None,
    mask: Tensor | None = None,
    affinity: Tensor | None = None,
    geometric: Tensor | None = None,
    nn: Tensor | None = None,
    nn_affinity: Tensor | None = None,
    symmetry: Tensor | None = None,
    weights: dict[str, float] | None = None,
) -> Tensor:
    """Eq. 6 / 11, the objective of N_rec: `alpha (L_I + L_M) + beta L_G + eta L_NN + kappa L_sym`, as
    `sum_name weights[name] * term` over the given () terms (None terms are left out: Eq. 6 is Eq. 11
    without nn and symmetry). Term names are `SSL_WEIGHTS` keys: mask / affinity are the two parts of
    L_M (`MaskTerms`), nn / nn_affinity those of L_NN. weights: default SSL_WEIGHTS. Returns ().
    """
    w = SSL_WEIGHTS if weights is None else weights
    return _combine(
        w,
        image=image,
        mask=mask,
        affinity=affinity,
        geometric=geometric,
        nn=nn,
        nn_affinity=nn_affinity,
        symmetry=symmetry,
    )


def pose_objective(
    image: Tensor | None = None,
    mask: Tensor | None = None,
    pose_cycle: Tensor | None = None,
    weights: dict[str, float] | None = None,
) -> Tensor:
    """Eq. 8, the objective of N_pose: `gamma (L_I + L_M) + rho L_pose` with the weights
    `pose_image`, `pose_mask`, `pose_cycle` (official main.py `pose_loss`: image and mask BCE of the input
    view, no affinity, plus the pose cycle term). None terms are left out. Returns ().
    """
    w = SSL_WEIGHTS if weights is None else weights
    return _combine(w, pose_image=image, pose_mask=mask, pose_cycle=pose_cycle)
