"""Config composition and validation (experiments/config.py) and the command line's error paths."""

from __future__ import annotations

import pytest

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
