"""Triangle-mesh construction and operations on padded tensors, with PyTorch3D's names and semantics.

Meshes are `verts (B, V, 3)` (or `(V, 3)` for one mesh) and `faces (F, 3)` shared by the batch or `(B, F, 3)`
per mesh. A heterogeneous batch is padded: `verts_lengths (B,)` gives the number of real vertices of each mesh
(rows beyond it are ignored) and padded face rows hold -1 (PyTorch3D's `faces_padded` convention); build one
from lists with `padded_from_lists`. Internally the batch is "packed" like PyTorch3D's `Meshes.*_packed()`:
mesh b's vertex v has packed index `b * V + v`.

Conventions follow PyTorch3D (facebookresearch/pytorch3d): face normal = (v1 - v0) x (v2 - v0)
(`structures/meshes.py::_compute_face_areas_normals`), unique edges as sorted vertex pairs in the order of
`Meshes._compute_edges_packed`, midpoint subdivision as `ops/subdivide_meshes.py::SubdivideMeshes`,
Laplacians as `ops/laplacian_matrices.py`.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
from torch import Tensor

# Level-0 icosahedron of PyTorch3D `utils/ico_sphere.py` (4-decimal coordinates, not renormalized at level 0);
# the vertex and face order decide the order of every subdivided level.
_ICO_VERTS0 = (
    (-0.5257, 0.8507, 0.0000),
    (0.5257, 0.8507, 0.0000),
    (-0.5257, -0.8507, 0.0000),
    (0.5257, -0.8507, 0.0000),
    (0.0000, -0.5257, 0.8507),
    (0.0000, 0.5257, 0.8507),
    (0.0000, -0.5257, -0.8507),
    (0.0000, 0.5257, -0.8507),
    (0.8507, 0.0000, -0.5257),
    (0.8507, 0.0000, 0.5257),
    (-0.8507, 0.0000, -0.5257),
    (-0.8507, 0.0000, 0.5257),
)
_ICO_FACES0 = (
    (0, 11, 5),
    (0, 5, 1),
    (0, 1, 7),
    (0, 7, 10),
    (0, 10, 11),
    (1, 5, 9),
    (5, 11, 4),
    (11, 10, 2),
    (10, 7, 6),
    (7, 1, 8),
    (3, 9, 4),
    (3, 4, 2),
    (3, 2, 6),
    (3, 6, 8),
    (3, 8, 9),
    (4, 9, 5),
    (2, 4, 11),
    (6, 2, 10),
    (8, 6, 7),
    (9, 8, 1),
)

# Clamp of the cross-product norm before normalizing a face normal (PyTorch3D face_areas_normals_cpu.cpp).
_NORMAL_EPS = 1e-6


class Mesh(NamedTuple):
    """verts (V, 3) or (B, V, 3), faces (F, 3)."""

    verts: Tensor
    faces: Tensor


class PaddedMeshes(NamedTuple):
    """verts (B, V, 3) zero padded, faces (B, F, 3) padded with -1, verts_lengths (B,), faces_lengths (B,)."""

    verts: Tensor
    faces: Tensor
    verts_lengths: Tensor
    faces_lengths: Tensor


class EdgeTopology(NamedTuple):
    """edges (E, 2) sorted pairs (a < b), lexicographic; faces_to_edges (F, 3): edge opposite v0, v1, v2."""

    edges: Tensor
    faces_to_edges: Tensor


class CotLaplacian(NamedTuple):
    """L sparse (V, V) with L[i, j] = cot(alpha_ij) + cot(beta_ij); inv_areas (V, 1)."""

    L: Tensor
    inv_areas: Tensor


class PackedMeshes(NamedTuple):
    """A batch flattened like PyTorch3D's packed representation (padded vertices kept but masked out).

    verts (B*V, 3); faces (F', 3) valid faces with packed vertex indices; face_to_mesh (F',);
    vert_mask (B*V,) True for real vertices; verts_per_mesh (B,); num_meshes B; max_verts V.
    """

    verts: Tensor
    faces: Tensor
    face_to_mesh: Tensor
    vert_mask: Tensor
    verts_per_mesh: Tensor
    num_meshes: int
    max_verts: int


# ----------------------------------------------------------------------------------------------- checks


def _check_verts(verts: Tensor, name: str = "verts") -> Tensor:
    """(V, 3) -> (1, V, 3); (B, V, 3) unchanged."""
    if not isinstance(verts, Tensor) or verts.dim() not in (2, 3) or verts.shape[-1] != 3:
        shape = tuple(verts.shape) if isinstance(verts, Tensor) else type(verts).__name__
        raise ValueError(f"{name} must have shape (V, 3) or (B, V, 3), got {shape}")
    if not verts.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got {verts.dtype}")
    return verts[None] if verts.dim() == 2 else verts


def _check_faces(faces: Tensor, batch: int, name: str = "faces") -> Tensor:
    """(F, 3) -> (B, F, 3) expanded; (B, F, 3) checked against the batch size."""
    if not isinstance(faces, Tensor) or faces.dim() not in (2, 3) or faces.shape[-1] != 3:
        shape = tuple(faces.shape) if isinstance(faces, Tensor) else type(faces).__name__
        raise ValueError(f"{name} must have shape (F, 3) or (B, F, 3), got {shape}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an int64 or int32 tensor, got {faces.dtype}")
    if faces.dim() == 2:
        return faces.long()[None].expand(batch, -1, -1)
    if faces.shape[0] != batch:
        raise ValueError(
            f"{name} of shape (B, F, 3) must have B={batch} like verts, got {tuple(faces.shape)}"
        )
    return faces.long()


def _check_faces_2d(faces: Tensor, name: str = "faces") -> Tensor:
    if not isinstance(faces, Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        shape = tuple(faces.shape) if isinstance(faces, Tensor) else type(faces).__name__
        raise ValueError(f"{name} must have shape (F, 3), got {shape}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an int64 or int32 tensor, got {faces.dtype}")
    return faces.long()


def pack_meshes(verts: Tensor, faces: Tensor, verts_lengths: Tensor | None = None) -> PackedMeshes:
    """Flatten a padded batch. verts (V, 3) or (B, V, 3); faces (F, 3) or (B, F, 3) (-1 rows = padding);
    verts_lengths (B,) or None (all V vertices are real)."""
    verts = _check_verts(verts)
    B, V, _ = verts.shape
    faces = _check_faces(faces, B)
    if verts_lengths is None:
        verts_lengths = torch.full((B,), V, dtype=torch.int64, device=verts.device)
    else:
        verts_lengths = torch.as_tensor(verts_lengths, device=verts.device).long()
        if verts_lengths.shape != (B,):
            raise ValueError(f"verts_lengths must have shape ({B},), got {tuple(verts_lengths.shape)}")
    valid = (faces >= 0).all(-1)  # (B, F)
    if bool(((faces >= V) & valid[..., None]).any()) or bool(
        ((faces < 0) & ~(faces < 0).all(-1, True)).any()
    ):
        raise ValueError(f"faces index out of range for V={V} (padding rows must be all -1)")
    offsets = torch.arange(B, device=verts.device)[:, None, None] * V
    faces_packed = (faces + offsets)[valid]  # (F', 3)
    face_to_mesh = torch.arange(B, device=verts.device)[:, None].expand(B, faces.shape[1])[valid]
    vert_mask = (torch.arange(V, device=verts.device)[None] < verts_lengths[:, None]).reshape(-1)
    return PackedMeshes(verts.reshape(B * V, 3), faces_packed, face_to_mesh, vert_mask, verts_lengths, B, V)


def padded_from_lists(verts_list: list[Tensor], faces_list: list[Tensor]) -> PaddedMeshes:
    """Pad a list of meshes (verts_i (V_i, 3), faces_i (F_i, 3)) to verts (B, V, 3) and faces (B, F, 3)."""
    if len(verts_list) != len(faces_list) or len(verts_list) == 0:
        raise ValueError("verts_list and faces_list must be non-empty and of equal length")
    for i, (v, f) in enumerate(zip(verts_list, faces_list)):
        if v.dim() != 2 or v.shape[1] != 3:
            raise ValueError(f"verts_list[{i}] must have shape (V, 3), got {tuple(v.shape)}")
        if f.dim() != 2 or f.shape[1] != 3:
            raise ValueError(f"faces_list[{i}] must have shape (F, 3), got {tuple(f.shape)}")
    B = len(verts_list)
    V = max(v.shape[0] for v in verts_list)
    F = max(f.shape[0] for f in faces_list)
    ref = verts_list[0]
    verts = ref.new_zeros(B, V, 3)
    faces = torch.full((B, F, 3), -1, dtype=torch.int64, device=ref.device)
    for i, (v, f) in enumerate(zip(verts_list, faces_list)):
        verts[i, : v.shape[0]] = v
        faces[i, : f.shape[0]] = f
    vl = torch.tensor([v.shape[0] for v in verts_list], device=ref.device)
    fl = torch.tensor([f.shape[0] for f in faces_list], device=ref.device)
    return PaddedMeshes(verts, faces, vl, fl)


# ----------------------------------------------------------------------------------------------- topology


def edge_topology(faces: Tensor, num_verts: int | None = None) -> EdgeTopology:
    """Unique edges and the face-to-edge map of faces (F, 3), as PyTorch3D `Meshes._compute_edges_packed`.

    Edges are sorted pairs (a < b) in lexicographic order (E, 2); faces_to_edges (F, 3) holds for each face
    the edges (v1, v2), (v2, v0), (v0, v1), i.e. the edge opposite each corner.
    """
    faces = _check_faces_2d(faces)
    F = faces.shape[0]
    if num_verts is None:
        num_verts = int(faces.max()) + 1 if F > 0 else 0
    v0, v1, v2 = faces.unbind(1)
    e = torch.cat([torch.stack([v1, v2], 1), torch.stack([v2, v0], 1), torch.stack([v0, v1], 1)], 0)
    e, _ = e.sort(dim=1)  # (3F, 2)
    h = e[:, 0] * num_verts + e[:, 1]
    u, inverse = torch.unique(h, sorted=True, return_inverse=True)
    edges = torch.stack([u // num_verts, u % num_verts], 1)
    return EdgeTopology(edges, inverse.reshape(3, F).t())


def mesh_edges(faces: Tensor) -> Tensor:
    """Unique undirected edges (E, 2) of faces (F, 3), each sorted (a < b), rows in lexicographic order."""
    return edge_topology(faces).edges


def _subdivide_faces(faces: Tensor, num_verts: int) -> tuple[Tensor, Tensor]:
    """New faces (4F, 3) and unique edges (E, 2); midpoint of edge e gets index num_verts + e."""
    edges, f2e = edge_topology(faces, num_verts)
    e = f2e + num_verts  # (F, 3): midpoint opposite v0, v1, v2
    v = faces
    # Corner faces then the centre face, as SubdivideMeshes.subdivide_faces (orientation preserved).
    f0 = torch.stack([v[:, 0], e[:, 2], e[:, 1]], 1)
    f1 = torch.stack([v[:, 1], e[:, 0], e[:, 2]], 1)
    f2 = torch.stack([v[:, 2], e[:, 1], e[:, 0]], 1)
    return torch.cat([f0, f1, f2, e], 0), edges


def subdivide_mesh(verts: Tensor, faces: Tensor) -> Mesh:
    """Midpoint subdivision (PyTorch3D SubdivideMeshes): every face splits into 4.

    verts (V, 3) or (B, V, 3), faces (F, 3) shared. Returns verts (..., V + E, 3) -- the old vertices,
    then the edge midpoints in the order of `mesh_edges(faces)` -- and faces (4F, 3): all corner faces at
    v0, at v1, at v2, then all centre faces. Differentiable w.r.t. verts.
    """
    if verts.dim() not in (2, 3) or verts.shape[-1] != 3:
        raise ValueError(f"verts must have shape (V, 3) or (B, V, 3), got {tuple(verts.shape)}")
    faces = _check_faces_2d(faces)
    V = verts.shape[-2]
    new_faces, edges = _subdivide_faces(faces, V)
    mid = verts[..., edges, :].mean(dim=-2)  # (..., E, 3)
    return Mesh(torch.cat([verts, mid], dim=-2), new_faces)


def ico_sphere(level: int = 0, device: torch.device | str | None = None, dtype=torch.float32) -> Mesh:
    """Unit icosphere as PyTorch3D `utils/ico_sphere.py`: verts (V, 3), faces (F, 3), outward CCW faces.

    Level l has 10 * 4**l + 2 vertices and 20 * 4**l faces; same vertex and face order as PyTorch3D.
    """
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    verts = torch.tensor(_ICO_VERTS0, dtype=dtype, device=device)
    faces = torch.tensor(_ICO_FACES0, dtype=torch.int64, device=device)
    for _ in range(level):
        verts, faces = subdivide_mesh(verts, faces)
        verts = verts / verts.norm(p=2, dim=1, keepdim=True)
    return Mesh(verts, faces)


# ----------------------------------------------------------------------------------------------- geometry


def face_verts(verts: Tensor, faces: Tensor) -> Tensor:
    """Per-corner values of each face: verts (B, V, D) or (V, D), faces (F, 3) or (B, F, 3) -> (B, F, 3, D),
    or (F, 3, D) when both are unbatched; (V, D) verts are shared by a (B, F, 3) batch of faces.

    Padded (-1) face indices gather vertex 0 (finite values; mask with `(faces >= 0).all(-1)`).
    Differentiable w.r.t. verts; D is any channel count (positions, UVs, colours, features).
    """
    if not isinstance(verts, Tensor) or verts.dim() not in (2, 3):
        shape = tuple(verts.shape) if isinstance(verts, Tensor) else type(verts).__name__
        raise ValueError(f"verts must have shape (V, D) or (B, V, D), got {shape}")
    if not isinstance(faces, Tensor) or faces.dim() not in (2, 3) or faces.shape[-1] != 3:
        shape = tuple(faces.shape) if isinstance(faces, Tensor) else type(faces).__name__
        raise ValueError(f"faces must have shape (F, 3) or (B, F, 3), got {shape}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"faces must be an int64 or int32 tensor, got {faces.dtype}")
    idx = faces.long().clamp(min=0)
    if verts.dim() == 2:
        return verts[idx]
    B = verts.shape[0]
    if idx.dim() == 2:
        idx = idx.expand(B, -1, -1)
    elif idx.shape[0] != B:
        raise ValueError(f"faces of shape (B, F, 3) must have B={B} like verts, got {tuple(faces.shape)}")
    return verts[torch.arange(B, device=verts.device)[:, None, None], idx]


def _face_cross(verts: Tensor, faces: Tensor) -> Tensor:
    """(v1 - v0) x (v2 - v0) for verts (B, V, 3), faces (B, F, 3) -> (B, F, 3); padded faces give 0."""
    fv = face_verts(verts, faces)  # (B, F, 3, 3)
    n = torch.linalg.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0], dim=-1)
    return n * (faces >= 0).all(-1, keepdim=True)


def face_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Unit face normals n = (v1 - v0) x (v2 - v0) / max(|.|, 1e-6): verts (B, V, 3), faces (F, 3) or
    (B, F, 3) -> (B, F, 3) (or (F, 3) for verts (V, 3)). Padded (-1) faces give 0."""
    single = verts.dim() == 2
    v = _check_verts(verts)
    n = _face_cross(v, _check_faces(faces, v.shape[0]))
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=_NORMAL_EPS)
    return n[0] if single else n


def face_areas(verts: Tensor, faces: Tensor) -> Tensor:
    """Triangle areas |(v1 - v0) x (v2 - v0)| / 2: (B, F) (or (F,) for verts (V, 3))."""
    single = verts.dim() == 2
    v = _check_verts(verts)
    a = 0.5 * _face_cross(v, _check_faces(faces, v.shape[0])).norm(dim=-1)
    return a[0] if single else a


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted vertex normals as PyTorch3D `Meshes.verts_normals_packed`: (B, V, 3) (or (V, 3)).

    Sum over incident faces of the unnormalized face normal (|n| = 2 area), then normalized (eps 1e-6).
    """
    single = verts.dim() == 2
    v = _check_verts(verts)
    f = _check_faces(faces, v.shape[0])
    B, V, _ = v.shape
    n = _face_cross(v, f)  # (B, F, 3)
    idx = (f.clamp(min=0) + torch.arange(B, device=v.device)[:, None, None] * V).reshape(-1)  # (B*F*3,)
    vn = v.new_zeros(B * V, 3).index_add(0, idx, n[:, :, None, :].expand(-1, -1, 3, -1).reshape(-1, 3))
    vn = torch.nn.functional.normalize(vn, eps=_NORMAL_EPS, dim=1).reshape(B, V, 3)
    return vn[0] if single else vn


def sample_points_from_meshes(
    verts: Tensor,
    faces: Tensor,
    num_samples: int = 10000,
    return_normals: bool = False,
    return_textures: bool = False,
    generator: torch.Generator | None = None,
    textures: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Uniform samples on the surface, as PyTorch3D `ops/sample_points_from_meshes.py`.

    verts (B, V, 3) or (V, 3), faces (F, 3) or (B, F, 3) (-1 rows = padding) -> points (B, P, 3) with
    P = num_samples; with return_normals also the unit normals (B, P, 3) of the sampled faces, and with
    return_textures the features (B, P, C) of `textures` (B, V, C) or (V, C), per-vertex features
    interpolated with the samples' barycentrics (what PyTorch3D's `TexturesVertex` gives); returned in
    PyTorch3D's order (points[, normals][, textures]). Faces are drawn with probability proportional to area,
    barycentrics (1 - sqrt(u), sqrt(u)(1 - v), sqrt(u) v) with u, v uniform (Osada et al. 2002, "Shape
    distributions", eq. 1). Points (and textures) are differentiable w.r.t. verts (and textures).

    Empty meshes, as PyTorch3D: a mesh of the batch without faces (all its face rows -1 padding, or F = 0)
    gets zeros in every output, and the random draws are made for the other meshes only (PyTorch3D draws
    for its `meshes.valid`); a batch where no mesh has a face raises ValueError("Meshes are empty.").
    Deliberate difference: a mesh that has faces but zero total area is sampled as empty (zeros), where
    PyTorch3D's `multinomial` over all-zero areas raises a RuntimeError.
    """
    v = _check_verts(verts)
    f = _check_faces(faces, v.shape[0])
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    B, V, _ = v.shape
    tex = None
    if return_textures:
        if textures is None:
            raise ValueError("Meshes do not contain textures.")  # PyTorch3D's message
        tex = textures[None] if textures.dim() == 2 else textures
        if tex.dim() != 3 or tex.shape[1] != V or tex.shape[0] not in (1, B):
            raise ValueError(
                f"textures must have shape (V, C) or (B, V, C) with V={V}, got {tuple(textures.shape)}"
            )
        tex = tex.expand(B, -1, -1)
    if not bool((f >= 0).all(-1).any()):
        raise ValueError("Meshes are empty.")  # PyTorch3D's message (meshes.isempty())
    if not torch.isfinite(v).all():
        raise ValueError("verts contain nan or inf")
    cross = _face_cross(v, f)  # (B, F, 3)
    with torch.no_grad():
        areas = cross.norm(dim=-1)  # (B, F), proportional to area; 0 for padded faces
        ok = areas.sum(-1) > 0  # (B,) meshes to sample from
        ok_idx = ok.nonzero()[:, 0]
        n_ok = int(ok_idx.shape[0])
        # draw on the generator's device (a CPU generator may drive CUDA verts), then move to the verts'
        gdev = v.device if generator is None else generator.device
        face_idx = v.new_zeros(B, num_samples, dtype=torch.int64)
        uv = v.new_zeros(2, B, num_samples)
        if n_ok:
            drawn = torch.multinomial(areas[ok].to(gdev), num_samples, replacement=True, generator=generator)
            face_idx[ok_idx] = drawn.to(v.device)
            uv[:, ok_idx] = torch.rand(
                2, n_ok, num_samples, dtype=v.dtype, device=gdev, generator=generator
            ).to(v.device)
    u_sqrt = uv[0].sqrt()
    w = torch.stack([1.0 - u_sqrt, u_sqrt * (1.0 - uv[1]), u_sqrt * uv[1]], dim=-1)  # (B, P, 3)
    bidx = torch.arange(B, device=v.device)[:, None]
    keep = ok[:, None, None]  # (B, 1, 1)
    sampled_faces = f[bidx, face_idx]  # (B, P, 3)
    corners = face_verts(v, sampled_faces)  # (B, P, 3, 3)
    points = torch.where(keep, (w[..., None] * corners).sum(-2), 0.0)
    out = [points]
    if return_normals:
        n = cross[bidx, face_idx]
        # clamp as PyTorch3D: sys.float_info.epsilon (the float64 machine epsilon), whatever the dtype
        n = n / n.norm(dim=-1, keepdim=True).clamp(min=sys.float_info.epsilon)
        out.append(torch.where(keep, n, 0.0))
    if tex is not None:
        tex_corners = face_verts(tex, sampled_faces)  # (B, P, 3, C)
        out.append(torch.where(keep, (w[..., None] * tex_corners).sum(-2), 0.0))
    return out[0] if len(out) == 1 else tuple(out)


# ----------------------------------------------------------------------------------------------- Laplacians


def uniform_laplacian(verts: Tensor, faces: Tensor) -> Tensor:
    """Uniform Laplacian, sparse (V, V), as PyTorch3D `ops.laplacian(verts, edges)`.

    L[i, j] = 1 / deg(i) for each neighbour j, L[i, i] = -1 (also for isolated vertices).
    verts (V, 3) gives V, dtype and device; faces (F, 3).
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(verts.shape)}")
    V = verts.shape[0]
    edges = edge_topology(_check_faces_2d(faces), V).edges
    return _uniform_laplacian_from_edges(edges, V, verts.dtype, verts.device)


def _uniform_laplacian_from_edges(edges: Tensor, V: int, dtype, device) -> Tensor:
    e0, e1 = edges.unbind(1)
    ii = torch.cat([e0, e1])
    jj = torch.cat([e1, e0])
    deg = torch.zeros(V, dtype=dtype, device=device).index_add_(0, ii, torch.ones_like(ii, dtype=dtype))
    inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
    diag = torch.arange(V, device=device)
    idx = torch.stack([torch.cat([ii, diag]), torch.cat([jj, diag])])
    val = torch.cat([inv[ii], -torch.ones(V, dtype=dtype, device=device)])
    return torch.sparse_coo_tensor(idx, val, (V, V), check_invariants=False).coalesce()


def cot_laplacian(verts: Tensor, faces: Tensor, eps: float = 1e-12) -> CotLaplacian:
    """Cotangent Laplacian as PyTorch3D `ops.cot_laplacian`: verts (V, 3), faces (F, 3) ->
    L sparse (V, V) with L[i, j] = cot(alpha_ij) + cot(beta_ij) (zero diagonal, symmetric) and inv_areas
    (V, 1) = 1 / sum of the areas of the faces incident to each vertex (0 for isolated vertices).

    Cotangents from side lengths: cot(a) = (b^2 + c^2 - a^2) / (4 area), area by Heron's formula clamped
    at eps before the sqrt (as in PyTorch3D). Differentiable w.r.t. verts.
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(verts.shape)}")
    faces = _check_faces_2d(faces)
    V = verts.shape[0]
    cot, area = _cotangents(verts, faces, eps)  # (F, 3), (F,)
    ii = faces[:, [1, 2, 0]]  # cot of the angle at corner k sits on the opposite edge (ii[k], jj[k])
    jj = faces[:, [2, 0, 1]]
    idx = torch.stack(
        [torch.cat([ii.reshape(-1), jj.reshape(-1)]), torch.cat([jj.reshape(-1), ii.reshape(-1)])]
    )
    val = torch.cat([cot.reshape(-1), cot.reshape(-1)])
    L = torch.sparse_coo_tensor(idx, val, (V, V), check_invariants=False).coalesce()
    vert_area = verts.new_zeros(V).index_add(0, faces.reshape(-1), area[:, None].expand(-1, 3).reshape(-1))
    inv_areas = torch.where(vert_area > 0, 1.0 / torch.where(vert_area > 0, vert_area, 1.0), 0.0)
    return CotLaplacian(L, inv_areas[:, None])


def _cotangents(verts: Tensor, faces: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Cotangents of the three corner angles (F, 3) and Heron areas (F,) of faces (F, 3) into verts (V, 3)."""
    v0, v1, v2 = face_verts(verts, faces).unbind(1)
    A = (v1 - v2).norm(dim=1)  # side opposite v0
    Bl = (v0 - v2).norm(dim=1)
    C = (v0 - v1).norm(dim=1)
    s = 0.5 * (A + Bl + C)
    area = (s * (s - A) * (s - Bl) * (s - C)).clamp(min=eps).sqrt()
    A2, B2, C2 = A * A, Bl * Bl, C * C
    cot = torch.stack([B2 + C2 - A2, A2 + C2 - B2, A2 + B2 - C2], dim=1) / area[:, None] / 4.0
    return cot, area
