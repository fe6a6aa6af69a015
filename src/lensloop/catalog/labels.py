"""The label schema's class tree and class annotations, inside a catalog transaction.

A class is identified by its *path* from the root of the taxonomy, e.g.
``("Chromista", "Haptophyta", "Emiliania")``, stored '/'-joined. Annotations point at the
deepest class known for an image; :func:`roll_up` maps that to any shallower depth, so a
project can train at genus level today and at family level tomorrow without re-ingesting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from lensloop.catalog.models import Annotation, LabelClass, utcnow
from lensloop.errors import LabelError

__all__ = [
    "SEPARATOR",
    "ClassInfo",
    "add_class_annotations",
    "class_counts",
    "current_class_paths",
    "current_class_paths_of",
    "ensure_class_paths",
    "join_path",
    "list_classes",
    "roll_up",
    "split_path",
]

#: Separator of the levels in a stored class path.
SEPARATOR = "/"


@dataclass(frozen=True)
class ClassInfo:
    """A class of the schema: its full path, name (last level) and level (1 = root)."""

    id: int
    path: str
    name: str
    level: int


def join_path(parts: Sequence[str]) -> str:
    """Join taxonomy levels into a stored class path.

    Raises:
        LabelError: A level is empty, has surrounding spaces, or contains the separator.
    """
    if not parts:
        raise LabelError("a class path needs at least one level")
    for part in parts:
        if not part or part != part.strip() or SEPARATOR in part:
            raise LabelError(
                f"invalid class name {part!r} in {list(parts)!r}: names must be non-empty, "
                f"without surrounding spaces and without {SEPARATOR!r}"
            )
    return SEPARATOR.join(parts)


def split_path(path: str) -> tuple[str, ...]:
    """Split a stored class path into its levels."""
    return tuple(path.split(SEPARATOR))


def roll_up(path: str, depth: int | None) -> str:
    """Return the ancestor of ``path`` at ``depth`` (1 = root); ``None`` keeps the full path.

    A path shallower than ``depth`` is returned whole (its deepest known level).

    Raises:
        LabelError: ``depth`` is below 1.
    """
    if depth is None:
        return path
    if depth < 1:
        raise LabelError(f"class depth must be 1 or more, got {depth}")
    return SEPARATOR.join(split_path(path)[:depth])


def ensure_class_paths(session: Session, paths: Iterable[Sequence[str]]) -> dict[str, int]:
    """Create the classes of each path (and all their ancestors); return ``{path: class_id}``.

    Returns ids for every prefix of every path, keyed by the joined path.
    """
    wanted: dict[str, tuple[str, ...]] = {}
    for parts in paths:
        for level in range(1, len(parts) + 1):
            prefix = tuple(parts[:level])
            wanted.setdefault(join_path(prefix), prefix)
    if not wanted:
        return {}
    rows = session.execute(
        select(LabelClass.path, LabelClass.id).where(LabelClass.path.in_(list(wanted)))
    )
    ids: dict[str, int] = {path: class_id for path, class_id in rows}
    # Create shallow levels first so each child can point at its parent.
    for joined, parts in sorted(wanted.items(), key=lambda item: len(item[1])):
        if joined in ids:
            continue
        parent = join_path(parts[:-1]) if len(parts) > 1 else None
        new_id = session.scalar(
            insert(LabelClass)
            .values(
                name=parts[-1],
                path=joined,
                level=len(parts),
                parent_id=ids[parent] if parent is not None else None,
                created_at=utcnow(),
            )
            .returning(LabelClass.id)
        )
        if new_id is None:  # pragma: no cover - RETURNING always yields the id
            raise LabelError(f"could not create class {joined!r}")
        ids[joined] = new_id
    return ids


def list_classes(session: Session) -> list[ClassInfo]:
    """Return every class of the schema, ordered by path."""
    rows = session.execute(
        select(LabelClass.id, LabelClass.path, LabelClass.name, LabelClass.level).order_by(
            LabelClass.path
        )
    )
    return [ClassInfo(id=i, path=p, name=n, level=lv) for i, p, n, lv in rows]


def add_class_annotations(
    session: Session,
    labels: Mapping[int, str],
    *,
    annotator: str,
    origin: str,
    round: int | None = None,
) -> int:
    """Add one class annotation per image from ``{image_id: class_path}``.

    The classes must exist (:func:`ensure_class_paths`). Nothing is overwritten: an image
    that already has a class label gets a new row that supersedes the previous one.

    Returns:
        The number of annotations added.

    Raises:
        LabelError: A class path is not in the schema.
    """
    if not labels:
        return 0
    paths = sorted(set(labels.values()))
    known = session.execute(
        select(LabelClass.path, LabelClass.id).where(LabelClass.path.in_(paths))
    )
    class_ids = {path: class_id for path, class_id in known}
    missing = [p for p in paths if p not in class_ids]
    if missing:
        raise LabelError(f"classes not in the schema: {', '.join(missing)}")
    previous = _latest_class_annotation_ids(session, list(labels))
    now = utcnow()
    rows = [
        {
            "image_id": image_id,
            "kind": "class",
            "class_id": class_ids[path],
            "payload": {"class": path},
            "annotator": annotator,
            "origin": origin,
            "external_id": None,
            "round": round,
            "supersedes_id": previous.get(image_id),
            "created_at": now,
        }
        for image_id, path in labels.items()
    ]
    session.execute(insert(Annotation), rows)
    return len(rows)


def _latest_class_annotation_ids(session: Session, image_ids: Sequence[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for start in range(0, len(image_ids), 900):
        chunk = image_ids[start : start + 900]
        rows = session.execute(
            select(Annotation.image_id, func.max(Annotation.id))
            .where(Annotation.kind == "class", Annotation.image_id.in_(chunk))
            .group_by(Annotation.image_id)
        )
        found.update({image_id: ann_id for image_id, ann_id in rows})
    return found


def current_class_paths(session: Session) -> dict[int, str]:
    """Return ``{image_id: class_path}`` of each image's latest class annotation."""
    latest = (
        select(func.max(Annotation.id).label("id"))
        .where(Annotation.kind == "class")
        .group_by(Annotation.image_id)
        .subquery()
    )
    rows = session.execute(
        select(Annotation.image_id, LabelClass.path)
        .join(latest, Annotation.id == latest.c.id)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
    )
    return {image_id: path for image_id, path in rows}


def current_class_paths_of(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """``{image_id: class_path}`` of the given images that have a class label."""
    latest = _latest_class_annotation_ids(session, list(image_ids))
    found: dict[int, str] = {}
    ids = list(latest.values())
    for start in range(0, len(ids), 900):
        rows = session.execute(
            select(Annotation.image_id, LabelClass.path)
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.id.in_(ids[start : start + 900]))
        )
        found.update({image_id: path for image_id, path in rows})
    return found


def class_counts(session: Session, *, depth: int | None = None) -> Counter[str]:
    """Count labelled images per class, rolled up to ``depth`` (``None``: deepest level)."""
    return Counter(roll_up(path, depth) for path in current_class_paths(session).values())
