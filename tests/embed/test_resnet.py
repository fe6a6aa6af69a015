from __future__ import annotations

import re

import pytest
import torch

from lensloop.embed.resnet import (
    RESNET_FEATURE_DIMS,
    ResNetFeatures,
    build_resnet,
    load_state_dict_checked,
)
from lensloop.errors import ConfigError, UnknownNameError

# torchvision.models.resnet18().state_dict(), written out by hand: "<key> <shape>", with
# "<prefix> BN <c>" standing for a BatchNorm2d's five entries, in torchvision's order
# (weight, bias, running_mean, running_var, num_batches_tracked).
TORCHVISION_RESNET18 = """
conv1.weight 64,3,7,7
bn1 BN 64
layer1.0.conv1.weight 64,64,3,3
layer1.0.bn1 BN 64
layer1.0.conv2.weight 64,64,3,3
layer1.0.bn2 BN 64
layer1.1.conv1.weight 64,64,3,3
layer1.1.bn1 BN 64
layer1.1.conv2.weight 64,64,3,3
layer1.1.bn2 BN 64
layer2.0.conv1.weight 128,64,3,3
layer2.0.bn1 BN 128
layer2.0.conv2.weight 128,128,3,3
layer2.0.bn2 BN 128
layer2.0.downsample.0.weight 128,64,1,1
layer2.0.downsample.1 BN 128
layer2.1.conv1.weight 128,128,3,3
layer2.1.bn1 BN 128
layer2.1.conv2.weight 128,128,3,3
layer2.1.bn2 BN 128
layer3.0.conv1.weight 256,128,3,3
layer3.0.bn1 BN 256
layer3.0.conv2.weight 256,256,3,3
layer3.0.bn2 BN 256
layer3.0.downsample.0.weight 256,128,1,1
layer3.0.downsample.1 BN 256
layer3.1.conv1.weight 256,256,3,3
layer3.1.bn1 BN 256
layer3.1.conv2.weight 256,256,3,3
layer3.1.bn2 BN 256
layer4.0.conv1.weight 512,256,3,3
layer4.0.bn1 BN 512
layer4.0.conv2.weight 512,512,3,3
layer4.0.bn2 BN 512
layer4.0.downsample.0.weight 512,256,1,1
layer4.0.downsample.1 BN 512
layer4.1.conv1.weight 512,512,3,3
layer4.1.bn1 BN 512
layer4.1.conv2.weight 512,512,3,3
layer4.1.bn2 BN 512
fc.weight 1000,512
fc.bias 1000
"""


def _expected_keys(table: str) -> list[tuple[str, tuple[int, ...]]]:
    entries: list[tuple[str, tuple[int, ...]]] = []
    for line in table.strip().splitlines():
        parts = line.split()
        if parts[1] == "BN":
            c = int(parts[2])
            entries += [(f"{parts[0]}.{n}", (c,)) for n in ("weight", "bias")]
            entries += [(f"{parts[0]}.{n}", (c,)) for n in ("running_mean", "running_var")]
            entries.append((f"{parts[0]}.num_batches_tracked", ()))
        else:
            entries.append((parts[0], tuple(int(s) for s in parts[1].split(","))))
    return entries


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def resnet50_state() -> dict[str, torch.Tensor]:
    return build_resnet("resnet50").state_dict()


def test_resnet18_state_dict_is_torchvisions() -> None:
    expected = _expected_keys(TORCHVISION_RESNET18)
    state = build_resnet("resnet18").state_dict()
    assert len(expected) == 122
    assert len(state) == 122
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected
    assert state["layer1.0.conv1.weight"].shape == (64, 64, 3, 3)
    assert state["layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert state["bn1.num_batches_tracked"].dtype == torch.int64


def test_resnet50_layout(resnet50_state: dict[str, torch.Tensor]) -> None:
    # torchvision's resnet50: 161 parameters + 3 buffers in each of its 53 BatchNorms.
    assert len(resnet50_state) == 320
    assert resnet50_state["fc.weight"].shape == (1000, 2048)
    assert resnet50_state["fc.bias"].shape == (1000,)
    assert resnet50_state["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert resnet50_state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert resnet50_state["layer3.5.bn3.running_var"].shape == (1024,)
    assert resnet50_state["layer4.2.bn3.weight"].shape == (2048,)
    assert "layer4.3.conv1.weight" not in resnet50_state
    model = build_resnet("resnet50")
    block = model.layer2[0]
    # "v1.5": the stride sits on the 3x3 convolution, as in torchvision.
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2)


def test_features_and_logits_any_input_size() -> None:
    torch.manual_seed(0)
    model = build_resnet("resnet18", num_classes=7).eval()
    with torch.no_grad():
        for side in (32, 45):
            x = torch.randn(2, 3, side, side + 3)
            features = model.forward_features(x)
            assert features.shape == (2, RESNET_FEATURE_DIMS["resnet18"])
            assert features.dtype == torch.float32
            assert model(x).shape == (2, 7)
            torch.testing.assert_close(ResNetFeatures(model)(x), features)
            torch.testing.assert_close(model.fc(features), model(x))


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match=r"'resnet34'.*resnet18, resnet50"):
        build_resnet("resnet34")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_classes must be at least 1, got 0"):
        build_resnet("resnet18", num_classes=0)


def test_checked_load_round_trip_and_wrappers() -> None:
    torch.manual_seed(1)
    source = build_resnet("resnet18").eval()
    state = source.state_dict()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
    wrapped = [
        state,
        {"state_dict": state, "epoch": 3},
        {"model": state},
        {f"module.{k}": v for k, v in state.items()},
        {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    ]
    for checkpoint in wrapped:
        torch.manual_seed(2)
        target = build_resnet("resnet18").eval()
        load_state_dict_checked(target, checkpoint)
        with torch.no_grad():
            torch.testing.assert_close(target(x), expected)


def test_wrong_architecture_lists_keys_and_shapes(
    resnet50_state: dict[str, torch.Tensor],
) -> None:
    model = build_resnet("resnet18")
    before = model.conv1.weight.detach().clone()
    with pytest.raises(ConfigError) as info:
        load_state_dict_checked(model, resnet50_state, source="checkpoint r50.pth")
    message = str(info.value)
    assert message.startswith("checkpoint r50.pth does not fit the ResNet model")
    assert "layer1.0.conv1.weight: checkpoint (64, 64, 1, 1) vs model (64, 64, 3, 3)" in message
    assert re.search(r"\n  \d+ shape mismatches: ", message)
    unexpected = re.search(r"(\d+) unexpected keys: (.*)", message)
    assert unexpected is not None
    assert int(unexpected.group(1)) == 320 - 122
    assert unexpected.group(2).count(", ") == 9  # the first 10 only ...
    assert unexpected.group(2).endswith(f"(and {320 - 122 - 10} more)")  # ... and a count
    assert "missing keys" not in message  # every resnet18 key exists in resnet50
    torch.testing.assert_close(model.conv1.weight, before)  # nothing was loaded


def test_missing_keys_and_ignored_prefixes() -> None:
    model = build_resnet("resnet18")
    state = build_resnet("resnet18").state_dict()
    del state["layer3.1.bn2.running_var"]
    with pytest.raises(ConfigError, match=r"1 missing keys: layer3\.1\.bn2\.running_var\n"):
        load_state_dict_checked(model, state)
    # Checkpoints from before torch 0.4.1 have no BatchNorm counters; torch accepts them too.
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    old["layer3.1.bn2.running_var"] = torch.full((256,), 2.0)
    load_state_dict_checked(model, old)
    torch.testing.assert_close(model.layer3[1].bn2.running_var, torch.full((256,), 2.0))
    # A checkpoint fine-tuned for 10 classes still gives the backbone, when fc is ignored.
    tuned = build_resnet("resnet18", num_classes=10).state_dict()
    with pytest.raises(ConfigError, match=r"fc\.weight: checkpoint \(10, 512\) vs model"):
        load_state_dict_checked(model, tuned)
    load_state_dict_checked(model, tuned, ignore_prefixes=("fc.",))
    torch.testing.assert_close(model.layer4[1].conv2.weight, tuned["layer4.1.conv2.weight"])
    assert model.fc.weight.shape == (1000, 512)


def test_checkpoint_that_is_not_a_state_dict() -> None:
    model = build_resnet("resnet18")
    with pytest.raises(ConfigError, match="entry 'epoch' holds int, not a tensor"):
        load_state_dict_checked(model, {"conv1.weight": torch.zeros(1), "epoch": 3})
    with pytest.raises(ConfigError, match="holds dict, not a state_dict"):
        load_state_dict_checked(model, {})
