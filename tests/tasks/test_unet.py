from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lensloop.embed.export import INPUT_NAME, export_onnx  # noqa: E402
from lensloop.embed.resnet import ResNetName, build_resnet  # noqa: E402
from lensloop.errors import ConfigError, ImageError, UnknownNameError  # noqa: E402
from lensloop.tasks.unet import UNET_ENCODERS, UNet, adapt_input_conv  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# torch's own pytree code warns during torch.export (torch 2.13); nothing callers can fix.
TORCH_EXPORT_WARNING = r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"


def _small(**kwargs: object) -> UNet:
    torch.manual_seed(0)
    return UNet(1, 2, base_channels=4, depth=3, **kwargs)  # type: ignore[arg-type]


def _ort_session(path: Path) -> object:
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize(("height", "width"), [(37, 53), (16, 16), (9, 100), (64, 33)])
def test_output_has_the_input_size(norm: str, height: int, width: int) -> None:
    model = _small(norm=norm)
    x = torch.randn(3, 1, height, width)
    assert model(x).shape == (3, 2, height, width)
    with torch.no_grad():
        assert model.eval()(x).shape == (3, 2, height, width)


def test_defaults_are_a_plain_depth_4_unet() -> None:
    model = UNet(1, 1)
    assert model.encoder_name == "plain"
    assert model.stride == 16
    assert model.min_size == 9
    assert sum(p.numel() for p in model.parameters()) == 7_239_745


def test_padding_does_not_leak_across_samples() -> None:
    model = _small().eval()
    x = torch.randn(2, 1, 37, 53)
    with torch.no_grad():
        together = model(x)
        alone = model(x[1:])
    torch.testing.assert_close(together[1:], alone, atol=1e-5, rtol=0)


def test_gradients_reach_every_parameter_and_the_input() -> None:
    model = _small(norm="group")
    x = torch.randn(2, 1, 37, 53, requires_grad=True)
    loss = (model(x) ** 2).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert x.grad is not None
    assert x.grad.abs().sum() > 0


def test_init_is_deterministic_given_the_seed() -> None:
    first, second = _small().state_dict(), _small().state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)
    torch.manual_seed(1)
    other = UNet(1, 2, base_channels=4, depth=3).state_dict()
    assert not torch.equal(first["encoder.stages.0.0.weight"], other["encoder.stages.0.0.weight"])


def test_resnet_encoder_init_is_deterministic_given_the_seed() -> None:
    torch.manual_seed(3)
    first = UNet(3, 1, base_channels=4, encoder="resnet18").state_dict()
    torch.manual_seed(3)
    second = UNet(3, 1, base_channels=4, encoder="resnet18").state_dict()
    for key in first:
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)


def test_too_small_or_misshaped_inputs_are_refused() -> None:
    model = _small()  # stride 8: at least 5 pixels
    assert model(torch.randn(2, 1, 5, 5)).shape == (2, 2, 5, 5)
    with pytest.raises(ImageError, match=r"at least 5 pixels; received 4x30"):
        model(torch.randn(2, 1, 4, 30))
    with pytest.raises(ImageError, match=r"expects a \(N, 1, H, W\) tensor; received shape"):
        model(torch.randn(2, 3, 16, 16))
    with pytest.raises(ImageError, match=r"received shape \(1, 16, 16\)"):
        model(torch.randn(1, 16, 16))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_encoder_keeps_torchvision_names(name: ResNetName) -> None:
    torch.manual_seed(0)
    model = UNet(3, 1, base_channels=4, encoder=name)
    reference = {
        k: v for k, v in build_resnet(name).state_dict().items() if not k.startswith("fc.")
    }
    encoder = model.encoder.state_dict()
    assert list(encoder) == list(reference)
    assert {k: v.shape for k, v in encoder.items()} == {k: v.shape for k, v in reference.items()}
    assert model.encoder_name == name
    assert model.stride == 32
    x = torch.randn(2, 3, 37, 53)
    assert model(x).shape == (2, 1, 37, 53)


def test_resnet_encoder_loads_a_torchvision_checkpoint_with_fc() -> None:
    torch.manual_seed(5)
    checkpoint = build_resnet("resnet18").state_dict()  # stands in for ImageNet weights
    torch.manual_seed(0)
    model = UNet(3, 1, base_channels=4, encoder="resnet18")
    model.load_encoder_state_dict({"state_dict": checkpoint}, source="test checkpoint")
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, checkpoint[key], atol=0, rtol=0)
    broken = {k: v for k, v in checkpoint.items() if not k.startswith("layer4.1.")}
    with pytest.raises(ConfigError, match=r"(?s)test checkpoint does not fit.*10 missing keys"):
        model.load_encoder_state_dict(broken, source="test checkpoint")


@pytest.mark.parametrize("in_channels", [1, 2, 6])
def test_resnet_encoder_adapts_rgb_weights_to_other_channel_counts(in_channels: int) -> None:
    torch.manual_seed(5)
    checkpoint = build_resnet("resnet18").state_dict()
    model = UNet(in_channels, 1, base_channels=4, encoder="resnet18")
    model.load_encoder_state_dict(checkpoint)
    conv1 = model.encoder.state_dict()["conv1.weight"]
    assert conv1.shape == (64, in_channels, 7, 7)
    rgb = checkpoint["conv1.weight"]
    if in_channels == 2:  # cycled through R, G, B and scaled by 3 / 2
        torch.testing.assert_close(conv1, rgb[:, :2] * 1.5)
    else:  # a grey image over all channels gives the RGB model's first activation
        grey = torch.randn(1, 1, 40, 40)
        expected = torch.nn.functional.conv2d(grey.expand(1, 3, 40, 40), rgb, stride=2, padding=3)
        got = torch.nn.functional.conv2d(
            grey.expand(1, in_channels, 40, 40), conv1, stride=2, padding=3
        )
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert model(torch.randn(2, in_channels, 33, 40)).shape == (2, 1, 33, 40)


def test_a_built_resnet_is_wrapped_and_shared() -> None:
    torch.manual_seed(0)
    resnet = build_resnet("resnet18")
    model = UNet(3, 4, base_channels=4, encoder=resnet)
    assert model.encoder_name == "resnet18"
    assert model.encoder.layer3 is resnet.layer3
    assert model.encoder.conv1 is resnet.conv1
    assert "fc.weight" not in model.encoder.state_dict()
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 4, 40, 40)
    grey = UNet(1, 4, base_channels=4, encoder=resnet)
    assert grey.encoder.conv1 is not resnet.conv1  # the ResNet itself is left alone
    assert resnet.conv1.in_channels == 3


def test_adapt_input_conv_keeps_the_weights_for_three_channels() -> None:
    weight = torch.randn(8, 3, 3, 3)
    torch.testing.assert_close(adapt_input_conv(weight, 3), weight)
    assert adapt_input_conv(weight, 7).shape == (8, 7, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"encoder": "vgg16"}, UnknownNameError, "unknown U-Net encoder 'vgg16'; valid names"),
        ({"depth": 0}, ConfigError, "depth must be between 1 and 6"),
        ({"depth": 7}, ConfigError, "depth must be between 1 and 6"),
        ({"encoder": "resnet18", "depth": 4}, ConfigError, "fixed depth of 5"),
        ({"norm": "layer"}, ConfigError, "norm must be one of batch, group; received 'layer'"),
        ({"base_channels": 0}, ConfigError, "base_channels must be a positive integer"),
    ],
)
def test_bad_configurations_are_refused(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        UNet(1, 1, **kwargs)  # type: ignore[arg-type]


def test_bad_channel_counts_and_plain_weights_are_refused() -> None:
    with pytest.raises(ConfigError, match="in_channels must be a positive integer; received 0"):
        UNet(0, 1)
    with pytest.raises(ConfigError, match="out_channels must be a positive integer"):
        UNet(1, 0)
    with pytest.raises(ConfigError, match="needs a ResNet encoder"):
        _small().load_encoder_state_dict({})
    assert set(UNET_ENCODERS) == {"plain", "resnet18", "resnet50"}


def _trained_batchnorm(model: UNet, channels: int) -> UNet:
    """Run a few training batches so BatchNorm statistics are not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, channels, 48, 48) * 2 + 0.5)
    return model.eval()


@pytest.mark.slow
def test_onnx_export_with_the_project_helper_accepts_any_size(tmp_path: Path) -> None:
    # export_onnx traces a (2, 3, 64, 64) input and checks batch 1 x 64 and batch 3 x 96;
    # here ONNX Runtime also runs sizes that need padding (not multiples of 32).
    torch.manual_seed(0)
    model = _trained_batchnorm(UNet(3, 2, base_channels=8, encoder="resnet18"), 3)
    path = export_onnx(model, tmp_path / "unet.onnx", input_size=64, output_name="output")
    session = _ort_session(path)
    worst = 0.0
    for shape in [(1, 3, 37, 53), (3, 3, 61, 45), (2, 3, 17, 100)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {INPUT_NAME: x.numpy()})[0]  # type: ignore[attr-defined]
        assert got.shape == (shape[0], 2, *shape[2:])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst < 1e-4


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCH_EXPORT_WARNING)
def test_onnx_export_of_a_grey_plain_unet_accepts_any_size(tmp_path: Path) -> None:
    # export_onnx is written for 3-channel inputs; a 1-channel model goes through the same
    # torch.export-based exporter directly, with batch, height and width dynamic.
    torch.manual_seed(0)
    model = _trained_batchnorm(UNet(1, 1, base_channels=8, depth=4, norm="group"), 1)
    dynamic = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(
        model,
        (torch.randn(2, 1, 64, 64),),
        dynamo=True,
        input_names=["input"],
        output_names=["output"],
        dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
        opset_version=18,
        verbose=False,
    )
    assert program is not None
    path = tmp_path / "unet.onnx"
    program.save(path, external_data=False)
    session = _ort_session(path)
    for shape in [(1, 1, 37, 53), (3, 1, 130, 71)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]  # type: ignore[attr-defined]
        assert got.shape == shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
