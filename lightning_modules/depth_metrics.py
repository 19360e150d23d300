"""Depth metrics as torchmetrics `Metric`s, following GP2's evaluation protocol.

GP2 (Romanov et al. 2020, arXiv 2009.12419; official eval `saic-vul/geometry-preserving-de`,
`metrics/logdisp_metrics.py`, `metrics/disp_metrics.py`, `eval.py`):
- the network predicts log-disparity; every metric is computed per image over its valid pixels and then
  averaged over images (not pooled over pixels);
- "UTS" metrics align the prediction by one scale, the median of the log-depth differences, and are not
  clamped (`alignment="median_log_disparity"`; `metrics/logdisp_metrics.py:39-45`), "UTSS" metrics by a
  least-squares scale and shift in disparity, with the aligned disparity clamped to >= 1 / depth cap
  (`alignment="lstsq_disparity"`, `max_depth`; `metrics/disp_metrics.py:6-22,47-48`): the cap clamps
  the lstsq alignment only;
- a ground-truth pixel is valid iff its depth is > 1e-8 and < the dataset's cap (10 m NYU / TUM, 72 m
  Sintel / ETH3D; `datasets/validation_datasets.py:49-54,108,149,176,201`), here `min_depth` / `max_depth`;
- an image with 10 valid pixels or fewer is skipped and does not count in the mean over images
  (`numel() > 10`, `metrics/logdisp_metrics.py:43`, `metrics/disp_metrics.py:46`; `min_valid_pixels=11`);
- "delta 1.25" is reported as the percentage of *bad* pixels, max(p/t, t/p) > 1.25 ("delta125_bad"); the
  usual fraction of good pixels is "delta1" (and "delta2", "delta3" for 1.25^2, 1.25^3);
- DIW is scored by WHDR (`WHDR`), the percentage of ordinal pairs whose predicted order is wrong.

Not GP2's, for its Fig. 3 question (does the prediction get the disparity shift right?): "disp_shift" fits
the true disparity 1 / t by a least-squares scale and shift of the *unaligned* predicted disparity,
`1 / t ~ s p + b`, and reports `100 |b| / mean(1 / t)`, the share (%) of the true mean disparity that the
network's shift error accounts for; 0 for a prediction that is right up to scale, whatever the alignment.

NaN-aware: a diverged prediction never scores well. A valid pixel whose prediction is NaN or infinite
(before or after the alignment) is a bad pixel for delta125_bad, not a good one for delta1..3, and makes
its image's absrel / log10 / rmse / si_log (hence their means) NaN; "nonfinite" reports the percentage of
such pixels. An ordinal pair with a non-finite prediction is a wrong answer for WHDR.

Inputs: `update(pred_log_disp, target_depth, mask)`, all `(B, 1, H, W)`. Targets are always *depth*; for a
dataset whose ground truth is disparity up to scale and shift ("utss_disparity"), pass `1 / disparity`
and use `alignment="lstsq_disparity"`, the only alignment that is invariant to a disparity shift.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from geometry.depth_align import (
    align_lstsq_scale_shift,
    align_median_depth_ratio,
    align_median_log_disparity,
    check_map,
    check_map_and_mask,
    masked_median,
)
from losses.depth import sample_ordinal_pairs

ALIGNMENTS = ("median_log_disparity", "median_depth", "lstsq_disparity", "none")
METRIC_NAMES = (
    "delta125_bad",
    "delta1",
    "delta2",
    "delta3",
    "absrel",
    "log10",
    "rmse",
    "si_log",
    "nonfinite",
    "disp_shift",
)


def align_prediction(
    pred_log_disp: torch.Tensor,
    target_depth: torch.Tensor,
    valid: torch.Tensor,
    alignment: str,
    max_depth: float | None = None,
) -> torch.Tensor:
    """Predicted depth `(B, 1, H, W)` from log-disparity, aligned to the target per image.

    Only "lstsq_disparity" uses `max_depth`: its aligned disparity is clamped to >= 1 / max_depth, i.e. depth
    <= the cap, as GP2's `depth_cap` (`metrics/disp_metrics.py:20-22`, applied at line 48 to the UTSS
    alignment only); without a cap it is not clamped. The median alignments and "none" are never clamped
    (GP2's UTS metrics are not: `metrics/logdisp_metrics.py:43-45`).

    NaN-aware: the alignment is fit on the valid pixels whose prediction is finite and applied to every
    pixel; a pixel whose prediction is not finite (NaN or +-inf log-disparity, or an aligned value that is
    not: a depth outside (0, inf), e.g. from an aligned disparity <= 0 under "lstsq_disparity" without a
    cap) is NaN in the output, never a finite depth. An image without a finite valid
    prediction is all NaN where its prediction is. The scale-invariant alignments first shift the
    log-disparity by its median over the fit pixels (which they absorb exactly), so a prediction off by a
    large global shift, to which GP2's loss is blind, does not overflow float32 on the way.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"Expected alignment to be one of {ALIGNMENTS}, got {alignment!r}")
    finite = torch.isfinite(pred_log_disp)
    fit = valid & finite  # (B, 1, H, W) pixels the alignment is fit on
    log_disp = torch.where(finite, pred_log_disp, torch.zeros_like(pred_log_disp))
    target_disp = torch.where(valid, target_depth, torch.ones_like(target_depth)).reciprocal()
    if alignment != "none":  # scale invariant: remove a global shift of log-disparity before exp()
        log_disp = log_disp - masked_median(log_disp, fit)[:, None, None, None]
    if alignment == "lstsq_disparity":
        disp = log_disp.exp()
        disp = align_lstsq_scale_shift(disp, target_disp, fit & torch.isfinite(disp)).aligned
        if max_depth is not None:  # GP2's depth_cap: clamp(disp, 1 / cap, inf) (metrics/disp_metrics.py:21)
            disp = disp.clamp_min(1.0 / max_depth)
        depth = disp.reciprocal()
        bad = ~(finite & torch.isfinite(disp) & torch.isfinite(depth) & (depth > 0))
        return torch.where(bad, torch.full_like(depth, float("nan")), depth)
    depth = (-log_disp).exp()
    positive = torch.isfinite(depth) & (depth > 0)
    if alignment == "median_log_disparity":
        # The scale is the same in either domain, but with an even pixel count the lower median of
        # log(t/p) in depth differs from that in disparity; GP2's eval takes it in log depth.
        depth = align_median_log_disparity(depth, target_depth, fit & positive).aligned
    elif alignment == "median_depth":
        depth = align_median_depth_ratio(depth, target_depth, fit & positive).aligned
    bad = ~(finite & torch.isfinite(depth) & (depth > 0))
    return torch.where(bad, torch.full_like(depth, float("nan")), depth)


def per_image_depth_metrics(
    pred_depth: torch.Tensor, target_depth: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Each metric of `METRIC_NAMES` over each image's valid pixels.

    Args:
        pred_depth, target_depth: `(B, 1, H, W)` positive at valid pixels; valid: `(B, 1, H, W)` bool.
    Returns:
        `(B, len(METRIC_NAMES) - 1)`, every metric but "disp_shift" (`per_image_disparity_shift`, which
        needs the unaligned prediction); rows of images without valid pixels are 0.
        delta125_bad in percent, delta1..3 as fractions, si_log = sqrt(var(log p - log t)) (Eigen et al.),
        nonfinite = percent of valid pixels whose prediction is not a finite positive depth.
    A valid pixel whose predicted depth is NaN, +-inf or <= 0 is a wrong answer, never a dropped one: it is
    bad for delta125_bad and not good for delta1..3, and it makes the image's absrel, log10, rmse and si_log
    NaN (there is no honest finite error for it), so that their mean over images is NaN too.
    """
    B = pred_depth.shape[0]
    m = valid.reshape(B, -1)
    p = pred_depth.reshape(B, -1)  # (B, P)
    ok = torch.isfinite(p) & (p > 0)
    broken = m & ~ok  # (B, P) valid pixels without a usable prediction
    p = torch.where(m & ok, p, torch.ones_like(p))
    t = torch.where(m, target_depth.reshape(B, -1), torch.ones_like(target_depth.reshape(B, -1)))
    w = m.to(p.dtype)
    n = w.sum(dim=1).clamp_min(1.0)  # (B,)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum(dim=1) / n

    def good(threshold: float) -> torch.Tensor:
        return mean(((ratio < threshold) & ~broken).to(p.dtype))

    def error(x: torch.Tensor) -> torch.Tensor:  # NaN for an image with a broken valid pixel
        return torch.where(broken.any(dim=1), torch.full_like(x, float("nan")), x)

    ratio = torch.maximum(p / t, t / p)
    d = p.log() - t.log()
    cols = [
        100.0 * mean(((ratio > 1.25) | broken).to(p.dtype)),
        good(1.25),
        good(1.25**2),
        good(1.25**3),
        error(mean((p - t).abs() / t)),
        error(mean(d.abs() / math.log(10.0))),
        error(mean((p - t) ** 2).sqrt()),
        error((mean(d * d) - mean(d) ** 2).clamp_min(0.0).sqrt()),
        100.0 * mean(broken.to(p.dtype)),
    ]
    return torch.stack(cols, dim=1)


def per_image_disparity_shift(
    pred_log_disp: torch.Tensor, target_depth: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """`100 |b| / mean(1 / t)` per image, where `1 / t ~ s p + b` is the least-squares fit of the true
    disparity by the predicted one over the valid pixels (see the module docstring, "disp_shift").

    Args:
        pred_log_disp, target_depth: `(B, 1, H, W)`; valid: `(B, 1, H, W)` bool (target depth > 0 there).
    Returns:
        `(B,)`; 0 for an image without valid pixels, NaN for one with a non-finite prediction at a valid
        pixel. Invariant to the prediction's scale (a shift of its log-disparity).
    """
    finite = torch.isfinite(pred_log_disp)
    fit = valid & finite
    log_disp = torch.where(finite, pred_log_disp, torch.zeros_like(pred_log_disp))
    log_disp = log_disp - masked_median(log_disp, fit)[:, None, None, None]  # scale-free, no overflow
    disp = log_disp.exp()
    ok = fit & torch.isfinite(disp)
    target_disp = torch.where(valid, target_depth, torch.ones_like(target_depth)).reciprocal()
    shift = align_lstsq_scale_shift(disp, target_disp, ok).shift  # (B,)
    B = valid.shape[0]
    w = valid.reshape(B, -1).to(disp.dtype)
    mean_t = (target_disp.reshape(B, -1) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
    rel = 100.0 * shift.abs() / torch.where(mean_t > 0, mean_t, torch.ones_like(mean_t))
    broken = (valid & ~ok).flatten(1).any(dim=1)
    return torch.where(broken, torch.full_like(rel, float("nan")), rel)


class DepthMetrics(Metric):
    """Per-image-averaged depth metrics (GP2 protocol), DDP-synchronized by summed states.

    Args:
        alignment: one of `ALIGNMENTS` ("median_log_disparity": GP2 UTS; "lstsq_disparity": GP2 UTSS /
            MiDaS; "median_depth": Eigen/monodepth; "none": absolute depth).
        min_depth: target pixels with depth <= min_depth are invalid (GP2: `depth > 1e-8`,
            `datasets/validation_datasets.py:51`). Predictions are not clamped to it.
        max_depth: per-dataset depth cap: target pixels at or beyond it are invalid (GP2: masked where
            `depth >= cap_max`, `datasets/validation_datasets.py:53`); for "lstsq_disparity" only, the
            aligned depth is clamped to <= it (see `align_prediction`); None for no cap.
        prefix: prepended to every key of `compute()`.
        min_valid_pixels: an image with fewer valid pixels is skipped and not counted in the mean over
            images (GP2: `numel() > 10`, `metrics/logdisp_metrics.py:43`, `metrics/disp_metrics.py:46`).
    `update(pred_log_disp, target_depth, mask)` takes `(B, 1, H, W)` each (mask bool);
    `compute()` -> dict of `prefix + name` for `METRIC_NAMES` plus `prefix + "num_images"`; NaN values
    when no image was counted. A non-finite prediction at a valid pixel counts as bad (see
    `per_image_depth_metrics`): absrel, log10, rmse and si_log are then NaN for the whole epoch.
    """

    full_state_update = False
    higher_is_better = None

    def __init__(
        self,
        alignment: str = "median_log_disparity",
        min_depth: float = 1e-8,
        max_depth: float | None = None,
        prefix: str = "",
        min_valid_pixels: int = 11,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if alignment not in ALIGNMENTS:
            raise ValueError(f"Expected alignment to be one of {ALIGNMENTS}, got {alignment!r}")
        self.alignment = alignment
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.prefix = prefix
        self.min_valid_pixels = min_valid_pixels
        self.add_state(
            "sums", default=torch.zeros(len(METRIC_NAMES), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("num_images", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_log_disp: torch.Tensor, target_depth: torch.Tensor, mask: torch.Tensor) -> None:
        """Accumulate a batch: pred_log_disp, target_depth `(B, 1, H, W)`, mask `(B, 1, H, W)` bool."""
        check_map_and_mask(("pred_log_disp", "target_depth"), (pred_log_disp, target_depth), mask)
        if pred_log_disp.dtype in (torch.float16, torch.bfloat16):  # metrics in at least float32 under AMP
            pred_log_disp = pred_log_disp.float()
        target_depth = target_depth.to(pred_log_disp.dtype)
        valid = mask & torch.isfinite(target_depth) & (target_depth > self.min_depth)
        if self.max_depth is not None:  # strictly below the cap (GP2 masks depth >= cap_max)
            valid = valid & (target_depth < self.max_depth)
        pred = align_prediction(pred_log_disp.detach(), target_depth, valid, self.alignment, self.max_depth)
        per_image = per_image_depth_metrics(pred, target_depth, valid)  # (B, K - 1)
        shift = per_image_disparity_shift(pred_log_disp.detach(), target_depth, valid)  # (B,)
        per_image = torch.cat([per_image, shift[:, None]], dim=1)  # (B, K)
        counted = valid.flatten(1).sum(dim=1) >= max(self.min_valid_pixels, 1)  # (B,)
        per_image = torch.where(counted[:, None], per_image, torch.zeros_like(per_image))
        self.sums += per_image.sum(dim=0).to(self.sums.dtype)
        self.num_images += counted.sum().to(self.num_images.dtype)

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.num_images
        means = torch.where(n > 0, self.sums / n.clamp_min(1.0), torch.full_like(self.sums, float("nan")))
        out = {self.prefix + name: means[i] for i, name in enumerate(METRIC_NAMES)}
        out[self.prefix + "num_images"] = n
        return out


class WHDR(Metric):
    """Weighted Human Disagreement Rate on ordinal pairs (Chen et al. 2016, DIW), in percent.

    A pair is wrong when the predicted order disagrees with the annotation: with predicted log-disparity
    y, wrong iff `(y_B > y_A) != (rel > 0)` (rel = +1 when A is farther), as GP2's official eval does
    (ties count as "A not farther"). Every pair has weight 1 (DIW has one pair per image).
    A pair where either predicted value is not finite (NaN or +-inf) is wrong, whatever the annotation.
    `update(pred_log_disp (B, 1, H, W), ordinal (B, M, 5))`, rows `(yA, xA, yB, xB, rel)`, rel = 0 = padding.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("errors", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_log_disp: torch.Tensor, ordinal: torch.Tensor) -> None:
        """Accumulate wrong / total pairs of a batch."""
        check_map("pred_log_disp", pred_log_disp)
        y_a, y_b, rel, valid = sample_ordinal_pairs(pred_log_disp.detach(), ordinal)
        wrong = ((y_b > y_a) != (rel > 0)) | ~(torch.isfinite(y_a) & torch.isfinite(y_b))  # (B, M)
        self.errors += (wrong & valid).sum().to(self.errors.dtype)
        self.pairs += valid.sum().to(self.pairs.dtype)

    def compute(self) -> torch.Tensor:
        if self.pairs == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.pairs.device)
        return 100.0 * self.errors / self.pairs
