"""Label Studio's ML-backend protocol, served from the project's current model.

Routes (the contract of ``label-studio-ml-backend``):

- ``GET /health``: ``{"status": "UP", "model_class": "lensloop", "task", "project"}``;
- ``POST /setup``: Label Studio connects; answers the ``model_version``;
- ``POST /predict``: ``{"tasks": [...]}`` in, ``{"results": [{"result", "score",
  "model_version"}, ...]}`` out, one entry per task, in order (an image the catalog does
  not know gets an empty result);
- ``POST /webhook``: ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` store the annotation,
  ``ANNOTATIONS_DELETED`` records the deletion, and these and ``START_TRAINING`` start a
  retraining in the background (the request returns at once);
- ``GET /metrics``: counters and the retrainer's status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from lensloop.annotate.labelstudio.exports import parse_export
from lensloop.annotate.labelstudio.importer import import_annotations, record_deletion
from lensloop.annotate.labelstudio.tasks import resolve_task_images
from lensloop.errors import LabelError
from lensloop.service.state import ServiceState

__all__ = ["ANNOTATION_ACTIONS", "DELETE_ACTIONS", "TRAIN_ACTIONS", "router"]

logger = logging.getLogger(__name__)

router = APIRouter()

#: Webhook actions that store an annotation.
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
#: Webhook actions that record deletions.
DELETE_ACTIONS = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")
#: Webhook actions after which the model is retrained.
TRAIN_ACTIONS = (*ANNOTATION_ACTIONS, *DELETE_ACTIONS, "START_TRAINING")


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.lensloop
    return state


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise LabelError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise LabelError(f"the request body must be a JSON object, not {type(body).__name__}")
    return body


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness, the project's task and name."""
    state = _state(request)
    return {
        "status": "UP",
        "model_class": "lensloop",
        "task": state.project.task,
        "project": state.project.config.project.name,
    }


@router.post("/setup")
async def setup(request: Request) -> dict[str, Any]:
    """Label Studio connects: answer the model version it will label predictions with."""
    await _json_object(request)
    state = _state(request)
    state.counters["setup"] += 1
    model = await run_in_threadpool(state.model)
    return {"model_version": state.model_version(model)}


def _predict(state: ServiceState, tasks: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from lensloop.train.preannotate import preannotate

    model = state.model()
    empty = {"result": [], "score": 0.0, "model_version": state.model_version(model)}
    named = []
    for position, task in enumerate(tasks):
        data = task.get("data")
        if not isinstance(data, Mapping):
            raise LabelError(f"task {task.get('id', position)} has no 'data' object")
        named.append((str(position), data))
    with state.project.catalog.reader() as session:
        known = resolve_task_images(session, named, strict=False)
    for (where, _), task in zip(named, tasks, strict=True):
        if where not in known:
            logger.info(
                "no prediction for task %s: its image is not in the catalog", task.get("id")
            )
    if model is None or not known:
        return [dict(empty) for _ in tasks]
    pre = preannotate(state.project, sorted({i for i, _ in known.values()}), model=model)
    results = []
    for where, _ in named:
        image_id, size = known.get(where, (None, None))
        item = pre.get(image_id) if image_id is not None else None
        results.append(item.to_labelstudio(size) if item is not None and size else dict(empty))
    state.counters["predictions"] += sum(1 for r in results if r["result"])
    return results


@router.post("/predict")
async def predict(request: Request) -> dict[str, Any]:
    """Pre-annotate Label Studio tasks with the project's current model."""
    body = await _json_object(request)
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
        raise LabelError("'tasks' must be a list of Label Studio task objects")
    state = _state(request)
    state.counters["predict_requests"] += 1
    results = await run_in_threadpool(_predict, state, tasks)
    return {"results": results, "model_version": results[0]["model_version"] if results else None}


def _store_annotation(state: ServiceState, body: Mapping[str, Any]) -> dict[str, Any]:
    annotation = body.get("annotation")
    task = body.get("task")
    if not isinstance(annotation, Mapping) or not isinstance(task, Mapping):
        raise LabelError("an annotation webhook needs 'annotation' and 'task' objects")
    record = {"id": task.get("id"), "data": task.get("data"), "annotations": [annotation]}
    project = body.get("project")
    if isinstance(project, Mapping) and "project" not in annotation:
        record["project"] = project.get("id")
    report = import_annotations(state.project, parse_export([record]))
    state.counters["annotations_recorded"] += report.added
    return report.as_dict()


def _record_deletions(state: ServiceState, body: Mapping[str, Any]) -> dict[str, Any]:
    items = body.get("annotations")
    if items is None and isinstance(body.get("annotation"), Mapping):
        items = [body["annotation"]]
    if not isinstance(items, list):
        raise LabelError("a deletion webhook needs an 'annotations' list")
    added = 0
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), int):
            raise LabelError(f"a deleted annotation needs an integer 'id', got {item!r}")
        task = item.get("task")
        task_id = task.get("id") if isinstance(task, Mapping) else task
        added += record_deletion(
            state.project,
            annotation_id=item["id"],
            task_id=task_id if isinstance(task_id, int) else None,
        )
    state.counters["deletions_recorded"] += added
    return {"deleted": added}


@router.post("/webhook", status_code=201)
async def webhook(request: Request) -> dict[str, Any]:
    """Record annotation events and start retraining in the background."""
    body = await _json_object(request)
    action = body.get("action")
    if not isinstance(action, str):
        raise LabelError("a webhook needs an 'action'")
    state = _state(request)
    state.counters[f"webhook:{action}"] += 1
    answer: dict[str, Any] = {"action": action}
    if action in ANNOTATION_ACTIONS:
        answer["stored"] = await run_in_threadpool(_store_annotation, state, body)
    elif action in DELETE_ACTIONS:
        answer["stored"] = await run_in_threadpool(_record_deletions, state, body)
    if action in TRAIN_ACTIONS and state.retrain:
        answer["training"] = state.retrainer.request()
    return answer


@router.get("/metrics")
def metrics(request: Request) -> dict[str, Any]:
    """Requests served, predictions made, webhooks received, and the training status."""
    state = _state(request)
    return {"counters": dict(state.counters), "training": state.retrainer.status.as_dict()}
