"""GP2 network, LightningModule and visualizer: shapes, the paper's decoder changes, errors, pictures."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.depth.datamodule import collate_depth
from datamodules.depth.synthetic import SyntheticDepth
from geometry.depth import unproject_depth
from lightning_modules.gp2.callbacks import DepthVisualizer
from lightning_modules.gp2.module import GP2Module
from lightning_modules.gp2.network import ChainedResidualPooling, LightWeightRefineNet


@pytest.mark.parametrize("backbone", ["mobilenetv2_100", "efficientnet_lite0"])
def test_network_predicts_full_resolution_log_disparity(backbone):
    net = LightWeightRefineNet(backbone).eval()
    x = torch.rand(2, 3, 48, 80)
    y = net(x)
    assert y.shape == (2, 1, 48, 80) and torch.isfinite(y).all()
    # the fusion adapters keep each level's own channel count (GP2 change 1)
    for i, a in enumerate(net.adapters):
        assert (a.in_channels, a.out_channels) == (net.channels[i + 1], net.channels[i])


def test_crp_output_is_divided_by_chains_plus_one():
    crp = ChainedResidualPooling(4, n_chains=3).eval()
    for m in crp.modules():  # make every conv+BN an identity: each chain then passes the pooled input on
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.dirac_(m.weight)
    x = torch.zeros(1, 4, 9, 9)
    x[..., 4, 4] = 1.0  # a single peak: maxpool 5x5 spreads it, the sum counts the chains
    y = crp(x)
    # centre: x + 3 pooled copies (all 1) = 4, divided by 3 + 1
    assert y[0, 0, 4, 4].item() == pytest.approx(1.0, abs=1e-4)  # BN eps: (1 + 1e-5) ** -0.5 per conv
    # a pixel 2 away gets the peak from every chain but not from x itself: 3 / 4
    assert y[0, 0, 4, 6].item() == pytest.approx(0.75, abs=1e-4)


def test_bad_configuration_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pretrained_path.*nothing.pth"):
        LightWeightRefineNet("mobilenetv2_100", pretrained_path=str(tmp_path / "nothing.pth"))
    with pytest.raises(ValueError, match="model.backbone"):
        LightWeightRefineNet("no_such_backbone_xyz")
    with pytest.raises(ValueError, match="model.alignments"):
        GP2Module(alignments=["median"])
    with pytest.raises(ValueError, match=r"image: expected shape \(B, 3, H, W\)"):
        LightWeightRefineNet()(torch.rand(2, 1, 32, 32))


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    src = LightWeightRefineNet("mobilenetv2_100")
    path = tmp_path / "mnv2.pth"
    torch.save(src.encoder.state_dict(), path)
    net = LightWeightRefineNet("mobilenetv2_100", pretrained_path=str(path))
    for k, v in src.encoder.state_dict().items():  # exact: weights saved and loaded, copied bit for bit
        assert torch.equal(net.encoder.state_dict()[k], v), k


def test_training_step_loss_is_finite_with_nan_depth():
    module = GP2Module(log_images=0)
    ds = SyntheticDepth(
        split="train", num_samples=2, image_size=(32, 32), uts_fraction=0.5, utss_fraction=0.5
    )
    batch = collate_depth([ds[0], ds[1]])
    batch["depth"][0, 0, :4] = float("nan")
    batch["valid"][0, 0, :4] = True  # even a wrongly "valid" NaN must not reach the loss
    loss = module._loss(batch, module(batch["image"]))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_visualizer_renders_strips_and_the_unprojected_cloud():
    ds = SyntheticDepth(split="val", num_samples=2, image_size=(16, 24))
    batch = collate_depth([ds[0], ds[1]])
    pred = -batch["depth"].log()  # a perfect prediction
    vis = DepthVisualizer(num_images=2, num_points=50)
    panels, clouds = vis.render(
        {
            "image": batch["image"],
            "pred": pred,
            "depth": batch["depth"],
            "valid": batch["valid"],
            "depth_type": batch["depth_type"],
            "intrinsics": batch["intrinsics"],
            "has_intrinsics": batch["has_intrinsics"],
        }
    )
    assert len(panels) == 2 and panels[0][1].shape == (16, 4 * 24, 3)
    err = panels[0][1][:, 72:]  # error panel: perfect prediction -> the colour of 0 everywhere valid
    assert (err.reshape(-1, 3) == err[0, 0]).all()  # exact: uint8 colours
    assert clouds[0].shape == (50, 6)
    pts, _ = unproject_depth(batch["depth"][:1], batch["intrinsics"][:1])
    # every logged point is one of the exact unprojected points (median alignment of a perfect prediction)
    d = torch.cdist(torch.from_numpy(clouds[0][:, :3]).double(), pts[0].double()).min(dim=1).values
    assert d.max().item() < 1e-4 * math.sqrt(3) * float(batch["depth"].max())


def test_network_and_loss_fit_a_fixed_batch():
    """A learning threshold with a known answer: on 4 fixed synthetic scenes the mixture loss must fall
    to under half its initial value in 40 AdamW steps (a broken decoder, loss sign or gradient fails)."""
    torch.manual_seed(0)
    module = GP2Module(log_images=0)
    ds = SyntheticDepth(
        split="train", num_samples=4, image_size=(32, 32), uts_fraction=0.25, utss_fraction=0.25
    )
    batch = collate_depth([ds[i] for i in range(4)])
    opt = torch.optim.AdamW(module.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = module._loss(batch, module(batch["image"]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_loss_is_invariant_to_a_global_log_disparity_shift_and_cannot_overflow():
    """exp(100) overflows float32; the loss (scale invariant in disparity) must not care."""
    from losses.depth import GP2Loss

    ds = SyntheticDepth(
        split="train", num_samples=3, image_size=(16, 16), uts_fraction=0.34, utss_fraction=0.34
    )
    batch = collate_depth([ds[i] for i in range(3)])
    pred = torch.randn(3, 1, 16, 16)
    loss = GP2Loss()
    base = loss(pred, batch["depth"], batch["valid"], batch["depth_type"])
    shifted = pred.clone().add_(100.0).requires_grad_(True)
    far = loss(shifted, batch["depth"], batch["valid"], batch["depth_type"])
    far.backward()
    assert torch.isfinite(far) and far.item() == pytest.approx(base.item(), rel=1e-4)
    assert torch.isfinite(shifted.grad).all()


def test_backbone_outside_the_supported_set_is_refused_before_timm(monkeypatch):
    import timm

    from lightning_modules.gp2 import network

    calls = []
    real = timm.create_model
    monkeypatch.setattr(network.timm, "create_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    for name in ("hf-hub:timm/mobilenetv2_100.ra_in1k", "resnet18", "efficientnet_b6"):
        with pytest.raises(ValueError, match=r"model\.backbone: expected one of .*efficientnet_b5") as info:
            LightWeightRefineNet(name)
        assert repr(name) in str(info.value) and "mobilenetv2_100" in str(info.value), str(info.value)
    assert calls == [], f"timm was called for a refused backbone: {calls}"
    assert set(network.BACKBONES) == {"mobilenetv2_100", "efficientnet_lite0"} | {
        f"efficientnet_b{i}" for i in range(6)
    }
    LightWeightRefineNet("efficientnet_b0")  # a supported one still reaches timm, as GP2's TF-ported encoder
    assert calls == [("tf_efficientnet_b0",)], calls


def test_visualizer_logs_titled_figures_in_eval_runs_without_a_fit(tmp_path):
    """trainer.validate / trainer.test on a fresh module (no fit: no epoch, optimizer or train loader)."""
    import numpy as np
    import pytorch_lightning as pl
    from PIL import Image
    from torch.utils.data import DataLoader

    ds = SyntheticDepth(split="val", num_samples=3, image_size=(16, 24), uts_fraction=0.34)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_depth)
    module = GP2Module(log_images=2, log_points=16)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[DepthVisualizer(num_images=2, num_points=16)],
    )
    trainer.validate(module, dataloaders=loader)
    trainer.test(module, dataloaders=loader)
    media = tmp_path / "media"
    names = sorted(p.name for p in media.glob("*.png"))
    assert [n.split("_")[0] for n in names] == ["test", "test", "val", "val"], names
    batch = collate_depth([ds[0], ds[1]])
    with torch.no_grad():  # what the eval step predicted (eval mode: BatchNorm running statistics)
        pred = module.eval().predict_like(batch["image"], batch["depth"])
    expect, _ = DepthVisualizer(2, 16).figures(
        {k: batch.get(k) for k in ("image", "depth", "valid", "depth_type", "intrinsics", "has_intrinsics")}
        | {"pred": pred}
    )
    for split in ("val", "test"):
        got = [np.asarray(Image.open(media / n)) for n in names if n.startswith(split)]
        for (caption, fig), png in zip(expect, got):
            assert png.shape == fig.shape and png.shape[0] > 16 and png.shape[1] > 4 * 24, (
                png.shape,
                fig.shape,
            )
            assert np.abs(png.astype(int) - fig.astype(int)).max() <= 1, f"{split} {caption}"


def test_visualizer_figures_of_a_diverged_prediction_say_so():
    import numpy as np

    ds = SyntheticDepth(split="val", num_samples=1, image_size=(16, 24))
    batch = collate_depth([ds[0]])
    b = {k: batch[k] for k in ("image", "depth", "valid", "depth_type", "intrinsics", "has_intrinsics")}
    b["pred"] = torch.full_like(batch["depth"], float("nan"))
    vis = DepthVisualizer(num_images=1, num_points=16)
    ((caption, panels),) = vis.panels(b)[0]
    assert "100% non-finite" in caption and "non-finite" in panels[1].title, (caption, panels[1].title)
    assert panels[1].image.abs().max() == 0, "a NaN prediction is drawn black, not as some depth"
    assert [p.title.split(" (")[0] for p in panels] == [
        "input",
        "predicted depth",
        "ground truth depth",
        "abs. rel. error",
    ]
    figures, clouds = vis.figures(b)
    assert figures[0][1].dtype == np.uint8 and clouds[0].shape == (0, 6), "no point from a NaN depth"
