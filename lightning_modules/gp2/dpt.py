"""A DPT-style depth network (Ranftl, Bochkovskiy, Koltun, "Vision Transformers for Dense Prediction", ICCV
2021) on a timm vision transformer, with the output contract of GP2's networks: image (B, 3, H, W) in [0, 1]
-> log-disparity (B, 1, H, W) at the input resolution. The RGPD paper (Sec. 5) trains a DPT; this module is
selected by `model.backbone=dpt_hybrid | dpt_base | dpt_large | dpt_tiny` through
`lightning_modules.gp2.network.build_network`. A plain nn.Module usable without Lightning.

Architecture facts, read from the official code (isl-org/DPT; cited per item, not copied):
- Encoder taps ("hooks", dpt/models.py DPT.__init__): the outputs of transformer blocks [2, 5, 8, 11] for
  ViT-B/16, [5, 11, 17, 23] for ViT-L/16, and for the hybrid R50+ViT-B/16 [0, 1, 8, 11] where 0 and 1 are
  the ResNet stages 0 and 1 of the patch embedding (stride 4 and 8; dpt/vit.py `_make_vit_b_rn50_backbone`
  with use_vit_only=False hooks `patch_embed.backbone.stages[0]`, `[1]`). The taps are the raw block outputs,
  before the encoder's final LayerNorm (forward hooks on `blocks[i]` in dpt/vit.py).
- Readout "project" (dpt/vit.py ProjectReadout, the DPT depth models' default `readout="project"` in
  dpt/models.py): every patch token is concatenated with the class token and mapped back to the width by
  Linear(2C, C) + GELU; one projection per tap.
- Reassemble (dpt/vit.py `_make_vit_b16_backbone`, act_postprocess1..4): tokens -> (B, C, H/16, W/16), a 1x1
  conv to the tap's channels (ViT-B: 96, 192, 384, 768; ViT-L: 256, 512, 1024, 1024; hybrid: 768, 768 on the
  transformer taps), then resampling to 1/4 (4x4 transposed conv, stride 4), 1/8 (2x2 transposed conv,
  stride 2), 1/16 (none) and 1/32 (3x3 conv, stride 2, padding 1). The hybrid's ResNet taps (256 and 512
  channels) pass unchanged (nn.Identity there). Each level is then mapped to `features` (256) channels by a
  3x3 conv without bias (dpt/blocks.py `_make_scratch`, layer1_rn ... layer4_rn).
- Fusion (dpt/blocks.py FeatureFusionBlock_custom with ResidualConvUnit_custom, bn=False for depth,
  ReLU, align_corners=True): out = x + RCU1(skip); RCU2(out); bilinear x2 upsampling; 1x1 conv. A residual
  conv unit is x + conv3x3(relu(conv3x3(relu(x)))). The four blocks run from 1/32 to 1/4 (refinenet4 ...
  refinenet1 in dpt/models.py DPT.forward), so the last one outputs 1/2 resolution.
  Choice: the upsampling goes to the next skip's size instead of a fixed factor 2 (as isl-org/MiDaS
  midas/blocks.py FeatureFusionBlock_custom's `size` argument, v3.1), so sides that are multiples of 16
  but not of 32 work (the 1/32 level of a 3-token side has 2 rows; 2 x 2 != 3).
- Head (dpt/models.py DPTDepthModel): conv3x3 features -> features/2, bilinear x2 (align_corners=True),
  conv3x3 -> 32, ReLU, conv1x1 -> 1, ReLU (non_negative: inverse depth >= 0).
  Choice: the head's last ReLU is left out, because its output here is log-disparity l, and exp(l) is the
  (strictly positive) inverse depth: log(ReLU(.)) would be -inf on every pixel where the ReLU is off, with
  no gradient to bring it back. Everything else of the head is DPT's.
- Input normalization: mean = std = 0.5 per channel (run_monodepth.py NormalizeImage for dpt_large and
  dpt_hybrid; also timm's pretrained_cfg of these ViTs). Input sizes: DPT resizes images to multiples of 32
  and interpolates the prediction back (run_monodepth.py, Resize(ensure_multiple_of=32)); here an image
  whose sides are not multiples of the patch stride (16) is resized bilinearly to the nearest multiples
  and the log-disparity is resized back to (H, W), so any size works as with GP2's networks.
- Position embeddings: timm's `dynamic_img_size=True` resamples them to the token grid of every input
  (timm vision_transformer.py VisionTransformer._pos_embed; DPT does the same with bilinear
  interpolation in dpt/vit.py `_resize_pos_embed`); timm's own default interpolation (bicubic) is used.
- Not in DPT: what never runs is not built, since an unused parameter stops DDP (without
  find_unused_parameters): the encoder's blocks after the last tap, its final norm and classifier (timm's
  prune_intermediate_layers), and the deepest fusion block's RCU1 (it has no skip; DPT builds one).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import timm
import torch
import torch.nn.functional as F
from timm.models import load_state_dict as timm_load_state_dict
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

# run_monodepth.py of isl-org/DPT: NormalizeImage(mean=[0.5] * 3, std=[0.5] * 3) for the DPT models
DPT_MEAN = (0.5, 0.5, 0.5)
DPT_STD = (0.5, 0.5, 0.5)
STAGE = "stage"  # a tap on a ResNet stage of a hybrid's patch embedding (strides 4 and 8)


class DPTSpec(NamedTuple):
    """A DPT variant: the timm encoder (`timm_name` + `timm_kwargs`, built at `img_size`), its four taps
    (a block index, or (STAGE, i) for stage i of a hybrid's ResNet), the channels of the four reassembled
    levels (strides 4, 8, 16, 32), and the fusion width `features`."""

    timm_name: str
    timm_kwargs: dict
    img_size: int
    hooks: tuple
    reassemble: tuple[int, int, int, int]
    features: int


# The names `model.backbone` accepts for a DPT (dpt/models.py hooks, dpt/blocks.py `_make_encoder` widths).
#   dpt_hybrid: "vitb_rn50_384" (timm's vit_base_r50_s16_384, formerly vit_base_resnet50_384), DPT-Hybrid.
#   dpt_base:   "vitb16_384" (vit_base_patch16_384).
#   dpt_large:  "vitl16_384" (vit_large_patch16_384), DPT-Large.
#   dpt_tiny:   not in DPT: timm's vit_tiny_patch16_224 (width 192, 3 heads) cut to 4 blocks, at 64x64, every
#               block tapped, the widths of ViT-B/16's reassembly scaled to C = 192 (C/8, C/4, C/2, C) and a
#               fusion width of 64; for tests and the synthetic experiments on CPU.
DPT_VARIANTS: dict[str, DPTSpec] = {
    "dpt_hybrid": DPTSpec(
        "vit_base_r50_s16_384", {}, 384, ((STAGE, 0), (STAGE, 1), 8, 11), (256, 512, 768, 768), 256
    ),
    "dpt_base": DPTSpec("vit_base_patch16_384", {}, 384, (2, 5, 8, 11), (96, 192, 384, 768), 256),
    "dpt_large": DPTSpec("vit_large_patch16_384", {}, 384, (5, 11, 17, 23), (256, 512, 1024, 1024), 256),
    "dpt_tiny": DPTSpec("vit_tiny_patch16_224", dict(depth=4), 64, (0, 1, 2, 3), (24, 48, 96, 192), 64),
}
PATCH_STRIDE = 16  # image pixels per token for all variants (16x16 patches, or the hybrid's stride-16 ResNet)


def load_encoder_weights(encoder: nn.Module, path: str, what: str) -> None:
    """Load a local state dict (.pth / .bin / .safetensors: a timm checkpoint of the encoder's model, or a
    saved `encoder.state_dict()`) into the pruned timm ViT `encoder` of a DPTDepth, on CPU first.

    timm's own filter adapts it (position embeddings resampled to the encoder's grid, old layouts converted:
    timm vision_transformer.py checkpoint_filter_fn). The file's keys of what DPTDepth prunes (classifier,
    final norm, blocks after the last tap) are dropped; every key the encoder has must be there with its
    shape, and no other key may be: timm's loader would accept a partial file silently once the classifier is
    dropped (timm _builder.py load_pretrained sets strict=False then).
    Raises FileNotFoundError / ValueError naming model.pretrained_path.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model.pretrained_path: no file at {path!r}; put the weights of timm's {what} there (a "
            f".pth/.bin/.safetensors state dict), or set it to null"
        )
    state = checkpoint_filter_fn(timm_load_state_dict(path, device="cpu"), encoder)
    pruned = ("head.", "norm.", "fc_norm.")
    n_blocks = len(encoder.blocks)
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith(pruned) and not (k.startswith("blocks.") and int(k.split(".")[1]) >= n_blocks)
    }
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"model.pretrained_path: {path!r} is not a state dict of timm's {what}: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(wrong)} of another shape {wrong[:3]}"
        )
    encoder.load_state_dict(state)


class ProjectReadout(nn.Module):
    """DPT's "project" readout: concat(patch token, class token) -> Linear(2C, C) -> GELU.

    tokens (B, N, C), cls (B, C) -> (B, N, C).
    """

    def __init__(self, width: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * width, width), nn.GELU())

    def forward(self, tokens: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([tokens, cls[:, None].expand_as(tokens)], dim=-1))


class Reassemble(nn.Module):
    """One transformer tap to an image-like level: readout, tokens -> (B, C, h, w), 1x1 conv to `channels`,
    resampling by `scale` (4, 2: transposed conv; 1: none; 0.5: strided 3x3 conv).

    tokens (B, h*w, C), cls (B, C) -> (B, channels, h * scale, w * scale) (ceil for scale 0.5).
    """

    def __init__(self, width: int, channels: int, scale: float):
        super().__init__()
        self.readout = ProjectReadout(width)
        self.project = nn.Conv2d(width, channels, kernel_size=1)
        if scale in (4, 2):
            self.resample = nn.ConvTranspose2d(channels, channels, kernel_size=int(scale), stride=int(scale))
        elif scale == 1:
            self.resample = nn.Identity()
        elif scale == 0.5:
            self.resample = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        else:
            raise ValueError(f"scale: expected 4, 2, 1 or 0.5, got {scale}")

    def forward(self, tokens: torch.Tensor, cls: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.readout(tokens, cls)  # (B, h*w, C)
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)  # (B, C, h, w)
        return self.resample(self.project(x))


class ResidualConvUnit(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x)))), no normalization (DPT's depth models). (B, F, h, w) -> same."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not in place: x is also the skip connection
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """RefineNet-style fusion: (x + RCU1(skip)) -> RCU2 -> bilinear upsampling to `size` -> 1x1 conv.

    x (B, F, h, w), skip (B, F, h, w) (None for a block built with has_skip=False), size (H', W')
    -> (B, F, H', W').
    """

    def __init__(self, features: int, has_skip: bool = True):
        super().__init__()
        # the deepest block has no skip: no rcu1 there (DPT builds one that never runs; an unused parameter
        # stops DDP without find_unused_parameters)
        self.rcu1 = ResidualConvUnit(features) if has_skip else None
        self.rcu2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if (skip is None) != (self.rcu1 is None):
            raise ValueError(f"skip: this block expects {'no skip' if self.rcu1 is None else 'a skip'}")
        if skip is not None:
            x = x + self.rcu1(skip)
        x = self.rcu2(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTDepth(nn.Module):
    """DPT on a timm ViT. forward: image (B, 3, H, W) in [0, 1] -> log-disparity (B, 1, H, W).

    Args:
        backbone: one of DPT_VARIANTS (ValueError otherwise, before timm is called).
        pretrained_path: local weights file of the variant's timm encoder (`load_encoder_weights`: a timm
            checkpoint of that model or a saved `encoder.state_dict()`); None = random initialization.
            Nothing is downloaded: timm builds the encoder with pretrained=False.
        normalize_input: subtract/divide by DPT's mean/std (0.5, 0.5) inside the network.

    Attributes: `encoder` (the timm VisionTransformer, classifier removed), `hooks` (the spec's taps),
    `reassemble`, `layer_rn`, `fusion`, `head`.
    """

    def __init__(
        self, backbone: str = "dpt_tiny", pretrained_path: str | None = None, normalize_input: bool = True
    ):
        super().__init__()
        if backbone not in DPT_VARIANTS:
            raise ValueError(f"model.backbone: expected one of {', '.join(DPT_VARIANTS)}, got {backbone!r}")
        spec = DPT_VARIANTS[backbone]
        try:
            self.encoder = timm.create_model(
                spec.timm_name,
                pretrained=False,
                num_classes=0,
                img_size=spec.img_size,
                dynamic_img_size=True,  # position embeddings resampled to every input's token grid
                **spec.timm_kwargs,
            )
        except RuntimeError as e:  # timm raises RuntimeError for unknown model names
            raise ValueError(f"model.backbone: timm cannot build {spec.timm_name!r} ({e})") from e
        self.hooks = spec.hooks
        self.block_hooks = [h for h in spec.hooks if not isinstance(h, tuple)]
        self.stage_hooks = [h[1] for h in spec.hooks if isinstance(h, tuple)]
        n_blocks = len(self.encoder.blocks)
        if not all(0 <= h < n_blocks for h in self.block_hooks) or self.block_hooks != sorted(
            self.block_hooks
        ):
            raise ValueError(f"model.backbone: {backbone!r} hooks {spec.hooks} outside its {n_blocks} blocks")
        # what the taps do not read goes (timm's prune_intermediate_layers): the blocks after the last tap,
        # the final norm (DPT taps raw block outputs) and the classifier; unused parameters stop DDP
        self.encoder.prune_intermediate_layers(self.block_hooks, prune_norm=True, prune_head=True)
        if pretrained_path is not None:
            what = f"{spec.timm_name!r} {spec.timm_kwargs or ''} (the encoder of backbone {backbone!r})"
            load_encoder_weights(self.encoder, pretrained_path, what)
        width = self.encoder.embed_dim
        scales = (4, 2, 1, 0.5)  # token grid (1/16) -> 1/4, 1/8, 1/16, 1/32
        self.reassemble = nn.ModuleList(
            nn.Identity() if isinstance(h, tuple) else Reassemble(width, c, s)
            for h, c, s in zip(spec.hooks, spec.reassemble, scales)
        )
        # a hybrid: forward hooks on its ResNet stages (dpt/vit.py does the same), a bound method so that
        # deepcopy and pickling carry them to the copy
        self._stage_out: list[torch.Tensor] = []
        for i in self.stage_hooks:
            self.encoder.patch_embed.backbone.stages[i].register_forward_hook(self._record_stage)
        f = spec.features
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, f, 3, padding=1, bias=False) for c in spec.reassemble)
        # fusion[i] outputs level i-1's size (fusion[0]: 1/2); fusion[3] starts from the 1/32 level alone
        self.fusion = nn.ModuleList(FeatureFusionBlock(f, has_skip=i < 3) for i in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(f, f // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(f // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1),  # log-disparity: DPT's final ReLU left out (module docstring)
        )
        self.register_buffer("mean", torch.tensor(DPT_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(DPT_STD).view(1, 3, 1, 1), False)
        self.normalize_input = normalize_input

    def _record_stage(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._stage_out.append(output)  # the hooked stages run in order

    def taps(self, x: torch.Tensor) -> list:
        """The encoder's four taps of a normalized image x (B, 3, H, W), H and W multiples of 16: per hook, a
        ResNet stage's (B, C_s, H / s, W / s), or a block's (tokens (B, H/16 * W/16, C), class token (B, C)),
        the block's raw output before the final norm."""
        self._stage_out = []
        blocks = self.encoder.forward_intermediates(
            x,
            indices=self.block_hooks,
            return_prefix_tokens=True,
            norm=False,
            output_fmt="NLC",
            intermediates_only=True,
            stop_early=True,
        )  # list of (tokens (B, N, C), prefix (B, 1, C))
        stages, self._stage_out = iter(self._stage_out), []  # no activations kept after the call
        blocks = iter(blocks)
        out = []
        for h in self.hooks:
            if isinstance(h, tuple):
                out.append(next(stages))
            else:
                tokens, prefix = next(blocks)
                out.append((tokens, prefix[:, 0]))
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image: expected shape (B, 3, H, W), got {tuple(image.shape)}")
        H, W = image.shape[-2:]
        x = (image - self.mean) / self.std if self.normalize_input else image
        h, w = (max(PATCH_STRIDE, round(s / PATCH_STRIDE) * PATCH_STRIDE) for s in (H, W))
        if (h, w) != (H, W):  # DPT runs on multiples of its stride and resizes the prediction back
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        grid = (h // PATCH_STRIDE, w // PATCH_STRIDE)
        levels = [
            self.layer_rn[i](t if isinstance(self.hooks[i], tuple) else self.reassemble[i](*t, grid))
            for i, t in enumerate(self.taps(x))
        ]  # (B, F, h/4, w/4), (B, F, h/8, w/8), (B, F, h/16, w/16), (B, F, ceil(h/32), ceil(w/32))
        y = self.fusion[3](levels[3], None, levels[2].shape[-2:])
        y = self.fusion[2](y, levels[2], levels[1].shape[-2:])
        y = self.fusion[1](y, levels[1], levels[0].shape[-2:])
        y = self.fusion[0](y, levels[0], (h // 2, w // 2))  # (B, F, h/2, w/2)
        log_disp = self.head(y)  # (B, 1, h, w)
        if (h, w) != (H, W):
            log_disp = F.interpolate(log_disp, size=(H, W), mode="bilinear", align_corners=False)
        return log_disp
