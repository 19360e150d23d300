"""Build the datamodule, model, logger and Trainer from a composed config, and run train / eval.

Every run writes a run directory (`run_dir=PATH`; default runs/<experiment>/<timestamp>):
  config.yaml      the resolved config
  checkpoints/     last.ckpt and best.ckpt (by cfg.monitor)
  metrics.json     the final validation (and test) metrics, "status": "finished"; non-finite values are
                   written as the strings "nan", "inf", "-inf" and listed under "non_finite"
  wandb/ or csv/   the logger's files
  failed.txt       only if the run failed: the error and its traceback
An existing non-empty run directory is refused unless the run resumes from it (ckpt_path=last).

Two phases. Setup (config checks against the registered classes, the data roots and files, the model, the
checkpoint, the run directory): any failure is a ConfigError, one line on the command line, and nothing is
written. Run (fit / validate / test): an exception propagates with its full traceback, and the run directory
is marked failed (failed.txt) so that a rerun into it says so. A training loss that becomes NaN or infinite
stops the run (lightning_modules.family.DivergedError), as does a non-finite monitored metric at the end.

The runner knows no family: models come from `lightning_modules.MODELS`, datamodules from
`datamodules.DATAMODULES`, and what to monitor, which settings evaluation takes, and the callbacks from the
model class (lightning_modules/family.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger

import lightning_modules  # noqa: F401  (registers every family: models, datamodules, readers)
from datamodules import DATAMODULES
from experiments.config import ConfigError, check_classes, parse_overrides, registered_class, to_container
from lightning_modules.family import MODELS, MONITOR_MODES, DivergedError, family_attr

RUNS_ROOT = Path("runs")
# shared with DDP child processes so every rank uses the same run directory
RUN_DIR_ENV = "SV3D_RUN_DIR"
FAILED = "failed.txt"


def quiet_console() -> None:
    """The console shows the progress bar, the metrics and real warnings, not framework tips."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    for message in (
        ".*does not have many workers.*",
        ".*is smaller than the logging interval.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*The `srun` command is available on your system.*",
    ):
        warnings.filterwarnings("ignore", message=message)


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
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"run_dir={str(run_dir)!r} is a file, not a directory; choose another run_dir")
        last = run_dir / "checkpoints" / "last.ckpt"
        if resuming:
            if not last.is_file():
                raise ConfigError(f"ckpt_path=last: {last} does not exist")
        elif (run_dir / FAILED).is_file():
            how = (
                f"resume it with run_dir={run_dir} ckpt_path=last"
                if last.is_file()
                else "it saved no checkpoint to resume from"
            )
            raise ConfigError(
                f"run_dir={str(run_dir)!r} holds a run that failed (error and traceback in "
                f"{run_dir / FAILED}); nothing was changed. To continue, {how}; to start again, choose "
                "another run_dir or delete that directory"
            )
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run_dir={str(run_dir)!r} already exists and is not empty; nothing was changed. Choose another "
                "run_dir, or resume it with ckpt_path=last"
            )
    return run_dir


def check_checkpoint(path: Path) -> None:
    """ConfigError naming `path` unless it is a readable Lightning checkpoint (loaded weights-only, lazily)."""
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {str(path)!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated, garbage, or not weights-only loadable
        first = " ".join(str(e).strip().splitlines()[:1]) or type(e).__name__
        raise ConfigError(f"ckpt_path: {str(path)!r} is not a readable checkpoint ({first})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path: {str(path)!r} is not a Lightning checkpoint (no 'state_dict')")


def resolve_ckpt(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path is None:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    check_checkpoint(path)
    return str(path)


@contextlib.contextmanager
def setup_errors(what: str) -> Iterator[None]:
    """Before the run starts, bad input (a missing root or file, a wrong argument) is one ConfigError line
    naming `what` (e.g. "data (depth)"); a ConfigError passes as it is."""
    try:
        yield
    except ConfigError:
        raise
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise ConfigError(msg if msg.startswith(("data.", "model.", f"{what}")) else f"{what}: {msg}") from e


def build_datamodule(cfg: DictConfig, stage: str | None = None) -> pl.LightningDataModule:
    """The datamodule, its datasets opened now (`setup(stage)`) so that a missing root or file, or a wrong
    reader argument, stops the run before anything is written."""
    kwargs = to_container(cfg.data)
    name = kwargs.pop("name")
    kwargs.setdefault("seed", cfg.seed)
    with setup_errors(f"data ({name})"):
        dm = DATAMODULES[name](**kwargs)
        dm.setup(stage)
    return dm


def build_model(cfg: DictConfig) -> pl.LightningModule:
    kwargs = to_container(cfg.model)
    name = kwargs.pop("name")
    with setup_errors(f"model ({name})"):
        return MODELS[name](**kwargs)


def resolve_monitor(cfg: DictConfig, model_cls: type) -> tuple[str, str]:
    """(metric, "min" | "max") that picks best.ckpt: the config's, else the family's declaration."""
    declared = family_attr(model_cls, "MONITOR")
    monitor = cfg.monitor or declared
    if not monitor:
        raise ConfigError(
            f"monitor: model {cfg.model.name!r} ({model_cls.__name__}) declares no monitored metric (MONITOR); "
            "set monitor=<logged metric, e.g. val/loss> and monitor_mode=min|max"
        )
    mode = cfg.monitor_mode
    if mode is None:
        if monitor != declared:
            raise ConfigError(
                f"monitor_mode: say whether monitor={monitor} is better low or high (min | max)"
            )
        mode = family_attr(model_cls, "MONITOR_MODE")
    if mode not in MONITOR_MODES:
        raise ConfigError(f"monitor_mode: expected one of {MONITOR_MODES}, got {mode!r}")
    return monitor, mode


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
    """Scalar metrics as floats; a non-finite one as the string "nan" / "inf" / "-inf" (JSON has no NaN),
    never dropped: a diverged run must not read as a run without that metric."""
    out: dict = {}
    for k, v in metrics.items():
        v = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        v = float(v)
        out[k] = v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return dict(sorted(out.items()))


def _merged(results: list[dict]) -> dict:
    """One dict of scalars from Lightning's per-dataloader result dicts."""
    return _scalars({k: v for r in results for k, v in r.items()})


def _non_finite(result: dict) -> list[str]:
    return sorted(
        f"{split}:{k}"
        for split in ("val", "test")
        for k, v in (result.get(split) or {}).items()
        if isinstance(v, str)
    )


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))
    tmp.replace(path)


def _prepare(cfg: DictConfig, kind: str):
    run_dir = resolve_run_dir(cfg, kind)
    ckpt = resolve_ckpt(cfg, run_dir) if kind == "train" else None
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


@contextlib.contextmanager
def marked_on_failure(run_dir: Path, command: str) -> Iterator[None]:
    """Run phase: an exception propagates unchanged (with its traceback), and rank zero first writes it, and
    the `command` of the run, to run_dir/failed.txt. A run that succeeds after resuming a failed one keeps the old record as
    failed-<time>.txt."""
    try:
        yield
    except BaseException as e:
        e.run_dir = run_dir  # type: ignore[attr-defined]  (the command line says where the traceback is)
        if global_rank() == 0 and run_dir.is_dir() and not isinstance(e, SystemExit):
            text = "".join(traceback.format_exception(e))
            (run_dir / FAILED).write_text(
                f"command: {command}\ntime: {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n{text}"
            )
        raise
    if global_rank() == 0 and (run_dir / FAILED).is_file():
        (run_dir / FAILED).rename(run_dir / f"failed-{time.strftime('%Y%m%d-%H%M%S')}.txt")


def command_line(cfg: DictConfig, kind: str) -> str:
    """The command that composes `cfg` again: python -m experiments KIND EXPERIMENT OVERRIDES..."""
    return shlex.join(["python", "-m", "experiments", kind, cfg.experiment, *(cfg.get("overrides") or [])])


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
    quiet_console()
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


def _finish(result: dict, run_dir: Path, trainer: pl.Trainer, monitor: str | None) -> dict:
    """Write metrics.json (rank zero); a non-finite monitored metric means the run diverged."""
    bad = _non_finite(result)
    result["non_finite"] = bad
    diverged = monitor is not None and any(b.endswith(f":{monitor}") for b in bad)
    result["status"] = "diverged" if diverged else "finished"
    if trainer.is_global_zero:
        _write_json(run_dir / "metrics.json", result)
    if diverged:
        raise DivergedError(
            f"the run diverged: {monitor} is {result['val'].get(monitor)} (metrics.json lists the non-finite "
            f"metrics: {', '.join(bad)})"
        )
    return result


def _train(cfg: DictConfig) -> dict:
    with setup_errors("config"):
        check_classes(cfg)
        model_cls = registered_class(cfg, "model")
        monitor, mode = resolve_monitor(cfg, model_cls)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the model is built: its weights
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    run_dir, ckpt = _prepare(cfg, "train")
    with marked_on_failure(run_dir, command_line(cfg, "train")):
        logger = build_logger(cfg, run_dir)
        if isinstance(logger, WandbLogger) and global_rank() == 0:
            logger.experiment.config.update(to_container(cfg), allow_val_change=True)
            (run_dir / "wandb_id.txt").write_text(logger.experiment.id)
        checkpoint = ModelCheckpoint(
            dirpath=str(run_dir / "checkpoints"),
            filename="best",
            monitor=monitor,
            mode=mode,
            save_last=True,
            save_top_k=1,
            enable_version_counter=False,
        )
        trainer = build_trainer(cfg, run_dir, logger, [checkpoint])
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        # last.ckpt is the model metrics.json scores, also when max_steps stopped training mid-epoch (the
        # checkpoint callback saves at validation ends only, so last.ckpt could be epochs behind)
        trainer.save_checkpoint(str(run_dir / "checkpoints" / "last.ckpt"), weights_only=False)
        result = {"run_dir": str(run_dir), "experiment": cfg.experiment, "monitor": monitor}
        result.update(_final_metrics(cfg, trainer, model, datamodule))
        result["best_checkpoint"] = checkpoint.best_model_path or None
        result["global_step"] = trainer.global_step
        result["epochs"] = trainer.current_epoch
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            logger.experiment.summary.update({f"final/{k}": v for k, v in result["val"].items()})
        return _finish(result, run_dir, trainer, monitor)


def _eval_model(cfg: DictConfig, src: Path) -> pl.LightningModule:
    """The model of checkpoint `src`: its architecture and weights from the checkpoint, the family's
    declared evaluation settings (EVAL_SETTINGS) from this config, and INIT_ONLY arguments (weight files)
    left out. A command-line `model.*` override that evaluation would ignore is an error naming the key."""
    model_cls = registered_class(cfg, "model")
    settings = tuple(family_attr(model_cls, "EVAL_SETTINGS") or ())
    init_only = tuple(family_attr(model_cls, "INIT_ONLY") or ())
    ignored = [
        k
        for k in parse_overrides(list(cfg.get("overrides") or []))
        if k.startswith("model.") and k.split(".")[1] not in settings
    ]
    if ignored:
        raise ConfigError(
            f"{ignored[0]}: eval takes the model from the checkpoint, so this override would be ignored. "
            f"{model_cls.__name__} takes these settings at evaluation: {', '.join(settings) or 'none'}"
        )
    kwargs = {k: v for k, v in to_container(cfg.model).items() if k in settings}
    kwargs.update({k: None for k in init_only})
    check_checkpoint(src)
    with setup_errors(f"ckpt_path ({src})"):
        return model_cls.load_from_checkpoint(str(src), map_location="cpu", weights_only=True, **kwargs)


def _released_weights(cfg: DictConfig, model_cls: type) -> str | None:
    """The model.* key of a released-weights file set in the config (FamilyModule.RELEASED_WEIGHTS), if any."""
    keys = [k for k in family_attr(model_cls, "RELEASED_WEIGHTS") or () if cfg.model.get(k) is not None]
    return keys[0] if keys else None


def _evaluate(cfg: DictConfig) -> dict:
    with setup_errors("config"):
        model_cls = registered_class(cfg, "model")
    released = _released_weights(cfg, model_cls) if cfg.ckpt_path is None else None
    if released is None and (cfg.ckpt_path is None or cfg.ckpt_path == "last" and cfg.run_dir is None):
        alt = "".join(f", or model.{k}=FILE" for k in family_attr(model_cls, "RELEASED_WEIGHTS") or ())
        raise ConfigError(f"eval needs ckpt_path=PATH/TO.ckpt (or run_dir=RUN ckpt_path=last{alt})")
    if released is not None:
        src = Path(cfg.model[released])
    else:
        src = (
            Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
            if cfg.ckpt_path == "last"
            else Path(cfg.ckpt_path)
        )
    with setup_errors("config"):
        check_classes(cfg)
    eval_cfg = cfg.copy()
    with open_dict(eval_cfg):  # config.yaml records the checkpoint that was evaluated
        eval_cfg.run_dir = None if cfg.ckpt_path == "last" else cfg.run_dir
        eval_cfg.ckpt_path = None if released is not None else str(src)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    # only the evaluation splits are opened: the training datasets need not be on this machine
    datamodule = build_datamodule(cfg, "validate")
    if cfg.test_after_fit:
        with setup_errors(f"data ({cfg.data.name})"):
            datamodule.setup("test")
    # a released-weights file: the model is built from its config (every model.* key applies)
    model = build_model(cfg) if released is not None else _eval_model(cfg, src)
    run_dir, _ = _prepare(eval_cfg, "eval")
    with marked_on_failure(run_dir, command_line(cfg, "eval")):
        logger = build_logger(eval_cfg, run_dir)
        trainer = build_trainer(cfg, run_dir, logger, callbacks=[])
        result = {"run_dir": str(run_dir), "experiment": cfg.experiment, "checkpoint": str(src)}
        result.update(_final_metrics(cfg, trainer, model, datamodule))
        monitor = cfg.monitor or family_attr(type(model), "MONITOR")
        return _finish(result, run_dir, trainer, monitor)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def summary(result: dict, cfg: DictConfig | None = None) -> str:
    """What train / eval print at the end: the run directory, every metric, and (given the run's config)
    the family's paper tables (FamilyModule.paper_tables)."""
    lines = [f"run directory: {result['run_dir']}"]
    for split in ("val", "test"):
        if result.get(split):
            lines.append(f"{split}:")
            lines += [f"  {k:<36s} {_fmt(v)}" for k, v in result[split].items()]
    if result.get("best_checkpoint"):
        lines.append(f"best checkpoint: {result['best_checkpoint']}")
    if cfg is not None:
        for table in family_attr(registered_class(cfg, "model"), "paper_tables")(result):
            lines += ["", table]
    return "\n".join(lines)
