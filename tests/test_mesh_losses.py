"""Tests of geometry.mesh_losses: PyTorch3D values and gradients, naive references, gradcheck, ARAP."""

from __future__ import annotations

import math

import pytest
import torch

from geometry.mesh import cot_laplacian, ico_sphere, mesh_edges, padded_from_lists
from geometry.mesh_losses import (
    arap_energy,
    mesh_edge_loss,
    mesh_laplacian_smoothing,
    mesh_normal_consistency,
)
from helpers import assert_close, load_reference

# float32 agreement with PyTorch3D: value relative 1e-5; gradients relative to their largest entry 1e-3
# (the cotcurv gradient carries 1/area factors and sums over ~6 neighbours in float32).
VAL_RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
GRAD_RTOL = {torch.float32: 1e-3, torch.float64: 1e-9}

LOSSES = {
    "lap_uniform": lambda v, f, n=None: mesh_laplacian_smoothing(v, f, "uniform", verts_lengths=n),
    "lap_cot": lambda v, f, n=None: mesh_laplacian_smoothing(v, f, "cot", verts_lengths=n),
    "lap_cotcurv": lambda v, f, n=None: mesh_laplacian_smoothing(v, f, "cotcurv", verts_lengths=n),
    "edge_t0": lambda v, f, n=None: mesh_edge_loss(v, f, 0.0, verts_lengths=n),
    "edge_t0p1": lambda v, f, n=None: mesh_edge_loss(v, f, 0.1, verts_lengths=n),
    "normal_consistency": lambda v, f, n=None: mesh_normal_consistency(v, f, verts_lengths=n),
}


@pytest.fixture(scope="module")
def ref():
    return load_reference("mesh_utils")


def _check_grad(g, expected, dtype, what):
    """Gradients agree to GRAD_RTOL[dtype] relative to the largest |expected| entry."""
    expected = torch.as_tensor(expected)
    assert_close(g, expected, what, atol=GRAD_RTOL[dtype] * float(expected.abs().max()), rtol=0.0)


def _check_val(x, expected, dtype, what):
    """Scalar values agree to VAL_RTOL[dtype] relative, plus 1e-8 absolute."""
    x, expected = float(torch.as_tensor(x).detach()), float(torch.as_tensor(expected).detach())
    assert_close(x, expected, what, atol=1e-8, rtol=VAL_RTOL[dtype])


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("mesh", ["ico2", "def3"])
def test_single_mesh_matches_pytorch3d(ref, loss, mesh):
    verts = torch.from_numpy(ref[f"{mesh}_verts"]).requires_grad_(True)
    faces = torch.from_numpy(ref[f"{mesh}_faces"])
    value = LOSSES[loss](verts, faces)
    assert value.dim() == 0
    (g,) = torch.autograd.grad(value, verts)
    _check_val(value, ref[f"{mesh}_{loss}"], torch.float32, f"{mesh} {loss}")
    _check_grad(g, ref[f"{mesh}_{loss}_grad_verts0"], torch.float32, f"{mesh} {loss}")


@pytest.mark.parametrize("loss", list(LOSSES))
def test_heterogeneous_batch_matches_pytorch3d(ref, loss):
    T = lambda k: torch.from_numpy(ref[k])
    pm = padded_from_lists([T("def2_verts"), T("def3_verts")], [T("def2_faces"), T("def3_faces")])
    verts = pm.verts.clone().requires_grad_(True)
    value = LOSSES[loss](verts, pm.faces, pm.verts_lengths)
    (g,) = torch.autograd.grad(value, verts)
    key = f"batch_def2_def3_{loss}"
    _check_val(value, ref[key], torch.float32, key)
    _check_grad(g[0, :162], ref[f"{key}_grad_verts0"], torch.float32, key + " mesh 0")
    _check_grad(g[1], ref[f"{key}_grad_verts1"], torch.float32, key + " mesh 1")
    assert g[0, 162:].abs().max() == 0, "padding vertices received gradient"  # exact: masked out


@pytest.mark.parametrize("loss", list(LOSSES))
def test_batch_is_mean_over_meshes(loss):
    verts, faces = ico_sphere(1, dtype=torch.float64)
    a = verts * torch.tensor([1.0, 0.8, 1.2], dtype=torch.float64)
    b = verts + 0.05 * torch.randn_like(verts)
    batch = LOSSES[loss](torch.stack([a, b]), faces)
    single = (LOSSES[loss](a, faces) + LOSSES[loss](b, faces)) / 2
    _check_val(batch, single, torch.float64, loss)


# -------------------------------------------------------------------------------- naive references


def _naive_laplacian_loss(verts, faces, method, L0, inv_areas0):
    """Dense reference: L0 and inv_areas0 are constants (PyTorch3D builds them under no_grad)."""
    if method == "uniform":
        A = torch.zeros_like(L0)
        for a, b in mesh_edges(faces).tolist():
            A[a, b] = A[b, a] = 1
        res = A @ verts / A.sum(1, keepdim=True) - verts
    elif method == "cot":
        res = L0 @ verts / L0.sum(1, keepdim=True) - verts
    else:
        res = (L0 @ verts - L0.sum(1, keepdim=True) * verts) * 0.25 * inv_areas0
    return res.norm(dim=1).mean()


@pytest.mark.parametrize("method", ["uniform", "cot", "cotcurv"])
def test_laplacian_smoothing_naive_dense_reference(method):
    verts, faces = ico_sphere(1, dtype=torch.float64)
    verts = (verts + 0.1 * torch.randn_like(verts)).requires_grad_(True)
    L0, ia0 = cot_laplacian(verts.detach(), faces)
    ref_fn = lambda v: _naive_laplacian_loss(v, faces, method, L0.to_dense(), ia0)
    value = mesh_laplacian_smoothing(verts, faces, method)
    _check_val(value, ref_fn(verts), torch.float64, method)
    (g,) = torch.autograd.grad(value, verts)
    (gr,) = torch.autograd.grad(ref_fn(verts), verts)
    _check_grad(g, gr, torch.float64, method)


def test_gradcheck_float64_tiny_meshes():
    verts, faces = ico_sphere(0, dtype=torch.float64)
    verts = (verts + 0.1 * torch.randn_like(verts)).requires_grad_(True)
    for name in ("lap_uniform", "edge_t0", "edge_t0p1", "normal_consistency"):  # L depends on topology only
        assert torch.autograd.gradcheck(
            lambda v, n=name: LOSSES[n](v, faces), (verts,), eps=1e-6, atol=1e-7
        ), name


def test_edge_and_normal_consistency_analytic():
    tri = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0]])
    f = torch.tensor([[0, 1, 2]])
    assert abs(float(mesh_edge_loss(tri, f)) - 1.0) < 1e-6, "unit equilateral triangle, target 0"
    assert abs(float(mesh_edge_loss(tri, f, target_length=1.0))) < 1e-12, (
        "unit equilateral triangle, target 1"
    )
    assert abs(float(mesh_edge_loss(tri, f, target_length=0.5)) - 0.25) < 1e-6
    # two triangles on the edge (0, 1) folded by a dihedral angle: 1 - cos(angle between the normals)
    for theta in (0.0, math.pi / 3, math.pi / 2):
        verts = torch.tensor(
            [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, -math.cos(theta), math.sin(theta)]]
        )
        faces = torch.tensor([[0, 1, 2], [1, 0, 3]])
        nc = float(mesh_normal_consistency(verts, faces))
        assert abs(nc - (1 - math.cos(theta))) < 1e-6, f"theta {theta}: {nc}"
    # a non-manifold edge shared by 3 faces: 3 pairs; fins at 0, 90, 180 degrees about the x axis
    verts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.5, 1.0, 0], [0.5, 0, 1.0], [0.5, -1.0, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 1, 4]])
    # edge-oriented normals: fins at 90 degrees give 1 - 0, the two opposite fins (a flat sheet) give 1 - 1
    nc = float(mesh_normal_consistency(verts, faces))
    assert abs(nc - (1.0 + 0.0 + 1.0) / 3) < 1e-6, f"non-manifold edge: {nc}"


def test_unknown_method_and_bad_shapes():
    v, f = ico_sphere(0)
    with pytest.raises(ValueError, match="method"):
        mesh_laplacian_smoothing(v, f, "bogus")
    with pytest.raises(ValueError, match="verts"):
        mesh_edge_loss(v[None, :, :2], f)
    with pytest.raises(ValueError, match="verts_deformed"):
        arap_energy(v, v[:5], f)


# -------------------------------------------------------------------------------- ARAP


def _random_rotation(dtype, generator=None):
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=dtype, generator=generator))
    q = q * torch.sign(torch.diagonal(r))
    return q * torch.linalg.det(q)  # det +1


def _naive_arap(rest, deformed, faces, weights):
    """Per-vertex Python loop: unique-edge weights w_ij = (cot a + cot b)/2 (or 1), Kabsch per cell."""
    V = rest.shape[0]
    W = torch.zeros(V, V, dtype=rest.dtype)
    if weights == "cot":
        W = 0.5 * cot_laplacian(rest, faces).L.to_dense()
    else:
        for a, b in mesh_edges(faces).tolist():
            W[a, b] = W[b, a] = 1.0
    energy, rots = 0.0, []
    for i in range(V):
        nbrs = torch.nonzero(W[i]).flatten().tolist()
        S = sum(W[i, j] * torch.outer(rest[i] - rest[j], deformed[i] - deformed[j]) for j in nbrs)
        U, _, Vh = torch.linalg.svd(S)
        R = Vh.T @ U.T
        if torch.linalg.det(R) < 0:
            U = U.clone()
            U[:, 2] = -U[:, 2]
            R = Vh.T @ U.T
        rots.append(R)
        for j in nbrs:
            r = (deformed[i] - deformed[j]) - R @ (rest[i] - rest[j])
            energy = energy + W[i, j] * (r @ r)
    return energy, torch.stack(rots)


@pytest.mark.parametrize("weights", ["cot", "uniform"])
def test_arap_matches_naive_loop_and_is_optimal(weights):
    rest, faces = ico_sphere(1, dtype=torch.float64)
    deformed = rest * torch.tensor([1.3, 0.8, 1.0], dtype=torch.float64) + 0.05 * torch.randn_like(rest)
    res = arap_energy(rest, deformed, faces, weights=weights, return_rotations=True)
    ref_e, ref_R = _naive_arap(rest, deformed, faces, weights)
    _check_val(res.energy[0], ref_e, torch.float64, f"ARAP energy ({weights})")
    _check_grad(res.rotations[0], ref_R, torch.float64, f"ARAP rotations ({weights})")
    assert float(res.energy[0]) > 1e-3, "non-rigid deformation must have positive energy"
    # optimality: every other choice of rotations (identity, perturbed) gives more energy
    r_id = torch.eye(3, dtype=torch.float64).expand(rest.shape[0], 3, 3)
    e_id = _energy_with(rest, deformed, faces, weights, r_id)
    assert e_id > float(res.energy[0]), "identity rotations beat the optimal ones"


def _energy_with(rest, deformed, faces, weights, R):
    W = 0.5 * cot_laplacian(rest, faces).L.to_dense() if weights == "cot" else None
    if W is None:
        W = torch.zeros(rest.shape[0], rest.shape[0], dtype=rest.dtype)
        for a, b in mesh_edges(faces).tolist():
            W[a, b] = W[b, a] = 1.0
    e = rest[:, None] - rest[None]  # (V, V, 3): e_ij
    ed = deformed[:, None] - deformed[None]
    r = ed - torch.einsum("iab,ijb->ija", R, e)
    return float((W * (r * r).sum(-1)).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arap_rigid_motion_is_zero_and_rotations_recovered(dtype):
    rest, faces = ico_sphere(2, dtype=dtype)
    rest = torch.stack([rest, rest * torch.tensor([1.0, 0.6, 1.4], dtype=dtype)])  # (2, V, 3)
    R = torch.stack([_random_rotation(dtype) for _ in range(2)])
    t = torch.randn(2, 1, 3, dtype=dtype)
    moved = (rest @ R.transpose(1, 2) + t).requires_grad_(True)  # column-vector R: x' = R x + t
    res = arap_energy(rest, moved, faces, return_rotations=True)
    scale = float(arap_energy(rest, rest * 1.1, faces).max())  # energy of a 10% scaling, for scale
    assert res.energy.shape == (2,)
    assert float(res.energy.detach().abs().max()) < (1e-5 if dtype == torch.float32 else 1e-12) * scale, (
        f"rigid motion energy {res.energy.tolist()} (scaling energy {scale:.3e})"
    )
    err = (res.rotations - R[:, None]).abs().max()
    assert err < (1e-4 if dtype == torch.float32 else 1e-10), f"recovered rotations off by {float(err):.2e}"
    (g,) = torch.autograd.grad(res.energy.sum(), moved)
    assert torch.isfinite(g).all() and g.abs().max() < (1e-3 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("weights", ["cot", "uniform"])
def test_arap_gradcheck_float64(weights):
    rest, faces = ico_sphere(0, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    deformed = rest * torch.tensor([1.2, 0.9, 1.05], dtype=torch.float64)
    deformed = (deformed + 0.1 * torch.randn(rest.shape, dtype=torch.float64, generator=g)).requires_grad_(
        True
    )
    rest = (rest + 0.05 * torch.randn(rest.shape, dtype=torch.float64, generator=g)).requires_grad_(True)
    fn = lambda r, d: arap_energy(r, d, faces, weights=weights)
    assert torch.autograd.gradcheck(fn, (rest, deformed), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_arap_batch_equals_per_sample():
    rest, faces = ico_sphere(1)
    d0 = rest * 1.2
    d1 = rest + 0.1 * torch.randn_like(rest)
    batch = arap_energy(torch.stack([rest, rest]), torch.stack([d0, d1]), faces)
    single = torch.cat([arap_energy(rest, d0, faces), arap_energy(rest, d1, faces)])
    _check_grad(batch, single, torch.float32, "batched ARAP vs per sample")


@pytest.mark.parametrize(
    "loss_name", ["edge_t0", "edge_t0p1", "lap_uniform", "lap_cot", "normal_consistency"]
)
def test_batch_without_faces_gives_pytorch3d_zero(loss_name):
    # PyTorch3D loss/mesh_edge_loss.py (and mesh_laplacian_smoothing.py, mesh_normal_consistency.py): if
    # meshes.isempty() (no mesh has a face) return torch.tensor([0.0], requires_grad=True): shape (1,), and
    # tests/test_mesh_edge_loss.py::test_empty_meshes checks exactly that value and requires_grad.
    g = torch.Generator().manual_seed(2)
    verts = torch.rand(10, 32, 3, generator=g, requires_grad=True)
    for faces in (torch.full((10, 4, 3), -1), torch.zeros(0, 3, dtype=torch.int64)):
        loss = LOSSES[loss_name](verts, faces, torch.randint(3, 32, (10,), generator=g))
        assert loss.shape == (1,) and loss.requires_grad
        assert_close(loss, torch.tensor([0.0]), f"{loss_name} of an empty batch")
        (grad,) = torch.autograd.grad(loss.sum(), verts)  # a gradient, zero, reaching verts
        assert_close(grad, torch.zeros_like(verts), f"{loss_name} gradient")
    plain = LOSSES[loss_name](verts.detach(), torch.full((10, 4, 3), -1))
    assert plain.shape == (1,) and plain.requires_grad  # a leaf, as PyTorch3D's, when verts need no grad
    plain.sum().backward()


def test_edge_loss_with_one_empty_mesh_is_half_the_other(ref):
    # PyTorch3D mesh_edge_loss: per-edge weight 1 / num_edges of its mesh, summed, divided by N = len(meshes)
    # (empty meshes included), as the naive loop of tests/test_mesh_edge_loss.py (0 for an invalid mesh).
    v = torch.from_numpy(ref["ico2_verts"]).clone().requires_grad_()
    f = torch.from_numpy(ref["ico2_faces"])
    empty_v, empty_f = torch.rand(5, 3), torch.zeros(0, 3, dtype=torch.int64)
    pm = padded_from_lists([empty_v, v], [empty_f, f])
    loss = mesh_edge_loss(pm.verts, pm.faces, 0.1, verts_lengths=pm.verts_lengths)
    assert loss.shape == ()
    assert_close(loss, torch.from_numpy(ref["ico2_edge_t0p1"]) / 2, "edge loss, [empty, ico2]", rtol=1e-5)
    (grad,) = torch.autograd.grad(loss, v)
    _check_grad(grad, torch.from_numpy(ref["ico2_edge_t0p1_grad_verts0"]) / 2, torch.float32, "edge grad")
