"""``/v1`` routes over the model registry: versions, their metrics, their predictions."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from lensloop.catalog.labels import current_class_paths_of, roll_up
from lensloop.catalog.models import ModelVersion, Prediction
from lensloop.catalog.queries import image_rows
from lensloop.service.api.deps import State
from lensloop.service.api.schemas import (
    ModelDetailOut,
    ModelOut,
    ModelPredictionOut,
    ModelPredictionsOut,
    image_out,
)

__all__ = ["router"]

router = APIRouter(tags=["models"])


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _headline(task: str, metrics: dict[str, Any]) -> dict[str, float | int | None]:
    from lensloop.train.release import HEADLINE_METRICS

    val = metrics.get("val") or {}
    names = ("n", *HEADLINE_METRICS.get(task, ()))
    return {name: _number(val.get(name)) for name in names if name in val}


def _n_train(metrics: dict[str, Any]) -> int | None:
    value = metrics.get("n_train")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _model_out(model: Any) -> ModelOut:
    return ModelOut(
        version=model.version,
        task=model.task,
        aliases=model.aliases,
        created_at=model.created_at,
        metrics=_headline(model.task, model.metrics),
        n_train=_n_train(model.metrics),
    )


@router.get("/models", response_model=list[ModelOut], summary="Every model version")
def list_models_route(state: State) -> list[ModelOut]:
    from lensloop.train.registry import list_models

    return [_model_out(m) for m in list_models(state.project)]


@router.get("/models/{ref}", response_model=ModelDetailOut, summary="One version in detail")
def get_model(state: State, ref: str) -> ModelDetailOut:
    """Metrics, the confusion matrix, per-epoch history and the learning curve.

    The learning curve is every version of the task: validation score by training size.
    """
    from lensloop.train.registry import list_models, resolve_model

    model = resolve_model(state.project, ref)
    val = model.metrics.get("val") or {}
    card = model.card
    confusion = val.get("confusion")
    per_class = val.get("per_class")
    history = model.metrics.get("history")
    curve = [
        {"version": m.version, "n_train": _n_train(m.metrics), **_headline(m.task, m.metrics)}
        for m in list_models(state.project)
        if m.task == model.task
    ]
    base = _model_out(model)
    return ModelDetailOut(
        **base.model_dump(),
        classes=[str(c) for c in card.get("classes", [])],
        confusion=[[int(v) for v in row] for row in confusion] if confusion else None,
        per_class=(
            {
                str(name): {k: float(v) for k, v in scores.items() if _number(v) is not None}
                for name, scores in per_class.items()
            }
            if isinstance(per_class, dict)
            else None
        ),
        history=(
            [{k: _number(v) for k, v in epoch.items()} for epoch in history]
            if isinstance(history, list)
            else None
        ),
        learning_curve=curve,
    )


@router.get(
    "/models/{ref}/predictions",
    response_model=ModelPredictionsOut,
    summary="Predicted vs actual class of labelled images (classifiers)",
)
def model_predictions(
    state: State,
    ref: str,
    errors_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ModelPredictionsOut:
    """The version's stored predictions of labelled images.

    Mistakes first, then the least confident; ``actual`` is rolled up to the depth the
    model was trained at.
    """
    from lensloop.train.registry import resolve_model, trained_depth

    model = resolve_model(state.project, ref)
    depth = trained_depth(model)
    with state.project.catalog.reader() as session:
        version_id = session.scalar(
            select(ModelVersion.id).where(ModelVersion.version == model.version)
        )
        newest = (
            select(func.max(Prediction.id))
            .where(Prediction.model_version_id == version_id)
            .group_by(Prediction.image_id)
        )
        rows = session.execute(
            select(Prediction.image_id, Prediction.payload, Prediction.probabilities).where(
                Prediction.id.in_(newest)
            )
        ).all()
        actual = current_class_paths_of(session, [int(r[0]) for r in rows])
        found = []
        for image_id, payload, probabilities in rows:
            predicted = (payload or {}).get("class")
            truth = actual.get(image_id)
            if predicted is None or truth is None:
                continue
            truth = roll_up(truth, depth)
            if errors_only and truth == predicted:
                continue
            confidence = (probabilities or {}).get(predicted)
            found.append((truth != predicted, confidence, int(image_id), truth, predicted))
        found.sort(key=lambda f: (not f[0], f[1] if f[1] is not None else 0.0, f[2]))
        found = found[:limit]
        info = image_rows(session, [f[2] for f in found])
    return ModelPredictionsOut(
        items=[
            ModelPredictionOut(
                image=image_out(info[image_id]),
                actual=truth,
                predicted=predicted,
                confidence=float(confidence) if confidence is not None else None,
            )
            for _, confidence, image_id, truth, predicted in found
            if image_id in info
        ]
    )
