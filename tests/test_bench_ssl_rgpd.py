"""Benchmarks ssl_training and rgpd_training: the part-timing method on known costs, and a smoke run of each
at tiny sizes (the table's rows, shares in (0, 1], no part slower than its step)."""

from __future__ import annotations

import time

import pytest
import torch

import experiments.bench
import losses.rgpd as LR
import losses.ssl_pointcloud as L
from experiments.benchmarks import rgpd_training, ssl_training
from experiments.benchmarks.common import PartTimer, share_rounds

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread (restored afterwards): on a loaded 2-core box OpenMP's spinning makes the first
    steps of these tiny models seconds instead of ~0.1 s each with two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_share_rounds_measures_a_known_part_and_replays_its_backward():
    """A 60 ms step that spends 20 ms in `part`: the timer sees >= 20 ms of it inside the step, the share is
    about a third, and the replay runs the part's backward with a ones upstream gradient."""
    v = torch.tensor(3.0, requires_grad=True)  # a weight the part uses (not one of its arguments)

    def part(x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return x * v

    ns = type("NS", (), {"part": staticmethod(part)})
    w = torch.tensor(2.0, requires_grad=True)
    x0 = torch.arange(3.0)

    def body():
        x = x0 * w  # requires grad, as an activation in a step
        time.sleep(0.04)
        return ns.part(x).sum()

    def step():
        body().backward()

    def timed_step(timer: PartTimer) -> float:
        with timer.patch(ns, "part", ["the part"]):
            t0 = time.perf_counter()
            loss = body()
            fwd = (time.perf_counter() - t0) * 1e3
        loss.backward()
        return fwd

    step_ms, step_fwd, fwd, fb, calls, _ = share_rounds(step, timed_step, ["the part"], repeats=1, warmup=0)
    assert ns.part is part, "the patched function was not restored"
    assert calls == {"the part": 1}
    assert fwd["the part"] >= 20.0 and fb["the part"] >= 20.0, (fwd, fb)
    assert step_ms >= 60.0 and step_fwd >= 60.0, (step_ms, step_fwd)
    assert fwd["the part"] <= step_fwd and fb["the part"] <= step_ms
    assert 0.15 < fb["the part"] / step_ms < 0.6, (fb, step_ms)

    # the replay: a fresh leaf of the recorded x (it required grad), ones upstream: d/dv sum(x v) = sum(x)
    timer = PartTimer()
    timed_step(timer)
    v.grad, w.grad = None, None
    timer.replay("the part")
    torch.testing.assert_close(v.grad, (x0 * 2.0).sum(), rtol=0, atol=0)
    assert w.grad is None, "the replay reached past the part's inputs"


def test_patch_counts_the_calls_and_restores_an_instance_method():
    model = torch.nn.Linear(2, 2)
    timer = PartTimer()
    with pytest.raises(
        RuntimeError, match=r"forward was called 1 times in the step, the benchmark expects 2"
    ):
        with timer.patch(model, "forward", ["a", "b"]):
            model(torch.zeros(1, 2))
    assert "forward" not in vars(model)
    timer.reset()
    with timer.patch(model, "forward", ["a", "a"]):
        model(torch.zeros(1, 2))
        model(torch.zeros(3, 2))
    assert "forward" not in vars(model) and len(timer.calls["a"]) == 2 and timer.ms["a"] > 0


def test_both_benchmarks_are_registered():
    assert {"ssl_training", "rgpd_training"} <= set(experiments.bench.modules())


def _check_share_rows(rows: list[dict], step_part: str, expected_parts: set[str]) -> dict:
    by_part = {r["part"]: r for r in rows}
    assert set(by_part) == expected_parts | {step_part}, sorted(by_part)
    step = by_part[step_part]
    for r in rows:
        if r["part"] in expected_parts:
            assert 0.0 < r["share"] <= 1.0, r
            assert r["fwd_bwd_ms"] <= step["fwd_bwd_ms"], (r, step)
            assert r["fwd_ms"] <= step["fwd_ms"], (r, step)
            torch.testing.assert_close(r["share"], r["fwd_bwd_ms"] / step["fwd_bwd_ms"])
    return by_part


def test_ssl_step_share_smoke():
    rows = ssl_training.step_share(B=3, S=16, P=64, device=CPU, repeats=1, bank_size=8)
    assert rows[0]["case"] == "B=3 P=64 16x16 k=4 nn=2 (bank of 8)", rows[0]
    assert L.mask_affinity_loss.__qualname__ == "mask_affinity_loss", "mask_affinity_loss not restored"
    projections = {"projection: input view", "projection: k=4 random views", "projection: 2 neighbour views"}
    parts = projections | {"neighbour mining", "mask affinity (Eq. 3)", "projections, all"}
    by_part = _check_share_rows(rows, "training step", parts)
    assert by_part["mask affinity (Eq. 3)"]["calls"] == 2  # the input view's and the neighbours' masks
    assert all(by_part[p]["calls"] == 1 for p in projections | {"neighbour mining"})
    total = sum(by_part[p]["fwd_bwd_ms"] for p in projections)
    torch.testing.assert_close(by_part["projections, all"]["fwd_bwd_ms"], total)


def test_ssl_projection_cost_smoke():
    rows = ssl_training.projection_cost(1, [(64, 16), (1024, 64), (256, 16)], CPU, repeats=1)
    assert [r["case"] for r in rows] == [
        "B=1 x k=4 views P=64 16x16",
        "B=1 x k=4 views P=1024 64x64",
        "B=1 x k=4 views P=256 16x16",
    ]
    assert rows[1]["x_ref"] == 1.0
    assert all(r["fwd_bwd_ms"] > 0 and r["x_ref"] > 0 for r in rows)
    torch.testing.assert_close(rows[0]["ms_per_view"], rows[0]["fwd_bwd_ms"] / 4)


def test_rgpd_step_share_smoke():
    rows = rgpd_training.step_share(B=2, size=32, device=CPU, repeats=1)
    assert LR.render_depth_novel_view.__qualname__ == "render_depth_novel_view", "render not restored"
    parts = {
        "render: novel view (Eq. 6)",
        "render: back to the input (Eq. 9)",
        "network: input images",
        "network: re-prediction of 3*B renders",
        "rendering, both",
    }
    by_part = _check_share_rows([r for r in rows if r["part"] != "SSI step"], "consistency step", parts)
    assert {r["part"] for r in rows} == parts | {"consistency step", "SSI step"}
    both = (
        by_part["render: novel view (Eq. 6)"]["fwd_bwd_ms"]
        + by_part["render: back to the input (Eq. 9)"]["fwd_bwd_ms"]
    )
    torch.testing.assert_close(by_part["rendering, both"]["fwd_bwd_ms"], both)
    ssi = next(r for r in rows if r["part"] == "SSI step")
    # the consistency step does all the SSI step does, plus 3 B re-predictions and 2 renders
    assert by_part["consistency step"]["x_ssi"] > 1.0, (ssi, by_part["consistency step"])
