"""Benchmarks run by `make bench` (python -m experiments bench). Each module exposes `run(quick) -> rows`."""
