"""Embedded synthetic object classes for the SSL point-cloud family: car-, chair- and airplane-like
assemblies of primitives, one random view per instance, rendered with `geometry`'s mesh rasterizer.

The default data of the point-cloud experiments, with the 3D ground truth (true shape and true pose) that
the self-supervised method never sees.

Instances: each class is a random assembly of triangle-mesh primitives (boxes, cylinders, and ellipsoids
made from `geometry.ico_sphere`) with random proportions and one random colour per part group (car: body,
cabin, wheels; chair: seat, back, legs, arms; airplane: fuselage, wings, tail, engines). The assembly is
normalized like ShapeNetCore v1 models, whose DRC renderings and ground-truth clouds the lineage uses:
centred at its bounding-box centre and scaled to a unit bounding-box diagonal, so that the lineage's camera
at distance 2 frames every instance (radius <= 0.5 projects to <= 31 px from the principal point at 64 px).
The object frame is the lineage's: x is the image-vertical axis (up = -x), azimuth turns about x, and at
azimuth = 0 the camera (on +z) sees the object's side, the length axis along the image columns.

View: azimuth ~ U[-180, 180) deg, elevation ~ U[-20, 40] deg (ssl_3d_recon `main.py` samples its random
projection poses in these ranges, and DRC renders ShapeNet in them: shubhtuls/drc
`renderPreprocessShapenet.py` `_randomPoseSamples`), camera at distance 2 with the lineage's intrinsics
(`datamodules.pointcloud.camera`). `pose` holds (azimuth, elevation) in radians, the arguments of
`camera.world2cam`.

Rendering: `camera.project_to_ndc` then `geometry.rasterize_meshes` (hard, one face per pixel); per-part
flat colours with flat Lambertian shading (|n . l| with a light near the viewing direction, plus ambient)
over a plain background (black by default, like DRC renderings read as RGB: their transparent background
has RGB 0); `mask` is the silhouette (pixels whose centre a face covers).

Ground truth: P = 1024 points sampled uniformly on the normalized surface (`geometry.sample_points_from_meshes`,
area-weighted; parts inside others contribute hidden points too, as a watertight-part union would not).

A sample is a pure function of (seed, split, category, index); the splits draw from different seeds.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.pointcloud.camera import CAMERA_DISTANCE, lineage_intrinsics, project_to_ndc, world2cam
from datamodules.registry import READERS
from datamodules.seeding import stable_seed
from geometry.mesh import face_normals, ico_sphere, sample_points_from_meshes
from geometry.mesh_raster import rasterize_meshes

__all__ = [
    "CATEGORIES",
    "Assembly",
    "SyntheticShapes",
    "box_mesh",
    "cylinder_mesh",
    "ellipsoid_mesh",
    "make_assembly",
    "normalize_unit_diagonal",
]

CATEGORIES = ("car", "chair", "airplane")
SPLITS = ("train", "val", "test")
# build frame (up, length, lateral) -> lineage frame (x = -up, y = length, z = -lateral): a proper rotation
_TO_LINEAGE = (-1.0, 1.0, -1.0)


class Assembly(NamedTuple):
    """One instance: verts (V, 3) in the lineage frame (normalized), faces (F, 3) long, face_colors (F, 3)
    albedo in [0, 1], face_parts (F,) long part-group index."""

    verts: Tensor
    faces: Tensor
    face_colors: Tensor
    face_parts: Tensor


# ------------------------------------------------------------------------------------------ primitives
_BOX_FACES = torch.tensor(
    [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
     [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]]
)  # fmt: skip
_BOX_CORNERS = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=torch.float32) * 2 - 1


def box_mesh(center: Sequence[float], half: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Axis-aligned box: verts (8, 3) = center + corners * half, faces (12, 3)."""
    return torch.tensor(center) + _BOX_CORNERS * torch.tensor(half), _BOX_FACES


@functools.lru_cache(maxsize=8)
def _cylinder_template(segments: int) -> tuple[Tensor, Tensor]:
    """Unit cylinder along axis 0 (x in [-1, 1], radius 1): verts (2n + 2, 3), faces (4n, 3)."""
    t = torch.arange(segments) * (2 * math.pi / segments)
    ring = torch.stack([torch.cos(t), torch.sin(t)], -1)  # (n, 2)
    ones = torch.ones(segments, 1)
    verts = torch.cat(
        [torch.cat([-ones, ring], 1), torch.cat([ones, ring], 1), torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]])]
    )
    i = torch.arange(segments)
    j = (i + 1) % segments
    n = segments
    side = torch.cat([torch.stack([i, j, i + n], 1), torch.stack([j, j + n, i + n], 1)])
    caps = torch.cat(
        [
            torch.stack([torch.full_like(i, 2 * n), j, i], 1),
            torch.stack([torch.full_like(i, 2 * n + 1), i + n, j + n], 1),
        ]
    )
    return verts, torch.cat([side, caps])


def cylinder_mesh(
    center: Sequence[float], radius: float, half_length: float, axis: int, segments: int = 12
) -> tuple[Tensor, Tensor]:
    """Closed cylinder along coordinate `axis` (0, 1 or 2): verts (2n + 2, 3), faces (4n, 3)."""
    verts, faces = _cylinder_template(segments)
    scaled = verts * torch.tensor([half_length, radius, radius])
    order = {0: [0, 1, 2], 1: [1, 0, 2], 2: [1, 2, 0]}[axis]  # put the cylinder's axis on `axis`
    return scaled[:, order] + torch.tensor(center), faces


@functools.lru_cache(maxsize=4)
def _sphere(level: int) -> tuple[Tensor, Tensor]:
    s = ico_sphere(level)
    return s.verts, s.faces


def ellipsoid_mesh(center: Sequence[float], radii: Sequence[float], level: int = 2) -> tuple[Tensor, Tensor]:
    """Ellipsoid from `geometry.ico_sphere(level)`: verts (V, 3) = center + sphere * radii, faces (F, 3)."""
    verts, faces = _sphere(level)
    return torch.tensor(center) + verts * torch.tensor(radii), faces


def normalize_unit_diagonal(verts: Tensor) -> Tensor:
    """(..., V, 3) -> centred at the bounding-box centre, bounding-box diagonal 1 (ShapeNetCore v1 style)."""
    lo, hi = verts.amin(-2, keepdim=True), verts.amax(-2, keepdim=True)
    diag = (hi - lo).norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return (verts - (lo + hi) / 2) / diag


# ------------------------------------------------------------------------------------------ classes
def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _car(g: torch.Generator) -> list[tuple[int, tuple[Tensor, Tensor]]]:
    length, half_w, h, r = _u(g, 0.9, 1.1), _u(g, 0.18, 0.26), _u(g, 0.12, 0.2), _u(g, 0.08, 0.12)
    hc, lc, off = _u(g, 0.1, 0.18), length * _u(g, 0.4, 0.6), length * _u(g, -0.12, 0.05)
    tw, inset = _u(g, 0.03, 0.05), r * _u(g, 1.1, 1.6)
    parts = [
        (0, box_mesh((r + h / 2, 0.0, 0.0), (h / 2, length / 2, half_w))),
        (1, box_mesh((r + h + hc / 2, off, 0.0), (hc / 2, lc / 2, half_w * _u(g, 0.8, 0.95)))),
    ]
    for sl in (-1.0, 1.0):
        for sa in (-1.0, 1.0):
            centre = (r, sl * (length / 2 - inset), sa * (half_w - tw / 2 + 0.01))
            parts.append((2, cylinder_mesh(centre, r, tw / 2, axis=2)))
    return parts


def _chair(g: torch.Generator) -> list[tuple[int, tuple[Tensor, Tensor]]]:
    hs, ts, depth, width = _u(g, 0.35, 0.5), _u(g, 0.04, 0.08), _u(g, 0.4, 0.55), _u(g, 0.4, 0.55)
    hb, tb, lw = _u(g, 0.35, 0.6), _u(g, 0.03, 0.07), _u(g, 0.035, 0.06)
    parts = [
        (0, box_mesh((hs, 0.0, 0.0), (ts / 2, depth / 2, width / 2))),
        (
            1,
            box_mesh(
                (hs + ts / 2 + hb / 2, -depth / 2 + tb / 2, 0.0),
                (hb / 2, tb / 2, width / 2 * _u(g, 0.85, 1.0)),
            ),
        ),
    ]
    round_legs = bool(torch.rand((), generator=g) < 0.5)
    for sl in (-1.0, 1.0):
        for sa in (-1.0, 1.0):
            centre = ((hs - ts / 2) / 2, sl * (depth / 2 - lw), sa * (width / 2 - lw))
            if round_legs:
                parts.append((2, cylinder_mesh(centre, lw / 2, (hs - ts / 2) / 2 + 0.01, axis=0, segments=8)))
            else:
                parts.append((2, box_mesh(centre, ((hs - ts / 2) / 2 + 0.01, lw / 2, lw / 2))))
    if bool(torch.rand((), generator=g) < 0.4):  # armrests
        ha = _u(g, 0.12, 0.22)
        for sa in (-1.0, 1.0):
            parts.append(
                (3, box_mesh((hs + ts / 2 + ha, 0.0, sa * (width / 2 - lw / 2)), (lw / 2, depth / 2, lw / 2)))
            )
            parts.append(
                (
                    3,
                    box_mesh(
                        (hs + ts / 2 + ha / 2, depth / 2 - lw, sa * (width / 2 - lw / 2)),
                        (ha / 2, lw / 2, lw / 2),
                    ),
                )
            )
    return parts


def _airplane(g: torch.Generator) -> list[tuple[int, tuple[Tensor, Tensor]]]:
    length, rf = _u(g, 0.9, 1.1), _u(g, 0.05, 0.08)
    span, chord, tw, woff = _u(g, 0.8, 1.1), _u(g, 0.12, 0.22), _u(g, 0.02, 0.03), length * _u(g, -0.05, 0.1)
    span_t, chord_t, hf = _u(g, 0.25, 0.4), _u(g, 0.08, 0.12), _u(g, 0.1, 0.18)
    tail = -length / 2 + chord_t / 2
    parts = [
        (0, ellipsoid_mesh((0.0, 0.0, 0.0), (rf, length / 2, rf))),
        (1, box_mesh((0.0, woff, 0.0), (tw / 2, chord / 2, span / 2))),
        (2, box_mesh((0.0, tail, 0.0), (tw / 2, chord_t / 2, span_t / 2))),
        (2, box_mesh((rf * 0.5 + hf / 2, tail, 0.0), (hf / 2, chord_t / 2, tw / 2))),
    ]
    if bool(torch.rand((), generator=g) < 0.6):  # engines under the wings
        re, le, pos = _u(g, 0.03, 0.05), _u(g, 0.06, 0.1), span / 2 * _u(g, 0.35, 0.6)
        for sa in (-1.0, 1.0):
            parts.append((3, cylinder_mesh((-re - tw / 2, woff + 0.02, sa * pos), re, le, axis=1)))
    return parts


_BUILDERS = {"car": _car, "chair": _chair, "airplane": _airplane}
_NUM_PART_GROUPS = {"car": 3, "chair": 4, "airplane": 4}


def make_assembly(category: str, g: torch.Generator) -> Assembly:
    """A random normalized instance of `category` ("car", "chair", "airplane") drawn with generator g."""
    if category not in _BUILDERS:
        raise ValueError(f"category: expected one of {', '.join(map(repr, CATEGORIES))}, got {category!r}")
    parts = _BUILDERS[category](g)
    colors = torch.rand(_NUM_PART_GROUPS[category], 3, generator=g) * 0.85 + 0.15  # (G, 3) one per group
    verts, faces, groups, offset = [], [], [], 0
    for group, (v, f) in parts:
        verts.append(v)
        faces.append(f + offset)
        groups.append(torch.full((len(f),), group, dtype=torch.long))
        offset += len(v)
    v = normalize_unit_diagonal(torch.cat(verts) * torch.tensor(_TO_LINEAGE))
    face_parts = torch.cat(groups)
    return Assembly(v, torch.cat(faces), colors[face_parts], face_parts)


# ------------------------------------------------------------------------------------------ dataset
@READERS.register("synthetic_shapes")
class SyntheticShapes(Dataset):
    """Synthetic car / chair / airplane instances with true shape and pose, generated on the fly (module
    docstring).

    Args:
        root: ignored (all readers share the call shape).
        split: "train", "val" or "test"; each split has its own seeds, so its own instances.
        num_samples: dataset length.
        category: "car", "chair" or "airplane".
        image_size: S, square S x S images (the lineage's intrinsics scaled by S / 64).
        seed: base seed.
        num_points: P, ground-truth surface points (the lineage: 1024).
        azimuth_range, elevation_range: degrees (uniform).
        distance: camera distance (the lineage: 2).
        background: an RGB triple in [0, 1] (default black), or "random" (one plain random colour per sample).
    Samples ("point_cloud" schema): `image` (3, S, S) in [0, 1]; `mask` (1, S, S) float 0 / 1; `pose` (2,)
    azimuth, elevation in radians; `points` (P, 3) in the lineage frame; `name`.
    Attributes: `intrinsics` (3, 3) the K of `camera.project`; `distance`.
    """

    NAME = "synthetic_shapes"
    SCHEMA = "point_cloud"

    def __init__(
        self,
        root: Any = None,
        split: str = "train",
        num_samples: int = 1000,
        category: str = "chair",
        image_size: int = 64,
        seed: int = 0,
        num_points: int = 1024,
        azimuth_range: Sequence[float] = (-180.0, 180.0),
        elevation_range: Sequence[float] = (-20.0, 40.0),
        distance: float = CAMERA_DISTANCE,
        background: Sequence[float] | str = (0.0, 0.0, 0.0),
    ):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {', '.join(map(repr, SPLITS))}, got {split!r}")
        if category not in CATEGORIES:
            raise ValueError(
                f"category: expected one of {', '.join(map(repr, CATEGORIES))}, got {category!r}"
            )
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected an int >= 1, got {num_samples!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size: expected an int >= 8 (square images), got {image_size!r}")
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"num_points: expected an int >= 1, got {num_points!r}")
        for name, r in (("azimuth_range", azimuth_range), ("elevation_range", elevation_range)):
            if len(r) != 2 or not r[0] <= r[1]:
                raise ValueError(f"{name}: expected (lo, hi) degrees with lo <= hi, got {r!r}")
        if not distance > 0.5:
            raise ValueError(
                f"distance: expected > 0.5 (the normalized objects have radius <= 0.5), got {distance}"
            )
        if isinstance(background, str):
            if background != "random":
                raise ValueError(f"background: expected an RGB triple or 'random', got {background!r}")
            self.background: Tensor | None = None
        else:
            bg = torch.as_tensor(background, dtype=torch.float32)
            if bg.shape != (3,) or not bool(((bg >= 0) & (bg <= 1)).all()):
                raise ValueError(f"background: expected an RGB triple in [0, 1], got {background!r}")
            self.background = bg
        self.split, self.num_samples, self.category = split, num_samples, category
        self.image_size, self.seed, self.num_points = image_size, int(seed), num_points
        self.azimuth_range, self.elevation_range = tuple(azimuth_range), tuple(elevation_range)
        self.distance = float(distance)
        self.intrinsics = lineage_intrinsics(image_size)
        self._split_id = zlib.crc32(split.encode())
        self._category_id = zlib.crc32(category.encode())

    def __len__(self) -> int:
        return self.num_samples

    def generator(self, index: int) -> torch.Generator:
        """The seeded generator of sample `index` (a pure function of seed, split, category and index)."""
        return torch.Generator().manual_seed(stable_seed(self.seed, self._split_id, self._category_id, index))

    def _check_index(self, index: int) -> int:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"synthetic_shapes: index {index} out of range for {self.num_samples} samples")
        return index % self.num_samples

    def assembly(self, index: int) -> Assembly:
        """The mesh of sample `index` (lineage frame, normalized)."""
        return make_assembly(self.category, self.generator(self._check_index(index)))

    @torch.no_grad()
    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        g = self.generator(index)
        asm = make_assembly(self.category, g)
        s = self.image_size
        (a_lo, a_hi), (e_lo, e_hi) = self.azimuth_range, self.elevation_range
        pose = torch.deg2rad(torch.tensor([_u(g, a_lo, a_hi), _u(g, e_lo, e_hi)]))  # (2,)
        light = torch.nn.functional.normalize(
            torch.cat([torch.rand(2, generator=g) * 1.2 - 0.6, torch.ones(1)]), dim=0
        )
        ambient = _u(g, 0.3, 0.5)
        bg = torch.rand(3, generator=g) if self.background is None else self.background
        points = sample_points_from_meshes(asm.verts[None], asm.faces, self.num_points, generator=g)[0]

        cam = world2cam(asm.verts[None], pose[:1], pose[1:], self.distance)  # (1, V, 3)
        verts_ndc = project_to_ndc(cam, self.intrinsics, s)
        frags = rasterize_meshes(verts_ndc, asm.faces, s, faces_per_pixel=1)
        lambert = (face_normals(cam[0], asm.faces) @ light).abs()  # (F,) flat shading, camera-side light
        shaded = asm.face_colors * (ambient + (1 - ambient) * lambert)[:, None]  # (F, 3)
        p2f = frags.pix_to_face[0, :, :, 0]  # (S, S)
        hit = p2f >= 0
        image = torch.where(hit[..., None], shaded[p2f.clamp(min=0)], bg)  # (S, S, 3)
        return {
            "image": image.permute(2, 0, 1).clamp(0, 1).contiguous(),
            "mask": hit[None].float(),
            "pose": pose,
            "points": points,
            "name": f"synthetic_shapes/{self.category}/{self.split}/{index:06d}",
        }

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(split={self.split!r}, category={self.category!r}, n={self.num_samples}, "
            f"image_size={self.image_size})"
        )
