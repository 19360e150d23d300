"""Validation pictures for the depth family, from a rank-zero callback (not from the step).

At each validation epoch the first batch of the first validation dataloader is kept; at the epoch's end
rank zero logs for up to `num_images` samples: the input, the predicted depth (median-aligned to the
ground truth, as GP2 evaluates), the absolute relative error map, and a point cloud unprojected from the
predicted depth with the sample's intrinsics (subsampled to `num_points`, coloured by the image).
With W&B these go to wandb.Image / wandb.Object3D under `val/images/...`; with another logger, the
pictures are saved as PNG files under <run_dir>/media/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from geometry.depth import unproject_depth
from lightning_modules.depth_metrics import align_prediction
from lightning_modules.visualization import colorize, to_uint8_hwc


class DepthVisualizer(pl.Callback):
    def __init__(self, num_images: int = 4, num_points: int = 2048):
        self.num_images = num_images
        self.num_points = num_points
        self._batch: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.num_images <= 0 or batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero:
            return
        n = self.num_images
        if isinstance(outputs, dict) and "pred" in outputs:  # the step's own prediction: no second forward
            pred = outputs["pred"][:n]
        else:
            with torch.no_grad():
                pred = pl_module.predict_like(batch["image"][:n], batch["depth"][:n])
        self._batch = {
            "image": F.interpolate(batch["image"][:n], size=batch["depth"].shape[-2:], mode="bilinear").cpu(),
            "pred": pred.float().cpu(),
            "depth": batch["depth"][:n].float().cpu(),
            "valid": batch["valid"][:n].cpu(),
            "depth_type": list(batch["depth_type"][:n]),
            "intrinsics": batch["intrinsics"][:n].float().cpu() if "intrinsics" in batch else None,
            "has_intrinsics": batch.get("has_intrinsics", torch.ones(len(batch["image"]), dtype=torch.bool))[
                :n
            ],
        }

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module):
        if self._batch is None or trainer.sanity_checking:
            return
        panels, clouds = self.render(self._batch)
        self._batch = None
        step = trainer.global_step
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log(
                {
                    "val/images": [wandb.Image(p, caption=c) for c, p in panels],
                    **{f"val/point_cloud_{i}": wandb.Object3D(c) for i, c in enumerate(clouds)},
                    "trainer/global_step": step,
                }
            )
        else:
            from PIL import Image

            out = Path(trainer.default_root_dir) / "media"
            out.mkdir(parents=True, exist_ok=True)
            for i, (caption, p) in enumerate(panels):
                Image.fromarray(p).save(out / f"val_step{step:06d}_{i}_{caption.split(':')[0]}.png")

    def render(self, b: dict) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray]]:
        """-> ([(caption, (H, 4W, 3) uint8 strip of input | prediction | target | error)], [(P, 6) xyzrgb])."""
        panels, clouds = [], []
        for i in range(b["image"].shape[0]):
            valid = b["valid"][i : i + 1] & (b["depth"][i : i + 1] > 0)
            dense = b["depth_type"][i] in ("absolute", "uts") and bool(valid.any())
            if dense:
                pred_depth = align_prediction(
                    b["pred"][i : i + 1], b["depth"][i : i + 1], valid, "median_log_disparity"
                )
            else:
                pred_depth = (-b["pred"][i : i + 1]).exp()
            pd, gt, v = pred_depth[0, 0], b["depth"][i, 0], valid[0, 0]
            lo, hi = (float(gt[v].min()), float(gt[v].max())) if dense else (None, None)
            err = ((pd - gt).abs() / gt.clamp_min(1e-6)) if dense else torch.zeros_like(pd)
            strip = torch.cat(
                [
                    b["image"][i].clamp(0, 1),
                    colorize(pd, lo=lo, hi=hi),
                    colorize(gt, v, lo, hi),
                    colorize(err, v & dense, 0.0, 0.5),
                ],
                dim=2,
            )
            panels.append(
                (
                    f"{i}: input | predicted depth | target ({b['depth_type'][i]}) | abs rel error 0-0.5",
                    to_uint8_hwc(strip),
                )
            )
            if b["intrinsics"] is not None and bool(b["has_intrinsics"][i]):
                pts, ok = unproject_depth(pred_depth, b["intrinsics"][i : i + 1])  # (1, H*W, 3), (1, H*W)
                rgb = b["image"][i].reshape(3, -1).T * 255.0  # (H*W, 3)
                pts, rgb = pts[0][ok[0]], rgb[ok[0]]
                keep = torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(i))[
                    : self.num_points
                ]
                clouds.append(torch.cat([pts[keep], rgb[keep]], dim=1).numpy())
        return panels, clouds
