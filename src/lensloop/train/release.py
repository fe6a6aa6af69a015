"""What every trainer shares: cross-validation folds, the model card, and the release.

A release is a folder staged next to ``models/`` with the trainer's ONNX file (and any
figures it drew), then :func:`release` adds the model card, the metrics, the resolved
settings (and, for a classifier, a confusion matrix), registers it as the next version
(:func:`lensloop.train.registry.register`), and hands it to experiment tracking
(:mod:`lensloop.train.tracking`): the folder is logged as the run's ``model`` artefact and
registered in MLflow's Model Registry under the same aliases.

Each task names the validation metrics its card repeats and its tracking charts show in
:data:`HEADLINE_METRICS`.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lensloop import __version__
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.tasks.classify import LabelledImages
from lensloop.train.config import TrainConfig, save_train_config
from lensloop.train.registry import CARD_FILE, RegisteredModel, register

if TYPE_CHECKING:
    from lensloop.train.tracking import TrackedRun

__all__ = [
    "CARD_FORMAT",
    "HEADLINE_METRICS",
    "card_metrics",
    "classification_training_data",
    "cv_folds",
    "release",
    "staging_folder",
    "summarise_folds",
    "tracked_metrics",
]

CARD_FORMAT = 1
#: Per task, the validation metrics a model card repeats and tracking charts.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "classify": ("accuracy", "macro_f1"),
    "count": ("mae", "mre", "f1", "precision", "recall"),
    "segment": ("mean_iou", "pixel_accuracy"),
}
_TRACKED_EXTRAS = ("best_epoch", "n_train", "train_s", "onnx_max_abs_diff")


def cv_folds(
    data: LabelledImages, folds: int, seed: int
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Stratified ``(fit rows, held-out rows)`` pairs over the train and val images.

    Raises:
        ConfigError: A class has fewer than ``folds`` train + val images.
    """
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    rows = np.concatenate([data.train_rows(), data.rows("val")])
    counts = np.bincount(data.labels[rows], minlength=len(data.class_names))
    if counts.min() < folds:
        rare = data.class_names[int(np.argmin(counts))]
        raise ConfigError(
            f"--cv {folds} needs at least {folds} train + val images per class; "
            f"{rare!r} has {int(counts.min())}; lower --cv or roll up with --depth"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, test_idx in splitter.split(rows, data.labels[rows]):
        yield rows[fit_idx], rows[test_idx]


def summarise_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (sample standard deviation) of each fold's accuracy and macro-F1."""
    scores = {name: [float(m[name]) for m in per_fold] for name in ("accuracy", "macro_f1")}
    summary: dict[str, Any] = {"folds": len(per_fold), "per_fold": scores}
    for name, values in scores.items():
        summary[f"{name}_mean"] = float(np.mean(values))
        summary[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return summary


def card_metrics(metrics: dict[str, Any], task: str = "classify") -> dict[str, Any]:
    """The headline metrics a model card repeats: validation, and the CV summary."""
    names = ("n", *HEADLINE_METRICS[task])
    summary: dict[str, Any] = {"val": {k: metrics["val"][k] for k in names if k in metrics["val"]}}
    if "cv" in metrics:
        summary["cv"] = {k: v for k, v in metrics["cv"].items() if k != "per_fold"}
    return summary


def tracked_metrics(metrics: dict[str, Any], task: str = "classify") -> dict[str, Any]:
    """The scalar metrics of a run worth a tracking chart (not per-class tables or matrices).

    Metrics that could not be measured (``None`` or ``NaN``, e.g. a relative error
    without objects) are left out: tracking servers refuse them.
    """
    tracked: dict[str, Any] = {
        f"val_{k}": metrics["val"][k] for k in HEADLINE_METRICS[task] if k in metrics["val"]
    }
    if "cv" in metrics:
        for key in ("accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std"):
            tracked[f"cv_{key}"] = metrics["cv"][key]
    for key in _TRACKED_EXTRAS:
        if key in metrics:
            tracked[key] = metrics[key]
    return {
        k: v
        for k, v in tracked.items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }


def classification_training_data(
    data: LabelledImages, train_rows: npt.NDArray[np.int64], metrics: dict[str, Any]
) -> dict[str, Any]:
    """The card's ``training_data`` of a classifier: what it learnt from and was scored on."""
    return {
        "fingerprint": data.fingerprint(train_rows),
        "n_images": len(train_rows),
        "validation_fingerprint": metrics["validation_fingerprint"],
    }


@contextmanager
def staging_folder(project: Project) -> Iterator[Path]:
    """A fresh folder under ``models/`` to build a release in; removed unless registered."""
    project.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=project.models_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # register() moved it when it succeeded


def release(
    project: Project,
    staging: Path,
    *,
    task: str,
    card: dict[str, Any],
    metrics: dict[str, Any],
    config: TrainConfig,
    training_data: dict[str, Any],
    run: TrackedRun | None = None,
) -> RegisteredModel:
    """Complete a staged release (card, metrics, settings, figures) and register it.

    Args:
        project: The project whose registry receives the version.
        staging: Folder from :func:`staging_folder` holding the trainer's ONNX file.
        task: The task (``classify``, ``count``, ``segment``).
        card: The trainer's part of the model card (method, input, onnx, ``classes``,
            ``depth``, ...); the common fields (format, task, metrics, training data,
            time, version) are added here.
        metrics: Everything measured; needs ``val`` (a classifier's with ``confusion``,
            drawn as ``confusion.png``) and ``validation_fingerprint``.
        config: The resolved settings, saved as ``config.yaml``.
        training_data: What the model learnt from (``fingerprint``, ``n_images``,
            ``validation_fingerprint``); see :func:`classification_training_data`.
        run: The tracking run; the release is logged and registered there too.
    """
    full_card = {
        "format": CARD_FORMAT,
        "task": task,
        **card,
        "metrics": card_metrics(metrics, task),
        "training_data": training_data,
        "created_at": datetime.now(UTC).isoformat(),
        "lensloop_version": __version__,
    }
    (staging / CARD_FILE).write_text(json.dumps(full_card, indent=2) + "\n", encoding="utf-8")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    save_train_config(config, staging / "config.yaml")
    if "confusion" in metrics["val"]:
        from lensloop.reports import draw_confusion_matrix

        confusion = np.array(metrics["val"]["confusion"])
        draw_confusion_matrix(confusion, list(card["classes"]), staging / "confusion.png")
    model = register(project, staging, task=task, metrics=metrics, config=config.model_dump())
    if run is not None:
        from lensloop.train.tracking import register_release

        run.log_artifacts(model.folder)
        register_release(project, run, task=task, version=model.version, aliases=model.aliases)
    return model
