"""Benchmark: TTP's camera-and-deformation layer, the paper's Table 5 (run-time analysis) on this machine.

Rows: the CNN (timm resnet18, pretrained=False, 256x256 input, eval mode, no grad) per image, and the
optimization layer per image at batch 1 and 32 with 1 and 4 alternations, for the batched Gauss-Newton solver
and for the paper's solver (torch.optim.LBFGS per sample, official settings) on the same problems in the same
run, with the reprojection error each reaches (RMS over visible points, normalized image units) and the
rotation error to the ground truth. Problem: a 2562-vertex template (ico_sphere(4); TTP's bird mesh
subdivided once has about as many), K = 5 basis shapes (official `basis_k`), random rotations, the front
half visible, 2D noise 0.01, ridge 0.1. Times are medians (ms); `fwd_bwd_ms` includes the implicit backward.
Quick mode times L-BFGS on the first 8 samples of the batch of 32 (it is a per-sample loop, so its time per
image does not depend on the batch) and compares its error with Gauss-Newton's on the same 8.

Run: python -c "from experiments.benchmarks.ttp_layer import run; run(quick=True)"
"""

from __future__ import annotations

import math
import time

import torch

from experiments.benchmarks.common import sync, time_ms
from geometry import WeakPerspectiveCameras, fit_camera_and_deformation, ico_sphere
from geometry.rotations import axis_angle_to_matrix, so3_relative_angle

BASIS_K, RIDGE, NOISE, DEFORM = 5, 0.1, 0.01, 0.05
BATCHES, ITERATIONS = (1, 32), (1, 4)
QUICK_LBFGS_SAMPLES = 8


def _problem(batch: int, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    T = ico_sphere(4).verts * 0.5  # (2562, 3)
    N = T.shape[0]
    basis = DEFORM * torch.randn(BASIS_K, N, 3, generator=g)
    c = torch.randn(batch, BASIS_K, generator=g)
    X = T + torch.einsum("bk,knd->bnd", c, basis)
    aa = torch.randn(batch, 3, generator=g)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(batch, 1, generator=g) * math.pi
    R = axis_angle_to_matrix(aa)
    t = 0.1 * torch.randn(batch, 2, generator=g)
    # the layer's scale is std(u) (official code): choose s with std(s p + t) = s, the positive root of
    # (var(p) - 1) s^2 + 2 cov(p, t) s + var(t) = 0 over the 2N flattened coordinates (var(p) < 1 here)
    p = (X @ R)[..., :2].reshape(batch, -1)
    tb = t[:, None].expand(batch, N, 2).reshape(batch, -1)
    pc, tc = p - p.mean(1, keepdim=True), tb - tb.mean(1, keepdim=True)
    d = 2 * N - 1  # unbiased, as torch.std
    var_p, cov, var_t = (pc * pc).sum(1) / d, (pc * tc).sum(1) / d, (tc * tc).sum(1) / d
    s = (-cov - torch.sqrt(cov**2 - (var_p - 1) * var_t)) / (var_p - 1)
    u = WeakPerspectiveCameras(s[:, None], R, t).project(X) + NOISE * torch.randn(batch, N, 2, generator=g)
    v = ((X @ R)[..., 2] < 0).float()  # the half facing the camera (z into the image)
    out = dict(u=u, v=v, T=T, basis=basis, R=R)
    return {k: x.to(device) for k, x in out.items()}


def _errors(fit, P) -> tuple[float, float]:
    cams = WeakPerspectiveCameras(fit.scale[:, None], fit.rotation, fit.translation)
    res = (cams.project(fit.vertices) - P["u"]).square().sum(-1)  # (B, N)
    rms = (P["v"] * res).sum(1) / P["v"].sum(1)
    angle = so3_relative_angle(fit.rotation.float(), P["R"].float(), cos_bound=0.0)
    return float(rms.sqrt().mean()), float(angle.median() * 180 / math.pi)


def _subset(P: dict, n: int) -> dict:
    return {k: (x[:n] if k in ("u", "v", "R") else x) for k, x in P.items()}


def _fit(P, iterations, solver):
    with torch.no_grad():
        return fit_camera_and_deformation(
            P["u"], P["v"], P["T"], P["basis"], RIDGE, iterations, solver=solver
        )


def _cnn_rows(device, quick: bool) -> list[dict]:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is in requirements
        return [{"bench": "ttp Table 5", "case": "CNN", "impl": "resnet18 (timm)", "note": "timm missing"}]
    net = timm.create_model("resnet18", pretrained=False).to(device).eval()
    rows = []
    for batch in BATCHES:
        x = torch.rand(batch, 3, 256, 256, device=device)

        def fwd(x=x):
            with torch.no_grad():
                return net(x)

        # quick: the batch-1 call has warmed the network up; one batch-32 call (~6 s on 2 CPU cores) is enough
        ms = time_ms(fwd, repeats=1 if quick else 5, warmup=0 if quick and batch > 1 else 1)
        rows.append(
            {
                "bench": "ttp Table 5",
                "case": f"CNN B{batch}",
                "impl": "resnet18 (timm)",
                "ms_per_image": ms / batch,
            }
        )
    return rows


def _fwd_bwd_ms(P, iterations, quick) -> float:
    def fn():
        u = P["u"].detach().requires_grad_(True)
        basis = P["basis"].detach().requires_grad_(True)
        ridge = torch.tensor(RIDGE, device=u.device, requires_grad=True)
        fit = fit_camera_and_deformation(u, P["v"], P["T"], basis, ridge, iterations)
        (fit.vertices.square().sum() + fit.rotation.sum() + fit.translation.sum()).backward()

    return time_ms(fn, repeats=1 if quick else 3, warmup=1)


def run(quick: bool = True) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = _cnn_rows(device, quick)
    for batch in BATCHES:
        P = _problem(batch, device)
        for iterations in ITERATIONS:
            n_lbfgs = min(batch, QUICK_LBFGS_SAMPLES) if quick else batch
            P_lb = _subset(P, n_lbfgs)
            gn_ms = time_ms(lambda P=P, it=iterations: _fit(P, it, "gauss_newton"), repeats=1 if quick else 5)
            gn_err, gn_deg = _errors(_fit(P_lb, iterations, "gauss_newton"), P_lb)
            sync()
            t0 = time.perf_counter()
            lb = _fit(P_lb, iterations, "lbfgs")
            sync()
            lb_ms = (time.perf_counter() - t0) * 1e3
            lb_err, lb_deg = _errors(lb, P_lb)
            case = f"B{batch} iters{iterations}"
            common = {"bench": "ttp Table 5", "case": case}
            rows.append(
                {
                    **common,
                    "impl": "gauss_newton (batched)",
                    "ms_per_image": gn_ms / batch,
                    "fwd_bwd_ms": _fwd_bwd_ms(P, iterations, quick),
                    "reproj_rms": gn_err,
                    "rot_err_deg": gn_deg,
                    "note": f"{device}; errors on {n_lbfgs} samples",
                }
            )
            rows.append(
                {
                    **common,
                    "impl": "lbfgs (per sample, paper)",
                    "ms_per_image": lb_ms / n_lbfgs,
                    "reproj_rms": lb_err,
                    "rot_err_deg": lb_deg,
                    "note": f"{device}; {lb_ms / n_lbfgs / (gn_ms / batch):.0f}x the GN time per image; "
                    f"GN rms - this = {gn_err - lb_err:.1e}",
                }
            )
    return rows


if __name__ == "__main__":
    from experiments.benchmarks.common import print_table

    print_table(run(quick=False), "ttp_layer")
