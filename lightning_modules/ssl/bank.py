"""The training-set bank of the nearest-neighbours consistency loss (Navaneet et al. 2020, Sec. 3.3, Eq. 9).

The paper mines, for every input image, its nearest neighbours *from the training set* by the Euclidean
distance between the reconstruction encoder's features, passes the neighbour images through N_pose and
compares the input's cloud rendered from those poses with the neighbours' silhouettes. `NeighbourBank`
holds what that needs for every training sample seen so far: its encoder feature, its image and its
silhouette, keyed by the sample's `name` (unique per sample in every reader, and stable across epochs and
augmentations of the same index). A sample's row is rewritten each time it is in a batch, so the features
are refreshed once per epoch as the encoder trains; the bank is complete after the first epoch (until then
it holds the samples seen so far, at least the current batch).

Storage per sample: the feature (float32), the image as uint8 (rounded to 1/255, the precision of the PNGs
the readers load) and the silhouette as bool, so 3 S^2 + S^2 / 8 bytes plus the feature: about 13 KB at
S = 64 (50 MB for 4096 samples). Each DDP process holds the samples of its own shard. The bank is not saved
in checkpoints; a resumed run rebuilds it during its first epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from geometry.cameras import _check_shape


class NeighbourSamples(NamedTuple):
    """Mined neighbours of a batch: images (B, n, 3, S, S) in [0, 1], masks (B, n, 1, S, S) float 0 / 1,
    poses (B, n, 2) as stored (None when the bank stores none), names (B lists of n), dists (B, n) Euclidean
    feature distances, ascending."""

    images: Tensor
    masks: Tensor
    poses: Tensor | None
    names: list[list[str]]
    dists: Tensor


class NeighbourBank:
    """Features, images and silhouettes of the training samples, keyed by name (module docstring).

    Args:
        capacity: initial number of rows (grows by doubling).
    """

    def __init__(self, capacity: int = 256):
        if capacity < 1:
            raise ValueError(f"capacity: expected >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._rows: dict[str, int] = {}
        self._names: list[str] = []
        self._has_poses = True
        self.features: Tensor | None = None  # (M, D)
        self.images: Tensor | None = None  # (M, 3, S, S) uint8
        self.masks: Tensor | None = None  # (M, 1, S, S) bool
        self.poses: Tensor | None = None  # (M, 2), only when update is given poses

    def __len__(self) -> int:
        return len(self._names)

    def _allocate(self, features: Tensor, images: Tensor, masks: Tensor) -> None:
        n = self._capacity
        self.features = features.new_zeros(n, features.shape[1])
        self.images = torch.zeros(n, *images.shape[1:], dtype=torch.uint8, device=images.device)
        self.masks = torch.zeros(n, *masks.shape[1:], dtype=torch.bool, device=masks.device)
        self.poses = features.new_zeros(n, 2)

    def _grow(self, needed: int) -> None:
        n = self.features.shape[0]
        if needed <= n:
            return
        m = max(needed, 2 * n)
        self.features = torch.cat([self.features, self.features.new_zeros(m - n, *self.features.shape[1:])])
        self.images = torch.cat([self.images, self.images.new_zeros(m - n, *self.images.shape[1:])])
        self.masks = torch.cat([self.masks, self.masks.new_zeros(m - n, *self.masks.shape[1:])])
        self.poses = torch.cat([self.poses, self.poses.new_zeros(m - n, 2)])

    def update(
        self,
        names: Sequence[str],
        features: Tensor,
        images: Tensor,
        masks: Tensor,
        poses: Tensor | None = None,
    ) -> Tensor:
        """Write (or refresh) the rows of a batch; returns their row indices (B,) long.

        names: B strings (a repeated name shares its row); features (B, D) (detached here); images (B, 3, S, S) in [0, 1]; masks
        (B, 1, S, S) (> 0.5 is foreground); poses: optional (B, 2) (e.g. the ground truth of a
        pose-supervised model), returned with the neighbours when every update gave them.
        """
        sizes: dict[str, int] = {}
        _check_shape(features, "features", ["B", "D"], sizes)
        _check_shape(images, "images", ["B", 3, "S", "S"], sizes)
        _check_shape(masks, "masks", ["B", 1, "S", "S"], sizes)
        names = [str(n) for n in names]
        if len(names) != sizes["B"]:
            raise ValueError(f"names: expected {sizes['B']} sample names, got {len(names)}")
        if self.features is None:
            self._allocate(features, images, masks)
        elif features.shape[1:] != self.features.shape[1:] or images.shape[1:] != self.images.shape[1:]:
            raise ValueError(
                f"NeighbourBank.update: features {tuple(features.shape[1:])} / images "
                f"{tuple(images.shape[1:])} differ from the bank's {tuple(self.features.shape[1:])} / "
                f"{tuple(self.images.shape[1:])}"
            )
        new = [n for n in dict.fromkeys(names) if n not in self._rows]  # a name twice in a batch: one row
        self._grow(len(self._names) + len(new))
        for n in new:
            self._rows[n] = len(self._names)
            self._names.append(n)
        rows = torch.tensor([self._rows[n] for n in names], dtype=torch.long, device=self.features.device)
        self.features[rows] = features.detach().to(self.features.dtype)
        self.images[rows] = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        self.masks[rows] = masks.detach() > 0.5
        if poses is None:
            self._has_poses = False
        else:
            _check_shape(poses, "poses", ["B", 2], sizes)
            self.poses[rows] = poses.detach().to(self.poses.dtype)
        return rows

    def neighbours(self, features: Tensor, rows: Tensor, k: int) -> NeighbourSamples:
        """The k nearest bank rows of each query (B, D) by Euclidean feature distance, excluding the query's
        own row `rows` (B,) long (from `update`). Needs k < len(self)."""
        sizes: dict[str, int] = {}
        _check_shape(features, "features", ["B", "D"], sizes)
        _check_shape(rows, "rows", ["B"], sizes)
        M = len(self)
        if not 1 <= k < M:
            raise ValueError(f"k: expected 1 <= k < {M} (the samples in the bank), got {k}")
        bank = self.features[:M]
        d = torch.cdist(features.detach().to(bank.dtype), bank)  # (B, M)
        d[torch.arange(len(rows), device=d.device), rows] = float("inf")  # never the query itself
        dists, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)  # (B, k)
        images = self.images[idx].to(features.dtype) / 255.0
        masks = self.masks[idx].to(features.dtype)
        poses = self.poses[idx].to(features.dtype) if self._has_poses else None
        names = [[self._names[j] for j in r] for r in idx.tolist()]
        return NeighbourSamples(images, masks, poses, names, dists)
