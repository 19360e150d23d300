"""Readers of GP2's evaluation layouts (tum_hdf5, eth3d_gp2, kitti_selection), on tiny files written in each
layout by tests/depth_format_writers.py: values, GP2's validity rule at the cap, intrinsics, order, and every
corruption raising an error that names the file."""

from __future__ import annotations

import contextlib
import re

import h5py
import numpy as np
import pytest
import torch
from depth_format_writers import (
    ETH3D_GP2_CAM,
    save_png8,
    save_png16,
    truncate,
    write_eth3d_gp2,
    write_kitti_selection,
    write_tum_hdf5,
)

import datamodules.depth.readers_eval  # noqa: F401  (registers the readers)
from datamodules.depth.datamodule import collate_depth
from datamodules.registry import READERS
from datamodules.schema import check_sample
from helpers import assert_close

JPEG_TOL = 2.0 / 255.0  # a uniform-colour quality-100 JPEG decodes within 1-2 levels


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@contextlib.contextmanager
def raises_naming(exc: type[Exception], path, *also: str):
    """pytest.raises(exc) whose message contains `path` and every string of `also`."""
    with pytest.raises(exc, match=re.escape(str(path))) as info:
        yield info
    for s in also:
        assert s in str(info.value), f"{s!r} not in {str(info.value)!r}"


def check_schema(s: dict, extra: tuple[str, ...] = ()) -> None:
    check_sample({k: v for k, v in s.items() if k not in extra}, "depth", "sample", strict=True)
    h, w = s["image"].shape[-2:]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, h, w)
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["depth"].dtype == torch.float32 and s["depth"].shape == (1, h, w)
    assert s["valid"].dtype == torch.bool and s["valid"].shape == (1, h, w)
    assert torch.isfinite(s["depth"]).all(), "non-finite depth leaked into the sample"
    assert s["depth_type"] == "absolute"
    if "intrinsics" in s:
        assert s["intrinsics"].dtype == torch.float32 and s["intrinsics"].shape == (3, 3)


def gp2_mask(depth_m: np.ndarray, cap: float | None) -> torch.Tensor:
    """Slow reference of GP2's `get_mask` (validation_datasets.py:49-54), element by element."""
    out = np.zeros(depth_m.shape, bool)
    for idx, d in np.ndenumerate(depth_m):
        out[idx] = bool(d > 1e-8) and (cap is None or not bool(d >= cap)) and bool(np.isfinite(d))
    return torch.from_numpy(out)[None]


def test_registered():
    for name in ("tum_hdf5", "eth3d_gp2", "kitti_selection"):
        assert name in READERS, name


# --------------------------------------------------------------------------------------------- tum_hdf5


def test_tum_hdf5_values_mask_order(tmp_path, rng):
    data = write_tum_hdf5(tmp_path, rng)
    ds = READERS["tum_hdf5"](root=tmp_path, split="test")
    assert [s["name"] for s in ds] == [f"tum_hdf5/{n}" for n in sorted(data)], "sorted by file name"
    assert ds.check_files() == 3
    for s in ds:
        stored, depth, k = data[s["name"].split("/", 1)[1]]
        check_schema(s)
        scale = 255.0 if stored.dtype == np.uint8 or stored.max() > 1 else 1.0  # GP2's `normalize_img`
        expected = torch.from_numpy(stored.astype(np.float32) / scale).permute(2, 0, 1)
        assert_close(s["image"], expected, "image: uint8 or [0, 255] float / 255, [0, 1] float as stored")
        valid = gp2_mask(depth, 10.0)
        assert torch.equal(s["valid"], valid), "valid: > 1e-8 and < 10 m (10.0 itself invalid)"
        assert s["valid"][0, 0, 4] and not s["valid"][0, 0, 3], (
            "float32 below the cap valid, the cap itself not"
        )
        assert_close(s["depth"][0], np.nan_to_num(depth, nan=0.0), "depth (m), NaN stored as 0")
        assert s["max_depth"] == 10.0
        if k is None:
            assert "intrinsics" not in s
        else:
            assert_close(s["intrinsics"], k, "/gt/intrinsic")
    # no cap: 10 m and 12 m become valid, 0 / 5e-9 / NaN stay invalid
    s = READERS["tum_hdf5"](root=tmp_path, split="test", max_depth=None)[0]
    assert "max_depth" not in s
    assert s["valid"][0, 0].tolist()[:6] == [False, False, False, True, True, True]
    # the archive's own folder name under root
    nested = tmp_path / "data"
    nested.mkdir()
    sub = nested / "tum_hdf5"
    sub.mkdir()
    for p in sorted(tmp_path.glob("*.h5")):
        p.rename(sub / p.name)
    assert len(READERS["tum_hdf5"](root=nested, split="test")) == 3


def test_tum_hdf5_empty_folder_and_split(tmp_path):
    with raises_naming(FileNotFoundError, tmp_path, "no samples", "/gt/gt_depth"):
        READERS["tum_hdf5"](root=tmp_path, split="test")
    with pytest.raises(ValueError, match="'test'"):
        READERS["tum_hdf5"](root=tmp_path, split="train")


def test_tum_hdf5_corrupt_files_name_the_file(tmp_path, rng):
    data = write_tum_hdf5(tmp_path, rng)
    ds = READERS["tum_hdf5"](root=tmp_path, split="test")
    paths = sorted(tmp_path.glob("*.h5"))
    assert [p.name for p in paths] == [f"{n}.h5" for n in sorted(data)]
    # 0 bytes: check_files and read time
    paths[0].write_bytes(b"")
    with raises_naming(ValueError, paths[0], "0 bytes"):
        ds.check_files()
    with raises_naming(ValueError, paths[0], "HDF5"):
        ds[0]
    # truncated
    write_tum_hdf5(tmp_path, np.random.default_rng(0))
    truncate(paths[1], 0.5)
    with raises_naming(ValueError, paths[1], "HDF5"):
        ds[1]
    # missing key, with the datasets that are there
    write_tum_hdf5(tmp_path, np.random.default_rng(0))
    with h5py.File(paths[2], "a") as f:
        del f["gt/gt_depth"]
    with raises_naming(ValueError, paths[2], "'/gt/gt_depth'", "/gt/img_1", "/gt/human_mask"):
        ds[2]
    with h5py.File(paths[2], "a") as f:
        del f["gt"]
    with raises_naming(ValueError, paths[2], "'/gt/img_1'"):
        ds[2]


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("img_1", np.zeros((3, 6, 8), np.float32), "(H, W, 3)"),  # channels first
        ("img_1", np.full((6, 8, 3), 300.0, np.float32), "[0, 1]"),  # not an image range
        ("img_1", np.zeros((6, 8, 3), np.uint16), "dtype"),
        ("gt_depth", np.ones((6, 8, 1), np.float32), "(H, W)"),
        ("gt_depth", np.ones((5, 8), np.float32), "size mismatch"),
        ("intrinsic", np.eye(4, dtype=np.float32), "(3, 3)"),
    ],
)
def test_tum_hdf5_wrong_shapes_name_the_file(tmp_path, rng, key, value, what):
    write_tum_hdf5(tmp_path, rng)
    path = sorted(tmp_path.glob("*.h5"))[0]
    with h5py.File(path, "a") as f:
        if key in f["gt"]:
            del f["gt"][key]
        f["gt"].create_dataset(key, data=value)
    with raises_naming(ValueError, path, what):
        READERS["tum_hdf5"](root=tmp_path, split="test")[0]


# -------------------------------------------------------------------------------------------- eth3d_gp2


def test_eth3d_gp2_values_mask_order_intrinsics(tmp_path, rng):
    data = write_eth3d_gp2(tmp_path, rng)
    ds = READERS["eth3d_gp2"](root=tmp_path, split="test")
    assert [s["name"] for s in ds] == [f"eth3d_gp2/{k}" for k in sorted(data)], "scenes, then images, sorted"
    assert ds.check_files() == 6
    for s in ds:
        colour, mm = data[s["name"].split("/", 1)[1]]
        check_schema(s)
        expected = torch.from_numpy(colour).float().div(255.0)[:, None, None].expand(3, 6, 8)
        assert_close(s["image"], expected, "uniform JPEG colour", atol=JPEG_TOL, rtol=0.0)
        metres = mm.astype(np.float64) / 1000.0
        assert_close(s["depth"][0], metres.astype(np.float32), "depth = png / 1000 (mm -> m)")
        assert torch.equal(s["valid"], gp2_mask(metres, 72.0)), "0 invalid; 65.535 m < 72 m valid"
        assert s["max_depth"] == 72.0
        if s["name"].startswith("eth3d_gp2/courtyard"):
            fx, fy, cx, cy = ETH3D_GP2_CAM  # calibrated at 4x: scale by 1/4, then -0.5 (COLMAP centres)
            k = [[fx / 4, 0, cx / 4 - 0.5], [0, fy / 4, cy / 4 - 0.5], [0, 0, 1]]
            assert_close(s["intrinsics"], k, "PINHOLE K scaled to the depth size", atol=1e-4, rtol=1e-6)
        else:
            assert "intrinsics" not in s, "pipes has no calibration"
    # the cap is exclusive: 5000 mm with max_depth=5 is invalid, 4999 mm valid
    capped = READERS["eth3d_gp2"](root=tmp_path, split="test", max_depth=5.0)
    s = capped[0]
    _, mm = data[s["name"].split("/", 1)[1]]
    assert torch.equal(s["valid"], gp2_mask(mm / 1000.0, 5.0)) and not s["valid"][0, 0, 1]


def test_eth3d_gp2_image_larger_than_depth(tmp_path, rng):
    data = write_eth3d_gp2(tmp_path, rng, image_scale=4)  # full-resolution images, depth at 1/4
    ds = READERS["eth3d_gp2"](root=tmp_path, split="test")
    for s in ds:
        colour, _ = data[s["name"].split("/", 1)[1]]
        assert s["image"].shape == (3, 6, 8), "image resized to the depth size"
        expected = torch.from_numpy(colour).float().div(255.0)[:, None, None].expand(3, 6, 8)
        assert_close(s["image"], expected, "resized uniform colour", atol=JPEG_TOL, rtol=0.0)
    strict = READERS["eth3d_gp2"](root=tmp_path, split="test", resize_image=False)
    img = tmp_path / "courtyard" / "images_out" / "dslr_images_undistorted" / "DSC_0286.JPG"
    with raises_naming(ValueError, img, "size mismatch", "(24, 32)", "(6, 8)", "DSC_0286.png"):
        strict[0]
    # another aspect ratio is never resized
    save_png16(tmp_path / "courtyard" / "depth" / "dslr_images_undistorted" / "DSC_0286.png", np.ones((6, 6)))
    with raises_naming(ValueError, img, "size mismatch", "(6, 6)"):
        ds[0]


def test_eth3d_gp2_corrupt_and_orphan_files(tmp_path, rng):
    write_eth3d_gp2(tmp_path, rng, depth_bits=8)
    depth_dir = tmp_path / "courtyard" / "depth" / "dslr_images_undistorted"
    image_dir = tmp_path / "courtyard" / "images_out" / "dslr_images_undistorted"
    ds = READERS["eth3d_gp2"](root=tmp_path, split="test")
    with raises_naming(ValueError, depth_dir / "DSC_0286.png", "16-bit"):
        ds[0]
    write_eth3d_gp2(tmp_path / "b", rng)
    root = tmp_path / "b"
    depth_dir = root / "courtyard" / "depth" / "dslr_images_undistorted"
    image_dir = root / "courtyard" / "images_out" / "dslr_images_undistorted"
    ds = READERS["eth3d_gp2"](root=root, split="test")
    truncate(depth_dir / "DSC_0287.png", 0.97)  # IDAT kept, IEND cut
    with raises_naming(ValueError, depth_dir / "DSC_0287.png", "cannot read image"):
        ds[1]
    (image_dir / "DSC_0286.JPG").write_bytes(b"")
    with raises_naming(ValueError, image_dir / "DSC_0286.JPG", "0 bytes"):
        ds.check_files()
    (image_dir / "DSC_0286.JPG").unlink()  # depth without its image
    with raises_naming(FileNotFoundError, depth_dir / "DSC_0286.png", "DSC_0286.JPG", "1 image / depth"):
        READERS["eth3d_gp2"](root=root, split="test")
    (depth_dir / "DSC_0286.png").unlink()
    (depth_dir / "DSC_0287.png").unlink()  # image without its depth
    with raises_naming(FileNotFoundError, image_dir / "DSC_0287.JPG", "DSC_0287.png"):
        READERS["eth3d_gp2"](root=root, split="test")


# -------------------------------------------------------------------------------------- kitti_selection


def test_kitti_selection_values_mask_order(tmp_path, rng):
    data = write_kitti_selection(tmp_path, rng)
    ds = READERS["kitti_selection"](root=tmp_path, split="val")
    assert [s["name"] for s in ds] == [f"kitti_selection/{k}" for k in sorted(data)], "sorted by name"
    assert ds.check_files() == 9, "image, ground truth, intrinsics per frame; velodyne only when asked"
    for s in ds:
        img, gt, _, k = data[s["name"].split("/", 1)[1]]
        check_schema(s)
        assert "velodyne" not in s, "velodyne is opt-in"
        assert_close(s["image"], torch.from_numpy(img).permute(2, 0, 1).float() / 255.0, "image")
        assert_close(s["depth"][0], gt.astype(np.float32) / 256.0, "depth = png / 256")
        assert torch.equal(s["valid"], gp2_mask(gt / 256.0, 80.0)), "0 and exactly 80 m invalid"
        assert s["valid"][0, 0, 2] and not s["valid"][0, 0, 1] and not s["valid"][0, 0, 0]
        assert_close(s["intrinsics"], k.astype(np.float32), "K = 9 floats row-major")
        assert s["max_depth"] == 80.0
    # the root may also be depth_selection/ or val_selection_cropped/ itself; "test" reads the same files
    for root in (tmp_path / "depth_selection", tmp_path / "depth_selection" / "val_selection_cropped"):
        other = READERS["kitti_selection"](root=root, split="test")
        assert [s["name"] for s in other] == [s["name"] for s in ds]
    image_dir = tmp_path / "depth_selection" / "val_selection_cropped" / "image"
    with raises_naming(FileNotFoundError, image_dir, "no groundtruth_depth/"):
        READERS["kitti_selection"](root=image_dir)


def test_kitti_selection_velodyne(tmp_path, rng):
    data = write_kitti_selection(tmp_path, rng)
    ds = READERS["kitti_selection"](root=tmp_path, split="val", velodyne=True)
    assert ds.check_files() == 12
    for s in ds:
        _, _, velo, _ = data[s["name"].split("/", 1)[1]]
        check_schema(s, extra=("velodyne",))
        assert s["velodyne"].dtype == torch.float32 and s["velodyne"].shape == (1, 6, 8)
        assert_close(s["velodyne"][0], velo.astype(np.float32) / 256.0, "velodyne = png / 256, 0 = no point")
    batch = collate_depth([ds[0], ds[1]])
    assert batch["velodyne"].shape == (2, 1, 6, 8) and batch["intrinsics"].shape == (2, 3, 3)
    base = tmp_path / "depth_selection" / "val_selection_cropped"
    velo_path = base / "velodyne_raw" / "2011_09_26_drive_0002_sync_velodyne_raw_0000000005_image_02.png"
    save_png8(velo_path, np.full((6, 8), 9))
    with raises_naming(ValueError, velo_path, "16-bit"):
        ds[0]
    velo_path.unlink()
    assert len(READERS["kitti_selection"](root=tmp_path, split="val")) == 3, "scans not needed by default"
    with raises_naming(FileNotFoundError, velo_path, "groundtruth_depth_0000000005_image_02.png"):
        READERS["kitti_selection"](root=tmp_path, split="val", velodyne=True)


def test_kitti_selection_8bit_depth_refused(tmp_path, rng):
    write_kitti_selection(tmp_path, rng, depth_bits=8)
    ds = READERS["kitti_selection"](root=tmp_path, split="val")
    gt = ds.items[0].gt
    with raises_naming(ValueError, gt, "16-bit"):
        ds[0]
    save_png16(gt, np.full((6, 8), 200))  # a 16-bit container of 8-bit values: the devkit asserts max > 255
    with raises_naming(ValueError, gt, "255"):
        ds[0]


def test_kitti_selection_orphans_and_bad_files(tmp_path, rng):
    write_kitti_selection(tmp_path, rng)
    base = tmp_path / "depth_selection" / "val_selection_cropped"
    stem = "2011_09_26_drive_0002_sync_{}_0000000005_image_03"
    gt = base / "groundtruth_depth" / f"{stem.format('groundtruth_depth')}.png"
    image = base / "image" / f"{stem.format('image')}.png"
    k_path = base / "intrinsics" / f"{stem.format('image')}.txt"
    ds = READERS["kitti_selection"](root=tmp_path, split="val")
    # bad intrinsics
    k_path.write_text("1 2 3 4 5 6 7 8\n")
    with raises_naming(ValueError, k_path, "9"):
        ds[1]
    k_path.write_text("1 2 3 4 five 6 7 8 9\n")
    with raises_naming(ValueError, k_path, "9 numbers"):
        ds[1]
    # truncated ground truth, 0-byte image
    data = gt.read_bytes()
    truncate(gt, 0.5)
    with raises_naming(ValueError, gt, "cannot read image"):
        ds[1]
    gt.write_bytes(data)
    image_bytes = image.read_bytes()
    image.write_bytes(b"")
    with raises_naming(ValueError, image, "0 bytes"):
        ds.check_files()
    # ground truth without its image, without its intrinsics; an image without ground truth
    image.unlink()
    with raises_naming(FileNotFoundError, gt, str(image), "1 files"):
        READERS["kitti_selection"](root=tmp_path, split="val")
    image.write_bytes(image_bytes)
    k_path.unlink()
    with raises_naming(FileNotFoundError, gt, str(k_path)):
        READERS["kitti_selection"](root=tmp_path, split="val")
    k_path.write_text("1 0 2 0 1 3 0 0 1\n")
    gt.unlink()
    with raises_naming(FileNotFoundError, image, "groundtruth_depth"):
        READERS["kitti_selection"](root=tmp_path, split="val")
    # a ground-truth file that does not follow the naming
    odd = base / "groundtruth_depth" / "0000000005.png"
    save_png16(odd, np.full((6, 8), 1000))
    with raises_naming(ValueError, odd, "_sync_groundtruth_depth_"):
        READERS["kitti_selection"](root=tmp_path, split="val")
