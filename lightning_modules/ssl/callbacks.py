"""Evaluation pictures for the SSL point-cloud family, from a rank-zero callback (not from the step).

At each validation (or test) epoch the first batch is kept with the step's outputs; at the epoch's end rank
zero logs for up to `num_images` samples one figure of titled panels: the input, the coloured cloud
rendered from the predicted viewpoint, its silhouette against the mask, the cloud from a new view (azimuth
turned by 90 degrees), and, when the test step ran inference-stage optimization, the optimized cloud's
silhouette; and each coloured cloud (subsampled to `max_points`) as a `wandb.Object3D` of (x, y, z, r, g, b)
rows. With W&B these go to `<split>/images` and `<split>/cloud_<i>`; with another logger, or none, figures
(.png) and clouds (ASCII .ply) are saved under <default_root_dir>/media/.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from lightning_modules.family import EvalPictures
from lightning_modules.visualization import Panel, render_figure


def save_ply(path: str | Path, points: torch.Tensor, colors: torch.Tensor) -> None:
    """An ASCII .ply of points (P, 3) with colours (P, 3) in [0, 1]."""
    rgb = (colors.clamp(0, 1) * 255).round().to(torch.uint8)
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {points.shape[0]}",
        *(f"property float {a}" for a in "xyz"),
        *(f"property uchar {c}" for c in ("red", "green", "blue")),
        "end_header",
    ]
    lines += [
        f"{x:.6g} {y:.6g} {z:.6g} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(points.tolist(), rgb.tolist())
    ]
    Path(path).write_text("\n".join(lines) + "\n")


class PointCloudVisualizer(EvalPictures):
    """Logs figures and clouds of the first evaluation batch (module docstring); num_images 0 disables it."""

    def __init__(self, num_images: int = 4, max_points: int = 2048):
        self.num_images = num_images
        self.max_points = max_points
        self._kept: dict | None = None

    @torch.no_grad()
    def _keep(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if (
            self.num_images <= 0
            or batch_idx != 0
            or not trainer.is_global_zero
            or not isinstance(outputs, dict)
        ):
            return
        n = self.num_images
        points, colors, pose = outputs["points"][:n], outputs["colors"][:n], outputs["pose"][:n]
        mask = batch["mask"][:n].to(points.dtype)
        turned = pose + pose.new_tensor([math.pi / 2, 0.0])
        views = pl_module.render(points, torch.stack([pose, turned], 1), colors)  # (n, 2, ...)
        kept = {
            "image": batch["image"][:n],
            "render": views.images[:, 0],
            "silhouette": torch.cat([views.masks[:, 0], mask, torch.zeros_like(mask)], 1),
            "novel": views.images[:, 1],
            "points": points,
            "colors": colors,
        }
        if "iso" in outputs:
            iso_sil = outputs["iso"]["silhouette"][:n]
            kept["iso"] = torch.cat([iso_sil, mask, torch.zeros_like(mask)], 1)
        self._kept = {k: v.detach().float().cpu() for k, v in kept.items()}

    def figures(self, k: dict) -> list[tuple[str, np.ndarray]]:
        out = []
        for i in range(k["image"].shape[0]):
            panels = [
                Panel(k["image"][i].clamp(0, 1), "input"),
                Panel(k["render"][i].clamp(0, 1), "cloud, predicted view"),
                Panel(k["silhouette"][i].clamp(0, 1), "silhouette (red) vs mask (green)"),
                Panel(k["novel"][i].clamp(0, 1), "cloud, azimuth + 90 deg"),
            ]
            if "iso" in k:
                panels.append(Panel(k["iso"][i].clamp(0, 1), "after ISO: silhouette vs mask"))
            out.append((f"{i}", render_figure(panels).image))
        return out

    def _subsample(self, points: torch.Tensor, colors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if points.shape[0] <= self.max_points:
            return points, colors
        idx = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(0))[: self.max_points]
        return points[idx], colors[idx]

    @rank_zero_only
    def _log(self, trainer, split: str) -> None:
        if self._kept is None:
            return
        k, self._kept = self._kept, None
        figures = self.figures(k)
        step = trainer.global_step
        clouds = [self._subsample(p, c) for p, c in zip(k["points"], k["colors"])]
        if isinstance(trainer.logger, WandbLogger):
            import wandb

            objects = {
                f"{split}/cloud_{i}": wandb.Object3D(torch.cat([p, c * 255], 1).numpy())
                for i, (p, c) in enumerate(clouds)
            }
            self.publish(trainer, split, figures, objects)
            return
        out = self.publish(trainer, split, figures)
        for i, (p, c) in enumerate(clouds):
            save_ply(out / f"{split}_step{step:06d}_cloud_{i}.ply", p, c)
