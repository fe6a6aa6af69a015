"""Classifier heads on stored embeddings, and their export to ONNX.

A head maps ``(N, D)`` embeddings to ``(N, C)`` class probabilities. Both kinds are
scikit-learn models; :func:`export_head` writes the same function as a small ONNX graph
(``LpNormalization -> [Gemm -> Relu] -> Gemm -> Softmax``) that ONNX Runtime runs
anywhere, and :func:`verify_head` checks the two agree within ``1e-4``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError
from lensloop.train.config import TrainConfig

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "FittedHead",
    "OnnxHead",
    "export_head",
    "fit_head",
    "open_onnx_session",
    "run_head",
    "verify_head",
]

INPUT_NAME = "embedding"
OUTPUT_NAME = "probabilities"
_OPSET = 18
_IR_VERSION = 9
"""IR version 9 carries opset 18 and loads in ONNX Runtime 1.15 and later."""
_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FittedHead:
    """A trained head: the scikit-learn model and its dense layers for export.

    Attributes:
        model: The fitted scikit-learn estimator (``predict_proba``).
        layers: ``(weight (in, out), bias (out,))`` per dense layer, ReLU between them.
        num_classes: Columns of the output (every class of the task, in order).
    """

    model: Any
    layers: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]
    num_classes: int

    def predict_proba(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``(N, C)`` probabilities from the scikit-learn model."""
        return np.asarray(self.model.predict_proba(np.asarray(vectors, np.float32)), np.float64)


def _balanced_resample(labels: npt.NDArray[np.int64], seed: int) -> npt.NDArray[np.int64]:
    """Row indices that repeat each class up to the largest class's count (seeded)."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    target = int(counts.max())
    rows = []
    for cls in np.flatnonzero(counts):
        members = np.flatnonzero(labels == cls)
        extra = rng.choice(members, size=target - len(members), replace=True)
        rows.append(np.concatenate([members, extra]))
    return np.concatenate(rows)


def fit_head(
    vectors: npt.ArrayLike, labels: npt.ArrayLike, num_classes: int, config: TrainConfig
) -> FittedHead:
    """Fit the configured head on labelled embeddings.

    Every one of the ``num_classes`` classes must have at least one example, so the
    output columns line up with the task's classes.

    Raises:
        ConfigError: A class has no training example.
    """
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]

    x = np.asarray(vectors, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise ConfigError(
            f"{len(missing)} class(es) have no training image (class indices {missing[:10]}); "
            "every class needs labelled images in the train split, or roll the hierarchy up "
            "with --depth"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if config.head == "logistic":
            model = LogisticRegression(
                C=config.c,
                max_iter=config.max_iter,
                class_weight="balanced" if config.class_weight == "balanced" else None,
                random_state=config.seed,
            )
            model.fit(x, y)
            if num_classes == 2:  # scikit-learn keeps one column for two classes
                coef = np.vstack([-model.coef_[0], model.coef_[0]]) / 2.0
                bias = np.array([-model.intercept_[0], model.intercept_[0]]) / 2.0
            else:
                coef, bias = model.coef_, model.intercept_
            layers = [(coef.T.astype(np.float32), bias.astype(np.float32))]
        else:
            rows = (
                _balanced_resample(y, config.seed)
                if config.class_weight == "balanced"
                else np.arange(len(y))
            )
            model = MLPClassifier(
                hidden_layer_sizes=(config.hidden,),
                max_iter=config.max_iter,
                early_stopping=False,
                random_state=config.seed,
            )
            model.fit(x[rows], y[rows])
            if num_classes == 2:  # one logistic output unit: softmax of (-z/2, z/2) equals it
                w_out, b_out = model.coefs_[1], model.intercepts_[1]
                w_out = np.hstack([-w_out, w_out]) / 2.0
                b_out = np.concatenate([-b_out, b_out]) / 2.0
            else:
                w_out, b_out = model.coefs_[1], model.intercepts_[1]
            layers = [
                (model.coefs_[0].astype(np.float32), model.intercepts_[0].astype(np.float32)),
                (w_out.astype(np.float32), b_out.astype(np.float32)),
            ]
    return FittedHead(model=model, layers=layers, num_classes=num_classes)


def export_head(head: FittedHead, path: Path) -> Path:
    """Write ``head`` as an ONNX model: ``embedding (N, D) -> probabilities (N, C)``.

    The graph L2-normalises its input first (as the stored embeddings are), so it also
    accepts raw backbone outputs.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dim = head.layers[0][0].shape[0]
    nodes = [helper.make_node("LpNormalization", [INPUT_NAME], ["h0"], axis=1, p=2)]
    initializers = []
    current = "h0"
    for k, (weight, bias) in enumerate(head.layers):
        initializers += [
            numpy_helper.from_array(weight, name=f"w{k}"),
            numpy_helper.from_array(bias, name=f"b{k}"),
        ]
        nodes.append(helper.make_node("Gemm", [current, f"w{k}", f"b{k}"], [f"z{k}"]))
        current = f"z{k}"
        if k < len(head.layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"a{k}"]))
            current = f"a{k}"
    nodes.append(helper.make_node("Softmax", [current], [OUTPUT_NAME], axis=1))
    graph = helper.make_graph(
        nodes,
        "lensloop-head",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", dim])],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", head.num_classes]
            )
        ],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="lensloop"
    )
    model.ir_version = _IR_VERSION  # what the onnx package writes may be newer than ORT reads
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def open_onnx_session(path: Path) -> Any:
    """Open a released ONNX file in ONNX Runtime (CPU).

    Raises:
        ConfigError: The file is missing, corrupt or not an ONNX model.
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise ConfigError(
            f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0][:200]}); the "
            "file is corrupt or not a lensloop model"
        ) from exc


class OnnxHead:
    """An exported head opened once in ONNX Runtime: ``(N, D)`` embeddings -> ``(N, C)``.

    Raises:
        ConfigError: On opening, a corrupt file or a model that is not a lensloop head; on
            calling, embeddings of the wrong shape.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._session = open_onnx_session(path)
        inputs = self._session.get_inputs()
        dim = inputs[0].shape[1] if len(inputs) == 1 and len(inputs[0].shape) == 2 else None
        if dim is None or inputs[0].name != INPUT_NAME:
            raise ConfigError(
                f"{path} is not a lensloop classifier head (it takes "
                f"{[i.name for i in inputs]}); pass a model released by `lensloop train`"
            )
        self.dim = dim

    def __call__(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """``(N, C)`` probabilities for ``(N, D)`` embeddings."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ConfigError(
                f"{self.path} takes {self.dim}-d embeddings but received shape {data.shape}; "
                "were they computed with the backbone named in the model card?"
            )
        (probs,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: data})
        return np.asarray(probs, dtype=np.float32)


def run_head(path: Path, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Open an exported head and run it once (see :class:`OnnxHead` to run it often)."""
    return OnnxHead(path)(vectors)


def verify_head(head: FittedHead, path: Path, vectors: npt.ArrayLike) -> float:
    """Largest difference between the ONNX and scikit-learn probabilities on ``vectors``.

    Raises:
        ConfigError: The difference exceeds ``1e-4`` (the export is wrong).
    """
    sample = np.asarray(vectors, dtype=np.float32)[:256]
    diff = float(np.max(np.abs(run_head(path, sample) - head.predict_proba(sample))))
    if diff > _TOLERANCE:
        raise ConfigError(
            f"the exported head differs from the trained one by {diff:.2g} (> {_TOLERANCE}); "
            "this is a lensloop bug, please report it"
        )
    return diff
