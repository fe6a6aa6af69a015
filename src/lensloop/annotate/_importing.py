"""What the label-file importers (points, regions) share.

**Annotation records.** An imported annotation's external id is its version key (image,
kind, annotator) plus a hash of its payload (:func:`import_record`), so importing the same
file twice adds nothing and a changed file adds a new version; annotator names are
checked for length first (:func:`check_annotator`).

**Catalog images named by outside label files**: by id, by URI, or by the end of the
path. Label files written outside lensloop (point CSVs, labelme JSON, label PNGs) name their
images in their own ways. :func:`resolve_images` maps each reference to one catalog image:

1. its catalog id (a reference made of digits);
2. its exact catalog URI;
3. the trailing components of its URI (``plate1/a.png`` or ``a.png`` for
   ``/data/plate1/a.png``), when they match one image only.

References given ``by_stem`` are paths without the file suffix (a label PNG ``a.png``
named after its image ``a.jpg``): they match the trailing components of a URI whose last
component, or that component without its suffix, equals theirs, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lensloop.catalog.annotations import AnnotationRecord
from lensloop.catalog.models import Image
from lensloop.errors import NotFoundError, SourceError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "MAX_ANNOTATOR",
    "MAX_LISTED",
    "ORIGIN",
    "ImageInfo",
    "check_annotator",
    "images_where",
    "import_record",
    "listed",
    "path_parts",
    "resolve_images",
    "suffix_matches",
]

#: ``origin`` of every annotation imported from a file.
ORIGIN = "import"
#: Longest annotator name (keeps external ids within the catalog's 256 characters).
MAX_ANNOTATOR = 160

#: The most items an error message lists before saying how many more there are.
MAX_LISTED = 10
_CHUNK = 900


@dataclass(frozen=True)
class ImageInfo:
    """A catalog image's id, URI and size in pixels."""

    image_id: int
    uri: str
    width: int
    height: int


def listed(items: Sequence[str], separator: str) -> str:
    """The first few items joined, with how many more there are."""
    shown = separator.join(items[:MAX_LISTED])
    extra = len(items) - MAX_LISTED
    return f"{shown}{separator}and {extra} more" if extra > 0 else shown


def resolve_images(
    session: Session, references: Sequence[str], *, by_stem: Collection[str] = ()
) -> dict[str, ImageInfo]:
    """Map each image reference to one catalog image, or raise listing those that fail.

    Args:
        session: A catalog session.
        references: Image ids, URIs or trailing paths (see the module docstring).
        by_stem: Those of ``references`` that are paths without their file suffix.

    Returns:
        ``{reference: image}`` for every reference.

    Raises:
        NotFoundError: References that match no catalog image, or several; the message
            lists them and how to name an image.
    """
    wanted = list(dict.fromkeys(references))
    stems = {ref for ref in wanted if ref in by_stem}
    found: dict[str, ImageInfo] = {}
    by_id = {int(ref): ref for ref in wanted if ref.isdigit() and ref not in stems}
    for info in images_where(session, Image.id, list(by_id)):
        found[by_id[info.image_id]] = info
    rest = [ref for ref in wanted if ref not in found and ref not in stems]
    for info in images_where(session, Image.uri, rest):
        found[info.uri] = info
    rest = [ref for ref in wanted if ref not in found]
    candidates = suffix_matches(session, rest, by_stem=stems)
    unknown: list[str] = []
    ambiguous: list[str] = []
    for ref in rest:
        matches = candidates.get(ref, [])
        if len(matches) == 1:
            found[ref] = matches[0]
        elif not matches:
            unknown.append(ref)
        else:
            uris = ", ".join(m.uri for m in matches[:3])
            more = ", ..." if len(matches) > 3 else ""
            ambiguous.append(f"{ref!r} ({len(matches)} images: {uris}{more})")
    if unknown or ambiguous:
        parts = []
        if unknown:
            shown = ", ".join(map(repr, unknown[:MAX_LISTED]))
            more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
            parts.append(f"{len(unknown)} image reference(s) match no catalog image: {shown}{more}")
        if ambiguous:
            parts.append(f"{len(ambiguous)} match several images: {listed(ambiguous, '; ')}")
        stem_note = (
            " (label PNGs are matched by their path without the suffix: labels/plate1/a.png "
            "names the image plate1/a.*)"
            if stems
            else ""
        )
        raise NotFoundError(
            "; ".join(parts) + ". Name each image by its catalog id, its full URI, or enough "
            "of its path to match one image (plate1/a.png rather than a.png)"
            + stem_note
            + "; ingest images that are not in the catalog yet"
        )
    return found


def images_where(session: Session, column: Any, values: Sequence[Any]) -> Iterator[ImageInfo]:
    """Yield the catalog images whose ``column`` is one of ``values`` (queried in chunks)."""
    for start in range(0, len(values), _CHUNK):
        rows = session.execute(
            select(Image.id, Image.uri, Image.width, Image.height).where(
                column.in_(list(values[start : start + _CHUNK]))
            )
        )
        for image_id, uri, width, height in rows:
            yield ImageInfo(image_id, uri, width, height)


def path_parts(text: str) -> tuple[str, ...]:
    """The components of a path or URI (split at slashes and backslashes, ``.`` dropped)."""
    return tuple(part for part in text.replace("\\", "/").split("/") if part and part != ".")


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def suffix_matches(
    session: Session, references: Sequence[str], *, by_stem: Collection[str] = ()
) -> dict[str, list[ImageInfo]]:
    """Catalog images whose URI ends with each reference's path components.

    A reference in ``by_stem`` also matches when its last component equals the URI's last
    component without its suffix.
    """
    wanted: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for ref in references:
        parts = path_parts(ref)
        if parts:
            wanted.setdefault(parts[-1], []).append((ref, parts))
    matches: dict[str, list[ImageInfo]] = {ref: [] for ref in references}
    if not wanted:
        return matches
    rows = session.execute(select(Image.id, Image.uri, Image.width, Image.height))
    for image_id, uri, width, height in rows:
        uri_parts = path_parts(uri)
        if not uri_parts:
            continue
        names = [uri_parts[-1]]
        stem = _stem(uri_parts[-1])
        if stem != uri_parts[-1]:
            names.append(stem)
        for name in names:
            for ref, parts in wanted.get(name, ()):
                if name != uri_parts[-1] and ref not in by_stem:
                    continue
                if uri_parts[-len(parts) : -1] == parts[:-1] and len(uri_parts) >= len(parts):
                    matches[ref].append(ImageInfo(image_id, uri, width, height))
    return matches


def check_annotator(who: str, where: str) -> None:
    """Refuse an annotator name too long for the catalog's external ids.

    Raises:
        SourceError: ``who`` is longer than :data:`MAX_ANNOTATOR` (the message starts with
            ``where``, the entry's place in its file).
    """
    if len(who) > MAX_ANNOTATOR:
        raise SourceError(
            f"{where}: annotator name is {len(who)} characters long; use at most {MAX_ANNOTATOR}"
        )


def import_record(
    image_id: int, kind: str, payload: dict[str, Any], annotator: str, *, key: str
) -> AnnotationRecord:
    """An imported annotation: version key ``key``, external id ``key@<payload hash>``."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return AnnotationRecord(
        image_id=image_id,
        kind=kind,
        payload=payload,
        annotator=annotator,
        origin=ORIGIN,
        external_id=f"{key}@{digest}",
        version_key=key,
    )
