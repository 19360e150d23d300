"""Sweeps: W&B sweep YAML files under experiments/sweeps whose parameters are dotted config keys.

Online (`--online`, W&B configured): W&B creates the sweep (`wandb.sweep`, in this process) and
`<this interpreter> -m wandb agent` runs it. The sweep's `command` is replaced by
`[<this interpreter>, -m, experiments, train, ${args_no_hyphens}]`: W&B's `${interpreter}` macro (and a
bare `python`) would be whatever `python` is on PATH, not the project's virtual environment.
Offline (default): the same file is walked locally — grid (every combination) or random (`--count` samples,
seeded) — each run trained in turn with its own run directory under runs/sweeps/<sweep>-<time>/ and tracked
offline; then a table of the runs sorted by the sweep's metric is printed and written as summary.json.
Supported parameter specs: value, values, min/max with distribution uniform | int_uniform |
log_uniform_values (W&B's names).
Options (--count N, --online) may come anywhere among the key=value overrides; an unknown option is a
ConfigError.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.config import SWEEP_DIR, ConfigError, compose

RUNS_ROOT = Path("runs") / "sweeps"


def list_sweeps() -> list[str]:
    return sorted(p.stem for p in SWEEP_DIR.glob("*.yaml"))


def load_sweep(name_or_path: str) -> tuple[str, dict]:
    path = Path(name_or_path)
    if not path.is_file():
        path = SWEEP_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown sweep {name_or_path!r}: no file {path}. Available: {', '.join(list_sweeps())}"
        )
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("method", "metric", "parameters"):
        if key not in spec:
            raise ConfigError(
                f"{path}: missing key {key!r} (a W&B sweep file needs method, metric, parameters)"
            )
    if spec["method"] not in ("grid", "random"):
        raise ConfigError(f"{path}: method {spec['method']!r}: the offline runner does grid and random")
    if "exp" not in spec["parameters"]:
        raise ConfigError(f"{path}: parameters must fix the experiment, e.g. `exp: {{value: gp2_synthetic}}`")
    return path.stem, spec


def _sample(p: dict, rng: random.Random) -> Any:
    if "value" in p:
        return p["value"]
    if "values" in p:
        return rng.choice(p["values"])
    dist = p.get("distribution", "uniform")
    lo, hi = p["min"], p["max"]
    if dist == "int_uniform":
        return rng.randint(lo, hi)
    if dist == "uniform":
        return rng.uniform(lo, hi)
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    raise ConfigError(f"parameter distribution {dist!r} is not supported offline")


def expand(spec: dict, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The runs of a sweep, each a {dotted key: value} dict (grid: all combinations; random: `count`)."""
    params = spec["parameters"]
    if spec["method"] == "grid":
        keys = list(params)
        for k in keys:
            if "value" not in params[k] and "values" not in params[k]:
                raise ConfigError(f"grid sweep: parameter {k!r} needs value or values")
        grids = [[params[k]["value"]] if "value" in params[k] else params[k]["values"] for k in keys]
        runs = [dict(zip(keys, combo)) for combo in itertools.product(*grids)]
        return runs[:count] if count else runs
    rng = random.Random(seed)
    n = count or spec.get("run_cap") or 4
    return [{k: _sample(p, rng) for k, p in params.items()} for _ in range(n)]


def as_overrides(params: dict[str, Any]) -> list[str]:
    """A run's {dotted key: value} (less `exp`) as command-line overrides; JSON is valid YAML flow style."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items() if k != "exp"]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _leaves(v: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.0.b": leaf} of nested lists / dicts."""
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else None
    if items is None:
        return {prefix: v}
    out: dict[str, Any] = {}
    for k, x in items:
        out.update(_leaves(x, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _short(rows: list[dict], col: str) -> list[str]:
    """A column's cells; nested values (e.g. a list of data entries) shown by the leaves that vary."""
    if not any(isinstance(r[col], (list, dict)) for r in rows):
        return [_fmt(r[col]) for r in rows]
    leaves = [_leaves(r[col]) for r in rows]
    varying = [k for k in leaves[0] if any(lv.get(k) != leaves[0][k] for lv in leaves)]
    return [" ".join(f"{k.split('.')[-1]}={_fmt(lv.get(k))}" for k in varying) for lv in leaves]


def run_offline(
    name: str, spec: dict, count: int | None = None, extra: list[str] | None = None
) -> list[dict]:
    from experiments import runner

    runs = expand(spec, count)
    metric, goal = spec["metric"]["name"], spec["metric"].get("goal", "minimize")
    root = RUNS_ROOT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    # Validate every run's config before training any of them.
    cfgs = []
    for i, params in enumerate(runs):
        overrides = as_overrides(params)
        overrides += list(extra or []) + [f"run_dir={root / f'run{i:02d}'}", f"logger.group={root.name}"]
        cfgs.append(compose(params["exp"], overrides))
    rows = []
    for i, (params, cfg) in enumerate(zip(runs, cfgs)):
        print(f"\n=== sweep {name}: run {i + 1}/{len(runs)}: {params}", flush=True)
        result = runner.train(cfg)
        split = "val" if metric.startswith("val/") else "test"
        rows.append(
            {
                "run": i,
                **params,
                metric: result.get(split, {}).get(metric, float("nan")),
                "run_dir": result["run_dir"],
            }
        )
    rows.sort(key=lambda r: (math.isnan(r[metric]), r[metric] if goal == "minimize" else -r[metric]))
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps(rows, indent=2))
    cols = [c for c in rows[0] if c not in ("run_dir", "exp")] + ["run_dir"]
    cells = {c: _short(rows, c) for c in cols}
    widths = [max(len(c), *(len(x) for x in cells[c])) for c in cols]
    print(f"\nsweep {name} ({runs[0]['exp']}): {len(rows)} runs sorted by {metric} ({goal})")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for i in range(len(rows)):
        print("  ".join(cells[c][i].ljust(w) for c, w in zip(cols, widths)))
    return rows


def online_spec(spec: dict, extra: list[str] | None = None) -> dict:
    """The sweep as W&B gets it: `extra` overrides (and logger.mode=online) become fixed parameters, and the
    command runs this interpreter (`${interpreter}` would be the `python` on PATH, not the venv's)."""
    from experiments.config import parse_overrides

    fixed = {"logger.mode": "online", **parse_overrides(list(extra or []))}
    return {
        **spec,
        "parameters": {**spec["parameters"], **{k: {"value": v} for k, v in fixed.items()}},
        "command": [sys.executable, "-m", "experiments", "train", "${args_no_hyphens}"],
    }


def agent_command(sweep_id: str, spec: dict, count: int | None = None) -> list[str]:
    """`wandb agent` run by this interpreter (`wandb` need not be on PATH, e.g. under make)."""
    cmd = [sys.executable, "-m", "wandb", "agent", "--project", spec.get("project", "sv3d")]
    if spec.get("entity"):
        cmd += ["--entity", spec["entity"]]
    if count:
        cmd += ["--count", str(count)]
    return cmd + [sweep_id]


def run_online(path: Path, spec: dict, count: int | None, extra: list[str] | None = None) -> int:
    """Create the sweep with W&B and run `wandb agent` here; `extra` overrides become fixed parameters."""
    import wandb

    for params in expand(spec, count):  # bad overrides stop here, not in every W&B run
        compose(params["exp"], as_overrides(params) + list(extra or []))
    spec = online_spec(spec, extra)
    sweep_id = wandb.sweep(sweep=spec, project=spec.get("project", "sv3d"), entity=spec.get("entity"))
    return subprocess.call(agent_command(sweep_id, spec, count))


class OptionParser(argparse.ArgumentParser):
    """argparse whose errors (unknown option, missing value) are one-line ConfigErrors, not exit(2)."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def main(argv: list[str]) -> int:
    p = OptionParser(prog="python -m experiments sweep")
    p.add_argument("sweep", help="name under experiments/sweeps or a path to a sweep YAML")
    p.add_argument("--count", type=int, default=None, help="number of runs (random: samples; grid: first N)")
    p.add_argument(
        "--online", action="store_true", help="create and run the sweep with W&B (needs W&B login)"
    )
    p.add_argument("overrides", nargs="*", help="key=value applied to every run (e.g. trainer.max_epochs=1)")
    ns = p.parse_intermixed_args(argv)  # options anywhere among the overrides
    name, spec = load_sweep(ns.sweep)
    if ns.online:
        return run_online(SWEEP_DIR / f"{name}.yaml", spec, ns.count, ns.overrides)
    run_offline(name, spec, ns.count, ns.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
