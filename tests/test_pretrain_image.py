"""Self-supervised image pretraining (MoCo v2) for the camera-LiDAR teachers: the loss
against a per-query loop, the augmentation's colour ops against the standard library and
numpy, and ``tools/pretrain_image.py`` end to end on generated images, its file loaded by
the teacher."""
from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_moco_infonce_equals_a_loop_over_queries():
    from lidarcl.models.image.moco import moco_infonce

    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=1)
    k = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(7, 8, generator=gen), dim=1)
    tau = 0.2
    expected = []
    for i in range(5):
        pos = math.exp(float(q[i] @ k[i]) / tau)
        neg = sum(math.exp(float(q[i] @ n) / tau) for n in queue)
        expected.append(-math.log(pos / (pos + neg)))
    assert float(moco_infonce(q, k, queue, tau)) == pytest.approx(np.mean(expected), rel=1e-5)


def test_hue_rotation_equals_colorsys():
    from lidarcl.datasets.transforms.image_ssl import adjust_hue

    rng = np.random.default_rng(0)
    image = rng.random((3, 6, 7)).astype(np.float64)
    image[:, 0, 0] = 0.5  # grey: no hue
    image[:, 0, 1] = 0.0  # black
    for shift in (0.1, -0.07, 0.5):
        out = adjust_hue(torch.from_numpy(image), shift).numpy()
        for y in range(6):
            for x in range(7):
                h, s, v = colorsys.rgb_to_hsv(*image[:, y, x])
                expected = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
                np.testing.assert_allclose(out[:, y, x], expected, atol=1e-9)


def test_blur_equals_a_numpy_convolution():
    from lidarcl.datasets.transforms.image_ssl import gaussian_blur

    rng = np.random.default_rng(1)
    image = rng.random((3, 12, 15))
    sigma = 1.3
    radius = math.ceil(3 * sigma)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    expected = np.zeros_like(image)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            expected += kernel[dy] * kernel[dx] * padded[:, dy:dy + 12, dx:dx + 15]
    out = gaussian_blur(torch.from_numpy(image), sigma).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_crops_stay_inside_the_image_and_repeat_with_a_seed():
    from lidarcl.datasets.transforms.image_ssl import MoCoV2Crops

    crops = MoCoV2Crops(size=(24, 32), seed=3)
    for _ in range(200):
        top, left, h, w = crops.crop_box(45, 80)
        assert 0 <= top and top + h <= 45 and 0 <= left and left + w <= 80
        assert 0.2 * 45 * 80 * 0.8 <= h * w  # the area drawn in [0.2, 1], rounded
    image = (np.random.default_rng(0).random((45, 80, 3)) * 255).astype(np.uint8)
    first = MoCoV2Crops(size=(24, 32), seed=7)({"image": image})["views"]
    second = MoCoV2Crops(size=(24, 32), seed=7)({"image": image})["views"]
    assert first.shape == (2, 3, 24, 32) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert not torch.equal(first[0], first[1])


def test_pretrain_image_tool_writes_a_teacher_the_camera_configs_load(tiny_dataset, tmp_path):
    import importlib.util

    from lidarcl.models.image import ImageTeacher

    spec = importlib.util.spec_from_file_location("pretrain_image",
                                                  REPO / "tools" / "pretrain_image.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    work = tmp_path / "teacher"
    assert tool.main([str(REPO / "configs" / "pretrain_image" / "mocov2_resnet18_synth.py"),
                      "--work-dir", str(work), "--cfg-options",
                      f"train_dataloader.dataset.data_root={tiny_dataset}",
                      "train_dataloader.batch_size=4", "train_dataloader.num_workers=0",
                      "train_dataloader.persistent_workers=False", "train_cfg.max_iters=2",
                      "model.queue_size=16", "model.bn_splits=2",
                      "train_dataloader.dataset.pipeline.0.size=[32,32]"]) == 0
    path = work / "encoder.pth"
    data = torch.load(path, weights_only=True)
    assert data["meta"]["encoder"] == {"type": "resnet", "depth": 18}
    assert data["meta"]["iter"] == 2
    full = torch.load(work / "iter_2.pth", weights_only=True)["state_dict"]
    # the exported encoder is the trained query encoder, not the key copy
    for name, value in data["state_dict"].items():
        assert torch.equal(value, full[f"backbone.{name}"]), name
    assert any(not torch.equal(full[f"backbone.{n}"], full[f"backbone_key.{n}"])
               for n in data["state_dict"] if n.endswith("weight"))
    # the SLidR synth teacher (dilated layers 3-4) loads it strictly
    teacher = ImageTeacher(encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                           checkpoint=str(path), layout="lidarcl", head=64)
    for name, value in teacher.encoder.state_dict().items():
        assert torch.equal(value, data["state_dict"][name]), name
    features = teacher(torch.rand(1, 3, 32, 48))
    assert features.shape == (1, 64, 32, 48)


def test_moco_keys_are_unshuffled_back_to_their_queries():
    """With one BN group the shuffle cannot change a key, so the loss equals MoCo's InfoNCE
    of the unshuffled keys; the batch's keys then enter the queue in batch order."""
    from lidarcl.models.image.moco import MoCoV2, moco_infonce

    torch.manual_seed(0)
    model = MoCoV2(backbone=dict(type="resnet", depth=18), hidden=32, dim=16, queue_size=8,
                   bn_splits=1, seed=3).train()
    views = torch.rand(6, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    queue = model.queue.keys().clone()
    with torch.no_grad():
        query = model.embed(views[:, 0], model.backbone, model.neck)
        key = model.embed(views[:, 1], model.backbone_key, model.neck_key)
        loss = model.loss({"views": views})["loss_moco"]
    assert float(loss) == pytest.approx(float(moco_infonce(query, key, queue, 0.2)), rel=1e-5)
    assert torch.allclose(model.queue.ordered()[-6:], key, atol=1e-6)
    assert int(model.steps) == 1
