"""GP2's released weights load into our network and give the official network's output.

The release files are state dicts of the official GridNet (saic-vul/geometry-preserving-de, models/). The
tests rebuild that module tree here, from the official code, with its own names and forward:
  - decoder: models/decoders.py (CRPBlock, RefineDecoder with start_level=1) and models/grid.py (GridNet);
    RefineDecoder keeps the encoder as `self.backbone`, so its tensors are saved twice;
  - mn_lrn4: models/encoders.py MobileNetV2Encoder on torchvision's mobilenet_v2 (the real one);
  - lite0_lrn4: models/encoders.py EfficientNetLite0Encoder on geffnet's tf_efficientnet_lite0, whose
    module names timm's full tf_efficientnet_lite0 shares (geffnet gen_efficientnet.py GenEfficientNet:
    conv_stem, bn1, blocks, conv_head, bn2, classifier; efficientnet_builder.py: conv_pw, bn1, conv_dw, bn2,
    conv_pwl, bn3);
  - b0_lrn4 ... b5_lrn4: segmentation_models_pytorch 0.1.0 encoders/efficientnet.py on efficientnet-pytorch
    0.6.3 (model.py MBConvBlock / EfficientNet, utils.py), rebuilt below with its static "same" padding,
    which 0.6.3 computes for the model's full image size in every layer.
Random tensors in that layout are saved, loaded with load_official / GP2Module(official_weights=...), and
the network must hold exactly those tensors and give the reference's output (float64, sides multiple of 32).
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from helpers import assert_close
from lightning_modules.gp2 import GP2Module, load_official
from lightning_modules.gp2.network import IMAGENET_MEAN, IMAGENET_STD, LightWeightRefineNet
from lightning_modules.gp2.official import RELEASES, OfficialWeightsError, official_key_map

NAMES = ["mn_lrn4", "lite0_lrn4"] + [f"b{i}_lrn4" for i in range(6)]
FORWARD = ["mn_lrn4", "lite0_lrn4", "b0_lrn4"]  # the others: layout here, loading and output in a slow test


# ----------------------------------------------------------------------------- official decoder and grid
def _upsample2():
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


def _conv_bn(c):
    return nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class _CRPBlock(nn.Module):
    def __init__(self, c, n_stages=4):
        super().__init__()
        for i in range(n_stages):
            setattr(self, f"{i + 1}_outvar_dimred", _conv_bn(c))
        self.n_stages = n_stages
        self.maxpool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        self.adapt = _conv_bn(c)

    def forward(self, x):
        x = self.adapt(x)
        top = x
        for i in range(self.n_stages):
            top = getattr(self, f"{i + 1}_outvar_dimred")(self.maxpool(top))
            x = top + x
        return x / (self.n_stages + 1)


class _RefineDecoder(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone  # registered: the encoder's tensors appear again under branches.1.backbone
        ch = backbone.out_channels  # level 0 is the input itself; start_level=1
        self.up_branch = nn.ModuleList(nn.Sequential(_CRPBlock(ch[i])) for i in range(len(ch) - 1, 0, -1))
        self.adapters = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch[i + 1], ch[i], 1), _upsample2()) for i in range(len(ch) - 2, 0, -1)
        )
        self.final_decoder = nn.Sequential(nn.Conv2d(ch[1], 1, 1), _upsample2())

    def forward(self, feats):
        rev = feats[::-1]
        y = self.up_branch[0](rev[0])
        for k in range(1, len(self.up_branch)):
            y = self.up_branch[k](self.adapters[k - 1](y) + rev[k])
        return self.final_decoder(y)


class _GridNet(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.branches = nn.ModuleList([encoder, _RefineDecoder(encoder)])

    def forward(self, x):
        return self.branches[1](self.branches[0](x))


# ----------------------------------------------------------------------------- official encoders
class _MobileNetV2Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        features = torchvision.models.mobilenet_v2(weights=None).features
        groups, group = [[]], [features[0], features[1]]
        for f in list(features)[2:-1]:  # the last 1280-channel conv is left out
            if f.conv[1][0].stride == (2, 2):
                groups.append(group)
                group = []
            group.append(f)
        groups.append(group)
        self.layers = nn.ModuleList(nn.Sequential(*g) for g in groups)
        self.out_channels = [3, 16, 24, 32, 96, 320]

    def forward(self, x):
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class _Lite0Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # geffnet's names
        self.out_channels = [3, 16, 24, 40, 80, 320]

    def forward(self, x):
        m, feats = self.model, [x]
        x = m.bn1(m.conv_stem(x))  # timm's bn1 includes geffnet's act1
        for i in range(4):
            x = m.blocks[i](x)
            feats.append(x)
        feats.append(m.blocks[6](m.blocks[5](m.blocks[4](x))))
        return feats


# efficientnet-pytorch 0.6.3 utils.py: (width, depth, resolution) and the B0 block list (k, r, s, e, i, o);
# smp 0.1.0 encoders/efficientnet.py: stage_idxs and out_channels
_EFF = {
    0: (1.0, 1.0, 224, (3, 5, 9), (3, 32, 24, 40, 112, 320)),
    1: (1.0, 1.1, 240, (5, 8, 16), (3, 32, 24, 40, 112, 320)),
    2: (1.1, 1.2, 260, (5, 8, 16), (3, 32, 24, 48, 120, 352)),
    3: (1.2, 1.4, 300, (5, 8, 18), (3, 40, 32, 48, 136, 384)),
    4: (1.4, 1.8, 380, (6, 10, 22), (3, 48, 32, 56, 160, 448)),
    5: (1.6, 2.2, 456, (8, 13, 27), (3, 48, 40, 64, 176, 512)),
}
_B0_BLOCKS = [
    (3, 1, 1, 1, 32, 16),
    (3, 2, 2, 6, 16, 24),
    (5, 2, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (5, 3, 1, 6, 80, 112),
    (5, 4, 2, 6, 112, 192),
    (3, 1, 1, 6, 192, 320),
]


def _round_filters(c, width):
    c = c * width
    new = max(8, int(c + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * c else new)


def _bn(c):
    return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)


def _swish(x):
    return x * torch.sigmoid(x)


class _StaticSameConv(nn.Conv2d):
    """Conv2dStaticSamePadding of 0.6.3: TF "same" padding computed once, for an input of image_size."""

    def __init__(self, c_in, c_out, k, image_size, stride=1, groups=1, bias=False):
        super().__init__(c_in, c_out, k, stride, 0, groups=groups, bias=bias)
        pad = max((math.ceil(image_size / stride) - 1) * stride + k - image_size, 0)
        self.static_padding = nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))

    def forward(self, x):
        return super().forward(self.static_padding(x))


class _MBConvBlock(nn.Module):
    def __init__(self, k, stride, expand, c_in, c_out, size):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = _StaticSameConv(c_in, mid, 1, size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _StaticSameConv(mid, mid, k, size, stride, groups=mid)
        self._bn1 = _bn(mid)
        squeezed = max(1, int(c_in * 0.25))
        self._se_reduce = _StaticSameConv(mid, squeezed, 1, size, bias=True)
        self._se_expand = _StaticSameConv(squeezed, mid, 1, size, bias=True)
        self._project_conv = _StaticSameConv(mid, c_out, 1, size)
        self._bn2 = _bn(c_out)
        self.expand, self.skip = expand, stride == 1 and c_in == c_out

    def forward(self, inputs):
        x = _swish(self._bn0(self._expand_conv(inputs))) if self.expand != 1 else inputs
        x = _swish(self._bn1(self._depthwise_conv(x)))
        x = torch.sigmoid(self._se_expand(_swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))) * x
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class _EfficientNetEncoder(nn.Module):
    def __init__(self, i):
        super().__init__()
        width, depth, size, stage_idxs, self.out_channels = _EFF[i]
        self._conv_stem = _StaticSameConv(3, _round_filters(32, width), 3, size, stride=2)
        self._bn0 = _bn(_round_filters(32, width))
        blocks = []
        for k, r, s, e, c_in, c_out in _B0_BLOCKS:
            c_in, c_out = _round_filters(c_in, width), _round_filters(c_out, width)
            for j in range(int(math.ceil(depth * r))):
                blocks.append(_MBConvBlock(k, s if j == 0 else 1, e, c_in if j == 0 else c_out, c_out, size))
        self._blocks = nn.ModuleList(blocks)
        head = _round_filters(1280, width)
        self._conv_head = _StaticSameConv(_round_filters(320, width), head, 1, size)
        self._bn1 = _bn(head)
        self.taps = [t - 1 for t in stage_idxs] + [len(blocks) - 1]

    def forward(self, x):
        feats = [x]
        x = _swish(self._bn0(self._conv_stem(x)))
        feats.append(x)
        for n, block in enumerate(self._blocks):
            x = block(x)
            if n in self.taps:
                feats.append(x)
        return feats


def official_model(name: str) -> _GridNet:
    if name == "mn_lrn4":
        return _GridNet(_MobileNetV2Encoder())
    if name == "lite0_lrn4":
        return _GridNet(_Lite0Encoder())
    return _GridNet(_EfficientNetEncoder(int(name[1])))


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics (a fresh module's are 0 / 1, which would hide swapped BNs),
    scaled so that activations stay O(1) through B5's 39 blocks (larger gains make the random network
    chaotic: float64 round-off, 1e-16 per block, then grows to 1e-7 at the output)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.25, 0.75, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
            elif isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=g)
    return model


def release_file(tmp_path, name, seed=0):
    """A release-layout file of random tensors: (path, the official model holding those tensors)."""
    model = randomize(official_model(name), seed).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return path, model


def reference_output(model: _GridNet, image: torch.Tensor) -> torch.Tensor:
    """The official pipeline: ImageNet-normalized image (datasets/validation_datasets.py) -> GridNet.
    The constants are rounded to float32 as our network stores them, also for a float64 comparison."""
    mean = torch.tensor(IMAGENET_MEAN).to(image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).to(image.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((image - mean) / std)


def image(dtype=torch.float64):
    return torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=dtype)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", NAMES)
def test_release_layout_is_exactly_what_the_mapping_expects(name):
    """Every key of the release (from the official module tree) is one of our tensors with its shape, or the
    encoder's copy under the decoder, or an encoder tensor the official forward never uses."""
    with torch.device("meta"):
        release = {k: v.shape for k, v in official_model(name).state_dict().items()}
    net = LightWeightRefineNet(RELEASES[name])
    key_map = official_key_map(net, name)
    ours = net.state_dict()
    assert sorted(key_map.values()) == sorted(ours), "every tensor of our network has a release name"
    for theirs, key in key_map.items():
        assert theirs in release, f"{name}: {theirs} (for our {key}) is not in the release"
        assert release[theirs] == ours[key].shape, (theirs, release[theirs], ours[key].shape)
    rest = sorted(set(release) - set(key_map))
    copies = [k for k in rest if k.startswith("branches.1.backbone.")]
    assert {k.replace("branches.1.backbone.", "branches.0.", 1) for k in copies} == {
        k for k in release if k.startswith("branches.0.")
    }
    unused = [k for k in rest if not k.startswith("branches.1.backbone.")]
    expected_unused = {
        "mn_lrn4": set(),
        "lite0_lrn4": {"conv_head", "bn2", "classifier"},
    }.get(name, {"_conv_head", "_bn1"})
    assert {k.split(".")[3 if name == "lite0_lrn4" else 2] for k in unused} == expected_unused, unused
    assert net.channels == list(official_model_channels(name))


def official_model_channels(name):
    return {"mn_lrn4": (16, 24, 32, 96, 320), "lite0_lrn4": (16, 24, 40, 80, 320)}.get(
        name, _EFF[int(name[1])][4][1:] if name[0] == "b" else None
    )


@pytest.mark.parametrize("name", FORWARD)
def test_loaded_network_holds_the_release_tensors_and_gives_the_official_output(tmp_path, name):
    path, official = release_file(tmp_path, name)
    net = load_official(name, str(path))
    assert not net.training
    saved = torch.load(path, weights_only=True)
    ours = net.state_dict()
    for theirs, key in official_key_map(net, name).items():
        assert torch.equal(ours[key], saved[theirs]), f"{key} is not a copy of {theirs}"
    x = image()
    expected = reference_output(official.double(), x)
    got = net.double()(x)
    scale = expected.abs().max().item()
    assert got.shape == expected.shape == (1, 1, 64, 96)
    assert scale > 1e-3, "a vanishing output would not test anything"
    assert_close(got, expected, f"{name} output")  # float64 tolerances: the same network
    # one perturbed release tensor (deep in the encoder, both of its copies) changes the output
    saved = dict(saved)
    key = [k for k in official_key_map(net, name) if k.startswith("branches.0.") and k.endswith("weight")][-1]
    for k in (key, key.replace("branches.0.", "branches.1.backbone.", 1)):
        saved[k] = saved[k] + 0.5
    torch.save(saved, tmp_path / "perturbed.pth")
    other = load_official(name, str(tmp_path / "perturbed.pth")).double()
    with torch.no_grad():
        assert (other(x) - got).abs().max() > 1e-6, f"perturbing {key} left the output unchanged"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in FORWARD])
def test_other_releases_load_and_give_the_official_output(tmp_path, name):
    path, official = release_file(tmp_path, name)
    net = load_official(name, str(path))
    x = image()
    expected = reference_output(official.double(), x)
    assert expected.abs().max() > 1e-3
    assert_close(net.double()(x), expected, name)


def test_our_mobilenet_levels_are_timms_own_features():
    """The MobileNetV2 path reads the same levels as timm's features_only forward, bit for bit."""
    net = LightWeightRefineNet("mobilenetv2_100").eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(net.encode(x), net.encoder(x), strict=True):
            assert torch.equal(a, b)


def test_gp2_module_takes_official_weights(tmp_path):
    path, official = release_file(tmp_path, "lite0_lrn4", seed=3)
    module = GP2Module(backbone="efficientnet_lite0", official_weights=str(path), log_images=0)
    assert "official_weights" in GP2Module.INIT_ONLY and module.hparams.official_weights == str(path)
    assert module.net.training  # like a freshly built module: Lightning picks the mode
    direct = load_official("lite0_lrn4", str(path))
    for (k, a), (_, b) in zip(module.net.state_dict().items(), direct.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    module.eval()
    x = image(torch.float32)
    with torch.no_grad():
        assert_close(module(x), direct(x), "module output")
        assert_close(module(x), reference_output(official, x), "official output")


def test_gp2_module_refuses_a_release_of_another_backbone(tmp_path):
    path, _ = release_file(tmp_path, "b0_lrn4")
    with pytest.raises(
        ValueError, match=r"b0_lrn4.pth is GP2's b0_lrn4 release.*model.backbone=efficientnet_b0"
    ):
        GP2Module(backbone="efficientnet_b1", official_weights=str(path))
    with pytest.raises(ValueError, match="n_chains=4"):
        GP2Module(backbone="efficientnet_b0", official_weights=str(path), n_chains=2)
    with pytest.raises(ValueError, match="model.pretrained_path"):
        GP2Module(backbone="efficientnet_b0", official_weights=str(path), pretrained_path=str(path))
    renamed = tmp_path / "weights.pth"  # a renamed release: the backbone decides, strict loading checks
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(OfficialWeightsError, match=r"weights.pth.*b1_lrn4"):
        GP2Module(backbone="efficientnet_b1", official_weights=str(renamed))


def test_bad_release_files_are_refused_naming_file_and_keys(tmp_path):
    path, _ = release_file(tmp_path, "mn_lrn4")
    state = torch.load(path, weights_only=True)
    with pytest.raises(ValueError, match="GP2 release name: expected one of mn_lrn4"):
        load_official("mn_lrn5", str(path))
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_official("mn_lrn4", str(tmp_path / "nothing.pth"))

    def write(sd, file="bad.pth"):
        torch.save(sd, tmp_path / file)
        return str(tmp_path / file)

    gone = "branches.1.up_branch.2.0.3_outvar_dimred.0.weight"
    missing = {k: v for k, v in state.items() if k != gone}
    with pytest.raises(OfficialWeightsError, match=rf"bad.pth is not GP2's mn_lrn4.*missing keys \[{gone}\]"):
        load_official("mn_lrn4", write(missing))
    with pytest.raises(OfficialWeightsError, match=r"unexpected keys \[branches.2.extra\]"):
        load_official("mn_lrn4", write({**state, "branches.2.extra": torch.zeros(1)}))
    head = "branches.1.final_decoder.0.weight"
    with pytest.raises(OfficialWeightsError, match=rf"bad.pth: {head} has shape \(2, 16, 1, 1\)"):
        load_official("mn_lrn4", write({**state, head: torch.zeros(2, 16, 1, 1)}))
    copy = "branches.1.backbone.layers.1.0.0.weight"
    with pytest.raises(OfficialWeightsError, match=rf"{copy} differs from branches.0"):
        load_official("mn_lrn4", write({**state, copy: state[copy] + 1}))
    with pytest.raises(OfficialWeightsError, match="b0_lrn4"):  # another release's file
        load_official("b0_lrn4", str(path))
    with pytest.raises(OfficialWeightsError, match="junk.pth: cannot read"):
        load_official("mn_lrn4", str((tmp_path / "junk.pth").write_text("x") and tmp_path / "junk.pth"))
    # the release without the decoder's encoder copy, nested as a checkpoint: the same network
    nested = {"state_dict": {k: v for k, v in state.items() if not k.startswith("branches.1.backbone.")}}
    a, b = load_official("mn_lrn4", write(nested, "nested.pth")), load_official("mn_lrn4", str(path))
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), k
