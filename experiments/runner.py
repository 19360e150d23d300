"""Build the datamodule, model, logger and Trainer from a composed config, and run train / eval.

Every run writes a run directory (`run_dir=PATH`; default runs/<experiment>/<timestamp>):
  config.yaml      the resolved config
  checkpoints/     last.ckpt and best.ckpt (by cfg.monitor)
  metrics.json     the final validation (and test) metrics
  wandb/ or csv/   the logger's files
An existing non-empty run directory is refused unless the run resumes from it (ckpt_path=last).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger

import datamodules.depth  # noqa: F401  (registers the depth readers and datamodule)
from datamodules.registry import DATAMODULES
from experiments.config import ConfigError, to_container
from experiments.registry import MODELS

RUNS_ROOT = Path("runs")
RUN_DIR_ENV = "SV3D_RUN_DIR"
# model settings that `eval` takes from its config rather than from the checkpoint
EVAL_MODEL_KEYS = (
    "alignments",
    "max_depth",
    "log_images",
    "log_points",
)  # shared with DDP child processes so every rank uses the same run directory


def global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def _job_id() -> str | None:
    """The launcher's job id (torchrun's TORCHELASTIC_RUN_ID unless it is its default "none", or SLURM's)."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    return job if job and job != "none" else os.environ.get("SLURM_JOB_ID")


def resolve_run_dir(cfg: DictConfig, kind: str = "train") -> Path:
    """The run directory; refuses to reuse a non-empty one unless resuming from it."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    resuming = cfg.ckpt_path == "last"
    if cfg.run_dir is not None:
        run_dir = Path(cfg.run_dir)
    elif resuming:
        runs = sorted((RUNS_ROOT / cfg.experiment).glob("*/checkpoints/last.ckpt"), key=os.path.getmtime)
        if not runs:
            raise ConfigError(
                f"ckpt_path=last: no run of {cfg.experiment!r} under {RUNS_ROOT / cfg.experiment} has "
                "checkpoints/last.ckpt; pass run_dir=PATH of the run to resume"
            )
        run_dir = runs[-1].parent.parent
    else:
        job = _job_id()
        stamp = job or time.strftime("%Y%m%d-%H%M%S")
        prefix = "" if kind == "train" else f"{kind}-"
        run_dir = RUNS_ROOT / cfg.experiment / f"{prefix}{stamp}"
        i = 1
        while run_dir.exists() and global_rank() == 0 and not job:
            run_dir = RUNS_ROOT / cfg.experiment / f"{prefix}{stamp}-{i}"
            i += 1
    if global_rank() == 0:
        if resuming:
            if not (run_dir / "checkpoints" / "last.ckpt").is_file():
                raise ConfigError(f"ckpt_path=last: {run_dir / 'checkpoints' / 'last.ckpt'} does not exist")
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run_dir={str(run_dir)!r} already exists and is not empty; nothing was changed. Choose another "
                "run_dir, or resume it with ckpt_path=last"
            )
    return run_dir


def resolve_ckpt(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path is None:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {str(path)!r}")
    return str(path)


def build_datamodule(cfg: DictConfig, stage: str | None = None) -> pl.LightningDataModule:
    """The datamodule, its datasets opened now (`setup(stage)`) so that a missing root or file, or a wrong
    reader argument, stops the run before anything is written."""
    kwargs = to_container(cfg.data)
    name = kwargs.pop("name")
    kwargs.setdefault("seed", cfg.seed)
    try:
        dm = DATAMODULES[name](**kwargs)
        dm.setup(stage)
    except TypeError as e:
        raise ConfigError(f"data ({name}): {e}") from e
    return dm


def build_model(cfg: DictConfig) -> pl.LightningModule:
    kwargs = to_container(cfg.model)
    name = kwargs.pop("name")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"model ({name}): {e}") from e


WANDB_MODES = ("offline", "online", "auto")


def wandb_mode(mode: str) -> str:
    """offline | online | auto (online when a W&B key is configured). WANDB_MODE wins."""
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.mode: expected one of {WANDB_MODES}, got {mode!r}")
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env in ("offline", "dryrun", "disabled") else "online"
    if mode != "auto":
        return mode
    netrc = Path.home() / ".netrc"
    configured = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text()
    )
    return "online" if configured else "offline"


def build_logger(cfg: DictConfig, run_dir: Path):
    lg = cfg.logger
    if lg.name == "csv":
        # a resumed run writes its rows next to the first run's (Lightning would delete metrics.csv)
        resumed = (run_dir / "csv" / "metrics.csv").exists()
        return CSVLogger(
            save_dir=str(run_dir), name="csv", version=f"resume-{time.strftime('%H%M%S')}" if resumed else ""
        )
    if lg.name != "wandb":
        raise ConfigError(f"logger.name: expected 'wandb' or 'csv', got {lg.name!r}")
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    logger = WandbLogger(
        save_dir=str(run_dir),
        project=lg.project,
        entity=lg.entity,
        group=lg.group,
        tags=list(lg.tags),
        name=f"{cfg.experiment}/{run_dir.name}",
        offline=wandb_mode(lg.mode) == "offline",
        id=run_id,
        resume="allow" if run_id else None,
        log_model=False,
    )
    return logger


def build_trainer(cfg: DictConfig, run_dir: Path, logger, callbacks) -> pl.Trainer:
    tr = to_container(cfg.trainer)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return pl.Trainer(
        **tr,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        deterministic=bool(cfg.deterministic),
    )


def _scalars(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        v = v.item() if isinstance(v, torch.Tensor) else v
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return dict(sorted(out.items()))


def _merged(results: list[dict]) -> dict:
    """One dict of finite scalars from Lightning's per-dataloader result dicts."""
    return _scalars({k: v for r in results for k, v in r.items()})


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def _prepare(cfg: DictConfig, kind: str):
    run_dir = resolve_run_dir(cfg, kind)
    ckpt = resolve_ckpt(cfg, run_dir) if kind == "train" or cfg.ckpt_path is not None else None
    os.environ[RUN_DIR_ENV] = str(run_dir)
    if global_rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        name = (
            "config.yaml"
            if not (run_dir / "config.yaml").exists()
            else f"config-resume-{time.strftime('%H%M%S')}.yaml"
        )
        OmegaConf.save(cfg, run_dir / name)
    return run_dir, ckpt


def train(cfg: DictConfig) -> dict:
    """Fit, then validate (and test if configured); returns the metrics.json content."""
    return _isolated(_train, cfg)


def evaluate(cfg: DictConfig) -> dict:
    """Validate (and test) a checkpoint in a new run directory (runs/<experiment>/eval-<timestamp>)."""
    return _isolated(_evaluate, cfg)


def _isolated(fn, cfg: DictConfig) -> dict:
    """Run `fn(cfg)` so that nothing leaks into the next run of the same process (a sweep): the shared
    run-directory variable is cleared and the W&B run is finished."""
    inherited = RUN_DIR_ENV in os.environ
    try:
        return fn(cfg)
    finally:
        if not inherited:
            os.environ.pop(RUN_DIR_ENV, None)
        if global_rank() == 0 and "wandb" in sys.modules:
            import wandb

            if wandb.run is not None:
                wandb.finish()


def _final_metrics(cfg: DictConfig, trainer: pl.Trainer, model, datamodule) -> dict:
    """{"val": ..., "test": ...}: the metrics of every evaluation dataloader, merged."""
    out = {"val": _merged(trainer.validate(model, datamodule=datamodule, verbose=False))}
    if cfg.test_after_fit:
        out["test"] = _merged(trainer.test(model, datamodule=datamodule, verbose=False))
    return out


def _train(cfg: DictConfig) -> dict:
    pl.seed_everything(cfg.seed, workers=True)  # before the model is built: its initial weights
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    run_dir, ckpt = _prepare(cfg, "train")
    logger = build_logger(cfg, run_dir)
    if isinstance(logger, WandbLogger) and global_rank() == 0:
        logger.experiment.config.update(to_container(cfg), allow_val_change=True)
        (run_dir / "wandb_id.txt").write_text(logger.experiment.id)
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="best",
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks = [checkpoint, *model.default_callbacks()]
    trainer = build_trainer(cfg, run_dir, logger, callbacks)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    result = {"run_dir": str(run_dir), "experiment": cfg.experiment}
    result.update(_final_metrics(cfg, trainer, model, datamodule))
    result["best_checkpoint"] = checkpoint.best_model_path or None
    result["global_step"] = trainer.global_step
    result["epochs"] = trainer.current_epoch
    if trainer.is_global_zero:
        _write_json(run_dir / "metrics.json", result)
    if isinstance(logger, WandbLogger) and trainer.is_global_zero:
        logger.experiment.summary.update({f"final/{k}": v for k, v in result["val"].items()})
    return result


def _evaluate(cfg: DictConfig) -> dict:
    if cfg.ckpt_path is None or cfg.ckpt_path == "last" and cfg.run_dir is None:
        raise ConfigError("eval needs ckpt_path=PATH/TO.ckpt (or run_dir=RUN ckpt_path=last)")
    src = Path(cfg.run_dir) / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not src.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {str(src)!r}")
    eval_cfg = cfg.copy()
    with open_dict(eval_cfg):
        eval_cfg.run_dir = None if cfg.ckpt_path == "last" else cfg.run_dir
        eval_cfg.ckpt_path = None
    pl.seed_everything(cfg.seed, workers=True)
    # only the evaluation splits are opened: the training datasets need not be on this machine
    datamodule = build_datamodule(cfg, "validate")
    if cfg.test_after_fit:
        datamodule.setup("test")
    # the architecture comes from the checkpoint; evaluation settings from this config, and no backbone
    # weights file is needed (the checkpoint holds every weight)
    eval_settings = {k: v for k, v in to_container(cfg.model).items() if k in EVAL_MODEL_KEYS}
    model = MODELS[cfg.model.name].load_from_checkpoint(
        str(src), map_location="cpu", pretrained_path=None, **eval_settings
    )
    run_dir, _ = _prepare(eval_cfg, "eval")
    logger = build_logger(eval_cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, logger, callbacks=[])
    result = {"run_dir": str(run_dir), "experiment": cfg.experiment, "checkpoint": str(src)}
    result.update(_final_metrics(cfg, trainer, model, datamodule))
    if trainer.is_global_zero:
        _write_json(run_dir / "metrics.json", result)
    return result


def summary(result: dict) -> str:
    lines = [f"run directory: {result['run_dir']}"]
    for split in ("val", "test"):
        if result.get(split):
            lines.append(f"{split}:")
            lines += [f"  {k:<36s} {v:.4f}" for k, v in result[split].items()]
    if result.get("best_checkpoint"):
        lines.append(f"best checkpoint: {result['best_checkpoint']}")
    return "\n".join(lines)
