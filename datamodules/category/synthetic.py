"""Embedded synthetic category for TTP: a deformable, textured bird-like template, rendered by `geometry`.

The default data of the TTP experiments, with the 3D ground truth that CUB lacks (true pose, true shape).

Template frame (model space): +x the bird's right, +y down, +z forward (the beak); the left-right
symmetry plane is x = 0, the plane that a horizontal image flip mirrors (CMR's mirroring conjugates the
rotation with diag(-1, 1, 1): akanazawa/cmr data/base.py `mirror_image`). With the identity rotation the
`geometry.WeakPerspectiveCameras` frame `X @ R` is x right, y down, z into the image, so the bird stands
upright and is seen from behind. The template is an icosphere (`geometry.ico_sphere`, level 3 by default)
mapped through a smooth x-equivariant field f (f(Mp) = M f(p), M = diag(-1, 1, 1)): an ellipsoidal body
plus Gaussian bumps for head, beak, tail, wings and feet. Because the icosphere's vertex set is itself
mirror symmetric, the template has an exact vertex flip permutation (`vertex_flip`, vertex i <-> its mirror).

Ground truth per instance: verts = template + sum_k c_k B_k with a fixed basis `true_basis` (K, V, 3) of
`num_basis` <= 6 smooth symmetric fields (elongation, girth, neck, wing spread, tail raise / fan, legs),
each scaled so that its largest vertex displacement is 1 (so c_k is the largest displacement it causes, in
template units; the template is about 2.3 long), and coefficients c_k ~ N(0, deformation_std^2) clipped at
2.5 std.
Every component, and hence every instance, is symmetric: B[:, vertex_flip] * M = B.

Keypoints: 14 template vertices (`KEYPOINT_NAMES`: midline beak, crown, nape, throat, breast, belly,
back, tail, and left / right eyes, wings and feet), projected with the true camera, as 0-based pixels
(x = column, y = row, pixel centres at integers), with visibility from the z-buffer
(`geometry.vertex_visibility`, method "depth": the nearest pixel is covered and the vertex is no deeper
than the surface there + `visibility_eps` template units). `KEYPOINT_FLIP[k]` is the keypoint that k
becomes in the mirrored image (left <-> right, midline fixed), derived from `vertex_flip`.

Rendering: weak-perspective camera (scale s, rotation R = (Rz(roll) Rx(elevation) Ry(azimuth))^T in the
row-vector convention, translation t in normalized image coordinates), `geometry.rasterize_meshes` (hard,
one face per pixel), symmetric per-vertex albedo (body, belly, head cap, beak, eyes, striped wings) with
Gouraud Lambertian shading from a random light on the camera side, over a plain or smooth-noise background.
Elevation > 0 looks from above. A sample is a pure function of (seed, split, index).
"""

from __future__ import annotations

import functools
import json
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.registry import READERS
from datamodules.seeding import stable_seed
from geometry.cameras import WeakPerspectiveCameras, image_coords_to_ndc, ndc_to_pixel
from geometry.mesh import ico_sphere, vertex_normals
from geometry.mesh_io import save_obj
from geometry.mesh_raster import rasterize_meshes
from geometry.mesh_shading import (
    face_attributes_from_verts,
    hard_rgb_blend,
    interpolate_face_attributes,
    vertex_visibility,
)

__all__ = [
    "BASIS_NAMES",
    "KEYPOINT_NAMES",
    "BirdTemplate",
    "SyntheticCategory",
    "bird_template",
    "mirror_vertex_permutation",
    "pose_rotation",
    "save_template",
]

KEYPOINT_NAMES = (
    "beak",
    "crown",
    "nape",
    "throat",
    "breast",
    "belly",
    "back",
    "tail",
    "left_eye",
    "right_eye",
    "left_wing",
    "right_wing",
    "left_foot",
    "right_foot",
)
BASIS_NAMES = ("elongation", "girth", "neck", "wing_spread", "tail", "legs")
SPLITS = ("train", "val", "test")
BACKGROUNDS = ("plain", "noise")
_MIRROR = (-1.0, 1.0, 1.0)


def _unit(*xyz: float) -> tuple[float, float, float]:
    n = math.sqrt(sum(c * c for c in xyz))
    return (xyz[0] / n, xyz[1] / n, xyz[2] / n)


# Part bumps on the unit sphere: centre direction c (right-side parts; left ones mirrored), displacement d,
# width sigma (sphere units). Right side is +x.
_HEAD = (_unit(0.0, -0.55, 0.83), (0.0, -0.30, 0.28), 0.28)
_BEAK = (_unit(0.0, -0.30, 0.95), (0.0, 0.02, 0.32), 0.12)
_TAIL = (_unit(0.0, -0.15, -0.99), (0.0, -0.12, -0.45), 0.22)
_WING = (_unit(0.95, -0.25, -0.15), (0.22, -0.08, -0.22), 0.30)
_FOOT = (_unit(0.35, 0.93, 0.10), (0.0, 0.32, 0.02), 0.10)
_EYE = (_unit(0.50, -0.62, 0.60), (0.0, 0.0, 0.0), 0.07)
_BODY = (0.40, 0.36, 0.70)  # ellipsoid semi-axes x, y, z


def _bump(p: Tensor, centre: Sequence[float], sigma: float) -> Tensor:
    """(V,) Gaussian weight exp(-|p - c|^2 / (2 sigma^2)) of unit-sphere points p (V, 3)."""
    return torch.exp(-((p - p.new_tensor(centre)) ** 2).sum(-1) / (2.0 * sigma * sigma))


def _mirror(v: Sequence[float]) -> tuple[float, float, float]:
    return (-v[0], v[1], v[2])


def _pair_bump(p: Tensor, centre: Sequence[float], sigma: float) -> tuple[Tensor, Tensor]:
    """(right, left) weights of a mirrored pair of bumps."""
    return _bump(p, centre, sigma), _bump(p, _mirror(centre), sigma)


def _bird_field(p: Tensor) -> Tensor:
    """Template verts (V, 3) from unit-sphere points p (V, 3); x-equivariant (f(Mp) = M f(p))."""
    v = p * p.new_tensor(_BODY)
    for centre, disp, sigma in (_HEAD, _BEAK, _TAIL):
        v = v + _bump(p, centre, sigma)[:, None] * p.new_tensor(disp)
    for centre, disp, sigma in (_WING, _FOOT):
        right, left = _pair_bump(p, centre, sigma)
        v = v + right[:, None] * p.new_tensor(disp) + left[:, None] * p.new_tensor(_mirror(disp))
    return v


def mirror_vertex_permutation(verts: Tensor, atol: float = 1e-5) -> Tensor:
    """The permutation (V,) long mapping vertex i to the vertex at its mirror image (-x, y, z).

    Args:
        verts: (V, 3) vertices of a mesh symmetric about the plane x = 0.
        atol: largest allowed distance between a mirrored vertex and its match.
    Raises:
        ValueError when some vertex has no mirror within atol, or the match is not a permutation.
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"Expected verts to be of shape (V, 3), got {tuple(verts.shape)}")
    mirrored = verts * verts.new_tensor(_MIRROR)
    d, idx = torch.cdist(mirrored.double(), verts.double()).min(dim=1)
    if float(d.max()) > atol:
        raise ValueError(f"verts: not symmetric about x = 0 (a mirrored vertex is {float(d.max()):.2e} away)")
    if len(torch.unique(idx)) != len(idx):
        raise ValueError("verts: the mirror matching is not a permutation (duplicate vertices?)")
    return idx


def _basis(p: Tensor, t: Tensor) -> Tensor:
    """(6, V, 3) symmetric deformation fields of template t (V, 3) on sphere points p (V, 3), each with a
    largest vertex displacement of 1."""
    x, y, z = t.unbind(-1)
    zero = torch.zeros_like(x)
    head = _bump(p, _HEAD[0], 0.35)
    wing_r, wing_l = _pair_bump(p, _WING[0], 0.35)
    tail = _bump(p, _TAIL[0], 0.30)
    foot_r, foot_l = _pair_bump(p, _FOOT[0], 0.18)
    body = torch.exp(-(z**2) / 0.5)
    fields = [
        torch.stack([zero, zero, z], -1),  # elongation along the body axis
        torch.stack([x, y, zero], -1) * body[:, None],  # girth
        head[:, None] * t.new_tensor([0.0, -0.8, 0.6]),  # neck: head up and forward
        wing_r[:, None] * t.new_tensor([1.0, -0.5, 0.0]) + wing_l[:, None] * t.new_tensor([-1.0, -0.5, 0.0]),
        tail[:, None] * torch.stack([2.0 * x, -torch.ones_like(x), zero], -1),  # tail raise and fan
        (foot_r + foot_l)[:, None] * t.new_tensor([0.0, 1.0, 0.0]),  # leg length
    ]
    b = torch.stack(fields)  # (6, V, 3)
    return b / b.norm(dim=-1).amax(-1)[:, None, None]


class BirdTemplate(NamedTuple):
    """The synthetic category's template (see the module docstring).

    verts (V, 3) float32; faces (F, 3) long; vertex_flip (V,) long mirror permutation; keypoint_vertices (K,)
    long; keypoint_flip (K,) long; basis (6, V, 3) float32 symmetric deformation fields; sphere (V, 3) the
    icosphere points the template was made from (the parametrization of textures and bumps).
    """

    verts: Tensor
    faces: Tensor
    vertex_flip: Tensor
    keypoint_vertices: Tensor
    keypoint_flip: Tensor
    basis: Tensor
    sphere: Tensor


def _argmax_over(score: Tensor, allowed: Tensor) -> int:
    return int(torch.where(allowed, score, torch.full_like(score, -math.inf)).argmax())


def _keypoint_vertices(p: Tensor, t: Tensor, flip: Tensor) -> Tensor:
    """(14,) template vertex of each of KEYPOINT_NAMES; midline ones are their own mirror."""
    idx = torch.arange(len(p))
    midline = flip == idx
    right = p[:, 0] > 1e-6

    def towards(*d: float) -> Tensor:
        return p @ p.new_tensor(_unit(*d))

    kp = {
        "beak": _argmax_over(t[:, 2], midline),
        "crown": _argmax_over(towards(0.0, -0.8, 0.6), midline),
        "nape": _argmax_over(towards(0.0, -1.0, 0.15), midline),
        "throat": _argmax_over(towards(0.0, 0.1, 1.0), midline),
        "breast": _argmax_over(towards(0.0, 0.6, 0.8), midline),
        "belly": _argmax_over(towards(0.0, 0.95, -0.3), midline),
        "back": _argmax_over(towards(0.0, -1.0, -0.5), midline),
        "tail": _argmax_over(-t[:, 2], midline),
        "right_eye": _argmax_over(towards(*_EYE[0]), right),
        "right_wing": _argmax_over(towards(*_WING[0]), right),
        "right_foot": _argmax_over(t[:, 1], right),
    }
    for part in ("eye", "wing", "foot"):
        kp[f"left_{part}"] = int(flip[kp[f"right_{part}"]])
    out = torch.tensor([kp[name] for name in KEYPOINT_NAMES])
    if len(torch.unique(out)) != len(out):
        raise RuntimeError(f"bird template: keypoints share vertices {out.tolist()}")
    return out


@functools.lru_cache(maxsize=4)
def _cached_template(level: int) -> BirdTemplate:
    sphere = ico_sphere(level)
    p, faces = sphere.verts.to(torch.float64), sphere.faces
    t = _bird_field(p)
    flip = mirror_vertex_permutation(t)
    kv = _keypoint_vertices(p, t, flip)
    where = {int(v): k for k, v in enumerate(kv)}
    kflip = torch.tensor([where[int(flip[v])] for v in kv])
    basis = _basis(p, t)
    return BirdTemplate(t.float(), faces, flip, kv, kflip, basis.float(), p.float())


def bird_template(level: int = 3) -> BirdTemplate:
    """The synthetic bird template built from `ico_sphere(level)` (a fresh copy; level >= 2).

    Level 2: 162 verts, 320 faces; level 3: 642 verts, 1280 faces.
    """
    if not isinstance(level, int) or level < 2:
        raise ValueError(f"level: expected an int >= 2 (ico_sphere level), got {level!r}")
    return BirdTemplate(*(x.clone() for x in _cached_template(level)))


def save_template(path: str | os.PathLike, level: int = 3, overwrite: bool = False) -> Path:
    """Write the template to `path` (.obj, `geometry.save_obj`) and its keypoints beside it (.json).

    The .json (same stem) holds `keypoint_names`, `keypoint_vertices` (0-based vertex indices),
    `keypoint_flip` and `vertex_flip`; `geometry.load_obj(path)` reads the mesh back.

    Returns:
        the .obj path.
    """
    path = Path(path)
    if path.suffix != ".obj":
        raise ValueError(f"path: expected a file name ending in .obj, got {str(path)!r}")
    meta_path = path.with_suffix(".json")
    if meta_path.exists() and not overwrite:
        raise FileExistsError(f"{meta_path} already exists; pass overwrite=True to replace it")
    tpl = bird_template(level)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_obj(path, tpl.verts, tpl.faces, overwrite=overwrite)
    meta = {
        "keypoint_names": list(KEYPOINT_NAMES),
        "keypoint_vertices": tpl.keypoint_vertices.tolist(),
        "keypoint_flip": tpl.keypoint_flip.tolist(),
        "vertex_flip": tpl.vertex_flip.tolist(),
        "ico_sphere_level": level,
    }
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return path


def pose_rotation(azimuth: Tensor, elevation: Tensor, roll: Tensor) -> Tensor:
    """Row-vector rotation (B, 3, 3) of `WeakPerspectiveCameras`: R = (Rz(roll) Rx(elevation) Ry(azimuth))^T,
    each factor a right-handed rotation about that model / view axis (as `geometry.axis_angle_to_matrix`).

    Args:
        azimuth, elevation, roll: (B,) radians; azimuth turns the bird about its vertical (y) axis,
            elevation > 0 looks from above, roll turns the image about the optical axis.
    """
    for name, a in (("azimuth", azimuth), ("elevation", elevation), ("roll", roll)):
        if not torch.is_tensor(a) or a.dim() != 1 or a.shape != azimuth.shape:
            shape = tuple(a.shape) if torch.is_tensor(a) else type(a).__name__
            raise ValueError(f"Expected {name} to be of shape (B,) like azimuth, got {shape}")
    one, zero = torch.ones_like(azimuth), torch.zeros_like(azimuth)

    def mat(*rows: Tensor) -> Tensor:
        return torch.stack(rows, -1).view(-1, 3, 3)

    ca, sa, ce, se, cr, sr = (f(a) for a in (azimuth, elevation, roll) for f in (torch.cos, torch.sin))
    ry = mat(ca, zero, sa, zero, one, zero, -sa, zero, ca)
    rx = mat(one, zero, zero, zero, ce, -se, zero, se, ce)
    rz = mat(cr, -sr, zero, sr, cr, zero, zero, zero, one)
    return (rz @ rx @ ry).transpose(1, 2)


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _albedo_weights(p: Tensor) -> Tensor:
    """(6, V) mirror-invariant texture weights of sphere points p (V, 3) (functions of |x|, y, z only):
    belly, head cap, wings, beak, eyes, and the coordinate z along which the wing stripes run."""
    q = torch.stack([p[:, 0].abs(), p[:, 1], p[:, 2]], -1)
    return torch.stack(
        [
            torch.sigmoid((q[:, 1] - 0.2) / 0.12),
            _bump(q, _HEAD[0], 0.25),
            _bump(q, _WING[0], 0.38),
            _bump(q, _BEAK[0], 0.09),
            (_bump(q, _EYE[0], _EYE[2]) > 0.5).to(p.dtype),
            q[:, 2],
        ]
    )


def _albedo(g: torch.Generator, weights: Tensor) -> Tensor:
    """(V, 3) symmetric per-vertex colours: random part colours mixed by `_albedo_weights` (6, V)."""
    w_belly, w_head, w_wing, w_beak, w_eye, z = weights[:, :, None]  # (V, 1) each
    body, belly, head, wing, stripe = torch.rand(5, 3, generator=g)
    beak = torch.tensor([0.85, 0.6, 0.1]) + 0.15 * (torch.rand(3, generator=g) - 0.5)
    freq, phase = _uniform(g, 4.0, 12.0, 1), _uniform(g, 0.0, 2 * math.pi, 1)
    c = body + (belly - body) * w_belly
    c = c + (head - c) * w_head
    wing_c = wing + (stripe - wing) * (0.5 + 0.5 * torch.sin(freq * z + phase))
    c = c + (wing_c - c) * w_wing
    c = c + (beak - c) * w_beak
    return c * (1 - w_eye) + 0.05 * w_eye


@READERS.register("synthetic_category")
class SyntheticCategory(Dataset):
    """Synthetic deformable bird category with 3D ground truth, generated on the fly (module docstring).

    Args:
        root: ignored (all readers share the call shape).
        split: "train", "val" or "test"; each split has its own seeds, so its own instances.
        num_samples: dataset length.
        image_size: S (or (S, S)): square images of S x S (the datamodule's crop resizes them).
        seed: base seed.
        level: ico_sphere level of the template (2: 162 verts, 3: 642 verts).
        num_basis: number of true deformation components used (1..6, `BASIS_NAMES` order).
        deformation_std: std of the true coefficients (each component moves its vertices by at most |c_k|
            template units).
        azimuth_range, elevation_range, roll_range: pose ranges in degrees (uniform).
        scale_range: weak-perspective scale s (uniform); the template is about 2.3 units long (z).
        translation_range: t uniform in [-r, r]^2 (normalized image coordinates).
        background: "plain" (a random colour) or "noise" (a random colour plus smooth colour variation and
            pixel noise).
        visibility_eps: depth tolerance of keypoint visibility, template units.
    Attributes (the same for every sample, so that a model can use the same template):
        template_verts (V, 3), template_faces (F, 3), vertex_flip (V,), keypoint_vertices (K,),
        KEYPOINT_FLIP (list of K ints), keypoint_names, true_basis (num_basis, V, 3).
    Samples: `image` (3, S, S) in [0, 1]; `mask` (1, S, S) float 0 / 1; `keypoints` (K, 3) 0-based pixel
    x, y and visibility 0 / 1; `bbox` (4,) x1, y1, x2, y2 of the mask (inclusive 0-based pixels); `name`;
    the truth: `true_rotation` (3, 3) row-vector R, `true_scale` (1,), `true_translation` (2,) of the
    `WeakPerspectiveCameras` whose `project` gives normalized image coordinates; `true_coeffs`
    (num_basis,); `true_verts` (V, 3) = template + sum_k c_k B_k in the template frame.
    """

    NAME = "synthetic_category"
    SCHEMA = "category"

    def __init__(
        self,
        root: Any = None,
        split: str = "train",
        num_samples: int = 1000,
        image_size: int | Sequence[int] = 64,
        seed: int = 0,
        level: int = 3,
        num_basis: int = 6,
        deformation_std: float = 0.1,
        azimuth_range: Sequence[float] = (-180.0, 180.0),
        elevation_range: Sequence[float] = (-10.0, 30.0),
        roll_range: Sequence[float] = (-15.0, 15.0),
        scale_range: Sequence[float] = (0.5, 0.7),
        translation_range: float = 0.15,
        background: str = "noise",
        visibility_eps: float = 0.05,
    ):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {', '.join(map(repr, SPLITS))}, got {split!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or size[0] != size[1] or int(size[0]) < 8:
            raise ValueError(f"image_size: expected an int S >= 8 or a square (S, S), got {image_size!r}")
        if not 1 <= num_basis <= len(BASIS_NAMES):
            raise ValueError(f"num_basis: expected 1..{len(BASIS_NAMES)}, got {num_basis}")
        if deformation_std < 0:
            raise ValueError(f"deformation_std: expected >= 0, got {deformation_std}")
        for name, r in (
            ("azimuth_range", azimuth_range),
            ("elevation_range", elevation_range),
            ("roll_range", roll_range),
            ("scale_range", scale_range),
        ):
            if len(r) != 2 or not r[0] <= r[1]:
                raise ValueError(f"{name}: expected (lo, hi) with lo <= hi, got {r!r}")
        if scale_range[0] <= 0:
            raise ValueError(f"scale_range: expected positive scales, got {scale_range!r}")
        if translation_range < 0:
            raise ValueError(f"translation_range: expected >= 0, got {translation_range}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background: expected one of {BACKGROUNDS}, got {background!r}")
        self.split, self.num_samples, self.seed = split, int(num_samples), int(seed)
        self.image_size = int(size[0])
        self.num_basis, self.deformation_std = int(num_basis), float(deformation_std)
        self.azimuth_range, self.elevation_range = tuple(azimuth_range), tuple(elevation_range)
        self.roll_range, self.scale_range = tuple(roll_range), tuple(scale_range)
        self.translation_range, self.background = float(translation_range), background
        self.visibility_eps = float(visibility_eps)
        self._split_id = zlib.crc32(split.encode())
        tpl = bird_template(level)
        self.level = level
        self.template_verts, self.template_faces = tpl.verts, tpl.faces
        self.vertex_flip, self.keypoint_vertices = tpl.vertex_flip, tpl.keypoint_vertices
        self.KEYPOINT_FLIP = tpl.keypoint_flip.tolist()
        self.keypoint_names = KEYPOINT_NAMES
        self.true_basis = tpl.basis[: self.num_basis].contiguous()
        self._basis_flat = self.true_basis.view(self.num_basis, -1)  # (K, V * 3)
        self._texture_weights = _albedo_weights(tpl.sphere)  # (6, V)
        # (S, 5) bilinear upsampling matrix (align_corners=False) of the smooth background
        eye = torch.eye(5)[:, None, :, None]  # (5, 1, 5, 1): one unit impulse per coarse cell
        self._upsample = F.interpolate(eye, size=(self.image_size, 1), mode="bilinear", align_corners=False)
        self._upsample = self._upsample[:, 0, :, 0].T.contiguous()

    def __len__(self) -> int:
        return self.num_samples

    def _check_index(self, index: int) -> int:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"synthetic_category: index {index} out of range for {self.num_samples} samples")
        return index % self.num_samples

    def generator(self, index: int) -> torch.Generator:
        """The seeded generator of sample `index` (a pure function of seed, split and index)."""
        return torch.Generator().manual_seed(stable_seed(self.seed, self._split_id, index))

    def _draw_pose(self, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        deg = [_uniform(g, *r, 1) for r in (self.azimuth_range, self.elevation_range, self.roll_range)]
        rot = pose_rotation(*(torch.deg2rad(d) for d in deg))[0]
        scale = _uniform(g, *self.scale_range, 1)
        trans = _uniform(g, -self.translation_range, self.translation_range, 2)
        return rot, scale, trans

    def _background(self, g: torch.Generator) -> Tensor:
        s = self.image_size
        if self.background == "plain":
            return torch.rand(3, 1, 1, generator=g).expand(3, s, s)
        base, coarse = torch.rand(3, 1, 1, generator=g), torch.rand(3, 5, 5, generator=g) - 0.5
        smooth = self._upsample @ coarse @ self._upsample.T  # (3, S, S): bilinear 5 x 5 -> S x S
        return (base + 0.6 * smooth + 0.04 * torch.randn(3, s, s, generator=g)).clamp(0, 1)

    @torch.no_grad()
    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        g = self.generator(index)
        s = self.image_size
        rot, scale, trans = self._draw_pose(g)
        coeffs = (torch.randn(self.num_basis, generator=g) * self.deformation_std).clamp(
            -2.5 * self.deformation_std, 2.5 * self.deformation_std
        )
        verts = self.template_verts + (coeffs @ self._basis_flat).view(-1, 3)  # (V, 3) = T + sum c_k B_k
        albedo = _albedo(g, self._texture_weights)  # (V, 3)
        light = F.normalize(torch.cat([_uniform(g, -0.8, 0.8, 2), torch.tensor([-1.0])]), dim=0)
        ambient = _uniform(g, 0.45, 0.7, 1)
        background = self._background(g)

        cam = WeakPerspectiveCameras(scale[None], rot[None], trans[None])
        verts_ndc = cam.transform_points_rasterizer(verts[None], s)  # (1, V, 3)
        frags = rasterize_meshes(verts_ndc, self.template_faces, s, faces_per_pixel=1)
        normals_view = vertex_normals(verts, self.template_faces) @ rot  # (V, 3) in the X @ R frame
        lambert = (normals_view @ light).clamp(min=0)  # (V,)
        colors = albedo * (ambient + (1 - ambient) * lambert)[:, None]
        attrs = face_attributes_from_verts(colors[None], self.template_faces)
        texels = interpolate_face_attributes(frags.pix_to_face, frags.bary_coords, attrs)  # (1, S, S, 1, 3)
        rgba = hard_rgb_blend(texels, frags, background_color=(0.0, 0.0, 0.0))[0]  # (S, S, 4)
        mask = rgba[..., 3][None]  # (1, S, S)
        image = rgba[..., :3].permute(2, 0, 1) * mask + background * (1 - mask)

        kv = self.keypoint_vertices
        uv = ndc_to_pixel(image_coords_to_ndc(cam.project(verts[kv][None])[0], s), s)  # (K, 2)
        vis = vertex_visibility(
            verts_ndc, self.template_faces, frags, eps=self.visibility_eps, method="depth"
        )
        keypoints = torch.cat([uv, vis[0, kv, None].float()], dim=-1)
        return {
            "image": image.clamp(0, 1).contiguous(),
            "mask": mask.contiguous(),
            "keypoints": keypoints,
            "bbox": _mask_bbox(mask[0]),
            "name": f"synthetic_category/{self.split}/{index:06d}",
            "true_rotation": rot,
            "true_scale": scale,
            "true_translation": trans,
            "true_coeffs": coeffs,
            "true_verts": verts,
        }

    def __repr__(self) -> str:
        return (
            f"SyntheticCategory(split={self.split!r}, n={self.num_samples}, image_size={self.image_size}, "
            f"level={self.level}, num_basis={self.num_basis})"
        )


def _mask_bbox(mask: Tensor) -> Tensor:
    """(4,) float x1, y1, x2, y2: the inclusive 0-based pixel bounds of mask (H, W) > 0.5; the whole image
    when the mask is empty."""
    h, w = mask.shape
    rows, cols = (mask > 0.5).any(1).nonzero()[:, 0], (mask > 0.5).any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return torch.tensor([0.0, 0.0, w - 1.0, h - 1.0])
    return torch.tensor([cols[0], rows[0], cols[-1], rows[-1]], dtype=torch.float32)
