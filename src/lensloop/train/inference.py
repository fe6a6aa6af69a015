"""Run released classifiers: load a model, predict images, store predictions.

A released model is a folder with ``card.json`` and the ONNX file it names. Its card's
``input.kind`` says what the ONNX graph takes:

- ``embedding`` (``--method probe``): a head on one backbone's vectors.
  :meth:`Model.predict` embeds image files or arrays with the backbone the card names
  (refusing another version of it) and runs the head; :func:`predict_project` scores the
  catalog's images from their stored vectors.
- ``image`` (``--method finetune``): a whole CNN. Images are prepared by the package's
  input rule (:func:`lensloop.train.onnx_image.prepare_image`); an image with another
  channel count than the training images is refused.

:func:`init_model` loads a model by version or alias from a project, or from a folder
path, after copying it into the user cache (keyed by the ONNX file's sha256, so a model
on a network share is read once). :func:`predict_project` records the predictions, with
class probabilities and margin uncertainty, for the selection strategies to read.

With a non-local :class:`~lensloop.executors.Executor` (``--executor dask``), an image
model's catalog images are cut into shards of :data:`SHARD_SIZE`; each shard is a task
that loads the model from its (cached) folder once per worker, reads its images and
returns their probabilities, and this process stores them as on the local path. An
embedding model stays in this process: it reads stored vectors, not images, and scores
tens of thousands of them per second, so tasks would only add transfers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from lensloop.catalog.labels import current_class_paths, roll_up
from lensloop.catalog.models import Image, ModelVersion, Prediction
from lensloop.catalog.vectors import find_embedding_set
from lensloop.errors import ConfigError, LensloopError, NotFoundError
from lensloop.executors import Executor, is_local, shards
from lensloop.project import Project
from lensloop.settings import Settings
from lensloop.tasks.classify import TASK, postprocess
from lensloop.train.heads import OnnxHead
from lensloop.train.onnx_image import OnnxImageClassifier, prepare_image
from lensloop.train.registry import CARD_FILE, resolve_model

if TYPE_CHECKING:
    from lensloop.embed.base import Backbone
    from lensloop.imaging import ImageLimits
    from lensloop.sources.remote import RemoteOptions

__all__ = [
    "SHARD_SIZE",
    "ImagePrediction",
    "Model",
    "PredictReport",
    "as_predictions",
    "cached_model_folder",
    "init_model",
    "locate_model",
    "predict",
    "predict_project",
    "read_card",
    "write_predictions_csv",
]

logger = logging.getLogger(__name__)

_CARD_FORMATS = (1,)
_BLOCK = 8192
_IMAGE_BATCH = 32
_CHUNK = 900
_KINDS = ("embedding", "image", "density", "segment")
#: Images per task of an image model with a non-local executor.
SHARD_SIZE = 256


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
    """A loaded classifier: its card and its ONNX graph, opened once, ready to predict.

    Attributes:
        folder: The (cached) model folder.
        card: The model card.
        version: Its version in the project registry (``None`` when loaded from a path).
        runner: The ONNX session: a head on embeddings, or a whole image classifier.
    """

    folder: Path
    card: dict[str, Any]
    version: int | None
    runner: OnnxHead | OnnxImageClassifier = field(repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        """Output classes, in column order."""
        return list(self.card["classes"])

    @property
    def kind(self) -> str:
        """What the ONNX graph takes: ``embedding`` or ``image``."""
        return str(self.card["input"]["kind"])

    def predict_vectors(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """``(N, C)`` probabilities for ``(N, D)`` embeddings of the card's backbone.

        Raises:
            ConfigError: The model takes images, not embeddings.
        """
        if not isinstance(self.runner, OnnxHead):
            raise ConfigError(
                "this model classifies images, not embeddings (it was trained with "
                "--method finetune); pass images"
            )
        data = np.asarray(vectors, dtype=np.float32)
        if data.shape[0] == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        blocks = [self.runner(data[s : s + _BLOCK]) for s in range(0, len(data), _BLOCK)]
        return np.concatenate(blocks)

    def predict_arrays(
        self, images: Iterable[tuple[str, npt.NDArray[Any]]]
    ) -> npt.NDArray[np.float32]:
        """``(N, C)`` probabilities for ``(name, image)`` pairs (an image model).

        Raises:
            ConfigError: The model takes embeddings, or an image has an unusable shape or
                another channel count than the training images (the message names it).
        """
        if not isinstance(self.runner, OnnxImageClassifier):
            raise ConfigError("this model takes embeddings; use predict() or predict_vectors()")
        blocks: list[npt.NDArray[np.float32]] = []
        batch: list[npt.NDArray[np.float32]] = []
        for name, image in images:
            batch.append(prepare_image(image, self.card["input"], name=name))
            if len(batch) == _IMAGE_BATCH:
                blocks.append(self.runner(np.stack(batch)))
                batch = []
        if batch:
            blocks.append(self.runner(np.stack(batch)))
        if not blocks:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(blocks)

    def predict(
        self,
        images: Sequence[str | Path | npt.NDArray[Any]],
        *,
        settings: Settings | None = None,
        project_root: Path | None = None,
        backbone: Backbone | None = None,
    ) -> list[ImagePrediction]:
        """Classify image files or arrays.

        ``backbone``: an embedding model's backbone, already built (a server keeps one
        rather than building it per request); ``None`` builds the card's.

        Raises:
            ConfigError: The backbone of an embedding model now builds another version
                than the model was trained on, or an image cannot be read or has an
                unusable shape or channel count (the message names it).
        """
        from lensloop.imaging import read_image

        settings = settings or Settings()
        named = []
        for position, image in enumerate(images):
            name = str(image) if not isinstance(image, np.ndarray) else f"array {position}"
            try:
                array = image if isinstance(image, np.ndarray) else read_image(Path(image))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"cannot classify {name}: {exc}") from exc
            named.append((name, array))
        if not named:
            return []
        names = [name for name, _ in named]
        if self.kind == "image":
            return as_predictions(names, self.predict_arrays(named), self.classes)
        return as_predictions(
            names, self._embed_and_predict(named, settings, project_root, backbone), self.classes
        )

    def _embed_and_predict(
        self,
        named: list[tuple[str, npt.NDArray[Any]]],
        settings: Settings,
        project_root: Path | None,
        backbone: Backbone | None,
    ) -> npt.NDArray[np.float32]:
        from lensloop.embed.engine import l2_normalize
        from lensloop.embed.registry import BackboneOptions, get_backbone

        spec = self.card["input"]
        if backbone is None:
            options = BackboneOptions(cache_dir=settings.cache_dir, project_root=project_root)
            backbone = get_backbone(spec["backbone"], options)
        if backbone.version != spec["backbone_version"]:
            raise ConfigError(
                f"the model was trained on {spec['backbone']} version "
                f"{spec['backbone_version']}, but that backbone now builds version "
                f"{backbone.version}; train the model again"
            )
        prepared = []
        for name, array in named:
            try:
                prepared.append(backbone.prepare(array))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"cannot classify {name}: {exc}") from exc
        vectors = l2_normalize(backbone.infer(np.stack(prepared)))
        return self.predict_vectors(vectors)


def as_predictions(
    sources: Sequence[str], probs: npt.NDArray[np.float32], classes: list[str]
) -> list[ImagePrediction]:
    """One :class:`ImagePrediction` per row of ``(N, C)`` class probabilities."""
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


def read_card(folder: Path) -> dict[str, Any]:
    """Read and check a released model's card (any task).

    Raises:
        ConfigError: No card, an unreadable one, an unknown format or input kind, or a
            required field missing.
    """
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
    kind = card["input"].get("kind") if isinstance(card["input"], dict) else None
    if kind not in _KINDS:
        raise ConfigError(
            f"the model card {path} has input kind {kind!r}; this version of lensloop runs "
            f"{', '.join(_KINDS)}"
        )
    return card


def cached_model_folder(folder: Path, card: dict[str, Any], cache_dir: Path) -> Path:
    """Copy a model folder's card and ONNX file into the user cache; return the copy.

    The copy is keyed by the ONNX file's sha256, so a model on a network share is read
    once and a changed model is never mistaken for the cached one.
    """
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


def locate_model(
    model: str | int | Path | None, project: Project | None
) -> tuple[Path, int | None]:
    """The folder of a released model and its version (``None`` for a folder path).

    Args:
        model: A version number or alias of ``project``'s registry, or a model folder;
            ``None``: the champion, else the latest version.
        project: The project whose registry holds ``model`` (not needed for a path).

    Raises:
        ConfigError: ``model`` is not a folder and there is no project.
        NotFoundError: No such version or alias.
    """
    if isinstance(model, Path) or (isinstance(model, str) and Path(model).is_dir()):
        return Path(model), None
    if project is None:
        raise ConfigError(
            f"{model!r} is not a model folder; pass project= to load a version or alias"
        )
    registered = resolve_model(project, model)
    return registered.folder, registered.version


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
    folder, version = locate_model(model, project)
    card = read_card(folder)
    if card["task"] != task:
        raise ConfigError(
            f"the model in {folder} is a {card['task']!r} model; this needs a {task!r} model"
        )
    if card["input"]["kind"] == "density":
        raise ConfigError(
            f"the model in {folder} counts objects; load it with "
            "lensloop.train.counter.load_counter (or run `lensloop count`)"
        )
    cached = cached_model_folder(folder, card, settings.cache_dir)
    onnx_path = cached / str(card["onnx"]["file"])
    runner: OnnxHead | OnnxImageClassifier
    if card["input"]["kind"] == "image":
        runner = OnnxImageClassifier(onnx_path)  # a corrupt file fails here
        if runner.num_classes != len(card["classes"]):
            raise ConfigError(
                f"the model in {folder} outputs {runner.num_classes} classes but its card "
                f"lists {len(card['classes'])}; the folder was changed by hand"
            )
    else:
        runner = OnnxHead(onnx_path)  # a corrupt file fails here
        if runner.dim != int(card["input"]["dim"]):
            raise ConfigError(
                f"the model in {folder} takes {runner.dim}-d embeddings but its card says "
                f"{card['input']['dim']}; the folder was changed by hand"
            )
    return Model(folder=cached, card=card, version=version, runner=runner)


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
    """What :func:`predict_project` did.

    Attributes:
        version: The model version.
        predicted: Images predicted now.
        already: Images this version had predicted before (not predicted again).
        without_vectors: Images an embedding model could not score (no vectors of its
            backbone), or that an image model could not read.
        rows: One row per scored image, for the CSV.
    """

    version: int
    predicted: int
    already: int
    without_vectors: int
    rows: list[dict[str, Any]]


def _score_vectors(
    project: Project,
    model: Model,
    done: set[int],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[int], list[int], npt.NDArray[np.float32]]:
    """(every image id with vectors, ids scored now, their probabilities)."""
    spec = model.card["input"]
    with project.catalog.reader() as session:
        current = find_embedding_set(session, spec["backbone"], None).version
    if current != spec["backbone_version"]:
        raise ConfigError(
            f"model version {model.version} reads {spec['backbone']} vectors of version "
            f"{spec['backbone_version']}, but the project holds {current}; train again"
        )
    ids, vectors = project.embeddings(spec["backbone"])
    todo = np.array([r for r, i in enumerate(ids.tolist()) if i not in done], dtype=np.int64)
    blocks = []
    for start in range(0, len(todo), _BLOCK):
        blocks.append(model.predict_vectors(vectors[todo[start : start + _BLOCK]]))
        if progress is not None:
            progress(min(start + _BLOCK, len(todo)), len(todo))
    probs = np.concatenate(blocks) if blocks else np.zeros((0, len(model.classes)), np.float32)
    return [int(i) for i in ids.tolist()], [int(ids[r]) for r in todo], probs


@dataclass(frozen=True)
class _ClassifyShard:
    """One task of an image model on a non-local executor: picklable, no open sessions."""

    folder: Path
    settings: Settings
    limits: ImageLimits
    remote: RemoteOptions
    items: list[tuple[int, str, int | None, str | None]]  # image_id, uri, page, pages


#: A worker process's loaded models, by folder: each worker opens a model's session once.
_SHARD_MODELS: dict[Path, Model] = {}


def _classify_shard(
    shard: _ClassifyShard,
) -> tuple[list[int], list[tuple[int, str]], npt.NDArray[np.float32]]:
    """(ids scored, (id, why) of unreadable images, their ``(N, C)`` probabilities)."""
    from lensloop.sources.reader import read_stored_image

    model = _SHARD_MODELS.get(shard.folder)
    if model is None:
        model = _SHARD_MODELS[shard.folder] = init_model(shard.folder, settings=shard.settings)
    scored: list[int] = []
    unreadable: list[tuple[int, str]] = []
    named = []
    for image_id, uri, page, pages in shard.items:
        try:
            image = read_stored_image(
                uri, page=page, pages=pages, limits=shard.limits, remote=shard.remote
            )
        except (LensloopError, OSError) as exc:
            unreadable.append((image_id, str(exc)))
            continue
        named.append((f"image {image_id}", image))
        scored.append(image_id)
    probs = model.predict_arrays(named)
    return scored, unreadable, probs


def _score_images_on(
    executor: Executor,
    project: Project,
    model: Model,
    todo: list[int],
    progress: Callable[[int, int], None] | None,
) -> tuple[set[int], list[int], list[npt.NDArray[np.float32]]]:
    """(unreadable ids, ids scored, probability blocks) of ``todo`` as executor tasks."""
    with project.catalog.reader() as session:
        rows = {
            int(image_id): (uri, page, (meta or {}).get("pages"))
            for image_id, uri, page, meta in session.execute(
                select(Image.id, Image.uri, Image.page, Image.meta)
            )
        }
    jobs = [
        _ClassifyShard(
            model.folder,
            project.settings,
            project.limits,
            project.remote,
            [(image_id, *rows[image_id]) for image_id in shard],
        )
        for shard in shards(todo, SHARD_SIZE)
    ]
    unreadable: set[int] = set()
    scored: list[int] = []
    blocks = []
    finished = 0
    for job, (ids, failed, probs) in zip(jobs, executor.map(_classify_shard, jobs), strict=True):
        for image_id, why in failed:
            logger.warning("image %d cannot be read, not predicted: %s", image_id, why)
            unreadable.add(image_id)
        scored.extend(ids)
        if len(ids):
            blocks.append(probs)
        finished += len(job.items)
        if progress is not None:
            progress(finished, len(todo))
    return unreadable, scored, blocks


def _score_images(
    project: Project,
    model: Model,
    done: set[int],
    progress: Callable[[int, int], None] | None,
    executor: Executor | None = None,
) -> tuple[list[int], list[int], npt.NDArray[np.float32]]:
    """(every readable image id, ids scored now, their probabilities)."""
    with project.catalog.reader() as session:
        every = [int(i) for i in session.scalars(select(Image.id).order_by(Image.id))]
    todo = [i for i in every if i not in done]
    if executor is not None and not is_local(executor):
        unreadable, scored, blocks = _score_images_on(executor, project, model, todo, progress)
    else:
        unreadable, scored, blocks = _score_images_here(project, model, todo, progress)
    probs = np.concatenate(blocks) if blocks else np.zeros((0, len(model.classes)), np.float32)
    return [i for i in every if i not in unreadable], scored, probs


def _score_images_here(
    project: Project,
    model: Model,
    todo: list[int],
    progress: Callable[[int, int], None] | None,
) -> tuple[set[int], list[int], list[npt.NDArray[np.float32]]]:
    """(unreadable ids, ids scored, probability blocks) of ``todo`` in this process."""
    unreadable: set[int] = set()
    scored: list[int] = []
    blocks = []
    for start in range(0, len(todo), _IMAGE_BATCH):
        batch = []
        for image_id in todo[start : start + _IMAGE_BATCH]:
            try:
                batch.append((f"image {image_id}", project.read_image(image_id)))
            except (LensloopError, OSError) as exc:
                logger.warning("image %d cannot be read, not predicted: %s", image_id, exc)
                unreadable.add(image_id)
                continue
            scored.append(image_id)
        if batch:
            blocks.append(model.predict_arrays(batch))
        if progress is not None:
            progress(min(start + _IMAGE_BATCH, len(todo)), len(todo))
    return unreadable, scored, blocks


def predict_project(
    project: Project,
    model: Model,
    *,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> PredictReport:
    """Predict the catalog's images with a model of its registry; store the predictions.

    An embedding model scores every image with vectors of its backbone; an image model
    reads every image. Images this model version already predicted are not predicted
    again. Returns a row per scored image (new and earlier predictions) for the CSV.

    With a non-local ``executor`` an image model reads and classifies shards of
    :data:`SHARD_SIZE` images as tasks (the workers must reach the images and the model
    folder in the user cache); an embedding model always scores its vectors here.

    Raises:
        ConfigError: The model is not a version of this project, the project's vectors
            of its backbone are of another version, or an image has a channel count the
            model was not trained on.
        NotFoundError: No embeddings of an embedding model's backbone.
    """
    if model.version is None:
        raise ConfigError(
            "only a version of this project's registry can store predictions in its catalog; "
            "pass --model VERSION or alias (or --out alone to write a CSV)"
        )
    with project.catalog.reader() as session:
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
    if model.kind == "image":
        ids, scored, probs = _score_images(project, model, set(done), progress, executor)
    else:
        ids, scored, probs = _score_vectors(project, model, set(done), progress)
    classes = model.classes
    new_rows = [
        Prediction(
            image_id=image_id,
            model_version_id=version_id,
            payload={"task": TASK, "class": item.predicted},
            probabilities=item.probabilities,
            uncertainty=item.uncertainty,
        )
        for image_id, item in zip(
            scored, as_predictions([str(i) for i in scored], probs, classes), strict=True
        )
    ]
    for start in range(0, len(new_rows), _CHUNK * 5):
        with project.catalog.transaction() as session:
            session.add_all(new_rows[start : start + _CHUNK * 5])
    depth = model.card.get("depth")
    table: list[dict[str, Any]] = []
    stored = {r.image_id: (r.payload, r.probabilities, r.uncertainty) for r in new_rows} | done
    for image_id in ids:
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
