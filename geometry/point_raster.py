"""Differentiable point rasterization, compositing and smooth point projections.

Shape letters: N (= B) batch, P points per cloud, K points per pixel, C feature channels, H x W image.

* `rasterize_points` -- PyTorch3D's point rasterizer (same name, arguments and outputs): for every pixel the
  K nearest-in-z points whose disc covers the pixel centre.
* `alpha_composite`, `norm_weighted_composite` -- PyTorch3D's AlphaCompositor / NormWeightedCompositor with
  the PointsRenderer weights `w = 1 - dists / r^2`.
* `capnet_mask_projection` -- CAPNet's smooth silhouette (Navaneet et al., AAAI 2019).
* `differ_feature_projection` -- DIFFER's depth-aware feature projection (Navaneet et al., CVPR-W 2019),
  the renderer of "From Image Collections to Point Clouds with Self-supervised Shape and Pose Networks"
  (Navaneet et al., CVPR 2020).
* `render_depth_novel_view` -- z-buffered re-rendering of an unprojected depth map from another camera.

Conventions (PyTorch3D, see tests/data/pytorch3d/README.md §1): NDC +X left, +Y up, the shorter
image side spans [-1, 1]; the centre of pixel (row i, col j) is `x = (W - 2j - 1) / S`,
`y = (H - 2i - 1) / S` with `S = min(H, W)` (for square images `x = 1 - (2j + 1) / W`). Point z is view
depth `z_view` (+Z into the screen). Packed point indices are `n * P + p`.

Memory: nothing here builds a dense (N, H*W, P) tensor. Every point is binned into the pixels of its
screen-space bounding box (1-pixel bins: the box of a disc of radius r spans about r*S/2 pixels each
way), the (pixel, candidate point) pairs of those boxes are enumerated in chunks of at most `max_pairs`
pairs, and only these pairs are evaluated. Cost and memory are O(sum over points of box area), e.g.
~16 pairs per point for r = 0.01 at 256 x 256.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch

from geometry.backend import resolve_backend
from geometry.cameras import image_hw, ndc_to_pixel, pixel_index_to_ndc, pixel_to_ndc
from geometry.depth import project_points, unproject_depth

_MAX_PAIRS = 1 << 22  # (pixel, point) pairs evaluated at once


class PointFragments(NamedTuple):
    """Output of `rasterize_points` (PyTorch3D's names).

    idx: (N, H, W, K) long, packed index `n * P + p` of the k-th nearest (in z) covering point, -1 empty.
    zbuf: (N, H, W, K) z_view of that point, -1 where empty.
    dists: (N, H, W, K) squared NDC xy distance pixel centre to point, -1 where empty.
    """

    idx: torch.Tensor
    zbuf: torch.Tensor
    dists: torch.Tensor


class DifferProjection(NamedTuple):
    """Output of `differ_feature_projection`: features (B, C, H, W) and soft mask (B, 1, H, W)."""

    features: torch.Tensor
    mask: torch.Tensor


class NovelView(NamedTuple):
    """Output of `render_depth_novel_view`.

    depth: (B, 1, H, W) target-view depth (z), 0 where invalid. valid: (B, 1, H, W) bool.
    features: (B, C, H, W) features of the visible point, 0 where invalid; None if none were given.
    """

    depth: torch.Tensor
    valid: torch.Tensor
    features: torch.Tensor | None


# ----------------------------------------------------------------------------------------------------------
# helpers


def _check(t: torch.Tensor, name: str, shape: tuple, expected: str) -> None:
    ok = t.dim() == len(shape) and all(s is None or t.shape[d] == s for d, s in enumerate(shape))
    if not ok:
        raise ValueError(f"Expected {name} to be of shape {expected}, got {tuple(t.shape)}")


def _valid_from_lengths(N: int, P: int, lengths: torch.Tensor | None, device) -> torch.Tensor:
    if lengths is None:
        return torch.ones(N, P, dtype=torch.bool, device=device)
    _check(lengths, "lengths", (N,), "(N,)")
    return torch.arange(P, device=device)[None] < lengths.to(device)[:, None]


def _box_pairs(
    u: torch.Tensor, v: torch.Tensor, half: torch.Tensor, valid: torch.Tensor, H: int, W: int, max_pairs: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Bin points into the pixels of their bounding boxes and enumerate the pairs in chunks.

    u, v: (M,) continuous pixel coords (centre of pixel (i, j) at (j, i)); half: (M,) box half-size in pixels;
    valid: (M,) bool. Yields (pt, i, j), each (T,) long, covering (a superset of) every pixel centre with
    |j - u| < half and |i - v| < half, points in ascending order, T <= max_pairs unless one point is larger.
    Integer work only (no autograd); no `torch.no_grad()` here: it would stay active across the yields.
    """
    u, v, half, valid = u.detach(), v.detach(), half.detach(), valid.detach()
    u, v, half = u.double(), v.double(), half.double()
    valid = valid & torch.isfinite(u) & torch.isfinite(v) & torch.isfinite(half) & (half > 0)
    u, v, half = (torch.where(valid, t, torch.zeros_like(t)) for t in (u, v, half))
    j0 = torch.floor((u - half).clamp(-1, W)).long().clamp(min=0)
    j1 = torch.ceil((u + half).clamp(-1, W)).long().clamp(max=W - 1)
    i0 = torch.floor((v - half).clamp(-1, H)).long().clamp(min=0)
    i1 = torch.ceil((v + half).clamp(-1, H)).long().clamp(max=H - 1)
    bx = (j1 - j0 + 1).clamp(min=0)
    by = (i1 - i0 + 1).clamp(min=0)
    counts = bx * by * valid
    cum = torch.cumsum(counts, 0)
    cum_cpu = cum.cpu()
    total = int(cum_cpu[-1]) if cum_cpu.numel() else 0
    if total == 0:
        return
    if total <= max_pairs:
        bounds = [0, counts.numel()]
    else:
        cuts = torch.searchsorted(cum_cpu, torch.arange(max_pairs, total, max_pairs), right=True)
        bounds = sorted(set([0, *cuts.tolist(), counts.numel()]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        before = int(cum_cpu[a - 1]) if a > 0 else 0
        T = int(cum_cpu[b - 1]) - before
        if T == 0:
            continue
        c = counts[a:b]
        local_pt = torch.repeat_interleave(torch.arange(b - a, device=u.device), c, output_size=T)
        start = (cum[a:b] - c - before)[local_pt]
        local = torch.arange(T, device=u.device) - start
        pt = local_pt + a
        bxp = bx[pt]
        yield pt, i0[pt] + local // bxp, j0[pt] + local % bxp


def _select_nearest_k(
    pix: torch.Tensor, pt: torch.Tensor, z: torch.Tensor, K: int, n_pix: int
) -> torch.Tensor:
    """Per pixel, the K candidates of smallest z (ties: smaller point index, i.e. earlier candidate).

    pix, pt, z: (T,) candidates (z >= 0, candidates with equal pixel and z in ascending pt order).
    Returns (n_pix * K,) long point indices, -1 where fewer than K candidates.
    """
    out = torch.full((n_pix * K,), -1, dtype=torch.long, device=pix.device)
    if pix.numel() == 0:
        return out
    if z.dtype == torch.float32:
        # non-negative float32 bit patterns are ordered like the floats: one int64 sort on (pixel, z)
        zbits = (z + 0.0).view(torch.int32).long()
        order = torch.argsort((pix << 31) | zbits, stable=True)
    else:
        o1 = torch.argsort(z, stable=True)
        order = o1[torch.argsort(pix[o1], stable=True)]
    sp, spt = pix[order], pt[order]
    ar = torch.arange(sp.numel(), device=sp.device)
    is_start = torch.ones_like(sp, dtype=torch.bool)
    is_start[1:] = sp[1:] != sp[:-1]
    rank = ar - torch.where(is_start, ar, torch.zeros_like(ar)).cummax(0).values
    keep = rank < K
    out[sp[keep] * K + rank[keep]] = spt[keep]
    return out


def _per_point_radius(radius: float | torch.Tensor, N: int, P: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(radius, torch.Tensor):
        if radius.dim() == 0:
            return radius.to(like).expand(N, P)
        _check(radius, "radius", (N, P), "(N, P) or a float")
        return radius.to(like)
    return torch.full((N, P), float(radius), dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------------------------------------
# rasterizer


def rasterize_points(
    points_ndc: torch.Tensor,
    image_size: int | tuple[int, int] = 256,
    radius: float | torch.Tensor = 0.01,
    points_per_pixel: int = 8,
    lengths: torch.Tensor | None = None,
    backend: str | None = None,
    max_pairs: int = _MAX_PAIRS,
) -> PointFragments:
    """Rasterize point clouds as discs of NDC radius `radius` (PyTorch3D semantics, README §3).

    Args:
        points_ndc: (N, P, 3) points as (x_ndc, y_ndc, z_view), e.g.
            `cameras.transform_points_rasterizer(points)` (not `transform_points`, whose depth is
            PyTorch3D's projected one).
        image_size: int or (H, W).
        radius: float or (N, P) per-point radius, in NDC units.
        points_per_pixel: K.
        lengths: optional (N,) number of valid points of each padded cloud.
        backend: None (the default of geometry.backend), "torch" or "pytorch3d".
        max_pairs: (pixel, point) pairs evaluated per chunk (memory bound).
    Returns:
        PointFragments(idx (N, H, W, K) long, zbuf (N, H, W, K), dists (N, H, W, K)).

    A point covers the pixel centre p iff `z >= 0` and `(x - p.x)^2 + (y - p.y)^2 < r^2` (strict); each pixel
    keeps its K covering points of smallest z in ascending z. zbuf and dists are differentiable w.r.t. the
    points (the selection is not). Points are binned by their screen-space bounding boxes and only the
    (pixel, point) pairs inside those boxes are evaluated, in chunks of `max_pairs` (see the module doc).
    """
    _check(points_ndc, "points_ndc", (None, None, 3), "(N, P, 3)")
    H, W = image_hw(image_size)
    N, P, _ = points_ndc.shape
    K = int(points_per_pixel)
    if resolve_backend(backend) == "pytorch3d":
        return _rasterize_points_pytorch3d(points_ndc, (H, W), radius, K, lengths)
    device, dtype = points_ndc.device, points_ndc.dtype
    r = _per_point_radius(radius, N, P, points_ndc).reshape(-1)  # (NP,)
    pts = points_ndc.reshape(N * P, 3)
    x, y, z = pts.detach().unbind(-1)
    rd = r.detach()
    valid = _valid_from_lengths(N, P, lengths, device).reshape(-1) & (z >= 0) & torch.isfinite(z)
    xs = pixel_index_to_ndc(torch.arange(W, device=device), W, H, dtype)  # (W,)
    ys = pixel_index_to_ndc(torch.arange(H, device=device), H, W, dtype)  # (H,)
    u, v = ndc_to_pixel(torch.stack([x, y], dim=-1).double(), (H, W)).unbind(-1)  # (NP,) each
    half = rd.double() * min(H, W) / 2
    r2 = rd * rd

    best = torch.full((N * H * W * K,), -1, dtype=torch.long, device=device)
    for pt, i, j in _box_pairs(u, v, half, valid, H, W, max_pairs):
        dx = xs[j] - x[pt]
        dy = ys[i] - y[pt]
        keep = dx * dx + dy * dy < r2[pt]
        pt, i, j = pt[keep], i[keep], j[keep]
        pix = (pt // P) * (H * W) + i * W + j
        # merge with the running winners (all from earlier, i.e. smaller, point indices)
        run = torch.nonzero(best >= 0).squeeze(1)
        pix = torch.cat([run // K, pix])
        pt = torch.cat([best[run], pt])
        best = _select_nearest_k(pix, pt, z[pt], K, N * H * W)

    idx = best.view(N, H, W, K)
    return _fragments_from_idx(idx, points_ndc, xs, ys)


def _fragments_from_idx(
    idx: torch.Tensor, points_ndc: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor
) -> PointFragments:
    """zbuf and dists of the selected points, differentiable w.r.t. points_ndc."""
    mask = idx >= 0
    sel = points_ndc.reshape(-1, 3)[idx.clamp(min=0)]  # (N, H, W, K, 3)
    dx = xs.view(1, 1, -1, 1) - sel[..., 0]
    dy = ys.view(1, -1, 1, 1) - sel[..., 1]
    neg = torch.full_like(sel[..., 0], -1.0)
    dists = torch.where(mask, dx * dx + dy * dy, neg)
    zbuf = torch.where(mask, sel[..., 2], neg)
    return PointFragments(idx, zbuf, dists)


def _rasterize_points_pytorch3d(
    points_ndc: torch.Tensor,
    image_size: tuple[int, int],
    radius: float | torch.Tensor,
    K: int,
    lengths: torch.Tensor | None,
) -> PointFragments:
    """PyTorch3D's rasterize_points; indices converted from its packed layout to `n * P + p`."""
    from pytorch3d.renderer.points import rasterize_points as p3d_rasterize_points
    from pytorch3d.structures import Pointclouds

    N, P, _ = points_ndc.shape
    lens = [P] * N if lengths is None else [int(v) for v in lengths.tolist()]
    clouds = Pointclouds(points=[points_ndc[n, : lens[n]] for n in range(N)])
    if isinstance(radius, torch.Tensor) and radius.dim() > 0:
        radius = torch.cat([radius[n, : lens[n]] for n in range(N)]).to(points_ndc)
    idx, zbuf, dists = p3d_rasterize_points(clouds, image_size, radius, K, bin_size=None)
    first = torch.tensor([0, *lens[:-1]], device=idx.device).cumsum(0)  # packed offset of each cloud
    n = torch.arange(N, device=idx.device).view(N, 1, 1, 1)
    idx = idx.long()
    idx = torch.where(idx >= 0, idx - first.view(N, 1, 1, 1) + n * P, idx)
    return PointFragments(idx, zbuf, dists)


# ----------------------------------------------------------------------------------------------------------
# compositors


def _weights_and_features(
    fragments: PointFragments, features: torch.Tensor, radius: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PointsRenderer weights w = 1 - dists / r^2 (0 in empty slots), (N, H, W, K), and the (N, H, W, K, C)
    features of the fragment points."""
    idx = fragments.idx
    _check(idx, "fragments.idx", (None, None, None, None), "(N, H, W, K)")
    _check(features, "features", (idx.shape[0], None, None), "(N, P, C)")
    N, P, C = features.shape
    pid = idx.clamp(min=0)
    if isinstance(radius, torch.Tensor) and radius.dim() > 0:
        _check(radius, "radius", (N, P), "(N, P) or a float")
        r = radius.reshape(-1)[pid]
        w = 1 - fragments.dists / (r * r)
    else:
        r = float(radius)
        w = 1 - fragments.dists / (r * r)
    w = torch.where(idx >= 0, w, torch.zeros_like(w))
    return w, features.reshape(N * P, C)[pid]


def _background(image: torch.Tensor, idx: torch.Tensor, background_color) -> torch.Tensor:
    if background_color is None:
        return image
    bg = torch.as_tensor(background_color, dtype=image.dtype, device=image.device).view(1, -1, 1, 1)
    if bg.shape[1] != image.shape[1]:
        raise ValueError(f"Expected background_color to have {image.shape[1]} values, got {bg.shape[1]}")
    empty = (idx[..., 0] < 0).unsqueeze(1)  # (N, 1, H, W)
    return torch.where(empty, bg, image)


def alpha_composite(
    fragments: PointFragments,
    features: torch.Tensor,
    radius: float | torch.Tensor,
    background_color: tuple[float, ...] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Front-to-back alpha compositing (PyTorch3D AlphaCompositor with PointsRenderer weights).

    `img = sum_k w_k prod_{l<k} (1 - w_l) f_k`, `w = 1 - dists / r^2`, empty slots skipped.
    Args:
        fragments: from `rasterize_points`; features: (N, P, C); radius: the rasterization radius
            (float or (N, P)); background_color: optional (C,) written to pixels no point covers
            (PyTorch3D's behaviour: covered pixels are not blended with it).
    Returns:
        (N, C, H, W) images (channels first, like PyTorch3D's compositors before PointsRenderer permutes).
    """
    w, f = _weights_and_features(fragments, features, radius)
    transmittance = torch.cumprod(1 - w, dim=-1)
    transmittance = torch.cat([torch.ones_like(w[..., :1]), transmittance[..., :-1]], dim=-1)
    image = torch.einsum("nhwk,nhwkc->nchw", w * transmittance, f)
    return _background(image, fragments.idx, background_color)


def norm_weighted_composite(
    fragments: PointFragments,
    features: torch.Tensor,
    radius: float | torch.Tensor,
    background_color: tuple[float, ...] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalized weighted sum (PyTorch3D NormWeightedCompositor with PointsRenderer weights).

    `img = sum_k w_k f_k / max(sum_k w_k, 1e-4)`, `w = 1 - dists / r^2`; arguments as `alpha_composite`.
    Gradients follow PyTorch3D's backward (checked against its outputs): with S = sum_k w_k and
    D = max(S, 1e-4), d img / d w_k = f_k / D - img / D (the clamp passes the gradient straight through,
    also where S < 1e-4) and d img / d f_k = w_k / D. Returns (N, C, H, W).
    """
    w, f = _weights_and_features(fragments, features, radius)
    s = w.sum(-1).unsqueeze(1)  # (N, 1, H, W)
    # max(s, kEps) in value, but d den / d s = 1 everywhere: PyTorch3D 0.7.9's backward (kEps = 1e-4)
    den = s + (s.clamp(min=1e-4) - s).detach()
    image = torch.einsum("nhwk,nhwkc->nchw", w, f) / den
    return _background(image, fragments.idx, background_color)


# ----------------------------------------------------------------------------------------------------------
# CAPNet / DIFFER smooth projections


def _points_2d_to_pix(
    points_2d: torch.Tensor, H: int, W: int, coords: str
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = points_2d[..., 0], points_2d[..., 1]
    if (
        coords == "normalized"
    ):  # x right, y down, each axis spanning [-1, 1] (grid_sample, align_corners=False)
        return ((x + 1) * W - 1) / 2, ((y + 1) * H - 1) / 2
    if coords == "ndc":
        return ndc_to_pixel(points_2d, (H, W)).unbind(-1)
    raise ValueError(f"coords must be 'normalized' or 'ndc', got {coords!r}")


def _gaussian_pairs(
    u: torch.Tensor,
    v: torch.Tensor,
    valid: torch.Tensor,
    H: int,
    W: int,
    sigma: float,
    truncate: float,
    kernel: str,
    max_pairs: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yields (pt, pix_in_image, g) with the kernel value g of point pt at pixel (flat i * W + j)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    M = u.numel()
    uf, vf = u.reshape(-1), v.reshape(-1)
    if kernel == "gaussian":
        reach = truncate * sigma
    elif kernel == "box":
        reach = sigma * (1 + 1e-6)
    else:
        raise ValueError(f"kernel must be 'gaussian' or 'box', got {kernel!r}")
    half = torch.full((M,), reach, dtype=torch.float64, device=u.device)
    for pt, i, j in _box_pairs(uf.detach(), vf.detach(), half, valid.reshape(-1), H, W, max_pairs):
        du = j.to(u.dtype) - uf[pt]
        dv = i.to(u.dtype) - vf[pt]
        if kernel == "gaussian":
            d2 = du * du + dv * dv
            keep = d2.detach() <= reach * reach
            g = torch.exp(-d2[keep] / (2 * sigma * sigma))
        else:  # DIFFER code's "well": 1 inside |du|, |dv| <= sigma
            keep = (du.detach().abs() <= sigma) & (dv.detach().abs() <= sigma)
            g = torch.ones_like(du[keep])
        yield pt[keep], (i * W + j)[keep], g


def capnet_mask_projection(
    points_2d: torch.Tensor,
    image_size: int | tuple[int, int],
    sigma: float = math.sqrt(0.5),
    coords: str = "normalized",
    lengths: torch.Tensor | None = None,
    truncate: float = 5.0,
    max_pairs: int = _MAX_PAIRS,
) -> torch.Tensor:
    """CAPNet's continuous approximation of a point cloud's silhouette (Navaneet et al., AAAI 2019, eq. 1-2).

    `mask(pixel) = tanh( sum_p exp(-|c_pixel - u_p|^2 / (2 sigma^2)) )`, distances in pixels.
    Default sigma^2 = 0.5 px^2 (the authors' code, github.com/val-iisc/capnet src/proj_codes.py).

    Args:
        points_2d: (B, P, 2) projected points. coords="normalized": normalized image coordinates, x right,
            y down, each axis in [-1, 1] with pixel (i, j) centred at ((2j+1)/W - 1, (2i+1)/H - 1);
            coords="ndc": PyTorch3D NDC (x left, y up, shorter side in [-1, 1]).
        image_size: int or (H, W); sigma: kernel std in pixels; lengths: optional (B,) valid points.
        truncate: the kernel is cut at `truncate * sigma` pixels (relative error <= P exp(-truncate^2/2)),
            so only the pixels near each point are evaluated.
    Returns:
        (B, 1, H, W) mask in [0, 1).
    """
    _check(points_2d, "points_2d", (None, None, 2), "(B, P, 2)")
    H, W = image_hw(image_size)
    B, P, _ = points_2d.shape
    u, v = _points_2d_to_pix(points_2d, H, W, coords)
    valid = _valid_from_lengths(B, P, lengths, points_2d.device)
    acc = points_2d.new_zeros(B * H * W)
    for pt, pix, g in _gaussian_pairs(u, v, valid, H, W, sigma, truncate, "gaussian", max_pairs):
        acc = acc.index_add(0, (pt // P) * (H * W) + pix, g)
    return torch.tanh(acc).view(B, 1, H, W)


def differ_feature_projection(
    points_ndc: torch.Tensor,
    features: torch.Tensor,
    image_size: int | tuple[int, int],
    sigma: float = math.sqrt(0.5),
    beta: float = 100.0,
    kernel: str = "gaussian",
    lengths: torch.Tensor | None = None,
    background_color: tuple[float, ...] | torch.Tensor | None = None,
    truncate: float = 5.0,
    max_pairs: int = _MAX_PAIRS,
) -> DifferProjection:
    """DIFFER's depth-aware projection of point features (Navaneet et al., CVPR-W 2019; used by
    Navaneet et al., CVPR 2020, "From Image Collections to Point Clouds with Self-supervised Shape and
    Pose Networks").

    For pixel c and point p with pixel position u_p and depth z_p > 0:

        g_p(c) = exp(-|c - u_p|^2 / (2 sigma^2))                  (kernel="gaussian", cut at truncate*sigma)
               = 1[|c.x - u_p.x| <= sigma and |c.y - u_p.y| <= sigma]  (kernel="box": the authors' "well")
        v_p(c) = exp(beta / z_p) / exp(max_{q: g_q(c) > 0} beta / z_q)  (depth visibility: a softmax over
                                                                       the inverse depths of the points at c)
        F(c)   = sum_p g_p v_p f_p / sum_p g_p v_p                   (0 where no point reaches c)
        mask(c) = tanh(sum_p g_p)                                    (CAPNet's silhouette)

    With kernel="box" this is exactly the projection of the authors' code (github.com/klnavaneet/ssl_3d_recon,
    src/proj_codes.py: rgb_cont_proj / get_proj_prob_exp, softmax of beta / depth over the points in a
    pixel's well, beta = 100 there, with their depths shifted into (0, 2]); kernel="gaussian" replaces the
    well by CAPNet's Gaussian so that features also pass gradients to x, y. Points nearer the camera
    dominate (v_p decays with 1/z_min - 1/z_p), the max cancels in the ratio (it only keeps exp finite).

    Args:
        points_ndc: (B, P, 3) as (x_ndc, y_ndc, z_view); features: (B, P, C); image_size: int or (H, W);
        sigma: kernel std (box half-width) in pixels; beta: inverse-depth sharpness (1 / depth units);
        lengths: optional (B,); background_color: optional (C,) blended in as `F + (1 - mask) * bg`.
    Returns:
        DifferProjection(features (B, C, H, W), mask (B, 1, H, W)).
    """
    _check(points_ndc, "points_ndc", (None, None, 3), "(B, P, 3)")
    B, P, _ = points_ndc.shape
    _check(features, "features", (B, P, None), "(B, P, C)")
    H, W = image_hw(image_size)
    C = features.shape[-1]
    u, v = ndc_to_pixel(points_ndc[..., :2], (H, W)).unbind(-1)  # (B, P) each
    z = points_ndc[..., 2].reshape(-1)
    valid = _valid_from_lengths(B, P, lengths, points_ndc.device) & (points_ndc[..., 2].detach() > 0)
    inv = beta / torch.where(valid.reshape(-1), z, torch.ones_like(z))  # (BP,)
    f = features.reshape(B * P, C)
    n_pix = B * H * W

    def pairs():
        for pt, pix, g in _gaussian_pairs(u, v, valid, H, W, sigma, truncate, kernel, max_pairs):
            yield pt, (pt // P) * (H * W) + pix, g

    with torch.no_grad():  # per-pixel max of beta / z over the points that reach it (cancels in the ratio)
        m = inv.new_full((n_pix,), -math.inf)
        for pt, pix, _ in pairs():
            m = m.scatter_reduce(0, pix, inv[pt], reduce="amax", include_self=True)
    num = f.new_zeros(n_pix, C)
    den = inv.new_zeros(n_pix)
    gsum = inv.new_zeros(n_pix)
    for pt, pix, g in pairs():
        e = g * torch.exp(inv[pt] - m[pix])
        num = num.index_add(0, pix, e.unsqueeze(1) * f[pt])
        den = den.index_add(0, pix, e)
        gsum = gsum.index_add(0, pix, g)
    out = num / torch.where(den > 0, den, torch.ones_like(den)).unsqueeze(1)
    out = out.view(B, H, W, C).permute(0, 3, 1, 2)
    mask = torch.tanh(gsum).view(B, 1, H, W)
    if background_color is not None:
        bg = torch.as_tensor(background_color, dtype=out.dtype, device=out.device).view(1, -1, 1, 1)
        out = out + (1 - mask) * bg
    return DifferProjection(out, mask)


# ----------------------------------------------------------------------------------------------------------
# depth re-rendering


def render_depth_novel_view(
    depth: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K_target: torch.Tensor | None = None,
    image_size: int | tuple[int, int] | None = None,
    radius: float = 0.75,
    features: torch.Tensor | None = None,
    max_pairs: int = _MAX_PAIRS,
) -> NovelView:
    """Re-render a depth map (and optionally an image) from another camera by z-buffered point splatting.

    Every pixel with depth > 0 is unprojected in the OpenCV camera frame (pixel (i, j) at u = j, v = i,
    `X = d K^-1 [u, v, 1]`), moved into the target camera with row vectors `X' = X @ R + t`, projected with
    K_target (default K) and rasterized with `rasterize_points` as a disc of `radius` target pixels. The
    nearest point wins at each pixel (occlusion resolved); pixels no point reaches (holes, disocclusions)
    are invalid. With radius < 1 an identity pose reproduces the input exactly.

    Args:
        depth: (B, 1, H, W) z-depth, <= 0 or non-finite = missing. K, K_target: (B, 3, 3). R: (B, 3, 3).
        t: (B, 3). image_size: target (H', W'), default (H, W). radius: splat radius in target pixels.
        features: optional (B, C, H, W) per-pixel values (e.g. colours) carried by the points.
    Returns:
        NovelView(depth (B, 1, H', W') target z (0 where invalid), valid (B, 1, H', W') bool,
        features (B, C, H', W') or None). Depth and features are differentiable w.r.t. depth, poses, K.
    """
    _check(depth, "depth", (None, 1, None, None), "(B, 1, H, W)")
    B, _, H, W = depth.shape
    _check(K, "K", (B, 3, 3), "(B, 3, 3)")
    _check(R, "R", (B, 3, 3), "(B, 3, 3)")
    _check(t, "t", (B, 3), "(B, 3)")
    K_target = K if K_target is None else K_target
    _check(K_target, "K_target", (B, 3, 3), "(B, 3, 3)")
    if features is not None:
        _check(features, "features", (B, None, H, W), "(B, C, H, W)")
    Ht, Wt = (H, W) if image_size is None else image_hw(image_size)

    dtype = depth.dtype  # K, K_target, R, t may come in another float dtype
    source = unproject_depth(depth, K.to(dtype))  # points (B, HW, 3), zero where depth is missing
    X = source.points @ R.to(dtype) + t.to(dtype).unsqueeze(1)  # (B, HW, 3) target camera frame
    target = project_points(X, K_target.to(dtype))  # pixels (B, HW, 2), zero where z <= 0
    ok = source.valid & target.valid
    xy_ndc = pixel_to_ndc(target.pixels, (Ht, Wt))  # OpenCV pixels -> PyTorch3D NDC
    S = min(Ht, Wt)
    z = torch.where(ok, target.depth, torch.full_like(target.depth, -1.0))  # z < 0: never rasterized
    pts = torch.cat([xy_ndc, z.unsqueeze(-1)], -1)
    frags = rasterize_points(
        pts, (Ht, Wt), radius=2 * radius / S, points_per_pixel=1, backend="torch", max_pairs=max_pairs
    )
    valid = (frags.idx[..., 0] >= 0).unsqueeze(1)
    out_depth = torch.where(
        valid, frags.zbuf[..., 0].unsqueeze(1), torch.zeros_like(valid, dtype=depth.dtype)
    )
    out_feat = None
    if features is not None:
        C = features.shape[1]
        f = features.reshape(B, C, H * W).transpose(1, 2).reshape(B * H * W, C)
        g = f[frags.idx[..., 0].clamp(min=0)].permute(0, 3, 1, 2)  # (B, C, H', W')
        out_feat = torch.where(valid, g, torch.zeros_like(g))
    return NovelView(out_depth, valid, out_feat)
