"""Embedded synthetic depth data: procedural rooms with objects, rendered by analytic ray casting.

The default data of the GP2 experiments. A scene is a room (floor, ceiling and four walls: planes) with the
camera inside, plus 2-6 objects (spheres, axis-aligned or rotated boxes, vertical cylinders), each surface
with a procedural texture (checkerboard, stripes, smooth gradient, value noise) and Lambertian shading
from a random directional light, so that both texture and shading cues exist. Rays of all pixels are cast
at once against all primitives; the nearest hit gives the depth.

Frames. World: metres, +Y up, floor at y = 0. Camera: OpenCV-style pinhole (x right, y down, z forward),
`intrinsics` K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in 0-based pixels: the centre of pixel (i, j) is
(u, v) = (j, i), so the principal point at the image centre is ((W - 1) / 2, (H - 1) / 2), the same
convention as the real readers (`datamodules.depth.io.intrinsics_matrix`). `depth` is the z-depth (distance
along the optical axis), not the ray length: casting the unnormalized ray d_cam = ((u - cx) / fx,
(v - cy) / fy, 1) makes the ray parameter t of a hit its z-depth.

Depth-type variants, as in GP2's proof of concept (Fig. 3 of "Towards General Purpose, Geometry Preserving
Single-View Depth Estimation"): a fixed, index-determined subset of `uts_fraction` of the samples has
depth_type "uts" (depth multiplied by s, log-uniform in `uts_scale_range`, default [0.2, 5]) and a subset of
`utss_fraction` has "utss_disparity" (`depth` holds a / z + b with a log-uniform in `utss_scale_range`,
default [0.1, 10] metres, and b = a * beta with beta uniform in `utss_shift_range`, default [0, 0.5] per
metre, so b >= 0 and every disparity is positive). The rest are "absolute" metric z-depth. The scene of an
index does not depend on the fractions; `SyntheticDepth.variant(index)` returns the type and (s or a, b).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.registry import READERS
from datamodules.seeding import stable_seed
from geometry.cameras import intrinsics_from_fov

TEXTURES = ("plain", "checker", "stripes", "gradient", "noise")
# Pattern period in metres per texture kind (plain has none).
_TEXTURE_SCALE = {"plain": (1.0, 1.0), "checker": (0.1, 0.8), "stripes": (0.05, 0.4), "gradient": (1.5, 6.0)}
_TEXTURE_SCALE["noise"] = (0.05, 0.5)
_EPS = 1e-4  # minimum ray parameter of a hit (metres of z-depth)


class Materials(NamedTuple):
    """Per-primitive procedural textures, N primitives in scene order (planes, spheres, boxes, cylinders)."""

    kind: Tensor  # (N,) long index into TEXTURES
    scale: Tensor  # (N,) pattern period, metres
    colour_a: Tensor  # (N, 3) in [0, 1]
    colour_b: Tensor  # (N, 3) in [0, 1]
    direction: Tensor  # (N, 3) unit axis of stripes and gradients
    offset: Tensor  # (N, 3) pattern offset, metres


def _empty(*shape: int) -> Tensor:
    return torch.zeros(*shape)


@dataclass
class Scene:
    """A scene in world coordinates (metres, +Y up) and the camera looking at it.

    cam_to_world: (3, 3), its columns are the camera's x (right), y (down), z (forward) axes in world.
    cam_position: (3,) camera centre in world.
    planes: (P, 4) unit normal n and offset o of the plane {X : n . X = o}.
    spheres: (S, 4) centre and radius.
    box_centres, box_half_sizes: (X, 3); box_rotations: (X, 3, 3) box-to-world (columns are the box axes).
    cylinders: (C, 5) vertical cylinders (axis along world y): x, z of the axis, radius, y_min, y_max.
    materials: textures of all P + S + X + C primitives in that order, or None for plain grey.
    light: (3,) unit direction towards the directional light; ambient: ambient light fraction.
    """

    cam_to_world: Tensor
    cam_position: Tensor
    planes: Tensor = field(default_factory=lambda: _empty(0, 4))
    spheres: Tensor = field(default_factory=lambda: _empty(0, 4))
    box_centres: Tensor = field(default_factory=lambda: _empty(0, 3))
    box_half_sizes: Tensor = field(default_factory=lambda: _empty(0, 3))
    box_rotations: Tensor = field(default_factory=lambda: _empty(0, 3, 3))
    cylinders: Tensor = field(default_factory=lambda: _empty(0, 5))
    materials: Materials | None = None
    light: Tensor = field(default_factory=lambda: torch.tensor([0.3, 0.9, 0.3]) / math.sqrt(0.99))
    ambient: float = 0.3

    @property
    def num_primitives(self) -> int:
        return len(self.planes) + len(self.spheres) + len(self.box_centres) + len(self.cylinders)


class Render(NamedTuple):
    """Output of `render_scene`. Pixels whose ray hits nothing have depth 0, valid False, primitive -1."""

    image: Tensor  # (3, H, W) in [0, 1]
    depth: Tensor  # (1, H, W) z-depth, metres
    valid: Tensor  # (1, H, W) bool
    normals: Tensor  # (3, H, W) world-frame unit normals facing the camera
    primitive: Tensor  # (1, H, W) long index of the hit primitive in scene order


class DepthVariant(NamedTuple):
    """How a sample's `depth` relates to the metric z-depth z: absolute z, uts s * z, utss a / z + b."""

    depth_type: str
    scale: float  # s (uts) or a (utss_disparity); 1 for absolute
    shift: float  # b (utss_disparity); 0 otherwise


def look_rotation(yaw: float, pitch: float, roll: float) -> Tensor:
    """(3, 3) camera-to-world rotation (columns: camera right, down, forward in world, +Y up).

    yaw: heading about world +Y (0 looks along +Z); pitch: elevation of the optical axis (> 0 looks up);
    roll: rotation about the optical axis. Radians.
    """
    cp = math.cos(pitch)
    forward = torch.tensor([math.sin(yaw) * cp, math.sin(pitch), math.cos(yaw) * cp])
    right0 = torch.tensor([-forward[2].item(), 0.0, forward[0].item()])  # forward x up
    right0 = right0 / right0.norm()
    down0 = torch.linalg.cross(forward, right0)
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right0 + sr * down0, -sr * right0 + cr * down0
    return torch.stack([right, down, forward], dim=1)


def camera_rays(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """(H * W, 3) unnormalized camera-frame rays ((u - cx) / fx, (v - cy) / fy, 1), row-major pixel order."""
    if intrinsics.shape != (3, 3):
        raise ValueError(f"intrinsics: expected shape (3, 3), got {tuple(intrinsics.shape)}")
    k = intrinsics.to(torch.float32)
    v = torch.arange(height, dtype=torch.float32)
    u = torch.arange(width, dtype=torch.float32)
    x = ((u - k[0, 2]) / k[0, 0]).expand(height, width)
    y = ((v - k[1, 2]) / k[1, 1])[:, None].expand(height, width)
    return torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 3)


# ----------------------------------------------------------------------------------------------------------
# Ray-primitive intersections. o: (3,) ray origin, d: (N, 3) ray directions. Each returns t (K, N) with inf
# where the ray misses and normals (K, N, 3) (arbitrary where it misses).


def _nearest(t: Tensor) -> Tensor:
    return torch.where(t > _EPS, t, torch.full_like(t, math.inf))


def _intersect_planes(planes: Tensor, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    n, off = planes[:, :3], planes[:, 3]  # (P, 3), (P,)
    nd = n @ d.T  # (P, N)
    nd_safe = torch.where(nd.abs() < 1e-12, torch.full_like(nd, 1e-12), nd)
    t = _nearest((off - n @ o)[:, None] / nd_safe)
    return t, n[:, None, :].expand(-1, d.shape[0], -1)


def _intersect_spheres(spheres: Tensor, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    c, r = spheres[:, :3], spheres[:, 3]  # (S, 3), (S,)
    oc = o - c  # (S, 3)
    a = (d * d).sum(-1)  # (N,)
    b = oc @ d.T  # (S, N), half the linear coefficient
    cc = (oc * oc).sum(-1) - r * r  # (S,)
    disc = b * b - a * cc[:, None]
    sq = disc.clamp(min=0).sqrt()
    t0, t1 = _nearest((-b - sq) / a), _nearest((-b + sq) / a)
    t = torch.where(disc >= 0, torch.minimum(t0, t1), torch.full_like(t0, math.inf))
    t_safe = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    normals = (o + t_safe[..., None] * d - c[:, None, :]) / r[:, None, None]  # (S, N, 3)
    return t, normals


def _intersect_boxes(
    centres: Tensor, half: Tensor, rot: Tensor, o: Tensor, d: Tensor
) -> tuple[Tensor, Tensor]:
    ol = torch.einsum("xi,xij->xj", o - centres, rot)[:, None, :]  # (X, 1, 3) origin in box frame
    dl = torch.einsum("ni,xij->xnj", d, rot)  # (X, N, 3)
    dl = torch.where(dl.abs() < 1e-12, torch.full_like(dl, 1e-12), dl)
    h = half[:, None, :]
    t1, t2 = (-h - ol) / dl, (h - ol) / dl  # slab entry/exit per axis
    t_near, axis = torch.minimum(t1, t2).max(-1)  # (X, N)
    t_far = torch.maximum(t1, t2).min(-1).values
    hit = t_far >= torch.clamp(t_near, min=_EPS)
    t = torch.where(hit, torch.where(t_near > _EPS, t_near, t_far), torch.full_like(t_near, math.inf))
    sign = -torch.sign(torch.gather(dl, -1, axis[..., None]))  # (X, N, 1) faces the ray origin
    nl = torch.nn.functional.one_hot(axis, 3).to(d.dtype) * sign
    return t, torch.einsum("xnj,xij->xni", nl, rot)


def _intersect_cylinders(cyl: Tensor, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    x0, z0, r, y0, y1 = cyl.unbind(-1)  # (C,) each
    ox, oz = (o[0] - x0)[:, None], (o[2] - z0)[:, None]  # (C, 1)
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]  # (N,)
    a = (dx * dx + dz * dz).clamp(min=1e-12)
    b = ox * dx + oz * dz  # (C, N)
    disc = b * b - a * (ox * ox + oz * oz - (r * r)[:, None])
    sq = disc.clamp(min=0).sqrt()
    dy_safe = torch.where(dy.abs() < 1e-12, torch.full_like(dy, 1e-12), dy)
    cands = []
    for t_side in ((-b - sq) / a, (-b + sq) / a):
        y = o[1] + t_side * dy
        ok = (disc >= 0) & (y >= y0[:, None]) & (y <= y1[:, None])
        cands.append(torch.where(ok, _nearest(t_side), torch.full_like(t_side, math.inf)))
    for y_cap in (y0, y1):
        t_cap = (y_cap[:, None] - o[1]) / dy_safe
        px, pz = ox + t_cap * dx, oz + t_cap * dz
        ok = px * px + pz * pz <= (r * r)[:, None]
        cands.append(torch.where(ok, _nearest(t_cap), torch.full_like(t_cap, math.inf)))
    t, which = torch.stack(cands).min(0)  # (C, N)
    t_safe = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    side = torch.stack([ox + t_safe * dx, torch.zeros_like(t), oz + t_safe * dz], -1) / r[:, None, None]
    cap = torch.zeros_like(side)
    cap[..., 1] = torch.where(which == 3, 1.0, -1.0)
    return t, torch.where((which < 2)[..., None], side, cap)


# ----------------------------------------------------------------------------------------------------------
# Shading


def _hash3(cells: Tensor) -> Tensor:
    """Pseudo-random value in [0, 1) per integer lattice point (..., 3): the common
    fract(sin(dot) * 43758.5453) shader hash (e.g. "The Book of Shaders", ch. 10)."""
    dot = cells @ cells.new_tensor([12.9898, 78.233, 37.719])
    return torch.frac(torch.sin(dot).abs() * 43758.5453)


def _value_noise(x: Tensor) -> Tensor:
    """(N,) smooth value noise in [0, 1] at points (N, 3): trilinear interpolation of lattice hashes."""
    cell = torch.floor(x)
    f = x - cell
    f = f * f * (3 - 2 * f)  # smoothstep
    corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=x.dtype)
    vals = _hash3(cell[None] + corners[:, None, :])  # (8, N)
    w = torch.where(corners[:, None, :] > 0, f[None], 1 - f[None]).prod(-1)  # (8, N)
    return (w * vals).sum(0)


def _texture(points: Tensor, mat: Materials, prim: Tensor) -> Tensor:
    """(N, 3) albedo at world points (N, 3) of primitives prim (N,)."""
    kind, s = mat.kind[prim], mat.scale[prim][:, None]  # (N,), (N, 1)
    q = (points + mat.offset[prim]) / s  # (N, 3) in pattern periods
    along = (q * mat.direction[prim]).sum(-1)  # (N,)
    weights = torch.stack(
        [
            torch.zeros_like(along),  # plain
            torch.remainder(torch.floor(q).sum(-1), 2.0),  # checker (3D, so it tiles every surface)
            (torch.sin(2 * math.pi * along) > 0).to(q.dtype),  # stripes
            0.5 + 0.5 * torch.sin(2 * math.pi * along),  # smooth gradient
            _value_noise(q),  # noise
        ]
    )  # (5, N)
    w = weights.gather(0, kind[None]).squeeze(0)[:, None]
    return mat.colour_a[prim] + (mat.colour_b[prim] - mat.colour_a[prim]) * w


def render_scene(scene: Scene, intrinsics: Tensor, height: int, width: int) -> Render:
    """Ray-cast `scene` through a pinhole camera with `intrinsics` (3, 3) into an image of (height, width).

    Returns Render(image (3, H, W), depth (1, H, W) z-depth, valid (1, H, W), normals (3, H, W),
    primitive (1, H, W)); float32 on CPU.
    """
    if scene.cam_to_world.shape != (3, 3):
        raise ValueError(f"scene.cam_to_world: expected shape (3, 3), got {tuple(scene.cam_to_world.shape)}")
    if scene.cam_position.shape != (3,):
        raise ValueError(f"scene.cam_position: expected shape (3,), got {tuple(scene.cam_position.shape)}")
    rays = camera_rays(intrinsics, height, width) @ scene.cam_to_world.T.float()  # (N, 3) world, z-unit
    o = scene.cam_position.float()
    parts = []
    if len(scene.planes):
        parts.append(_intersect_planes(scene.planes.float(), o, rays))
    if len(scene.spheres):
        parts.append(_intersect_spheres(scene.spheres.float(), o, rays))
    if len(scene.box_centres):
        box = (scene.box_centres.float(), scene.box_half_sizes.float(), scene.box_rotations.float())
        parts.append(_intersect_boxes(*box, o, rays))
    if len(scene.cylinders):
        parts.append(_intersect_cylinders(scene.cylinders.float(), o, rays))
    n_pix = rays.shape[0]
    if not parts:
        parts.append((torch.full((1, n_pix), math.inf), torch.zeros(1, n_pix, 3)))
    t, prim = torch.cat([p[0] for p in parts]).min(0)  # (N,)
    normals = torch.cat([p[1] for p in parts]).gather(0, prim[None, :, None].expand(1, -1, 3))[0]
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    normals = torch.where(((normals * rays).sum(-1) > 0)[:, None], -normals, normals)  # face the camera
    valid = torch.isfinite(t)
    depth = torch.where(valid, t, torch.zeros_like(t))
    points = o + depth[:, None] * rays

    mat = scene.materials
    if mat is None:
        albedo = torch.full((n_pix, 3), 0.7)
    else:
        if len(mat.kind) != scene.num_primitives:
            raise ValueError(f"scene.materials: expected {scene.num_primitives} entries, got {len(mat.kind)}")
        albedo = _texture(points, mat, prim)
    lambert = (normals @ scene.light.float()).clamp(min=0)[:, None]  # (N, 1)
    image = albedo * (scene.ambient + (1 - scene.ambient) * lambert) * valid[:, None]
    prim = torch.where(valid, prim, torch.full_like(prim, -1))

    def chw(x: Tensor) -> Tensor:
        return x.reshape(height, width, -1).permute(2, 0, 1).contiguous()

    return Render(chw(image.clamp(0, 1)), chw(depth), chw(valid), chw(normals), chw(prim))


# ----------------------------------------------------------------------------------------------------------
# Random scenes


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _random_materials(g: torch.Generator, n: int) -> Materials:
    kind = torch.randint(1, len(TEXTURES), (n,), generator=g)
    lo = torch.tensor([_TEXTURE_SCALE[k][0] for k in TEXTURES])[kind]
    hi = torch.tensor([_TEXTURE_SCALE[k][1] for k in TEXTURES])[kind]
    scale = lo + (hi - lo) * torch.rand(n, generator=g)
    direction = torch.randn(n, 3, generator=g)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    colours = 0.1 + 0.85 * torch.rand(2, n, 3, generator=g)
    return Materials(kind, scale, colours[0], colours[1], direction, 10 * torch.rand(n, 3, generator=g))


def random_scene(
    generator: torch.Generator, hfov_deg: float = 60.0, num_objects: tuple[int, int] = (2, 6)
) -> Scene:
    """A random room (3-9 m wide and deep, 2.5-3.5 m high) with the camera inside at 1-2 m height (yaw any,
    heading towards the farthest corner +- 35 deg, pitch -30..10 deg,
    roll -10..10 deg) and `num_objects` (inclusive range) objects standing on the floor
    (spheres may float) in front of the camera, each at least 0.4 m (horizontally) from it."""
    g = generator
    wx, wz, h = _uniform(g, 3.0, 9.0, 2).tolist() + _uniform(g, 2.5, 3.5, 1).tolist()
    cx, cz = (_uniform(g, -0.5, 0.5, 2) * (torch.tensor([wx, wz]) - 1.0)).tolist()
    cy = _uniform(g, 1.0, min(2.0, h - 0.3), 1).item()
    # Look across the room: heading towards the farthest corner +- 35 deg.
    corner_x, corner_z = math.copysign(wx / 2, -cx), math.copysign(wz / 2, -cz)
    yaw, pitch, roll = _uniform(g, -1, 1, 3).tolist()
    yaw = math.atan2(corner_x - cx, corner_z - cz) + math.radians(35 * yaw)
    pitch, roll = math.radians(-10 + 20 * pitch), math.radians(10 * roll)  # pitch in [-30, 10] deg
    rot = look_rotation(yaw, pitch, roll)
    planes = torch.tensor(
        [
            [0, 1, 0, 0],
            [0, -1, 0, -h],
            [1, 0, 0, -wx / 2],
            [-1, 0, 0, -wx / 2],
            [0, 0, 1, -wz / 2],
            [0, 0, -1, -wz / 2],
        ],
        dtype=torch.float32,
    )

    n = int(torch.randint(num_objects[0], num_objects[1] + 1, (1,), generator=g))
    kind = torch.randint(0, 3, (n,), generator=g)  # 0 sphere, 1 box, 2 cylinder
    size = _uniform(g, 0.15, 0.7, n)
    aspect = _uniform(g, 0.5, 1.5, n, 2)
    half = torch.stack([size * aspect[:, 0], _uniform(g, 0.15, 0.9, n), size * aspect[:, 1]], -1)  # boxes
    cyl_height = torch.minimum(_uniform(g, 0.3, 2.0, n), torch.tensor(h - 0.1))
    floating = torch.rand(n, generator=g) < 0.3
    sphere_y = torch.where(floating, size + (h - 2 * size) * torch.rand(n, generator=g), size)
    box_yaw = torch.where(torch.rand(n, generator=g) < 0.5, 0.0, _uniform(g, 0.0, math.pi / 2, n))
    radius_xz = torch.where(kind == 1, half[:, [0, 2]].norm(dim=-1), size)  # horizontal bounding radius
    # Candidate positions in front of the camera; keep the first one inside the room, else drop the object.
    k = 16
    heading = math.atan2(rot[0, 2].item(), rot[2, 2].item())
    ang = heading + math.radians(hfov_deg / 2 + 10) * _uniform(g, -1, 1, n, k)
    dist = radius_xz[:, None] + 0.4 + _uniform(g, 0.0, 5.0, n, k)
    px, pz = cx + dist * torch.sin(ang), cz + dist * torch.cos(ang)  # (n, k)
    inside = (px.abs() <= wx / 2 - radius_xz[:, None]) & (pz.abs() <= wz / 2 - radius_xz[:, None])
    first = inside.to(torch.uint8).argmax(1)
    keep = inside.any(1)
    px, pz = px.gather(1, first[:, None])[:, 0], pz.gather(1, first[:, None])[:, 0]

    sph, box, cyl = keep & (kind == 0), keep & (kind == 1), keep & (kind == 2)
    spheres = torch.stack([px, sphere_y, pz, size], -1)[sph]
    box_centres = torch.stack([px, half[:, 1], pz], -1)[box]
    cb, sb = torch.cos(box_yaw[box]), torch.sin(box_yaw[box])
    zeros, ones = torch.zeros_like(cb), torch.ones_like(cb)
    box_rot = torch.stack([cb, zeros, -sb, zeros, ones, zeros, sb, zeros, cb], -1).reshape(-1, 3, 3)
    cylinders = torch.stack([px, pz, size, torch.zeros_like(px), cyl_height], -1)[cyl]

    n_prim = 6 + int(keep.sum())
    materials = _random_materials(g, n_prim)
    elev, azim = _uniform(g, math.radians(30), math.radians(85), 1), _uniform(g, -math.pi, math.pi, 1)
    light = torch.cat([elev.cos() * azim.sin(), elev.sin(), elev.cos() * azim.cos()])
    return Scene(
        cam_to_world=rot,
        cam_position=torch.tensor([cx, cy, cz]),
        planes=planes,
        spheres=spheres,
        box_centres=box_centres,
        box_half_sizes=half[box],
        box_rotations=box_rot,
        cylinders=cylinders,
        materials=materials,
        light=light,
        ambient=_uniform(g, 0.2, 0.45, 1).item(),
    )


# ----------------------------------------------------------------------------------------------------------
# Dataset


@READERS.register("synthetic_depth")
class SyntheticDepth(Dataset):
    """Procedural room scenes with metric depth, generated on the fly from (seed, split, index).

    Args:
        root: ignored (all readers share the call shape).
        split: any name; different splits give different scenes.
        num_samples: dataset length.
        image_size: (H, W).
        seed: base seed.
        uts_fraction, utss_fraction: fractions of samples of type "uts" / "utss_disparity" (module docstring).
        fov_range: horizontal field of view range in degrees, sampled uniformly.
        num_objects: inclusive range of the number of objects per room.
        uts_scale_range, utss_scale_range: log-uniform ranges of s and a; utss_shift_range: range of b / a.
    Samples: `image` (3, H, W), `depth` (1, H, W), `valid` (1, H, W), `depth_type`, `intrinsics` (3, 3),
    `name`. Each one is a pure function of (seed, split, index): reproducible and worker-safe.
    """

    NAME = "synthetic_depth"
    SCHEMA = "depth"

    def __init__(
        self,
        root: Any = None,
        split: str = "train",
        num_samples: int = 1000,
        image_size: Sequence[int] = (64, 64),
        seed: int = 0,
        uts_fraction: float = 0.0,
        utss_fraction: float = 0.0,
        fov_range: Sequence[float] = (40.0, 80.0),
        num_objects: Sequence[int] = (2, 6),
        uts_scale_range: Sequence[float] = (0.2, 5.0),
        utss_scale_range: Sequence[float] = (0.1, 10.0),
        utss_shift_range: Sequence[float] = (0.0, 0.5),
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive sizes, got {image_size}")
        if not (0 <= uts_fraction <= 1 and 0 <= utss_fraction <= 1 and uts_fraction + utss_fraction <= 1):
            raise ValueError(
                f"uts_fraction and utss_fraction must be in [0, 1] with sum <= 1, got {uts_fraction}, "
                f"{utss_fraction}"
            )
        if not 0 < fov_range[0] <= fov_range[1] < 180:
            raise ValueError(f"fov_range must satisfy 0 < lo <= hi < 180 degrees, got {fov_range}")
        if not 0 <= num_objects[0] <= num_objects[1]:
            raise ValueError(
                f"num_objects must be an inclusive range (lo, hi) with 0 <= lo <= hi, got {num_objects}"
            )
        self.split, self.num_samples, self.seed = split, int(num_samples), int(seed)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.fov_range = (float(fov_range[0]), float(fov_range[1]))
        self.num_objects = (int(num_objects[0]), int(num_objects[1]))
        self.uts_scale_range, self.utss_scale_range = tuple(uts_scale_range), tuple(utss_scale_range)
        self.utss_shift_range = tuple(utss_shift_range)
        self._split_id = zlib.crc32(split.encode())
        # Deterministic type assignment: a seeded permutation puts round(f * n) indices in each variant.
        n_uts, n_utss = round(uts_fraction * num_samples), round(utss_fraction * num_samples)
        g = torch.Generator().manual_seed(stable_seed(self.seed, self._split_id, 2**31))
        perm = torch.randperm(num_samples, generator=g)
        self._type_of = torch.zeros(num_samples, dtype=torch.uint8)  # 0 absolute, 1 uts, 2 utss
        self._type_of[perm[:n_uts]] = 1
        self._type_of[perm[n_uts : n_uts + n_utss]] = 2

    def __len__(self) -> int:
        return self.num_samples

    def _check_index(self, index: int) -> int:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"synthetic_depth: index {index} out of range for {self.num_samples} samples")
        return index % self.num_samples

    def _generator(self, index: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(stable_seed(self.seed, self._split_id, index, stream))

    def variant(self, index: int) -> DepthVariant:
        """The depth type of sample `index` and its scale / shift relative to the metric z-depth."""
        index = self._check_index(index)
        kind = int(self._type_of[index])
        if kind == 0:
            return DepthVariant("absolute", 1.0, 0.0)
        u = torch.rand(2, generator=self._generator(index, 1), dtype=torch.float64).tolist()
        lo, hi = self.uts_scale_range if kind == 1 else self.utss_scale_range
        scale = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u[0])
        if kind == 1:
            return DepthVariant("uts", scale, 0.0)
        b_lo, b_hi = self.utss_shift_range
        return DepthVariant("utss_disparity", scale, scale * (b_lo + (b_hi - b_lo) * u[1]))

    def scene(self, index: int) -> tuple[Scene, Tensor]:
        """The scene of sample `index` and its intrinsics (3, 3)."""
        index = self._check_index(index)
        g = self._generator(index, 0)
        fov = _uniform(g, *self.fov_range, 1).item()
        intrinsics = intrinsics_from_fov(fov, *self.image_size)[0].to(torch.float32)
        return random_scene(g, hfov_deg=fov, num_objects=self.num_objects), intrinsics

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        scene, intrinsics = self.scene(index)
        out = render_scene(scene, intrinsics, *self.image_size)
        var = self.variant(index)
        depth = out.depth
        if var.depth_type == "uts":
            depth = depth * var.scale
        elif var.depth_type == "utss_disparity":
            depth = torch.where(
                out.valid, var.scale / depth.clamp(min=1e-6) + var.shift, torch.zeros_like(depth)
            )
        return {
            "image": out.image,
            "depth": depth,
            "valid": out.valid,
            "depth_type": var.depth_type,
            "intrinsics": intrinsics,
            "name": f"synthetic_depth/{self.split}/{index:06d}",
        }

    def __repr__(self) -> str:
        return f"SyntheticDepth(split={self.split!r}, n={self.num_samples}, image_size={self.image_size})"
