"""The RGPD family's LightningModule: its loss terms, the two-stage schedule, the affine recovery of Table 4 on
a toy whose optimal shift is known, and the real entry point (train, eval, RenderFOV eval)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lightning_modules.rgpd  # noqa: F401  (registers model "rgpd")
from datamodules import READERS
from datamodules.depth.datamodule import collate_depth
from experiments.config import compose
from experiments.runner import evaluate, train
from geometry.cameras import intrinsics_from_fov
from geometry.depth import unproject_depth
from helpers import TOL
from lightning_modules.rgpd import module as rgpd_module
from lightning_modules.rgpd.module import RGPDModule, load_network_weights, target_disparity, true_hfov
from losses.rgpd import novel_view_transform, ssi_mad_loss


def synthetic_batch(n: int = 2, size: int = 32, **kwargs) -> dict:
    ds = READERS["synthetic_depth"](split="train", num_samples=n, image_size=[size, size], seed=3, **kwargs)
    return collate_depth([ds[i] for i in range(n)])


def tiny_module(**kwargs) -> RGPDModule:
    torch.manual_seed(0)
    return RGPDModule(alignments=["median_depth", "lstsq_disparity"], **kwargs)


# ----------------------------------------------------------------------------------------------- losses
def test_training_step_is_eq15_with_finite_gradients_through_both_branches():
    batch = synthetic_batch(utss_fraction=1.0)
    m = tiny_module(consistency=True, multi_focal=True)
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in m.net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # Eq. 15 with beta = 0.1: the same views (the generator is seeded by the step) give the same L^C
    with torch.no_grad():
        log_disp = m.net(batch["image"])
        base = m._loss(batch, log_disp)
        l_c, skipped = m.consistency_loss(batch, log_disp)
    assert float(l_c) > 0 and int(skipped) <= 2
    torch.testing.assert_close(loss.detach(), base + 0.1 * l_c, **TOL[torch.float32])


def test_the_rendered_views_re_prediction_is_differentiated(monkeypatch):
    """The re-prediction D'_pred goes through the module's network with gradients (not detached)."""
    batch = synthetic_batch(utss_fraction=1.0)
    m = tiny_module(consistency=True, multi_focal=False)
    seen = []
    orig = m.net.forward

    def spy(x):
        out = orig(x)
        seen.append(out.requires_grad)
        return out

    monkeypatch.setattr(m.net, "forward", spy)
    m.training_step(batch, 0)
    assert seen == [True, True], seen  # the input image, then the rendered view, both differentiable


def test_without_consistency_no_consistency_term_is_computed(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a consistency loss was computed")

    monkeypatch.setattr(rgpd_module, "multi_focal_consistency", boom)
    monkeypatch.setattr(rgpd_module, "consistency_losses", boom)
    batch = synthetic_batch(utss_fraction=1.0)
    for kwargs in (dict(consistency=False), dict(consistency=True, consistency_start_epoch=1)):  # epoch 0
        m = tiny_module(**kwargs)
        loss = m.training_step(batch, 0)
        with torch.no_grad():
            assert float(loss) == pytest.approx(float(m._loss(batch, m.net(batch["image"]))), rel=1e-6)


def test_ssi_term_is_on_disparity_and_invariant_to_the_labels_affine_type():
    """L^SSI compares the predicted disparity exp(l) with the label's disparity: a prediction that is the true
    disparity up to scale and shift has zero loss against absolute, UTS and UTSS-disparity labels alike,
    and the true *depth* (not affine in disparity) does not."""
    batch = synthetic_batch(n=3, uts_fraction=1 / 3, utss_fraction=1 / 3)
    assert set(batch["depth_type"]) == {"absolute", "uts", "utss_disparity"}
    disp, mask = target_disparity(batch["depth"], batch["valid"], batch["depth_type"])
    utss = batch["depth_type"].index("utss_disparity")
    torch.testing.assert_close(disp[utss][mask[utss]], batch["depth"][utss][mask[utss]])
    dense = [b for b in range(3) if b != utss]
    torch.testing.assert_close(disp[dense][mask[dense]], 1.0 / batch["depth"][dense][mask[dense]])
    # the reader's true disparity: 1 / metric depth (absolute), up to scale (uts) or scale + shift (utss)
    m = tiny_module()
    good = torch.log(3.0 * torch.where(mask, disp, torch.ones_like(disp)) + 0.5)
    assert float(m._loss(batch, good)) < 1e-5
    bad = torch.log(
        torch.where(mask, 1.0 / disp.clamp_min(1e-6), torch.ones_like(disp))
    )  # depth as disparity
    assert float(m._loss(batch, bad)) > 0.1
    ref = ssi_mad_loss(bad.exp(), disp, mask).loss  # the module's term is ssi_mad_loss on disparity
    torch.testing.assert_close(m._loss(batch, bad), ref, **TOL[torch.float32])


def test_single_focal_uses_the_true_intrinsics_and_the_default_fov_otherwise():
    batch = synthetic_batch(n=2)
    batch["has_intrinsics"] = torch.tensor([True, False])
    m = tiny_module(multi_focal=False, default_fov=60.0)
    K = m.single_focal_intrinsics(batch, 32, 32, like=batch["depth"])
    torch.testing.assert_close(K[0], batch["intrinsics"][0])
    torch.testing.assert_close(K[1], intrinsics_from_fov(60.0, 32, 32)[0].float())
    fov = true_hfov(intrinsics_from_fov(torch.tensor([47.0, 73.0]), 32, 32), 32)
    torch.testing.assert_close(fov, torch.tensor([47.0, 73.0]), **TOL[torch.float32])


def test_bad_settings_are_one_line_errors_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="model.loss"):
        RGPDModule(loss="l2")
    with pytest.raises(ValueError, match="model.train_fovs"):
        RGPDModule(train_fovs=[0.0])
    with pytest.raises(FileNotFoundError, match="model.init_checkpoint"):
        RGPDModule(init_checkpoint=str(tmp_path / "none.ckpt"))
    with pytest.raises(ValueError, match="model.init_checkpoint"):
        RGPDModule(affine_ssl=True).setup("fit")


# ------------------------------------------------------------------------------ affine recovery (Table 4)
class ToyNet(nn.Module):
    """A frozen "network" that is exact up to a disparity shift c: its image is the scene's 3D points
    (x, y, z) in the input camera, and it returns log(1 / z_v + c), with z_v the depth of each point in the
    view (R, t) (identity for the input image): geometry-preserving only after the shift -c."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c
        self.view: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        X = image.flatten(2).transpose(1, 2)  # (N, HW, 3)
        if self.view is not None:
            R, t = self.view
            k = X.shape[0] // R.shape[0]
            X = X @ R.repeat(k, 1, 1) + t.repeat(k, 1)[:, None]
        z = X[..., 2].clamp_min(1e-3).view(image.shape[0], 1, *image.shape[-2:])
        return torch.log(1.0 / z + self.c)


def test_affine_recovery_finds_the_known_shift():
    """The consistency loss of the affine-corrected toy is smallest at shift b = -c (scale 1): then the
    predicted depth is the true one and the re-predicted view agrees with the rendered one exactly."""
    batch = synthetic_batch(n=2, size=32)
    z, K = batch["depth"], batch["intrinsics"]
    X = unproject_depth(z, K).points.transpose(1, 2).reshape(2, 3, 32, 32)
    batch = {**batch, "image": X}
    c = 0.3
    theta, frac = torch.tensor([20.0, -25.0]), torch.tensor([0.5, -0.4])
    mz = z.flatten(1).amin(1)

    def views(depth):  # the same view, in the units of the predicted depth (as sample_novel_views does)
        mzp = depth.flatten(1).masked_fill(depth.flatten(1) <= 0, float("inf")).amin(1)
        return tuple(novel_view_transform(theta, frac * mzp, mzp))

    log_disp = torch.log(1.0 / z + c)
    shifts = [-0.6, -0.45, -0.35, -0.3, -0.25, -0.15, 0.0]
    for alpha in (1.0, 0.0):  # Eq. 12 as trained, and its depth term alone (exact at the truth)
        m = tiny_module(affine_ssl=True, multi_focal=False, alpha=alpha)
        m.net = ToyNet(c)
        m.net.view = tuple(novel_view_transform(theta, frac * mz, mz))  # the true view, metres
        m.sample_views = views
        losses = []
        with torch.no_grad():
            for b in shifts:
                m.shift.fill_(b)
                losses.append(float(m.consistency_loss(batch, log_disp)[0]))
        best = shifts[min(range(len(shifts)), key=losses.__getitem__)]
        assert best == -c, (alpha, list(zip(shifts, losses)))
        assert min(losses[2], losses[4]) > 1.5 * losses[3], losses
    assert losses[shifts.index(-c)] < 1e-5, losses  # depth term: the views agree up to rounding
    # gradient descent on the shift from 0 moves toward -c
    m.shift.data.fill_(-0.15)
    loss, _ = m.consistency_loss(batch, log_disp)
    loss.backward()
    assert m.shift.grad[0] > 0 and m.net is not None


def test_affine_mode_trains_only_scale_and_shift_and_logs_them(tmp_path):
    src = tiny_module(consistency=False)
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in src.net.state_dict().items()}}, path)
    m = tiny_module(affine_ssl=True, init_checkpoint=str(path))
    for k, v in src.net.state_dict().items():
        assert torch.equal(m.net.state_dict()[k], v), k
    assert load_network_weights(str(path)).keys() == src.net.state_dict().keys()
    m.train()
    assert not m.net.training  # the frozen network keeps its BatchNorm statistics
    opt = m.configure_optimizers()
    assert [p for g in opt.param_groups for p in g["params"]] == [m.log_scale, m.shift]
    loss = m.training_step(synthetic_batch(utss_fraction=1.0), 0)
    loss.backward()
    assert all(p.grad is None for p in m.net.parameters())
    assert m.shift.grad is not None and torch.isfinite(m.shift.grad).all()


# --------------------------------------------------------------------------------------------- pipeline
def tiny(run_dir, *extra: str) -> list[str]:
    entry = "{{reader: synthetic_depth, split: {split}, num_samples: 8, image_size: [32, 32], seed: 3{x}}}"
    return [
        f"run_dir={run_dir}",
        "logger=csv",
        "data.image_size=[32,32]",
        "data.batch_size=4",
        f"data.train=[{entry.format(split='train', x=', utss_fraction: 1.0')}]",
        f"data.val=[{entry.format(split='val', x='')}]",
        f"data.test=[{entry.format(split='test', x='')}]",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "model.log_images=0",  # no pictures: the GP2 visualizer is tested with GP2
        "model.log_points=64",
        *extra,
    ]


def test_pipeline_trains_evaluates_and_reports_renderfov(tmp_path):
    result = train(
        compose(
            "rgpd_ssi_consistency",
            tiny(tmp_path / "run", "model.consistency_start_epoch=0", "test_after_fit=false"),
        )
    )
    assert {"val/absrel", "val/delta1", "val/lstsq_disparity/absrel"} <= set(result["val"])
    logged = (tmp_path / "run" / "csv").rglob("metrics.csv")
    header = next(iter(logged)).read_text().splitlines()[0].split(",")
    assert {"train/ssi", "train/consistency", "train/skipped"} <= set(header), header
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ev = evaluate(compose("rgpd_renderfov_eval", tiny(tmp_path / "eval", f"ckpt_path={ckpt}")))
    for key, value in result["val"].items():
        assert ev["val"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    acc = ev["test"]["test/renderfov_accuracy"]
    assert 0.0 <= acc <= 100.0 and acc * 8 / 100 == pytest.approx(round(acc * 8 / 100)), acc  # k of 8 images
    assert ev["test"]["test/point_cloud_rmse"] > 0
    assert 40.0 <= ev["test"]["test/renderfov_fov"] <= 80.0
    # Table 4: the affine recovery starts from the trained network, keeps it, and learns scale and shift
    affine = train(
        compose(
            "rgpd_affine_ssl",
            tiny(tmp_path / "affine", f"model.init_checkpoint={ckpt}", "test_after_fit=false"),
        )
    )
    assert "val/absrel" in affine["val"]
    header = next((tmp_path / "affine" / "csv").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    assert {"train/scale", "train/shift", "train/consistency"} <= set(header), header
    before = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    after = torch.load(
        tmp_path / "affine" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    after = after["state_dict"]
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("net.")), "net changed"
    assert float(after["shift"].abs().max()) > 0, "the shift was not trained"
