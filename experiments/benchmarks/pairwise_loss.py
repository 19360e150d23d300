"""Sorted O(N log N) pairwise L1 loss (losses.depth.pairwise_l1_loss) vs the O(N^2) definition.

Rows: per image size (batch 4), forward and forward+backward time of both, and the max |difference| of
the losses and of the gradients; then the sorted loss alone at 384x384, batch 8 (GP2's training size),
where the O(N^2) pair matrix (147456^2 entries per image) cannot be formed; then, at that size, the two
choices that make the GP2 loss fast, each beside what it replaced: the masked median by one batched
selection (losses.depth._masked_lower_median) vs a full sort (geometry.masked_median), and the sort on
integer keys (losses.depth._ascending_sort_keys) vs on the floats.

    python -m experiments.benchmarks.pairwise_loss [--full]
"""

from __future__ import annotations

import sys

import torch

from experiments.benchmarks.common import print_table, time_ms
from geometry.depth_align import masked_median
from losses.depth import _ascending_sort_keys, _masked_lower_median, pairwise_l1_loss


def pairwise_l1_quadratic(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """O(N^2) reference: (1/N^2) sum over valid ordered pairs of |r_i - r_j|, r = p - t; (B, 1, H, W) -> (B,).

    One (N, N) pair matrix per sample (a loop over the batch keeps the memory at one image's pairs).
    """
    out = []
    for b in range(pred.shape[0]):
        r = (pred[b] - target[b])[mask[b]]  # (N,)
        out.append((r[:, None] - r[None, :]).abs().sum() / max(r.numel(), 1) ** 2)
    return torch.stack(out)


def _inputs(B: int, H: int, W: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    pred = torch.randn(B, 1, H, W, generator=g).to(device)
    target = torch.randn(B, 1, H, W, generator=g).to(device)
    mask = (torch.rand(B, 1, H, W, generator=g) < 0.8).to(device)
    return pred, target, mask


def _fwd_bwd(fn, pred, target, mask):
    def run():
        p = pred.detach().requires_grad_(True)
        fn(p, target, mask).sum().backward()
        return p.grad

    return run


def run(quick: bool = True) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    repeats = 1 if quick else 5
    rows: list[dict] = []
    sizes = (32, 64) if quick and device.type == "cpu" else (32, 64, 96)
    for s in sizes:
        pred, target, mask = _inputs(4, s, s, device)
        p1 = pred.clone().requires_grad_(True)
        p2 = pred.clone().requires_grad_(True)
        l_sorted = pairwise_l1_loss(p1, target, mask)
        l_quad = pairwise_l1_quadratic(p2, target, mask)
        (g1,) = torch.autograd.grad(l_sorted.sum(), p1)
        (g2,) = torch.autograd.grad(l_quad.sum(), p2)
        loss_diff = (l_sorted - l_quad).abs().max().item()
        grad_diff = (g1 - g2).abs().max().item()
        for impl, fn in (("sorted", pairwise_l1_loss), ("quadratic", pairwise_l1_quadratic)):
            with torch.no_grad():
                fwd = time_ms(lambda fn=fn, p=pred, t=target, m=mask: fn(p, t, m), repeats=repeats)
            fb = time_ms(_fwd_bwd(fn, pred, target, mask), repeats=repeats)
            rows.append(
                dict(
                    bench="pairwise_l1",
                    case=f"4x{s}x{s}",
                    impl=impl,
                    fwd_ms=fwd,
                    fwd_bwd_ms=fb,
                    max_loss_diff=loss_diff,
                    max_grad_diff=grad_diff,
                    note=str(device),
                )
            )
    pred, target, mask = _inputs(8, 384, 384, device)
    with torch.no_grad():
        fwd = time_ms(lambda: pairwise_l1_loss(pred, target, mask), repeats=repeats)
    fb = time_ms(_fwd_bwd(pairwise_l1_loss, pred, target, mask), repeats=repeats)
    rows.append(
        dict(
            bench="pairwise_l1", case="8x384x384", impl="sorted", fwd_ms=fwd, fwd_bwd_ms=fb, note=str(device)
        )
    )
    return rows + _median_and_sort_rows(pred, mask, repeats, device)


def _median_and_sort_rows(x: torch.Tensor, mask: torch.Tensor, repeats: int, device) -> list[dict]:
    """Masked median: selection vs sort (fwd+bwd, max |difference|); argsort: integer vs float keys."""
    x, m = x.reshape(x.shape[0], -1), mask.reshape(mask.shape[0], -1)  # (B, P)
    B, P = x.shape
    case = f"{B}x{P} ({int(m.sum())} valid)"
    medians = {"selection": _masked_lower_median, "sort (geometry.masked_median)": masked_median}
    diff = (medians["selection"](x, m) - masked_median(x, m)).abs().max().item()
    rows = []
    for impl, fn in medians.items():
        fb = time_ms(lambda fn=fn: _median_fwd_bwd(fn, x, m), repeats=repeats)
        rows.append(dict(bench="masked median", case=case, impl=impl, fwd_bwd_ms=fb, max_value_diff=diff))
    keys = {
        "integer keys": lambda: _ascending_sort_keys(x, m).argsort(dim=1),
        "float keys": lambda: torch.where(m, x, float("inf")).argsort(dim=1),
    }
    for impl, fn in keys.items():
        rows.append(dict(bench="argsort", case=case, impl=impl, fwd_ms=time_ms(fn, repeats=repeats)))
    for r in rows:
        r["note"] = str(device)
    return rows


def _median_fwd_bwd(fn, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    p = x.detach().requires_grad_(True)
    fn(p, m).sum().backward()
    return p.grad


if __name__ == "__main__":
    print_table(run(quick="--full" not in sys.argv), title="pairwise L1: sorted vs O(N^2)")
