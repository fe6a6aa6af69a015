"""``lensloop status``: a summary of a project, with a stable JSON shape.

The JSON shape is a contract (documented in ``docs/status.md``); fields are only ever
added, never renamed or removed, and ``schema`` is bumped if that ever has to change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from lensloop import __version__
from lensloop.catalog.labels import current_class_paths, roll_up, split_path
from lensloop.catalog.models import (
    Annotation,
    EmbeddingSet,
    Image,
    IngestFailure,
    ModelAlias,
    ModelVersion,
    Sample,
    SelectionItem,
    SelectionRound,
)
from lensloop.project.project import Project

__all__ = ["STATUS_SCHEMA", "project_status"]

#: Version of the JSON shape returned by :func:`project_status`.
STATUS_SCHEMA = 1


def project_status(project: Project) -> dict[str, Any]:
    """Summarise a project: images, labels per class, splits, embeddings and models.

    Returns:
        A JSON-serialisable dict in the documented shape (``docs/status.md``).
    """
    depth = project.config.labels.depth
    with project.catalog.reader() as session:
        total = int(session.scalar(select(func.count()).select_from(Image)) or 0)
        splits = {
            (split or "unassigned"): int(n)
            for split, n in session.execute(select(Image.split, func.count()).group_by(Image.split))
        }
        labels = current_class_paths(session)
        counts: dict[str, int] = {}
        for path in labels.values():
            key = roll_up(path, depth)
            counts[key] = counts.get(key, 0) + 1
        failures = int(session.scalar(select(func.count()).select_from(IngestFailure)) or 0)
        samples = int(session.scalar(select(func.count()).select_from(Sample)) or 0)
        embeddings = [
            {"backbone": b, "version": v, "dim": d, "count": c}
            for b, v, d, c in session.execute(
                select(
                    EmbeddingSet.backbone,
                    EmbeddingSet.version,
                    EmbeddingSet.dim,
                    EmbeddingSet.count,
                ).order_by(EmbeddingSet.backbone, EmbeddingSet.version)
            )
        ]
        aliases: dict[int, list[str]] = {}
        for alias, version_id in session.execute(
            select(ModelAlias.alias, ModelAlias.model_version_id)
        ):
            aliases.setdefault(version_id, []).append(alias)
        models = [
            {
                "version": m.version,
                "task": m.task,
                "aliases": sorted(aliases.get(m.id, [])),
                "metrics": m.metrics,
                "created_at": m.created_at.isoformat(),
            }
            for m in session.scalars(select(ModelVersion).order_by(ModelVersion.version))
        ]
        rounds = int(session.scalar(select(func.count()).select_from(SelectionRound)) or 0)
        annotated = select(Annotation.image_id)
        queued = int(
            session.scalar(
                select(func.count(func.distinct(SelectionItem.image_id))).where(
                    SelectionItem.image_id.not_in(annotated)
                )
            )
            or 0
        )
    declared = set(project.config.labels.classes)
    classes = [
        {"name": split_path(path)[-1], "path": path, "labelled_images": n}
        for path, n in sorted(counts.items())
    ]
    classes += [
        {"name": split_path(path)[-1], "path": path, "labelled_images": 0}
        for path in sorted(declared - set(counts))
        if depth is None or len(split_path(path)) <= depth
    ]
    return {
        "schema": STATUS_SCHEMA,
        "lensloop_version": __version__,
        "project": {
            "name": project.config.project.name,
            "root": str(project.root),
            "task": project.task,
            "catalog": project.catalog.url,
        },
        "images": {
            "total": total,
            "labelled": len(labels),
            "unlabelled": total - len(labels),
            "failed_files": failures,
            "samples": samples,
        },
        "splits": {name: splits.get(name, 0) for name in ("train", "val", "test", "pool")}
        | {"unassigned": splits.get("unassigned", 0)},
        "labels": {
            "depth": depth,
            "closed": project.config.labels.closed,
            "classes": sorted(classes, key=lambda c: str(c["path"])),
        },
        "embeddings": embeddings,
        "models": models,
        "selection_rounds": rounds,
        "queued_images": queued,
    }
