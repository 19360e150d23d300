"""`python -m experiments sweep`: options anywhere among the overrides, one-line errors, and the online
sweep's W&B config and commands (W&B and subprocess mocked; nothing reaches the network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from experiments import sweep as sw
from experiments.config import ConfigError, compose

ENTRY = "{{reader: synthetic_depth, split: {split}, num_samples: {n}, image_size: [32, 32], seed: 3}}"
TINY = [
    "data.image_size=[32,32]",
    "data.batch_size=4",
    f"data.val=[{ENTRY.format(split='val', n=4)}]",
    f"data.test=[{ENTRY.format(split='test', n=4)}]",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.limit_train_batches=2",
    "logger=csv",
    "model.log_images=1",
    "model.log_points=16",
]


@pytest.fixture
def offline_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(
        sw, "run_offline", lambda name, spec, count=None, extra=None: calls.append((name, count, extra))
    )
    return calls


@pytest.mark.parametrize(
    "argv",
    [
        ["gp2_uts_fraction", "--count", "2", "trainer.max_epochs=1"],  # options before the overrides
        ["--count", "2", "gp2_uts_fraction", "trainer.max_epochs=1"],
        ["gp2_uts_fraction", "trainer.max_epochs=1", "--count=2"],
    ],
)
def test_options_anywhere_among_the_overrides(offline_calls, argv):
    assert sw.main(argv) == 0
    assert offline_calls == [("gp2_uts_fraction", 2, ["trainer.max_epochs=1"])]


def test_several_overrides_around_an_option(offline_calls):
    sw.main(["gp2_loss_ablation", "a=1", "--count", "3", "b=2", "c=3"])
    assert offline_calls == [("gp2_loss_ablation", 3, ["a=1", "b=2", "c=3"])]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["gp2_uts_fraction", "--bogus", "trainer.max_epochs=1"], "unrecognized arguments: --bogus"),
        (["gp2_uts_fraction", "--count"], "argument --count: expected one argument"),
        (["gp2_uts_fraction", "--count", "two"], "argument --count: invalid int value: 'two'"),
        ([], "required: sweep"),
    ],
)
def test_bad_options_are_one_line_config_errors(offline_calls, argv, message):
    with pytest.raises(ConfigError, match=message) as e:
        sw.main(argv)
    assert "\n" not in str(e.value) and offline_calls == []


def test_command_line_prints_one_line_for_an_unknown_option(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "experiments", "sweep", "gp2_uts_fraction", "--bogus", "trainer.max_epochs=1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(sw.SWEEP_DIR.parents[1])},
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "unrecognized arguments: --bogus" in r.stderr


def test_count_before_overrides_runs_the_offline_sweep(tmp_path, monkeypatch):
    """The case that used to fail: `sweep NAME --count N key=value` trains N runs with the overrides."""
    monkeypatch.setattr(sw, "RUNS_ROOT", tmp_path)
    train = f"data.train=[{ENTRY.format(split='train', n=8)}]"
    assert sw.main(["gp2_loss_ablation", "--count", "1", "trainer.max_epochs=1", train, *TINY]) == 0
    (root,) = tmp_path.iterdir()
    rows = json.loads((root / "summary.json").read_text())
    assert len(rows) == 1 and rows[0]["model.loss"] == "pairwise_l1"
    cfg = yaml.safe_load((root / "run00" / "config.yaml").read_text())
    assert cfg["trainer"]["max_epochs"] == 1 and cfg["data"]["train"][0]["num_samples"] == 8


@pytest.fixture
def online(monkeypatch):
    import wandb

    seen = {}

    def fake_sweep(sweep, entity=None, project=None, **kw):
        seen["spec"], seen["project"], seen["entity"] = sweep, project, entity
        return "abc123"

    def fake_call(cmd, *a, **kw):
        seen["cmd"] = cmd
        return 0

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(sw.subprocess, "call", fake_call)
    return seen


def test_online_sweep_runs_this_interpreter(online):
    assert sw.main(["gp2_uts_fraction", "--online", "trainer.max_epochs=1", "--count", "2"]) == 0
    spec = online["spec"]
    # W&B runs the project's interpreter, not `python` on PATH (W&B's ${interpreter})
    assert spec["command"] == [sys.executable, "-m", "experiments", "train", "${args_no_hyphens}"]
    assert spec["parameters"]["trainer.max_epochs"] == {"value": 1}
    assert spec["parameters"]["logger.mode"] == {"value": "online"}
    assert spec["parameters"]["exp"] == {"value": "gp2_uts_mixture"}
    assert spec["method"] == "grid" and spec["metric"] == {"name": "val/absrel", "goal": "minimize"}
    assert online["project"] == "sv3d"
    # `wandb agent` by this interpreter too (`wandb` is not on make's PATH)
    assert online["cmd"] == [
        sys.executable,
        "-m",
        "wandb",
        "agent",
        "--project",
        "sv3d",
        "--count",
        "2",
        "abc123",
    ]
    # the sweep file itself is unchanged
    assert yaml.safe_load((sw.SWEEP_DIR / "gp2_uts_fraction.yaml").read_text())["command"][0] == "python"


def test_online_sweep_passes_project_and_entity(online, tmp_path):
    spec = yaml.safe_load((sw.SWEEP_DIR / "gp2_loss_ablation.yaml").read_text())
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**spec, "project": "proj", "entity": "team"}))
    sw.main([str(path), "--online"])
    assert online["project"] == "proj" and online["entity"] == "team"
    assert online["cmd"] == [
        sys.executable,
        "-m",
        "wandb",
        "agent",
        "--project",
        "proj",
        "--entity",
        "team",
        "abc123",
    ]


def test_online_sweep_checks_overrides_before_creating_it(online):
    with pytest.raises(ConfigError, match="trainer.max_epoch"):
        sw.main(["gp2_uts_fraction", "--online", "trainer.max_epoch=1"])
    assert online == {}


def test_the_command_w_and_b_builds_composes():
    """What the agent would execute for each grid point, built with W&B's own formatting of the values
    (`key=str(value)`, Python reprs of the data lists), composes to the same config as the offline run."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    name, spec = sw.load_sweep("gp2_uts_fraction")
    online = sw.online_spec(spec, ["trainer.max_epochs=1"])
    for params in sw.expand(spec):
        args = {**params, "trainer.max_epochs": 1, "logger.mode": "online"}
        flags = create_sweep_command_args({"args": {k: {"value": v} for k, v in args.items()}})
        i = online["command"].index("${args_no_hyphens}")
        argv = online["command"][:i] + flags["args_no_hyphens"] + online["command"][i + 1 :]
        assert argv[:4] == [sys.executable, "-m", "experiments", "train"]
        (exp,) = [a.split("=", 1)[1] for a in argv[4:] if a.startswith("exp=")]  # as __main__ reads it
        overrides = [a for a in argv[4:] if not a.startswith("exp=")]
        agent = compose(exp, overrides)
        offline = compose(
            params["exp"], sw.as_overrides(params) + ["trainer.max_epochs=1", "logger.mode=online"]
        )
        assert agent.data.train == offline.data.train and agent.trainer.max_epochs == 1
        assert agent.logger.mode == "online" and agent.experiment == "gp2_uts_mixture"
