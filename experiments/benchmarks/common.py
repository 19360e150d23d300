"""Shared timing / memory helpers and the table printer for `make bench`.

Rows are dicts; every module of experiments/benchmarks returns a list of them from `run(quick: bool)`.
Recommended keys: "bench", "case", "impl", "fwd_ms", "fwd_bwd_ms", "peak_mb", "note".
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import time
from collections.abc import Callable

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
