from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from lensloop.embed.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from lensloop.embed.resnet import ResNetFeatures, build_resnet
from lensloop.errors import ConfigError, LensloopError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def resnet18() -> ResNetFeatures:
    torch.manual_seed(0)
    return ResNetFeatures(build_resnet("resnet18"))


@pytest.fixture(scope="module")
def exported(resnet18: ResNetFeatures, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "models" / "resnet18.onnx"
    assert export_onnx(resnet18, path, input_size=64) == path
    return path


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.slow
def test_resnet18_export_matches_torch_at_other_sizes_and_batches(
    resnet18: ResNetFeatures, exported: Path
) -> None:
    assert resnet18.training  # export_onnx restored the mode it found
    session = _session(exported)
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    batch, _, height, width = session.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in (batch, height, width))  # all dynamic
    assert session.get_outputs()[0].shape[1] == 512
    model = resnet18.eval()
    generator = torch.Generator().manual_seed(7)
    for n, side in ((1, 64), (3, 96), (3, 64), (1, 96)):
        x = torch.randn(n, 3, side, side, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {INPUT_NAME: x.numpy()})[0]
        assert got.shape == (n, 512)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    resnet18.train()
    assert sorted(p.name for p in exported.parent.iterdir()) == ["resnet18.onnx"]  # no temp


class _Drifting(nn.Module):
    """Eager output changes on every call, so no export can match it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.mean(dim=(2, 3)) + float(self.calls)


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x.mean(dim=(2, 3))
        return x.amax(dim=(2, 3))


@pytest.mark.slow
def test_failed_verification_or_export_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    with pytest.raises(LensloopError, match=rf"exported model {path} differs from torch by"):
        export_onnx(_Drifting(), path, input_size=16)
    with pytest.raises(LensloopError, match="exporting _DataDependent to ONNX failed"):
        export_onnx(_DataDependent(), path, input_size=16)
    assert list(tmp_path.iterdir()) == []


def test_rejects_bad_options(tmp_path: Path) -> None:
    model = _DataDependent()
    with pytest.raises(ConfigError, match="opset 17 is below 18"):
        export_onnx(model, tmp_path / "m.onnx", input_size=32, opset=17)
    with pytest.raises(ConfigError, match="input_size must be at least 8 pixels, got 4"):
        export_onnx(model, tmp_path / "m.onnx", input_size=4)
