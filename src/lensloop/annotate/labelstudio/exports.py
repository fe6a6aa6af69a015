"""Read Label Studio's JSON and JSON-MIN exports into one annotation record type.

``JSON`` is a list of tasks, each with ``data`` and a list of ``annotations`` whose
``result`` lists are Label Studio results. ``JSON_MIN`` is one flat object per annotation:
the task's data keys, ``id`` (the task), ``annotation_id``, ``annotator``, the times, and
one key per control ``name`` holding a choice or a list of region values. Both are read
into :class:`ExportedAnnotation` with full results, so the rest of lensloop sees one shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lensloop.errors import LabelError

__all__ = ["ExportedAnnotation", "parse_export", "read_export"]

# JSON-MIN keys that are not control names (besides the task's data keys).
_MIN_RESERVED = frozenset(
    {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "drafts"}
)
# The key of each region type's labels, and the value keys that tell types apart when a
# JSON-MIN region has no labels key (an unlabelled tool).
_LABEL_KEYS = ("keypointlabels", "rectanglelabels", "polygonlabels", "brushlabels")
#: Task data keys lensloop writes (see :mod:`lensloop.annotate.labelstudio.tasks`).
_DATA_KEYS = frozenset({"image", "lensloop_image_id"})


@dataclass(frozen=True)
class ExportedAnnotation:
    """One Label Studio annotation of one task.

    Attributes:
        task_id: Label Studio's task id.
        annotation_id: Label Studio's annotation id.
        annotator: The annotator's e-mail when the export has it, else ``user:<id>``.
        created_at: When it was made (UTC), if the export says.
        updated_at: Label Studio's ``updated_at`` as written: the version of the annotation.
        data: The task's data (image URL, ``lensloop_image_id``).
        results: Label Studio results (``type``, ``from_name``, ``value``, ...).
        cancelled: The annotator skipped the task (no labels to store).
        lead_time: Seconds spent, if known.
        project_id: Label Studio's project id, if the export says.
    """

    task_id: int
    annotation_id: int
    annotator: str
    created_at: datetime | None
    updated_at: str
    data: Mapping[str, Any]
    results: Sequence[Mapping[str, Any]]
    cancelled: bool = False
    lead_time: float | None = None
    project_id: int | None = None

    @property
    def where(self) -> str:
        """``task T, annotation A``: how error messages name this record."""
        return f"task {self.task_id}, annotation {self.annotation_id}"


def read_export(path: Path) -> list[ExportedAnnotation]:
    """Read a Label Studio JSON or JSON-MIN export file.

    Raises:
        LabelError: The file is not JSON or not a Label Studio export; the message names
            the file and, for a bad record, its position.
    """
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise LabelError(f"cannot read {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelError(
            f"{path} is not JSON ({exc}); export it from Label Studio as JSON"
        ) from exc
    try:
        return parse_export(data)
    except LabelError as exc:
        raise LabelError(f"{path}: {exc}") from exc


def parse_export(data: Any) -> list[ExportedAnnotation]:
    """Parse a decoded JSON or JSON-MIN export (format detected per record).

    Raises:
        LabelError: ``data`` is not a list of task objects, or a record misses its ids.
    """
    if not isinstance(data, list):
        raise LabelError(
            "a Label Studio export is a JSON list of tasks; got "
            f"{type(data).__name__} (use the JSON or JSON_MIN export)"
        )
    found: list[ExportedAnnotation] = []
    for position, record in enumerate(data):
        if not isinstance(record, Mapping):
            raise LabelError(f"record {position} is not an object")
        if "annotations" in record or "data" in record:
            found.extend(_from_json_task(record, position))
        elif "annotation_id" in record:
            found.append(_from_min_record(record, position))
        else:
            raise LabelError(
                f"record {position} has neither 'annotations' (JSON export) nor "
                "'annotation_id' (JSON-MIN export); is this a Label Studio export?"
            )
    return found


def _int(record: Mapping[str, Any], key: str, where: str) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabelError(f"{where}: expected an integer {key!r}, got {value!r}")
    return value


def _time(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise LabelError(f"{where}: {value!r} is not an ISO time") from exc


def _annotator(value: Any) -> str:
    if isinstance(value, Mapping):
        email = value.get("email")
        if email:
            return str(email)
        value = value.get("id")
    if isinstance(value, str) and value:
        return value
    return f"user:{value}" if value is not None else "unknown"


def _from_json_task(task: Mapping[str, Any], position: int) -> list[ExportedAnnotation]:
    where = f"record {position}"
    task_id = _int(task, "id", where)
    data = task.get("data")
    if not isinstance(data, Mapping):
        raise LabelError(f"task {task_id}: 'data' must be an object")
    annotations = task.get("annotations", [])
    if not isinstance(annotations, list):
        raise LabelError(f"task {task_id}: 'annotations' must be a list")
    found = []
    for item in annotations:
        if not isinstance(item, Mapping):
            raise LabelError(f"task {task_id}: an annotation is not an object")
        annotation_id = _int(item, "id", f"task {task_id}")
        here = f"task {task_id}, annotation {annotation_id}"
        results = item.get("result", [])
        if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
            raise LabelError(f"{here}: 'result' must be a list of objects")
        project = item.get("project", task.get("project"))
        lead_time = item.get("lead_time")
        found.append(
            ExportedAnnotation(
                task_id=task_id,
                annotation_id=annotation_id,
                annotator=_annotator(item.get("completed_by")),
                created_at=_time(item.get("created_at"), here),
                updated_at=str(item.get("updated_at") or item.get("created_at") or ""),
                data=data,
                results=results,
                cancelled=bool(item.get("was_cancelled", False)),
                lead_time=float(lead_time) if isinstance(lead_time, int | float) else None,
                project_id=project if isinstance(project, int) else None,
            )
        )
    return found


def _min_results(record: Mapping[str, Any], data_keys: frozenset[str]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for name, value in record.items():
        if name in _MIN_RESERVED or name in data_keys:
            continue
        if isinstance(value, str):
            results.append({"type": "choices", "from_name": name, "value": {"choices": [value]}})
        elif isinstance(value, Mapping) and "choices" in value:
            results.append({"type": "choices", "from_name": name, "value": dict(value)})
        elif isinstance(value, list):
            for index, region in enumerate(value):
                if not isinstance(region, Mapping):
                    continue
                kind = _min_region_type(region)
                if kind is None:
                    continue
                results.append(
                    {
                        "id": f"{name}-{index}",
                        "type": kind,
                        "from_name": name,
                        "original_width": region.get("original_width"),
                        "original_height": region.get("original_height"),
                        "value": dict(region),
                    }
                )
    return results


def _min_region_type(region: Mapping[str, Any]) -> str | None:
    for key in _LABEL_KEYS:
        if key in region:
            return key
    if "rle" in region:
        return "brushlabels"
    if "points" in region:
        return "polygonlabels"
    if {"x", "y", "width", "height"} <= region.keys() and "rotation" in region:
        return "rectanglelabels"
    if {"x", "y"} <= region.keys():
        return "keypointlabels"
    return None


def _from_min_record(record: Mapping[str, Any], position: int) -> ExportedAnnotation:
    where = f"record {position}"
    task_id = _int(record, "id", where)
    annotation_id = _int(record, "annotation_id", where)
    here = f"task {task_id}, annotation {annotation_id}"
    data = {key: record[key] for key in _DATA_KEYS if key in record}
    lead_time = record.get("lead_time")
    return ExportedAnnotation(
        task_id=task_id,
        annotation_id=annotation_id,
        annotator=_annotator(record.get("annotator")),
        created_at=_time(record.get("created_at"), here),
        updated_at=str(record.get("updated_at") or record.get("created_at") or ""),
        data=data,
        results=_min_results(record, _DATA_KEYS),
        lead_time=float(lead_time) if isinstance(lead_time, int | float) else None,
    )
