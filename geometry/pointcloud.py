"""Point-cloud operations: k nearest neighbours, Chamfer distance (PyTorch3D's and the literature's
variants), exact and approximate Earth Mover's Distance, and the rotation fit used before evaluation.

`knn_points`, `knn_gather` and `chamfer_distance` keep PyTorch3D's names, argument meanings, padding
conventions and reductions (pytorch3d/ops/knn.py and pytorch3d/loss/chamfer.py, v0.7.9), taking padded
tensors plus optional lengths instead of `Pointclouds`. They run in pure PyTorch; `backend="pytorch3d"`
routes the neighbour search through PyTorch3D when it is importable.

Shapes: N batch, P1 / P2 points per cloud, D point dimension, K neighbours, S cloud pairs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from geometry.backend import resolve_backend
from geometry.rotations import (
    _safe_sqrt_positive,
    axis_angle_to_matrix,
    quaternion_to_axis_angle,
    standardize_quaternion,
)

# Elements of one (N, chunk, P2) distance block in `knn_points`: 2**24 values = 64 MiB in float32.
KNN_CHUNK_ELEMENTS = 2**24


class KNN(NamedTuple):
    """Result of `knn_points` (same fields as PyTorch3D's `KNN`)."""

    dists: torch.Tensor  # (N, P1, K) squared (norm=2) or L1 (norm=1) distances
    idx: torch.Tensor  # (N, P1, K) int64 indices into p2
    knn: torch.Tensor | None  # (N, P1, K, D) gathered neighbours when return_nn, else None


class EMD(NamedTuple):
    """Result of `emd_exact`."""

    dist: torch.Tensor  # (B,) mean matched Euclidean distance
    assignment: torch.Tensor  # (B, P) int64: x[b, i] is matched to y[b, assignment[b, i]]


# ---------------------------------------------------------------------------------------------------------
# Shape checks
# ---------------------------------------------------------------------------------------------------------


def _check_points(name: str, p: torch.Tensor) -> None:
    if not torch.is_tensor(p) or p.ndim != 3:
        shape = tuple(p.shape) if torch.is_tensor(p) else type(p).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, P, D), got {shape}")


def _check_pair(n1: str, p1: torch.Tensor, n2: str, p2: torch.Tensor) -> None:
    _check_points(n1, p1)
    _check_points(n2, p2)
    if p1.shape[0] != p2.shape[0] or p1.shape[2] != p2.shape[2]:
        raise ValueError(
            f"{n1} (N, P1, D) and {n2} (N, P2, D) must share N and D, got {tuple(p1.shape)} and "
            f"{tuple(p2.shape)}"
        )


def _lengths_or_full(name: str, lengths: torch.Tensor | None, p: torch.Tensor) -> torch.Tensor:
    """`lengths` checked to be (N,) in [0, P], or a full (N,) int64 tensor of P when None."""
    N, P = p.shape[:2]
    if lengths is None:
        return torch.full((N,), P, dtype=torch.int64, device=p.device)
    if not torch.is_tensor(lengths) or lengths.ndim != 1 or lengths.shape[0] != N:
        shape = tuple(lengths.shape) if torch.is_tensor(lengths) else type(lengths).__name__
        raise ValueError(f"{name} must be a tensor of shape (N,) = ({N},), got {shape}")
    if lengths.numel() and (lengths.max() > P or lengths.min() < 0):
        raise ValueError(f"{name} values must lie in [0, {P}]")
    return lengths.to(device=p.device, dtype=torch.int64)


def _valid_mask(lengths: torch.Tensor, P: int) -> torch.Tensor:
    """(N, P) bool, True for real (non-padded) points."""
    return torch.arange(P, device=lengths.device)[None] < lengths[:, None]


# ---------------------------------------------------------------------------------------------------------
# k nearest neighbours
# ---------------------------------------------------------------------------------------------------------


def knn_gather(x: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Gather `x` at the neighbour indices of `knn_points` (PyTorch3D's `knn_gather`).

    Args:
        x: (N, M, U) features.
        idx: (N, L, K) int64 indices into M.
        lengths: (N,) number of real entries of each x, or None for M.
    Returns:
        (N, L, K, U) with `out[n, l, k] = x[n, idx[n, l, k]]`, zero where k >= lengths[n].
    """
    _check_points("x", x)
    if idx.ndim != 3 or idx.shape[0] != x.shape[0]:
        raise ValueError(f"idx must be of shape (N, L, K) with N={x.shape[0]}, got {tuple(idx.shape)}")
    N, M, U = x.shape
    L, K = idx.shape[1:]
    lengths = _lengths_or_full("lengths", lengths, x)
    out = x.gather(1, idx.reshape(N, L * K, 1).expand(-1, -1, U)).view(N, L, K, U)
    k_valid = torch.arange(K, device=x.device)[None] < lengths[:, None]  # (N, K)
    return torch.where(k_valid[:, None, :, None], out, torch.zeros_like(out))


def _knn_idx_chunk(
    a: torch.Tensor, b: torch.Tensor, b_invalid: torch.Tensor | None, k: int, norm: int, sorted_: bool
) -> torch.Tensor:
    """Indices (N, C, k) of the k smallest distances from the rows of a (N, C, D) to b (N, P2, D)."""
    if norm == 2:
        # |a|^2 + |b|^2 - 2 a.b: one batched matmul. The exact distances are recomputed afterwards from the
        # gathered points, so this expression only has to rank the candidates.
        d = torch.baddbmm((b * b).sum(-1)[:, None, :], a, b.transpose(1, 2), alpha=-2.0)
        d.add_((a * a).sum(-1, keepdim=True))
    else:
        d = torch.cdist(a, b, p=1.0)
    if b_invalid is not None:
        d.masked_fill_(b_invalid[:, None, :], float("inf"))
    if k == 1:
        return d.argmin(dim=2, keepdim=True)
    return d.topk(k, dim=2, largest=False, sorted=sorted_).indices


def _knn_points_torch(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    norm: int,
    K: int,
    return_sorted: bool,
    chunk_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    N, P1, D = p1.shape
    P2 = p2.shape[1]
    k_eff = min(K, P2)
    valid1 = _valid_mask(lengths1, P1)  # (N, P1)
    valid2 = _valid_mask(lengths2, P2)  # (N, P2)
    if k_eff == 0 or P1 == 0:
        idx = torch.zeros(N, P1, K, dtype=torch.int64, device=p1.device)
        return p1.new_zeros(N, P1, K) + 0.0 * p1.sum() + 0.0 * p2.sum(), idx

    # Neighbour selection (not differentiable): chunks of rows of p1, clouds centred on the mean of the real
    # points of p2 to limit cancellation in the matmul form of the squared distance.
    with torch.no_grad():
        w2 = valid2.to(p2.dtype)[..., None]
        centre = torch.where(valid2[..., None], p2, 0.0).sum(1, keepdim=True) / w2.sum(
            1, keepdim=True
        ).clamp_min(1.0)
        a_all = torch.where(valid1[..., None], p1 - centre, torch.zeros_like(p1))
        b = torch.where(valid2[..., None], p2 - centre, torch.zeros_like(p2))
        b_invalid = None if bool(valid2.all()) else ~valid2
        if chunk_size is None:
            chunk_size = max(1, KNN_CHUNK_ELEMENTS // max(1, N * P2))
        idx = torch.cat(
            [
                _knn_idx_chunk(a, b, b_invalid, k_eff, norm, return_sorted)
                for a in a_all.split(chunk_size, dim=1)
            ],
            dim=1,
        )  # (N, P1, k_eff)

    # Differentiable distances from the gathered neighbours. Padded points (which may hold anything, even
    # NaN) are replaced before the difference, so that they get zero gradients and cannot poison others.
    slot_valid = valid1[:, :, None] & valid2.gather(1, idx.view(N, -1)).view_as(idx)  # (N, P1, k_eff)
    p1v = torch.where(valid1[..., None], p1, torch.zeros_like(p1))
    nn = p2.gather(1, idx.reshape(N, P1 * k_eff, 1).expand(-1, -1, D)).view(N, P1, k_eff, D)
    nn = torch.where(slot_valid[..., None], nn, p1v.detach()[:, :, None])
    diff = p1v[:, :, None, :] - nn
    dists = diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)  # (N, P1, k_eff)
    if k_eff > 1 and (return_sorted or bool((lengths2 < k_eff).any())):
        # re-rank by the exact distances (the matmul ranking can swap near-ties); padded slots go last
        order = dists.detach().masked_fill(~slot_valid, float("inf")).argsort(dim=2, stable=True)
        dists, idx = dists.gather(2, order), idx.gather(2, order)
    if K > k_eff:
        dists = F.pad(dists, (0, K - k_eff))
        idx = F.pad(idx, (0, K - k_eff))
    # PyTorch3D pads with 0 (dists and idx) where k >= lengths2[n] and where i >= lengths1[n].
    keep = valid1[:, :, None] & (torch.arange(K, device=p1.device)[None, None] < lengths2[:, None, None])
    dists = torch.where(keep, dists, torch.zeros_like(dists))
    idx = torch.where(keep, idx, torch.zeros_like(idx))
    return dists, idx


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor | None = None,
    lengths2: torch.Tensor | None = None,
    norm: int = 2,
    K: int = 1,
    return_nn: bool = False,
    return_sorted: bool = True,
    backend: str | None = None,
    chunk_size: int | None = None,
) -> KNN:
    """K nearest neighbours in p2 of every point of p1, with PyTorch3D's semantics.

    Args:
        p1: (N, P1, D) query clouds, padded.
        p2: (N, P2, D) reference clouds, padded.
        lengths1: (N,) int64 number of real points of each p1 cloud, None for P1.
        lengths2: (N,) int64 number of real points of each p2 cloud, None for P2.
        norm: 2 for squared Euclidean distances, 1 for L1 distances.
        K: number of neighbours (may exceed P2; the missing ones are padded).
        return_nn: also return the neighbours' coordinates (`knn_gather(p2, idx, lengths2)`).
        return_sorted: neighbours in ascending distance order (when False the order is unspecified).
        backend: "torch", "pytorch3d" or None for `geometry.backend.get_backend()`.
        chunk_size: rows of p1 per block in the torch backend; None picks
            `KNN_CHUNK_ELEMENTS // (N * P2)` so that one (N, chunk, P2) distance block holds at most
            2**24 values (64 MiB in float32). No (N, P1, P2) tensor is formed and nothing of size P2 is kept
            for backward: autograd stores only the (N, P1, K, D) gathered neighbours.
    Returns:
        KNN(dists (N, P1, K), idx (N, P1, K) int64, knn (N, P1, K, D) or None). dists and idx are 0 where
        k >= lengths2[n] and where i >= lengths1[n]. dists is differentiable w.r.t. p1 and p2.

    Near-ties (two candidates within float rounding of |x|^2) may resolve to a different, equally near index
    than PyTorch3D's kernel; the distances then agree.
    """
    _check_pair("p1", p1, "p2", p2)
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm}")
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    lengths1 = _lengths_or_full("lengths1", lengths1, p1)
    lengths2 = _lengths_or_full("lengths2", lengths2, p2)
    if resolve_backend(backend) == "pytorch3d":
        from pytorch3d.ops import knn_points as p3d_knn_points

        out = p3d_knn_points(
            p1, p2, lengths1, lengths2, norm=norm, K=K, return_nn=return_nn, return_sorted=return_sorted
        )
        return KNN(out.dists, out.idx, out.knn)
    dists, idx = _knn_points_torch(p1, p2, lengths1, lengths2, norm, K, return_sorted, chunk_size)
    nn = knn_gather(p2, idx, lengths2) if return_nn else None
    return KNN(dists, idx, nn)


# ---------------------------------------------------------------------------------------------------------
# Chamfer distance (PyTorch3D)
# ---------------------------------------------------------------------------------------------------------


def _chamfer_single_direction(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    x_normals: torch.Tensor | None,
    y_normals: torch.Tensor | None,
    weights: torch.Tensor | None,
    point_reduction: str | None,
    norm: int,
    abs_cosine: bool,
    backend: str | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x -> y term: per-point (N, P1) or point-reduced (N,) distances and normal terms."""
    N, P1, _ = x.shape
    if weights is not None and bool(weights.sum() == 0.0):
        # PyTorch3D loss/chamfer.py `_chamfer_distance_single_direction`: with all-zero weights both terms
        # are `(x.sum((1, 2)) * weights.view(N, 1)) * 0.0`, an (N, N) broadcast of zeros kept in x's graph,
        # and the normals term is that tensor too, even when no normals are given.
        zeros = (x.sum((1, 2)) * weights.view(N, 1)) * 0.0
        return zeros, (x.sum((1, 2)) * weights.view(N, 1)) * 0.0
    x_valid = _valid_mask(x_lengths, P1)  # (N, P1)
    x_nn = knn_points(x, y, x_lengths, y_lengths, norm=norm, K=1, backend=backend)
    cham_x = torch.where(x_valid, x_nn.dists[..., 0], 0.0)  # (N, P1)
    if weights is not None:
        cham_x = cham_x * weights.view(N, 1)

    cham_norm_x = None
    if x_normals is not None and y_normals is not None:
        x_normals_near = knn_gather(y_normals, x_nn.idx, y_lengths)[..., 0, :]  # (N, P1, 3)
        cos = F.cosine_similarity(x_normals, x_normals_near, dim=2, eps=1e-6)
        cham_norm_x = torch.where(x_valid, 1 - (cos.abs() if abs_cosine else cos), 0.0)  # (N, P1)
        if weights is not None:
            cham_norm_x = cham_norm_x * weights.view(N, 1)

    if point_reduction == "max":
        return cham_x.max(1).values, None  # (N,)
    if point_reduction is not None:
        cham_x = cham_x.sum(1)  # (N,)
        cham_norm_x = cham_norm_x.sum(1) if cham_norm_x is not None else None
        if point_reduction == "mean":
            n = x_lengths.clamp(min=1).to(cham_x.dtype)
            cham_x = cham_x / n
            cham_norm_x = cham_norm_x / n if cham_norm_x is not None else None
    return cham_x, cham_norm_x


def chamfer_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    batch_reduction: str | None = "mean",
    point_reduction: str | None = "mean",
    norm: int = 2,
    single_directional: bool = False,
    abs_cosine: bool = True,
    backend: str | None = None,
):
    """Chamfer distance between padded clouds, exactly as PyTorch3D's `chamfer_distance` (v0.7.9).

    With `cx[n, i] = min_j d(x[n, i], y[n, j])` and `cy[n, j] = min_i d(y[n, j], x[n, i])`, d the squared
    Euclidean (norm=2) or L1 (norm=1) distance, padded points excluded:
    point_reduction "mean": `cx.sum / x_lengths + cy.sum / y_lengths`; "sum": `cx.sum + cy.sum`;
    "max" (Hausdorff): `max(cx.max, cy.max)`; None: the tuple `(cx (N, P1), cy (N, P2))` (only `cx` when
    single_directional). batch_reduction: "sum", "mean" (divided by N, or by weights.sum() when weights are
    given and non-zero) or None ((N,)). `weights` (N,) multiply each cloud's per-point terms.

    Args:
        x: (N, P1, D) padded clouds. y: (N, P2, D) padded clouds.
        x_lengths, y_lengths: (N,) int64 numbers of real points, None for full clouds.
        x_normals: (N, P1, D), y_normals: (N, P2, D) optional normals; the normal term is
            `1 - |cos|` (`1 - cos` when abs_cosine is False) with the nearest neighbour's normal.
        weights: (N,) non-negative per-cloud weights.
        batch_reduction: "mean", "sum" or None (must be None when point_reduction is None).
        point_reduction: "mean", "sum", "max" or None.
        norm: 2 (squared Euclidean) or 1 (L1).
        single_directional: only the x -> y term.
        abs_cosine: ignore the normals' orientation.
        backend: knn backend, see `knn_points`.
    Returns:
        (loss, loss_normals): reduced tensors (or per-point tuples as described); loss_normals is None
        without normals.

    All-zero weights (weights.sum() == 0), exactly as PyTorch3D `loss/chamfer.py`: each direction's term
    and its normals term become `(x.sum((1, 2)) * weights.view(N, 1)) * 0.0`, zeros of shape (N, N) (a
    broadcast) that keep the graph of x (and of y for the y -> x direction), so gradients are zeros. Then
    loss_normals is **not None even without normals** (except for point_reduction "max" in both directions,
    where it is None):
    point_reduction "mean"/"sum" with batch_reduction None give loss and loss_normals (N, N); None gives the
    tuples ((N, N), (N, N)) (one (N, N) when single_directional); batch_reduction "sum"/"mean" (divided by 1)
    give 0-d zeros for both.
    """
    _check_pair("x", x, "y", y)
    if batch_reduction not in (None, "mean", "sum"):
        raise ValueError(f'batch_reduction must be one of ["mean", "sum"] or None, got {batch_reduction!r}')
    if point_reduction not in (None, "mean", "sum", "max"):
        raise ValueError(
            f'point_reduction must be one of ["mean", "sum", "max"] or None, got {point_reduction!r}'
        )
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("batch_reduction must be None if point_reduction is None")
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm}")
    if point_reduction == "max" and (x_normals is not None or y_normals is not None):
        raise ValueError('x_normals and y_normals must be None if point_reduction is "max"')
    N, P1, D = x.shape
    P2 = y.shape[1]
    for name, nrm, P in (("x_normals", x_normals, P1), ("y_normals", y_normals, P2)):
        if nrm is not None and (nrm.ndim != 3 or tuple(nrm.shape) != (N, P, D)):
            raise ValueError(f"{name} must be of shape (N, P, D) = ({N}, {P}, {D}), got {tuple(nrm.shape)}")
    if weights is not None:
        if weights.ndim != 1 or weights.shape[0] != N:
            raise ValueError(f"weights must be of shape (N,) = ({N},), got {tuple(weights.shape)}")
        if not (weights >= 0).all():
            raise ValueError("weights cannot be negative")
    x_lengths = _lengths_or_full("x_lengths", x_lengths, x)
    y_lengths = _lengths_or_full("y_lengths", y_lengths, y)

    args = (weights, point_reduction, norm, abs_cosine, backend)
    cham_x, norm_x = _chamfer_single_direction(x, y, x_lengths, y_lengths, x_normals, y_normals, *args)
    if single_directional:
        loss, loss_normals = cham_x, norm_x
    else:
        cham_y, norm_y = _chamfer_single_direction(y, x, y_lengths, x_lengths, y_normals, x_normals, *args)
        if point_reduction == "max":
            loss, loss_normals = torch.maximum(cham_x, cham_y), None
        elif point_reduction is not None:
            loss = cham_x + cham_y
            loss_normals = norm_x + norm_y if norm_x is not None else None
        else:
            loss = (cham_x, cham_y)
            loss_normals = (norm_x, norm_y) if norm_x is not None else None
    if batch_reduction is None:
        return loss, loss_normals
    div = x.new_tensor(float(max(N, 1)))
    if weights is not None:
        w = weights.sum().to(x.dtype)
        div = torch.where(w == 0, torch.ones_like(w), w)
    loss = loss.sum() / div if batch_reduction == "mean" else loss.sum()
    if loss_normals is not None:
        loss_normals = loss_normals.sum() / div if batch_reduction == "mean" else loss_normals.sum()
    return loss, loss_normals


# ---------------------------------------------------------------------------------------------------------
# Chamfer variants of the single-view reconstruction literature
# ---------------------------------------------------------------------------------------------------------

# name -> (squared, reduction, scale); see `chamfer_variant`.
CHAMFER_VARIANTS: dict[str, tuple[bool, str, float]] = {
    "capnet_x100": (False, "mean", 100.0),
    "psgn_sum_squared": (True, "sum", 1.0),
    "mean_squared": (True, "mean", 1.0),
    "mean_squared_x1000": (True, "mean", 1000.0),
}


def chamfer_variant(
    x: torch.Tensor,
    y: torch.Tensor,
    squared: bool = False,
    reduction: str = "mean",
    scale: float = 1.0,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-cloud bidirectional Chamfer distance in one of the literature's conventions.

    `scale * (R_i d(x_i, y) + R_j d(y_j, x))` with d the Euclidean nearest-neighbour distance (its square
    when `squared`), R the mean or the sum over real points. Both directions are *added*, not averaged.

    | `CHAMFER_VARIANTS` key | sq. | red. | scale | convention of |
    |---|---|---|---|---|
    | "capnet_x100" | no | mean | 100 | CAPNet (Navaneet et al., AAAI 2019), DIFFER (AAAI 2020), SSL point |
    | | | | | clouds (Navaneet et al., CVPR 2020): Chamfer columns of their ShapeNet tables |
    | "psgn_sum_squared" | yes | sum | 1 | PSGN (Fan et al., CVPR 2017), Eq. (1), its training loss |
    | "mean_squared" | yes | mean | 1 | PyTorch3D `chamfer_distance` default, per cloud |
    | "mean_squared_x1000" | yes | mean | 1000 | tables that print the squared/mean Chamfer x1e-3 |

    Check a paper's own definition (squared or not, sum or mean, scale, and how the clouds are normalised
    and sampled) before comparing numbers with its tables.

    Args:
        x: (N, P1, 3) clouds. y: (N, P2, 3) clouds.
        squared: squared Euclidean distances instead of Euclidean ones.
        reduction: "mean" or "sum" over the points of each direction.
        scale: factor applied to the result.
        x_lengths, y_lengths: (N,) int64 numbers of real points, None for full clouds.
    Returns:
        (N,) Chamfer distance of each cloud pair (differentiable).
    """
    _check_pair("x", x, "y", y)
    if reduction not in ("mean", "sum"):
        raise ValueError(f'reduction must be "mean" or "sum", got {reduction!r}')
    cx, cy = chamfer_distance(
        x, y, x_lengths=x_lengths, y_lengths=y_lengths, batch_reduction=None, point_reduction=None
    )[0]  # (N, P1), (N, P2) squared distances, 0 at padded points
    if not squared:
        cx, cy = _safe_sqrt_positive(cx), _safe_sqrt_positive(cy)
    cx, cy = cx.sum(1), cy.sum(1)  # (N,)
    if reduction == "mean":
        x_n = _lengths_or_full("x_lengths", x_lengths, x).clamp(min=1).to(cx.dtype)
        y_n = _lengths_or_full("y_lengths", y_lengths, y).clamp(min=1).to(cy.dtype)
        cx, cy = cx / x_n, cy / y_n
    return scale * (cx + cy)


# ---------------------------------------------------------------------------------------------------------
# Earth Mover's Distance
# ---------------------------------------------------------------------------------------------------------


def _check_equal_clouds(x: torch.Tensor, y: torch.Tensor) -> None:
    _check_points("x", x)
    _check_points("y", y)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must both be of shape (B, P, D), got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def emd_exact(x: torch.Tensor, y: torch.Tensor) -> EMD:
    """Exact Earth Mover's Distance between equal-size clouds (evaluation; up to a few thousand points).

    The optimal one-to-one assignment minimising the summed Euclidean distance is found by
    `scipy.optimize.linear_sum_assignment` on the CPU, one cloud pair at a time (O(P^3) each, not for a
    training loop: use `emd_approx`). The returned distance is recomputed in torch from the assignment, so
    it is differentiable w.r.t. x and y for that fixed assignment.

    Args:
        x: (B, P, D) clouds. y: (B, P, D) clouds.
    Returns:
        EMD(dist (B,) mean matched Euclidean distance,
            assignment (B, P) int64: x[b, i] is matched to y[b, assignment[b, i]]).
    """
    _check_equal_clouds(x, y)
    from scipy.optimize import linear_sum_assignment

    B, P, D = x.shape
    cost = torch.cdist(x.detach().double(), y.detach().double(), compute_mode="donot_use_mm_for_euclid_dist")
    cost_np = cost.cpu().numpy()
    assignment = np.stack([linear_sum_assignment(c)[1] for c in cost_np]) if P else np.zeros((B, 0), np.int64)
    assignment = torch.as_tensor(assignment, dtype=torch.int64, device=x.device)  # (B, P)
    y_matched = y.gather(1, assignment[..., None].expand(-1, -1, D))  # (B, P, D)
    dist = _safe_sqrt_positive((x - y_matched).square().sum(-1)).mean(1)  # (B,)
    return EMD(dist, assignment)


def emd_approx(
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 0.01,
    iters: int = 100,
    eps_start: float = 1.0,
    detach_plan: bool = False,
) -> torch.Tensor:
    """Differentiable approximate EMD (entropic optimal transport, log-domain Sinkhorn), for training.

    Uniform masses 1/P1 on x and 1/P2 on y, Euclidean ground cost C. Sinkhorn's dual updates run in the log
    domain (Cuturi, NeurIPS 2013; log-domain stabilisation as in Peyre & Cuturi, "Computational Optimal
    Transport", 2019, Sec. 4.4) with eps annealed as `max(eps, eps_start * 2**-k)` (eps-scaling), the
    g-update last so that the y marginal holds exactly. Returns the transport cost `sum_ij P_ij C_ij` of
    the entropic plan, which for equal sizes is directly comparable to `emd_exact(x, y).dist`.

    Bias: at convergence `0 <= emd_approx - EMD <= eps * log(min(P1, P2))` (the entropic plan is feasible,
    and its regularised cost is no larger than the optimal plan's, whose entropy is at least log max(P1, P2));
    so eps is in the units of the points and the bias vanishes as eps -> 0, at the price of more iterations
    (roughly diameter / eps after annealing). Unconverged iterations leave the x marginal slightly off.

    Args:
        x: (B, P1, D) clouds. y: (B, P2, D) clouds.
        eps: final entropic regularisation, in distance units.
        iters: Sinkhorn iterations (each one f- and one g-update), including the annealing ones.
        eps_start: first eps of the annealing; set it near the clouds' diameter.
        detach_plan: run Sinkhorn without autograd and return `sum_ij P_ij C_ij` with P held fixed. The
            value is the same; the gradient is then `sum_ij P_ij dC_ij`, which is the exact gradient of the
            regularised cost `<P, C> - eps H(P)` at convergence (envelope theorem) and tends to the
            gradient of the exact EMD as eps -> 0, with autograd memory O(B * P1 * P2) instead of
            O(iters * B * P1 * P2). False: exact gradient of the returned value through all iterations.
    Returns:
        (B,) approximate mean matched Euclidean distance.
    """
    _check_pair("x", x, "y", y)
    if eps <= 0 or iters < 1:
        raise ValueError(f"eps must be > 0 and iters >= 1, got eps={eps}, iters={iters}")
    B, P1, _ = x.shape
    P2 = y.shape[1]
    cost = torch.cdist(x, y)  # (B, P1, P2) Euclidean
    log_a = -math.log(P1)
    log_b = -math.log(P2)
    f = x.new_zeros(B, P1, 1)
    g = x.new_zeros(B, 1, P2)
    e = eps
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_plan):
        c = cost.detach() if detach_plan else cost
        for k in range(iters):
            e = max(eps, eps_start * 2.0**-k)
            f = -e * torch.logsumexp((g - c) / e + log_b, dim=2, keepdim=True)  # (B, P1, 1)
            g = -e * torch.logsumexp((f - c) / e + log_a, dim=1, keepdim=True)  # (B, 1, P2)
        plan = torch.exp((f + g - c) / e + log_a + log_b)  # (B, P1, P2)
    return (plan * cost).sum((1, 2))


# ---------------------------------------------------------------------------------------------------------
# One global rotation aligning predicted clouds to the ground truth
# ---------------------------------------------------------------------------------------------------------


class RotationFit(NamedTuple):
    """Result of `fit_rotation_chamfer`."""

    R: torch.Tensor  # (3, 3) rotation, aligned = pred @ R
    loss: torch.Tensor  # () mean Chamfer of the aligned pairs (the objective below)


def _as_cloud_list(name: str, clouds: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    if torch.is_tensor(clouds):
        if clouds.ndim != 3 or clouds.shape[-1] != 3:
            raise ValueError(
                f"{name} must be of shape (S, P, 3) or a list of (P, 3), got {tuple(clouds.shape)}"
            )
        return list(clouds.unbind(0))
    clouds = list(clouds)
    for c in clouds:
        if not torch.is_tensor(c) or c.ndim != 2 or c.shape[-1] != 3:
            raise ValueError(f"every cloud of {name} must be of shape (P, 3)")
    return clouds


def _subsample_pad(
    clouds: list[torch.Tensor], max_points: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """At most max_points random points of each cloud, padded: (S, P, 3) and lengths (S,)."""
    sub = []
    for c in clouds:
        if c.shape[0] > max_points:
            c = c[torch.randperm(c.shape[0], generator=gen)[:max_points].to(c.device)]
        sub.append(c)
    lengths = torch.tensor([c.shape[0] for c in sub], dtype=torch.int64, device=sub[0].device)
    return torch.nn.utils.rnn.pad_sequence(sub, batch_first=True), lengths


def _random_axis_angles(n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """(n, 3) axis-angle vectors of rotations uniform on SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    return quaternion_to_axis_angle(standardize_quaternion(q)).to(dtype)  # angle in [0, pi]


class _Tiled(NamedTuple):
    """pred (S, P, 3), gt and the lengths tiled for up to C_max candidate rotations (built once)."""

    pred: torch.Tensor  # (S, P, 3)
    pred_len: torch.Tensor  # (C_max * S,)
    gt: torch.Tensor  # (C_max * S, Q, 3)
    gt_len: torch.Tensor  # (C_max * S,)


def _tile(
    pred: torch.Tensor, pred_len: torch.Tensor, gt: torch.Tensor, gt_len: torch.Tensor, c_max: int
) -> _Tiled:
    return _Tiled(pred, pred_len.repeat(c_max), gt.repeat(c_max, 1, 1), gt_len.repeat(c_max))


def _mean_chamfer(t: _Tiled, R: torch.Tensor, squared: bool) -> torch.Tensor:
    """(C,) mean over the S pairs of the Chamfer distance of pred @ R[c] to gt, for R (C, 3, 3), C <= C_max."""
    C = R.shape[0]
    S, P, _ = t.pred.shape
    rotated = torch.einsum("spd,cde->cspe", t.pred, R).reshape(C * S, P, 3)
    n = C * S  # the tiles are C_max copies one after the other: the first C of them
    d = chamfer_variant(
        rotated, t.gt[:n], squared=squared, x_lengths=t.pred_len[:n], y_lengths=t.gt_len[:n]
    )  # (C * S,)
    return d.view(C, S).mean(1)


def fit_rotation_chamfer(
    pred: torch.Tensor | list[torch.Tensor],
    gt: torch.Tensor | list[torch.Tensor],
    squared: bool = False,
    n_coarse: int = 1024,
    coarse_points: int = 256,
    n_starts: int = 4,
    iters: int = 150,
    lr: float = 0.02,
    refine_points: int = 1024,
    seed: int = 0,
) -> RotationFit:
    """One rotation R minimising the mean Chamfer distance between `pred @ R` and `gt` over a set of pairs.

    The SSL point-cloud evaluation (Navaneet et al., CVPR 2020) predicts clouds in a canonical frame learnt
    without supervision, so before computing metrics it aligns all predictions of a category to the ground
    truth with a single rotation. Here: (1) coarse search over the identity and `n_coarse` seeded uniformly
    random rotations, on at most `coarse_points` points per cloud; (2) the `n_starts` best are refined
    jointly by Adam (cosine-decayed step) on an axis-angle correction,
    `R = R_0 @ axis_angle_to_matrix(delta)`, on at most `refine_points` points; the best refined rotation
    is returned. The objective is `chamfer_variant` with mean reduction (Euclidean, or squared when
    `squared`), averaged over the S pairs.

    Args:
        pred: (S, P, 3) or a list of S (P_s, 3) clouds in the prediction frame (row vectors).
        gt: (S, Q, 3) or a list of S (Q_s, 3) ground-truth clouds.
        squared: squared distances in the objective.
        n_coarse: random rotations of the coarse search (spacing ~ (8 pi^2 / n_coarse)^(1/3) rad).
        coarse_points, refine_points: subsampling of each cloud for the two stages.
        n_starts: coarse candidates refined.
        iters, lr: Adam iterations and step (radians) of the refinement.
        seed: seeds the rotation samples and the subsampling.
    Returns:
        RotationFit(R (3, 3) with aligned = pred @ R, loss () objective at R on the refinement points).
    """
    pred_l = _as_cloud_list("pred", pred)
    gt_l = _as_cloud_list("gt", gt)
    if len(pred_l) != len(gt_l) or not pred_l:
        raise ValueError(
            f"pred and gt must hold the same non-zero number of clouds, got {len(pred_l)}, {len(gt_l)}"
        )
    dtype, device = pred_l[0].dtype, pred_l[0].device
    pred_l = [p.detach() for p in pred_l]
    gt_l = [g.detach().to(dtype) for g in gt_l]
    gen = torch.Generator().manual_seed(seed)

    # (1) coarse search, candidates in chunks so that the chamfer batches stay small
    pc, pc_len = _subsample_pad(pred_l, coarse_points, gen)
    gc, gc_len = _subsample_pad(gt_l, coarse_points, gen)
    aa = torch.cat([torch.zeros(1, 3, dtype=dtype), _random_axis_angles(n_coarse, gen, dtype)]).to(device)
    R_all = axis_angle_to_matrix(aa)  # (1 + n_coarse, 3, 3)
    chunk = max(1, 2**22 // (len(pred_l) * pc.shape[1] * gc.shape[1]))
    coarse = _tile(pc, pc_len, gc, gc_len, min(chunk, R_all.shape[0]))
    with torch.no_grad():
        scores = torch.cat([_mean_chamfer(coarse, R, squared) for R in R_all.split(chunk)])
    R0 = R_all[scores.topk(min(n_starts, scores.numel()), largest=False).indices]  # (n_starts, 3, 3)

    # (2) joint gradient refinement of the best candidates (their losses are independent, so summing them
    # gives each its own gradient)
    pr, pr_len = _subsample_pad(pred_l, refine_points, gen)
    gr, gr_len = _subsample_pad(gt_l, refine_points, gen)
    refine = _tile(pr, pr_len, gr, gr_len, R0.shape[0])
    delta = torch.zeros(R0.shape[0], 3, dtype=dtype, device=device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iters, 1), eta_min=0.05 * lr)
    with torch.enable_grad():
        for _ in range(iters):
            opt.zero_grad()
            loss = _mean_chamfer(refine, R0 @ axis_angle_to_matrix(delta), squared)
            loss.sum().backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        R_fin = R0 @ axis_angle_to_matrix(delta)
        final = _mean_chamfer(refine, R_fin, squared)
        best = final.argmin()
    return RotationFit(R_fin[best], final[best])
