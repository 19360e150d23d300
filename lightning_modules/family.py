"""The family protocol: what the runner (experiments/) needs to know of a model family, and where it looks.

A family registers its LightningModule by name, and declares on the class what the runner must not guess:

    @MODELS.register("gp2")
    class GP2Module(FamilyModule):
        MONITOR = "val/absrel"            # the metric that picks checkpoints/best.ckpt ...
        MONITOR_MODE = "min"              # ... and whether lower ("min") or higher ("max") is better
        EVAL_SETTINGS = ("alignments",)   # constructor arguments `eval` takes from its config
        INIT_ONLY = ("pretrained_path",)  # arguments that only initialize weights (None at eval)

        def configure_callbacks(self):    # Lightning's own hook: used by train *and* eval
            return [MyVisualizer()]

Everything else comes from Lightning: the module's `training_step` / `validation_step` / `test_step`, its
`configure_optimizers`, and the metrics it logs. The datamodule is found in `datamodules.DATAMODULES` by the
config's `data.name`. A plain LightningModule without these attributes works too (the runner reads them with
defaults), but then the experiment config must name `monitor` and `monitor_mode` itself.

The runner imports the `lightning_modules` package, whose `__init__` imports each family once (that import
is the family's one registration line); it imports no family by name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from datamodules.registry import Registry

MODELS = Registry("model")
MONITOR_MODES = ("min", "max")


class FamilyModule(pl.LightningModule):
    """Base class of the suite's LightningModules: the protocol attributes (see the module docstring) and
    the guard that stops a diverged run."""

    MONITOR: str | None = None
    MONITOR_MODE: str = "min"
    EVAL_SETTINGS: tuple[str, ...] = ()
    INIT_ONLY: tuple[str, ...] = ()
    # constructor arguments that load *every* weight of the model (e.g. a paper's released file): `eval`
    # without ckpt_path builds the model from its config when one of them is set
    RELEASED_WEIGHTS: tuple[str, ...] = ()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        check_finite_loss(self.trainer, outputs)

    @classmethod
    def paper_tables(cls, result: dict) -> list[str]:
        """Tables in the layout of the family's paper from a finished run's result (metrics.json's content:
        "val" and "test" dicts of logged metrics), printed after `train` / `eval`'s summary; [] when the
        run has none of the paper's datasets."""
        return []


class DivergedError(FloatingPointError):
    """A training loss (or a logged train/ metric) became NaN or infinite."""


def check_finite_loss(trainer: pl.Trainer, outputs: Any) -> None:
    """Raise DivergedError when this step's loss, or any `train/` metric logged so far, is not finite.

    `outputs` is what `training_step` returned (a tensor, a dict with "loss", or None under manual
    optimization, where the logged `train/` metrics are checked)."""
    values: dict[str, Any] = {}
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        values["loss"] = loss
    values.update({k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")})
    for key, value in values.items():
        v = float(value.detach()) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        if isinstance(v, float) and not math.isfinite(v):
            raise DivergedError(
                f"the run diverged: training {key} is {v} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}. Lower model.lr, or set trainer.gradient_clip_val"
            )


def family_attr(cls: type, name: str, default: Any = None) -> Any:
    """A protocol attribute of a registered model class, with the protocol's default."""
    return getattr(cls, name, getattr(FamilyModule, name, default))


class EvalPictures(pl.Callback):
    """Base of the families' picture callbacks: what `_keep(trainer, pl_module, outputs, batch, batch_idx,
    dataloader_idx)` stores in `self._kept` during validation / test (it decides which batch: usually the
    first of the first dataloader on rank zero) is logged by `_log(trainer, split)` at the epoch's end, in
    fit and in eval runs alike; the sanity check's batch is dropped. Subclasses implement both."""

    _kept: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._keep(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._keep(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:  # the sanity check's batch is not a result
            self._kept = None
            return
        self._log(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module):
        self._log(trainer, "test")

    def _keep(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx) -> None:
        raise NotImplementedError

    @staticmethod
    def publish(trainer, split: str, figures: list, objects: dict | None = None) -> Path | None:
        """Log [(caption, (H, W, 3) uint8)] figures and `objects` ({key: wandb.Object3D}, built by the caller
        only under W&B) with W&B; with another logger, or none, save the figures as PNG files and return the
        folder (<default_root_dir>/media) for the caller's other files."""
        step = trainer.global_step
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            import wandb

            images = [wandb.Image(p, caption=c) for c, p in figures]
            logger.experiment.log({f"{split}/images": images, **(objects or {}), "trainer/global_step": step})
            return None
        from PIL import Image

        out = Path(trainer.default_root_dir) / "media"
        out.mkdir(parents=True, exist_ok=True)
        for caption, p in figures:
            Image.fromarray(p).save(out / f"{split}_step{step:06d}_{caption}.png")
        return out

    def _log(self, trainer, split: str) -> None:
        raise NotImplementedError
