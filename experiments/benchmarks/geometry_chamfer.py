"""Chamfer distance: geometry's chunked knn vs a dense torch.cdist reference (and PyTorch3D when importable).

Forward and forward+backward time and peak memory of the default `chamfer_distance` (squared distances,
point mean, batch mean), batch 8, 1024 and 4096 points per cloud, on CUDA when available else CPU.
Run: `python -m experiments.benchmarks.geometry_chamfer [--quick]` (or through `make bench`).

On CPU every peak-memory measurement runs before any timing: `common.peak_memory_mb` forks, and a forked
child that uses torch's CPU thread pool hangs once the parent process has used that pool.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from experiments.benchmarks.common import peak_memory_mb, print_table, time_ms
from geometry.backend import pytorch3d_available
from geometry.pointcloud import chamfer_distance

SIZES = (1024, 4096)
BATCH = 8


def dense_chamfer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference: the full (B, P1, P2) squared-distance matrix from torch.cdist, minima both ways."""
    d = torch.cdist(x, y).square()  # (B, P1, P2)
    return (d.min(2).values.mean(1) + d.min(1).values.mean(1)).mean()


def _impls() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    impls = {
        "geometry (chunked knn)": lambda x, y: chamfer_distance(x, y)[0],
        "dense torch.cdist": dense_chamfer,
    }
    if pytorch3d_available():
        from pytorch3d.loss import chamfer_distance as p3d_chamfer

        impls["pytorch3d"] = lambda x, y: p3d_chamfer(x, y)[0]
    return impls


def _clouds(P: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, P, 3, generator=g).to(device), torch.randn(BATCH, P, 3, generator=g).to(device)


def _fwd(fn, x0: torch.Tensor, y0: torch.Tensor) -> Callable[[], torch.Tensor]:
    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return fn(x0, y0)

    return fwd


def _fwd_bwd(fn, x0: torch.Tensor, y0: torch.Tensor) -> Callable[[], None]:
    def fwd_bwd() -> None:
        x = x0.clone().requires_grad_(True)
        y = y0.clone().requires_grad_(True)
        fn(x, y).backward()

    return fwd_bwd


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    repeats, warmup = (1, 0) if quick else (5, 1)
    impls = _impls()
    cases = [(P, name) for P in SIZES for name in impls]
    peaks = {
        (P, name): peak_memory_mb(_fwd_bwd(impls[name], *_clouds(P, device)), device) for P, name in cases
    }
    rows = []
    for P, name in cases:
        x0, y0 = _clouds(P, device)
        fwd = _fwd(impls[name], x0, y0)
        rows.append(
            {
                "bench": "chamfer",
                "case": f"B={BATCH} P={P} {device}",
                "impl": name,
                "fwd_ms": time_ms(fwd, repeats, warmup),
                "fwd_bwd_ms": time_ms(_fwd_bwd(impls[name], x0, y0), repeats, warmup),
                "peak_mb": peaks[P, name],
                "note": f"loss {float(fwd()):.6f}",
            }
        )
    return rows


if __name__ == "__main__":
    import sys

    print_table(run(quick="--quick" in sys.argv), title="geometry: chamfer_distance")
