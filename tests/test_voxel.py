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


# ---------------------------------------------------------------------------------------------------------
# Parity (scanline) fill against the winding-number reference


def _assert_same(par, ref, what):
    diff = par ^ ref
    where = diff.nonzero()[:5].tolist()
    assert not diff.any(), (
        f"{what}: {int(diff.sum())} of {diff.numel()} voxels differ, first (b,z,y,x) {where}"
    )


def _both(verts, faces, **kw):
    return (
        voxelize_mesh(verts, faces, method="parity", **kw),
        voxelize_mesh(verts, faces, method="winding", **kw),
    )


def _octahedron(centre, a, dtype=torch.float32):
    """Closed octahedron |x - cx| + |y - cy| + |z - cz| <= a, 6 verts, 8 outward CCW faces."""
    e = torch.eye(3, dtype=dtype)
    verts = torch.cat([e, -e])[[0, 3, 1, 4, 2, 5]] * a + centre  # +x, -x, +y, -y, +z, -z
    faces = []
    for sx, sy, sz in itertools.product([0, 1], repeat=3):  # octant (sign index per axis)
        tri = [sx, 2 + sy, 4 + sz]
        faces.append(tri if (sx + sy + sz) % 2 == 0 else tri[::-1])
    return verts, torch.tensor(faces)


def _torus(n_u=24, n_v=12, major=0.3, minor=0.12, dtype=torch.float32):
    """Closed torus around the z axis from an (n_u, n_v) grid of (major angle, minor angle), outward faces."""
    u = torch.arange(n_u, dtype=dtype) * (2 * math.pi / n_u)
    v = torch.arange(n_v, dtype=dtype) * (2 * math.pi / n_v)
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    rho = major + minor * torch.cos(vv)
    verts = torch.stack([rho * torch.cos(uu), rho * torch.sin(uu), minor * torch.sin(vv)], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n_u), torch.arange(n_v), indexing="ij")
    a, b = i * n_v + j, (i + 1) % n_u * n_v + j
    c, d = (i + 1) % n_u * n_v + (j + 1) % n_v, i * n_v + (j + 1) % n_v
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)]).reshape(-1, 3)
    return verts, faces


def _random_rotation(g, dtype=torch.float32):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return (q * torch.det(q)).to(dtype)  # det +1


def _deformed_sphere(level=2, seed=0, dtype=torch.float32):
    verts, faces = ico_sphere(level, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    x, y, z = verts.unbind(-1)
    radius = 0.32 * (1 + 0.3 * torch.sin(3 * x + 1) * torch.cos(2 * y) + 0.2 * z**2)  # non-convex bumps
    return (verts * radius[:, None]) @ _random_rotation(g, dtype) + 0.03, faces


def test_parity_equals_winding_existing_cases():
    verts, faces = _box((-0.31, -0.2, 0.05), (0.27, 0.33, 0.42))
    _assert_same(*_both(verts, faces, resolution=32), "box")
    _assert_same(*_both(verts, faces.flip(1), resolution=32), "inward box")
    sphere, sfaces = ico_sphere(2)
    _assert_same(*_both(0.4 * sphere, sfaces, resolution=24), "sphere")
    _assert_same(*_both(sphere, sfaces, resolution=16, bounds="auto"), "sphere, auto bounds")
    # odd resolution: the x = 0 and y = 0 centre columns run along icosphere edges and through vertices
    par, ref = _both(0.45 * sphere, sfaces, resolution=21)
    _assert_same(par, ref, "sphere, columns through edges and vertices")
    assert int(par.sum()) > 0


def _column_coords(R, dtype):
    return voxel_centers(R, torch.tensor([-0.5], dtype=dtype), torch.tensor([0.5], dtype=dtype))[
        0, 0, 0, :, 0
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mirror", [False, True])
def test_parity_tie_breaking_box_on_columns(dtype, mirror):
    """Box whose x and y faces lie exactly on centre columns (and whose top / bottom diagonals run through
    columns): the half-open rule puts columns x in [x_3, x_12), y in [y_5, y_14) inside."""
    R = 20
    xs = _column_coords(R, dtype)  # the centre coordinates, bit for bit
    lo = torch.stack([xs[3], xs[5], torch.tensor(-0.33, dtype=dtype)])
    hi = torch.stack([xs[12], xs[14], torch.tensor(0.21, dtype=dtype)])
    verts, faces = _box(lo.tolist(), hi.tolist(), dtype=dtype)
    # exact on purpose: the test's premise (corners copied from the column coordinates, no arithmetic)
    assert torch.equal(verts.amin(0)[:2], lo[:2]), "box corners must be exactly on the columns"
    if mirror:  # mirror x: the top / bottom quads' diagonals become anti-diagonals
        verts = verts[[4, 5, 6, 7, 0, 1, 2, 3]]
    par = voxelize_mesh(verts, faces, resolution=R, method="parity")
    nz = _count_inside(-0.33, 0.21, R)
    assert int(par.sum()) == 9 * 9 * nz, f"{int(par.sum())} voxels, expected 9*9*{nz} (half-open columns)"
    expect = torch.zeros(R, R, R, dtype=torch.bool)
    c = voxel_centers(R, torch.tensor([-0.5]), torch.tensor([0.5]))[0, :, 0, 0, 2]
    expect[(c > -0.33) & (c < 0.21), 5:14, 3:12] = True
    _assert_same(par[0], expect, "half-open box")
    # winding agrees off the surface (a centre on a face can get any winding number in 0, 1/4, 1/2, 1)
    pts = voxel_centers(R, lo.new_tensor([-0.5]), lo.new_tensor([0.5])).reshape(1, -1, 3)
    w = winding_number(pts, verts[None], faces[None]).abs().reshape(R, R, R)
    sure = torch.ones(R, R, R, dtype=torch.bool)
    sure[:, :, [3, 12]] = False
    sure[:, [5, 14], :] = False
    _assert_same(par[0][sure], (w > 0.5)[sure], "box vs winding away from the surface")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_octahedron_vertices_on_columns(dtype):
    """Octahedron with all 6 vertices on centre columns: the columns through the apexes (4-face fans), the
    silhouette vertices and along the axis-aligned edges; its equator is half-way between centre planes,
    so no centre is on the surface and parity, winding and the analytic count all agree exactly."""
    R = 20
    xs = _column_coords(R, dtype)
    centre = torch.stack([xs[9], xs[11], torch.tensor(0.0, dtype=dtype)])  # z = 0 is a voxel boundary
    a = xs[16] - xs[9]  # 7 voxels
    verts, faces = _octahedron(centre, a, dtype)
    # exact on purpose: the test's premise; xs[9] + (xs[16] - xs[9]) is xs[16] in IEEE arithmetic here
    assert torch.equal(verts[0, :2], torch.stack([xs[16], xs[11]])), "vertex must be exactly on a column"
    par, ref = _both(verts, faces, resolution=R)
    _assert_same(par, ref, "octahedron")
    c = voxel_centers(R, torch.tensor([-0.5], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    expect = (c[0] - centre.double()).abs().sum(-1) < float(a)
    _assert_same(par[0], expect, "octahedron vs |x|+|y|+|z| < a")


def test_parity_equals_winding_rotated_deformed_sphere():
    for seed in range(3):
        verts, faces = _deformed_sphere(seed=seed)
        _assert_same(*_both(verts, faces, resolution=24), f"deformed sphere seed {seed}")


def test_parity_equals_winding_torus():
    verts, faces = _torus()
    assert _polyhedron_volume(verts, faces) > 0, "torus faces must be outward"
    par, ref = _both(verts, faces, resolution=24)
    _assert_same(par, ref, "torus")
    assert not par[0, :, 11:13, 11:13].any(), "the hole must be empty"
    g = torch.Generator().manual_seed(1)
    tilted = verts @ _random_rotation(g)
    _assert_same(*_both(tilted, faces, resolution=24), "tilted torus")


def test_parity_non_convex_two_boxes():
    """Two disjoint boxes in one mesh and an L-shaped union (columns crossing 4 faces)."""
    va, fa = _box((-0.4, -0.3, -0.35), (0.1, 0.2, -0.05))
    vb, fb = _box((-0.2, -0.1, 0.05), (0.3, 0.4, 0.37))
    verts, faces = torch.cat([va, vb]), torch.cat([fa, fb + 8])
    par, ref = _both(verts, faces, resolution=20)
    _assert_same(par, ref, "two boxes")
    both = voxelize_mesh(va, fa, resolution=20) | voxelize_mesh(vb, fb, resolution=20)
    _assert_same(par, both, "two boxes vs union of each")


def test_parity_batch_equals_per_sample():
    meshes = [
        _deformed_sphere(seed=3),
        _torus(),
        _octahedron(torch.tensor([0.05, -0.1, 0.02]), 0.37),
        _box((-0.3, -0.2, -0.1), (0.2, 0.3, 0.4)),
    ]
    V = max(v.shape[0] for v, _ in meshes)
    F = max(f.shape[0] for _, f in meshes)
    verts = torch.zeros(len(meshes), V, 3)
    faces = torch.full((len(meshes), F, 3), -1)
    for b, (v, f) in enumerate(meshes):
        verts[b, : v.shape[0]] = v
        faces[b, : f.shape[0]] = f
    for bounds in [(-0.5, 0.5), "auto"]:
        occ = voxelize_mesh(verts, faces, resolution=20, bounds=bounds)
        assert occ.shape == (4, 20, 20, 20)
        for b, (v, f) in enumerate(meshes):
            if bounds == "auto":  # padded zero vertices would change the bounds: use the real ones
                continue
            _assert_same(occ[b], voxelize_mesh(v, f, resolution=20, bounds=bounds)[0], f"batch item {b}")
    # auto bounds: pad with copies of a real vertex so the bounds are each mesh's own
    for b, (v, _) in enumerate(meshes):
        verts[b, v.shape[0] :] = v[0]
    occ = voxelize_mesh(verts, faces, resolution=20, bounds="auto")
    for b, (v, f) in enumerate(meshes):
        _assert_same(occ[b], voxelize_mesh(v, f, resolution=20, bounds="auto")[0], f"auto batch item {b}")


def test_parity_chunking(monkeypatch):
    import geometry.voxel as voxel

    verts, faces = _deformed_sphere(seed=5)
    full = voxelize_mesh(verts, faces, resolution=24)
    monkeypatch.setattr(voxel, "_CHUNK_COLUMN_PAIRS", 37)
    _assert_same(voxelize_mesh(verts, faces, resolution=24), full, "chunks of 37 pairs")


def test_bad_method():
    verts, faces = ico_sphere(0)
    with pytest.raises(ValueError, match="method"):
        voxelize_mesh(verts, faces, method="raycast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda_matches_cpu():
    verts, faces = _torus()
    cpu = voxelize_mesh(verts, faces, resolution=32)
    gpu = voxelize_mesh(verts.cuda(), faces.cuda(), resolution=32)
    assert gpu.is_cuda
    _assert_same(gpu.cpu(), cpu, "cuda vs cpu")
