"""GP2's evaluation caps: the readers' default `MAX_DEPTH` and the metrics' strict `< cap` validity.

GP2's official eval (saic-vul/geometry-preserving-de, `datasets/validation_datasets.py`) sets `cap_max`
per dataset: Sintel 72 (l.108), TUM 10 (l.149), NYU 10 (l.176), ETH3D 72 (l.201), and masks every
ground-truth pixel with `depth >= cap_max` (l.53) or `depth <= 1e-8` (l.51).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from depth_format_writers import save_png16, write_dpt, write_eth3d, write_nyu, write_sintel, write_tum

import datamodules.depth.readers  # noqa: F401  (registers the readers)
from datamodules.registry import READERS
from helpers import assert_close
from lightning_modules.depth_metrics import DepthMetrics

GP2_CAPS = {"nyu": 10.0, "tum": 10.0, "sintel": 72.0, "eth3d": 72.0}
GP2_ALIGNMENTS = ("median_log_disparity", "lstsq_disparity")  # UTS, UTSS
WRITERS = {"nyu": write_nyu, "tum": write_tum, "sintel": write_sintel, "eth3d": write_eth3d}
SPLIT = {"nyu": "test", "tum": "test", "sintel": "test", "eth3d": "test"}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("name", sorted(GP2_CAPS))
def test_reader_default_cap_is_gp2s(name, tmp_path, rng):
    assert READERS[name].MAX_DEPTH == GP2_CAPS[name], f"{name}: MAX_DEPTH {READERS[name].MAX_DEPTH}"
    WRITERS[name](tmp_path, rng)
    s = READERS[name](root=tmp_path, split=SPLIT[name])[0]
    assert s["max_depth"] == GP2_CAPS[name], f"{name}: sample max_depth {s.get('max_depth')}"
    off = READERS[name](root=tmp_path, split=SPLIT[name], max_depth=None)[0]
    assert "max_depth" not in off, "an entry's `max_depth: null` turns the cap off"


def scored_equals_below_cap(sample: dict) -> None:
    """With the sample's cap, a wild prediction at pixels >= cap changes no metric: they are not scored."""
    depth = sample["depth"][None].double()  # (1, 1, H, W)
    valid = sample["valid"][None]
    cap = sample["max_depth"]
    far = valid & (depth >= cap)
    assert (depth[valid] == cap).any() and far.sum() > (depth[valid] == cap).sum(), "fixture lacks cap pixels"
    below = valid & ~far
    g = torch.Generator().manual_seed(0)
    pred = -torch.where(valid, depth, torch.ones_like(depth)).log()
    pred = pred + 0.2 * torch.randn(depth.shape, generator=g, dtype=depth.dtype)
    wild = pred.masked_fill(far, 8.0)  # depth ~ e^-8 there
    for alignment in GP2_ALIGNMENTS:
        outs = []
        for p, m in ((pred, below), (wild, valid)):
            metric = DepthMetrics(alignment=alignment, max_depth=cap)
            metric.update(p, depth, m)
            outs.append({k: v.item() for k, v in metric.compute().items()})
        assert outs[0]["num_images"] == 1, outs[0]
        for k in outs[0]:
            assert_close(outs[1][k], outs[0][k], f"{alignment} {k}: pixels >= cap {cap} were scored")
        # the same pixels just below the cap are scored
        near = torch.where(far, torch.full_like(depth, math.nextafter(cap, 0.0)), depth)
        metric = DepthMetrics(alignment=alignment, max_depth=cap)
        metric.update(wild, near, valid)
        assert metric.compute()["delta125_bad"].item() > outs[0]["delta125_bad"] + 1.0, alignment


def test_sintel_sky_and_pixels_at_the_cap_are_not_scored(tmp_path, rng):
    write_sintel(tmp_path, rng)
    depth = np.random.default_rng(1).uniform(1.0, 60.0, size=(6, 8)).astype(np.float32)
    depth[0, :3] = 72.0  # exactly GP2's Sintel cap
    depth[5, :] = 1e10  # "sky"
    write_dpt(tmp_path / "training" / "depth" / "alley_1" / "frame_0001.dpt", depth)
    s = READERS["sintel"](root=tmp_path, split="test")[0]
    assert s["name"] == "sintel/alley_1/frame_0001" and s["max_depth"] == 72.0
    scored_equals_below_cap(s)


def test_tum_pixels_at_the_cap_are_not_scored(tmp_path, rng):
    write_tum(tmp_path, rng)
    raw = np.random.default_rng(1).integers(5000, 45000, size=(6, 8)).astype(np.uint16)
    raw[0, :3] = 50000  # 50000 / 5000 = 10 m exactly, GP2's TUM cap
    raw[5, :4] = 60000
    save_png16(tmp_path / "rgbd_dataset_freiburg2_xyz" / "depth" / "1.015000.png", raw)
    s = READERS["tum"](root=tmp_path, split="test")[0]
    assert s["max_depth"] == 10.0 and (s["depth"] == 10.0).sum() == 3
    scored_equals_below_cap(s)
