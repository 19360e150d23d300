"""Per-image alignment of predicted depth / disparity to a ground truth, batched and masked.

Three protocols used in depth papers:
- `align_median_log_disparity`: GP2's scale-only alignment (Romanov et al. 2020, arXiv 2009.12419;
  official evaluation code `saic-vul/geometry-preserving-de`, `metrics/logdisp_metrics.py`): the predicted
  log-disparity is shifted by the median of the per-pixel differences of log-disparities, i.e. the
  disparity is multiplied by one scale. (The median *of differences*, as the official code does, not the
  difference of medians; both recover an exact global scale.)
- `align_median_depth_ratio`: Eigen et al. 2014 / monodepth's median scaling, depth *= median(t) / median(p).
- `align_lstsq_scale_shift`: MiDaS's least-squares scale and shift in disparity (Ranftl et al. 2020,
  "Towards Robust Monocular Depth Estimation", eval), closed form of the 2x2 normal equations per image.

All take `(B, 1, H, W)` maps and a bool mask `(B, 1, H, W)`; an image with an empty mask gets scale 1 and
shift 0, and masked pixels never produce NaN values or gradients (inputs are replaced with `torch.where`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Alignment(NamedTuple):
    """Aligned map `(B, 1, H, W)` = `scale[:, None, None, None] * pred + shift[...]`; scale, shift `(B,)`."""

    aligned: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor


def check_map(name: str, x: torch.Tensor) -> None:
    """Raise ValueError unless `x` is a `(B, 1, H, W)` tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"Expected {name} to be of shape (B, 1, H, W), got {shape}")


def check_map_and_mask(names: tuple[str, ...], maps: tuple[torch.Tensor, ...], mask: torch.Tensor) -> None:
    """Check that every map is `(B, 1, H, W)` with one shape and that `mask` is bool of that shape."""
    for n, m in zip(names, maps):
        check_map(n, m)
    check_map("mask", mask)
    ref = maps[0].shape
    for n, m in zip(names, maps):
        if m.shape != ref:
            raise ValueError(
                f"Expected {n} to be of shape {tuple(ref)} like {names[0]}, got {tuple(m.shape)}"
            )
    if mask.shape != ref or mask.dtype != torch.bool:
        raise ValueError(
            f"Expected mask to be a bool tensor of shape {tuple(ref)}, got {mask.dtype} {tuple(mask.shape)}"
        )


def masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lower median (torch.median's convention) of `x` over `mask`, per sample.

    Args:
        x: `(B, ...)` float; mask: bool, same shape.
    Returns:
        `(B,)`; 0 for a sample without a valid element. Differentiable (the gradient flows to the
        selected element), no Python loop over the batch.
    """
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        raise ValueError(
            f"Expected mask to be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}"
        )
    if x.shape != mask.shape:
        raise ValueError(f"Expected mask of shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    xf = x.reshape(x.shape[0], -1)  # (B, P)
    mf = mask.reshape(x.shape[0], -1)
    n = mf.sum(dim=1)  # (B,)
    keys = torch.where(mf, xf.detach(), torch.full_like(xf, float("inf")))
    order = keys.argsort(dim=1)  # valid entries first, ascending
    k = ((n - 1).clamp_min(0) // 2).unsqueeze(1)  # (B, 1)
    idx = order.gather(1, k)  # (B, 1)
    safe = torch.where(mf, xf, torch.zeros_like(xf))
    med = safe.gather(1, idx).squeeze(1)
    return torch.where(n > 0, med, torch.zeros_like(med))


def _safe_log(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.ones_like(x)).log()


def _expand(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None, None]


def align_median_log_disparity(
    pred_disp: torch.Tensor, target_disp: torch.Tensor, mask: torch.Tensor
) -> Alignment:
    """GP2 scale alignment: `log p + median(log t - log p)` over valid pixels, i.e. `p * scale`.

    The same one-scale alignment applies to depths (the scale is `1 / scale` of the disparity one); GP2's
    eval takes the (lower, torch.median) median of the log ratio in log depth, which for an even pixel
    count can differ from the one in log disparity, so `DepthMetrics` calls this on depths.

    Args:
        pred_disp, target_disp: `(B, 1, H, W)`, positive at valid pixels; mask: `(B, 1, H, W)` bool.
    Returns:
        Alignment(aligned `(B, 1, H, W)` disparity, scale `(B,)`, shift `(B,)` zeros).
    """
    check_map_and_mask(("pred_disp", "target_disp"), (pred_disp, target_disp), mask)
    log_ratio = _safe_log(target_disp, mask) - _safe_log(pred_disp, mask)  # (B, 1, H, W)
    scale = masked_median(log_ratio, mask).exp()  # (B,); exp(0) = 1 for an empty mask
    return Alignment(pred_disp * _expand(scale), scale, torch.zeros_like(scale))


def align_median_depth_ratio(
    pred_depth: torch.Tensor, target_depth: torch.Tensor, mask: torch.Tensor
) -> Alignment:
    """Median scaling (Eigen et al. 2014; monodepth): `p * median(t) / median(p)` over valid pixels.

    Args:
        pred_depth, target_depth: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool.
    Returns:
        Alignment(aligned `(B, 1, H, W)` depth, scale `(B,)` (1 for an empty mask), shift `(B,)` zeros).
    """
    check_map_and_mask(("pred_depth", "target_depth"), (pred_depth, target_depth), mask)
    mt = masked_median(target_depth, mask)
    mp = masked_median(pred_depth, mask)
    ok = mp != 0
    scale = torch.where(ok, mt / torch.where(ok, mp, torch.ones_like(mp)), torch.ones_like(mp))
    return Alignment(pred_depth * _expand(scale), scale, torch.zeros_like(scale))


def align_lstsq_scale_shift(
    pred_disp: torch.Tensor, target_disp: torch.Tensor, mask: torch.Tensor
) -> Alignment:
    """MiDaS alignment: `(s, b) = argmin sum_valid (s p + b - t)^2`, closed form per image.

    Solved in centred form, `s = cov(p, t) / var(p)`, `b = mean(t) - s mean(p)` (the solution of the 2x2
    normal equations `[[sum p^2, sum p], [sum p, N]] [s, b]^T = [sum p t, sum t]^T`).
    A constant prediction (var(p) = 0, every s is optimal) gets `s = 1, b = mean(t - p)`; an empty mask
    gets `s = 1, b = 0`.

    Args:
        pred_disp, target_disp: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool.
    Returns:
        Alignment(aligned `(B, 1, H, W)`, scale `(B,)`, shift `(B,)`).
    """
    check_map_and_mask(("pred_disp", "target_disp"), (pred_disp, target_disp), mask)
    B = pred_disp.shape[0]
    m = mask.reshape(B, -1)
    p = torch.where(m, pred_disp.reshape(B, -1), torch.zeros_like(pred_disp.reshape(B, -1)))  # (B, P)
    t = torch.where(m, target_disp.reshape(B, -1), torch.zeros_like(target_disp.reshape(B, -1)))
    w = m.to(p.dtype)
    n = w.sum(dim=1).clamp_min(1.0)  # (B,)
    mean_p = p.sum(dim=1) / n
    mean_t = t.sum(dim=1) / n
    dp = (p - mean_p[:, None]) * w  # (B, P)
    dt = (t - mean_t[:, None]) * w
    var_p = (dp * dp).sum(dim=1) / n
    cov = (dp * dt).sum(dim=1) / n
    eps = torch.finfo(p.dtype).eps
    ok = var_p > eps * (mean_p * mean_p + eps)
    scale = torch.where(ok, cov / torch.where(ok, var_p, torch.ones_like(var_p)), torch.ones_like(var_p))
    shift = mean_t - scale * mean_p
    return Alignment(pred_disp * _expand(scale) + _expand(shift), scale, shift)
