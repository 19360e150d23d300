"""GP2's depth network: a Light-Weight RefineNet decoder on a timm feature backbone.

Light-Weight RefineNet (Nekrasov et al., BMVC 2018) with the two changes of GP2 (Romanov et al., 2020,
Sec. 4 and the official code, models/decoders.py of saic-vul/geometry-preserving-de):
  1. the 1x1 convolutions that fuse a deeper level into a shallower one map to the *shallower level's own*
     channel count (no reduction to a fixed 256 channels);
  2. the chained residual pooling (CRP) output is divided by (number of chains + 1), which keeps the
     activations' scale independent of the number of chains.
The decoder walks from the stride-32 level to the stride-2 level (4 CRP chains per level, as the paper's
"LRN4" models), a 1x1 head predicts log-disparity at half resolution and a bilinear upsampling brings it
to the input size. The module is a plain nn.Module usable without Lightning.
"""

from __future__ import annotations

import os

import timm
import torch
import torch.nn.functional as F
from torch import nn

# Backbones of the paper's Table 3 (timm names), the ones `model.backbone` accepts: each builds with timm's
# features_only at strides 2, 4, 8, 16, 32, which the decoder needs. Any other name (an "hf-hub:..." one
# included) is refused before timm is called, so nothing is ever downloaded for a typo.
BACKBONES = (
    "mobilenetv2_100",
    "efficientnet_lite0",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
)


def conv1x1_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class ChainedResidualPooling(nn.Module):
    """CRP block: x + sum_k (conv1x1 . maxpool5)^k (x), divided by (n_chains + 1) (GP2's normalization).

    x: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, n_chains: int = 4):
        super().__init__()
        self.adapt = conv1x1_bn(channels, channels)
        self.pool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        self.convs = nn.ModuleList(conv1x1_bn(channels, channels) for _ in range(n_chains))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapt(x)
        out, top = x, x
        for conv in self.convs:
            top = conv(self.pool(top))
            out = out + top
        return out / (len(self.convs) + 1)


class LightWeightRefineNet(nn.Module):
    """Backbone + LRN decoder. forward: image (B, 3, H, W) in [0, 1] -> log-disparity (B, 1, H, W).

    Args:
        backbone: timm model name, one of BACKBONES (ValueError otherwise, before timm is called).
        pretrained_path: local weights file for the backbone (timm's `pretrained_cfg_overlay=dict(file=...)`);
            None = random initialization. Nothing is downloaded.
        n_chains: CRP chains per level (4 in GP2's LRN4 models).
        normalize_input: subtract/divide by the backbone's ImageNet mean/std inside the network.
    """

    def __init__(
        self,
        backbone: str = "mobilenetv2_100",
        pretrained_path: str | None = None,
        n_chains: int = 4,
        normalize_input: bool = True,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"model.backbone: expected one of {', '.join(BACKBONES)}, got {backbone!r}")
        kwargs = {}
        if pretrained_path is not None:
            if not os.path.isfile(pretrained_path):
                raise FileNotFoundError(
                    f"model.pretrained_path: no file at {pretrained_path!r}; put the timm weights of "
                    f"{backbone!r} (a .pth/.bin/.safetensors state dict) there, or set it to null"
                )
            kwargs["pretrained_cfg_overlay"] = dict(file=pretrained_path)
        try:
            self.encoder = timm.create_model(
                backbone, features_only=True, pretrained=pretrained_path is not None, **kwargs
            )
        except RuntimeError as e:  # timm raises RuntimeError for unknown model names
            raise ValueError(f"model.backbone: timm cannot build {backbone!r} ({e})") from e
        channels = list(self.encoder.feature_info.channels())
        reductions = list(self.encoder.feature_info.reduction())
        if reductions[0] != 2:
            raise ValueError(
                f"model.backbone: {backbone!r} has no stride-2 feature level (strides {reductions})"
            )
        self.channels = channels
        self.crp = nn.ModuleList(ChainedResidualPooling(c, n_chains) for c in channels)
        # adapters[i] maps level i+1 (deeper) to level i's channel count (GP2 change 1).
        self.adapters = nn.ModuleList(
            nn.Conv2d(channels[i + 1], channels[i], 1) for i in range(len(channels) - 1)
        )
        self.head = nn.Conv2d(channels[0], 1, 1)
        cfg = self.encoder.pretrained_cfg
        self.register_buffer(
            "mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), False
        )
        self.register_buffer(
            "std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), False
        )
        self.normalize_input = normalize_input

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image: expected shape (B, 3, H, W), got {tuple(image.shape)}")
        x = (image - self.mean) / self.std if self.normalize_input else image
        feats = self.encoder(x)  # list of (B, C_l, H / 2^(l+1), W / 2^(l+1))
        y = self.crp[-1](feats[-1])
        for level in range(len(feats) - 2, -1, -1):
            f = feats[level]
            up = F.interpolate(
                self.adapters[level](y), size=f.shape[-2:], mode="bilinear", align_corners=False
            )
            y = self.crp[level](up + f)
        log_disp = self.head(y)  # (B, 1, H/2, W/2)
        return F.interpolate(log_disp, size=image.shape[-2:], mode="bilinear", align_corners=False)
