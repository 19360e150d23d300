"""TTP's evaluation metrics as torchmetrics objects (DDP-synchronized by summed states).

- Mask IoU, CMR / TTP protocol (fkokkinos/to_the_point_3d_reconstruction benchmark/evaluate.py `evaluate`):
  per image `sum(m p) / sum(m + p - m p)` of the ground-truth mask m and the rendered silhouette p, averaged
  over images; "mask_iou" binarizes p at 0.5, "mask_iou_soft" uses the soft silhouette as the official code.
- PCK at alpha (0.1, 0.15), CMR style (same file, `test`): a visible keypoint is correct when its error is
  below alpha times the larger side of the object's bounding box; the fraction correct is taken per
  keypoint over the images where it is visible, then averaged over keypoints. Errors and boxes are both in
  normalized crop coordinates here, so the ratio is the image-pixel one (the official code approximates the
  box side by the crop side / (1 + 2 pad)).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def mask_iou(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred (B, H, W) or (B, 1, H, W) in [0, 1], mask the same shape in {0, 1} -> IoU (B,); 1 when both
    are empty (nothing to get wrong)."""
    p, m = pred.flatten(1).float(), mask.flatten(1).float()
    inter = (p * m).sum(1)
    union = (p + m - p * m).sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.ones_like(union))


class PCK(Metric):
    """Percentage of correct keypoints (module docstring) for each alpha in `alphas`.

    `update(pred, keypoints, bbox)`: pred (B, K, 2) and keypoints (B, K, 3) (x, y, visibility) in normalized
    crop coordinates, bbox (B, 4) x1, y1, x2, y2 in the same coordinates. `compute()` -> {alpha: percent}.
    A keypoint never visible does not count in the mean over keypoints; NaN when none is visible.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_keypoints: int, alphas: tuple[float, ...] = (0.1, 0.15), **kwargs) -> None:
        super().__init__(**kwargs)
        self.alphas = tuple(float(a) for a in alphas)
        self.add_state("correct", torch.zeros(len(self.alphas), num_keypoints, dtype=torch.float64), "sum")
        self.add_state("visible", torch.zeros(num_keypoints, dtype=torch.float64), "sum")

    def update(self, pred: torch.Tensor, keypoints: torch.Tensor, bbox: torch.Tensor) -> None:
        if pred.shape[:-1] != keypoints.shape[:-1] or pred.shape[-1] != 2 or keypoints.shape[-1] != 3:
            raise ValueError(
                f"Expected pred (B, K, 2) and keypoints (B, K, 3), got {tuple(pred.shape)}, {tuple(keypoints.shape)}"
            )
        side = torch.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]).clamp_min(1e-12)  # (B,)
        err = (pred.detach().float() - keypoints[..., :2].float()).norm(dim=-1) / side[:, None]  # (B, K)
        vis = keypoints[..., 2] > 0.5
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))  # NaN is wrong
        for i, a in enumerate(self.alphas):
            self.correct[i] += ((err < a) & vis).sum(0).to(self.correct.dtype)
        self.visible += vis.sum(0).to(self.visible.dtype)

    def compute(self) -> dict[float, torch.Tensor]:
        seen = self.visible > 0
        out = {}
        for i, a in enumerate(self.alphas):
            frac = self.correct[i][seen] / self.visible[seen]
            out[a] = 100.0 * frac.mean() if seen.any() else torch.tensor(float("nan"), dtype=torch.float64)
        return out
