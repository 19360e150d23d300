"""Networks of "From Image Collections to Point Clouds with Self-supervised Shape and Pose Networks"
(Navaneet et al., CVPR 2020), as plain `nn.Module`s (no Lightning).

Architectures follow the official code, github.com/val-iisc/ssl_3d_recon `src/net_archs.py`
(`recon_net_tiny_rgb_skipconn`, `pose_net`), which `main.py` and `multiple_mask_main.py` train at
64 x 64 input (`--H 64 --W 64`), `--bottleneck 128`, `--N_PTS 1024`:

* `ReconstructionNet` (N_rec): image (B, 3, H, W) in [0, 1] -> points (B, P, 3) and colours (B, P, 3) in [0, 1].
  Shape branch: conv 3x3/2 32, conv 3x3/2 64, conv 3x3/2 128, conv 5x5/2 256 (ReLU, 'same' padding), FC
  `bottleneck` (the shape latent), FC 128, FC 128 (`x1`), FC 3P linear. Colour branch: conv 3x3/2 32,
  conv 3x3/2 64, FC `bottleneck`, FC 128, FC 128, concat with the shape branch's `x1`, FC 128, FC 3P,
  sigmoid (the skip connection of the official name). ReLU after every hidden FC layer.
* `PoseNet` (N_pose): image -> (azimuth, elevation) in radians, (B, 2). Same four convolutions, FC
  `bottleneck`, FC 128, FC 128, FC 2, then a tanh scaling into the angle ranges (`angles_from_logits`).

Differences from the official TF1 code, on purpose: PyTorch's default initialisation (tflearn used
uniform-scaling convolutions and N(0, 0.02) FC weights); no weight decay inside the networks (the tflearn
`weight_decay` regularisers of net_archs.py are collected but never added to the minimised losses of
main.py, so they did not act); symmetric 'same' padding (TF pads the extra row/column at the end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from geometry.cameras import _check_shape, image_hw

__all__ = [
    "AZIMUTH_RANGE_DEG",
    "ELEVATION_RANGE_DEG",
    "OFFICIAL_ELEVATION_RANGE_DEG",
    "PoseNet",
    "Reconstruction",
    "ReconstructionNet",
    "angles_from_logits",
]

# Ranges of the random views of the official training (main.py `get_feed_dict`: "azimuth-->[-180,180],
# elevation-->[-20,40]"), used here as the ranges of the pose network's outputs.
AZIMUTH_RANGE_DEG: tuple[float, float] = (-180.0, 180.0)
ELEVATION_RANGE_DEG: tuple[float, float] = (-20.0, 40.0)
# The official pose_net maps both angles with `pi * tanh(x)` (net_archs.py "Normalize to range [-pi,pi]"),
# i.e. elevation in [-180, 180]: pass elevation_range=OFFICIAL_ELEVATION_RANGE_DEG to reproduce it.
OFFICIAL_ELEVATION_RANGE_DEG: tuple[float, float] = (-180.0, 180.0)


class Reconstruction(NamedTuple):
    """Output of `ReconstructionNet`: points (B, P, 3), colours (B, P, 3) in [0, 1], features (B, D)."""

    points: Tensor
    colors: Tensor
    features: Tensor


def _conv_stack(channels: Sequence[int], kernels: Sequence[int]) -> nn.Sequential:
    """Stride-2 'same' convolutions with ReLU: channels[0] -> channels[1] -> ... (len(kernels) layers)."""
    layers: list[nn.Module] = []
    for c_in, c_out, k in zip(channels[:-1], channels[1:], kernels):
        layers += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _mlp(sizes: Sequence[int], last_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _conv_out(size: int, kernels: Sequence[int]) -> int:
    for k in kernels:
        size = (size + 2 * (k // 2) - k) // 2 + 1
    return size


_ENCODER_CHANNELS = (3, 32, 64, 128, 256)  # net_archs.py conv_2d layers of the shape branch / pose_net
_ENCODER_KERNELS = (3, 3, 3, 5)
_COLOR_CHANNELS = (3, 32, 64)  # net_archs.py colour ("feature") branch
_COLOR_KERNELS = (3, 3)


def _check_image(image: Tensor, image_size: tuple[int, int]) -> None:
    _check_shape(image, "image", ["B", 3, image_size[0], image_size[1]])


class ReconstructionNet(nn.Module):
    """N_rec of the paper: a coloured point cloud from one image (official `recon_net_tiny_rgb_skipconn`).

    Args:
        n_points: P, points of the cloud (official `--N_PTS 1024`).
        bottleneck: width of the latent FC layers (official `--bottleneck 128`).
        image_size: int or (H, W) of the input (official 64); fixes the first FC layers' input size.
    Forward:
        image (B, 3, H, W) in [0, 1] -> Reconstruction(points (B, P, 3), colors (B, P, 3) in [0, 1],
        features (B, bottleneck) the shape latent, see `encode`).
    """

    def __init__(self, n_points: int = 1024, bottleneck: int = 128, image_size: int | Sequence[int] = 64):
        super().__init__()
        if n_points < 1 or bottleneck < 1:
            raise ValueError(f"n_points and bottleneck must be >= 1, got {n_points}, {bottleneck}")
        self.n_points = int(n_points)
        self.image_size = image_hw(image_size)
        H, W = self.image_size
        n_shape = _ENCODER_CHANNELS[-1] * _conv_out(H, _ENCODER_KERNELS) * _conv_out(W, _ENCODER_KERNELS)
        n_color = _COLOR_CHANNELS[-1] * _conv_out(H, _COLOR_KERNELS) * _conv_out(W, _COLOR_KERNELS)
        self.shape_encoder = _conv_stack(_ENCODER_CHANNELS, _ENCODER_KERNELS)
        self.shape_latent = _mlp([n_shape, bottleneck], last_relu=True)  # official `enc_pcl`
        self.shape_hidden = _mlp([bottleneck, 128, 128], last_relu=True)  # ends in official `x1`
        self.shape_out = nn.Linear(128, 3 * n_points)
        self.color_encoder = _conv_stack(_COLOR_CHANNELS, _COLOR_KERNELS)
        self.color_latent = _mlp([n_color, bottleneck], last_relu=True)
        self.color_hidden = _mlp([bottleneck, 128, 128], last_relu=True)
        self.color_out = _mlp([128 + 128, 128, 3 * n_points], last_relu=False)  # after concat with `x1`

    def encode(self, image: Tensor, with_color: bool = False) -> Tensor:
        """Shape latent of the reconstruction encoder, the feature space of nearest-neighbour mining.

        The paper (Sec. 3.3) mines neighbours by Euclidean distance in "the encoded features of our proposed
        reconstruction network"; the official `recon_net(..., return_feat=True)` returns the shape latent
        `enc_pcl` concatenated with the colour branch's latent (`with_color=True` here).
        Args:
            image: (B, 3, H, W). Returns: (B, bottleneck), or (B, 2 * bottleneck) with_color.
        """
        _check_image(image, self.image_size)
        z = self.shape_latent(self.shape_encoder(image).flatten(1))
        if with_color:
            z = torch.cat([z, self.color_latent(self.color_encoder(image).flatten(1))], dim=1)
        return z

    def forward(self, image: Tensor) -> Reconstruction:
        _check_image(image, self.image_size)
        B = image.shape[0]
        z = self.shape_latent(self.shape_encoder(image).flatten(1))  # (B, bottleneck)
        x1 = self.shape_hidden(z)  # (B, 128)
        points = self.shape_out(x1).view(B, self.n_points, 3)
        y = self.color_hidden(self.color_latent(self.color_encoder(image).flatten(1)))  # (B, 128)
        colors = torch.sigmoid(self.color_out(torch.cat([x1, y], dim=1))).view(B, self.n_points, 3)
        return Reconstruction(points, colors, z)


def angles_from_logits(
    logits: Tensor,
    azimuth_range_deg: tuple[float, float] = AZIMUTH_RANGE_DEG,
    elevation_range_deg: tuple[float, float] = ELEVATION_RANGE_DEG,
) -> Tensor:
    """Map unbounded logits to (azimuth, elevation) in radians: `lo + (hi - lo) * (1 + tanh(x)) / 2`.

    With a symmetric range (-a, a) this is the official `a * tanh(x)` (net_archs.py pose_net: `pi * tanh`).
    Args:
        logits: (B, 2). azimuth_range_deg, elevation_range_deg: (lo, hi) in degrees, lo < hi.
    Returns:
        (B, 2) radians, column 0 azimuth in the open azimuth range, column 1 elevation.
    """
    _check_shape(logits, "logits", ["B", 2])
    rows = []
    for name, (lo, hi) in (
        ("azimuth_range_deg", azimuth_range_deg),
        ("elevation_range_deg", elevation_range_deg),
    ):
        if not lo < hi:
            raise ValueError(f"{name} must be (lo, hi) with lo < hi, got {(lo, hi)}")
        rows.append((math.radians(lo), math.radians(hi)))
    lo = logits.new_tensor([rows[0][0], rows[1][0]])
    hi = logits.new_tensor([rows[0][1], rows[1][1]])
    return (lo + hi) / 2 + (hi - lo) / 2 * torch.tanh(logits)


class PoseNet(nn.Module):
    """N_pose of the paper: the camera viewpoint of one image (official `pose_net`).

    Args:
        bottleneck: width of the first FC layer (official 128).
        image_size: int or (H, W) of the input (official 64).
        azimuth_range_deg, elevation_range_deg: output ranges (see `angles_from_logits`); the defaults are
            the ranges of the official random views; the official network itself used (-180, 180) for both
            (`OFFICIAL_ELEVATION_RANGE_DEG`).
    Forward:
        image (B, 3, H, W) -> (B, 2) (azimuth, elevation) in radians, the `pose` convention of the data.
    """

    def __init__(
        self,
        bottleneck: int = 128,
        image_size: int | Sequence[int] = 64,
        azimuth_range_deg: tuple[float, float] = AZIMUTH_RANGE_DEG,
        elevation_range_deg: tuple[float, float] = ELEVATION_RANGE_DEG,
    ):
        super().__init__()
        self.image_size = image_hw(image_size)
        self.azimuth_range_deg = tuple(float(v) for v in azimuth_range_deg)
        self.elevation_range_deg = tuple(float(v) for v in elevation_range_deg)
        angles_from_logits(torch.zeros(1, 2), self.azimuth_range_deg, self.elevation_range_deg)  # validates
        H, W = self.image_size
        n_flat = _ENCODER_CHANNELS[-1] * _conv_out(H, _ENCODER_KERNELS) * _conv_out(W, _ENCODER_KERNELS)
        self.encoder = _conv_stack(_ENCODER_CHANNELS, _ENCODER_KERNELS)
        self.head = _mlp([n_flat, bottleneck, 128, 128, 2], last_relu=False)

    def logits(self, image: Tensor) -> Tensor:
        """(B, 2) pre-tanh outputs."""
        _check_image(image, self.image_size)
        return self.head(self.encoder(image).flatten(1))

    def forward(self, image: Tensor) -> Tensor:
        return angles_from_logits(self.logits(image), self.azimuth_range_deg, self.elevation_range_deg)
