"""Evaluation pictures for the depth family, from a rank-zero callback (not from the step).

At each validation (or test) epoch the first batch of the first dataloader is kept; at the epoch's end
rank zero logs for up to `num_images` samples one figure of four titled panels: the input, the predicted
depth (median-aligned to the ground truth, as GP2 evaluates), the ground truth, and the absolute relative
error, each map with a colour bar giving its value range and unit (visualization.render_figure); and a
point cloud unprojected from the predicted depth with the sample's intrinsics (subsampled to `num_points`,
coloured by the image). With W&B these go to wandb.Image / wandb.Object3D under `val/images` (`test/...`
in a test run); with another logger, or none, the figures are saved as PNG files under
<default_root_dir>/media/.

The callback only reads the evaluation batch, the step's output and `trainer.global_step`: it works the
same in `trainer.fit`, and in `trainer.validate` / `trainer.test` without a fit (an eval run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from geometry.depth import unproject_depth
from lightning_modules.depth_metrics import align_prediction
from lightning_modules.family import EvalPictures
from lightning_modules.visualization import ColorBar, Panel, colorize, render_figure, to_uint8_hwc
from losses.depth import DENSE_DEPTH_TYPES

ERROR_RANGE = (0.0, 0.5)  # colour range of the abs. rel. error panel (larger errors saturate)


def _range(x: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    """2nd and 98th percentiles of x (H, W) over valid (H, W) (colorize's default range); (0, 1) if empty."""
    vals = x[valid].float()
    if vals.numel() == 0:
        return 0.0, 1.0
    return float(torch.quantile(vals, 0.02)), float(torch.quantile(vals, 0.98))


class DepthVisualizer(EvalPictures):
    """Logs figures of the first evaluation batch at the end of each validation and test epoch.

    Args:
        num_images: samples per figure set (0 disables the callback).
        num_points: points per logged point cloud.
    """

    def __init__(self, num_images: int = 4, num_points: int = 2048):
        self.num_images = num_images
        self.num_points = num_points
        self._kept: dict | None = None

    def _keep(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx) -> None:
        if self.num_images <= 0 or batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero:
            return
        n = self.num_images
        if isinstance(outputs, dict) and "pred" in outputs:  # the step's own prediction: no second forward
            pred = outputs["pred"][:n]
        else:
            with torch.no_grad():
                pred = pl_module.predict_like(batch["image"][:n], batch["depth"][:n])
        has_k = batch.get("has_intrinsics", torch.ones(len(batch["image"]), dtype=torch.bool))
        self._kept = {
            "image": F.interpolate(batch["image"][:n], size=batch["depth"].shape[-2:], mode="bilinear").cpu(),
            "pred": pred.detach().float().cpu(),
            "depth": batch["depth"][:n].float().cpu(),
            "valid": batch["valid"][:n].cpu(),
            "depth_type": list(batch["depth_type"][:n]),
            "intrinsics": batch["intrinsics"][:n].float().cpu() if "intrinsics" in batch else None,
            "has_intrinsics": has_k[:n].cpu(),
        }

    @rank_zero_only
    def _log(self, trainer, split: str) -> None:
        if self._kept is None:
            return
        figures, clouds = self.figures(self._kept)
        self._kept = None
        step = trainer.global_step
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log(
                {
                    f"{split}/images": [wandb.Image(p, caption=c) for c, p in figures],
                    **{f"{split}/point_cloud_{i}": wandb.Object3D(c) for i, c in enumerate(clouds)},
                    "trainer/global_step": step,
                }
            )
        else:
            from PIL import Image

            out = Path(trainer.default_root_dir) / "media"
            out.mkdir(parents=True, exist_ok=True)
            for i, (caption, p) in enumerate(figures):
                Image.fromarray(p).save(out / f"{split}_step{step:06d}_{i}_{caption.split(':')[0]}.png")

    # ------------------------------------------------------------------ rendering (pure)
    def panels(self, b: dict) -> tuple[list[tuple[str, list[Panel]]], list[np.ndarray]]:
        """The kept batch `b` -> ([(caption, [input, prediction, target, error] Panels)], [(P, 6) xyzrgb]).

        Dense samples (DENSE_DEPTH_TYPES) show the prediction median-aligned to the ground truth, both on
        the ground truth's range, in metres for "absolute" (no unit for "uts": its depth is up to scale);
        other samples show the unaligned prediction (depth over its median), no error map, and as target the
        disparity of a "utss_disparity" sample (up to scale and shift; nothing for "ordinal").
        A prediction that is not finite is black, and its share of pixels is in the title and caption.
        """
        out, clouds = [], []
        for i in range(b["image"].shape[0]):
            kind = b["depth_type"][i]
            gt = b["depth"][i, 0]
            valid = b["valid"][i : i + 1] & (b["depth"][i : i + 1] > 0)
            v = valid[0, 0]
            dense = kind in DENSE_DEPTH_TYPES and bool(v.any())
            unit = "m" if kind == "absolute" else ""
            if dense:
                pred_depth = align_prediction(
                    b["pred"][i : i + 1], b["depth"][i : i + 1], valid, "median_log_disparity"
                )  # (1, 1, H, W), NaN where the prediction is not finite
            else:  # no target to align to: depth relative to its median (a scale free choice, no overflow)
                p = b["pred"][i : i + 1]
                fin = torch.isfinite(p)
                mid = p[fin].median() if bool(fin.any()) else p.new_zeros(())
                pred_depth = torch.where(fin, (mid - p).exp(), torch.full_like(p, float("nan")))
            pd = pred_depth[0, 0]
            broken = ~torch.isfinite(pd) | (pd <= 0)
            note = f", {100.0 * float(broken.float().mean()):.3g}% non-finite" if bool(broken.any()) else ""
            image = Panel(b["image"][i].clamp(0, 1), "input")
            if dense:
                lo, hi = float(gt[v].min()), float(gt[v].max())
                err = (pd - gt).abs() / gt.clamp_min(1e-6)
                what = f"({unit}, median-aligned)" if unit else "(median-aligned, up to scale)"
                panels = [
                    image,
                    Panel(
                        colorize(pd, lo=lo, hi=hi), f"predicted depth {what}{note}", ColorBar(lo, hi, unit)
                    ),
                    Panel(
                        colorize(gt, v, lo, hi),
                        f"ground truth depth ({unit or 'up to scale'})",
                        ColorBar(lo, hi, unit),
                    ),
                    Panel(colorize(err, v, *ERROR_RANGE), "abs. rel. error", ColorBar(*ERROR_RANGE)),
                ]
            else:
                blank = torch.zeros_like(b["image"][i])
                lo, hi = _range(pd, ~broken)
                panels = [
                    image,
                    Panel(
                        colorize(pd, lo=lo, hi=hi),
                        f"predicted depth (relative to its median, not aligned){note}",
                        ColorBar(lo, hi),
                    ),
                    Panel(blank, f"no dense depth ground truth ({kind})"),
                    Panel(blank, "abs. rel. error (no dense ground truth)"),
                ]
                if kind == "utss_disparity" and bool(v.any()):  # `depth` holds a disparity: show it as one
                    r = _range(gt, v)
                    panels[2] = Panel(
                        colorize(gt, v, *r), "ground truth disparity (up to scale and shift)", ColorBar(*r)
                    )
            out.append((f"{i}: {kind}{note}", panels))
            if b["intrinsics"] is not None and bool(b["has_intrinsics"][i]):
                pts, ok = unproject_depth(pred_depth, b["intrinsics"][i : i + 1])  # (1, H*W, 3), (1, H*W)
                rgb = b["image"][i].reshape(3, -1).T * 255.0  # (H*W, 3)
                ok = ok[0] & torch.isfinite(pts[0]).all(dim=1)
                pts, rgb = pts[0][ok], rgb[ok]
                keep = torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(i))[
                    : self.num_points
                ]
                clouds.append(torch.cat([pts[keep], rgb[keep]], dim=1).numpy())
        return out, clouds

    def figures(self, b: dict) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray]]:
        """What is logged: ([(caption, (H', W', 3) uint8 titled figure, colour bars)], [(P, 6) xyzrgb])."""
        panels, clouds = self.panels(b)
        return [(c, render_figure(p).image) for c, p in panels], clouds

    def render(self, b: dict) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray]]:
        """-> ([(caption, (H, 4W, 3) uint8 strip of the bare panel images, no titles)], [(P, 6) xyzrgb])."""
        panels, clouds = self.panels(b)
        strips = [(c, to_uint8_hwc(torch.cat([p.image for p in ps], dim=2))) for c, ps in panels]
        return strips, clouds
