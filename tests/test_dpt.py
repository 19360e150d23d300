"""The DPT-style network (lightning_modules/gp2/dpt.py): its output contract, which encoder outputs it taps,
the "project" readout and the reassembled levels' sizes, local encoder weights, its registration as
`model.backbone`, and a short real training run of the tiny variant through the experiments entry point."""

from __future__ import annotations

import csv

import pytest
import timm
import torch
import torch.nn.functional as F

import lightning_modules.rgpd  # noqa: F401  (registers model "rgpd")
from experiments.config import compose
from experiments.runner import train
from helpers import TOL, assert_close
from lightning_modules.gp2 import dpt
from lightning_modules.gp2.dpt import DPT_VARIANTS, STAGE, DPTDepth, DPTSpec, ProjectReadout
from lightning_modules.gp2.network import LightWeightRefineNet, build_network
from lightning_modules.rgpd.module import RGPDModule

# a hybrid small enough for a fast test: the R50 stem and stages of dpt_hybrid under a 2-block, 64-wide ViT
SMALL_HYBRID = DPTSpec(
    "vit_base_r50_s16_384",
    dict(depth=2, embed_dim=64, num_heads=2),
    64,
    ((STAGE, 0), (STAGE, 1), 0, 1),
    (256, 512, 64, 64),
    32,
)


def reference_taps(net: DPTDepth, x: torch.Tensor) -> tuple[list, list]:
    """Slow, explicit reference: the encoder run module by module (timm's VisionTransformer.forward order:
    patch_embed, _pos_embed, norm_pre, blocks), keeping every block's output and, for a hybrid, every ResNet
    stage's. x (B, 3, H, W) normalized -> ([block outputs (B, 1 + N, C)], [stage outputs (B, C_s, h, w)])."""
    enc = net.encoder
    stages = []
    if net.stage_hooks:
        cnn = enc.patch_embed.backbone
        y = cnn.stem(x)
        for stage in cnn.stages:
            y = stage(y)
            stages.append(y)
    h = enc.norm_pre(enc._pos_embed(enc.patch_embed(x)))
    blocks = []
    for blk in enc.blocks:
        h = blk(h)
        blocks.append(h)
    return blocks, stages


def test_output_is_log_disparity_at_input_size_for_non_square_and_odd_sizes():
    net = build_network("dpt_tiny").eval()
    assert isinstance(net, DPTDepth)
    image = torch.rand(2, 3, 48, 80)  # 3 x 5 tokens: the 1/32 level has 2 x 3 cells, not 1.5 x 2.5
    with torch.no_grad():
        out = net(image)
        assert out.shape == (2, 1, 48, 80) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        # it depends on the image, per sample: swapping the batch swaps the outputs
        swapped = net(image.flip(0))
        assert_close(swapped, out.flip(0), "batch independence", atol=1e-5, rtol=1e-4)
        assert float((out[0] - out[1]).abs().max()) > 1e-4, "the output ignores the image"
        # sides that are not multiples of 16: resized in and out, as DPT's run_monodepth.py
        odd = net(torch.rand(1, 3, 50, 70))
        assert odd.shape == (1, 1, 50, 70) and torch.isfinite(odd).all()
    with pytest.raises(ValueError, match=r"image: expected shape \(B, 3, H, W\)"):
        net(torch.rand(1, 1, 32, 32))


def test_every_parameter_gets_a_gradient():
    """No parameter is left unused (an unused one stops DDP): the pruned final norm, no rcu1 without a
    skip; all gradients finite."""
    net = DPTDepth("dpt_tiny")
    net(torch.rand(2, 3, 32, 48)).square().mean().backward()
    unused = [k for k, p in net.named_parameters() if p.grad is None]
    assert not unused, unused
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.fusion[3].rcu1 is None and all(f.rcu1 is not None for f in net.fusion[:3])


def test_variants_tap_dpts_blocks():
    """The hooks of isl-org/DPT dpt/models.py: ViT-B/16 [2, 5, 8, 11], ViT-L/16 [5, 11, 17, 23], hybrid
    ResNet stages 0, 1 then blocks 8, 11; widths of dpt/blocks.py _make_encoder."""
    assert DPT_VARIANTS["dpt_base"].hooks == (2, 5, 8, 11)
    assert DPT_VARIANTS["dpt_large"].hooks == (5, 11, 17, 23)
    assert DPT_VARIANTS["dpt_hybrid"].hooks == ((STAGE, 0), (STAGE, 1), 8, 11)
    assert DPT_VARIANTS["dpt_base"].reassemble == (96, 192, 384, 768)
    assert DPT_VARIANTS["dpt_large"].reassemble == (256, 512, 1024, 1024)
    assert DPT_VARIANTS["dpt_hybrid"].reassemble == (256, 512, 768, 768)
    assert all(v.features == 256 for k, v in DPT_VARIANTS.items() if k != "dpt_tiny")


def check_taps(net: DPTDepth, x: torch.Tensor) -> None:
    with torch.no_grad():
        taps = net.taps(x)
        blocks, stages = reference_taps(net, x)
    assert len(taps) == 4
    for k, hook in enumerate(net.hooks):
        if isinstance(hook, tuple):
            assert_close(taps[k], stages[hook[1]], f"tap {k} = stage {hook[1]}")
            continue
        tokens, cls = taps[k]
        ref = blocks[hook]  # (B, 1 + N, C): class token first, raw (no final norm)
        assert_close(tokens, ref[:, 1:], f"tap {k} tokens = block {hook}")
        assert_close(cls, ref[:, 0], f"tap {k} class token = block {hook}")
        for other in (hook - 1, hook + 1):  # and not a neighbour's
            if 0 <= other < len(blocks):
                assert float((blocks[other][:, 1:] - tokens).abs().max()) > 1e-3, (k, hook, other)


def test_tiny_taps_read_the_outputs_of_its_blocks():
    net = DPTDepth("dpt_tiny").eval()
    assert net.hooks == (0, 1, 2, 3) and len(net.encoder.blocks) == 4
    x = torch.randn(2, 3, 48, 64)
    check_taps(net, x)
    # the pruned encoder keeps no final norm: the last tap is block 3's raw output
    assert isinstance(net.encoder.norm, torch.nn.Identity)


def test_hybrid_taps_read_the_resnet_stages_then_the_blocks(monkeypatch):
    monkeypatch.setitem(DPT_VARIANTS, "small_hybrid", SMALL_HYBRID)
    torch.manual_seed(0)
    net = DPTDepth("small_hybrid").eval()
    x = torch.randn(1, 3, 32, 48)
    check_taps(net, x)
    with torch.no_grad():
        stage0, stage1, _, _ = net.taps(x)
        out = net(torch.rand(1, 3, 32, 48))
    assert stage0.shape == (1, 256, 8, 12) and stage1.shape == (1, 512, 4, 6)  # strides 4 and 8
    assert out.shape == (1, 1, 32, 48) and torch.isfinite(out).all()
    assert net._stage_out == []  # no activations kept between calls


@pytest.mark.slow
def test_dpt_hybrid_builds_and_taps_its_resnet_stages():
    net = DPTDepth("dpt_hybrid").eval()
    assert len(net.encoder.blocks) == 12 and net.encoder.embed_dim == 768
    check_taps(net, torch.randn(1, 3, 32, 48))


def test_project_readout_and_reassembled_level_sizes():
    """Readout "project" (dpt/vit.py ProjectReadout): GELU(W [token; cls] + b), against the formula; then the
    four levels at 1/4, 1/8, 1/16, 1/32 (ceil) of a 48 x 80 image with the reassemble widths."""
    readout = ProjectReadout(8)
    tokens, cls = torch.randn(2, 6, 8), torch.randn(2, 8)
    lin = readout.project[0]
    ref = F.gelu(torch.cat([tokens, cls[:, None].expand(2, 6, 8)], -1) @ lin.weight.T + lin.bias)
    assert_close(readout(tokens, cls), ref, "project readout", **TOL[torch.float32])
    net = DPTDepth("dpt_tiny").eval()
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        taps = net.taps(x)
        levels = [net.reassemble[i](*taps[i], (3, 5)) for i in range(4)]
        moved = net.reassemble[2](taps[2][0], taps[2][1] + 1.0, (3, 5))
    sizes = [(12, 20), (6, 10), (3, 5), (2, 3)]
    assert [tuple(v.shape) for v in levels] == [(2, c, *s) for c, s in zip((24, 48, 96, 192), sizes)]
    assert float((moved - levels[2]).abs().max()) > 1e-4, "the class token does not reach the level"


# ------------------------------------------------------------------------------------------------ weights
def test_missing_weight_file_is_an_error_naming_the_key(tmp_path):
    path = str(tmp_path / "vit.pth")
    with pytest.raises(FileNotFoundError, match=r"model.pretrained_path: no file at .*vit\.pth"):
        DPTDepth("dpt_tiny", pretrained_path=path)
    with pytest.raises(FileNotFoundError, match="model.pretrained_path"):  # through the RGPD module
        RGPDModule(backbone="dpt_tiny", pretrained_path=path)


def test_a_saved_encoder_state_dict_loads_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    src = DPTDepth("dpt_tiny")
    path = tmp_path / "encoder.pth"
    torch.save(src.encoder.state_dict(), path)
    torch.manual_seed(2)
    net = DPTDepth("dpt_tiny", pretrained_path=str(path))
    loaded, saved = net.encoder.state_dict(), src.encoder.state_dict()
    assert set(loaded) == set(saved)
    for k, v in saved.items():
        assert torch.equal(loaded[k], v), k
    # only the encoder comes from the file: the decoder is the new seed's
    assert not torch.equal(net.head[0].weight, src.head[0].weight)


def test_a_timm_checkpoint_of_the_encoder_loads_with_its_position_embeddings_resampled(tmp_path):
    """A timm file of the encoder's model at timm's own size (224: 14 x 14 positions, classifier and final
    norm included) loads into the 64 x 64 tiny DPT: blocks equal, positions resampled to 4 x 4 by timm."""
    torch.manual_seed(3)
    full = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=4)
    path = tmp_path / "vit_tiny_depth4.pth"
    torch.save(full.state_dict(), path)
    net = DPTDepth("dpt_tiny", pretrained_path=str(path))
    for k, v in net.encoder.state_dict().items():
        if k != "pos_embed":
            assert torch.equal(v, full.state_dict()[k]), k
    assert net.encoder.pos_embed.shape == (1, 1 + 16, 192)
    assert torch.equal(net.encoder.pos_embed[:, 0], full.pos_embed[:, 0])  # the class token's, unchanged


def test_a_file_of_another_model_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "lrn.pth"
    torch.save(LightWeightRefineNet("mobilenetv2_100").state_dict(), path)
    with pytest.raises(ValueError, match=r"model.pretrained_path: .*lrn\.pth.* is not a state dict"):
        DPTDepth("dpt_tiny", pretrained_path=str(path))


def test_backbone_names_select_the_network():
    assert isinstance(build_network("mobilenetv2_100"), LightWeightRefineNet)
    with pytest.raises(ValueError, match=r"model.backbone: expected one of .*dpt_hybrid.*dpt_tiny"):
        build_network("dpt_huge")
    cfg = compose("rgpd_dpt_synthetic")
    assert cfg.model.backbone == "dpt_tiny" and cfg.model.name == "rgpd"
    assert set(dpt.DPT_VARIANTS) >= {"dpt_hybrid", "dpt_base", "dpt_large", "dpt_tiny"}


# ----------------------------------------------------------------------------------------------- training
def test_tiny_dpt_trains_on_the_synthetic_default_through_the_entry_point(tmp_path):
    """rgpd_dpt_synthetic shrunk to 4 fixed 64 x 64 training rooms (one batch, no augmentation) for 32 steps,
    the last 8 with L^SSI + 0.1 L^C (the two stages): L^SSI falls clearly. Measured: 1.33 over the first
    five steps to 0.79 over the last five (ratio 0.60); 24 plain AdamW steps of L^SSI on this batch give
    ratio 0.55 (loss 0.73), and with a constant input instead of the image (a network that ignores it)
    ratio 0.82 (loss 1.10)."""
    entry = "{{reader: synthetic_depth, split: {split}, num_samples: 4, image_size: [64, 64], seed: 3{x}}}"
    run = tmp_path / "run"
    result = train(
        compose(
            "rgpd_dpt_synthetic",
            [
                f"run_dir={run}",
                "logger=csv",
                "data.batch_size=4",
                "data.augment=false",
                f"data.train=[{entry.format(split='train', x=', utss_fraction: 1.0')}]",
                f"data.val=[{entry.format(split='val', x='')}]",
                f"data.test=[{entry.format(split='test', x='')}]",
                "trainer.max_epochs=32",
                "trainer.check_val_every_n_epoch=32",
                "trainer.accelerator=cpu",
                "trainer.enable_progress_bar=false",
                "trainer.log_every_n_steps=1",
                "model.consistency_start_epoch=24",  # both stages of Sec. 5: 24 SSI steps, then 8 with L^C
                "model.log_images=0",
                "model.log_points=64",
                "test_after_fit=false",
            ],
        )
    )
    assert torch.isfinite(torch.tensor(result["val"]["val/absrel"]))
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    loss = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    ssi = [float(r["train/ssi"]) for r in rows if r.get("train/ssi")]
    assert len(loss) == len(ssi) == 32 and all(torch.isfinite(torch.tensor(loss)))
    with_c = [int(r["step"]) for r in rows if r.get("train/consistency")]
    assert with_c and min(with_c) == 24, "L^C was not part of the loss from epoch 24 on"
    first, last = sum(ssi[:5]) / 5, sum(ssi[-5:]) / 5
    assert last < 0.7 * first and last < 0.95, (
        f"L^SSI {first:.3f} -> {last:.3f} (first / last 5 steps): {ssi}"
    )
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    assert "net.encoder.blocks.3.attn.qkv.weight" in state and "net.fusion.0.rcu1.conv1.weight" in state
