"""Benchmark: rasterize_points + alpha compositing (binned torch, a dense reference, PyTorch3D if importable).

Batch 8, 1024 / 8192 points uniform in [-0.9, 0.9]^2 x [1, 3], 64x64 and 256x256 images, radius 1.5 pixels,
8 points per pixel, 3 feature channels. Times are medians (ms); peak memory is what one fwd+bwd adds (MiB).

Run: python -c "from experiments.benchmarks.geometry_points import run; run(quick=True)"
"""

from __future__ import annotations

import torch

from experiments.benchmarks.common import peak_memory_mb, time_ms
from geometry.backend import pytorch3d_available
from geometry.cameras import ndc_pixel_centers
from geometry.point_raster import PointFragments, alpha_composite, rasterize_points

BATCH, K = 8, 8
DENSE_MAX_ELEMENTS = {"cpu": 6e7, "cuda": 1.5e9}  # N*H*W*P pairs above which the dense reference is skipped


def dense_rasterize_points(points: torch.Tensor, size: int, radius: float, k: int) -> PointFragments:
    """Every (pixel, point) pair at once: (N, H, W, P) distances, then top-k of z. The baseline."""
    N, P, _ = points.shape
    c = ndc_pixel_centers(size, points.dtype, points.device)
    xs, ys = c[0, :, 0], c[:, 0, 1]
    x, y, z = points.unbind(-1)
    dx = xs.view(1, 1, -1, 1) - x.view(N, 1, 1, P)
    dy = ys.view(1, -1, 1, 1) - y.view(N, 1, 1, P)
    d2 = dx * dx + dy * dy  # (N, H, W, P)
    cover = (d2 < radius * radius) & (z.view(N, 1, 1, P) >= 0)
    zs = torch.where(cover, z.view(N, 1, 1, P).expand_as(d2), torch.full_like(d2, float("inf")))
    zk, pk = zs.topk(k, dim=-1, largest=False)
    ok = torch.isfinite(zk)
    idx = torch.where(ok, pk + torch.arange(N, device=points.device).view(N, 1, 1, 1) * P, -1)
    dists = torch.where(ok, d2.gather(-1, pk), torch.full_like(zk, -1.0))
    return PointFragments(idx, torch.where(ok, zk, torch.full_like(zk, -1.0)), dists)


def _pytorch3d_fragments(points: torch.Tensor, size: int, radius: float, k: int) -> PointFragments:
    return rasterize_points(points, size, radius, k, backend="pytorch3d")


def _torch_fragments(points: torch.Tensor, size: int, radius: float, k: int) -> PointFragments:
    return rasterize_points(points, size, radius, k, backend="torch")


def _case(impl, points, feats, size, radius, quick, device) -> dict:
    def fwd():
        with torch.no_grad():
            return alpha_composite(impl(points, size, radius, K), feats, radius)

    def fwd_bwd():
        p = points.detach().requires_grad_(True)
        f = feats.detach().requires_grad_(True)
        img = alpha_composite(impl(p, size, radius, K), f, radius)
        img.square().sum().backward()

    reps = 1 if quick else 3
    return {
        "fwd_ms": time_ms(fwd, repeats=reps, warmup=1),
        "fwd_bwd_ms": time_ms(fwd_bwd, repeats=reps, warmup=0 if quick else 1),
        "peak_mb": peak_memory_mb(fwd_bwd, device),
    }


def run(quick: bool = True) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(0)
    sizes = (64, 256)
    counts = (1024, 8192)
    impls = [("binned", _torch_fragments), ("dense", dense_rasterize_points)]
    if pytorch3d_available():
        impls.append(("pytorch3d", _pytorch3d_fragments))
    rows = []
    for size in sizes:
        for P in counts:
            pts = torch.rand(BATCH, P, 3, generator=g) * torch.tensor([1.8, 1.8, 2.0]) + torch.tensor(
                [-0.9, -0.9, 1.0]
            )
            feats = torch.rand(BATCH, P, 3, generator=g)
            pts, feats = pts.to(device), feats.to(device)
            radius = 1.5 * 2 / size
            for name, impl in impls:
                row = {
                    "bench": "rasterize_points+alpha",
                    "case": f"B{BATCH} P{P} {size}x{size}",
                    "impl": name,
                }
                pairs = BATCH * size * size * P
                if name == "dense" and pairs > DENSE_MAX_ELEMENTS["cuda" if device == "cuda" else "cpu"]:
                    row["note"] = f"skipped: dense (N,H,W,P) = {pairs / 1e6:.0f}M pairs does not fit"
                else:
                    row.update(_case(impl, pts, feats, size, radius, quick, device))
                    row["note"] = device
                rows.append(row)
    return rows


if __name__ == "__main__":
    run(quick=False)
