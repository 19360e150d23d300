"""RGPD (Zhang et al., ICCV 2023; shared/papers/rgpd-robust-geometry-preserving-depth.md): geometry-preserving
depth from affine-invariant labels, by rendering novel views of the predicted 3D scene and asking the same
network to predict them consistently (losses/rgpd.py holds the objectives as pure functions).

Network: GP2's `LightWeightRefineNet` (lightning_modules/gp2/network.py), or with `model.backbone=dpt_*` the
DPT of lightning_modules/gp2/dpt.py (the paper's network, Sec. 5); both output log-disparity `l`.
Conversions (documented once, used everywhere in this file):
    disparity  d = exp(l)                 the network's raw output, up to scale and shift (UTSS) after SSI
    depth      D = 1 / d = exp(-l)        what the consistency pipeline unprojects (Eq. 4); it is depth up
                                          to scale exactly when the disparity has no shift, which is what
                                          the consistency loss teaches the network
With the affine recovery of Table 4 (`affine_ssl`), d = s exp(l) + b per domain, and D = 1 / d.

Training loss (Eq. 15): L = L^SSI + beta L^C, beta = 0.1, alpha = 1 inside L^C (Sec. 5).
- L^SSI (Eq. 1-3, `losses.rgpd.ssi_mad_loss`) on *disparity*: the prediction's d = exp(l) against the
  target's disparity (1 / depth for "absolute" / "uts" samples, the label itself for "utss_disparity").
  Choice: Sec. 3 writes the loss for "a depth map D" but states its purpose as "uncalibrated disparity maps
  can be used for training", and the paper's DPT network predicts inverse depth; a disparity label with an
  unknown shift cannot be turned into depth, so the SSI term lives in disparity space (as MiDaS / DPT).
  With `loss="gp2"`, GP2's mixture loss (`losses.depth.GP2Loss`) is the base term instead (Table 1's
  "GP2 + Ours" row, experiment rgpd_gp2_consistency).
- L^C: the multi-focal consistency min_f L^C_f over the horizontal FOVs {50, 60, 70} (Eq. 13-14,
  `multi_focal_consistency`), or with `multi_focal=False` the single focal length of the sample's true
  intrinsics (`has_intrinsics`), else of DEFAULT_FOV = 60 degrees (`consistency_losses`). Novel views:
  theta ~ U[-30, 30] degrees, t ~ U[-1, 2] min_z(P) (Sec. 4.1, `sample_novel_views`), drawn from a generator
  seeded by (view_seed, global step, rank), so a resumed run draws the same views.
  The re-prediction D'_pred of the rendered image goes through the module's own network and is NOT
  detached: Sec. 4.1 re-predicts "with the same model" and optimizes the network "using the informative
  gradients from the differentiable renderer"; nothing in the paper stops the gradient of either branch.
  The network runs in its current (train) mode on the rendered images.
- Two stages (Sec. 5: 20 epochs SSI only, then 2 epochs with the consistency loss): L^C from epoch
  `consistency_start_epoch` on (0 = from the start); before it the loss is the base term only.

Affine recovery (Table 4, `affine_ssl=True`): the network is frozen (eval mode, no gradients) with the
weights of `init_checkpoint` (a trained rgpd or gp2 module's .ckpt), and one scale s = exp(log_scale) and one
shift b per domain (`affine_domains`; a batch key `domain` (B,) long picks it, else domain 0) are learnt
from the images alone by L^C (no labels are read). Evaluation then scores d = s exp(l) + b.

Metrics (`DepthMetrics`, GP2's machinery): the first alignment is the main one, "median_depth" =
s = median(D* / D) (Sec. 5 "Evaluation Metrics", following LeReS: the paper's scale-only alignment, on
depth); "lstsq_disparity" is the scale-and-shift alignment ("SSA" of Table 4). Logged keys:
  train/loss, train/ssi (or train/gp2), train/consistency, train/skipped   (the last two only while L^C runs)
  train/scale, train/shift                                                  (affine_ssl, domain 0)
  val/<metric>, val/<alignment>/<metric>, val/loss                          (as GP2; loss = the base term)
  test/..., and with render_fov: test/renderfov_accuracy, test/point_cloud_rmse, test/renderfov_fov
RenderFOV (Sec. 5.1, test only, no gradients): `losses.rgpd.render_fov` picks each test image's FOV among
{40, ..., 80} degrees by the mean depth consistency over 4 views; renderfov_accuracy is the % of images with
true intrinsics whose chosen FOV equals the true horizontal FOV 2 atan(W / (2 fx)) rounded to the nearest
candidate; point_cloud_rmse is Table 2's RMSE with the chosen focal (`point_cloud_rmse`, mean over images).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torchmetrics import MeanMetric

from geometry.cameras import intrinsics_from_fov
from lightning_modules.depth_metrics import ALIGNMENTS
from lightning_modules.family import MODELS, FamilyModule
from lightning_modules.gp2.module import GP2Module
from lightning_modules.gp2.network import build_network
from losses.depth import GP2Loss
from losses.rgpd import (
    DEFAULT_FOV,
    RENDER_FOVS,
    TRAIN_FOVS,
    consistency_losses,
    min_z,
    multi_focal_consistency,
    point_cloud_rmse,
    render_fov,
    rgpd_total_loss,
    sample_novel_views,
    ssi_mad_loss,
)

BASE_LOSSES = ("ssi", "gp2")
DISPARITY_EPS = 1e-6  # affine disparities below this are missing depth (1 / d would overflow)


def log_disparity_to_depth(log_disp: torch.Tensor) -> torch.Tensor:
    """Depth up to scale D = 1 / d = exp(-l) of the network's log-disparity l (module docstring);
    `(B, 1, H, W)` -> `(B, 1, H, W)`."""
    return log_disp.neg().exp()


def target_disparity(depth: torch.Tensor, valid: torch.Tensor, depth_type: list[str]) -> tuple:
    """The labels as disparity for L^SSI: 1 / depth for "absolute" / "uts", the label for "utss_disparity";
    ordinal samples and non-positive labels are masked out. depth, valid `(B, 1, H, W)` -> (disparity
    `(B, 1, H, W)` (0 outside the mask), mask `(B, 1, H, W)` bool)."""
    dev = depth.device
    is_depth = torch.tensor([t in ("absolute", "uts") for t in depth_type], device=dev)[:, None, None, None]
    is_disp = torch.tensor([t == "utss_disparity" for t in depth_type], device=dev)[:, None, None, None]
    mask = valid & (is_depth | is_disp) & torch.isfinite(depth) & (depth > 0)
    safe = torch.where(mask, depth, torch.ones_like(depth))
    disp = torch.where(is_depth, 1.0 / safe, safe)
    return torch.where(mask, disp, torch.zeros_like(disp)), mask


def true_hfov(K: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal FOV in degrees of intrinsics K `(B, 3, 3)` for an image `width` pixels wide: `(B,)`."""
    return torch.rad2deg(2 * torch.atan(width / (2 * K[:, 0, 0])))


@MODELS.register("rgpd")
class RGPDModule(GP2Module):
    """LightningModule of the RGPD family (a FamilyModule; evaluation and logging are GP2Module's).

    Args:
        backbone, pretrained_path, n_chains: see `build_network` (LightWeightRefineNet; DPTDepth for dpt_*).
        loss: base term, "ssi" (L^SSI on disparity, Eq. 3) or "gp2" (GP2's mixture loss).
        consistency: add beta L^C (Eq. 15); multi_focal: L^C over `train_fovs` (Eq. 14), else one focal
            length (the sample's true one, or `default_fov`).
        consistency_start_epoch: first epoch with L^C (the second stage of Sec. 5); 0 = from the start.
        alpha, beta: Eq. 12 and Eq. 15 weights (1.0 and 0.1 in Sec. 5).
        train_fovs: the focal set F, horizontal FOVs in degrees; default_fov: single-focal fallback.
        splat_radius: point splat radius, pixels (`losses.rgpd.consistency_losses`); view_seed: novel views.
        render_fov: test-time RenderFOV evaluation (Sec. 5.1); render_fovs: its candidates, degrees.
        affine_ssl: Table 4's affine recovery (frozen network from init_checkpoint, learn scale and shift
            per domain with L^C only); affine_domains: number of (scale, shift) pairs.
        init_checkpoint: a trained rgpd / gp2 module's .ckpt whose network weights are loaded (required by
            affine_ssl); None = not used.
        lr, weight_decay, scheduler: AdamW (over the affine parameters only with affine_ssl), "cosine"/"none".
        alignments, max_depth, log_images, log_points: as GP2Module (first alignment = main metric).
    """

    MONITOR = "val/absrel"  # after the scale-only alignment (Table 1's AbsRel); lower is better
    MONITOR_MODE = "min"
    EVAL_SETTINGS = ("alignments", "max_depth", "log_images", "log_points", "render_fov", "render_fovs")
    INIT_ONLY = ("pretrained_path", "init_checkpoint")
    RELEASED_WEIGHTS = ()

    def __init__(
        self,
        backbone: str = "mobilenetv2_100",
        pretrained_path: str | None = None,
        n_chains: int = 4,
        loss: str = "ssi",
        consistency: bool = True,
        multi_focal: bool = True,
        consistency_start_epoch: int = 0,
        alpha: float = 1.0,
        beta: float = 0.1,
        train_fovs: tuple[float, ...] | list[float] = TRAIN_FOVS,
        default_fov: float = DEFAULT_FOV,
        splat_radius: float = 0.75,
        view_seed: int = 0,
        render_fov: bool = False,
        render_fovs: tuple[float, ...] | list[float] = RENDER_FOVS,
        affine_ssl: bool = False,
        affine_domains: int = 1,
        init_checkpoint: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "cosine",
        alignments: tuple[str, ...] | list[str] = ("median_depth", "lstsq_disparity"),
        max_depth: float | None = None,
        log_images: int = 4,
        log_points: int = 2048,
    ):
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        FamilyModule.__init__(self)  # GP2Module's constructor builds GP2's loss; only its methods are reused
        self.save_hyperparameters(args, logger=False)  # explicit: no super() call for Lightning to follow
        bad = [a for a in alignments if a not in ALIGNMENTS]
        if bad or not alignments:
            raise ValueError(
                f"model.alignments: expected a non-empty list from {ALIGNMENTS}, got {list(alignments)}"
            )
        if loss not in BASE_LOSSES:
            raise ValueError(f"model.loss: expected one of {BASE_LOSSES}, got {loss!r}")
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"model.scheduler: expected 'cosine' or 'none', got {scheduler!r}")
        if consistency_start_epoch < 0:
            raise ValueError(f"model.consistency_start_epoch: expected >= 0, got {consistency_start_epoch}")
        if affine_domains < 1:
            raise ValueError(f"model.affine_domains: expected >= 1, got {affine_domains}")
        for name, fovs in (
            ("train_fovs", train_fovs),
            ("render_fovs", render_fovs),
            ("default_fov", [default_fov]),
        ):
            if not fovs or not all(0 < float(f) < 180 for f in fovs):
                raise ValueError(f"model.{name}: expected FOVs in (0, 180) degrees, got {list(fovs)}")
        self.net = build_network(backbone, pretrained_path, n_chains)
        if init_checkpoint is not None:
            self.net.load_state_dict(load_network_weights(init_checkpoint))
        self.criterion = GP2Loss() if loss == "gp2" else None
        self.log_scale = nn.Parameter(torch.zeros(affine_domains), requires_grad=affine_ssl)
        self.shift = nn.Parameter(torch.zeros(affine_domains), requires_grad=affine_ssl)
        if affine_ssl:
            self.net.requires_grad_(False)
        self.metrics = nn.ModuleDict()  # GP2Module's per-(split, dataloader) DepthMetrics
        self.renderfov_metrics = nn.ModuleDict(
            {k: MeanMetric(nan_strategy="ignore") for k in ("accuracy", "rmse", "fov")}
        )

    # ------------------------------------------------------------------ prediction
    def _domain(self, batch: dict, n: int) -> torch.Tensor:
        d = batch.get("domain")
        if d is None:
            return torch.zeros(n, dtype=torch.long, device=self.device)
        d = torch.as_tensor(d, device=self.device).long()
        if bool(((d < 0) | (d >= self.hparams.affine_domains)).any()):
            raise ValueError(
                f"batch['domain']: expected indices in [0, {self.hparams.affine_domains}), got {d}"
            )
        return d

    def affine_disparity(self, log_disp: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
        """d = s exp(l) + b with the domain's (s, b) under affine_ssl, else exp(l): `(B, 1, H, W)`."""
        if not self.hparams.affine_ssl:
            return log_disp.exp()
        if domain is None:
            domain = torch.zeros(log_disp.shape[0], dtype=torch.long, device=log_disp.device)
        s = self.log_scale.exp()[domain][:, None, None, None]
        b = self.shift[domain][:, None, None, None]
        return s * log_disp.exp() + b

    def depth_fn(self, domain: torch.Tensor | None = None):
        """The network as `losses.rgpd.NetFn`: images `(N, 3, H, W)` -> depth up to scale `(N, 1, H, W)`,
        D = 1 / d (0 = missing where the affine disparity is <= DISPARITY_EPS). With N = k B (multi-focal
        batches, FOV-major) the domain of sample b is reused for every block."""

        def fn(image: torch.Tensor) -> torch.Tensor:
            dom = domain
            if dom is not None and image.shape[0] != dom.shape[0]:
                dom = dom.repeat(image.shape[0] // dom.shape[0])
            d = self.affine_disparity(self.net(image), dom)
            ok = d > DISPARITY_EPS
            return torch.where(ok, 1.0 / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(d))

        return fn

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1] -> log-disparity (B, 1, H, W) (affine-corrected under affine_ssl,
        domain 0; NaN where the corrected disparity is <= 0, which the metrics count as bad)."""
        log_disp = self.net(image)
        if not self.hparams.affine_ssl:
            return log_disp
        d = self.affine_disparity(log_disp)
        return torch.where(d > 0, d.clamp_min(1e-30).log(), torch.full_like(d, math.nan))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.affine_ssl:
            self.net.eval()  # frozen: BatchNorm keeps the trained statistics
        return self

    @classmethod
    def paper_tables(cls, result: dict) -> list[str]:
        """None yet: the paper's tables are on real benchmarks (GP2's README table is not RGPD's)."""
        return []

    # ------------------------------------------------------------------ losses
    def _loss(self, batch: dict, pred: torch.Tensor) -> torch.Tensor:
        """The base term on log-disparity pred `(B, 1, H, W)`: L^SSI on disparity (scalar mean over the valid
        samples) or GP2's mixture loss."""
        if self.criterion is not None:
            return self.criterion(
                pred, batch["depth"], batch["valid"], batch["depth_type"], batch.get("ordinal")
            )
        target, mask = target_disparity(batch["depth"], batch["valid"], list(batch["depth_type"]))
        pred_disp = pred.exp()
        mask = mask & torch.isfinite(pred_disp)
        return ssi_mad_loss(torch.where(mask, pred_disp, torch.zeros_like(pred_disp)), target, mask).loss

    def _generator(self) -> torch.Generator:
        step = int(self.trainer.global_step) if self._trainer is not None else 0
        rank = int(self.global_rank) if self._trainer is not None else 0
        return torch.Generator().manual_seed(self.hparams.view_seed * 1_000_003 + step * 4099 + rank)

    def sample_views(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random novel views (Sec. 4.1) for depth `(B, 1, H, W)`: R `(B, 3, 3)`, t `(B, 3)`."""
        return sample_novel_views(min_z(depth), self._generator())

    def single_focal_intrinsics(self, batch: dict, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
        """The sample's true intrinsics where it has them, else DEFAULT_FOV's: `(B, 3, 3)`."""
        B = like.shape[0]
        default = intrinsics_from_fov(float(self.hparams.default_fov), H, W).to(like).expand(B, 3, 3)
        K, has = batch.get("intrinsics"), batch.get("has_intrinsics")
        if K is None or has is None:
            return default
        has = torch.as_tensor(has, device=like.device).bool()[:, None, None]
        return torch.where(has, K.to(like), default)

    def consistency_loss(self, batch: dict, log_disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L^C of the batch (mean over the samples it is defined for) and the number of skipped samples."""
        image = batch["image"]
        domain = self._domain(batch, image.shape[0])
        depth = self.depth_fn(domain)  # the same network re-predicts the rendered views (not detached)
        d = self.affine_disparity(log_disp, domain)
        ok = d > DISPARITY_EPS
        pred_depth = torch.where(ok, 1.0 / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(d))
        R, t = self.sample_views(pred_depth)
        hp = self.hparams
        if hp.multi_focal:
            out = multi_focal_consistency(
                depth, image, pred_depth, R, t, fovs=hp.train_fovs, alpha=hp.alpha, radius=hp.splat_radius
            )
            valid = out.valid.any(dim=1)
            per, skipped = out.loss, out.num_skipped
        else:
            K = self.single_focal_intrinsics(batch, *image.shape[-2:], like=pred_depth)
            out = consistency_losses(
                depth, image, pred_depth, K, R, t, alpha=hp.alpha, radius=hp.splat_radius
            )
            valid, per, skipped = out.valid, out.total, out.num_skipped
        return per.sum() / valid.sum().clamp_min(1).to(per.dtype), skipped

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        B = batch["image"].shape[0]
        if hp.affine_ssl and self.net.training:
            # Lightning restores the modes it captured per submodule, bypassing `train()`; frozen = eval
            self.net.eval()
        log_disp = self.net(batch["image"])
        if hp.affine_ssl:
            loss, skipped = self.consistency_loss(batch, log_disp)
            self.log("train/consistency", loss, batch_size=B)
            self.log("train/skipped", skipped.float(), batch_size=B, reduce_fx="sum")
            self.log("train/scale", self.log_scale[0].exp().detach(), batch_size=B)
            self.log("train/shift", self.shift[0].detach(), batch_size=B)
            self.log("train/loss", loss, prog_bar=True, batch_size=B)
            return loss
        base = self._loss(batch, log_disp)
        self.log(f"train/{hp.loss}", base, batch_size=B)
        loss = base
        if hp.consistency and self.current_epoch >= hp.consistency_start_epoch:
            l_c, skipped = self.consistency_loss(batch, log_disp)
            loss = rgpd_total_loss(base, l_c, hp.beta)  # Eq. 15
            self.log("train/consistency", l_c, batch_size=B)
            self.log("train/skipped", skipped.float(), batch_size=B, reduce_fx="sum")
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        return loss

    # ------------------------------------------------------------------ evaluation
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.affine_ssl and self.hparams.init_checkpoint is None:
            raise ValueError(
                "model.init_checkpoint: affine_ssl learns scale and shift on a trained network; set it to the "
                ".ckpt of a trained rgpd or gp2 run (e.g. runs/rgpd_ssi/<run>/checkpoints/last.ckpt)"
            )

    def _eval_step(self, split: str, batch: dict, dataloader_idx: int) -> dict[str, torch.Tensor]:
        out = super()._eval_step(split, batch, dataloader_idx)
        if split == "test" and self.hparams.render_fov:
            self._render_fov_update(batch, out["pred"])
        return out

    @torch.no_grad()
    def _render_fov_update(self, batch: dict, pred: torch.Tensor) -> None:
        """RenderFOV on the test batch; pred: log-disparity at the target's resolution `(B, 1, H, W)`."""
        has = batch.get("has_intrinsics")
        if has is None or not bool(torch.as_tensor(has).any()) or batch.get("intrinsics") is None:
            return
        has = torch.as_tensor(has, device=pred.device).bool()
        image, target = batch["image"][has], batch["depth"][has]
        K_gt = batch["intrinsics"][has].to(pred)
        H, W = target.shape[-2:]
        if image.shape[-2:] != (H, W):
            raise ValueError(
                "model.render_fov: needs the image at the ground truth's resolution (data.eval_resize: crop), "
                f"got image {tuple(image.shape[-2:])} and depth {(H, W)}"
            )
        d = self.affine_disparity(self.net(image))
        ok = d > DISPARITY_EPS
        pred_depth = torch.where(ok, 1.0 / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(d))
        fovs = [float(f) for f in self.hparams.render_fovs]
        res = render_fov(self.depth_fn(), image, pred_depth, fovs=fovs, radius=self.hparams.splat_radius)
        cand = torch.tensor(fovs, device=pred.device, dtype=pred.dtype)
        nearest = (true_hfov(K_gt, W)[:, None] - cand[None]).abs().argmin(dim=1)  # true FOV, rounded
        self.renderfov_metrics["accuracy"].update(100.0 * (res.index == nearest).to(pred.dtype))
        self.renderfov_metrics["fov"].update(res.fov)
        K_pred = intrinsics_from_fov(res.fov, H, W).to(pred)
        mask = batch["valid"][has] & torch.isfinite(target) & (target > 0)
        pc = point_cloud_rmse(pred_depth, target, K_pred, K_gt, mask)
        rmse = torch.where(pc.valid, pc.rmse, torch.full_like(pc.rmse, math.nan))  # NaN = no pixel, ignored
        self.renderfov_metrics["rmse"].update(rmse)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if not self.hparams.render_fov:
            return
        names = {"accuracy": "renderfov_accuracy", "rmse": "point_cloud_rmse", "fov": "renderfov_fov"}
        out = {f"test/{names[k]}": m.compute().float() for k, m in self.renderfov_metrics.items()}
        for m in self.renderfov_metrics.values():
            m.reset()
        self.log_dict(out, sync_dist=False, add_dataloader_idx=False)

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self):
        if not self.hparams.affine_ssl:
            return super().configure_optimizers()
        return torch.optim.AdamW([self.log_scale, self.shift], lr=self.hparams.lr, weight_decay=0.0)


def load_network_weights(path: str) -> dict[str, torch.Tensor]:
    """The `net.` weights of a trained rgpd / gp2 module's Lightning checkpoint (or a plain state dict of
    `LightWeightRefineNet`), loaded on CPU, with the `net.` prefix removed."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model.init_checkpoint: no file at {path!r}; expected the .ckpt of a trained rgpd or gp2 run"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"model.init_checkpoint: {path!r} holds no state dict")
    net = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    return net or state
