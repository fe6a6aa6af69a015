"""Annotations of any kind from outside tools, written idempotently and never overwritten.

An outside tool (Label Studio, a CSV of points) names each of its annotations with a
stable ``external_id``; the pair ``(origin, external_id)`` is unique in the catalog, so
importing the same export twice adds nothing. A changed annotation must come with a new
``external_id`` (Label Studio's include the update time) and a ``version_key``: the
newest earlier row with the same ``(origin, version_key)`` is the row it supersedes, so
the history of every annotation stays readable.

Payloads are JSON in the original image's pixels (DESIGN.md): ``class`` annotations also
point at their class through ``class_id``; ``points``, ``box``, ``polygon`` and ``mask``
annotations name the class of each region inside the payload.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from lensloop.catalog.models import ANNOTATION_KINDS, Annotation, SyncState, utcnow
from lensloop.errors import LabelError

__all__ = [
    "AnnotationRecord",
    "WriteReport",
    "add_annotations",
    "annotations_by_annotator",
    "current_annotations",
    "read_sync_state",
    "write_sync_state",
]

_CHUNK = 900
_VERSION_SEPARATOR = "@"


@dataclass(frozen=True)
class AnnotationRecord:
    """One annotation to store.

    Attributes:
        image_id: The catalog image it labels.
        kind: One of :data:`~lensloop.catalog.models.ANNOTATION_KINDS`.
        payload: JSON payload in pixels; ``{"deleted": true}`` records a deletion.
        annotator: Who made it (an e-mail, a user name or id).
        origin: Where it came from (``labelstudio``, ``ui``, ``import``).
        external_id: The outside tool's stable id of *this version*, or ``None``.
        version_key: What stays the same across versions of one annotation (the
            ``external_id`` without its version suffix); ``None`` for one-off records.
        class_id: The class of a ``class`` annotation.
        created_at: When the annotation was made; default now.
        round: The selection round it answers, if known.
    """

    image_id: int
    kind: str
    payload: dict[str, Any]
    annotator: str
    origin: str
    external_id: str | None = None
    version_key: str | None = None
    class_id: int | None = None
    created_at: datetime | None = None
    round: int | None = None


@dataclass
class WriteReport:
    """What :func:`add_annotations` did: ids of new rows, and how many were known already."""

    added: list[int] = field(default_factory=list)
    unchanged: int = 0
    superseded: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)


def add_annotations(session: Session, records: Iterable[AnnotationRecord]) -> WriteReport:
    """Store annotations, skipping those whose ``(origin, external_id)`` is already stored.

    A record with a ``version_key`` supersedes the newest stored row whose external id
    starts with ``version_key@`` (the previous version of the same annotation).

    Raises:
        LabelError: A record has an unknown kind, or ``external_id`` and ``version_key``
            disagree (the id must be ``version_key@version``).
    """
    report = WriteReport()
    pending = list(records)
    for record in pending:
        _check(record)
    known = _known_external_ids(session, pending)
    seen: set[tuple[str, str]] = set()
    for record in pending:
        if record.external_id is not None:
            key = (record.origin, record.external_id)
            if key in known or key in seen:
                report.unchanged += 1
                continue
            seen.add(key)
        previous = _previous_version(session, record)
        if previous is not None:
            report.superseded += 1
        new_id = session.scalar(
            insert(Annotation)
            .values(
                image_id=record.image_id,
                kind=record.kind,
                class_id=record.class_id,
                payload=record.payload,
                annotator=record.annotator,
                origin=record.origin,
                external_id=record.external_id,
                round=record.round,
                supersedes_id=previous,
                created_at=record.created_at or utcnow(),
            )
            .returning(Annotation.id)
        )
        if new_id is None:  # pragma: no cover - RETURNING always yields the id
            raise LabelError(f"could not store the annotation of image {record.image_id}")
        report.added.append(new_id)
        report.by_kind[record.kind] += 1
    return report


def _check(record: AnnotationRecord) -> None:
    if record.kind not in ANNOTATION_KINDS:
        raise LabelError(
            f"unknown annotation kind {record.kind!r}; valid kinds: {', '.join(ANNOTATION_KINDS)}"
        )
    if record.version_key is not None and not (record.external_id or "").startswith(
        record.version_key + _VERSION_SEPARATOR
    ):
        raise LabelError(
            f"external id {record.external_id!r} does not start with its version key "
            f"{record.version_key!r}{_VERSION_SEPARATOR}"
        )


def _known_external_ids(
    session: Session, records: Sequence[AnnotationRecord]
) -> set[tuple[str, str]]:
    by_origin: dict[str, list[str]] = {}
    for record in records:
        if record.external_id is not None:
            by_origin.setdefault(record.origin, []).append(record.external_id)
    known: set[tuple[str, str]] = set()
    for origin, ids in by_origin.items():
        for start in range(0, len(ids), _CHUNK):
            rows = session.scalars(
                select(Annotation.external_id).where(
                    Annotation.origin == origin,
                    Annotation.external_id.in_(ids[start : start + _CHUNK]),
                )
            )
            known.update((origin, external_id) for external_id in rows if external_id)
    return known


def _previous_version(session: Session, record: AnnotationRecord) -> int | None:
    if record.version_key is None:
        return None
    prefix = record.version_key + _VERSION_SEPARATOR
    found: int | None = session.scalar(
        select(func.max(Annotation.id)).where(
            Annotation.origin == record.origin,
            Annotation.external_id.startswith(prefix, autoescape=True),
        )
    )
    return found


def current_annotations(
    session: Session, kind: str, *, image_ids: Sequence[int] | None = None
) -> dict[int, Annotation]:
    """Return each image's newest annotation of ``kind`` that is not a deletion.

    Several annotators' annotations of one image are separate histories; this returns the
    newest row overall, which is what training on "the current label" needs.
    """
    query = (
        select(Annotation)
        .where(Annotation.kind == kind)
        .order_by(Annotation.image_id, Annotation.id)
    )
    if image_ids is not None:
        found: dict[int, Annotation] = {}
        for start in range(0, len(image_ids), _CHUNK):
            chunk = list(image_ids[start : start + _CHUNK])
            for row in session.scalars(query.where(Annotation.image_id.in_(chunk))):
                found[row.image_id] = row
    else:
        found = {row.image_id: row for row in session.scalars(query)}
    return {image_id: row for image_id, row in found.items() if not row.payload.get("deleted")}


def annotations_by_annotator(
    session: Session, kind: str, *, image_ids: Sequence[int] | None = None
) -> dict[int, dict[str, Annotation]]:
    """Return each annotator's current annotation of ``kind``, per image.

    Each annotator's rows of one image form their own history. The current row of an
    annotator is their newest row (by id) that no later row supersedes and that is not a
    deletion (``payload["deleted"]``), so:

    - a deletion supersedes the version it deletes, whoever recorded it (Label Studio
      webhooks record deletions under the annotator ``labelstudio``): that version no
      longer counts, and neither do the earlier versions it superseded;
    - a deletion that supersedes nothing deletes everything its annotator had before it;
    - an annotator left with no current row is left out, and so is an image left with no
      annotator.

    Args:
        session: A catalog session.
        kind: One of :data:`~lensloop.catalog.models.ANNOTATION_KINDS`.
        image_ids: Only these images (default: every image with a row of ``kind``).

    Returns:
        ``{image_id: {annotator: row}}``, images in ascending id order.
    """
    query = (
        select(Annotation)
        .where(Annotation.kind == kind)
        .order_by(Annotation.image_id, Annotation.id)
    )
    if image_ids is None:
        rows = list(session.scalars(query))
    else:
        rows = []
        ids = sorted(set(image_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows.extend(session.scalars(query.where(Annotation.image_id.in_(chunk))))
    # Versions of one annotation share its image, so every superseding row is in ``rows``.
    superseded = {row.supersedes_id for row in rows if row.supersedes_id is not None}
    found: dict[int, dict[str, Annotation]] = {}
    for row in rows:
        heads = found.setdefault(row.image_id, {})
        if row.id in superseded:
            continue
        if row.payload.get("deleted"):
            if row.supersedes_id is None:
                heads.pop(row.annotator, None)
            continue
        heads[row.annotator] = row
    return {image_id: heads for image_id, heads in found.items() if heads}


def read_sync_state(session: Session, key: str) -> dict[str, Any]:
    """Return the stored state of a sync (``{}`` before the first one)."""
    state = session.get(SyncState, key)
    return dict(state.value) if state is not None else {}


def write_sync_state(session: Session, key: str, value: dict[str, Any]) -> None:
    """Store the state of a sync (in the caller's transaction, with the data it describes)."""
    state = session.get(SyncState, key)
    if state is None:
        session.add(SyncState(key=key, value=value, updated_at=utcnow()))
    else:
        state.value = value
        state.updated_at = utcnow()
