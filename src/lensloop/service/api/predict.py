"""``POST /v1/predict``: the project's model on one sent image, whatever the task."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool

from lensloop.service.api.deps import State
from lensloop.service.api.inputs import ReceivedImage, decode_received, receive_image
from lensloop.service.api.schemas import ClassifyOut, CountOut, SegmentOut
from lensloop.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(tags=["predict"])


def _predict(state: ServiceState, received: ReceivedImage, ref: str | None) -> Any:
    from lensloop.imaging import encode_image
    from lensloop.train.counter import Counter
    from lensloop.train.inference import as_predictions
    from lensloop.train.onnx_image import prepare_image
    from lensloop.train.segmenter import Segmenter

    image = decode_received(received, limits=state.project.limits)
    model = state.model_for(ref)
    state.counters["api_predictions"] += 1
    if isinstance(model, Counter):
        result = model.count_array(image, name=received.name)
        return CountOut(
            model_version=model.version,
            count=float(result.count),
            points=[(float(x), float(y)) for x, y in result.points],
        )
    if isinstance(model, Segmenter):
        labels = model.segment_array(image, name=received.name).labels
        values, counts = np.unique(labels, return_counts=True)
        areas = {name: 0 for name in model.classes}
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            if 1 <= value <= len(model.classes):
                areas[model.classes[value - 1]] = int(count)
        return SegmentOut(
            model_version=model.version,
            classes=list(model.classes),
            width=int(labels.shape[1]),
            height=int(labels.shape[0]),
            areas=areas,
            mask_png=base64.b64encode(encode_image(labels, format="png")).decode("ascii"),
        )
    if model.kind == "image":
        # Concurrent requests share one ONNX call (service.batching).
        prepared = prepare_image(image, model.card["input"], name=received.name)
        probs = state.batcher(model)(prepared)
        [item] = as_predictions([received.name], probs[None], model.classes)
    else:
        backbone = state.backbone(str(model.card["input"]["backbone"]))
        [item] = model.predict(
            [image],
            settings=state.project.settings,
            project_root=state.project.root,
            backbone=backbone,
        )
    return ClassifyOut(
        model_version=model.version,
        predicted=item.predicted,
        confidence=item.confidence,
        uncertainty=item.uncertainty,
        probabilities=item.probabilities,
    )


@router.post(
    "/predict",
    response_model=ClassifyOut | CountOut | SegmentOut,
    summary="Predict one image (upload or URL) with the project's model",
)
async def post_predict(
    state: State,
    file: Annotated[UploadFile | None, File(description="The image.")] = None,
    url: Annotated[str | None, Form(max_length=4096, description="Or its URL.")] = None,
    model: Annotated[
        str | None, Form(max_length=64, description="Version or alias (default: serving).")
    ] = None,
) -> ClassifyOut | CountOut | SegmentOut:
    """Answer by the project's task.

    Classification: the class and probabilities; counting: the count and object centres;
    segmentation: the label map (PNG) and areas per class.
    """
    received = await receive_image(
        file, url, max_bytes=state.upload_limit, policy=state.fetch_policy
    )
    result: ClassifyOut | CountOut | SegmentOut = await run_in_threadpool(
        _predict, state, received, model or None
    )
    return result
