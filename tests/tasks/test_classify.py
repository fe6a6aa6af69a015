"""The classification task: metrics, post-processing and the labelled embeddings it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_image_folder
from fakes import MeanColourBackbone
from lensloop.embed.engine import embed_project
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.tasks.classify import (
    LabelledEmbeddings,
    classification_metrics,
    load_embedded_labels,
    postprocess,
)

BACKBONE = MeanColourBackbone.name


def test_metrics_hand_computed() -> None:
    # class c never occurs in `actual` but is predicted once
    metrics = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 2], ["a", "b", "c"])
    assert metrics["n"] == 5
    assert metrics["accuracy"] == pytest.approx(0.6)
    # a: P=1/1 R=1/2 F1=2/3; b: P=2/3 R=2/3 F1=2/3; c is absent from actual -> not averaged
    assert metrics["macro_f1"] == pytest.approx(2 / 3)
    per = metrics["per_class"]
    assert per["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per["b"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert per["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # rows = actual, columns = predicted, over every class
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 1], [0, 0, 0]]
    assert isinstance(metrics["accuracy"], float)
    assert isinstance(per["a"]["support"], int)


def test_metrics_docstring_example_and_perfect() -> None:
    metrics = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    perfect = classification_metrics([2, 0, 1], [2, 0, 1], ["x", "y", "z"])
    assert perfect["accuracy"] == 1.0
    assert perfect["macro_f1"] == 1.0
    assert perfect["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize(
    ("actual", "predicted"),
    [
        ([0, 1], [0]),  # lengths differ
        ([[0, 1]], [[0, 1]]),  # 2-D
        ([], []),  # empty
    ],
)
def test_metrics_shape_errors(actual: list[Any], predicted: list[Any]) -> None:
    with pytest.raises(ConfigError, match="equal-length 1-D"):
        classification_metrics(actual, predicted, ["a", "b"])


def test_postprocess_argmax_and_margin() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.45, 0.45], [0.0, 0.0, 1.0]], dtype=np.float32)
    predicted, uncertainty = postprocess(probs)
    assert predicted.dtype == np.int64
    assert predicted.tolist() == [0, 1, 2]
    assert uncertainty.dtype == np.float64
    assert uncertainty == pytest.approx([0.5, 1.0, 0.0], abs=1e-6)


def _embedded(project: Project, root: Path, layout: dict[str, int], **options: Any) -> None:
    make_image_folder(root, layout, seed=3)
    ingest(project, [root], options=IngestOptions(**options))
    embed_project(project, MeanColourBackbone(), workers=0)


def test_load_rolls_up_to_depth(project: Project, tmp_path: Path) -> None:
    _embedded(
        project,
        tmp_path / "src",
        {"a/x": 2, "a/y": 3, "b/z": 2},
        labels_from_folders=True,
        split={"val": 0.3},
    )
    deepest = load_embedded_labels(project, backbone=BACKBONE)
    assert deepest.class_names == ["a/x", "a/y", "b/z"]
    assert deepest.depth is None
    assert np.bincount(deepest.labels).tolist() == [2, 3, 2]
    assert deepest.image_ids.tolist() == sorted(deepest.image_ids.tolist())
    assert deepest.vectors.shape == (7, 6)
    assert deepest.vectors.dtype == np.float32
    assert np.linalg.norm(deepest.vectors, axis=1) == pytest.approx(np.ones(7), abs=1e-5)
    assert set(deepest.splits.tolist()) <= {"train", "val"}
    assert len(deepest.rows("val")) > 0
    assert len(deepest.rows("train")) + len(deepest.rows("val")) == 7

    top = load_embedded_labels(project, backbone=BACKBONE, depth=1)
    assert top.class_names == ["a", "b"]
    assert top.depth == 1
    assert np.bincount(top.labels).tolist() == [5, 2]
    assert top.image_ids.tolist() == deepest.image_ids.tolist()
    # rolling up changes the (image, class) pairs, hence the fingerprint
    assert top.fingerprint() != deepest.fingerprint()


def test_load_needs_two_classes(project: Project, tmp_path: Path) -> None:
    _embedded(project, tmp_path / "src", {"a/x": 2, "a/y": 2}, labels_from_folders=True)
    assert load_embedded_labels(project, backbone=BACKBONE).class_names == ["a/x", "a/y"]
    with pytest.raises(ConfigError, match=r"one class \('a'\).*at least 2 classes"):
        load_embedded_labels(project, backbone=BACKBONE, depth=1)


def test_load_needs_labelled_vectors(project: Project, tmp_path: Path) -> None:
    _embedded(project, tmp_path / "src", {"a": 2, "b": 2})  # not labelled
    with pytest.raises(ConfigError, match="no labelled image has a fake-mean vector"):
        load_embedded_labels(project, backbone=BACKBONE)


def _labelled(image_ids: list[int], labels: list[int], names: list[str]) -> LabelledEmbeddings:
    n = len(image_ids)
    return LabelledEmbeddings(
        image_ids=np.array(image_ids, dtype=np.int64),
        vectors=np.zeros((n, 2), dtype=np.float32),
        labels=np.array(labels, dtype=np.int64),
        splits=np.array(["train"] * n, dtype=object),
        class_names=names,
        depth=None,
    )


def test_fingerprint_order_independent_and_label_sensitive() -> None:
    base = _labelled([1, 2, 3, 4], [0, 1, 0, 1], ["a", "b"])
    shuffled = _labelled([3, 1, 4, 2], [0, 0, 1, 1], ["a", "b"])
    assert base.fingerprint() == shuffled.fingerprint()
    assert len(base.fingerprint()) == 64
    # the rows given in any order
    assert base.fingerprint(np.array([2, 0])) == base.fingerprint(np.array([0, 2]))
    assert base.fingerprint(np.array([0, 2])) != base.fingerprint()
    # one label changed
    changed = _labelled([1, 2, 3, 4], [0, 1, 1, 1], ["a", "b"])
    assert changed.fingerprint() != base.fingerprint()
    # same indices, different class names: the names are what is hashed
    renamed = _labelled([1, 2, 3, 4], [0, 1, 0, 1], ["a", "c"])
    assert renamed.fingerprint() != base.fingerprint()
    # the class index order does not matter, only the (image, name) pairs
    reindexed = _labelled([1, 2, 3, 4], [1, 0, 1, 0], ["b", "a"])
    assert reindexed.fingerprint() == base.fingerprint()
