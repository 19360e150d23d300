"""Slow (make test-all): gp2_synthetic learns depth that beats the best constant prediction."""

from __future__ import annotations

import pytest
import torch

from datamodules.depth.synthetic import SyntheticDepth
from experiments.config import compose
from experiments.runner import train
from lightning_modules.depth_metrics import DepthMetrics


@pytest.mark.slow
def test_gp2_synthetic_beats_a_constant_prediction(tmp_path):
    entry = "{{reader: synthetic_depth, split: {split}, num_samples: {n}, image_size: [64, 64], seed: 0}}"
    result = train(
        compose(
            "gp2_synthetic",
            [
                f"run_dir={tmp_path / 'run'}",
                "logger=csv",
                f"data.train=[{entry.format(split='train', n=1024)}]",
                f"data.val=[{entry.format(split='val', n=64)}]",
                f"data.test=[{entry.format(split='val', n=64)}]",
                "trainer.max_epochs=4",
                "trainer.enable_progress_bar=false",
                "model.log_images=0",
            ],
        )
    )
    # the best constant log-disparity under the same median alignment: a flat prediction
    baseline = DepthMetrics("median_log_disparity", max_depth=20.0)
    val = SyntheticDepth(split="val", num_samples=64, image_size=(64, 64), seed=0)
    for i in range(len(val)):
        s = val[i]
        baseline.update(torch.zeros(1, 1, 64, 64), s["depth"][None], s["valid"][None])
    base = {k: float(v) for k, v in baseline.compute().items()}
    assert result["val"]["val/absrel"] < 0.85 * base["absrel"], (result["val"]["val/absrel"], base["absrel"])
    assert result["val"]["val/delta125_bad"] < base["delta125_bad"] - 5.0
