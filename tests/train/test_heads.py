"""Classifier heads: fitting, ONNX export, running the export and refusing bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from lensloop.errors import ConfigError
from lensloop.train.config import TrainConfig
from lensloop.train.heads import (
    INPUT_NAME,
    FittedHead,
    export_head,
    fit_head,
    run_head,
    verify_head,
)

DIM = 8


def _blobs(
    num_classes: int, per_class: int = 20, *, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Unit-length float32 points around one random centre per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, DIM))
    labels = np.repeat(np.arange(num_classes), per_class)
    points = centres[labels] + rng.normal(scale=0.3, size=(len(labels), DIM))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels.astype(np.int64)


CONFIGS = {
    "logistic": TrainConfig(head="logistic"),
    "mlp": TrainConfig(head="mlp", hidden=16, max_iter=200),
}


@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_export_matches_model(tmp_path: Path, kind: str, num_classes: int) -> None:
    vectors, labels = _blobs(num_classes)
    head = fit_head(vectors, labels, num_classes, CONFIGS[kind])
    assert head.num_classes == num_classes
    assert head.layers[0][0].shape[0] == DIM
    assert head.layers[-1][0].shape[1] == num_classes
    assert len(head.layers) == (1 if kind == "logistic" else 2)
    assert all(w.dtype == np.float32 and b.dtype == np.float32 for w, b in head.layers)

    path = export_head(head, tmp_path / "head.onnx")
    assert path.is_file()
    probs = run_head(path, vectors)
    assert probs.shape == (len(vectors), num_classes)
    assert probs.dtype == np.float32
    expected = head.predict_proba(vectors)
    assert np.max(np.abs(probs - expected)) < 1e-4
    assert probs.sum(axis=1) == pytest.approx(np.ones(len(vectors)), abs=1e-5)
    # the blobs are easy: the head actually learned them
    assert np.mean(np.argmax(probs, axis=1) == labels) > 0.9

    diff = verify_head(head, path, vectors)
    assert 0.0 <= diff < 1e-4


def test_graph_normalises_its_input(tmp_path: Path) -> None:
    vectors, labels = _blobs(3)
    head = fit_head(vectors, labels, 3, CONFIGS["logistic"])
    path = export_head(head, tmp_path / "head.onnx")
    scaled = run_head(path, vectors * 7.5)  # raw (un-normalised) outputs give the same answer
    assert np.max(np.abs(scaled - run_head(path, vectors))) < 1e-5


def test_verify_catches_a_wrong_export(tmp_path: Path) -> None:
    vectors, labels = _blobs(3)
    head = fit_head(vectors, labels, 3, CONFIGS["logistic"])
    other = fit_head(vectors, (labels + 1) % 3, 3, CONFIGS["logistic"])
    path = export_head(other, tmp_path / "other.onnx")
    with pytest.raises(ConfigError, match="differs from the trained one"):
        verify_head(head, path, vectors)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_class_without_examples(kind: str) -> None:
    vectors, labels = _blobs(3)
    keep = labels != 1
    with pytest.raises(ConfigError, match=r"1 class\(es\) have no training image.*\[1\]"):
        fit_head(vectors[keep], labels[keep], 3, CONFIGS[kind])
    with pytest.raises(ConfigError, match=r"\[3\]"):  # a class past the labels seen
        fit_head(vectors, labels, 4, CONFIGS[kind])


def test_balanced_mlp_and_unweighted_mlp_both_fit(tmp_path: Path) -> None:
    vectors, labels = _blobs(3)
    keep = np.ones(len(labels), dtype=bool)
    keep[np.flatnonzero(labels == 2)[3:]] = False  # class 2 keeps 3 of 20 images
    for weight in ("balanced", "none"):
        config = TrainConfig(head="mlp", hidden=8, max_iter=100, class_weight=weight)
        head = fit_head(vectors[keep], labels[keep], 3, config)
        path = export_head(head, tmp_path / f"{weight}.onnx")
        assert verify_head(head, path, vectors) < 1e-4


def _fitted(tmp_path: Path) -> tuple[FittedHead, Path]:
    vectors, labels = _blobs(3)
    head = fit_head(vectors, labels, 3, CONFIGS["logistic"])
    return head, export_head(head, tmp_path / "head.onnx")


def test_run_head_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(ConfigError, match="not a loadable ONNX model"):
        run_head(path, np.zeros((1, DIM), dtype=np.float32))
    with pytest.raises(ConfigError, match="not a loadable ONNX model"):
        run_head(tmp_path / "missing.onnx", np.zeros((1, DIM), dtype=np.float32))


def test_run_head_refuses_a_model_that_is_not_a_head(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", DIM])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = tmp_path / "identity.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ConfigError, match=r"not a lensloop classifier head.*\['x'\]"):
        run_head(path, np.zeros((2, DIM), dtype=np.float32))


def test_run_head_wrong_dimension(tmp_path: Path) -> None:
    _, path = _fitted(tmp_path)
    with pytest.raises(ConfigError, match=rf"takes {DIM}-d embeddings.*\(2, {DIM + 1}\)"):
        run_head(path, np.zeros((2, DIM + 1), dtype=np.float32))
    with pytest.raises(ConfigError, match=rf"takes {DIM}-d embeddings"):
        run_head(path, np.zeros(DIM, dtype=np.float32))  # one vector, not a batch


def test_exported_graph_interface(tmp_path: Path) -> None:
    import onnx

    _, path = _fitted(tmp_path)
    model = onnx.load(str(path))
    assert model.ir_version == 9
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert [n.op_type for n in model.graph.node] == ["LpNormalization", "Gemm", "Softmax"]
