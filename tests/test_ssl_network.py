"""Networks of the SSL point-cloud family (lightning_modules/ssl/network.py): the official architectures
(ssl_3d_recon src/net_archs.py) by parameter count, output shapes and ranges, angle mapping, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import TOL, assert_close
from lightning_modules.ssl.network import (
    OFFICIAL_ELEVATION_RANGE_DEG,
    PoseNet,
    ReconstructionNet,
    angles_from_logits,
)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_reconstruction_net_parameter_count_matches_official_layers():
    # net_archs.py recon_net_tiny_rgb_skipconn at 64 x 64, bottleneck 128, 1024 points:
    # shape: conv 3-32 (3x3), 32-64 (3x3), 64-128 (3x3), 128-256 (5x5) -> 4x4x256, FC 128, 128, 128, 3072
    # colour: conv 3-32, 32-64 (3x3) -> 16x16x64, FC 128, 128, 128, [concat 128 + 128] FC 128, 3072
    shape = _conv(3, 32, 3) + _conv(32, 64, 3) + _conv(64, 128, 3) + _conv(128, 256, 5)
    shape += _fc(4 * 4 * 256, 128) + _fc(128, 128) + _fc(128, 128) + _fc(128, 3 * 1024)
    color = _conv(3, 32, 3) + _conv(32, 64, 3)
    color += _fc(16 * 16 * 64, 128) + _fc(128, 128) + _fc(128, 128) + _fc(256, 128) + _fc(128, 3 * 1024)
    net = ReconstructionNet(n_points=1024, bottleneck=128, image_size=64)
    assert sum(p.numel() for p in net.parameters()) == shape + color


def test_pose_net_parameter_count_matches_official_layers():
    # net_archs.py pose_net: the same four convolutions, FC 128, 128, 128, 2
    expected = _conv(3, 32, 3) + _conv(32, 64, 3) + _conv(64, 128, 3) + _conv(128, 256, 5)
    expected += _fc(4 * 4 * 256, 128) + _fc(128, 128) + _fc(128, 128) + _fc(128, 2)
    assert sum(p.numel() for p in PoseNet().parameters()) == expected


def test_reconstruction_outputs_shapes_ranges_and_features():
    torch.manual_seed(0)
    net = ReconstructionNet(n_points=64, bottleneck=16, image_size=32)
    image = torch.rand(3, 3, 32, 32)
    out = net(image)
    assert out.points.shape == (3, 64, 3)
    assert out.colors.shape == (3, 64, 3)
    assert out.features.shape == (3, 16)
    assert bool(((out.colors >= 0) & (out.colors <= 1)).all())
    # encode() is the forward's shape latent; with_color appends the colour latent (official enc_feat)
    assert_close(net.encode(image), out.features, "encode", **TOL[torch.float32])
    both = net.encode(image, with_color=True)
    assert both.shape == (3, 32)
    assert_close(both[:, :16], out.features, "encode with colour", **TOL[torch.float32])


def test_networks_accept_non_square_images_and_reject_wrong_ones():
    net = ReconstructionNet(n_points=8, bottleneck=8, image_size=(32, 48))
    assert net(torch.rand(1, 3, 32, 48)).points.shape == (1, 8, 3)
    with pytest.raises(ValueError, match="image"):
        net(torch.rand(1, 3, 48, 32))
    with pytest.raises(ValueError, match="image"):
        PoseNet(image_size=32)(torch.rand(1, 1, 32, 32))


def test_angles_from_logits_analytic():
    logits = torch.tensor(
        [[0.0, 0.0], [math.atanh(0.5), math.atanh(-0.5)], [50.0, -50.0]], dtype=torch.float64
    )
    out = angles_from_logits(logits, (-180.0, 180.0), (-20.0, 40.0))
    # centre at 0: az 0, el 10 deg; tanh = +-0.5: az 90 deg, el 10 - 15 = -5 deg; saturation: the bounds
    expected = torch.deg2rad(torch.tensor([[0.0, 10.0], [90.0, -5.0], [180.0, -20.0]], dtype=torch.float64))
    assert_close(out, expected, "angles", **TOL[torch.float64])
    # the official parametrisation pi * tanh for both angles
    official = angles_from_logits(logits, (-180.0, 180.0), OFFICIAL_ELEVATION_RANGE_DEG)
    assert_close(official, math.pi * torch.tanh(logits), "pi tanh", **TOL[torch.float64])
    with pytest.raises(ValueError, match="elevation_range_deg"):
        angles_from_logits(logits, (-180.0, 180.0), (40.0, -20.0))


def test_pose_net_outputs_in_range_even_when_saturated():
    torch.manual_seed(0)
    net = PoseNet(bottleneck=16, image_size=32)
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([1e3, -1e3]))  # saturate: az -> 180 deg, el -> -20 deg
    pose = net(torch.rand(4, 3, 32, 32))
    assert pose.shape == (4, 2)
    lo = torch.deg2rad(torch.tensor([-180.0, -20.0]))
    hi = torch.deg2rad(torch.tensor([180.0, 40.0]))
    assert bool(((pose >= lo - 1e-6) & (pose <= hi + 1e-6)).all())
    assert_close(pose[:, 1], torch.full((4,), math.radians(-20.0)), "saturated el", atol=1e-6, rtol=0)


def test_gradients_finite_through_both_networks():
    torch.manual_seed(0)
    rec = ReconstructionNet(n_points=32, bottleneck=16, image_size=32)
    pose = PoseNet(bottleneck=16, image_size=32)
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = rec(image)
    loss = out.points.square().mean() + out.colors.mean() + pose(image).square().sum()
    loss.backward()
    grads = [p.grad for p in [*rec.parameters(), *pose.parameters()]]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert bool(torch.isfinite(image.grad).all()) and float(image.grad.abs().sum()) > 0
