from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lensloop.embed.base import InputSpec, to_model_input
from lensloop.embed.onnx_backbone import OnnxBackbone, spec_version_suffix
from lensloop.errors import ConfigError

# Tiny models built with onnx.helper: a 1x1 convolution (weights W) gives a feature map;
# its spatial mean is x.mean((2, 3)) @ W.T, easy to check in NumPy.
OUT_CHANNELS = 5
WEIGHTS = np.random.default_rng(0).normal(size=(OUT_CHANNELS, 3)).astype(np.float32)
Dim = int | str


def write_model(
    path: Path,
    *,
    kind: Literal["map", "vec", "both", "3d"] = "vec",
    input_shape: tuple[Dim, Dim, Dim, Dim] = ("N", 3, "H", "W"),
    vec_shape: tuple[Dim, Dim] = ("N", OUT_CHANNELS),
) -> Path:
    channels = input_shape[1] if isinstance(input_shape[1], int) else 3
    weight = np.repeat(WEIGHTS[:, :1], channels, axis=1) if channels != 3 else WEIGHTS
    batch = input_shape[0]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["map"]),
        helper.make_node("GlobalAveragePool", ["map"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["vec"], axis=1),
        helper.make_node("Squeeze", ["pooled", "axis3"], ["cube"]),
    ]
    outputs = {
        "map": helper.make_tensor_value_info(
            "map", TensorProto.FLOAT, [batch, OUT_CHANNELS, "h", "w"]
        ),
        "vec": helper.make_tensor_value_info("vec", TensorProto.FLOAT, list(vec_shape)),
        "cube": helper.make_tensor_value_info("cube", TensorProto.FLOAT, [batch, OUT_CHANNELS, 1]),
    }
    chosen = {"map": ["map"], "vec": ["vec"], "both": ["vec", "map"], "3d": ["cube"]}[kind]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [outputs[name] for name in chosen],
        initializer=[
            numpy_helper.from_array(weight.reshape(OUT_CHANNELS, channels, 1, 1), "w"),
            numpy_helper.from_array(np.array([3], np.int64), "axis3"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, path)
    return path


def expected_vectors(batch: np.ndarray) -> np.ndarray:
    return batch.astype(np.float64).mean(axis=(2, 3)) @ WEIGHTS.T.astype(np.float64)


def images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
        rng.integers(0, 4096, (20, 20), dtype=np.uint16),
        rng.random((16, 50, 4)).astype(np.float32),
    ]


def test_sidecar_settings_feature_map_pooling_and_version(tmp_path: Path) -> None:
    path = write_model(tmp_path / "encoder.onnx", kind="map")
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    (tmp_path / "encoder.onnx.json").write_text(
        json.dumps({"input_size": 32, "mean": mean, "std": std})
    )
    backbone = OnnxBackbone(path, intra_op_num_threads=1)
    assert backbone.name == f"onnx:{path}"
    assert backbone.dim == OUT_CHANNELS
    spec = InputSpec(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert backbone.spec == spec
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbone.sha256 == sha
    assert backbone.version == sha[:12] + spec_version_suffix(spec)
    assert backbone.version.startswith(f"{sha[:12]}-32px-norm")
    prepared = [backbone.prepare(image) for image in images()]
    for image, array in zip(images(), prepared, strict=True):
        np.testing.assert_array_equal(array, to_model_input(image, spec))
    batch = np.stack(prepared)
    vectors = backbone.infer(batch)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, OUT_CHANNELS)
    np.testing.assert_allclose(vectors, expected_vectors(batch), rtol=1e-5, atol=1e-5)


def test_defaults_arguments_override_sidecar_and_model_json(tmp_path: Path) -> None:
    path = write_model(tmp_path / "encoder.onnx")
    default = OnnxBackbone(path)
    assert default.spec == InputSpec()
    assert default.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    (tmp_path / "encoder.json").write_text(json.dumps({"input_size": 48, "version": "enc-v3"}))
    from_sidecar = OnnxBackbone(path)
    assert from_sidecar.spec.size == 48
    assert from_sidecar.version == "enc-v3-48px"
    flags = OnnxBackbone(path, input_size=224, version="mine", mean=(0.1, 0.2, 0.3))
    assert flags.spec.size == 224
    assert flags.spec.mean == (0.1, 0.2, 0.3)
    assert flags.version.startswith("mine-norm")
    # model.onnx.json wins over model.json
    (tmp_path / "encoder.onnx.json").write_text(json.dumps({"input_size": 16}))
    assert OnnxBackbone(path).spec.size == 16


def test_symbolic_output_dim_is_discovered_by_running_once(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.onnx", vec_shape=("N", "D"))
    backbone = OnnxBackbone(path, input_size=16)
    assert backbone.dim == OUT_CHANNELS
    assert backbone.infer(np.zeros((0, 3, 16, 16), np.float32)).shape == (0, OUT_CHANNELS)


@pytest.mark.parametrize("fixed_batch", [1, 2])
def test_fixed_batch_and_size(tmp_path: Path, fixed_batch: int) -> None:
    path = write_model(
        tmp_path / "fixed.onnx",
        input_shape=(fixed_batch, 3, 24, 24),
        vec_shape=(fixed_batch, OUT_CHANNELS),
    )
    backbone = OnnxBackbone(path)
    assert backbone.spec.size == 24  # taken from the model
    batch = np.random.default_rng(1).normal(size=(5, 3, 24, 24)).astype(np.float32)
    vectors = backbone.infer(batch)
    assert vectors.shape == (5, OUT_CHANNELS)
    np.testing.assert_allclose(vectors, expected_vectors(batch), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="fixed 24x24 input but input_size 32"):
        OnnxBackbone(path, input_size=32)


def test_output_selection(tmp_path: Path) -> None:
    path = write_model(tmp_path / "two.onnx", kind="both")
    batch = np.random.default_rng(2).normal(size=(2, 3, 16, 16)).astype(np.float32)
    by_index = OnnxBackbone(path, input_size=16, output=1).infer(batch)
    by_name = OnnxBackbone(path, input_size=16, output="vec").infer(batch)
    np.testing.assert_allclose(by_index, by_name, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"no output 'logits'; its outputs are \['vec', 'map'\]"):
        OnnxBackbone(path, output="logits")
    with pytest.raises(ConfigError, match="output index 2 is out of range"):
        OnnxBackbone(path, output=2)
    cube = write_model(tmp_path / "cube.onnx", kind="3d")
    with pytest.raises(ConfigError, match=r"output 'cube' has shape \['N', 5, 1\]"):
        OnnxBackbone(cube)


def test_one_channel_model_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "gray.onnx", input_shape=("N", 1, "H", "W"))
    with pytest.raises(
        ConfigError, match=r"expects 1 input channel\(s\).*lensloop feeds 3-channel"
    ):
        OnnxBackbone(path)


def test_damaged_files_are_named(tmp_path: Path) -> None:
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(3).bytes(4096))
    with pytest.raises(ConfigError, match=f"{noise} is not a loadable ONNX model"):
        OnnxBackbone(noise)
    real = write_model(tmp_path / "real.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    with pytest.raises(ConfigError, match=f"{truncated} is not a loadable ONNX model"):
        OnnxBackbone(truncated)
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ConfigError, match=f"ONNX model {missing} does not exist"):
        OnnxBackbone(missing)


def test_bad_sidecars_and_options(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.onnx")
    sidecar = tmp_path / "m.onnx.json"
    sidecar.write_text(json.dumps({"input_sise": 32}))
    with pytest.raises(ConfigError, match=r"unknown keys \['input_sise'\]"):
        OnnxBackbone(path)
    sidecar.write_text(json.dumps({"mean": [0.5, 0.5]}))
    with pytest.raises(ConfigError, match=r"'mean' = \[0.5, 0.5\] is invalid"):
        OnnxBackbone(path)
    sidecar.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the model's sidecar"):
        OnnxBackbone(path)
    sidecar.unlink()
    with pytest.raises(ConfigError, match="intra_op_num_threads must be at least 1"):
        OnnxBackbone(path, intra_op_num_threads=0)
    with pytest.raises(ConfigError, match="input size must be at least 8 pixels, got 4"):
        OnnxBackbone(path, input_size=4)
    with pytest.raises(ConfigError, match="an ONNX backbone is named onnx:PATH"):
        OnnxBackbone.from_name("onnx:")
    assert OnnxBackbone.from_name(f"onnx:{path}", input_size=16).spec.size == 16


def test_infer_checks_the_batch_shape(tmp_path: Path) -> None:
    backbone = OnnxBackbone(write_model(tmp_path / "m.onnx"), input_size=16)
    with pytest.raises(ValueError, match=r"batch must have shape \(N, 3, 16, 16\).*\(3, 16, 16\)"):
        backbone.infer(np.zeros((3, 16, 16), np.float32))


def test_pickles_without_the_session(tmp_path: Path) -> None:
    backbone = OnnxBackbone(write_model(tmp_path / "m.onnx"), input_size=16, intra_op_num_threads=1)
    batch = np.random.default_rng(4).normal(size=(2, 3, 16, 16)).astype(np.float32)
    expected = backbone.infer(batch)
    assert backbone._session is not None
    clone = pickle.loads(pickle.dumps(backbone))
    assert clone._session is None
    assert (clone.version, clone.dim, clone.spec) == (backbone.version, backbone.dim, backbone.spec)
    np.testing.assert_array_equal(clone.infer(batch), expected)  # session reopened lazily
    assert clone._session is not None
