"""Experiment configs: compose, override, validate.

An experiment is `experiments/configs/<name>.yaml`. Composition, later wins:
  1. configs/base.yaml (seed, run_dir, ckpt_path, ... and the default option of each group);
  2. for each group (trainer, logger, data, model) the option file configs/<group>/<option>.yaml, the option
     chosen by base.yaml, then by the experiment's `defaults:`, then by `group=option` on the command line;
  3. the experiment file's own keys;
  4. `key=value` overrides from the command line (dotted keys, YAML values: lr=3e-4, devices=2, tags=[a,b]).
Steps 1-2 make the schema: every key of steps 3-4 must exist in it and keep its type (int/float/bool/str/
list/dict; a null default accepts anything; an int is accepted where a float is expected), otherwise a
ConfigError names the key and its close matches, before anything runs. Lists (e.g. data.train, the dataset
entries) are replaced whole and checked by the component that receives them.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_DIR = Path(__file__).parent / "configs"
SWEEP_DIR = Path(__file__).parent / "sweeps"
GROUPS = ("trainer", "logger", "data", "model")


class ConfigError(ValueError):
    """A config or command-line override that does not fit the schema."""


def list_experiments() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "base")


def list_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _load_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _close(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`["a.b=1", "logger=csv"]` -> {"a.b": 1, "logger": "csv"} with YAML-typed values."""
    out: dict[str, Any] = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"override {arg!r}: expected key=value (e.g. trainer.max_epochs=5)")
        key, value = arg.split("=", 1)
        key = key.strip().lstrip("+")
        if not key:
            raise ConfigError(f"override {arg!r}: empty key")
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {arg!r}: value is not valid YAML ({e})") from e
        if isinstance(parsed, str):
            try:  # YAML 1.1 reads "3e-4" as a string; a user means the number
                parsed = float(parsed) if parsed.lower() not in ("nan", "inf", "-inf", "infinity") else parsed
            except ValueError:
                pass
        out[key] = parsed
    return out


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple, ListConfig)):
        return "list"
    if isinstance(v, (dict, DictConfig)):
        return "dict"
    return type(v).__name__


# Keys whose values may take several types (Lightning's devices=auto|2|[0,1], precision=16|"16-mixed"), and
# keys whose default is null, with the types they take (null is always accepted).
FLEXIBLE = {
    "run_dir": ("str",),
    "ckpt_path": ("str",),
    "model.max_depth": ("int", "float"),
    "model.pretrained_path": ("str",),
    "logger.entity": ("str",),
    "logger.group": ("str",),
    "trainer.gradient_clip_val": ("int", "float"),
    "trainer.devices": ("int", "str", "list"),
    "trainer.precision": ("int", "str"),
    "trainer.strategy": ("str",),
    "trainer.limit_train_batches": ("int", "float"),
    "trainer.limit_val_batches": ("int", "float"),
    "trainer.limit_test_batches": ("int", "float"),
    "trainer.val_check_interval": ("int", "float"),
}
# Keys with a closed set of values, checked before anything runs.
CHOICES = {"monitor_mode": ("min", "max"), "logger.mode": ("offline", "online", "auto")}


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, str) and default.startswith("${"):
        return True  # an interpolation: its target is checked
    td, tv = _type_name(default), _type_name(value)
    if td == tv:
        return True
    return td == "float" and tv == "int"


def _check(schema: dict, values: dict, where: str, prefix: str = "") -> None:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(
                f"{where}: unknown key {dotted!r}.{_close(key, schema)} "
                f"Known keys{' under ' + prefix[:-1] if prefix else ''}: {', '.join(sorted(map(str, schema)))}"
            )
        default = schema[key]
        if isinstance(default, dict) and isinstance(value, dict):
            _check(default, value, where, dotted + ".")
        elif dotted in FLEXIBLE:
            if _type_name(value) not in FLEXIBLE[dotted] and value is not None:
                raise ConfigError(f"{where}: key {dotted!r} expects one of {FLEXIBLE[dotted]}, got {value!r}")
        elif dotted in CHOICES and value not in CHOICES[dotted]:
            raise ConfigError(f"{where}: key {dotted!r} expects one of {CHOICES[dotted]}, got {value!r}")
        elif not _compatible(default, value):
            raise ConfigError(
                f"{where}: key {dotted!r} expects {_type_name(default)} (default {default!r}), "
                f"got {_type_name(value)} {value!r}"
            )


def _nest(dotted: dict[str, Any], schema: dict, where: str) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}, checking every level's key against the schema."""
    out: dict = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node, sch = out, schema
        for i, p in enumerate(parts):
            sofar = ".".join(parts[: i + 1])
            if not isinstance(sch, dict) or p not in sch:
                known = sorted(sch) if isinstance(sch, dict) else []
                raise ConfigError(f"{where}: unknown key {sofar!r}.{_close(p, known)}")
            if i == len(parts) - 1:
                node[p] = value
            else:
                node = node.setdefault(p, {})
                sch = sch[p]
    return out


def compose(experiment: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose and validate the config of `experiment` with command-line `overrides` (key=value strings)."""
    experiments = list_experiments()
    if experiment not in experiments:
        raise ConfigError(
            f"unknown experiment {experiment!r}.{_close(experiment, experiments)} "
            f"Available: {', '.join(experiments)}"
        )
    base = _load_yaml(CONFIG_DIR / "base.yaml")
    exp_path = CONFIG_DIR / f"{experiment}.yaml"
    exp = _load_yaml(exp_path)
    cli = parse_overrides(overrides or [])

    choices = dict(base.pop("defaults", {}))
    exp_defaults = exp.pop("defaults", {}) or {}
    for src, where in (
        (exp_defaults, str(exp_path)),
        ({k: v for k, v in cli.items() if k in GROUPS}, "command line"),
    ):
        for group, option in src.items():
            if group not in GROUPS:
                raise ConfigError(f"{where}: unknown config group {group!r}.{_close(group, GROUPS)}")
            if not isinstance(option, str):
                continue  # e.g. `data={...}` is not a group switch; rejected below as a type error
            if option not in list_options(group):
                raise ConfigError(
                    f"{where}: unknown {group} option {option!r}.{_close(option, list_options(group))} "
                    f"Available: {', '.join(list_options(group))}"
                )
            choices[group] = option
    cli = {k: v for k, v in cli.items() if not (k in GROUPS and isinstance(v, str))}

    schema = dict(base)
    for group in GROUPS:
        schema[group] = _load_yaml(CONFIG_DIR / group / f"{choices[group]}.yaml")
    _check(schema, exp, str(exp_path))
    cli_nested = _nest(cli, schema, "command line")
    _check(schema, cli_nested, "command line")

    cfg = OmegaConf.merge(OmegaConf.create(schema), OmegaConf.create(exp), OmegaConf.create(cli_nested))
    cfg.experiment = experiment
    cfg.choices = choices
    try:
        OmegaConf.resolve(cfg)
    except Exception as e:  # interpolation errors
        raise ConfigError(f"{experiment}: cannot resolve the config ({e})") from e
    OmegaConf.set_struct(cfg, True)
    return cfg


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
