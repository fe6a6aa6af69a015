"""Segmentation labels from outside files: check them, and import them into the catalog.

Geologists and microscopists often have masks and polygons from before lensloop: labelme
JSON, LabelBox exports, label PNGs. :func:`import_labels` reads them with
:func:`lensloop.annotate.labelfiles.read_label_file` (the formats are described
there) and stores, per image and annotator, at most

- one ``polygon`` annotation holding the polygon regions, and
- one ``mask`` annotation holding the mask regions (label PNGs, labelme masks),

in the payload formats of :mod:`lensloop.annotate.labelstudio.results`, with ``width`` and
``height`` the catalog image's size. An image labelled with no regions at all (nothing of
interest in it) gets an empty ``polygon`` annotation.

Images are named as in point files (:mod:`lensloop.annotate._importing`): by catalog id, URI
or trailing path; label PNGs by their path without the suffix.

Everything is checked before anything is written, in one transaction: every region label
must be one of the project's classes, ``background``, ``void`` or ``ignore`` (one error
lists all that are not); every polygon must lie within its image and every mask must have
its image's size; the size a file states must be the catalog image's.

Each annotation's ``external_id`` is ``<kind>:i<image>:<annotator>@<hash of its payload>``,
so importing the same files twice adds nothing, and a changed file adds a new version
that supersedes the old one. When a changed file leaves out a kind it had before (the
polygons of an image relabelled with a mask), the old annotation of that kind is
superseded by a deletion.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lensloop.annotate._importing import (
    ORIGIN,
    ImageInfo,
    check_annotator,
    import_record,
    listed,
    resolve_images,
)
from lensloop.annotate.labelfiles import LabelEntry, read_label_file
from lensloop.annotate.labelmap import BACKGROUND_NAMES, VOID_NAMES
from lensloop.annotate.rle import mask_to_counts
from lensloop.annotate.schema import project_schema
from lensloop.catalog.annotations import AnnotationRecord, add_annotations
from lensloop.catalog.models import Annotation
from lensloop.errors import LabelError, SourceError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lensloop.project import Project

__all__ = ["DEFAULT_ANNOTATOR", "ORIGIN", "LabelImportReport", "import_labels"]

#: ``origin`` of the annotations this module stores.
#: Annotator recorded when neither the file nor the caller names one.
DEFAULT_ANNOTATOR = "import"

_KINDS = ("polygon", "mask")
_DELETED = "deleted"
_CHUNK = 900


@dataclass
class LabelImportReport:
    """What :func:`import_labels` did.

    Attributes:
        entries: ``(image, annotator)`` entries read from the files.
        images: Distinct catalog images they label.
        regions: Regions read (polygons and masks).
        added: Catalog annotations added (including deletions of left-out kinds).
        unchanged: Annotations already stored (the same labels imported before).
        superseded: Added annotations that replace an earlier version.
        skipped: Shapes that mark no area and were left out, by type (``{"point": 3}``).
    """

    entries: int = 0
    images: int = 0
    regions: int = 0
    added: int = 0
    unchanged: int = 0
    superseded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "entries": self.entries,
            "images": self.images,
            "regions": self.regions,
            "added": self.added,
            "unchanged": self.unchanged,
            "superseded": self.superseded,
            "skipped": dict(self.skipped),
        }


def import_labels(
    project: Project,
    paths: Sequence[str | Path],
    *,
    annotator: str = DEFAULT_ANNOTATOR,
    classes: Sequence[str] | None = None,
    format: str = "auto",
    values: Mapping[int, str] | None = None,
) -> LabelImportReport:
    """Import segmentation label files into the project's catalog (all or nothing).

    Args:
        project: The project.
        paths: Label files or folders (see :func:`~lensloop.annotate.labelfiles.\
read_label_file`).
        annotator: Annotator of entries whose file names none (default ``"import"``).
        classes: How label PNGs number the classes (value ``k`` is ``classes[k - 1]``);
            each must be one of the project's. Default: the project's label schema, in
            its (sorted) order.
        format: The files' format, or ``auto`` to tell from each file.
        values: For label PNGs numbered differently, ``{pixel value: class name,
            "background" or "void"}``.

    Returns:
        What was read and written.

    Raises:
        SourceError: A path cannot be read, no path is given, an annotator name is too
            long, or one image is given twice for one annotator.
        UnknownNameError: ``format`` is unknown.
        NotFoundError: Image references that match no catalog image, or several.
        LabelError: A file is malformed, labels are not the project's classes (nor
            background / void), regions reach outside their image, or a file's image size
            is not the catalog image's.
        ConfigError: The project has no classes.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise SourceError("no label files given; pass label files or folders to import")
    default_annotator = annotator.strip() or DEFAULT_ANNOTATOR
    schema = project_schema(project)
    numbering = _numbering(classes, schema.labels)
    entries = [
        entry
        for path in paths
        for entry in read_label_file(path, numbering, format=format, values=values)
    ]
    _check_labels(entries, schema.labels)
    report = LabelImportReport(
        entries=len(entries), regions=sum(len(entry.regions) for entry in entries)
    )
    skipped: Counter[str] = Counter()
    for entry in entries:
        skipped.update(entry.skipped)
    report.skipped = dict(skipped)
    with project.catalog.transaction() as session:
        images = resolve_images(
            session,
            [entry.image for entry in entries],
            by_stem={entry.image for entry in entries if entry.by_stem},
        )
        problems: list[str] = []
        seen: dict[tuple[int, str], LabelEntry] = {}
        payloads: list[tuple[ImageInfo, str, dict[str, dict[str, Any]]]] = []
        for entry in entries:
            info = images[entry.image]
            who = entry.annotator or default_annotator
            check_annotator(who, entry.where)
            earlier = seen.get((info.image_id, who))
            if earlier is not None:
                raise SourceError(
                    f"{entry.where}: image {info.uri} (id {info.image_id}) is also labelled "
                    f"by {who!r} in {earlier.where} (as {earlier.image!r}); give each image "
                    "once per annotator"
                )
            seen[(info.image_id, who)] = entry
            found = list(_problems(entry, info))
            problems.extend(found)
            if not found:
                payloads.append((info, who, _payloads(entry, info)))
        if problems:
            raise LabelError(
                f"{len(problems)} region(s) do not fit their image: {listed(problems, '; ')}. "
                "Coordinates are pixels of the original image (x across, y down, from the "
                "top-left corner) and masks must have the image's size; fix the files, or "
                "check that they name the right images"
            )
        records = [
            _record(info.image_id, kind, payload, who)
            for info, who, by_kind in payloads
            for kind, payload in by_kind.items()
        ]
        records.extend(_deletions(session, payloads))
        written = add_annotations(session, records)
    report.images = len({info.image_id for info in images.values()})
    report.added = len(written.added)
    report.unchanged = written.unchanged
    report.superseded = written.superseded
    return report


def _numbering(classes: Sequence[str] | None, labels: tuple[str, ...]) -> tuple[str, ...]:
    if classes is None:
        return labels
    if isinstance(classes, str):
        raise LabelError(f"classes must be a list of class names, got the string {classes!r}")
    unknown = [name for name in classes if name not in labels]
    if unknown:
        raise LabelError(
            f"classes {', '.join(map(repr, unknown))} are not in the project's label schema "
            f"({', '.join(labels)}); give the project's classes in the order the label "
            "PNGs number them"
        )
    return tuple(classes)


def _allowed(label: str, labels: tuple[str, ...]) -> bool:
    folded = label.casefold()
    return label in labels or folded in BACKGROUND_NAMES or folded in VOID_NAMES


def _check_labels(entries: Sequence[LabelEntry], labels: tuple[str, ...]) -> None:
    unknown: dict[str, str] = {}
    for entry in entries:
        for region in entry.regions:
            if not _allowed(region.label, labels):
                unknown.setdefault(region.label, entry.where)
    if unknown:
        shown = listed([f"{name!r} ({where})" for name, where in unknown.items()], ", ")
        raise LabelError(
            f"label(s) not in the project's label schema: {shown}; the schema's labels are: "
            f"{', '.join(labels)} (and background, void / ignore). Fix the labels in the "
            "files, or add the classes to the project"
        )


def _problems(entry: LabelEntry, info: ImageInfo) -> Iterator[str]:
    name = f"{entry.image} ({info.width}x{info.height}, in {entry.where})"
    stated = (entry.width, entry.height)
    if (entry.width is not None and entry.width != info.width) or (
        entry.height is not None and entry.height != info.height
    ):
        yield (
            f"{name}: the file gives the image size as {stated[0]}x{stated[1]}, but the "
            "catalog image is not that size (a resized copy, or another image?)"
        )
        return
    for number, region in enumerate(entry.regions, start=1):
        if region.polygon is not None:
            x, y = region.polygon[:, 0], region.polygon[:, 1]
            if x.min() < 0 or y.min() < 0 or x.max() > info.width or y.max() > info.height:
                yield (
                    f"{name}: region {number} ({region.label!r}) spans x {x.min():g}..."
                    f"{x.max():g}, y {y.min():g}...{y.max():g}"
                )
        elif region.mask is not None and region.mask.shape != (info.height, info.width):
            rows, cols = region.mask.shape
            yield f"{name}: region {number} ({region.label!r}) is a {cols}x{rows} mask"


def _payloads(entry: LabelEntry, info: ImageInfo) -> dict[str, dict[str, Any]]:
    polygons = [
        {
            "points": [[float(x), float(y)] for x, y in region.polygon],
            "label": region.label,
            "id": f"r{number}",
        }
        for number, region in enumerate(entry.regions)
        if region.polygon is not None
    ]
    masks = [
        {"label": region.label, "id": f"m{number}", **mask_to_counts(region.mask)}
        for number, region in enumerate(entry.regions)
        if region.mask is not None
    ]
    size = {"width": info.width, "height": info.height}
    payloads: dict[str, dict[str, Any]] = {}
    if polygons or not masks:
        payloads["polygon"] = size | {"polygons": polygons}
    if masks:
        payloads["mask"] = size | {"masks": masks}
    return payloads


def _key(image_id: int, kind: str, annotator: str) -> str:
    return f"{kind}:i{image_id}:{annotator}"


def _record(image_id: int, kind: str, payload: dict[str, Any], annotator: str) -> AnnotationRecord:
    key = _key(image_id, kind, annotator)
    return import_record(image_id, kind, payload, annotator, key=key)


def _deletions(
    session: Session, payloads: Sequence[tuple[ImageInfo, str, dict[str, dict[str, Any]]]]
) -> list[AnnotationRecord]:
    """Deletions of the kinds an earlier import stored and this one leaves out."""
    absent = {
        _key(info.image_id, kind, who): (info.image_id, kind, who)
        for info, who, by_kind in payloads
        for kind in _KINDS
        if kind not in by_kind
    }
    if not absent:
        return []
    latest: dict[str, tuple[int, str]] = {}
    image_ids = sorted({image_id for image_id, _, _ in absent.values()})
    for start in range(0, len(image_ids), _CHUNK):
        rows = session.execute(
            select(Annotation.id, Annotation.external_id).where(
                Annotation.origin == ORIGIN,
                Annotation.kind.in_(_KINDS),
                Annotation.image_id.in_(image_ids[start : start + _CHUNK]),
            )
        )
        for row_id, external_id in rows:
            key, _, version = (external_id or "").rpartition("@")
            if key in absent and (key not in latest or row_id > latest[key][0]):
                latest[key] = (row_id, version)
    records: list[AnnotationRecord] = []
    for key, (row_id, version) in latest.items():
        if version.startswith(_DELETED):
            continue
        image_id, kind, who = absent[key]
        records.append(
            AnnotationRecord(
                image_id=image_id,
                kind=kind,
                payload={_DELETED: True},
                annotator=who,
                origin=ORIGIN,
                external_id=f"{key}@{_DELETED}-{row_id}",
                version_key=key,
            )
        )
    return records
