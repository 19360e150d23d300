"""Tests of geometry.mesh: PyTorch3D reference agreement, analytic cases, naive references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from geometry.mesh import (
    cot_laplacian,
    edge_topology,
    face_areas,
    face_normals,
    face_verts,
    ico_sphere,
    mesh_edges,
    pack_meshes,
    padded_from_lists,
    sample_points_from_meshes,
    subdivide_mesh,
    uniform_laplacian,
    vertex_normals,
)
from helpers import assert_close, load_reference


def _box(lo, hi, dtype=torch.float32):
    """Axis-aligned box, 8 verts, 12 outward CCW triangles."""
    lo, hi = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    corners = torch.tensor(list(itertools.product([0, 1], repeat=3)), dtype=dtype)  # index = 4x + 2y + z
    verts = lo + corners * (hi - lo)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [[a, b, c] for a, b, c, d in quads] + [[a, c, d] for a, b, c, d in quads]
    return verts, torch.tensor(faces)


def _signed_volume(verts, faces):
    v0, v1, v2 = verts[faces].unbind(1)
    return float((v0 * torch.linalg.cross(v1, v2, dim=1)).sum() / 6.0)


# -------------------------------------------------------------------------------- ico sphere


def test_ico_sphere_matches_pytorch3d_level2_and_3():
    d = load_reference("mesh_utils")
    verts, faces = ico_sphere(2)
    assert torch.equal(faces, torch.from_numpy(d["ico2_faces"])), "ico_sphere(2) faces differ from PyTorch3D"
    assert_close(verts, d["ico2_verts"], rtol=0, atol=1e-6, what="ico_sphere(2) verts")
    sil = load_reference("mesh_sil_ico2_persp_64")
    assert_close(verts, sil["verts"], rtol=0, atol=1e-6, what="ico_sphere(2) vs silhouette file verts")
    _, faces3 = ico_sphere(3)
    assert torch.equal(faces3, torch.from_numpy(d["def3_faces"])), "ico_sphere(3) faces differ from PyTorch3D"


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_ico_sphere_topology_and_geometry(level):
    verts, faces = ico_sphere(level, dtype=torch.float64)
    V, F, E = verts.shape[0], faces.shape[0], mesh_edges(faces).shape[0]
    assert (V, F) == (10 * 4**level + 2, 20 * 4**level), f"counts V={V} F={F}"
    assert V - E + F == 2, f"Euler characteristic {V - E + F} != 2 at level {level}"
    r = verts.norm(dim=1)
    tol = 1e-4 if level == 0 else 1e-12  # level 0 keeps PyTorch3D's 4-decimal constants
    assert (r - 1).abs().max() < tol, f"max |r - 1| = {float((r - 1).abs().max()):.2e}"
    # closed, outward: every edge in exactly 2 faces, positive volume, normals point away from the centre
    _, f2e = edge_topology(faces)
    assert torch.bincount(f2e.reshape(-1)).eq(2).all(), "an edge is not shared by exactly two faces"
    n = face_normals(verts, faces)
    assert ((n * verts[faces].mean(1)).sum(1) > 0).all(), "inward-facing face"
    assert _signed_volume(verts, faces) > 0


def test_ico_sphere_area_converges_to_sphere():
    verts, faces = ico_sphere(4, dtype=torch.float64)
    area = float(face_areas(verts, faces).sum())
    assert abs(area - 4 * math.pi) / (4 * math.pi) < 5e-3, f"area {area} vs 4 pi"


# -------------------------------------------------------------------------------- edges


def test_mesh_edges_matches_pytorch3d():
    d = load_reference("mesh_utils")
    edges = mesh_edges(torch.from_numpy(d["def3_faces"]))
    ref = torch.from_numpy(d["def3_edges_packed"])
    assert edges.shape == ref.shape and torch.equal(edges, ref), "edges differ from def3_edges_packed"


def test_edge_topology_naive_reference():
    g = torch.Generator().manual_seed(1)
    faces = torch.stack([torch.randperm(9, generator=g)[:3] for _ in range(15)])
    edges, f2e = edge_topology(faces)
    naive = sorted(
        {tuple(sorted((int(f[a]), int(f[b])))) for f in faces for a, b in ((0, 1), (1, 2), (2, 0))}
    )
    assert edges.tolist() == [list(e) for e in naive]
    for fi, f in enumerate(faces.tolist()):
        for k in range(3):  # faces_to_edges[:, k] is the edge opposite corner k
            a, b = f[(k + 1) % 3], f[(k + 2) % 3]
            assert edges[f2e[fi, k]].tolist() == sorted([a, b]), f"face {fi} corner {k}"


# -------------------------------------------------------------------------------- subdivision


def _naive_subdivide(verts, faces):
    edges = sorted(
        {tuple(sorted((int(f[a]), int(f[b])))) for f in faces for a, b in ((0, 1), (1, 2), (2, 0))}
    )
    index = {e: len(verts) + i for i, e in enumerate(edges)}
    mids = torch.stack([(verts[a] + verts[b]) / 2 for a, b in edges])
    m = lambda a, b: index[tuple(sorted((a, b)))]
    corner, centre = [[], [], []], []
    for v0, v1, v2 in faces.tolist():
        e0, e1, e2 = m(v1, v2), m(v2, v0), m(v0, v1)
        corner[0].append([v0, e2, e1])
        corner[1].append([v1, e0, e2])
        corner[2].append([v2, e1, e0])
        centre.append([e0, e1, e2])
    return torch.cat([verts, mids]), torch.tensor(corner[0] + corner[1] + corner[2] + centre)


def test_subdivide_mesh_naive_reference_and_batch():
    verts, faces = ico_sphere(1, dtype=torch.float64)
    verts = verts + 0.1 * torch.randn(verts.shape, dtype=torch.float64)
    new_v, new_f = subdivide_mesh(verts, faces)
    ref_v, ref_f = _naive_subdivide(verts, faces)
    assert torch.equal(new_f, ref_f), "subdivided faces differ from the naive reference"
    assert_close(new_v, ref_v, what="subdivided verts")
    # the subdivided surface is the same surface: area preserved, orientation preserved
    assert_close(face_areas(new_v, new_f).sum(), face_areas(verts, faces).sum(), what="area")
    batch = torch.stack([verts, 2 * verts])
    bv, bf = subdivide_mesh(batch, faces)
    assert torch.equal(bf, new_f) and bv.shape == (2, new_v.shape[0], 3)
    assert_close(bv[1], 2 * new_v, what="batched subdivision")


# -------------------------------------------------------------------------------- normals, areas


def test_face_normals_and_areas_of_a_cube():
    verts, faces = _box([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0])
    n = face_normals(verts, faces)
    centroid_dir = verts[faces].mean(1)
    expected = torch.zeros_like(n)
    axis = centroid_dir.abs().argmax(1)
    expected[torch.arange(12), axis] = centroid_dir[torch.arange(12), axis].sign()
    assert_close(n, expected, what="cube face normals")
    assert_close(face_areas(verts, faces), torch.full((12,), 2.0), what="cube face areas")


def test_face_area_of_unit_triangle_and_batch_padding():
    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [1, 2, 3]])
    a = face_areas(verts, faces)
    assert_close(a, torch.tensor([0.5, math.sqrt(3) / 2]), what="unit triangle areas")
    assert_close(face_normals(verts, faces)[0], torch.tensor([0.0, 0.0, 1.0]), what="normal")
    padded = torch.tensor([[[0, 1, 2], [1, 2, 3]], [[0, 1, 2], [-1, -1, -1]]])
    ab = face_areas(torch.stack([verts, verts]), padded)
    assert_close(ab, torch.tensor([[0.5, math.sqrt(3) / 2], [0.5, 0.0]]), what="padded")
    # face_verts: naive per-face loop reference, batched/shared layouts, D channels, -1 rows gather vertex 0
    attrs = torch.arange(2 * 4 * 5, dtype=torch.float64).reshape(2, 4, 5)
    fv = face_verts(attrs, padded)
    naive = torch.stack(
        [torch.stack([attrs[b, max(int(i), 0)] for i in row]) for b in range(2) for row in padded[b]]
    ).reshape(2, 2, 3, 5)
    # exact below: face_verts is a gather, no arithmetic
    assert torch.equal(fv, naive), f"face_verts max diff {(fv - naive).abs().max()}"
    assert torch.equal(face_verts(attrs, faces), attrs[:, faces]), "(B, V, D) verts with shared (F, 3) faces"
    assert torch.equal(face_verts(verts, faces), verts[faces]), "unbatched (V, D), (F, 3) -> (F, 3, D)"
    assert torch.equal(face_verts(verts, padded)[1, 1], verts[[0, 0, 0]]), "(V, D) verts, (B, F, 3) faces"


def test_vertex_normals_naive_reference_and_symmetry():
    d = load_reference("mesh_utils")
    verts = torch.from_numpy(d["def2_verts"]).double()
    faces = torch.from_numpy(d["def2_faces"])
    vn = vertex_normals(verts, faces)
    ref = torch.zeros_like(verts)
    for f in faces.tolist():  # area-weighted sum of face normals (|cross| = 2 area)
        c = torch.linalg.cross(verts[f[1]] - verts[f[0]], verts[f[2]] - verts[f[0]], dim=0)
        for i in f:
            ref[i] += c
    ref = ref / ref.norm(dim=1, keepdim=True)
    assert_close(vn, ref, what="vertex normals vs naive loop")
    v0, f0 = ico_sphere(0)
    assert_close(
        vertex_normals(v0, f0), v0 / v0.norm(dim=1, keepdim=True), rtol=0, atol=1e-4, what="ico0 radial"
    )
    vb = vertex_normals(torch.stack([verts, -verts]), faces)
    assert_close(vb[0], vn, what="batched")


# -------------------------------------------------------------------------------- sampling


def _two_triangles():
    """Triangle A in z=0 with area 1, triangle B in z=1 with area 3 (disjoint)."""
    verts = torch.tensor(
        [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 2.0, 1.0]]
    )
    return verts, torch.tensor([[0, 1, 2], [3, 4, 5]])


def test_sample_points_lie_on_faces_and_are_area_proportional():
    verts, faces = _two_triangles()
    n = 20000
    g = torch.Generator().manual_seed(3)
    pts, nrm = sample_points_from_meshes(verts, faces, n, return_normals=True, generator=g)
    assert pts.shape == (1, n, 3) and nrm.shape == (1, n, 3)
    pts, nrm = pts[0], nrm[0]
    on_b = pts[:, 2] > 0.5
    plane_err = torch.minimum(pts[:, 2].abs(), (pts[:, 2] - 1).abs()).max()
    assert plane_err < 1e-6, f"a point left the planes of the faces by {float(plane_err):.2e}"
    x, y = pts[:, 0], pts[:, 1]
    leg_x = torch.where(on_b, 3.0, 2.0)  # right triangles with legs (2, 1) at z=0 and (3, 2) at z=1
    leg_y = torch.where(on_b, 2.0, 1.0)
    eps = 1e-6
    inside = (x >= -eps) & (y >= -eps) & (x / leg_x + y / leg_y <= 1 + eps)
    assert inside.all(), f"{int((~inside).sum())} points outside their triangle"
    frac = on_b.double().mean().item()
    sigma = math.sqrt(0.75 * 0.25 / n)
    assert abs(frac - 0.75) < 5 * sigma, (
        f"fraction on the area-3 face {frac:.4f}, expected 0.75 +- {5 * sigma:.4f}"
    )
    assert_close(nrm, torch.tensor([0.0, 0.0, 1.0]).expand(n, 3), what="sample normals")
    # uniform within a face: the mean of uniform samples is the centroid
    cen_b = verts[3:].mean(0)
    err = (pts[on_b].mean(0) - cen_b).abs().max().item()
    assert err < 5 * 3 / math.sqrt(12 * on_b.sum().item()), f"mean of samples off the centroid by {err:.4f}"


def test_sample_points_seeded_batched_and_differentiable():
    verts, faces = ico_sphere(1)
    a = sample_points_from_meshes(verts, faces, 100, generator=torch.Generator().manual_seed(5))
    b = sample_points_from_meshes(verts, faces, 100, generator=torch.Generator().manual_seed(5))
    c = sample_points_from_meshes(verts, faces, 100, generator=torch.Generator().manual_seed(6))
    assert_close(b, a, "same seed, same samples")
    assert (a - c).abs().max() > 1e-2, "seeded generator does not control the samples"
    # padded batch: mesh 1 has only face 0 -> every sample lies on that face's plane
    pv = torch.stack([verts, verts]).requires_grad_(True)
    pf = torch.stack([faces, torch.cat([faces[:1], torch.full_like(faces[1:], -1)])])
    pts = sample_points_from_meshes(pv, pf, 64, generator=torch.Generator().manual_seed(0))
    n0 = face_normals(verts, faces[:1])[0]
    dist = ((pts[1] - verts[faces[0, 0]]) @ n0).abs().max()
    assert dist < 1e-6, f"sample off the only valid face by {float(dist):.2e}"
    # barycentric weights sum to one: d(sum of points)/d(verts) sums to the number of samples per axis
    (g,) = torch.autograd.grad(pts.sum(), pv)
    assert_close(g.sum((0, 1)), torch.full((3,), 128.0), what="gradient mass")


# -------------------------------------------------------------------------------- Laplacians


def test_cot_laplacian_matches_pytorch3d():
    d = load_reference("mesh_utils")
    for name in ("ico2", "def2"):
        L, inv_areas = cot_laplacian(
            torch.from_numpy(d[f"{name}_verts"]), torch.from_numpy(d[f"{name}_faces"])
        )
        scale = float(np.abs(d[f"{name}_cot_L_dense"]).max())
        assert_close(L.to_dense(), d[f"{name}_cot_L_dense"], rtol=1e-5, atol=1e-6 * scale, what=f"{name} L")
        assert_close(inv_areas, d[f"{name}_cot_inv_areas"], rtol=1e-5, atol=0, what=f"{name} inv_areas")


def test_cot_laplacian_naive_angles():
    verts, faces = ico_sphere(1, dtype=torch.float64)
    verts = verts * torch.tensor([1.0, 0.7, 1.3], dtype=torch.float64) + 0.05 * torch.randn_like(verts)
    L, inv_areas = cot_laplacian(verts, faces)
    V = verts.shape[0]
    ref = torch.zeros(V, V, dtype=torch.float64)
    area = torch.zeros(V, dtype=torch.float64)
    for f in faces.tolist():
        for k in range(3):
            o, a, b = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
            u, w = verts[a] - verts[o], verts[b] - verts[o]
            ang = torch.acos((u @ w) / (u.norm() * w.norm()))
            ref[a, b] += 1 / torch.tan(ang)
            ref[b, a] += 1 / torch.tan(ang)
        A = 0.5 * torch.linalg.cross(verts[f[1]] - verts[f[0]], verts[f[2]] - verts[f[0]], dim=0).norm()
        area[f] += A
    assert_close(L.to_dense(), ref, rtol=1e-9, atol=1e-9, what="cot L vs angles")
    assert_close(inv_areas[:, 0], 1 / area, rtol=1e-9, atol=0, what="inv_areas")


def test_uniform_laplacian_semantics():
    verts, faces = ico_sphere(1)
    verts = torch.cat([verts, torch.zeros(1, 3)])  # an isolated vertex: row is just -1 on the diagonal
    L = uniform_laplacian(verts, faces).to_dense()
    V = verts.shape[0]
    A = torch.zeros(V, V)
    for a, b in mesh_edges(faces).tolist():
        A[a, b] = A[b, a] = 1
    deg = A.sum(1, keepdim=True)
    ref = torch.where(deg > 0, A / deg.clamp(min=1), 0.0) - torch.eye(V)
    assert_close(L, ref, what="uniform Laplacian")


# -------------------------------------------------------------------------------- helpers, checks


def test_padded_from_lists_and_pack():
    v1, f1 = ico_sphere(0)
    v2, f2 = ico_sphere(1)
    pm = padded_from_lists([v1, v2], [f1, f2])
    assert pm.verts.shape == (2, 42, 3) and pm.faces.shape == (2, 80, 3)
    assert pm.verts_lengths.tolist() == [12, 42] and pm.faces_lengths.tolist() == [20, 80]
    p = pack_meshes(pm.verts, pm.faces, pm.verts_lengths)
    assert p.faces.shape == (100, 3) and int(p.vert_mask.sum()) == 54
    assert torch.equal(p.faces[:20], f1) and torch.equal(p.faces[20:], f2 + 42)


def test_shape_errors_name_the_argument():
    v, f = ico_sphere(0)
    with pytest.raises(ValueError, match="verts"):
        face_normals(v[:, :2], f)
    with pytest.raises(ValueError, match="faces"):
        face_areas(v, f[:, :2])
    with pytest.raises(ValueError, match="faces"):
        face_areas(torch.stack([v, v]), torch.stack([f, f, f]))
    with pytest.raises(ValueError, match="faces"):
        face_verts(torch.stack([v, v]), torch.stack([f, f, f]))
    with pytest.raises(ValueError, match="faces"):
        face_verts(v, f.float())
    with pytest.raises(ValueError, match="verts"):
        face_verts(v[0], f)
    with pytest.raises(ValueError, match="out of range"):
        pack_meshes(v, f + 12)
    with pytest.raises(ValueError, match="level"):
        ico_sphere(-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sample_points_cpu_generator_drives_cuda_verts():
    # regression: a CPU generator with CUDA verts raised in torch.multinomial; the draws now happen on the
    # generator's device and move, so CUDA verts give the CPU samples
    verts, faces = ico_sphere(1)
    a = sample_points_from_meshes(verts, faces, 50, generator=torch.Generator().manual_seed(3))
    b = sample_points_from_meshes(verts.cuda(), faces.cuda(), 50, generator=torch.Generator().manual_seed(3))
    assert b.device.type == "cuda"
    assert_close(b.cpu(), a, atol=1e-6, rtol=1e-5, what="CPU-generator samples on CUDA vs CPU")


def _pyramid():
    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 1, 3], [1, 2, 3]])
    return verts, faces


def test_sample_points_empty_mesh_gives_zeros_as_pytorch3d():
    # PyTorch3D ops/sample_points_from_meshes.py: "For empty meshes the corresponding row in the samples
    # array will be filled with 0" (normals and textures too); tests/test_sample_points_from_meshes.py
    # ::test_sampling_output batches [empty, ico_sphere, unit simplex] and checks these facts.
    sv, sf = ico_sphere(3)
    pv, pf = _pyramid()
    empty_v, empty_f = torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)
    pm = padded_from_lists([empty_v, sv, pv], [empty_f, sf, pf])
    verts = pm.verts.clone().requires_grad_()
    colours = torch.rand(3, verts.shape[1], 3, generator=torch.Generator().manual_seed(1))
    n = 200
    pts, nrm, tex = sample_points_from_meshes(
        verts, pm.faces, n, return_normals=True, return_textures=True, textures=colours,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert pts.shape == nrm.shape == (3, n, 3) and tex.shape == (3, n, 3)
    for name, t in (("samples", pts), ("normals", nrm), ("textures", tex)):
        assert_close(t[0], torch.zeros(n, 3), f"empty mesh {name}")
    assert_close(pts[1].norm(dim=1), torch.ones(n), "sphere samples on the sphere", atol=2e-2, rtol=0)
    # simplex: each sample lies on one face, with that face's normal (the PyTorch3D test's four cases)
    p, q = pts[2].detach(), nrm[2]
    assert bool(((p >= 0) & (p < 1)).all())
    on = {
        (0.0, 0.0, 1.0): p[:, 2] == 0,  # exact: a zero barycentric weight gives an exact 0 coordinate
        (1.0, 0.0, 0.0): p[:, 0] == 0,
        (0.0, -1.0, 0.0): p[:, 1] == 0,
    }
    slanted = (p > 0).all(1)
    assert_close(p[slanted].sum(1), torch.ones(int(slanted.sum())), "slanted face x + y + z = 1")
    assert_close(q[slanted], torch.full((int(slanted.sum()), 3), 3**-0.5), "slanted face normal")
    for normal, mask in on.items():
        assert_close(q[mask], torch.tensor(normal).expand(int(mask.sum()), 3), f"normal {normal}")
    # texture = barycentric interpolation of the vertex features (TexturesVertex)
    assert bool(
        (
            (tex[2] >= colours[2, :4].min(0).values - 1e-6) & (tex[2] <= colours[2, :4].max(0).values + 1e-6)
        ).all()
    )
    # differentiable; the empty mesh's rows carry no gradient
    (g,) = torch.autograd.grad(pts.sum(), verts)
    assert bool(torch.isfinite(g).all())
    assert_close(g[0], torch.zeros_like(g[0]), "no gradient into the empty mesh")


def test_sample_points_zero_area_mesh_and_all_empty_batch():
    pv, pf = _pyramid()
    flat = torch.zeros(4, 3)  # faces, but every area 0: sampled as empty (PyTorch3D's multinomial raises)
    pm = padded_from_lists([pv, flat], [pf, pf])
    pts = sample_points_from_meshes(pm.verts, pm.faces, 10, generator=torch.Generator().manual_seed(0))
    assert_close(pts[1], torch.zeros(10, 3), "zero-area mesh")
    alone = sample_points_from_meshes(pv, pf, 10, generator=torch.Generator().manual_seed(0))
    assert_close(pts[0], alone[0], "draws made for the non-empty meshes only, as PyTorch3D")
    # PyTorch3D tests/test_sample_points_from_meshes.py::test_all_empty_meshes: ValueError "Meshes are empty."
    with pytest.raises(ValueError, match="Meshes are empty."):
        sample_points_from_meshes(torch.rand(3, 4, 3), torch.full((3, 2, 3), -1), 100, return_normals=True)
    with pytest.raises(ValueError, match="Meshes do not contain textures."):
        sample_points_from_meshes(pv, pf, 10, return_textures=True)
