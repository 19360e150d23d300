"""Benchmark: mesh voxelization (geometry.voxel.voxelize_mesh), scanline parity fill vs winding numbers.

Solid 32^3 occupancy of a batch of 4 icospheres (level 2: 320 faces, 3: 1280, 4: 5120), as needed by 3D
voxel IoU evaluation over thousands of shapes (CMR / TTP report IoU of 32^3 voxelizations). The winding
number reference costs R^3 * F solid angles; it is only timed where the cost model below predicts less
than WINDING_MAX_S seconds, from the measured time of the smallest case.

Run: `python -m experiments.benchmarks.geometry_voxel [--quick]` (or through `make bench`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from experiments.benchmarks.common import print_table, time_ms
from geometry.mesh import ico_sphere
from geometry.voxel import voxelize_mesh

BATCH = 4
RESOLUTION = 32
LEVELS = (2, 3, 4)
WINDING_MAX_S = 20.0


def _spheres(level: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """BATCH differently scaled and shifted icospheres: verts (B, V, 3), faces (F, 3)."""
    verts, faces = ico_sphere(level, device=device)
    scale = torch.linspace(0.3, 0.45, BATCH, device=device)[:, None, None]
    shift = torch.linspace(-0.04, 0.04, BATCH, device=device)[:, None, None]
    return verts[None] * scale + shift, faces


def _voxelize(verts: torch.Tensor, faces: torch.Tensor, method: str, out: list) -> Callable[[], None]:
    def fn() -> None:
        out[:] = [voxelize_mesh(verts, faces, RESOLUTION, method=method)]

    return fn


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    repeats, warmup = (1, 0) if quick else (5, 1)
    rows = []
    winding_ms_per_unit = None  # measured winding time per voxel-face pair
    for level in LEVELS:
        verts, faces = _spheres(level, device)
        case = f"ico_sphere({level}) F={faces.shape[0]} {RESOLUTION}^3 B={BATCH} {device}"
        occ, ref = [], []
        parity_ms = time_ms(_voxelize(verts, faces, "parity", occ), repeats, warmup)
        units = BATCH * RESOLUTION**3 * faces.shape[0]
        estimate = None if winding_ms_per_unit is None else winding_ms_per_unit * units
        winding_ms, note = None, ""
        if estimate is None or estimate < 1e3 * WINDING_MAX_S:
            winding_ms = time_ms(_voxelize(verts, faces, "winding", ref), repeats=1, warmup=0)  # seconds each
            winding_ms_per_unit = winding_ms / units
            note = f"same occupancy: {bool(torch.equal(occ[0], ref[0]))}"
        else:
            note = f"winding skipped: estimated {estimate / 1e3:.0f} s, {estimate / parity_ms:.0f}x"
        rows.append(
            {"bench": "voxelize_mesh", "case": case, "impl": "parity", "fwd_ms": parity_ms, "note": note}
        )
        rows.append({"bench": "voxelize_mesh", "case": case, "impl": "winding", "fwd_ms": winding_ms})
        if winding_ms is not None:
            rows[-2]["speedup"] = winding_ms / parity_ms
    return rows


if __name__ == "__main__":
    import sys

    print_table(run(quick="--quick" in sys.argv), title="geometry: voxelize_mesh")
