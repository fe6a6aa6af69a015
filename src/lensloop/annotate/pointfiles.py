"""Point annotations from CSV and JSON files: read, check, and import into the catalog.

Counting projects often have clicks made outside Label Studio: a spreadsheet of cell
positions, a script's JSON output, several annotators' files. This module reads them in
two formats, both in the original image's pixels with the pixel ``(row i, column j)``
centred at ``(j + 0.5, i + 0.5)`` (DESIGN.md):

**CSV** with a header; columns ``image``, ``x``, ``y`` and optionally ``annotator``,
``label`` and ``status``. One row per point; a row with empty ``x`` and ``y`` declares an
image without points (``img.png,,,alice,,empty``)::

    image,x,y,annotator,label,status
    plate1/a.png,12.5,30.0,alice,cell,full
    plate1/a.png,40.2,8.5,alice,cell,full
    plate1/b.png,,,alice,,empty

**JSON**, either a list of entries (optionally under ``"images"``) or a plain mapping of
image to points::

    {"images": [{"image": "a.png", "annotator": "bob", "status": "full",
                 "points": [[12.5, 30.0], {"x": 40.2, "y": 8.5, "label": "cell"}],
                 "background": [[0, 0, 20, 10]]}]}
    {"a.png": [[12.5, 30.0], [40.2, 8.5]]}

``background`` boxes ``[x, y, width, height]`` mark regions holding no objects to count.

An image is named by its catalog id, its exact catalog URI, or the trailing components
of its URI (``plate1/a.png`` or ``a.png`` for ``/data/plate1/a.png``) when they match
one image only.

:func:`import_points` stores one ``points`` annotation per image and annotator (and one
``box`` annotation of its background boxes, labelled ``background``), with ``status``
saying how completely the image was annotated (:data:`POINT_STATUSES`). What the file
leaves out comes from the caller, then from defaults: annotator ``import``, status
``sparse`` (the normal case: some objects clicked), and the label when the project has
only one. An image with no points must say ``empty``; one with points must not.

Each annotation's ``external_id`` is ``points:i<image>:<annotator>@<hash of its
payload>``, so importing the same file twice adds nothing, and a changed entry is added
as a new version that supersedes the old one. Everything is checked before anything is
written, in one transaction: one bad entry stops the import with a message naming it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lensloop.annotate._importing import (
    ORIGIN,
    ImageInfo,
    check_annotator,
    import_record,
    listed,
    resolve_images,
)
from lensloop.annotate.schema import COUNT_STATUSES, project_schema
from lensloop.catalog.annotations import AnnotationRecord, add_annotations
from lensloop.errors import LabelError, SourceError

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = [
    "BACKGROUND_LABEL",
    "DEFAULT_ANNOTATOR",
    "DEFAULT_STATUS",
    "ORIGIN",
    "POINT_STATUSES",
    "PointEntry",
    "PointImportReport",
    "import_points",
    "read_point_file",
]

#: Statuses a point entry may have: the ones annotators choose, and ``conflict`` (the
#: annotators disagree). The same as :data:`lensloop.tasks.counting.density.STATUSES`,
#: spelled out here because ``annotate`` sits below ``tasks``.
POINT_STATUSES = (*COUNT_STATUSES, "conflict")
#: ``origin`` of the annotations this module stores.
#: Annotator recorded when neither the file nor the caller names one.
DEFAULT_ANNOTATOR = "import"
#: Status recorded when neither the file nor the caller gives one: sparse clicks are the
#: normal case, and the only safe assumption (unclicked objects may exist).
DEFAULT_STATUS = "sparse"
#: Label of the box annotation holding an entry's background boxes.
BACKGROUND_LABEL = "background"

_REQUIRED_COLUMNS = ("image", "x", "y")
_OPTIONAL_COLUMNS = ("annotator", "label", "status")

Box = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class PointEntry:
    """The points one annotator gave one image, as read from a file.

    Attributes:
        image: The image reference as written (id, URI or trailing path).
        annotator: Who clicked, or ``None`` when the file does not say.
        points: ``(N, 2)`` float64 pixel ``(x, y)``.
        labels: ``N`` labels, ``None`` where the file gives none.
        status: How completely the image was annotated, or ``None`` when not given.
        background: Boxes ``(x, y, width, height)`` marking regions without objects.
        where: Where the entry is in the file, for messages (``"points.csv rows 2-5"``).
    """

    image: str
    annotator: str | None
    points: npt.NDArray[np.float64]
    labels: list[str | None]
    status: str | None
    background: list[Box] = field(default_factory=list)
    where: str = ""


@dataclass
class PointImportReport:
    """What :func:`import_points` did.

    Attributes:
        entries: ``(image, annotator)`` entries read from the file.
        images: Distinct catalog images they label.
        points: Points read.
        added: Catalog annotations added (points and background boxes).
        unchanged: Annotations already stored (the same entry imported before).
        superseded: Added annotations that replace an earlier version.
    """

    entries: int = 0
    images: int = 0
    points: int = 0
    added: int = 0
    unchanged: int = 0
    superseded: int = 0

    def as_dict(self) -> dict[str, int]:
        """The report as JSON-ready data."""
        return {
            "entries": self.entries,
            "images": self.images,
            "points": self.points,
            "added": self.added,
            "unchanged": self.unchanged,
            "superseded": self.superseded,
        }


# -- reading ------------------------------------------------------------------------------


def read_point_file(path: str | Path) -> list[PointEntry]:
    """Read a CSV or JSON point file (see the module docstring for the formats).

    Args:
        path: A ``.csv`` or ``.json`` file.

    Returns:
        One entry per ``(image, annotator)``, in the order they first appear.

    Raises:
        SourceError: The file is missing, of an unknown type, or malformed; the message
            names the file, the row or entry, and the problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise SourceError(
            f"{path}: unknown point file type {path.suffix or '(no suffix)'!r}; "
            "give a .csv (image,x,y[,annotator,label,status]) or a .json file"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such point file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot be read as UTF-8 text: {exc}") from None
    groups = _read_csv(path, text) if suffix == ".csv" else _read_json(path, text)
    return [group.entry() for group in groups.values()]


@dataclass
class _Group:
    """Points of one (image, annotator) gathered while reading."""

    image: str
    annotator: str | None
    file: str
    unit: str  # "row" or "entry"
    places: list[int] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    status: str | None = None
    status_place: int = 0
    background: list[Box] = field(default_factory=list)

    def set_status(self, status: str | None, place: int) -> None:
        if status is None:
            return
        if self.status is not None and status != self.status:
            who = f" by {self.annotator}" if self.annotator else ""
            raise SourceError(
                f"{self.file}: {self.unit} {place}: image {self.image!r}{who} has status "
                f"{status!r} here but {self.status!r} in {self.unit} {self.status_place}; "
                "give one status per image and annotator"
            )
        self.status, self.status_place = status, place

    def entry(self) -> PointEntry:
        points = np.array(self.points, dtype=np.float64).reshape(-1, 2)
        return PointEntry(
            image=self.image,
            annotator=self.annotator,
            points=points,
            labels=list(self.labels),
            status=self.status,
            background=list(self.background),
            where=f"{self.file} {_places(self.unit, self.places)}",
        )


def _places(unit: str, places: Sequence[int]) -> str:
    unique = sorted(set(places))
    if len(unique) == 1:
        return f"{unit} {unique[0]}"
    if unique == list(range(unique[0], unique[-1] + 1)):
        return f"{unit}s {unique[0]}-{unique[-1]}"
    shown = ", ".join(map(str, unique[:5]))
    return f"{unit}s {shown}{', ...' if len(unique) > 5 else ''}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _status(value: Any, where: str) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text.lower() not in POINT_STATUSES:
        raise SourceError(
            f"{where}: unknown status {text!r}; valid statuses are: {', '.join(POINT_STATUSES)} "
            "(empty: no objects; sparse: some objects clicked; full: every object clicked)"
        )
    return text.lower()


def _coordinate(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool):
        raise SourceError(f"{where}: {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SourceError(f"{where}: {name} must be a finite number, got {value!r}")
    return number


def _read_csv(path: Path, text: str) -> dict[tuple[str, str | None], _Group]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise SourceError(f"{path}: the file is empty; expected a header image,x,y")
    columns = [name.strip().lower() for name in header]
    missing = [name for name in _REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise SourceError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must name image, x "
            f"and y (optionally {', '.join(_OPTIONAL_COLUMNS)}); found: {', '.join(header)}"
        )
    repeated = sorted({name for name in columns if name and columns.count(name) > 1})
    if repeated:
        raise SourceError(f"{path}: column(s) named more than once: {', '.join(repeated)}")
    index = {
        name: columns.index(name)
        for name in (*_REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS)
        if name in columns
    }
    groups: dict[tuple[str, str | None], _Group] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        where = f"{path}: row {line}"
        if len(row) > len(columns):
            raise SourceError(f"{where}: {len(row)} values but the header has {len(columns)}")
        cells = {name: row[i].strip() if i < len(row) else "" for name, i in index.items()}
        image = cells["image"]
        if not image:
            raise SourceError(f"{where}: the image column is empty")
        annotator = _text(cells.get("annotator"))
        key = (image, annotator)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(image, annotator, path.name, "row")
        group.places.append(line)
        group.set_status(_status(cells.get("status"), where), line)
        x_text, y_text = cells["x"], cells["y"]
        if not x_text and not y_text:
            continue  # declares the image, without a point
        if not x_text or not y_text:
            raise SourceError(
                f"{where}: give both x and y for a point, or leave both empty to declare "
                "an image without points"
            )
        group.points.append((_coordinate(x_text, "x", where), _coordinate(y_text, "y", where)))
        group.labels.append(_text(cells.get("label")))
    return groups


_JSON_SHAPES = (
    '{"images": [{"image": "a.png", "points": [[x, y], ...], "status": "full", '
    '"annotator": "bob"}]}, a list of such entries, or {"a.png": [[x, y], ...]}'
)


def _read_json(path: Path, text: str) -> dict[tuple[str, str | None], _Group]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON: {exc}") from None
    entries: list[Any]
    if isinstance(data, Mapping) and "images" in data:
        if not isinstance(data["images"], list):
            raise SourceError(
                f'{path}: "images" must be a list of entries; expected {_JSON_SHAPES}'
            )
        entries = data["images"]
    elif isinstance(data, list):
        entries = data
    elif isinstance(data, Mapping) and all(isinstance(v, list) for v in data.values()):
        entries = [{"image": image, "points": points} for image, points in data.items()]
    else:
        raise SourceError(f"{path}: unknown JSON shape; expected {_JSON_SHAPES}")
    groups: dict[tuple[str, str | None], _Group] = {}
    for number, item in enumerate(entries, start=1):
        where = f"{path}: entry {number}"
        if not isinstance(item, Mapping):
            raise SourceError(f"{where}: expected an object with an 'image', got {item!r:.80}")
        image = _text(item.get("image"))
        if image is None or isinstance(item.get("image"), bool | list | dict):
            raise SourceError(f"{where}: 'image' must name an image (id, URI or file name)")
        where = f"{where} ({image})"
        annotator = _text(item.get("annotator"))
        key = (image, annotator)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(image, annotator, path.name, "entry")
        group.places.append(number)
        group.set_status(_status(item.get("status"), where), number)
        for point in _json_list(item, "points", where):
            x, y, label = _json_point(point, where)
            group.points.append((x, y))
            group.labels.append(label)
        group.background.extend(
            _json_box(box, where) for box in _json_list(item, "background", where)
        )
    return groups


def _json_list(item: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SourceError(f"{where}: {key!r} must be a list, got {value!r:.80}")
    return value


def _json_point(point: Any, where: str) -> tuple[float, float, str | None]:
    if isinstance(point, Mapping):
        if "x" not in point or "y" not in point:
            raise SourceError(f"{where}: a point object needs 'x' and 'y', got {point!r:.80}")
        x = _coordinate(point["x"], "x", where)
        y = _coordinate(point["y"], "y", where)
        return x, y, _text(point.get("label"))
    if isinstance(point, list) and len(point) == 2:
        return _coordinate(point[0], "x", where), _coordinate(point[1], "y", where), None
    raise SourceError(
        f'{where}: a point must be [x, y] or {{"x": .., "y": .., "label": ..}}, got {point!r:.80}'
    )


def _json_box(box: Any, where: str) -> Box:
    if isinstance(box, Mapping):
        values = [box.get(k) for k in ("x", "y", "width", "height")]
    elif isinstance(box, list) and len(box) == 4:
        values = list(box)
    else:
        raise SourceError(
            f"{where}: a background box must be [x, y, width, height], got {box!r:.80}"
        )
    x, y, width, height = (
        _coordinate(v, name, where)
        for v, name in zip(values, ("x", "y", "width", "height"), strict=True)
    )
    if width <= 0 or height <= 0:
        raise SourceError(
            f"{where}: a background box needs a positive width and height, got {box!r:.80}"
        )
    return x, y, width, height


# -- importing ----------------------------------------------------------------------------


def import_points(
    project: Project,
    path: str | Path,
    *,
    annotator: str | None = None,
    status: str | None = None,
    label: str | None = None,
) -> PointImportReport:
    """Import a point file into the project's catalog (one transaction, all or nothing).

    Args:
        project: The project.
        path: A CSV or JSON point file (see the module docstring).
        annotator: Annotator of entries that name none (default ``"import"``).
        status: Status of entries that give none (default ``"sparse"``); one of
            :data:`POINT_STATUSES`.
        label: Label of points that have none (default: the schema's label when it has
            exactly one).

    Returns:
        What was read and written.

    Raises:
        SourceError: The file is malformed, ``status`` is unknown, an image is given twice
            for one annotator, or an entry has no points and no status.
        NotFoundError: Image references that match no catalog image, or several.
        LabelError: Points outside their image, labels outside the project's schema, or
            points without a label when the schema has several.
        ConfigError: The project has no classes.
    """
    path = Path(path)
    default_status = _status(status, "--status") if status is not None else None
    default_annotator = _text(annotator) or DEFAULT_ANNOTATOR
    entries = read_point_file(path)
    labels = _resolve_labels(project, entries, label)
    report = PointImportReport(
        entries=len(entries), points=sum(len(entry.points) for entry in entries)
    )
    with project.catalog.transaction() as session:
        images = resolve_images(session, [entry.image for entry in entries])
        records: list[AnnotationRecord] = []
        problems: list[str] = []
        seen: dict[tuple[int, str], PointEntry] = {}
        for entry, entry_labels in zip(entries, labels, strict=True):
            info = images[entry.image]
            who = entry.annotator or default_annotator
            check_annotator(who, entry.where)
            earlier = seen.get((info.image_id, who))
            if earlier is not None:
                raise SourceError(
                    f"{entry.where}: image {info.uri} (id {info.image_id}) is also given for "
                    f"annotator {who!r} in {earlier.where} (as {earlier.image!r}); merge "
                    "them into one entry"
                )
            seen[(info.image_id, who)] = entry
            problems.extend(_outside(entry, info))
            records.extend(_records(entry, entry_labels, info, who, entry.status or default_status))
        if problems:
            raise LabelError(
                f"{len(problems)} point(s) or box(es) lie outside their image: "
                f"{listed(problems, '; ')}. "
                "Coordinates are pixels of the original image (x across, y down, from the "
                "top-left corner); fix them, or check the file names the right images"
            )
        written = add_annotations(session, records)
    report.images = len({info.image_id for info in images.values()})
    report.added = len(written.added)
    report.unchanged = written.unchanged
    report.superseded = written.superseded
    return report


def _resolve_labels(
    project: Project, entries: Sequence[PointEntry], label: str | None
) -> list[list[str]]:
    schema = project_schema(project)
    allowed = ", ".join(schema.labels)
    default = _text(label)
    if default is None and len(schema.labels) == 1:
        default = schema.labels[0]
    if default is not None and default not in schema.labels:
        raise LabelError(
            f"the default label {default!r} (--label) is not in the project's label schema "
            f"({allowed}); choose one of those"
        )
    unknown: dict[str, str] = {}
    unlabelled: list[str] = []
    resolved: list[list[str]] = []
    for entry in entries:
        labels: list[str] = []
        for given in entry.labels:
            if given is None:
                if default is None:
                    unlabelled.append(entry.where)
                    labels.append("")
                    continue
                given = default
            if given not in schema.labels:
                unknown.setdefault(given, entry.where)
            labels.append(given)
        resolved.append(labels)
    if unknown:
        shown = listed([f"{name!r} ({where})" for name, where in unknown.items()], ", ")
        raise LabelError(
            f"label(s) not in the project's label schema: {shown}; the schema's labels are: "
            f"{allowed}. Fix the labels in the file, or add the classes to the project"
        )
    if unlabelled:
        raise LabelError(
            f"{len(unlabelled)} point(s) have no label (first in {unlabelled[0]}) and the project "
            f"has several labels ({allowed}); add a label column or pass --label"
        )
    return resolved


def _outside(entry: PointEntry, info: ImageInfo) -> Iterator[str]:
    name = f"{entry.image} ({info.width}x{info.height})"
    for x, y in entry.points:
        if not (0 <= x <= info.width and 0 <= y <= info.height):
            yield f"{name}: point ({x:g}, {y:g}) in {entry.where}"
    for x, y, width, height in entry.background:
        if not (x >= 0 and y >= 0 and x + width <= info.width and y + height <= info.height):
            yield f"{name}: background box [{x:g}, {y:g}, {width:g}, {height:g}] in {entry.where}"


def _records(
    entry: PointEntry,
    labels: Sequence[str],
    info: ImageInfo,
    annotator: str,
    status: str | None,
) -> list[AnnotationRecord]:
    records: list[AnnotationRecord] = []
    if len(entry.points) == 0 and status is None:
        if entry.background:
            return [_background_record(entry, info, annotator)]
        raise SourceError(
            f"{entry.where}: image {entry.image!r} has no points and no status; give it "
            "status empty (it holds no objects) or give its points"
        )
    status = status or DEFAULT_STATUS
    if status == "empty" and len(entry.points):
        raise SourceError(
            f"{entry.where}: image {entry.image!r} has status empty but {len(entry.points)} "
            "point(s); remove the points or give another status"
        )
    payload = {
        "width": info.width,
        "height": info.height,
        "points": [
            {"x": float(x), "y": float(y), "label": point_label, "id": f"p{k}"}
            for k, ((x, y), point_label) in enumerate(zip(entry.points, labels, strict=True))
        ],
        "status": status,
    }
    records.append(_record(info.image_id, "points", payload, annotator))
    if entry.background:
        records.append(_background_record(entry, info, annotator))
    return records


def _background_record(entry: PointEntry, info: ImageInfo, annotator: str) -> AnnotationRecord:
    payload = {
        "width": info.width,
        "height": info.height,
        "boxes": [
            {
                "x": x,
                "y": y,
                "width": width,
                "height": height,
                "rotation": 0.0,
                "label": BACKGROUND_LABEL,
                "id": f"b{k}",
            }
            for k, (x, y, width, height) in enumerate(entry.background)
        ],
    }
    return _record(info.image_id, "box", payload, annotator)


def _record(image_id: int, kind: str, payload: dict[str, Any], annotator: str) -> AnnotationRecord:
    prefix = "points" if kind == "points" else BACKGROUND_LABEL
    key = f"{prefix}:i{image_id}:{annotator}"
    return import_record(image_id, kind, payload, annotator, key=key)
