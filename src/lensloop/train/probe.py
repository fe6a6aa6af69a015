"""Train and release a classifier head on the stored embeddings (``--method probe``).

Training uses the labelled images outside ``val`` and ``test``; the validation split
scores the release and decides whether it becomes the champion. ``--cv K`` adds
stratified K-fold cross-validation over train + val (mean and spread). The release is a
folder with the ONNX head, its model card, the resolved settings, the metrics and a
confusion matrix, registered as the next version (:mod:`lensloop.train.release`).
Evaluation of any release is :mod:`lensloop.train.evaluate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lensloop.catalog.vectors import find_embedding_set
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.tasks.classify import (
    TASK,
    LabelledEmbeddings,
    classification_metrics,
    load_embedded_labels,
)
from lensloop.train.config import TrainConfig
from lensloop.train.heads import export_head, fit_head, verify_head
from lensloop.train.registry import RegisteredModel
from lensloop.train.release import (
    classification_training_data,
    cv_folds,
    release,
    staging_folder,
    summarise_folds,
    tracked_metrics,
)

__all__ = ["TrainResult", "train_probe"]

HEAD_FILE = "head.onnx"


@dataclass(frozen=True)
class TrainResult:
    """A finished training run."""

    model: RegisteredModel
    metrics: dict[str, Any]
    elapsed_s: float


def _cross_validate(data: LabelledEmbeddings, config: TrainConfig, folds: int) -> dict[str, Any]:
    per_fold = []
    for fit_rows, test_rows in cv_folds(data, folds, config.seed):
        head = fit_head(
            data.vectors[fit_rows], data.labels[fit_rows], len(data.class_names), config
        )
        predicted = np.argmax(head.predict_proba(data.vectors[test_rows]), axis=1)
        per_fold.append(classification_metrics(data.labels[test_rows], predicted, data.class_names))
    return summarise_folds(per_fold)


def train_probe(project: Project, config: TrainConfig) -> TrainResult:
    """Fit the head on the train split, score it on val, export and register it.

    Raises:
        NotFoundError: No embeddings for the configured backbone.
        ConfigError: No val images, a class without training images, fewer than 2
            classes, ``--cv`` larger than the rarest class, or an unreachable tracking
            server.
    """
    from lensloop.train.tracking import start_run

    started = time.perf_counter()
    data = load_embedded_labels(project, backbone=config.backbone, depth=config.depth)
    train_rows, val_rows = data.train_rows(), data.rows("val")
    if len(val_rows) == 0:
        raise ConfigError(
            "training needs labelled images in the val split to score the model; ingest with "
            "--split val=0.2,test=0.1"
        )
    with start_run(project, run_name=f"probe-{config.head}", task=TASK) as run:
        run.log_params(config.model_dump())
        num_classes = len(data.class_names)
        head = fit_head(data.vectors[train_rows], data.labels[train_rows], num_classes, config)
        val_pred = np.argmax(head.predict_proba(data.vectors[val_rows]), axis=1)
        metrics: dict[str, Any] = {
            "val": classification_metrics(data.labels[val_rows], val_pred, data.class_names),
            "validation_fingerprint": data.fingerprint(val_rows),
            "n_train": len(train_rows),
        }
        if config.cv is not None:
            metrics["cv"] = _cross_validate(data, config, config.cv)
        with project.catalog.reader() as session:
            embedding = find_embedding_set(session, config.backbone, None)
            backbone_version, dim = embedding.version, embedding.dim
        with staging_folder(project) as staging:
            export_head(head, staging / HEAD_FILE)
            metrics["onnx_max_abs_diff"] = verify_head(
                head, staging / HEAD_FILE, data.vectors[val_rows]
            )
            metrics["train_s"] = round(time.perf_counter() - started, 3)
            run.log_metrics(tracked_metrics(metrics))
            card = {
                "method": config.method,
                "classes": data.class_names,
                "depth": data.depth,
                "head": config.head,
                "input": {
                    "kind": "embedding",
                    "backbone": config.backbone,
                    "backbone_version": backbone_version,
                    "dim": dim,
                    "normalisation": "L2 (inside the graph)",
                },
                "onnx": {"file": HEAD_FILE, "input": "embedding", "output": "probabilities"},
            }
            model = release(
                project,
                staging,
                task=TASK,
                card=card,
                metrics=metrics,
                config=config,
                training_data=classification_training_data(data, train_rows, metrics),
                run=run,
            )
    return TrainResult(model=model, metrics=metrics, elapsed_s=time.perf_counter() - started)
