"""SSL point clouds (Navaneet et al., CVPR 2020): a coloured point cloud and its viewpoint from one image,
trained from images and silhouettes only, with geometric and pose cycle consistency.

Per training step (losses/ssl_pointcloud.py, weights `weights` over `losses.ssl_pointcloud.SSL_WEIGHTS`, the
official run.sh values): N_rec gives points P^ (B, P, 3) and colours, N_pose the viewpoint v^ (B, 2); the
cloud is rendered from v^ (`render_views`: CAPNet silhouettes, DIFFER colours, the lineage camera of
`datamodules.pointcloud.camera`) and compared with the input image and mask (Eq. 1-4). With `cycle`, the cloud
is also rendered from k random viewpoints; N_rec of those renderings must give the same cloud (Eq. 5) and
N_pose must give back the sampled viewpoints (Eq. 7). With `nn`, the cloud rendered from the predicted poses
of its nearest neighbours must match their silhouettes (Eq. 9); the symmetry loss (Eq. 10) acts when its
weight is non-zero. With `pose_supervised`, the ground-truth pose replaces N_pose (Table 2's baseline).

Two networks, two objectives (Eq. 6/11 for N_rec, Eq. 8 for N_pose), two Adam optimizers (manual
optimization, as the official main.py minimises `loss` over the reconstruction variables and `pose_loss`
over the pose variables). One backward pass serves both: each term reaches only its own network, because the
input view is rendered twice, once with the pose detached (N_rec's image and mask terms) and once with the
cloud detached (N_pose's), and N_pose sees the random-view renderings detached (the official pose loss is
minimised over the pose variables only).

Nearest neighbours are mined, as in the paper, among the training samples by the Euclidean distance in N_rec's
shape latent (`ReconstructionNet.encode`): `lightning_modules/ssl/bank.py` keeps every training sample's
feature, image and silhouette by name and refreshes a sample's row whenever it is in a batch (so the
features follow the training encoder; the bank is complete after the first epoch). `nn_source="batch"`
mines within the batch instead.

Evaluation: at the end of every validation epoch one global rotation R is fitted on all validation
predictions against their ground truth (`geometry.fit_rotation_chamfer`, Sec. 4.3), stored in the
`alignment` buffer (so in the checkpoint) and applied to validation and test predictions (`pred @ R`).
The pose errors take the same R as the alignment of the learnt frame (`pose_errors(alignment=R)`; the paper
does not say how its frame is aligned). Logged keys:
  train/loss_rec, train/loss_pose, train/<term>  the two objectives and each unweighted term
  val/chamfer, val/emd                Chamfer and EMD, x100, in the `chamfer_metric` / `emd_metric`
                                      conventions of lightning_modules/ssl/metrics.py (default "paper":
                                      squared distances summed over the points, matched distances summed)
  val/pose_median, val/pose_acc       median geodesic error (deg) and accuracy (% < 30 deg), "No-flip"
  val/pose_median_flip, val/pose_acc_flip   the same with Table 5's 180-degree flip
  val/mask_iou                        IoU of the silhouette projected from the predicted pose (> 0.5)
  test/...                            the same with the R of the last validation epoch
  test/iso/{chamfer,emd,mask_iou}_{before,after}   with iso_steps > 0: inference-stage optimization

Inference-stage optimization (Sec. 3.5, Eq. 12-13, `iso_steps` > 0, test split only): per test batch the
predicted points and colours become free variables (initialized from the prediction; the networks are not
changed) and Adam (`iso_lr`) minimises `alpha (L_I + L_M) + lambda d_Ch(P, P_0) + kappa L_sym` against the
input image and mask from the predicted (fixed) viewpoint; lambda = `iso_reg_weight` (the paper's value is
in its supplementary material), kappa = weights["symmetry"]. Needs gradients at test time: the experiment
sets `trainer.inference_mode: false` (an inference-mode trainer works too: the step leaves inference mode).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import CatMetric

import losses.ssl_pointcloud as L
from datamodules.pointcloud.camera import lineage_intrinsics, project_to_ndc, world2cam
from datamodules.seeding import stable_seed
from geometry import fit_rotation_chamfer
from geometry.pointcloud import chamfer_variant
from lightning_modules.family import MODELS, FamilyModule
from lightning_modules.ssl.bank import NeighbourBank
from lightning_modules.ssl.metrics import (
    CHAMFER_METRICS,
    EMD_METRICS,
    pose_errors,
    pose_metrics,
    reconstruction_metrics,
)
from lightning_modules.ssl.network import PoseNet, Reconstruction, ReconstructionNet

MASK_BCE = ("prob", "logits")
AFFINITY = ("paper", "official", "none")
NN_SOURCES = ("bank", "batch")
NETWORK_WEIGHTS = {k: v for k, v in L.SSL_WEIGHTS.items() if k != "lr"}


def silhouette_iou(pred: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of `pred > threshold` and `target > 0.5` per image; 1 where both are empty.
    pred, target: (B, 1, H, W). Returns (B,)."""
    p = (pred > threshold).flatten(1)
    t = (target > 0.5).flatten(1)
    inter = (p & t).sum(1).to(pred.dtype)
    union = (p | t).sum(1).to(pred.dtype)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@MODELS.register("ssl_pointcloud")
class SSLModule(FamilyModule):
    """LightningModule of the SSL point-cloud family (module docstring).

    Args:
        n_points, bottleneck: the networks' P and latent width (official 1024, 128).
        image_size: side of the square input images (official 64); must be the data's.
        camera_distance: the lineage camera's distance (official 2).
        cycle: the geometric and pose cycle losses (False: Table 1's "No-CC" ablation).
        nn: the nearest-neighbours consistency loss (Ours-NN); n_neighbours: neighbours per image;
            nn_source: "bank" (the paper's: mined among the training samples, `NeighbourBank`) or "batch"
            (within the batch only; cheaper, needs batch_size > n_neighbours).
        pose_supervised: the ground-truth pose instead of N_pose's (Table 2's pose-supervised baseline).
        n_views: k random viewpoints of the cycle losses (paper: 4).
        weights: loss weights by term (keys of losses.ssl_pointcloud.SSL_WEIGHTS except lr; missing keys keep
            the default; 0 switches a term off).
        mask_bce: "prob" (Eq. 2) or "logits" (the official `--loss bce`); affinity: "paper" (Eq. 3),
            "official" (the released code's) or "none".
        pose_cycle_reduction: "paper" or "official" (`pose_cycle_loss`).
        symmetry_mode, symmetry_axis: `symmetry_loss` (paper: halves about the xz-plane, axis 1).
        mask_sigma_sq: CAPNet kernel variance, px^2 (official 0.4); color_kernel, color_sigma, color_beta:
            the DIFFER colour projection (official box well, radius 1 px, beta 100).
        lr, adam_beta1: Adam of both networks (official run.sh 5e-4, 0.9).
        seed: seeds the random viewpoints (a pure function of seed and step).
        chamfer_metric, emd_metric, emd_method, eval_points: evaluation conventions (lightning_modules/ssl/
            metrics.py); align_coarse, align_iters: `fit_rotation_chamfer`'s n_coarse and iters.
        iso_steps, iso_lr, iso_reg_weight: inference-stage optimization (0 steps: off).
        log_images: pictures and clouds logged by the visualizer callback per evaluation epoch (0: none).
    """

    MONITOR = "val/chamfer"
    MONITOR_MODE = "min"
    EVAL_SETTINGS = (
        "chamfer_metric",
        "emd_metric",
        "emd_method",
        "eval_points",
        "align_coarse",
        "align_iters",
        "iso_steps",
        "iso_lr",
        "iso_reg_weight",
        "log_images",
    )

    def __init__(
        self,
        n_points: int = 1024,
        bottleneck: int = 128,
        image_size: int = 64,
        camera_distance: float = 2.0,
        cycle: bool = True,
        nn: bool = False,
        n_neighbours: int = 2,
        nn_source: str = "bank",
        pose_supervised: bool = False,
        n_views: int = 4,
        weights: dict[str, float] | None = None,
        mask_bce: str = "prob",
        affinity: str = "paper",
        pose_cycle_reduction: str = "paper",
        symmetry_mode: str = "halves",
        symmetry_axis: int = 1,
        mask_sigma_sq: float = 0.4,
        color_kernel: str = "box",
        color_sigma: float = 1.0,
        color_beta: float = 100.0,
        lr: float = 5e-4,
        adam_beta1: float = 0.9,
        seed: int = 0,
        chamfer_metric: str = "paper",
        emd_metric: str = "paper",
        emd_method: str = "exact",
        eval_points: int = 1024,
        align_coarse: int = 1024,
        align_iters: int = 150,
        iso_steps: int = 0,
        iso_lr: float = 1e-3,
        iso_reg_weight: float = 1e4,
        log_images: int = 4,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        checks = (
            ("mask_bce", mask_bce, MASK_BCE),
            ("affinity", affinity, AFFINITY),
            ("pose_cycle_reduction", pose_cycle_reduction, ("paper", "official")),
            ("symmetry_mode", symmetry_mode, ("halves", "mirror")),
            ("color_kernel", color_kernel, ("box", "gaussian")),
            ("chamfer_metric", chamfer_metric, tuple(CHAMFER_METRICS)),
            ("emd_metric", emd_metric, tuple(EMD_METRICS)),
            ("emd_method", emd_method, ("exact", "approx")),
            ("nn_source", nn_source, NN_SOURCES),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"model.{name}: expected one of {list(allowed)}, got {value!r}")
        if n_views < 1 or n_neighbours < 1 or iso_steps < 0 or eval_points < 1:
            raise ValueError(
                "model.n_views, model.n_neighbours and model.eval_points must be >= 1 and model.iso_steps "
                f">= 0, got {n_views}, {n_neighbours}, {eval_points}, {iso_steps}"
            )
        unknown = sorted(set(weights or {}) - set(NETWORK_WEIGHTS))
        if unknown:
            raise ValueError(f"model.weights: unknown terms {unknown}; known: {sorted(NETWORK_WEIGHTS)}")
        self.loss_weights = {**NETWORK_WEIGHTS, **{k: float(v) for k, v in (weights or {}).items()}}
        self.rec_net = ReconstructionNet(n_points, bottleneck, image_size)
        self.pose_net = PoseNet(bottleneck, image_size)
        self.bank = NeighbourBank()  # the training samples' features for Eq. 9 (not in the checkpoint)
        self.register_buffer("intrinsics", lineage_intrinsics(image_size))
        self.register_buffer("alignment", torch.eye(3))  # fitted at every validation epoch end
        self.eval_store = torch.nn.ModuleDict()
        for split in ("val", "test"):
            self.eval_store[split] = torch.nn.ModuleDict(
                {
                    k: CatMetric(nan_strategy="disable")
                    for k in ("pred", "gt", "pose_pred", "pose_gt", "mask_iou")
                }
            )
        self.iso_metrics = torch.nn.ModuleDict(
            {
                f"{m}_{w}": CatMetric(nan_strategy="disable")
                for m in ("chamfer", "emd", "mask_iou")
                for w in ("before", "after")
            }
        )

    # ------------------------------------------------------------------ the model
    def forward(self, image: Tensor) -> tuple[Reconstruction, Tensor]:
        """image (B, 3, S, S) -> (Reconstruction(points (B, P, 3), colors (B, P, 3), features), pose (B, 2))."""
        return self.rec_net(image), self.pose_net(image)

    def project(self, points: Tensor, azimuth: Tensor, elevation: Tensor) -> Tensor:
        """World points (N, P, 3) -> (x_ndc, y_ndc, depth) (N, P, 3) through the lineage camera."""
        cam = world2cam(points, azimuth, elevation, self.hparams.camera_distance)
        return project_to_ndc(cam, self.intrinsics, self.hparams.image_size)

    def render(self, points: Tensor, poses: Tensor, colors: Tensor | None = None) -> L.Views:
        """Renderings of clouds (B, P, 3) from poses (B, k, 2): Views(images (B, k, 3, S, S), masks)."""
        h = self.hparams
        return L.render_views(
            points,
            poses,
            self.project,
            h.image_size,
            colors=colors,
            mask_sigma=math.sqrt(h.mask_sigma_sq),
            color_sigma=h.color_sigma,
            color_kernel=h.color_kernel,
            beta=h.color_beta,
        )

    def _mask_terms(self, pred: Tensor, target: Tensor, affinity: bool = True) -> L.MaskTerms:
        aff = self.hparams.affinity if affinity and self.loss_weights["affinity"] else "none"
        return L.mask_loss(pred, target, bce=self.hparams.mask_bce, affinity=aff)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(stable_seed(self.hparams.seed, int(self.global_step)))

    # ------------------------------------------------------------------ losses
    def loss_terms(self, batch: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Unweighted terms of N_rec's objective and of N_pose's, each reaching only its own network
        (module docstring). Returns (rec_terms, pose_terms) of () tensors; pose_terms is empty when
        pose_supervised."""
        h, w = self.hparams, self.loss_weights
        image, mask = batch["image"], batch["mask"].to(batch["image"].dtype)
        B = image.shape[0]
        rec = self.rec_net(image)
        pts, cols = rec.points, rec.colors
        supervised = h.pose_supervised
        pose = batch["pose"].to(image.dtype) if supervised else self.pose_net(image)  # (B, 2)
        rec_terms: dict[str, Tensor] = {}
        pose_terms: dict[str, Tensor] = {}

        # Eq. 1-4 from the predicted viewpoint: [cloud live, pose detached] and [cloud detached, pose live]
        if supervised:
            views = self.render(pts, pose.detach()[:, None], cols)
        else:
            views = self.render(
                torch.cat([pts, pts.detach()]),
                torch.cat([pose.detach(), pose])[:, None],
                torch.cat([cols, cols.detach()]),
            )
        img_rec, msk_rec = views.images[:B, 0], views.masks[:B, 0]
        rec_terms["image"] = L.image_loss(img_rec, image)
        mt = self._mask_terms(msk_rec, mask)
        rec_terms["mask"], rec_terms["affinity"] = mt.bce, mt.affinity
        if not supervised:
            pose_terms["pose_image"] = L.image_loss(views.images[B:, 0], image)
            pose_terms["pose_mask"] = self._mask_terms(views.masks[B:, 0], mask, affinity=False).bce

        # Eq. 5 and 7: k random viewpoints
        if h.cycle:
            k = h.n_views
            v = L.sample_views(B, k, self._generator(), device=image.device, dtype=image.dtype)  # (B, k, 2)
            rv = self.render(pts, v, cols)
            flat = rv.images.reshape(B * k, *image.shape[1:])  # (B k, 3, S, S)
            pts_views = self.rec_net(flat).points.view(B, k, -1, 3)
            rec_terms["geometric"] = L.geometric_cycle_loss(pts, pts_views)
            if not supervised:
                v_pred = self.pose_net(flat.detach()).view(B, k, 2)
                pose_terms["pose_cycle"] = L.pose_cycle_loss(v, v_pred, reduction=h.pose_cycle_reduction)

        # Eq. 9: neighbours in N_rec's shape latent, from the training-set bank or within the batch
        if h.nn:
            nb = self.neighbours(batch, rec.features, pose)
            if nb is not None:
                nb_pose, nb_gt = nb
                nb_masks = self.render(pts, nb_pose).masks  # (B, n, 1, S, S)
                aff = h.affinity if w["nn_affinity"] else "none"
                nt = L.nn_mask_loss(nb_masks, nb_gt, bce=h.mask_bce, affinity=aff)
                rec_terms["nn"], rec_terms["nn_affinity"] = nt.bce, nt.affinity

        # Eq. 10
        if w["symmetry"]:
            rec_terms["symmetry"] = L.symmetry_loss(pts, mode=h.symmetry_mode, axis=h.symmetry_axis)
        return rec_terms, pose_terms

    def neighbours(self, batch: dict, features: Tensor, pose: Tensor) -> tuple[Tensor, Tensor] | None:
        """The n = `n_neighbours` nearest neighbours of each image in N_rec's feature space (Sec. 3.3):
        (their viewpoints (B, n, 2), detached, their silhouettes (B, n, 1, S, S)), or None when there are
        not enough samples. `nn_source` "bank": the training samples seen so far (`NeighbourBank`, refreshed
        with every batch; the neighbour images go through N_pose, as the paper says, or carry their
        ground-truth pose when pose_supervised); "batch": the other images of the batch."""
        h = self.hparams
        image, mask = batch["image"], batch["mask"].to(batch["image"].dtype)
        B, n = image.shape[0], h.n_neighbours
        if h.nn_source == "batch":
            n = min(n, B - 1)
            if n < 1:
                return None
            nb = L.mine_neighbours(features, n)
            return pose.detach()[nb.idx], mask[nb.idx]
        if not self.training:
            return None
        gt_pose = batch["pose"].to(image.dtype) if h.pose_supervised else None
        rows = self.bank.update(batch["name"], features, image, mask, gt_pose)
        if len(self.bank) <= n:
            return None
        nb = self.bank.neighbours(features, rows, n)
        if h.pose_supervised:
            return nb.poses, nb.masks
        with torch.no_grad():
            nb_pose = self.pose_net(nb.images.flatten(0, 1)).view(B, n, 2)
        return nb_pose, nb.masks

    def objectives(
        self, rec_terms: dict[str, Tensor], pose_terms: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """Eq. 6/11 and Eq. 8 with `loss_weights`: (loss_rec (), loss_pose () or None)."""
        loss_rec = L.reconstruction_objective(**rec_terms, weights=self.loss_weights)
        loss_pose = (
            L.pose_objective(
                image=pose_terms.get("pose_image"),
                mask=pose_terms.get("pose_mask"),
                pose_cycle=pose_terms.get("pose_cycle"),
                weights=self.loss_weights,
            )
            if pose_terms
            else None
        )
        return loss_rec, loss_pose

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_rec, opt_pose = self.optimizers()
        rec_terms, pose_terms = self.loss_terms(batch)
        loss_rec, loss_pose = self.objectives(rec_terms, pose_terms)
        opt_rec.zero_grad()
        opt_pose.zero_grad()
        self.manual_backward(loss_rec if loss_pose is None else loss_rec + loss_pose)
        opt_rec.step()
        opt_pose.step()  # a no-op without gradients (pose_supervised); keeps 2 optimizer steps per batch
        B = batch["image"].shape[0]
        self.log("train/loss_rec", loss_rec.detach(), prog_bar=True, batch_size=B)
        if loss_pose is not None:
            self.log("train/loss_pose", loss_pose.detach(), prog_bar=True, batch_size=B)
        terms = {**rec_terms, **pose_terms}
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=B)

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, split: str, batch: dict) -> dict[str, Any]:
        image, mask = batch["image"], batch["mask"]
        rec = self.rec_net(image)
        pose = batch["pose"].to(image.dtype) if self.hparams.pose_supervised else self.pose_net(image)
        sil = self.render(rec.points, pose[:, None]).masks[:, 0]
        B = image.shape[0]
        store = self.eval_store[split]
        store["pred"].update(rec.points.detach().reshape(B, -1))
        store["gt"].update(batch["points"].to(image.dtype).reshape(B, -1))
        store["pose_pred"].update(pose.detach())
        store["pose_gt"].update(batch["pose"].to(image.dtype))
        store["mask_iou"].update(silhouette_iou(sil, mask))
        out = {"points": rec.points, "colors": rec.colors, "pose": pose, "silhouette": sil}
        if split == "test" and self.hparams.iso_steps > 0:
            out["iso"] = self._iso(batch, rec.points, rec.colors, pose, sil)
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return self._eval_step("test", batch)

    def _rec_metrics(self, pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hparams
        g = torch.Generator().manual_seed(h.seed)
        m = reconstruction_metrics(
            pred, gt, self.alignment, h.chamfer_metric, h.emd_metric, h.emd_method, h.eval_points, g
        )
        return m.chamfer, m.emd

    def split_metrics(self, split: str) -> dict[str, Tensor]:
        """The split's metrics from what its steps stored (module docstring), then reset; on "val" the
        global rotation is fitted first and stored in the `alignment` buffer. {} when nothing was stored."""
        store = self.eval_store[split]
        if not store["pred"].update_count:
            return {}
        pred = store["pred"].compute().view(-1, self.hparams.n_points, 3)
        gt = store["gt"].compute()
        gt = gt.view(gt.shape[0], -1, 3)
        if split == "val":
            with torch.inference_mode(False), torch.enable_grad():
                fit = fit_rotation_chamfer(
                    pred.clone(),
                    gt.clone(),
                    n_coarse=self.hparams.align_coarse,
                    iters=self.hparams.align_iters,
                    seed=self.hparams.seed,
                )
            self.alignment.copy_(fit.R.to(self.alignment))
        chamfer, emd = self._rec_metrics(pred, gt)
        out = {f"{split}/chamfer": chamfer.mean(), f"{split}/emd": emd.mean()}
        pose_pred, pose_gt = store["pose_pred"].compute(), store["pose_gt"].compute()
        for suffix, flip in (("", False), ("_flip", True)):
            err = pose_errors(pose_pred, pose_gt, flip=flip, alignment=self.alignment)
            pm = pose_metrics(err)
            out[f"{split}/pose_median{suffix}"] = pm.median_error_deg
            out[f"{split}/pose_acc{suffix}"] = pm.accuracy_percent
        out[f"{split}/mask_iou"] = store["mask_iou"].compute().mean()
        if split == "test" and self.iso_metrics["chamfer_before"].update_count:
            for k, metric in self.iso_metrics.items():
                out[f"test/iso/{k}"] = metric.compute().mean()
                metric.reset()
        for metric in store.values():
            metric.reset()
        return {k: v.float() for k, v in out.items()}

    def _epoch_end(self, split: str) -> None:
        out = self.split_metrics(split)
        self.log_dict(out, sync_dist=False, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # ------------------------------------------------------------------ inference-stage optimization
    def iso_objective(
        self, points: Tensor, colors: Tensor, points0: Tensor, pose: Tensor, image: Tensor, mask: Tensor
    ) -> Tensor:
        """Eq. 13: `alpha (L_I + L_M) + lambda d_Ch(P, P_0) + kappa L_sym` of clouds (B, P, 3) with colours
        (B, P, 3), seen from pose (B, 2), against image (B, 3, S, S) and mask (B, 1, S, S). Returns ()."""
        w = self.loss_weights
        views = self.render(points, pose[:, None], colors)
        mt = self._mask_terms(views.masks[:, 0], mask)
        loss = (
            w["image"] * L.image_loss(views.images[:, 0], image)
            + w["mask"] * mt.bce
            + w["affinity"] * mt.affinity
        )
        reg = chamfer_variant(points, points0, squared=True, reduction="mean").mean()  # Eq. 12
        loss = loss + self.hparams.iso_reg_weight * reg
        if w["symmetry"]:
            sym = L.symmetry_loss(points, mode=self.hparams.symmetry_mode, axis=self.hparams.symmetry_axis)
            loss = loss + w["symmetry"] * sym
        return loss

    def _iso(self, batch: dict, points: Tensor, colors: Tensor, pose: Tensor, sil: Tensor) -> dict:
        """Optimize the batch's clouds and colours (free variables from the prediction) for `iso_steps`
        Adam steps against their own image and mask; update test/iso/ metrics. Returns the optimized
        points (B, P, 3), colours and silhouettes (B, 1, S, S)."""
        h = self.hparams
        with torch.inference_mode(False), torch.enable_grad():
            image = batch["image"].clone()
            mask = batch["mask"].to(image.dtype).clone()
            p0, pose_f = points.detach().clone(), pose.detach().clone()
            p = p0.clone().requires_grad_(True)
            # colours optimized as logits so that they stay in [0, 1]
            c = torch.logit(colors.detach().clone().clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
            opt = torch.optim.Adam([p, c], lr=h.iso_lr)
            for _ in range(h.iso_steps):
                opt.zero_grad()
                self.iso_objective(p, torch.sigmoid(c), p0, pose_f, image, mask).backward()
                opt.step()
            with torch.no_grad():
                p_opt, c_opt = p.detach(), torch.sigmoid(c.detach())
                sil_opt = self.render(p_opt, pose_f[:, None]).masks[:, 0]
                gt = batch["points"].to(image.dtype).clone()
                for when, pts, s in (("before", p0, sil), ("after", p_opt, sil_opt)):
                    chamfer, emd = self._rec_metrics(pts, gt)
                    self.iso_metrics[f"chamfer_{when}"].update(chamfer)
                    self.iso_metrics[f"emd_{when}"].update(emd)
                    self.iso_metrics[f"mask_iou_{when}"].update(silhouette_iou(s.clone(), mask))
        return {"points": p_opt, "colors": c_opt, "silhouette": sil_opt}

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self):
        betas = (self.hparams.adam_beta1, 0.999)
        return (
            torch.optim.Adam(self.rec_net.parameters(), lr=self.hparams.lr, betas=betas),
            torch.optim.Adam(self.pose_net.parameters(), lr=self.hparams.lr, betas=betas),
        )

    def configure_callbacks(self) -> list[pl.Callback]:
        from lightning_modules.ssl.callbacks import PointCloudVisualizer

        return [PointCloudVisualizer(self.hparams.log_images)]
