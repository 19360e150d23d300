"""Tests of the category crop, mirroring, collate and the CategoryDataModule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datamodules.category.crop import crop_box, crop_image, crop_sample, mirror_sample, pixels_to_crop
from datamodules.category.datamodule import CategoryDataModule, TransformedCategory, collate_category
from datamodules.category.synthetic import SyntheticCategory
from datamodules.registry import DATAMODULES, READERS
from geometry.cameras import WeakPerspectiveCameras
from geometry.rotations import matrix_to_quaternion, quaternion_to_matrix
from helpers import TOL, assert_close

TOL32 = TOL[torch.float32]


def _sample(h: int = 60, w: int = 80, bbox=(10.0, 20.0, 49.0, 39.0), K: int = 4) -> dict:
    """A plain sample whose image is a smooth ramp (bilinear interpolation reproduces it exactly)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    image = torch.stack([xs / w, ys / h, 0.5 + 0 * xs])
    kp = torch.tensor([[12.0, 25.0, 1.0], [40.5, 33.0, 1.0], [30.0, 30.0, 0.0], [20.25, 22.75, 1.0]])[:K]
    mask = torch.zeros(1, h, w)
    x1, y1, x2, y2 = (int(v) for v in bbox)
    mask[:, y1 : y2 + 1, x1 : x2 + 1] = 1.0
    return {"image": image, "mask": mask, "keypoints": kp, "bbox": torch.tensor(bbox), "name": "toy/0"}


def test_crop_box_pads_and_squares_like_cmr():
    # 100 x 100 at (10, 20): 5 % = 5 pixels on each side, side 110
    assert crop_box(torch.tensor([10.0, 20.0, 109.0, 119.0])) == (5, 15, 110)
    # 100 x 60: x padded by 5, y by 3 -> 110 x 66, centred vertically: 22 more rows above
    assert crop_box(torch.tensor([10.0, 20.0, 109.0, 79.0])) == (5, -5, 110)
    # jitter moves sides in bbox units: x1 out by 10 % more, the rest as before -> 120 wide
    assert crop_box(torch.tensor([10.0, 20.0, 109.0, 119.0]), jitter=torch.tensor([0.1, 0, 0, 0])) == (
        -5,
        10,
        120,
    )
    assert crop_box(torch.tensor([3.0, 4.0, 3.0, 4.0]), pad_frac=0.0) == (3, 4, 1)
    with pytest.raises(ValueError, match="bbox"):
        crop_box(torch.tensor([5.0, 0.0, 4.0, 3.0]))
    with pytest.raises(ValueError, match="bbox"):
        crop_box(torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("size", [110, 64, 256])
def test_bbox_corners_map_to_the_analytic_normalized_coordinates(size):
    """Corner pixel centres of a 100 x 100 bbox padded by 5.5 pixels (5 + half a pixel) in a 110 crop:
    x = 2 (u - x0 + 0.5) / L - 1 = -0.9 and +0.9, whatever the output size."""
    s = _sample(200, 200, bbox=(10.0, 20.0, 109.0, 119.0))
    out = crop_sample(s, size)
    assert_close(out["bbox"], torch.tensor([-0.9, -0.9, 0.9, 0.9]), what="square bbox corners")
    # 100 x 60: x as before, y centred in the 110 rows starting at -5: (20 + 5.5) and (79 + 5.5)
    out = crop_sample(_sample(200, 200, bbox=(10.0, 20.0, 109.0, 79.0)), size)
    y = 2 * 25.5 / 110 - 1
    assert_close(out["bbox"], torch.tensor([-0.9, y, 0.9, -y]), what="non-square bbox corners")
    assert out["image"].shape == (3, size, size) and out["mask"].shape == (1, size, size)


def test_pixels_to_crop_agrees_with_grid_sample_on_the_crop():
    """A keypoint reads the same image value in the original (normalized original coordinates) and in the
    crop (normalized crop coordinates): the keypoint map and the image crop use one pixel convention."""
    s = _sample()
    for size in (None, 96):  # no resize, and a bilinear upsampling (exact on a linear ramp)
        x0, y0, side = crop_box(s["bbox"])
        out = crop_sample(s, side if size is None else size)
        h, w = s["image"].shape[1:]
        orig = torch.stack(
            [(2 * s["keypoints"][:, 0] + 1) / w - 1, (2 * s["keypoints"][:, 1] + 1) / h - 1], -1
        )
        vis = s["keypoints"][:, 2] > 0
        a = F.grid_sample(s["image"][None], orig[None, None], align_corners=False)[0, :, 0]  # (3, K)
        b = F.grid_sample(out["image"][None], out["keypoints"][None, None, :, :2], align_corners=False)[
            0, :, 0
        ]
        assert_close(b[:, vis], a[:, vis], atol=1e-5, rtol=0, what=f"image at keypoints (size {size})")
        expected = torch.stack(
            [
                2 * (s["keypoints"][:, 0] - x0 + 0.5) / side - 1,
                2 * (s["keypoints"][:, 1] - y0 + 0.5) / side - 1,
            ],
            -1,
        )
        assert_close(out["keypoints"][vis, :2], expected[vis], what="x = 2 (u - x0 + 0.5) / L - 1")
        assert torch.equal(out["keypoints"][~vis, :2], torch.zeros(int((~vis).sum()), 2)), "hidden -> 0"
        assert torch.equal(out["keypoints"][:, 2], s["keypoints"][:, 2])
    assert_close(
        pixels_to_crop(torch.tensor([[-0.5, 9.5]]), 0, 0, 10), torch.tensor([[-1.0, 1.0]]), what="edges"
    )


def test_crop_pads_with_zeros_outside_the_image_and_resizes_bilinearly():
    image = torch.rand(3, 20, 30)
    crop = crop_image(image, -4, 15, 10, 10)  # rows 15..24 (20.. outside), cols -4..5 (-4..-1 outside)
    expected = torch.zeros(3, 10, 10)
    expected[:, :5, 4:] = image[:, 15:20, 0:6]
    assert torch.equal(crop, expected)
    big = crop_image(image, -4, 15, 10, 25)
    assert_close(
        big,
        F.interpolate(expected[None], size=(25, 25), mode="bilinear", align_corners=False)[0],
        what="resize",
    )
    small = crop_image(image, 0, 0, 20, 5)
    assert_close(
        small,
        F.interpolate(image[None, :, :, :20], size=(5, 5), mode="bilinear", antialias=True)[0],
        what="antialiased shrink",
    )
    # a bbox at the image corner: padded region of the image and of the mask is zero
    s = _sample(bbox=(0.0, 0.0, 39.0, 19.0))
    out = crop_sample(s, 44)  # x0 = -2, y0 = -12, side 44: no resize
    assert out["mask"][:, :12].abs().max() == 0 and out["image"][:, :, :2].abs().max() == 0
    assert_close(out["image"][:, 12:, 2:], s["image"][:, :32, :42], what="crop content")
    with pytest.raises(ValueError, match="mask"):
        crop_sample({**s, "mask": s["mask"][:, :5]}, 32)
    with pytest.raises(KeyError, match="bbox"):
        crop_sample({k: v for k, v in s.items() if k != "bbox"}, 32)


def test_mirror_is_torch_flip_with_flipped_and_permuted_keypoints():
    s = crop_sample(_sample(), 48)
    flip = [3, 1, 2, 0]
    m = mirror_sample(s, flip)
    assert torch.equal(m["image"], torch.flip(s["image"], dims=[-1]))
    assert torch.equal(m["mask"], torch.flip(s["mask"], dims=[-1]))
    for k in range(4):
        src = s["keypoints"][flip[k]]
        assert_close(m["keypoints"][k], torch.stack([-src[0], src[1], src[2]]), what=f"keypoint {k}")
    x1, y1, x2, y2 = s["bbox"].tolist()
    assert_close(m["bbox"], torch.tensor([-x2, y1, -x1, y2]), what="mirrored bbox")
    # the mirrored keypoints read the mirrored image where the originals read the original
    vis = s["keypoints"][:, 2] > 0
    a = F.grid_sample(s["image"][None], s["keypoints"][None, None, :, :2], align_corners=False)[0, :, 0]
    b = F.grid_sample(m["image"][None], m["keypoints"][None, None, :, :2], align_corners=False)[0, :, 0]
    perm = torch.tensor(flip)
    assert_close(
        b[:, vis[perm]], a[:, perm][:, vis[perm]], atol=1e-5, rtol=0, what="mirrored image at keypoints"
    )
    twice = mirror_sample(m, flip)
    assert torch.equal(twice["image"], s["image"]) and torch.equal(twice["keypoints"], s["keypoints"])
    with pytest.raises(ValueError, match="keypoint_flip"):
        mirror_sample(s, [0, 1, 1, 2])


def _projected_keypoints(sample: dict, keypoint_vertices: torch.Tensor) -> torch.Tensor:
    cam = WeakPerspectiveCameras(
        sample["true_scale"][None], sample["true_rotation"][None], sample["true_translation"][None]
    )
    return cam.project(sample["true_verts"][keypoint_vertices][None])[0]


def test_true_pose_follows_the_crop_and_the_mirror():
    """After the crop, and after mirroring, the true camera still projects the true vertices onto the
    sample's (normalized) keypoints, and the mirrored rotation is M R M."""
    ds = SyntheticCategory(num_samples=3, image_size=64, seed=1)
    for i in range(3):
        c = crop_sample(ds[i], 128)
        vis = c["keypoints"][:, 2] > 0
        assert_close(
            _projected_keypoints(c, ds.keypoint_vertices)[vis],
            c["keypoints"][vis, :2],
            atol=1e-5,
            rtol=0,
            what=f"[{i}] crop",
        )
        m = mirror_sample(c, ds.KEYPOINT_FLIP, ds.vertex_flip)
        vis_m = m["keypoints"][:, 2] > 0
        assert_close(
            _projected_keypoints(m, ds.keypoint_vertices)[vis_m],
            m["keypoints"][vis_m, :2],
            atol=1e-5,
            rtol=0,
            what=f"[{i}] mirror",
        )
        mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
        assert_close(m["true_rotation"], mirror @ c["true_rotation"] @ mirror, what="M R M")
        assert_close(
            m["true_verts"],
            c["true_verts"],
            atol=1e-6,
            rtol=0,
            what="a symmetric instance mirrors onto itself",
        )
        assert torch.equal(m["true_coeffs"], c["true_coeffs"])
    with pytest.raises(ValueError, match="vertex_flip"):
        mirror_sample(c, ds.KEYPOINT_FLIP)


def test_sfm_pose_is_normalized_and_mirrored_like_cmr():
    s = _sample(200, 200, bbox=(10.0, 20.0, 109.0, 119.0))
    rot = quaternion_to_matrix(torch.tensor([0.9, 0.2, -0.3, 0.25]))
    q = matrix_to_quaternion(rot)
    s["sfm_pose"] = torch.cat([torch.tensor([80.0, 60.0, 70.0]), q])  # scale, tx, ty in pixels
    c = crop_sample(s, 64)
    assert_close(
        c["sfm_pose"][:3], torch.tensor([2 * 80.0 / 110, 2 * 55.5 / 110 - 1, 2 * 55.5 / 110 - 1]), what="s, t"
    )
    m = mirror_sample(c, [0, 1, 2, 3])
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    assert_close(quaternion_to_matrix(m["sfm_pose"][3:]), mirror @ rot @ mirror, what="mirrored quaternion")
    assert_close(m["sfm_pose"][:3], c["sfm_pose"][:3] * torch.tensor([1.0, -1.0, 1.0]), what="tx -> -tx")


def test_collate_stacks_fills_missing_tensors_and_refuses_mixed_keypoint_sets():
    a, b = crop_sample(_sample(), 16), crop_sample(_sample(), 16)
    a["sfm_pose"] = torch.arange(7.0)
    batch = collate_category([a, b])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["keypoints"].shape == (2, 4, 3)
    assert batch["name"] == ["toy/0", "toy/0"] and batch["has_sfm_pose"].tolist() == [True, False]
    assert torch.equal(batch["sfm_pose"][0], torch.arange(7.0)) and bool(batch["sfm_pose"][1].isnan().all())
    c = crop_sample(_sample(K=3), 16)
    with pytest.raises(ValueError, match="keypoints"):
        collate_category([a, c])
    # a reader without masks (PASCAL3D+ without mask_root) mixed in: NaN masks flagged by has_mask
    no_mask = {k: v for k, v in _sample().items() if k != "mask"}
    d = mirror_sample(crop_sample({**no_mask, "cad_index": torch.tensor(3)}, 16), [0, 1, 2, 3])
    assert "mask" not in d and d["image"].shape == (3, 16, 16)
    batch = collate_category([{**b, "cad_index": torch.tensor(1)}, d])
    assert batch["has_mask"].tolist() == [True, False] and bool(batch["mask"][1].isnan().all())
    assert torch.equal(batch["mask"][0], b["mask"]) and batch["cad_index"].tolist() == [1, 3]


def _entry(split: str, n: int, **kw) -> dict:
    return {
        "reader": "synthetic_category",
        "split": split,
        "num_samples": n,
        "image_size": 32,
        "level": 2,
        **kw,
    }


def test_datamodule_batches_mirroring_and_registration():
    assert DATAMODULES["category"] is CategoryDataModule
    dm = CategoryDataModule([_entry("train", 8)], [_entry("val", 5)], image_size=48, batch_size=4, seed=2)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    b = batches[0]
    K = len(READERS["synthetic_category"](num_samples=1).KEYPOINT_FLIP)
    assert b["image"].shape == (4, 3, 48, 48) and b["mask"].shape == (4, 1, 48, 48)
    assert b["keypoints"].shape == (4, K, 3) and b["bbox"].shape == (4, 4) and len(b["name"]) == 4
    assert b["true_rotation"].shape == (4, 3, 3) and b["true_verts"].shape == (4, 162, 3)
    assert float(b["keypoints"][..., :2].abs().max()) <= 1.0
    # each train sample is the crop of its raw sample, mirrored or not by its seeded coin
    raw = SyntheticCategory(split="train", num_samples=8, image_size=32, level=2)
    flips = []
    for batch in batches:
        for j, name in enumerate(batch["name"]):
            crop = crop_sample(raw[int(name.split("/")[-1])], 48)
            if torch.equal(batch["image"][j], crop["image"]):
                flips.append(False)
            else:
                assert torch.equal(batch["image"][j], torch.flip(crop["image"], dims=[-1])), name
                flips.append(True)
    assert any(flips) and not all(flips), f"8 coins of p = 1/2 gave {flips}"
    again = list(dm.train_dataloader())
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(batches, again, strict=True)), "seeded"
    # evaluation: crop only, every sample once
    val = list(dm.val_dataloader())
    assert sum(len(v["name"]) for v in val) == 5
    raw_val = SyntheticCategory(split="val", num_samples=5, image_size=32, level=2)
    assert torch.equal(val[0]["image"][0], crop_sample(raw_val[0], 48)["image"])


def test_datamodule_arguments_and_a_reader_without_flip():
    with pytest.raises(ValueError, match="image_size"):
        CategoryDataModule([_entry("train", 4)], [_entry("val", 2)], image_size=(32, 32))
    ds = SyntheticCategory(num_samples=2, image_size=32, level=2)
    for missing in (None, ()):
        ds.KEYPOINT_FLIP = missing
        with pytest.raises(ValueError, match="KEYPOINT_FLIP"):
            TransformedCategory(ds, 32, mirror=True)
    ds.KEYPOINT_FLIP = [0] * 14
    with pytest.raises(ValueError, match="permutation"):
        TransformedCategory(ds, 32, mirror=True)
    ds.KEYPOINT_FLIP = None
    plain = TransformedCategory(ds, 32)  # no mirroring: no permutation needed
    assert plain[(0, 123)]["image"].shape == (3, 32, 32)
    jitter = TransformedCategory(
        SyntheticCategory(num_samples=2, image_size=32, level=2), 32, jitter_frac=0.05
    )
    assert torch.equal(jitter[(1, 7)]["bbox"], jitter[(1, 7)]["bbox"]), "the jitter is a function of aug_seed"
    boxes = {tuple(jitter[(1, seed)]["bbox"].tolist()) for seed in range(6)}
    assert len(boxes) > 1 and tuple(jitter[1]["bbox"].tolist()) == tuple(plain_box(jitter, 1).tolist())


def plain_box(dataset: TransformedCategory, index: int) -> torch.Tensor:
    return crop_sample(dataset.dataset[index], dataset.size)["bbox"]
