"""Experiment configs: compose, override, validate, explain.

An experiment is `<config dir>/<name>.yaml`; the config dirs are experiments/configs and, first, every
directory of $SV3D_CONFIG_PATH (os.pathsep-separated: keep your own experiments and group options outside
the repository; a file there shadows the project's of the same name). Composition, later wins:
  1. base.yaml (seed, run_dir, ckpt_path, ... and the default option of each group);
  2. for each group (trainer, logger, data, model) the option file <group>/<option>.yaml, the option
     chosen by base.yaml, then by the experiment's `defaults:`, then by `group=option` on the command line;
  3. the experiment file's own keys;
  4. `key=value` overrides from the command line (dotted keys, YAML values: lr=3e-4, devices=2, tags=[a,b]).
Steps 1-2 make the schema: every key of steps 3-4 must exist in it and keep its type (int/float/bool/str/
list/dict; an int is accepted where a float is expected), otherwise a ConfigError names the key and its
close matches, before anything heavy is imported. Keys whose default is null take the types that the
registered class's signature gives them (`model.*` from MODELS[model.name], `data.*` from
DATAMODULES[data.name]), checked by `check_classes`; the runner's own keys (trainer, run_dir, ...) are
listed in FLEXIBLE. Lists (e.g. data.train, the dataset entries) are replaced whole and checked by the
component that receives them.
Interpolations: `${key}` refers to another key; resolvers (`${oc.env:VAR}` and any other `${name:...}`)
are refused, except `${oc.env:...}` in the keys that base.yaml's `allow_env` lists (so that nothing from
the environment lands in config.yaml or W&B unless declared).
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_DIR = Path(__file__).parent / "configs"
SWEEP_DIR = Path(__file__).parent / "sweeps"
CONFIG_PATH_ENV = "SV3D_CONFIG_PATH"
GROUPS = ("trainer", "logger", "data", "model")
# keys that compose() sets itself (not in any file)
COMPOSED_KEYS = ("experiment", "choices", "overrides")


class ConfigError(ValueError):
    """A config or command-line override that does not fit the schema."""


def config_dirs() -> list[Path]:
    """$SV3D_CONFIG_PATH's directories (in order), then experiments/configs."""
    extra = [Path(p) for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    for d in extra:
        if not d.is_dir():
            raise ConfigError(f"{CONFIG_PATH_ENV}: {str(d)!r} is not a directory")
    return [*extra, CONFIG_DIR]


def _find(relative: str) -> Path | None:
    for d in config_dirs():
        if (d / relative).is_file():
            return d / relative
    return None


def _stems(sub: str = "") -> list[str]:
    return sorted({p.stem for d in config_dirs() for p in (d / sub).glob("*.yaml")})


def list_experiments() -> list[str]:
    return [s for s in _stems() if s != "base"]


def list_options(group: str) -> list[str]:
    return _stems(group)


def _load_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(e)})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return " ".join(text.splitlines()[:1]) if text else type(e).__name__


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
            raise ConfigError(f"override {arg!r}: value is not valid YAML ({_first_line(e)})") from e
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


# The runner's own keys whose values may take several types (Lightning's devices=auto|2|[0,1],
# precision=16|"16-mixed") or whose default is null, with the types they take (null is always accepted).
# A family's keys are never listed here: their nullable types come from the class signature (check_classes).
FLEXIBLE = {
    "run_dir": ("str",),
    "ckpt_path": ("str",),
    "monitor": ("str",),
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
# Keys with a closed set of values, checked before anything runs (null: the family's declaration).
CHOICES = {"monitor_mode": ("min", "max", None), "logger.mode": ("offline", "online", "auto")}
# Sections whose null-default keys are typed by a registered class's signature (checked by check_classes).
CLASS_TYPED = ("model", "data")


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
        elif dotted in CHOICES:
            if value not in CHOICES[dotted]:
                allowed = tuple(c for c in CHOICES[dotted] if c is not None)
                raise ConfigError(f"{where}: key {dotted!r} expects one of {allowed}, got {value!r}")
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


_RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


def _check_resolvers(values: Any, allow_env: Sequence[str], where: str, prefix: str = "") -> None:
    """Refuse `${resolver:...}` interpolations (oc.env reads the environment; others can build objects),
    except `${oc.env:...}` in the keys listed by `allow_env`."""
    if isinstance(values, Mapping):
        for k, v in values.items():
            _check_resolvers(v, allow_env, where, f"{prefix}{k}.")
    elif isinstance(values, (list, tuple)):
        for i, v in enumerate(values):
            _check_resolvers(v, allow_env, where, f"{prefix[:-1]}[{i}].")
    elif isinstance(values, str):
        key = prefix[:-1]
        for name in _RESOLVER.findall(values):
            if name == "oc.env" and key in allow_env:
                continue
            hint = (
                f"; to read the environment, add {key!r} to allow_env"
                if name == "oc.env"
                else "; only ${key} references to other config keys are allowed"
            )
            raise ConfigError(
                f"{where}: key {key!r}: the interpolation resolver {name!r} is not allowed{hint}"
            )


class _Layers(typing.NamedTuple):
    """The parts of a composed config, in the order they are merged (later wins), with their sources."""

    schema: dict  # base.yaml + the chosen group options
    sources: dict[str, str]  # group or "" (base) -> file the schema part came from
    exp: dict
    exp_path: Path
    cli: dict
    choices: dict[str, str]


def _layers(experiment: str, overrides: list[str]) -> _Layers:
    experiments = list_experiments()
    if experiment not in experiments:
        raise ConfigError(
            f"unknown experiment {experiment!r}.{_close(experiment, experiments)} "
            f"Available: {', '.join(experiments)}"
        )
    base_path = _find("base.yaml")
    assert base_path is not None, "experiments/configs/base.yaml is part of the project"
    base = _load_yaml(base_path)
    exp_path = _find(f"{experiment}.yaml")
    assert exp_path is not None
    exp = _load_yaml(exp_path)
    cli = parse_overrides(overrides)

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
    sources = {"": str(base_path)}
    for group in GROUPS:
        path = _find(f"{group}/{choices[group]}.yaml")
        assert path is not None
        schema[group] = _load_yaml(path)
        sources[group] = str(path)
    _check(schema, exp, str(exp_path))
    cli_nested = _nest(cli, schema, "command line")
    _check(schema, cli_nested, "command line")
    allow_env = list(cli_nested.get("allow_env", exp.get("allow_env", schema.get("allow_env"))) or [])
    for values, where in ((schema, "config"), (exp, str(exp_path)), (cli_nested, "command line")):
        _check_resolvers(values, allow_env, where)
    return _Layers(schema, sources, exp, exp_path, cli_nested, choices)


def compose(experiment: str, overrides: list[str] | None = None, classes: bool = True) -> DictConfig:
    """Compose and validate the config of `experiment` with command-line `overrides` (key=value strings).

    `classes=False` skips `check_classes` (which imports the registered families): the command line uses it
    to report config errors before the heavy imports, and the runner checks the classes before it runs.
    """
    overrides = list(overrides or [])
    layers = _layers(experiment, overrides)
    try:
        cfg = OmegaConf.merge(
            OmegaConf.create(layers.schema), OmegaConf.create(layers.exp), OmegaConf.create(layers.cli)
        )
        cfg.experiment = experiment
        cfg.choices = layers.choices
        cfg.overrides = overrides
        OmegaConf.resolve(cfg)
    except Exception as e:  # malformed or dangling interpolations
        key = getattr(e, "full_key", None)
        where = f"key {key!r}: " if key else ""
        raise ConfigError(f"{experiment}: {where}cannot resolve the config ({_first_line(e)})") from e
    OmegaConf.set_struct(cfg, True)
    if classes:
        check_classes(cfg)
    return cfg


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# Types from the registered classes' signatures


_NAMES: dict[Any, tuple[str, ...]] = {
    bool: ("bool",),
    int: ("int",),
    float: ("int", "float"),
    str: ("str",),
    Path: ("str",),
    list: ("list",),
    tuple: ("list",),
    dict: ("dict",),
}


def _annotation_types(annotation: Any) -> tuple[str, ...] | None:
    """Config type names an annotation admits (None: anything), e.g. `float | None` -> ("int", "float")."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        names: list[str] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            sub = _annotation_types(arg)
            if sub is None:
                return None
            names += [n for n in sub if n not in names]
        return tuple(names)
    if origin is typing.Literal:
        return tuple(dict.fromkeys(_type_name(v) for v in typing.get_args(annotation)))
    target = origin or annotation
    if target in _NAMES:
        return _NAMES[target]
    if isinstance(target, type):
        if issubclass(target, (str, bytes)):
            return ("str",)
        if issubclass(target, Mapping):
            return ("dict",)
        if issubclass(target, Sequence):
            return ("list",)
    return None


def signature_types(cls: type) -> dict[str, tuple[str, ...] | None]:
    """{constructor argument: config type names} of `cls` (None where the annotation admits anything).
    A constructor that passes **kwargs on adds its base classes' arguments."""
    out: dict[str, tuple[str, ...] | None] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # an annotation that cannot be evaluated: fall back to the raw ones
            hints = {}
        params = inspect.signature(init).parameters
        for name, p in params.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in out:
                out[name] = _annotation_types(hints.get(name, p.annotation))
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return out


def registered_class(cfg: DictConfig, section: str) -> type:
    """The class that `cfg.<section>.name` names in its registry (model: MODELS, data: DATAMODULES)."""
    if section == "model":
        from lightning_modules import MODELS as registry
    elif section == "data":
        import lightning_modules  # noqa: F401  (families register their datamodules)
        from datamodules import DATAMODULES as registry
    else:
        raise ValueError(f"section: expected 'model' or 'data', got {section!r}")
    try:
        return registry[cfg[section].name]
    except KeyError as e:
        raise ConfigError(f"{section}.name: {e.args[0]}") from None


def check_classes(cfg: DictConfig) -> None:
    """Check `model.*` and `data.*` against the registered classes' constructor signatures: every key is
    an argument, and a key whose default is null has a value of a type the annotation admits."""
    for section in CLASS_TYPED:
        cls = registered_class(cfg, section)
        types_ = signature_types(cls)
        for key, value in cfg[section].items():
            if key == "name":
                continue
            dotted = f"{section}.{key}"
            if key not in types_:
                raise ConfigError(
                    f"{dotted}: {cls.__name__} takes no argument {key!r}.{_close(str(key), types_)}"
                )
            value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            allowed = types_[key]
            if value is None or allowed is None or _type_name(value) in allowed:
                continue
            raise ConfigError(
                f"key {dotted!r} expects one of {allowed} ({cls.__name__} signature), got {value!r}"
            )


# ----------------------------------------------------------------------------------------------------------
# Explaining a config (python -m experiments show)


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def explain(experiment: str, overrides: list[str] | None = None) -> list[tuple[str, Any, Any, str]]:
    """(dotted key, value, default, where it was set) for every leaf of the composed config, in order.

    The default is the schema's value (base.yaml or the group option file); "where" is that file, the
    experiment file, or "command line". Values are as resolved."""
    overrides = list(overrides or [])
    layers = _layers(experiment, overrides)
    resolved = _leaves(to_container(compose(experiment, overrides, classes=False)))
    try:
        defaults = _leaves(OmegaConf.to_container(OmegaConf.create(layers.schema), resolve=True))
    except Exception:  # a schema interpolation into an experiment-only key: show it unresolved
        defaults = _leaves(layers.schema)
    from_exp, from_cli = _leaves(layers.exp), _leaves(layers.cli)

    def within(key: str, leaves: dict) -> bool:  # a key set as a whole (e.g. a list) or below it
        return key in leaves or any(k.startswith(key + ".") or key.startswith(k + ".") for k in leaves)

    rows = []
    for key, value in resolved.items():
        group = key.split(".", 1)[0] if key.split(".", 1)[0] in GROUPS else ""
        if key in COMPOSED_KEYS or key.split(".", 1)[0] in COMPOSED_KEYS:
            where = "composed"
        elif within(key, from_cli):
            where = "command line"
        elif within(key, from_exp):
            where = str(layers.exp_path)
        else:
            where = layers.sources[group]
        rows.append((key, value, defaults.get(key), where))
    return rows


def format_explain(rows: list[tuple[str, Any, Any, str]]) -> str:
    """The table `python -m experiments show` prints: key, value, default (when it differs), source."""
    root = str(CONFIG_DIR.parent.parent)

    def short(path: str) -> str:
        return os.path.relpath(path, root) if path.startswith(root) else path

    def text(v: Any) -> str:
        return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()

    width = max(len(k) for k, *_ in rows)
    lines = []
    for key, value, default, where in rows:
        changed = f"   (default {text(default)})" if default != value and where != "composed" else ""
        lines.append(f"{key:<{width}}  {text(value)}{changed}   [{short(where)}]")
    return "\n".join(lines)
