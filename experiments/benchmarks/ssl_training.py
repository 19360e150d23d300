"""SSL point-cloud training cost: the share of one training step spent on the projections and on neighbour
mining, the projection's cost as the number of points and the image size grow, and the training throughput.

1. Share of one `SSLModule` training step (Ours-NN: cycle and nearest-neighbours consistency with the
   official P = 1024 and k = 4 views, 2 neighbours mined in the module's training-set bank;
   lightning_modules/ssl/module.py) spent in its parts. The step is `training_step` without Lightning's
   logging: `loss_terms`, `objectives`, one backward, the two Adam steps. The bank is pre-filled to the 512
   samples of the ssl_synthetic_*_nn training sets (random features, the batch's images and silhouettes),
   as it is after the first epoch. Method, per round three calls in turn, then the medians over the rounds
   after a warm-up round (so that a slow spell of a shared machine hits all of them alike):
   a. the plain step (`fwd_bwd_ms` of the "training step" row, the denominator of every share);
   b. the same step with its parts wrapped by a timer for that step only (monkeypatched): `model.render`
      (`losses.ssl_pointcloud.render_views`: the input view, the k random views, the neighbours' views),
      `model.neighbours` (the mining: bank update, k-NN search, N_pose on the neighbour images, all
      without gradients) and `losses.ssl_pointcloud.mask_affinity_loss`; this gives each part's forward
      time inside the step (`fwd_ms`; the step's own is `loss_terms` + `objectives`);
   c. every wrapped call replayed on the inputs it got in (b) (detached, requiring grad where they did),
      forward + backward with a ones upstream gradient (`fwd_bwd_ms`): the part's cost with its backward,
      which a forward timer inside the step cannot see.
   `share` = the part's `fwd_bwd_ms` / the plain step's. The mask affinity term (Eq. 3 in the "paper" mode:
   an exact minimum over all pixel pairs, O(B (HW)^2)) is no projection; it is listed because it is most of
   the step at 64x64. Quick: batch 4 at 32x32; full: batch 16 at 64x64 (the ssl_synthetic_*_nn configs).
2. Projection cost: `SSLModule.render` (CAPNet silhouettes + DIFFER colours, all B * k views in one call) of
   B clouds of P ground-truth surface points of the synthetic car class from k = 4 random views, forward and
   forward + backward (ones upstream gradient into points and colours), as P and the image size S grow;
   `x_ref` is the forward + backward time relative to P = 1024 at 64x64 in the same run. Quick: B = 2,
   P in {256, 1024, 4096} at 64x64 and 32x32, 128x128 at P = 1024; full: B = 16 (the training batch), up to
   P = 16384 and 256x256.
3. Throughput (images/s) of the ssl_synthetic_car_nn experiment's training loop: batches from its
   datamodule (synthetic rendering included) through the step of 1. Quick: batch 4 at 32x32 (overrides);
   full: the experiment's batch 16 at 64x64.

Threads: torch's default, as the other benchmarks (make bench prints the count).

    python -m experiments bench --only ssl_training [--full]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

import losses.ssl_pointcloud as L
from datamodules.pointcloud.datamodule import collate_point_cloud
from datamodules.pointcloud.synthetic import SyntheticShapes
from experiments.benchmarks.common import PartTimer, share_rounds, share_rows, sync, time_ms
from experiments.config import compose
from lightning_modules.ssl.module import SSLModule

N_VIEWS, N_NEIGHBOURS = 4, 2  # official k (Sec. 4.1) and the config's neighbours
BANK_SIZE = 512  # training samples of the ssl_synthetic_*_nn experiments: the bank after the first epoch


# ------------------------------------------------------------------------------------------ 1. step share
def _batch(B: int, S: int, P: int, device, seed: int = 0) -> dict:
    ds = SyntheticShapes(split="train", num_samples=B, category="car", image_size=S, num_points=P, seed=seed)
    batch = collate_point_cloud([ds[i] for i in range(B)])
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _step_fn(model: SSLModule, opts, batch: dict) -> Callable[[], None]:
    """`SSLModule.training_step` without Lightning: its losses, one backward, the two Adam steps."""

    def step() -> None:
        _update(opts, *model.objectives(*model.loss_terms(batch)))

    return step


def _update(opts, loss_rec, loss_pose) -> None:
    """The step's second half: one backward of both objectives, then both Adam steps."""
    for opt in opts:
        opt.zero_grad()
    (loss_rec if loss_pose is None else loss_rec + loss_pose).backward()
    for opt in opts:
        opt.step()


def _fill_bank(model: SSLModule, batch: dict, size: int) -> None:
    """Pre-fill the module's neighbour bank so that it holds `size` rows with the batch's own: random
    features, the batch's images and masks."""
    g = torch.Generator().manual_seed(1)
    size = max(size - batch["image"].shape[0], 0)
    rep = torch.arange(size) % batch["image"].shape[0]
    feats = torch.randn(size, model.hparams.bottleneck, generator=g).to(batch["image"])
    names = [f"bank_fill/{i}" for i in range(size)]
    model.bank.update(names, feats, batch["image"][rep], batch["mask"][rep].to(batch["image"].dtype))


def step_share(
    B: int, S: int, P: int, device, repeats: int, warmup: int = 1, bank_size: int = BANK_SIZE
) -> list[dict]:
    """Rows: the training step and the share of it of each part (module docstring, 1.)."""
    torch.manual_seed(0)
    model = SSLModule(
        n_points=P, image_size=S, nn=True, n_neighbours=N_NEIGHBOURS, n_views=N_VIEWS, log_images=0
    ).to(device)
    opts = model.configure_optimizers()
    batch = _batch(B, S, P, device)
    if model.hparams.nn_source == "bank":
        _fill_bank(model, batch, bank_size)
    step = _step_fn(model, opts, batch)
    h = model.hparams
    proj = {
        "input": "projection: input view",
        "k": f"projection: k={h.n_views} random views",
        "nn": f"projection: {h.n_neighbours} neighbour views",
    }
    render_labels = [proj["input"]] + [proj["k"]] * h.cycle + [proj["nn"]] * h.nn
    mining, affinity = "neighbour mining", "mask affinity (Eq. 3)"
    affinity_calls = (h.affinity != "none" and model.loss_weights["affinity"] != 0) + (
        h.nn and h.affinity != "none" and model.loss_weights["nn_affinity"] != 0
    )

    def timed_step(timer: PartTimer) -> float:
        with (
            timer.patch(model, "render", render_labels),
            timer.patch(model, "neighbours", [mining] * h.nn),
            timer.patch(L, "mask_affinity_loss", [affinity] * affinity_calls),
        ):
            sync()
            t0 = time.perf_counter()
            loss_rec, loss_pose = model.objectives(*model.loss_terms(batch))
            sync()
            fwd = (time.perf_counter() - t0) * 1e3
        _update(opts, loss_rec, loss_pose)
        return fwd

    parts = list(dict.fromkeys(render_labels)) + [mining] * h.nn + [affinity] * bool(affinity_calls)
    step_ms, step_fwd, fwd, fb, calls, _ = share_rounds(step, timed_step, parts, repeats, warmup)
    source = f"bank of {len(model.bank)}" if h.nn_source == "bank" else "batch"
    case = f"B={B} P={P} {S}x{S} k={h.n_views} nn={h.n_neighbours} ({source})"
    common = {"bench": "ssl step share", "case": case}
    rows = [{**common, "part": "training step", "calls": 1, "fwd_ms": step_fwd, "fwd_bwd_ms": step_ms}]
    rows += share_rows(common, parts, calls, fwd, fb, step_ms)
    projections = [p for p in parts if p.startswith("projection")]
    all_fb = sum(fb[p] for p in projections)
    rows.append(
        {
            **common,
            "part": "projections, all",
            "calls": sum(calls[p] for p in projections),
            "fwd_ms": sum(fwd[p] for p in projections),
            "fwd_bwd_ms": all_fb,
            "share": all_fb / step_ms,
        }
    )
    return rows


# ------------------------------------------------------------------------------------------ 2. projection
def projection_cost(B: int, cases: Sequence[tuple[int, int]], device, repeats: int) -> list[dict]:
    """Rows: `SSLModule.render` of B clouds from k random views, per (P, S) (module docstring, 2.)."""
    g = torch.Generator().manual_seed(0)
    models: dict[int, SSLModule] = {}
    out = []
    for P, S in cases:
        if S not in models:
            models[S] = SSLModule(image_size=S, log_images=0).to(device)
        model = models[S]
        ds = SyntheticShapes(split="train", num_samples=B, category="car", image_size=16, num_points=P)
        pts = torch.stack([ds[i]["points"] for i in range(B)]).to(device)  # (B, P, 3)
        cols = torch.rand(B, P, 3, generator=g).to(device)
        poses = L.sample_views(B, N_VIEWS, g, device=device)  # (B, k, 2)

        def fwd(pts=pts, cols=cols, poses=poses, model=model):
            with torch.no_grad():
                model.render(pts, poses, cols)

        def fwd_bwd(pts=pts, cols=cols, poses=poses, model=model):
            p, c = pts.clone().requires_grad_(True), cols.clone().requires_grad_(True)
            views = model.render(p, poses, c)
            torch.autograd.backward(
                [views.images, views.masks], [torch.ones_like(views.images), torch.ones_like(views.masks)]
            )

        f = time_ms(fwd, repeats=repeats, warmup=1)
        fb = time_ms(fwd_bwd, repeats=repeats, warmup=0)  # the forward call above warmed it up
        out.append(
            {
                "bench": "ssl projection cost",
                "case": f"B={B} x k={N_VIEWS} views P={P} {S}x{S}",
                "part": "render (mask + colour)",
                "fwd_ms": f,
                "fwd_bwd_ms": fb,
                "ms_per_view": fb / (B * N_VIEWS),
                "_key": (P, S),
            }
        )
    ref = next((r["fwd_bwd_ms"] for r in out if r["_key"] == (1024, 64)), None)
    for r in out:
        del r["_key"]
        r["x_ref"] = r["fwd_bwd_ms"] / ref if ref else None
    return out


# ------------------------------------------------------------------------------------------ 3. throughput
def throughput(steps: int, device, overrides: Sequence[str] = ()) -> dict:
    from omegaconf import OmegaConf

    from datamodules.pointcloud.datamodule import PointCloudDataModule

    cfg = compose("ssl_synthetic_car_nn", list(overrides))
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("name")
    dm = PointCloudDataModule(**data, seed=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.pop("name")
    torch.manual_seed(0)
    model = SSLModule(**{**model_cfg, "log_images": 0}).to(device)
    opts = model.configure_optimizers()
    it = iter(loader)
    n_img, t0 = 0, None
    for i in range(steps + 1):  # 1 warm-up step
        if i == 1:
            sync()
            t0 = time.perf_counter()
            n_img = 0
        batch = next(it)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        _step_fn(model, opts, batch)()
        n_img += batch["image"].shape[0]
    sync()
    dt = time.perf_counter() - t0
    S = cfg.data.image_size
    how = "quick overrides" if overrides else "the experiment's sizes"
    return {
        "bench": "ssl_synthetic_car_nn throughput",
        "case": f"B={cfg.data.batch_size} P={cfg.model.n_points} {S}x{S} ({how}), data generation included",
        "images_per_s": n_img / dt,
        "step_ms": 1e3 * dt / steps,
    }


def run(quick: bool = True) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu_quick = quick and device.type == "cpu"
    if quick:
        rows = step_share(4, 32, 1024, device, repeats=2 if cpu_quick else 3)
        cases = [(256, 64), (1024, 64), (4096, 64), (1024, 32), (1024, 128)]
        rows += projection_cost(2, cases, device, repeats=3)
    else:
        rows = step_share(16, 64, 1024, device, repeats=3)
        cases = [(256, 64), (1024, 64), (4096, 64), (16384, 64), (1024, 32), (1024, 128), (1024, 256)]
        rows += projection_cost(16, cases, device, repeats=5)
    overrides = ("data.batch_size=4", "data.image_size=32") if cpu_quick else ()
    steps = 2 if cpu_quick else 5 if device.type == "cpu" else 20
    rows.append(throughput(steps, device, overrides))
    return rows


if __name__ == "__main__":
    from experiments.benchmarks.common import print_table

    print_table(run(quick=True), "ssl_training")
