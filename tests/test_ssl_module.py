"""The SSL point-cloud family's LightningModule: loss terms and their routing to the two networks, the
ablation switches, inference-stage optimization, and the real entry point (train, eval, ISO)."""

from __future__ import annotations

import math

import pytest
import torch

import lightning_modules.ssl  # noqa: F401  (registers the family, until lightning_modules/__init__ does)
from datamodules.pointcloud import PointCloudDataModule, lineage_intrinsics, project_to_ndc, world2cam
from experiments.config import ConfigError, compose
from experiments.runner import evaluate, train
from lightning_modules.ssl.module import SSLModule, silhouette_iou

S, P = 32, 64  # image side, points


def _batch(n=4, seed=0, category="car"):
    e = {
        "reader": "synthetic_shapes",
        "split": "train",
        "num_samples": n,
        "category": category,
        "image_size": S,
        "num_points": P,
        "seed": seed,
    }
    dm = PointCloudDataModule(train=[e], val=[{**e, "split": "val"}], batch_size=n, image_size=S)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _model(**kw):
    torch.manual_seed(0)
    return SSLModule(n_points=P, image_size=S, n_views=2, **kw)


def _grad_norms(model, loss):
    model.zero_grad()
    loss.backward(retain_graph=True)
    norms = {}
    for name, net in (("rec", model.rec_net), ("pose", model.pose_net)):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        for g in grads:
            assert torch.isfinite(g).all(), name
        norms[name] = float(sum(g.abs().sum() for g in grads)) if grads else 0.0
    return norms


def test_terms_are_finite_and_each_objective_reaches_only_its_network():
    batch = _batch()
    model = _model(nn=True, weights={"symmetry": 1.0})
    rec_terms, pose_terms = model.loss_terms(batch)
    assert set(rec_terms) == {"image", "mask", "affinity", "geometric", "nn", "nn_affinity", "symmetry"}
    assert set(pose_terms) == {"pose_image", "pose_mask", "pose_cycle"}
    for k, v in {**rec_terms, **pose_terms}.items():
        assert v.dim() == 0 and torch.isfinite(v), k
    loss_rec, loss_pose = model.objectives(rec_terms, pose_terms)
    # Eq. 6/11 by hand with the official weights
    w = model.loss_weights
    assert torch.allclose(loss_rec, sum(w[k] * v for k, v in rec_terms.items()))
    assert torch.allclose(
        loss_pose, pose_terms["pose_image"] + pose_terms["pose_mask"] + pose_terms["pose_cycle"]
    )
    # the input view is rendered once per network: the same values, different gradients
    assert torch.allclose(rec_terms["image"], pose_terms["pose_image"])
    g_rec = _grad_norms(model, loss_rec)
    g_pose = _grad_norms(model, loss_pose)
    assert g_rec["rec"] > 0 and g_rec["pose"] == 0.0, g_rec
    assert g_pose["pose"] > 0 and g_pose["rec"] == 0.0, g_pose


def test_switches_change_the_terms():
    batch = _batch()
    rec, pose = _model(cycle=False).loss_terms(batch)
    assert "geometric" not in rec and "pose_cycle" not in pose and "nn" not in rec
    assert set(pose) == {"pose_image", "pose_mask"}
    rec, pose = _model(pose_supervised=True).loss_terms(batch)
    assert pose == {} and "geometric" in rec
    model = _model(pose_supervised=True)
    loss_rec, loss_pose = model.objectives(*model.loss_terms(batch))
    assert loss_pose is None
    assert _grad_norms(model, loss_rec)["pose"] == 0.0, "the pose network is unused when supervised"
    rec, _ = _model(nn=True, weights={"nn_affinity": 0.0}).loss_terms(batch)
    assert "nn" in rec and float(rec["nn_affinity"].detach()) == 0.0
    with pytest.raises(ValueError, match=r"model.weights: unknown terms \['geometrc'\]"):
        _model(weights={"geometrc": 1.0})
    with pytest.raises(ValueError, match="model.mask_bce"):
        _model(mask_bce="bce")


def test_pose_supervised_projection_matches_the_data_camera():
    """With the true pose, the module's camera is the data's: a ground-truth cloud projects onto the mask."""
    batch = _batch()
    model = _model(pose_supervised=True)
    pts, pose = batch["points"], batch["pose"]
    ndc = model.project(pts, pose[:, 0], pose[:, 1])
    ref = project_to_ndc(world2cam(pts, pose[:, 0], pose[:, 1], 2.0), lineage_intrinsics(S), S)
    assert torch.allclose(ndc, ref)
    mask = batch["mask"] > 0.5

    def overlap(p):
        sil = model.render(pts, p[:, None]).masks[:, 0]
        hit = sil > 0.5
        precision = (hit & mask).flatten(1).sum(1) / hit.flatten(1).sum(1)
        return precision, silhouette_iou(sil, batch["mask"])

    precision, iou = overlap(pose)
    assert bool((precision > 0.85).all()), precision  # 64 points: a sparse silhouette inside the mask
    _, iou_off = overlap(pose + torch.tensor([math.pi / 2, 0.0]))
    assert float(iou.mean()) > float(iou_off.mean()) + 0.1, (iou, iou_off)


def test_silhouette_iou_by_hand():
    m = torch.zeros(2, 1, 4, 4)
    m[0, 0, :2] = 1
    p = torch.zeros(2, 1, 4, 4)
    p[0, 0, 1:3] = 0.9
    p[0, 0, 3] = 0.4  # below the threshold
    assert torch.allclose(silhouette_iou(p, m), torch.tensor([4 / 12, 1.0]))


def test_iso_fits_its_own_silhouette_better():
    """ISO from a cloud shifted off the object: the optimized silhouette overlaps the mask more."""
    batch = _batch()
    model = _model(pose_supervised=True, affinity="none", iso_steps=20, iso_lr=2e-2, iso_reg_weight=0.0)
    pose = batch["pose"]
    pts0 = batch["points"] * 0.8 + torch.tensor([0.0, 0.08, 0.0])
    cols = torch.full_like(pts0, 0.5)
    sil0 = model.render(pts0, pose[:, None]).masks[:, 0]
    out = model._iso(batch, pts0, cols, pose, sil0)
    before = model.iso_metrics["mask_iou_before"].compute()
    after = model.iso_metrics["mask_iou_after"].compute()
    assert float(after.mean()) > float(before.mean()) + 0.02, (before, after)
    assert torch.isfinite(out["points"]).all() and not torch.equal(out["points"], pts0)


def test_evaluation_aligns_a_rotated_frame_and_its_poses():
    """Predictions in a frame turned by delta about the azimuth axis (x), with the poses of that frame
    (azimuth - delta): the fitted rotation undoes the turn, so Chamfer ~ 0 and the pose errors ~ 0; a wrong
    alignment convention (R^T, or no pose alignment) would leave errors of ~2 delta or delta."""
    batch = _batch(n=4, category="airplane")
    model = _model(eval_points=P, align_coarse=128, align_iters=40)
    delta = 1.0
    c, s = math.cos(delta), math.sin(delta)
    R_az = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])  # X_pred = R_az X_gt (columns)
    gt, pose = batch["points"], batch["pose"]
    store = model.eval_store["val"]
    store["pred"].update((gt @ R_az.T).reshape(4, -1))
    store["gt"].update(gt.reshape(4, -1))
    store["pose_pred"].update(pose - torch.tensor([delta, 0.0]))
    store["pose_gt"].update(pose)
    store["mask_iou"].update(torch.ones(4))
    out = model.split_metrics("val")
    assert torch.allclose(model.alignment, R_az, atol=2e-2), model.alignment
    assert float(out["val/chamfer"]) < 0.05 * float(model._rec_metrics(gt @ R_az.T @ R_az.T, gt)[0].mean()), (
        out
    )  # (after alignment) vs (turned by 2 delta)
    assert float(out["val/pose_median"]) < 2.0 and float(out["val/pose_acc"]) == 100.0, out
    assert model.split_metrics("val") == {}, "the store is reset"


# ------------------------------------------------------------------------------------------- entry point
def tiny_ssl(run_dir, *extra, model=True):
    entry = (
        "{{reader: synthetic_shapes, split: {split}, num_samples: {n}, category: car, image_size: 32, "
        "num_points: 64, seed: 1}}"
    )
    return [
        f"run_dir={run_dir}",
        "logger=csv",
        "data.batch_size=4",
        "data.image_size=32",
        f"data.train=[{entry.format(split='train', n=8)}]",
        f"data.val=[{entry.format(split='val', n=4)}]",
        f"data.test=[{entry.format(split='test', n=4)}]",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        *(["model.n_points=64", "model.n_views=2", "model.nn=true"] if model else []),
        "model.eval_points=64",
        "model.align_coarse=64",
        "model.align_iters=10",
        "model.log_images=2",
        *extra,
    ]


def test_train_then_eval_reproduces_the_metrics_and_iso_reports_before_and_after(tmp_path):
    result = train(compose("ssl_synthetic_car_cc", tiny_ssl(tmp_path / "run", "trainer.log_every_n_steps=1")))
    assert result["status"] == "finished" and result["global_step"] == 4, "2 batches x 2 optimizers"
    header = next((tmp_path / "run").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    for key in ("loss_rec", "loss_pose", "image", "mask", "affinity", "geometric", "pose_cycle", "nn"):
        assert f"train/{key}" in header, header  # manual optimization: the divergence guard reads these
    keys = ("chamfer", "emd", "pose_median", "pose_acc", "pose_median_flip", "pose_acc_flip", "mask_iou")
    for key in keys:
        assert f"val/{key}" in result["val"], sorted(result["val"])
        assert math.isfinite(result["val"][f"val/{key}"]), key
    media = tmp_path / "run" / "media"
    assert len(list(media.glob("val_*.png"))) == 2 and len(list(media.glob("val_*_cloud_*.ply"))) == 2
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    R = state["alignment"]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-5) and abs(float(torch.det(R)) - 1) < 1e-5
    ev = evaluate(
        compose("ssl_synthetic_car_cc", tiny_ssl(tmp_path / "eval", f"ckpt_path={ckpt}", model=False))
    )
    for key, value in result["val"].items():
        assert ev["val"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    iso = evaluate(
        compose(
            "ssl_synthetic_car_cc",
            tiny_ssl(tmp_path / "iso", f"ckpt_path={ckpt}", "model.iso_steps=2", model=False),
        )
    )
    for key in ("chamfer", "emd", "mask_iou"):
        for when in ("before", "after"):
            assert f"test/iso/{key}_{when}" in iso["test"], sorted(iso["test"])
    assert iso["test"]["test/iso/chamfer_before"] == pytest.approx(iso["test"]["test/chamfer"], rel=1e-5)
    assert iso["test"]["test/chamfer"] == pytest.approx(ev["test"]["test/chamfer"], rel=1e-5)
    assert iso["test"]["test/iso/chamfer_after"] != iso["test"]["test/iso/chamfer_before"], (
        "ISO moved nothing"
    )
    assert "test/iso/chamfer_before" not in ev["test"], "ISO is off by default"
    with pytest.raises(ConfigError, match="model.n_points"):
        evaluate(
            compose(
                "ssl_synthetic_car_cc",
                tiny_ssl(tmp_path / "e3", f"ckpt_path={ckpt}", "model.n_points=8", model=False),
            )
        )
