"""Tests of losses/depth.py: the sorted pairwise L1 against an O(N^2) reference, closed forms, NaN safety,
invariances, and the GP2 mixture composition."""

from __future__ import annotations

import math

import pytest
import torch

from geometry.depth_align import masked_median
from helpers import assert_close
from losses.depth import (
    DEPTH_TYPES,
    LOSS_KINDS,
    GP2Loss,
    _ascending_sort_keys,
    _masked_lower_median,
    gp2_mixture_loss,
    l1_loss,
    l2_loss,
    normalize_disparity,
    ordinal_ranking_loss,
    pairwise_l1_loss,
    pairwise_l2_loss,
    si_l1_loss,
    si_l2_loss,
    si_loss,
    ssi_loss,
)

DTYPES = (torch.float32, torch.float64)


def random_batch(B=4, H=5, W=7, dtype=torch.float64, p_valid=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(B, 1, H, W, generator=g, dtype=dtype)
    target = torch.randn(B, 1, H, W, generator=g, dtype=dtype)
    mask = torch.rand(B, 1, H, W, generator=g) < p_valid
    mask[-1] = False  # one sample without valid pixels
    mask[0, 0, 0, :] = True
    return pred, target, mask


def pairwise_l1_naive(pred, target, mask):
    """O(N^2) reference: explicit sum over all ordered valid pairs, one sample at a time."""
    out = []
    for b in range(pred.shape[0]):
        p, t = pred[b][mask[b]], target[b][mask[b]]
        n = p.numel()
        s = ((p[:, None] - p[None, :]) - (t[:, None] - t[None, :])).abs().sum()
        out.append(s / n**2 if n else s * 0)
    return torch.stack(out)


def pairwise_l2_naive(pred, target, mask):
    out = []
    for b in range(pred.shape[0]):
        p, t = pred[b][mask[b]], target[b][mask[b]]
        n = p.numel()
        s = (((p[:, None] - p[None, :]) - (t[:, None] - t[None, :])) ** 2).sum()
        out.append(s / n**2 if n else s * 0)
    return torch.stack(out)


# --------------------------------------------------------------------------------------------- pairwise
def test_sorted_rank_identity_by_hand():
    # r = (3, -1, 0.5): sum_{i,j} |r_i - r_j| = 2 (4 + 2.5 + 1.5) = 16; sorted (-1, 0.5, 3), N = 3:
    # 2 * ((-2)(-1) + 0 * 0.5 + 2 * 3) = 16. Loss = 16 / 9.
    pred = torch.tensor([3.0, -1.0, 0.5, 100.0]).view(1, 1, 2, 2)
    target = torch.zeros_like(pred)
    mask = torch.tensor([True, True, True, False]).view(1, 1, 2, 2)
    got = pairwise_l1_loss(pred, target, mask)
    assert abs(got.item() - 16.0 / 9.0) < 1e-6, f"got {got.item()}, expected {16 / 9}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_l1_matches_naive_values_and_gradients(dtype):
    pred, target, mask = random_batch(B=4, H=6, W=9, dtype=dtype)
    pred.requires_grad_(True)
    target.requires_grad_(True)
    fast = pairwise_l1_loss(pred, target, mask)
    slow = pairwise_l1_naive(pred, target, mask)
    assert_close(fast, slow, "pairwise L1 value")
    assert fast[-1].item() == 0.0, "empty sample must give 0"  # exact: an empty sum, no rounding
    up = torch.randn(fast.shape, dtype=dtype)  # same random upstream gradient through both paths
    gf = torch.autograd.grad((fast * up).sum(), (pred, target))
    gs = torch.autograd.grad((slow * up).sum(), (pred, target))
    for a, b, n in zip(gf, gs, ("pred", "target")):
        assert_close(a, b, f"pairwise L1 grad wrt {n}")


def test_pairwise_l1_gradcheck():
    pred, target, mask = random_batch(B=3, H=2, W=3, dtype=torch.float64)
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: pairwise_l1_loss(p, target, mask), (pred,), eps=1e-6, atol=1e-7)


def test_pairwise_l1_shift_invariant_and_symmetric():
    pred, target, mask = random_batch()
    base = pairwise_l1_loss(pred, target, mask)
    assert_close(pairwise_l1_loss(pred + 3.7, target, mask), base, "shift of pred")
    assert_close(pairwise_l1_loss(target, pred, mask), base, "swap pred/target")


@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_l2_matches_naive_and_closed_form(dtype):
    pred, target, mask = random_batch(dtype=dtype)
    pred.requires_grad_(True)
    fast = pairwise_l2_loss(pred, target, mask)
    slow = pairwise_l2_naive(pred, target, mask)
    assert_close(fast, slow, "pairwise L2 value")
    r = (pred - target)[0][mask[0]]
    closed = 2.0 * ((r**2).mean() - r.mean() ** 2)  # factor 2: ordered pairs
    assert_close(fast[0], closed, "2 (mean r^2 - mean(r)^2)")
    gf = torch.autograd.grad(fast.sum(), pred)[0]
    gs = torch.autograd.grad(slow.sum(), pred)[0]
    assert_close(gf, gs, "pairwise L2 grad")


# --------------------------------------------------------------------- private helpers: median, sort keys
def median_rows(n_valid=(0, 1, 2, 3, 4, 50, 51, 100, 101), P=101, dtype=torch.float64, seed=0):
    """Rows of P values with the given valid counts (valid entries scattered at random places), ties and
    negative values included; invalid entries are NaN, so that any use of them shows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-20, 20, (len(n_valid), P), generator=g).to(dtype) / 4  # many ties
    m = torch.zeros(len(n_valid), P, dtype=torch.bool)
    for i, n in enumerate(n_valid):
        m[i, torch.randperm(P, generator=g)[:n]] = True
    return torch.where(m, x, float("nan")), m


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_lower_median_is_torch_median_per_row(dtype):
    x, m = median_rows(dtype=dtype)
    x.requires_grad_(True)
    got = _masked_lower_median(x, m)
    for i in range(x.shape[0]):
        v = x[i][m[i]].detach()
        # exact: the median selects one of the row's values (torch.median: the lower of the two middle ones)
        expect = v.median().item() if v.numel() else 0.0
        assert got[i].item() == expect, f"row {i} ({v.numel()} valid): got {got[i].item()}, expected {expect}"
    assert torch.equal(got, masked_median(x.detach(), m)), "differs from geometry.masked_median"
    (grad,) = torch.autograd.grad(got.sum(), x)
    assert torch.isfinite(grad).all(), "NaN at invalid entries leaked into the gradient"
    n = m.sum(1)
    # exact: the gradient is one 1 at a valid entry holding the median, 0 elsewhere (and 0 for an empty row)
    assert torch.equal(grad.sum(1), (n > 0).to(dtype)), f"gradient mass per row {grad.sum(1)}"
    assert (grad[~m] == 0).all() and ((grad == 0) | (grad == 1)).all()
    hit = grad.argmax(1)
    assert torch.equal(x.detach().gather(1, hit[:, None])[n > 0, 0], got.detach()[n > 0])


def test_masked_lower_median_all_invalid_and_full_rows():
    x = torch.tensor([[3.0, 1.0, 2.0, 5.0], [float("inf"), float("nan"), 0.0, 1.0]])
    m = torch.tensor([[True, True, True, True], [False, False, False, False]])
    got = _masked_lower_median(x, m)
    assert got.tolist() == [2.0, 0.0], f"got {got.tolist()}"  # exact: (1, 2, 3, 5) -> lower median 2


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16, torch.float32, torch.float64))
def test_ascending_sort_keys_sort_like_the_floats(dtype):
    tiny = torch.finfo(dtype).tiny
    special = [0.0, -0.0, 1.0, -1.0, tiny, -tiny, tiny / 4, -tiny / 4, float("inf"), float("-inf"), 2.5, -2.5]
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.tensor(special, dtype=dtype), (torch.randn(200, generator=g) * 1e3).to(dtype)])
    x = x[torch.randperm(x.numel(), generator=g)].repeat(2, 1)  # (2, P)
    m = torch.ones_like(x, dtype=torch.bool)
    m[1, ::3] = False
    keys = _ascending_sort_keys(x, m)
    assert not keys.dtype.is_floating_point, keys.dtype
    for i in range(2):
        order = keys[i].argsort()
        n = int(m[i].sum())
        assert m[i][order[:n]].all(), f"row {i}: an invalid entry sorts before a valid one"
        # exact: sorting permutes values; -0.0 == 0.0, so ties compare equal in either order
        assert torch.equal(x[i][order[:n]], x[i][m[i]].sort().values), f"row {i}: order differs from sort"


def test_pairwise_l1_ties_constant_and_empty_rows_match_naive():
    pred = torch.tensor([1.0, 1.0, 1.0, -2.0, 0.5, 0.5]).repeat(4, 1).view(4, 1, 2, 3).double()
    target = torch.zeros_like(pred)
    target[1] = pred[1] - 0.25  # constant residual: loss 0
    mask = torch.ones_like(pred, dtype=torch.bool)
    mask[2, 0, 0, :2] = False
    mask[3] = False
    pred.requires_grad_(True)
    fast = pairwise_l1_loss(pred, target, mask)
    assert_close(fast, pairwise_l1_naive(pred, target, mask), "pairwise L1 with ties")
    assert fast[1].item() == 0.0 and fast[3].item() == 0.0, f"constant / empty rows: {fast}"  # exact sums
    (grad,) = torch.autograd.grad(fast.sum(), pred)
    assert torch.isfinite(grad).all() and (grad[~mask] == 0).all(), f"grad {grad}"
    # ties: any split of the tied ranks is a subgradient; the sum over a tied group is fixed
    (g_naive,) = torch.autograd.grad(pairwise_l1_naive(pred, target, mask).sum(), pred)
    assert_close(grad[0, 0, 0, :3].sum(), g_naive[0, 0, 0, :3].sum(), "tied group's gradient sum")


def test_mixture_constant_and_empty_masks_are_nan_free():
    pred = torch.zeros(3, 1, 4, 4, dtype=torch.float64, requires_grad=True)  # constant prediction
    target = torch.full((3, 1, 4, 4), 2.0, dtype=torch.float64)  # constant depth / disparity
    mask = torch.ones(3, 1, 4, 4, dtype=torch.bool)
    mask[2] = False
    loss = gp2_mixture_loss(pred, target, mask, ["absolute", "utss_disparity", "uts"])
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), f"loss {loss}, grad finite?"
    # ~0, not exactly: a constant residual r sums (2k - N + 1) r over the ranks with rounding
    assert_close(loss.detach(), torch.zeros_like(loss), "constant truth predicted by a constant")


# -------------------------------------------------------------------------------------------- pointwise
def test_pointwise_losses_against_per_sample_loop():
    pred, target, mask = random_batch(B=3, H=5, W=5)
    for b in range(2):
        r = (pred - target)[b][mask[b]]
        expect = {
            "l1": r.abs().mean(),
            "l2": (r**2).mean(),
            "si_l1": (r - r.median()).abs().mean(),  # torch.median: lower median
            "si_l2": (r**2).mean() - (r.mean()) ** 2,
            "si_l2_half": (r**2).mean() - 0.5 * (r.mean()) ** 2,  # Eigen et al. training lambda
        }
        got = {
            "l1": l1_loss(pred, target, mask)[b],
            "l2": l2_loss(pred, target, mask)[b],
            "si_l1": si_l1_loss(pred, target, mask)[b],
            "si_l2": si_l2_loss(pred, target, mask)[b],
            "si_l2_half": si_l2_loss(pred, target, mask, lam=0.5)[b],
        }
        for k in expect:
            assert_close(got[k], expect[k], f"{k} sample {b}")
    for fn in (l1_loss, l2_loss, si_l1_loss, si_l2_loss):  # exact: an empty sample's sum has no rounding
        assert fn(pred, target, mask)[-1].item() == 0.0, f"{fn.__name__}: empty sample must give 0"


def test_si_pointwise_shift_invariance():
    pred, target, mask = random_batch()
    for fn in (si_l1_loss, si_l2_loss):
        assert_close(fn(pred - 2.5, target, mask), fn(pred, target, mask), fn.__name__)
    assert (l1_loss(pred - 2.5, target, mask)[:-1] - l1_loss(pred, target, mask)[:-1]).abs().min() > 1e-3


# ----------------------------------------------------------------------------------------- NaN safety
LOSSES = (pairwise_l1_loss, pairwise_l2_loss, l1_loss, l2_loss, si_l1_loss, si_l2_loss)


@pytest.mark.parametrize("fn", LOSSES, ids=lambda f: f.__name__)
def test_masked_nan_inf_never_escape(fn):
    pred, target, mask = random_batch()
    pred = pred.clone()
    pred[~mask] = float("nan")
    target[~mask] = float("inf")
    pred.requires_grad_(True)
    loss = fn(pred, target, mask)
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.isfinite(loss).all(), f"{fn.__name__}: non-finite loss {loss}"
    assert torch.isfinite(grad).all(), f"{fn.__name__}: non-finite gradient"
    # exact: masked pixels take no part in the loss, their gradient is an exact 0
    assert (grad[~mask] == 0).all(), f"{fn.__name__}: masked pixels received gradient"


def test_si_ssi_losses_nan_safe_with_zero_and_nan_targets():
    pred, _, mask = random_batch()
    depth = torch.rand(pred.shape, dtype=pred.dtype) + 0.5
    depth[~mask] = 0.0  # log(0) would be -inf
    disp = 1.0 / depth
    disp[~mask] = float("nan")
    pred = pred.clone().requires_grad_(True)
    for name, loss in (("si", si_loss(pred, depth, mask)), ("ssi", ssi_loss(pred, disp, mask))):
        (g,) = torch.autograd.grad(loss.sum(), pred)
        assert torch.isfinite(loss).all() and torch.isfinite(g).all(), f"{name}: non-finite loss/grad"
        # exact zeros: masked pixels take no part in the loss, and an empty sample's sum has no rounding
        assert (g[~mask] == 0).all(), f"{name}: masked pixels received gradient"
        assert loss[-1].item() == 0.0, f"{name}: empty sample must give 0"


# ---------------------------------------------------------------------------------- SI / SSI / ordinal
def test_normalize_disparity_median_zero_mad_one():
    pred, _, mask = random_batch()
    disp = pred.exp()
    out = normalize_disparity(disp, mask)
    for b in range(pred.shape[0] - 1):
        v = out[b][mask[b]]
        d = disp[b][mask[b]]
        expect = (d - d.median()) / (d - d.median()).abs().mean()
        assert_close(v, expect, f"normalized disparity sample {b}")
    assert (out[~mask] == 0).all(), "masked pixels must be 0"  # exact: the 0 fill


def test_si_loss_is_scale_invariant_and_zero_for_scaled_truth():
    pred, _, mask = random_batch()
    depth = (torch.randn(pred.shape, dtype=pred.dtype) * 0.3).exp()
    exact = si_loss(-depth.log() + math.log(4.0), depth, mask)  # depth predicted up to a scale of 1/4
    assert exact.abs().max() < 1e-12, f"scaled truth gives {exact}"
    base = si_loss(pred, depth, mask)
    assert_close(si_loss(pred + 1.3, depth * 7.0, mask), base, "scale invariance")
    assert base[:-1].min() > 0


def test_ssi_loss_scale_shift_invariant_in_target_and_scale_in_pred():
    pred, _, mask = random_batch()
    disp = torch.rand(pred.shape, dtype=pred.dtype) + 0.2
    base = ssi_loss(pred, disp, mask)
    assert_close(ssi_loss(pred, 3.0 * disp + 5.0, mask), base, "target scale+shift")
    assert_close(ssi_loss(pred + 0.7, disp, mask), base, "pred disparity scale")
    exact = ssi_loss((2.0 * disp).log(), 4.0 * disp - 1.0, mask)
    assert exact.abs().max() < 1e-10, f"affine truth gives {exact}"


def test_ordinal_ranking_loss_by_hand():
    # pred log-disparity y; z = -y is log depth. Pair 1: A at (0,0) y=0 (z=0), B at (1,1) y=1 (z=-1): A is
    # farther by 1. rel=+1 -> log(1+exp(-1)); rel=-1 -> log(1+exp(1)). Padding row (rel = 0) is ignored.
    y = torch.tensor([[0.0, 5.0], [5.0, 1.0]], dtype=torch.float64).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    ordinal = torch.tensor(
        [[[0, 0, 1, 1, 1], [0, 1, 0, 1, 0]], [[0, 0, 1, 1, -1], [1, 1, 0, 0, 1]]], dtype=torch.float64
    )
    got = ordinal_ranking_loss(y, ordinal)
    e1 = math.log1p(math.exp(-1.0))
    expect = torch.tensor(
        [e1, (math.log1p(math.exp(1.0)) + math.log1p(math.exp(1.0))) / 2], dtype=torch.float64
    )
    # sample 2, pair 2: A=(1,1) z=-1, B=(0,0) z=0: A nearer but rel=+1 -> log(1+exp(1)).
    assert_close(got, expect, "ordinal loss")
    empty = ordinal_ranking_loss(y, torch.zeros(2, 3, 5))
    assert (empty == 0).all(), f"all-padding must give 0, got {empty}"  # exact: no pair, an empty sum


# -------------------------------------------------------------------------------------------- mixture
def mixture_batch():
    pred, _, mask = random_batch(B=4, H=4, W=5)
    g = torch.Generator().manual_seed(1)
    target = torch.rand(pred.shape, generator=g, dtype=pred.dtype) + 0.3
    mask[-1] = mask[0]
    ordinal = torch.zeros(4, 2, 5, dtype=torch.float64)
    ordinal[3] = torch.tensor([[0, 0, 3, 4, 1], [1, 2, 2, 1, -1]])
    return pred, target, mask, ["absolute", "uts", "utss_disparity", "ordinal"], ordinal


def test_mixture_composes_terms_by_depth_type():
    pred, target, mask, types, ordinal = mixture_batch()
    got = gp2_mixture_loss(pred, target, mask, types, ordinal)
    si = si_loss(pred, target, mask)
    ssi_depth = ssi_loss(pred, 1.0 / target, mask)
    ssi_disp = ssi_loss(pred, target, mask)
    ordl = ordinal_ranking_loss(pred, ordinal)
    expect = torch.stack([si[0] + ssi_depth[0], si[1] + ssi_depth[1], ssi_disp[2], ordl[3]])
    assert_close(got, expect, "mixture per sample")
    codes = torch.tensor([DEPTH_TYPES.index(t) for t in types])
    assert_close(gp2_mixture_loss(pred, target, mask, codes, ordinal), got, "codes vs names")
    w = gp2_mixture_loss(
        pred, target, mask, types, ordinal, si_weight=2.0, ssi_weight=0.0, ordinal_weight=3.0
    )
    assert_close(w, torch.stack([2 * si[0], 2 * si[1], 0 * si[2], 3 * ordl[3]]), "weights")


def test_mixture_gradients_finite_with_garbage_targets():
    pred, target, mask, types, ordinal = mixture_batch()
    target = target.clone()
    target[~mask] = float("nan")
    target[3] = float("nan")  # ordinal sample: dense target is garbage
    pred = pred.clone().requires_grad_(True)
    loss = gp2_mixture_loss(pred, target, mask, types, ordinal)
    (g,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.isfinite(loss).all() and torch.isfinite(g).all(), f"loss {loss}"


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_gp2loss_module_selects_kind(kind):
    pred, target, mask, types, ordinal = mixture_batch()
    module = GP2Loss(kind=kind)
    got = module(pred, target, mask, types, ordinal)
    expect = gp2_mixture_loss(pred, target, mask, types, ordinal, kind=kind).mean()
    assert_close(got, expect, f"GP2Loss({kind})")
    assert got.dim() == 0


def test_kinds_differ_and_errors():
    pred, target, mask, types, ordinal = mixture_batch()
    values = {k: GP2Loss(k)(pred, target, mask, types, ordinal).item() for k in LOSS_KINDS}
    assert len({round(v, 9) for v in values.values()}) == len(LOSS_KINDS), f"kinds not distinct: {values}"
    with pytest.raises(ValueError, match="kind"):
        GP2Loss("huber")
    with pytest.raises(ValueError, match="ordinal"):
        gp2_mixture_loss(pred, target, mask, types, None)
    with pytest.raises(ValueError, match="depth_type"):
        gp2_mixture_loss(pred, target, mask, ["absolute", "metric", "uts", "uts"], ordinal)
    with pytest.raises(ValueError, match="pred"):
        pairwise_l1_loss(pred[:, 0], target, mask)
    with pytest.raises(ValueError, match="mask"):
        pairwise_l1_loss(pred, target, mask.float())
    with pytest.raises(ValueError, match="ordinal"):
        ordinal_ranking_loss(pred, ordinal[..., :4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pred, target, mask, types, ordinal = mixture_batch()
    cpu = gp2_mixture_loss(pred, target, mask, types, ordinal)
    gpu = gp2_mixture_loss(pred.cuda(), target.cuda(), mask.cuda(), types, ordinal.cuda())
    assert_close(gpu.cpu(), cpu, "CUDA vs CPU mixture loss", rtol=1e-9, atol=1e-10)
    p, t, m = random_batch(B=2, H=64, W=64, dtype=torch.float32)
    assert_close(
        pairwise_l1_loss(p.cuda(), t.cuda(), m.cuda()).cpu(), pairwise_l1_loss(p, t, m), "pairwise", rtol=1e-4
    )
