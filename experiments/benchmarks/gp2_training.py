"""GP2 training cost: the pairwise loss's share of one training step, and gp2_synthetic's throughput.

1. One MobileNetV2 + Light-Weight RefineNet training step at 384x384 (GP2's training size: forward, the
   mixture loss, backward, AdamW step) beside the loss alone (forward + backward of `GP2Loss` on tensors of
   the same size), timed alternately in the same run (the medians of each); GP2 reports the loss at under
   5% of a step. Always at GP2's batch 8, and at batch 2 as well in a quick CPU run.
2. Throughput (images/s) of the gp2_synthetic experiment's training loop: batches from its datamodule
   (synthetic scene generation included) through the training step.

    python -m experiments bench --only gp2_training [--full]
"""

from __future__ import annotations

import time

import torch

from experiments.benchmarks.common import depth_batch, sync
from experiments.config import compose
from lightning_modules.gp2.module import GP2Module
from losses.depth import GP2Loss


def loss_share(B: int, size: int, device, repeats: int) -> dict:
    model = GP2Module(log_images=0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = depth_batch(B, size, device)

    def step():
        opt.zero_grad(set_to_none=True)
        model._loss(batch, model(batch["image"])).backward()
        opt.step()

    criterion = GP2Loss()
    pred0 = torch.randn(B, 1, size, size, device=device)

    def loss_only():
        pred = pred0.clone().requires_grad_(True)
        criterion(pred, batch["depth"], batch["valid"], batch["depth_type"]).backward()

    t_step, t_loss = _alternate_ms((step, loss_only), repeats)
    return {
        "bench": "loss share of a step",
        "case": f"mobilenetv2_100-LRN B={B} {size}x{size}",
        "step_ms": t_step,
        "loss_fwd_bwd_ms": t_loss,
        "loss_share_%": 100.0 * t_loss / t_step,
    }


def _alternate_ms(fns, repeats: int, warmup: int = 1) -> list[float]:
    """Median wall time (ms) of each of `fns`, called in turn `repeats` times after `warmup` rounds, so that
    a slow spell of a shared machine hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(warmup + repeats):
        for fn, t in zip(fns, times):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if i >= warmup:
                t.append((time.perf_counter() - t0) * 1e3)
    return [sorted(t)[len(t) // 2] for t in times]


def throughput(steps: int, device) -> dict:
    cfg = compose("gp2_synthetic")
    dm_cfg = {k: v for k, v in cfg.data.items() if k != "name"}
    from datamodules.depth.datamodule import DepthDataModule

    dm = DepthDataModule(**dm_cfg, seed=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    model = GP2Module(**{k: v for k, v in cfg.model.items() if k != "name"}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it = iter(loader)
    n_img, t0 = 0, None
    for i in range(steps + 2):  # 2 warm-up steps
        if i == 2:
            t0 = time.perf_counter()
            n_img = 0
        batch = next(it)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        opt.zero_grad(set_to_none=True)
        model._loss(batch, model(batch["image"])).backward()
        opt.step()
        n_img += batch["image"].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    H, W = cfg.data.image_size
    return {
        "bench": "gp2_synthetic training throughput",
        "case": f"B={cfg.data.batch_size} {H}x{W}, data generation included",
        "images_per_s": n_img / dt,
        "step_ms": 1e3 * dt / steps,
    }


def run(quick: bool = True) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batches = (2, 8) if quick and device.type == "cpu" else (8,)
    rows = [loss_share(B, 384, device, repeats=3 if quick else 7) for B in batches]
    rows.append(throughput(10 if quick else 50, device))
    return rows
