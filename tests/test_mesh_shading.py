"""Tests of geometry.mesh_shading: soft silhouettes vs PyTorch3D, blending, textures, visibility."""

from __future__ import annotations

import math

import pytest
import torch

from geometry.cameras import ndc_pixel_centers, ndc_to_pixel
from geometry.mesh_raster import Fragments, rasterize_meshes
from geometry.mesh_shading import (
    default_blur_radius,
    face_attributes_from_verts,
    hard_rgb_blend,
    interpolate_face_attributes,
    mesh_soft_silhouette,
    sample_image_texture,
    sample_texture_uv,
    sample_vertex_colors,
    soft_silhouette,
    softmax_rgb_blend,
    vertex_visibility,
)
from helpers import assert_close, load_reference_tensors

MESH_FILES = ["mesh_sil_ico2_ortho_64", "mesh_sil_ico2_persp_64", "mesh_sil_ico3deformed_persp_64"]


def project(verts_world: torch.Tensor, d: dict, persp: bool) -> torch.Tensor:
    """README §1.1/§1.2: X_view = X @ R + T; ortho x_ndc = x/1.6; persp x_ndc = x / (z tan 30deg)."""
    xv = verts_world @ d["R"] + d["T"][:, None]  # (4, V, 3)
    s = xv[..., 2:3] * math.tan(math.radians(30)) if persp else torch.full_like(xv[..., 2:3], 1.6)
    return torch.cat([xv[..., :2] / s, xv[..., 2:3]], -1)


@pytest.mark.parametrize("name", MESH_FILES)
@pytest.mark.parametrize("path", ["fragments", "direct"])
def test_soft_silhouette_and_grad_match_pytorch3d(name, path):
    d = load_reference_tensors(name)
    persp = "persp" in name
    sigma = 1e-4
    verts_ndc = d["verts_ndc"].clone().requires_grad_(True)
    if path == "fragments":
        fr = rasterize_meshes(
            verts_ndc,
            d["faces"],
            64,
            blur_radius=default_blur_radius(sigma),
            faces_per_pixel=50,
            perspective_correct=persp,
        )
        alpha = soft_silhouette(fr, sigma=sigma)
    else:
        alpha = mesh_soft_silhouette(verts_ndc, d["faces"], 64, sigma=sigma, perspective_correct=persp)
    assert alpha.shape == (4, 64, 64)
    assert_close(alpha, d["soft_alpha"], f"{name} alpha", atol=1e-5)
    (g_ndc,) = torch.autograd.grad((alpha * d["grad_W"]).sum(), verts_ndc)
    # chain d/d(verts_ndc) to world verts through the stored cameras (README §1.2)
    verts_world = d["verts"].expand(4, -1, -1).clone().requires_grad_(True)
    ndc = project(verts_world, d, persp)
    assert_close(ndc, d["verts_ndc"], "projection", atol=1e-6)
    (g_world,) = torch.autograd.grad(ndc, verts_world, g_ndc)
    ref = d["grad_verts"]
    scale = float(ref.abs().max())
    assert_close(g_world, ref, f"{name} grad", atol=1e-5 * scale, rtol=1e-4)


def tiny_mesh(dtype=torch.float64):
    verts = torch.tensor(
        [[[-0.6, -0.5, 2.0], [0.55, -0.6, 2.2], [0.1, 0.62, 2.5], [-0.45, 0.7, 1.8]]], dtype=dtype
    )
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return verts, faces


@pytest.mark.parametrize("persp", [False, True])
def test_soft_silhouette_gradcheck(persp):
    verts, faces = tiny_mesh()
    sigma = 2e-2  # smooth enough for finite differences at 8x8

    def direct(v):
        return mesh_soft_silhouette(v, faces, 8, sigma=sigma, perspective_correct=persp)

    def via_fragments(v):
        fr = rasterize_meshes(
            v, faces, 8, blur_radius=default_blur_radius(sigma), faces_per_pixel=2, perspective_correct=persp
        )
        return soft_silhouette(fr, sigma=sigma)

    v = verts.clone().requires_grad_(True)
    assert torch.allclose(direct(v), via_fragments(v), atol=1e-12)
    assert torch.autograd.gradcheck(direct, (v,), eps=1e-7, atol=1e-6, rtol=1e-4)
    assert torch.autograd.gradcheck(via_fragments, (v,), eps=1e-7, atol=1e-6, rtol=1e-4)


def test_soft_silhouette_hard_mask_iou_closed_mesh():
    # STYLE pitfall: sigma=1e-4 soft silhouettes can leave holes / grey edges; check IoU with the hard mask
    from geometry.mesh import ico_sphere

    verts, faces = ico_sphere(3)
    v = (verts * torch.tensor([0.7, 0.55, 0.6]) + torch.tensor([0.05, -0.1, 3.0]))[None]
    alpha = mesh_soft_silhouette(v, faces, 64, sigma=1e-4)
    hard = rasterize_meshes(v, faces, 64).pix_to_face[..., 0] >= 0
    soft = alpha > 0.5
    iou = (soft & hard).sum() / (soft | hard).sum()
    assert iou > 0.95, f"IoU {iou:.4f}"
    assert (alpha[hard] > 0.5).float().mean() > 0.99, "holes inside the soft silhouette"


def test_soft_silhouette_truncation_and_none_agree_when_k_large():
    d = load_reference_tensors("mesh_sil_ico3deformed_persp_64")
    a = mesh_soft_silhouette(d["verts_ndc"], d["faces"], 64, perspective_correct=True, faces_per_pixel=None)
    b = mesh_soft_silhouette(d["verts_ndc"], d["faces"], 64, perspective_correct=True, faces_per_pixel=50)
    c = mesh_soft_silhouette(d["verts_ndc"], d["faces"], 64, perspective_correct=True, faces_per_pixel=1)
    assert_close(a, b, "faces_per_pixel None vs 50")
    assert (c <= b + 1e-6).all() and (b - c).max() > 1e-3, "K=1 must drop contributions"


def slow_softmax_blend(colors, fr, sigma, gamma, znear, zfar, bg):
    """Per pixel loop over K (SoftRas eq. 6 as written in PyTorch3D's blending.py docstring)."""
    N, H, W, K, C = colors.shape
    out = torch.zeros(N, H, W, C + 1, dtype=colors.dtype)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                probs, zinv, cols = [], [], []
                for k in range(K):
                    if fr.pix_to_face[n, i, j, k] < 0:
                        continue
                    probs.append(torch.sigmoid(-fr.dists[n, i, j, k] / sigma))
                    zinv.append((zfar - fr.zbuf[n, i, j, k]) / (zfar - znear))
                    cols.append(colors[n, i, j, k])
                zmax = max([1e-10] + [float(z) for z in zinv])
                num, den = torch.zeros(C, dtype=colors.dtype), 0.0
                for p, z, c in zip(probs, zinv, cols):
                    w = p * math.exp((float(z) - zmax) / gamma)
                    num, den = num + w * c, den + w
                delta = max(math.exp((1e-10 - zmax) / gamma), 1e-10)
                out[n, i, j, :C] = (num + delta * torch.tensor(bg, dtype=colors.dtype)) / (den + delta)
                alpha = 1.0
                for p in probs:
                    alpha = alpha * (1 - p)
                out[n, i, j, C] = 1 - alpha
    return out


def test_softmax_rgb_blend_matches_slow_loop_and_limits():
    verts, faces = tiny_mesh()
    fr = rasterize_meshes(verts, faces, 6, blur_radius=0.05, faces_per_pixel=3)
    colors = torch.rand(*fr.pix_to_face.shape, 3, dtype=torch.float64)
    bg = (0.2, 0.3, 0.4)
    got = softmax_rgb_blend(colors, fr, sigma=1e-2, gamma=0.1, znear=1.0, zfar=10.0, background_color=bg)
    ref = slow_softmax_blend(colors, fr, 1e-2, 0.1, 1.0, 10.0, bg)
    assert_close(got, ref, "softmax blend vs slow loop", atol=1e-10)
    # limits: empty pixel -> background, alpha 0; deep inside one opaque face, tiny sigma/gamma -> its colour
    empty = (fr.pix_to_face < 0).all(-1)
    assert empty.any() and torch.allclose(got[empty][:, :3], torch.tensor(bg, dtype=torch.float64))
    assert (got[empty][:, 3] == 0).all()  # exact: 1 - (empty product 1)
    sharp = softmax_rgb_blend(colors, fr, sigma=1e-6, gamma=1e-4, background_color=bg)
    inner = (fr.dists[..., 0] < -1e-3) & (fr.pix_to_face[..., 0] >= 0)
    assert inner.any()
    assert torch.allclose(sharp[..., :3][inner], colors[..., 0, :][inner], atol=1e-6)
    hard = hard_rgb_blend(colors, fr, bg)  # exact: a copy of the nearest face's colour, or the 0 alpha fill
    assert torch.equal(hard[..., :3][inner], colors[..., 0, :][inner]) and (hard[..., 3][empty] == 0).all()


def test_interpolate_linear_attributes_exact_ortho_and_perspective():
    # an attribute affine in view space is reproduced exactly at every covered pixel centre
    t = math.tan(math.radians(30))
    xy_view = torch.tensor([[-1.5, -1.2], [1.4, -1.3], [1.6, 1.5], [-1.3, 1.4]], dtype=torch.float64)
    Z = 3.0 - 0.3 * xy_view[:, 0] + 0.4 * xy_view[:, 1]
    X = torch.cat([xy_view, Z[:, None]], -1)
    A = torch.tensor([[0.2, -0.1, 0.5], [1.0, 0.3, -0.2]], dtype=torch.float64)
    attr = (X @ A.T)[None]  # (1, 4, 2)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    for persp in (True, False):
        ndc = (
            torch.cat([xy_view / (Z[:, None] * t), Z[:, None]], -1)
            if persp
            else torch.cat([xy_view / 2, Z[:, None]], -1)
        )
        fr = rasterize_meshes(ndc[None], faces, 16, perspective_correct=persp)
        vals = interpolate_face_attributes(
            fr.pix_to_face, fr.bary_coords, face_attributes_from_verts(attr, faces)
        )
        c = ndc_pixel_centers(16, dtype=torch.float64)
        z = fr.zbuf[0, ..., 0]
        xv = c[..., 0] * z * t if persp else c[..., 0] * 2
        yv = c[..., 1] * z * t if persp else c[..., 1] * 2
        true = torch.stack([xv, yv, z], -1) @ A.T
        hit = fr.pix_to_face[0, ..., 0] >= 0
        assert hit.sum() > 100
        assert_close(vals[0, ..., 0, :][hit], true[hit], f"affine attribute persp={persp}", atol=1e-6)
        assert (vals[0, ..., 0, :][~hit] == 0).all()  # exact: masked to 0


def ramp_fragments():
    verts = torch.tensor([[[-0.8, -0.7, 2.0], [0.75, -0.8, 2.0], [0.7, 0.8, 2.0], [-0.85, 0.6, 2.0]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    fr = rasterize_meshes(verts, faces, 16)
    c = ndc_pixel_centers(16)
    return verts, faces, fr, c


def test_uv_texture_linear_ramp_exact():
    verts, faces, fr, c = ramp_fragments()
    Ht, Wt = 9, 13
    uvs = torch.stack([0.1 + 0.4 * (verts[0, :, 0] + 1), 0.2 + 0.3 * (verts[0, :, 1] + 1)], -1)[None]
    # align_corners=True: texel column c sits at u = c/(Wt-1); row 0 (top) is v = 1
    u_img = (torch.arange(Wt) / (Wt - 1)).expand(Ht, Wt)
    v_img = (1 - torch.arange(Ht) / (Ht - 1))[:, None].expand(Ht, Wt)
    tex = torch.stack([u_img, v_img])[None]  # (1, 2, Ht, Wt)
    out = sample_texture_uv(fr, uvs, faces, tex)
    hit = fr.pix_to_face[0, ..., 0] >= 0
    true = torch.stack([0.1 + 0.4 * (c[..., 0] + 1), 0.2 + 0.3 * (c[..., 1] + 1)], -1)
    assert_close(out[0, ..., 0, :][hit], true[hit], "uv ramp", atol=1e-5)
    assert (out[0, ..., 0, :][~hit] == 0).all()  # exact: masked to 0


def test_image_texture_at_vertex_coordinates():
    verts, faces, fr, c = ramp_fragments()
    Hi, Wi = 20, 30
    # image whose channels are the grid_sample (align_corners=False) coordinates of each texel centre
    gx = ((2 * torch.arange(Wi) + 1) / Wi - 1).expand(Hi, Wi)
    gy = ((2 * torch.arange(Hi) + 1) / Hi - 1)[:, None].expand(Hi, Wi)
    image = torch.stack([gx, gy])[None]
    coords = torch.stack([-0.6 * verts[0, :, 0], -0.5 * verts[0, :, 1]], -1)[
        None
    ]  # NDC +X left/+Y up -> image
    out = sample_image_texture(fr, faces, coords, image)
    hit = fr.pix_to_face[0, ..., 0] >= 0
    true = torch.stack([-0.6 * c[..., 0], -0.5 * c[..., 1]], -1)
    assert_close(out[0, ..., 0, :][hit], true[hit], "image texture at vertex coords", atol=1e-5)
    vc = sample_vertex_colors(image, coords)
    assert vc.shape == (1, 4, 2)
    assert_close(vc, coords, "sample_vertex_colors", atol=1e-5)


@pytest.mark.parametrize("method", ["faces", "depth"])
def test_vertex_visibility_sphere(method):
    from geometry.mesh import ico_sphere

    verts, faces = ico_sphere(3)
    r, zc = 0.7, 3.0
    v = (verts * r + torch.tensor([0.1, 0.0, zc]))[None]
    # the depth test compares with the zbuf at the nearest pixel centre: eps must cover slope * half a pixel
    eps, lim_front, lim_back = (1e-2, -0.25, 0.05) if method == "faces" else (5e-2, -0.5, 0.2)
    vis = vertex_visibility(v, faces, image_size=96, method=method, eps=eps)
    front = verts[:, 2] < lim_front  # facing the camera (view +Z into the screen)
    back = verts[:, 2] > lim_back
    assert vis[0, front].all(), f"{int((~vis[0, front]).sum())} front vertices hidden"
    assert not vis[0, back].any(), f"{int(vis[0, back].sum())} back vertices visible"
    col, row = ndc_to_pixel(v[0, :, :2], 96).round().long().unbind(-1)
    centers = ndc_pixel_centers(96)
    assert torch.allclose(centers[row, col], v[0, :, :2], atol=1 / 96 + 1e-6), "vertex -> pixel lookup"


def test_vertex_visibility_checks_method_first():
    # regression: an unknown method was only reported after rasterizing (or behind another error)
    from geometry.mesh import ico_sphere

    verts, faces = ico_sphere(1)
    with pytest.raises(ValueError, match="method"):
        vertex_visibility(verts[None] + torch.tensor([0.0, 0.0, 3.0]), faces, method="zbuffer")


def test_shading_shape_errors():
    verts, faces, fr, _ = ramp_fragments()
    with pytest.raises(ValueError, match="pix_to_face"):
        soft_silhouette(fr.dists)
    with pytest.raises(ValueError, match="colors"):
        softmax_rgb_blend(torch.zeros(1, 16, 16, 3), fr)
    with pytest.raises(ValueError, match="face_attributes"):
        interpolate_face_attributes(fr.pix_to_face, fr.bary_coords, torch.zeros(2, 4, 3))
    assert isinstance(fr, Fragments)
