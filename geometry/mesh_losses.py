"""Mesh regularizers with PyTorch3D's definitions and batch reductions, plus the ARAP energy.

Inputs are padded batches: verts (B, V, 3) (or (V, 3) for one mesh), faces (F, 3) shared or (B, F, 3) with
-1 rows as padding, and optional verts_lengths (B,) for a heterogeneous batch (see `geometry.mesh`).
`padded_from_lists(verts_list, faces_list)` builds them from a list of meshes.

Batch reduction (as PyTorch3D `loss/mesh_laplacian_smoothing.py`, `mesh_edge_loss.py`,
`mesh_normal_consistency.py`, facebookresearch/pytorch3d): each mesh's loss is the mean over its own
vertices / edges / face pairs, and the result is the mean over the B meshes, a scalar.

Empty batches (as PyTorch3D's `if meshes.isempty()` branch of the same three files): when no mesh of the
batch has a face (every face row is -1 padding, or F = 0, or B = 0) the result is PyTorch3D's `tensor([0.0])`,
shape (1,), requiring grad. Here it is `0 * verts.sum()` when verts require grad, so backward reaches verts
(with zero gradient) instead of stopping at a new leaf; its dtype is the verts' (PyTorch3D's is float32).
A batch where only some meshes are empty keeps the scalar: those meshes count as 0 in the mean over B.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .mesh import (
    PackedMeshes,
    _cotangents,
    _uniform_laplacian_from_edges,
    cot_laplacian,
    edge_topology,
    pack_meshes,
)

LAPLACIAN_METHODS = ("uniform", "cot", "cotcurv")


class ArapResult(NamedTuple):
    """energy (B,); rotations (B, V, 3, 3): deformed edge ~= rotations[b, i] @ rest edge (column vectors)."""

    energy: Tensor
    rotations: Tensor


def _empty_batch_loss(p: PackedMeshes) -> Tensor | None:
    """PyTorch3D's result for `meshes.isempty()` (no mesh has a face), else None."""
    if p.faces.shape[0] > 0:
        return None
    if p.verts.requires_grad:
        return (p.verts.sum() * 0.0).reshape(1)
    return torch.zeros(1, dtype=p.verts.dtype, device=p.verts.device, requires_grad=True)


def _sparse_mm(L: Tensor, x: Tensor) -> Tensor:
    """L (N, N) sparse coalesced (constant) times x (N, 3), differentiable w.r.t. x by index_add."""
    row, col = L.indices()
    return x.new_zeros(x.shape).index_add(0, row, L.values()[:, None] * x[col])


def _packed_laplacian_rows(p: PackedMeshes, method: str) -> Tensor:
    """Per-vertex smoothing residual (B*V, 3), with the Laplacian built without gradient as PyTorch3D."""
    x = p.verts
    N = x.shape[0]
    with torch.no_grad():
        xd = x.detach()
        if method == "uniform":
            edges = edge_topology(p.faces, N).edges
            L = _uniform_laplacian_from_edges(edges, N, x.dtype, x.device)
        else:
            L, inv_areas = cot_laplacian(xd, p.faces)
            row_sum = x.new_zeros(N).index_add_(0, L.indices()[0], L.values())[:, None]  # (N, 1)
            if method == "cot":
                norm_w = torch.where(row_sum > 0, 1.0 / torch.where(row_sum > 0, row_sum, 1.0), 0.0)
            else:
                norm_w = 0.25 * inv_areas
    Lx = _sparse_mm(L, x)
    if method == "uniform":
        return Lx
    if method == "cot":
        return Lx * norm_w - x
    return (Lx - row_sum * x) * norm_w


def mesh_laplacian_smoothing(
    verts: Tensor, faces: Tensor, method: str = "uniform", verts_lengths: Tensor | None = None
) -> Tensor:
    """Laplacian smoothing loss, as PyTorch3D `mesh_laplacian_smoothing` (a scalar).

    verts (B, V, 3) or (V, 3); faces (F, 3) or (B, F, 3); verts_lengths (B,) or None. Per vertex:
    - "uniform": || mean_{j in N(i)} v_j - v_i ||
    - "cot":     || sum_j L_ij v_j / sum_j L_ij - v_i ||   (L the cotangent Laplacian)
    - "cotcurv": || sum_j L_ij (v_j - v_i) || / (4 A_i)     (A_i = area of the faces around i)
    Mean over each mesh's vertices, then over meshes. The Laplacian (and its normalization) is a constant
    for autograd, as in PyTorch3D.
    """
    if method not in LAPLACIAN_METHODS:
        raise ValueError(f"method must be one of {LAPLACIAN_METHODS}, got {method!r}")
    p = pack_meshes(verts, faces, verts_lengths)
    empty = _empty_batch_loss(p)
    if empty is not None:
        return empty
    per_vert = _packed_laplacian_rows(p, method).norm(dim=1)  # (B*V,)
    per_vert = torch.where(p.vert_mask, per_vert, torch.zeros_like(per_vert))
    per_mesh = per_vert.reshape(p.num_meshes, p.max_verts).sum(1) / p.verts_per_mesh.clamp(min=1)
    return per_mesh.mean()


def mesh_edge_loss(
    verts: Tensor, faces: Tensor, target_length: float = 0.0, verts_lengths: Tensor | None = None
) -> Tensor:
    """Edge length loss, as PyTorch3D `mesh_edge_loss` (a scalar): mean over each mesh's unique edges of
    (|v_a - v_b| - target_length)^2, then mean over meshes.
    verts (B, V, 3) or (V, 3); faces (F, 3) or (B, F, 3); verts_lengths (B,) or None.
    Meshes without faces have no edges and add 0 to the sum over meshes, still divided by B (PyTorch3D
    `loss.sum() / N`); a batch where no mesh has a face gives `tensor([0.0])` of shape (1,) (module docstring).
    """
    p = pack_meshes(verts, faces, verts_lengths)
    empty = _empty_batch_loss(p)
    if empty is not None:
        return empty
    edges = edge_topology(p.faces, p.verts.shape[0]).edges  # (E, 2) packed
    mesh = edges[:, 0] // p.max_verts
    d = (p.verts[edges[:, 0]] - p.verts[edges[:, 1]]).norm(dim=1)
    per_edge = (d - target_length) ** 2
    count = torch.bincount(mesh, minlength=p.num_meshes).clamp(min=1)
    per_mesh = p.verts.new_zeros(p.num_meshes).index_add(0, mesh, per_edge) / count
    return per_mesh.mean()


def mesh_normal_consistency(verts: Tensor, faces: Tensor, verts_lengths: Tensor | None = None) -> Tensor:
    """Normal consistency, as PyTorch3D `mesh_normal_consistency` (a scalar).

    For every pair of faces sharing an edge (all pairs when more than two faces share it): 1 - cos(n0, n1)
    with n0, n1 the normals of the two faces oriented from the shared edge (so the face winding does not
    matter). Mean over each mesh's pairs, then over meshes.
    verts (B, V, 3) or (V, 3); faces (F, 3) or (B, F, 3); verts_lengths (B,) or None.
    """
    p = pack_meshes(verts, faces, verts_lengths)
    empty = _empty_batch_loss(p)
    if empty is not None:
        return empty
    x = p.verts
    with torch.no_grad():
        edges, f2e = edge_topology(p.faces, x.shape[0])
        edge_of = f2e.reshape(-1)  # (3F',): edge opposite corner k of face f
        opposite = p.faces.reshape(-1)  # (3F',): the corner vertex itself
        mesh_of = p.face_to_mesh[:, None].expand(-1, 3).reshape(-1)
        edge_sorted, order = edge_of.sort(stable=True)
        counts = torch.bincount(edge_of, minlength=edges.shape[0])
        max_count = int(counts.max()) if counts.numel() else 0
        first, second = [], []
        for d in range(1, max_count):  # loop over the largest face count of an edge (2 for a manifold)
            same = edge_sorted[:-d] == edge_sorted[d:]
            first.append(order[:-d][same])
            second.append(order[d:][same])
        if not first:
            return x.sum() * 0.0
        i0 = torch.cat(first)
        i1 = torch.cat(second)
    e = edges[edge_of[i0]]  # (P, 2), the shared edge
    a, b = x[e[:, 0]], x[e[:, 1]]
    n0 = torch.linalg.cross(b - a, x[opposite[i0]] - a, dim=1)
    n1 = -torch.linalg.cross(b - a, x[opposite[i1]] - a, dim=1)
    per_pair = 1.0 - torch.cosine_similarity(n0, n1, dim=1)
    mesh = mesh_of[i0]
    count = torch.bincount(mesh, minlength=p.num_meshes).clamp(min=1)
    per_mesh = x.new_zeros(p.num_meshes).index_add(0, mesh, per_pair) / count
    return per_mesh.mean()


def _half_edges(p: PackedMeshes, rest: Tensor, weights: str) -> tuple[Tensor, Tensor, Tensor]:
    """Directed edges (i, j) and weights w_ij (H,) of the packed rest mesh."""
    if weights == "cot":
        cot, _ = _cotangents(rest, p.faces)  # (F, 3): angle at corner k faces edge (ii[k], jj[k])
        ii = p.faces[:, [1, 2, 0]].reshape(-1)
        jj = p.faces[:, [2, 0, 1]].reshape(-1)
        w = 0.5 * cot.reshape(-1)  # w_ij = (cot alpha_ij + cot beta_ij) / 2 summed over the two faces
        return torch.cat([ii, jj]), torch.cat([jj, ii]), torch.cat([w, w])
    edges = edge_topology(p.faces, rest.shape[0]).edges
    w = rest.new_ones(2 * edges.shape[0])
    return torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]]), w


def arap_energy(
    verts_rest: Tensor,
    verts_deformed: Tensor,
    faces: Tensor,
    weights: str = "cot",
    return_rotations: bool = False,
) -> Tensor | ArapResult:
    """As-rigid-as-possible energy (Sorkine & Alexa 2007, "As-Rigid-As-Possible Surface Modeling", eq. 3):

        E = sum_i sum_{j in N(i)} w_ij || (p'_i - p'_j) - R_i (p_i - p_j) ||^2

    verts_rest, verts_deformed (B, V, 3) (or (V, 3)); faces (F, 3) or (B, F, 3). weights "cot":
    w_ij = (cot alpha_ij + cot beta_ij) / 2 from the rest mesh, "uniform": w_ij = 1. R_i is the best rotation
    of cell i: the SVD S_i = U diag(s) V^T of S_i = sum_j w_ij e_ij e'_ij^T gives R_i = V D U^T, with
    D = diag(1, 1, det(V U^T)) so that det R_i = +1 (paper eq. 6 and the reflection fix after it).

    Returns energy (B,), or ArapResult(energy, rotations (B, V, 3, 3)) with return_rotations.
    The rotations are constants for autograd: since R_i minimizes E_i over SO(3), dE/dR_i vanishes on SO(3)
    and the gradient through them is zero (envelope theorem); this also avoids the unstable SVD backward at
    repeated singular values (e.g. at the rest pose). Gradients reach verts_deformed and, through the cot
    weights, verts_rest.
    """
    if weights not in ("cot", "uniform"):
        raise ValueError(f"weights must be 'cot' or 'uniform', got {weights!r}")
    if verts_rest.shape != verts_deformed.shape:
        raise ValueError(
            f"verts_deformed must have the shape of verts_rest {tuple(verts_rest.shape)}, "
            f"got {tuple(verts_deformed.shape)}"
        )
    p = pack_meshes(verts_rest, faces)
    x = p.verts
    y = verts_deformed.reshape(-1, 3) if verts_deformed.dim() == 3 else verts_deformed
    i, j, w = _half_edges(p, x, weights)
    e = x[i] - x[j]  # (H, 3) rest edges
    ed = y[i] - y[j]  # (H, 3) deformed edges
    N = x.shape[0]
    with torch.no_grad():
        cov = x.new_zeros(N, 3, 3).index_add_(
            0, i, (w[:, None, None] * e[:, :, None] * ed[:, None, :]).detach()
        )
        U, _, Vh = torch.linalg.svd(cov)
        Vm = Vh.transpose(-1, -2)
        det = torch.linalg.det(Vm @ U.transpose(-1, -2))
        D = torch.ones(N, 3, dtype=x.dtype, device=x.device)
        D[:, 2] = torch.where(det < 0, -1.0, 1.0)
        R = (Vm * D[:, None, :]) @ U.transpose(-1, -2)  # (N, 3, 3)
    r = ed - (R[i] @ e[:, :, None])[..., 0]
    per_half = w * (r * r).sum(1)
    energy = x.new_zeros(p.num_meshes).index_add(0, i // p.max_verts, per_half)
    if return_rotations:
        return ArapResult(energy, R.reshape(p.num_meshes, p.max_verts, 3, 3))
    return energy
