"""The real entry point on a shrunken config: train, run directory, resume, eval, sweep, DDP on CPU.

Each run: 32x32 synthetic scenes, a handful of steps, CPU (lightning-hydra-template style pipeline tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from omegaconf import open_dict

from experiments.__main__ import main
from experiments.config import ConfigError, compose
from experiments.runner import evaluate, train
from lightning_modules.gp2.module import GP2Module

ROOT = Path(__file__).resolve().parents[1]


def tiny(run_dir: Path, *extra: str, n_train: int = 16, n_val: int = 8, epochs: int = 1) -> list[str]:
    entry = "{{reader: synthetic_depth, split: {split}, num_samples: {n}, image_size: [32, 32], seed: 3}}"
    return [
        f"run_dir={run_dir}",
        "data.image_size=[32,32]",
        "data.batch_size=4",
        f"data.train=[{entry.format(split='train', n=n_train)}]",
        f"data.val=[{entry.format(split='val', n=n_val)}]",
        f"data.test=[{entry.format(split='test', n=n_val)}]",
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "model.log_images=2",
        "model.log_points=64",
        *extra,
    ]


def test_train_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    result = train(compose("gp2_synthetic", tiny(run)))
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    for split in ("val", "test"):
        for key in ("absrel", "delta125_bad", "rmse", "lstsq_disparity/absrel"):
            value = metrics[split][f"{split}/{key}"]
            assert value == value and value >= 0, (split, key, value)
    assert metrics["global_step"] == 4  # 16 samples / batch 4
    # W&B offline files and the visualizer's pictures
    assert list((run / "wandb").glob("offline-run-*")), list(run.iterdir())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["batch_size"] == 4 and cfg["experiment"] == "gp2_synthetic"


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        train(compose("gp2_synthetic", tiny(run, "logger=csv")))
    assert [p.name for p in run.iterdir()] == ["precious.txt"]
    assert (run / "precious.txt").read_text() == "keep me"


class _StopAfterFirstEpoch(pl.Callback):
    """Interrupts the run after epoch 0 (its checkpoints written), as a killed job would be."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            trainer.should_stop = True


def test_resume_from_last_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = train(compose("gp2_synthetic", tiny(tmp_path / "a", "logger=csv", epochs=2)))
    with monkeypatch.context() as m:
        defaults = GP2Module.configure_callbacks
        m.setattr(GP2Module, "configure_callbacks", lambda self: [*defaults(self), _StopAfterFirstEpoch()])
        interrupted = train(compose("gp2_synthetic", tiny(tmp_path / "b", "logger=csv", epochs=2)))
    assert interrupted["global_step"] == 4
    resumed = train(compose("gp2_synthetic", tiny(tmp_path / "b", "logger=csv", "ckpt_path=last", epochs=2)))
    assert resumed["global_step"] == straight["global_step"] == 8
    # the interrupted run's logged rows are kept; the resumed run logs beside them
    first = (tmp_path / "b" / "csv" / "metrics.csv").read_text().splitlines()
    (second,) = (tmp_path / "b" / "csv").glob("resume-*/metrics.csv")
    assert len(first) > 1 and len(second.read_text().splitlines()) > 1
    for key, value in straight["val"].items():
        assert resumed["val"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_eval_reproduces_the_final_validation_metrics(tmp_path):
    result = train(compose("gp2_synthetic", tiny(tmp_path / "run", "logger=csv")))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ev = evaluate(compose("gp2_synthetic", tiny(tmp_path / "eval", "logger=csv", f"ckpt_path={ckpt}")))
    for key, value in result["val"].items():
        assert ev["val"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # eval needs neither the training data nor the backbone weights file, and takes its evaluation
    # settings (here the alignments) from its own config
    other = tiny(tmp_path / "eval2", "logger=csv", f"ckpt_path={ckpt}", "model.alignments=[none]")
    other = [o for o in other if not o.startswith("data.train=")]
    other.append(f"data.train=[{{reader: nyu, root: {tmp_path / 'not_here'}, split: train}}]")
    cfg = compose("gp2_synthetic", other)
    with open_dict(cfg):
        cfg.model.pretrained_path = str(tmp_path / "moved.pth")  # as an experiment file pointing elsewhere
    ev2 = evaluate(cfg)
    assert "val/absrel" in ev2["val"] and not any("lstsq" in k for k in ev2["val"]), sorted(ev2["val"])
    # eval logs the validation pictures too (the module's configure_callbacks)
    assert list((tmp_path / "eval2" / "media").rglob("*.png")), list((tmp_path / "eval2").rglob("*"))
    # a model setting that eval would silently ignore is refused, naming it
    with pytest.raises(ConfigError, match=r"model.backbone: eval takes the model from the checkpoint"):
        evaluate(compose("gp2_synthetic", tiny(tmp_path / "e3", f"ckpt_path={ckpt}", "model.backbone=x")))


def test_offline_sweep_of_two_runs(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "two.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "method": "grid",
                "metric": {"name": "val/absrel", "goal": "minimize"},
                "parameters": {"exp": {"value": "gp2_synthetic"}, "model.lr": {"values": [1e-3, 1e-6]}},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    overrides = [o for o in tiny(tmp_path / "unused", "logger=csv") if not o.startswith("run_dir=")]
    assert main(["sweep", str(sweep), *overrides]) == 0
    out = capsys.readouterr().out
    assert "2 runs sorted by val/absrel" in out and "model.lr" in out
    (summary,) = (tmp_path / "runs" / "sweeps").glob("two-*/summary.json")
    rows = json.loads(summary.read_text())
    assert len(rows) == 2 and {r["model.lr"] for r in rows} == {1e-3, 1e-6}
    assert rows[0]["val/absrel"] <= rows[1]["val/absrel"]
    assert all((Path(r["run_dir"]) / "metrics.json").is_file() for r in rows)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_two_process_ddp_matches_single_process(tmp_path):
    """2 CPU processes (gloo): training runs, and the synchronized validation metrics of a checkpoint equal
    the single-process ones on the same data (7 samples: an odd count, so each is scored exactly once)."""
    ddp = ["trainer.devices=2", "trainer.strategy=ddp"]
    r = _cli(["train", "gp2_synthetic", *tiny(tmp_path / "ddp_train", "logger=csv", *ddp, n_val=7)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    trained = json.loads((tmp_path / "ddp_train" / "metrics.json").read_text())
    assert trained["global_step"] == 2  # 16 samples, batch 4 per process, 2 processes
    ckpt = tmp_path / "ddp_train" / "checkpoints" / "last.ckpt"
    single = evaluate(
        compose("gp2_synthetic", tiny(tmp_path / "single", "logger=csv", f"ckpt_path={ckpt}", n_val=7))
    )
    r = _cli(
        [
            "eval",
            "gp2_synthetic",
            *tiny(tmp_path / "ddp_eval", "logger=csv", f"ckpt_path={ckpt}", *ddp, n_val=7),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    both = json.loads((tmp_path / "ddp_eval" / "metrics.json").read_text())
    assert set(both["val"]) == set(single["val"])
    for key, value in single["val"].items():
        assert both["val"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_missing_dataset_root_stops_before_anything_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    missing = tmp_path / "no_nyu_here"
    args = tiny(run, "logger=csv", f"data.val=[{{reader: nyu, root: {missing}, split: test}}]")
    assert main(["train", "gp2_synthetic", *args]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "nyu_depth_v2_labeled.mat" in err, err
    assert not run.exists()


def test_unknown_reader_lists_the_available_ones(tmp_path, capsys):
    args = tiny(tmp_path / "run", "logger=csv", "data.val=[{reader: nyuv2, split: test}]")
    assert main(["train", "gp2_synthetic", *args]) == 2
    err = capsys.readouterr().err
    assert (
        "unknown dataset reader 'nyuv2'" in err and "did you mean 'nyu'" in err and "synthetic_depth" in err
    )


def test_runs_in_one_process_get_their_own_wandb_run(tmp_path):
    train(compose("gp2_synthetic", tiny(tmp_path / "a")))
    train(compose("gp2_synthetic", tiny(tmp_path / "b")))
    ids = [(tmp_path / r / "wandb_id.txt").read_text() for r in ("a", "b")]
    assert ids[0] != ids[1]


def test_a_second_run_of_the_same_slurm_job_does_not_overwrite_the_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    args = [o for o in tiny(tmp_path / "unused", "logger=csv") if not o.startswith("run_dir=")]
    train(compose("gp2_synthetic", args))
    before = (tmp_path / "runs" / "gp2_synthetic" / "42" / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already exists"):
        train(compose("gp2_synthetic", [*args, "seed=1"]))
    assert (tmp_path / "runs" / "gp2_synthetic" / "42" / "metrics.json").read_text() == before


class _Boom(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        raise RuntimeError("boom inside fit")


def test_an_error_inside_fit_keeps_its_traceback_and_marks_the_run_failed(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr(GP2Module, "configure_callbacks", lambda self: [_Boom()])
    with pytest.raises(RuntimeError, match="boom inside fit"):  # not a one-line ConfigError
        main(["train", "gp2_synthetic", *tiny(run, "logger=csv")])
    failed = (run / "failed.txt").read_text()
    assert "Traceback (most recent call last)" in failed and "RuntimeError: boom inside fit" in failed
    assert "command: python -m experiments train gp2_synthetic" in failed
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # a rerun into it says the run failed and how to go on, and changes nothing
    assert main(["train", "gp2_synthetic", *tiny(run, "logger=csv")]) == 2
    err = capsys.readouterr().err
    assert "holds a run that failed" in err and str(run / "failed.txt") in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_diverged_run_exits_non_zero_with_the_reason(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gp2_synthetic", *tiny(run, "logger=csv", "model.lr=1e12", epochs=3)]) == 1
    err = capsys.readouterr().err
    assert "the run diverged: training" in err and "is nan" in err, err
    assert "DivergedError" in (run / "failed.txt").read_text()
    assert not (run / "metrics.json").exists()  # no metrics of a diverged run are reported as final


def test_metrics_json_records_non_finite_values_and_a_nan_monitor_is_a_failure(tmp_path):
    from experiments.runner import _finish, _scalars
    from lightning_modules.family import DivergedError

    assert _scalars({"a": torch.tensor(float("nan")), "b": float("inf"), "c": -float("inf"), "d": 1}) == {
        "a": "nan",
        "b": "inf",
        "c": "-inf",
        "d": 1.0,
    }

    class Zero:
        is_global_zero = True

    ok = _finish({"val": {"val/absrel": 0.5, "val/rmse": "nan"}}, tmp_path, Zero(), "val/absrel")
    assert ok["status"] == "finished" and ok["non_finite"] == ["val:val/rmse"]
    assert json.loads((tmp_path / "metrics.json").read_text())["val"]["val/rmse"] == "nan"
    with pytest.raises(DivergedError, match="val/absrel is nan"):
        _finish({"val": {"val/absrel": "nan"}}, tmp_path, Zero(), "val/absrel")
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_unreadable_checkpoints_are_one_line_errors_naming_the_file(tmp_path, capsys):
    train(compose("gp2_synthetic", tiny(tmp_path / "run", "logger=csv")))
    good = (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes()
    for name, data in (("garbage.ckpt", b"not a checkpoint at all"), ("cut.ckpt", good[: len(good) // 2])):
        bad = tmp_path / name
        bad.write_bytes(data)
        assert main(["eval", "gp2_synthetic", *tiny(tmp_path / f"e-{name}", f"ckpt_path={bad}")]) == 2
        err = capsys.readouterr().err
        assert f"{bad}' is not a readable checkpoint" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"e-{name}").exists()


def test_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("mine")
    assert main(["train", "gp2_synthetic", *tiny(f, "logger=csv")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err and f.read_text() == "mine"


def test_last_checkpoint_is_the_scored_model_when_max_steps_stops_mid_epoch(tmp_path):
    """16 samples / batch 4 = 4 steps an epoch; max_steps=6 stops in the middle of epoch 1. last.ckpt must
    hold step 6, so that evaluating it reproduces the final metrics."""
    run = tmp_path / "run"
    result = train(compose("gp2_synthetic", tiny(run, "logger=csv", "trainer.max_steps=6", epochs=-1)))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    assert result["global_step"] == ckpt["global_step"] == 6
    ev = evaluate(
        compose(
            "gp2_synthetic",
            tiny(tmp_path / "e", "logger=csv", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"),
        )
    )
    for key, value in result["val"].items():
        assert ev["val"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
