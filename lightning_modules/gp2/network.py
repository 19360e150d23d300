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

Each backbone is the official one (saic-vul/geometry-preserving-de models/architectures.py), read at the
official feature levels, so GP2's released weights load into it (lightning_modules/gp2/official.py) and, on
images whose sides are multiples of 32 (the official evaluation's sizes), give the official outputs.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.gp2.dpt import DPT_VARIANTS, DPTDepth

# GP2 normalizes every image with the ImageNet mean and std, whatever the backbone (official
# datasets/validation_datasets.py, BaseDataset defaults), EfficientNet-Lite0 included.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STEM = "stem"  # a feature tap on the stem's output (conv_stem + bn1 + activation)


class EncoderSpec(NamedTuple):
    """A backbone: the timm model that builds it and where its five levels (strides 2, 4, 8, 16, 32) are
    read: STEM, or (stage, block), the output of timm's `blocks[stage][block]`."""

    timm_name: str
    taps: tuple


# The backbones of the paper's Table 3, the names `model.backbone` accepts. Any other name (an "hf-hub:..."
# one included) is refused before timm is called, so nothing is ever downloaded for a typo.
#   mobilenetv2_100: torchvision's MobileNetV2 in the official code (models/encoders.py MobileNetV2Encoder:
#     the features split before every stride-2 block, the 1280-channel last conv left out), the same network
#     as timm's mobilenetv2_100 read at the ends of its stages 0, 1, 2, 4, 6 (16, 24, 32, 96, 320 channels).
#   efficientnet_lite0: geffnet.tf_efficientnet_lite0 (TF port, "same" padding) read after blocks 0, 1, 2,
#     3 and 6 (models/encoders.py EfficientNetLite0Encoder: 16, 24, 40, 80, 320 channels; the stride-16
#     level is the 80-channel stage, not the 112-channel one).
#   efficientnet_b0 ... b5: segmentation_models_pytorch 0.1.0's "efficientnet-bN" encoder, i.e. the TF-ported
#     EfficientNets of efficientnet-pytorch 0.6.3 ("same" padding), read at the stem (stride 2, before any
#     block) and after the flat block indices stage_idxs - 1 (smp encoders/efficientnet.py): for B1-B5 the
#     ends of stages 1, 2, 4, 6; for B0 stage_idxs (3, 5, 9) puts the stride-16 level after flat block 8,
#     the first block of stage 4.
ENCODERS: dict[str, EncoderSpec] = {
    "mobilenetv2_100": EncoderSpec("mobilenetv2_100", ((0, -1), (1, -1), (2, -1), (4, -1), (6, -1))),
    "efficientnet_lite0": EncoderSpec("tf_efficientnet_lite0", ((0, -1), (1, -1), (2, -1), (3, -1), (6, -1))),
    "efficientnet_b0": EncoderSpec("tf_efficientnet_b0", (STEM, (1, -1), (2, -1), (4, 0), (6, -1))),
    **{
        f"efficientnet_b{i}": EncoderSpec(f"tf_efficientnet_b{i}", (STEM, (1, -1), (2, -1), (4, -1), (6, -1)))
        for i in range(1, 6)
    },
}
BACKBONES = tuple(ENCODERS)


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


def _out_channels(block: nn.Module) -> int:
    """Output channels of a timm block: its last convolution's (conv_pwl, or conv_pw of a DS block)."""
    return [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class LightWeightRefineNet(nn.Module):
    """Backbone + LRN decoder. forward: image (B, 3, H, W) in [0, 1] -> log-disparity (B, 1, H, W).

    Args:
        backbone: one of BACKBONES (ValueError otherwise, before timm is called); ENCODERS says which timm
            model builds it (e.g. efficientnet_b0 is timm's TF port tf_efficientnet_b0, as GP2's encoder).
        pretrained_path: local weights file of that timm model (timm's `pretrained_cfg_overlay=dict(file=...)`);
            None = random initialization. Nothing is downloaded.
        n_chains: CRP chains per level (4 in GP2's LRN4 models).
        normalize_input: subtract/divide by the ImageNet mean/std inside the network (GP2's preprocessing).
    """

    def __init__(
        self,
        backbone: str = "mobilenetv2_100",
        pretrained_path: str | None = None,
        n_chains: int = 4,
        normalize_input: bool = True,
    ):
        super().__init__()
        if backbone not in ENCODERS:
            raise ValueError(f"model.backbone: expected one of {', '.join(BACKBONES)}, got {backbone!r}")
        spec = ENCODERS[backbone]
        kwargs = {}
        if pretrained_path is not None:
            if not os.path.isfile(pretrained_path):
                raise FileNotFoundError(
                    f"model.pretrained_path: no file at {pretrained_path!r}; put the weights of timm's "
                    f"{spec.timm_name!r} (the model behind backbone {backbone!r}; a .pth/.bin/.safetensors "
                    f"state dict) there, or set it to null"
                )
            kwargs["pretrained_cfg_overlay"] = dict(file=pretrained_path)
        try:
            # features_only: the stem and the blocks, without the classification head (all used below)
            self.encoder = timm.create_model(
                spec.timm_name, features_only=True, pretrained=pretrained_path is not None, **kwargs
            )
        except RuntimeError as e:  # timm raises RuntimeError for unknown model names
            raise ValueError(f"model.backbone: timm cannot build {spec.timm_name!r} ({e})") from e
        stages = [len(s) for s in self.encoder.blocks]
        self.taps = tuple(t if t == STEM else (t[0], t[1] % stages[t[0]]) for t in spec.taps)
        if self.taps[-1] != (len(stages) - 1, stages[-1] - 1):  # every block feeds the decoder
            raise ValueError(f"model.backbone: {backbone!r} taps {self.taps} end before the last block")
        self.channels = [
            self.encoder.bn1.num_features if t == STEM else _out_channels(self.encoder.blocks[t[0]][t[1]])
            for t in self.taps
        ]
        channels = self.channels
        self.crp = nn.ModuleList(ChainedResidualPooling(c, n_chains) for c in channels)
        # adapters[i] maps level i+1 (deeper) to level i's channel count (GP2 change 1).
        self.adapters = nn.ModuleList(
            nn.Conv2d(channels[i + 1], channels[i], 1) for i in range(len(channels) - 1)
        )
        self.head = nn.Conv2d(channels[0], 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.normalize_input = normalize_input

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalized image (B, 3, H, W) -> the five levels, (B, C_l, H / 2^(l+1), W / 2^(l+1)), l = 0..4."""
        x = self.encoder.bn1(self.encoder.conv_stem(x))  # timm's bn1 holds the activation
        feats = [x] if self.taps[0] == STEM else []
        for s, stage in enumerate(self.encoder.blocks):
            for b, block in enumerate(stage):
                x = block(x)
                if (s, b) in self.taps:
                    feats.append(x)
        return feats

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image: expected shape (B, 3, H, W), got {tuple(image.shape)}")
        x = (image - self.mean) / self.std if self.normalize_input else image
        feats = self.encode(x)  # list of (B, C_l, H / 2^(l+1), W / 2^(l+1))
        y = self.crp[-1](feats[-1])
        for level in range(len(feats) - 2, -1, -1):
            f = feats[level]
            up = F.interpolate(
                self.adapters[level](y), size=f.shape[-2:], mode="bilinear", align_corners=False
            )
            y = self.crp[level](up + f)
        log_disp = self.head(y)  # (B, 1, H/2, W/2)
        return F.interpolate(log_disp, size=image.shape[-2:], mode="bilinear", align_corners=False)


def build_network(backbone: str, pretrained_path: str | None = None, n_chains: int = 4) -> nn.Module:
    """The depth network `model.backbone` names: a DPT (lightning_modules/gp2/dpt.py, DPT_VARIANTS) or GP2's
    LightWeightRefineNet (BACKBONES; n_chains is the LRN's, unused by a DPT). Both map an image
    (B, 3, H, W) in [0, 1] to log-disparity (B, 1, H, W)."""
    if backbone in DPT_VARIANTS:
        return DPTDepth(backbone, pretrained_path)
    if backbone not in ENCODERS:
        names = ", ".join((*BACKBONES, *DPT_VARIANTS))
        raise ValueError(f"model.backbone: expected one of {names}, got {backbone!r}")
    return LightWeightRefineNet(backbone, pretrained_path, n_chains)
