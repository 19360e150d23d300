"""Readers of the real depth datasets, on tiny datasets written in each dataset's own file format."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re

import numpy as np
import pytest
import torch
from depth_format_writers import (
    KITTI_P2,
    KITTI_P3,
    save_rgb,
    truncate,
    write_diml,
    write_diw,
    write_dpt,
    write_eth3d,
    write_folder,
    write_kitti,
    write_megadepth,
    write_nyu,
    write_redweb,
    write_sintel,
    write_tum,
)

import datamodules.depth.readers  # noqa: F401  (registers the readers)
from datamodules.registry import READERS

ALL = ("nyu", "kitti", "tum", "sintel", "eth3d", "diw", "diml", "megadepth", "redweb", "folder")
JPEG_TOL = 0.06  # mean |difference| of a quality-100 JPEG round trip, in [0, 1] units


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def as_float(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def assert_close(actual: torch.Tensor, expected, what: str, atol: float = 0.0) -> None:
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs()
    worst = int(diff.argmax()) if diff.numel() else 0
    assert diff.max() <= atol, f"{what}: max |diff| {diff.max():.3g} at flat index {worst} (atol {atol})"


def check_schema(s: dict, depth_type: str) -> None:
    h, w = s["image"].shape[-2:]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, h, w)
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["depth"].dtype == torch.float32 and s["depth"].shape == (1, h, w)
    assert s["valid"].dtype == torch.bool and s["valid"].shape == (1, h, w)
    assert torch.isfinite(s["depth"]).all(), "non-finite depth leaked into the sample"
    assert (s["depth"][s["valid"]] > 0).all()
    assert s["depth_type"] == depth_type and isinstance(s["name"], str)
    if "intrinsics" in s:
        assert s["intrinsics"].dtype == torch.float32 and s["intrinsics"].shape == (3, 3)


def test_every_reader_registered():
    missing = [n for n in ALL if n not in READERS]
    assert not missing, f"not registered: {missing}"


# ------------------------------------------------------------------------------------------------ per reader


def test_nyu(tmp_path, rng):
    data = write_nyu(tmp_path, rng)
    train = READERS["nyu"](root=tmp_path, split="train")
    assert [train[i]["name"] for i in range(len(train))] == ["nyu/0001", "nyu/0003"]  # 1-based trainNdxs 1, 3
    s = train[1]
    check_schema(s, "absolute")
    assert_close(s["image"], as_float(data["images"][2]), "image of MATLAB index 3")
    assert_close(s["depth"][0], data["depths"][2], "depth (m) of MATLAB index 3")
    assert s["valid"].all(), "train split must not crop the border by default"
    expected_k = [
        [518.85790117450188, 0, 325.58244941119034],
        [0, 519.46961112127485, 253.73616633400465],
        [0, 0, 1],
    ]
    assert_close(s["intrinsics"], expected_k, "NYU intrinsics", atol=1e-4)
    assert s["max_depth"] == 10.0

    test = READERS["nyu"](root=tmp_path, split="test")
    assert len(test) == 1 and test[0]["name"] == "nyu/0002"
    t = test[0]
    assert t["image"].shape == (3, 20, 24), "border crop must keep the full image size"
    expect_valid = torch.zeros(1, 20, 24, dtype=torch.bool)
    expect_valid[:, 8:12, 8:16] = True  # default 8-pixel border crop on the test split
    assert torch.equal(t["valid"], expect_valid), "test split: 8-pixel border must be invalid"

    raw = READERS["nyu"](root=tmp_path, split="train", raw=True, border_crop=1)
    r = raw[0]
    assert_close(r["depth"][0], data["raw"][0], "rawDepths")
    expect_valid = torch.zeros(1, 20, 24, dtype=torch.bool)
    expect_valid[:, 1:19, 1:23] = True
    expect_valid[:, 0, :] = False  # raw depth holes (row 0) are invalid too
    assert torch.equal(r["valid"], expect_valid)
    # the lazily opened HDF5 handle must not prevent pickling into DataLoader workers
    clone = pickle.loads(pickle.dumps(train))
    assert_close(clone[0]["depth"], train[0]["depth"], "depth after pickling the reader")


def test_kitti(tmp_path, rng):
    data = write_kitti(tmp_path, rng)
    ds = READERS["kitti"](root=tmp_path, split="test")
    assert len(ds) == 2, "the split line whose depth is 'None' must be skipped"
    for s, frame in zip(ds, ("0000000005", "0000000007")):
        img, dep, cam = data[frame]
        check_schema(s, "absolute")
        assert_close(s["image"], as_float(img), f"image {frame}")
        assert_close(s["depth"][0], dep.astype(np.float32) / 256.0, f"depth {frame} = png / 256")
        assert not s["valid"][0, 0, 0] and s["valid"].sum() == dep.size - 1, "0 = no ground truth"
        p = np.array(KITTI_P2 if cam == "2" else KITTI_P3).reshape(3, 4)[:, :3]
        assert_close(s["intrinsics"], p, f"K from P_rect_0{cam}", atol=1e-3)
        assert s["max_depth"] == 80.0


def test_tum(tmp_path, rng):
    data = write_tum(tmp_path, rng)
    ds = READERS["tum"](root=tmp_path, split="test")
    # rgb 1.00 <-> depth 1.015; rgb 2.00 has no depth within 0.02 s; rgb 3.00 <-> the nearer 3.005, not 2.99
    assert len(ds) == 2
    for s, (t_rgb, t_depth) in zip(ds, ((1.0, 1.015), (3.0, 3.005))):
        check_schema(s, "absolute")
        assert_close(s["image"], as_float(data["rgb"][t_rgb]), f"image {t_rgb}")
        assert_close(
            s["depth"][0], data["depth"][t_depth].astype(np.float32) / 5000.0, f"depth {t_depth} / 5000"
        )
        assert not s["valid"][0, 1, 2] and s["valid"].sum() == s["valid"].numel() - 1
        assert_close(
            s["intrinsics"], [[520.9, 0, 325.1], [0, 521.0, 249.7], [0, 0, 1]], "fr2 intrinsics", 1e-4
        )
    # a sequence name without freiburg<k> falls back to fr1
    seq = tmp_path / "rgbd_dataset_freiburg2_xyz"
    other = tmp_path / "my_sequence"
    seq.rename(other)
    s = READERS["tum"](root=other, split="test")[0]
    assert_close(s["intrinsics"], [[517.3, 0, 318.6], [0, 516.5, 255.3], [0, 0, 1]], "fr1 default", 1e-4)


def test_nyu_border_crop_mode_cuts_the_image_as_gp2(tmp_path, rng):
    """GP2's eval cuts 8 pixels off the image and the depth (img[8:-8, 8:-8]); the principal point moves."""
    data = write_nyu(tmp_path, rng)
    masked = READERS["nyu"](root=tmp_path, split="test")[0]
    cut = READERS["nyu"](root=tmp_path, split="test", raw=True, border_mode="crop")[0]
    check_schema(cut, "absolute")
    assert cut["image"].shape == (3, 4, 8), "20x24 minus 8 pixels on each side"
    assert_close(cut["image"], masked["image"][:, 8:12, 8:16], "cropped image")
    assert_close(cut["depth"][0], data["raw"][1][8:12, 8:16], "cropped rawDepths of MATLAB index 2")
    assert torch.equal(cut["valid"][0], torch.from_numpy(data["raw"][1][8:12, 8:16] > 0))
    k = masked["intrinsics"].clone()
    k[0, 2] -= 8
    k[1, 2] -= 8
    assert_close(cut["intrinsics"], k, "principal point of the crop", atol=1e-4)
    with pytest.raises(ValueError, match="border_mode"):
        READERS["nyu"](root=tmp_path, split="test", border_mode="cut")
    with pytest.raises(ValueError, match="leaves nothing") as err:
        READERS["nyu"](root=tmp_path, split="test", border_crop=12, border_mode="crop")[0]
    assert "nyu_depth_v2_labeled.mat" in str(err.value)


def test_sintel_reads_gp2_flat_layout(tmp_path, rng):
    """GP2's evaluation folder holds final/ and depth/ without training/ (and no camdata)."""
    data = write_sintel(tmp_path / "download", rng)
    flat = tmp_path / "gp2"
    flat.mkdir()
    for sub in ("final", "depth"):
        os.rename(tmp_path / "download" / "training" / sub, flat / sub)
    ds = READERS["sintel"](root=flat, split="test")
    assert [s["name"] for s in ds] == [f"sintel/{k}" for k in data]
    for s, (img, depth, _) in zip(ds, data.values()):
        assert_close(s["image"], as_float(img), "final-pass image")
        assert_close(s["depth"][0], np.where(np.isfinite(depth), depth, 0.0), "dpt depth")
        assert "intrinsics" not in s, "no camdata_left: no intrinsics"


def test_sintel(tmp_path, rng):
    data = write_sintel(tmp_path, rng)
    ds = READERS["sintel"](root=tmp_path, split="test")
    assert [s["name"] for s in ds] == [f"sintel/{k}" for k in data]
    for s, (img, depth, k) in zip(ds, data.values()):
        check_schema(s, "absolute")
        assert_close(s["image"], as_float(img), "final-pass image")
        finite = np.isfinite(depth)
        assert torch.equal(s["valid"][0], torch.from_numpy(finite)), "NaN / inf depth must be invalid"
        assert_close(s["depth"][0], np.where(finite, depth, 0.0), "dpt depth")
        assert_close(s["intrinsics"], k, "K from .cam", atol=1e-4)
    clean = READERS["sintel"](root=tmp_path, split="test", render_pass="clean")[0]
    assert_close(clean["image"], as_float(255 - data["alley_1/frame_0001"][0]), "clean-pass image")
    write_dpt(tmp_path / "training" / "depth" / "alley_1" / "frame_0001.dpt", np.ones((5, 8), np.float32))
    with pytest.raises(ValueError, match="size mismatch") as err:
        ds[0]
    assert "frame_0001.png" in str(err.value) and "frame_0001.dpt" in str(err.value)
    assert "(6, 8)" in str(err.value) and "(5, 8)" in str(err.value)
    (tmp_path / "training" / "depth" / "alley_1" / "frame_0002.dpt").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="tag"):
        ds[1]


def test_eth3d(tmp_path, rng):
    data = write_eth3d(tmp_path, rng)
    ds = READERS["eth3d"](root=tmp_path, split="test")
    und = READERS["eth3d"](root=tmp_path, split="test", undistorted=True)
    assert [s["name"] for s in ds] == [f"eth3d/{k}" for k in data]
    for s, u, (img, depth, cam_id) in zip(ds, und, data.values()):
        check_schema(s, "absolute")
        assert (s["image"] - as_float(img)).abs().mean() < JPEG_TOL
        valid = np.isfinite(depth) & (depth > 0)
        assert torch.equal(s["valid"][0], torch.from_numpy(valid)), "inf and 0 must be invalid"
        assert_close(s["depth"][0], np.where(valid, depth, 0.0), "raw float32 depth")
        assert "intrinsics" not in s, "the distorted THIN_PRISM_FISHEYE camera has no pinhole K"
        # COLMAP's top-left pixel centre is (0.5, 0.5): 0-based cx, cy are 0.5 smaller
        fx, fy, cx, cy = (3408.59, 3408.87, 3117.24, 2064.07) if cam_id == 0 else (3410.0, 3411.0, 3.5, 2.5)
        assert_close(
            u["intrinsics"], [[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]], "PINHOLE K", atol=1e-3
        )
    # a depth file of the wrong size (e.g. distorted-grid depth next to an undistorted image)
    (tmp_path / "pipes" / "ground_truth_depth" / "dslr_images" / "DSC_0634.JPG").write_bytes(b"\x00" * 4 * 35)
    with pytest.raises(ValueError, match="size mismatch") as err:
        ds[2]
    assert "images/dslr_images/DSC_0634.JPG" in str(err.value)
    assert "ground_truth_depth/dslr_images/DSC_0634.JPG" in str(err.value) and "140 bytes" in str(err.value)


def test_diw(tmp_path, rng):
    imgs = write_diw(tmp_path, rng)
    ds = READERS["diw"](root=tmp_path, split="test")
    expected = [
        [0, 0, 5, 7, 1.0],  # 1-based (1,1) and (6,8) -> 0-based corners; '>' = A farther = +1
        [2, 4, 1, 6, -1.0],  # '<' = A nearer = -1
        [5, 7, 0, 0, 1.0],  # original 12x16 -> image 6x8: floor((c - 1) / 2)
    ]
    assert len(ds) == 3
    for s, name, exp in zip(ds, imgs, expected):
        check_schema(s, "ordinal")
        assert s["name"] == f"diw/{name}"
        assert (s["image"] - as_float(imgs[name])).abs().mean() < JPEG_TOL
        assert s["ordinal"].dtype == torch.float32
        assert_close(s["ordinal"], [exp], f"ordinal pair of {name}")
        assert not s["valid"].any() and (s["depth"] == 0).all(), "ordinal samples carry no dense depth"
    with pytest.raises(FileNotFoundError, match="DIW_val.csv"):
        READERS["diw"](root=tmp_path, split="val")


def test_diml(tmp_path, rng):
    data = write_diml(tmp_path, rng)
    indoor = READERS["diml"](root=tmp_path, split="train")
    outdoor = READERS["diml"](root=tmp_path, split="train", scene_type="outdoor")
    assert len(indoor) == 2 and len(outdoor) == 1
    for s, key in zip([*indoor, *outdoor], data):
        img, mm = data[key]
        check_schema(s, "absolute")
        assert_close(s["image"], as_float(img), f"image {key}")
        assert_close(s["depth"][0], mm.astype(np.float32) / 1000.0, f"depth {key} mm -> m")
        assert torch.equal(s["valid"][0], torch.from_numpy(mm > 0))


def test_megadepth(tmp_path, rng):
    data = write_megadepth(tmp_path, rng)
    ds = READERS["megadepth"](root=tmp_path, split="train")  # root above phoenix/S6/zl548/MegaDepth_v1
    assert [s["name"] for s in ds] == [f"megadepth/{k}" for k in data]
    for s, (img, depth) in zip(ds, data.values()):
        check_schema(s, "uts")
        assert (s["image"] - as_float(img)).abs().mean() < JPEG_TOL
        assert_close(s["depth"][0], depth, "h5 'depth'")
        assert torch.equal(s["valid"][0], torch.from_numpy(depth > 0))
        assert "intrinsics" not in s
    with pytest.raises(FileNotFoundError, match="splits/val.txt"):
        READERS["megadepth"](root=tmp_path, split="val")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("0002\n")
    val = READERS["megadepth"](root=tmp_path, split="val")
    assert [s["name"] for s in val] == ["megadepth/0002/dense0/7_x"]


def test_redweb(tmp_path, rng):
    data = write_redweb(tmp_path, rng)
    ds = READERS["redweb"](root=tmp_path, split="train")
    for s, (img, rd) in zip(ds, data.values()):
        check_schema(s, "utss_disparity")
        assert (s["image"] - as_float(img)).abs().mean() < JPEG_TOL
        keep = rd != 255
        assert torch.equal(s["valid"][0], torch.from_numpy(keep)), "255 (sky) must be invalid"
        assert_close(
            s["depth"][0], np.where(keep, (255.0 - rd) / 255.0, 0.0), "disparity (255 - v) / 255", 1e-7
        )
    # larger stored value = farther = smaller disparity
    s, rd = ds[0], data["1000_2"][1]
    i, j = np.unravel_index(np.argmin(np.where(rd == 255, 999, rd)), rd.shape)
    assert s["depth"][0, i, j] == s["depth"][s["valid"]].max()


def test_folder(tmp_path, rng):
    data = write_folder(tmp_path, rng)
    val = READERS["folder"](root=tmp_path, split="val")
    a, b = val[0], val[1]
    check_schema(a, "absolute")
    assert_close(a["image"], as_float(data["a"][0]), "folder image a")
    assert_close(a["depth"][0], data["a"][1].astype(np.float32) / 1000.0, "16-bit png / meta depth_scale")
    assert not a["valid"][0, 2, 2] and a["valid"].sum() == a["valid"].numel() - 1
    assert_close(a["intrinsics"], [[10, 0, 3.5], [0, 11, 2.5], [0, 0, 1]], "meta.json [fx, fy, cx, cy]")
    check_schema(b, "uts")  # b.json overrides depth_type and intrinsics
    depth = data["b"][1]
    good = np.isfinite(depth) & (depth > 0)
    assert torch.equal(b["valid"][0], torch.from_numpy(good)), "NaN, inf and negative depth must be invalid"
    assert_close(b["depth"][0], np.where(np.isfinite(depth), depth, 0.0), "npy depth as stored")
    assert_close(b["intrinsics"], [[20, 0, 4], [0, 21, 3], [0, 0, 1]], "b.json 3x3 intrinsics")

    test = READERS["folder"](root=tmp_path, split="test")
    c, d = test[0], test[1]
    check_schema(c, "utss_disparity")
    assert_close(c["depth"], data["c"][1], "disp npy (1, H, W)")
    check_schema(d, "absolute")
    assert_close(
        d["depth"][0], data["d"][1].astype(np.float32) / 256.0, "depth_scale from the PNG text chunk"
    )
    assert "intrinsics" not in d

    (tmp_path / "test" / "d.json").write_text("{}")
    with pytest.raises(ValueError, match="depth_type"):
        test[1]
    (tmp_path / "test" / "d.json").write_text('{"depth_type": "utss_disparity"}')
    with pytest.raises(ValueError, match="does not fit"):
        test[1]


# ---------------------------------------------------------------------------------------------------- errors

SPLIT_OF = {"tum": "test", "sintel": "test", "eth3d": "test", "diw": "test", "nyu": "test", "folder": "val"}


@pytest.mark.parametrize("name", ALL)
def test_missing_root_names_path_and_layout(tmp_path, name):
    missing = tmp_path / "not_downloaded"
    with pytest.raises(FileNotFoundError) as err:
        READERS[name](root=missing, split=SPLIT_OF.get(name, "train"))
    msg = str(err.value)
    assert str(missing) in msg and "expected layout" in msg, msg


@pytest.mark.parametrize("name", ALL)
def test_unknown_split_names_allowed_values(tmp_path, name):
    with pytest.raises(ValueError) as err:
        READERS[name](root=tmp_path, split="training")
    msg = str(err.value)
    assert "'training'" in msg and "allowed values" in msg and "'test'" in msg, msg


def test_missing_file_names_path_and_layout(tmp_path, rng):
    write_nyu(tmp_path, rng)
    (tmp_path / "splits.mat").unlink()
    with pytest.raises(FileNotFoundError) as err:
        READERS["nyu"](root=tmp_path, split="train")
    assert str(tmp_path / "splits.mat") in str(err.value) and "trainNdxs" in str(err.value)


def test_corrupted_image_names_file(tmp_path, rng):
    write_kitti(tmp_path, rng)
    bad = tmp_path / "raw/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000005.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    ds = READERS["kitti"](root=tmp_path, split="test")
    with pytest.raises(ValueError, match="cannot read image") as err:
        ds[0]
    assert str(bad) in str(err.value)
    assert ds[1]["depth"].shape == (1, 6, 8), "other samples stay readable"


def test_size_mismatch_names_both_files_and_sizes(tmp_path, rng):
    data = write_kitti(tmp_path, rng)
    img_path = tmp_path / "raw/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000005.png"
    save_rgb(img_path, np.zeros((7, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="size mismatch") as err:
        READERS["kitti"](root=tmp_path, split="test")[0]
    msg = str(err.value)
    depth_path = "data_depth_annotated/train/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02"
    assert str(img_path) in msg and depth_path in msg and "(7, 8)" in msg and "(6, 8)" in msg, msg
    assert data  # the writer produced the other sample


def test_readers_do_not_write_into_root(tmp_path, rng):
    writers = {
        "nyu": write_nyu,
        "kitti": write_kitti,
        "tum": write_tum,
        "sintel": write_sintel,
        "eth3d": write_eth3d,
        "diw": write_diw,
        "diml": write_diml,
        "megadepth": write_megadepth,
        "redweb": write_redweb,
        "folder": write_folder,
    }
    splits = {**SPLIT_OF, "kitti": "test"}
    for name, write in writers.items():
        root = tmp_path / name
        root.mkdir()
        write(root, rng)
        before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}
        ds = READERS[name](root=root, split=splits.get(name, "train"))
        for i in range(len(ds)):
            ds[i]
        if hasattr(ds, "_h5") and ds._h5 is not None:
            ds._h5.close()
        after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}
        assert before == after, f"{name}: files changed under root: {set(after) ^ set(before)}"
        assert os.access(root, os.R_OK)


def test_dataloader_batches_one_reader(tmp_path, rng):
    write_kitti(tmp_path, rng)
    ds = READERS["kitti"](root=tmp_path, split="test")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 6, 8) and batch["intrinsics"].shape == (2, 3, 3)
    assert batch["valid"].dtype == torch.bool and batch["depth_type"] == ["absolute", "absolute"]


# ------------------------------------------------------------------------------------------------- bad files
# Every corrupt file raises naming it (never a silent partial read, never a skipped entry).

KITTI_RGB = "raw/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000005.png"
KITTI_DEPTH = (
    "data_depth_annotated/train/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000005.png"
)


@contextlib.contextmanager
def raises_naming(exc: type[Exception], path, *also: str):
    """pytest.raises(exc) whose message contains `path` (escaped) and every string of `also`."""
    with pytest.raises(exc, match=re.escape(str(path))) as info:
        yield info
    for s in also:
        assert s in str(info.value), f"{s!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_png_names_file(tmp_path, rng, keep):
    # 0.97 keeps every IDAT byte but cuts the IEND chunk: PIL decodes that without complaint
    write_kitti(tmp_path, rng)
    bad = truncate(tmp_path / KITTI_RGB, keep)
    ds = READERS["kitti"](root=tmp_path, split="test")
    with raises_naming(ValueError, bad, "cannot read image"):
        ds[0]
    assert ds[1]["image"].shape == (3, 6, 8), "other samples stay readable"


def test_truncated_png_raises_even_if_pil_allows_truncated(tmp_path, rng, monkeypatch):
    from PIL import ImageFile

    write_kitti(tmp_path, rng)
    bad = truncate(tmp_path / KITTI_DEPTH, 0.6)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries set it globally
    with raises_naming(ValueError, bad):
        READERS["kitti"](root=tmp_path, split="test")[0]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True, "the global setting is restored"


def test_truncated_jpeg_names_file(tmp_path, rng):
    write_megadepth(tmp_path, rng)
    ds = READERS["megadepth"](root=tmp_path, split="train")
    bad = truncate(ds.items[0][0], 0.6)
    with raises_naming(ValueError, bad, "cannot read image"):
        ds[0]


def test_zero_byte_files_caught_before_training(tmp_path, rng):
    write_kitti(tmp_path, rng)
    (tmp_path / KITTI_DEPTH).write_bytes(b"")
    ds = READERS["kitti"](root=tmp_path, split="test")
    with raises_naming(ValueError, tmp_path / KITTI_DEPTH, "0 bytes"):
        ds.check_files()
    with raises_naming(ValueError, tmp_path / KITTI_DEPTH):  # and at read time
        ds[0]
    mega = tmp_path / "mega"
    write_megadepth(mega, rng)
    ds = READERS["megadepth"](root=mega, split="train")
    ds.items[1][1].write_bytes(b"")
    with raises_naming(ValueError, ds.items[1][1], "0 bytes"):
        ds.check_files()
    with raises_naming(ValueError, ds.items[1][1], "HDF5"):
        ds[1]


def test_kitti_8bit_depth_png_refused(tmp_path, rng):
    write_kitti(tmp_path, rng, depth_bits=8)
    ds = READERS["kitti"](root=tmp_path, split="test")
    with raises_naming(ValueError, tmp_path / KITTI_DEPTH, "16-bit"):
        ds[0]
    # a 16-bit container holding 8-bit values: the devkit asserts max > 255
    from depth_format_writers import save_png16

    save_png16(tmp_path / KITTI_DEPTH, np.full((6, 8), 200, np.uint16))
    with raises_naming(ValueError, tmp_path / KITTI_DEPTH, "255"):
        ds[0]


def test_tum_diml_8bit_depth_png_refused(tmp_path, rng):
    from depth_format_writers import save_png8

    write_tum(tmp_path, rng)
    bad = tmp_path / "rgbd_dataset_freiburg2_xyz" / "depth" / "1.015000.png"
    save_png8(bad, np.full((6, 8), 9, np.uint8))
    with raises_naming(ValueError, bad, "16-bit"):
        READERS["tum"](root=tmp_path, split="test")[0]
    diml = tmp_path / "diml"
    write_diml(diml, rng)
    ds = READERS["diml"](root=diml, split="train")
    save_png8(ds.items[0][1], np.full((6, 8), 9, np.uint8))
    with raises_naming(ValueError, ds.items[0][1], "16-bit"):
        ds[0]


def test_redweb_16bit_map_refused(tmp_path, rng):
    from depth_format_writers import save_png16

    write_redweb(tmp_path, rng)
    save_png16(tmp_path / "RDs" / "1000_2.png", np.full((6, 8), 300, np.uint16))
    with raises_naming(ValueError, tmp_path / "RDs" / "1000_2.png", "8-bit"):
        READERS["redweb"](root=tmp_path, split="train")[0]


def test_nyu_truncated_and_missing_keys(tmp_path, rng):
    import h5py

    write_nyu(tmp_path, rng)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    data = mat.read_bytes()
    truncate(mat, 0.5)
    with raises_naming(ValueError, mat, "HDF5"):
        READERS["nyu"](root=tmp_path, split="train")
    mat.write_bytes(data)
    with h5py.File(mat, "a") as f:
        del f["depths"]
    with raises_naming(ValueError, mat, "'depths'", "rawDepths", "images"):
        READERS["nyu"](root=tmp_path, split="train")
    assert len(READERS["nyu"](root=tmp_path, split="train", raw=True)) == 2, "rawDepths is still there"

    splits = tmp_path / "splits.mat"
    good_splits = splits.read_bytes()
    truncate(splits, 0.5)
    with raises_naming(ValueError, splits, "cannot read MATLAB file"):
        READERS["nyu"](root=tmp_path, split="train", raw=True)
    splits.write_bytes(b"")  # read at index time, so not in check_files(): a 0-byte file names itself too
    with raises_naming(ValueError, splits, "cannot read MATLAB file"):
        READERS["nyu"](root=tmp_path, split="train", raw=True)
    splits.write_bytes(good_splits)
    import scipy.io

    scipy.io.savemat(splits, {"testNdxs": np.array([[2]])})
    with raises_naming(ValueError, splits, "'trainNdxs'", "testNdxs"):
        READERS["nyu"](root=tmp_path, split="train", raw=True)


def test_megadepth_truncated_h5_and_missing_key(tmp_path, rng):
    import h5py

    write_megadepth(tmp_path, rng)
    ds = READERS["megadepth"](root=tmp_path, split="train")
    bad = truncate(ds.items[0][1], 0.5)
    with raises_naming(ValueError, bad, "cannot read HDF5 file"):
        ds[0]
    with h5py.File(ds.items[1][1], "w") as f:
        f.create_dataset("targets", data=np.ones((6, 8), np.float32))
    with raises_naming(ValueError, ds.items[1][1], "'depth'", "targets"):
        ds[1]


def test_megadepth_ordinal_maps_never_read_as_depth(tmp_path, rng):
    import h5py

    data = write_megadepth(tmp_path, rng, ordinal=("0001/dense1/456_def",))
    ds = READERS["megadepth"](root=tmp_path, split="train")
    assert all("semantic_map" not in str(p) for p in ds.files()), "segmentation maps are never listed"
    assert all(p.parent.name == "depths" and p.suffixes == [".h5"] for p in ds.files() if p.suffix == ".h5")
    ordinal = ds.items[1][1]
    assert ordinal.name == "456_def.h5"
    with raises_naming(ValueError, ordinal, "not a depth map", "negative"):
        ds[1]
    assert_close(ds[0]["depth"][0], data["0001/dense0/123_abc"][1], "the other depth maps read as before")
    # an integer 'depth' (a label map) is not a depth map either
    with h5py.File(ds.items[2][1], "w") as f:
        f.create_dataset("depth", data=np.ones((6, 8), np.int32))
    with raises_naming(ValueError, ds.items[2][1], "not a MegaDepth depth map"):
        ds[2]
    # a valid list (COTR's megadepth_valid_list.json format) leaves the ordinal image out
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps(["0001/dense0/imgs/123_abc.jpg", "0002/dense0/imgs/7_x.jpg"]))
    kept = READERS["megadepth"](root=tmp_path, split="train", valid_list=valid)
    assert [s["name"] for s in [kept[0]]] == ["megadepth/0001/dense0/123_abc"] and len(kept) == 2
    valid.write_text(json.dumps(["0001/dense0/imgs/123_abc.jpg", "0001/dense0/imgs/nope.jpg"]))
    base = tmp_path / "phoenix/S6/zl548/MegaDepth_v1"
    with raises_naming(FileNotFoundError, base / "0001/dense0/imgs/nope.jpg", "1 of 2"):
        READERS["megadepth"](root=tmp_path, split="train", valid_list=valid)


def test_split_entries_that_do_not_exist_are_refused(tmp_path, rng):
    write_megadepth(tmp_path, rng)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("0002\n0009\n0010\n")
    base = tmp_path / "phoenix/S6/zl548/MegaDepth_v1"
    with raises_naming(FileNotFoundError, base / "0009", "2 of 3", "val.txt:2"):
        READERS["megadepth"](root=tmp_path, split="val")
    red = tmp_path / "redweb"
    write_redweb(red, rng)
    (red / "splits").mkdir()
    (red / "splits" / "test.txt").write_text("1000_2\nmissing_1\n")
    with raises_naming(FileNotFoundError, red / "Imgs" / "missing_1.jpg", "1 of 2", "test.txt:2"):
        READERS["redweb"](root=red, split="test")
    kitti = tmp_path / "kitti"
    write_kitti(kitti, rng)
    (kitti / KITTI_DEPTH).unlink()
    with raises_naming(FileNotFoundError, kitti / KITTI_DEPTH, "1 of 2", "test.txt:1"):
        READERS["kitti"](root=kitti, split="test")


@pytest.mark.parametrize(
    ("row", "what"),
    [("3,5,2,>,8,6", "expected"), ("3,x,2,7,<,8,6", "integers"), ("3,5,2,7,<,8", "expected")],
)
def test_diw_bad_csv_row_names_file_and_line(tmp_path, rng, row, what):
    write_diw(tmp_path, rng)
    csv = tmp_path / "DIW_test.csv"
    lines = csv.read_text().splitlines()
    lines[3] = row  # the second sample's coordinate line
    csv.write_text("\n\n".join(lines[:2]) + "\n" + "\n".join(lines[2:]) + "\n")  # a blank line before it
    with raises_naming(ValueError, f"{csv}:5", what):
        READERS["diw"](root=tmp_path, split="test")


def test_eth3d_unknown_camera_id_names_lines(tmp_path, rng):
    write_eth3d(tmp_path, rng)
    calib = tmp_path / "courtyard" / "dslr_calibration_undistorted"
    images = calib / "images.txt"
    lines = images.read_text().splitlines()
    lines[4] = lines[4].replace(" 1 dslr_images_undistorted/", " 7 dslr_images_undistorted/")
    images.write_text("\n".join(lines) + "\n")
    ds = READERS["eth3d"](root=tmp_path, split="test", undistorted=True)
    assert "intrinsics" in ds[0]
    with raises_naming(ValueError, f"{images}:5", str(calib / "cameras.txt"), "CAMERA_ID 7"):
        ds[1]
    cams = calib / "cameras.txt"
    cams.write_text(cams.read_text().replace("1 PINHOLE", "1 PINHOLE x"))
    ds = READERS["eth3d"](root=tmp_path, split="test", undistorted=True)
    with raises_naming(ValueError, f"{cams}:4"):
        ds[0]


@pytest.mark.parametrize("which", ["rgb.txt", "depth.txt"])
def test_tum_non_numeric_timestamp_names_file_and_line(tmp_path, rng, which):
    write_tum(tmp_path, rng)
    path = tmp_path / "rgbd_dataset_freiburg2_xyz" / which
    lines = path.read_text().splitlines()
    lines[4] = "2.0O0000 " + lines[4].split()[1]  # the letter O, line 5
    path.write_text("\n".join(lines) + "\n")
    with raises_naming(ValueError, f"{path}:5", "2.0O0000"):
        READERS["tum"](root=tmp_path, split="test")
