"""The TTP family: template loading, metrics, the module's losses and stages, and the real entry point."""

from __future__ import annotations

import json

import pytest
import torch

import lightning_modules.ttp.module as ttp_module
import losses.ttp as L
from datamodules.category.datamodule import CategoryDataModule
from datamodules.category.synthetic import SyntheticCategory, save_template
from experiments.config import ConfigError, compose
from experiments.runner import evaluate, train
from geometry import WeakPerspectiveCameras, save_obj, so3_relative_angle, weak_perspective_scale
from lightning_modules.ttp.metrics import PCK, mask_iou
from lightning_modules.ttp.module import TTPModule, mirror_vertices
from lightning_modules.ttp.template import load_template


# ----------------------------------------------------------------------------------------------- template
def test_synthetic_template_is_the_datas_and_an_obj_template_round_trips(tmp_path):
    data = SyntheticCategory(split="val", num_samples=1, level=2)
    tpl = load_template("synthetic_bird", synthetic_level=2)
    assert torch.equal(tpl.faces, data.template_faces.long())
    assert torch.allclose(tpl.verts, data.template_verts.float())
    assert torch.equal(tpl.keypoint_vertices, torch.as_tensor(data.keypoint_vertices).long())
    path = save_template(tmp_path / "bird.obj", level=2)
    obj = load_template(str(path))
    assert torch.allclose(obj.verts, tpl.verts, atol=1e-6) and torch.equal(
        obj.keypoint_vertices, tpl.keypoint_vertices
    )
    sub = load_template(str(path), subdivide=1)
    assert torch.equal(sub.verts[: len(tpl.verts)], obj.verts), (
        "subdivision keeps the original vertices first"
    )
    assert torch.equal(sub.keypoint_vertices, obj.keypoint_vertices)


def test_template_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.obj"):
        load_template(str(tmp_path / "nothere.obj"))
    with pytest.raises(ValueError, match="expected 'synthetic_bird' or the path of an .obj"):
        load_template(str(tmp_path / "mesh.ply"))
    bad = tmp_path / "broken.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nf 1 2 x\n")
    with pytest.raises(ValueError, match="broken.obj"):
        load_template(str(bad))
    tri = tmp_path / "tet.obj"
    save_obj(tri, torch.eye(4, 3), torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]))
    (tmp_path / "tet.json").write_text(json.dumps({"keypoint_vertices": [0, 4]}))
    with pytest.raises(ValueError, match=r"tet.json: keypoint_vertices \[4\] are outside the template's 4"):
        load_template(str(tri))
    (tmp_path / "tet.json").write_text(json.dumps({"points": [0]}))
    with pytest.raises(ValueError, match="tet.json: expected a JSON object with 'keypoint_vertices'"):
        load_template(str(tri))


# ------------------------------------------------------------------------------------------------ metrics
def test_pck_is_per_keypoint_over_visible_instances_then_mean_as_cmr():
    g = torch.Generator().manual_seed(0)
    B, K = 7, 5
    kp = torch.cat(
        [torch.rand(B, K, 2, generator=g) * 2 - 1, (torch.rand(B, K, 1, generator=g) > 0.3).float()], -1
    )
    kp[:, 4, 2] = 0  # a keypoint never visible does not count
    pred = kp[..., :2] + torch.randn(B, K, 2, generator=g) * 0.1
    bbox = torch.tensor([[-0.5, -0.4, 0.5, 0.2]]).expand(B, 4)  # larger side 1.0
    m = PCK(K)
    m.update(pred[:3], kp[:3], bbox[:3])
    m.update(pred[3:], kp[3:], bbox[3:])
    got = m.compute()
    for alpha in (0.1, 0.15):
        fracs = []
        for k in range(K):
            vis = [b for b in range(B) if kp[b, k, 2] > 0]
            if vis:
                fracs.append(sum(float((pred[b, k] - kp[b, k, :2]).norm()) < alpha for b in vis) / len(vis))
        assert abs(float(got[alpha]) - 100 * sum(fracs) / len(fracs)) < 1e-9, alpha
    nan_pred = pred.clone()
    nan_pred[0] = float("nan")
    m2 = PCK(K)
    m2.update(nan_pred[:1], kp[:1], bbox[:1])
    assert float(m2.compute()[0.15]) == 0.0, "a NaN prediction is a wrong keypoint"


def test_mask_iou_by_hand():
    m = torch.zeros(2, 1, 4, 4)
    m[0, 0, :2] = 1  # 8 pixels
    p = torch.zeros(2, 1, 4, 4)
    p[0, 0, 1:3] = 1  # overlaps 4, union 12
    p[1, 0, 0, 0] = 0.5  # soft: inter 0, union 0.5
    assert torch.allclose(mask_iou(p, m), torch.tensor([4 / 12, 0.0]))
    assert torch.equal(mask_iou(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)), torch.ones(1))


# ------------------------------------------------------------------------------------------------- module
def _batch(n=4, seed=0):
    e = {"reader": "synthetic_category", "split": "train", "num_samples": n, "seed": seed, "level": 2}
    dm = CategoryDataModule(train=[e], val=[{**e, "split": "val"}], batch_size=n, image_size=64)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def test_loss_terms_finite_and_the_stages_switch_the_deformation():
    torch.manual_seed(0)
    batch = _batch()
    model = TTPModule(synthetic_level=2, num_basis=4, weights={"keypoint": 30.0})
    rigid_terms = model.loss_terms(batch, model.reconstruct(batch["image"], deform=False), deform=False)
    assert not {"arap_deformed", "arap_basis", "deformation_l2", "laplacian_deformed"} & set(rigid_terms)
    terms = model.loss_terms(batch, model.reconstruct(batch["image"]), deform=True)
    assert {
        "arap_deformed",
        "arap_basis",
        "deformation_l2",
        "laplacian_deformed",
        "laplacian_basis",
        "keypoint",
        "mask",
        "texture",
    } <= set(terms), "every default-weighted term is computed (none is silently ignored)"
    loss = sum(model.loss_weights[k] * v for k, v in terms.items())
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert model.basis.grad is not None and model.basis.grad.abs().sum() > 0, (
        "the basis learns through the layer"
    )
    assert model.log_ridge.grad is not None and model.log_ridge.grad != 0, "the ridge weight learns too"
    assert TTPModule(synthetic_level=2, num_basis=2, rigid=True).eval().deforming() is False
    model.eval()
    assert model.deforming(), "evaluation deforms (after the warm-up)"
    with pytest.raises(ValueError, match=r"model.weights: unknown terms \['maks'\]"):
        TTPModule(synthetic_level=2, weights={"maks": 1.0})


# ------------------------------------------------------------------------------------------- entry point
def tiny_ttp(run_dir, *extra, model=True):
    entry = (
        "{{reader: synthetic_category, split: {split}, num_samples: {n}, image_size: 64, level: 2, seed: 1}}"
    )
    return [
        f"run_dir={run_dir}",
        "logger=csv",
        "data.batch_size=4",
        f"data.train=[{entry.format(split='train', n=8)}]",
        f"data.val=[{entry.format(split='val', n=4)}]",
        f"data.test=[{entry.format(split='test', n=4)}]",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        *(["model.rigid_epochs=0", "model.num_basis=4"] if model else []),  # eval: from the checkpoint
        "model.log_images=2",
        *extra,
    ]


def test_train_then_eval_reproduces_the_metrics_and_takes_the_solver_iterations(tmp_path, monkeypatch):
    result = train(compose("ttp_synthetic", tiny_ttp(tmp_path / "run")))
    for key in ("val/mask_iou", "val/mask_iou_soft", "val/pck_0.1", "val/chamfer", "val/rotation_error"):
        assert key in result["val"], sorted(result["val"])
    assert list((tmp_path / "run" / "media").rglob("*.png")), "the visualizer writes its figures"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ev = evaluate(
        compose(
            "ttp_synthetic",
            tiny_ttp(tmp_path / "eval", f"ckpt_path={ckpt}", "test_after_fit=false", model=False),
        )
    )
    for key, value in result["val"].items():
        assert ev["val"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    seen = []
    real_fit = ttp_module.fit_camera_and_deformation

    def recording_fit(*args, **kwargs):
        seen.append(kwargs["iterations"])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(ttp_module, "fit_camera_and_deformation", recording_fit)
    evaluate(
        compose(
            "ttp_synthetic",
            tiny_ttp(
                tmp_path / "eval1",
                f"ckpt_path={ckpt}",
                "model.iterations=1",
                "test_after_fit=false",
                model=False,
            ),
        )
    )
    assert seen and set(seen) == {1}, f"eval must fit with model.iterations=1, got {sorted(set(seen))}"
    with pytest.raises(ConfigError, match="model.num_basis: eval takes the model from the checkpoint"):
        evaluate(
            compose(
                "ttp_synthetic",
                tiny_ttp(tmp_path / "e3", f"ckpt_path={ckpt}", "model.num_basis=8", model=False),
            )
        )


def test_more_solver_iterations_lower_the_reprojection_objective():
    """Table 2's setting: each alternation of rigid step and ridge solve can only lower Eq. 4. The network is
    replaced by the true projections of the (deformed) synthetic birds, so the fit has a real problem."""
    torch.manual_seed(0)
    batch = _batch()
    cams = WeakPerspectiveCameras(batch["true_scale"], batch["true_rotation"], batch["true_translation"])
    u = cams.project(batch["true_verts"])  # (B, N, 2)
    model = TTPModule(synthetic_level=2, num_basis=6, ridge_init=1e-4).eval()
    model.net.forward = lambda image: (u, torch.ones(u.shape[:2]))
    with torch.no_grad():
        model.basis.copy_(
            SyntheticCategory(split="train", num_samples=1, level=2).true_basis
        )  # the data's own
        one = model.reconstruct(batch["image"], iterations=1).fit
        four = model.reconstruct(batch["image"], iterations=4).fit
    assert (four.loss <= one.loss * (1 + 1e-5)).all(), (one.loss, four.loss)
    assert (four.loss < one.loss * 0.99).any(), (
        "the alternations must matter on a deformed category",
        one.loss,
        four.loss,
    )


def test_fit_scale_is_relative_to_the_template_spread():
    """On true correspondences the module's fit recovers the true weak-perspective scale and the pose; the
    bare std(u) of the official code gives a third of the scale for this template (its spread is not 1)."""
    batch = _batch(n=8)
    cams = WeakPerspectiveCameras(batch["true_scale"], batch["true_rotation"], batch["true_translation"])
    u = cams.project(batch["true_verts"])
    model = TTPModule(synthetic_level=2, num_basis=6, ridge_init=1e-4).eval()
    with torch.no_grad():
        model.basis.copy_(SyntheticCategory(split="train", num_samples=1, level=2).true_basis)
        fit = model.fit(u, torch.ones(u.shape[:2]), model.basis, 8)
    ratio = fit.scale / batch["true_scale"][:, 0]
    assert abs(float(ratio.mean()) - 1.0) < 0.2, ratio
    angle = torch.rad2deg(so3_relative_angle(fit.rotation, batch["true_rotation"]))
    assert float(angle.median()) < 2.0, angle
    bare = weak_perspective_scale(u) / batch["true_scale"][:, 0]
    assert float(bare.mean()) < 0.5, "the template's spread matters: without it the scale is off by ~3x"


def test_every_nonzero_weight_gives_its_term_and_the_point_flip_uses_the_mirror_permutation():
    torch.manual_seed(0)
    data = SyntheticCategory(split="val", num_samples=1, level=2)
    assert torch.equal(mirror_vertices(data.template_verts), data.vertex_flip), "exact on the symmetric bird"
    batch = _batch()
    weights = {k: 1.0 for k in L.TTP_WEIGHTS}
    model = TTPModule(synthetic_level=2, num_basis=2, weights=weights)
    terms = model.loss_terms(batch, model.reconstruct(batch["image"]), deform=True)
    assert set(terms) == set(L.TTP_WEIGHTS), "a weight a user sets is never silently ignored"
    # the point flip term is zero exactly when the flipped image's points are the mirrored, permuted points
    u = torch.rand(2, len(data.vertex_flip), 2) * 2 - 1
    assert L.flip_equivariance_loss(L.flip_points(u, model.vertex_flip), u, model.vertex_flip) < 1e-12
    assert L.flip_equivariance_loss(u, u, model.vertex_flip) > 1e-3
