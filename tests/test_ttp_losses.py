"""Tests of losses/ttp.py: analytic values of the silhouette, cycle, visibility, keypoint and shape losses,
brute-force references for the distance transform and the coverage term, exact pixel-level checks that
image warps / flips and point warps / flips agree, the mirrored camera on a symmetric template, float64
gradchecks, finiteness on empty masks and zero visibility, and the LPIPS trunk loading path (no download)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geometry import WeakPerspectiveCameras, arap_energy, axis_angle_to_matrix, ico_sphere, so3_relative_angle
from helpers import TOL, assert_close
from losses import ttp
from losses.ttp import (
    LPIPS_TRUNK_FILES,
    TTP_WEIGHTS,
    LPIPSTextureLoss,
    arap_basis,
    arap_deformed,
    cycle_loss,
    deformation_l2,
    edge_length_consistency,
    equivariance_loss,
    flip_equivariance_loss,
    flip_images,
    flip_points,
    flip_rotation_loss,
    keypoint_reprojection,
    mask_distance_transform,
    mask_l1,
    mask_pixel_points,
    mirror_camera,
    mirror_rotation,
    points_in_mask,
    random_affine,
    silhouette_consistency,
    silhouette_coverage,
    texture_pixel_loss,
    visibility_loss,
    warp_images,
    warp_points,
)


def pix(i, j, H, W, dtype=torch.float64):
    """Normalized image coordinates (x right, y down) of the centre of pixel (row i, column j)."""
    return torch.tensor([(2 * j + 1) / W - 1, (2 * i + 1) / H - 1], dtype=dtype)


def box_mask(B, H, W, rows, cols):
    m = torch.zeros(B, 1, H, W, dtype=torch.bool)
    m[:, :, rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


def random_rotations(B, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(torch.randn(B, 3, generator=g, dtype=dtype))


# ------------------------------------------------------------------------------------------ silhouettes
def test_distance_transform_matches_brute_force_and_normalization():
    H, W = 7, 10
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, H, W, generator=g) < 0.15
    mask[0, 0, 3, 4] = True
    mask[1] = False  # empty mask
    dt = mask_distance_transform(mask)
    assert dt.shape == (2, 1, H, W) and dt.dtype == torch.float32
    ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    grid = torch.stack([ii, jj], -1).reshape(-1, 2).double()  # (HW, 2)
    fg = grid[mask[0, 0].reshape(-1)]
    ref = torch.cdist(grid, fg).min(1).values.reshape(H, W) / max(H, W)
    assert_close(dt[0, 0].double(), ref, "dt vs brute force", atol=1e-6, rtol=1e-6)  # float32 output
    assert float(dt[0, 0][mask[0, 0]].abs().max()) == 0.0
    assert float(dt[1].abs().max()) == 0.0  # empty mask: zeros, finite


def test_silhouette_consistency_analytic():
    H, W = 8, 12
    mask = box_mask(1, H, W, (2, 5), (3, 6))  # rows 2..4, cols 3..5
    dt = mask_distance_transform(mask.double())  # float64 in, float64 out
    assert dt.dtype == torch.float64
    k = 4
    u = torch.stack([pix(3, 4, H, W), pix(3, 5 + k, H, W), pix(2 - 2, 4, H, W)])[None]  # on, k right, 2 up
    per_point = [silhouette_consistency(u[:, n : n + 1], dt, reduction="none") for n in range(3)]
    assert_close(per_point[0], torch.zeros(1, dtype=torch.float64), "on the mask")
    assert_close(per_point[1], torch.tensor([k / max(H, W)], dtype=torch.float64), "k pixels outside")
    assert_close(per_point[2], torch.tensor([2 / max(H, W)], dtype=torch.float64), "2 pixels above")
    total = silhouette_consistency(u, dt)
    assert_close(total, torch.tensor((0 + k + 2) / 3 / max(H, W), dtype=torch.float64), "mean over N")


def test_silhouette_consistency_gradcheck_and_empty_mask():
    H, W = 6, 6
    dt = mask_distance_transform(box_mask(2, H, W, (1, 3), (1, 3)).double())
    g = torch.Generator().manual_seed(2)
    u = (torch.rand(2, 5, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: silhouette_consistency(x, dt, reduction="none"), (u,))
    empty = mask_distance_transform(torch.zeros(2, 1, H, W, dtype=torch.float64))
    loss = silhouette_consistency(u, empty)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(u.grad).all()


def brute_coverage(u, mask, squared=True):
    """Mean over every foreground pixel centre of the (squared) distance to the nearest u, per sample."""
    B, _, H, W = mask.shape
    out = []
    for b in range(B):
        rows, cols = mask[b, 0].nonzero(as_tuple=True)
        if rows.numel() == 0:
            out.append(u.new_zeros(()))
            continue
        rows, cols = rows.to(u.dtype), cols.to(u.dtype)
        p = torch.stack([(2 * cols + 1) / W - 1, (2 * rows + 1) / H - 1], -1)
        d = torch.cdist(p, u[b]).min(1).values
        out.append((d**2 if squared else d).mean())
    return torch.stack(out)


def test_coverage_zero_when_every_mask_pixel_is_a_point():
    H, W = 6, 9
    mask = box_mask(2, H, W, (1, 4), (2, 6))  # 12 pixels
    rows, cols = mask[0, 0].nonzero(as_tuple=True)
    p = torch.stack([(2 * cols.double() + 1) / W - 1, (2 * rows.double() + 1) / H - 1], -1)
    extra = torch.tensor([[0.9, 0.9], [-0.9, 0.5]], dtype=torch.float64)
    u = torch.cat([p.flip(0), extra])[None].repeat(2, 1, 1)
    for n in (5, 12, 500, None):  # fewer samples than pixels, exactly as many, more (original code crashes)
        assert_close(
            silhouette_coverage(u, mask, num_samples=n), torch.zeros((), dtype=torch.float64), f"n={n}"
        )


def test_coverage_matches_brute_force_when_mask_smaller_than_num_samples():
    H, W = 7, 8
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(3, 1, H, W, generator=g) < 0.3
    mask[2] = False  # empty mask
    u = torch.rand(3, 4, 2, generator=g, dtype=torch.float64) * 2 - 1
    for squared in (True, False):
        per = silhouette_coverage(u, mask, num_samples=500, squared=squared, reduction="none")
        ref = brute_coverage(u, mask, squared)
        assert_close(per, ref, f"squared={squared}")
        assert float(per[2]) == 0.0
        # the mean ignores the empty sample
        assert_close(silhouette_coverage(u, mask, num_samples=500, squared=squared), ref[:2].mean(), "mean")


def test_coverage_single_pixel_analytic_and_empty_batch_finite():
    H, W = 5, 5
    mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
    mask[0, 0, 2, 2] = True  # centre pixel at (0, 0)
    u = torch.tensor([[[0.3, -0.4], [1.0, 1.0]]], dtype=torch.float64)
    assert_close(silhouette_coverage(u, mask), torch.tensor(0.25, dtype=torch.float64), "squared")
    assert_close(silhouette_coverage(u, mask, squared=False), torch.tensor(0.5, dtype=torch.float64), "L2")
    empty = torch.zeros(2, 1, H, W, dtype=torch.bool)
    x = u.repeat(2, 1, 1).requires_grad_()
    for squared in (True, False):
        loss = silhouette_coverage(x, empty, squared=squared)
        loss.backward()
        assert float(loss.detach()) == 0.0 and torch.isfinite(x.grad).all()


def test_coverage_sampling_without_replacement_and_gradcheck():
    H, W = 8, 8
    mask = box_mask(2, H, W, (1, 7), (2, 6))  # 24 pixels
    pts, lengths = mask_pixel_points(mask, num_samples=10, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (2, 10, 2) and lengths.tolist() == [10, 10]
    for b in range(2):
        assert torch.unique(pts[b], dim=0).shape[0] == 10  # distinct pixels
        inside = F.grid_sample(
            mask[b : b + 1].float(), pts[None, b, :, None], mode="nearest", align_corners=False
        )
        assert bool((inside[0, 0] == 1).all())  # every sample on the mask
    pts_all, lengths_all = mask_pixel_points(mask, num_samples=100)
    assert lengths_all.tolist() == [24, 24] and bool((pts_all[:, 24:] == 0).all())
    g = torch.Generator().manual_seed(4)
    u = (torch.rand(2, 6, 2, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: silhouette_coverage(x, mask, num_samples=None), (u,))


def test_mask_l1_analytic():
    mask = box_mask(2, 4, 4, (0, 2), (0, 4))  # half the pixels
    soft = torch.full((2, 1, 4, 4), 0.25, dtype=torch.float64)
    assert_close(mask_l1(soft, mask), torch.tensor(0.5, dtype=torch.float64), "mask_l1")
    assert mask_l1(soft, mask, reduction="none").shape == (2,)


# -------------------------------------------------------------------------------------- cycle, visibility
def test_points_in_mask_and_cycle_loss():
    H, W = 6, 6
    mask = box_mask(1, H, W, (0, 3), (0, 6))  # top half
    proj = torch.stack([pix(1, 1, H, W), pix(4, 1, H, W), torch.tensor([3.0, -0.5], dtype=torch.float64)])[
        None
    ]
    vis = points_in_mask(proj, mask)
    assert vis.tolist() == [[1.0, 0.0, 0.0]]  # in, below the mask, outside the image
    u = (proj + torch.tensor([[[0.1, 0.0], [0.0, 0.2], [0.3, 0.0]]], dtype=torch.float64)).requires_grad_()
    assert_close(cycle_loss(u, proj), torch.tensor((0.01 + 0.04 + 0.09) / 3, dtype=torch.float64), "mean")
    assert_close(cycle_loss(u, proj, vis), torch.tensor(0.01, dtype=torch.float64), "weighted")
    zero = cycle_loss(u, proj, torch.zeros(1, 3, dtype=torch.float64))
    zero.backward()
    assert float(zero.detach()) == 0.0 and torch.isfinite(u.grad).all()
    p = proj.clone().requires_grad_()
    cycle_loss(u, p).backward()
    assert p.grad is None  # detached projection (official rigid_loss)
    cycle_loss(u, p, detach_projection=False).backward()
    assert p.grad is not None and bool(p.grad.abs().sum() > 0)


def test_edge_length_consistency():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    p = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]], dtype=torch.float64)
    shift = p + torch.tensor([0.2, -0.1], dtype=torch.float64)
    assert_close(edge_length_consistency(shift, p, faces), torch.zeros((), dtype=torch.float64), "shift")
    u = (2 * p).requires_grad_()  # edges of length 0.5 (x4) and 0.5 sqrt 2 (diagonal 0-2) doubled
    expected = (4 * 0.25 + 0.5) / 5
    loss = edge_length_consistency(u, p, faces)
    assert_close(loss, torch.tensor(expected, dtype=torch.float64), "scaled")
    degenerate = torch.zeros(1, 4, 2, dtype=torch.float64, requires_grad=True)
    edge_length_consistency(degenerate, p, faces).backward()
    assert torch.isfinite(degenerate.grad).all()


def test_visibility_loss_kinds():
    v = torch.tensor([[0.2, 0.9, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[False, True, True, False]])
    tf = t.double()
    assert_close(visibility_loss(v, t), ((v - tf) ** 2).mean(), "mse")
    assert_close(visibility_loss(v, t, kind="l1"), (v - tf).abs().mean(), "l1")
    bce_ref = -(tf * torch.log(v.clamp_min(1e-300)) + (1 - tf) * torch.log1p(-v)).mean()
    assert_close(visibility_loss(v, t, kind="bce"), bce_ref, "bce")
    for kind in ("mse", "l1", "bce"):
        v.grad = None
        visibility_loss(v, t, kind=kind).backward()
        assert torch.isfinite(v.grad).all(), kind
    with pytest.raises(ValueError, match="kind"):
        visibility_loss(v, t, kind="huber")


def test_keypoint_reprojection_analytic():
    pred = torch.tensor([[[0.1, 0.2], [0.5, 0.5], [0.0, 0.0]]], dtype=torch.float64)
    kp = torch.tensor([[[0.0, 0.0], [0.4, 0.7], [0.9, 0.9]]], dtype=torch.float64)
    vis = torch.tensor([[1.0, 1.0, 0.0]])
    expected = (0.1 + 0.2 + 0.1 + 0.2) / 6  # mean over all K keypoints and both coordinates (official)
    assert_close(keypoint_reprojection(pred, kp, vis), torch.tensor(expected, dtype=torch.float64), "kp")


# ------------------------------------------------------------------------------------------ equivariance
def test_random_affine_ranges_and_seeding():
    B = 4000
    A = random_affine(B, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    L, t = A[:, :, :2], A[:, :, 2]
    s = torch.linalg.det(L).sqrt()
    angle = torch.atan2(L[:, 1, 0], L[:, 0, 0])
    assert_close(L[:, 0, 0], L[:, 1, 1], "similarity")
    assert_close(L[:, 0, 1], -L[:, 1, 0], "similarity")
    lo, hi = ttp.EQUIVARIANCE_RANGES["scale"]
    assert float(s.min()) >= lo and float(s.max()) <= hi and float(s.max() - s.min()) > 0.95 * (hi - lo)
    deg = ttp.EQUIVARIANCE_RANGES["degrees"]
    assert float(angle.abs().max()) <= math.radians(deg) and float(angle.abs().max()) > math.radians(
        0.99 * deg
    )
    tmax = 2 * ttp.EQUIVARIANCE_RANGES["translate"]  # fraction of the side -> normalized units
    assert float(t.abs().max()) <= tmax and float(t.abs().max()) > 0.99 * tmax
    again = random_affine(B, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(A, again)
    # non-square images: a similarity in pixel units, D^-1 L D with D = diag(2 / W, 2 / H)
    H, W = 6, 10
    A2 = random_affine(8, image_size=(H, W), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    D = torch.diag(torch.tensor([2 / W, 2 / H], dtype=torch.float64))
    Lp = torch.linalg.inv(D) @ A2[:, :, :2] @ D
    assert_close(Lp[:, 0, 0], Lp[:, 1, 1], "pixel similarity")
    assert_close(Lp[:, 0, 1], -Lp[:, 1, 0], "pixel similarity")


def exact_affine(quarter_turns: int, shift_px: tuple[int, int], H: int, W: int) -> torch.Tensor:
    """A 90-degree rotation about the centre and an integer pixel shift: maps pixel centres to pixel centres."""
    c, s = round(math.cos(quarter_turns * math.pi / 2)), round(math.sin(quarter_turns * math.pi / 2))
    L = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    t = torch.tensor([2 * shift_px[0] / W, 2 * shift_px[1] / H], dtype=torch.float64)
    return torch.cat([L, t[:, None]], 1)[None]


def test_warp_images_moves_content_to_warp_points():
    H = W = 8
    g = torch.Generator().manual_seed(5)
    img = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    for turns, shift in ((1, (0, 0)), (0, (2, -1)), (3, (1, 2)), (2, (-1, 0))):
        A = exact_affine(turns, shift, H, W)
        out = warp_images(img, A, padding_mode="zeros")
        checked = 0
        for i in range(H):
            for j in range(W):
                q = warp_points(pix(i, j, H, W)[None, None], A)[0, 0]
                jq, iq = round(float((q[0] + 1) * W - 1) / 2), round(float((q[1] + 1) * H - 1) / 2)
                assert_close(q, pix(iq, jq, H, W), "pixel centre to pixel centre")
                if 0 <= iq < H and 0 <= jq < W:
                    assert_close(
                        out[0, :, iq, jq], img[0, :, i, j], f"turns={turns} shift={shift} at {(i, j)}"
                    )
                    checked += 1
        assert checked >= H * W // 2
    ident = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
    assert_close(warp_images(img, ident), img, "identity", atol=1e-12, rtol=1e-12)


def test_equivariance_loss_same_affine_zero_wrong_positive():
    g = torch.Generator().manual_seed(6)
    u = torch.rand(3, 20, 2, generator=g, dtype=torch.float64) * 2 - 1
    A = random_affine(3, generator=g, dtype=torch.float64)
    assert_close(equivariance_loss(warp_points(u, A), u, A), torch.zeros((), dtype=torch.float64), "same")
    wrong = random_affine(3, generator=g, dtype=torch.float64)
    assert float(equivariance_loss(warp_points(u, wrong), u, A, reduction="none").min()) > 1e-4
    pred = warp_points(u, wrong).requires_grad_()
    uu = u.clone().requires_grad_()
    equivariance_loss(pred, uu, A).backward()
    assert torch.isfinite(pred.grad).all() and uu.grad is None  # target detached (official)
    assert torch.autograd.gradcheck(
        lambda a, b: equivariance_loss(a, b, A, detach_target=False), (pred.detach().requires_grad_(), uu)
    )


def test_flip_images_and_points_agree():
    H, W = 5, 7
    img = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W)
    flipped = flip_images(img)
    g = torch.Generator().manual_seed(7)
    ij = torch.stack([torch.randint(0, H, (10,), generator=g), torch.randint(0, W, (10,), generator=g)], 1)
    u = torch.stack([pix(int(i), int(j), H, W) for i, j in ij])[None]
    before = F.grid_sample(img, u[:, :, None], mode="nearest", align_corners=False)
    after = F.grid_sample(flipped, flip_points(u)[:, :, None], mode="nearest", align_corners=False)
    assert torch.equal(before, after)
    perm = torch.tensor([1, 0, 2])
    v = torch.tensor([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]], dtype=torch.float64)
    expected = torch.tensor([[[-0.3, 0.4], [-0.1, 0.2], [-0.5, 0.6]]], dtype=torch.float64)
    assert_close(flip_points(v, perm), expected, "flip and permute")


def symmetric_template(sym_axis: int, dtype=torch.float64):
    """Random points and their mirror images across X[sym_axis] = 0, plus two on the plane; perm swaps them."""
    g = torch.Generator().manual_seed(8)
    half = torch.randn(6, 3, generator=g, dtype=dtype)
    reflect = torch.ones(3, dtype=dtype)
    reflect[sym_axis] = -1
    plane = torch.randn(2, 3, generator=g, dtype=dtype)
    plane[:, sym_axis] = 0
    verts = torch.cat([half, half * reflect, plane])
    perm = torch.cat([torch.arange(6, 12), torch.arange(0, 6), torch.arange(12, 14)])
    return verts, perm


@pytest.mark.parametrize("sym_axis", [0, 1, 2])
def test_mirror_camera_projects_the_flipped_and_permuted_points(sym_axis):
    verts, perm = symmetric_template(sym_axis)
    B = 3
    R = random_rotations(B, seed=9)
    scale = torch.tensor([[0.5], [0.8], [1.1]], dtype=torch.float64)
    trans = torch.tensor([[0.1, -0.2], [0.0, 0.3], [-0.25, 0.05]], dtype=torch.float64)
    u = WeakPerspectiveCameras(scale, R, trans).project(verts)
    R_m, t_m = mirror_camera(R, trans, sym_axis)
    assert_close(torch.linalg.det(R_m), torch.ones(B, dtype=torch.float64), "proper rotation")
    u_mirror = WeakPerspectiveCameras(scale, R_m, t_m).project(verts)
    assert_close(u_mirror, flip_points(u, perm), "mirrored view of a symmetric template")
    assert_close(flip_equivariance_loss(u_mirror, u, perm), torch.zeros((), dtype=torch.float64), "flip loss")
    assert float(flip_equivariance_loss(u, u, perm)) > 1e-3


def test_mirror_rotation_is_the_official_quaternion_map():
    # official main.py mirror_camera: quaternion (w, x, y, z) -> (w, x, -y, -z), i.e. M R M, M = diag(-1, 1, 1)
    from geometry import matrix_to_quaternion, quaternion_to_matrix

    R = random_rotations(5, seed=10)
    q = matrix_to_quaternion(R) * torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    assert_close(mirror_rotation(R, 0), quaternion_to_matrix(q), "M R M")
    assert_close(mirror_rotation(mirror_rotation(R, 1), 1), R, "involution")


def test_flip_rotation_loss_values_and_gradients():
    B = 4
    R = random_rotations(B, seed=11)
    theta = torch.tensor([0.0, 0.3, 1.0, 2.5], dtype=torch.float64)
    Rz = axis_angle_to_matrix(torch.stack([torch.zeros(B), torch.zeros(B), theta], 1).double())
    R_flip = mirror_rotation(R) @ Rz
    got = flip_rotation_loss(R_flip, R, cos_bound=0.0, reduction="none")
    assert_close(got, theta, "geodesic angle", atol=1e-7, rtol=1e-7)  # acos near 1 loses ~sqrt(eps)
    near = flip_rotation_loss(mirror_rotation(R), R, reduction="none")  # default cos_bound: finite gradient
    assert float(near.max()) < 0.02
    assert_close(
        flip_rotation_loss(R_flip, R, reduction="none")[1:],
        so3_relative_angle(mirror_rotation(R), R_flip)[1:],
        "uses so3_relative_angle",
    )
    log = torch.randn(B, 3, dtype=torch.float64, requires_grad=True)
    loss = flip_rotation_loss(axis_angle_to_matrix(log), R)
    loss.backward()
    assert torch.isfinite(log.grad).all()
    same = mirror_rotation(R).clone().requires_grad_()
    flip_rotation_loss(same, R).backward()
    assert torch.isfinite(same.grad).all()


# ---------------------------------------------------------------------------------------- shape priors
def test_arap_basis_and_deformed():
    mesh = ico_sphere(1, dtype=torch.float64)
    T, faces = mesh.verts, mesh.faces
    V = T.shape[0]
    Rrig = random_rotations(1, seed=12)[0]
    g = torch.Generator().manual_seed(13)
    basis = torch.stack(
        [torch.zeros_like(T), T @ Rrig - T, 0.3 * T, 0.05 * torch.randn(V, 3, generator=g).double()]
    )
    per_component = [arap_basis(T, basis[k : k + 1], faces) for k in range(4)]
    assert float(per_component[0]) < 1e-25  # zero offsets (rounding of the SVD rotations only)
    assert float(per_component[1]) < 1e-20  # a rigid motion of the template
    assert float(per_component[2]) > 1e-4 and float(per_component[3]) > 1e-4
    ref = 2 * arap_energy(T[None].expand_as(basis), T + basis, faces) / V
    assert_close(arap_basis(T, basis, faces), ref.mean(), "2 E / V, mean over K")
    verts = (T + basis).requires_grad_()
    per = arap_deformed(T, verts, faces, reduction="none")
    assert_close(per, ref, "arap_deformed (template broadcast)")
    per.sum().backward()
    assert torch.isfinite(verts.grad).all()
    assert_close(arap_deformed(T[None].expand_as(verts), verts, faces), ref.mean(), "batched template")


def test_deformation_l2_and_weights():
    off = torch.tensor([[[1.0, 2.0, 2.0]], [[0.0, 0.0, 3.0]]], dtype=torch.float64)
    assert_close(
        deformation_l2(off, reduction="none"), torch.tensor([3.0, 3.0], dtype=torch.float64), "offsets"
    )
    assert_close(deformation_l2(torch.tensor([[3.0, 4.0]])), torch.tensor(12.5), "coefficients")
    # official README CUB command (a few spot checks of the dict)
    assert TTP_WEIGHTS["mask"] == 2.0 and TTP_WEIGHTS["arap_deformed"] == 3.0
    assert TTP_WEIGHTS["deformation_l2"] == 5.0 and TTP_WEIGHTS["arap_basis"] == 0.1
    assert TTP_WEIGHTS["silhouette_coverage"] == 3.0 and TTP_WEIGHTS["keypoint"] == 0.0


# --------------------------------------------------------------------------------------------- texture
def test_texture_pixel_loss_analytic_and_mirror():
    H, W = 4, 6
    g = torch.Generator().manual_seed(14)
    image = torch.rand(2, 3, H, W, generator=g, dtype=torch.float64)
    mask = box_mask(2, H, W, (0, 4), (0, 2))  # left third
    render = image + 0.3
    expected = 0.3 * mask.double().mean()
    assert_close(texture_pixel_loss(render, image, mask), expected, "masked L1")
    # the mirrored render is compared with the flipped image and mask
    assert_close(
        texture_pixel_loss(image, image, mask, flip_images(image)), torch.zeros((), dtype=torch.float64), "m"
    )
    bad = texture_pixel_loss(image, image, mask, image, reduction="none")
    ref = 0.5 * (flip_images(image) * flip_images(mask)).sub(image * flip_images(mask)).abs().flatten(1).mean(
        1
    )
    assert_close(bad, ref, "average of the two views")


def _fake_trunk(path, net="alex"):
    import torchvision

    model = (
        torchvision.models.alexnet(weights=None) if net == "alex" else torchvision.models.vgg16(weights=None)
    )
    state = model.state_dict()
    torch.save(state, path)
    return state


def test_lpips_missing_trunk_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    fname, url = LPIPS_TRUNK_FILES["alex"]
    assert fname == "alexnet-owt-7be5be79.pth"
    with pytest.raises(FileNotFoundError) as err:
        LPIPSTextureLoss()
    msg = str(err.value)
    assert fname in msg and url in msg and str(tmp_path / "hub" / "checkpoints" / fname) in msg
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        LPIPSTextureLoss(trunk_path=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="net"):
        LPIPSTextureLoss(net="resnet")


def test_lpips_loads_the_trunk_file(tmp_path, monkeypatch):
    import lpips

    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    # a randomly initialised torchvision alexnet, only to test the loading path (not a usable trunk)
    state = _fake_trunk(ckpt / LPIPS_TRUNK_FILES["alex"][0])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    loss_fn = LPIPSTextureLoss()
    trunk = loss_fn.lpips.net.state_dict()
    assert len(trunk) == 10
    for key, value in trunk.items():
        assert torch.equal(value, state["features." + key.split(".", 1)[1]]), key
    lins = torch.load(
        f"{lpips.__path__[0]}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )  # the calibrated linear layers shipped with lpips
    for key, value in lins.items():
        assert torch.equal(loss_fn.lpips.state_dict()[key], value), key
    assert not any(p.requires_grad for p in loss_fn.parameters())
    loss_fn.train()
    assert not loss_fn.lpips.training  # dropout of the linear layers stays off

    g = torch.Generator().manual_seed(15)
    image = torch.rand(2, 3, 64, 64, generator=g)
    mask = box_mask(2, 64, 64, (8, 56), (4, 40))
    zero = loss_fn(image, image, mask, flip_images(image))
    assert_close(zero, torch.zeros(()), "identical masked images", **TOL[torch.float32])
    render = torch.rand(2, 3, 64, 64, generator=g, requires_grad=True)
    loss = loss_fn(render, image, mask, render.flip(-1))
    loss.backward()
    assert float(loss.detach()) > 0 and torch.isfinite(render.grad).all()
    per = loss_fn(render, image, mask, reduction="none")
    assert per.shape == (2,)


def test_lpips_trunk_file_with_wrong_keys(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(KeyError, match="wrong.pth"):
        LPIPSTextureLoss(trunk_path=path)


# ------------------------------------------------------------------------------------------ shape checks
def test_shape_errors_name_the_argument():
    u = torch.zeros(2, 5, 2)
    with pytest.raises(ValueError, match="mask_dt"):
        silhouette_consistency(u, torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="u"):
        silhouette_coverage(torch.zeros(2, 5, 3), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="visibility"):
        cycle_loss(u, u, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="affine"):
        equivariance_loss(u, u, torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="perm"):
        flip_points(u, torch.arange(4))
    with pytest.raises(ValueError, match="reduction"):
        mask_l1(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), reduction="sum")
