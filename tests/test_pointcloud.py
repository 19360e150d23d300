"""Tests of geometry.pointcloud: knn, Chamfer (PyTorch3D reference file), variants, EMD, rotation fit."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from geometry.backend import pytorch3d_available
from geometry.pointcloud import (
    CHAMFER_VARIANTS,
    chamfer_distance,
    chamfer_variant,
    emd_approx,
    emd_exact,
    fit_rotation_chamfer,
    knn_gather,
    knn_points,
)
from helpers import assert_close, load_reference

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------------------- reference
@pytest.fixture(scope="module")
def ref():
    d = load_reference("chamfer_n500_m800")
    meta = json.loads(str(d["meta_json"]))
    assert meta["norm"] == 2
    return d


@pytest.mark.parametrize("device", DEVICES)
def test_chamfer_matches_pytorch3d_reference(ref, device):
    x = torch.tensor(ref["x"], device=device, requires_grad=True)
    y = torch.tensor(ref["y"], device=device, requires_grad=True)
    loss, loss_n = chamfer_distance(x, y)
    assert loss_n is None
    assert_close(loss, ref["loss_point_mean_batch_mean"], "default loss")
    loss.backward()
    assert_close(x.grad, ref["grad_x_point_mean_batch_mean"], "grad x", rtol=1e-4, atol=1e-7)
    assert_close(y.grad, ref["grad_y_point_mean_batch_mean"], "grad y", rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        for pr, br in itertools.product(["sum", "mean"], [None, "mean"]):
            got, _ = chamfer_distance(x, y, point_reduction=pr, batch_reduction=br)
            assert_close(
                got, ref[f"loss_point_{pr}_batch_{br or 'none'}"], f"point {pr} batch {br}", rtol=1e-5
            )
        (cx, cy), _ = chamfer_distance(x, y, point_reduction=None, batch_reduction=None)
        assert_close(cx, ref["per_point_x_to_y"], "per point x->y")
        assert_close(cy, ref["per_point_y_to_x"], "per point y->x")
        cx_only, _ = chamfer_distance(
            x, y, point_reduction=None, batch_reduction=None, single_directional=True
        )
        assert_close(cx_only, ref["per_point_x_to_y"], "single directional per point")


@pytest.mark.parametrize("device", DEVICES)
def test_knn_matches_pytorch3d_reference(ref, device):
    x = torch.tensor(ref["x"], device=device)
    y = torch.tensor(ref["y"], device=device)
    for a, b, key in ((x, y, "knn_x_to_y"), (y, x, "knn_y_to_x")):
        out = knn_points(a, b, K=1, return_nn=True)
        idx_ref = torch.tensor(ref[f"{key}_idx"], device=device)
        mismatch = (out.idx != idx_ref).nonzero()
        assert mismatch.numel() == 0, f"{key}: {len(mismatch)} idx differ, first at {mismatch[:3].tolist()}"
        assert_close(out.dists, ref[f"{key}_dists"], f"{key} dists")
        assert_close(out.knn[..., 0, :], b.gather(1, idx_ref.expand(-1, -1, 3)), f"{key} nn points")


# -------------------------------------------------------------------------------- knn vs brute force
def knn_naive(p1, p2, lengths1, lengths2, K, norm):
    """Per-cloud loop over exact pairwise distances; PyTorch3D's zero padding."""
    N, P1, _ = p1.shape
    dists = torch.zeros(N, P1, K, dtype=p1.dtype)
    idx = torch.zeros(N, P1, K, dtype=torch.int64)
    for n in range(N):
        l1, l2 = int(lengths1[n]), int(lengths2[n])
        a, b = p1[n, :l1], p2[n, :l2]
        d = torch.cdist(a, b, p=float(norm), compute_mode="donot_use_mm_for_euclid_dist")
        d = d**2 if norm == 2 else d
        k = min(K, l2)
        s = d.sort(dim=1)
        dists[n, :l1, :k] = s.values[:, :k]
        idx[n, :l1, :k] = s.indices[:, :k]
    return dists, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [1, 2])
def test_knn_brute_force_with_lengths(dtype, norm):
    N, P1, P2, D, K = 3, 37, 23, 3, 5
    p1 = torch.randn(N, P1, D, dtype=dtype) * 3 + 10  # offset: the matmul ranking must survive |x|^2 ~ 300
    p2 = torch.randn(N, P2, D, dtype=dtype) * 3 + 10
    lengths1 = torch.tensor([37, 20, 0])
    lengths2 = torch.tensor([23, 3, 11])  # 3 < K: padded neighbours
    p2[1, 3:] = 1e4  # garbage in padding must be ignored
    out = knn_points(p1, p2, lengths1, lengths2, norm=norm, K=K, return_nn=True)
    d_ref, i_ref = knn_naive(p1, p2, lengths1, lengths2, K, norm)
    assert (out.idx == i_ref).all(), f"idx differ at {(out.idx != i_ref).nonzero()[:5].tolist()}"
    assert_close(out.dists, d_ref, f"knn dists norm={norm}")
    assert_close(out.knn, knn_gather(p2, i_ref, lengths2), "return_nn")
    assert (out.knn[1, :, 3:] == 0).all(), "neighbours beyond lengths2 must be zero"  # exact: the 0 fill


def test_knn_K_larger_than_P2_and_unsorted():
    p1, p2 = torch.randn(2, 6, 3), torch.randn(2, 4, 3)
    out = knn_points(p1, p2, K=7)
    d_ref, i_ref = knn_naive(p1, p2, torch.tensor([6, 6]), torch.tensor([4, 4]), 7, 2)
    assert_close(out.dists, d_ref, "K > P2 dists")
    assert (out.idx == i_ref).all()
    un = knn_points(p1, p2, K=3, return_sorted=False)
    assert_close(un.dists.sort(-1).values, d_ref[..., :3], "unsorted dists as a set")


def test_knn_gradients_match_brute_force():
    N, P1, P2, K = 2, 9, 7, 3
    p1 = torch.randn(N, P1, 3, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(N, P2, 3, dtype=torch.float64, requires_grad=True)
    lengths1, lengths2 = torch.tensor([9, 5]), torch.tensor([7, 2])
    out = knn_points(p1, p2, lengths1, lengths2, K=K)
    _, i_ref = knn_naive(p1.detach(), p2.detach(), lengths1, lengths2, K, 2)
    # brute-force: gather by reference indices, mask the padded slots
    nn = knn_gather(p2, i_ref, lengths2)
    valid = (torch.arange(P1)[None] < lengths1[:, None])[..., None] & (
        torch.arange(K) < lengths2[:, None, None]
    )
    d_ref = ((p1[:, :, None] - nn) ** 2).sum(-1) * valid
    w = torch.randn_like(d_ref)
    g1, g2 = torch.autograd.grad((out.dists * w).sum(), (p1, p2))
    r1, r2 = torch.autograd.grad((d_ref * w).sum(), (p1, p2))
    assert_close(g1, r1, "grad p1")
    assert_close(g2, r2, "grad p2")
    assert (g1[1, 5:] == 0).all(), "padded p1 rows must get no gradient"  # exact: masked out


def test_padding_contents_never_matter():
    """NaN / inf padding changes neither values nor gradients (and gives padded points zero gradient)."""
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    y = torch.randn(2, 6, 3, dtype=torch.float64)
    xl, yl = torch.tensor([8, 5]), torch.tensor([6, 2])
    results = []
    for fill in (0.0, float("nan"), float("inf")):
        xf, yf = x.clone(), y.clone()
        xf[1, 5:], yf[1, 2:] = fill, fill
        xf.requires_grad_(True), yf.requires_grad_(True)
        loss = chamfer_distance(xf, yf, xl, yl)[0] + knn_points(xf, yf, xl, yl, K=4).dists.sum()
        results.append((loss.detach(), *torch.autograd.grad(loss, (xf, yf))))
    for fill, (loss, gx, gy) in zip(("nan", "inf"), results[1:]):
        assert_close(loss, results[0][0], f"loss with {fill} padding")
        assert_close(gx, results[0][1], f"grad x with {fill} padding")
        assert_close(gy, results[0][2], f"grad y with {fill} padding")
    assert (results[1][1][1, 5:] == 0).all() and (results[1][2][1, 2:] == 0).all()  # exact: masked out


@pytest.mark.parametrize("norm", [1, 2])
def test_knn_gradcheck(norm):
    p1 = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths1, lengths2 = torch.tensor([5, 3]), torch.tensor([6, 4])
    fn = lambda a, b: knn_points(a, b, lengths1, lengths2, norm=norm, K=2).dists
    assert torch.autograd.gradcheck(fn, (p1, p2), eps=1e-6, atol=1e-7)


def test_chunking_agrees_with_one_chunk():
    p1 = torch.randn(2, 50, 3, requires_grad=True)
    p2 = torch.randn(2, 40, 3, requires_grad=True)
    lengths1, lengths2 = torch.tensor([50, 31]), torch.tensor([40, 17])
    w = torch.randn(2, 50, 4)
    results = []
    for chunk in (None, 50, 7, 1):
        out = knn_points(p1, p2, lengths1, lengths2, K=4, chunk_size=chunk)
        g = torch.autograd.grad((out.dists * w).sum(), (p1, p2))
        results.append((chunk, out.dists.detach(), out.idx, *g))
    base = results[0]
    for chunk, d, i, g1, g2 in results[1:]:
        assert torch.equal(i, base[2]), f"chunk {chunk}: idx differ"
        assert_close(d, base[1], f"chunk {chunk}: dists")
        assert_close(g1, base[3], f"chunk {chunk}: grad p1")
        assert_close(g2, base[4], f"chunk {chunk}: grad p2")


# ------------------------------------------------------------------------------------- chamfer analytic
def _small_sets(dtype=torch.float32):
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]], dtype=dtype)
    y = torch.tensor([[[0.0, 0, 0], [0, 2, 0], [3, 0, 0]]], dtype=dtype)
    return x, y


def test_chamfer_analytic_values():
    # x->y squared: 0, 1 ; y->x squared: 0, 4, 4.  L1: x->y 0, 1 ; y->x 0, 2, 2.
    x, y = _small_sets()
    cases = {
        ("mean", 2, False): 0.5 + 8 / 3,
        ("sum", 2, False): 9.0,
        ("max", 2, False): 4.0,
        ("mean", 1, False): 0.5 + 4 / 3,
        ("sum", 1, False): 5.0,
        ("mean", 2, True): 0.5,
        ("max", 2, True): 1.0,
    }
    for (pr, norm, single), expected in cases.items():
        got, _ = chamfer_distance(x, y, point_reduction=pr, norm=norm, single_directional=single)
        assert_close(got, torch.tensor(expected), f"point_reduction={pr} norm={norm} single={single}")
    (cx, cy), _ = chamfer_distance(x, y, point_reduction=None, batch_reduction=None)
    assert_close(cx, torch.tensor([[0.0, 1]]), "per point x")
    assert_close(cy, torch.tensor([[0.0, 4, 4]]), "per point y")


def test_chamfer_lengths_weights_batch_reductions():
    x1, y1 = _small_sets()
    x2 = torch.tensor([[[0.0, 0, 1], [5, 5, 5]]])  # second point is padding (x_lengths=1)
    y2 = torch.tensor([[[0.0, 0, 3], [7, 7, 7], [9, 9, 9]]])  # y_lengths=1
    x, y = torch.cat([x1, x2]), torch.cat([y1, y2])
    xl, yl = torch.tensor([2, 1]), torch.tensor([3, 1])
    per = torch.tensor([0.5 + 8 / 3, 4.0 + 4.0])  # second pair: one point each, distance^2 = 4
    got, _ = chamfer_distance(x, y, xl, yl, batch_reduction=None)
    assert_close(got, per, "per-cloud mean with lengths")
    got, _ = chamfer_distance(x, y, xl, yl, batch_reduction="sum")
    assert_close(got, per.sum(), "batch sum")
    w = torch.tensor([1.0, 3.0])
    got, _ = chamfer_distance(x, y, xl, yl, weights=w)
    assert_close(got, (per * w).sum() / w.sum(), "weighted batch mean")
    got, _ = chamfer_distance(x, y, xl, yl, weights=torch.zeros(2))
    assert_close(got, torch.tensor(0.0), "all-zero weights")
    got, _ = chamfer_distance(x, y, xl, yl, point_reduction="sum", batch_reduction=None)
    assert_close(got, torch.tensor([9.0, 8.0]), "point sum with lengths")
    (cx, cy), _ = chamfer_distance(x, y, xl, yl, point_reduction=None, batch_reduction=None)
    assert cx[1, 1] == 0 and (cy[1, 1:] == 0).all(), "padded per-point terms must be 0"  # exact: masked


def test_chamfer_normals_analytic():
    x, y = _small_sets()
    # x0's nearest is y0, x1's is y0; y0->x0, y1->x0, y2->x1
    xn = torch.tensor([[[0.0, 0, 1], [0, 1, 0]]])
    yn = torch.tensor([[[0.0, 0, -1], [1, 0, 0], [0, 1, 1]]])
    # cosines: x0.y0=-1, x1.y0=0 ; y0.x0=-1, y1.x0=0, y2.x1=1/sqrt2
    for abs_cos, cx, cy in ((True, [0, 1], [0, 1, 1 - 2**-0.5]), (False, [2, 1], [2, 1, 1 - 2**-0.5])):
        _, ln = chamfer_distance(x, y, x_normals=xn, y_normals=yn, abs_cosine=abs_cos)
        assert_close(ln, torch.tensor(sum(cx) / 2 + sum(cy) / 3), f"normals abs_cosine={abs_cos}")


def test_chamfer_heterogeneous_batch_equals_separate_calls():
    xs = [torch.randn(n, 3) for n in (13, 7, 20)]
    ys = [torch.randn(n, 3) for n in (9, 16, 4)]
    pad = lambda cs: torch.nn.utils.rnn.pad_sequence(cs, batch_first=True, padding_value=100.0)
    xl, yl = torch.tensor([13, 7, 20]), torch.tensor([9, 16, 4])
    for pr in ("mean", "sum", "max"):
        got, _ = chamfer_distance(pad(xs), pad(ys), xl, yl, point_reduction=pr, batch_reduction=None)
        sep = torch.stack([chamfer_distance(a[None], b[None], point_reduction=pr)[0] for a, b in zip(xs, ys)])
        assert_close(got, sep, f"padded batch vs separate, point_reduction={pr}")


def test_chamfer_gradcheck():
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    xn = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    yn = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    xl, yl, w = torch.tensor([6, 4]), torch.tensor([5, 3]), torch.tensor([0.5, 2.0], dtype=torch.float64)

    def fn(a, b, an, bn):
        loss, ln = chamfer_distance(a, b, xl, yl, an, bn, weights=w, abs_cosine=False)
        return loss, ln

    assert torch.autograd.gradcheck(fn, (x, y, xn, yn), eps=1e-6, atol=1e-7)
    fn1 = lambda a, b: chamfer_distance(a, b, xl, yl, norm=1, point_reduction="sum")[0]
    assert torch.autograd.gradcheck(fn1, (x, y), eps=1e-6, atol=1e-7)


def test_chamfer_shape_errors():
    x, y = _small_sets()
    with pytest.raises(ValueError, match="x must be"):
        chamfer_distance(x[0], y)
    with pytest.raises(ValueError, match="share N and D"):
        chamfer_distance(x, y[..., :2])
    with pytest.raises(ValueError, match="x_lengths"):
        chamfer_distance(x, y, x_lengths=torch.tensor([3]))
    with pytest.raises(ValueError, match="batch_reduction must be None"):
        chamfer_distance(x, y, point_reduction=None)
    with pytest.raises(ValueError, match="y_normals"):
        chamfer_distance(x, y, x_normals=x, y_normals=x)
    with pytest.raises(ValueError, match="p1 must be"):
        knn_points(torch.zeros(3, 3), torch.zeros(1, 3, 3))


@pytest.mark.skipif(not pytorch3d_available(), reason="PyTorch3D not importable")
def test_pytorch3d_backend_agrees():
    p1, p2 = torch.randn(2, 30, 3), torch.randn(2, 20, 3)
    lengths1, lengths2 = torch.tensor([30, 12]), torch.tensor([20, 3])
    a = knn_points(p1, p2, lengths1, lengths2, K=4, backend="pytorch3d")
    b = knn_points(p1, p2, lengths1, lengths2, K=4, backend="torch")
    assert_close(a.dists, b.dists, "pytorch3d vs torch dists")
    assert torch.equal(a.idx, b.idx)


# ------------------------------------------------------------------------------------------- variants
def test_chamfer_variants_analytic():
    x, y = _small_sets()
    # Euclidean: x->y 0, 1 ; y->x 0, 2, 2
    assert_close(
        chamfer_variant(x, y, *CHAMFER_VARIANTS["capnet_x100"]), torch.tensor([100 * (0.5 + 4 / 3)]), "capnet"
    )
    assert_close(chamfer_variant(x, y, *CHAMFER_VARIANTS["psgn_sum_squared"]), torch.tensor([9.0]), "psgn")
    assert_close(
        chamfer_variant(x, y, *CHAMFER_VARIANTS["mean_squared_x1000"]),
        torch.tensor([1000 * (0.5 + 8 / 3)]),
        "x1000",
    )
    assert_close(chamfer_variant(x, y, squared=False, reduction="sum"), torch.tensor([5.0]), "euclidean sum")
    # Euclidean gradient is finite at coincident points (x0 == y0)
    xr = x.clone().requires_grad_(True)
    chamfer_variant(xr, y).sum().backward()
    assert torch.isfinite(xr.grad).all(), f"non-finite gradient {xr.grad}"
    assert_close(xr.grad[0, 0], torch.tensor([0, -1 / 3, 0]), "grad at a coincident point (only y1 pulls)")


# ------------------------------------------------------------------------------------------------ EMD
def test_emd_exact_equals_permutation_search():
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    y = torch.randn(3, 5, 3, dtype=torch.float64)
    out = emd_exact(x, y)
    for b in range(3):
        cost = torch.cdist(x[b], y[b])
        best = min(itertools.permutations(range(5)), key=lambda p: cost[range(5), list(p)].sum().item())
        assert_close(out.dist[b], cost[range(5), list(best)].mean(), f"emd batch {b}")
        assert sorted(out.assignment[b].tolist()) == list(range(5)), "assignment must be a permutation"
    # for a permuted copy the distance is 0 and the assignment inverts the permutation
    perm = torch.randperm(5)
    same = emd_exact(x, x[:, perm])
    assert_close(same.dist, torch.zeros(3, dtype=torch.float64), "emd of a permuted copy")
    assert torch.equal(perm[same.assignment[0]], torch.arange(5))


def test_emd_approx_converges_to_exact():
    x = torch.rand(2, 32, 3, dtype=torch.float64)
    y = torch.rand(2, 32, 3, dtype=torch.float64)
    exact = emd_exact(x, y).dist
    errs = []
    for eps in (0.1, 0.03, 0.01):
        gap = emd_approx(x, y, eps=eps, iters=200) - exact
        errs.append(gap.abs().max().item())
        assert (gap > -1e-3).all() and (gap <= eps * math.log(32) + 1e-3).all(), (
            f"eps={eps}: gap {gap.tolist()}"
        )
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02 * exact.min().item(), f"errors {errs} vs {exact}"


def test_emd_approx_gradcheck_and_detached_plan_gradient():
    x = torch.rand(2, 4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: emd_approx(a, b, eps=0.1, iters=20)
    assert torch.autograd.gradcheck(fn, (x, y), eps=1e-6, atol=1e-6)
    # detached plan: same value, and as eps -> 0 the gradient of the exact EMD for its optimal assignment
    # (y: a shuffled, slightly moved copy of x, so the optimal assignment wins by a wide margin)
    x = torch.rand(2, 16, 3, dtype=torch.float64, requires_grad=True)
    y = x.detach()[:, torch.randperm(16)] + 0.01 * torch.randn(2, 16, 3, dtype=torch.float64)
    assert_close(emd_approx(x, y, detach_plan=True), emd_approx(x, y), "detached plan value")
    g_exact = torch.autograd.grad(emd_exact(x, y).dist.sum(), x)[0]
    g_approx = torch.autograd.grad(emd_approx(x, y, eps=0.001, iters=100, detach_plan=True).sum(), x)[0]
    assert_close(g_approx, g_exact, "detached-plan gradient vs exact EMD gradient", rtol=0, atol=1e-4)


# --------------------------------------------------------------------------------------- rotation fit
def test_fit_rotation_chamfer_recovers_rotation():
    from geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(3)
    S, P = 3, 150
    centres = torch.randn(S, 5, 3, generator=g) * torch.tensor([1.0, 0.6, 0.3])  # asymmetric blob sets
    label = torch.randint(0, 5, (S, P), generator=g)
    gt = centres.gather(1, label[..., None].expand(-1, -1, 3)) + 0.1 * torch.randn(S, P, 3, generator=g)
    R_true = axis_angle_to_matrix(torch.tensor([1.1, -2.0, 0.6]))
    pred = (gt + 0.005 * torch.randn(S, P, 3, generator=g)) @ R_true.T  # so that pred @ R_true ~ gt
    fit = fit_rotation_chamfer(list(pred), gt, n_coarse=256, coarse_points=64, iters=60)
    assert_close(fit.R @ fit.R.T, torch.eye(3), "R orthonormal", atol=1e-5)
    cos = ((fit.R.T.double() @ R_true.double()).trace() - 1) / 2
    angle = math.degrees(math.acos(min(1.0, cos.item())))
    assert angle < 1.0, f"rotation error {angle:.3f} deg"
    assert fit.loss < 0.05, f"aligned chamfer {fit.loss}"


@pytest.mark.parametrize("single_directional", [False, True])
@pytest.mark.parametrize(
    "point_reduction, batch_reduction",
    [("mean", "mean"), ("mean", "sum"), ("mean", None), ("sum", "mean"), ("sum", None), ("max", "mean"),
     ("max", None), (None, None)],
)  # fmt: skip
@pytest.mark.parametrize("with_normals", [False, True])
def test_all_zero_weights_as_pytorch3d(point_reduction, batch_reduction, single_directional, with_normals):
    # PyTorch3D loss/chamfer.py: weights.sum() == 0 makes both terms of each direction
    # `(x.sum((1, 2)) * weights.view(N, 1)) * 0.0`, (N, N) zeros in x's graph, normals term included even
    # without normals; `_apply_batch_reduction` then sums (mean divides by 1). tests/test_chamfer.py
    # (weights = zeros): loss and loss_norm are zeros(()) for batch_reduction "mean" and zeros((N, N)) for
    # None, all requiring grad.
    if with_normals and point_reduction == "max":
        pytest.skip("normals are refused with point_reduction 'max' (as PyTorch3D)")
    N, P1, P2 = 4, 5, 7
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, P1, 3, generator=g, requires_grad=True)
    y = torch.randn(N, P2, 3, generator=g, requires_grad=True)
    normals = {}
    if with_normals:
        normals = dict(
            x_normals=torch.randn(N, P1, 3, generator=g), y_normals=torch.randn(N, P2, 3, generator=g)
        )
    loss, loss_n = chamfer_distance(
        x, y, weights=torch.zeros(N), point_reduction=point_reduction, batch_reduction=batch_reduction,
        single_directional=single_directional, **normals,
    )  # fmt: skip
    shape = (N, N) if batch_reduction is None else ()
    two = point_reduction is None and not single_directional

    def check(t, what):
        parts = t if two else (t,)
        assert isinstance(parts, tuple) and len(parts) == (2 if two else 1), what
        for part in parts:
            assert part.shape == shape and part.requires_grad, f"{what}: {tuple(part.shape)}"
            assert_close(part, torch.zeros(shape), what)

    check(loss, "loss")
    if point_reduction == "max" and not single_directional:
        assert loss_n is None
    else:
        check(loss_n, "loss_normals")  # present even without normals, as PyTorch3D
    total = sum(t.sum() for t in (loss if two else (loss,)))
    gx, gy = torch.autograd.grad(total, (x, y), allow_unused=True)
    assert_close(gx, torch.zeros_like(x), "zero gradient reaches x")
    if not single_directional:
        assert_close(gy, torch.zeros_like(y), "zero gradient reaches y")
