"""Reports: reproduce a paper's table or figure from declared runs, with our numbers beside the paper's.

  python -m experiments report NAME [key=value ...] [--out DIR] [--seeds 0,1] [--resume] [--dry-run]

NAME is a file experiments/reports/<NAME>.yaml (or a path to one). The command
  1. composes the config of every run the report declares (entries x seeds) and checks every run
     directory before training anything; then trains (or evaluates) the runs that are missing, in order;
  2. writes <out>/report.md (our mean and spread over seeds beside the paper's published numbers, the seeds,
     the exact command behind every number, plots) and <out>/report.json (the same table as data).
<out> is runs/reports/<NAME> unless --out DIR; run k of entry E lives in <out>/E/seed<k>.
key=value overrides apply to every run (after the report's and the entry's own overrides), e.g.
trainer.max_epochs=1 to shrink a report; seeds come from --seeds (not seed=), directories from --out.

Reuse: a run directory that holds metrics.json (a finished run) and a config.yaml equal to the newly
composed config is reused, not retrained. Keys that cannot change the numbers are ignored in that
comparison (IGNORED_KEYS: run_dir, ckpt_path, the logger group, the progress bar, logging frequency and the
visualizer's sizes); everything else, data.num_workers included, must match. An evaluation entry also
compares the checkpoint it evaluated. A directory holding a different config is an error naming the
directory and the first differing keys (nothing is overwritten: pick another --out or delete it); so is an
unfinished run (no metrics.json), unless --resume continues it from its checkpoints/last.ckpt.

Report file (YAML; unknown keys are errors):
  title: str                        heading of report.md
  citation: str                     how the published numbers are cited, e.g. "GP2 Table 2"
  paper: str                        the paper's reference
  source: str                       optional: where the numbers were read (file, section)
  description: str                  optional Markdown under the heading (how our setting differs, ...)
  seeds: [0, 1, 2]                  seeds of every entry (default [0]); an entry may have its own `seeds`
  overrides: [key=value, ...]       applied to every run (a {key: value} mapping works too)
  columns:                          the table: one column per metric, ours beside the paper's
    - metric: test/absrel           a key of metrics.json's "val" or "test" dict
      label: "rel (%)"              column heading
      scale: 100                    optional factor applied to our values (to the paper's units)
      fmt: ".2f"                    optional format of our numbers (default ".3f")
      paper: rel                    optional key of the entries' `paper` dicts shown beside
  entries:                          the rows, each trained (or evaluated) once per seed
    - name: l1_pair                 directory name: letters, digits, _ . + -
      label: "L1-pair"              optional row label (default: name)
      experiment: gp2_synthetic
      overrides: [model.loss=pairwise_l1]
      ckpt_path: PATH               optional: evaluate this checkpoint (experiments.runner.evaluate) instead
                                    of training; "{seed}" and "{out}" in it are replaced
      x: 0.1                        optional: the entry's x in the plots
      paper_label: "L1-pair, UTS"   optional: the paper's name of the row
      paper: {rel: "9.16"}          optional: the published numbers, exactly as printed (quote them)
    - sweep: gp2_uts_fraction       or: the runs of a sweep file (experiments.sweep.load_sweep / expand)
      count: null                   optional: first N (grid) or N samples (random)
      name: "mix_p{data.train.0.uts_fraction}"   template over the run's parameters (leaves of lists too)
      label: "..."                  optional template;  x: data.train.0.uts_fraction   optional leaf key
      overrides: [...]              optional, added after the sweep's parameters
  plots:                            optional PNGs (matplotlib, Agg), one line per series
    - file: fig3.png
      title: str
      metric: test/delta125_bad     y: our mean over seeds (error bars: std), times `scale`
      scale: 1
      xlabel: str;  ylabel: str;  xscale: 100 (optional factor on the entries' x)
      series: [{label: "UTS + UTSS", entries: [name, ...]}, ...]
"""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from experiments.config import ConfigError, compose, parse_overrides, to_container
from experiments.sweep import OptionParser, _fmt, _leaves, as_overrides, expand, load_sweep

REPORT_DIR = Path(__file__).parent / "reports"
RUNS_ROOT = Path("runs") / "reports"
# Dotted config keys (and their subtrees) that cannot change a run's numbers: ignored when deciding whether
# an existing run directory holds the run a report asks for. ckpt_path: a resumed run saved the original
# config; an evaluation's checkpoint is compared separately (report-run.json / metrics.json).
IGNORED_KEYS = (
    "run_dir",
    "ckpt_path",
    "overrides",  # the command line compose() recorded: the resolved config is compared, not how it was made
    "logger",
    "choices.logger",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "model.log_images",
    "model.log_points",
)
# keys a report sets itself for each run (from --seeds, --out and an entry's ckpt_path)
RESERVED_KEYS = ("seed", "run_dir", "ckpt_path")
SIDE_FILE = "report-run.json"  # written by the report next to a run's metrics.json
FAILED_FILE = "failed.txt"  # the runner's record of a run that raised
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_TOP_KEYS = {
    "title": str,
    "citation": str,
    "paper": str,
    "source": str,
    "description": str,
    "seeds": list,
    "overrides": (list, dict),
    "columns": list,
    "entries": list,
    "plots": list,
}
_COLUMN_KEYS = {"metric": str, "label": str, "scale": (int, float), "fmt": str, "paper": str}
_ENTRY_KEYS = {
    "name": str,
    "label": str,
    "experiment": str,
    "overrides": (list, dict),
    "seeds": list,
    "ckpt_path": str,
    "x": (int, float),
    "paper_label": str,
    "paper": dict,
}
_SWEEP_KEYS = {
    "sweep": str,
    "count": (int, type(None)),
    "name": str,
    "label": str,
    "x": str,
    "overrides": (list, dict),
    "seeds": list,
}
_PLOT_KEYS = {
    "file": str,
    "title": str,
    "metric": str,
    "scale": (int, float),
    "xlabel": str,
    "ylabel": str,
    "xscale": (int, float),
    "series": list,
}
_SERIES_KEYS = {"label": str, "entries": list}


def list_reports() -> list[str]:
    return sorted(p.stem for p in REPORT_DIR.glob("*.yaml"))


# ------------------------------------------------------------------------------------------ loading
def _check_keys(d: Any, spec: dict, where: str, required: tuple[str, ...] = ()) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__} {d!r}")
    for key, value in d.items():
        if key not in spec:
            raise ConfigError(f"{where}: unknown key {key!r}. Known keys: {', '.join(spec)}")
        if not isinstance(value, spec[key]) or isinstance(value, bool) and spec[key] in ((int, float), int):
            raise ConfigError(f"{where}.{key}: expected {_type_names(spec[key])}, got {value!r}")
    for key in required:
        if key not in d:
            raise ConfigError(f"{where}: missing key {key!r}")


def _type_names(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    names = {str: "a string", list: "a list", dict: "a mapping", int: "a number", float: "a number"}
    return " or ".join(dict.fromkeys(names.get(x, "null") for x in ts))


def _overrides(value: Any, where: str) -> list[str]:
    """A list of key=value strings, or a {key: value} mapping, as key=value strings."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()]
    if not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{where}: expected key=value strings, got {value!r}")
    try:
        keys = parse_overrides(value)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    for k in keys:
        if k in RESERVED_KEYS:
            raise ConfigError(
                f"{where}: {k!r} is set by the report for each run (seed: the file's seeds or --seeds; "
                "run_dir: --out; ckpt_path: an entry's ckpt_path)"
            )
    return list(value)


def _seeds(value: Any, where: str) -> list[int]:
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ConfigError(f"{where}: expected a non-empty list of integer seeds, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: repeated seed in {value!r}")
    return list(value)


def _template(text: str, leaves: dict[str, Any], where: str) -> str:
    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in leaves:
            raise ConfigError(
                f"{where}: no parameter {key!r} in the sweep's runs. Known: {', '.join(leaves)}"
            )
        return _fmt(leaves[key])

    return re.sub(r"\{([^{}]+)\}", sub, text)


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = REPORT_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown report {name_or_path!r}: no file {path}. Available: {', '.join(list_reports())}"
        )
    return path


def load_report(name_or_path: str) -> dict:
    """The report file, validated, its sweep items expanded into entries: {"name", "path", ..., "entries"}."""
    path = resolve(name_or_path)
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from e
    where = str(path)
    _check_keys(spec, _TOP_KEYS, where, required=("title", "citation", "columns", "entries"))
    seeds = _seeds(spec.get("seeds", [0]), f"{where}: seeds")
    report = {
        "name": path.stem,
        "path": str(path),
        "title": spec["title"],
        "citation": spec["citation"],
        "paper": spec.get("paper", ""),
        "source": spec.get("source", ""),
        "description": spec.get("description", ""),
        "seeds": seeds,
        "overrides": _overrides(spec.get("overrides"), f"{where}: overrides"),
    }
    columns = []
    for i, col in enumerate(spec["columns"]):
        w = f"{where}: columns[{i}]"
        _check_keys(col, _COLUMN_KEYS, w, required=("metric",))
        if not col["metric"].startswith(("val/", "test/")):
            raise ConfigError(f"{w}.metric: expected a val/... or test/... metric, got {col['metric']!r}")
        fmt = col.get("fmt", ".3f")
        try:
            format(1.0, fmt)
        except ValueError as e:
            raise ConfigError(f"{w}.fmt: not a number format: {fmt!r}") from e
        columns.append(
            {"metric": col["metric"], "label": col.get("label", col["metric"]), "scale": col.get("scale", 1)}
            | {"fmt": fmt, "paper": col.get("paper")}
        )
    report["columns"] = columns
    entries: list[dict] = []
    for i, item in enumerate(spec["entries"]):
        w = f"{where}: entries[{i}]"
        if isinstance(item, dict) and "sweep" in item:
            entries += _sweep_entries(item, w, seeds)
        else:
            _check_keys(item, _ENTRY_KEYS, w, required=("name", "experiment"))
            if item.get("paper") is not None:
                for k, v in item["paper"].items():
                    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                        raise ConfigError(f"{w}.paper.{k}: expected a number or string, got {v!r}")
            entries.append(
                {
                    "name": item["name"],
                    "label": item.get("label", item["name"]),
                    "experiment": item["experiment"],
                    "overrides": _overrides(item.get("overrides"), f"{w}.overrides"),
                    "seeds": _seeds(item["seeds"], f"{w}.seeds") if "seeds" in item else seeds,
                    "ckpt_path": item.get("ckpt_path"),
                    "x": item.get("x"),
                    "paper_label": item.get("paper_label", ""),
                    "paper": {str(k): v for k, v in (item.get("paper") or {}).items()},
                }
            )
    names = set()
    for e in entries:
        if not _NAME.match(e["name"]):
            raise ConfigError(f"{where}: entry name {e['name']!r}: use letters, digits and _ . + - only")
        if e["name"] in names:
            raise ConfigError(f"{where}: entry name {e['name']!r} is used twice")
        names.add(e["name"])
    for c in columns:
        if c["paper"] is not None:
            for e in entries:
                if e["paper"] and c["paper"] not in e["paper"]:
                    raise ConfigError(
                        f"{where}: entry {e['name']!r}: paper has no {c['paper']!r} (column {c['label']!r})"
                    )
    report["entries"] = entries
    report["plots"] = [_plot(p, f"{where}: plots[{i}]", names) for i, p in enumerate(spec.get("plots", []))]
    return report


def _sweep_entries(item: dict, where: str, seeds: list[int]) -> list[dict]:
    _check_keys(item, _SWEEP_KEYS, where, required=("sweep", "name"))
    try:
        sweep_name, sweep = load_sweep(item["sweep"])
    except ConfigError as e:
        raise ConfigError(f"{where}.sweep: {e}") from e
    extra = _overrides(item.get("overrides"), f"{where}.overrides")
    out = []
    for params in expand(sweep, item.get("count")):
        leaves = _leaves(params)  # {"model.loss": ..., "data.train.0.uts_fraction": ...}
        x = None
        if "x" in item:
            if item["x"] not in leaves or not isinstance(leaves[item["x"]], (int, float)):
                raise ConfigError(f"{where}.x: {item['x']!r} is not a numeric parameter of {sweep_name}")
            x = leaves[item["x"]]
        out.append(
            {
                "name": _template(item["name"], leaves, f"{where}.name"),
                "label": _template(item.get("label", item["name"]), leaves, f"{where}.label"),
                "experiment": params["exp"],
                "overrides": _overrides(as_overrides(params), f"{where}: sweep {sweep_name}") + extra,
                "seeds": _seeds(item["seeds"], f"{where}.seeds") if "seeds" in item else seeds,
                "ckpt_path": None,
                "x": x,
                "paper_label": "",
                "paper": {},
                "sweep": sweep_name,
            }
        )
    return out


def _plot(p: Any, where: str, names: set[str]) -> dict:
    _check_keys(p, _PLOT_KEYS, where, required=("file", "metric", "series"))
    if not p["file"].endswith(".png") or "/" in p["file"]:
        raise ConfigError(f"{where}.file: expected a file name ending in .png, got {p['file']!r}")
    for j, s in enumerate(p["series"]):
        _check_keys(s, _SERIES_KEYS, f"{where}.series[{j}]", required=("label", "entries"))
        for n in s["entries"]:
            if n not in names:
                raise ConfigError(f"{where}.series[{j}].entries: no entry {n!r}. Entries: {', '.join(names)}")
    return {"xscale": 1, "scale": 1, "title": "", "xlabel": "x", "ylabel": p["metric"]} | p


# --------------------------------------------------------------------------------------------- plan
def command(run: dict) -> str:
    """The command line that reproduces a run (without run_dir: it writes a new runs/<exp>/<time>)."""
    verb = "eval" if run["ckpt_path"] else "train"
    args = [*run["overrides"], f"seed={run['seed']}"]
    if run["ckpt_path"]:
        args.append(f"ckpt_path={run['ckpt_path']}")
    return " ".join(["python -m experiments", verb, run["experiment"], *map(shlex.quote, args)])


def plan(
    report: dict, out: Path, extra: list[str] | None = None, seeds: list[int] | None = None
) -> list[dict]:
    """Every run of the report (entry x seed) with its composed config; nothing is trained or written."""
    extra = _overrides(list(extra or []), "command line")
    runs = []
    for e in report["entries"]:
        for seed in seeds if seeds is not None else e["seeds"]:
            run_dir = out / e["name"] / f"seed{seed}"
            try:
                ckpt = e["ckpt_path"].format(seed=seed, out=out) if e["ckpt_path"] else None
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(
                    f"{report['path']}: entry {e['name']!r}: ckpt_path {e['ckpt_path']!r} may use {{seed}} and "
                    f"{{out}} only ({err!r})"
                ) from err
            overrides = _last_wins(report["overrides"] + e["overrides"] + extra)
            run = {"entry": e["name"], "seed": seed, "experiment": e["experiment"], "run_dir": str(run_dir)}
            run |= {"overrides": overrides, "ckpt_path": ckpt}
            full = (
                overrides + [f"seed={seed}", f"run_dir={run_dir}"] + ([f"ckpt_path={ckpt}"] if ckpt else [])
            )
            try:
                run["cfg"] = compose(e["experiment"], full)
            except ConfigError as err:
                raise ConfigError(f"{report['path']}: entry {e['name']!r} (seed {seed}): {err}") from err
            run["command"] = command(run)
            runs.append(run)
    return runs


def _last_wins(overrides: list[str]) -> list[str]:
    """Overrides less those that a later one of the same key replaces (the same config, a shorter command)."""
    key = lambda a: a.split("=", 1)[0].strip().lstrip("+")
    last = {key(a): i for i, a in enumerate(overrides)}
    return [a for i, a in enumerate(overrides) if last[key(a)] == i]


def comparable(cfg: Any) -> dict:
    """A config (DictConfig or plain dict) as a plain dict less IGNORED_KEYS."""
    d = to_container(cfg) if OmegaConf.is_config(cfg) else json.loads(json.dumps(cfg))
    for key in IGNORED_KEYS:
        node, parts = d, key.split(".")
        for p in parts[:-1]:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return d


def _differences(saved: dict, new: dict) -> list[str]:
    a, b = _leaves(saved), _leaves(new)
    return [
        f"{k}: {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} now"
        for k in sorted(a | b)
        if a.get(k) != b.get(k)
    ]


def status(run: dict, resume: bool = False) -> str:
    """ "new" (train it), "done" (reuse it) or "resume"; raises ConfigError for a directory it cannot use."""
    d = Path(run["run_dir"])
    if not d.exists() or not any(d.iterdir()):
        return "new"
    cfg_file = d / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(
            f"{d} is not empty and has no config.yaml: not a run of this report; nothing was changed"
        )
    try:
        saved = yaml.safe_load(cfg_file.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{cfg_file}: not valid YAML ({' '.join(str(e).split())})") from e
    diff = _differences(comparable(saved or {}), comparable(run["cfg"]))
    if diff:
        more = "; ..." if len(diff) > 3 else ""
        raise ConfigError(
            f"{d} holds a run with a different config ({'; '.join(diff[:3])}{more}); nothing was changed. "
            "Use another --out, or delete that directory to rerun it"
        )
    metrics = _read_json(d / "metrics.json")
    failed = (d / FAILED_FILE).is_file()
    if metrics is not None and metrics.get("status", "finished") == "finished" and not failed:
        if run["ckpt_path"]:  # an evaluation: of the same checkpoint?
            side = _read_json(d / SIDE_FILE) or {}
            used = side.get("ckpt_path") or metrics.get("checkpoint") or (saved or {}).get("ckpt_path")
            if used is not None and Path(used) != Path(run["ckpt_path"]):
                raise ConfigError(
                    f"{d} holds an evaluation of {used}, not of {run['ckpt_path']}; nothing was changed. "
                    "Use another --out, or delete that directory to rerun it"
                )
        return "done"
    if metrics is not None and metrics.get("status", "finished") != "finished":
        what = f"a run whose metrics.json says status {metrics.get('status')!r}"
    else:
        what = f"a failed run (see {d / FAILED_FILE})" if failed else "an unfinished run (no metrics.json)"
    resumable = metrics is None and not run["ckpt_path"] and (d / "checkpoints" / "last.ckpt").is_file()
    if resume and resumable:
        return "resume"
    raise ConfigError(
        f"{d} holds {what}; nothing was changed. Delete that directory to rerun it"
        + (", or pass --resume to continue it from checkpoints/last.ckpt" if resumable else "")
    )


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


# ---------------------------------------------------------------------------------------------- run
def execute(runs: list[dict], report_name: str, resume: bool = False) -> None:
    """Train / evaluate the runs that are not done; fills run["metrics"], run["reused"], run["seconds"]."""
    from experiments import runner

    states = [status(r, resume) for r in runs]  # every directory checked before anything is trained
    todo = sum(s != "done" for s in states)
    k = 0
    for run, state in zip(runs, states):
        d = Path(run["run_dir"])
        if state == "done":
            run["reused"] = True
            run["seconds"] = (_read_json(d / SIDE_FILE) or {}).get("seconds")
            run["metrics"] = _read_json(d / "metrics.json")
            continue
        k += 1
        print(f"\n=== report {report_name}: {run['entry']} seed {run['seed']} ({k}/{todo}): {d}", flush=True)
        cfg = run["cfg"]
        if state == "resume":
            cfg = compose(
                run["experiment"],
                [*run["overrides"], f"seed={run['seed']}", f"run_dir={d}", "ckpt_path=last"],
            )
        start = time.perf_counter()
        try:
            result = runner.evaluate(cfg) if run["ckpt_path"] else runner.train(cfg)
        except BaseException:
            print(
                f"report {report_name}: entry {run['entry']!r} seed {run['seed']} failed (run directory {d})",
                file=sys.stderr,
                flush=True,
            )
            raise
        run["seconds"] = round(time.perf_counter() - start, 1)
        run["reused"] = False
        run["metrics"] = {"val": result.get("val", {}), "test": result.get("test", {})}
        side = {"report": report_name, "entry": run["entry"], "seed": run["seed"], "command": run["command"]}
        side |= {"ckpt_path": run["ckpt_path"], "seconds": run["seconds"]}
        (d / SIDE_FILE).write_text(json.dumps(side, indent=2) + "\n")


# ------------------------------------------------------------------------------------------- tables
def _metric(run: dict, metric: str) -> float | None:
    split = metric.split("/", 1)[0]
    v = (run["metrics"].get(split) or {}).get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def summarize(values: list[float]) -> dict:
    """mean, std (sample standard deviation, n - 1; None for one value), min, max, n."""
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    std = statistics.stdev(values) if n > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values), "n": n}


def table(report: dict, runs: list[dict]) -> list[dict]:
    """One row per entry: per column our values over seeds (scaled) and their summary, and the paper's."""
    rows = []
    for e in report["entries"]:
        mine = [r for r in runs if r["entry"] == e["name"]]
        if not mine:
            continue
        cols = {}
        for c in report["columns"]:
            vals = [_metric(r, c["metric"]) for r in mine]
            got = [v * c["scale"] for v in vals if v is not None]
            cols[c["metric"]] = {
                "values": [None if v is None else v * c["scale"] for v in vals],
                **summarize(got),
                "paper": e["paper"].get(c["paper"]) if c["paper"] else None,
            }
        wanted = {p["metric"] for p in report["plots"]}
        rows.append(
            {
                "metrics": {m: [_metric(r, m) for r in mine] for m in sorted(wanted)},
                "entry": e["name"],
                "label": e["label"],
                "paper_label": e["paper_label"],
                "experiment": e["experiment"],
                "x": e["x"],
                "seeds": [r["seed"] for r in mine],
                "columns": cols,
                "runs": [
                    {k: r.get(k) for k in ("seed", "run_dir", "command", "reused", "seconds")} for r in mine
                ],
            }
        )
    return rows


def _num(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def cell(s: dict, fmt: str) -> str:
    """ "mean ± std" ("mean" alone for one seed, "—" for none)."""
    if s["mean"] is None:
        return "—"
    return _num(s["mean"], fmt) + ("" if s["std"] is None else f" ± {_num(s['std'], fmt)}")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def markdown(
    report: dict,
    rows: list[dict],
    plots: list[str],
    out: Path,
    invocation: str = "",
    seconds: float | None = None,
) -> str:
    cols = report["columns"]
    with_paper = [
        c for c in cols if c["paper"] and any(r["columns"][c["metric"]]["paper"] is not None for r in rows)
    ]
    lines = [f"# {report['title']}", ""]
    if report["description"]:
        lines += [report["description"].strip(), ""]
    cited = report["citation"] + (f", {report['paper']}" if report["paper"] else "")
    if with_paper:
        lines += [f"Published numbers: {cited}."]
    else:
        lines += [f"Compared with: {cited}. No entry gives published numbers, so the table has none."]
    if report["source"]:
        lines += [f"Read from: {report['source']}."]
    lines += [
        f"Report file: `{report['path']}`. Our numbers: mean ± sample standard deviation over seeds "
        "(n - 1 in the denominator); n, min–max and every seed's value are in the sections below.",
        "",
        "## Table",
        "",
    ]
    head = ["entry"] + (["paper's row"] if any(r["paper_label"] for r in rows) else []) + ["n"]
    for c in cols:
        head.append(f"{c['label']} (ours)")
        if c in with_paper:
            head.append(f"{c['label']} ({report['citation']})")
    lines += [_md_row(head), _md_row(["---"] * len(head))]
    for r in rows:
        cells = [r["label"]] + ([r["paper_label"]] if "paper's row" in head else [])
        cells.append(str(max(r["columns"][c["metric"]]["n"] for c in cols) if cols else 0))
        for c in cols:
            col = r["columns"][c["metric"]]
            cells.append(cell(col, c["fmt"]))
            if c in with_paper:
                cells.append("—" if col["paper"] is None else str(col["paper"]))
        lines.append(_md_row(cells))
    lines += [
        "",
        "Metrics: "
        + ", ".join(
            f"{c['label']} = `{c['metric']}`" + (f" × {c['scale']}" if c["scale"] != 1 else "") for c in cols
        )
        + ".",
    ]
    for p in report["plots"]:
        if p["file"] in plots:
            scale = f" × {p['scale']}" if p["scale"] != 1 else ""
            lines += ["", f"![{p['title'] or p['file']}]({p['file']})", ""]
            lines += [
                f"*{p['file']}: `{p['metric']}`{scale}, our mean over seeds; error bars ± one sample std.*"
            ]
    lines += ["", "## Spread over seeds", ""]
    lines += [
        _md_row(["entry", "metric", "mean", "std", "min–max", "n", "seeds", "per seed"]),
        _md_row(["---"] * 8),
    ]
    for r in rows:
        for c in cols:
            col, f = r["columns"][c["metric"]], c["fmt"]
            per = ", ".join(f"{s}: {_num(v, f)}" for s, v in zip(r["seeds"], col["values"]))
            rng = "—" if col["min"] is None else f"{_num(col['min'], f)}–{_num(col['max'], f)}"
            seeds = ", ".join(map(str, r["seeds"]))
            lines.append(
                _md_row(
                    [
                        r["label"],
                        c["label"],
                        _num(col["mean"], f),
                        _num(col["std"], f),
                        rng,
                        str(col["n"]),
                        seeds,
                        per,
                    ]
                )
            )
    total = [x["seconds"] for r in rows for x in r["runs"] if x["seconds"] is not None]
    reused = sum(bool(x["reused"]) for r in rows for x in r["runs"])
    nruns = sum(len(r["runs"]) for r in rows)
    lines += [
        "",
        "## Commands",
        "",
        f"{nruns} runs ({reused} reused from earlier invocations); "
        + (
            f"{sum(total) / 60:.1f} minutes of training and evaluation as measured when each run was made. "
            if total
            else ""
        )
        + (f"This invocation took {seconds / 60:.1f} minutes. " if seconds is not None else "")
        + f"Everything: `{invocation or 'python -m experiments report ' + report['name']}` (runs under "
        f"`{out}`). "
        "Each number alone (a new run directory under runs/<experiment>/):",
        "",
    ]
    for r in rows:
        lines += [f"**{r['label']}**", "", "```bash"]
        for x in r["runs"]:
            t = "" if x["seconds"] is None else f", {x['seconds']:.0f} s"
            lines += [
                f"# seed {x['seed']}: {x['run_dir']}{' (reused)' if x['reused'] else ''}{t}",
                x["command"],
            ]
        lines += ["```", ""]
    return "\n".join(lines).rstrip() + "\n"


def plot(spec: dict, rows: list[dict], path: Path) -> None:
    """One line per series: our mean over seeds against the entries' x, error bars one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r["entry"]: r for r in rows}
    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    for s in spec["series"]:
        pts = []
        for n in s["entries"]:
            r = by_name.get(n)
            if r is None or r["x"] is None:
                continue
            st = summarize([v * spec["scale"] for v in r["metrics"].get(spec["metric"], []) if v is not None])
            if st["n"]:
                pts.append((r["x"] * spec["xscale"], st["mean"], st["std"] or 0.0))
        if pts:
            xs, ys, es = zip(*sorted(pts))
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=s["label"])
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    if spec["title"]:
        ax.set_title(spec["title"], fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- main
def make_report(
    name_or_path: str,
    extra: list[str] | None = None,
    out: str | Path | None = None,
    seeds: list[int] | None = None,
    resume: bool = False,
    dry_run: bool = False,
) -> dict:
    """Run (or reuse) a report's runs and write report.md, report.json and its plots; returns report.json."""
    start = time.perf_counter()
    report = load_report(name_or_path)
    out_given = out is not None
    out = Path(out) if out is not None else RUNS_ROOT / report["name"]
    runs = plan(report, out, extra, seeds)
    if dry_run:
        for r in runs:
            print(f"{status(r, resume):6s} {r['run_dir']}\n       {r['command']}")
        return {
            "report": report["name"],
            "runs": [{k: r[k] for k in ("entry", "seed", "run_dir", "command")} for r in runs],
        }
    execute(runs, report["name"], resume)
    rows = table(report, runs)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for p in report["plots"]:
        plot(p, rows, out / p["file"])
        plots.append(p["file"])
    invocation = " ".join(
        ["python -m experiments report", shlex.quote(name_or_path), *map(shlex.quote, extra or [])]
        + (["--out", shlex.quote(str(out))] if out_given else [])
        + (["--seeds", ",".join(map(str, seeds))] if seeds is not None else [])
    )
    seconds = round(time.perf_counter() - start, 1)
    (out / "report.md").write_text(markdown(report, rows, plots, out, invocation, seconds))
    data = {
        "report": report["name"],
        "title": report["title"],
        "citation": report["citation"],
        "paper": report["paper"],
        "file": report["path"],
        "out": str(out),
        "columns": report["columns"],
        "rows": rows,
        "plots": plots,
        "invocation": invocation,
        "seconds_this_invocation": seconds,
    }
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nreport {report['name']}: {out / 'report.md'}", flush=True)
    return data


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from e


def main(argv: list[str]) -> int:
    p = OptionParser(prog="python -m experiments report", description=__doc__.split("\n\n")[0])
    p.add_argument("report", help=f"a name under {REPORT_DIR} or a path to a report YAML")
    p.add_argument("overrides", nargs="*", help="key=value applied to every run (e.g. trainer.max_epochs=1)")
    p.add_argument(
        "--out", default=None, help="directory of the runs and report.md (default runs/reports/NAME)"
    )
    p.add_argument(
        "--seeds", type=_seed_list, default=None, help="comma-separated seeds instead of the file's"
    )
    p.add_argument("--resume", action="store_true", help="continue unfinished runs from their last.ckpt")
    p.add_argument("--dry-run", action="store_true", help="compose and check every run, print the commands")
    ns = p.parse_intermixed_args(argv)
    make_report(ns.report, ns.overrides, ns.out, ns.seeds, ns.resume, ns.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
