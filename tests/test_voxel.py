"""Tests of geometry.voxel: analytic voxel counts, sphere volume, IoU."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from geometry.mesh import ico_sphere
from geometry.voxel import auto_bounds, voxel_centers, voxel_iou, voxelize_mesh, winding_number


def _box(lo, hi, dtype=torch.float32):
    """Axis-aligned box, 8 verts, 12 outward CCW triangles."""
    lo, hi = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    corners = torch.tensor(list(itertools.product([0, 1], repeat=3)), dtype=dtype)  # index = 4x + 2y + z
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [[a, b, c] for a, b, c, d in quads] + [[a, c, d] for a, b, c, d in quads]
    return lo + corners * (hi - lo), torch.tensor(faces)


def _count_inside(lo, hi, R, blo=-0.5, bhi=0.5):
    """Number of voxel centres strictly inside [lo, hi] along one axis."""
    return sum(1 for k in range(R) if lo < blo + (k + 0.5) * (bhi - blo) / R < hi)


def test_box_voxelizes_to_analytic_count_and_position():
    lo, hi = (-0.31, -0.2, 0.05), (0.27, 0.33, 0.42)  # bounds chosen off the voxel centres
    verts, faces = _box(lo, hi)
    R = 32
    occ = voxelize_mesh(verts, faces, resolution=R)
    assert occ.shape == (1, R, R, R) and occ.dtype == torch.bool
    nx, ny, nz = (_count_inside(a, b, R) for a, b in zip(lo, hi))
    assert int(occ.sum()) == nx * ny * nz, f"{int(occ.sum())} voxels, expected {nx}*{ny}*{nz}"
    # layout (B, z, y, x): the occupied block sits where the centres are inside
    c = voxel_centers(R, torch.tensor([-0.5]), torch.tensor([0.5]))[0]
    inside = torch.ones(R, R, R, dtype=torch.bool)
    for axis in range(3):
        inside &= (c[..., axis] > lo[axis]) & (c[..., axis] < hi[axis])
    assert torch.equal(occ[0], inside), f"{int((occ[0] ^ inside).sum())} voxels differ from the analytic box"
    # inward-oriented faces give the same solid
    assert torch.equal(voxelize_mesh(verts, faces.flip(1), resolution=R), occ)


def test_winding_number_inside_outside():
    verts, faces = ico_sphere(2)
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.3, -0.2, 0.5], [1.5, 0.0, 0.0], [0.0, 2.0, -1.0]]])
    w = winding_number(pts, verts[None], faces[None])
    assert torch.allclose(w, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), atol=1e-4), f"winding numbers {w.tolist()}"


def _polyhedron_volume(verts, faces):
    v0, v1, v2 = verts[faces].double().unbind(1)
    return float((v0 * torch.linalg.cross(v1, v2, dim=1)).sum() / 6.0)


def test_sphere_volume_fraction_and_batch():
    verts, faces = ico_sphere(2)
    r, R = 0.4, 24
    # batch of a sphere and a (differently connected) box: faces per mesh, box padded with -1 rows
    bverts, bfaces = _box((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3))
    verts_b = torch.zeros(2, verts.shape[0], 3)
    verts_b[0] = r * verts
    verts_b[1, :8] = bverts
    faces_b = torch.full((2, faces.shape[0], 3), -1)
    faces_b[0] = faces
    faces_b[1, :12] = bfaces
    occ = voxelize_mesh(verts_b, faces_b, resolution=R)
    frac = occ[0].double().mean().item()
    poly = _polyhedron_volume(r * verts, faces)  # the tessellated volume, a little below the sphere's
    sphere = 4 / 3 * math.pi * r**3
    # discretization: voxels cut by the surface, |error| <= surface area * half voxel diagonal / volume
    disc = 4 * math.pi * r**2 * (math.sqrt(3) / 2 / R)
    assert abs(frac - poly) < disc, f"filled fraction {frac:.4f} vs polyhedron {poly:.4f} (bound {disc:.4f})"
    assert abs(frac - sphere) < disc + (sphere - poly), f"filled fraction {frac:.4f} vs sphere {sphere:.4f}"
    assert abs(frac - poly) < 0.02 * poly, f"filled fraction {frac:.4f} not within 2% of {poly:.4f}"
    n = _count_inside(-0.3, 0.3, R)
    assert int(occ[1].sum()) == n**3, "padded box in a batch"


def test_auto_bounds_translation_invariant():
    verts, faces = ico_sphere(1)
    a = voxelize_mesh(verts, faces, resolution=16, bounds="auto")
    b = voxelize_mesh(verts * 3 + torch.tensor([10.0, -4.0, 2.0]), faces, resolution=16, bounds="auto")
    assert torch.equal(a, b), f"{int((a ^ b).sum())} voxels differ after scaling + translating"
    lo, hi = auto_bounds(verts[None])
    assert torch.allclose(hi - lo, torch.full((1, 3), 2 * 1.05 * float(verts[:, 0].max())), atol=1e-5)
    assert 0.3 < a.float().mean() < 0.55


def test_voxel_iou_analytic():
    R = 12
    a = torch.zeros(3, R, R, R, dtype=torch.bool)
    b = torch.zeros_like(a)
    a[0, 2:10, 2:10, 2:10] = True
    b[0] = a[0]  # identical -> 1
    a[1, :, :, 0:4] = True
    b[1, :, :, 6:10] = True  # disjoint -> 0
    a[2, :, 3:9, 0:8] = True
    b[2, :, 3:9, 4:12] = True  # half-overlapping boxes: 4 / 12 -> 1/3
    iou = voxel_iou(a, b)
    assert torch.allclose(iou, torch.tensor([1.0, 0.0, 1.0 / 3.0])), f"IoU {iou.tolist()}"
    assert torch.allclose(voxel_iou(a.float(), b.float()), iou)
    # two voxelized half-overlapping boxes
    va, fa = _box((-0.4, -0.25, -0.25), (0.2, 0.25, 0.25))
    vb, fb = _box((-0.1, -0.25, -0.25), (0.5, 0.25, 0.25))
    occ = voxelize_mesh(torch.stack([va, vb]), torch.stack([fa, fb]), resolution=20)
    iou_mesh = voxel_iou(occ[:1], occ[1:])
    assert abs(float(iou_mesh) - 1 / 3) < 1e-6, f"voxelized half-overlapping boxes IoU {float(iou_mesh)}"


def test_bad_arguments():
    verts, faces = ico_sphere(0)
    with pytest.raises(ValueError, match="bounds"):
        voxelize_mesh(verts, faces, bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="verts"):
        voxelize_mesh(verts[:, :2], faces)
    with pytest.raises(ValueError, match="shape"):
        voxel_iou(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 3))
