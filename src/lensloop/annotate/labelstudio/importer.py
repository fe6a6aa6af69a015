"""Store Label Studio annotations in the catalog: idempotent, versioned, all or nothing.

Each Label Studio annotation becomes one catalog annotation per kind it holds (a class,
points, boxes, polygons, masks), keeping the annotator, the time and the Label Studio
ids. Its ``external_id`` is ``ls:t<task>:a<annotation>:<kind>:i<image>@<updated_at>``:

- importing the same export twice adds nothing (the id is already stored);
- an annotation edited in Label Studio has a new ``updated_at``, so it is stored as a new
  row that supersedes the previous version, never over it;
- a deleted annotation is recorded as a row with ``{"deleted": true}``.

Every record is checked before anything is written: one bad record (a label outside the
schema, a task whose image is not in the catalog, a brush RLE of the wrong length) stops
the import with a message naming it, and the catalog is unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lensloop.annotate.labelstudio.exports import ExportedAnnotation
from lensloop.annotate.labelstudio.results import parse_results
from lensloop.annotate.labelstudio.tasks import resolve_task_images
from lensloop.annotate.schema import LabelSchema, project_schema
from lensloop.catalog.annotations import AnnotationRecord, add_annotations
from lensloop.catalog.models import Annotation, LabelClass

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lensloop.project import Project

__all__ = [
    "ORIGIN",
    "ImportReport",
    "import_annotations",
    "record_deletion",
    "version_key",
]

ORIGIN = "labelstudio"


@dataclass
class ImportReport:
    """What an import did.

    Attributes:
        annotations: Label Studio annotations read.
        added: Catalog annotations added (one per kind per Label Studio annotation).
        unchanged: Catalog annotations already stored (imported before).
        superseded: Added rows that are a new version of an earlier one.
        cancelled: Skipped tasks (cancelled annotations), stored as nothing.
        images: Distinct catalog images the annotations label.
        ignored: Result types lensloop does not store, with counts.
        by_kind: Added rows per annotation kind.
    """

    annotations: int = 0
    added: int = 0
    unchanged: int = 0
    superseded: int = 0
    cancelled: int = 0
    images: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "annotations": self.annotations,
            "added": self.added,
            "unchanged": self.unchanged,
            "superseded": self.superseded,
            "cancelled": self.cancelled,
            "images": self.images,
            "ignored": dict(self.ignored),
            "by_kind": dict(self.by_kind),
        }


def version_key(task_id: int, annotation_id: int, kind: str, image_id: int) -> str:
    """The part of an imported annotation's external id that stays across its versions."""
    return f"ls:t{task_id}:a{annotation_id}:{kind}:i{image_id}"


def import_annotations(
    project: Project,
    annotations: Sequence[ExportedAnnotation],
    *,
    schema: LabelSchema | None = None,
) -> ImportReport:
    """Store Label Studio annotations in the project's catalog (one transaction).

    Args:
        project: The project.
        annotations: Parsed from an export (:func:`~lensloop.annotate.labelstudio.exports.
            read_export`) or pulled from a server.
        schema: The label schema; default the project's.

    Raises:
        LabelError: A record is invalid (nothing is written); the message names it.
        ConfigError: The project has no classes.
    """
    schema = schema or project_schema(project)
    report = ImportReport(annotations=len(annotations))
    with project.catalog.transaction() as session:
        images = resolve_task_images(session, [(a.where, a.data) for a in annotations])
        class_ids = _class_ids(session, schema.labels)
        records: list[AnnotationRecord] = []
        for annotation in annotations:
            if annotation.cancelled:
                report.cancelled += 1
                continue
            image_id, size = images[annotation.where]
            parsed = parse_results(
                annotation.results, size=size, schema=schema, where=annotation.where
            )
            report.ignored.update(parsed.ignored)
            for kind, payload in parsed.payloads.items():
                class_id = class_ids.get(payload["class"]) if kind == "class" else None
                records.append(_record(annotation, image_id, kind, payload, class_id))
        written = add_annotations(session, records)
        report.added = len(written.added)
        report.unchanged = written.unchanged
        report.superseded = written.superseded
        report.by_kind = written.by_kind
        report.images = len({images[a.where][0] for a in annotations if not a.cancelled})
    return report


def _class_ids(session: Session, labels: Sequence[str]) -> dict[str, int]:
    rows = session.execute(
        select(LabelClass.path, LabelClass.id).where(LabelClass.path.in_(list(labels)))
    )
    return {path: class_id for path, class_id in rows}


def _record(
    annotation: ExportedAnnotation,
    image_id: int,
    kind: str,
    payload: dict[str, Any],
    class_id: int | None,
) -> AnnotationRecord:
    key = version_key(annotation.task_id, annotation.annotation_id, kind, image_id)
    payload = {
        **payload,
        "labelstudio": {
            "task": annotation.task_id,
            "annotation": annotation.annotation_id,
            "project": annotation.project_id,
            "updated_at": annotation.updated_at,
            "lead_time": annotation.lead_time,
        },
    }
    return AnnotationRecord(
        image_id=image_id,
        kind=kind,
        payload=payload,
        annotator=annotation.annotator,
        origin=ORIGIN,
        external_id=f"{key}@{annotation.updated_at}",
        version_key=key,
        class_id=class_id,
        created_at=annotation.created_at,
    )


def record_deletion(
    project: Project, *, annotation_id: int, task_id: int | None = None, annotator: str = ORIGIN
) -> int:
    """Record that a Label Studio annotation was deleted; return the rows added.

    Each kind stored for that annotation gets a ``{"deleted": true}`` row superseding its
    newest version, so the image no longer counts as labelled by it. Deleting twice adds
    nothing the second time; an annotation lensloop never stored adds nothing.
    """
    task = str(task_id) if task_id is not None else "%"
    pattern = f"ls:t{task}:a{annotation_id}:%"
    with project.catalog.transaction() as session:
        rows = session.execute(
            select(Annotation.external_id, Annotation.image_id, Annotation.kind).where(
                Annotation.origin == ORIGIN, Annotation.external_id.like(pattern)
            )
        ).all()
        keys = {(ext.split("@", 1)[0], image_id, kind) for ext, image_id, kind in rows if ext}
        records = [
            AnnotationRecord(
                image_id=image_id,
                kind=kind,
                payload={"deleted": True, "labelstudio": {"annotation": annotation_id}},
                annotator=annotator,
                origin=ORIGIN,
                external_id=f"{key}@deleted",
                version_key=key,
            )
            for key, image_id, kind in sorted(keys)
        ]
        return len(add_annotations(session, records).added)
