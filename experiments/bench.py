"""`make bench`: every benchmark module of experiments/benchmarks, each printing its table.

Speed and memory are measured here, side by side in one run (these machines are noisy: compare the ratios
within one table, not absolute numbers across runs). `--full` runs the large sizes too; `--only NAME`
runs one module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time

import torch

import experiments.benchmarks as pkg
from experiments.config import ConfigError


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name != "common")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments bench")
    p.add_argument("--full", action="store_true", help="large sizes too (slow on CPU)")
    p.add_argument("--only", action="append", default=None, help=f"one of {modules()}")
    ns = p.parse_args(argv)
    available = modules()
    unknown = [n for n in ns.only or () if n not in available]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ConfigError(f"bench --only: unknown benchmark {names}; available: {', '.join(available)}")
    from experiments.benchmarks.common import print_table

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, quick={not ns.full}")
    for name in ns.only or available:
        mod = importlib.import_module(f"experiments.benchmarks.{name}")
        t0 = time.perf_counter()
        rows = mod.run(quick=not ns.full)
        print_table(rows, title=f"{name} ({time.perf_counter() - t0:.0f} s)")
        print()
    return 0
