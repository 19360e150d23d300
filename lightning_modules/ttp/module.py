"""TTP (Kokkinos and Kokkinos, NeurIPS 2021): 2D positions of the template's vertices regressed by a CNN, then
the camera and the mesh deformation fitted to them by a differentiable optimization layer
(`geometry.fit_camera_and_deformation`), trained from masks, the image's own texture and optional keypoints.

Per image (Sec. 3): u, v = phi(I) (`PointRegressor`); (R, t, s, c) = fit(u, v, T, B, gamma); the mesh
V = T + B c is seen by the weak-perspective camera (s, R, t); its soft silhouette, its texture (the input
image sampled at u) and its projection drive the losses (losses/ttp.py, weights in `weights`, defaulting to
the official training command: `losses.ttp.TTP_WEIGHTS`). The basis B (K x N x 3, its own learning
rate) and the ridge weight gamma = exp(log_ridge) are parameters learned through the layer.

Two stages (Sec. 4 "Network Training"): for `rigid_epochs` epochs the template is fitted rigidly (one
solver iteration, no deformation, the deformation losses off), then deformation is on with `iterations`
alternations. Logged keys:
  train/loss, train/<term>         the total and each unweighted loss term
  val/mask_iou, val/mask_iou_soft  mask IoU of the rendered silhouette (binarized at 0.5 / soft, CMR)
  val/pck_0.1, val/pck_0.15        keypoint accuracy (%) of the projected keypoint vertices, CMR style
  val/chamfer, val/rotation_error  synthetic data only: the fitted shape's Chamfer distance to the true
                                   shape (template frame, geometry.chamfer_distance, squared, mean) and the
                                   geodesic error (degrees) of the fitted rotation
  val/chamfer_rigid                the undeformed template's Chamfer distance (the rigid baseline's shape)
  val/iou_3d                       PASCAL3D+ with `cad_root`: 3D IoU at 32^3 of the fitted mesh and the
                                   object's CAD model, UCMR protocol (lightning_modules/ttp/iou3d.py)
  test/...                         the same on the test split
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

import losses.ttp as L
from geometry import (
    WeakPerspectiveCameras,
    chamfer_distance,
    fit_camera_and_deformation,
    hard_rgb_blend,
    mesh_laplacian_smoothing,
    mesh_soft_silhouette,
    rasterize_meshes,
    sample_image_texture,
    so3_relative_angle,
    vertex_visibility,
    weak_perspective_scale,
)
from geometry.ttp_layer import TTPFit
from lightning_modules.family import MODELS, FamilyModule
from lightning_modules.ttp.iou3d import PascalIoU3D
from lightning_modules.ttp.metrics import PCK, mask_iou
from lightning_modules.ttp.network import PointRegressor
from lightning_modules.ttp.template import load_template

TEXTURE_LOSSES = ("pixel", "lpips")
SOLVERS = ("gauss_newton", "lbfgs")
SHAPE_METRICS = ("chamfer", "chamfer_rigid", "rotation_error")


class Reconstruction(NamedTuple):
    """u (B, N, 2), v (B, N), the layer's fit, its camera, the fitted mesh in NDC (B, N, 3)."""

    u: torch.Tensor
    v: torch.Tensor
    fit: TTPFit
    cameras: WeakPerspectiveCameras
    verts_ndc: torch.Tensor


def mirror_vertices(verts: torch.Tensor) -> torch.Tensor:
    """(N,) long: for each template vertex (N, 3) the vertex nearest to its mirror image in the x = 0 plane
    (the left-right symmetry plane of the templates, as CMR pairs symmetric vertices), for the point flip
    term; an exact permutation for a mirror-symmetric vertex set such as the synthetic bird's."""
    mirrored = verts * verts.new_tensor([-1.0, 1.0, 1.0])
    return torch.cdist(mirrored, verts).argmin(dim=1)


@MODELS.register("ttp")
class TTPModule(FamilyModule):
    """LightningModule of the TTP family.

    Args:
        template: "synthetic_bird" or the path of an .obj (lightning_modules/ttp/template.py);
            template_keypoints: JSON of its keypoint vertices (None: the .obj's .json twin);
            subdivide: midpoint subdivisions of the template; synthetic_level: icosphere level of the
            synthetic bird (must match the data's `level`).
        num_basis: K, deformation basis size (paper: 16); ridge_init: initial gamma (official: exp(0) = 1).
        iterations: solver alternations of rigid step and ridge solve (paper: 4; Table 2 varies 1-4);
            solver: "gauss_newton" (batched) or "lbfgs" (the paper's per-sample solver).
        refit_scale: re-estimate the weak-perspective scale by least squares after every rigid step,
            starting from the paper's spread-based value (`fit`); False keeps the spread-based scale.
        rigid_epochs: warm-up epochs with the rigid template (official: --deform_epoch 100).
        rigid: never deform (the rigid-template baseline of Tables 1 and 3b), in training and evaluation.
        pretrained_path: local file of timm resnet18 ImageNet weights (None: random initialization).
        weights: loss weights by term (keys of losses.ttp.TTP_WEIGHTS; missing keys keep the default).
        texture_loss: "pixel" (L1 on masked images; the synthetic default) or "lpips" (the paper's; needs the
            trunk's ImageNet weights: `lpips_trunk_path` or the torch hub cache, else an error says which file).
        sigma, faces_per_pixel: soft silhouette sharpness (squared NDC units) and candidates per pixel.
        coverage_samples: mask pixels sampled by the coverage loss (official: 500).
        lr, basis_lr: Adam learning rates of the network and of the basis (official: 1e-4 and 1e-2).
        log_images: pictures logged by the visualizer callback per evaluation epoch.
        cad_root: folder of the category's PASCAL3D+ CAD models, PASCAL3D+_release1.1/CAD/<category>/NN.off
            (None: no 3D IoU). With it, batches that carry `cad_index` add val/iou_3d, test/iou_3d; the
            template must be in the CAD models' frame (TTP: one of the category's CAD models). An
            evaluation setting: `eval ... model.cad_root=...` works on any checkpoint.
    """

    MONITOR = "val/mask_iou"
    MONITOR_MODE = "max"
    EVAL_SETTINGS = ("iterations", "solver", "refit_scale", "log_images", "cad_root")
    INIT_ONLY = ("pretrained_path", "lpips_trunk_path")

    def __init__(
        self,
        template: str = "synthetic_bird",
        template_keypoints: str | None = None,
        subdivide: int = 0,
        synthetic_level: int = 3,
        num_basis: int = 16,
        ridge_init: float = 1.0,
        iterations: int = 4,
        solver: str = "gauss_newton",
        refit_scale: bool = True,
        rigid_epochs: int = 100,
        rigid: bool = False,
        pretrained_path: str | None = None,
        weights: dict[str, float] | None = None,
        texture_loss: str = "pixel",
        lpips_trunk_path: str | None = None,
        sigma: float = 1e-4,
        faces_per_pixel: int = 8,
        coverage_samples: int = 500,
        lr: float = 1e-4,
        basis_lr: float = 1e-2,
        log_images: int = 4,
        cad_root: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        if solver not in SOLVERS:
            raise ValueError(f"model.solver: expected one of {SOLVERS}, got {solver!r}")
        if texture_loss not in TEXTURE_LOSSES:
            raise ValueError(f"model.texture_loss: expected one of {TEXTURE_LOSSES}, got {texture_loss!r}")
        if iterations < 1 or num_basis < 1 or ridge_init <= 0:
            raise ValueError(
                f"model.iterations and model.num_basis must be >= 1 and model.ridge_init > 0, got "
                f"{iterations}, {num_basis}, {ridge_init}"
            )
        unknown = sorted(set(weights or {}) - set(L.TTP_WEIGHTS))
        if unknown:
            raise ValueError(f"model.weights: unknown terms {unknown}; known: {sorted(L.TTP_WEIGHTS)}")
        self.loss_weights = {**L.TTP_WEIGHTS, **{k: float(v) for k, v in (weights or {}).items()}}
        tpl = load_template(template, subdivide, template_keypoints, synthetic_level)
        self.register_buffer("template_verts", tpl.verts)
        self.register_buffer("faces", tpl.faces)
        self.register_buffer("keypoint_vertices", tpl.keypoint_vertices)
        self.register_buffer("vertex_flip", mirror_vertices(tpl.verts), persistent=False)
        N = tpl.verts.shape[0]
        self.net = PointRegressor(N, pretrained_path)
        # official BasisGenerator: rand(K, 3N) * 0.01; beta_weight = 0 -> gamma = exp(0)
        self.basis = nn.Parameter(torch.rand(num_basis, N, 3) * 0.01)
        self.log_ridge = nn.Parameter(torch.tensor(math.log(ridge_init)))
        self.texture = L.LPIPSTextureLoss(trunk_path=lpips_trunk_path) if texture_loss == "lpips" else None
        self.eval_metrics = nn.ModuleDict()
        for split in ("val", "test"):
            self.eval_metrics[split] = nn.ModuleDict(
                {
                    **{k: MeanMetric() for k in ("mask_iou", "mask_iou_soft", *SHAPE_METRICS)},
                    "pck": PCK(max(len(tpl.keypoint_vertices), 1)),
                }
            )
        # 3D IoU (PASCAL3D+, UCMR protocol): only with cad_root; its states are not in the checkpoint
        if cad_root is not None:
            if not Path(cad_root).is_dir():
                raise FileNotFoundError(
                    f"model.cad_root: {cad_root} is not a folder (expected PASCAL3D+_release1.1/CAD/<category> "
                    "holding the CAD models NN.off)"
                )
            for split in ("val", "test"):
                self.eval_metrics[split]["iou_3d"] = PascalIoU3D(cad_root, tpl.faces)

    # ------------------------------------------------------------------ the model
    @property
    def ridge(self) -> torch.Tensor:
        return self.log_ridge.exp()

    def deforming(self) -> bool:
        """Whether the deformation is on: never for a rigid model, else after the rigid warm-up epochs and
        always at evaluation."""
        if self.hparams.rigid:
            return False
        if not self.training:
            return True
        trainer = getattr(self, "_trainer", None)
        return trainer is None or self.current_epoch >= self.hparams.rigid_epochs

    def reconstruct(
        self, image: torch.Tensor, deform: bool = True, iterations: int | None = None
    ) -> Reconstruction:
        """image (B, 3, S, S) in [0, 1] -> the reconstruction (points, fit, camera, NDC mesh)."""
        u, v = self.net(image)
        basis = self.basis if deform else self.basis.detach()[:1] * 0.0
        its = (iterations or self.hparams.iterations) if deform else 1
        fit = self.fit(u, v, basis, its)
        cameras = WeakPerspectiveCameras(scale=fit.scale[:, None], R=fit.rotation, trans=fit.translation)
        verts_ndc = cameras.transform_points_rasterizer(fit.vertices, image.shape[-2:])
        return Reconstruction(u, v, fit, cameras, verts_ndc)

    def fit(self, u: torch.Tensor, v: torch.Tensor, basis: torch.Tensor, iterations: int) -> TTPFit:
        """The layer on regressed points u (B, N, 2) and visibilities v (B, N).

        The weak-perspective scale is the spread of u *relative to the template's*: std(u) / std(T). The
        paper sets it to std(u) "yielding invariance of the pose parameters to similarity transforms of the
        2D and 3D coordinate frames" (Sec. 3.2), which holds only when the 3D frame is normalized as well;
        the official code leaves the template as it is (`project_points_by_theta(..., scale=False)`), which
        assumes a template of unit spread. Measured on true correspondences of the synthetic bird (32
        instances, its own basis): std(u) alone gives 0.34 of the true scale (the basis must then inflate
        the mesh 3x) and a median rotation error of 1.1 deg; std(u) / std(T) gives 1.02 +- 0.14 and 0.43 deg.

        That +-14% per image is foreshortening (a bird seen head-on spreads less in 2D than from the side)
        and shape (a longer bird spreads more), and a fixed scale leaves the deformation to absorb it. With
        `refit_scale` the layer refines s by least squares after each rigid step. Measured on the true
        correspondences and the true basis of 128 validation birds (deformation_std 0.1, ridge 1e-3, 4
        iterations): the deformed shape's Chamfer to the truth is 0.0106 with the fixed scale, no better
        than the undeformed template's 0.0101, and 0.0060 with the refit (cosine of the fitted and true
        deformations 0.47 -> 0.70).
        """
        scale = weak_perspective_scale(u) / self.template_verts.reshape(-1).std()
        return fit_camera_and_deformation(
            u,
            v,
            self.template_verts,
            basis,
            self.ridge,
            iterations=iterations,
            solver=self.hparams.solver,
            scale=scale,
            refit_scale=self.hparams.refit_scale,
        )

    def forward(self, image: torch.Tensor) -> Reconstruction:
        return self.reconstruct(image, deform=self.deforming())

    def silhouette(self, rec: Reconstruction, size: tuple[int, int]) -> torch.Tensor:
        """Soft silhouette (B, 1, H, W) of the fitted mesh."""
        alpha = mesh_soft_silhouette(
            rec.verts_ndc,
            self.faces,
            size,
            sigma=self.hparams.sigma,
            faces_per_pixel=self.hparams.faces_per_pixel,
        )
        return alpha[:, None]

    def render_texture(self, verts_ndc: torch.Tensor, u: torch.Tensor, image: torch.Tensor):
        """The mesh textured with the image sampled at u, rendered from `verts_ndc`'s camera:
        RGB (B, 3, H, W) on black and the rasterizer's fragments."""
        frags = rasterize_meshes(verts_ndc, self.faces, image.shape[-2:], faces_per_pixel=1)
        colors = sample_image_texture(frags, self.faces, u, image)
        rgba = hard_rgb_blend(colors, frags, background_color=(0.0, 0.0, 0.0))
        return rgba[..., :3].permute(0, 3, 1, 2), frags

    # ------------------------------------------------------------------ losses
    def loss_terms(self, batch: dict, rec: Reconstruction, deform: bool) -> dict[str, torch.Tensor]:
        """Every loss term (unweighted) whose weight is non-zero; the deformation terms only when deforming."""
        w = self.loss_weights
        image, mask = batch["image"], self._mask(batch)
        size = image.shape[-2:]
        u, fit = rec.u, rec.fit
        proj = rec.cameras.project(fit.vertices)  # (B, N, 2)
        terms: dict[str, torch.Tensor] = {}
        if w["mask"]:
            terms["mask"] = L.mask_l1(self.silhouette(rec, size), mask)
        render, frags = self.render_texture(rec.verts_ndc, u, image)
        if w["texture"]:
            R_m, t_m = L.mirror_camera(fit.rotation.detach(), fit.translation.detach())
            cam_m = WeakPerspectiveCameras(scale=fit.scale.detach()[:, None], R=R_m, trans=t_m)
            render_m, _ = self.render_texture(
                cam_m.transform_points_rasterizer(fit.vertices.detach(), size), u, image
            )
            if self.texture is not None:
                terms["texture"] = self.texture(render, image, mask, render_m)
            else:
                terms["texture"] = L.texture_pixel_loss(render, image, mask, render_m)
        if w["visibility"]:
            with torch.no_grad():
                vis_gt = vertex_visibility(rec.verts_ndc.detach(), self.faces, frags).to(u.dtype)
            terms["visibility"] = L.visibility_loss(rec.v, vis_gt)
        if w["cycle"]:
            terms["cycle"] = L.cycle_loss(u, proj, L.points_in_mask(proj.detach(), mask))
        if w["edge_length"]:
            terms["edge_length"] = L.edge_length_consistency(u, proj, self.faces)
        if w["silhouette_consistency"]:
            terms["silhouette_consistency"] = L.silhouette_consistency(u, L.mask_distance_transform(mask))
        if w["silhouette_coverage"]:
            terms["silhouette_coverage"] = L.silhouette_coverage(u, mask, self.hparams.coverage_samples)
        if w["keypoint"] and len(self.keypoint_vertices):
            kp = batch["keypoints"]
            terms["keypoint"] = L.keypoint_reprojection(
                proj[:, self.keypoint_vertices], kp[..., :2], kp[..., 2]
            )
        if w["equivariance"]:
            affine = L.random_affine(image.shape[0], image_size=size, dtype=image.dtype, device=image.device)
            u_aug, _ = self.net(L.warp_images(image, affine))
            terms["equivariance"] = L.equivariance_loss(u_aug, u, affine)
        if w["flip_rotation"] or w["flip_points"]:
            u_f, v_f = self.net(L.flip_images(image))
            if w["flip_points"]:
                terms["flip_points"] = L.flip_equivariance_loss(u_f, u, self.vertex_flip)
            if w["flip_rotation"]:
                basis = self.basis if deform else self.basis.detach()[:1] * 0.0
                fit_f = self.fit(u_f, v_f, basis, 1)
                terms["flip_rotation"] = L.flip_rotation_loss(fit_f.rotation, fit.rotation)
        if deform:
            tpl = self.template_verts
            if w["arap_deformed"]:
                terms["arap_deformed"] = L.arap_deformed(tpl, fit.vertices, self.faces)
            if w["arap_basis"]:
                terms["arap_basis"] = L.arap_basis(tpl, self.basis, self.faces)
            if w["laplacian_deformed"]:
                # official triangle_reg_wt: the cotangent Laplacian of the deformed mesh
                terms["laplacian_deformed"] = mesh_laplacian_smoothing(fit.vertices, self.faces, "cot")
            if w["laplacian_basis"]:
                # official tri_basis_wt: the uniform Laplacian of the template moved by each basis component
                terms["laplacian_basis"] = mesh_laplacian_smoothing(tpl + self.basis, self.faces, "uniform")
            if w["deformation_l2"]:
                terms["deformation_l2"] = L.deformation_l2(fit.vertices - tpl)
            if w["coeffs_l2"]:
                terms["coeffs_l2"] = fit.coefficients.norm(dim=-1).mean()
        return terms

    def _mask(self, batch: dict) -> torch.Tensor:
        if "mask" not in batch or ("has_mask" in batch and not bool(batch["has_mask"].all())):
            raise ValueError(
                "ttp: every training and evaluation sample needs a `mask` (for PASCAL3D+, set the reader's "
                "mask_root)"
            )
        return batch["mask"].to(batch["image"].dtype)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        deform = self.deforming()
        rec = self.reconstruct(batch["image"], deform=deform)
        terms = self.loss_terms(batch, rec, deform)
        loss = sum(self.loss_weights[k] * v for k, v in terms.items())
        B = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=B)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, split: str, batch: dict) -> dict[str, Any]:
        image, mask = batch["image"], self._mask(batch)
        rec = self.reconstruct(image, deform=self.deforming())
        sil = self.silhouette(rec, image.shape[-2:])
        m = self.eval_metrics[split]
        m["mask_iou"].update(mask_iou((sil > 0.5).to(sil.dtype), mask))
        m["mask_iou_soft"].update(mask_iou(sil, mask))
        if len(self.keypoint_vertices) and "keypoints" in batch:
            proj = rec.cameras.project(rec.fit.vertices[:, self.keypoint_vertices])
            m["pck"].update(proj, batch["keypoints"], batch["bbox"])
        if "true_verts" in batch:
            true = batch["true_verts"].to(image.dtype)
            m["chamfer"].update(chamfer_distance(rec.fit.vertices, true)[0].detach().expand(1))
            rigid = self.template_verts.expand_as(true)
            m["chamfer_rigid"].update(chamfer_distance(rigid, true)[0].expand(1))
            angle = so3_relative_angle(rec.fit.rotation, batch["true_rotation"].to(image.dtype))
            m["rotation_error"].update(torch.rad2deg(angle))
        if "iou_3d" in m and "cad_index" in batch:  # 3D IoU: the fitted mesh in the template (CAD) frame
            keep = batch["has_cad_index"].bool() if "has_cad_index" in batch else slice(None)
            m["iou_3d"].update(rec.fit.vertices[keep].detach(), batch["cad_index"][keep].long())
        return {"reconstruction": rec, "silhouette": sil}

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return self._eval_step("test", batch)

    def _log_epoch(self, split: str) -> None:
        m = self.eval_metrics[split]
        out = {}
        for k in ("mask_iou", "mask_iou_soft", *SHAPE_METRICS):
            if m[k].update_count:
                out[f"{split}/{k}"] = m[k].compute().float()
            m[k].reset()
        if m["pck"].update_count:
            for a, v in m["pck"].compute().items():
                out[f"{split}/pck_{a:g}"] = v.float()
        m["pck"].reset()
        if "iou_3d" in m:
            if m["iou_3d"].update_count:
                out[f"{split}/iou_3d"] = m["iou_3d"].compute().float()
            m["iou_3d"].reset()
        self.log_dict(out, sync_dist=False, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_callbacks(self) -> list[pl.Callback]:
        from lightning_modules.ttp.callbacks import MeshVisualizer

        return [MeshVisualizer(self.hparams.log_images)]

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self):
        general = [p for n, p in self.named_parameters() if n != "basis" and p.requires_grad]
        return torch.optim.Adam(
            [{"params": general}, {"params": [self.basis], "lr": self.hparams.basis_lr}],
            lr=self.hparams.lr,
            betas=(0.9, 0.999),
        )
