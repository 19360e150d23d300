"""Tests of geometry.point_raster: PyTorch3D reference, dense reference, analytic cases, gradcheck."""

from __future__ import annotations

import json
import math

import pytest
import torch

from geometry.cameras import ndc_pixel_centers
from geometry.point_raster import (
    PointFragments,
    alpha_composite,
    capnet_mask_projection,
    differ_feature_projection,
    norm_weighted_composite,
    rasterize_points,
    render_depth_novel_view,
)
from helpers import TOL, assert_close, load_reference

# --------------------------------------------------------------------------------------------------------
# slow, obviously-correct references


def dense_rasterize(points, H, W, radius, K, lengths=None):
    """Every (pixel, point) pair, then a sort of z per pixel. points (N,P,3), radius float or (N,P)."""
    N, P, _ = points.shape
    centers = ndc_pixel_centers((H, W), points.dtype)  # (H, W, 2), the suite's one pixel-centre convention
    xs, ys = centers[0, :, 0], centers[:, 0, 1]
    r = radius if isinstance(radius, torch.Tensor) else torch.full((N, P), radius, dtype=points.dtype)
    idx = torch.full((N, H, W, K), -1, dtype=torch.long)
    zbuf = torch.full((N, H, W, K), -1.0, dtype=points.dtype)
    dists = torch.full((N, H, W, K), -1.0, dtype=points.dtype)
    for n in range(N):
        Pn = P if lengths is None else int(lengths[n])
        for i in range(H):
            for j in range(W):
                dx = xs[j] - points[n, :Pn, 0]
                dy = ys[i] - points[n, :Pn, 1]
                d2 = dx * dx + dy * dy
                ok = (points[n, :Pn, 2] >= 0) & (d2 < r[n, :Pn] * r[n, :Pn])
                cand = torch.nonzero(ok).squeeze(1)
                order = torch.argsort(points[n, cand, 2], stable=True)[:K]
                cand = cand[order]
                idx[n, i, j, : len(cand)] = n * P + cand
                zbuf[n, i, j, : len(cand)] = points[n, cand, 2]
                dists[n, i, j, : len(cand)] = d2[cand]
    return PointFragments(idx, zbuf, dists)


def _pix_coords(H, W, dtype):
    i, j = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
    return i, j


def dense_capnet(u, v, H, W, sigma):
    """u, v: (B, P) pixel coords; tanh(sum_p gaussian) at every pixel centre (i, j) = (v, u)."""
    i, j = _pix_coords(H, W, u.dtype)
    d2 = (j[None, None] - u[..., None, None]) ** 2 + (i[None, None] - v[..., None, None]) ** 2
    return torch.tanh(torch.exp(-d2 / (2 * sigma**2)).sum(1, keepdim=True))


def dense_differ(u, v, z, feats, H, W, sigma, beta):
    i, j = _pix_coords(H, W, u.dtype)
    d2 = (j[None, None] - u[..., None, None]) ** 2 + (i[None, None] - v[..., None, None]) ** 2  # (B,P,H,W)
    g = torch.exp(-d2 / (2 * sigma**2))
    logits = (beta / z)[..., None, None].expand_as(g)
    vis = torch.softmax(logits, dim=1)  # softmax over points of beta / z
    w = g * vis
    out = torch.einsum("bphw,bpc->bchw", w, feats) / w.sum(1).unsqueeze(1)
    return out, torch.tanh(g.sum(1, keepdim=True))


# --------------------------------------------------------------------------------------------------------
# PyTorch3D reference


@pytest.fixture(scope="module")
def ref():
    d = load_reference("points_ortho_64")
    meta = json.loads(str(d["meta_json"]))
    return d, meta


def _ref_points(d):
    pw = torch.tensor(d["points"], requires_grad=True)
    R, T = torch.tensor(d["R"]), torch.tensor(d["T"])
    return pw, pw @ R + T[:, None]  # FoVOrthographicCameras(±1): (x_ndc, y_ndc, z_view) = X_view


def _pytorch3d_fragments(d, pts, radius, K):
    """PyTorch3D's own fragment values (idx, zbuf, dists of the file), with gradients reaching `pts` through
    our dists: `dists_ref + (dists - dists.detach())` has exactly the stored values. README §3: near the
    radius the norm-weighted image (and its gradients) amplify a one-ulp change of dists by ~1e4, and how
    dists round depends on the CPU's float32 kernels, so the compositors are tested on the stored fragments;
    our fragments are compared with the stored ones in test_fragments_match_pytorch3d."""
    fr = rasterize_points(pts, 64, radius, K)
    idx_ref = torch.tensor(d["idx"]).long()
    mism = int((fr.idx != idx_ref).sum())
    assert mism == 0, f"{mism} idx entries differ from PyTorch3D"
    dists = torch.tensor(d["dists"]) + (fr.dists - fr.dists.detach())
    return PointFragments(idx_ref, torch.tensor(d["zbuf"]), dists)


def test_fragments_match_pytorch3d(ref):
    d, meta = ref
    _, pts = _ref_points(d)
    # a float32 matrix product, computed by PyTorch3D's transform and by us: equal to float32 rounding
    assert_close(pts, d["points_ndc"], "points_ndc")
    fr = rasterize_points(pts, meta["image_size"], meta["radius"], meta["points_per_pixel"], backend="torch")
    idx_ref = torch.tensor(d["idx"]).long()
    assert fr.idx.dtype == torch.long
    bad = (fr.idx != idx_ref).sum().item()
    assert bad == 0, f"{bad} idx entries differ"
    # zbuf copies our z_view and dists is computed from our xy: both differ from PyTorch3D's by float32
    # rounding only (on some CPUs a few hundred of 6144 dists differ by one ulp). dists are O(r^2) ~ 1e-3,
    # so TOL's atol for O(1) values would hide 0.1% errors: atol 1e-8 (one ulp of the points moves them ~5e-9)
    assert_close(fr.zbuf, d["zbuf"], "zbuf")
    assert_close(fr.dists, d["dists"], "dists", atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("name,fn", [("alpha", alpha_composite), ("normw", norm_weighted_composite)])
def test_compositors_and_gradients_match_pytorch3d(ref, name, fn):
    d, meta = ref
    r = meta["radius"]
    pw, pts = _ref_points(d)
    feats = torch.tensor(d["features"], requires_grad=True)
    fr = _pytorch3d_fragments(d, pts, r, 8)  # PyTorch3D's fragments: see there why
    img = fn(fr, feats, r)
    assert img.shape == (2, 3, 64, 64)
    img = img.permute(0, 2, 3, 1)
    # atol 1e-5: float32 sums of up to 8 weighted features of O(1), accumulated in another order
    expected = torch.tensor(d[f"image_{name}"])
    assert_close(img, expected, f"{name} image", atol=1e-5, rtol=0.0)
    gp, gf = torch.autograd.grad((img * torch.tensor(d["grad_W"])).sum(), [pw, feats])
    gp_ref = torch.tensor(d[f"grad_points_{name}"])
    gf_ref = torch.tensor(d[f"grad_features_{name}"])
    scale = float(gp_ref.abs().max())
    assert_close(gp, gp_ref, f"{name} grad points", atol=1e-5 * scale, rtol=1e-4)
    assert_close(gf, gf_ref, f"{name} grad features", atol=1e-5, rtol=1e-5)


def test_pytorch3d_backend_agrees(ref):
    pytest.importorskip("pytorch3d")
    d, _ = ref
    pts = torch.tensor(d["points_ndc"])
    a = rasterize_points(pts, 64, 0.03, 8, backend="pytorch3d")
    b = rasterize_points(pts, 64, 0.03, 8, backend="torch")
    assert torch.equal(a.idx, b.idx)
    assert_close(a.dists, b.dists, "pytorch3d vs torch dists", atol=1e-8, rtol=1e-5)


# --------------------------------------------------------------------------------------------------------
# binned rasterizer == dense reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binned_equals_dense_reference(dtype):
    g = torch.Generator().manual_seed(1)
    N, P, H, W, K = 3, 80, 13, 17, 3  # non-square image
    pts = torch.rand(N, P, 3, generator=g, dtype=dtype) * 2.4 - 1.2  # some z < 0, some outside
    pts[0, :5, :2] = pts[0, 5:10, :2]  # coincident xy, different z
    radius = torch.rand(N, P, generator=g, dtype=dtype) * 0.4 + 0.02
    lengths = torch.tensor([P, 41, 7])
    ref = dense_rasterize(pts, H, W, radius, K, lengths)
    for max_pairs in (1 << 22, 50):  # one chunk, and many chunks merged
        fr = rasterize_points(pts, (H, W), radius, K, lengths=lengths, max_pairs=max_pairs)
        assert torch.equal(fr.idx, ref.idx), f"max_pairs={max_pairs}: {(fr.idx != ref.idx).sum()} idx differ"
        assert_close(fr.zbuf, ref.zbuf, f"zbuf max_pairs={max_pairs}")
        assert_close(fr.dists, ref.dists, f"dists max_pairs={max_pairs}")
    assert (ref.idx[..., -1] >= 0).any(), "test should exercise the K cap"


def test_scalar_radius_dense_reference():
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(2, 200, 3, generator=g) * 2 - 1
    pts[..., 2] += 1
    fr = rasterize_points(pts, 20, 0.15, 5)
    ref = dense_rasterize(pts, 20, 20, 0.15, 5)
    assert torch.equal(fr.idx, ref.idx)
    assert_close(fr.dists, ref.dists, "dists")


# --------------------------------------------------------------------------------------------------------
# analytic cases


def test_single_point_covers_pixels_within_radius():
    S, i0, j0 = 16, 5, 9
    x, y = 1 - (2 * j0 + 1) / S, 1 - (2 * i0 + 1) / S  # exactly the centre of pixel (5, 9)
    step = 2 / S
    pts = torch.tensor([[[x, y, 2.0]]], dtype=torch.float64)
    # radius 1.5 pixel steps: the 3x3 block (corner distance sqrt(2) < 1.5), not (0, +-2) (2 > 1.5)
    fr = rasterize_points(pts, S, 1.5 * step, 2)
    covered = fr.idx[0, ..., 0] >= 0
    expected = torch.zeros(S, S, dtype=torch.bool)
    expected[i0 - 1 : i0 + 2, j0 - 1 : j0 + 2] = True
    assert torch.equal(covered, expected), f"covered {torch.nonzero(covered).tolist()}"
    assert (fr.idx[0, ..., 1] == -1).all()
    d_exp = torch.tensor([[2.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 2.0]], dtype=torch.float64) * step**2
    got = fr.dists[0, i0 - 1 : i0 + 2, j0 - 1 : j0 + 2, 0]
    assert_close(got, d_exp, "dists of the 3x3 covered pixels", atol=1e-12)
    # radius exactly 1 step: the 4 neighbours at distance exactly r are not covered (strict)
    fr = rasterize_points(pts, S, step, 2)
    assert (fr.idx[0, ..., 0] >= 0).sum() == 1


def test_z_ordering_and_negative_z():
    pts = torch.tensor([[[0.0, 0.0, 3.0], [0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, -0.5]]])
    fr = rasterize_points(pts, 8, 0.3, 4)
    centre = fr.idx[0, 3, 3]  # pixel centre (1/8, 1/8), distance < 0.3
    assert centre.tolist() == [1, 2, 0, -1]
    # exact: zbuf copies the points' z (and the -1 fill), no arithmetic
    assert fr.zbuf[0, 3, 3].tolist() == [1.0, 2.0, 3.0, -1.0]
    fr2 = rasterize_points(pts, 8, 0.3, 2)
    assert fr2.idx[0, 3, 3].tolist() == [1, 2]


def test_packed_index_and_shape_errors():
    pts = torch.tensor([[[0.9, 0.9, 1.0]], [[0.9, 0.9, 1.0]]])
    fr = rasterize_points(pts, 4, 0.3, 1)
    assert fr.idx[1, 0, 0, 0] == 1 and fr.idx[0, 0, 0, 0] == 0  # n * P + p; (0.9, 0.9) is the top-left
    with pytest.raises(ValueError, match="points_ndc"):
        rasterize_points(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="features"):
        alpha_composite(fr, torch.zeros(3, 1, 3), 0.3)
    with pytest.raises(ValueError, match="points_2d"):
        capnet_mask_projection(torch.zeros(1, 4, 3), 8)
    with pytest.raises(ValueError, match="depth"):
        render_depth_novel_view(
            torch.zeros(1, 2, 4, 4), torch.eye(3)[None], torch.eye(3)[None], torch.zeros(1, 3)
        )


def test_compositors_analytic_two_points():
    # 4x4 image, pixel (1, 1) centred at (0.25, 0.25); w = 1 - d2 / r^2
    pts = torch.tensor([[[0.25, 0.35, 1.0], [0.30, 0.25, 2.0]]], dtype=torch.float64)
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    r = 0.3
    fr = rasterize_points(pts, 4, r, 2)
    assert fr.idx[0, 1, 1].tolist() == [0, 1]
    w0, w1 = 1 - 0.01 / r**2, 1 - 0.0025 / r**2
    a = alpha_composite(fr, feats, r, background_color=(7.0, 7.0))[0, :, 1, 1]
    exp_a = torch.tensor([w0, w1 * (1 - w0)], dtype=torch.float64)
    assert_close(a, exp_a, "alpha composite of two points", atol=1e-12)
    nw = norm_weighted_composite(fr, feats, r)[0, :, 1, 1]
    exp_n = torch.tensor([w0, w1], dtype=torch.float64) / (w0 + w1)
    assert_close(nw, exp_n, "norm-weighted composite of two points", atol=1e-12)
    # pixel (3, 3) centred at (-0.75, -0.75) is empty -> background colour
    bg = alpha_composite(fr, feats, r, background_color=(7.0, 7.0))[0, :, 3, 3]
    # exact: torch.where copies the background colour into empty pixels
    assert fr.idx[0, 3, 3, 0] == -1 and bg.tolist() == [7.0, 7.0]


# --------------------------------------------------------------------------------------------------------
# gradcheck (float64)


def _well_separated_points(seed, N, P, S, r):
    """Random points whose discs stay >= 1e-3 r^2 away from every pixel centre (coverage is stable)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(100):
        pts = torch.rand(N, P, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8
        pts[..., 2] += 2.0
        xs = torch.tensor([1 - (2 * j + 1) / S for j in range(S)], dtype=torch.float64)
        d2 = (xs[None, None, None, :] - pts[..., 0, None, None]) ** 2 + (
            xs[None, None, :, None] - pts[..., 1, None, None]
        ) ** 2
        if (1 - d2 / r**2).abs().min() > 1e-3:
            return pts
    raise AssertionError("no well separated sample found")


@pytest.mark.parametrize("fn", [alpha_composite, norm_weighted_composite])
def test_compositor_gradcheck(fn):
    S, r = 6, 0.45
    pts = _well_separated_points(3, 2, 5, S, r).requires_grad_(True)
    feats = torch.rand(2, 5, 2, dtype=torch.float64, requires_grad=True)
    rad = torch.full((2, 5), r, dtype=torch.float64)

    def f(p, c):
        return fn(rasterize_points(p, S, r, 3), c, r)

    def f_per_point(p, c):
        return fn(rasterize_points(p, S, rad, 3), c, rad)

    assert (rasterize_points(pts, S, r, 3).idx[..., 1] >= 0).any(), "overlaps should be exercised"
    assert torch.autograd.gradcheck(f, (pts, feats), eps=1e-7, atol=1e-6)
    assert torch.autograd.gradcheck(f_per_point, (pts, feats), eps=1e-7, atol=1e-6)


def test_capnet_matches_dense_and_gradcheck():
    g = torch.Generator().manual_seed(4)
    B, P, H, W, sigma = 2, 7, 9, 11, 1.3
    p2d = (torch.rand(B, P, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1).requires_grad_(True)
    u = ((p2d[..., 0] + 1) * W - 1) / 2
    v = ((p2d[..., 1] + 1) * H - 1) / 2
    ref = dense_capnet(u, v, H, W, sigma)
    out = capnet_mask_projection(p2d, (H, W), sigma, truncate=12.0)
    assert out.shape == (B, 1, H, W)
    assert_close(out, ref, "capnet mask vs dense", atol=1e-12)
    out5 = capnet_mask_projection(p2d, (H, W), sigma)  # default truncation at 5 sigma
    assert_close(out5, ref, "capnet mask truncated at 5 sigma", atol=P * math.exp(-12.5), rtol=0.0)
    # ndc coordinates: x_ndc = -x_normalized, y_ndc = -y_normalized on a square image
    sq = capnet_mask_projection(p2d, 10, sigma)
    assert torch.allclose(capnet_mask_projection(-p2d, 10, sigma, coords="ndc"), sq, atol=1e-12)
    # a point at the centre of pixel (2, 3) of an 8x8 image: mask there is tanh(1)
    one = capnet_mask_projection(torch.tensor([[[7 / 8 - 1, 5 / 8 - 1]]]), 8, 0.5)
    assert abs(one[0, 0, 2, 3].item() - math.tanh(1.0)) < 1e-6 and one.argmax() == 2 * 8 + 3
    small = p2d.detach()[:1, :3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: capnet_mask_projection(q, (5, 6), 1.0, truncate=12.0), (small,))


def test_differ_matches_dense_and_gradcheck():
    g = torch.Generator().manual_seed(5)
    B, P, C, H, W, sigma, beta = 2, 6, 3, 8, 10, 1.2, 3.0
    pts = torch.rand(B, P, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8
    pts[..., 2] += 2.0
    feats = torch.rand(B, P, C, generator=g, dtype=torch.float64)
    u = (W - 1 - pts[..., 0] * H) / 2
    v = (H - 1 - pts[..., 1] * H) / 2
    ref_f, ref_m = dense_differ(u, v, pts[..., 2], feats, H, W, sigma, beta)
    out = differ_feature_projection(pts, feats, (H, W), sigma, beta, truncate=12.0)
    assert out.features.shape == (B, C, H, W) and out.mask.shape == (B, 1, H, W)
    assert_close(out.features, ref_f, "differ features vs dense", atol=1e-10)
    assert_close(out.mask, ref_m, "differ mask vs dense", atol=1e-12)
    p = pts[:1, :3].clone().requires_grad_(True)
    f = feats[:1, :3].clone().requires_grad_(True)

    def fn(p, f):
        o = differ_feature_projection(p, f, (4, 5), 1.0, beta, truncate=12.0)
        return o.features, o.mask

    assert torch.autograd.gradcheck(fn, (p, f))


def test_differ_nearer_point_wins_and_box_kernel():
    # two points on the centre of pixel (1, 1) of a 4x4 image, z = 1 (red) and z = 2 (green)
    x = 1 - 3 / 4
    pts = torch.tensor([[[x, x, 2.0], [x, x, 1.0]]])
    feats = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    out = differ_feature_projection(pts, feats, 4, sigma=0.5, beta=100.0)
    # visibility ratio exp(100 (1/2 - 1)) = exp(-50): the nearer point's feature
    assert torch.allclose(out.features[0, :, 1, 1], torch.tensor([1.0, 0.0]), atol=1e-6)
    box = differ_feature_projection(pts, feats, 4, sigma=0.5, beta=2.0, kernel="box")
    w_far = math.exp(2.0 * (0.5 - 1.0))
    expected = torch.tensor([1.0, w_far]) / (1 + w_far)
    assert torch.allclose(box.features[0, :, 1, 1], expected, atol=1e-6)
    # outside the well: exactly 0, no point reaches these pixels (an empty sum divided by 1)
    assert (box.features[0, :, 0, 0] == 0).all() and (box.features[0, :, 2, 3] == 0).all()


# --------------------------------------------------------------------------------------------------------
# novel-view depth rendering


def _intrinsics(f, H, W, dtype=torch.float64):
    return torch.tensor([[[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]]], dtype=dtype)


def test_novel_view_identity_reproduces_depth():
    g = torch.Generator().manual_seed(6)
    H, W = 12, 16
    depth = torch.rand(1, 1, H, W, generator=g, dtype=torch.float64) * 3 + 1
    depth[0, 0, 4, 5] = 0.0  # missing
    img = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    K = _intrinsics(20.0, H, W)
    out = render_depth_novel_view(
        depth, K, torch.eye(3, dtype=torch.float64)[None], torch.zeros(1, 3), features=img
    )
    expected_valid = depth > 0
    assert torch.equal(out.valid, expected_valid)
    assert_close(out.depth[out.valid], depth[expected_valid], "depth at valid pixels", atol=1e-12)
    assert torch.allclose(out.features * out.valid, img * expected_valid, atol=1e-12)


@pytest.mark.parametrize("depth_dtype", [torch.float32, torch.float64])
def test_novel_view_mixed_dtypes(depth_dtype):
    # regression: float64 depth with float32 K / K_target (or the reverse) raised a dtype error in matmul
    H, W = 8, 10
    g = torch.Generator().manual_seed(7)
    depth = (torch.rand(1, 1, H, W, generator=g, dtype=torch.float64) + 1.5).to(depth_dtype)
    other = torch.float32 if depth_dtype == torch.float64 else torch.float64
    K = _intrinsics(12.0, H, W).to(other)
    eye = torch.eye(3, dtype=other)[None]
    for K_target in (None, K, K.to(depth_dtype)):
        out = render_depth_novel_view(depth, K, eye, torch.zeros(1, 3, dtype=other), K_target=K_target)
        assert out.depth.dtype == depth_dtype, f"depth dtype {out.depth.dtype}"
        assert bool(out.valid.all()), f"{int((~out.valid).sum())} holes under the identity pose"
        assert_close(out.depth, depth, "identity pose reproduces the depth", **TOL[depth_dtype])


def test_novel_view_translated_plane():
    H, W, f, Z, shift = 12, 16, 40.0, 2.0, 3
    depth = torch.full((1, 1, H, W), Z, dtype=torch.float64)
    img = torch.arange(W, dtype=torch.float64).expand(1, 1, H, W)
    K = _intrinsics(f, H, W)
    t = torch.tensor([[shift * Z / f, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)  # +3 px in u
    out = render_depth_novel_view(depth, K, torch.eye(3, dtype=torch.float64)[None], t, features=img)
    valid = out.valid[0, 0]
    assert not valid[:, :shift].any(), "exposed border columns must be holes"
    assert valid[:, shift:].all()
    assert torch.allclose(out.depth[0, 0, :, shift:], torch.full((H, W - shift), Z, dtype=torch.float64))
    assert (out.depth[0, 0, :, :shift] == 0).all()  # holes: the 0 fill, written by torch.where
    # the point of source column j lands on target column j + shift; exact: features are gathered, not mixed
    assert torch.equal(out.features[0, 0, :, shift:], img[0, 0, :, :-shift])
    # depth is differentiable w.r.t. the pose: d depth / d t_z = 1 per valid pixel
    t2 = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    o2 = render_depth_novel_view(depth, K, torch.eye(3, dtype=torch.float64)[None], t2)
    (gt,) = torch.autograd.grad(o2.depth.sum(), t2)
    assert abs(gt[0, 2].item() - H * W) < 1e-9 and abs(gt[0, 0].item()) < 1e-9
    # vertical translation + a different target size: shift rows down by 2
    t3 = torch.tensor([[0.0, 2 * Z / f, 0.0]], dtype=torch.float64)
    o3 = render_depth_novel_view(depth, K, torch.eye(3, dtype=torch.float64)[None], t3)
    assert not o3.valid[0, 0, :2].any() and o3.valid[0, 0, 2:].all()
