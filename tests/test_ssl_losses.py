"""SSL point-cloud losses (losses/ssl_pointcloud.py, Eq. 1-11) and metrics (lightning_modules/ssl/metrics.py):
analytic values, slow references written here, batched rendering against a per-view loop, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geometry.rotations import axis_angle_to_matrix
from helpers import TOL, assert_close
from lightning_modules.ssl.metrics import (
    CHAMFER_METRICS,
    apply_rotation,
    normalize_to_unit_box,
    pose_errors,
    pose_metrics,
    reconstruction_metrics,
    subsample_points,
    viewpoint_rotation,
)
from losses.ssl_pointcloud import (
    SSL_WEIGHTS,
    geometric_cycle_loss,
    image_loss,
    mask_affinity_loss,
    mask_bce_loss,
    mask_loss,
    mine_neighbours,
    nn_mask_loss,
    pose_cycle_loss,
    pose_objective,
    reconstruction_objective,
    render_views,
    sample_views,
    symmetry_loss,
)

F64 = TOL[torch.float64]


def _chamfer_sq_mean_naive(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) squared NN distances, mean per direction, added: O(P^2) with explicit differences."""
    d = (x[:, :, None, :] - y[:, None, :, :]).square().sum(-1)  # (N, P, Q)
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


def _test_camera(points, azimuth, elevation, distance=3.0, focal=2.0):
    """A simple look-at camera for the tests: rotate by azimuth about y and elevation about x, move along +z,
    perspective: returns (x_ndc, y_ndc, z_view)."""
    zero = torch.zeros_like(azimuth)
    R_az = axis_angle_to_matrix(torch.stack([zero, azimuth, zero], -1))
    R_el = axis_angle_to_matrix(torch.stack([elevation, zero, zero], -1))
    view = points @ (R_az @ R_el) + torch.tensor([0.0, 0.0, distance], dtype=points.dtype)
    z = view[..., 2:]
    return torch.cat([focal * view[..., :2] / z, z], -1)


# ----------------------------------------------------------------------------------------------- Eq. 1-2
def test_image_loss_analytic():
    pred = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    target = torch.ones_like(pred)
    target[1, :, :2] = 0.0  # second image: 2 of 4 rows (10 of 20 pixels) exact
    # per image: sum over 3 channels, mean over pixels -> 3 and 3 * 10 / 20; batch mean
    assert_close(
        image_loss(pred, target), torch.tensor((3.0 + 3.0 * 10 / 20) / 2, dtype=torch.float64), "L_I"
    )
    with pytest.raises(ValueError, match="image_loss"):
        image_loss(pred, target[:, :, :3])


def test_mask_bce_modes():
    torch.manual_seed(0)
    pred = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 0.98 + 0.01
    target = (torch.rand(2, 1, 4, 4) > 0.5).double()
    manual = -(target * pred.log() + (1 - target) * (1 - pred).log()).mean()
    assert_close(mask_bce_loss(pred, target), manual, "prob", **F64)
    assert_close(
        mask_bce_loss(pred, target, mode="logits"),
        F.binary_cross_entropy_with_logits(pred, target),
        "logits",
        **F64,
    )
    # saturated predictions stay finite
    assert torch.isfinite(mask_bce_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)))


# ----------------------------------------------------------------------------------------------- Eq. 3
def _affinity_naive(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Eq. 3 by explicit loops over pixel pairs, batch mean."""
    B, _, H, W = pred.shape
    total = []
    for b in range(B):
        M, Mh = target[b, 0], pred[b, 0]
        s = pred.new_zeros(())
        for i in range(H):
            for j in range(W):
                c1 = [
                    ((i - k) ** 2 + (j - l) ** 2) * Mh[i, j] * M[k, l]
                    for k in range(H)
                    for l in range(W)
                    if M[k, l] > threshold
                ]
                c2 = [
                    ((i - k) ** 2 + (j - l) ** 2) * M[i, j] * Mh[k, l]
                    for k in range(H)
                    for l in range(W)
                    if Mh[k, l] > threshold
                ]
                s = s + (min(c1) if c1 else 0.0) + (min(c2) if c2 else 0.0)
        total.append(s)
    return torch.stack(total).mean()


def test_affinity_matches_eq3_loops_and_is_zero_for_equal_binary_masks():
    torch.manual_seed(0)
    target = torch.zeros(2, 1, 5, 6, dtype=torch.float64)
    target[0, 0, 1:3, 1:4] = 1.0
    target[1, 0, 3:, 4:] = 1.0
    pred = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    pred[pred < 0.4] = 0.0  # an incomplete prediction
    for thr in (0.0, 0.5):
        assert_close(
            mask_affinity_loss(pred, target, threshold=thr),
            _affinity_naive(pred, target, thr),
            f"thr {thr}",
            **F64,
        )
    assert float(mask_affinity_loss(target, target)) == 0.0
    # an empty target and an empty prediction contribute 0 (no NaN)
    empty = torch.zeros(1, 1, 5, 6, dtype=torch.float64)
    assert float(mask_affinity_loss(empty, empty)) == 0.0
    # a one-pixel prediction two columns right of a one-pixel target: 4 (forward) + 4 (backward)
    t = empty.clone()
    t[0, 0, 2, 1] = 1.0
    p = empty.clone()
    p[0, 0, 2, 3] = 1.0
    assert_close(mask_affinity_loss(p, t), torch.tensor(8.0, dtype=torch.float64), "two pixels", **F64)


def test_affinity_gradient_finite_and_chunking_invariant(monkeypatch):
    import losses.ssl_pointcloud as mod

    torch.manual_seed(1)
    target = (torch.rand(3, 1, 7, 7) > 0.6).double()
    pred = torch.rand(3, 1, 7, 7, dtype=torch.float64, requires_grad=True)
    full = mask_affinity_loss(pred, target)
    (g_full,) = torch.autograd.grad(full, pred)
    monkeypatch.setattr(mod, "_AFFINITY_CHUNK", 50)  # a few rows per chunk
    small = mask_affinity_loss(pred, target)
    (g_small,) = torch.autograd.grad(small, pred)
    assert_close(small, full, "chunked", **F64)
    assert_close(g_small, g_full, "chunked grad", **F64)
    assert bool(torch.isfinite(g_full).all())


def test_binary_target_distance_transform_equals_the_quadratic_search():
    import losses.ssl_pointcloud as mod

    torch.manual_seed(2)
    H, W = 9, 11
    member = torch.rand(4, H * W) > 0.85
    member[1] = False  # an empty silhouette: 0
    fast = mod._sq_distance_to_set(member, H, W, torch.float64)
    slow = mod._weighted_min_sq_dist(member.double(), member, H, W)
    assert torch.equal(fast, slow), "integer squared distances, exactly"
    # and the loss takes it for binary targets only (a soft target keeps its weights inside the min)
    target = member.view(4, 1, H, W).double()
    pred = torch.rand(4, 1, H, W, dtype=torch.float64)
    assert_close(mask_affinity_loss(pred, target), _affinity_naive(pred, target, 0.0), "binary", **F64)
    soft = target * 0.5
    assert_close(mask_affinity_loss(pred, soft), _affinity_naive(pred, soft, 0.0), "soft", **F64)


def test_affinity_official_mode_analytic():
    pred = torch.tensor([[[[0.5, 0.0], [1.0, 0.25]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    fwd = (0.5 + 0 + 1.0 + 0.25 * 1e6) / 4
    bwd = (0.5 + 0.5 * 1e6 + 1.0) / 4
    assert_close(
        mask_affinity_loss(pred, target, mode="official"),
        torch.tensor(fwd + bwd, dtype=torch.float64),
        "official",
        **F64,
    )


def test_mask_loss_terms():
    torch.manual_seed(0)
    pred = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    target = (torch.rand(2, 1, 4, 4) > 0.5).double()
    terms = mask_loss(pred, target)
    assert_close(terms.bce, mask_bce_loss(pred, target), "bce", **F64)
    assert_close(terms.affinity, mask_affinity_loss(pred, target), "aff", **F64)
    assert float(mask_loss(pred, target, affinity="none").affinity) == 0.0


# ----------------------------------------------------------------------------------------------- Eq. 5, 7
def test_geometric_cycle_zero_for_consistent_and_sum_of_chamfers_otherwise():
    torch.manual_seed(0)
    points = torch.randn(2, 16, 3, dtype=torch.float64)
    perm = torch.randperm(16)
    same = points[:, perm].unsqueeze(1).expand(2, 3, 16, 3)  # k = 3 reorderings of the same clouds
    assert float(geometric_cycle_loss(points, same)) == pytest.approx(0.0, abs=1e-14)
    views = points.unsqueeze(1) + 0.1 * torch.randn(2, 3, 16, 3, dtype=torch.float64)
    expected = torch.stack([_chamfer_sq_mean_naive(points, views[:, i]) for i in range(3)], 1).sum(1).mean()
    got = geometric_cycle_loss(points, views)
    assert float(got) > 0
    assert_close(got, expected, "L_G", **F64)


def test_pose_cycle_analytic():
    poses = torch.zeros(1, 2, 2, dtype=torch.float64)
    pred = torch.tensor([[[0.2, -0.1], [0.0, 0.3]]], dtype=torch.float64)
    assert float(pose_cycle_loss(poses, poses)) == 0.0
    assert_close(
        pose_cycle_loss(poses, pred), torch.tensor((0.3 + 0.3) / 2, dtype=torch.float64), "paper", **F64
    )
    assert_close(
        pose_cycle_loss(poses, pred, reduction="official"),
        torch.tensor(0.6 / 4, dtype=torch.float64),
        "official",
        **F64,
    )
    # azimuths across the +-pi seam: 2 pi - 0.2 apart raw, 0.2 apart on the circle
    a = torch.tensor([[[math.pi - 0.1, 0.0]]], dtype=torch.float64)
    b = torch.tensor([[[-math.pi + 0.1, 0.0]]], dtype=torch.float64)
    assert_close(pose_cycle_loss(a, b, wrap=True), torch.tensor(0.2, dtype=torch.float64), "wrap", **F64)


# ----------------------------------------------------------------------------------------------- Eq. 9
def test_mine_neighbours_self_and_bank():
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.5, 0.0]])
    nn = mine_neighbours(feats, k=2)
    assert nn.idx.tolist() == [[1, 2], [0, 2], [3, 1], [2, 1]]
    assert_close(nn.dists[0], torch.tensor([1.0, 3.0]), "dists", **TOL[torch.float32])
    bank = torch.cat([feats, torch.tensor([[0.9, 0.0]])])
    nb = mine_neighbours(feats[:2], k=1, bank=bank, self_indices=torch.tensor([0, 1]))
    assert nb.idx.tolist() == [[4], [4]]
    # duplicated features: the query's own row is still the one excluded
    dup = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    assert mine_neighbours(dup, k=1).idx[:2].tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="k must be"):
        mine_neighbours(feats, k=4)


def test_nn_mask_loss_is_sum_over_neighbours():
    torch.manual_seed(0)
    masks = torch.rand(2, 3, 1, 5, 5, dtype=torch.float64)
    gts = (torch.rand(2, 3, 1, 5, 5) > 0.5).double()
    got = nn_mask_loss(masks, gts)
    ref = [mask_loss(masks[:, i], gts[:, i]) for i in range(3)]
    assert_close(got.bce, sum(r.bce for r in ref), "bce", **F64)
    assert_close(got.affinity, sum(r.affinity for r in ref), "aff", **F64)


# ----------------------------------------------------------------------------------------------- Eq. 10
def test_symmetry_zero_for_symmetric_positive_otherwise():
    torch.manual_seed(0)
    half = torch.randn(2, 10, 3, dtype=torch.float64)
    half[..., 1] = half[..., 1].abs() + 0.01
    sym = torch.cat([half, half * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)], 1)
    on_plane = torch.tensor([[[0.3, 0.0, 0.2]]], dtype=torch.float64).expand(2, 1, 3)
    sym = torch.cat([sym, on_plane], 1)[:, torch.randperm(21)]
    for mode in ("halves", "mirror"):
        assert float(symmetry_loss(sym, mode=mode)) == pytest.approx(0.0, abs=1e-14)
    asym = sym.clone()
    asym[:, :, 0] += 0.5 * (asym[:, :, 1] > 0).double()  # shift the positive half along x
    for mode in ("halves", "mirror"):
        assert float(symmetry_loss(asym, mode=mode)) > 1e-3
    # halves: Eq. 10 against the naive chamfer of P+ and mirrored P-
    pts = torch.randn(1, 12, 3, dtype=torch.float64)
    pos = pts[:, pts[0, :, 1] >= 0]
    neg = pts[:, pts[0, :, 1] <= 0] * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    assert_close(symmetry_loss(pts), _chamfer_sq_mean_naive(pos, neg)[0], "halves", **F64)
    # all points on one side: no NaN
    assert torch.isfinite(symmetry_loss(half))


# ----------------------------------------------------------------------------------------------- rendering
def test_render_views_batched_equals_per_view_loop_and_grads_finite():
    torch.manual_seed(0)
    B, k, P, S = 2, 3, 40, 16
    points = (0.5 * torch.randn(B, P, 3, dtype=torch.float64)).requires_grad_(True)
    colors = torch.rand(B, P, 3, dtype=torch.float64)
    poses = sample_views(B, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert poses.shape == (B, k, 2)
    assert bool((poses[..., 1] >= math.radians(-20)).all() and (poses[..., 1] <= math.radians(40)).all())
    views = render_views(points, poses, _test_camera, S, colors=colors, color_kernel="gaussian")
    assert views.images.shape == (B, k, 3, S, S) and views.masks.shape == (B, k, 1, S, S)
    for i in range(k):
        one = render_views(
            points, poses[:, i : i + 1], _test_camera, S, colors=colors, color_kernel="gaussian"
        )
        assert_close(views.masks[:, i], one.masks[:, 0], f"mask view {i}", **F64)
        assert_close(views.images[:, i], one.images[:, 0], f"image view {i}", **F64)
    assert float(views.masks.detach().max()) > 0.5  # the clouds are in view
    assert bool(((views.masks >= 0) & (views.masks < 1)).all())
    assert bool(((views.images >= -1e-12) & (views.images <= 1 + 1e-12)).all())
    loss = image_loss(views.images[:, 0], torch.rand(B, 3, S, S, dtype=torch.float64))
    loss = loss + mask_loss(views.masks[:, 1], (torch.rand(B, 1, S, S) > 0.5).double()).bce
    (g,) = torch.autograd.grad(loss, points)
    assert bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    box = render_views(points, poses, _test_camera, S, colors=colors)  # the official box "well"
    for i in range(k):
        one = render_views(points, poses[:, i : i + 1], _test_camera, S, colors=colors)
        assert_close(box.images[:, i], one.images[:, 0], f"box image view {i}", **F64)
    masks_only = render_views(points, poses, _test_camera, S)
    assert masks_only.images is None
    assert_close(masks_only.masks, views.masks, "masks only", **F64)


# ----------------------------------------------------------------------------------------------- objectives
def test_objectives_combine_with_weights():
    t = {
        n: torch.tensor(float(i + 1))
        for i, n in enumerate(["image", "mask", "affinity", "geometric", "nn", "nn_affinity", "symmetry"])
    }
    w = dict(SSL_WEIGHTS, symmetry=2.0)
    expected = sum(w[n] * float(v) for n, v in t.items())
    assert float(reconstruction_objective(**t, weights=w)) == pytest.approx(expected)
    # Eq. 6: without nn and symmetry, official weights 100 (L_I), 100 (bce), 1e-4 (affinity), 1e4 (L_G)
    eq6 = reconstruction_objective(
        image=t["image"], mask=t["mask"], affinity=t["affinity"], geometric=t["geometric"]
    )
    assert float(eq6) == pytest.approx(100 * 1 + 100 * 2 + 1e-4 * 3 + 1e4 * 4)
    assert float(
        pose_objective(image=torch.tensor(1.0), mask=torch.tensor(2.0), pose_cycle=torch.tensor(3.0))
    ) == pytest.approx(6.0)
    with pytest.raises(KeyError, match="geometric"):
        reconstruction_objective(geometric=torch.tensor(1.0), weights={"image": 1.0})
    assert SSL_WEIGHTS["lr"] == 5e-4


# ----------------------------------------------------------------------------------------------- metrics
def test_reconstruction_metrics_zero_for_identical_and_after_rotation():
    torch.manual_seed(0)
    gt = torch.rand(2, 64, 3, dtype=torch.float64) - 0.5
    R = axis_angle_to_matrix(torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64))
    pred = gt[:, torch.randperm(64)] @ R.T  # in another frame: pred @ R = gt (reordered)
    m = reconstruction_metrics(pred, gt, R=R)
    assert_close(m.chamfer, torch.zeros(2, dtype=torch.float64), "chamfer", atol=1e-10, rtol=0)
    assert_close(m.emd, torch.zeros(2, dtype=torch.float64), "emd", atol=1e-10, rtol=0)
    assert float(reconstruction_metrics(pred, gt).chamfer.min()) > 0  # unaligned


def test_reconstruction_metrics_analytic_conventions():
    x = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]], dtype=torch.float64)
    y = torch.tensor([[[1.0, 0.0, 0.0], [3.0, 2.0, 0.0]]], dtype=torch.float64)
    # x -> y: 1, 4 (squared); y -> x: 1, 4. paper: squared, summed, x100 = 100 * (5 + 5)
    m = reconstruction_metrics(x, y)
    assert_close(m.chamfer, torch.tensor([1000.0], dtype=torch.float64), "paper chamfer", **F64)
    # EMD paper: sum of matched Euclidean distances (0->1: 1, 3->(3,2): 2) x100 = 300
    assert_close(m.emd, torch.tensor([300.0], dtype=torch.float64), "paper emd", **F64)
    lineage = reconstruction_metrics(x, y, chamfer="capnet_x100", emd="mean_x100")
    assert_close(lineage.chamfer, torch.tensor([100 * (1.5 + 1.5)], dtype=torch.float64), "capnet", **F64)
    assert_close(lineage.emd, torch.tensor([150.0], dtype=torch.float64), "emd mean", **F64)
    sq = reconstruction_metrics(x, y, chamfer="mean_squared_x1000", emd="mean_squared_x100")
    assert_close(sq.chamfer, torch.tensor([1000 * (2.5 + 2.5)], dtype=torch.float64), "x1000", **F64)
    assert_close(sq.emd, torch.tensor([250.0], dtype=torch.float64), "emd sq", **F64)
    assert "paper" in CHAMFER_METRICS
    with pytest.raises(KeyError, match="chamfer"):
        reconstruction_metrics(x, y, chamfer="nope")


def test_subsampling_rotation_and_unit_box():
    torch.manual_seed(0)
    big = torch.rand(2, 1500, 3)
    sub = subsample_points(big, 1024, torch.Generator().manual_seed(0))
    assert sub.shape == (2, 1024, 3)
    # every subsampled point is one of the cloud's points, each at most once
    assert bool((sub[0][:, None, :] == big[0][None]).all(-1).any(1).all())
    assert torch.unique(sub[0], dim=0).shape[0] == 1024
    small = big[:, :300]  # subsampled to 128 points each, EMD by Sinkhorn (the fast path)
    m = reconstruction_metrics(
        small, small.flip(1), n_points=128, generator=torch.Generator().manual_seed(0), emd_method="approx"
    )
    assert m.chamfer.shape == (2,) and bool(torch.isfinite(m.emd).all())
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))  # x -> y (columns)
    row = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    expected = torch.tensor([[[0.0, -1.0, 0.0]]], dtype=torch.float64)  # row vector: x @ R = R^T x
    assert_close(apply_rotation(row, R), expected, "rotation", **F64)
    assert_close(apply_rotation(row, R[None]), expected, "batched rotation", **F64)
    box = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 1.0, 0.5], [1.0, 0.2, 0.1]]], dtype=torch.float64)
    nb = normalize_to_unit_box(box)
    assert_close(
        nb.amax(1) - nb.amin(1), torch.tensor([[1.0, 0.5, 0.25]], dtype=torch.float64), "sides", **F64
    )
    assert_close((nb.amax(1) + nb.amin(1)) / 2, torch.zeros(1, 3, dtype=torch.float64), "centre", **F64)


def test_pose_error_of_known_rotations_and_flip():
    deg = torch.deg2rad
    gt = deg(torch.tensor([[10.0, 0.0], [10.0, 0.0], [0.0, 20.0], [30.0, 15.0]], dtype=torch.float64))
    pred = deg(torch.tensor([[55.0, 0.0], [180.0, 0.0], [0.0, -15.0], [30.0, 15.0]], dtype=torch.float64))
    # same elevation 0: error = azimuth difference; same azimuth: elevation difference; equal: 0
    err = pose_errors(pred, gt)
    assert_close(
        err, torch.tensor([45.0, 170.0, 35.0, 0.0], dtype=torch.float64), "no flip", atol=1e-6, rtol=0
    )
    # flip: the 170 degree error (> 90) is replaced by the flipped prediction's 10 degrees
    err_f = pose_errors(pred, gt, flip=True)
    assert_close(err_f, torch.tensor([45.0, 10.0, 35.0, 0.0], dtype=torch.float64), "flip", atol=1e-6, rtol=0)
    # general case against the geodesic angle computed from an explicit relative rotation
    R1 = viewpoint_rotation(pred[:, 0], pred[:, 1])
    R2 = viewpoint_rotation(gt[:, 0], gt[:, 1])
    ref = torch.rad2deg(torch.acos(((torch.einsum("bij,bij->b", R1, R2) - 1) / 2).clamp(-1, 1)))
    assert_close(err, ref, "geodesic", atol=1e-6, rtol=0)
    # an alignment equal to a known rotation of the prediction frame is undone
    A = viewpoint_rotation(
        deg(torch.tensor([25.0], dtype=torch.float64)), deg(torch.tensor([0.0], dtype=torch.float64))
    )[0]
    shifted = torch.stack([gt[:, 0] - deg(torch.tensor(25.0, dtype=torch.float64)), gt[:, 1]], 1)
    assert_close(
        pose_errors(shifted[:2], gt[:2], alignment=A),
        torch.zeros(2, dtype=torch.float64),
        "aligned",
        atol=1e-6,
        rtol=0,
    )
    pm = pose_metrics(err)
    assert_close(pm.median_error_deg, torch.tensor(40.0, dtype=torch.float64), "median", atol=1e-6, rtol=0)
    # errors below 30: only 0; with flip 10 and 0
    assert_close(pm.accuracy_percent, torch.tensor(25.0, dtype=torch.float64), "accuracy", **F64)
    assert float(pose_metrics(err_f).accuracy_percent) == 50.0
    assert float(pose_metrics(torch.tensor([float("nan"), 1.0])).accuracy_percent) == 50.0


def test_gradcheck_float64_losses():
    torch.manual_seed(3)
    target = (torch.rand(1, 1, 4, 5) > 0.5).double()
    pred = (0.05 + 0.9 * torch.rand(1, 1, 4, 5, dtype=torch.float64)).requires_grad_(True)
    # random weights: no ties in the min of Eq. 3, so the minimisers stay fixed under the finite differences
    assert torch.autograd.gradcheck(lambda p: mask_affinity_loss(p, target), (pred,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda p: mask_bce_loss(p, target), (pred,), eps=1e-6, atol=1e-6)
    pts = torch.randn(1, 6, 3, dtype=torch.float64, requires_grad=True)
    views = torch.randn(1, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(geometric_cycle_loss, (pts, views), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda p: symmetry_loss(p), (pts,), eps=1e-6, atol=1e-6)
