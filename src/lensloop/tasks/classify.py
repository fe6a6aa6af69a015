"""The classification task: its data, metrics and post-processing.

A task is data -> model -> loss -> metrics -> post-processing. For classification:

- data: :func:`load_embedded_labels` gives each labelled image's embedding, class index
  (at a chosen depth of the class hierarchy) and split;
- metrics: :func:`classification_metrics` (accuracy, macro-F1, per-class precision and
  recall, confusion matrix);
- post-processing: :func:`postprocess` turns probabilities into the predicted class and
  its uncertainty (margin, as the selection strategies read it).

Models and losses live with the trainers (:mod:`lensloop.train`), which take this shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from lensloop.catalog.labels import current_class_paths, roll_up
from lensloop.catalog.models import Image
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.select.scores import margin

__all__ = [
    "LabelledEmbeddings",
    "LabelledImages",
    "classification_metrics",
    "load_embedded_labels",
    "load_labelled_images",
    "postprocess",
]

TASK = "classify"
_NO_LABELS = (
    "no labelled image; label images first (ingest with --labels-from-folders, or import labels)"
)


@dataclass(frozen=True)
class LabelledImages:
    """Labelled images with their classes and splits.

    Attributes:
        image_ids: ``(N,)`` int64, ascending.
        labels: ``(N,)`` int64 class indices into ``class_names``.
        splits: ``(N,)`` object array of ``train``, ``val``, ``test`` or ``pool``/``None``.
        class_names: The classes, sorted; a class path rolled up to ``depth``.
        depth: Hierarchy level the classes are taken at (``None``: deepest).
    """

    image_ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    splits: npt.NDArray[np.object_]
    class_names: list[str]
    depth: int | None

    def rows(self, *splits: str) -> npt.NDArray[np.int64]:
        """Row indices of the images in any of ``splits``."""
        return np.flatnonzero(np.isin(self.splits.astype(str), list(splits)))

    def train_rows(self) -> npt.NDArray[np.int64]:
        """Rows a model may learn from: labelled images outside ``val`` and ``test``."""
        return np.flatnonzero(~np.isin(self.splits.astype(str), ["val", "test"]))

    def fingerprint(self, rows: npt.NDArray[np.int64] | None = None) -> str:
        """sha256 of the (image id, class name) pairs of ``rows`` (default all), sorted."""
        chosen = np.arange(len(self.image_ids)) if rows is None else rows
        digest = hashlib.sha256()
        for row in sorted(chosen.tolist(), key=lambda r: int(self.image_ids[r])):
            name = self.class_names[int(self.labels[row])]
            digest.update(f"{int(self.image_ids[row])}\t{name}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class LabelledEmbeddings(LabelledImages):
    """Every labelled image that has a vector of one embedding set.

    Attributes:
        vectors: ``(N, D)`` float32 L2-normalised embeddings, row-aligned with the rest.
    """

    vectors: npt.NDArray[np.float32]


def load_labelled_images(
    project: Project,
    *,
    depth: int | None = None,
    among: npt.NDArray[np.int64] | None = None,
    none_found: str = _NO_LABELS,
) -> LabelledImages:
    """Load the labelled images' classes at ``depth`` and splits.

    Args:
        project: The project.
        depth: Hierarchy level (``None``: the project's depth).
        among: Only these image ids, e.g. those with vectors.
        none_found: The error message when no image (of ``among``) is labelled.

    Raises:
        ConfigError: No labelled image, or fewer than 2 classes.
    """
    depth = depth if depth is not None else project.config.labels.depth
    with project.catalog.reader() as session:
        paths = current_class_paths(session)
        split_of = {i: s for i, s in session.execute(select(Image.id, Image.split))}
    candidates = paths.keys() if among is None else among.tolist()
    ids = np.array(sorted(i for i in candidates if i in paths), dtype=np.int64)
    if len(ids) == 0:
        raise ConfigError(none_found)
    classes = [roll_up(paths[int(i)], depth) for i in ids]
    names = sorted(set(classes))
    if len(names) < 2:
        raise ConfigError(
            f"every labelled image is of one class ({names[0]!r}) at depth "
            f"{depth or 'deepest'}; a classifier needs at least 2 classes"
        )
    index = {name: k for k, name in enumerate(names)}
    return LabelledImages(
        image_ids=ids,
        labels=np.array([index[c] for c in classes], dtype=np.int64),
        splits=np.array([split_of.get(int(i)) for i in ids], dtype=object),
        class_names=names,
        depth=depth,
    )


def load_embedded_labels(
    project: Project, *, backbone: str, depth: int | None = None
) -> LabelledEmbeddings:
    """Load the labelled images' vectors, classes at ``depth`` and splits.

    Raises:
        NotFoundError: No embeddings for ``backbone``.
        ConfigError: No labelled image has a vector, or fewer than 2 classes.
    """
    ids, vectors = project.embeddings(backbone)
    data = load_labelled_images(
        project,
        depth=depth,
        among=ids,
        none_found=f"no labelled image has a {backbone} vector; label images (e.g. ingest "
        f"with --labels-from-folders) and run `lensloop embed DIR --backbone {backbone}`",
    )
    row_of = {int(i): r for r, i in enumerate(ids.tolist())}
    rows = np.array([row_of[int(i)] for i in data.image_ids], dtype=np.int64)
    return LabelledEmbeddings(
        image_ids=data.image_ids,
        labels=data.labels,
        splits=data.splits,
        class_names=data.class_names,
        depth=data.depth,
        vectors=vectors[rows],
    )


def classification_metrics(
    actual: npt.ArrayLike, predicted: npt.ArrayLike, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Macro-F1 averages over the classes present in ``actual`` (a class absent from the
    evaluation set has no defined recall). The confusion matrix has rows = actual,
    columns = predicted, over all ``class_names``.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
        >>> m["accuracy"], round(m["macro_f1"], 3), m["confusion"]
        (0.75, 0.733, [[1, 1], [0, 2]])
    """
    from sklearn.metrics import (  # type: ignore[import-untyped]
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(actual, dtype=np.int64)
    y_pred = np.asarray(predicted, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ConfigError(
            f"actual and predicted must be equal-length 1-D class indices; received shapes "
            f"{y_true.shape} and {y_pred.shape}"
        )
    every = np.arange(len(class_names))
    present = np.unique(y_true)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=every, zero_division=0
    )
    macro = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(macro),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(class_names)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=every).tolist(),
    }


def postprocess(
    probs: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Predicted class index and margin uncertainty (``1 - (p1 - p2)``) per row."""
    values = np.asarray(probs, dtype=np.float64)
    return np.argmax(values, axis=1).astype(np.int64), margin(values)
