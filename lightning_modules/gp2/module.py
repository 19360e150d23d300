"""GP2 (Romanov et al., 2020): geometry-preserving single-view depth, trained on mixtures of datasets.

The network predicts log-disparity; the loss is picked per sample by its depth type (losses.depth.GP2Loss):
scale-invariant pairwise L1 on log depth for absolute / up-to-scale samples plus the shift-and-scale-invariant
pairwise L1 on normalized disparity for every dense sample, and a ranking loss for ordinal ones.
Metrics (lightning_modules.depth_metrics) are torchmetrics objects, one set per evaluation dataloader and
alignment, so they synchronize across DDP ranks. Logged keys:
  train/loss
  val/<metric>                 first val dataloader, first alignment (GP2's median log-disparity); with
                               several val datasets, val/<metric> is their mean and val/<dataset>/<metric>
                               each one's
  val/<alignment>/<metric>     the other alignments
  val/loss, val/whdr           the loss (and WHDR on ordinal pairs), per dataset as the metrics
  test/...                     the same for the test split
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from lightning_modules.depth_metrics import ALIGNMENTS, WHDR, DepthMetrics
from lightning_modules.family import MODELS, FamilyModule
from lightning_modules.gp2.network import build_network
from lightning_modules.gp2.official import check_release_name, load_official
from losses.depth import DENSE_DEPTH_TYPES, GP2Loss

REPORTED = ("delta125_bad", "delta1", "absrel", "log10", "rmse", "nonfinite")  # logged per alignment
MAIN_ONLY = (
    "disp_shift",
)  # alignment-independent (depth_metrics' docstring): logged once, as <split>/disp_shift


@MODELS.register("gp2")
class GP2Module(FamilyModule):
    """LightningModule of the GP2 family.

    Args:
        backbone, pretrained_path, n_chains: see `build_network` (LightWeightRefineNet; DPTDepth for dpt_*).
        official_weights: a GP2 release file (mn_lrn4.pth, lite0_lrn4.pth, b0_lrn4.pth ... b5_lrn4.pth) whose
            weights the whole network starts from (lightning_modules.gp2.official.load_official); it must be
            the release of `backbone` (with n_chains=4), and replaces pretrained_path. None = not used.
        loss: residual loss of L_SI / L_SSI (losses.depth.LOSS_KINDS; "pairwise_l1" is GP2's).
        si_weight, ssi_weight, ordinal_weight: loss term weights.
        lr, weight_decay: AdamW; scheduler: "cosine" (to 0 over the run) or "none".
        alignments: metric alignments (lightning_modules.depth_metrics.ALIGNMENTS); the first is the main one.
        max_depth: depth cap for metrics when the data does not give one (samples' `max_depth` wins).
        log_images, log_points: pictures and point-cloud size of the validation and test visualizer callback.
    """

    MONITOR = "val/absrel"  # GP2's tables report AbsRel (and the % of bad pixels); lower is better
    MONITOR_MODE = "min"
    # taken from the eval config rather than the checkpoint (they change the scoring, not the network)
    EVAL_SETTINGS = ("alignments", "max_depth", "log_images", "log_points")
    # weight files that only initialize: the checkpoint holds every weight, so eval needs neither
    INIT_ONLY = ("pretrained_path", "official_weights")
    # a GP2 release file holds every weight: eval gp2_eval model.official_weights=b0_lrn4.pth, no checkpoint
    RELEASED_WEIGHTS = ("official_weights",)

    def __init__(
        self,
        backbone: str = "mobilenetv2_100",
        pretrained_path: str | None = None,
        n_chains: int = 4,
        loss: str = "pairwise_l1",
        si_weight: float = 1.0,
        ssi_weight: float = 1.0,
        ordinal_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "cosine",
        alignments: tuple[str, ...] | list[str] = ("median_log_disparity", "lstsq_disparity", "median_depth"),
        max_depth: float | None = None,
        log_images: int = 4,
        log_points: int = 2048,
        official_weights: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        bad = [a for a in alignments if a not in ALIGNMENTS]
        if bad or not alignments:
            raise ValueError(
                f"model.alignments: expected a non-empty list from {ALIGNMENTS}, got {list(alignments)}"
            )
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"model.scheduler: expected 'cosine' or 'none', got {scheduler!r}")
        if official_weights is None:
            self.net = build_network(backbone, pretrained_path, n_chains)
        else:
            if pretrained_path is not None:
                raise ValueError(
                    "model.official_weights: the release holds the backbone too; set model.pretrained_path "
                    f"to null (got {pretrained_path!r})"
                )
            name = check_release_name(official_weights, backbone, n_chains)
            self.net = load_official(name, official_weights).train()
        self.criterion = GP2Loss(loss, si_weight, ssi_weight, ordinal_weight)
        self.metrics = (
            nn.ModuleDict()
        )  # "<split>_<dataloader_idx>" -> {alignment: DepthMetrics, "whdr": WHDR}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1] -> log-disparity (B, 1, H, W)."""
        return self.net(image)

    def predict_like(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-disparity at the target's resolution: the prediction is upsampled bilinearly when the ground
        truth is kept at its own size (GP2's evaluation; datamodule eval_resize="native").
        image (B, 3, h, w), target (B, 1, H, W) -> (B, 1, H, W)."""
        pred = self(image)
        if pred.shape[-2:] != target.shape[-2:]:
            pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return pred

    @classmethod
    def paper_tables(cls, result: dict) -> list[str]:
        """GP2's README table (lightning_modules/gp2/tables.py) when the run was tested on its datasets."""
        from lightning_modules.gp2.tables import gp2_readme_table

        table = gp2_readme_table(result.get("test") or {})
        return [f"GP2 README table (saic-vul/geometry-preserving-de):\n{table}"] if table else []

    def configure_callbacks(self) -> list[pl.Callback]:
        from lightning_modules.gp2.callbacks import DepthVisualizer

        return [DepthVisualizer(self.hparams.log_images, self.hparams.log_points)]

    # ------------------------------------------------------------------ training
    def _loss(self, batch: dict, pred: torch.Tensor) -> torch.Tensor:
        return self.criterion(pred, batch["depth"], batch["valid"], batch["depth_type"], batch.get("ordinal"))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred = self(batch["image"])
        loss = self._loss(batch, pred)  # finite by construction: masked, overflow-safe losses
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

    # ------------------------------------------------------------------ evaluation
    def _metric_set(self, split: str, idx: int, batch: dict) -> nn.ModuleDict:
        key = f"{split}_{idx}"
        if key not in self.metrics:
            caps = batch.get("max_depth")  # per-dataset depth cap from the reader (tensor, or list with None)
            cap = caps[0] if caps is not None and len(caps) else None
            cap = float(cap) if cap is not None else self.hparams.max_depth
            sets = {a: DepthMetrics(alignment=a, max_depth=cap) for a in self.hparams.alignments}
            self.metrics[key] = nn.ModuleDict(
                {**sets, "whdr": WHDR(), "loss": MeanMetric(nan_strategy="disable")}
            ).to(self.device)
        return self.metrics[key]

    def _eval_step(self, split: str, batch: dict, dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Update the split's metrics; returns {"pred": log-disparity at the target's resolution} for callbacks."""
        pred = self.predict_like(batch["image"], batch["depth"])
        loss = self._loss(batch, pred)
        metrics = self._metric_set(split, dataloader_idx, batch)
        dense = torch.tensor([t in DENSE_DEPTH_TYPES for t in batch["depth_type"]], device=pred.device)
        mask = batch["valid"] & dense[:, None, None, None]
        for a in self.hparams.alignments:
            metrics[a].update(pred, batch["depth"], mask)
        if batch.get("ordinal") is not None:
            metrics["whdr"].update(pred, batch["ordinal"])
        # one value per sample rather than weight=B: torchmetrics 1.9's MeanMetric ignores a scalar's weight
        # under nan_strategy="disable" (which keeps a NaN loss visible instead of dropping it)
        metrics["loss"].update(loss.detach().expand(pred.shape[0]))
        return {"pred": pred.detach()}

    def validation_step(
        self, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        return self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._eval_step("test", batch, dataloader_idx)

    def _names(self, split: str) -> list[str] | None:
        """Names of the split's dataloaders (reader names, made unique), if the datamodule tells them."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "dataset_names"):
            return None
        names = list(dm.dataset_names(split))
        return [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]

    def _log_epoch(self, split: str) -> None:
        keys = sorted(k for k in self.metrics if k.startswith(split + "_"))
        names = self._names(split) or [str(i) for i in range(len(keys))]
        main = self.hparams.alignments[0]
        per_loader: list[dict[str, torch.Tensor]] = []
        losses: list[torch.Tensor] = []
        out: dict[str, torch.Tensor] = {}
        for key in keys:
            idx = int(key.rsplit("_", 1)[1])
            sets = self.metrics[key]
            prefix = split if len(keys) == 1 else f"{split}/{names[idx] if idx < len(names) else idx}"
            main_vals = {}
            for a in self.hparams.alignments:
                vals = sets[a].compute()
                sets[a].reset()
                if vals["num_images"] == 0:
                    continue
                for name in REPORTED + (MAIN_ONLY if a == main else ()):
                    k = f"{prefix}/{name}" if a == main else f"{prefix}/{a}/{name}"
                    out[k] = vals[name].float()
                    if a == main:
                        main_vals[name] = vals[name].float()
            with warnings.catch_warnings():  # computed on every rank (compute() syncs), even with no update
                warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
                whdr = sets["whdr"].compute()
            sets["whdr"].reset()
            if torch.isfinite(whdr):
                out[f"{prefix}/whdr"] = whdr.float()
            out[f"{prefix}/loss"] = sets["loss"].compute().float()
            sets["loss"].reset()
            losses.append(out[f"{prefix}/loss"])
            if main_vals:
                per_loader.append(main_vals)
        if len(keys) > 1:
            out[f"{split}/loss"] = torch.stack(losses).mean()
            for name in REPORTED + MAIN_ONLY if per_loader else ():
                out[f"{split}/{name}"] = torch.stack([d[name] for d in per_loader]).mean()
        # compute() already synchronized the states across ranks: every rank logs the same values.
        self.log_dict(out, sync_dist=False, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none":
            return opt
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
