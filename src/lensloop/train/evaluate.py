"""Score a released model on a labelled split: metrics and figures.

Counting models are scored on the split's completely annotated images (status ``full``
or ``empty``): count MAE and mean relative error, localisation precision, recall and F1
(one-to-one within the model's match radius); figures: predicted-vs-annotated counts and
overlays of the images with the largest count errors, in
``models/vN/evaluation-<split>/``.

Segmentation models are scored on the split's annotated images: per-class IoU, mean IoU
and pixel accuracy (void excluded), and the areas and fragment counts measured on the
predicted masks against those of the annotated ones; figures: per-class IoU bars and
overlays of the images with the lowest pixel accuracy.

Classifiers work for both kinds of release: a head on stored embeddings (``--method probe``; the
project must still hold the same version of its backbone's vectors) and a whole image
classifier (``--method finetune``; the images are read and prepared as at training).
The figures go to ``models/vN/evaluation-<split>/``: the confusion matrix, a grid of
images with predicted vs actual labels (errors first), and the metrics as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
from lensloop.tasks.counting.density import find_peaks
from lensloop.train.registry import RegisteredModel, resolve_model

__all__ = ["EvaluationResult", "evaluate_model"]

_GRID_LIMIT = 64


_OVERLAYS = 8


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on a split, and the figures drawn.

    Attributes:
        version: The model version scored.
        split: The split scored.
        metrics: Everything measured (also in ``metrics.json`` beside the figures).
        confusion_png: A classifier's confusion matrix.
        grid_png: A classifier's predicted-vs-actual grid, if drawn.
        figures: Every figure drawn, by what it shows.
    """

    version: int
    split: str
    metrics: dict[str, Any]
    confusion_png: Path | None
    grid_png: Path | None
    figures: dict[str, Path] = field(default_factory=dict)


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
    if card.get("task") == "count":
        return _evaluate_counting(project, model, split)
    if card.get("task") == "segment":
        return _evaluate_segmentation(project, model, split)
    if card.get("task") != TASK:
        raise ConfigError(
            f"model version {model.version} is a {card.get('task')!r} model; "
            "`lensloop evaluate` scores classifiers, counting and segmentation models"
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
        except (LensloopError, OSError):  # an unreadable image still gets a (grey) tile
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
    drawn = {"confusion matrix": confusion}
    if grid is not None:
        drawn["predicted vs actual (errors first)"] = grid
    return EvaluationResult(model.version, split, metrics, confusion, grid, drawn)


def _in_split(split: str | None, wanted: str) -> bool:
    if wanted == "train":
        return split not in ("val", "test")
    return split == wanted


def _evaluate_counting(project: Project, model: RegisteredModel, split: str) -> EvaluationResult:
    """Score a counting model on the split's completely annotated images; draw figures."""
    from lensloop.reports import draw_count_overlay, draw_count_scatter
    from lensloop.tasks.counting.data import load_count_images
    from lensloop.tasks.counting.scoring import COMPLETE, count_metrics
    from lensloop.train.counter import load_counter

    counter = load_counter(model.folder, settings=project.settings)
    radius = float(counter.card["density"]["match_radius"])
    consensus_only = bool(model.config.get("consensus_only", True))
    items = [
        item
        for item in load_count_images(project, radius=radius, consensus_only=consensus_only)
        if _in_split(item.split, split)
    ]
    complete = [item for item in items if item.status in COMPLETE]
    if not complete:
        raise ConfigError(
            f"no completely annotated image in the {split} split ({len(items)} annotated, "
            "none with status full or empty); a count can only be scored where every object "
            "is marked: mark such images full (or empty) when annotating"
        )
    densities = []
    for item in complete:
        try:
            image = project.read_image(item.image_id)
        except (LensloopError, OSError) as exc:
            raise ConfigError(f"cannot read annotated image {item.image_id}: {exc}") from exc
        densities.append(counter.density(image, name=f"image {item.image_id}"))
    metrics = count_metrics(
        densities, complete, sigma=counter.sigma, threshold=counter.threshold, radius=radius
    )
    metrics["skipped_incomplete"] = len(items) - len(complete)
    folder = model.folder / f"evaluation-{split}"
    folder.mkdir(exist_ok=True)
    rows = metrics["per_image"]
    drawn = {
        "predicted vs annotated counts": draw_count_scatter(
            [r["true"] for r in rows],
            [r["predicted"] for r in rows],
            folder / "counts.png",
            title=f"model v{model.version} on {split}",
        )
    }
    worst = sorted(range(len(rows)), key=lambda k: -abs(rows[k]["predicted"] - rows[k]["true"]))
    for rank, k in enumerate(worst[:_OVERLAYS], start=1):
        item = complete[k]
        peaks = find_peaks(densities[k], sigma=counter.sigma, threshold=counter.threshold)
        drawn[f"overlay {rank} (image {item.image_id})"] = draw_count_overlay(
            project.read_image(item.image_id),
            peaks,
            folder / f"overlay-{rank}-image-{item.image_id}.png",
            true=item.points,
            radius=radius,
            title=f"image {item.image_id}: {rows[k]['predicted']:.1f} predicted, "
            f"{rows[k]['true']} annotated",
        )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return EvaluationResult(model.version, split, metrics, None, None, drawn)


def _evaluate_segmentation(
    project: Project, model: RegisteredModel, split: str
) -> EvaluationResult:
    """Score a segmentation model on the split's annotated images; draw figures."""
    from lensloop.reports.segmentation import draw_iou_bars, draw_segment_overlay
    from lensloop.tasks.segment.compare import score_label_maps
    from lensloop.tasks.segment.data import load_segment_images
    from lensloop.train.segmenter import load_segmenter

    segmenter = load_segmenter(model.folder, settings=project.settings)
    classes = list(segmenter.classes)
    settings = project.config.segment
    items = [item for item in load_segment_images(project) if _in_split(item.split, split)]
    if not items:
        raise ConfigError(
            f"no image in the {split} split has polygon or mask annotations; annotate some "
            "or choose another --split"
        )
    predicted, truth = [], []
    for item in items:
        try:
            image = project.read_image(item.image_id)
        except (LensloopError, OSError) as exc:
            raise ConfigError(f"cannot read annotated image {item.image_id}: {exc}") from exc
        predicted.append(segmenter.segment_array(image, name=f"image {item.image_id}").labels)
        truth.append(
            item.label_map(classes, draw_order=settings.draw_order, unlabelled=settings.unlabelled)
        )
    metrics = score_label_maps(predicted, truth, classes, min_area=settings.min_area)
    folder = model.folder / f"evaluation-{split}"
    folder.mkdir(exist_ok=True)
    drawn = {"per-class IoU": draw_iou_bars(metrics, folder / "iou.png")}
    accuracy = [_accuracy(p, t) for p, t in zip(predicted, truth, strict=True)]
    worst = sorted(range(len(items)), key=lambda k: accuracy[k])
    for rank, k in enumerate(worst[:_OVERLAYS], start=1):
        item = items[k]
        drawn[f"overlay {rank} (image {item.image_id})"] = draw_segment_overlay(
            project.read_image(item.image_id),
            predicted[k],
            classes,
            folder / f"overlay-{rank}-image-{item.image_id}.png",
            title=f"image {item.image_id}: predicted, pixel accuracy {accuracy[k]:.3f}",
        )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return EvaluationResult(model.version, split, metrics, None, None, drawn)


def _accuracy(predicted: npt.NDArray[np.uint8], truth: npt.NDArray[np.uint8]) -> float:
    from lensloop.annotate.labelmap import VOID

    keep = truth != VOID
    return float((predicted[keep] == truth[keep]).mean()) if keep.any() else 1.0
