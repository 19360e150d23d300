"""Batching of schema samples (dicts of tensors and plain values), shared by the families' datamodules.

`collate_samples`: a tensor key is stacked (its shapes must agree, else ValueError naming the key); a tensor
key that some samples lack is stacked with NaN in their place and flagged by a bool `has_<key>` (B,); a key
whose values are all plain numbers becomes a float32 tensor (B,); anything else (names, strings, mixed
values) stays a list of the samples' values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch a list of samples by the rules of the module docstring."""
    if not samples:
        raise ValueError("samples: expected at least one sample")
    keys: list[str] = []
    for s in samples:
        keys += [k for k in s if k not in keys]
    batch: dict[str, Any] = {}
    for key in keys:
        values = [s.get(key) for s in samples]
        tensors = [v for v in values if isinstance(v, Tensor)]
        if tensors and len(tensors) == sum(v is not None for v in values):
            shapes = {tuple(t.shape) for t in tensors}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate: samples have {key!r} of different shapes {sorted(shapes)}; a batch needs one "
                    "shape (e.g. readers with the same keypoint set or number of points)"
                )
            if len(tensors) == len(values):
                batch[key] = torch.stack(tensors)
            else:
                nan = torch.full_like(tensors[0], math.nan, dtype=torch.float32)
                batch[key] = torch.stack([v.to(torch.float32) if v is not None else nan for v in values])
                batch[f"has_{key}"] = torch.tensor([v is not None for v in values])
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    return batch
