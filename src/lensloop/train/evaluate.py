"""Score a released classifier on a labelled split: metrics and figures.

Works for both kinds of release: a head on stored embeddings (``--method probe``; the
project must still hold the same version of its backbone's vectors) and a whole image
classifier (``--method finetune``; the images are read and prepared as at training).
The figures go to ``models/vN/evaluation-<split>/``: the confusion matrix, a grid of
images with predicted vs actual labels (errors first), and the metrics as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.catalog.vectors import find_embedding_set
from lensloop.errors import ConfigError, LensloopError
from lensloop.project import Project
from lensloop.tasks.classify import (
    TASK,
    LabelledImages,
    classification_metrics,
    load_embedded_labels,
    load_labelled_images,
)
from lensloop.train.registry import RegisteredModel, resolve_model

__all__ = ["EvaluationResult", "evaluate_model"]

_GRID_LIMIT = 64


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on a split, and the figures drawn."""

    version: int
    split: str
    metrics: dict[str, Any]
    confusion_png: Path
    grid_png: Path | None


def _embedding_scores(
    project: Project, model: RegisteredModel, split: str
) -> tuple[LabelledImages, npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    from lensloop.train.heads import run_head

    card = model.card
    backbone = card["input"]["backbone"]
    with project.catalog.reader() as session:
        current = find_embedding_set(session, backbone, None).version
    if current != card["input"]["backbone_version"]:
        raise ConfigError(
            f"model version {model.version} reads {backbone} vectors of version "
            f"{card['input']['backbone_version']}, but the project now holds {current}; "
            "train again on the new vectors"
        )
    data = load_embedded_labels(project, backbone=backbone, depth=card["depth"])
    rows = _known_rows(data, data.rows(split), model, split, f"with {backbone} vectors ")
    probs = run_head(model.folder / card["onnx"]["file"], data.vectors[rows])
    return data, rows, probs


def _image_scores(
    project: Project, model: RegisteredModel, split: str
) -> tuple[LabelledImages, npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    from lensloop.train.inference import init_model

    data = load_labelled_images(project, depth=model.card["depth"])
    rows = _known_rows(data, data.rows(split), model, split, "")
    loaded = init_model(model.folder, settings=project.settings)

    def images() -> Any:
        for row in rows.tolist():
            image_id = int(data.image_ids[row])
            try:
                yield f"image {image_id}", project.read_image(image_id)
            except (LensloopError, OSError) as exc:
                raise ConfigError(f"cannot read labelled image {image_id}: {exc}") from exc

    return data, rows, loaded.predict_arrays(images())


def _known_rows(
    data: LabelledImages,
    rows: npt.NDArray[np.int64],
    model: RegisteredModel,
    split: str,
    which: str,
) -> npt.NDArray[np.int64]:
    if len(rows) == 0:
        raise ConfigError(f"no labelled image {which}is in the {split} split")
    classes = set(model.card["classes"])
    known = rows[[data.class_names[int(c)] in classes for c in data.labels[rows]]]
    if len(known) == 0:
        raise ConfigError(
            f"every labelled {split} image is of a class model version {model.version} does "
            f"not know ({', '.join(model.card['classes'])}); train a new version on the "
            "current labels"
        )
    return known


def evaluate_model(
    project: Project, ref: str | None = None, *, split: str = "val"
) -> EvaluationResult:
    """Score a released classifier on a split; draw the figures.

    Raises:
        NotFoundError: No such model, or no embeddings for its backbone.
        ConfigError: The model is not a classifier, its backbone's vectors changed
            version since, the split has no labelled images, an image cannot be read,
            or the ONNX file is corrupt.
    """
    from lensloop.reports import GridItem, draw_confusion_matrix, draw_prediction_grid

    model = resolve_model(project, ref)
    card = model.card
    if card.get("task") != TASK:
        raise ConfigError(
            f"model version {model.version} is a {card.get('task')!r} model; "
            "`lensloop evaluate` scores classifiers"
        )
    kind = card.get("input", {}).get("kind")
    score = _image_scores if kind == "image" else _embedding_scores
    data, rows, probs = score(project, model, split)
    classes: list[str] = card["classes"]
    index = {name: k for k, name in enumerate(classes)}
    actual = np.array([index[data.class_names[int(c)]] for c in data.labels[rows]], np.int64)
    predicted = np.argmax(probs, axis=1)
    metrics = classification_metrics(actual, predicted, classes)
    metrics["skipped_unknown_class"] = len(data.rows(split)) - len(rows)
    figures = model.folder / f"evaluation-{split}"
    figures.mkdir(exist_ok=True)
    confusion = figures / "confusion.png"
    draw_confusion_matrix(np.array(metrics["confusion"]), classes, confusion)
    items = []
    for row, truth, guess, prob in zip(rows, actual, predicted, probs, strict=True):
        image_id = int(data.image_ids[row])
        try:
            thumb = project.thumbnail(image_id)
        except LensloopError:  # an unreadable image still gets a (grey) tile
            thumb = figures / "missing.png"
        items.append(
            GridItem(
                image_path=thumb,
                actual=classes[int(truth)],
                predicted=classes[int(guess)],
                confidence=float(prob[int(guess)]),
                image_id=image_id,
            )
        )
    grid = draw_prediction_grid(items, figures / "predictions.png", limit=_GRID_LIMIT)
    (figures / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return EvaluationResult(model.version, split, metrics, confusion, grid)
