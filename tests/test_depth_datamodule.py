"""Tests of the depth DataModule: mixing, DDP sharding, crop/resize/flip geometry, collate, Lightning."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from datamodules.depth.datamodule import (
    DepthDataModule,
    MixedBatchSampler,
    center_crop_resize,
    collate_depth,
    hflip,
)
from datamodules.depth.synthetic import SyntheticDepth, camera_rays, render_scene
from datamodules.registry import DATAMODULES, READERS


def _entry(split: str, n: int, size=(16, 16), **kw) -> dict:
    return {"reader": "synthetic_depth", "split": split, "num_samples": n, "image_size": size, **kw}


def _dataset_of(name: str) -> str:
    return name.split("/")[1]  # synthetic_depth/<split>/<index>


def test_sampler_equal_counts_per_dataset():
    sizes, bs = [7, 30, 12], 7  # 2 per dataset, batch of 6; epoch = 7 // 2 = 3 batches
    sampler = MixedBatchSampler(sizes, bs, seed=1, with_aug_seed=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    bounds = [(0, 7), (7, 37), (37, 49)]
    for b in batches:
        assert len(b) == 6
        counts = [sum(lo <= i < hi for i in b) for lo, hi in bounds]
        assert counts == [2, 2, 2], counts
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == len(flat), "an index repeats within one epoch"
    sampler.set_epoch(1)
    assert list(sampler) != batches, "the order must change with the epoch"
    sampler.set_epoch(0)
    assert list(sampler) == batches, "the order must be a function of (seed, epoch)"


def test_sampler_ddp_shards_are_disjoint_and_cover():
    sizes, bs = [12, 20], 4  # 2 per dataset, 6 global batches, 3 per rank
    ranks = [list(MixedBatchSampler(sizes, bs, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    idx = [{i for b in batches for i, _ in b} for batches in ranks]
    assert not idx[0] & idx[1], f"ranks share indices {idx[0] & idx[1]}"
    union = idx[0] | idx[1]
    assert set(range(12)) <= union, "the smallest dataset must be covered in one epoch"
    assert len(union) == 24
    single = {i for b in MixedBatchSampler(sizes, bs, seed=0, num_replicas=1, rank=0) for i, _ in b}
    assert union == single, "sharding must split the single-process epoch, not draw another one"
    # Lightning injects a DistributedSampler: its rank, world size and epoch are used.
    dist = DistributedSampler(range(32), num_replicas=2, rank=1, shuffle=True)
    injected = MixedBatchSampler(sizes, bs, seed=0, sampler=dist)
    assert list(injected) == ranks[1]
    dist.set_epoch(3)
    assert list(injected) != ranks[1]


def test_bad_batch_size_and_unknown_reader():
    with pytest.raises(ValueError, match="batch_size"):
        DepthDataModule(
            train=[_entry("a", 4), _entry("b", 4), _entry("c", 4)], val=[_entry("v", 2)], batch_size=2
        )
    dm = DepthDataModule(train=[{"reader": "synthetic_dept"}], val=[_entry("v", 2)])
    with pytest.raises(KeyError, match="synthetic_depth"):
        dm.setup("fit")


def test_datamodule_mixed_batches_and_seeded_flip():
    dm = DATAMODULES["depth"](
        train=[_entry("alpha", 8), _entry("beta", 12, size=(20, 28))],
        val=[_entry("v", 3)],
        batch_size=4,
        seed=2,
        image_size=(16, 16),
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    plain = {
        s: SyntheticDepth(split=s, num_samples=n, image_size=sz)
        for s, n, sz in [("alpha", 8, (16, 16)), ("beta", 12, (20, 28))]
    }
    flips = 0
    for batch in batches:
        assert batch["image"].shape == (4, 3, 16, 16) and batch["depth"].shape == (4, 1, 16, 16)
        assert batch["intrinsics"].shape == (4, 3, 3) and bool(batch["has_intrinsics"].all())
        sources = [_dataset_of(n) for n in batch["name"]]
        assert sources.count("alpha") == 2 and sources.count("beta") == 2, sources
        for i, name in enumerate(batch["name"]):
            source, index = _dataset_of(name), int(name.split("/")[2])
            ref = center_crop_resize(plain[source][index], (16, 16))
            # exact on purpose: the same transform of the same sample in one process, or its mirror copy
            if torch.equal(batch["image"][i], ref["image"]):
                continue
            flipped = hflip(ref)
            flips += 1
            for key in ("image", "depth", "valid", "intrinsics"):
                assert torch.equal(batch[key][i], flipped[key]), f"{name}: {key} neither original nor flipped"
    assert 0 < flips < 16, f"{flips} of 16 samples flipped"
    again = list(dm.train_dataloader())
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(batches, again)), "augmentation not seeded"


def test_resize_keeps_rays_and_depth_consistent():
    src = SyntheticDepth(split="x", num_samples=2, image_size=(48, 80), seed=7)
    sample = src[1]
    out = center_crop_resize(sample, (24, 30))
    k0, k1 = sample["intrinsics"].double(), out["intrinsics"].double()
    # Crop 48 x 60 at x0 = 10 (aspect 24:30), then scale by 0.5: output pixel j <-> input u = 2j + 0.5 + 10.
    j = torch.arange(30, dtype=torch.float64)
    i = torch.arange(24, dtype=torch.float64)
    u_in, v_in = (j + 0.5) / 0.5 - 0.5 + 10, (i + 0.5) / 0.5 - 0.5
    ray_x_in, ray_x_out = (u_in - k0[0, 2]) / k0[0, 0], (j - k1[0, 2]) / k1[0, 0]
    ray_y_in, ray_y_out = (v_in - k0[1, 2]) / k0[1, 1], (i - k1[1, 2]) / k1[1, 1]
    assert torch.allclose(ray_x_in, ray_x_out, atol=1e-6), (ray_x_in - ray_x_out).abs().max()
    assert torch.allclose(ray_y_in, ray_y_out, atol=1e-6), (ray_y_in - ray_y_out).abs().max()
    # The ray of the centre output pixel (between pixels for even sizes) is the optical axis again.
    assert abs(k1[0, 2].item() - 14.5) < 1e-5 and abs(k1[1, 2].item() - 11.5) < 1e-5, k1
    # Rendering the same scene with the new intrinsics at the new size agrees with the resized depth.
    scene, _ = src.scene(1)
    direct = render_scene(scene, out["intrinsics"], 24, 30).depth
    rel = ((out["depth"] - direct).abs() / direct).flatten()
    assert rel.median() < 0.02 and (rel < 0.05).float().mean() > 0.8, f"median rel diff {rel.median():.4f}"
    assert out["image"].shape == (3, 24, 30) and out["valid"].dtype == torch.bool


def test_flip_mirrors_principal_point_and_rays():
    src = SyntheticDepth(split="x", num_samples=1, image_size=(10, 14), seed=3)[0]
    src["intrinsics"][0, 2] = 5.25  # off-centre principal point
    flipped = hflip(src)
    assert abs(flipped["intrinsics"][0, 2].item() - (13 - 5.25)) < 1e-6
    assert torch.equal(flipped["depth"][..., 3], src["depth"][..., 10])
    r0 = camera_rays(src["intrinsics"], 10, 14).reshape(10, 14, 3)
    r1 = camera_rays(flipped["intrinsics"], 10, 14).reshape(10, 14, 3)
    mirrored = r0.flip(1) * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(r1, mirrored, atol=1e-6), (r1 - mirrored).abs().max()


def test_collate_pads_ordinal_and_marks_missing_intrinsics():
    def sample(m: int | None, k: bool, max_depth: float | None) -> dict:
        s = {
            "image": torch.rand(3, 4, 5),
            "depth": torch.rand(1, 4, 5),
            "valid": torch.ones(1, 4, 5, dtype=torch.bool),
            "depth_type": "ordinal" if m is not None else "absolute",
            "name": f"s{m}",
        }
        if m is not None:
            s["ordinal"] = torch.arange(1, 5 * m + 1, dtype=torch.float32).reshape(m, 5)
        if k:
            s["intrinsics"] = torch.eye(3) * 2
        if max_depth is not None:
            s["max_depth"] = max_depth
        return s

    batch = collate_depth([sample(3, True, 10.0), sample(None, False, None), sample(1, True, 80.0)])
    assert batch["image"].shape == (3, 3, 4, 5)
    assert batch["depth_type"] == ["ordinal", "absolute", "ordinal"] and batch["name"] == [
        "s3",
        "sNone",
        "s1",
    ]
    assert batch["ordinal"].shape == (3, 3, 5)
    assert batch["ordinal_valid"].tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    # collate copies stored values (integer-valued pixels): exact
    assert torch.equal(batch["ordinal"][0], torch.arange(1, 16, dtype=torch.float32).reshape(3, 5))
    assert torch.equal(batch["ordinal"][2, 0], torch.arange(1, 6, dtype=torch.float32))
    assert (batch["ordinal"][2, 1:] == 0).all() and (batch["ordinal"][1] == 0).all()
    assert batch["has_intrinsics"].tolist() == [True, False, True]
    assert torch.isnan(batch["intrinsics"][1]).all() and torch.equal(batch["intrinsics"][2], torch.eye(3) * 2)
    assert batch["max_depth"] == [10.0, None, 80.0]
    full = collate_depth([sample(None, False, 5.0), sample(None, False, 7.0)])
    assert "intrinsics" not in full and not full["has_intrinsics"].any()
    assert torch.equal(full["max_depth"], torch.tensor([5.0, 7.0]))


def test_ordinal_pairs_follow_crop_and_resize():
    s = {
        "image": torch.rand(3, 8, 16),
        "depth": torch.rand(1, 8, 16),
        "valid": torch.ones(1, 8, 16, dtype=torch.bool),
        "ordinal": torch.tensor([[0, 4, 7, 11, 1], [2, 1, 3, 6, -1]]),  # second pair leaves the crop
    }
    out = center_crop_resize(s, (4, 4))  # crop 8x8 at x0 = 4, scale 0.5
    assert out["ordinal"].tolist() == [[0, 0, 3, 3, 1]]
    assert torch.equal(hflip(out)["ordinal"], torch.tensor([[0, 3, 3, 0, 1]]))


def test_val_loaders_and_lightning_fit():
    import pytorch_lightning as pl

    dm = DepthDataModule(
        train=[_entry("a", 6), _entry("b", 6)],
        val=[_entry("v1", 3), _entry("v2", 2, size=(12, 20))],
        batch_size=2,
        image_size=(16, 16),
    )
    dm.setup("fit")
    loaders = dm.val_dataloader()
    assert (
        isinstance(loaders, list) and len(loaders) == 2 and dm.dataset_names("val") == ["synthetic_depth"] * 2
    )
    first = next(iter(loaders[0]))
    ref = [
        center_crop_resize(SyntheticDepth(split="v1", num_samples=3, image_size=(16, 16))[i], (16, 16))
        for i in range(2)
    ]
    assert first["name"] == ["synthetic_depth/v1/000000", "synthetic_depth/v1/000001"], "val must not shuffle"
    assert torch.equal(first["image"], torch.stack([r["image"] for r in ref])), "val must not augment"

    seen: dict[str, list] = {"train": [], "val": []}

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            seen["train"].append(batch["name"])
            return (self.w * batch["depth"].mean()).sum()

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            seen["val"].append((dataloader_idx, batch["image"].shape[-2:]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Probe(), datamodule=dm)
    assert len(seen["train"]) == 6
    assert all(sorted(_dataset_of(n) for n in names) == ["a", "b"] for names in seen["train"])
    assert sorted({i for i, _ in seen["val"]}) == [0, 1]
    assert all(tuple(hw) == (16, 16) for _, hw in seen["val"])


def test_native_eval_resize_keeps_ground_truth_resolution():
    """GP2's evaluation: image shorter side -> min(image_size) in multiples of 32, depth untouched."""
    from datamodules.depth.datamodule import DepthDataModule

    entry = {"reader": "synthetic_depth", "num_samples": 2, "image_size": [48, 80]}
    dm = DepthDataModule(
        train=[entry], val=[{**entry, "split": "val"}], image_size=(32, 32), eval_resize="native"
    )
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    raw = READERS["synthetic_depth"](split="val", num_samples=2, image_size=[48, 80])[0]
    assert batch["image"].shape[-2:] == (32, 64)  # 48x80 -> shorter side 32, 53.3 -> 64 (multiple of 32)
    assert torch.equal(batch["depth"][0], raw["depth"]) and torch.equal(
        batch["intrinsics"][0], raw["intrinsics"]
    )
    with pytest.raises(ValueError, match="eval_resize"):
        DepthDataModule(train=[entry], val=[entry], eval_resize="full")


def test_gp2_eval_upsamples_the_prediction_to_the_ground_truth():
    from lightning_modules.gp2.module import GP2Module

    module = GP2Module(log_images=0).eval()
    image, target = torch.rand(2, 3, 32, 64), torch.rand(2, 1, 48, 80) + 1
    with torch.no_grad():
        pred = module.predict_like(image, target)
        direct = torch.nn.functional.interpolate(
            module(image), size=(48, 80), mode="bilinear", align_corners=False
        )
    assert pred.shape == (2, 1, 48, 80) and torch.equal(pred, direct)
