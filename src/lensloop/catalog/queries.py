"""Finding images by what the catalog knows of them: label, prediction, cluster, metadata.

The HTTP API's gallery, queue and bulk labeller page through these results. One query
joins each image with its current class label (the newest class annotation), the default
model's newest prediction of it (the ``champion``, else ``latest``) and its cluster in the
newest clustering run, and filters on any of them in SQL, so a page costs the same on a
catalog of a thousand images or ten million. Pages are keyset pages: a cursor names the
last row seen, so rows added meanwhile neither repeat nor shift a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from lensloop.catalog.models import (
    SPLITS,
    Annotation,
    ClusterMember,
    ClusterRun,
    EmbeddingSet,
    Image,
    LabelClass,
    ModelAlias,
    ModelVersion,
    Prediction,
    Sample,
    SelectionItem,
)
from lensloop.errors import RequestError

__all__ = [
    "UNLABELLED",
    "ImageQuery",
    "ImageRow",
    "default_model_version",
    "find_images",
    "image_rows",
    "latest_cluster_run",
]

#: The ``label`` filter value that finds images without a class label.
UNLABELLED = "__none__"
#: Above this many ids, :func:`image_rows` reads the whole table once.
_ONE_PASS = 5000

Order = Literal["id", "uncertainty"]


@dataclass(frozen=True)
class ImageQuery:
    """Filters of an image search; every one left ``None`` matches everything.

    Attributes:
        label: Current class path (its subclasses match too), or :data:`UNLABELLED`.
        predicted: The default model's predicted class (its subclasses match too).
        min_uncertainty: Lowest margin uncertainty of that prediction.
        max_uncertainty: Highest margin uncertainty.
        cluster: Cluster number in the newest clustering run (or ``cluster_run``).
        cluster_run: Which clustering run ``cluster`` refers to (default: the newest).
        split: ``train``, ``val``, ``test`` or ``pool``.
        sample: Sample name.
        meta: ``{key: value}`` the free metadata must hold (compared as text).
        round: Only images of this selection round.
        ids: Only these image ids.
        order: ``id`` (ingest order) or ``uncertainty`` (most uncertain first).
    """

    label: str | None = None
    predicted: str | None = None
    min_uncertainty: float | None = None
    max_uncertainty: float | None = None
    cluster: int | None = None
    cluster_run: int | None = None
    split: str | None = None
    sample: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    round: int | None = None
    ids: tuple[int, ...] | None = None
    order: Order = "id"

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SPLITS:
            raise RequestError(f"unknown split {self.split!r}; valid: {', '.join(SPLITS)}")
        if self.order not in ("id", "uncertainty"):
            raise RequestError(f"unknown order {self.order!r}; valid: id, uncertainty")
        for bound in (self.min_uncertainty, self.max_uncertainty):
            if bound is not None and not 0.0 <= bound <= 1.0:
                raise RequestError(f"uncertainty bounds lie in [0, 1], got {bound}")


@dataclass(frozen=True)
class ImageRow:
    """One image with what the catalog knows of it."""

    id: int
    uri: str
    width: int
    height: int
    channels: int
    dtype: str
    split: str | None
    sample: str | None
    captured_at: datetime | None
    lat: float | None
    lon: float | None
    meta: dict[str, Any]
    label: str | None
    predicted: str | None
    confidence: float | None
    uncertainty: float | None
    cluster: int | None


def default_model_version(session: Session) -> tuple[int, int] | None:
    """``(row id, version)`` of the model whose predictions the catalog shows, if any.

    The ``champion``, else ``latest``: the model ``lensloop predict`` uses by default.
    """
    for alias in ("champion", "latest"):
        row = session.execute(
            select(ModelVersion.id, ModelVersion.version)
            .join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
            .where(ModelAlias.alias == alias)
        ).first()
        if row is not None:
            return int(row[0]), int(row[1])
    return None


def latest_cluster_run(session: Session, backbone: str | None = None) -> int | None:
    """The id of the newest clustering run (of ``backbone``'s embeddings, if given)."""
    query = select(func.max(ClusterRun.id))
    if backbone is not None:
        query = query.join(EmbeddingSet, EmbeddingSet.id == ClusterRun.embedding_set_id).where(
            EmbeddingSet.backbone == backbone
        )
    found = session.scalar(query)
    return int(found) if found is not None else None


def _base(session: Session, cluster_run: int | None) -> tuple[Select[Any], Any, Any, Any]:
    """Every image joined with its label, default prediction and cluster (outer joins).

    Returns the statement and the label, prediction and cluster subqueries.
    """
    newest_label = (
        select(func.max(Annotation.id).label("id"))
        .where(Annotation.kind == "class")
        .group_by(Annotation.image_id)
        .subquery("newest_label")
    )
    label = (
        select(Annotation.image_id.label("image_id"), LabelClass.path.label("path"))
        .join(newest_label, Annotation.id == newest_label.c.id)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .subquery("label")
    )
    model = default_model_version(session)
    newest_prediction = (
        select(func.max(Prediction.id).label("id"))
        .where(Prediction.model_version_id == (model[0] if model else -1))
        .group_by(Prediction.image_id)
        .subquery("newest_prediction")
    )
    prediction = (
        select(
            Prediction.image_id.label("image_id"),
            cast(Prediction.payload["class"].as_string(), String).label("predicted"),
            Prediction.probabilities.label("probabilities"),
            Prediction.uncertainty.label("uncertainty"),
        )
        .join(newest_prediction, Prediction.id == newest_prediction.c.id)
        .subquery("prediction")
    )
    member = (
        select(ClusterMember.image_id.label("image_id"), ClusterMember.cluster.label("cluster"))
        .where(ClusterMember.run_id == (cluster_run if cluster_run is not None else -1))
        .subquery("member")
    )
    stmt = (
        select(
            Image,
            Sample.name,
            label.c.path,
            prediction.c.predicted,
            prediction.c.probabilities,
            prediction.c.uncertainty,
            member.c.cluster,
        )
        .outerjoin(Sample, Sample.id == Image.sample_id)
        .outerjoin(label, label.c.image_id == Image.id)
        .outerjoin(prediction, prediction.c.image_id == Image.id)
        .outerjoin(member, member.c.image_id == Image.id)
    )
    return stmt, label, prediction, member


def _under(column: Any, path: str) -> Any:
    """``column`` is ``path`` or one of its subclasses."""
    return or_(column == path, column.like(_escape_like(path) + "/%", escape="\\"))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(session: Session, query: ImageQuery) -> tuple[Select[Any], Any]:
    run = query.cluster_run if query.cluster_run is not None else latest_cluster_run(session)
    stmt, label, prediction, member = _base(session, run)
    path, predicted = label.c.path, prediction.c.predicted
    uncertainty, cluster = prediction.c.uncertainty, member.c.cluster
    conditions: list[Any] = []
    if query.label == UNLABELLED:
        conditions.append(path.is_(None))
    elif query.label is not None:
        conditions.append(_under(path, query.label))
    if query.predicted is not None:
        conditions.append(_under(predicted, query.predicted))
    if query.min_uncertainty is not None:
        conditions.append(uncertainty >= query.min_uncertainty)
    if query.max_uncertainty is not None:
        conditions.append(uncertainty <= query.max_uncertainty)
    if query.cluster is not None:
        conditions.append(cluster == query.cluster)
    if query.split is not None:
        conditions.append(Image.split == query.split)
    if query.sample is not None:
        conditions.append(Sample.name == query.sample)
    for key, value in sorted(query.meta.items()):
        conditions.append(cast(Image.meta[key].as_string(), String) == value)
    if query.round is not None:
        conditions.append(
            Image.id.in_(
                select(SelectionItem.image_id).where(SelectionItem.round_id == query.round)
            )
        )
    if query.ids is not None:
        conditions.append(Image.id.in_(list(query.ids)))
    if conditions:
        stmt = stmt.where(and_(*conditions))
    return stmt, uncertainty


def _encode_cursor(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, order: Order) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise RequestError(
            "the cursor is damaged; pass back next_cursor exactly as a page gave it"
        ) from exc
    keys = {"id"} if order == "id" else {"id", "u"}
    if not isinstance(value, dict) or set(value) != keys or not isinstance(value["id"], int):
        raise RequestError(
            f"the cursor does not belong to a page ordered by {order}; start again without it"
        )
    if order == "uncertainty" and not isinstance(value["u"], (int, float)):
        raise RequestError("the cursor is damaged; pass back next_cursor exactly as a page gave it")
    return value


def find_images(
    session: Session, query: ImageQuery, *, limit: int = 60, cursor: str | None = None
) -> tuple[list[ImageRow], str | None, int]:
    """One page of the images matching ``query``.

    Returns:
        ``(rows, next_cursor, total)``: the page, the cursor of the next page (``None`` on
        the last), and how many images match in all.

    Raises:
        RequestError: ``limit`` outside 1..1000, or a cursor that is not one of ours.
    """
    if not 1 <= limit <= 1000:
        raise RequestError(f"limit must be 1..1000, got {limit}")
    stmt, uncertainty = _filtered(session, query)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    if query.order == "uncertainty":
        # Images without a prediction come last (uncertainty -1 sorts below every real one).
        key = func.coalesce(uncertainty, -1.0)
        if cursor is not None:
            after = _decode_cursor(cursor, "uncertainty")
            stmt = stmt.where(
                or_(key < after["u"], and_(key == after["u"], Image.id > after["id"]))
            )
        stmt = stmt.order_by(key.desc(), Image.id)
    else:
        if cursor is not None:
            stmt = stmt.where(Image.id > _decode_cursor(cursor, "id")["id"])
        stmt = stmt.order_by(Image.id)
    rows = [_row(r) for r in session.execute(stmt.limit(limit + 1))]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        if query.order == "uncertainty":
            u = last.uncertainty if last.uncertainty is not None else -1.0
            next_cursor = _encode_cursor({"id": last.id, "u": u})
        else:
            next_cursor = _encode_cursor({"id": last.id})
    return rows, next_cursor, total


def image_rows(session: Session, ids: Sequence[int]) -> dict[int, ImageRow]:
    """The rows of the given image ids that exist, keyed by id."""
    found: dict[int, ImageRow] = {}
    if len(ids) > _ONE_PASS:
        # Many ids (a whole map): one pass over the joined table beats many IN chunks,
        # each of which would group every annotation and prediction again.
        wanted = set(ids)
        stmt, _ = _filtered(session, ImageQuery())
        for result in session.execute(stmt):
            if result[0].id in wanted:
                row = _row(result)
                found[row.id] = row
        return found
    for start in range(0, len(ids), 900):
        stmt, _ = _filtered(session, ImageQuery(ids=tuple(ids[start : start + 900])))
        found.update({row.id: row for row in map(_row, session.execute(stmt))})
    return found


def _row(result: Any) -> ImageRow:
    image, sample, label, predicted, probabilities, uncertainty, cluster = result
    confidence = None
    if predicted is not None and probabilities:
        value = probabilities.get(predicted)
        confidence = float(value) if value is not None else None
    return ImageRow(
        id=image.id,
        uri=image.uri,
        width=image.width,
        height=image.height,
        channels=image.channels,
        dtype=image.dtype,
        split=image.split,
        sample=sample,
        captured_at=image.captured_at,
        lat=image.lat,
        lon=image.lon,
        meta=dict(image.meta or {}),
        label=label,
        predicted=predicted,
        confidence=confidence,
        uncertainty=float(uncertainty) if uncertainty is not None else None,
        cluster=int(cluster) if cluster is not None else None,
    )
