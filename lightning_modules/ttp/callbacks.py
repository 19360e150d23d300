"""Evaluation pictures for the TTP family, from a rank-zero callback (not from the step).

At each validation (or test) epoch the first batch is kept with the step's reconstruction; at the epoch's
end rank zero logs for up to `num_images` samples one figure of five titled panels: the input, the
regressed points u over it (coloured by visibility v), the rendered soft silhouette against the mask, the
textured mesh seen from the fitted camera, and the same mesh from a new view (turned 90 degrees about the
vertical image axis); and the fitted mesh itself as an .obj (wandb.Object3D). With W&B these go to
`val/images` and `val/mesh_<i>`; with another logger, or none, figures and meshes are saved under
<default_root_dir>/media/.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from geometry import WeakPerspectiveCameras, axis_angle_to_matrix, save_obj
from lightning_modules.family import EvalPictures
from lightning_modules.visualization import Panel, render_figure


def draw_points(image: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """image (3, H, W), u (N, 2) normalized coordinates, v (N,) -> a copy with each point as a pixel
    coloured from red (v = 0) to green (v = 1)."""
    out = image.clone() * 0.6
    H, W = image.shape[-2:]
    col = ((u[:, 0] + 1) * W / 2 - 0.5).round().long()
    row = ((u[:, 1] + 1) * H / 2 - 0.5).round().long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    colour = torch.stack([1 - v, v, torch.zeros_like(v)], 0)  # (3, N)
    out[:, row[inside], col[inside]] = colour[:, inside]
    return out


class MeshVisualizer(EvalPictures):
    """Logs figures and meshes of the first evaluation batch (module docstring); num_images 0 disables it."""

    def __init__(self, num_images: int = 4):
        self.num_images = num_images
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
        rec, sil = outputs["reconstruction"], outputs["silhouette"]
        image = batch["image"][:n]
        render, _ = pl_module.render_texture(rec.verts_ndc[:n], rec.u[:n], image)
        # a new view: the object turned 90 degrees about the image's vertical axis (R' = R R_y)
        turn = axis_angle_to_matrix(image.new_tensor([[0.0, math.pi / 2, 0.0]])).expand(len(image), 3, 3)
        fit = rec.fit
        cam = WeakPerspectiveCameras(
            scale=fit.scale[:n, None], R=fit.rotation[:n] @ turn, trans=fit.translation[:n]
        )
        novel, _ = pl_module.render_texture(
            cam.transform_points_rasterizer(fit.vertices[:n], image.shape[-2:]), rec.u[:n], image
        )
        mask = batch["mask"][:n].to(image.dtype)
        self._kept = {
            "image": image.float().cpu(),
            "points": draw_points_batch(image, rec.u[:n], rec.v[:n]).float().cpu(),
            "silhouette": torch.cat([sil[:n], mask, torch.zeros_like(mask)], 1)
            .float()
            .cpu(),  # R: render, G: mask
            "render": render.float().cpu(),
            "novel": novel.float().cpu(),
            "verts": fit.vertices[:n].float().cpu(),
            "faces": pl_module.faces.cpu(),
        }

    def figures(self, k: dict) -> list[tuple[str, np.ndarray]]:
        out = []
        for i in range(k["image"].shape[0]):
            panels = [
                Panel(k["image"][i].clamp(0, 1), "input"),
                Panel(k["points"][i].clamp(0, 1), "points u (red hidden, green visible)"),
                Panel(k["silhouette"][i].clamp(0, 1), "silhouette (red) vs mask (green)"),
                Panel(k["render"][i].clamp(0, 1), "textured mesh, fitted camera"),
                Panel(k["novel"][i].clamp(0, 1), "textured mesh, new view"),
            ]
            out.append((f"{i}", render_figure(panels).image))
        return out

    @rank_zero_only
    def _log(self, trainer, split: str) -> None:
        if self._kept is None:
            return
        k, self._kept = self._kept, None
        figures = self.figures(k)
        step = trainer.global_step
        if isinstance(trainer.logger, WandbLogger):
            import wandb

            with tempfile.TemporaryDirectory() as tmp:  # Object3D reads the file when it is built
                meshes = {}
                for i, verts in enumerate(k["verts"]):
                    path = Path(tmp) / f"mesh_{i}.obj"
                    save_obj(path, verts, k["faces"])
                    meshes[f"{split}/mesh_{i}"] = wandb.Object3D(str(path))
                self.publish(trainer, split, figures, meshes)
            return
        out = self.publish(trainer, split, figures)
        for i, verts in enumerate(k["verts"]):
            save_obj(out / f"{split}_step{step:06d}_mesh_{i}.obj", verts, k["faces"], overwrite=True)


def draw_points_batch(image: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`draw_points` for each of a batch: image (B, 3, H, W), u (B, N, 2), v (B, N)."""
    return torch.stack([draw_points(image[i], u[i], v[i]) for i in range(image.shape[0])])
