"""Image encoders, their checkpoint layouts and the frozen teacher (lidarcl.models.image).

References: torchvision's published parameter counts (ResNet50_Weights.IMAGENET1K_V1:
25,557,032; ResNet18: 11,689,512, both with the 1000-way ``fc``), torchvision's dilation
rule worked out by hand, ``torch.nn.MultiheadAttention`` for the transformer block, and
torchvision / timm themselves where they import (not on the CPU install: their wheels for
torch 2.13 are CUDA builds).
"""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from lidarcl.engine.checkpoint import weights_digest
from lidarcl.errors import DataError
from lidarcl.models.image import ImageTeacher, ResNet, VisionTransformer, load_image_encoder
from lidarcl.models.image.vit import Block


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and buffer random (BatchNorm statistics too), so that a key mapped
    to the wrong tensor changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=gen) * 0.2 + 0.9 if (
                    name.endswith("running_var")) else torch.randn(tensor.shape, generator=gen)
                scale = 0.05 if tensor.ndim > 1 else 0.1
                tensor.copy_(values if name.endswith("running_var") else values * scale)
    return module.eval()


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001  (a CUDA-only wheel fails with RuntimeError)
        return False
    return True


# ------------------------------------------------------------------------------- ResNet

@pytest.mark.parametrize("depth, published", [(50, 25_557_032), (18, 11_689_512)])
def test_resnet_has_torchvisions_parameter_count(depth, published):
    fc = 512 * (4 if depth == 50 else 1) * 1000 + 1000  # the classifier we leave out
    assert sum(p.numel() for p in ResNet(depth).parameters()) == published - fc


def test_resnet_dilation_follows_torchvisions_rule():
    """replace_stride_with_dilation=[True]*3: the first block of layer k keeps the previous
    dilation (1, 2, 4), the others use the doubled one (2, 4, 8); no stride after layer 1."""
    net = ResNet(50, dilate=(True, True, True))
    for name, first, rest in (("layer2", 1, 2), ("layer3", 2, 4), ("layer4", 4, 8)):
        blocks = list(getattr(net, name))
        assert blocks[0].conv2.dilation == (first, first) and blocks[0].conv2.stride == (1, 1)
        assert all(b.conv2.dilation == (rest, rest) for b in blocks[1:])
        assert blocks[0].downsample[0].stride == (1, 1)
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 3, 64, 96))
    assert out.shape == (1, 2048, 16, 24) and net.stride == 4
    plain = ResNet(18).eval()
    with torch.no_grad():
        assert plain(torch.zeros(1, 3, 64, 96)).shape == (1, 512, 2, 3) and plain.stride == 32


@pytest.mark.skipif(not _importable("torchvision"),
                    reason="torchvision does not import here (its torch 2.13 wheels are CUDA "
                           "builds); runs where it does")
def test_resnet_matches_torchvision_weight_for_weight():
    import torchvision

    theirs = _randomised(torchvision.models.resnet50(
        replace_stride_with_dilation=[True, True, True]), 0)
    ours = ResNet(50, dilate=(True, True, True)).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items()
                          if not k.startswith("fc.")})
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(theirs.children())[:-2])
        torch.testing.assert_close(ours(images), trunk(images))


# ---------------------------------------------------------------------------------- ViT

def test_vit_block_matches_torch_multihead_attention():
    torch.manual_seed(0)
    block = _randomised(Block(48, 4), 1)
    mha = torch.nn.MultiheadAttention(48, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(block.attn.qkv.weight)
        mha.in_proj_bias.copy_(block.attn.qkv.bias)
        mha.out_proj.weight.copy_(block.attn.proj.weight)
        mha.out_proj.bias.copy_(block.attn.proj.bias)
        x = torch.randn(2, 7, 48)
        h = F.layer_norm(x, (48,), block.norm1.weight, block.norm1.bias, 1e-6)
        x1 = x + block.ls1.gamma * mha(h, h, h, need_weights=False)[0]
        h = F.layer_norm(x1, (48,), block.norm2.weight, block.norm2.bias, 1e-6)
        mlp = F.linear(F.gelu(F.linear(h, block.mlp.fc1.weight, block.mlp.fc1.bias)),
                       block.mlp.fc2.weight, block.mlp.fc2.bias)
        expected = x1 + block.ls2.gamma * mlp
        torch.testing.assert_close(block(x), expected)


def test_vit_layout_and_position_embedding():
    vit = VisionTransformer("vit_s")
    state = vit.state_dict()
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert state["mask_token"].shape == (1, 384) and state["cls_token"].shape == (1, 1, 384)
    assert {"blocks.11.ls2.gamma", "blocks.0.attn.qkv.weight", "norm.bias",
            "patch_embed.proj.weight"} <= set(state)
    per_block = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                 "attn.proj.weight", "attn.proj.bias", "ls1.gamma", "norm2.weight",
                 "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                 "mlp.fc2.bias", "ls2.gamma"}
    assert {k for k in state if k.startswith("blocks.")} == {
        f"blocks.{i}.{name}" for i in range(12) for name in per_block}
    with torch.no_grad():
        assert vit.position_embedding(37, 37) is vit.pos_embed
        resized = vit.position_embedding(16, 32)
        assert resized.shape == (1, 1 + 16 * 32, 384)
        torch.testing.assert_close(resized[:, 0], vit.pos_embed[:, 0])
        # DINOv2's resize: bicubic with scale factors (n + 0.1) / 37, no antialiasing
        grid = vit.pos_embed[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
        expected = F.interpolate(grid, scale_factor=(16.1 / 37, 32.1 / 37), mode="bicubic")
        torch.testing.assert_close(resized[:, 1:], expected.flatten(2).transpose(1, 2))
        tiny = VisionTransformer((32, 2, 2)).eval()
        assert tiny(torch.zeros(2, 3, 28, 42)).shape == (2, 32, 2, 3)
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        tiny(torch.zeros(1, 3, 30, 42))


@pytest.mark.skipif(not _importable("timm"),
                    reason="timm does not import here (it imports torchvision, whose torch "
                           "2.13 wheels are CUDA builds); runs where it does")
def test_vit_matches_timm_dinov2_at_the_training_grid():
    import timm

    theirs = _randomised(timm.create_model("vit_small_patch14_dinov2", pretrained=False,
                                           img_size=518), 0)
    ours = VisionTransformer("vit_s").eval()
    ours.load_state_dict({**ours.state_dict(), **theirs.state_dict()})
    images = torch.randn(1, 3, 518, 518)
    with torch.no_grad():
        tokens = theirs.forward_features(images)  # after the final norm
        torch.testing.assert_close(ours.norm(ours.tokens(images)[0]), tokens)


# ------------------------------------------------------------------------ checkpoints

def _layout_file(tmp_path, layout: str, encoder: torch.nn.Module):
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    path = tmp_path / f"{layout}.pth"
    if layout == "torchvision":
        state.update({"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)})
        torch.save(state, path)
    elif layout == "moco_v2":  # what MoCo's main_moco.py saves
        full = {f"module.encoder_q.{k}": v for k, v in state.items()}
        full.update({f"module.encoder_k.{k}": v + 1 for k, v in state.items()})
        full.update({"module.encoder_q.fc.0.weight": torch.randn(512, 512),
                     "module.encoder_q.fc.2.weight": torch.randn(128, 512),
                     "module.queue": torch.randn(128, 64), "module.queue_ptr": torch.zeros(1)})
        torch.save({"epoch": 800, "arch": "resnet18", "state_dict": full,
                    "optimizer": {"state": {}, "param_groups": []}}, path)
    elif layout == "dinov2":
        torch.save(state, path)
    else:
        torch.save({"state_dict": state, "meta": {"encoder": {"type": "resnet", "depth": 18},
                                                  "weights_sha256": weights_digest(state)}},
                   path)
    return path


@pytest.mark.parametrize("layout", ["torchvision", "moco_v2", "dinov2", "lidarcl"])
def test_each_layout_loads_the_weights_it_holds(layout, tmp_path):
    if layout == "dinov2":
        source, fresh = VisionTransformer((32, 2, 2)), VisionTransformer((32, 2, 2))
        images = torch.rand(1, 3, 28, 56)
    else:
        source, fresh = ResNet(18), ResNet(18)
        images = torch.rand(1, 3, 64, 64)
    source = _randomised(source, 3)
    path = _layout_file(tmp_path, layout, source)
    load_image_encoder(fresh, path, layout)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(images), source(images))
    if layout == "dinov2":  # timm's files lack DINOv2's unused mask_token
        state = torch.load(path, weights_only=True)
        del state["mask_token"]
        torch.save(state, path)
        load_image_encoder(VisionTransformer((32, 2, 2)), path, layout)


def test_wrong_or_partial_files_name_the_keys(tmp_path):
    source = ResNet(18)
    path = _layout_file(tmp_path, "torchvision", source)
    state = torch.load(path, weights_only=True)

    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(DataError, match=r"partial\.pth: .*missing keys: layer4\.0\.bn1\.bias"):
        load_image_encoder(ResNet(18), tmp_path / "partial.pth", "torchvision")

    deeper = tmp_path / "deeper"  # ResNet-34 has a third block in layer 1
    deeper.mkdir()
    with pytest.raises(DataError, match=r"unexpected keys: layer1\.2\.bn1\.bias, .* in all"):
        load_image_encoder(ResNet(18), _layout_file(deeper, "torchvision", ResNet(34)),
                           "torchvision")

    torch.save({k: (v[:1] if k == "conv1.weight" else v) for k, v in state.items()},
               tmp_path / "shape.pth")
    with pytest.raises(DataError, match=r"conv1\.weight \(1, 3, 7, 7\) vs \(64, 3, 7, 7\)"):
        load_image_encoder(ResNet(18), tmp_path / "shape.pth", "torchvision")

    torch.save({"state_dict": state}, tmp_path / "notmoco.pth")
    with pytest.raises(DataError, match="notmoco.pth: no 'module.encoder_q.\\*' keys"):
        load_image_encoder(ResNet(18), tmp_path / "notmoco.pth", "moco_v2")

    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="broken.pth: cannot read"):
        load_image_encoder(ResNet(18), tmp_path / "broken.pth", "torchvision")
    with pytest.raises(DataError, match="absent.pth: image encoder checkpoint not found"):
        load_image_encoder(ResNet(18), tmp_path / "absent.pth", "torchvision")

    lidarcl_file = _layout_file(tmp_path, "lidarcl", source)
    data = torch.load(lidarcl_file, weights_only=True)
    data["state_dict"]["conv1.weight"][0, 0, 0, 0] += 1
    torch.save(data, lidarcl_file)
    with pytest.raises(DataError, match="weights_sha256"):
        load_image_encoder(ResNet(18), lidarcl_file, "lidarcl")
    with pytest.raises(ValueError, match="unknown image checkpoint layout 'mmcls'"):
        load_image_encoder(ResNet(18), path, "mmcls")


# ---------------------------------------------------------------------------- teacher

def test_teacher_is_frozen_normalised_and_full_resolution(tmp_path):
    torch.manual_seed(0)
    path = _layout_file(tmp_path, "torchvision", _randomised(ResNet(18), 5))
    teacher = ImageTeacher(dict(type="resnet", depth=18, dilate=(True, True, True)),
                           checkpoint=str(path), layout="torchvision", head=16).train()
    assert not teacher.encoder.training and teacher.stride == 4
    running = teacher.encoder.bn1.running_mean.clone()
    images = torch.rand(2, 3, 32, 48)
    out = teacher(images)
    assert out.shape == (2, 16, 32, 48)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 32, 48))
    assert torch.equal(teacher.encoder.bn1.running_mean, running)  # statistics frozen
    out.sum().backward()
    assert teacher.head.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in teacher.encoder.parameters())
    # ImageNet normalisation, then the encoder; x4 bilinear (align_corners) upsampling
    with torch.no_grad():
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        low = teacher.head(teacher.encoder((images - mean) / std))
        expected = F.normalize(F.interpolate(low, size=(32, 48), mode="bilinear",
                                             align_corners=True), dim=1)
        torch.testing.assert_close(teacher(images), expected)
    raw = ImageTeacher(dict(type="vit", size=(32, 2, 2)), head=None)
    assert raw(torch.rand(1, 3, 28, 42)).shape == (1, 32, 28, 42) and raw.out_channels == 32
    with pytest.raises(ValueError, match="say which layout"):
        ImageTeacher(dict(type="resnet", depth=18), checkpoint=str(path))
