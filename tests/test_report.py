"""`python -m experiments report`: a tiny report end to end (4 tiny training runs + 1 evaluation, once per
module), reuse, refusal, the commands it prints, and the two real report files (composed, not trained)."""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from experiments import report as rp
from experiments.config import ConfigError, compose

ENTRY = "{{reader: synthetic_depth, split: {split}, num_samples: {n}, image_size: [32, 32], seed: 3}}"
# gp2_synthetic shrunk to seconds (as tests/test_pipeline.py's tiny()): 32x32, 16 samples, 1 epoch, csv, cpu
TINY = [
    "data.image_size=[32,32]",
    "data.batch_size=4",
    f"data.train=[{ENTRY.format(split='train', n=16)}]",
    f"data.val=[{ENTRY.format(split='val', n=8)}]",
    f"data.test=[{ENTRY.format(split='test', n=8)}]",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "model.log_images=2",
    "model.log_points=64",
]
PAPER = {"pair": {"rel": "9.16", "d": "9.27"}, "point": {"rel": "9.91", "d": "10.36"}}


def write_tiny_report(path: Path) -> Path:
    spec = {
        "title": "Tiny loss table",
        "citation": "GP2 Table 2",
        "paper": "Romanov et al. 2020",
        "description": "A test report.",
        "seeds": [0, 1],
        "overrides": TINY,
        "columns": [
            {"metric": "test/absrel", "label": "rel (%)", "scale": 100, "fmt": ".2f", "paper": "rel"},
            {"metric": "test/delta125_bad", "label": "d1.25 bad (%)", "fmt": ".3f", "paper": "d"},
            {"metric": "val/absrel", "label": "val rel", "fmt": ".4f"},
        ],
        "entries": [
            {
                "name": "pair",
                "label": "L1-pair",
                "experiment": "gp2_synthetic",
                "overrides": ["model.loss=pairwise_l1"],
                "x": 1,
                "paper_label": "L_1-pair, UTS",
                "paper": PAPER["pair"],
            },
            {
                "name": "point",
                "label": "L1-point",
                "experiment": "gp2_synthetic",
                "overrides": {"model.loss": "l1"},
                "x": 2,
                "paper": PAPER["point"],
            },
            {
                "name": "pair_eval",
                "label": "L1-pair, best.ckpt evaluated",
                "experiment": "gp2_synthetic",
                "seeds": [0],
                "ckpt_path": "{out}/pair/seed{seed}/checkpoints/best.ckpt",
            },
        ],
        "plots": [
            {
                "file": "tiny.png",
                "title": "tiny",
                "metric": "test/absrel",
                "scale": 100,
                "xlabel": "entry",
                "ylabel": "rel (%)",
                "series": [
                    {"label": "both", "entries": ["pair", "point"]},
                    {"label": "pair", "entries": ["pair"]},
                ],
            }
        ],
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    path = write_tiny_report(root / "tiny.yaml")
    out = root / "out"
    assert rp.main([str(path), "--out", str(out)]) == 0
    return path, out


def _metrics(out: Path, entry: str, seed: int) -> dict:
    return json.loads((out / entry / f"seed{seed}" / "metrics.json").read_text())


def test_table_is_the_mean_and_spread_of_the_runs(built):
    path, out = built
    md = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    rows = {r["entry"]: r for r in data["rows"]}
    assert set(rows) == {"pair", "point", "pair_eval"}
    for entry in ("pair", "point"):
        rel = [100 * _metrics(out, entry, s)["test"]["test/absrel"] for s in (0, 1)]
        bad = [_metrics(out, entry, s)["test"]["test/delta125_bad"] for s in (0, 1)]
        val = [_metrics(out, entry, s)["val"]["val/absrel"] for s in (0, 1)]
        # the main table: n, then per column our mean ± sample std, beside the paper's numbers as given
        row = next(line for line in md.splitlines() if line.startswith(f"| {rows[entry]['label']} |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[2:] == [
            "2",
            f"{statistics.fmean(rel):.2f} ± {statistics.stdev(rel):.2f}",
            PAPER[entry]["rel"],
            f"{statistics.fmean(bad):.3f} ± {statistics.stdev(bad):.3f}",
            PAPER[entry]["d"],
            f"{statistics.fmean(val):.4f} ± {statistics.stdev(val):.4f}",
        ]
        # the spread table: mean, std, min-max, n, seeds and every seed's value
        spread = f"| {rows[entry]['label']} | rel (%) | {statistics.fmean(rel):.2f} | "
        spread += f"{statistics.stdev(rel):.2f} | "
        spread += f"{min(rel):.2f}–{max(rel):.2f} | 2 | 0, 1 | 0: {rel[0]:.2f}, 1: {rel[1]:.2f} |"
        assert spread in md
        col = rows[entry]["columns"]["test/absrel"]
        assert col["mean"] == pytest.approx(statistics.fmean(rel)) and col["n"] == 2
        assert col["paper"] == PAPER[entry]["rel"]
    assert "| L1-pair | L_1-pair, UTS | 2 |" in md and "| entry | paper's row | n | rel (%) (ours) |" in md
    # the evaluation of pair's seed-0 checkpoint: one seed, no spread
    ev = _metrics(out, "pair_eval", 0)
    assert f"| L1-pair, best.ckpt evaluated |  | 1 | {100 * ev['test']['test/absrel']:.2f} | — |" in md
    assert "Published numbers: GP2 Table 2, Romanov et al. 2020." in md and "![tiny](tiny.png)" in md


def test_report_lists_the_commands_and_they_compose_to_the_same_config(built):
    path, out = built
    md = (out / "report.md").read_text()
    commands = [line for line in md.splitlines() if line.startswith("python -m experiments ")]
    assert len(commands) == 5
    runs = {
        (r["entry"], x["seed"]): x
        for r in json.loads((out / "report.json").read_text())["rows"]
        for x in r["runs"]
    }
    assert sorted(runs) == [("pair", 0), ("pair", 1), ("pair_eval", 0), ("point", 0), ("point", 1)]
    for (entry, seed), run in runs.items():
        assert run["command"] in commands
        argv = shlex.split(run["command"])
        assert argv[:3] == ["python", "-m", "experiments"]
        verb, exp, overrides = argv[3], argv[4], argv[5:]
        assert verb == ("eval" if entry == "pair_eval" else "train") and exp == "gp2_synthetic"
        assert not any(a.startswith("run_dir=") for a in overrides)
        cfg = yaml.safe_load(yaml.safe_dump(rp.to_container(compose(exp, overrides))))
        saved = yaml.safe_load((out / entry / f"seed{seed}" / "config.yaml").read_text())
        for d in (cfg, saved):
            d.pop("run_dir"), d.pop("overrides", None)
        if entry == "pair_eval":  # the runner records the checkpoint it evaluated; the command names it
            assert Path(saved.pop("ckpt_path")) == Path(cfg.pop("ckpt_path"))
            assert Path(cfg_ckpt := overrides[-1].split("=", 1)[1]).is_file(), cfg_ckpt
        assert cfg == saved, (entry, seed)
        assert f"# seed {seed}: {out / entry / f'seed{seed}'}" in md


def test_plot_is_a_png(built):
    _, out = built
    with Image.open(out / "tiny.png") as im:
        im.verify()
    with Image.open(out / "tiny.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def test_second_invocation_reuses_every_run(built, monkeypatch):
    path, out = built
    files = sorted(out.glob("*/seed*/metrics.json")) + sorted(out.glob("*/seed*/checkpoints/*.ckpt"))
    assert len(files) >= 5
    before = {f: os.stat(f).st_mtime_ns for f in files}
    from experiments import runner

    def no(cfg):
        raise AssertionError(f"retrained {cfg.run_dir}")

    monkeypatch.setattr(runner, "train", no)
    monkeypatch.setattr(runner, "evaluate", no)
    start = time.perf_counter()
    assert rp.main([str(path), "--out", str(out)]) == 0
    assert time.perf_counter() - start < 60  # composing 5 configs and one plot; no training
    assert {f: os.stat(f).st_mtime_ns for f in files} == before
    data = json.loads((out / "report.json").read_text())
    assert all(x["reused"] for r in data["rows"] for x in r["runs"])
    assert "5 runs (5 reused from earlier invocations)" in (out / "report.md").read_text()


def test_a_changed_override_into_the_same_directory_is_refused(built):
    path, out = built
    before = (out / "pair" / "seed0" / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=re.escape(str(out / "pair" / "seed0"))) as e:
        rp.main([str(path), "--out", str(out), "trainer.max_epochs=2"])
    assert "trainer.max_epochs: 1 there, 2 now" in str(e.value) and "\n" not in str(e.value)
    assert (out / "pair" / "seed0" / "config.yaml").read_text() == before
    # keys that do not change the numbers are not a different run (nothing retrained either)
    for key in ("trainer.log_every_n_steps=7", "logger=wandb"):
        runs = rp.plan(rp.load_report(str(path)), out, [key])
        assert {rp.status(r) for r in runs} == {"done"}


def test_an_unfinished_or_foreign_directory_is_refused(tmp_path):
    path = write_tiny_report(tmp_path / "tiny.yaml")
    report = rp.load_report(str(path))
    run = rp.plan(report, tmp_path / "out")[0]
    d = Path(run["run_dir"])
    d.mkdir(parents=True)
    (d / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError, match="no config.yaml"):
        rp.status(run)
    (d / "config.yaml").write_text(yaml.safe_dump(rp.to_container(run["cfg"])))
    with pytest.raises(ConfigError, match="unfinished run"):
        rp.status(run)
    (d / "metrics.json").write_text(json.dumps({"val": {}, "test": {}, "status": "diverged"}))
    with pytest.raises(ConfigError, match="diverged"):
        rp.status(run)
    (d / "metrics.json").write_text(json.dumps({"val": {}, "test": {}, "status": "finished"}))
    assert rp.status(run) == "done"
    assert (d / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize("name", ["gp2_table2", "gp2_fig3"])
def test_real_reports_load_and_every_run_composes(name, tmp_path):
    report = rp.load_report(name)
    runs = rp.plan(report, tmp_path)  # composes every run's config (nothing trained)
    assert len(runs) == sum(len(e["seeds"]) for e in report["entries"]) and len(runs) >= 15
    assert all(rp.status(r) == "new" for r in runs)
    assert {r["seed"] for r in runs} == {0, 1, 2}
    for r in runs:
        assert r["cfg"].run_dir == str(tmp_path / r["entry"] / f"seed{r['seed']}")
        assert compose(r["experiment"], shlex.split(r["command"])[5:]).seed == r["seed"]
    with pytest.raises(ConfigError, match="seed"):  # seeds come from the file or --seeds
        rp.plan(report, tmp_path, ["seed=3"])
    assert len(rp.plan(report, tmp_path, ["trainer.max_epochs=1"], seeds=[0])) == len(report["entries"])


@pytest.mark.parametrize("name", rp.list_reports())
def test_every_shipped_report_loads_and_its_runs_compose(name, tmp_path):
    report = rp.load_report(name)
    runs = rp.plan(report, tmp_path)  # composes every run's config (nothing trained)
    assert len(runs) == sum(len(e["seeds"]) for e in report["entries"]) > 0
    columns = {c["paper"] for c in report["columns"] if c.get("paper")}
    for e in report["entries"]:
        assert set(e.get("paper") or {}) <= columns, f"{name}: entry {e['name']} cites a column it lacks"


def test_gp2_table2_has_the_papers_numbers_as_printed():
    report = rp.load_report("gp2_table2")
    assert report["citation"] == "GP2 Table 2"
    got = {
        e["paper_label"]: (e["paper"]["delta1.25"], e["paper"]["rel"], e["paper"]["log10"])
        for e in report["entries"]
    }
    assert got == {
        "L_1-pair, UTS": ("9.27", "9.16", "0.0388"),
        "L_2-pair [9], UTS": ("9.97", "9.47", "0.0402"),
        "L_1-point, UTS": ("9.65", "9.36", "0.0397"),
        "L_1-point, absolute": ("10.36", "9.91", "0.0419"),
        "L_2-point, absolute": ("11.37", "10.43", "0.0446"),
    }
    losses = {e["name"]: compose(e["experiment"], e["overrides"]).model.loss for e in report["entries"]}
    assert losses == {
        "l1_pair": "pairwise_l1",
        "l2_pair": "pairwise_l2",
        "l1_point_uts": "si_l1",
        "l1_point_abs": "l1",
        "l2_point_abs": "l2",
    }
    assert all(e["experiment"] == "gp2_synthetic" for e in report["entries"])


def test_gp2_fig3_lines_are_the_uts_part_and_the_mixture():
    report = rp.load_report("gp2_fig3")
    entries = {e["name"]: e for e in report["entries"]}
    series = {s["label"]: s["entries"] for p in report["plots"] for s in p["series"]}
    assert len(series) == 2
    for label, names in series.items():
        for n in names:
            train = compose(entries[n]["experiment"], entries[n]["overrides"]).data.train
            assert len(train) == 1
            p = entries[n]["x"]
            if label.startswith("UTS part only"):  # round(p N) scenes, all UTS
                assert (train[0].num_samples, train[0].uts_fraction, train[0].utss_fraction) == (
                    round(p * 2048),
                    1.0,
                    0.0,
                )
            else:  # N scenes, p of them UTS and the rest UTSS
                assert (train[0].num_samples, train[0].uts_fraction, train[0].utss_fraction) == (
                    2048,
                    p,
                    1 - p,
                )
    assert sorted(entries[n]["x"] for n in series[next(iter(series))]) == [0.1, 0.25, 0.5, 1.0]


def _bad(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


GOOD = {
    "title": "t",
    "citation": "c",
    "columns": [{"metric": "val/absrel"}],
    "entries": [{"name": "a", "experiment": "gp2_synthetic"}],
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colums": []}, "unknown key 'colums'"),
        ({"title": None}, r"title: expected a string"),
        ({"seeds": [0, "1"]}, r"seeds: expected a non-empty list of integer seeds"),
        ({"columns": [{"metric": "absrel"}]}, r"columns\[0\].metric: expected a val/... or test/..."),
        ({"columns": [{"metric": "val/absrel", "fmt": "%d"}]}, r"columns\[0\].fmt"),
        ({"entries": [{"name": "a"}]}, r"entries\[0\]: missing key 'experiment'"),
        ({"entries": [{"name": "a b", "experiment": "gp2_synthetic"}]}, "entry name 'a b'"),
        (
            {"entries": [{"name": "a", "experiment": "gp2_synthetic", "overrides": ["seed=1"]}]},
            r"entries\[0\].overrides: 'seed'",
        ),
        (
            {"entries": [{"name": "a", "experiment": "gp2_synthetic", "overrides": ["model.los=l1"]}]},
            r"entry 'a' \(seed 0\).*model.los",
        ),
        (
            {"entries": [{"name": "a", "experiment": "nope"}]},
            r"entry 'a' \(seed 0\): unknown experiment 'nope'",
        ),
        ({"entries": [{"sweep": "nope", "name": "x"}]}, r"entries\[0\].sweep: unknown sweep 'nope'"),
        ({"entries": [{"sweep": "gp2_loss_ablation", "name": "{model.los}"}]}, r"no parameter 'model.los'"),
        ({"entries": [{"sweep": "gp2_loss_ablation", "name": "same"}]}, "'same' is used twice"),
        (
            {
                "plots": [
                    {"file": "a.png", "metric": "val/absrel", "series": [{"label": "l", "entries": ["b"]}]}
                ]
            },
            "no entry 'b'",
        ),
    ],
)
def test_a_malformed_report_names_the_file_and_the_key(tmp_path, change, message):
    path = _bad(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError, match=message) as e:
        rp.main([str(path), "--dry-run", "--out", str(tmp_path / "out")])
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_unknown_report_lists_the_available_ones_and_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="unknown report 'nope'.*Available: .*gp2_fig3, gp2_table2"):
        rp.main(["nope"])
    with pytest.raises(ConfigError, match="unrecognized arguments: --bogus"):
        rp.main(["gp2_fig3", "--bogus"])
    with pytest.raises(ConfigError, match="--seeds"):
        rp.main(["gp2_fig3", "--seeds", "a,b", "--dry-run"])
    not_yaml = tmp_path / "x.yaml"
    not_yaml.write_text("title: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        rp.main([str(not_yaml)])
    # options anywhere among the overrides
    data = rp.make_report("gp2_fig3", ["trainer.max_steps=8"], tmp_path / "o", seeds=[1], dry_run=True)
    assert len(data["runs"]) == 8 and all(r["run_dir"].endswith("seed1") for r in data["runs"])
    assert (
        rp.main(["gp2_table2", "--dry-run", "trainer.max_epochs=1", "--seeds", "0", "--out", str(tmp_path)])
        == 0
    )
