"""Benchmark: soft mesh silhouettes (geometry.mesh_raster / mesh_shading) vs a dense reference and PyTorch3D.

Soft silhouettes as PyTorch3D's SoftSilhouetteShader defaults (sigma = 1e-4, blur_radius =
log(1/1e-4 - 1) * sigma, faces_per_pixel = 50), batch of 8 perspective views of an icosphere
(level 3: 642 verts, level 4: 2562 verts). Goal from the issue: PyTorch3D's CPU build takes ~17 s for
fwd+bwd of 8 views of the 642-vertex sphere at 128x128; we want < 1.7 s.

Run: `python -m experiments.benchmarks.geometry_mesh` (full) or via `make bench` (quick).
"""

from __future__ import annotations

import math

import torch

from experiments.benchmarks.common import peak_memory_mb, print_table, time_ms
from geometry.backend import pytorch3d_available
from geometry.cameras import ndc_pixel_centers
from geometry.mesh_raster import rasterize_meshes
from geometry.mesh_shading import default_blur_radius, mesh_soft_silhouette, soft_silhouette

SIGMA = 1e-4
K = 50
DENSE_MAX_PAIRS_PER_CHUNK = 2**21


def _icosphere(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from geometry.mesh import ico_sphere

        verts, faces = ico_sphere(level)
        return verts, faces
    except ImportError:  # geometry.mesh not there yet: subdivide an icosahedron here
        t = (1 + 5**0.5) / 2
        v = torch.tensor(
            [
                [-1, t, 0],
                [1, t, 0],
                [-1, -t, 0],
                [1, -t, 0],
                [0, -1, t],
                [0, 1, t],
                [0, -1, -t],
                [0, 1, -t],
                [t, 0, -1],
                [t, 0, 1],
                [-t, 0, -1],
                [-t, 0, 1],
            ],
            dtype=torch.float32,
        )
        f = torch.tensor(
            [
                [0, 11, 5],
                [0, 5, 1],
                [0, 1, 7],
                [0, 7, 10],
                [0, 10, 11],
                [1, 5, 9],
                [5, 11, 4],
                [11, 10, 2],
                [10, 7, 6],
                [7, 1, 8],
                [3, 9, 4],
                [3, 4, 2],
                [3, 2, 6],
                [3, 6, 8],
                [3, 8, 9],
                [4, 9, 5],
                [2, 4, 11],
                [6, 2, 10],
                [8, 6, 7],
                [9, 8, 1],
            ],
        )
        v = v / v.norm(dim=1, keepdim=True)
        for _ in range(level):
            e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(1).values
            uniq, inv = torch.unique(e, dim=0, return_inverse=True)
            mid = v[uniq].mean(1)
            m = inv.view(3, -1).T + v.shape[0]  # (F, 3): mid of edges 01, 12, 20
            a, b, c = f.unbind(1)
            f = torch.cat(
                [
                    torch.stack(x, 1)
                    for x in (
                        (a, m[:, 0], m[:, 2]),
                        (b, m[:, 1], m[:, 0]),
                        (c, m[:, 2], m[:, 1]),
                        (m[:, 0], m[:, 1], m[:, 2]),
                    )
                ]
            )
            v = torch.cat([v, mid])
            v = v / v.norm(dim=1, keepdim=True)
        return v, f


def _views(verts: torch.Tensor, n: int, dist: float = 2.7) -> torch.Tensor:
    """(n, V, 3) NDC verts (x_ndc, y_ndc, z_view) of n rotated copies seen by a 60 deg FoV camera."""
    g = torch.Generator().manual_seed(0)
    aa = torch.randn(n, 3, generator=g)
    skew = torch.zeros(n, 3, 3)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -aa[:, 2], aa[:, 1], -aa[:, 0]
    R = torch.linalg.matrix_exp(skew - skew.transpose(1, 2))
    xv = verts @ R + torch.tensor([0.0, 0.0, dist])
    t = math.tan(math.radians(30))
    return torch.cat([xv[..., :2] / (xv[..., 2:] * t), xv[..., 2:]], -1)


def dense_soft_silhouette(
    verts_ndc: torch.Tensor, faces: torch.Tensor, size: int, sigma: float
) -> torch.Tensor:
    """Every pixel against every face (orthographic-style signed distance, no top-K): the naive baseline.

    Evaluated per view in pixel chunks of DENSE_MAX_PAIRS_PER_CHUNK (pixel, face) pairs so it runs at all.
    """
    blur = default_blur_radius(sigma)
    c = ndc_pixel_centers(size).reshape(-1, 2)
    out = []
    for v in verts_ndc:
        fv = v[faces]  # (F, 3, 3)
        x, y = fv[None, :, :, 0], fv[None, :, :, 1]
        rows = max(1, DENSE_MAX_PAIRS_PER_CHUNK // faces.shape[0])
        log_bg = []
        for s in range(0, c.shape[0], rows):
            px, py = c[s : s + rows, 0, None], c[s : s + rows, 1, None]  # (P, 1)
            d2s, edges = [], []
            for i in range(3):
                ax, ay, bx, by = x[..., i], y[..., i], x[..., (i + 1) % 3], y[..., (i + 1) % 3]
                ex, ey = bx - ax, by - ay
                edges.append((px - ax) * ey - (py - ay) * ex)
                tt = (((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey).clamp(min=1e-12)).clamp(0, 1)
                d2s.append((px - ax - tt * ex) ** 2 + (py - ay - tt * ey) ** 2)
            d2 = torch.stack(d2s).amin(0)
            e = torch.stack(edges)
            inside = (e > 0).all(0) | (e < 0).all(0)
            d = torch.where(inside, -d2, d2)
            cand = inside | (d2 < blur)
            log_bg.append(-(torch.nn.functional.softplus(-d / sigma) * cand).sum(-1))
        out.append(-torch.expm1(torch.cat(log_bg)).view(size, size))
    return torch.stack(out)


def _fwd_bwd(fn, verts_ndc, w):
    v = verts_ndc.clone().requires_grad_(True)
    (fn(v) * w).sum().backward()
    return v.grad


def _bench(impl: str, fn, verts_ndc: torch.Tensor, size: int, mem: bool, repeats: int = 3) -> dict:
    w = torch.rand(verts_ndc.shape[0], size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fwd = time_ms(lambda: fn(verts_ndc), repeats=repeats, warmup=1 if repeats > 1 else 0)
    fb = time_ms(lambda: _fwd_bwd(fn, verts_ndc, w), repeats=repeats, warmup=0)
    peak = peak_memory_mb(lambda: _fwd_bwd(fn, verts_ndc, w)) if mem else None
    return dict(impl=impl, fwd_ms=fwd, fwd_bwd_ms=fb, peak_mb=peak)


def run(quick: bool = True) -> list[dict]:
    """Rows of timings (ms) and peak memory (MiB). Runs single-threaded (restored afterwards): timings on a
    shared machine are reproducible that way, and the fork-based CPU peak-memory probe of common.py can hang
    in a child forked from a multi-threaded OpenMP parent."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> list[dict]:
    rows = []
    cases = [(3, 128), (4, 128)] if quick else [(3, 128), (4, 128), (3, 256), (4, 256)]
    dense_cases = {(3, 32)} if quick else {(3, 64), (3, 128)}
    for level, size in sorted(set(cases) | dense_cases):
        verts, faces = _icosphere(level)
        vn = _views(verts, 8)
        case = f"ico{level} V={verts.shape[0]} 8x{size}^2 K={K}"
        impls = [
            (
                "torch (sparse sil)",
                lambda v, f=faces, s=size: mesh_soft_silhouette(
                    v, f, s, SIGMA, faces_per_pixel=K, perspective_correct=True
                ),
            ),
            (
                "torch (fragments)",
                lambda v, f=faces, s=size: soft_silhouette(
                    rasterize_meshes(v, f, s, default_blur_radius(SIGMA), K, perspective_correct=True),
                    sigma=SIGMA,
                ),
            ),
        ]
        if (level, size) not in cases:
            impls = []
        if (level, size) in dense_cases:
            impls.append(
                ("dense all-pairs", lambda v, f=faces, s=size: dense_soft_silhouette(v, f, s, SIGMA))
            )
        else:
            rows.append(
                dict(
                    bench="mesh_soft_sil",
                    case=case,
                    impl="dense all-pairs",
                    note=f"skipped: {8 * size * size * faces.shape[0] / 1e6:.0f}M pairs too slow",
                )
            )
        if pytorch3d_available():
            impls.append(
                (
                    "pytorch3d",
                    lambda v, f=faces, s=size: soft_silhouette(
                        rasterize_meshes(
                            v,
                            f,
                            s,
                            default_blur_radius(SIGMA),
                            K,
                            perspective_correct=True,
                            backend="pytorch3d",
                        ),
                        sigma=SIGMA,
                    ),
                )
            )
        for impl, fn in impls:
            dense = impl == "dense all-pairs"
            r = _bench(impl, fn, vn, size, mem=not (quick and dense), repeats=1 if dense else 3)
            rows.append(dict(bench="mesh_soft_sil", case=case, **r))
    if not pytorch3d_available():
        rows.append(
            dict(
                bench="mesh_soft_sil",
                case="all",
                impl="pytorch3d",
                note="not importable; issue reports ~17000 ms fwd+bwd for ico3 8x128^2 K=50 (CPU)",
            )
        )
    if not quick:
        # memory target: 32 meshes of 2562 verts at 256^2, K=20, full Fragments + backward
        verts, faces = _icosphere(4)
        vn = _views(verts, 32)
        w = torch.rand(32, 256, 256)

        def frag_fb():
            v = vn.clone().requires_grad_(True)
            fr = rasterize_meshes(v, faces, 256, default_blur_radius(SIGMA), 20, perspective_correct=True)
            (soft_silhouette(fr, sigma=SIGMA) * w).sum().backward()

        rows.append(
            dict(
                bench="mesh_soft_sil",
                case="ico4 V=2562 32x256^2 K=20",
                impl="torch (fragments)",
                fwd_bwd_ms=time_ms(frag_fb, repeats=1, warmup=0),
                peak_mb=peak_memory_mb(frag_fb),
            )
        )
    return rows


if __name__ == "__main__":
    import sys

    print_table(run(quick="--quick" in sys.argv), title="geometry mesh soft silhouette (CPU)")
