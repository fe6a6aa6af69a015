"""Labelling images from a program or the web UI: many images, one class, one transaction.

The bulk labeller's write. Nothing is overwritten: an image that had another class gets a
new annotation superseding the old one (the history stays), and an image that already has
the class gets nothing, so pressing the same key twice adds no rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from lensloop.catalog.labels import (
    add_class_annotations,
    current_class_paths_of,
    ensure_class_paths,
    join_path,
    split_path,
)
from lensloop.catalog.models import Image
from lensloop.errors import LabelError, NotFoundError
from lensloop.project.ingest import check_labels

if TYPE_CHECKING:
    from lensloop.project.project import Project

__all__ = ["LabelResult", "label_images"]


@dataclass(frozen=True)
class LabelResult:
    """What :func:`label_images` did."""

    label: str
    labelled: int
    unchanged: int


def label_images(
    project: Project,
    image_ids: Sequence[int],
    label: str,
    *,
    annotator: str,
    origin: str = "ui",
) -> LabelResult:
    """Give every image in ``image_ids`` the class ``label`` in one transaction.

    Args:
        project: The open project.
        image_ids: Catalog image ids (repeats are ignored).
        label: A class path, levels joined by ``/``; created if the schema is open.
        annotator: Who labelled (recorded on each annotation).
        origin: Where the labels came from (``ui``, ``api``).

    Raises:
        LabelError: An invalid class path, or one outside a closed schema.
        NotFoundError: Some ids are not in the catalog (nothing is written; the message
            lists them).
    """
    parts = split_path(label.strip())
    path = join_path(parts)
    check_labels(project, [parts])
    ids = sorted(set(image_ids))
    if not ids:
        raise LabelError("no image ids given")
    with project.catalog.transaction() as session:
        found: set[int] = set()
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            found.update(session.scalars(select(Image.id).where(Image.id.in_(chunk))))
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise NotFoundError(
                f"{len(missing)} image id(s) not in the catalog: {shown}; nothing was labelled"
            )
        current = current_class_paths_of(session, ids)
        todo = {i: path for i in ids if current.get(i) != path}
        if todo:
            ensure_class_paths(session, [parts])
            add_class_annotations(session, todo, annotator=annotator, origin=origin)
    return LabelResult(label=path, labelled=len(todo), unchanged=len(ids) - len(todo))
