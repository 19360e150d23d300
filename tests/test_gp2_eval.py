"""`python -m experiments eval gp2_eval`: GP2's five evaluation sets, in their own layouts under one data
folder (experiments/configs/data/depth_gp2_eval.yaml), scored by one checkpoint, and GP2's README table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from depth_format_writers import write_diw, write_eth3d_gp2, write_nyu, write_sintel, write_tum_hdf5
from test_gp2_official import release_file
from test_pipeline import tiny

from experiments.__main__ import main
from experiments.config import ConfigError, compose
from experiments.runner import train


def write_gp2_data_folder(root: Path) -> None:
    """The folder of GP2's README ("Evaluation"): NYU's .mat files, TUM/, sintel/{final,depth}, DIW/, ETH3D/."""
    rng = np.random.default_rng(0)
    write_nyu(root, rng)
    write_tum_hdf5(root / "TUM", rng)
    write_sintel(root / "sintel_download", rng)
    (root / "sintel").mkdir()
    for sub in ("final", "depth"):
        os.rename(root / "sintel_download" / "training" / sub, root / "sintel" / sub)
    write_diw(root / "DIW", rng)
    write_eth3d_gp2(root / "ETH3D", rng)


def test_gp2_eval_scores_all_five_sets_and_prints_the_readme_table(tmp_path, capsys):
    data = tmp_path / "data-folder"
    write_gp2_data_folder(data)
    train(compose("gp2_synthetic", tiny(tmp_path / "run", "logger=csv", n_train=4)))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    args = [
        "eval",
        "gp2_eval",
        f"ckpt_path={ckpt}",
        f"data.root_dir={data}",
        f"run_dir={tmp_path / 'eval'}",
        "data.image_size=[64,64]",
        "data.num_workers=0",
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    test = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    for name in ("nyu", "tum_hdf5", "sintel", "eth3d_gp2"):  # every dense set was scored, both alignments
        assert f"test/{name}/delta125_bad" in test and f"test/{name}/lstsq_disparity/absrel" in test, name
    assert "test/diw/whdr" in test
    table = out[out.index("| alignment |") :].splitlines()
    uts = [c.strip() for c in table[2].split("|")[1:-1]]
    utss = [c.strip() for c in table[3].split("|")[1:-1]]
    assert uts[0].startswith("UTS") and utss[0].startswith("UTSS")
    expect_uts = [
        f"{test['test/nyu/delta125_bad']:.2f}",
        f"{test['test/tum_hdf5/delta125_bad']:.2f}",
        f"{test['test/sintel/absrel']:.3f}",
        f"{test['test/diw/whdr']:.2f}",
        f"{test['test/eth3d_gp2/absrel']:.3f}",
    ]
    assert uts[1:] == expect_uts, (uts, expect_uts)
    assert utss[1:3] == [
        f"{test['test/nyu/lstsq_disparity/delta125_bad']:.2f}",
        f"{test['test/tum_hdf5/lstsq_disparity/delta125_bad']:.2f}",
    ]


def test_gp2_eval_of_a_release_file_needs_no_checkpoint(tmp_path, capsys):
    """`eval gp2_eval model.official_weights=mn_lrn4.pth`: the network is GP2's release, scored on all sets."""
    data = tmp_path / "data-folder"
    write_gp2_data_folder(data)
    weights, _ = release_file(tmp_path, "mn_lrn4")
    common = [f"data.root_dir={data}", "data.image_size=[64,64]", "data.num_workers=0", "logger=csv"]
    common += ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]
    assert (
        main(["eval", "gp2_eval", f"model.official_weights={weights}", f"run_dir={tmp_path / 'e'}", *common])
        == 0
    )
    out = capsys.readouterr().out
    assert "| UTS (median log-disparity) |" in out
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(weights) and "test/eth3d_gp2/absrel" in metrics["test"]
    cfg = compose("gp2_eval", [f"run_dir={tmp_path / 'e2'}", *common])
    with pytest.raises(ConfigError, match=r"eval needs ckpt_path=.*or model.official_weights=FILE"):
        from experiments.runner import evaluate

        evaluate(cfg)
