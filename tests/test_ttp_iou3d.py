"""3D IoU on PASCAL3D+ by the UCMR protocol (lightning_modules/ttp/iou3d.py): the .off reader, the filled
32^3 voxelization against analytic boxes and scipy's hole filling, the dataset-level alignment, the module's
val/iou_3d, and the real-data TTP experiment configs (compose, and a tiny PASCAL3D+ run end to end)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from category_format_writers import (
    p3d_object,
    save_mask_png,
    write_p3d_annotation,
    write_p3d_cad,
    write_p3d_image,
    write_voc_sets,
)

from datamodules.category.readers import PASCAL3D_ANCHORS
from experiments.config import compose
from experiments.runner import build_datamodule, build_model, evaluate, train
from geometry import ico_sphere, save_obj, voxel_iou, voxelize_mesh
from lightning_modules.ttp.iou3d import (
    CADModels,
    PascalIoU3D,
    cad_folder,
    fill_holes,
    load_off,
    surface_voxels,
    ucmr_alignment,
    ucmr_voxelize,
)
from lightning_modules.ttp.module import TTPModule

R = 32
# corners c_i = (i & 1, i >> 1 & 1, i >> 2 & 1) of a box, and its six faces as quads (as the .off files store)
BOX_QUADS = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]]


def box_verts(lo, hi) -> np.ndarray:
    c = np.array([[i & 1, i >> 1 & 1, i >> 2 & 1] for i in range(8)], dtype=np.float64)
    return np.asarray(lo, dtype=np.float64) + c * (np.asarray(hi, dtype=np.float64) - np.asarray(lo))


def box_mesh(lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    faces = [[q[0], q[k], q[k + 1]] for q in BOX_QUADS for k in (1, 2)]
    return torch.tensor(box_verts(lo, hi)), torch.tensor(faces)


def from_voxel_units(x) -> np.ndarray:
    """polygon2voxel_double.c's voxel coordinate X = R (v + 0.5) - 0.5 back to v, in the cube [-0.5, 0.5]."""
    return (np.asarray(x, dtype=np.float64) + 0.5) / R - 0.5


def box_grid(index_lo, index_hi) -> torch.Tensor:
    """Reference occupancy (1, R, R, R) of the voxels with x, y, z indices in [index_lo, index_hi]."""
    g = torch.zeros(1, R, R, R, dtype=torch.bool)
    (x0, y0, z0), (x1, y1, z1) = index_lo, index_hi
    g[0, z0 : z1 + 1, y0 : y1 + 1, x0 : x1 + 1] = True
    return g


def ellipsoid(radii, level=2) -> tuple[torch.Tensor, torch.Tensor]:
    s = ico_sphere(level, dtype=torch.float64)
    return s.verts * torch.tensor(radii, dtype=torch.float64), s.faces


# ---------------------------------------------------------------------------------------------------- .off
def test_load_off_reads_polygons_as_fans_and_both_header_forms(tmp_path):
    v = box_verts([-0.2, -0.1, -0.3], [0.2, 0.1, 0.3])
    path = write_p3d_cad(tmp_path, "car", 1, v, BOX_QUADS)
    verts, faces = load_off(path)
    assert verts.dtype == torch.float32 and faces.dtype == torch.int64
    assert torch.allclose(verts, torch.tensor(v, dtype=torch.float32), atol=1e-7)
    expected = [[q[0], q[1], q[2]] for q in BOX_QUADS]
    assert faces.shape == (12, 3) and faces[0::2].tolist() == expected, faces  # fan (0, k, k + 1)
    assert faces[1::2].tolist() == [[q[0], q[2], q[3]] for q in BOX_QUADS]
    # counts on the header line, comments and blank lines, a colour after a face
    one = tmp_path / "one.off"
    one.write_text("OFF 3 1 0\n# a comment\n0 0 0\n\n1 0 0\n0 1 0 # trailing\n3 0 1 2 255 0 0\n")
    verts, faces = load_off(one)
    assert verts.shape == (3, 3) and faces.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("PLY\n3 1 0\n", "not an OFF file"),
        ("", "not an OFF file"),
        ("OFF\n", "missing the 'V F E' counts"),
        ("OFF\nthree 1 0\n", "expected the counts"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "announces 3 vertices and 1 faces"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", ":4: expected a vertex 'x y z'"),
        ("OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2\n", ":4: expected a vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "face indices [3] are outside the 3 vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "a face needs n >= 3"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "a face needs n >= 3 and n indices"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 a 2\n", ":6: expected a face"),
    ],
)
def test_load_off_malformed_files_raise_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "07.off"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_off(path)
    msg = str(err.value)
    assert str(path) in msg and message in msg and "\n" not in msg, msg


def test_cad_models_by_one_based_index_and_missing_file_named(tmp_path):
    write_p3d_cad(tmp_path / "PASCAL3D+_release1.1", "car", 2, box_verts([-0.1] * 3, [0.1] * 3), BOX_QUADS)
    folder = cad_folder(tmp_path, "car")  # <root>/PASCAL3D+_release1.1/CAD/car
    assert folder == tmp_path / "PASCAL3D+_release1.1" / "CAD" / "car"
    assert cad_folder(tmp_path / "PASCAL3D+_release1.1", "car") == folder  # root = the release folder
    cad = CADModels(folder)
    assert cad.available() == [2] and cad[2][0].shape == (8, 3)
    with pytest.raises(FileNotFoundError, match=r"CAD/car/03\.off: CAD model 3 is missing"):
        cad[3]
    with pytest.raises(ValueError, match="1-based"):
        cad[0]


# -------------------------------------------------------------------------------------------- voxelization
def test_box_voxelization_marks_the_voxels_under_its_surface_and_fills_them():
    # box in voxel units [3.3, 17.8] x [5.6, 20.2] x [0.4, 30.7]: the surface lands in voxels round(X)
    # (polygon2voxel_double.c: (int)(X + 0.5)), the fill takes everything in between
    lo, hi = from_voxel_units([3.3, 5.6, 0.4]), from_voxel_units([17.8, 20.2, 30.7])
    v, f = box_mesh(lo, hi)
    occ = ucmr_voxelize(v, f)
    ref = box_grid((3, 6, 0), (18, 20, 31))
    assert torch.equal(occ, ref), (int(occ.sum()), int(ref.sum()), int((occ ^ ref).sum()))
    shell = surface_voxels(v, f)
    assert int(shell.sum()) < int(occ.sum()) and torch.equal(fill_holes(shell), occ)
    # vertices outside [0, R - 1] in voxel units are skipped by the C code (not clamped): the face at
    # X = -0.6 marks nothing, the side faces mark x index 0 only where X >= 0, and the box, open at the grid
    # border, is not filled (imfill fills only what the border cannot reach)
    v2, f2 = box_mesh(from_voxel_units([-0.6, 2.2, 2.2]), from_voxel_units([9.8, 9.8, 9.8]))
    shell2 = surface_voxels(v2, f2)
    assert not shell2[0, 3:10, 3:10, 0].any() and shell2[0, 2, 2:11, 0].all()
    assert torch.equal(ucmr_voxelize(v2, f2), shell2)


def test_iou_of_two_boxes_is_the_analytic_overlap():
    a = ucmr_voxelize(*box_mesh(from_voxel_units([2.2, 2.2, 2.2]), from_voxel_units([13.8, 13.8, 13.8])))
    b = ucmr_voxelize(*box_mesh(from_voxel_units([8.2, 2.2, 2.2]), from_voxel_units([21.8, 13.8, 7.8])))
    # a: indices 2..14 on every axis (13^3); b: x 8..22 (15), y 2..14 (13), z 2..8 (7)
    inter = 7 * 13 * 7  # x 8..14, y 2..14, z 2..8
    union = 13**3 + 15 * 13 * 7 - inter
    assert float(voxel_iou(a, b)) == pytest.approx(inter / union, rel=1e-6)


def test_fill_holes_fills_closed_shells_only_with_6_connectivity():
    vols = torch.zeros(4, 9, 9, 9, dtype=torch.bool)
    vols[:, 1:8, 1:8, 1:8] = True
    vols[:, 2:7, 2:7, 2:7] = False  # a closed cubic shell around a 5^3 pocket
    vols[1, 4, 4, 1] = False  # a hole through one face: the pocket reaches the border
    vols[2, 1, 1, 1] = False  # a missing corner: the pocket touches it only diagonally (not 6-connected)
    vols[3, 4, 4, 4] = True  # a voxel inside the pocket
    filled = fill_holes(vols)
    solid = torch.zeros(9, 9, 9, dtype=torch.bool)
    solid[1:8, 1:8, 1:8] = True
    assert torch.equal(filled[0], solid), "the pocket is filled"
    assert torch.equal(filled[1], vols[1]), "an open shell stays as it is"
    corner = solid.clone()
    corner[1, 1, 1] = False
    assert torch.equal(filled[2], corner), "the corner stays open (border side), the pocket is filled"
    assert torch.equal(filled[3], solid)
    assert int(fill_holes(torch.zeros(1, 4, 4, 4, dtype=torch.bool)).sum()) == 0
    v, f = ellipsoid((0.3, 0.2, 0.25))
    shell = surface_voxels(v, f, resolution=12)
    assert int(fill_holes(shell).sum()) > int(shell.sum()), "the ellipsoid's shell encloses voxels"


def test_filled_voxels_contain_the_inside_centres_and_add_only_surface_voxels():
    v, f = ellipsoid((0.31, 0.22, 0.17))
    occ = ucmr_voxelize(v.float(), f)
    inside = voxelize_mesh(v.float(), f, R, bounds=(-0.5, 0.5))  # voxel centres inside (parity)
    shell = surface_voxels(v, f)
    assert not (inside & ~occ).any(), "every voxel whose centre is inside is filled"
    assert not (occ & ~inside & ~shell).any(), "the rest is the surface's own voxels"
    batched = ucmr_voxelize(torch.stack([v, v * 0.5]), f)
    assert torch.equal(batched[:1], occ) and torch.equal(batched[1:], ucmr_voxelize(v * 0.5, f))


# ------------------------------------------------------------------------------------ alignment and metric
def write_ellipsoid_cads(root, radii_by_index):
    for index, radii in radii_by_index.items():
        v, f = ellipsoid(radii)
        write_p3d_cad(root, "car", index, v.numpy(), f.tolist())
    return root / "CAD" / "car"


def test_dataset_level_alignment_removes_one_global_scale_and_translation(tmp_path):
    radii = {1: (0.31, 0.22, 0.17), 2: (0.18, 0.33, 0.26)}
    folder = write_ellipsoid_cads(tmp_path, radii)
    _, faces = ellipsoid(radii[1])
    cad = [ellipsoid(radii[i])[0] for i in (1, 2, 1)]
    a, b = 2.7, torch.tensor([0.4, -1.3, 0.9], dtype=torch.float64)  # one global similarity for the set
    pred = torch.stack(cad) * a + b
    metric = PascalIoU3D(folder, faces)
    metric.update(pred[:2].float(), torch.tensor([1, 2]))
    metric.update(pred[2:].float(), torch.tensor([1]))
    ious, trans, scale = metric.per_object()
    assert torch.allclose(trans, -b, atol=1e-5) and float(scale) == pytest.approx(1 / a, rel=1e-5)
    # 1 up to the float32 rounding of the stored predictions, which can move a surface sample that lies on a
    # voxel border (~ 500 voxels each: a wrong alignment loses far more than one)
    assert (ious > 0.99).all(), ious
    assert float(metric.compute()) == pytest.approx(float(ious.mean()))
    # the raw predictions, without the alignment, are nowhere near their CAD models: the test means something
    raw = voxel_iou(ucmr_voxelize(pred[:1] / 4, faces), ucmr_voxelize(cad[0], faces))
    assert float(raw) < 0.3, float(raw)


def test_alignment_is_the_mean_of_ucmrs_per_object_estimates(tmp_path):
    radii = {1: (0.31, 0.22, 0.17), 2: (0.18, 0.33, 0.26)}
    folder = write_ellipsoid_cads(tmp_path, radii)
    cad1, faces = ellipsoid(radii[1])
    cad2, _ = ellipsoid(radii[2])
    pred = torch.stack(
        [cad1 * 2.0 + torch.tensor([0.1, 0.0, 0.0]), cad2 * 0.8 - torch.tensor([0.0, 0.2, 0.0])]
    )
    trans, scale, per_t, per_s = ucmr_alignment(pred, [cad1, cad2])
    # slow reference: eval_mean_iou.m estimateTransform, object by object
    ref_t, ref_s = [], []
    for p, g in zip(pred, (cad1, cad2)):
        ref_t.append((g.min(0).values + g.max(0).values) / 2 - (p.min(0).values + p.max(0).values) / 2)
        ref_s.append(
            float(
                torch.prod(g.max(0).values - g.min(0).values) / torch.prod(p.max(0).values - p.min(0).values)
            )
            ** (1 / 3)
        )
    assert torch.allclose(per_t, torch.stack(ref_t), atol=1e-12) and np.allclose(
        per_s.numpy(), ref_s, rtol=1e-12
    )
    assert torch.allclose(trans, torch.stack(ref_t).mean(0), atol=1e-12) and float(scale) == pytest.approx(
        np.mean(ref_s)
    )
    metric = PascalIoU3D(folder, faces)
    metric.update(pred.float(), torch.tensor([1, 2]))
    aligned = (pred + trans) * scale  # translation first, then scale: eval_mean_iou.m line 70
    gt = torch.cat([ucmr_voxelize(cad1, faces), ucmr_voxelize(cad2, faces)])
    expected = voxel_iou(ucmr_voxelize(aligned, faces), gt)
    assert float(metric.compute()) == pytest.approx(float(expected.double().mean()), abs=1e-6)
    assert 0.0 < float(metric.compute()) < 0.5, "per-object scales 1/2 and 5/4: one transform cannot fit both"


def test_metric_update_names_a_missing_cad_file_and_empty_is_nan(tmp_path):
    folder = write_ellipsoid_cads(tmp_path, {1: (0.3, 0.2, 0.1)})
    _, faces = ellipsoid((0.3, 0.2, 0.1))
    metric = PascalIoU3D(folder, faces)
    with pytest.warns(UserWarning, match="called before the ``update``"):  # torchmetrics' own warning
        assert torch.isnan(metric.compute())
    with pytest.raises(FileNotFoundError, match=r"car/05\.off"):
        metric.update(torch.zeros(1, 162, 3), torch.tensor([5]))


# ------------------------------------------------------------------------------------ experiment configs
REAL_TTP = {
    "ttp_cub_kp": (30.0, None),
    "ttp_cub_nokp": (0.0, None),
    **{
        f"ttp_p3d_{c}_{t}": (w, c)
        for c in ("aeroplane", "car", "motorbike")
        for t, w in (("kp", 30.0), ("nokp", 0.0))
    },
}


@pytest.mark.parametrize("name", sorted(REAL_TTP))
def test_real_data_ttp_configs_compose_with_the_official_settings(name):
    kp_weight, category = REAL_TTP[name]
    cfg = compose(name, ["data.root_dir=/datasets"])
    assert cfg.model.name == "ttp" and cfg.data.name == "category"
    assert cfg.data.image_size == 256 and cfg.data.batch_size == 8 and cfg.data.pad_frac == 0.05
    assert cfg.model.weights.keypoint == kp_weight and cfg.model.rigid_epochs == 100
    assert cfg.model.iterations == 4 and cfg.model.num_basis == 16 and cfg.trainer.max_epochs == 200
    assert cfg.model.template.startswith("/datasets/templates/") and cfg.model.template.endswith(".obj")
    entries = [*cfg.data.train, *cfg.data.val, *cfg.data.test]
    if category is None:
        assert {e.reader for e in entries} == {"cub"} and cfg.model.cad_root is None
        assert [e.split for e in entries] == ["train", "val", "test"]
    else:
        assert {e.reader for e in entries} == {"pascal3d"} and {e.category for e in entries} == {category}
        assert [e.split for e in entries] == ["train", "val", "val"]
        assert cfg.model.cad_root == f"/datasets/PASCAL3D+_release1.1/CAD/{category}"
        assert {e.mask_root for e in entries} == {"/datasets/pascal3d_masks"}


def write_tiny_p3d(root, rng):
    """data root: PASCAL3D+_release1.1 (2 VOC train images, 1 ImageNet, 1 VOC val with 2 cars), masks, CAD
    models 01-02 (boxes), a 42-vertex car template with 12 keypoint vertices, under `root`."""
    release = root / "PASCAL3D+_release1.1"
    names = PASCAL3D_ANCHORS["car"]
    specs = {
        "2008_000001": ("pascal", [1]),
        "2008_000003": ("pascal", [2]),
        "n02814533_1": ("imagenet", [1]),
        "2008_000002": ("pascal", [1, 2]),
    }
    h, w = 40, 48
    for image_id, (subset, cads) in specs.items():
        objects = []
        for j, cad in enumerate(cads):
            x0 = 4 + 10 * j
            anchors = {n: np.array([x0 + 2.0 * k, 8.0 + k]) for k, n in enumerate(names)}
            objects.append(p3d_object("car", anchors, (x0, 6, x0 + 26, 30), cad_index=cad))
        write_p3d_annotation(release, "car", subset, image_id, objects, (h, w))
        write_p3d_image(release, "car", subset, image_id, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for j, _ in enumerate(cads, 1):
            m = np.zeros((h, w), bool)
            m[10:28, 6 + 10 * (j - 1) : 28 + 10 * (j - 1)] = True
            save_mask_png(root / "pascal3d_masks" / f"car_{subset}" / f"{image_id}_{j}.png", m)
    write_voc_sets(release, ["2008_000001", "2008_000003"], ["2008_000002"])
    write_p3d_cad(release, "car", 1, box_verts([-0.3, -0.12, -0.15], [0.3, 0.12, 0.15]), BOX_QUADS)
    write_p3d_cad(release, "car", 2, box_verts([-0.25, -0.1, -0.2], [0.25, 0.1, 0.2]), BOX_QUADS)
    tpl = ico_sphere(1)
    (root / "templates").mkdir()
    save_obj(root / "templates" / "car.obj", tpl.verts * torch.tensor([0.3, 0.12, 0.15]), tpl.faces)
    (root / "templates" / "car.json").write_text(
        '{"keypoint_vertices": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}'
    )


def tiny_p3d(root, run_dir, *extra, model=True):
    return [
        f"data.root_dir={root}",
        f"run_dir={run_dir}",
        "logger=csv",
        "data.image_size=64",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        *(  # eval: the model from the checkpoint
            [
                "model.pretrained_path=null",
                "model.texture_loss=pixel",
                "model.log_images=1",
                "model.rigid_epochs=0",
                "model.num_basis=2",
                "model.weights.equivariance=0",
                "model.weights.flip_rotation=0",
            ]
            if model
            else []
        ),
        *extra,
    ]


def test_p3d_config_trains_and_evaluates_3d_iou_end_to_end(tmp_path):
    root = tmp_path / "data"
    write_tiny_p3d(root, np.random.default_rng(0))
    cfg = compose("ttp_p3d_car_kp", tiny_p3d(root, tmp_path / "run"))
    assert "iou_3d" in build_model(cfg).eval_metrics["val"]
    result = train(cfg)
    for split in ("val", "test"):
        value = result[split][f"{split}/iou_3d"]
        assert 0.0 <= value <= 1.0, (split, value)
    assert result["test"]["test/iou_3d"] == pytest.approx(result["val"]["val/iou_3d"], abs=1e-6)  # test = val
    # eval of the checkpoint takes cad_root from its config (an evaluation setting) and names a missing model
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ev = evaluate(
        compose(
            "ttp_p3d_car_kp",
            tiny_p3d(root, tmp_path / "eval", f"ckpt_path={ckpt}", "test_after_fit=false", model=False),
        )
    )
    assert ev["val"]["val/iou_3d"] == pytest.approx(result["val"]["val/iou_3d"], abs=1e-6)
    # the logged value is the protocol on the fitted meshes in the template frame (not the camera's)
    loader = build_datamodule(cfg, "validate").val_dataloader()
    batch = next(iter(loader[0] if isinstance(loader, list) else loader))
    assert batch["cad_index"].tolist() == [1, 2], batch["cad_index"]
    model = TTPModule.load_from_checkpoint(ckpt).eval()
    metric = PascalIoU3D(cfg.model.cad_root, model.faces)
    with torch.no_grad():
        metric.update(model.reconstruct(batch["image"]).fit.vertices, batch["cad_index"])
    assert float(metric.compute()) == pytest.approx(ev["val"]["val/iou_3d"], abs=1e-6)
    (root / "PASCAL3D+_release1.1" / "CAD" / "car" / "02.off").unlink()
    with pytest.raises(FileNotFoundError, match=r"CAD/car/02\.off"):
        evaluate(
            compose(
                "ttp_p3d_car_kp",
                tiny_p3d(root, tmp_path / "eval2", f"ckpt_path={ckpt}", "test_after_fit=false", model=False),
            )
        )


def test_ucmrs_axis_swap_on_both_meshes_leaves_the_metric_unchanged(tmp_path):
    """eval_mean_iou.m maps prediction and CAD vertices by (x, y, z) -> (-y, x, z) (lines 41-42, 119-120); the
    module docstring claims that is a no-op for the bounding-box fit on the cubic grid: check it."""
    radii = {1: (0.31, 0.22, 0.17), 2: (0.18, 0.33, 0.26)}
    cad1, faces = ellipsoid(radii[1])
    cad2, _ = ellipsoid(radii[2])
    g = torch.Generator().manual_seed(0)
    pred = torch.stack([cad1 * 1.7, cad2 * 1.3]) * (
        1 + 0.2 * torch.rand(2, 1, 3, generator=g, dtype=torch.float64)
    )

    def swap(v):
        return torch.stack([-v[..., 1], v[..., 0], v[..., 2]], -1)

    values = []
    for name, f in (("plain", lambda v: v), ("swapped", swap)):
        for index, c in ((1, cad1), (2, cad2)):
            write_p3d_cad(tmp_path / name, "car", index, f(c).numpy(), faces.tolist())
        metric = PascalIoU3D(tmp_path / name / "CAD" / "car", faces)
        metric.update(f(pred).float(), torch.tensor([1, 2]))
        values.append(metric.per_object()[0])
    assert torch.allclose(values[0], values[1], atol=2e-3), values
    assert (values[0] < 0.97).all(), "a non-trivial case: the shapes do not match exactly"
