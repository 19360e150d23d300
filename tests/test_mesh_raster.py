"""Tests of geometry.mesh_raster: PyTorch3D reference files, analytic areas/depths, a dense reference."""

from __future__ import annotations

import math

import pytest
import torch

from geometry.backend import pytorch3d_available
from geometry.cameras import ndc_pixel_centers
from geometry.mesh_raster import (
    Fragments,
    rasterize_candidates,
    rasterize_meshes,
)
from helpers import assert_close, load_reference_tensors

MESH_FILES = ["mesh_sil_ico2_ortho_64", "mesh_sil_ico2_persp_64", "mesh_sil_ico3deformed_persp_64"]
EPS = 1e-8


# ------------------------------------------------------------------------------- dense slow reference


def dense_rasterize(verts_ndc, faces, H, W, blur, K, persp, clip, cull):
    """Every pixel against every face (N, H*W, F), then per-pixel sort by z: obviously correct, slow."""
    N = verts_ndc.shape[0]
    F = faces.shape[0]
    fv = verts_ndc[:, faces]  # (N, F, 3, 3)
    centers = ndc_pixel_centers((H, W), dtype=verts_ndc.dtype).reshape(-1, 2)  # (P, 2)
    px = centers[None, :, None, 0]  # (1, P, 1)
    py = centers[None, :, None, 1]
    x = fv[..., 0][:, None]  # (N, 1, F, 3)
    y = fv[..., 1][:, None]
    z = fv[..., 2][:, None]

    def edge_fn(ax, ay, bx, by, cx, cy):  # (a - b) x-ish: E(a, b, c) = (a.x-b.x)(c.y-b.y)-(a.y-b.y)(c.x-b.x)
        return (ax - bx) * (cy - by) - (ay - by) * (cx - bx)

    X = [x[..., i] for i in range(3)]
    Y = [y[..., i] for i in range(3)]
    Z = [z[..., i] for i in range(3)]
    signed_area = edge_fn(X[0], Y[0], X[1], Y[1], X[2], Y[2])  # (N, 1, F)
    area = edge_fn(X[2], Y[2], X[0], Y[0], X[1], Y[1]) + EPS
    w = [
        edge_fn(px, py, X[(i + 1) % 3], Y[(i + 1) % 3], X[(i + 2) % 3], Y[(i + 2) % 3]) / area
        for i in range(3)
    ]
    if persp:
        top = [w[0] * Z[1] * Z[2], Z[0] * w[1] * Z[2], Z[0] * Z[1] * w[2]]
        s = (top[0] + top[1] + top[2]).clamp(min=EPS)
        w = [t / s for t in top]
    inside = (w[0] > 0) & (w[1] > 0) & (w[2] > 0)
    wc = w
    if clip:
        wc = [t.clamp(min=0) for t in w]
        s = (wc[0] + wc[1] + wc[2]).clamp(min=1e-5)
        wc = [t / s for t in wc]
    depth = wc[0] * Z[0] + wc[1] * Z[1] + wc[2] * Z[2]

    def seg(ax, ay, bx, by):
        dx, dy = bx - ax, by - ay
        l2 = dx * dx + dy * dy
        t = (((px - ax) * dx + (py - ay) * dy) / torch.where(l2 > EPS, l2, torch.ones_like(l2))).clamp(0, 1)
        d = (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2
        return torch.where(l2 > EPS, d, (px - bx) ** 2 + (py - by) ** 2)

    d2 = torch.stack([seg(X[i], Y[i], X[(i + 1) % 3], Y[(i + 1) % 3]) for i in range(3)]).amin(0)
    sd = torch.where(inside, -d2, d2)
    sr = math.sqrt(blur)
    in_box = (
        (px <= x.amax(-1) + sr) & (px >= x.amin(-1) - sr) & (py <= y.amax(-1) + sr) & (py >= y.amin(-1) - sr)
    )
    ok = (signed_area.abs() > EPS) & (z.amin(-1) >= EPS) & in_box & (depth >= 0) & (inside | (d2 < blur))
    if cull:
        ok &= signed_area >= 0
    key = torch.where(ok, depth, torch.full_like(depth, float("inf")))  # (N, P, F)
    order = torch.sort(key.detach(), dim=-1, stable=True).indices[..., :K]  # (N, P, min(K, F))
    valid = torch.gather(ok, -1, order)
    P = H * W

    def pick(t):
        return torch.where(
            valid, torch.gather(t.expand(N, P, F), -1, order), torch.full_like(valid, -1.0, dtype=t.dtype)
        )

    p2f = torch.where(valid, order + torch.arange(N)[:, None, None] * F, torch.full_like(order, -1))
    bary = torch.stack([pick(t) for t in wc], dim=-1)

    def pad(t):  # K may exceed F: empty slots are -1
        t = t.view(N, H, W, order.shape[-1], -1)
        t = torch.cat([t, t.new_full((N, H, W, K - t.shape[3], t.shape[4]), -1)], dim=3)
        return t if t.shape[-1] == 3 else t[..., 0]

    return Fragments(pad(p2f), pad(pick(depth)), pad(bary), pad(pick(sd)))


def random_meshes(seed: int, N: int = 2, F: int = 14, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(N, F, 1, 2, generator=g, dtype=dtype) * 2.4 - 1.2
    xy = centers + 1.0 * (torch.rand(N, F, 3, 2, generator=g, dtype=dtype) - 0.5)
    z = 0.5 + 3 * torch.rand(N, F, 3, 1, generator=g, dtype=dtype)
    verts = torch.cat([xy, z], -1).reshape(N, F * 3, 3)
    verts[0, 2, :2] = verts[0, 0, :2]  # a degenerate (zero-area) face
    verts[1, 3, 2] = -0.5  # a face crossing the camera plane (skipped)
    faces = torch.arange(F * 3).view(F, 3)
    faces[1::2] = faces[1::2].flip(-1)  # mixed winding for the back-face culling case
    return verts, faces


CASES = [
    dict(blur=0.0, K=1, persp=False, clip=None, cull=False),
    dict(blur=0.0, K=3, persp=True, clip=None, cull=False),
    dict(blur=4e-3, K=5, persp=True, clip=None, cull=False),
    dict(blur=4e-3, K=2, persp=False, clip=False, cull=True),
    dict(blur=1e-2, K=40, persp=False, clip=True, cull=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("max_pairs", [2**20, 37])
def test_matches_dense_reference(case, max_pairs):
    verts, faces = random_meshes(seed=len(str(case)) + max_pairs)
    H, W = 14, 19
    clip = case["blur"] > 0 if case["clip"] is None else case["clip"]
    v1 = verts.clone().requires_grad_(True)
    v2 = verts.clone().requires_grad_(True)
    got = rasterize_meshes(
        v1,
        faces,
        (H, W),
        blur_radius=case["blur"],
        faces_per_pixel=case["K"],
        perspective_correct=case["persp"],
        cull_backfaces=case["cull"],
        clip_barycentric_coords=case["clip"],
        max_pairs=max_pairs,
    )
    ref = dense_rasterize(v2, faces, H, W, case["blur"], case["K"], case["persp"], clip, case["cull"])
    mism = got.pix_to_face != ref.pix_to_face
    assert not mism.any(), (
        f"pix_to_face differs at {int(mism.sum())} slots, first {torch.nonzero(mism)[0].tolist()}"
    )
    assert (ref.pix_to_face >= 0).sum() > 30, "test meshes cover too few pixels to be meaningful"
    if case["K"] > 1:
        assert ((ref.pix_to_face >= 0).sum(-1) > 1).any(), "no pixel with several faces"
    for name in ("zbuf", "bary_coords", "dists"):
        assert_close(getattr(got, name), getattr(ref, name), name)
    # same random upstream gradient through both paths (PyTorch3D _check_gradients)
    g = torch.Generator().manual_seed(1)
    loss = []
    for fr in (got, ref):
        wz = torch.rand(fr.zbuf.shape, generator=g, dtype=verts.dtype)
        loss.append(
            (fr.zbuf * wz).sum() + (fr.dists * wz.flip(0)).sum() * 10 + (fr.bary_coords * wz[..., None]).sum()
        )
        g = torch.Generator().manual_seed(1)
    (g1,) = torch.autograd.grad(loss[0], v1)
    (g2,) = torch.autograd.grad(loss[1], v2)
    assert g2.abs().sum() > 0
    assert_close(g1, g2, "grad verts_ndc", atol=1e-8, rtol=1e-8)


def test_candidates_without_truncation_are_all_candidates():
    verts, faces = random_meshes(seed=3)
    ref = dense_rasterize(verts, faces, 14, 19, 1e-2, 42, False, True, False)
    c = rasterize_candidates(verts, faces, (14, 19), blur_radius=1e-2, faces_per_pixel=None)
    assert c.pix.numel() == int((ref.pix_to_face >= 0).sum()), (
        "candidate count differs from the dense reference"
    )
    dense = torch.full((2 * 14 * 19, 42), -1, dtype=torch.long)
    dense[c.pix, c.rank] = c.face
    assert torch.equal(dense.view(2, 14, 19, 42), ref.pix_to_face)


@pytest.mark.parametrize("name", MESH_FILES)
def test_hard_matches_pytorch3d(name):
    d = load_reference_tensors(name)
    persp = "persp" in name
    fr = rasterize_meshes(d["verts_ndc"], d["faces"], 64, perspective_correct=persp)
    assert fr.pix_to_face.shape == (4, 64, 64, 1)
    p2f = fr.pix_to_face[..., 0]
    mism = p2f != d["hard_pix_to_face"]
    assert not mism.any(), (
        f"{name}: pix_to_face differs at {int(mism.sum())} pixels, e.g. {torch.nonzero(mism)[:3]}"
    )
    assert_close(fr.zbuf[..., 0], d["hard_zbuf"], f"{name} zbuf")
    assert_close(fr.bary_coords[..., 0, :], d["hard_bary"], f"{name} bary")
    assert_close(fr.dists[..., 0], d["hard_dists"], f"{name} dists", atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("name", MESH_FILES[:2])
def test_soft_candidates_counts_match_readme(name):
    # README §2.2: ico2 files have at most 14-17 candidates per pixel with the default soft settings
    d = load_reference_tensors(name)
    blur = math.log(1 / 1e-4 - 1) * 1e-4
    fr = rasterize_meshes(
        d["verts_ndc"],
        d["faces"],
        64,
        blur_radius=blur,
        faces_per_pixel=50,
        perspective_correct="persp" in name,
    )
    n = (fr.pix_to_face >= 0).sum(-1).max().item()
    assert 14 <= n <= 17, f"max candidates per pixel {n}"
    # z ascending along K where valid
    z = torch.where(fr.pix_to_face >= 0, fr.zbuf, torch.full_like(fr.zbuf, float("inf")))
    assert (z[..., 1:] >= z[..., :-1]).all()
    # every hard pixel's nearest face has its (negative) inside distance among the candidates
    hard = d["hard_pix_to_face"] >= 0
    assert ((fr.dists < 0) & (fr.pix_to_face >= 0)).any(-1)[hard].all()


def quad(x0, x1, y0, y1, z, dtype=torch.float32):
    """Two triangles covering [x0,x1] x [y0,y1] in NDC, depths z(x, y) -> (1, 4, 3), (2, 3)."""
    xy = torch.tensor([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=dtype)
    verts = torch.cat([xy, z(xy[:, 0], xy[:, 1])[:, None]], -1)[None]
    return verts, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_square_area_and_position_nonsquare_image():
    # H=48 < W=64: y spans [-1, 1], x spans [-4/3, 4/3], pixel pitch 2/48 = 1/24 in both; the rectangle is
    # 0.5 x 0.5 NDC = 12 x 12 pixels; no pixel centre lies on its boundary or its diagonal.
    verts, faces = quad(-0.61, -0.11, 0.13, 0.63, lambda x, y: 2 + 0 * x)
    fr = rasterize_meshes(verts, faces, (48, 64))
    mask = fr.pix_to_face[0, ..., 0] >= 0
    assert mask.sum().item() == 144, f"area {mask.sum().item()} px, analytic 144"
    expected = torch.zeros(48, 64, dtype=torch.bool)
    expected[9:21, 35:47] = True  # +X is left, +Y is up: x < 0 -> right half, y > 0 -> top half
    assert torch.equal(mask, expected), f"rows {mask.any(1).nonzero().flatten().tolist()}"


def test_square_area_square_image_with_rotation():
    # a rotated square: pixel count approximates the analytic area to within the perimeter in pixels
    S, a, th = 128, 0.6, 0.3
    c, s = math.cos(th), math.sin(th)
    corners = torch.tensor([[-a, -a], [a, -a], [a, a], [-a, a]]) @ torch.tensor([[c, s], [-s, c]])
    verts = torch.cat([corners, torch.full((4, 1), 2.0)], -1)[None]
    fr = rasterize_meshes(verts, torch.tensor([[0, 1, 2], [0, 2, 3]]), S)
    count = (fr.pix_to_face >= 0).sum().item()
    analytic = (2 * a) ** 2 / (2 / S) ** 2
    perimeter_px = 4 * 2 * a / (2 / S)
    assert abs(count - analytic) < 0.1 * perimeter_px, f"count {count} vs analytic {analytic:.1f}"


def test_tilted_plane_depth_ortho_exact():
    verts, faces = quad(-0.9, 0.8, -0.7, 0.95, lambda x, y: 2 + 0.3 * x - 0.2 * y, dtype=torch.float64)
    fr = rasterize_meshes(verts, faces, 32)
    centers = ndc_pixel_centers(32, dtype=torch.float64)
    z_true = 2 + 0.3 * centers[..., 0] - 0.2 * centers[..., 1]
    hit = fr.pix_to_face[0, ..., 0] >= 0
    assert hit.sum() > 600
    # PyTorch3D adds 1e-8 to the face area in the barycentrics: relative error 1e-8 / area
    assert_close(fr.zbuf[0, ..., 0][hit], z_true[hit], "plane zbuf", atol=1e-7, rtol=0.0)


def test_tilted_plane_depth_perspective_exact():
    # plane n . X = c in view space, seen by a FoV camera: x_ndc = X / (Z tan(fov/2)); perspective-correct
    # barycentrics make zbuf = c / (n_x x t + n_y y t + n_z) exact at every pixel centre
    t = math.tan(math.radians(30))
    n, cst = torch.tensor([0.3, -0.4, 1.0], dtype=torch.float64), 3.0
    xy_view = torch.tensor([[-1.5, -1.2], [1.4, -1.3], [1.6, 1.5], [-1.3, 1.4]], dtype=torch.float64)
    Z = (cst - xy_view @ n[:2]) / n[2]
    verts = torch.cat([xy_view / (Z[:, None] * t), Z[:, None]], -1)[None]
    fr = rasterize_meshes(verts, torch.tensor([[0, 1, 2], [0, 2, 3]]), 24, perspective_correct=True)
    centers = ndc_pixel_centers(24, dtype=torch.float64)
    z_true = cst / (n[0] * centers[..., 0] * t + n[1] * centers[..., 1] * t + n[2])
    hit = fr.pix_to_face[0, ..., 0] >= 0
    assert hit.sum() > 200
    assert_close(fr.zbuf[0, ..., 0][hit], z_true[hit], "perspective plane zbuf", atol=1e-7, rtol=0.0)
    lin = rasterize_meshes(verts, torch.tensor([[0, 1, 2], [0, 2, 3]]), 24, perspective_correct=False)
    assert (lin.zbuf[0, ..., 0][hit] - z_true[hit]).abs().max() > 1e-3, "affine depth should be wrong here"


def test_sphere_depth_matches_analytic():
    from geometry.mesh import ico_sphere

    verts, faces = ico_sphere(4)
    r, zc = 0.8, 3.0
    v = (verts * r + torch.tensor([0.0, 0.0, zc]))[None]  # orthographic: NDC xy = view xy
    fr = rasterize_meshes(v, faces, 64)
    centers = ndc_pixel_centers(64)
    rho2 = (centers**2).sum(-1)
    hit = fr.pix_to_face[0, ..., 0] >= 0
    core = rho2 < (0.9 * r) ** 2
    assert hit[core].all() and not hit[rho2 > r**2].any(), "silhouette is not the disc"
    z_true = zc - (r**2 - rho2[core]).sqrt()
    z = fr.zbuf[0, ..., 0][core]
    # inscribed polyhedron: never nearer than the sphere; level-4 sagitta ~ r * 1e-3, steeper near the rim
    assert (z >= z_true - 1e-5).all(), f"zbuf nearer than the sphere by {(z_true - z).max():.3g}"
    assert (z - z_true).max() < 4e-3, f"zbuf deeper than the sphere by {(z - z_true).max():.3g}"


def test_back_faces_and_negative_depth():
    verts, faces = quad(-0.47, 0.53, -0.45, 0.55, lambda x, y: 2 + 0 * x)  # 8 x 8 px, no centre on an edge
    flipped = faces.flip(-1)
    assert (rasterize_meshes(verts, faces, 16, cull_backfaces=True).pix_to_face >= 0).sum() == 0 or (
        rasterize_meshes(verts, flipped, 16, cull_backfaces=True).pix_to_face >= 0
    ).sum() == 0, "one winding must be culled"
    both = [(rasterize_meshes(verts, f, 16).pix_to_face >= 0).sum().item() for f in (faces, flipped)]
    assert both[0] == both[1] == 64
    behind = verts.clone()
    behind[..., 2] = -2.0
    assert (rasterize_meshes(behind, faces, 16).pix_to_face < 0).all()


def test_batched_per_mesh_faces_and_packed_index():
    verts, faces = quad(-0.5, 0.5, -0.5, 0.5, lambda x, y: 2 + 0 * x)
    v = torch.cat([verts, verts + torch.tensor([0.3, 0.0, 0.0])])
    f = torch.stack([faces, faces.flip(-1)])
    fr = rasterize_meshes(v, f, 16)
    p2f = fr.pix_to_face[..., 0]
    assert set(p2f[0].unique().tolist()) == {-1, 0, 1} and set(p2f[1].unique().tolist()) == {-1, 2, 3}
    single = rasterize_meshes(v[1:], f[1], 16)
    assert torch.equal(single.pix_to_face[0, ..., 0] + (single.pix_to_face[0, ..., 0] >= 0) * 2, p2f[1])


def test_shape_errors():
    with pytest.raises(ValueError, match="verts_ndc"):
        rasterize_meshes(torch.zeros(4, 3), torch.zeros(1, 3, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="faces"):
        rasterize_meshes(torch.zeros(2, 4, 3), torch.zeros(3, 3, 3, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="faces_per_pixel"):
        rasterize_meshes(torch.zeros(1, 4, 3), torch.zeros(1, 3, dtype=torch.long), 8, faces_per_pixel=0)


@pytest.mark.skipif(not pytorch3d_available(), reason="PyTorch3D not importable")
def test_pytorch3d_backend_agrees():
    d = load_reference_tensors("mesh_sil_ico3deformed_persp_64")
    blur = math.log(1 / 1e-4 - 1) * 1e-4
    kw = dict(blur_radius=blur, faces_per_pixel=10, perspective_correct=True)
    a = rasterize_meshes(d["verts_ndc"], d["faces"], 64, backend="torch", **kw)
    b = rasterize_meshes(d["verts_ndc"], d["faces"], 64, backend="pytorch3d", **kw)
    assert torch.equal(a.pix_to_face, b.pix_to_face)
    for name in ("zbuf", "bary_coords", "dists"):
        # float32 values differ from PyTorch3D by a few ulp of z ~ 3
        assert_close(getattr(a, name), getattr(b, name), name, atol=2e-5, rtol=1e-5)
