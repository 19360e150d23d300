"""Shared timing / memory helpers and the table printer for `make bench`.

Rows are dicts; every module of experiments/benchmarks returns a list of them from `run(quick: bool)`.
Recommended keys: "bench", "case", "impl", "fwd_ms", "fwd_bwd_ms", "peak_mb", "note".
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import torch


def sync(device: torch.device | str | None = None) -> None:
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of `fn()` in milliseconds (CUDA-synchronized)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def _child(fn, q):  # pragma: no cover - runs in a forked process
    # GNU OpenMP is not fork-safe: a parallel region in a child forked after the parent used its thread pool
    # hangs. One thread runs torch's ops inline (no OpenMP region); the peak memory is the same.
    torch.set_num_threads(1)
    # A forked child inherits the parent's peak RSS: reset the high-water mark to the current RSS first
    # (Linux >= 4.0, /proc/PID/clear_refs value 5), then read it back after the call.
    # Freed-but-cached heap pages that the parent left resident would be reused without raising the RSS:
    # hand them back to the OS first (glibc), so that every byte `fn` allocates is counted.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_mb("VmRSS")
    fn()
    q.put(_status_mb("VmHWM") - base)


def peak_memory_mb(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Peak memory that `fn()` adds, in MiB.

    CUDA: `torch.cuda.max_memory_allocated` around the call. CPU: `fn` runs in a forked, single-threaded
    process and the result is its peak resident set size minus its resident size before the call (Linux
    only), so it counts every allocation torch makes, including the autograd graph.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, q))
    p.start()
    p.join()
    return float(q.get()) if p.exitcode == 0 else float("nan")


def print_table(rows: list[dict], title: str | None = None) -> str:
    """Format rows as an aligned text table (columns in first-seen key order); returns and prints it."""
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = []
    if title:
        lines.append(f"== {title} ==")
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    out = "\n".join(lines)
    print(out, flush=True)
    return out


# ------------------------------------------------------------------------------------------ part timing
def _snapshot(x):
    """A captured argument: tensors as (detached tensor, requires_grad), anything else as it is."""
    return ("tensor", x.detach(), x.requires_grad) if isinstance(x, torch.Tensor) else ("value", x)


def _restore(s):
    if s[0] == "tensor":
        return s[1].detach().requires_grad_(s[2])
    return s[1]


def _tensors(x) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for y in x:
            yield from _tensors(y)


class PartTimer:
    """Wraps functions that a step calls with a timer and records each call's label, forward time (ms,
    synchronized) and inputs. Labels are given per call in call order, and may repeat (their times add up).

        timer = PartTimer()
        with timer.patch(model, "render", ["input view", "k views"]):
            step()
        timer.ms  # {label: forward ms of this step}
    """

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[tuple[Callable, tuple, dict]]] = defaultdict(list)

    def reset(self) -> None:
        self.ms.clear()
        self.calls.clear()

    @contextlib.contextmanager
    def patch(self, owner, attr: str, labels: Sequence[str]) -> Iterator[None]:
        """`owner.attr` (a module's function or an instance's method) timed for the block; the block must
        call it exactly len(labels) times (RuntimeError otherwise: the step changed, update the labels)."""
        orig = getattr(owner, attr)
        own = attr in vars(owner)
        saved = vars(owner)[attr] if own else None
        n = [0]

        def timed(*args, **kwargs):
            i = n[0]
            n[0] += 1
            label = labels[i] if i < len(labels) else f"{attr} call {i + 1}"
            sync()
            t0 = time.perf_counter()
            out = orig(*args, **kwargs)
            sync()
            self.ms[label] += (time.perf_counter() - t0) * 1e3
            snap = tuple(map(_snapshot, args)), {k: _snapshot(v) for k, v in kwargs.items()}
            self.calls[label].append((orig, *snap))
            return out

        setattr(owner, attr, timed)
        try:
            yield
        finally:
            if own:
                setattr(owner, attr, saved)
            else:
                delattr(owner, attr)
        if n[0] != len(labels):
            raise RuntimeError(
                f"{attr} was called {n[0]} times in the step, the benchmark expects {len(labels)} "
                f"({list(labels)}): update its labels"
            )

    def replay(self, label: str) -> None:
        """Forward + backward (ones upstream gradient into every output that requires grad) of the calls
        recorded under `label`, on fresh leaves of their recorded inputs."""
        for fn, args, kwargs in self.calls[label]:
            out = fn(*map(_restore, args), **{k: _restore(v) for k, v in kwargs.items()})
            outs = [t for t in _tensors(out) if t.requires_grad]
            if outs:
                torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])


def share_rounds(
    step: Callable[[], None],
    timed_step: Callable[[PartTimer], float],
    parts: Sequence[str],
    repeats: int,
    warmup: int = 1,
    others: Sequence[Callable[[], None]] = (),
) -> tuple[float, float, dict[str, float], dict[str, float], dict[str, int], list[float]]:
    """Rounds of (plain step, timed step, replay of each part, each of `others`), medians over the `repeats`
    rounds after `warmup` (the mean of the middle two for an even count). `timed_step(timer)` runs the step
    with the parts patched into `timer` and returns its forward time (ms). Returns (step_ms, step_fwd_ms,
    part fwd_ms, part fwd_bwd_ms, part calls, others' ms)."""
    timer = PartTimer()
    t_step, t_fwd = [], []
    t_others: list[list[float]] = [[] for _ in others]
    fwd: dict[str, list[float]] = {p: [] for p in parts}
    fb: dict[str, list[float]] = {p: [] for p in parts}
    calls: dict[str, int] = {}
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        t_plain = (time.perf_counter() - t0) * 1e3
        timer.reset()
        f = timed_step(timer)
        t_replay = {p: time_ms(lambda p=p: timer.replay(p), repeats=1, warmup=0) for p in parts}
        t_other = [time_ms(fn, repeats=1, warmup=0) for fn in others]
        if i < warmup:
            continue
        for t, x in zip(t_others, t_other):
            t.append(x)
        t_step.append(t_plain)
        t_fwd.append(f)
        for p in parts:
            fwd[p].append(timer.ms[p])
            fb[p].append(t_replay[p])
            calls[p] = len(timer.calls[p])

    med = statistics.median
    fwd_ms, fb_ms = {p: med(v) for p, v in fwd.items()}, {p: med(v) for p, v in fb.items()}
    return med(t_step), med(t_fwd), fwd_ms, fb_ms, calls, [med(t) for t in t_others]


def share_rows(
    common: dict, parts: list[str], calls: dict, fwd: dict, fwd_bwd: dict, step_ms: float
) -> list[dict]:
    """One table row per timed part of a step: its calls, in-step forward ms, replayed forward + backward ms
    and its share of the plain step (`share_rounds`' outputs)."""
    return [
        {
            **common,
            "part": p,
            "calls": calls[p],
            "fwd_ms": fwd[p],
            "fwd_bwd_ms": fwd_bwd[p],
            "share": fwd_bwd[p] / step_ms,
        }
        for p in parts
    ]


def depth_batch(B: int, size: int, device, uts_fraction: float = 0.5, utss_fraction: float = 0.25) -> dict:
    """A collated batch of B synthetic rooms at size x size on `device` (the depth benchmarks' input)."""
    from datamodules.depth.datamodule import collate_depth
    from datamodules.depth.synthetic import SyntheticDepth

    ds = SyntheticDepth(
        split="train",
        num_samples=B,
        image_size=(size, size),
        uts_fraction=uts_fraction,
        utss_fraction=utss_fraction,
    )
    batch = collate_depth([ds[i] for i in range(B)])
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
