"""TTP's point regressor phi (Kokkinos and Kokkinos 2021, Sec. 4 "Network Architecture"): a ResNet18
encoder to a 4x4x256 feature map and a fully connected layer to the 2D position u and the visibility v of
every template vertex. A plain nn.Module, usable without Lightning.

Layout from the official code (fkokkinos/to_the_point_3d_reconstruction, nnutils/mesh_net_lpl_v2_tex.py,
`Encoder`, `TexturePredictor_2d`, and main.py's forward): ResNet18's four blocks (stride 32), a 4x4
convolution of stride 2 to 256 channels with batch norm and leaky ReLU (CMR's `nb.conv2d`), then a linear
map of the flattened 4x4x256 map to 3 numbers per vertex, initialized near zero (normal(0, 0.01) * 0.01,
bias 0), u = tanh(first two), v = sigmoid(third).
"""

from __future__ import annotations

import os

import timm
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PointRegressor(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> u (B, N, 2) normalized image coordinates (x right, y down, in (-1, 1))
    and v (B, N) visibilities in (0, 1).

    Args:
        num_points: N, the template's vertex count.
        pretrained_path: local file of timm's resnet18 weights (ImageNet), None = random initialization;
            nothing is downloaded.
        feature_size: side of the feature map the head reads (4 in the paper, at 256x256 inputs; other input
            sizes are pooled to it).
    """

    def __init__(self, num_points: int, pretrained_path: str | None = None, feature_size: int = 4):
        super().__init__()
        if num_points < 1:
            raise ValueError(f"num_points: expected >= 1, got {num_points}")
        kwargs = {}
        if pretrained_path is not None:
            if not os.path.isfile(pretrained_path):
                raise FileNotFoundError(
                    f"model.pretrained_path: no file at {pretrained_path!r}; put the weights of timm's "
                    "'resnet18' (a .pth/.bin/.safetensors state dict) there, or set it to null"
                )
            kwargs["pretrained_cfg_overlay"] = dict(file=pretrained_path)
        self.encoder = timm.create_model(
            "resnet18", features_only=True, out_indices=(4,), pretrained=pretrained_path is not None, **kwargs
        )
        self.enc_conv = nn.Sequential(
            nn.Conv2d(512, 256, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.feature_size = int(feature_size)
        self.head = nn.Linear(256 * self.feature_size**2, num_points * 3)
        with (
            torch.no_grad()
        ):  # the official TexturePredictor_2d: conv1x1 normal(0, 0.01), then weight *= 0.01
            self.head.weight.normal_(0.0, 0.01).mul_(0.01)
            self.head.bias.zero_()
        self.num_points = num_points
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) -> the (B, 256, 4, 4) feature map z."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"Expected image of shape (B, 3, H, W), got {tuple(image.shape)}")
        x = self.encoder((image - self.mean) / self.std)[-1]  # (B, 512, H/32, W/32)
        z = self.enc_conv(x)  # (B, 256, H/64, W/64)
        if z.shape[-2:] != (self.feature_size, self.feature_size):
            z = F.adaptive_avg_pool2d(z, self.feature_size)
        return z

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.features(image).flatten(1)).view(image.shape[0], self.num_points, 3)
        return torch.tanh(out[..., :2]), torch.sigmoid(out[..., 2])
