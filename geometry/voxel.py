"""Voxelization of closed triangle meshes and 3D IoU of occupancy grids.

Grid layout: occupancy[b, i, j, k] is the voxel whose centre is (x_k, y_j, z_i), i.e. (B, D, H, W) with x the
last axis like `torch.nn.functional.grid_sample` volumes, and x_k = lo + (k + 0.5) (hi - lo) / R.

Two ways to decide which voxel centres are inside (`voxelize_mesh(..., method=...)`):
- "parity" (default): scanline fill. Every (x, y) column of centres is a vertical ray; a centre is inside when
  an odd number of faces cross its column below it. Faces are binned by their xy bounding box, so each face
  only tests the columns it covers: cost ~ F + (number of columns under the surface), not R^3 * F.
- "winding": the generalized winding number of every centre, O(R^3 * F); the robust reference (tolerates
  holes and inconsistent self-overlaps), kept for checking.

Tie-breaking of the parity fill (a column through an edge or a vertex of the projected mesh). The 2D
point-in-triangle test is decided by the signs of the three edge functions e(p) = cross(v1 - v0, p - v0)
(2D cross product), with two rules (a fixed-direction cousin of the rasterizers' half-open "top-left" rule;
symbolic perturbation after Edelsbrunner & Muecke 1990, "Simulation of Simplicity", ACM TOG 9(1)):
1. Each edge function is evaluated with the edge's endpoints in a canonical order (lexicographic in (x, y))
   and negated when the face traverses the edge the other way, so the two faces sharing an edge see exactly
   opposite values, bit for bit, whatever the rounding.
2. An exact zero (the column is on the edge's line) is replaced by the sign of the edge function at the
   symbolically perturbed point p + (eps, eps^2), 0 < eps << 1: sign(-(y1 - y0)), or sign(x1 - x0) when the
   edge is horizontal. All columns get the same perturbation, so a column on a shared edge is inside exactly
   one of the two faces, a column through a vertex is inside exactly one face of each layer of its fan,
   and faces with zero projected area (vertical faces) contain no column. In words: a column on an edge
   belongs to the face on its +x side (on its +y side for an edge along x).
The crossing heights are barycentric interpolations of the vertex z; a centre is inside when the number of
crossings strictly below it is odd (a centre exactly at a crossing's height takes the state just below it).
Predicates are evaluated in float64 where the device has it (rounding may move a column by ~1e-16
relative, but never makes it miss or double-count a shared edge: rule 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .mesh import _check_faces, _check_verts, face_verts

# Largest number of (query point, face) pairs evaluated at once (bounds memory to ~ 100 MB in float32).
_CHUNK_PAIRS = 2_000_000
# Largest number of (column, face) candidate pairs of the parity fill evaluated at once (~ 200 B per pair).
_CHUNK_COLUMN_PAIRS = 1_000_000
# Slack, in voxels, added to each face's bounding box before it is cut to whole columns: covers the rounding
# of the grid coordinates; the in-triangle test then decides.
_BBOX_SLACK = 1e-3
METHODS = ("parity", "winding")


def _axis_coords(resolution: int, lo: Tensor, hi: Tensor) -> Tensor:
    """Centre coordinates (B, R, 3) along each axis of cubes [lo_b, hi_b]^3; lo, hi (B,) or (B, 3)."""
    lo = lo.reshape(lo.shape[0], -1).expand(-1, 3)
    hi = hi.reshape(hi.shape[0], -1).expand(-1, 3)
    t = (torch.arange(resolution, dtype=lo.dtype, device=lo.device) + 0.5) / resolution  # (R,)
    return lo[:, None, :] + t[None, :, None] * (hi - lo)[:, None, :]


def voxel_centers(resolution: int, lo: Tensor, hi: Tensor) -> Tensor:
    """Voxel centres (B, R, R, R, 3) as (x, y, z) of cubes [lo_b, hi_b]^3; lo, hi (B,) or (B, 3)."""
    c = _axis_coords(resolution, lo, hi)  # (B, R, 3): per-axis coordinates
    z = c[:, :, None, None, 2].expand(-1, -1, resolution, resolution)
    y = c[:, None, :, None, 1].expand(-1, resolution, -1, resolution)
    x = c[:, None, None, :, 0].expand(-1, resolution, resolution, -1)
    return torch.stack([x, y, z], dim=-1)


def auto_bounds(verts: Tensor, padding: float = 0.05) -> tuple[Tensor, Tensor]:
    """Per-mesh cube bounds (lo (B, 3), hi (B, 3)) around verts (B, V, 3): the bounding box's centre
    +- half its largest side times (1 + padding)."""
    vmin = verts.amin(1)
    vmax = verts.amax(1)
    centre = 0.5 * (vmin + vmax)
    half = 0.5 * (vmax - vmin).amax(-1, keepdim=True) * (1.0 + padding)
    return centre - half, centre + half


def winding_number(points: Tensor, verts: Tensor, faces: Tensor) -> Tensor:
    """Generalized winding number (Jacobson et al. 2013, "Robust Inside-Outside Segmentation using
    Generalized Winding Numbers") of points (B, P, 3) w.r.t. meshes verts (B, V, 3), faces (B, F, 3): (B, P).

    Sum over faces of the signed solid angle / (4 pi), the solid angle of a triangle (a, b, c) seen from the
    origin by Van Oosterom & Strackee (1983): tan(Omega/2) = a.(b x c) / (|a||b||c| + (a.b)|c| + (b.c)|a|
    + (c.a)|b|). About 1 inside a closed outward-oriented mesh, 0 outside. Padded (-1) faces add 0.
    """
    B, P, _ = points.shape
    tri = face_verts(verts, faces)  # (B, F, 3, 3)
    valid = (faces >= 0).all(-1)  # (B, F)
    F = faces.shape[1]
    chunk = max(1, _CHUNK_PAIRS // max(F, 1))
    out = []
    for s in range(0, P, chunk):  # memory chunks over query points, not per voxel
        q = points[:, s : s + chunk]  # (B, C, 3)
        r = tri[:, None] - q[:, :, None, None, :]  # (B, C, F, 3, 3)
        a, b, c = r.unbind(-2)
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        num = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        omega = 2.0 * torch.atan2(num, den) * valid[:, None]
        out.append(omega.sum(-1) / (4.0 * math.pi))
    return torch.cat(out, dim=1)


def _edge_function(v0: Tensor, v1: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """Edge function cross(v1 - v0, p - v0) of directed 2D edges v0 -> v1 (N, 2) at points p (N, 2), and its
    sign under the module's tie-breaking rule: (value (N,), sign (N,) in {-1, 0, 1}); the sign is 0 only for
    an edge of zero length. Antisymmetric bit for bit: swapping v0 and v1 negates both."""
    swap = (v0[:, 0] > v1[:, 0]) | ((v0[:, 0] == v1[:, 0]) & (v0[:, 1] > v1[:, 1]))  # (N,)
    s = torch.where(swap[:, None], v1, v0)  # canonical (lexicographically smaller) start
    d = torch.where(swap[:, None], v0, v1) - s  # (N, 2)
    val = d[:, 0] * (p[:, 1] - s[:, 1]) - d[:, 1] * (p[:, 0] - s[:, 0])
    # sign of cross(d, (eps, eps^2)) = d_x eps^2 - d_y eps: -d_y leads, d_x when the edge is horizontal
    tie = torch.where(d[:, 1] != 0, -d[:, 1], d[:, 0])
    sgn = torch.where(val != 0, val, tie).sign()
    flip = 1.0 - 2.0 * swap.to(val.dtype)
    return val * flip, sgn * flip


def _column_crossings(tri: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """Does the vertical line through p (N, 2) cross triangle tri (N, 3, 3) (tie-broken as in the module
    docstring), and at which z: (inside (N,) bool, z (N,))."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]  # (N, 3)
    wa, sa = _edge_function(b[:, :2], c[:, :2], p)  # weight of a: edge opposite a
    wb, sb = _edge_function(c[:, :2], a[:, :2], p)
    wc, sc = _edge_function(a[:, :2], b[:, :2], p)
    den = wa + wb + wc  # twice the signed projected area
    inside = (sa == sb) & (sb == sc) & (sa != 0) & (den != 0)
    z = (wa * a[:, 2] + wb * b[:, 2] + wc * c[:, 2]) / torch.where(den != 0, den, 1.0)
    z = torch.minimum(torch.maximum(z, tri[:, :, 2].amin(1)), tri[:, :, 2].amax(1))  # rounding of slivers
    return inside, z


def _column_range(
    vmin: Tensor, vmax: Tensor, lo: Tensor, hi: Tensor, resolution: int
) -> tuple[Tensor, Tensor]:
    """First and last column index (int64) whose centre may lie in [vmin, vmax], one axis; all (N,)."""
    scale = resolution / (hi - lo)
    first = torch.ceil((vmin - lo) * scale - 0.5 - _BBOX_SLACK).clamp(min=0, max=resolution)
    last = torch.floor((vmax - lo) * scale - 0.5 + _BBOX_SLACK).clamp(min=-1, max=resolution - 1)
    return first.long(), last.long()


def _parity_fill(verts: Tensor, faces: Tensor, resolution: int, lo: Tensor, hi: Tensor) -> Tensor:
    """Scanline (ray parity) occupancy (B, R, R, R) of verts (B, V, 3), faces (B, F, 3) (-1 rows = padding)
    in cubes [lo_b, hi_b]^3, lo, hi (B, 3). Loops over chunks of (column, face) pairs only."""
    B, F, _ = faces.shape
    R = resolution
    device = verts.device
    work = torch.float32 if device.type == "mps" else torch.float64  # predicates in float64 where possible
    axes = _axis_coords(R, lo, hi).to(work)  # (B, R, 3): the same centre coordinates as voxel_centers
    lo_w, hi_w = lo.to(work), hi.to(work)
    bidx = torch.arange(B, device=device)
    tri = face_verts(verts.to(work), faces).flatten(0, 1)  # (BF, 3, 3)
    fb = bidx.repeat_interleave(F)  # (BF,) batch of each face
    vmin, vmax = tri.amin(1), tri.amax(1)  # (BF, 3)
    i0, i1 = _column_range(vmin[:, 0], vmax[:, 0], lo_w[fb, 0], hi_w[fb, 0], R)  # x columns
    j0, j1 = _column_range(vmin[:, 1], vmax[:, 1], lo_w[fb, 1], hi_w[fb, 1], R)  # y columns
    nx = (i1 - i0 + 1).clamp(min=0)
    n = nx * (j1 - j0 + 1).clamp(min=0) * (faces >= 0).all(-1).reshape(-1)  # (BF,) columns per face
    cum = n.cumsum(0)
    # z of the centres padded with -inf / +inf, to find the first centre above a crossing
    inf = torch.full((B, 1), float("inf"), dtype=work, device=device)
    zpad = torch.cat([-inf, axes[:, :, 2], inf], dim=1)  # (B, R + 2)
    toggles = torch.zeros(B * R * R * (R + 1), dtype=torch.int32, device=device)
    start, done = 0, 0
    while start < B * F:  # chunks of faces with ~ _CHUNK_COLUMN_PAIRS candidate pairs in all
        limit = torch.tensor([done + _CHUNK_COLUMN_PAIRS], device=device)
        end = max(int(torch.searchsorted(cum, limit, right=True)), start + 1)
        nc = n[start:end]
        m = int(cum[end - 1]) - done
        start_c, done = start, done + m
        start = end
        if m == 0:
            continue
        rep = torch.repeat_interleave(torch.arange(nc.shape[0], device=device), nc, output_size=m)  # (M,)
        local = torch.arange(m, device=device) - (nc.cumsum(0) - nc)[rep]  # index among the face's columns
        f = start_c + rep  # (M,) face of each (column, face) pair
        i = i0[f] + local % nx[f]  # x column
        j = j0[f] + local // nx[f]  # y column
        b = fb[f]
        p = torch.stack([axes[b, i, 0], axes[b, j, 1]], dim=-1)  # (M, 2)
        inside, z = _column_crossings(tri[f], p)
        b, i, j, z = b[inside], i[inside], j[inside], z[inside]
        # k = number of centres with z_k <= z: estimate from the grid, then correct against the exact centres
        k = torch.floor((z - lo_w[b, 2]) * (R / (hi_w[b, 2] - lo_w[b, 2])) - 0.5).clamp(-1, R).long() + 1
        for _ in range(2):
            k = k - (zpad[b, k] > z).long()
            k = k + (zpad[b, k + 1] <= z).long()
        col = (b * R + j) * R + i
        toggles.index_add_(0, col * (R + 1) + k, torch.ones_like(k, dtype=torch.int32))
    parity = toggles.view(B, R, R, R + 1)[..., :R].cumsum(-1, dtype=torch.int32) & 1  # (B, y, x, z)
    return parity.permute(0, 3, 1, 2).bool().contiguous()


def voxelize_mesh(
    verts: Tensor,
    faces: Tensor,
    resolution: int = 32,
    bounds: tuple[float, float] | str = (-0.5, 0.5),
    method: str = "parity",
) -> Tensor:
    """Solid occupancy of closed meshes: verts (B, V, 3) or (V, 3), faces (F, 3) or (B, F, 3) (-1 rows are
    padding) -> bool (B, R, R, R) (see the module docstring for the layout), True where the voxel centre is
    inside.

    method: "parity" (default) counts the faces crossed by each (x, y) column below the centre (odd =
    inside): the mesh must be closed (watertight), any orientation; cost ~ F + R^2 per mesh, chunked.
    "winding": |generalized winding number| > 0.5, so faces must be consistently oriented (inward or
    outward); robust to small holes; costs R^3 * F solid angles, chunked over voxels. Both agree on closed,
    consistently oriented, non-self-intersecting meshes wherever no centre lies on the surface.
    bounds: (lo, hi), the same cube [lo, hi]^3 for every mesh, or "auto": each mesh's `auto_bounds`.
    Not differentiable.
    """
    v = _check_verts(verts)
    f = _check_faces(faces, v.shape[0])
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    B = v.shape[0]
    if isinstance(bounds, str):
        if bounds != "auto":
            raise ValueError(f"bounds must be (lo, hi) or 'auto', got {bounds!r}")
        lo, hi = auto_bounds(v.detach())
    else:
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be (lo, hi) with lo < hi, got {bounds!r}")
        lo = torch.full((B, 3), float(bounds[0]), dtype=v.dtype, device=v.device)
        hi = torch.full((B, 3), float(bounds[1]), dtype=v.dtype, device=v.device)
    with torch.no_grad():
        if method == "parity":
            return _parity_fill(v.detach(), f, resolution, lo, hi)
        centres = voxel_centers(resolution, lo, hi).reshape(B, -1, 3)
        w = winding_number(centres, v.detach(), f)
    return (w.abs() > 0.5).reshape(B, resolution, resolution, resolution)


def voxel_iou(a: Tensor, b: Tensor) -> Tensor:
    """3D IoU |a and b| / |a or b| of occupancy grids a, b (B, D, H, W) (bool, or float > 0.5 = occupied)
    -> (B,). Two empty grids have IoU 1."""
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(
            f"a and b must both have shape (B, D, H, W), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a = a if a.dtype == torch.bool else a > 0.5
    b = b if b.dtype == torch.bool else b > 0.5
    inter = (a & b).flatten(1).sum(1)
    union = (a | b).flatten(1).sum(1)
    return torch.where(union > 0, inter.double() / union.clamp(min=1), 1.0).float()
