"""GP2's released weights (saic-vul/geometry-preserving-de, release v1.0): `load_official(name, path)`.

The release files (`mn_lrn4.pth`, `lite0_lrn4.pth`, `b0_lrn4.pth` ... `b5_lrn4.pth`) are raw state dicts of
the official `GridNet` (models/grid.py), loaded with `model.load_state_dict(torch.load(path))` (inference.py,
eval.py). Their key names, read from the official models/ code:
  branches.0.<encoder>                         the encoder (models/encoders.py, architectures.py)
  branches.1.backbone.<encoder>                the same encoder again: RefineDecoder keeps it as an attribute
                                               (models/decoders.py RefineDecoder.__init__), so every encoder
                                               tensor is saved twice
  branches.1.up_branch.<k>.0.adapt.{0,1}       CRP block of level 5 - k (k = 0 is stride 32): conv, BN
  branches.1.up_branch.<k>.0.<j>_outvar_dimred.{0,1}   its chain j = 1..4: conv, BN
  branches.1.adapters.<k>.0                    1x1 conv (with bias) from level 5 - k to level 4 - k
  branches.1.final_decoder.0                   1x1 conv head (with bias) at stride 2
Encoders:
  mn_lrn4     torchvision mobilenet_v2 `features` split before each stride-2 block into `layers.1` ...
              `layers.5` (`layers.0` is an empty Sequential; features[18], the 1280-channel conv, is not kept)
  lite0_lrn4  `model.` + geffnet's tf_efficientnet_lite0 names (the same as timm's); its conv_head, bn2 and
              classifier are saved but never used by the encoder's forward
  bN_lrn4     efficientnet-pytorch 0.6.3 names (`_conv_stem`, `_bn0`, `_blocks.<n>._expand_conv` ...) as
              segmentation_models_pytorch 0.1.0's encoder keeps them (`_fc` deleted; `_conv_head`, `_bn1`
              saved, unused)
Our network (lightning_modules/gp2/network.py) has the same tensors under its own names; `official_key_map`
gives the correspondence, derived from the network itself.
"""

from __future__ import annotations

import os

import torch

from lightning_modules.gp2.network import LightWeightRefineNet

# release name -> the backbone (model.backbone) of the network it loads into; all are LRN4 (4 CRP chains)
RELEASES: dict[str, str] = {
    "mn_lrn4": "mobilenetv2_100",
    "lite0_lrn4": "efficientnet_lite0",
    **{f"b{i}_lrn4": f"efficientnet_b{i}" for i in range(6)},
}
N_CHAINS = 4
ENCODER = "branches.0."
ENCODER_COPY = "branches.1.backbone."  # the decoder's reference to the encoder (models/decoders.py)
# encoder tensors the release holds but the official forward never uses (models/encoders.py,
# smp encoders/efficientnet.py): our network has no such modules
UNUSED = {
    "mn_lrn4": (),
    "lite0_lrn4": ("model.conv_head.", "model.bn2.", "model.classifier."),
    **{f"b{i}_lrn4": ("_conv_head.", "_bn1.") for i in range(6)},
}

# timm block module -> torchvision MobileNetV2 InvertedResidual module (inside `conv`)
_MN_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_MN_IR = {
    "conv_pw": "conv.0.0",
    "bn1": "conv.0.1",
    "conv_dw": "conv.1.0",
    "bn2": "conv.1.1",
    "conv_pwl": "conv.2",
    "bn3": "conv.3",
}
# timm block module -> efficientnet-pytorch MBConvBlock module
_SE = {"se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand"}
_EFF_DS = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", **_SE, "conv_pw": "_project_conv", "bn2": "_bn2"}
_EFF_IR = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    **_SE,
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}


class OfficialWeightsError(ValueError):
    """A GP2 release file that does not fit the network: names the file and the keys."""


def _check_name(name: str) -> None:
    if name not in RELEASES:
        raise ValueError(f"GP2 release name: expected one of {', '.join(RELEASES)}, got {name!r}")


def _encoder_modules(net: LightWeightRefineNet, name: str) -> dict[str, str]:
    """Our encoder module path (under `encoder.`) -> the release's (under `branches.0.`)."""
    blocks = [(f"blocks.{s}.{b}", blk) for s, st in enumerate(net.encoder.blocks) for b, blk in enumerate(st)]
    if name == "lite0_lrn4":
        return {n: f"model.{n}" for n, _ in net.encoder.named_modules() if n}  # geffnet's names are timm's
    out = {}
    if name == "mn_lrn4":
        # features[0] (stem) and features[1] open layers.1; a stride-2 block opens the next layer
        out = {"conv_stem": "layers.1.0.0", "bn1": "layers.1.0.1"}
        layer, pos = 1, 1
        for i, (path, blk) in enumerate(blocks):
            if i > 0 and blk.conv_dw.stride[0] == 2:
                layer, pos = layer + 1, 0
            table = _MN_IR if hasattr(blk, "conv_pwl") else _MN_DS
            out |= {f"{path}.{m}": f"layers.{layer}.{pos}.{tv}" for m, tv in table.items()}
            pos += 1
        return out
    out = {"conv_stem": "_conv_stem", "bn1": "_bn0"}
    for n, (path, blk) in enumerate(blocks):  # _blocks is flat: n counts the blocks of every stage
        table = _EFF_IR if hasattr(blk, "conv_pwl") else _EFF_DS
        out |= {f"{path}.{m}": f"_blocks.{n}.{e}" for m, e in table.items()}
    return out


def official_key_map(net: LightWeightRefineNet, name: str) -> dict[str, str]:
    """The release's state-dict key -> our network's key, for every tensor of `net` (the encoder copy under
    `branches.1.backbone.` and the UNUSED keys not included). `net` must be built for RELEASES[name]."""
    _check_name(name)
    modules = {f"encoder.{k}": ENCODER + v for k, v in _encoder_modules(net, name).items()}
    levels = len(net.crp)
    for k in range(levels):  # the official lists run from the deepest level up
        crp, up = f"crp.{levels - 1 - k}", f"branches.1.up_branch.{k}.0"
        modules |= {f"{crp}.adapt.{i}": f"{up}.adapt.{i}" for i in (0, 1)}
        modules |= {
            f"{crp}.convs.{j}.{i}": f"{up}.{j + 1}_outvar_dimred.{i}"
            for j in range(len(net.crp[0].convs))
            for i in (0, 1)
        }
    modules |= {f"adapters.{levels - 2 - k}": f"branches.1.adapters.{k}.0" for k in range(levels - 1)}
    modules["head"] = "branches.1.final_decoder.0"
    out = {}
    for key in net.state_dict():
        module, _, tensor = key.rpartition(".")
        if module not in modules:
            raise KeyError(f"no release name for {key!r} of the {RELEASES[name]} network")
        out[f"{modules[module]}.{tensor}"] = key
    return out


def _read(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GP2 release weights: no file at {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or one holding more than tensors
        raise OfficialWeightsError(f"{path}: cannot read it as a weights-only torch file ({e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint nesting the state dict; the release itself is raw
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OfficialWeightsError(
            f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}"
        )
    return state


def _short(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")


def load_official(name: str, path: str) -> LightWeightRefineNet:
    """GP2's released network `name` (one of RELEASES: "mn_lrn4", "lite0_lrn4", "b0_lrn4" ... "b5_lrn4")
    with the weights of the release file `path`, in eval mode.

    The file is read on CPU with weights_only=True; a raw state dict (as released) or one nested under
    "state_dict". Loading is strict: a missing key, an unexpected key or a wrong shape raises
    OfficialWeightsError naming the file and the keys. The network takes images (B, 3, H, W) in [0, 1]
    (it applies GP2's ImageNet normalization itself) and returns log-disparity (B, 1, H, W): on sides that
    are multiples of 32 the official model's output for the normalized image.
    """
    _check_name(name)
    state = _read(path)
    net = LightWeightRefineNet(RELEASES[name], pretrained_path=None, n_chains=N_CHAINS)
    key_map = official_key_map(net, name)
    state = dict(state)
    for key in [k for k in state if k.startswith(ENCODER_COPY)]:
        copy, twin = state.pop(key), ENCODER + key[len(ENCODER_COPY) :]
        if twin not in state:
            state[twin] = copy
        elif not torch.equal(state[twin], copy):  # the official load would take the later copy: ambiguous
            raise OfficialWeightsError(f"{path}: {key} differs from {twin}, the same encoder tensor")
    unused = tuple(ENCODER + p for p in UNUSED[name])
    unexpected = sorted(k for k in state if k not in key_map and not k.startswith(unused))
    # BatchNorm's step counter does not change the output: a file without it loads (as PyTorch's BN does)
    missing = sorted(k for k in key_map if k not in state and not k.endswith(".num_batches_tracked"))
    if missing or unexpected:
        raise OfficialWeightsError(
            f"{path} is not GP2's {name} release: missing keys [{_short(missing)}], unexpected keys "
            f"[{_short(unexpected)}]"
        )
    ours = net.state_dict()
    mapped = {}
    for theirs, key in key_map.items():
        value = state.get(theirs, ours[key])
        if value.shape != ours[key].shape:
            raise OfficialWeightsError(
                f"{path}: {theirs} has shape {tuple(value.shape)}, GP2's {name} needs {tuple(ours[key].shape)}"
            )
        mapped[key] = value
    net.load_state_dict(mapped, strict=True)
    return net.eval()


def check_release_name(path: str, backbone: str, n_chains: int) -> str:
    """The release name of a GP2Module with this backbone and n_chains, after checking that the release file
    `path` (when its name is a release's, e.g. b0_lrn4.pth) is that one. Raises ValueError otherwise."""
    wanted = {v: k for k, v in RELEASES.items()}.get(backbone)
    if wanted is None:
        raise ValueError(f"model.official_weights: GP2 released no weights for backbone {backbone!r}")
    if n_chains != N_CHAINS:
        raise ValueError(f"model.official_weights: GP2's releases have n_chains={N_CHAINS}, got {n_chains}")
    stem = os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    if stem in RELEASES and stem != wanted:
        raise ValueError(
            f"model.official_weights: {path} is GP2's {stem} release, which needs "
            f"model.backbone={RELEASES[stem]}; got model.backbone={backbone} (release {wanted})"
        )
    return wanted


__all__ = ["RELEASES", "OfficialWeightsError", "check_release_name", "load_official", "official_key_map"]
