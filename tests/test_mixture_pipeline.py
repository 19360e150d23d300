"""The GP2 mixture experiment (experiments/configs/gp2_mixture.yaml) end to end on real dataset formats.

Tiny datasets are written in each dataset's own file format (tests/depth_format_writers.py): MegaDepth (uts),
ReDWeb (utss_disparity) and DIW (ordinal) for training; NYUv2 (.mat v7.3 + splits.mat) and TUM for
validation; NYUv2, Sintel and DIW for testing. The real config is shrunk (32x32, batch 3 = one sample of
each training dataset, one epoch, CPU, float32) and run through `experiments.runner.train`, keeping GP2's
evaluation protocol (`eval_resize: native`: ground truth at its own resolution, prediction upsampled).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from depth_format_writers import write_diw, write_megadepth, write_nyu, write_redweb, write_sintel, write_tum
from PIL import Image

from experiments.__main__ import main
from experiments.config import compose
from experiments.runner import build_datamodule, train
from lightning_modules.gp2.module import MAIN_ONLY, REPORTED, GP2Module

TRAIN = ("megadepth", "redweb", "diw")
TRAIN_TYPES = {"megadepth": "uts", "redweb": "utss_disparity", "diw": "ordinal"}
VAL = ("nyu", "tum")
TEST = ("nyu", "sintel", "diw")
NYU_HW = (22, 45)  # not multiples of 32: the native protocol resizes the image to 32x64 and upsamples back
NYU_TEST = (2, 3, 4, 5)  # 1-based, as in splits.mat: 4 test images = a batch of 3 and a batch of 1
DIW_TEST_PAIRS = 3  # write_diw writes one pair per image, three images


def _entry(reader: str, root: Path, split: str) -> str:
    return f"{{reader: {reader}, root: '{root}', split: {split}}}"


def _roots(data: Path) -> dict[str, Path]:
    return {name: data / name for name in ("megadepth", "redweb", "diw", "nyu", "tum", "sintel")}


def mixture_overrides(run_dir: Path, roots: dict[str, Path]) -> list[str]:
    """gp2_mixture shrunk to one CPU epoch of 32x32 images; every data root points at a tiny dataset."""
    train_split = {"megadepth": "train", "redweb": "train", "diw": "train"}
    train = ", ".join(_entry(r, roots[r], train_split[r]) for r in TRAIN)
    val = ", ".join(_entry(r, roots[r], "test") for r in VAL)
    test = ", ".join(_entry(r, roots[r], "test") for r in TEST)
    return [
        f"run_dir={run_dir}",
        f"data.train=[{train}]",
        f"data.val=[{val}]",
        f"data.test=[{test}]",
        "data.image_size=[32,32]",
        "data.batch_size=3",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        "model.log_images=1",
        "model.log_points=32",
    ]


def write_datasets(data: Path) -> dict[str, Path]:
    roots = _roots(data)
    rng = np.random.default_rng(0)
    write_megadepth(roots["megadepth"], rng)  # 3 samples, 6x8
    write_redweb(roots["redweb"], rng)  # 2 samples: the smallest train set sets the epoch length
    write_diw(roots["diw"], rng, split="train_val")  # 3 samples
    write_diw(roots["diw"], rng)  # DIW_test.csv, 3 samples
    write_nyu(roots["nyu"], rng, n=5, h=NYU_HW[0], w=NYU_HW[1], train_ndxs=(1,), test_ndxs=NYU_TEST)
    write_tum(roots["tum"], rng)  # 2 associated frames, 6x8
    write_sintel(roots["sintel"], rng)  # 3 frames, 6x8
    return roots


class _Recorder(pl.Callback):
    """What every train / val / test batch held, and the training losses."""

    def __init__(self) -> None:
        self.train: list[dict] = []
        self.losses: list[float] = []
        self.eval: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(
            {
                "depth_type": list(batch["depth_type"]),
                "name": list(batch["name"]),
                "image": tuple(batch["image"].shape),
                "ordinal_valid": batch["ordinal_valid"].clone(),
            }
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))

    def _eval(self, split: str, batch: dict, dataloader_idx: int) -> None:
        self.eval.append(
            {
                "split": split,
                "loader": dataloader_idx,
                "image": tuple(batch["image"].shape),
                "depth": tuple(batch["depth"].shape),
                "name": list(batch["name"]),
            }
        )

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._eval("val", batch, dataloader_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._eval("test", batch, dataloader_idx)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread: on a loaded 2-core box OpenMP's spinning makes these tiny eval forwards ~100x
    slower with two threads (seconds instead of ~20 ms each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run(tmp: Path) -> dict:
    roots = write_datasets(tmp / "data")
    run_dir = tmp / "run"
    cfg = compose("gp2_mixture", mixture_overrides(run_dir, roots))
    recorder = _Recorder()
    defaults = GP2Module.configure_callbacks
    with pytest.MonkeyPatch.context() as m, _one_thread():
        m.setattr(GP2Module, "configure_callbacks", lambda self: [*defaults(self), recorder])
        result = train(cfg)
    return {"cfg": cfg, "result": result, "recorder": recorder, "run_dir": run_dir, "roots": roots}


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory) -> dict:
    """One shrunk gp2_mixture run (several val and test datasets), shared by the tests below."""
    return _run(tmp_path_factory.mktemp("mixture"))


def test_config_keeps_gp2_protocol(mixture_run):
    cfg = mixture_run["cfg"]
    assert cfg.data.eval_resize == "native", cfg.data.eval_resize
    assert [e["reader"] for e in cfg.data.train] == list(TRAIN)


def test_run_finishes_and_writes_the_run_directory(mixture_run):
    run_dir, result = mixture_run["run_dir"], mixture_run["result"]
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # monitor is val/absrel: with two val datasets it is their mean, so a best checkpoint must exist
    assert (run_dir / "checkpoints" / "best.ckpt").is_file(), list((run_dir / "checkpoints").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    # an epoch is one pass over the smallest train set (ReDWeb, 2 images) at one image of it per batch
    assert metrics["global_step"] == 2, metrics["global_step"]


def test_every_train_batch_holds_one_sample_of_each_dataset(mixture_run):
    rec = mixture_run["recorder"]
    assert len(rec.train) == 2, len(rec.train)
    redweb_seen = set()
    for step, b in enumerate(rec.train):
        assert sorted(b["depth_type"]) == sorted(TRAIN_TYPES.values()), (step, b["depth_type"])
        datasets = sorted(n.split("/")[0] for n in b["name"])
        assert datasets == sorted(TRAIN), (step, b["name"])
        for name, t in zip(b["name"], b["depth_type"], strict=True):
            assert TRAIN_TYPES[name.split("/")[0]] == t, (step, name, t)
        assert b["image"] == (3, 3, 32, 32), (step, b["image"])
        # Ordinal pairs only on the DIW sample's row, the other rows padding. The 6x8 DIW images are
        # centre-cropped to 6x6 (columns 1..6): only b2's pair (0-based x 4 and 6) stays inside the crop;
        # a1's (x 0 and 7) and c3's (x 7 and 0 after rescaling from 16 wide) are dropped.
        diw_row = b["depth_type"].index("ordinal")
        kept = 1 if b["name"][diw_row] == "diw/b2" else 0
        pairs = b["ordinal_valid"].sum(dim=1).tolist()
        assert pairs == [kept if i == diw_row else 0 for i in range(3)], (step, pairs, b["name"])
        redweb_seen |= {n for n in b["name"] if n.startswith("redweb/")}
    assert redweb_seen == {"redweb/1000_2", "redweb/1001_7"}, redweb_seen


def test_training_loss_is_finite(mixture_run):
    rec, run_dir = mixture_run["recorder"], mixture_run["run_dir"]
    assert len(rec.losses) == 2 and all(math.isfinite(v) and v > 0 for v in rec.losses), rec.losses
    with open(run_dir / "csv" / "metrics.csv") as f:
        logged = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(logged) == 2, logged
    np.testing.assert_allclose(logged, rec.losses, rtol=1e-6, err_msg="train/loss in metrics.csv")


def test_native_evaluation_keeps_ground_truth_resolution(mixture_run):
    """Images resized to a multiple of 32 (shorter side 32), ground truth at its own size, batches of one
    dataset each; the NYU test set (4 images, batch 3) gives a batch of 3 and one of 1."""
    ev = mixture_run["recorder"].eval
    nyu = [b for b in ev if b["split"] == "val" and b["loader"] == 0]
    # shorter side 22 -> 32; 45 * 32 / 22 = 65.5 -> 64
    assert [b["image"][0] for b in nyu[:2]] == [3, 1], [b["image"] for b in nyu]
    for b in nyu:
        assert b["image"][1:] == (3, 32, 64) and b["depth"][1:] == (1, *NYU_HW), b
        assert all(n.startswith("nyu/") for n in b["name"]), b["name"]
    others = [b for b in ev if not (b["loader"] == 0)]
    assert {(b["split"], b["loader"]) for b in others} == {("val", 1), ("test", 1), ("test", 2)}
    for b in others:  # TUM, Sintel and DIW frames are 6x8: image 32x32 (8 * 32 / 6 = 42.7 -> 32)
        assert b["image"][1:] == (3, 32, 32) and b["depth"][1:] == (1, 6, 8), b
    prefix = {("val", 1): "tum/", ("test", 1): "sintel/", ("test", 2): "diw/"}
    for b in others:
        assert all(n.startswith(prefix[b["split"], b["loader"]]) for n in b["name"]), b


def _expected_keys(split: str, names: tuple[str, ...], dense: tuple[str, ...], alignments) -> set[str]:
    """The metric keys of GP2Module._log_epoch with several dataloaders (the loss keys are checked apart)."""
    main_a, *others = alignments
    keys = {f"{split}/{m}" for m in REPORTED + MAIN_ONLY}
    for n in dense:
        keys |= {f"{split}/{n}/{m}" for m in REPORTED + MAIN_ONLY}
        keys |= {f"{split}/{n}/{a}/{m}" for a in others for m in REPORTED}
    keys |= {f"{split}/{n}/whdr" for n in names if n == "diw"}
    return keys


def test_metrics_are_per_dataset_and_finite(mixture_run):
    metrics = json.loads((mixture_run["run_dir"] / "metrics.json").read_text())
    alignments = list(mixture_run["cfg"].model.alignments)
    for split, names, dense in (("val", VAL, VAL), ("test", TEST, ("nyu", "sintel"))):
        got = {k: v for k, v in metrics[split].items() if "loss" not in k}
        expected = _expected_keys(split, names, dense, alignments)
        assert set(got) == expected, (
            f"{split}: missing {sorted(expected - set(got))}, unexpected {sorted(set(got) - expected)}"
        )
        bad = {k: v for k, v in metrics[split].items() if not math.isfinite(v)}
        assert not bad, bad
        assert any("loss" in k for k in metrics[split]), sorted(metrics[split])
        for m in REPORTED:  # the split's main metric is the mean over its dense datasets
            mean = float(np.mean([got[f"{split}/{n}/{m}"] for n in dense]))
            assert got[f"{split}/{m}"] == pytest.approx(mean, rel=1e-5, abs=1e-6), (split, m)
        for n in dense:
            assert 0 <= got[f"{split}/{n}/delta125_bad"] <= 100, (split, n)
            assert got[f"{split}/{n}/absrel"] >= 0 and got[f"{split}/{n}/rmse"] >= 0, (split, n)


def test_every_eval_dataset_loss_reaches_metrics_json(mixture_run):
    metrics = json.loads((mixture_run["run_dir"] / "metrics.json").read_text())
    for split, names in (("val", VAL), ("test", TEST)):
        losses = {k: v for k, v in metrics[split].items() if k.endswith("/loss") and k != f"{split}/loss"}
        assert set(losses) == {f"{split}/{n}/loss" for n in names}, (split, sorted(losses))
        assert all(math.isfinite(v) for v in losses.values()), losses
        mean = float(np.mean(list(losses.values())))
        assert metrics[split][f"{split}/loss"] == pytest.approx(mean, rel=1e-5), split


def test_diw_whdr_matches_a_per_image_reference(mixture_run):
    """test/diw/whdr against a loop over the DIW test images with the final weights: the predicted order
    of each pair (log-disparity upsampled to the 6x8 thumbnail) against the annotation."""
    whdr = json.loads((mixture_run["run_dir"] / "metrics.json").read_text())["test"]["test/diw/whdr"]
    assert 0 <= whdr <= 100, whdr
    dm = build_datamodule(mixture_run["cfg"], "test")
    diw = dm.test_sets[TEST.index("diw")]
    model = GP2Module.load_from_checkpoint(
        str(mixture_run["run_dir"] / "checkpoints" / "last.ckpt"), map_location="cpu"
    ).eval()
    wrong = 0
    with torch.no_grad(), _one_thread():
        for i in range(len(diw)):
            s = diw[i]
            pred = model.predict_like(s["image"][None], s["depth"][None])[0, 0]  # (6, 8)
            ya, xa, yb, xb, rel = s["ordinal"][0].tolist()
            # A predicted farther when B has the larger log-disparity (a tie counts as "A not farther",
            # GP2's official eval); rel > 0 means A is annotated farther.
            farther_a = bool(pred[int(yb), int(xb)] > pred[int(ya), int(xa)])
            wrong += farther_a != (rel > 0)
    assert len(diw) == DIW_TEST_PAIRS
    assert whdr == pytest.approx(100.0 * wrong / DIW_TEST_PAIRS, abs=1e-4), (whdr, wrong)


def test_visualizer_pictures_are_at_ground_truth_resolution(mixture_run):
    media = sorted((mixture_run["run_dir"] / "media").glob("*.png"))
    assert media, list(mixture_run["run_dir"].iterdir())
    from lightning_modules.visualization import ColorBar, Panel, render_figure

    # input | prediction | target | error, each tile at the ground truth's resolution: the picture is as tall
    # as a figure of four NYU-sized panels (three with colour bars), and at least as wide (the bars' labels
    # take the width their numbers need)
    blank = torch.zeros(3, *NYU_HW)
    bar = ColorBar(0.0, 1.0, "m")
    ref = render_figure([Panel(blank, "input"), *[Panel(blank, t, bar) for t in ("pred", "gt", "err")]])
    for p in media:
        arr = np.asarray(Image.open(p))
        assert arr.shape[0] == ref.image.shape[0] and arr.shape[1] >= ref.image.shape[1], (
            p.name,
            arr.shape,
            ref.image.shape,
        )


@pytest.mark.parametrize("emptied", ["megadepth", "redweb", "diw", "nyu"])
def test_empty_dataset_root_stops_before_anything_is_written(tmp_path, capsys, emptied):
    roots = write_datasets(tmp_path / "data")
    roots[emptied] = tmp_path / f"empty_{emptied}"
    roots[emptied].mkdir()
    run = tmp_path / "run"
    assert main(["train", "gp2_mixture", *mixture_overrides(run, roots)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(roots[emptied]) in err, err
    assert not run.exists(), list(run.iterdir())
