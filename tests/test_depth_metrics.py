"""Tests of geometry/depth_align.py and lightning_modules/depth_metrics.py (GP2 evaluation protocol)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from geometry.depth_align import (
    align_lstsq_scale_shift,
    align_median_depth_ratio,
    align_median_log_disparity,
    masked_median,
)
from helpers import TOL, assert_close
from lightning_modules.depth_metrics import ALIGNMENTS, WHDR, DepthMetrics, align_prediction

DTYPES = (torch.float32, torch.float64)


def depth_batch(B=3, H=6, W=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    depth = (torch.randn(B, 1, H, W, generator=g, dtype=dtype) * 0.5).exp() * 3.0
    mask = torch.rand(B, 1, H, W, generator=g) < 0.75
    mask[:, :, 0, 0] = True
    return depth, mask, g


# -------------------------------------------------------------------------------------------- alignment
def test_masked_median_matches_torch_median():
    x = torch.randn(4, 1, 5, 6, dtype=torch.float64)
    mask = torch.rand(4, 1, 5, 6) < 0.6
    mask[2] = False
    mask[3] = False
    mask[3, 0, 1, 1] = True
    got = masked_median(x, mask)
    expect = torch.stack([x[b][mask[b]].median() if mask[b].any() else x.new_zeros(()) for b in range(4)])
    assert_close(got, expect, "masked median")


@pytest.mark.parametrize("dtype", DTYPES)
def test_alignments_recover_known_scale_and_shift(dtype):
    depth, mask, g = depth_batch(dtype=dtype)
    disp = 1.0 / depth
    scales = torch.tensor([0.5, 3.0, 10.0], dtype=dtype)
    shifts = torch.tensor([0.2, -0.1, 1.0], dtype=dtype)
    s4 = scales[:, None, None, None]
    garbage = torch.where(mask, torch.zeros_like(depth), torch.full_like(depth, float("nan")))  # NaN off-mask

    a = align_median_log_disparity(disp / s4 + garbage, disp, mask)
    assert_close(a.scale, scales, "median log-disparity scale")
    assert_close(a.aligned[mask], disp[mask], "median log-disparity aligned")

    a = align_median_depth_ratio(depth * s4 + garbage, depth, mask)
    assert_close(a.scale, 1.0 / scales, "median depth ratio scale")
    assert_close(a.aligned[mask], depth[mask], "median depth ratio aligned")

    pred = (disp - shifts[:, None, None, None]) / s4  # target = scale * pred + shift
    a = align_lstsq_scale_shift(pred + garbage, disp, mask)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else TOL[dtype]
    assert_close(a.scale, scales, "lstsq scale", **tol)
    assert_close(a.shift, shifts, "lstsq shift", **tol)
    assert_close(a.aligned[mask], disp[mask], "lstsq aligned", **tol)


def test_lstsq_matches_linalg_lstsq_on_noisy_data():
    depth, mask, g = depth_batch()
    pred = torch.rand(depth.shape, generator=g, dtype=depth.dtype)
    a = align_lstsq_scale_shift(pred, depth, mask)
    for b in range(depth.shape[0]):
        p, t = pred[b][mask[b]], depth[b][mask[b]]
        A = torch.stack([p, torch.ones_like(p)], dim=1)
        sol = torch.linalg.lstsq(A, t[:, None]).solution[:, 0]
        assert_close(torch.stack([a.scale[b], a.shift[b]]), sol, f"lstsq sample {b}", rtol=1e-9, atol=1e-10)


def test_alignments_median_is_of_differences_as_official_eval():
    # GP2's eval shifts log-disparity by median(log t - log p), not median(log t) - median(log p).
    p = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64).view(1, 1, 1, 5)
    t = torch.tensor([1.0, 1.0, 1.0, 16.0, 16.0], dtype=torch.float64).view(1, 1, 1, 5)
    mask = torch.ones_like(p, dtype=torch.bool)
    # log2(t/p) = 0, -1, -2, 1, 0 -> median 0 -> scale 1; medians of log2 t, log2 p are 0, 2 -> 1/4.
    a = align_median_log_disparity(p, t, mask)
    assert_close(a.scale, torch.tensor([1.0]), "median of log ratios")


def test_alignments_empty_mask_and_constant_prediction():
    depth, mask, _ = depth_batch()
    empty = torch.zeros_like(mask)
    pred = depth.clone().requires_grad_(True)
    for fn in (align_median_log_disparity, align_median_depth_ratio, align_lstsq_scale_shift):
        a = fn(pred, depth * 2.0, empty)
        # exact: with no valid pixel the identity alignment is written as constants, nothing is estimated
        assert (a.scale == 1).all() and (a.shift == 0).all(), (
            f"{fn.__name__}: empty mask gives {a.scale}, {a.shift}"
        )
        (g,) = torch.autograd.grad(a.aligned.sum(), pred)
        assert torch.isfinite(a.aligned).all() and torch.isfinite(g).all(), (
            f"{fn.__name__}: NaN on empty mask"
        )
    const = torch.full_like(depth, 2.0)
    a = align_lstsq_scale_shift(const, depth, mask)
    mean_t = torch.stack([depth[b][mask[b]].mean() for b in range(depth.shape[0])])
    assert_close(a.aligned[:, 0, 0, 0], mean_t, "constant prediction -> mean target")
    with pytest.raises(ValueError, match="pred_disp"):
        align_lstsq_scale_shift(depth[:, 0], depth, mask)


# ---------------------------------------------------------------------------------------------- metrics
def metrics_of(alignment, pred_log_disp, depth, mask, **kw):
    m = DepthMetrics(alignment=alignment, **kw)
    m.update(pred_log_disp, depth, mask)
    return {k: v.item() for k, v in m.compute().items()}


def test_hand_computed_values_without_alignment():
    p = torch.tensor([1.0, 1.2, 2.0, 0.5], dtype=torch.float64).view(1, 1, 2, 2)
    t = torch.ones_like(p)
    out = metrics_of("none", -p.log(), t, torch.ones_like(p, dtype=torch.bool), min_valid_pixels=1)
    # ratios max(p/t, t/p) = 1, 1.2, 2, 2
    assert_close(out["delta125_bad"], 50.0, "delta125_bad")
    assert_close(out["delta1"], 0.5, "delta1")
    assert_close(out["delta2"], 0.5, "delta2")  # 2 > 1.5625
    assert_close(out["delta3"], 0.5, "delta3")  # 2 > 1.953125
    assert_close(out["absrel"], (0 + 0.2 + 1.0 + 0.5) / 4, "absrel")
    assert_close(out["log10"], (math.log10(1.2) + 2 * math.log10(2.0)) / 4, "log10")
    assert_close(out["rmse"], math.sqrt((0.04 + 1.0 + 0.25) / 4), "rmse")
    d = [0.0, math.log(1.2), math.log(2.0), -math.log(2.0)]
    mu = sum(d) / 4
    assert_close(out["si_log"], math.sqrt(sum(x * x for x in d) / 4 - mu * mu), "si_log")
    assert out["num_images"] == 1


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_perfect_prediction(alignment):
    depth, mask, _ = depth_batch()
    out = metrics_of(alignment, -depth.log(), depth, mask)
    for k in ("delta125_bad", "absrel", "log10", "rmse", "si_log"):
        assert abs(out[k]) < 1e-6, f"{alignment}: {k} = {out[k]} for a perfect prediction"
    for k in ("delta1", "delta2", "delta3"):
        assert abs(out[k] - 1.0) < 1e-12, f"{alignment}: {k} = {out[k]}"


def test_global_scale_removed_by_scale_alignment_only():
    depth, mask, _ = depth_batch()
    pred = -(depth * 3.0).log()  # depth predicted 3x too large
    for alignment in ("median_log_disparity", "median_depth", "lstsq_disparity"):
        out = metrics_of(alignment, pred, depth, mask)
        assert_close(out["delta125_bad"], 0.0, f"{alignment}: delta125_bad")
        assert out["absrel"] < 1e-9, f"{alignment}: {out}"
    out = metrics_of("none", pred, depth, mask)
    assert_close(out["delta125_bad"], 100.0, "none: delta125_bad")
    assert abs(out["absrel"] - 2.0) < 1e-9, f"none: {out}"


def test_disparity_shift_needs_lstsq():
    depth, mask, _ = depth_batch()
    pred = (2.0 / depth + 0.3).log()  # disparity up to scale and shift (a utss_disparity prediction)
    lstsq = metrics_of("lstsq_disparity", pred, depth, mask)
    med = metrics_of("median_log_disparity", pred, depth, mask)
    assert lstsq["absrel"] < 1e-9, f"lstsq: {lstsq}"
    assert med["absrel"] > 1e-2, f"median alignment should not remove a shift: {med}"


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_disp_shift_is_the_relative_shift_of_the_prediction(alignment):
    """A prediction k / z + c has shift |c| / (k mean(1 / z)) of the true mean disparity, whatever the
    alignment; a prediction right up to scale has none."""
    depth, mask, _ = depth_batch()
    k, c = 2.0, 0.3
    out = metrics_of(alignment, (k / depth + c).log(), depth, mask)
    expect = [100.0 * c / (k * (1.0 / depth[b][mask[b]]).mean()) for b in range(depth.shape[0])]
    assert_close(out["disp_shift"], torch.stack(expect).mean(), f"{alignment}: disp_shift")
    scaled = metrics_of(alignment, -(depth * 7.0).log(), depth, mask)
    assert abs(scaled["disp_shift"]) < 1e-9, f"{alignment}: {scaled['disp_shift']} for a scaled prediction"


def test_disp_shift_nan_for_a_nonfinite_prediction():
    depth, mask, _ = depth_batch()
    pred = -depth.log()
    pred[0, 0, 0, 0] = float("nan")  # a valid pixel (depth_batch keeps (0, 0) valid)
    assert math.isnan(metrics_of("median_log_disparity", pred, depth, mask)["disp_shift"])


def test_per_image_average_differs_from_pixel_pooling():
    t = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    p = t.clone()
    p[0, 0, 0, 0] = 2.0  # image 0: its only valid pixel is bad
    mask = torch.zeros_like(t, dtype=torch.bool)
    mask[0, 0, 0, 0] = True
    mask[1, 0, :, :] = True
    mask[1, 0, 1, 1] = False  # image 1: 3 valid good pixels
    out = metrics_of("none", -p.log(), t, mask, min_valid_pixels=1)
    assert_close(out["delta125_bad"], 50.0, "per-image mean (100 + 0) / 2")  # pooled would be 25
    assert_close(out["absrel"], 0.5, "per-image absrel (1 + 0) / 2")  # pooled would be 0.25


# GP2's official metric code, saic-vul/geometry-preserving-de (read for its rules; not copied):
#   validity (datasets/validation_datasets.py:49-54): depth > 1e-8, not <= cap_min (0), not >= cap_max;
#   caps (same file): Sintel 72 (l.108), TUM 10 (l.149), NYU 10 (l.176), ETH3D 72 (l.201);
#   skip an image unless numel() > 10 (metrics/logdisp_metrics.py:43, metrics/disp_metrics.py:46);
#   UTS (logdisp_metrics.py:39-45): log depth of the prediction shifted by the torch (lower) median of
#     log t - log p, no clamp; UTSS (disp_metrics.py:6-22, 46-49): least squares s p + b ~ 1 / t in disparity
#     (2x2 normal equations), disparity clamped to [1 / cap, inf), depth = 1 / disparity;
#   per image: d1 / d2 / d3 = share of max(p/t, t/p) > 1.25, 1.25^2, 1.25^3, rel = mean |p - t| / t,
#     log10 = mean |log10 p - log10 t|; then the mean over the counted images (eval.py:56-63).
GP2_MIN_GT_DEPTH = 1e-8
GP2_THRESHOLDS = (1.25, 1.25**2, 1.25**3)


def _gp2_scores(pd: list[float], td: list[float]) -> dict[str, float]:
    """One image's GP2 metrics from aligned and target depths (Python floats, float64)."""
    n = len(td)
    ratio = [max(p / t, t / p) for p, t in zip(pd, td)]
    out = {f"bad{k}": sum(r > thr for r in ratio) / n for k, thr in enumerate(GP2_THRESHOLDS, 1)}
    # pixels whose ratio is within float32 rounding of a threshold may fall either way
    out["ambiguous"] = sum(any(abs(r / thr - 1.0) < 1e-5 for thr in GP2_THRESHOLDS) for r in ratio) / n
    out["rel"] = math.fsum(abs(p - t) / t for p, t in zip(pd, td)) / n
    out["log10"] = math.fsum(abs(math.log10(p) - math.log10(t)) for p, t in zip(pd, td)) / n
    return out


def gp2_official_reference(pred_log_disp, depth, mask, cap):
    """GP2's official UTS and UTSS metrics, one image and one pixel at a time in float64 Python floats.

    Returns (uts, utss, stats): the means over counted images of `_gp2_scores` plus "num_images", and
    counts showing which rules the inputs exercise.
    """
    per = {"uts": [], "utss": []}
    stats = {"uts_above_cap": 0, "utss_clamped": 0}
    for b in range(depth.shape[0]):
        pl = pred_log_disp[b].double().flatten().tolist()
        t = depth[b].double().flatten().tolist()
        m = mask[b].flatten().tolist()
        idx = [i for i in range(len(t)) if m[i] and t[i] > GP2_MIN_GT_DEPTH and not t[i] >= cap]
        if not len(idx) > 10:
            continue
        td = [t[i] for i in idx]
        # UTS: log depth, shifted by the lower median of the log differences, not clamped
        log_p = [-pl[i] for i in idx]
        diffs = sorted(math.log(x) - y for x, y in zip(td, log_p))
        med = diffs[(len(diffs) - 1) // 2]
        uts = [math.exp(y + med) for y in log_p]
        stats["uts_above_cap"] += sum(x > cap for x in uts)
        # UTSS: least squares in disparity from the normal equations, then disparity >= 1 / cap
        p = [math.exp(pl[i]) for i in idx]
        g = [1.0 / x for x in td]
        n = len(p)
        spp, sp = math.fsum(x * x for x in p), math.fsum(p)
        sgp, sg = math.fsum(x * y for x, y in zip(p, g)), math.fsum(g)
        det = spp * n - sp * sp
        s, sh = (n * sgp - sp * sg) / det, (spp * sg - sp * sgp) / det
        disp = [s * x + sh for x in p]
        stats["utss_clamped"] += sum(d < 1.0 / cap for d in disp)
        utss = [1.0 / max(d, 1.0 / cap) for d in disp]
        per["uts"].append(_gp2_scores(uts, td))
        per["utss"].append(_gp2_scores(utss, td))
    means = []
    for rows in (per["uts"], per["utss"]):
        mean = {k: math.fsum(r[k] for r in rows) / len(rows) for k in rows[0]}
        mean["num_images"] = len(rows)
        means.append(mean)
    return means[0], means[1], stats


def gp2_protocol_batch(dtype, cap=10.0, seed=0):
    """5 images of 6x8: depths around cap / 2 with some beyond the cap, some exactly at it (with a wild
    prediction there), an image with 10 valid pixels (skipped) and one with 11 (counted)."""
    g = torch.Generator().manual_seed(seed)
    B, H, W = 5, 6, 8
    depth = (torch.randn(B, 1, H, W, generator=g, dtype=torch.float64) * 0.6).exp() * (cap / 2)
    pred = -depth.log() + 0.4 * torch.randn(B, 1, H, W, generator=g, dtype=torch.float64) + 1.5
    mask = torch.rand(B, 1, H, W, generator=g) < 0.85
    at_cap = torch.zeros_like(mask)
    at_cap[[0, 0, 3, 4], 0, [0, 1, 2, 5], [0, 3, 4, 7]] = True
    depth[at_cap] = cap
    mask[at_cap] = True
    pred[at_cap] = 6.0  # depth ~ e^-6: very wrong, and an outlier for either fit
    depth[0, 0, 5, 0], depth[3, 0, 5, 1] = 1e9, float("inf")  # "sky"
    depth[4, 0, 5, 2], depth[4, 0, 5, 3] = 0.0, 5e-9  # below GP2's 1e-8
    mask[4, 0, 5, 2:4] = True
    for b, k in ((1, 10), (2, 11)):  # exactly k valid pixels, all of them well inside (1e-8, cap)
        mask[b] = False
        mask[b, 0, 1, :k] = mask[b, 0, 2, : max(k - W, 0)] = True
        depth[b] = depth[b].clamp(max=0.9 * cap)
    pred[1] = pred[1] + 4.0 * torch.randn(H, W, generator=g, dtype=torch.float64)  # would move any mean
    return pred.to(dtype), depth.to(dtype), mask, at_cap


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_gp2_official_metric_code(dtype):
    cap = 10.0
    pred, depth, mask, at_cap = gp2_protocol_batch(dtype, cap)
    assert (depth[mask] == cap).sum() == 4 and (depth[mask] > cap).sum() >= 2
    uts, utss, stats = gp2_official_reference(pred, depth, mask, cap)
    # the inputs exercise the rules: the UTS alignment puts pixels beyond the cap (a clamp would change
    # them), the UTSS one clamps some, and one image of five is skipped
    assert stats["uts_above_cap"] > 0 and stats["utss_clamped"] > 0, stats
    assert uts["num_images"] == utss["num_images"] == 4
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-6)
    for alignment, ref in (("median_log_disparity", uts), ("lstsq_disparity", utss)):
        m = DepthMetrics(alignment=alignment, max_depth=cap)  # GP2's defaults otherwise
        m.update(pred[:3], depth[:3], mask[:3])  # two batches: the mean is over images, not batches
        m.update(pred[3:], depth[3:], mask[3:])
        out = {k: v.item() for k, v in m.compute().items()}
        assert out["num_images"] == 4, f"{alignment}: {out['num_images']}"
        # one flipped pixel moves a percentage by >= 100 / 48 / 4; float32 sums round at ~1e-5 of it
        slack = 100.0 * ref["ambiguous"] + (1e-9 if dtype == torch.float64 else 1e-4)
        assert abs(out["delta125_bad"] - 100.0 * ref["bad1"]) <= slack, f"{alignment}: {out} vs {ref}"
        for k in (1, 2, 3):  # delta_k = share of good pixels, max(p/t, t/p) < 1.25^k
            assert abs(out[f"delta{k}"] - (1.0 - ref[f"bad{k}"])) <= slack / 100.0, f"{alignment} delta{k}"
        assert_close(out["absrel"], ref["rel"], f"{alignment}: absrel vs GP2", **tol)
        assert_close(out["log10"], ref["log10"], f"{alignment}: log10 vs GP2", **tol)
        assert out["nonfinite"] == 0.0


def test_cap_clamps_the_lstsq_alignment_only():
    # the median alignment keeps an aligned depth beyond the cap (GP2's UTS, logdisp_metrics.py:43-45); the
    # lstsq one clamps the aligned disparity to >= 1 / cap, as GP2's depth_cap (disp_metrics.py:20-22)
    depth = torch.linspace(2.0, 9.9, 24, dtype=torch.float64).view(1, 1, 4, 6)
    mask = torch.ones_like(depth, dtype=torch.bool)
    pred = -depth.log() + 0.7
    pred[0, 0, 0, 0] = -(depth[0, 0, 0, 0] * 8.0).log() + 0.7  # aligned depth 16 > cap 10
    med = align_prediction(pred, depth, mask, "median_log_disparity", 10.0)
    assert_close(med[0, 0, 0, 0], 16.0, "median alignment is not clamped")
    out = metrics_of("median_log_disparity", pred, depth, mask, max_depth=10.0)
    assert_close(out["absrel"], 7.0 / 24.0, "UTS absrel of the one pixel 8x too far, unclamped")
    # lstsq: an exact affine fit on the other pixels; pixel 0 (not fit) gets aligned disparity 0.07
    fit = mask.clone()
    fit[0, 0, 0, 0] = False
    pred_disp = (1.0 / depth - 0.05) / 2.0  # aligned = 2 p + 0.05
    pred_disp[0, 0, 0, 0] = 0.01
    capped = align_prediction(pred_disp.log(), depth, fit, "lstsq_disparity", 10.0)
    free = align_prediction(pred_disp.log(), depth, fit, "lstsq_disparity", None)
    assert_close(capped[fit], depth[fit], "lstsq fit pixels")
    assert_close(capped[0, 0, 0, 0], 10.0, "lstsq aligned depth 1 / 0.07 clamped to the cap")
    assert_close(free[0, 0, 0, 0], 1.0 / 0.07, "without a cap the lstsq alignment is not clamped")


def test_lstsq_without_cap_nonpositive_disparity_is_broken_not_clamped():
    # no cap: GP2's depth = 1 / disparity; an aligned disparity <= 0 is no depth, so the pixel is NaN
    # (a broken prediction for the metrics), not clamped to a huge depth
    depth = torch.linspace(2.0, 9.9, 24, dtype=torch.float64).view(1, 1, 4, 6)
    fit = torch.ones_like(depth, dtype=torch.bool)
    fit[0, 0, 0, :2] = False
    pred_disp = (1.0 / depth + 0.05) / 2.0  # aligned = 2 p - 0.05
    pred_disp[0, 0, 0, 0] = 0.01  # aligned disparity -0.03
    pred_disp[0, 0, 0, 1] = 0.02  # aligned disparity -0.01
    free = align_prediction(pred_disp.log(), depth, fit, "lstsq_disparity", None)
    assert torch.isnan(free[0, 0, 0, :2]).all(), free[0, 0, 0, :2]
    assert_close(free[fit], depth[fit], "lstsq fit pixels")
    capped = align_prediction(pred_disp.log(), depth, fit, "lstsq_disparity", 10.0)
    assert_close(capped[0, 0, 0, :2], torch.full((2,), 10.0, dtype=torch.float64), "clamped to the cap")


def test_gp2_validity_rule_and_min_valid_pixels():
    # GP2: valid iff 1e-8 < depth < cap; an image needs > 10 valid pixels (validation_datasets.py:49-54,
    # logdisp_metrics.py:43). A wrong prediction at an invalid pixel changes nothing, at a valid one it does.
    depth = torch.linspace(2.0, 8.0, 16, dtype=torch.float64).view(1, 1, 4, 4)
    mask = torch.ones_like(depth, dtype=torch.bool)
    pred = -depth.log()
    others = mask.clone()
    others[0, 0, 0, 0] = False
    for value, scored in ((1e-8, False), (2e-8, True), (10.0, False), (math.nextafter(10.0, 0.0), True)):
        d = depth.clone()
        d[0, 0, 0, 0] = value
        p = pred.clone()
        p[0, 0, 0, 0] = -math.log(value) + 3.0  # depth e^3 times too small
        for alignment in ("none", "median_log_disparity", "lstsq_disparity"):
            out = metrics_of(alignment, p, d, mask, max_depth=10.0)
            without = metrics_of(alignment, p, d, others, max_depth=10.0)
            assert out["num_images"] == 1
            same = all(out[k] == without[k] for k in out)
            assert same != scored, f"depth {value} ({alignment}): {out} vs without the pixel {without}"
        bad = metrics_of("none", p, d, mask, max_depth=10.0)["delta125_bad"]  # that pixel alone is bad
        assert_close(bad, 100.0 / 16 if scored else 0.0, f"depth {value}: delta125_bad")
    for k, counted in ((10, 0), (11, 1)):
        m = torch.zeros_like(mask)
        m.view(-1)[:k] = True
        assert metrics_of("median_log_disparity", pred, depth, m)["num_images"] == counted, k


def test_no_clamp_of_the_prediction_below():
    # the suite used to clamp predictions to >= min_depth; GP2 does not: a prediction of 1e-5 m at a 1 m
    # pixel has absrel 1 - 1e-5 and log10 error 5, not that of 1e-3 m
    depth = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    pred = -depth.log()
    pred[0, 0, 0, 0] = -math.log(1e-5)
    out = metrics_of("none", pred, depth, torch.ones_like(depth, dtype=torch.bool))
    assert_close(out["absrel"], (1 - 1e-5) / 16, "absrel without a lower clamp")
    assert_close(out["log10"], 5.0 / 16, "log10 without a lower clamp")


def test_two_halves_equal_all_and_merge_state():
    depth, mask, g = depth_batch(B=6)
    pred = -depth.log() + 0.2 * torch.randn(depth.shape, generator=g, dtype=depth.dtype)
    whole = DepthMetrics(prefix="val/")
    whole.update(pred, depth, mask)
    seq = DepthMetrics(prefix="val/")
    seq.update(pred[:2], depth[:2], mask[:2])
    seq.update(pred[2:], depth[2:], mask[2:])
    other = DepthMetrics(prefix="val/")  # as a second DDP rank would hold
    first = DepthMetrics(prefix="val/")
    first.update(pred[:4], depth[:4], mask[:4])
    other.update(pred[4:], depth[4:], mask[4:])
    first.merge_state(other)
    ref = whole.compute()
    assert set(ref) >= {"val/delta125_bad", "val/delta1", "val/absrel", "val/rmse", "val/num_images"}
    for name, m in (("sequential", seq), ("merged", first)):
        got = m.compute()
        for k in ref:
            assert_close(got[k], ref[k], f"{name} {k}", rtol=1e-12, atol=1e-12)


def test_validity_rules_and_empty():
    depth, mask, _ = depth_batch(B=2)
    with warnings.catch_warnings():  # torchmetrics warns about compute() before update()
        warnings.simplefilter("ignore")
        assert math.isnan(DepthMetrics().compute()["delta1"]), "no image -> NaN"
        assert math.isnan(WHDR().compute().item()), "no pair -> NaN"
    out = metrics_of("none", -depth.log(), depth, torch.zeros_like(mask))
    assert out["num_images"] == 0 and math.isnan(out["absrel"])
    # depth <= min_depth and depth > max_depth pixels are ignored: a wrong prediction there changes nothing
    pred = -depth.log()
    bad_pred = pred.clone()
    far = depth > 3.0
    bad_pred[far] = -5.0
    a = metrics_of("none", pred, depth, mask, max_depth=3.0)
    b = metrics_of("none", bad_pred, depth, mask, max_depth=3.0)
    assert a.keys() == b.keys() and a["absrel"] < 1e-9, f"{a} vs {b}"
    for k in a:
        assert_close(b[k], a[k], f"{k} with a wrong prediction at ignored pixels")
    few = metrics_of("none", pred, depth, mask, min_valid_pixels=10**6)
    assert few["num_images"] == 0


# ------------------------------------------------------------------------------------ non-finite predictions
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_all_nan_prediction_is_all_bad_never_perfect(alignment):
    # a diverged run (model.lr=1e6) predicts NaN everywhere: it must read as the worst score, not 0% bad
    depth, mask, _ = depth_batch()
    out = metrics_of(alignment, torch.full_like(depth, float("nan")), depth, mask, max_depth=10.0)
    assert out["num_images"] == depth.shape[0], out
    assert_close(out["delta125_bad"], 100.0, f"{alignment}: delta125_bad")
    assert_close(out["nonfinite"], 100.0, f"{alignment}: nonfinite")
    for k in ("delta1", "delta2", "delta3"):
        assert_close(out[k], 0.0, f"{alignment}: {k} for an all-NaN prediction")
    for k in ("absrel", "log10", "rmse", "si_log"):
        assert not math.isfinite(out[k]), f"{alignment}: {k} = {out[k]} for an all-NaN prediction"


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_a_few_nonfinite_pixels_are_exactly_the_bad_ones(alignment):
    depth, mask, _ = depth_batch(B=3, H=6, W=7)
    pred = -depth.log()  # perfect everywhere else
    broken = torch.zeros_like(mask)
    broken[0, 0, 0, :3] = True  # 3 pixels of image 0, 1 of image 1, none of image 2
    broken[1, 0, 2, 2] = True
    mask[broken] = True  # they are valid pixels
    pred[0, 0, 0, 0] = float("nan")
    pred[0, 0, 0, 1] = float("inf")  # disparity inf: depth 0
    pred[0, 0, 0, 2] = float("-inf")  # depth inf
    pred[1, 0, 2, 2] = float("nan")
    n = mask.flatten(1).sum(dim=1).double()  # (B,) valid pixels per image
    k = broken.flatten(1).sum(dim=1).double()  # (B,) = 3, 1, 0
    out = metrics_of(alignment, pred, depth, mask)
    # per-image average of 100 k / n: the broken pixels are bad, every other (perfect) pixel good,
    # for the alignments too: the broken pixels neither enter the fit nor come out of it finite
    assert_close(out["delta125_bad"], (100.0 * k / n).mean().item(), f"{alignment} delta125_bad")
    assert_close(out["nonfinite"], (100.0 * k / n).mean().item(), f"{alignment} nonfinite")
    for name in ("delta1", "delta2", "delta3"):
        assert_close(out[name], (1.0 - k / n).mean().item(), f"{alignment} {name}")
    assert math.isnan(out["absrel"]) and math.isnan(out["rmse"]), f"{alignment}: {out}"
    # the image without a broken pixel keeps its finite, perfect errors
    clean = metrics_of(alignment, pred[2:], depth[2:], mask[2:])
    assert clean["absrel"] < 1e-9, clean
    assert_close(clean["nonfinite"], 0.0, f"{alignment}: clean nonfinite")
    assert_close(clean["delta125_bad"], 0.0, f"{alignment}: clean delta125_bad")


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_alignment_keeps_nan_pixels_nan_and_fits_on_the_others(alignment):
    depth, mask, g = depth_batch(B=2, H=5, W=6)
    pred = -depth.log() + 0.3 * torch.randn(depth.shape, generator=g, dtype=depth.dtype)
    broken = torch.zeros_like(mask)
    broken[0, 0, 1, 1:4] = True
    broken[1] = mask[1]  # image 1: every valid pixel NaN
    mask = mask | broken
    got = align_prediction(pred.masked_fill(broken, float("nan")), depth, mask, alignment, 10.0)
    assert torch.isnan(got[broken]).all(), f"{alignment}: a NaN prediction came out finite"
    expect = align_prediction(pred, depth, mask & ~broken, alignment, 10.0)  # fit without those pixels
    keep = mask & ~broken
    assert_close(got[keep], expect[keep], f"{alignment}: finite pixels", rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alignment", ("median_log_disparity", "median_depth", "lstsq_disparity"))
def test_global_log_disparity_shift_does_not_overflow_float32(alignment):
    # GP2's loss is blind to a global shift of log-disparity, and exp(+-100) overflows float32
    depth, mask, g = depth_batch(B=2, dtype=torch.float32)
    pred = -depth.log() + 0.2 * torch.randn(depth.shape, generator=g)
    base = metrics_of(alignment, pred, depth, mask)
    for shift in (100.0, -100.0):
        far = metrics_of(alignment, pred + shift, depth, mask)
        assert_close(far["nonfinite"], 0.0, f"{alignment} shift {shift}: nonfinite")
        for key in ("delta125_bad", "delta1", "absrel", "rmse"):
            assert far[key] == pytest.approx(base[key], rel=1e-4, abs=1e-6), f"{alignment} {shift} {key}"


def test_whdr_counts_a_nonfinite_prediction_as_wrong():
    y = torch.tensor([[0.0, 1.0], [float("nan"), float("inf")]]).view(1, 1, 2, 2)
    ordinal = torch.tensor(
        [
            [
                [0, 0, 0, 1, 1],  # y_B > y_A, A farther: right
                [0, 0, 1, 0, 1],  # NaN at B: a NaN comparison is False, which would read "right" here
                [1, 0, 0, 1, -1],  # NaN at A
                [1, 1, 0, 0, -1],  # inf at A (A nearer would be "right" by comparison)
                [0, 0, 0, 0, 0],  # padding
            ]
        ]
    )
    w = WHDR()
    w.update(y, ordinal)
    assert_close(w.compute(), 75.0, "WHDR: 3 of 4 pairs touch a non-finite prediction")


# ------------------------------------------------------------------------------------------------- WHDR
def test_whdr_by_hand():
    # log-disparity y: larger y = nearer. rel = +1 when A is farther.
    y = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    ordinal = torch.tensor(
        [
            [[0, 0, 1, 1, 1], [1, 1, 0, 0, -1], [0, 1, 1, 0, 0]],  # right, right, padding
            [[0, 0, 0, 1, -1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0]],  # wrong, tie counted as wrong, padding
        ]
    )
    w = WHDR()
    w.update(y[:1], ordinal[:1])
    assert_close(w.compute(), 0.0, "WHDR 0 wrong of 2")
    w.update(y[1:], ordinal[1:])
    assert_close(w.compute(), 50.0, "WHDR 2 wrong of 4")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    depth, mask, g = depth_batch()
    pred = -depth.log() + 0.2 * torch.randn(depth.shape, generator=g, dtype=depth.dtype)
    for alignment in ALIGNMENTS:
        cpu = metrics_of(alignment, pred, depth, mask)
        m = DepthMetrics(alignment=alignment).cuda()
        m.update(pred.cuda(), depth.cuda(), mask.cuda())
        gpu = {k: v.item() for k, v in m.compute().items()}
        for k in cpu:
            assert abs(cpu[k] - gpu[k]) <= 1e-9 * (1 + abs(cpu[k])), f"{alignment} {k}: {cpu[k]} vs {gpu[k]}"
