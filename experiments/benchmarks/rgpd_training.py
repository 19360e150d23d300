"""RGPD training cost: one consistency training step against a plain SSI step, and the share of it spent
rendering (and in the network), at 64x64 and 384x384.

Steps: `RGPDModule.training_step` (Lightning's logging is a no-op without a trainer), backward and the
module's AdamW step (`configure_optimizers`, scheduler "none"), on one batch of synthetic scenes with
disparity-up-to-shift-and-scale labels (the rgpd_ssi* configs' data). "SSI step": `consistency=False`
(rgpd_ssi); "consistency step": L^SSI + 0.1 L^C with the multi-focal consistency over the F = 3 FOVs
{50, 60, 70} (rgpd_ssi_consistency's second stage: each step renders F * B novel views, re-predicts them with
the network, and renders them back; losses/rgpd.py). `x_ssi` = consistency step / SSI step.

Shares, measured as in experiments/benchmarks/ssl_training.py (`share_rounds`): per round, in turn, (a) the
plain consistency step; (b) the same step with `losses.rgpd.render_depth_novel_view` (both renders: the novel
view of Eq. 6 and the render back of Eq. 9) and the network's forward (`model.net.forward`: on the input
images, then on the F * B rendered ones) wrapped by a timer for the step only (monkeypatched), which gives
each part's forward time inside the step (`fwd_ms`); (c) every wrapped call replayed on the inputs it got in
(b), forward + backward with a ones upstream gradient (`fwd_bwd_ms`, the part with its backward; the
network's backward reaches its weights); (d) the SSI step. Medians over the rounds after a warm-up round;
`share` = the part's `fwd_bwd_ms` / the plain consistency step's.

Quick: batch 16 at 64x64 (the rgpd configs). Full: that, and 384x384 (GP2's training size) at batch 2 on a
CPU, at GP2's batch 8 on a GPU.
Threads: torch's default, as the other benchmarks (make bench prints the count).

    python -m experiments bench --only rgpd_training [--full]
"""

from __future__ import annotations

import time
import warnings

import torch

import losses.rgpd as LR
from experiments.benchmarks.common import PartTimer, depth_batch, share_rounds, share_rows, sync
from lightning_modules.rgpd.module import RGPDModule


def _module(consistency: bool, device) -> tuple[RGPDModule, torch.optim.Optimizer]:
    torch.manual_seed(0)  # the same initial network for both steps
    model = RGPDModule(consistency=consistency, scheduler="none", log_images=0).to(device)
    return model, model.configure_optimizers()


def _step(model: RGPDModule, opt, batch: dict):
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.training_step(batch, 0).backward()
        opt.step()

    return step


def step_share(B: int, size: int, device, repeats: int, warmup: int = 1) -> list[dict]:
    """Rows: the SSI step, the consistency step and the shares of its parts (module docstring)."""
    batch = depth_batch(B, size, device, uts_fraction=0.0, utss_fraction=1.0)
    ssi_model, ssi_opt = _module(False, device)
    model, opt = _module(True, device)
    F = len(model.hparams.train_fovs) if model.hparams.multi_focal else 1
    render = {"novel": "render: novel view (Eq. 6)", "back": "render: back to the input (Eq. 9)"}
    net = {"input": "network: input images", "re": f"network: re-prediction of {F}*B renders"}

    def timed_step(timer: PartTimer) -> float:
        opt.zero_grad(set_to_none=True)
        with (
            timer.patch(LR, "render_depth_novel_view", [render["novel"], render["back"]]),
            timer.patch(model.net, "forward", [net["input"], net["re"]]),
        ):
            sync()
            t0 = time.perf_counter()
            loss = model.training_step(batch, 0)
            sync()
            fwd = (time.perf_counter() - t0) * 1e3
        loss.backward()
        opt.step()
        return fwd

    parts = [render["novel"], render["back"], net["input"], net["re"]]
    step = _step(model, opt, batch)
    ssi = _step(ssi_model, ssi_opt, batch)
    step_ms, step_fwd, fwd, fb, calls, (ssi_ms,) = share_rounds(
        step, timed_step, parts, repeats, warmup, others=[ssi]
    )
    common = {"bench": "rgpd step", "case": f"B={B} {size}x{size} F={F}"}
    rows = [
        {**common, "part": "SSI step", "calls": 1, "fwd_ms": None, "fwd_bwd_ms": ssi_ms},
        {
            **common,
            "part": "consistency step",
            "calls": 1,
            "fwd_ms": step_fwd,
            "fwd_bwd_ms": step_ms,
            "x_ssi": step_ms / ssi_ms,
        },
    ]
    rows += share_rows(common, parts, calls, fwd, fb, step_ms)
    both = fb[render["novel"]] + fb[render["back"]]
    rows.append(
        {
            **common,
            "part": "rendering, both",
            "calls": calls[render["novel"]] + calls[render["back"]],
            "fwd_ms": fwd[render["novel"]] + fwd[render["back"]],
            "fwd_bwd_ms": both,
            "share": both / step_ms,
        }
    )
    return rows


def run(quick: bool = True) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device.type == "cpu"
    cases = [(16, 64)] if quick else [(16, 64), (2 if cpu else 8, 384)]
    rows: list[dict] = []
    with warnings.catch_warnings():
        # training_step's self.log without a trainer warns and does nothing
        warnings.filterwarnings("ignore", message=r".*self\.log\(\).*")
        for B, size in cases:
            rows += step_share(B, size, device, repeats=3 if quick or not cpu or size < 384 else 2)
    return rows


if __name__ == "__main__":
    from experiments.benchmarks.common import print_table

    print_table(run(quick=True), "rgpd_training")
