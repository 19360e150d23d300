"""The papers' objectives as pure functions on padded tensors (+ thin nn.Module wrappers for configs).
Depends on torch and `geometry` only (no Lightning, no datamodules), so `from losses import ...` is enough.

    depth   GP2 (Romanov et al. 2020): pairwise L1 / L2 residual losses, pointwise L1 / L2 and their
            shift-invariant variants, MiDaS disparity normalization, the scale-invariant (SI) and
            scale-and-shift-invariant (SSI) terms, Chen et al. 2016's ordinal ranking loss, the per-sample
            mixture by depth type and its module GP2Loss; DEPTH_TYPES, DENSE_DEPTH_TYPES, LOSS_KINDS
"""

from losses.depth import (
    DENSE_DEPTH_TYPES,
    DEPTH_TYPES,
    LOSS_KINDS,
    GP2Loss,
    depth_type_codes,
    gp2_mixture_loss,
    l1_loss,
    l2_loss,
    normalize_disparity,
    ordinal_ranking_loss,
    pairwise_l1_loss,
    pairwise_l2_loss,
    sample_ordinal_pairs,
    si_l1_loss,
    si_l2_loss,
    si_loss,
    ssi_loss,
)

__all__ = [
    "DENSE_DEPTH_TYPES",
    "DEPTH_TYPES",
    "LOSS_KINDS",
    "GP2Loss",
    "depth_type_codes",
    "gp2_mixture_loss",
    "l1_loss",
    "l2_loss",
    "normalize_disparity",
    "ordinal_ranking_loss",
    "pairwise_l1_loss",
    "pairwise_l2_loss",
    "sample_ordinal_pairs",
    "si_l1_loss",
    "si_l2_loss",
    "si_loss",
    "ssi_loss",
]
