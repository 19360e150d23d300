"""Evaluation of "From Image Collections to Point Clouds with Self-supervised Shape and Pose Networks"
(Navaneet et al., CVPR 2020, Sec. 4.3), as plain functions returning per-sample values (B,), which a
LightningModule accumulates (e.g. torchmetrics `CatMetric`) and reduces over the split.

Reconstruction (`reconstruction_metrics`): predictions live in a self-learnt canonical frame, so one global
rotation R, fitted on the validation split by minimising Chamfer (`geometry.fit_rotation_chamfer`, the
official `src/evaluation/align_pcl_transform.py` optimises three Euler angles with Adam instead), is applied
to every prediction (`aligned = pred @ R`); clouds with more than 1024 points are randomly subsampled to
1024; Chamfer and EMD are "scaled by 100" (Sec. 4.2).

Chamfer conventions (name -> (squared, reduction, scale), `CHAMFER_METRICS`):
* "paper" (the reported one here): the definition the paper states (Sec. 4.3),
  `sum_{x in P} min_y ||x - y||^2 + sum_{x in P^} min_y ||x - y||^2`, squared distances summed (not averaged)
  over the points, x100.
* every `geometry.CHAMFER_VARIANTS` key, e.g. "capnet_x100" (Euclidean, mean, x100: the lineage's metric
  code, 3D-LMNet/DIFFER `get_rec_metrics`, `reduce_mean(sqrt(dists))` per direction) and
  "mean_squared_x1000" (what ssl_3d_recon `src/evaluation/pcl_loss_saved.py` prints: squared, mean, x1000).
  The magnitudes of the paper's tables (5-14 for unit-size objects) are those of a mean-reduced metric,
  not of a sum over 1024 points; compare numbers with the tables only under a stated convention.
EMD conventions (`EMD_METRICS`): "paper" `min_phi sum_x ||x - phi(x)||_2` (sum of matched Euclidean
distances), x100; "mean_x100" the mean matched Euclidean distance x100 (3D-LMNet/DIFFER `get_rec_metrics`);
"mean_squared_x100" the mean matched squared distance x100 (capnet `src/utils_metrics.py get_metrics`).

Pose (`pose_errors`, `pose_metrics`): the angular error is the geodesic angle between the camera rotations
of the predicted and ground-truth (azimuth, elevation) (`viewpoint_rotation`, the rotation of the official
`world2cam`, ssl_3d_recon src/proj_codes.py); Table 5 reports its median and the accuracy (percentage of
errors below 30 degrees), "No-flip" and "Flip": with flip the prediction is rotated by 180 degrees in
azimuth when its error exceeds 90 degrees (Sec. 4.3). The official repository has no pose evaluation code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from geometry.cameras import _check_shape
from geometry.pointcloud import CHAMFER_VARIANTS, chamfer_variant, emd_approx, emd_exact
from geometry.rotations import so3_relative_angle

__all__ = [
    "CHAMFER_METRICS",
    "EMD_METRICS",
    "PoseMetrics",
    "ReconstructionMetrics",
    "apply_rotation",
    "normalize_to_unit_box",
    "pose_errors",
    "pose_metrics",
    "reconstruction_metrics",
    "subsample_points",
    "viewpoint_rotation",
]

CHAMFER_METRICS: dict[str, tuple[bool, str, float]] = {"paper": (True, "sum", 100.0), **CHAMFER_VARIANTS}
# name -> (reduction over points, squared distances, scale)
EMD_METRICS: dict[str, tuple[str, bool, float]] = {
    "paper": ("sum", False, 100.0),
    "mean_x100": ("mean", False, 100.0),
    "mean_squared_x100": ("mean", True, 100.0),
}


class ReconstructionMetrics(NamedTuple):
    """Per-cloud metrics: chamfer (B,), emd (B,), in the conventions that were asked for."""

    chamfer: Tensor
    emd: Tensor


class PoseMetrics(NamedTuple):
    """median_error_deg (), accuracy_percent () (errors < threshold), errors_deg (B,)."""

    median_error_deg: Tensor
    accuracy_percent: Tensor
    errors_deg: Tensor


# ----------------------------------------------------------------------------------------------- clouds
def apply_rotation(points: Tensor, R: Tensor) -> Tensor:
    """`points @ R` (row vectors, the `fit_rotation_chamfer` convention). points (B, P, 3); R (3, 3) or
    (B, 3, 3). Returns (B, P, 3)."""
    _check_shape(points, "points", ["B", "P", 3])
    if R.dim() == 2:
        _check_shape(R, "R", [3, 3])
        return points @ R.to(points)
    _check_shape(R, "R", [points.shape[0], 3, 3])
    return torch.bmm(points, R.to(points))


def subsample_points(points: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n random points of each cloud (without replacement, one permutation per cloud) when P > n, else the
    cloud itself (Sec. 4.3: "we randomly sample 1024 points from the reconstructions if they contain higher
    number of points"). points (B, P, 3). Returns (B, min(P, n), 3)."""
    _check_shape(points, "points", ["B", "P", 3])
    B, P, _ = points.shape
    if P <= n:
        return points
    idx = torch.stack([torch.randperm(P, generator=generator)[:n] for _ in range(B)]).to(points.device)
    return points.gather(1, idx[..., None].expand(B, n, 3))


def normalize_to_unit_box(points: Tensor, clip: float | None = None) -> Tensor:
    """Centre each cloud's bounding box at the origin and scale its longest side to 1 (the `scale` of
    ssl_3d_recon src/evaluation/pcl_loss_saved.py; it computes the predictions' box on coordinates clipped
    to [-0.5, 0.5], `clip=0.5`, and scales the unclipped points). points (B, P, 3). Returns (B, P, 3)."""
    _check_shape(points, "points", ["B", "P", 3])
    ref = points if clip is None else points.clamp(-clip, clip)
    lo, hi = ref.amin(1, keepdim=True), ref.amax(1, keepdim=True)  # (B, 1, 3)
    size = (hi - lo).amax(-1, keepdim=True).clamp(min=torch.finfo(points.dtype).tiny)  # (B, 1, 1)
    return (points - (lo + hi) / 2) / size


def _chamfer(pred: Tensor, gt: Tensor, name: str) -> Tensor:
    if name not in CHAMFER_METRICS:
        raise KeyError(f"chamfer must be one of {sorted(CHAMFER_METRICS)}, got {name!r}")
    squared, reduction, scale = CHAMFER_METRICS[name]
    return chamfer_variant(pred, gt, squared=squared, reduction=reduction, scale=scale)


def _emd(pred: Tensor, gt: Tensor, name: str, method: str) -> Tensor:
    if name not in EMD_METRICS:
        raise KeyError(f"emd must be one of {sorted(EMD_METRICS)}, got {name!r}")
    reduction, squared, scale = EMD_METRICS[name]
    if pred.shape != gt.shape:
        raise ValueError(
            f"EMD needs clouds of equal size, got pred {tuple(pred.shape)} and gt {tuple(gt.shape)}"
        )
    P = pred.shape[1]
    if method == "exact":
        assignment = emd_exact(pred, gt).assignment
        matched = gt.gather(1, assignment[..., None].expand_as(gt))
        d2 = (pred - matched).square().sum(-1)  # (B, P)
        d = d2 if squared else d2.clamp(min=0).sqrt()
        per = d.sum(1) if reduction == "sum" else d.mean(1)
    elif method == "approx":
        if squared:
            raise ValueError('emd="mean_squared_x100" needs emd_method="exact"')
        per = emd_approx(pred, gt) * (P if reduction == "sum" else 1)
    else:
        raise ValueError(f'emd_method must be "exact" or "approx", got {method!r}')
    return scale * per


def reconstruction_metrics(
    pred: Tensor,
    gt: Tensor,
    R: Tensor | None = None,
    chamfer: str = "paper",
    emd: str = "paper",
    emd_method: str = "exact",
    n_points: int = 1024,
    generator: torch.Generator | None = None,
) -> ReconstructionMetrics:
    """Chamfer and EMD of predicted clouds against the ground truth after one global rotation.

    Args:
        pred: (B, P, 3) predictions in the network's frame. gt: (B, Q, 3) ground truth.
        R: (3, 3) rotation fitted on the validation split (`geometry.fit_rotation_chamfer(val_pred,
            val_gt).R`), applied as `pred @ R`; None for none.
        chamfer: a `CHAMFER_METRICS` name. emd: an `EMD_METRICS` name.
        emd_method: "exact" (`geometry.emd_exact`, CPU Hungarian, the reported one) or "approx" (Sinkhorn).
        n_points: clouds with more points are subsampled to this many (seeded by `generator`); EMD needs
            both clouds to end with the same number of points.
    Returns:
        ReconstructionMetrics(chamfer (B,), emd (B,)).
    """
    sizes: dict[str, int] = {}
    _check_shape(pred, "pred", ["B", "P", 3], sizes)
    _check_shape(gt, "gt", ["B", "Q", 3], sizes)
    pred = pred.detach()
    gt = gt.detach().to(pred.dtype)
    if R is not None:
        pred = apply_rotation(pred, R.detach())
    pred = subsample_points(pred, n_points, generator)
    gt = subsample_points(gt, n_points, generator)
    return ReconstructionMetrics(_chamfer(pred, gt, chamfer), _emd(pred, gt, emd, emd_method))


# ----------------------------------------------------------------------------------------------- pose
def viewpoint_rotation(azimuth: Tensor, elevation: Tensor) -> Tensor:
    """Camera rotation of a viewpoint, as the official `world2cam` (ssl_3d_recon src/proj_codes.py):
    `R = R_el @ R_az`, R_az a rotation by the azimuth about the x axis, R_el by the elevation about y,
    column vectors (`x_cam = R x_world - (0, 0, d)`).

    The geodesic angle between two such rotations does not depend on these axis and sign choices (the trace
    of `R_el1 R_az(a1 - a2) R_el2^T` is the same for any pair of perpendicular axes), so the pose error of
    any (azimuth, elevation) camera convention is the same.
    Args: azimuth, elevation: (B,) radians. Returns: (B, 3, 3).
    """
    sizes: dict[str, int] = {}
    _check_shape(azimuth, "azimuth", ["B"], sizes)
    _check_shape(elevation, "elevation", ["B"], sizes)
    ca, sa, ce, se = azimuth.cos(), azimuth.sin(), elevation.cos(), elevation.sin()
    one, zero = torch.ones_like(ca), torch.zeros_like(ca)
    R_az = torch.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1).view(-1, 3, 3)
    R_el = torch.stack([ce, zero, se, zero, one, zero, -se, zero, ce], -1).view(-1, 3, 3)
    return R_el @ R_az


def pose_errors(
    pred: Tensor,
    gt: Tensor,
    flip: bool = False,
    alignment: Tensor | None = None,
    rotation_fn: Callable[[Tensor, Tensor], Tensor] = viewpoint_rotation,
) -> Tensor:
    """Angular error in degrees between predicted and ground-truth viewpoints (geodesic angle of
    `R_pred R_gt^T`, exact: no acos extrapolation).

    Args:
        pred, gt: (B, 2) (azimuth, elevation) radians.
        flip: Table 5's "Flip": where the error exceeds 90 degrees, the error of the prediction rotated by
            180 degrees in azimuth is used instead (Sec. 4.3).
        alignment: optional (3, 3) rotation from the prediction frame to the ground-truth frame in the
            column-vector convention of `rotation_fn` (the predicted camera becomes `R_pred @ alignment`);
            None when the learnt frame is taken as the ground-truth one (the paper does not describe one).
        rotation_fn: (azimuth (B,), elevation (B,)) -> (B, 3, 3) camera rotations.
    Returns: (B,) degrees in [0, 180].
    """
    sizes: dict[str, int] = {}
    _check_shape(pred, "pred", ["B", 2], sizes)
    _check_shape(gt, "gt", ["B", 2], sizes)
    gt = gt.to(pred)
    R_gt = rotation_fn(gt[:, 0], gt[:, 1])

    def error(p: Tensor) -> Tensor:
        R = rotation_fn(p[:, 0], p[:, 1])
        if alignment is not None:
            R = R @ alignment.to(R)
        cos = so3_relative_angle(R, R_gt, cos_angle=True, eps=1e-3)
        return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))

    err = error(pred)
    if flip:
        flipped = torch.stack([pred[:, 0] + math.pi, pred[:, 1]], dim=1)
        err = torch.where(err > 90.0, error(flipped), err)
    return err


def pose_metrics(errors_deg: Tensor, threshold_deg: float = 30.0) -> PoseMetrics:
    """Median angular error and accuracy (percentage of errors below `threshold_deg`, Table 5) of the
    errors of a whole split. errors_deg: (N,) from `pose_errors`. NaN errors count as wrong."""
    _check_shape(errors_deg, "errors_deg", ["N"])
    if errors_deg.numel() == 0:
        raise ValueError("errors_deg is empty")
    e = torch.nan_to_num(errors_deg, nan=180.0)
    median = torch.quantile(e, 0.5)  # numpy's median (mean of the middle two for even N)
    accuracy = 100.0 * (e < threshold_deg).to(e.dtype).mean()
    return PoseMetrics(median, accuracy, e)
