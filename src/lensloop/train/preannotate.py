"""Pre-annotations: a released model's output for catalog images, ready for Label Studio.

The Label Studio export and push, and the ML backend's ``/predict``, all ask the same
question: what does the project's current model say about these images? The answer is a
:class:`~lensloop.annotate.labelstudio.tasks.PreAnnotation` per image in the catalog's
pixel form; the Label Studio layer turns it into results.

Classification models answer from the predictions already stored for their version
(``lensloop predict``) and predict the rest from the images' pixels. Counting models
answer with the objects they locate, as keypoints (score: the mean peak height relative
to one object's, at most 1). Segmentation models answer with one brush mask per class
present in the predicted label map (score: the mean probability of the chosen label over
the image's non-background pixels).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lensloop.annotate.labelstudio.tasks import PreAnnotation
from lensloop.catalog.images import in_chunks
from lensloop.catalog.models import ModelVersion, Prediction
from lensloop.errors import ConfigError, LensloopError, NotFoundError
from lensloop.train.counter import Counter, load_counter
from lensloop.train.inference import Model, init_model
from lensloop.train.segmenter import Segmenter, load_segmenter

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = ["AnyModel", "current_model", "model_version_name", "preannotate"]

#: A loaded model of any task that pre-annotates.
AnyModel = Model | Counter | Segmenter
_TASKS = ("classify", "count", "segment")

logger = logging.getLogger(__name__)


def model_version_name(model: AnyModel) -> str:
    """The ``model_version`` Label Studio shows: ``lensloop-v3`` (or the folder name)."""
    if model.version is not None:
        return f"lensloop-v{model.version}"
    return f"lensloop-{model.folder.name}"


def current_model(project: Project, model: str | int | None = None) -> AnyModel | None:
    """Load the model that pre-annotates for the project's task, or ``None`` if none yet.

    Args:
        project: The project.
        model: A version or alias; ``None``: the champion, else the latest version.

    Returns:
        The model, or ``None`` when ``model`` is ``None`` and the project has no released
        model for its task (nothing released yet, or a task whose models come later).

    Raises:
        ConfigError: A named model cannot pre-annotate the project's task, or is unusable.
        NotFoundError: A named version or alias does not exist.
    """
    if project.task not in _TASKS:
        if model is None:
            return None
        raise ConfigError(
            f"pre-annotations for {project.task!r} projects come with their models; "
            f"this version of lensloop pre-annotates {', '.join(_TASKS)} projects"
        )
    try:
        if project.task == "count":
            return load_counter(model, project=project)
        if project.task == "segment":
            return load_segmenter(model, project=project)
        return init_model(model, project=project, task=project.task)
    except NotFoundError:
        if model is not None:
            raise
        return None  # nothing released yet: tasks go out without predictions


def preannotate(
    project: Project, image_ids: Sequence[int], *, model: AnyModel
) -> dict[int, PreAnnotation]:
    """Return the model's pre-annotation of each image it can read.

    A classifier's stored predictions of its version are reused; other images are read
    and predicted. Unreadable images are logged and left out.
    """
    if isinstance(model, Counter):
        return _count_points(project, image_ids, model)
    if isinstance(model, Segmenter):
        return _segment_masks(project, image_ids, model)
    name = model_version_name(model)
    found: dict[int, PreAnnotation] = {}
    if model.version is not None:
        with project.catalog.reader() as session:
            version_id = session.scalar(
                select(ModelVersion.id).where(ModelVersion.version == model.version)
            )
            for chunk in in_chunks(list(image_ids)):
                rows = session.execute(
                    select(Prediction.image_id, Prediction.payload, Prediction.probabilities)
                    .where(
                        Prediction.model_version_id == version_id,
                        Prediction.image_id.in_(chunk),
                    )
                    .order_by(Prediction.id)
                )
                for image_id, payload, probabilities in rows:
                    label = payload.get("class")
                    if label is None:
                        continue
                    score = float((probabilities or {}).get(label, 0.0))
                    found[image_id] = PreAnnotation("class", {"class": label}, score, name)
    todo = [i for i in image_ids if i not in found]
    for chunk in in_chunks(todo, 32):
        arrays = list(_readable(project, chunk))
        if not arrays:
            continue
        predictions = model.predict(
            [array for _, array in arrays], settings=project.settings, project_root=project.root
        )
        for (image_id, _), item in zip(arrays, predictions, strict=True):
            found[image_id] = PreAnnotation(
                "class", {"class": item.predicted}, item.confidence, name
            )
    return found


def _readable(project: Project, image_ids: Sequence[int]) -> Iterator[tuple[int, Any]]:
    """``(image id, pixels)`` of the images that can be read; the others are logged."""
    for image_id in image_ids:
        try:
            image = project.read_image(image_id)
        except (LensloopError, OSError) as exc:
            logger.warning("image %d cannot be read, not pre-annotated: %s", image_id, exc)
            continue
        yield image_id, image


def _count_points(
    project: Project, image_ids: Sequence[int], counter: Counter
) -> dict[int, PreAnnotation]:
    """Keypoints where a counting model locates objects."""
    name = model_version_name(counter)
    label = str(counter.card["classes"][0])
    found: dict[int, PreAnnotation] = {}
    for image_id, image in _readable(project, image_ids):
        result = counter.count_array(image, name=f"image {image_id}")
        height, width = image.shape[:2]
        payload = {
            "width": width,
            "height": height,
            "points": [
                {"x": float(x), "y": float(y), "label": label, "id": f"p{k}"}
                for k, (x, y) in enumerate(result.points)
            ],
        }
        score = float(min(1.0, result.scores.mean())) if len(result.scores) else 1.0
        found[image_id] = PreAnnotation("points", payload, score, name)
    return found


def _segment_masks(
    project: Project, image_ids: Sequence[int], segmenter: Segmenter
) -> dict[int, PreAnnotation]:
    """One brush mask per class a segmentation model finds in each image."""
    from lensloop.annotate.rle import mask_to_counts

    name = model_version_name(segmenter)
    found: dict[int, PreAnnotation] = {}
    for image_id, image in _readable(project, image_ids):
        result = segmenter.segment_array(image, name=f"image {image_id}", confidence=True)
        height, width = result.labels.shape
        masks = []
        for k, label in enumerate(segmenter.classes, start=1):
            mask = result.labels == k
            if mask.any():
                masks.append({"label": label, "id": f"m{k}", **mask_to_counts(mask)})
        objects = result.labels > 0
        confidence = result.confidence
        score = (
            float(confidence[objects].mean()) if confidence is not None and objects.any() else 1.0
        )
        payload = {"width": width, "height": height, "masks": masks}
        found[image_id] = PreAnnotation("mask", payload, score, name)
    return found
