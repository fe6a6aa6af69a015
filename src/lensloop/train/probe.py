"""Train, evaluate and release a classifier head on the stored embeddings (``--method probe``).

Training uses the labelled images outside ``val`` and ``test``; the validation split
scores the release and decides whether it becomes the champion. ``--cv K`` adds
stratified K-fold cross-validation over train + val (mean and spread). The release is a
folder with the ONNX head, its model card, the resolved settings, the metrics and a
confusion matrix, registered as the next version (:mod:`lensloop.train.registry`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop import __version__
from lensloop.catalog.vectors import find_embedding_set
from lensloop.errors import ConfigError, LensloopError
from lensloop.project import Project
from lensloop.tasks.classify import (
    TASK,
    LabelledEmbeddings,
    classification_metrics,
    load_embedded_labels,
)
from lensloop.train.config import TrainConfig, save_train_config
from lensloop.train.heads import export_head, fit_head, run_head, verify_head
from lensloop.train.registry import CARD_FILE, RegisteredModel, register, resolve_model

__all__ = ["EvaluationResult", "TrainResult", "evaluate_model", "train_probe"]

HEAD_FILE = "head.onnx"
CARD_FORMAT = 1
_TRAIN_SPLITS = ("train", "pool")
_GRID_LIMIT = 64


@dataclass(frozen=True)
class TrainResult:
    """A finished training run."""

    model: RegisteredModel
    metrics: dict[str, Any]
    elapsed_s: float


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on a split, and the figures drawn."""

    version: int
    split: str
    metrics: dict[str, Any]
    confusion_png: Path
    grid_png: Path | None


def _train_rows(data: LabelledEmbeddings) -> npt.NDArray[np.int64]:
    """Labelled images outside val and test (train, pool or no split)."""
    held = np.isin(data.splits.astype(str), ["val", "test"])
    return np.flatnonzero(~held)


def _cross_validate(data: LabelledEmbeddings, config: TrainConfig) -> dict[str, Any]:
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    assert config.cv is not None
    rows = np.concatenate([_train_rows(data), data.rows("val")])
    counts = np.bincount(data.labels[rows], minlength=len(data.class_names))
    if counts.min() < config.cv:
        rare = data.class_names[int(np.argmin(counts))]
        raise ConfigError(
            f"--cv {config.cv} needs at least {config.cv} train + val images per class; "
            f"{rare!r} has {int(counts.min())}; lower --cv or roll up with --depth"
        )
    folds = StratifiedKFold(n_splits=config.cv, shuffle=True, random_state=config.seed)
    scores: dict[str, list[float]] = {"accuracy": [], "macro_f1": []}
    for fit_idx, test_idx in folds.split(rows, data.labels[rows]):
        fit_rows, test_rows = rows[fit_idx], rows[test_idx]
        head = fit_head(
            data.vectors[fit_rows], data.labels[fit_rows], len(data.class_names), config
        )
        predicted = np.argmax(head.predict_proba(data.vectors[test_rows]), axis=1)
        fold = classification_metrics(data.labels[test_rows], predicted, data.class_names)
        scores["accuracy"].append(fold["accuracy"])
        scores["macro_f1"].append(fold["macro_f1"])
    summary: dict[str, Any] = {"folds": config.cv, "per_fold": scores}
    for name, values in scores.items():
        summary[f"{name}_mean"] = float(np.mean(values))
        summary[f"{name}_std"] = float(np.std(values, ddof=1))
    return summary


def train_probe(project: Project, config: TrainConfig) -> TrainResult:
    """Fit the head on the train split, score it on val, export and register it.

    Raises:
        NotFoundError: No embeddings for the configured backbone.
        ConfigError: No val images, a class without training images, fewer than 2
            classes, or ``--cv`` larger than the rarest class.
    """
    started = time.perf_counter()
    data = load_embedded_labels(project, backbone=config.backbone, depth=config.depth)
    train_rows, val_rows = _train_rows(data), data.rows("val")
    if len(val_rows) == 0:
        raise ConfigError(
            "training needs labelled images in the val split to score the model; ingest with "
            "--split val=0.2,test=0.1"
        )
    num_classes = len(data.class_names)
    head = fit_head(data.vectors[train_rows], data.labels[train_rows], num_classes, config)
    val_pred = np.argmax(head.predict_proba(data.vectors[val_rows]), axis=1)
    metrics: dict[str, Any] = {
        "val": classification_metrics(data.labels[val_rows], val_pred, data.class_names),
        "validation_fingerprint": data.fingerprint(val_rows),
        "n_train": len(train_rows),
    }
    if config.cv is not None:
        metrics["cv"] = _cross_validate(data, config)
    with project.catalog.reader() as session:
        embedding = find_embedding_set(session, config.backbone, None)
        backbone_version, dim = embedding.version, embedding.dim
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=project.models_dir))
    try:
        export_head(head, staging / HEAD_FILE)
        diff = verify_head(head, staging / HEAD_FILE, data.vectors[val_rows])
        metrics["onnx_max_abs_diff"] = diff
        metrics["train_s"] = round(time.perf_counter() - started, 3)
        card = {
            "format": CARD_FORMAT,
            "task": TASK,
            "method": config.method,
            "head": config.head,
            "classes": data.class_names,
            "depth": data.depth,
            "input": {
                "kind": "embedding",
                "backbone": config.backbone,
                "backbone_version": backbone_version,
                "dim": dim,
                "normalisation": "L2 (inside the graph)",
            },
            "onnx": {"file": HEAD_FILE, "input": "embedding", "output": "probabilities"},
            "metrics": _card_metrics(metrics),
            "training_data": {
                "fingerprint": data.fingerprint(train_rows),
                "n_images": len(train_rows),
                "validation_fingerprint": metrics["validation_fingerprint"],
            },
            "created_at": datetime.now(UTC).isoformat(),
            "lensloop_version": __version__,
        }
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        metrics_text = json.dumps(metrics, indent=2) + "\n"
        (staging / "metrics.json").write_text(metrics_text, encoding="utf-8")
        save_train_config(config, staging / "config.yaml")
        _draw_confusion(metrics["val"], data.class_names, staging / "confusion.png")
        model = register(project, staging, task=TASK, metrics=metrics, config=config.model_dump())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainResult(model=model, metrics=metrics, elapsed_s=time.perf_counter() - started)


def _card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"val": {k: metrics["val"][k] for k in ("n", "accuracy", "macro_f1")}}
    if "cv" in metrics:
        summary["cv"] = {k: v for k, v in metrics["cv"].items() if k != "per_fold"}
    return summary


def _draw_confusion(metrics: dict[str, Any], class_names: list[str], path: Path) -> None:
    from lensloop.reports import draw_confusion_matrix

    draw_confusion_matrix(np.array(metrics["confusion"]), class_names, path)


def evaluate_model(
    project: Project, ref: str | None = None, *, split: str = "val"
) -> EvaluationResult:
    """Score a released model on a split of the stored embeddings; draw the figures.

    Raises:
        NotFoundError: No such model, or no embeddings for its backbone.
        ConfigError: The model is not a classifier, its backbone's vectors changed
            version since, the split has no labelled images, or the ONNX file is corrupt.
    """
    from lensloop.reports import GridItem, draw_prediction_grid

    model = resolve_model(project, ref)
    card = model.card
    if card.get("task") != TASK:
        raise ConfigError(
            f"model version {model.version} is a {card.get('task')!r} model; "
            "`lensloop evaluate` scores classifiers"
        )
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
    rows = data.rows(split)
    if len(rows) == 0:
        raise ConfigError(f"no labelled image with {backbone} vectors is in the {split} split")
    classes: list[str] = card["classes"]
    index = {name: k for k, name in enumerate(classes)}
    known = np.array([data.class_names[int(c)] in index for c in data.labels[rows]])
    rows = rows[known]
    if len(rows) == 0:
        raise ConfigError(
            f"every labelled {split} image is of a class model version {model.version} does "
            f"not know ({', '.join(classes)}); train a new version on the current labels"
        )
    actual = np.array([index[data.class_names[int(c)]] for c in data.labels[rows]], np.int64)
    probs = run_head(model.folder / card["onnx"]["file"], data.vectors[rows])
    predicted = np.argmax(probs, axis=1)
    metrics = classification_metrics(actual, predicted, classes)
    metrics["skipped_unknown_class"] = int((~known).sum())
    figures = model.folder / f"evaluation-{split}"
    figures.mkdir(exist_ok=True)
    confusion = figures / "confusion.png"
    _draw_confusion(metrics, classes, confusion)
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
