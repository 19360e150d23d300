"""GP2 depth losses (Romanov et al. 2020, "Towards General Purpose, Geometry Preserving Single-View Depth
Estimation", arXiv 2009.12419), as pure functions on `(B, 1, H, W)` maps with bool masks `(B, 1, H, W)`.

The network predicts log-disparity `y = log(1 / depth)` (as GP2's released models do; official code
`saic-vul/geometry-preserving-de`, README "predictions in log-disparity domain"). The official repository
releases evaluation code only, so the training objective below is our reading of the paper:

    L(sample) = I_UTS * L_SI + I_SSI * L_SSI + I_ORD * L_ORD,    all weights 1 by default, where
    L_SI  = pairwise L1 of log depth  (scale invariant: (1/N^2) sum_ij |(p_i - p_j) - (t_i - t_j)|),
    L_SSI = pairwise L1 of MiDaS-normalized disparities (scale-and-shift invariant),
    L_ORD = Chen et al. 2016 ranking loss on ordinal pairs,
    I_UTS = 1 for "absolute" and "uts" (depth known up to scale) samples,
    I_SSI = 1 for "absolute", "uts" and "utss_disparity" (disparity up to scale and shift) samples,
    I_ORD = 1 for "ordinal" samples (DIW-style pairs).

Every loss returns `(B,)`, is 0 (not NaN) for a sample without valid pixels, and masked pixels contribute
neither NaN values nor NaN gradients (inputs are replaced with `torch.where` before any log or division).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from geometry.depth_align import check_map, check_map_and_mask

DEPTH_TYPES = ("absolute", "uts", "utss_disparity", "ordinal")
"""The depth types of the depth sample schema, defined here once (datamodules import them):
`DEPTH_TYPES.index(name)` is the integer code of a sample's depth type."""

DENSE_DEPTH_TYPES = ("absolute", "uts")
"""Types whose target is a depth map (metres, or up to scale): the scale-invariant loss and the depth
metrics apply to them."""

_DENSE_CODES = tuple(DEPTH_TYPES.index(t) for t in DENSE_DEPTH_TYPES)
_DISPARITY_CODE = DEPTH_TYPES.index("utss_disparity")
_ORDINAL_CODE = DEPTH_TYPES.index("ordinal")

LOSS_KINDS = ("pairwise_l1", "pairwise_l2", "l1", "l2", "si_l1", "si_l2")
"""Residual losses of the GP2 Table 2 ablation, selectable by name in `gp2_mixture_loss` and `GP2Loss`."""


# ----------------------------------------------------------------------------------------------- helpers
def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)  # (B, P)


def _masked_residual(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Residual r = p - t with masked entries set to 0 (via where); returns r, m, N."""
    m = _flat(mask)
    # where() after the subtraction: a NaN / inf at a masked entry is dropped and gets a zero gradient
    return torch.where(m, _flat(pred) - _flat(target), 0.0), m, m.sum(dim=1)  # (B, P), (B, P), (B,)


def _masked_lower_median(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Lower median (torch.median's convention, as `geometry.masked_median`) of `x` over `m`, per row.

    One batched selection instead of a sort: the row's invalid entries are filled with -inf or +inf so that
    the lower median of the whole row (sorted index (P - 1) // 2, `torch.median(dim=1)`) falls on the valid
    entries' lower median (their sorted index (n - 1) // 2): the first (P - 1) // 2 - (n - 1) // 2 invalid
    entries of a row take -inf, the others +inf (there are always enough of them). Valid entries must be
    finite (as here); invalid ones may hold anything, NaN included.

    Args:
        x: `(B, P)` float; m: `(B, P)` bool.
    Returns:
        `(B,)`, 0 for a row without a valid entry; the gradient flows to the selected entry only.
    """
    n = m.sum(dim=1, keepdim=True)  # (B, 1)
    n_low = (x.shape[1] - 1) // 2 - (n - 1).clamp_min(0) // 2  # (B, 1) -inf fills
    invalid_rank = (~m).cumsum(dim=1, dtype=torch.int32)  # (B, P) 1-based rank among invalid entries
    fill = torch.where(invalid_rank <= n_low, float("-inf"), float("inf"))
    idx = torch.where(m, x.detach(), fill).median(dim=1, keepdim=True).indices  # (B, 1)
    # an empty row selects an invalid entry: where() gives 0 and passes no gradient (nor NaN) to it
    return torch.where(n > 0, x.gather(1, idx), 0.0).squeeze(1)


_SORT_KEY_DTYPE = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def _ascending_sort_keys(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Integer keys `(B, P)` that sort as `x` at valid entries and after all of them at invalid ones.

    The bits of a non-NaN float read as a signed integer order non-negative floats correctly and negative
    ones in reverse; flipping the magnitude bits of the negative ones makes the map monotone, so the sorted
    order (up to ties) and hence the sorted values are those of `x`. Integer sorts take about 2/3 of the
    time of float sorts on CPU (no NaN-aware comparison). `(B, P)` float + `(B, P)` bool -> `(B, P)` int.
    """
    itype = _SORT_KEY_DTYPE.get(x.dtype)
    if itype is None:  # other dtypes: sort the floats themselves
        return torch.where(m, x.detach(), float("inf"))
    info = torch.iinfo(itype)
    b = x.detach().view(itype)
    keys = b ^ ((b >> (info.bits - 1)) & info.max)  # negatives: b ^ max (magnitude bits flipped)
    return torch.where(m, keys, info.max)


def _masked_mean(x: torch.Tensor, m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Mean of `x` (B, P) over `m`, 0 where n = 0 (x must already be 0 at masked entries)."""
    return x.sum(dim=1) / n.clamp_min(1).to(x.dtype)


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    check_map_and_mask(("pred", "target"), (pred, target), mask)


# ------------------------------------------------------------------------------------- pairwise losses
def pairwise_l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(1/N^2) sum_{i,j valid} |(p_i - p_j) - (t_i - t_j)|` per sample, in O(N log N).

    With r = p - t sorted ascending, r_(0) <= ... <= r_(N-1), the pair (k, l), k < l, contributes
    r_(l) - r_(k): r_(k) is added k times and subtracted N-1-k times, so
    sum_{i,j} |r_i - r_j| = 2 sum_{i<j} (...) = 2 sum_k (2k - N + 1) r_(k).
    Invalid entries are sorted to the end (one integer-key sort per call, `_ascending_sort_keys`), where
    the masked residual is 0, so they add nothing; the values are gathered from the masked residual, so
    the gradient is the O(N^2) one (ties: a valid subgradient).

    Args:
        pred, target: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool.
    Returns:
        `(B,)`, 0 for a sample without a valid pixel.
    """
    _check(pred, target, mask)
    r, m, n = _masked_residual(pred, target, mask)  # (B, P)
    order = _ascending_sort_keys(r, m).argsort(dim=1)  # valid residuals first, ascending
    r_sorted = r.gather(1, order)  # (B, P)
    k = torch.arange(r.shape[1], device=r.device, dtype=r.dtype)[None]  # (1, P)
    nf = n.to(r.dtype)[:, None]  # (B, 1)
    coef = (2.0 * k + 1.0) - nf  # (B, P); any value at the invalid ranks k >= N, where r_sorted is 0
    total = 2.0 * (coef * r_sorted).sum(dim=1)  # (B,)
    return total / n.clamp_min(1).to(r.dtype) ** 2


def pairwise_l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(1/N^2) sum_{i,j valid} ((p_i - p_j) - (t_i - t_j))^2` per sample, in O(N).

    sum_{i,j} (r_i - r_j)^2 = 2 N sum r^2 - 2 (sum r)^2, so the loss is 2 (mean(r^2) - mean(r)^2)
    = 2 mean((r - mean r)^2), computed in the centred form.

    Args:
        pred, target: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool.
    Returns:
        `(B,)`, 0 for a sample without a valid pixel.
    """
    _check(pred, target, mask)
    r, m, n = _masked_residual(pred, target, mask)
    mu = _masked_mean(r, m, n)  # (B,)
    c = torch.where(m, r - mu[:, None], 0.0)
    return 2.0 * _masked_mean(c * c, m, n)


# ------------------------------------------------------------------------------------ pointwise losses
def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean `|p - t|` per sample: `(B, 1, H, W)` x2 + mask -> `(B,)` (0 without valid pixels)."""
    _check(pred, target, mask)
    r, m, n = _masked_residual(pred, target, mask)
    return _masked_mean(r.abs(), m, n)


def l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean `(p - t)^2` per sample: `(B, 1, H, W)` x2 + mask -> `(B,)` (0 without valid pixels)."""
    _check(pred, target, mask)
    r, m, n = _masked_residual(pred, target, mask)
    return _masked_mean(r * r, m, n)


def si_l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Shift-invariant L1: masked mean `|r - median(r)|`, r = p - t (the optimal L1 shift is the median).

    On log depths this is scale invariant in depth. `(B, 1, H, W)` x2 + mask -> `(B,)`.
    """
    _check(pred, target, mask)
    r, m, n = _masked_residual(pred, target, mask)
    med = _masked_lower_median(r, m)  # (B,)
    d = torch.where(m, r - med[:, None], 0.0)
    return _masked_mean(d.abs(), m, n)


def si_l2_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lam: float = 1.0
) -> torch.Tensor:
    """Eigen et al. 2014 scale-invariant error on log depths: `mean(r^2) - lam * mean(r)^2`, r = p - t.

    `lam = 1` is exactly invariant to a global shift of p (Eigen et al. trained with lam = 0.5, which
    mixes in the absolute L2). `(B, 1, H, W)` x2 + mask -> `(B,)`.
    """
    _check(pred, target, mask)
    r, m, n = _masked_residual(pred, target, mask)
    mu = _masked_mean(r, m, n)
    if lam == 1.0:  # centred form: no cancellation
        c = torch.where(m, r - mu[:, None], 0.0)
        return _masked_mean(c * c, m, n)
    return _masked_mean(r * r, m, n) - lam * mu * mu


_RESIDUAL_LOSSES = {
    "pairwise_l1": pairwise_l1_loss,
    "pairwise_l2": pairwise_l2_loss,
    "l1": l1_loss,
    "l2": l2_loss,
    "si_l1": si_l1_loss,
    "si_l2": si_l2_loss,
}


def _residual_loss(kind: str):
    if kind not in _RESIDUAL_LOSSES:
        raise ValueError(f"Expected kind to be one of {LOSS_KINDS}, got {kind!r}")
    return _RESIDUAL_LOSSES[kind]


# ---------------------------------------------------------------------------------- SI / SSI / ordinal
def normalize_disparity(disp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiDaS scale-and-shift normalization (Ranftl et al. 2020, eq. 6-7) over valid pixels, per sample.

    `(d - t(d)) / s(d)` with `t(d) = median(d)` and `s(d) = mean |d - t(d)|` (clamped to the dtype's eps).

    Args:
        disp: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool.
    Returns:
        `(B, 1, H, W)` normalized disparity, 0 at masked pixels.
    """
    check_map_and_mask(("disp",), (disp,), mask)
    d = torch.where(mask, disp, 0.0)
    shift = _masked_lower_median(_flat(d), _flat(mask))[:, None, None, None]  # (B, 1, 1, 1)
    c = torch.where(mask, d - shift, 0.0)
    n = mask.flatten(1).sum(dim=1).clamp_min(1).to(d.dtype)
    scale = (c.abs().flatten(1).sum(dim=1) / n).clamp_min(torch.finfo(d.dtype).eps)
    return c / scale[:, None, None, None]


def _valid_positive(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return mask & torch.isfinite(x) & (x > 0)


def si_loss(
    pred_log_disp: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, kind: str = "pairwise_l1"
) -> torch.Tensor:
    """GP2's L_SI: `kind` loss between predicted log depth `-pred_log_disp` and `log(depth)`.

    Pixels with a non-finite or non-positive depth are ignored. With "pairwise_l1" the loss is invariant
    to a global scale of the predicted depth. `(B, 1, H, W)` x2 + mask -> `(B,)`.
    """
    check_map_and_mask(("pred_log_disp", "depth"), (pred_log_disp, depth), mask)
    return _si_loss(pred_log_disp, depth, _valid_positive(depth, mask), kind)


def _si_loss(pred_log_disp: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, kind: str):
    """`si_loss` with `valid` already restricted to finite, positive depths."""
    log_t = torch.where(valid, depth, 1.0).log()
    return _residual_loss(kind)(-pred_log_disp, log_t, valid)


def ssi_loss(
    pred_log_disp: torch.Tensor, disparity_target: torch.Tensor, mask: torch.Tensor, kind: str = "pairwise_l1"
) -> torch.Tensor:
    """GP2's L_SSI: `kind` loss between normalized `exp(pred_log_disp)` and normalized target disparity.

    Pixels with a non-finite target are ignored. Invariant to scale and shift of the target disparity
    and to a global scale of the predicted disparity. `(B, 1, H, W)` x2 + mask -> `(B,)`.
    """
    check_map_and_mask(("pred_log_disp", "disparity_target"), (pred_log_disp, disparity_target), mask)
    return _ssi_loss(pred_log_disp, disparity_target, mask & torch.isfinite(disparity_target), kind)


def _ssi_loss(pred_log_disp: torch.Tensor, disparity_target: torch.Tensor, valid: torch.Tensor, kind: str):
    """`ssi_loss` with `valid` already restricted to finite targets."""
    log_disp = torch.where(valid, pred_log_disp, 0.0)
    # normalize_disparity ignores a global scale: subtract each sample's max before exp so that large
    # log-disparities cannot overflow (exp(89) is inf in float32); the loss value is unchanged
    log_disp = log_disp - log_disp.detach().flatten(1).amax(dim=1)[:, None, None, None]
    pred_disp = log_disp.exp()
    return _residual_loss(kind)(
        normalize_disparity(pred_disp, valid), normalize_disparity(disparity_target, valid), valid
    )


def _check_ordinal(ordinal: torch.Tensor, B: int) -> None:
    if (
        not isinstance(ordinal, torch.Tensor)
        or ordinal.dim() != 3
        or ordinal.shape[0] != B
        or ordinal.shape[2] != 5
    ):
        shape = tuple(ordinal.shape) if isinstance(ordinal, torch.Tensor) else type(ordinal).__name__
        raise ValueError(f"Expected ordinal to be of shape (B={B}, M, 5), got {shape}")


def sample_ordinal_pairs(values: torch.Tensor, ordinal: torch.Tensor):
    """Gather `values` at the two points of each ordinal pair.

    Args:
        values: `(B, 1, H, W)`; ordinal: `(B, M, 5)` rows `(yA, xA, yB, xB, rel)`, 0-based pixels,
            rel = +1 when A is farther than B, -1 when nearer, 0 for a padding row (ignored).
    Returns:
        (v_A `(B, M)`, v_B `(B, M)`, rel `(B, M)` in values' dtype, valid `(B, M)` bool).
    """
    check_map("values", values)
    B, _, H, W = values.shape
    _check_ordinal(ordinal, B)
    rel = ordinal[..., 4].to(values.dtype)
    valid = rel != 0
    coords = torch.where(valid[..., None], ordinal[..., :4], torch.zeros_like(ordinal[..., :4])).long()
    flat = values.reshape(B, H * W)
    v_a = flat.gather(1, coords[..., 0] * W + coords[..., 1])
    v_b = flat.gather(1, coords[..., 2] * W + coords[..., 3])
    return v_a, v_b, rel, valid


def ordinal_ranking_loss(pred_log_disp: torch.Tensor, ordinal: torch.Tensor) -> torch.Tensor:
    """Chen et al. 2016 ("Single-Image Depth Perception in the Wild", eq. 1) ranking loss, per sample.

    With predicted log depth z = -pred_log_disp: `log(1 + exp(-rel (z_A - z_B)))` averaged over the
    sample's non-padding pairs (rel = +1: A farther, so the loss wants z_A > z_B). DIW has no "equal"
    pairs, so rel = 0 marks padding and Chen et al.'s equality term is not used.

    Args:
        pred_log_disp: `(B, 1, H, W)`; ordinal: `(B, M, 5)` as in `sample_ordinal_pairs`.
    Returns:
        `(B,)`, 0 for a sample without pairs.
    """
    check_map("pred_log_disp", pred_log_disp)
    v_a, v_b, rel, valid = sample_ordinal_pairs(pred_log_disp, ordinal)
    z_diff = v_b - v_a  # z_A - z_B with z = -log disparity
    per_pair = torch.where(valid, nn.functional.softplus(-rel * z_diff), torch.zeros_like(z_diff))
    return per_pair.sum(dim=1) / valid.sum(dim=1).clamp_min(1).to(per_pair.dtype)


# ------------------------------------------------------------------------------------------ GP2 mixture
def depth_type_codes(depth_type: Sequence[str] | torch.Tensor, B: int, device: torch.device) -> torch.Tensor:
    """Depth types as `(B,)` long codes (indices into `DEPTH_TYPES`) from names or codes."""
    if isinstance(depth_type, torch.Tensor):
        if depth_type.shape != (B,):
            raise ValueError(f"Expected depth_type codes of shape ({B},), got {tuple(depth_type.shape)}")
        return depth_type.to(device=device, dtype=torch.long)
    names = list(depth_type)
    if len(names) != B or any(n not in DEPTH_TYPES for n in names):
        raise ValueError(f"Expected depth_type to be {B} names from {DEPTH_TYPES}, got {names}")
    return torch.tensor([DEPTH_TYPES.index(n) for n in names], device=device, dtype=torch.long)


def gp2_mixture_loss(
    pred_log_disp: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    depth_type: Sequence[str] | torch.Tensor,
    ordinal: torch.Tensor | None = None,
    kind: str = "pairwise_l1",
    si_weight: float = 1.0,
    ssi_weight: float = 1.0,
    ordinal_weight: float = 1.0,
) -> torch.Tensor:
    """GP2 mixed-dataset loss, per sample by its depth type (see the module docstring).

    - "absolute", "uts": `target` is depth (metres or up to scale): si_weight * L_SI + ssi_weight * L_SSI,
      L_SSI on the disparity 1 / depth;
    - "utss_disparity": `target` is disparity up to scale and shift: ssi_weight * L_SSI;
    - "ordinal": ordinal_weight * Chen et al.'s ranking loss on `ordinal` (dense target ignored).
    `kind` picks the residual loss of L_SI and L_SSI (Table 2 ablation, `LOSS_KINDS`).

    Args:
        pred_log_disp, target: `(B, 1, H, W)`; mask: `(B, 1, H, W)` bool;
        depth_type: B names from `DEPTH_TYPES` or `(B,)` integer codes;
        ordinal: `(B, M, 5)` (see `sample_ordinal_pairs`) or None when there is no ordinal sample
            (an ordinal sample then contributes 0; checked for names, not for codes, to avoid a sync).
    Returns:
        `(B,)` loss per sample.
    """
    check_map_and_mask(("pred_log_disp", "target"), (pred_log_disp, target), mask)
    B = pred_log_disp.shape[0]
    if ordinal is None and not isinstance(depth_type, torch.Tensor) and "ordinal" in list(depth_type):
        raise ValueError("Expected ordinal pairs (B, M, 5) for a batch with 'ordinal' samples, got None")
    codes = depth_type_codes(depth_type, B, pred_log_disp.device)
    is_depth = torch.stack([codes == c for c in _DENSE_CODES]).any(0)[:, None, None, None]  # (B, 1, 1, 1)
    is_disp = (codes == _DISPARITY_CODE)[:, None, None, None]
    finite = torch.isfinite(target)
    valid_depth = mask & is_depth & finite & (target > 0)
    disp_target = torch.where(valid_depth, target, 1.0).reciprocal()
    disp_target = torch.where(is_disp, target, disp_target)
    # the masks si_loss / ssi_loss would derive from these arguments (1 / a tiny depth can be inf)
    valid_ssi = (valid_depth | (mask & is_disp & finite)) & torch.isfinite(disp_target)

    loss = si_weight * _si_loss(pred_log_disp, target, valid_depth, kind)
    loss = loss + ssi_weight * _ssi_loss(pred_log_disp, disp_target, valid_ssi, kind)
    if ordinal is not None:
        is_ord = (codes == _ORDINAL_CODE).to(loss.dtype)
        loss = loss + ordinal_weight * is_ord * ordinal_ranking_loss(pred_log_disp, ordinal)
    return loss


class GP2Loss(nn.Module):
    """`gp2_mixture_loss` averaged over the batch, with the residual loss chosen by name for configs.

    Args:
        kind: one of `LOSS_KINDS` ("pairwise_l1" is GP2's; the others are the Table 2 ablation).
        si_weight, ssi_weight, ordinal_weight: term weights (1 each by default).
    """

    def __init__(
        self,
        kind: str = "pairwise_l1",
        si_weight: float = 1.0,
        ssi_weight: float = 1.0,
        ordinal_weight: float = 1.0,
    ) -> None:
        super().__init__()
        _residual_loss(kind)
        self.kind = kind
        self.si_weight = si_weight
        self.ssi_weight = ssi_weight
        self.ordinal_weight = ordinal_weight

    def forward(
        self,
        pred_log_disp: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        depth_type: Sequence[str] | torch.Tensor,
        ordinal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scalar mean over the batch of `gp2_mixture_loss` (same arguments)."""
        per_sample = gp2_mixture_loss(
            pred_log_disp,
            target,
            mask,
            depth_type,
            ordinal,
            kind=self.kind,
            si_weight=self.si_weight,
            ssi_weight=self.ssi_weight,
            ordinal_weight=self.ordinal_weight,
        )
        return per_sample.mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, si_weight={self.si_weight}, ssi_weight={self.ssi_weight}"
