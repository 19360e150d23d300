"""Rendering of tensors into pictures for loggers (shared by the families' callbacks)."""

from __future__ import annotations

import torch

# Viridis anchor colours at 0, 0.25, 0.5, 0.75, 1 (matplotlib's viridis sampled at those points).
_VIRIDIS = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.229, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)


def colorize(
    x: torch.Tensor, valid: torch.Tensor | None = None, lo: float | None = None, hi: float | None = None
):
    """Map a (H, W) map to a (3, H, W) viridis image in [0, 1]; invalid pixels black.

    lo/hi default to the 2nd/98th percentiles of the valid values.
    """
    x = x.detach().float().cpu()
    valid = torch.isfinite(x) if valid is None else valid.detach().cpu().bool() & torch.isfinite(x)
    vals = x[valid]
    if vals.numel() == 0:
        return torch.zeros(3, *x.shape)
    lo = float(torch.quantile(vals, 0.02)) if lo is None else lo
    hi = float(torch.quantile(vals, 0.98)) if hi is None else hi
    t = ((x - lo) / max(hi - lo, 1e-12)).clamp(0, 1).nan_to_num(0.0) * (len(_VIRIDIS) - 1)
    i0 = t.floor().long().clamp(max=len(_VIRIDIS) - 2)
    w = (t - i0).unsqueeze(-1)
    rgb = _VIRIDIS[i0] * (1 - w) + _VIRIDIS[i0 + 1] * w  # (H, W, 3)
    rgb[~valid] = 0
    return rgb.permute(2, 0, 1)


def to_uint8_hwc(img: torch.Tensor):
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 numpy array."""
    return (img.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
