"""Tests of losses/rgpd.py (Zhang et al., ICCV 2023): SSI by hand and its invariances, NaN safety, the novel
view transforms of Eq. 5-11, the consistency pipeline on known geometry with an oracle network, batched
against per-sample loops, the multi-focal minimum, RenderFOV and Table 2's point-cloud RMSE."""

from __future__ import annotations

import pytest
import torch

from datamodules.depth.synthetic import random_scene, render_scene
from geometry.cameras import intrinsics_from_fov
from geometry.depth import unproject_depth
from helpers import TOL, assert_close
from losses.depth import normalize_disparity
from losses.rgpd import (
    consistency_losses,
    invert_transform,
    min_z,
    multi_focal_consistency,
    novel_view_transform,
    point_cloud_rmse,
    render_fov,
    rgpd_total_loss,
    sample_novel_views,
    ssi_mad_loss,
    ssi_normalize,
)

H = W = 32


# ----------------------------------------------------------------------------------------------- fixtures
def scenes(fovs=(50.0, 60.0, 70.0), seed=0, size=H):
    """Synthetic rooms (analytic ray casts) with their true intrinsics: image, depth, valid, K."""
    out = []
    for i, fov in enumerate(fovs):
        g = torch.Generator().manual_seed(seed + i)
        K = intrinsics_from_fov(torch.tensor([float(fov)]), size, size)[0]
        r = render_scene(random_scene(g, hfov_deg=fov), K, size, size)
        out.append((r.image, r.depth, r.valid, K))
    return [torch.stack(x) for x in zip(*out)]


def oracle(R: torch.Tensor, t: torch.Tensor, scale: float = 2.0, shift: float = 0.3):
    """A network that sees images whose channels are the true camera-frame 3D points X of the input view and
    returns the true z-depth of each rendered point in the novel camera (X @ R + t)_z, up to scale and shift.
    R, t: the transforms of the batch in the order net_fn sees it."""

    def net(img: torch.Tensor) -> torch.Tensor:
        n, _, h, w = img.shape
        X = img.flatten(2).transpose(1, 2)  # (n, HW, 3)
        z = (X @ R[:, :, 2:3]).squeeze(-1) + t[:, 2:3]  # (n, HW)
        return scale * z.view(n, 1, h, w) + shift

    return net


def true_points_image(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) image of the true 3D points (the oracle's input)."""
    B, _, h, w = depth.shape
    return unproject_depth(depth, K).points.transpose(1, 2).reshape(B, 3, h, w)


def pixelwise_net(img: torch.Tensor) -> torch.Tensor:
    """A deterministic per-pixel 'network' (batching cannot change its output)."""
    return 1.0 + img[:, :1] ** 2 + 0.5 * img[:, 1:2] - 0.2 * img[:, 2:3] * img[:, :1]


def repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])


# ---------------------------------------------------------------------------------------------- SSI (1-3)
def test_ssi_normalize_by_hand():
    d = torch.tensor([[[[0.0, 1.0, 2.0], [3.0, 10.0, 99.0]]], [[[4.0, 1.0, 3.0], [2.0, 7.0, 7.0]]]])
    mask = torch.ones_like(d, dtype=torch.bool)
    mask[0, 0, 1, 2] = False  # 99 is masked: median of {0, 1, 2, 3, 10} is 2, MAD (2+1+0+1+8)/5 = 2.4
    mask[1, 0, 1, 1:] = False  # {4, 1, 3, 2}: lower median 2, MAD (2+1+1+0)/4 = 1
    out = ssi_normalize(d, mask)
    assert_close(out.median, torch.tensor([2.0, 2.0]), "median")
    assert_close(out.mad, torch.tensor([2.4, 1.0]), "mad")
    assert out.valid.tolist() == [True, True]
    expected0 = torch.tensor([[-2.0, -1.0, 0.0], [1.0, 8.0, 0.0]]) / 2.4
    assert_close(out.normalized[0, 0], expected0, "normalized[0]")
    assert_close(out.normalized[1, 0], torch.tensor([[2.0, -1.0, 1.0], [0.0, 0.0, 0.0]]), "normalized[1]")


def test_ssi_loss_by_hand():
    # target {0,1,2,3,10}: t_hat = (-5/6, -5/12, 0, 5/12, 10/3); pred {0,0,1,2,2}: median 1, MAD 0.8,
    # p_hat = (-5/4, -5/4, 0, 5/4, 5/4); mean |p_hat - t_hat| = (5/12 + 10/12 + 0 + 10/12 + 25/12) / 5 = 5/6
    t = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0], dtype=torch.float64).view(1, 1, 1, 5)
    p = torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0], dtype=torch.float64).view(1, 1, 1, 5)
    m = torch.ones_like(t, dtype=torch.bool)
    out = ssi_mad_loss(p, t, m, reduction="none")
    assert_close(out.loss, torch.tensor([5.0 / 6.0], dtype=torch.float64), "ssi by hand")
    assert out.valid.tolist() == [True]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssi_affine_invariance_and_gp2_normalization(dtype):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 1, 6, 7, generator=g, dtype=dtype) * 3 + 0.5
    mask = torch.rand(4, 1, 6, 7, generator=g) < 0.7
    a = torch.tensor([0.5, 2.0, 10.0, 0.01], dtype=dtype).view(4, 1, 1, 1)
    b = torch.tensor([-3.0, 0.0, 5.0, 1.0], dtype=dtype).view(4, 1, 1, 1)
    out = ssi_mad_loss(a * target + b, target, mask, reduction="none")
    assert out.valid.all()
    assert_close(out.loss, torch.zeros(4, dtype=dtype), "affine pred", atol=50 * TOL[dtype]["atol"])
    # equal to GP2's MiDaS normalization (losses.depth) on valid samples
    assert_close(ssi_normalize(target, mask).normalized, normalize_disparity(target, mask), "vs GP2")
    other = torch.rand(4, 1, 6, 7, generator=g, dtype=dtype)
    assert (ssi_mad_loss(other, target, mask, reduction="none").loss > 0.1).all()


def test_ssi_empty_and_constant_are_skipped_without_nan():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64)
    target[1] = 3.0  # constant target
    mask = torch.ones(4, 1, 5, 5, dtype=torch.bool)
    mask[2] = False  # empty mask
    pred_in = pred.clone()
    pred_in[3] = torch.where(mask[3], 1.5, float("nan"))  # constant prediction (and NaN outside nothing)
    out = ssi_mad_loss(pred_in, target, mask, reduction="none")
    assert out.valid.tolist() == [True, False, False, False]
    assert torch.isfinite(out.loss).all() and (out.loss[1:] == 0).all()
    mean = ssi_mad_loss(pred_in, target, mask)
    assert_close(mean.loss, out.loss[0], "mean over valid samples")
    mean.loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1:] == 0).all() and pred.grad[0].abs().sum() > 0
    # NaN outside the mask is ignored
    p2 = pred.detach().clone()
    p2[0, 0, 0, 0] = float("nan")
    m2 = mask.clone()
    m2[0, 0, 0, 0] = False
    assert torch.isfinite(ssi_mad_loss(p2, target, m2, reduction="sum").loss)
    with pytest.raises(ValueError, match="reduction"):
        ssi_mad_loss(pred, target, mask, reduction="max")
    with pytest.raises(ValueError, match="mask"):
        ssi_mad_loss(pred, target, mask.float())


def test_ssi_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    # distinct values well apart, so that no small perturbation changes the median's element
    pred = (torch.randperm(12, generator=g).double() + 0.1 * torch.rand(12, generator=g).double()).view(
        1, 1, 3, 4
    )
    target = (torch.randperm(12, generator=g).double() * 0.7).view(1, 1, 3, 4)
    mask = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    mask[0, 0, 0, 0] = False
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p: ssi_mad_loss(p, target, mask).loss, (pred,), eps=1e-6, atol=1e-7, rtol=1e-6
    )


def test_total_loss_eq15():
    assert_close(rgpd_total_loss(torch.tensor(2.0), torch.tensor(3.0)), torch.tensor(2.3), "beta 0.1")
    assert_close(rgpd_total_loss(torch.tensor(2.0), torch.tensor(3.0), beta=1.0), torch.tensor(5.0), "beta 1")


# ------------------------------------------------------------------------------- novel views (Eq. 5-11)
def test_novel_view_transform_geometry():
    mz = torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64)
    theta = torch.tensor([0.0, 30.0, -20.0], dtype=torch.float64)
    shift = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64)
    R, t = novel_view_transform(theta, shift, mz)
    assert_close(R[0], torch.eye(3, dtype=torch.float64), "theta 0")
    assert_close(t[0], torch.zeros(3, dtype=torch.float64), "t 0")
    assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3), "orthonormal")
    center = torch.stack([torch.zeros(3), torch.zeros(3), mz.float()], -1).double()  # (B, 3)
    moved = (center.unsqueeze(1) @ R).squeeze(1) + t
    assert_close(moved, center + torch.stack([0 * shift, 0 * shift, shift], -1), "centre moves by (0, 0, t)")
    # Eq. 5 column-vector rotation: a point on the optical axis at 1 + min_z goes to (sin, 0, cos) about T_c
    X = center + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    Xn = (X.unsqueeze(1) @ R).squeeze(1) + t - center
    th = torch.deg2rad(theta)
    expected = torch.stack([th.sin(), 0 * th, th.cos()], -1) + torch.stack([0 * shift, 0 * shift, shift], -1)
    assert_close(Xn, expected, "Eq. 5 rotation about T_center")
    # Eq. 10-11: R_inv = R_p^T (row form: R^T), T_inv = -R_p^T (T + T_c) + T_c
    R_inv, t_inv = invert_transform(R, t)
    R_p = R.transpose(1, 2)
    T_plus = torch.stack([0 * shift, 0 * shift, shift], -1) + center
    eq11 = -(R_p.transpose(1, 2) @ T_plus.unsqueeze(-1)).squeeze(-1) + center
    assert_close(R_inv, R_p, "Eq. 10 (row form)")
    assert_close(t_inv, eq11, "Eq. 11")
    P = torch.randn(3, 5, 3, dtype=torch.float64)
    assert_close((P @ R + t[:, None]) @ R_inv + t_inv[:, None], P, "inverse")


def test_sample_novel_views_ranges_and_seed():
    mz = torch.linspace(0.5, 4.0, 400, dtype=torch.float64)
    R, t = sample_novel_views(mz, torch.Generator().manual_seed(3))
    R2, t2 = sample_novel_views(mz, torch.Generator().manual_seed(3))
    assert torch.equal(R, R2) and torch.equal(t, t2)
    theta = torch.rad2deg(torch.atan2(R[:, 2, 0], R[:, 0, 0]))  # R = R_p^T: R[2, 0] = sin
    assert theta.min() >= -30 and theta.max() <= 30 and theta.max() - theta.min() > 50
    assert_close(R[:, 1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(400, 3), "vertical axis")
    # recover the shift: t_row = (-m s, 0, shift + m - m c)
    s, c = torch.deg2rad(theta).sin(), torch.deg2rad(theta).cos()
    assert_close(t[:, 0], -mz * s, "t_x")
    frac = (t[:, 2] - mz + mz * c) / mz
    assert frac.min() >= -1 - 1e-9 and frac.max() <= 2 + 1e-9 and frac.max() - frac.min() > 2.5


def test_min_z():
    d = torch.tensor([[[[3.0, 0.0], [2.0, float("nan")]]], [[[0.0, -1.0], [0.0, 0.0]]]])
    assert_close(min_z(d), torch.tensor([2.0, 0.0]), "min_z ignores missing, 0 for empty")


# ------------------------------------------------------------------------------ consistency (Eq. 6-12)
def test_identity_view_gives_zero_consistency():
    img, depth, valid, K = scenes()
    depth, K = depth.double(), K.double()
    B = depth.shape[0]
    image = torch.cat([depth, img.double()], dim=1)  # channel 0 carries the depth: the net returns it
    R = torch.eye(3, dtype=torch.float64).expand(B, 3, 3)
    t = torch.zeros(B, 3, dtype=torch.float64)
    out = consistency_losses(lambda x: x[:, :1], image, depth, K, R, t)
    assert out.valid.all() and out.num_skipped.item() == 0
    assert_close(out.depth, torch.zeros(B, dtype=torch.float64), "depth consistency", atol=1e-12)
    assert_close(out.image, torch.zeros(B, dtype=torch.float64), "image consistency", atol=1e-12)
    assert out.novel.valid.all() and out.back.valid.all()


def test_true_focal_is_more_consistent_than_wrong_focal():
    _, depth, _, K = scenes(fovs=(60.0, 60.0, 60.0), seed=10)
    depth = depth * 0.37  # geometry preserving up to scale
    B = depth.shape[0]
    image = true_points_image(depth, K)
    mz = min_z(depth)
    for theta in (-20.0, 20.0):
        R, t = novel_view_transform(torch.full((B,), theta), 0.5 * mz, mz)
        net = oracle(R, t)
        right = consistency_losses(net, image, depth, K, R, t)
        for wrong_fov in (40.0, 80.0):
            Kw = intrinsics_from_fov(torch.full((B,), wrong_fov), H, W)
            wrong = consistency_losses(net, image, depth, Kw, R, t)
            assert right.valid.all() and wrong.valid.all()
            assert (right.depth < 1e-4).all(), right.depth  # exact up to float32 rounding
            assert (wrong.depth > 100 * right.depth + 1e-3).all(), (right.depth, wrong.depth)
            assert (wrong.total > right.total).all(), (right.total, wrong.total)


def test_the_true_shift_is_more_consistent_than_a_disparity_shift():
    """The paper's point (Sec. 4): a disparity with the wrong shift unprojects to a distorted scene whose
    novel views the (oracle) network predicts inconsistently, so L^C can teach the shift."""
    _, depth, _, K = scenes(fovs=(60.0, 60.0, 60.0), seed=11)
    B = depth.shape[0]
    image = true_points_image(depth, K)  # the oracle sees the true points, whatever geometry is rendered
    mz = min_z(depth)
    disparity = 1.0 / depth
    for theta in (-20.0, 20.0):
        R, t = novel_view_transform(torch.full((B,), theta), 0.5 * mz, mz)
        net = oracle(R, t)
        right = consistency_losses(net, image, depth, K, R, t)
        for frac in (-0.3, 0.5):  # shift by a fraction of each image's mean disparity
            b = frac * disparity.flatten(1).mean(1).view(B, 1, 1, 1)
            shifted = 1.0 / (disparity + b)
            wrong = consistency_losses(net, image, shifted, K, R, t)
            assert right.valid.all() and wrong.valid.all()
            assert (right.depth < 1e-4).all(), right.depth
            assert (wrong.depth > 100 * right.depth + 1e-3).all(), (frac, right.depth, wrong.depth)


def test_consistency_batched_equals_per_sample_loop():
    img, depth, _, K = scenes(seed=20)
    img, depth, K = img.double(), depth.double(), K.double()
    R, t = sample_novel_views(min_z(depth), torch.Generator().manual_seed(5))
    mask = torch.ones_like(depth, dtype=torch.bool)
    mask[1, :, :8] = False
    upstream = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)  # the same upstream gradient for both
    d = depth.clone().requires_grad_(True)
    out = consistency_losses(pixelwise_net, img, d, K, R, t, alpha=0.7, mask=mask)
    (out.total * upstream).sum().backward()
    assert out.valid.all()
    for b in range(depth.shape[0]):
        s = slice(b, b + 1)
        db = depth[s].clone().requires_grad_(True)
        ref = consistency_losses(pixelwise_net, img[s], db, K[s], R[s], t[s], alpha=0.7, mask=mask[s])
        (ref.total * upstream[s]).sum().backward()
        for name in ("total", "depth", "image"):
            assert_close(getattr(out, name)[s], getattr(ref, name), f"{name}[{b}]")
        assert_close(d.grad[s], db.grad, f"grad[{b}]")
    assert d.grad.abs().sum() > 0
    assert_close(out.total, out.depth + 0.7 * out.image, "Eq. 12")


def test_consistency_gradients_finite_and_reach_depth_and_net():
    img, depth, _, K = scenes(seed=30)
    depth = depth.clone().requires_grad_(True)
    p = torch.tensor(1.3, requires_grad=True)
    net = lambda x: (x[:, :1] + 0.1) ** p + x[:, 1:2]  # a 'network' with a parameter
    R, t = sample_novel_views(min_z(depth), torch.Generator().manual_seed(6))
    out = consistency_losses(net, img, depth, K, R, t)
    out.total.sum().backward()
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0
    assert torch.isfinite(p.grad) and p.grad.abs() > 0


def test_consistency_bad_inputs_are_skipped_and_counted():
    img, depth, _, K = scenes(seed=40)
    B = depth.shape[0]
    d = depth.clone()
    d[1] = 0.0  # all invalid
    d[2] = 2.5  # constant (a fronto-parallel plane: fine, its novel views are not constant)
    d = d.requires_grad_(True)
    mz = min_z(d)
    R, t = novel_view_transform(torch.full((B,), 20.0), torch.zeros(B), mz)
    t = t.clone()
    t[0, 2] = -50.0  # every point of sample 0 behind the camera: the novel view covers no pixel
    out = consistency_losses(pixelwise_net, img, d, K, R, t)
    assert out.valid.tolist() == [False, False, True] and out.num_skipped.item() == 2
    assert (out.total[:2] == 0).all() and out.total[2] > 0 and torch.isfinite(out.total).all()
    out.total.sum().backward()
    assert torch.isfinite(d.grad).all() and (d.grad[:2] == 0).all()
    # a re-prediction without structure (constant) is skipped too
    flat = consistency_losses(lambda x: torch.ones_like(x[:, :1]), img, depth, K, R, t)
    assert not flat.valid.any() and flat.num_skipped.item() == B and (flat.total == 0).all()


def test_focal_and_fov_errors():
    img, depth, _, K = scenes(fovs=(60.0,))
    R, t = torch.eye(3)[None], torch.zeros(1, 3)
    for f in (0.0, -10.0):
        Kb = K.clone()
        Kb[0, 0, 0] = f
        with pytest.raises(ValueError, match="K"):
            consistency_losses(pixelwise_net, img, depth, Kb, R, t)
        with pytest.raises(ValueError, match="K_pred"):
            point_cloud_rmse(depth, depth, Kb, K)
        with pytest.raises(ValueError, match="K_gt"):
            point_cloud_rmse(depth, depth, K, Kb)
    for fovs in ((60.0, 0.0), (180.0,), (-5.0,), ()):
        with pytest.raises(ValueError, match="fovs"):
            multi_focal_consistency(pixelwise_net, img, depth, R, t, fovs=fovs)
        with pytest.raises(ValueError, match="fovs"):
            render_fov(pixelwise_net, img, depth, fovs=fovs)
    with pytest.raises(ValueError, match="net_fn"):
        consistency_losses(lambda x: x, img, depth, K, R, t)  # returns 3 channels
    with pytest.raises(ValueError, match="criterion"):
        render_fov(pixelwise_net, img, depth, criterion="rgb")


# --------------------------------------------------------------------------------- multi-focal (Eq. 13-14)
def test_multi_focal_is_min_over_fovs_and_matches_loop():
    img, depth, _, _ = scenes(seed=50)
    img, depth = img.double(), depth.double()
    B = depth.shape[0]
    R, t = sample_novel_views(min_z(depth), torch.Generator().manual_seed(7))
    d = depth.clone().requires_grad_(True)
    out = multi_focal_consistency(pixelwise_net, img, d, R, t)
    per = []
    for fov in (50.0, 60.0, 70.0):
        K = intrinsics_from_fov(torch.full((B,), fov, dtype=torch.float64), H, W)
        per.append(consistency_losses(pixelwise_net, img, depth, K, R, t).total)
    per = torch.stack(per, dim=1)  # (B, F)
    assert_close(out.per_fov, per, "per-FOV consistency")
    assert_close(out.loss, per.min(dim=1).values, "Eq. 14 minimum")
    assert torch.equal(out.fov_index, per.argmin(dim=1))
    out.loss.sum().backward()
    assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


def test_multi_focal_skips_images_without_valid_fov():
    img, depth, _, _ = scenes(seed=60)
    B = depth.shape[0]
    d = depth.clone()
    d[0] = 0.0
    R, t = novel_view_transform(torch.full((B,), 10.0), torch.zeros(B), min_z(d))
    out = multi_focal_consistency(pixelwise_net, img, d, R, t, fovs=(45.0, 65.0))
    assert out.num_skipped.item() == 1 and not out.valid[0].any() and out.valid[1:].all()
    assert out.loss[0] == 0 and (out.loss[1:] > 0).all() and torch.isfinite(out.loss).all()


# ---------------------------------------------------------------------------------- RenderFOV (Sec. 5.1)
def test_render_fov_picks_the_true_fov_with_an_oracle():
    fovs = (40.0, 50.0, 60.0, 70.0, 80.0)
    true = (50.0, 60.0, 70.0, 40.0)
    _, depth, _, K = scenes(fovs=true, seed=70)
    depth = depth * 1.7
    B = depth.shape[0]
    image = true_points_image(depth, K)
    # the views of render_fov, in the order its net_fn sees them ((f * V + v) * B + b, v = i_theta * 2 + i_t)
    mz = min_z(depth)
    views = [(th, s) for th in (-20.0, 20.0) for s in (-0.5, 0.5)]
    Rs, ts = zip(*(novel_view_transform(torch.full((B,), th), s * mz, mz) for th, s in views))
    R, t = repeat(torch.cat(Rs), len(fovs)), repeat(torch.cat(ts), len(fovs))
    out = render_fov(oracle(R, t), image, depth, fovs=fovs)
    assert out.fov.tolist() == list(true), out.consistency
    assert (out.num_valid_views == 4).all() and out.num_skipped.item() == 0
    best = out.consistency.gather(1, out.index[:, None])
    assert (best < 1e-4).all() and (out.consistency.sort(dim=1).values[:, 1] > 1e-3).all()


def test_render_fov_matches_slow_reference():
    img, depth, _, _ = scenes(seed=80)
    img, depth = img.double(), depth.double()
    B = depth.shape[0]
    fovs, ts, thetas = (45.0, 75.0), (-0.5, 0.5), (-20.0, 20.0)
    mz = min_z(depth)
    ref = {c: torch.zeros(B, len(fovs), dtype=torch.float64) for c in ("depth", "image", "total")}
    for i, fov in enumerate(fovs):
        K = intrinsics_from_fov(torch.full((B,), fov, dtype=torch.float64), H, W)
        vals = []
        for th in thetas:
            for s in ts:
                R, t = novel_view_transform(torch.full((B,), th, dtype=torch.float64), s * mz, mz)
                c = consistency_losses(pixelwise_net, img, depth, K, R, t)
                assert c.valid.all() and c.image_valid.all()
                vals.append(torch.stack([c.depth, c.image, c.total]))
        mean = torch.stack(vals).mean(0)  # (3, B)
        for j, name in enumerate(("depth", "image", "total")):
            ref[name][:, i] = mean[j]
    for criterion, expected in ref.items():
        out = render_fov(pixelwise_net, img, depth, fovs=fovs, ts=ts, thetas=thetas, criterion=criterion)
        assert_close(out.consistency, expected, f"RenderFOV {criterion}")
        assert torch.equal(out.index, expected.argmin(dim=1))
        assert_close(out.fov, torch.tensor(fovs, dtype=torch.float64)[expected.argmin(dim=1)], "fov")


def test_render_fov_without_any_valid_view_falls_back():
    img, depth, _, _ = scenes(fovs=(60.0, 60.0), seed=90)
    d = depth.clone()
    d[1] = 0.0
    out = render_fov(pixelwise_net, img, d)
    assert out.num_skipped.item() == 1 and out.fov[1].item() == 60.0
    assert torch.isinf(out.consistency[1]).all() and torch.isfinite(out.consistency[0]).all()
    assert not torch.isnan(out.consistency).any()


# ------------------------------------------------------------------------------- point-cloud RMSE (Table 2)
def test_point_cloud_rmse():
    _, depth, valid, K = scenes(fovs=(60.0, 50.0), seed=100)
    depth = depth.double()
    K = K.double()
    # a prediction exact up to scale with the true focal: zero error, s = 1 / 3
    out = point_cloud_rmse(3.0 * depth, depth, K, K, valid)
    assert_close(out.rmse, torch.zeros(2, dtype=torch.float64), "exact up to scale", atol=1e-12)
    assert_close(out.scale, torch.full((2,), 1 / 3, dtype=torch.float64), "median ratio scale")
    # a plane at depth d with focal f1 against f2: |x1 - x2| = d |u - cx| |1/f1 - 1/f2| (same for y)
    plane = torch.full((1, 1, H, W), 2.0, dtype=torch.float64)
    K1 = intrinsics_from_fov(torch.tensor([40.0], dtype=torch.float64), H, W)
    K2 = intrinsics_from_fov(torch.tensor([70.0], dtype=torch.float64), H, W)
    c = (W - 1) / 2
    u = torch.arange(W, dtype=torch.float64) - c
    r2 = (u[None] ** 2 + u[:, None] ** 2).mean()
    inv = 1 / K1[0, 0, 0] - 1 / K2[0, 0, 0]
    expected = 2.0 * r2.sqrt() * inv.abs()
    out = point_cloud_rmse(0.5 * plane, plane, K1, K2)
    assert_close(out.rmse, expected.view(1), "plane with the wrong focal")
    empty = point_cloud_rmse(plane, torch.zeros_like(plane), K1, K2)
    assert not empty.valid.any() and empty.rmse.item() == 0 and empty.scale.item() == 1
