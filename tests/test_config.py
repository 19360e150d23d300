"""Config composition and validation (experiments/config.py) and the command line's error paths."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from experiments.__main__ import main
from experiments.config import ConfigError, compose, list_experiments


def test_every_experiment_composes():
    exps = list_experiments()
    assert {"gp2_synthetic", "gp2_mixture", "gp2_uts_mixture"} <= set(exps)
    for exp in exps:
        cfg = compose(exp)
        assert cfg.experiment == exp and isinstance(cfg.seed, int)
        assert cfg.model.name and cfg.data.name


def test_overrides_are_typed_and_interpolated():
    cfg = compose(
        "gp2_synthetic", ["seed=7", "model.lr=3e-4", "trainer.max_epochs=2", "model.alignments=[none]"]
    )
    assert cfg.seed == 7 and cfg.model.lr == pytest.approx(3e-4) and cfg.trainer.max_epochs == 2
    assert list(cfg.model.alignments) == ["none"]
    # the data entries take the run's seed through ${seed}
    assert cfg.data.train[0].seed == 7
    # an int where a float is expected is fine
    assert compose("gp2_synthetic", ["model.lr=1"]).model.lr == 1


def test_unknown_key_names_close_matches():
    with pytest.raises(ConfigError, match=r"unknown key 'model.backbne'.*Did you mean: backbone"):
        compose("gp2_synthetic", ["model.backbne=efficientnet_b0"])
    with pytest.raises(ConfigError, match=r"unknown key 'trainr'.*Did you mean: trainer"):
        compose("gp2_synthetic", ["trainr.max_epochs=1"])


def test_wrong_type_is_refused():
    with pytest.raises(ConfigError, match=r"'trainer.max_epochs' expects int.*got str"):
        compose("gp2_synthetic", ["trainer.max_epochs=many"])
    with pytest.raises(ConfigError, match=r"'model.lr' expects float.*got str"):
        compose("gp2_synthetic", ["model.lr=fast"])
    with pytest.raises(ConfigError, match=r"'deterministic' expects bool"):
        compose("gp2_synthetic", ["deterministic=3"])


def test_group_switch_and_unknown_option():
    cfg = compose("gp2_synthetic", ["logger=csv"])
    assert cfg.logger.name == "csv" and cfg.choices.logger == "csv"
    with pytest.raises(ConfigError, match=r"unknown logger option 'wandbb'.*Did you mean: wandb"):
        compose("gp2_synthetic", ["logger=wandbb"])


def test_unknown_experiment_lists_available():
    with pytest.raises(ConfigError, match=r"unknown experiment 'gp2_synthetc'.*gp2_synthetic.*Available"):
        compose("gp2_synthetc")


def test_cli_reports_config_errors_without_running(capsys):
    assert main(["train", "gp2_synthetic", "model.backbne=x"]) == 2
    assert "Did you mean: backbone" in capsys.readouterr().err
    assert main(["train", "no_such_experiment"]) == 2
    assert "Available: " in capsys.readouterr().err
    assert main(["train", "gp2_synthetic", "novalue"]) == 2
    assert "expected key=value" in capsys.readouterr().err


def test_every_sweep_file_expands_to_valid_configs():
    from experiments.sweep import as_overrides, expand, list_sweeps, load_sweep

    assert {"gp2_uts_fraction", "gp2_loss_ablation", "gp2_backbones"} <= set(list_sweeps())
    for name in list_sweeps():
        _, spec = load_sweep(name)
        runs = expand(spec)
        assert len(runs) >= 2, name
        for params in runs:
            cfg = compose(params["exp"], as_overrides(params))
            for k, v in params.items():
                if k != "exp" and "${" not in str(v):  # interpolations are resolved (e.g. ${seed})
                    node = OmegaConf.select(cfg, k)
                    got = OmegaConf.to_container(node) if OmegaConf.is_config(node) else node
                    assert got == v, (name, k, got, v)
    # W&B runs the same entry point with key=value arguments
    _, spec = load_sweep("gp2_uts_fraction")
    assert spec["command"][-1] == "${args_no_hyphens}" and "experiments" in spec["command"]


def test_random_sweeps_sample_within_bounds():
    from experiments.sweep import expand

    spec = {
        "method": "random",
        "parameters": {
            "exp": {"value": "gp2_synthetic"},
            "model.lr": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
            "seed": {"min": 0, "max": 3, "distribution": "int_uniform"},
        },
    }
    runs = expand(spec, count=20, seed=1)
    assert len(runs) == 20 and expand(spec, count=20, seed=1) == runs
    assert all(1e-4 <= r["model.lr"] <= 1e-2 and r["seed"] in range(4) for r in runs)
    assert len({r["model.lr"] for r in runs}) == 20


def test_lightning_value_types_and_closed_choices():
    cfg = compose("gp2_synthetic", ["trainer.devices=auto", "trainer.precision=16", "model.max_depth=10"])
    assert cfg.trainer.devices == "auto" and cfg.trainer.precision == 16 and cfg.model.max_depth == 10
    assert list(compose("gp2_synthetic", ["trainer.devices=[0,1]"]).trainer.devices) == [0, 1]
    with pytest.raises(ConfigError, match=r"'monitor_mode' expects one of \('min', 'max'\)"):
        compose("gp2_synthetic", ["monitor_mode=maximum"])
    with pytest.raises(ConfigError, match=r"'logger.mode' expects one of"):
        compose("gp2_synthetic", ["logger.mode=ofline"])
    with pytest.raises(
        ConfigError, match=r"'model.max_depth' expects one of \('int', 'float'\) \(GP2Module signature\)"
    ):
        compose("gp2_synthetic", ["model.max_depth=abc"])


def test_environment_and_other_resolvers_are_refused_unless_declared(monkeypatch):
    monkeypatch.setenv("SV3D_SECRET", "hunter2")
    with pytest.raises(
        ConfigError, match=r"'logger.group': the interpolation resolver 'oc.env' is not allowed"
    ):
        compose("gp2_synthetic", ["logger.group=${oc.env:SV3D_SECRET}"])
    with pytest.raises(ConfigError, match=r"resolver 'oc.decode' is not allowed"):
        compose("gp2_synthetic", ["logger.group=${oc.decode:1}"])
    cfg = compose("gp2_synthetic", ["allow_env=[logger.group]", "logger.group=${oc.env:SV3D_SECRET}"])
    assert cfg.logger.group == "hunter2"  # declared: allowed
    assert compose("gp2_synthetic", ["logger.group=run-${seed}"]).logger.group == "run-0"  # a key reference


def test_malformed_interpolation_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"key 'logger.group': cannot resolve") as e:
        compose("gp2_synthetic", ["logger.group=${seed"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"key 'logger.group'.*'sed' not found"):
        compose("gp2_synthetic", ["logger.group=${sed}"])


def test_show_prints_every_key_with_its_default_and_source(capsys):
    assert main(["show", "gp2_synthetic", "model.lr=0.1"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "0.1" in lines["model.lr"] and "(default 0.001)" in lines["model.lr"]
    assert lines["model.lr"].endswith("[command line]")
    assert (
        "(default 10)" in lines["trainer.max_epochs"] and "gp2_synthetic.yaml" in lines["trainer.max_epochs"]
    )
    assert (
        lines["model.backbone"].endswith("[experiments/configs/model/gp2.yaml]")
        and "default" not in lines["model.backbone"].split("[")[0].split("mobilenetv2_100")[1]
    )


def test_config_errors_come_before_the_heavy_imports():
    import subprocess
    import sys

    code = (
        "import sys; from experiments.__main__ import main; rc = main(['train', 'gp2_synthetic', 'model.lrr=1']);"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'timm') if m in sys.modules]; print(rc, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "2 []", (out.stdout, out.stderr)
    assert "unknown key 'model.lrr'" in out.stderr
