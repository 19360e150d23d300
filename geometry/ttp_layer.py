"""TTP's differentiable camera-and-deformation layer: weak-perspective pose and linear deformation from 2D points.

Kokkinos & Kokkinos, "To The Point: Correspondence-driven monocular 3D category reconstruction" (NeurIPS 2021),
Sec. 3.2, Eq. 1-7. Given 2D points `u` (B, N, 2) that correspond to the vertices of a template `T` (N, 3),
visibilities `v` (B, N), a deformation basis `B` (K, N, 3) and a ridge weight gamma, it minimizes Eq. 4

    l(R, t, c) = sum_i v_i || u_i - s [ (T_i + B_i c) @ R ]_xy - t ||^2 + gamma ||c||^2

in this package's weak-perspective convention (`WeakPerspectiveCameras`: row-vector points, `x_img = s * (X @
R)[..., :2] + t`, normalized image coordinates, x right, y down), so that the result drives
`WeakPerspectiveCameras(scale=s[:, None], R=rotation, trans=translation).project(vertices)` ~ `points_2d`.

Conventions versus the paper and the official code (fkokkinos/to_the_point_3d_reconstruction):
* The paper writes `u = C (R V + t)` with column vectors and a pre-scale 2D `t`; the official code
  (nnutils/geometry_utilities.py `project_points_by_theta`, main.py `forward`) adds the 2D points' mean as a
  principal point: `u = s (R V + t') + mean(u)`. Ours: `rotation = R^T` (row vectors) and
  `translation = s t' + mean(u)`; it is solved in closed form given R (the weighted centroid), which is exact.
* The scale is not optimized: as main.py `s_2d = tex_flow.reshape(B, -1).std(1)`, it is the (unbiased)
  standard deviation of all 2N coordinates of `u`, visible or not (Eq. 1: "set to their standard deviation").
  Collapsed points give 0: the variance is clamped at `min_scale**2` before the square root, so s >=
  min_scale and its gradient is 0 there (not NaN).
* The paper weighs the data term by v_i (Eq. 4). The official code multiplies the residual by W before
  squaring (v_i^2) and by default (`weighted_camera=False`, `solve_basis(visibility=None)`) uses no weights
  at all. Here it is v_i, as Eq. 4.
* Alternation (Eq. 5-6), `iterations` times starting from c = 0: a rigid step over (R, t) with c fixed,
  then the closed-form ridge solve of Eq. 7 for c with (R, t) fixed. After the last one the translation is
  re-solved in closed form for the final shape (never increases Eq. 4).

The rigid step. Eliminating t (weighted centroids) leaves `f(R) = -2 tr(P^T M) + tr(P^T S P)` with P = R[:, :2],
`M = sum_i v_i X~_i^T u~_i / s` (3, 2), `S = sum_i v_i X~_i^T X~_i` (3, 3) over centred points: Eq. 5 up to
a constant and a factor s^2, exactly. So every Gauss-Newton / Levenberg-Marquardt step costs O(1) per sample
after one O(N) pass. Rotations are updated on the manifold, `R <- R exp([d]_x)` (the paper's axis-angle
exp map as a local chart, so nothing is singular at pi), with the analytic gradient and Hessian of f in d
(the exact Hessian where it is positive definite, else Gauss-Newton's; two undamped Newton steps polish the
result to rounding). The first rigid step starts from the 24 rotations of the octahedral group (incl. the
three half-turns) plus the polar factor of the affine least-squares fit, all in one batch; after
MULTISTART_STEPS steps only the best start per sample goes on. Later steps start from the previous rotation
(the paper: "initialized with the estimate of the previous iteration").
`solver="lbfgs"` replaces it by the paper's solver: `torch.optim.LBFGS` per sample over (axis-angle, t'),
with the official settings (nnutils/mesh_net_lpl_v2_tex.py `BPnP_n`: lr=1, max_iter=100,
tolerance_grad=1e-7, tolerance_change=1e-9, strong-Wolfe line search; init axis-angle ~ U[0, 1)^3, t' = 0).

Gradients. The rotation gets implicit-function-theorem gradients (the paper via Gould et al. [42, 43]):
`dd*/dx = -H^-1 d^2 f / dd dx` at the optimum, with the exact 3x3 Hessian (pseudo-inverted, so degenerate
problems give finite gradients), with respect to u, v *and* the 3D points being fitted (the official
`BPnP_n.backward` returns None for the latter). Everything else (scale, centroids, Eq. 7, the vertices) is
ordinary autograd, so the basis and the ridge weight learn.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from geometry.cameras import _check_shape
from geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["TTPFit", "fit_camera_and_deformation", "weak_perspective_scale"]

SOLVERS = ("gauss_newton", "lbfgs")
MULTISTART_STEPS = 6  # LM steps from each of the 25 starts before only the best one per sample goes on
# nnutils/mesh_net_lpl_v2_tex.py BPnP_n.forward (official TTP code)
LBFGS_SETTINGS = dict(
    lr=1.0, max_iter=100, tolerance_grad=1e-7, tolerance_change=1e-9, line_search_fn="strong_wolfe"
)


class TTPFit(NamedTuple):
    """Result of `fit_camera_and_deformation`.

    rotation (B, 3, 3) row-vector rotation (as `WeakPerspectiveCameras.R`); translation (B, 2); coefficients
    (B, K); scale (B,); vertices (B, N, 3) = T + B c in the object frame; loss (B,) the value of Eq. 4.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    coefficients: torch.Tensor
    scale: torch.Tensor
    vertices: torch.Tensor
    loss: torch.Tensor


# ------------------------------------------------------------------------------------------ constants
def _constant(fn):
    """Cache a constant tensor per (dtype, device), made outside inference mode so autograd may use it."""

    @functools.lru_cache(maxsize=16)
    def cached(dtype, device):
        with torch.inference_mode(False), torch.no_grad():
            return fn(dtype, device)

    return cached


@_constant
def _generators(dtype, device) -> torch.Tensor:
    """(3, 3, 3): L[k] = [e_k]_x, the so(3) generators."""
    L = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    for k, (i, j) in enumerate(((2, 1), (0, 2), (1, 0))):
        L[k, i, j], L[k, j, i] = 1.0, -1.0
    return L


@_constant
def _octahedral_rotations(dtype, device) -> torch.Tensor:
    """(24, 3, 3) the signed permutation matrices with det +1; the identity first."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            for row, (col, sg) in enumerate(zip(perm, signs)):
                m[row, col] = sg
            if torch.det(m) > 0:
                mats.append(m)
    return torch.stack(mats).to(dtype=dtype, device=device)


def _hat(w: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    return torch.einsum("...k,kab->...ab", w, _generators(w.dtype, w.device))


# ------------------------------------------------------------------------------------------ the scale
def weak_perspective_scale(points_2d: torch.Tensor, min_scale: float = 1e-6) -> torch.Tensor:
    """TTP's weak-perspective scale: the standard deviation of the 2D points (paper Eq. 1).

    As the official main.py, `s = points_2d.reshape(B, -1).std(1)`: unbiased, over all 2N coordinates together.
    The variance is clamped at `min_scale**2` first, so collapsed points give `min_scale` and a zero (finite)
    gradient.

    Args:
        points_2d: (B, N, 2)
    Returns:
        (B,)
    """
    _check_shape(points_2d, "points_2d", ("B", "N", 2))
    flat = points_2d.reshape(points_2d.shape[0], -1)  # (B, 2N)
    var = flat.var(dim=1, correction=1 if flat.shape[1] > 1 else 0)
    return var.clamp_min(min_scale**2).sqrt()


# ------------------------------------------------------------------------------------ the rigid problem
def _centroid_weights(visibility: torch.Tensor) -> torch.Tensor:
    """(B, N) normalized weights; uniform where every visibility is 0."""
    total = visibility.sum(1, keepdim=True)  # (B, 1)
    tiny = torch.finfo(visibility.dtype).tiny
    uniform = torch.full_like(visibility, 1.0 / visibility.shape[1])
    return torch.where(total > 0, visibility / total.clamp_min(tiny), uniform)


def _rigid_statistics(points_2d, visibility, points_3d, scale):
    """Sufficient statistics of the rigid step: M (B, 3, 2) (already divided by s) and S (B, 3, 3)."""
    w = _centroid_weights(visibility)[..., None]  # (B, N, 1)
    u = points_2d - (w * points_2d).sum(1, keepdim=True)  # (B, N, 2)
    X = points_3d - (w * points_3d).sum(1, keepdim=True)  # (B, N, 3)
    MS = (visibility[..., None] * X).transpose(1, 2) @ torch.cat([u, X], dim=-1)  # (B, 3, 5)
    return MS[..., :2] / scale[:, None, None], MS[..., 2:]


def _least_squares_scale(M_raw, S, rotation, previous, min_scale):
    """argmin_s sum_i v_i ||u_i - s P^T X_i - t||^2 for centred u, X: s = tr(P^T M) / tr(P^T S P), (B,).
    M_raw (B, 3, 2) (not divided by s), S (B, 3, 3); keeps `previous` where the mesh projects to a point
    (nothing visible, collapsed vertices) and is at least min_scale."""
    P = rotation[..., :2]
    num = (P * M_raw).sum((-1, -2))
    den = (P * _mm(S, P)).sum((-1, -2))
    tiny = torch.finfo(den.dtype).tiny
    ok = den > tiny**0.5
    s = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), previous)
    return s.clamp_min(min_scale)


def _objective(R: torch.Tensor, M: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """f(R) = -2 tr(P^T M) + tr(P^T S P), P = R[..., :2]: (..., 3, 3), (..., 3, 2), (..., 3, 3) -> (...)."""
    P = R[..., :2]
    return -2.0 * (P * M).sum((-1, -2)) + (P * _mm(S, P)).sum((-1, -2))


@_constant
def _gn_constant(dtype, device) -> torch.Tensor:
    """(9, 9) Z with C.flatten(-2) = S^.flatten(-2) @ Z, C_kl = tr(L_k S^ L_l D), D = diag(1, 1, 0)."""
    L = _generators(dtype, device)
    LD = L @ torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=dtype, device=device))
    return torch.einsum("kab,lca->bckl", L, LD).reshape(9, 9)


def _gradient_hessians(R: torch.Tensor, M: torch.Tensor, S: torch.Tensor):
    """Gradient (..., 3), Gauss-Newton and exact Hessians (..., 3, 3) of d -> f(R exp([d]_x)) at d = 0.

    With S^ = R^T S R, A = [R^T M, 0] and G = S^ D - A (D = diag(1, 1, 0)), expanding exp to second order
    (L_k = [e_k]_x): g_k = 2 tr(L_k^T G) = 2 vee(G - G^T)_k; H_gn = -(C + C^T), C_kl = tr(L_k S^ L_l D);
    H = H_gn + Q + Q^T with Q_kl = tr(L_k L_l G) = G_kl - delta_kl tr(G) ([a]_x [b]_x = b a^T - a.b I).
    """
    Rt = R.transpose(-1, -2)
    S_hat = _mm(_mm(Rt, S), R)  # (..., 3, 3)
    G = F.pad(S_hat[..., :2], (0, 1)) - F.pad(_mm(Rt, M), (0, 1))  # S^ D - [R^T M, 0]
    W = G - G.transpose(-1, -2)
    g = 2.0 * torch.stack([W[..., 2, 1], W[..., 0, 2], W[..., 1, 0]], dim=-1)
    C = (S_hat.flatten(-2)[..., :, None] * _gn_constant(R.dtype, R.device)).sum(-2).unflatten(-1, (3, 3))
    H_gn = -(C + C.transpose(-1, -2))
    trace = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    H = H_gn + G + G.transpose(-1, -2) - 2.0 * trace[..., None, None] * eye
    return g, H_gn, H


def _mm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """A @ B for tiny matrices as a broadcast sum: batched BLAS on 3x3 blocks is slower (and threads)."""
    return (A[..., :, :, None] * B[..., None, :, :]).sum(-2)


def _solve3(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A^-1 b for (..., 3, 3) A and (..., 3) b by the adjugate: elementwise, no LAPACK call per step."""
    c0 = torch.linalg.cross(A[..., 1, :], A[..., 2, :], dim=-1)
    c1 = torch.linalg.cross(A[..., 2, :], A[..., 0, :], dim=-1)
    c2 = torch.linalg.cross(A[..., 0, :], A[..., 1, :], dim=-1)
    adj = torch.stack([c0, c1, c2], dim=-1)  # adj(A) = [c0 c1 c2] as columns
    det = (A[..., 0, :] * c0).sum(-1)
    return (adj * b[..., None, :]).sum(-1) / det[..., None]


def _positive_definite3(A: torch.Tensor) -> torch.Tensor:
    """(...,) bool: Sylvester's criterion for symmetric (..., 3, 3) A."""
    m1 = A[..., 0, 0]
    m2 = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
    m3 = (A[..., 0, :] * torch.linalg.cross(A[..., 1, :], A[..., 2, :], dim=-1)).sum(-1)
    return (m1 > 0) & (m2 > 0) & (m3 > 0)


def _lm_solve(R, M, S, max_steps: int, tol: float, check_every: int = 2, polish: bool = True):
    """Batched Levenberg-Marquardt on SO(3): R (..., 3, 3) starts, M, S broadcast to them. No autograd.

    Stops when every step is below `tol` or its predicted decrease is below f's rounding (there the
    decrease test cannot tell; the Newton polish below converges the rest).
    """
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    tiny = torch.finfo(R.dtype).tiny
    # |f| terms are bounded by 2 sum |M| + tr(S) (P has orthonormal columns, S is PSD)
    rounding = (
        100
        * torch.finfo(R.dtype).eps
        * (2 * M.abs().sum((-1, -2)) + torch.diagonal(S, dim1=-2, dim2=-1).sum(-1))
    )
    lam = torch.full(R.shape[:-2], 1e-3, dtype=R.dtype, device=R.device)
    f = _objective(R, M, S)
    for step_i in range(max_steps):
        g, H_gn, H = _gradient_hessians(R, M, S)
        # Newton's exact Hessian where it is positive definite (quadratic convergence), else Gauss-Newton's
        pd = _positive_definite3(H)
        Hm = torch.where(pd[..., None, None], H, H_gn)
        mu = lam * (torch.diagonal(H_gn, dim1=-2, dim2=-1).mean(-1) + tiny)
        step = -_solve3(Hm + mu[..., None, None] * eye, g)  # (..., 3)
        step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        R_new = _mm(R, axis_angle_to_matrix(step, fast=True))
        f_new = _objective(R_new, M, S)
        accept = f_new <= f
        R = torch.where(accept[..., None, None], R_new, R)
        f = torch.where(accept, f_new, f)
        lam = torch.where(accept, (lam / 3.0).clamp_min(1e-12), (lam * 4.0).clamp_max(1e12))
        if (step_i + 1) % check_every == 0:
            predicted = -(g * step).sum(-1) - 0.5 * (step * _mm(Hm, step[..., None])[..., 0]).sum(-1)
            done = (step.norm(dim=-1) < tol) | (pd & (predicted.abs() <= rounding))
            if bool(done.all()):
                break
    # The decrease test cannot resolve steps below ~sqrt(eps) (f's rounding): polish with two undamped
    # Newton steps where the exact Hessian is positive definite and the step is small (quadratic convergence).
    for _ in range(2 if polish else 0):
        g, _, H = _gradient_hessians(R, M, S)
        step = -_solve3(H, g)
        ok = _positive_definite3(H) & (step.norm(dim=-1) < 1e-3) & torch.isfinite(step).all(-1)
        step = torch.where(ok[..., None], step, torch.zeros_like(step))
        R = _mm(R, axis_angle_to_matrix(step, fast=True))
    return R, _objective(R, M, S)


def _polar_init(M: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3): the rotation nearest the affine least-squares fit P = S^-1 M (polar factor, det +1)."""
    eye = torch.eye(3, dtype=S.dtype, device=S.device)
    damp = 1e-6 * torch.diagonal(S, dim1=-2, dim2=-1).mean(-1) + torch.finfo(S.dtype).tiny
    P = torch.linalg.solve(S + damp[:, None, None] * eye, M)  # (B, 3, 2)
    U, _, Vh = torch.linalg.svd(P, full_matrices=False)
    P = U @ Vh  # (B, 3, 2) orthonormal columns
    third = torch.linalg.cross(P[..., 0], P[..., 1], dim=-1)
    R = torch.cat([P, third[..., None]], dim=-1)
    ok = torch.isfinite(R).all(-1).all(-1)
    return torch.where(ok[:, None, None], R, eye)


def _gauss_newton_rotation(M, S, init, max_steps: int, multistart: bool) -> torch.Tensor:
    """argmin_R f(R) per sample, from `init` (B, 3, 3) or (with `multistart`) from many starts: (B, 3, 3)."""
    B = M.shape[0]
    tol = torch.finfo(M.dtype).eps ** 0.75
    starts = [init[:, None]] if init is not None else []
    if multistart:
        group = _octahedral_rotations(M.dtype, M.device)[None].expand(B, -1, -1, -1)
        starts = [group[:, :1], _polar_init(M, S)[:, None], group[:, 1:]] + starts
    R = torch.cat(starts, dim=1)  # (B, C, 3, 3)
    if R.shape[1] > 1:  # a few steps from every start, then only the best one per sample goes on
        R, f = _lm_solve(R, M[:, None], S[:, None], MULTISTART_STEPS, tol, polish=False)
        best = f.argmin(dim=1)  # first of equal values: the identity when nothing is visible
        R = R[torch.arange(B, device=M.device), best][:, None]
    return _lm_solve(R, M[:, None], S[:, None], max_steps, tol)[0][:, 0]


def _lbfgs_rotation(points_2d, visibility, points_3d, scale, init_R, init_t, generator) -> torch.Tensor:
    """The paper's rigid solver: torch.optim.LBFGS over (axis-angle r, t') per sample, official settings.

    Objective (Eq. 5): sum_i v_i || u_i - s (R_r V_i + t') - mean(u) ||^2 with column-vector R_r = exp[r]_x.
    Returns the row-vector rotation R_r^T (B, 3, 3). No autograd through the iterations.
    """
    B = points_2d.shape[0]
    mu = points_2d.mean(1)  # (B, 2) the official principal point
    if init_R is None:  # official init: torch.rand(bs, 3) axis-angle, zero translation
        r0 = torch.rand(B, 3, generator=generator, dtype=torch.float64).to(points_2d)
        t0 = torch.zeros_like(mu)
    else:
        r0 = matrix_to_axis_angle(init_R.transpose(1, 2))
        t0 = (init_t - mu) / scale[:, None]
    out = []
    # inference_mode(False) + clone: also usable under torch.inference_mode (Lightning's validation)
    with torch.inference_mode(False), torch.enable_grad():
        for b in range(B):
            theta = torch.cat([r0[b], t0[b]]).clone().requires_grad_(True)
            opt = torch.optim.LBFGS([theta], **LBFGS_SETTINGS)
            u, v, X, s, m = (x[b].clone() for x in (points_2d, visibility, points_3d, scale, mu))

            def closure(theta=theta, opt=opt, u=u, v=v, X=X, s=s, m=m):
                opt.zero_grad()
                R_col = axis_angle_to_matrix(theta[:3], fast=True)
                proj = s * ((X @ R_col.T)[:, :2] + theta[3:]) + m
                loss = (v * (u - proj).square().sum(-1)).sum()
                loss.backward()
                return loss

            opt.step(closure)
            out.append(axis_angle_to_matrix(theta.detach()[:3], fast=True).T)
    return torch.stack(out)


def _pinv_solve(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """H^+ g for symmetric (B, 3, 3) H, dropping eigenvalues below sqrt(eps) * max |eigenvalue|."""
    evals, vecs = torch.linalg.eigh(H)
    cut = torch.finfo(H.dtype).eps ** 0.5 * evals.abs().amax(-1, keepdim=True)
    keep = evals.abs() > cut.clamp_min(torch.finfo(H.dtype).tiny)
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return (vecs @ (inv * (vecs.transpose(-1, -2) @ g[..., None]).squeeze(-1))[..., None]).squeeze(-1)


class _RigidOptimum(torch.autograd.Function):
    """Identity on the optimal rotation R* of f(.; M, S); backward by the implicit function theorem."""

    @staticmethod
    def forward(ctx, M: torch.Tensor, S: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(M, S, R)
        return R.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_R: torch.Tensor):
        M, S, R = ctx.saved_tensors
        _, _, H = _gradient_hessians(R, M, S)
        g_d = torch.einsum(
            "bij,bik,lkj->bl", grad_R, R, _generators(R.dtype, R.device)
        )  # dL/dd_l = <grad_R, R L_l>
        W = _hat(_pinv_solve(H, g_d))  # (B, 3, 3)
        # dL/dx = -w . d(grad_d f)/dx, grad_d f . w = 2 tr(W^T G), G = R^T S R D - [R^T M, 0]
        grad_M = 2.0 * R @ W[..., :2]
        D = torch.diag(R.new_tensor([1.0, 1.0, 0.0]))
        grad_S = -2.0 * R @ W @ D @ R.transpose(1, 2)
        return grad_M, grad_S, None


def _closed_form_translation(points_2d, visibility, points_3d, rotation, scale) -> torch.Tensor:
    """argmin_t of the data term given R and the 3D points: the weighted centroid of u - s (X R)_xy. (B, 2)"""
    w = _centroid_weights(visibility)[..., None]  # (B, N, 1)
    proj = scale[:, None, None] * (points_3d @ rotation[..., :2])  # (B, N, 2)
    return (w * (points_2d - proj)).sum(1)


class _RidgeMoments(NamedTuple):
    """Visibility-weighted moments of the basis that Eq. 7 needs, computed once per call (v is fixed).

    BB (B, K, K, 3, 3) sum_n v_n B_kn^T B_ln; Bu (B, K, 3, 2) sum_n v_n B_kn^T u_n; BT (B, K, 3, 3)
    sum_n v_n B_kn^T T_n; Bv (B, K, 3) sum_n v_n B_kn (B_kn a (1, 3) row).
    """

    BB: torch.Tensor
    Bu: torch.Tensor
    BT: torch.Tensor
    Bv: torch.Tensor


def _ridge_moments(points_2d, visibility, template, basis) -> _RidgeMoments:
    Bn, N = visibility.shape
    K = basis.shape[0]
    flat = basis.permute(1, 0, 2).reshape(N, 3 * K)  # (N, 3K)
    rhs = torch.cat(
        [
            flat.expand(Bn, N, 3 * K),
            points_2d,
            template.expand(Bn, N, 3),
            torch.ones_like(points_2d[..., :1]),
        ],
        -1,
    )
    mom = (visibility[..., None] * flat).transpose(1, 2) @ rhs  # (B, 3K, 3K + 6): one matmul
    mom = mom.unflatten(1, (K, 3))  # (B, K, 3, 3K + 6)
    BB = mom[..., : 3 * K].unflatten(-1, (K, 3)).permute(0, 1, 3, 2, 4)  # (B, K, K, 3, 3)
    Bu, BT, Bv = mom[..., 3 * K : 3 * K + 2], mom[..., 3 * K + 2 : 3 * K + 5], mom[..., -1]
    return _RidgeMoments(BB, Bu, BT, Bv)


def _ridge_coefficients(moments: _RidgeMoments, rotation, translation, scale, ridge):
    """Eq. 7: c = (Omega^T X Omega + gamma I)^-1 Omega^T X Upsilon, batched: (B, K).

    Omega_n = s B_n P (2 x K, P = R[:, :2]) and Upsilon_n = u_n - s T_n P - t, so with the moments
    A_kl = s^2 tr(P^T BB_kl P) and b_k = s tr(P^T (Bu_k - s BT_k P)) - s t . (Bv_k P).
    """
    P = rotation[..., :2]  # (B, 3, 2)
    s = scale[:, None]
    K = moments.Bu.shape[1]
    A = s[..., None] ** 2 * torch.einsum("bdx,bklde,bex->bkl", P, moments.BB, P)  # (B, K, K)
    resid = moments.Bu - s[..., None, None] * (moments.BT @ P[:, None])  # (B, K, 3, 2)
    rhs = s * (
        (P[:, None] * resid).sum((-1, -2))
        - ((moments.Bv[..., None, :] @ P[:, None]).squeeze(-2) * translation[:, None]).sum(-1)
    )  # (B, K)
    eps = torch.finfo(A.dtype).eps
    # a relative jitter eps * (mean diagonal + 1) keeps a singular system (gamma = 0, rank-deficient basis,
    # nothing visible) solvable without changing a regular one beyond rounding
    damp = ridge + eps * (torch.diagonal(A, dim1=-2, dim2=-1).mean(-1) + 1.0)  # (B,)
    eye = torch.eye(K, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(A + damp[:, None, None] * eye, rhs)


def _data_term(points_2d, visibility, vertices, rotation, translation, scale) -> torch.Tensor:
    proj = scale[:, None, None] * (vertices @ rotation[..., :2]) + translation[:, None]
    return (visibility * (points_2d - proj).square().sum(-1)).sum(1)


def _check_inputs(points_2d, visibility, template, basis, ridge, iterations, solver, scale, init_rotation):
    sizes: dict[str, int] = {}
    _check_shape(points_2d, "points_2d", ("B", "N", 2), sizes)
    _check_shape(visibility, "visibility", ("B", "N"), sizes)
    _check_shape(template, "template", ("N", 3), sizes)
    _check_shape(basis, "basis", ("K", "N", 3), sizes)
    if scale is not None:
        _check_shape(scale, "scale", ("B",), sizes)
    if init_rotation is not None:
        _check_shape(init_rotation, "init_rotation", ("B", 3, 3), sizes)
    if torch.is_tensor(ridge):
        if ridge.numel() != 1:
            raise ValueError(
                f"Expected ridge to be a scalar (float or one-element tensor), got {tuple(ridge.shape)}"
            )
    elif not isinstance(ridge, (int, float)) or ridge < 0:
        raise ValueError(f"Expected ridge to be a float >= 0 or a one-element tensor, got {ridge!r}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"Expected iterations to be an int >= 1, got {iterations!r}")
    if solver not in SOLVERS:
        raise ValueError(f"Expected solver to be one of {SOLVERS}, got {solver!r}")
    if not points_2d.dtype.is_floating_point:
        raise ValueError(f"Expected points_2d to be a floating-point tensor, got {points_2d.dtype}")


def fit_camera_and_deformation(
    points_2d: torch.Tensor,
    visibility: torch.Tensor,
    template: torch.Tensor,
    basis: torch.Tensor,
    ridge: torch.Tensor | float,
    iterations: int = 4,
    solver: str = "gauss_newton",
    scale: torch.Tensor | None = None,
    init_rotation: torch.Tensor | None = None,
    min_scale: float = 1e-6,
    max_steps: int = 50,
    seed: int = 0,
    refit_scale: bool = False,
) -> TTPFit:
    """TTP's optimization layer (Sec. 3.2): weak-perspective pose and deformation coefficients from 2D points.

    Minimizes `sum_i v_i ||u_i - s [(T + B c) @ R]_xy - t||^2 + ridge ||c||^2` (Eq. 4) by `iterations`
    alternations of a rigid step over (R, t) (Eq. 5) and the closed-form ridge solve for c (Eq. 7); see the
    module docstring for the solvers and gradients. Differentiable in points_2d, visibility, template, basis,
    ridge (and scale when given).

    Args:
        points_2d: (B, N, 2) normalized image coordinates of the template vertices, x right, y down.
        visibility: (B, N) weights in [0, 1].
        template: (N, 3) mean shape T.
        basis: (K, N, 3) deformation basis B (vertex offsets per coefficient).
        ridge: gamma >= 0, a float or a one-element tensor (learnable).
        iterations: alternations (the paper's Table 2 / Table 5 use 1 and 4).
        solver: "gauss_newton" (batched, multi-start LM on SO(3)) or "lbfgs" (the paper's, per sample).
        scale: (B,) weak-perspective scale; None = std of points_2d (`weak_perspective_scale`).
        init_rotation: (B, 3, 3) optional start of the first rigid step (an extra start for "gauss_newton").
        min_scale: lower bound of the scale from the 2D spread.
        max_steps: LM steps per rigid step ("gauss_newton"; stops earlier once converged).
        seed: seed of the official random axis-angle init of "lbfgs" when init_rotation is None.
        refit_scale: after every rigid step, replace s by its least-squares value given the rotation and
            the current mesh, `s = tr(P^T M) / tr(P^T S P)` (P = R[:, :2], M and S the weighted centred
            cross- and auto-moments of the 2D points and the mesh), differentiable. The starting s is
            `scale` (or the 2D spread). Off: s stays the spread-based value throughout (the paper's Eq. 1).
    Returns:
        TTPFit(rotation (B, 3, 3), translation (B, 2), coefficients (B, K), scale (B,), vertices (B, N, 3),
        loss (B,)) with `WeakPerspectiveCameras(scale[:, None], rotation, translation).project(vertices)`
        the fitted 2D points.
    """
    _check_inputs(points_2d, visibility, template, basis, ridge, iterations, solver, scale, init_rotation)
    dtype, device = points_2d.dtype, points_2d.device
    B = points_2d.shape[0]
    template, basis, visibility = template.to(dtype), basis.to(dtype), visibility.to(dtype)
    ridge_t = (
        ridge.to(dtype).reshape(()) if torch.is_tensor(ridge) else torch.tensor(float(ridge), dtype=dtype)
    )
    ridge_t = ridge_t.to(device)
    s = weak_perspective_scale(points_2d, min_scale) if scale is None else scale.to(dtype)
    generator = torch.Generator().manual_seed(seed)

    moments = _ridge_moments(points_2d, visibility, template, basis)
    vertices = template.expand(B, -1, -1)  # (B, N, 3), c = 0
    coefficients = points_2d.new_zeros(B, basis.shape[0])
    R_prev, t_prev = init_rotation, None
    rotation = translation = None
    for it in range(iterations):
        M, S = _rigid_statistics(points_2d, visibility, vertices, s)
        with torch.no_grad():
            if solver == "gauss_newton":
                R_opt = _gauss_newton_rotation(M.detach(), S.detach(), R_prev, max_steps, multistart=it == 0)
            else:
                if it == 0 and R_prev is not None:
                    t_prev = _closed_form_translation(points_2d, visibility, vertices, R_prev, s)
                R_opt = _lbfgs_rotation(
                    points_2d.detach(),
                    visibility.detach(),
                    vertices.detach(),
                    s.detach(),
                    R_prev,
                    t_prev,
                    generator,
                )
        rotation = _RigidOptimum.apply(M, S, R_opt)
        if refit_scale:
            s = _least_squares_scale(M * s[:, None, None], S, rotation, s, min_scale)
        translation = _closed_form_translation(points_2d, visibility, vertices, rotation, s)
        coefficients = _ridge_coefficients(moments, rotation, translation, s, ridge_t)
        vertices = template + (coefficients @ basis.flatten(1)).unflatten(-1, basis.shape[1:])
        R_prev, t_prev = rotation.detach(), translation.detach()
    translation = _closed_form_translation(points_2d, visibility, vertices, rotation, s)
    loss = _data_term(points_2d, visibility, vertices, rotation, translation, s)
    loss = loss + ridge_t * coefficients.square().sum(-1)
    return TTPFit(rotation, translation, coefficients, s, vertices, loss)
