"""Tests of the generic data machinery shared by every family: mixed batches with a non-depth toy dataset
and its own collate, the sample schemas and the schema check of data entries, the pre-training file
checks of the readers, and the DDP evaluation loaders that score every sample once."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from depth_format_writers import (
    write_diml,
    write_diw,
    write_eth3d,
    write_eth3d_gp2,
    write_folder,
    write_kitti,
    write_kitti_selection,
    write_megadepth,
    write_nyu,
    write_redweb,
    write_sintel,
    write_tum,
    write_tum_hdf5,
)
from torch.utils.data import Dataset

import losses.depth
from datamodules.base import MixedDataModule
from datamodules.depth import io as depth_io
from datamodules.depth.datamodule import DepthDataModule
from datamodules.depth.readers_base import DepthReader
from datamodules.entries import build_entries, check_entries, with_root_dir
from datamodules.eval_loaders import eval_sampler, replicas
from datamodules.mixing import MixedBatchSampler, MixedDataset, TransformedDataset, split_key
from datamodules.readers_base import Reader
from datamodules.registry import READERS
from datamodules.schema import SCHEMAS, check_sample
from datamodules.seeding import stable_seed
from helpers import assert_close

# ------------------------------------------------------------------------------------ a toy family


class ToyClouds(Dataset):
    """A non-depth reader of the point-cloud schema: sample i of dataset `tag` has points filled with
    offset + i. Counts constructions, so that tests can tell whether anything was opened."""

    SCHEMA = "point_cloud"
    opened = 0

    def __init__(self, tag: str, n: int, offset: float = 0.0, points: int = 4):
        type(self).opened += 1
        self.tag, self.n, self.offset, self.points = tag, n, offset, points

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return {
            "image": torch.zeros(3, 2, 2),
            "mask": torch.ones(1, 2, 2, dtype=torch.bool),
            "pose": torch.tensor([0.1 * i, 0.0]),
            "points": torch.full((self.points, 3), self.offset + i),
            "name": f"{self.tag}/{i}",
        }


def jitter(sample: dict, aug_seed: int | None) -> dict:
    """The toy family's augmentation: points shifted by a seeded offset (train only: aug_seed given)."""
    if aug_seed is None:
        return sample
    g = torch.Generator().manual_seed(int(aug_seed))
    return {**sample, "points": sample["points"] + torch.rand(1, 3, generator=g), "jittered": True}


def collate_clouds(samples: list[dict]) -> dict:
    """The toy family's own collate: stacked points, names, and the batch size as a plain int."""
    return {
        "points": torch.stack([s["points"] for s in samples]),
        "name": [s["name"] for s in samples],
        "jittered": [bool(s.get("jittered")) for s in samples],
        "size": len(samples),
    }


class ToyCloudDataModule(MixedDataModule):
    SCHEMA = "point_cloud"
    collate = staticmethod(collate_clouds)

    def wrap(self, dataset: Dataset, split: str) -> Dataset:
        return TransformedDataset(dataset, jitter if split == "train" else None)


@pytest.fixture
def toy_reader():
    """A uniquely named registered reader of schema "point_cloud", removed from READERS afterwards."""
    name = f"toy_clouds_{uuid.uuid4().hex[:8]}"
    READERS.register(name)(ToyClouds)
    ToyClouds.opened = 0
    yield name
    del READERS[name]


def _dataset(name: str) -> str:
    return name.split("/")[0]


# ------------------------------------------------------------------------------------ mixing


def test_toy_family_batches_are_mixed_seeded_and_use_its_collate(toy_reader):
    dm = ToyCloudDataModule(
        train=[
            {"reader": toy_reader, "tag": "a", "n": 5},
            {"reader": toy_reader, "tag": "b", "n": 9, "offset": 100.0},
            {"reader": toy_reader, "tag": "c", "n": 20, "offset": 200.0},
        ],
        val=[{"reader": toy_reader, "tag": "v", "n": 3}],
        batch_size=7,  # 2 per dataset -> batches of 6, an epoch = 5 // 2 = 2 batches
        seed=3,
    )
    assert ToyClouds.opened == 0, "__init__ must not open readers"
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    for b in batches:
        assert b["size"] == 6 and b["points"].shape == (6, 4, 3), "the family's own collate is used"
        assert sorted(_dataset(n) for n in b["name"]) == ["a", "a", "b", "b", "c", "c"]
        assert all(b["jittered"]), "train samples get the seeded augmentation"
        # the jitter is in [0, 1): a sample's points stay within 1 of its dataset offset + index
        for name, pts in zip(b["name"], b["points"], strict=True):
            base = {"a": 0.0, "b": 100.0, "c": 200.0}[_dataset(name)] + int(name.split("/")[1])
            assert 0 <= float(pts.min() - base) and float(pts.max() - base) < 1
    again = list(dm.train_dataloader())
    assert [b["name"] for b in again] == [b["name"] for b in batches]
    # exact on purpose: the same seeded computation twice in one process must repeat bit for bit
    assert all(torch.equal(x["points"], y["points"]) for x, y in zip(again, batches, strict=True))
    flat_a = [n for b in batches for n in b["name"] if n.startswith("a/")]
    assert len(set(flat_a)) == len(flat_a), "the smallest dataset is seen without repetition in an epoch"

    val = dm.val_dataloader()
    first = next(iter(val))
    assert first["name"] == ["v/0", "v/1", "v/2"] and not any(first["jittered"]), "val: ordered, no aug"
    assert dm.dataset_names("train") == [toy_reader] * 3


def test_sampler_epochs_differ_and_aug_seeds_follow_the_order():
    sampler = MixedBatchSampler([4, 6], batch_size=4, seed=0, num_replicas=1, rank=0)
    e0 = list(sampler)
    sampler.set_epoch(1)
    e1 = list(sampler)
    assert e0 != e1, "a new epoch must give a new order"
    sampler.set_epoch(0)
    assert list(sampler) == e0, "an epoch's batches are a pure function of (seed, epoch)"
    seeds = [s for b in e0 for _, s in b]
    assert len(set(seeds)) == len(seeds), "every sample of an epoch gets its own aug seed"


def test_mixed_dataset_passes_aug_seed_to_its_part_and_plain_ints_without():
    seen = []

    def record(sample, aug_seed):
        seen.append(aug_seed)
        return sample

    mixed = MixedDataset(
        [TransformedDataset(ToyClouds("a", 2), record), TransformedDataset(ToyClouds("b", 3))]
    )
    assert mixed[(3, 17)]["name"] == "b/1"
    assert mixed[(1, 5)]["name"] == "a/1" and mixed[0]["name"] == "a/0"
    assert seen == [5, None]
    with pytest.raises(IndexError):
        mixed[(5, 1)]
    with pytest.raises(ValueError, match="key"):
        split_key((1, 2, 3))
    with pytest.raises(ValueError, match="transform"):
        TransformedDataset(ToyClouds("a", 2), transform="flip")


def test_stable_seed_is_defined_once_and_stable():
    import datamodules.depth.synthetic as synthetic
    import datamodules.mixing as mixing

    assert synthetic.stable_seed is stable_seed and mixing.stable_seed is stable_seed
    # pinned: changing the hash would silently change every synthetic dataset and every train order
    assert stable_seed(0, 0) == stable_seed(0, 0) != stable_seed(0, 1)
    assert stable_seed(7, 3) == int(np.random.SeedSequence([7, 3]).generate_state(2, np.uint64)[0] >> 1)
    with pytest.raises(ValueError, match="parts"):
        stable_seed(-1)
    with pytest.raises(ValueError, match="parts"):
        stable_seed()


# ------------------------------------------------------------------------------------ schemas


def test_check_sample_names_where_the_missing_keys_and_the_schema():
    sample = {"image": torch.zeros(3, 2, 2), "mask": torch.zeros(1, 2, 2), "name": "x"}
    with pytest.raises(ValueError) as err:
        check_sample(sample, "point_cloud", "toy[3]")
    msg = str(err.value)
    assert "toy[3]" in msg and "'pose'" in msg and "'points'" in msg and "'point_cloud'" in msg
    assert "'image'" not in msg.split("required")[0], "only the missing keys are named as missing"
    full = {**sample, "pose": torch.zeros(2), "points": torch.zeros(5, 3)}
    assert check_sample(full, "point_cloud", "toy[3]") is full
    with pytest.raises(ValueError, match="'extra'"):
        check_sample({**full, "extra": 1}, "point_cloud", "toy[3]", strict=True)
    with pytest.raises(ValueError, match="schema"):
        check_sample(full, "pointcloud", "toy[3]")
    assert set(SCHEMAS) == {"depth", "category", "point_cloud"}


def test_every_registered_reader_declares_a_known_schema():
    for name, cls in READERS.items():
        assert getattr(cls, "SCHEMA", None) in SCHEMAS, f"reader {name!r} declares no known SCHEMA"
    sample = READERS["synthetic_depth"](num_samples=1, image_size=(8, 8))[0]
    check_sample(sample, "depth", "synthetic_depth[0]", strict=True)


def test_datamodule_refuses_a_reader_of_another_schema_before_opening_it(toy_reader, tmp_path):
    depth_entry = {"reader": "synthetic_depth", "num_samples": 2, "image_size": [8, 8]}
    bad = {"reader": toy_reader, "tag": "x", "n": 2, "root": str(tmp_path / "not_there")}
    with pytest.raises(ValueError) as err:
        DepthDataModule(train=[depth_entry], val=[depth_entry, bad])
    msg = str(err.value)
    assert f"data.val[1] ({toy_reader})" in msg, msg
    assert "'point_cloud'" in msg and "'depth'" in msg, msg
    assert ToyClouds.opened == 0, "the refusal must come from the class attribute, not from opening it"
    # and the other way round: the toy family refuses depth readers, in any split
    with pytest.raises(ValueError, match=r"data\.test\[0\] \(synthetic_depth\).*'depth'.*'point_cloud'"):
        ToyCloudDataModule(train=[{"reader": toy_reader, "tag": "a", "n": 2}], val=[], test=[depth_entry])


def test_a_reader_without_schema_is_refused(toy_reader):
    name = f"no_schema_{uuid.uuid4().hex[:8]}"

    class NoSchema(Dataset):
        pass

    READERS.register(name)(NoSchema)
    try:
        with pytest.raises(ValueError, match=rf"data\.train\[0\] \({name}\).*no sample SCHEMA"):
            ToyCloudDataModule(train=[{"reader": name}], val=[])
    finally:
        del READERS[name]


def test_entries_are_checked_and_named():
    with pytest.raises(ValueError, match=r"data\.val\[1\]: expected a dict with a 'reader' key"):
        check_entries([{"reader": "synthetic_depth"}, {"split": "val"}], "val", "depth")
    with pytest.raises(ValueError, match=r"data\.train: expected a list"):
        check_entries({"reader": "synthetic_depth"}, "train", "depth")
    with pytest.raises(ValueError, match="split"):
        check_entries([], "training", "depth")
    with pytest.raises(ValueError, match="schema"):
        check_entries([], "train", "depths")
    # an unknown name passes the check (nothing to compare) and fails at build time, naming the entry
    entries = check_entries([{"reader": "synthetic_dept"}], "train", "depth")
    with pytest.raises(KeyError, match=r"data\.train\[0\].*did you mean 'synthetic_depth'"):
        build_entries(entries, "train")
    with pytest.raises(ValueError, match=r"data\.val: expected a list"):
        build_entries(None, "val")
    with pytest.raises(TypeError, match=r"data\.test\[0\] \(synthetic_depth\)"):
        build_entries([{"reader": "synthetic_depth", "num_sample": 3}], "test")


def test_depth_types_are_defined_once():
    assert depth_io.DEPTH_TYPES is losses.depth.DEPTH_TYPES
    assert depth_io.DENSE_DEPTH_TYPES is losses.depth.DENSE_DEPTH_TYPES
    assert set(losses.depth.DENSE_DEPTH_TYPES) < set(losses.depth.DEPTH_TYPES)
    pred = torch.randn(1, 1, 5, 6).expand(3, 1, 5, 6)  # one prediction and one target for every sample
    target = (torch.rand(1, 1, 5, 6) + 0.5).expand(3, 1, 5, 6)
    mask = torch.ones(3, 1, 5, 6, dtype=torch.bool)
    names = ["absolute", "uts", "utss_disparity"]
    codes = torch.tensor([losses.depth.DEPTH_TYPES.index(n) for n in names])
    by_name = losses.depth.gp2_mixture_loss(pred, target, mask, names)
    assert_close(by_name, losses.depth.gp2_mixture_loss(pred, target, mask, codes), "names vs codes")
    # the dense types (and only they) get the same loss: the scale-invariant term on top of the SSI one
    assert by_name[0] == by_name[1] and by_name[1] != by_name[2], by_name


# ------------------------------------------------------------------------------------ file checks


def _diml_entry(root: Path) -> dict:
    return {"reader": "diml", "root": str(root), "split": "train"}


def test_setup_names_an_empty_and_a_missing_file_before_loading(tmp_path):
    rng = np.random.default_rng(0)
    write_diml(tmp_path / "diml", rng)
    reader = READERS["diml"](root=tmp_path / "diml", split="train")
    files = reader.files()
    assert len(files) == 4 and reader.check_files() == 4  # 2 indoor items x (colour, depth)
    train = [{"reader": "synthetic_depth", "num_samples": 2, "image_size": [8, 8]}]

    empty = files[1]
    empty.write_bytes(b"")
    dm = DepthDataModule(train=train, val=[_diml_entry(tmp_path / "diml")], batch_size=2)
    with pytest.raises(ValueError) as err:
        dm.setup("validate")
    msg = str(err.value)
    assert "data.val[0] (diml)" in msg and str(empty) in msg and "1 of 4" in msg and "empty" in msg, msg
    assert not dm.val_sets, "nothing is kept from a failed setup"

    missing = files[3]  # a depth map (deleting a colour image would drop its item from the index)
    missing.unlink()
    dm = DepthDataModule(train=train, val=[_diml_entry(tmp_path / "diml")], batch_size=2)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("validate")
    msg = str(err.value)
    assert str(missing) in msg and "missing" in msg and str(empty) in msg, msg
    # the reader itself indexes fine: it is the check that catches both, before any sample is read
    assert len(READERS["diml"](root=tmp_path / "diml", split="train")) == 2
    dm = DepthDataModule(train=train, val=[_diml_entry(tmp_path / "diml")], batch_size=2, check_files=False)
    dm.setup("validate")
    assert len(dm.val_sets) == 1


def test_the_runner_stops_on_a_truncated_file_before_writing_anything(tmp_path, capsys):
    from experiments.__main__ import main

    write_diml(tmp_path / "diml", np.random.default_rng(0))
    truncated = tmp_path / "diml" / "train" / "HR" / "12. Livingroom" / "color" / "in_01_160217_123138_c.png"
    truncated.write_bytes(b"")
    run = tmp_path / "run"
    entry = f"{{reader: diml, root: '{tmp_path / 'diml'}', split: train}}"
    args = [f"run_dir={run}", "logger=csv", "trainer.accelerator=cpu", f"data.val=[{entry}]"]
    assert main(["train", "gp2_synthetic", *args]) == 2
    err = capsys.readouterr().err
    assert str(truncated) in err and "data.val[0] (diml)" in err, err
    assert not run.exists()


def test_eval_setup_does_not_open_the_training_data(tmp_path):
    rng = np.random.default_rng(0)
    write_diml(tmp_path / "diml", rng)
    train = [_diml_entry(tmp_path / "no_training_data_here")]
    dm = DepthDataModule(train=train, val=[_diml_entry(tmp_path / "diml")], test=[], batch_size=2)
    dm.setup("validate")
    assert dm.train_set is None and len(dm.val_sets) == 1
    with pytest.raises(FileNotFoundError, match="no_training_data_here"):
        dm.setup("fit")


def test_root_dir_roots_relative_entries_only(tmp_path):
    """data.root_dir is the folder of the entries' relative roots; absolute roots and root-less entries keep
    theirs, and the datamodule reads the files under root_dir."""
    rng = np.random.default_rng(0)
    write_diml(tmp_path / "data" / "diml", rng)
    entries = [{"reader": "diml", "root": "diml"}, {"reader": "diml", "root": str(tmp_path)}, {"reader": "x"}]
    got = with_root_dir(entries, str(tmp_path / "data"))
    assert got == [
        {"reader": "diml", "root": str(tmp_path / "data" / "diml")},
        {"reader": "diml", "root": str(tmp_path)},
        {"reader": "x"},
    ]
    assert entries[0]["root"] == "diml", "the config's entries are not modified"
    assert with_root_dir(entries, None) is entries
    relative = {**_diml_entry(tmp_path / "data" / "diml"), "root": "diml"}
    dm = DepthDataModule(train=[relative], val=[relative], batch_size=2, root_dir=str(tmp_path / "data"))
    dm.setup("validate")
    assert len(dm.val_sets[0]) > 0
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        DepthDataModule(
            train=[relative], val=[relative], batch_size=2, root_dir=str(tmp_path / "elsewhere")
        ).setup("validate")


WRITERS = {
    "nyu": (write_nyu, "test", 1),
    "kitti": (write_kitti, "test", None),
    "tum": (write_tum, "test", None),
    "sintel": (write_sintel, "test", None),
    "eth3d": (write_eth3d, "test", None),
    "diw": (write_diw, "test", None),
    "diml": (write_diml, "train", 4),
    "megadepth": (write_megadepth, "train", 6),
    "redweb": (write_redweb, "train", 4),
    "folder": (write_folder, "val", 4),
    "tum_hdf5": (write_tum_hdf5, "test", 3),
    "eth3d_gp2": (write_eth3d_gp2, "test", 6),
    "kitti_selection": (write_kitti_selection, "val", 9),
}


def test_every_depth_reader_lists_existing_files_and_returns_the_depth_schema(tmp_path):
    depth_readers = {n for n, c in READERS.items() if isinstance(c, type) and issubclass(c, DepthReader)}
    assert set(WRITERS) == depth_readers
    for name, (write, split, n_files) in WRITERS.items():
        root = tmp_path / name
        root.mkdir()
        write(root, np.random.default_rng(0))
        reader = READERS[name](root=root, split=split)
        files = reader.files()
        assert files, f"{name}: _files lists nothing"
        assert all(p.is_file() and p.stat().st_size > 0 for p in files), name
        assert len(set(files)) == len(files) == reader.check_files(), name
        if n_files is not None:
            assert len(files) == n_files, (name, files)
        check_sample(reader[0], "depth", f"{name}[0]")
        if getattr(reader, "_h5", None) is not None:
            reader._h5.close()


def test_check_files_counts_and_the_base_default():
    class Bare(Reader):
        NAME, SCHEMA = "bare", "depth"

        def _index(self):
            return [1, 2]

    reader = Bare(Path(__file__).parent, "train")
    assert reader.files() == [] and reader.check_files() == 0


# ------------------------------------------------------------------------------------ DDP evaluation


def test_eval_loaders_score_every_sample_once_across_ranks(toy_reader):
    dm = ToyCloudDataModule(
        train=[{"reader": toy_reader, "tag": "a", "n": 2}],
        val=[{"reader": toy_reader, "tag": "v", "n": 5}, {"reader": toy_reader, "tag": "w", "n": 2}],
        batch_size=2,
    )
    dm.setup("validate")
    seen: dict[int, list[str]] = {0: [], 1: []}
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        assert dm._replicas() == (2, rank)
        loaders = dm.val_dataloader()
        assert len(loaders) == 2
        for loader in loaders:
            seen[rank] += [n for b in loader for n in b["name"]]
    dm.trainer = None
    assert sorted(seen[0] + seen[1]) == sorted([f"v/{i}" for i in range(5)] + ["w/0", "w/1"])
    assert len(seen[0]) == 4 and len(seen[1]) == 3, "odd sizes are not padded to even out the ranks"
    assert replicas(None) == (1, 0) and eval_sampler(range(3), 1, 0) is None
    with pytest.raises(ValueError, match="rank"):
        eval_sampler(range(3), 2, 2)
