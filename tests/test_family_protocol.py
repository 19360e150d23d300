"""The family protocol (lightning_modules/family.py): a toy family registered here, outside the project, runs
train, resume and eval through the real runner with nothing of GP2 (a maximised metric that is not absrel,
its own datamodule and evaluation setting). docs/adding_a_family.md is written from this file."""

from __future__ import annotations

import csv
import json

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy

from datamodules import DATAMODULES
from experiments.config import ConfigError, compose
from experiments.runner import evaluate, train
from lightning_modules import MODELS, FamilyModule


# ---- the toy family: about 40 lines (model + datamodule) --------------------------------------------------
@MODELS.register("toy_logreg")
class ToyLogReg(FamilyModule):
    """Logistic regression on 2D points; accuracy at a decision threshold that eval may change."""

    MONITOR, MONITOR_MODE = "val/accuracy", "max"
    EVAL_SETTINGS = ("threshold",)

    def __init__(self, lr: float = 0.5, threshold: float = 0.5):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = torch.nn.Linear(2, 1)
        self.val_acc = BinaryAccuracy(threshold=threshold)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net(x)[:, 0], y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_acc.update(torch.sigmoid(self.net(x)[:, 0]), y.long())
        self.log("val/accuracy", self.val_acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


@DATAMODULES.register("toy_blobs")
class ToyBlobs(pl.LightningDataModule):
    """Two Gaussian blobs in 2D, centres at +-(1, 1): label 1 for the positive one."""

    def __init__(
        self, num_samples: int = 256, batch_size: int = 32, seed: int = 0, noise: float | None = None
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        y = (torch.rand(num_samples, generator=g) < 0.5).float()
        x = (2 * y[:, None] - 1) * torch.ones(2) + (noise or 1.0) * torch.randn(num_samples, 2, generator=g)
        self.train_set = TensorDataset(x, y)
        self.val_set = TensorDataset(x[: num_samples // 4], y[: num_samples // 4])
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


# ---- its configs (a family adds experiments/configs/{model,data}/<name>.yaml and an experiment) -----------
@pytest.fixture
def toy_configs(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    (root / "model").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "model" / "toy_logreg.yaml").write_text("name: toy_logreg\nlr: 0.5\nthreshold: 0.5\n")
    (root / "data" / "toy_blobs.yaml").write_text(
        "name: toy_blobs\nnum_samples: 256\nbatch_size: 32\nnoise: null\n"
    )
    (root / "toy.yaml").write_text("defaults: {model: toy_logreg, data: toy_blobs}\ntest_after_fit: false\n")
    monkeypatch.setenv("SV3D_CONFIG_PATH", str(root))
    return root


def args(run_dir, *extra, epochs=3):
    return [f"run_dir={run_dir}", "logger=csv", f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", *extra]  # fmt: skip


def _logged_accuracies(run_dir) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(r["val/accuracy"]) for r in csv.DictReader(f) if r.get("val/accuracy")]


def test_toy_family_trains_with_its_own_maximised_metric(toy_configs, tmp_path):
    result = train(compose("toy", args(tmp_path / "run")))
    assert result["monitor"] == "val/accuracy" and result["status"] == "finished"
    assert not any("absrel" in k for k in result["val"]), result["val"]
    assert result["val"]["val/accuracy"] > 0.8  # the blobs are separable up to the noise: ~0.92 Bayes rate
    # best.ckpt is the epoch with the HIGHEST accuracy (mode max), not the lowest
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    (state,) = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint")]
    accs = _logged_accuracies(tmp_path / "run")[:-1]  # one row per epoch (the last row: the final validate)
    assert len(accs) == 3 and max(accs) > min(accs), accs  # else mode min and max would pick the same
    assert float(state["best_model_score"]) == pytest.approx(max(accs))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["monitor"] == "val/accuracy"


class _StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_toy_family_resumes_to_the_uninterrupted_result(toy_configs, tmp_path, monkeypatch):
    straight = train(compose("toy", args(tmp_path / "a")))
    with monkeypatch.context() as m:
        m.setattr(ToyLogReg, "configure_callbacks", lambda self: [_StopAfterFirstEpoch()], raising=False)
        train(compose("toy", args(tmp_path / "b")))
    resumed = train(compose("toy", args(tmp_path / "b", "ckpt_path=last")))
    assert resumed["global_step"] == straight["global_step"] == 3 * 8
    assert resumed["val"]["val/accuracy"] == pytest.approx(straight["val"]["val/accuracy"], abs=1e-6)


def test_toy_family_eval_takes_its_declared_settings_and_refuses_the_rest(toy_configs, tmp_path):
    trained = train(compose("toy", args(tmp_path / "run")))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    same = evaluate(compose("toy", args(tmp_path / "e1", f"ckpt_path={ckpt}")))
    assert same["val"]["val/accuracy"] == pytest.approx(trained["val"]["val/accuracy"], abs=1e-6)
    # threshold 1.0: no sigmoid output reaches it, every sample is called negative -> accuracy = share of 0s
    strict = evaluate(compose("toy", args(tmp_path / "e2", f"ckpt_path={ckpt}", "model.threshold=1.0")))
    y = ToyBlobs().val_set.tensors[1]
    assert strict["val"]["val/accuracy"] == pytest.approx(float((y == 0).float().mean()), abs=1e-6)
    with pytest.raises(ConfigError, match=r"model.lr: eval takes the model from the checkpoint.*threshold"):
        evaluate(compose("toy", args(tmp_path / "e3", f"ckpt_path={ckpt}", "model.lr=0.1")))
    assert not (tmp_path / "e3").exists()
    assert yaml_ckpt(tmp_path / "e1") == str(ckpt)  # eval's config.yaml records the checkpoint it scored


def yaml_ckpt(run_dir) -> str:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["ckpt_path"]


def test_nullable_keys_take_their_types_from_the_registered_signature(toy_configs):
    assert compose("toy", ["data.noise=0.5"]).data.noise == 0.5  # float | None
    with pytest.raises(ConfigError, match=r"'data.noise' expects one of \('int', 'float'\).*ToyBlobs"):
        compose("toy", ["data.noise=loud"])


def test_a_family_without_a_monitored_metric_fails_before_training(toy_configs, tmp_path, monkeypatch):
    monkeypatch.setattr(ToyLogReg, "MONITOR", None)
    with pytest.raises(ConfigError, match=r"declares no monitored metric.*set monitor="):
        train(compose("toy", args(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"monitor_mode: say whether monitor=train/loss"):
        train(compose("toy", args(tmp_path / "run", "monitor=train/loss")))
    result = train(compose("toy", args(tmp_path / "run", "monitor=train/loss", "monitor_mode=min", epochs=1)))
    assert result["monitor"] == "train/loss"


def test_trainer_inference_mode_is_a_config_key(toy_configs, tmp_path, monkeypatch):
    """A family that optimizes at evaluation time needs gradients there: trainer.inference_mode=false."""
    seen = []
    step = ToyLogReg.validation_step

    def recording_step(self, batch, batch_idx):
        seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ToyLogReg, "validation_step", recording_step)
    train(compose("toy", args(tmp_path / "a", epochs=1)))
    # Lightning's default: trainer.validate (the final metrics) runs under inference mode, where not even
    # torch.enable_grad() gives gradients; validation inside fit runs under no_grad
    assert any(inference for inference, _ in seen), seen
    seen.clear()
    train(compose("toy", args(tmp_path / "b", "trainer.inference_mode=false", epochs=1)))
    assert seen and not any(inference for inference, _ in seen)
