"""Adding image bytes a client sent (the HTTP API's ``POST /v1/images``) to a project.

Each image is checked (its header is probed against the project's size limits, so a
decompression bomb is refused before anything is written), stored content-addressed under
the project's uploads location (``LENSLOOP_UPLOADS_URI``: a folder or an
``s3://bucket/prefix``; default ``images/uploads`` in the project) as
``<sha[:2]>/<sha>.<ext>``, and then ingested by the same code as ``lensloop ingest``, with
the label, sample and metadata the client gave. Sending the same bytes again adds nothing:
the stored name is the content's hash and the catalog deduplicates by it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lensloop.catalog.images import lookup_sha256
from lensloop.catalog.labels import split_path
from lensloop.errors import ImageError
from lensloop.imaging import probe_image
from lensloop.project.ingest import IngestOptions, check_labels, ingest
from lensloop.sources.base import Discovery, SourceItem
from lensloop.sources.remote import exists, write_bytes

if TYPE_CHECKING:
    from lensloop.project.project import Project

__all__ = ["UploadResult", "add_image_bytes", "uploads_location"]

_SUFFIX = {"jpeg": ".jpg", "tiff": ".tif"}


@dataclass(frozen=True)
class UploadResult:
    """Ids of the images that are new to the catalog and of those it already held."""

    added: list[int]
    existing: list[int]


def uploads_location(project: Project) -> str:
    """Where uploaded images are stored: ``LENSLOOP_UPLOADS_URI`` or ``images/uploads``."""
    configured = project.settings.uploads_uri
    if configured:
        return configured.rstrip("/")
    return (project.root / "images" / "uploads").as_posix()


def add_image_bytes(
    project: Project,
    files: Sequence[tuple[str, bytes]],
    *,
    label: str | None = None,
    sample: str | None = None,
    meta: Mapping[str, Any] | None = None,
    annotator: str = "api",
) -> UploadResult:
    """Store and ingest ``(file name, bytes)`` pairs; the label, sample and metadata apply to all.

    Every file is checked before any is stored. The file name is kept in the image's
    metadata as ``filename``.

    Raises:
        ImageError: A file is not an image lensloop reads, or is over the size limits (the
            message names it); nothing is stored.
        LabelError: The label is invalid or outside a closed schema.
        CatalogError: The catalog refused the write.
    """
    parts = split_path(label.strip()) if label else None
    if parts is not None:
        check_labels(project, [parts])
    location = uploads_location(project)
    planned: list[tuple[str, str, str]] = []  # (name, digest, uri)
    for name, data in files:
        info = probe_image(data, limits=project.limits, name=name)
        digest = hashlib.sha256(data).hexdigest()
        suffix = _SUFFIX.get(info.format, f".{info.format}")
        planned.append((name, digest, f"{location}/{digest[:2]}/{digest}{suffix}"))
    if not planned:
        raise ImageError("no files in the upload")
    with project.catalog.reader() as session:
        known = lookup_sha256(session, [digest for _, digest, _ in planned])
    remote = project.remote
    items: dict[str, SourceItem] = {}
    for (name, digest, uri), (_, data) in zip(planned, files, strict=True):
        if digest in known or uri in items:
            continue
        if not exists(uri, remote):
            # Content-addressed: a file another request wrote meanwhile holds these bytes.
            with contextlib.suppress(FileExistsError):
                write_bytes(uri, data, remote)
        items[uri] = SourceItem(
            uri=uri,
            label=parts,
            sample=sample,
            meta={**(meta or {}), "filename": name},
        )
    if items:
        options = IngestOptions(workers=0, annotator=annotator)
        report = ingest(project, [], options=options, discovery=Discovery(list(items.values())))
        if report.failed:
            reasons = "; ".join(f"{uri}: {why}" for uri, why in report.failed[:5])
            raise ImageError(f"could not ingest the upload: {reasons}")
    with project.catalog.reader() as session:
        by_sha = lookup_sha256(session, [digest for _, digest, _ in planned])
    added = sorted({by_sha[digest] for _, digest, uri in planned if uri in items})
    existing = sorted({known[digest] for _, digest, _ in planned if digest in known})
    return UploadResult(added=added, existing=existing)
