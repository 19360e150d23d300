"""`python -m experiments bench`: an unknown `--only` name is a one-line ConfigError, before anything runs."""

from __future__ import annotations

import pytest

import experiments.bench
from experiments.__main__ import main as cli_main
from experiments.config import ConfigError


def test_unknown_only_name_lists_the_available_benchmarks(capsys):
    available = experiments.bench.modules()
    assert "pairwise_loss" in available and "common" not in available
    with pytest.raises(ConfigError, match=r"--only: unknown benchmark 'nope'") as info:
        experiments.bench.main(["--only", "nope"])
    message = str(info.value)
    assert "\n" not in message, message
    for name in available:
        assert name in message.split("available:")[1], f"{name!r} missing from {message!r}"
    # raised before the header line or any benchmark ran (a known name given alongside does not run)
    with pytest.raises(ConfigError, match="'nope'"):
        experiments.bench.main(["--only", "pairwise_loss", "--only", "nope"])
    assert capsys.readouterr().out == ""


def test_cli_prints_the_error_as_one_line(capsys):
    assert cli_main(["bench", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: bench --only: unknown benchmark 'nope'"), err
    assert "Traceback" not in err
