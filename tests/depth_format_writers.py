"""Writers of tiny datasets in the real depth datasets' own file formats, for tests/test_depth_readers.py.

Each writer builds the directory layout that the matching reader documents and returns what it wrote
(arrays in the units of the files), so that tests can compare read values exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image, PngImagePlugin


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to `keep` of its bytes (a corrupt variant: an interrupted download or copy); returns it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def rng_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def save_rgb(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if fmt == "JPEG":
        img.save(path, format="JPEG", quality=100, subsampling=0)
    else:
        img.save(path, format=fmt or "PNG")


def save_png16(path: Path, arr: np.ndarray, text: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    Image.fromarray(arr.astype(np.uint16)).save(path, format="PNG", pnginfo=info)


def save_png8(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path, format="PNG")


def write_nyu(
    root: Path,
    rng: np.random.Generator,
    n: int = 3,
    h: int = 20,
    w: int = 24,
    train_ndxs: tuple[int, ...] = (1, 3),
    test_ndxs: tuple[int, ...] = (2,),
) -> dict:
    """nyu_depth_v2_labeled.mat in the v7.3 (HDF5) transposed layout + splits.mat (MATLAB v5, 1-based
    `train_ndxs` / `test_ndxs`, as column vectors like the official file)."""
    root.mkdir(parents=True, exist_ok=True)
    images = np.stack([rng_image(rng, h, w) for _ in range(n)])  # (N, H, W, 3)
    depths = rng.uniform(0.5, 9.5, size=(n, h, w)).astype(np.float32)
    raw = depths.copy()
    raw[:, 0, :] = 0.0  # Kinect holes
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=images.transpose(0, 3, 2, 1))  # (N, 3, W, H)
        f.create_dataset("depths", data=depths.transpose(0, 2, 1))  # (N, W, H)
        f.create_dataset("rawDepths", data=raw.transpose(0, 2, 1))
    scipy.io.savemat(
        root / "splits.mat",
        {
            "trainNdxs": np.array(train_ndxs, dtype=np.float64).reshape(-1, 1),
            "testNdxs": np.array(test_ndxs).reshape(-1, 1),
        },
    )
    return {"images": images, "depths": depths, "raw": raw}


KITTI_P2 = [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884]
KITTI_P3 = [721.5377, 0.0, 609.5593, -339.5242, 0.0, 721.5377, 172.854, 2.199936, 0.0, 0.0, 1.0, 0.002729905]


def write_kitti(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8, depth_bits: int = 16) -> dict:
    """Two annotated frames (image_02 under train/, image_03 under val/) and a split file with a `None` line.
    depth_bits=8 writes the depth maps as 8-bit PNGs (values clipped to 255), a corrupt variant."""
    date, drive = "2011_09_26", "2011_09_26_drive_0002_sync"
    calib = root / "raw" / date / "calib_cam_to_cam.txt"
    calib.parent.mkdir(parents=True, exist_ok=True)
    calib.write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"P_rect_02: {' '.join(f'{v:e}' for v in KITTI_P2)}\n"
        f"P_rect_03: {' '.join(f'{v:e}' for v in KITTI_P3)}\n"
    )
    out = {}
    lines = []
    for frame, cam, sub in (("0000000005", "2", "train"), ("0000000007", "3", "val")):
        img = rng_image(rng, h, w)
        dep = rng.integers(1, 80 * 256, size=(h, w)).astype(np.uint16)
        dep[0, 0] = 0
        rgb_rel = f"{date}/{drive}/image_0{cam}/data/{frame}.png"
        depth_rel = f"{drive}/proj_depth/groundtruth/image_0{cam}/{frame}.png"
        save_rgb(root / "raw" / rgb_rel, img)
        if depth_bits == 8:
            dep = np.clip(dep, 0, 255).astype(np.uint8)
            save_png8(root / "data_depth_annotated" / sub / depth_rel, dep)
        else:
            save_png16(root / "data_depth_annotated" / sub / depth_rel, dep)
        lines.append(f"{rgb_rel} {depth_rel} 721.5377")
        out[frame] = (img, dep, cam)
    lines.insert(1, f"{date}/{drive}/image_02/data/0000000006.png None 721.5377")
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "test.txt").write_text("\n".join(lines) + "\n")
    return out


def write_tum(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    """One fr2 sequence: rgb at t=1.00, 2.00, 3.00; depth at 1.015, 2.03 (too far), 2.99, 3.005."""
    seq = root / "rgbd_dataset_freiburg2_xyz"
    rgb_t = [1.0, 2.0, 3.0]
    depth_t = [1.015, 2.03, 2.99, 3.005]
    rgbs, depths = {}, {}
    for t in rgb_t:
        rgbs[t] = rng_image(rng, h, w)
        save_rgb(seq / "rgb" / f"{t:.6f}.png", rgbs[t])
    for t in depth_t:
        depths[t] = rng.integers(1, 60000, size=(h, w)).astype(np.uint16)
        depths[t][1, 2] = 0
        save_png16(seq / "depth" / f"{t:.6f}.png", depths[t])
    header = "# color images\n# file: 'rgbd_dataset_freiburg2_xyz.bag'\n# timestamp filename\n"
    (seq / "rgb.txt").write_text(header + "".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in rgb_t))
    (seq / "depth.txt").write_text(header + "".join(f"{t:.6f} depth/{t:.6f}.png\n" for t in depth_t))
    return {"rgb": rgbs, "depth": depths}


def write_dpt(path: Path, depth: np.ndarray) -> None:
    h, w = depth.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        np.float32(202021.25).tobytes() + np.array([w, h], "<i4").tobytes() + depth.astype("<f4").tobytes()
    )


def write_cam(path: Path, k: np.ndarray, ext: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        np.float32(202021.25).tobytes() + k.astype("<f8").tobytes() + ext.astype("<f8").tobytes()
    )


def write_sintel(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    out = {}
    for scene, frame in (("alley_1", "frame_0001"), ("alley_1", "frame_0002"), ("market_2", "frame_0001")):
        img = rng_image(rng, h, w)
        depth = rng.uniform(0.1, 50.0, size=(h, w)).astype(np.float32)
        depth[2, 3] = np.nan
        depth[4, 1] = np.inf
        k = np.array([[1120.0, 0.0, 511.5], [0.0, 1120.0, 217.5], [0.0, 0.0, 1.0]]) + rng.uniform(0, 1)
        k[2] = [0.0, 0.0, 1.0]
        k[0, 1] = k[1, 0] = 0.0
        ext = rng.normal(size=(3, 4))
        save_rgb(root / "training" / "final" / scene / f"{frame}.png", img)
        save_rgb(root / "training" / "clean" / scene / f"{frame}.png", 255 - img)
        write_dpt(root / "training" / "depth" / scene / f"{frame}.dpt", depth)
        write_cam(root / "training" / "camdata_left" / scene / f"{frame}.cam", k, ext)
        out[f"{scene}/{frame}"] = (img, depth, k)
    return out


def write_eth3d(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    out = {}
    for scene, names in (("courtyard", ["DSC_0286.JPG", "DSC_0287.JPG"]), ("pipes", ["DSC_0634.JPG"])):
        s = root / scene
        cam_lines = [
            "# Camera list with one line of data per camera:",
            "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        ]
        cam_lines += [
            f"0 PINHOLE {w} {h} 3408.59 3408.87 3117.24 2064.07",
            f"1 PINHOLE {w} {h} 3410.0 3411.0 3.5 2.5",
        ]
        dist_lines = [f"0 THIN_PRISM_FISHEYE {w} {h} 3408.35 3408.8 3114.7 2070.92 0.2 -0.1 0 0 0.1 0 0 0"]
        img_lines = ["# Image list with two lines of data per image:", "# Number of images: 2"]
        dist_img_lines = list(img_lines)
        for i, name in enumerate(names):
            img = rng_image(rng, h, w)
            depth = rng.uniform(0.5, 30.0, size=(h, w)).astype(np.float32)
            depth[0, 1] = np.inf
            depth[3, 3] = 0.0
            save_rgb(s / "images" / "dslr_images" / name, img, "JPEG")
            save_rgb(s / "images" / "dslr_images_undistorted" / name, img, "JPEG")
            d = s / "ground_truth_depth" / "dslr_images" / name
            d.parent.mkdir(parents=True, exist_ok=True)
            d.write_bytes(depth.astype("<f4").tobytes())
            cam_id = i % 2
            img_lines += [f"{i + 1} 0.9 0.1 0.1 0.1 0.5 0.2 0.1 {cam_id} dslr_images_undistorted/{name}", ""]
            dist_img_lines += [f"{i + 1} 0.9 0.1 0.1 0.1 0.5 0.2 0.1 0 dslr_images/{name}", "10.5 20.5 -1"]
            out[f"{scene}/{Path(name).stem}"] = (img, depth, cam_id)
        (s / "dslr_calibration_undistorted").mkdir(parents=True)
        (s / "dslr_calibration_undistorted" / "cameras.txt").write_text("\n".join(cam_lines) + "\n")
        (s / "dslr_calibration_undistorted" / "images.txt").write_text("\n".join(img_lines) + "\n")
        (s / "dslr_calibration_jpg").mkdir(parents=True)
        (s / "dslr_calibration_jpg" / "cameras.txt").write_text("\n".join(dist_lines) + "\n")
        (s / "dslr_calibration_jpg" / "images.txt").write_text("\n".join(dist_img_lines) + "\n")
    return out


def write_diw(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8, split: str = "test") -> dict:
    """DIW_test.csv with three samples; the third states an original size twice the thumbnail's.
    split="train_val" writes DIW_train_val.csv with images under DIW_train_val/ instead."""
    if split not in ("test", "train_val"):
        raise ValueError(f"split: expected 'test' or 'train_val', got {split!r}")
    rows = [
        ("a1", (1, 1, 6, 8, ">"), (w, h)),  # corners, 1-based
        ("b2", (3, 5, 2, 7, "<"), (w, h)),
        ("c3", (12, 16, 1, 1, ">"), (2 * w, 2 * h)),
    ]
    lines = []
    imgs = {}
    for name, (ya, xa, yb, xb, rel), (ow, oh) in rows:
        imgs[name] = rng_image(rng, h, w)
        save_rgb(root / f"DIW_{split}" / f"{name}.thumb", imgs[name], "JPEG")
        lines += [f"./DIW_{split}/{name}.thumb", f"{ya},{xa},{yb},{xb},{rel},{ow},{oh}"]
    (root / f"DIW_{split}.csv").write_text("\n".join(lines) + "\n")
    return imgs


def write_diml(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    out = {}
    base = root / "train" / "HR"
    for scene, name in (("01. Bathroom", "in_01_160225_185918"), ("12. Livingroom", "in_01_160217_123138")):
        img = rng_image(rng, h, w)
        mm = rng.integers(1, 10000, size=(h, w)).astype(np.uint16)
        mm[5, 7] = 0
        save_rgb(base / scene / "color" / f"{name}_c.png", img)
        save_png16(base / scene / "depth_filled" / f"{name}_depth_filled.png", mm)
        out[f"indoor/{name}"] = (img, mm)
    img = rng_image(rng, h, w)
    mm = rng.integers(1, 60000, size=(h, w)).astype(np.uint16)
    save_rgb(base / "Street" / "outleft" / "out_0001.png", img)
    save_png16(base / "Street" / "depthmap" / "out_0001.png", mm)
    out["outdoor/out_0001"] = (img, mm)
    return out


def write_megadepth(
    root: Path, rng: np.random.Generator, h: int = 6, w: int = 8, ordinal: tuple[str, ...] = ()
) -> dict:
    """Three images in two scenes. Keys of `ordinal` (`<scene>/<dense>/<name>`) get an ordinal depth map
    instead, as MegaDepth ships them: same file name and key "depth", float32 -1 (ordering mask) / 0 / 1
    values. Also writes a `semantic_map/<scene>/images/<name>.jpg.h5` next to MegaDepth_v1/, which the
    reader must never read."""
    base = root / "phoenix" / "S6" / "zl548" / "MegaDepth_v1"
    out = {}
    for scene, dense, name in (
        ("0001", "dense0", "123_abc"),
        ("0001", "dense1", "456_def"),
        ("0002", "dense0", "7_x"),
    ):
        img = rng_image(rng, h, w)
        depth = rng.uniform(1.0, 40.0, size=(h, w)).astype(np.float32)
        depth[:, 0] = 0.0
        save_rgb(base / scene / dense / "imgs" / f"{name}.jpg", img, "JPEG")
        (base / scene / dense / "depths").mkdir(parents=True, exist_ok=True)
        if f"{scene}/{dense}/{name}" in ordinal:
            depth = rng.integers(-1, 2, size=(h, w)).astype(np.float32)
            depth[0, 0] = -1.0
        with h5py.File(base / scene / dense / "depths" / f"{name}.h5", "w") as f:
            f.create_dataset("depth", data=depth)
        semantic = root / "phoenix" / "S6" / "zl548" / "semantic_map" / scene / "images" / f"{name}.jpg.h5"
        semantic.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(semantic, "w") as f:
            f.create_dataset("semantic", data=rng.integers(0, 150, size=(h, w)).astype(np.int32))
        out[f"{scene}/{dense}/{name}"] = (img, depth)
    return out


def write_redweb(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    out = {}
    for name in ("1000_2", "1001_7"):
        img = rng_image(rng, h, w)
        rd = rng.integers(0, 255, size=(h, w)).astype(np.uint8)
        rd[0, :3] = 255
        save_rgb(root / "Imgs" / f"{name}.jpg", img, "JPEG")
        save_png8(root / "RDs" / f"{name}.png", rd)
        out[name] = (img, rd)
    return out


def write_folder(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    """val/: `a` with a 16-bit depth PNG (scale from meta.json), `b` with a .depth.npy holding NaN / inf
    and its own b.json intrinsics; test/: `c` with a .disp.npy, `d` with a depth PNG whose scale is a PNG
    text chunk."""
    out = {}
    val = root / "val"
    val.mkdir(parents=True)
    (val / "meta.json").write_text(
        json.dumps({"depth_type": "absolute", "depth_scale": 1000.0, "intrinsics": [10.0, 11.0, 3.5, 2.5]})
    )
    a_img, a_mm = rng_image(rng, h, w), rng.integers(1, 65535, size=(h, w)).astype(np.uint16)
    a_mm[2, 2] = 0
    save_rgb(val / "a.png", a_img)
    save_png16(val / "a.depth.png", a_mm)
    b_img, b_depth = rng_image(rng, h, w), rng.uniform(0.5, 5.0, size=(h, w)).astype(np.float32)
    b_depth[0, 0], b_depth[1, 1], b_depth[2, 2] = np.nan, np.inf, -1.0
    save_rgb(val / "b.png", b_img)
    np.save(val / "b.depth.npy", b_depth)
    (val / "b.json").write_text(
        json.dumps({"intrinsics": [[20, 0, 4], [0, 21, 3], [0, 0, 1]], "depth_type": "uts"})
    )
    test = root / "test"
    test.mkdir(parents=True)
    c_img, c_disp = rng_image(rng, h, w), rng.uniform(0.1, 2.0, size=(1, h, w)).astype(np.float32)
    save_rgb(test / "c.png", c_img)
    np.save(test / "c.disp.npy", c_disp)
    d_img, d_raw = rng_image(rng, h, w), rng.integers(1, 65535, size=(h, w)).astype(np.uint16)
    save_rgb(test / "d.png", d_img)
    save_png16(test / "d.depth.png", d_raw, text={"depth_scale": "256"})
    (test / "d.json").write_text(json.dumps({"depth_type": "absolute"}))
    out.update(a=(a_img, a_mm), b=(b_img, b_depth), c=(c_img, c_disp), d=(d_img, d_raw))
    return out


# ------------------------------------------------- evaluation layouts (datamodules/depth/readers_eval.py)

# float32 values around GP2's caps: exactly the cap (invalid), the float32 just below it (valid), above it
TUM_HDF5_CAP = 10.0


def write_tum_hdf5(root: Path, rng: np.random.Generator, h: int = 6, w: int = 8) -> dict:
    """Three MannequinChallenge TUM files `<name>.jpg.h5`, written out of name order: `/gt/img_1` (H, W, 3)
    float32 in [0, 1] (as MannequinChallenge), float32 in [0, 255] and uint8, `/gt/gt_depth` (H, W) float32 metres with
    0, 5e-9 (below GP2's 1e-8), NaN, exactly 10 (the cap), the float32 just below 10 and 12 in row 0,
    `/gt/intrinsic` (3, 3) for the first two only, and a `/gt/human_mask` that the reader ignores.
    Returns {name: (image as stored, depth, K or None)}."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(("ZL1tYG0uZu4_10500000.jpg", "ZL1tYG0uZu4_10366667.jpg", "a0b1c2_00000001.jpg")):
        img = rng_image(rng, h, w)
        stored = (img.astype(np.float32) / 255.0, img.astype(np.float32), img)[i]  # [0, 1], [0, 255], uint8
        depth = rng.uniform(0.5, 9.5, size=(h, w)).astype(np.float32)
        depth[0, :6] = [0.0, 5e-9, np.nan, TUM_HDF5_CAP, np.nextafter(np.float32(10.0), np.float32(0)), 12.0]
        k = None if i == 2 else np.array([[500.0 + i, 0, 255.5], [0, 501.0, 191.5], [0, 0, 1]], np.float32)
        with h5py.File(root / f"{name}.h5", "w") as f:
            gt = f.create_group("gt")
            gt.create_dataset("img_1", data=stored)
            gt.create_dataset("gt_depth", data=depth)
            gt.create_dataset("human_mask", data=np.zeros((h, w), np.float32))
            if k is not None:
                gt.create_dataset("intrinsic", data=k)
        out[name] = (stored, depth, k)
    return out


# PINHOLE camera of the ETH3D undistorted DSLR images, calibrated at 4x the depth maps' size
ETH3D_GP2_CAM = (3408.59, 3408.87, 3117.24, 2064.07)


def write_eth3d_gp2(
    root: Path, rng: np.random.Generator, h: int = 6, w: int = 8, image_scale: int = 1, depth_bits: int = 16
) -> dict:
    """GP2's eth3d.zip layout: scenes courtyard (2 images) and pipes (1), JPEG images `images_out/
    dslr_images_undistorted/<name>.JPG` of one uniform colour each, at `image_scale` x the depth size, and
    16-bit millimetre PNGs `depth/dslr_images_undistorted/<name>.png` with 0 at (0, 0), 5000 (5 m) at (0, 1)
    and 65535 at (0, 2). courtyard also has `dslr_calibration_undistorted/` (a PINHOLE camera at 4x the depth
    size). depth_bits=8 writes 8-bit depth PNGs instead (values clipped to 255), a corrupt variant.
    Returns {"<scene>/<stem>": (colour (3,) uint8, depth in mm)}."""
    out = {}
    for scene, names in (("pipes", ["DSC_0634.JPG"]), ("courtyard", ["DSC_0287.JPG", "DSC_0286.JPG"])):
        s = root / scene
        for name in names:
            colour = rng.integers(0, 256, size=3, dtype=np.uint8)
            img = np.broadcast_to(colour, (h * image_scale, w * image_scale, 3)).copy()
            save_rgb(s / "images_out" / "dslr_images_undistorted" / name, img, "JPEG")
            mm = rng.integers(1, 60000, size=(h, w)).astype(np.uint16)
            mm[0, :3] = [0, 5000, 65535]
            depth_path = s / "depth" / "dslr_images_undistorted" / f"{Path(name).stem}.png"
            if depth_bits == 8:
                mm = np.clip(mm, 0, 255).astype(np.uint8)
                save_png8(depth_path, mm)
            else:
                save_png16(depth_path, mm)
            out[f"{scene}/{Path(name).stem}"] = (colour, mm)
        if scene == "courtyard":
            calib = s / "dslr_calibration_undistorted"
            calib.mkdir(parents=True)
            fx, fy, cx, cy = ETH3D_GP2_CAM
            (calib / "cameras.txt").write_text(
                f"# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n0 PINHOLE {4 * w} {4 * h} {fx} {fy} {cx} {cy}\n"
            )
            lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
            for i, name in enumerate(names):
                lines += [f"{i + 1} 1 0 0 0 0 0 0 0 dslr_images_undistorted/{name}", ""]
            (calib / "images.txt").write_text("\n".join(lines) + "\n")
    return out


KITTI_SELECTION_K = [721.5377, 0.0, 596.5593, 0.0, 721.5377, 149.854, 0.0, 0.0, 1.0]


def write_kitti_selection(
    root: Path, rng: np.random.Generator, h: int = 6, w: int = 8, depth_bits: int = 16
) -> dict:
    """`<root>/depth_selection/val_selection_cropped/{image,groundtruth_depth,velodyne_raw,intrinsics}/` with
    three frames (two drives, image_02 and image_03), written out of name order. Ground truth: uint16 with 0
    at (0, 0), 80 * 256 (exactly the 80 m cap) at (0, 1), 80 * 256 - 1 at (0, 2); velodyne scans sparse
    (about a third non-zero); intrinsics one line of 9 `%e` floats, fx = 721.5377 + the frame's index.
    depth_bits=8 writes every depth PNG as 8-bit, a corrupt variant.
    Returns {"<drive>_<frame>_<cam>": (image, ground truth, velodyne, K (3, 3))}."""
    base = root / "depth_selection" / "val_selection_cropped"
    out = {}
    frames = (
        ("2011_09_28_drive_0001_sync", "0000000012", "image_02"),
        ("2011_09_26_drive_0002_sync", "0000000005", "image_03"),
        ("2011_09_26_drive_0002_sync", "0000000005", "image_02"),
    )
    for i, (drive, frame, cam) in enumerate(frames):
        img = rng_image(rng, h, w)
        gt = rng.integers(1, 80 * 256, size=(h, w)).astype(np.uint16)
        gt[0, :3] = [0, 80 * 256, 80 * 256 - 1]
        velo = np.where(rng.uniform(size=(h, w)) < 0.33, rng.integers(256, 90 * 256, size=(h, w)), 0)
        velo[1, 1] = 300  # at least one point above 255
        k = np.array(KITTI_SELECTION_K).reshape(3, 3)
        k[0, 0] += i
        save_rgb(base / "image" / f"{drive}_image_{frame}_{cam}.png", img)
        for sub, arr in (("groundtruth_depth", gt), ("velodyne_raw", velo)):
            path = base / sub / f"{drive}_{sub}_{frame}_{cam}.png"
            if depth_bits == 8:
                save_png8(path, np.clip(arr, 0, 255))
            else:
                save_png16(path, arr)
        (base / "intrinsics").mkdir(parents=True, exist_ok=True)
        (base / "intrinsics" / f"{drive}_image_{frame}_{cam}.txt").write_text(
            " ".join(f"{v:e}" for v in k.reshape(-1)) + "\n"
        )
        out[f"{drive}_{frame}_{cam}"] = (img, gt, velo.astype(np.uint16), k)
    return out
