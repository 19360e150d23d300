"""TTP's camera-and-deformation layer (geometry/ttp_layer.py): recovery, implicit gradients, degenerate inputs.

References kept in this file: the official scale formula, an unrolled Newton solver of Eq. 5 over a global
(axis-angle, translation) parametrization with an explicit 2N x K ridge system (Eq. 7), autograd's
gradient and Hessian of the reduced objective, and torch.autograd.gradcheck in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from geometry import WeakPerspectiveCameras, fit_camera_and_deformation
from geometry.rotations import axis_angle_to_matrix
from geometry.ttp_layer import _gradient_hessians, _hat, _objective, weak_perspective_scale
from helpers import TOL, assert_close

F64 = torch.float64


def _rotations(g: torch.Tensor, B: int) -> torch.Tensor:
    """(B, 3, 3) random rotations; the first two at pi - 1e-3 and exactly pi."""
    aa = torch.randn(B, 3, generator=g, dtype=F64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * (torch.rand(B, 1, generator=g, dtype=F64) * 3.0)
    aa[0] = aa[0] / aa[0].norm() * (math.pi - 1e-3)
    aa[1] = aa[1] / aa[1].norm() * math.pi
    return axis_angle_to_matrix(aa)


def _problem(B=6, N=30, K=3, seed=0, noise=0.0, deform=0.15):
    """Synthetic correspondences with a known basis; the scale consistent with the official std formula.

    For u = s p + t (flattened over 2N coordinates) std(u)^2 = s^2 var(p) + 2 s cov(p, t) + var(t): the
    positive root of (var(p) - 1) s^2 + 2 cov s + var(t) = 0 (var(p) < 1 here) makes std(u) = s exactly.
    """
    g = torch.Generator().manual_seed(seed)
    T = 0.4 * torch.randn(N, 3, generator=g, dtype=F64)
    basis = deform * torch.randn(K, N, 3, generator=g, dtype=F64)
    c = torch.randn(B, K, generator=g, dtype=F64)
    X = T + torch.einsum("bk,knd->bnd", c, basis)
    R = _rotations(g, B)
    t = 0.2 * torch.randn(B, 2, generator=g, dtype=F64)
    p = (X @ R)[..., :2].reshape(B, -1)
    tb = t[:, None, :].expand(B, N, 2).reshape(B, -1)
    pc, tc = p - p.mean(1, keepdim=True), tb - tb.mean(1, keepdim=True)
    d = 2 * N - 1
    var_p, cov, var_t = (pc * pc).sum(1) / d, (pc * tc).sum(1) / d, (tc * tc).sum(1) / d
    a = var_p - 1.0
    assert bool((a < 0).all())
    s = (-cov - torch.sqrt(cov**2 - a * var_t)) / a
    u = WeakPerspectiveCameras(s[:, None], R, t).project(X)
    u = u + noise * torch.randn(u.shape, generator=g, dtype=F64)
    v = (torch.rand(B, N, generator=g, dtype=F64) > 0.3).to(F64)
    return dict(u=u, v=v, T=T, basis=basis, c=c, R=R, t=t, s=s, X=X)


def test_scale_is_the_official_std():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 17, 2, generator=g, dtype=F64)
    assert_close(weak_perspective_scale(u), u.reshape(3, -1).std(1), "scale")  # official main.py
    same = torch.full((2, 5, 2), 0.3, dtype=F64)
    assert_close(weak_perspective_scale(same, min_scale=1e-4), torch.full((2,), 1e-4, dtype=F64), "clamp")


def test_gradient_and_hessians_match_autograd():
    g = torch.Generator().manual_seed(2)
    R = _rotations(g, 4)
    M = torch.randn(4, 3, 2, generator=g, dtype=F64)
    A = torch.randn(4, 3, 3, generator=g, dtype=F64)
    S = A @ A.transpose(1, 2)

    def f(d):  # exp([d]_x) to second order: exact gradient and Hessian at d = 0
        K = _hat(d)
        return _objective(R @ (torch.eye(3, dtype=F64) + K + 0.5 * K @ K), M, S).sum()

    zero = torch.zeros(4, 3, dtype=F64)
    grad = torch.autograd.functional.jacobian(f, zero)
    hess = torch.autograd.functional.hessian(f, zero)
    hess = torch.stack([hess[b, :, b, :] for b in range(4)])
    gd, H_gn, H = _gradient_hessians(R, M, S)
    assert_close(gd, grad, "gradient", atol=1e-12, rtol=1e-10)
    assert_close(H, hess, "exact Hessian", atol=1e-12, rtol=1e-10)
    assert bool((torch.linalg.eigvalsh(H_gn) > -1e-12).all()), "the Gauss-Newton Hessian is PSD"


def test_recovers_pose_scale_and_coefficients():
    P = _problem()
    fit = fit_camera_and_deformation(P["u"], P["v"], P["T"], P["basis"], 1e-12, iterations=60)
    # the alternation (Eq. 5-6) converges linearly (slowly for sample 0): 60 rounds reach ~3e-9 here
    tol = dict(atol=1e-7, rtol=1e-7)
    assert_close(fit.scale, P["s"], "scale", **TOL[F64])
    assert_close(fit.rotation, P["R"], "rotation (incl. angles pi - 1e-3 and pi)", **tol)
    assert_close(fit.translation, P["t"], "translation", **tol)
    assert_close(fit.coefficients, P["c"], "coefficients", **tol)
    assert_close(fit.vertices, P["X"], "vertices", **tol)
    cams = WeakPerspectiveCameras(fit.scale[:, None], fit.rotation, fit.translation)
    assert_close(cams.project(fit.vertices), P["u"], "reprojection", **tol)
    assert_close(fit.loss, 1e-12 * P["c"].square().sum(1), "loss = the ridge term", atol=1e-13, rtol=0.0)


def test_invisible_points_are_ignored():
    P = _problem(seed=3)
    u = P["u"].clone()
    u[P["v"] == 0] += 5.0  # corrupt every invisible point (the scale is passed, it uses every point)
    fit = fit_camera_and_deformation(u, P["v"], P["T"], P["basis"], 1e-12, iterations=60, scale=P["s"])
    assert_close(fit.rotation, P["R"], "rotation", atol=1e-7, rtol=1e-7)
    assert_close(fit.coefficients, P["c"], "coefficients", atol=1e-7, rtol=1e-7)


def test_one_iteration_rigid_fit_is_optimal():
    """With a zero basis, one rigid step is the global optimum: no better rotation among many random ones."""
    P = _problem(seed=4, noise=0.05)
    zero = torch.zeros_like(P["basis"])
    fit = fit_camera_and_deformation(P["u"], P["v"], P["T"], zero, 0.1, iterations=1)
    g = torch.Generator().manual_seed(5)
    aa = torch.randn(2000, 3, generator=g, dtype=F64)
    R = axis_angle_to_matrix(
        aa / aa.norm(dim=-1, keepdim=True) * torch.rand(2000, 1, generator=g, dtype=F64) * math.pi
    )
    X = P["T"].expand(6, -1, -1)
    for b in range(6):
        proj = fit.scale[b] * (X[b] @ R)[..., :2]  # (2000, N, 2)
        w = P["v"][b] / P["v"][b].sum()
        t = (w[:, None] * (P["u"][b] - proj)).sum(1, keepdim=True)
        err = (P["v"][b] * (P["u"][b] - proj - t).square().sum(-1)).sum(-1)
        assert float(fit.loss[b]) <= float(err.min()) + 1e-12, f"sample {b}"


def _unrolled_reference(u, v, T, basis, ridge, starts, newton_steps=12):
    """Eq. 5-7 without any trick of the layer: Newton on (axis-angle r, t) over the full objective,
    unrolled with autograd (create_graph), from starts[i] exp(r0) in round i; Eq. 7 as an explicit
    2N x K system."""
    B, N, _ = u.shape
    K = basis.shape[0]
    s = u.reshape(B, -1).std(1)  # official main.py
    X = T.expand(B, N, 3)
    c = u.new_zeros(B, K)
    for R_start in starts:
        theta = torch.cat([torch.full((B, 3), 1e-2, dtype=u.dtype), u.mean(1)], dim=1)

        def energy(theta, X=X, R_start=R_start):
            R = R_start @ axis_angle_to_matrix(theta[:, :3])
            proj = s[:, None, None] * (X @ R)[..., :2] + theta[:, None, 3:]
            return (v * (u - proj).square().sum(-1)).sum(1)  # (B,)

        for _ in range(newton_steps):
            grad = torch.autograd.grad(energy(theta).sum(), theta, create_graph=True)[0]  # (B, 5)
            hess = torch.stack(
                [torch.autograd.grad(grad[:, k].sum(), theta, create_graph=True)[0] for k in range(5)], dim=1
            )
            theta = theta - torch.linalg.solve(hess, grad)
        R = R_start @ axis_angle_to_matrix(theta[:, :3])
        t = theta[:, 3:]
        omega = s[:, None, None, None] * (basis[None] @ R[:, None])[..., :2]  # (B, K, N, 2)
        omega = omega.permute(0, 2, 3, 1).reshape(B, 2 * N, K)
        ups = (u - s[:, None, None] * (T @ R)[..., :2] - t[:, None]).reshape(B, 2 * N)
        xv = v.repeat_interleave(2, dim=1)  # diagonal of X
        A = omega.transpose(1, 2) @ (xv[..., None] * omega) + ridge * torch.eye(K, dtype=u.dtype)
        c = torch.linalg.solve(A, (omega.transpose(1, 2) @ (xv * ups)[..., None])).squeeze(-1)
        X = T + torch.einsum("bk,knd->bnd", c, basis)
    w = v / v.sum(1, keepdim=True)
    t = (w[..., None] * (u - s[:, None, None] * (X @ R)[..., :2])).sum(1)
    return R, t, c, X


def _leaves(P, ridge):
    return [x.detach().clone().requires_grad_(True) for x in (P["u"], P["v"], P["T"], P["basis"], ridge)]


def test_implicit_gradients_match_unrolled_newton():
    P = _problem(B=4, N=12, K=2, seed=6, noise=0.03)
    P["v"] = P["v"] * 0.5 + 0.4  # soft visibilities: d/dv is not trivial
    ridge = torch.tensor(0.05, dtype=F64)
    g = torch.Generator().manual_seed(7)
    iters = 2
    fit_args = _leaves(P, ridge)
    fit = fit_camera_and_deformation(*fit_args, iterations=iters)
    P_args = [P["u"], P["v"], P["T"], P["basis"], ridge]
    ref_args = _leaves(P, ridge)
    # round i of the reference starts near the layer's round-i rotation (the same basin; a 1-round fit is the
    # first round of a 2-round one)
    starts = [fit_camera_and_deformation(*P_args, iterations=i + 1).rotation for i in range(iters)]
    R_ref, t_ref, c_ref, X_ref = _unrolled_reference(*ref_args, starts)
    tol = dict(atol=1e-9, rtol=1e-8)  # converged Newton: values and derivatives agree to ~1e-12
    for name, a, b in (
        ("rotation", fit.rotation, R_ref),
        ("translation", fit.translation, t_ref),
        ("coefficients", fit.coefficients, c_ref),
        ("vertices", fit.vertices, X_ref),
    ):
        assert_close(a, b, name, **tol)
    weights = [torch.randn(x.shape, generator=g, dtype=F64) for x in (R_ref, t_ref, c_ref, X_ref)]

    def scalar(outs):
        return sum((w * o).sum() for w, o in zip(weights, outs))

    grads = torch.autograd.grad(scalar(fit[:3] + (fit.vertices,)), fit_args)
    grads_ref = torch.autograd.grad(scalar((R_ref, t_ref, c_ref, X_ref)), ref_args)
    for name, a, b in zip(("points_2d", "visibility", "template", "basis", "ridge"), grads, grads_ref):
        assert_close(a, b, f"d/d{name}", atol=1e-8, rtol=1e-6)


def test_gradcheck_float64():
    P = _problem(B=2, N=7, K=2, seed=8, noise=0.05)
    v = P["v"] * 0.5 + 0.3
    args = _leaves(dict(P, v=v), torch.tensor(0.1, dtype=F64))

    def fn(u, v, T, basis, ridge):
        fit = fit_camera_and_deformation(u, v, T, basis, ridge, iterations=2)
        return fit.rotation, fit.translation, fit.coefficients, fit.vertices, fit.scale

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def _finite_grads(args, fit):
    loss = sum(x.square().sum() for x in fit) + fit.loss.sum()
    grads = torch.autograd.grad(loss, [a for a in args if a.requires_grad], allow_unused=True)
    return all(gr is None or bool(torch.isfinite(gr).all()) for gr in grads)


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_all_zero_visibility_returns_identity(ridge):
    P = _problem(B=3, N=10, K=2, seed=9)
    args = _leaves(dict(P, v=torch.zeros_like(P["v"])), torch.tensor(ridge, dtype=F64))
    fit = fit_camera_and_deformation(*args, iterations=2)
    assert_close(fit.rotation, torch.eye(3, dtype=F64).expand(3, 3, 3), "rotation", **TOL[F64])
    assert_close(fit.coefficients, torch.zeros(3, 2, dtype=F64), "coefficients", **TOL[F64])
    assert all(bool(torch.isfinite(x).all()) for x in fit)
    assert _finite_grads(args, fit)


@pytest.mark.parametrize("solver", ["gauss_newton", "lbfgs"])
def test_collapsed_points_are_finite(solver):
    P = _problem(B=2, N=10, K=2, seed=10)
    u = torch.full_like(P["u"], 0.25)
    args = _leaves(dict(P, u=u), torch.tensor(0.1, dtype=F64))
    fit = fit_camera_and_deformation(*args, iterations=2, solver=solver, min_scale=1e-6)
    assert_close(fit.scale, torch.full((2,), 1e-6, dtype=F64), "clamped scale", **TOL[F64])
    assert_close(fit.translation, torch.full((2, 2), 0.25, dtype=F64), "translation", atol=1e-5, rtol=0.0)
    assert all(bool(torch.isfinite(x).all()) for x in fit)
    assert _finite_grads(args, fit)


@pytest.mark.parametrize("ridge", [0.0, 1e-8])
def test_ill_conditioned_basis_is_finite(ridge):
    P = _problem(B=3, N=10, K=3, seed=11, noise=0.02)
    basis = P["basis"].clone()
    basis[1] = basis[0]  # rank deficient
    basis[2] = 1e-9 * basis[2]
    args = _leaves(dict(P, basis=basis), torch.tensor(ridge, dtype=F64))
    fit = fit_camera_and_deformation(*args, iterations=3)
    assert all(bool(torch.isfinite(x).all()) for x in fit)
    assert _finite_grads(args, fit)
    rigid = fit_camera_and_deformation(P["u"], P["v"], P["T"], torch.zeros_like(basis), 0.0, iterations=1)
    assert bool((fit.loss <= rigid.loss + 1e-9).all()), "deformation can only lower Eq. 4"


def test_lbfgs_and_gauss_newton_reach_the_same_optimum():
    P = _problem(B=4, N=20, K=2, seed=13, noise=0.01)
    # the rigid step alone (zero basis): both minimize Eq. 5; L-BFGS stops at tolerance_change=1e-9
    # (official settings) on a loss of ~1e-3, Gauss-Newton is converged to rounding and never higher
    rigid = (P["u"], P["v"], P["T"], torch.zeros_like(P["basis"]), 1e-3)
    gn = fit_camera_and_deformation(*rigid, iterations=1)
    lb = fit_camera_and_deformation(*rigid, iterations=1, solver="lbfgs")
    assert_close(lb.rotation, gn.rotation, "rotation", atol=2e-3, rtol=0.0)
    assert_close(lb.translation, gn.translation, "translation", atol=1e-4, rtol=0.0)
    assert_close(lb.loss, gn.loss, "loss", atol=1e-9, rtol=1e-4)
    assert bool((gn.loss <= lb.loss + 1e-12).all()), "Gauss-Newton at least as low"
    # with the deformation, on the same batch
    args = (P["u"], P["v"], P["T"], P["basis"], 1e-3)
    gn3 = fit_camera_and_deformation(*args, iterations=3)
    lb3 = fit_camera_and_deformation(*args, iterations=3, solver="lbfgs")
    assert_close(lb3.loss, gn3.loss, "loss, 3 rounds", atol=1e-9, rtol=1e-3)
    assert_close(lb3.coefficients, gn3.coefficients, "coefficients", atol=0.05, rtol=0.0)


@pytest.mark.parametrize("solver", ["gauss_newton", "lbfgs"])
def test_inference_mode_matches_no_grad(solver):
    P = _problem(B=2, N=12, K=2, seed=15, noise=0.01)
    args = (P["u"], P["v"], P["T"], P["basis"], 0.01)
    with torch.no_grad():
        ref = fit_camera_and_deformation(*args, iterations=2, solver=solver)
    with torch.inference_mode():
        out = fit_camera_and_deformation(*args, iterations=2, solver=solver)
    for name, a, b in zip(ref._fields, out, ref):
        assert_close(a, b, name, **TOL[F64])


def test_float32_reprojection():
    P = _problem(seed=14)
    u, v, T, basis = (x.float() for x in (P["u"], P["v"], P["T"], P["basis"]))
    fit = fit_camera_and_deformation(u, v, T, basis, 1e-6, iterations=10)
    assert fit.rotation.dtype == torch.float32
    cams = WeakPerspectiveCameras(fit.scale[:, None], fit.rotation, fit.translation)
    err = ((cams.project(fit.vertices) - u).norm(dim=-1) * v).amax()
    assert float(err) < 1e-4, (
        f"float32 reprojection error {float(err):.2e} (an iterative solve, not rounding)"
    )


@pytest.mark.parametrize(
    "bad, name",
    [
        (dict(u=torch.zeros(2, 10, 3)), "points_2d"),
        (dict(v=torch.zeros(2, 9)), "visibility"),
        (dict(T=torch.zeros(10, 2)), "template"),
        (dict(basis=torch.zeros(2, 11, 3)), "basis"),
        (dict(ridge=torch.zeros(2)), "ridge"),
        (dict(ridge=-1.0), "ridge"),
        (dict(iterations=0), "iterations"),
        (dict(solver="adam"), "solver"),
        (dict(scale=torch.ones(3)), "scale"),
        (dict(init_rotation=torch.eye(3)), "init_rotation"),
    ],
)
def test_shape_errors_name_the_argument(bad, name):
    kw = dict(u=torch.zeros(2, 10, 2), v=torch.ones(2, 10), T=torch.zeros(10, 3), basis=torch.zeros(2, 10, 3))
    kw.update(ridge=0.1)
    kw.update(bad)
    u, v, T, basis, ridge = (kw.pop(k) for k in ("u", "v", "T", "basis", "ridge"))
    with pytest.raises(ValueError, match=name):
        fit_camera_and_deformation(u, v, T, basis, ridge, **kw)


def test_refit_scale_recovers_the_scale_when_the_starting_one_is_wrong():
    P = _problem(seed=12)
    wrong = 1.3 * P["s"]  # e.g. the spread of a foreshortened view
    fit = fit_camera_and_deformation(
        P["u"], P["v"], P["T"], P["basis"], 1e-12, iterations=80, scale=wrong, refit_scale=True
    )
    tol = dict(atol=1e-6, rtol=1e-6)
    assert_close(fit.scale, P["s"], "scale", **tol)
    assert_close(fit.coefficients, P["c"], "coefficients", **tol)
    assert_close(fit.vertices, P["X"], "vertices", **tol)
    fixed = fit_camera_and_deformation(P["u"], P["v"], P["T"], P["basis"], 1e-12, iterations=80, scale=wrong)
    assert_close(fixed.scale, wrong, "a fixed scale stays as given", **TOL[F64])
    assert float((fixed.vertices - P["X"]).abs().max()) > 1e-2, "and the shape cannot be recovered"


def test_refit_scale_gradcheck_float64_and_zero_visibility():
    P = _problem(B=2, N=7, K=2, seed=13, noise=0.05)
    args = _leaves(dict(P, v=P["v"] * 0.5 + 0.3), torch.tensor(0.1, dtype=F64))

    def fn(u, v, T, basis, ridge):
        fit = fit_camera_and_deformation(u, v, T, basis, ridge, iterations=2, refit_scale=True)
        return fit.rotation, fit.translation, fit.coefficients, fit.vertices, fit.scale

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)
    args = _leaves(dict(P, v=torch.zeros_like(P["v"])), torch.tensor(0.1, dtype=F64))
    fit = fit_camera_and_deformation(*args, iterations=2, refit_scale=True)
    assert_close(fit.scale, weak_perspective_scale(P["u"]), "nothing visible: the spread is kept", **TOL[F64])
    assert all(bool(torch.isfinite(x).all()) for x in fit) and _finite_grads(args, fit)
