"""Run released classifiers: load a model, predict images, store predictions.

A released model is a folder with ``card.json`` and the ONNX head it names
(:mod:`lensloop.train.probe`). :func:`init_model` loads one by version or alias from a
project, or from a folder path, after copying it into the user cache (keyed by the head's
sha256, so a model on a network share is read once). :meth:`Model.predict` embeds image
files or arrays with the backbone the card names (refusing another version of it) and
runs the head; :func:`predict_project` scores the catalog's images from their stored
vectors and records the predictions, with class probabilities and margin uncertainty,
for the selection strategies to read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from lensloop.catalog.labels import current_class_paths, roll_up
from lensloop.catalog.models import Image, ModelVersion, Prediction
from lensloop.catalog.vectors import find_embedding_set
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.settings import Settings
from lensloop.tasks.classify import TASK, postprocess
from lensloop.train.heads import OnnxHead
from lensloop.train.registry import CARD_FILE, resolve_model

__all__ = [
    "ImagePrediction",
    "Model",
    "PredictReport",
    "init_model",
    "predict",
    "predict_project",
    "write_predictions_csv",
]

_CARD_FORMATS = (1,)
_BLOCK = 8192
_CHUNK = 900


@dataclass(frozen=True)
class ImagePrediction:
    """One image's prediction.

    Attributes:
        source: The image id (catalog images) or the file path / array position given.
        predicted: The most probable class.
        confidence: Its probability.
        uncertainty: Margin uncertainty ``1 - (p1 - p2)`` in ``[0, 1]``.
        probabilities: Every class's probability.
    """

    source: str
    predicted: str
    confidence: float
    uncertainty: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Model:
    """A loaded classifier: its card and the ONNX head, opened once, ready to predict."""

    folder: Path
    card: dict[str, Any]
    version: int | None
    head: OnnxHead = field(repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        """Output classes, in column order."""
        return list(self.card["classes"])

    def predict_vectors(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """``(N, C)`` probabilities for ``(N, D)`` embeddings of the card's backbone."""
        data = np.asarray(vectors, dtype=np.float32)
        if data.shape[0] == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        blocks = [self.head(data[s : s + _BLOCK]) for s in range(0, len(data), _BLOCK)]
        return np.concatenate(blocks)

    def predict(
        self,
        images: Sequence[str | Path | npt.NDArray[Any]],
        *,
        settings: Settings | None = None,
        project_root: Path | None = None,
    ) -> list[ImagePrediction]:
        """Embed images (files or arrays) with the card's backbone and classify them.

        Raises:
            ConfigError: The backbone now builds another version than the model was
                trained on, or an image cannot be read or has an unusable shape (the
                message names it).
        """
        from lensloop.embed.engine import l2_normalize
        from lensloop.embed.registry import BackboneOptions, get_backbone
        from lensloop.imaging import read_image

        settings = settings or Settings()
        spec = self.card["input"]
        options = BackboneOptions(cache_dir=settings.cache_dir, project_root=project_root)
        backbone = get_backbone(spec["backbone"], options)
        if backbone.version != spec["backbone_version"]:
            raise ConfigError(
                f"the model was trained on {spec['backbone']} version "
                f"{spec['backbone_version']}, but that backbone now builds version "
                f"{backbone.version}; train the model again"
            )
        prepared = []
        names = []
        for position, image in enumerate(images):
            name = str(image) if not isinstance(image, np.ndarray) else f"array {position}"
            try:
                array = image if isinstance(image, np.ndarray) else read_image(Path(image))
                prepared.append(backbone.prepare(array))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"cannot classify {name}: {exc}") from exc
            names.append(name)
        if not prepared:
            return []
        vectors = l2_normalize(backbone.infer(np.stack(prepared)))
        return _as_predictions(names, self.predict_vectors(vectors), self.classes)


def _as_predictions(
    sources: Sequence[str], probs: npt.NDArray[np.float32], classes: list[str]
) -> list[ImagePrediction]:
    if len(probs) == 0:
        return []
    best, uncertainty = postprocess(probs)
    return [
        ImagePrediction(
            source=source,
            predicted=classes[int(best[k])],
            confidence=float(probs[k, int(best[k])]),
            uncertainty=float(uncertainty[k]),
            probabilities={c: float(p) for c, p in zip(classes, probs[k], strict=True)},
        )
        for k, source in enumerate(sources)
    ]


def _read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} holds no {CARD_FILE}; pass a model folder released by `lensloop train` "
            "(models/vN/)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"the model card {path} is unreadable: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") not in _CARD_FORMATS:
        raise ConfigError(
            f"{path} is not a lensloop model card this version reads (format "
            f"{card.get('format') if isinstance(card, dict) else None!r}; known: "
            f"{list(_CARD_FORMATS)})"
        )
    for key in ("task", "classes", "input", "onnx"):
        if key not in card:
            raise ConfigError(f"the model card {path} lacks {key!r}; it was edited by hand")
    return card


def _cached_copy(folder: Path, card: dict[str, Any], cache_dir: Path) -> Path:
    """Copy a model folder's card and head into the user cache; return the copy."""
    head = folder / str(card["onnx"]["file"])
    try:
        digest = hashlib.sha256(head.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise ConfigError(f"cannot read the model's ONNX file {head}: {exc.strerror}") from exc
    target = cache_dir / "models" / digest
    if not (target / CARD_FILE).is_file():
        staging = target.with_name(f".{digest}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(head, staging / head.name)
        shutil.copy2(folder / CARD_FILE, staging / CARD_FILE)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def init_model(
    model: str | int | Path | None = None,
    *,
    project: Project | None = None,
    settings: Settings | None = None,
    task: str = TASK,
) -> Model:
    """Load a released model by version number, alias or folder path.

    Args:
        model: A version number or alias (``latest``, ``champion``) of ``project``'s
            registry, or the path of a released model folder (``models/vN``); ``None``
            means the champion, else the latest version.
        project: The project whose registry holds ``model`` (not needed for a path).
        settings: Where the user cache is (default: from the environment).
        task: The task the caller needs; a model of another task is refused.

    Raises:
        ConfigError: Not a model folder, an unreadable or unknown card, a model of another
            task, or a corrupt ONNX file.
        NotFoundError: No such version or alias.
    """
    settings = settings or (project.settings if project is not None else Settings())
    version: int | None = None
    if isinstance(model, Path) or (isinstance(model, str) and Path(model).is_dir()):
        folder = Path(model)
    elif project is None:
        raise ConfigError(
            f"{model!r} is not a model folder; pass project= to load a version or alias"
        )
    else:
        registered = resolve_model(project, model)
        folder, version = registered.folder, registered.version
    card = _read_card(folder)
    if card["task"] != task:
        raise ConfigError(
            f"the model in {folder} is a {card['task']!r} model; this needs a {task!r} model"
        )
    cached = _cached_copy(folder, card, settings.cache_dir)
    head = OnnxHead(cached / str(card["onnx"]["file"]))  # a corrupt file fails here
    if head.dim != int(card["input"]["dim"]):
        raise ConfigError(
            f"the model in {folder} takes {head.dim}-d embeddings but its card says "
            f"{card['input']['dim']}; the folder was changed by hand"
        )
    return Model(folder=cached, card=card, version=version, head=head)


def predict(
    images: Sequence[str | Path | npt.NDArray[Any]],
    model: Model,
    *,
    settings: Settings | None = None,
) -> list[ImagePrediction]:
    """Classify image files or arrays with a loaded model (see :meth:`Model.predict`)."""
    return model.predict(images, settings=settings)


@dataclass(frozen=True)
class PredictReport:
    """What :func:`predict_project` did."""

    version: int
    predicted: int
    already: int
    without_vectors: int
    rows: list[dict[str, Any]]


def predict_project(
    project: Project,
    model: Model,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PredictReport:
    """Predict every catalog image that has vectors of the model's backbone; store them.

    Images this model version already predicted are not predicted again. Returns a row
    per image with vectors (new and earlier predictions) for the CSV.

    Raises:
        ConfigError: The model is not a version of this project, or the project's vectors
            of its backbone are of another version.
        NotFoundError: No embeddings of the model's backbone.
    """
    if model.version is None:
        raise ConfigError(
            "only a version of this project's registry can store predictions in its catalog; "
            "pass --model VERSION or alias (or --out alone to write a CSV)"
        )
    spec = model.card["input"]
    with project.catalog.reader() as session:
        current = find_embedding_set(session, spec["backbone"], None).version
        version_id = session.scalar(
            select(ModelVersion.id).where(ModelVersion.version == model.version)
        )
        if version_id is None:
            raise NotFoundError(f"no model version {model.version} in {project.root}")
        done = {
            image_id: (payload, probs, unc)
            for image_id, payload, probs, unc in session.execute(
                select(
                    Prediction.image_id,
                    Prediction.payload,
                    Prediction.probabilities,
                    Prediction.uncertainty,
                ).where(Prediction.model_version_id == version_id)
            )
        }
        n_images = int(session.scalar(select(func.count()).select_from(Image)) or 0)
        uris = {image_id: uri for image_id, uri in session.execute(select(Image.id, Image.uri))}
        labels = current_class_paths(session)
    if current != spec["backbone_version"]:
        raise ConfigError(
            f"model version {model.version} reads {spec['backbone']} vectors of version "
            f"{spec['backbone_version']}, but the project holds {current}; train again"
        )
    ids, vectors = project.embeddings(spec["backbone"])
    todo = np.array([r for r, i in enumerate(ids.tolist()) if i not in done], dtype=np.int64)
    classes = model.classes
    new_rows: list[Prediction] = []
    total = len(todo)
    for start in range(0, total, _BLOCK):
        rows = todo[start : start + _BLOCK]
        probs = model.predict_vectors(vectors[rows])
        for row, item in zip(
            rows, _as_predictions([str(int(ids[r])) for r in rows], probs, classes), strict=True
        ):
            new_rows.append(
                Prediction(
                    image_id=int(ids[row]),
                    model_version_id=version_id,
                    payload={"task": TASK, "class": item.predicted},
                    probabilities=item.probabilities,
                    uncertainty=item.uncertainty,
                )
            )
        if progress is not None:
            progress(min(start + _BLOCK, total), total)
    for start in range(0, len(new_rows), _CHUNK * 5):
        with project.catalog.transaction() as session:
            session.add_all(new_rows[start : start + _CHUNK * 5])
    depth = model.card.get("depth")
    table: list[dict[str, Any]] = []
    stored = {r.image_id: (r.payload, r.probabilities, r.uncertainty) for r in new_rows} | done
    for image_id in ids.tolist():
        payload, probs_dict, unc = stored[image_id]
        label = labels.get(image_id)
        table.append(
            {
                "image_id": image_id,
                "uri": uris.get(image_id, ""),
                "predicted": payload.get("class"),
                "confidence": max((probs_dict or {}).values(), default=0.0),
                "uncertainty": unc,
                "actual": roll_up(label, depth) if label is not None else None,
                "probabilities": probs_dict or {},
            }
        )
    return PredictReport(
        version=model.version,
        predicted=len(new_rows),
        already=len(ids) - len(new_rows),
        without_vectors=n_images - len(ids),
        rows=table,
    )


def write_predictions_csv(rows: Iterable[dict[str, Any]], classes: list[str], path: Path) -> Path:
    """Write predictions as CSV: id/uri, predicted, confidence, uncertainty, actual, p_<class>."""
    from lensloop.imaging import atomic_write

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(
        ["image", "uri", "predicted", "confidence", "uncertainty", "actual"]
        + [f"p_{c}" for c in classes]
    )
    for row in rows:
        probs = row["probabilities"]
        writer.writerow(
            [
                row.get("image_id", ""),
                row.get("uri", ""),
                row["predicted"],
                f"{row['confidence']:.6f}",
                f"{row['uncertainty']:.6f}",
                row.get("actual") or "",
            ]
            + [f"{probs.get(c, 0.0):.6f}" for c in classes]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue().encode("utf-8"), overwrite=True)
    return path
