"""Segmentation labels made outside lensloop: labelme, LabelBox and label PNGs, as regions.

Each reader turns a file into :class:`LabelEntry` records (one per image and annotator)
holding :class:`~lensloop.annotate.regions.Region` polygons and masks in the original
image's pixels. Region labels are kept as written; the importer
(:mod:`lensloop.annotate.maskfiles`) checks them against the project.

=================== ======================================================================
format              what it reads
=================== ======================================================================
``labelme``         a labelme JSON file: ``imagePath``, ``imageHeight``, ``imageWidth``
                    and ``shapes`` ``[{"label", "points", "shape_type"}]``. Shape types:
                    ``polygon`` (the default), ``rectangle`` (two corners), ``circle``
                    (centre and a point on the rim, made a polygon) and ``mask`` (labelme
                    5: a base64 PNG in ``mask`` over the box whose top-left corner is the
                    first point). ``point``, ``points``, ``line`` and ``linestrip`` shapes
                    mark no area: they are skipped and counted in the entry.
``labelbox``        a legacy LabelBox JSON export: a list of ``{"External ID", "Label":
                    {"objects": [...]}, "Created By"}``; an object has a ``title`` (or
                    ``value``) and a ``polygon`` ``[{"x", "y"}, ...]`` or a ``bbox``
                    ``{"top", "left", "height", "width"}``. Rows whose ``Label`` is
                    ``"Skip"`` are left out.
``labelbox-ndjson`` a LabelBox v2 export, one JSON object a line: ``{"data_row":
                    {"external_id", "row_data"}, "media_attributes": {"height", "width"},
                    "projects": {ID: {"labels": [{"label_details": {"created_by"},
                    "annotations": {"objects": [...]}}]}}}``; an object has a ``name``, an
                    ``annotation_kind`` and an ``ImagePolygon``'s ``polygon`` or an
                    ``ImageBoundingBox``'s ``bounding_box``. Each label is one entry.
``png``             label PNGs of class indices (see ``masks.read_label_png``; ``mask`` is
                    another name for this format), named after their images:
                    ``labels/plate1/a.png`` labels the image ``plate1/a.*``. A folder is
                    read recursively.
=================== ======================================================================

Points and boxes of these tools mark areas; their point, line and (URL-hosted) mask
objects are skipped and counted in :attr:`LabelEntry.skipped`. Coordinates are pixels
``(x, y)`` from the image's top-left corner (DESIGN.md), as all three tools write them.

Example:
    >>> entries = read_label_file("labels/", ["box", "rock"])  # doctest: +SKIP
    >>> entries[0].image, len(entries[0].regions)  # doctest: +SKIP
    ('plate1/a', 2)
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.annotate.regions import Region, label_map_regions, read_label_png
from lensloop.errors import LabelError, SourceError, UnknownNameError

__all__ = ["LABEL_FORMATS", "LabelEntry", "read_label_file"]

#: Formats :func:`read_label_file` reads (``auto`` picks one from the file).
LABEL_FORMATS = ("labelme", "labelbox", "labelbox-ndjson", "png")
#: Other names of formats.
_ALIASES = {"mask": "png"}

#: labelme shape types that mark no area (skipped and counted).
_LABELME_SKIPPED = frozenset({"point", "points", "line", "linestrip"})
_LABELME_AREAS = ("polygon", "rectangle", "circle", "mask")
#: Legacy LabelBox object geometries that mark no area (or hold it at a URL).
_LABELBOX_SKIPPED = ("point", "line", "instanceURI")
#: LabelBox v2 annotation kinds that mark no area (or hold it at a URL).
_NDJSON_SKIPPED = frozenset(
    {"ImagePoint", "ImagePolyline", "ImageSegmentationMask", "ImageClassification"}
)
_SUFFIXES = {
    "labelme": (".json",),
    "labelbox": (".json",),
    "labelbox-ndjson": (".ndjson", ".jsonl", ".json"),
    "png": (".png",),
}
_MIN_CIRCLE_VERTICES = 16
_MAX_CIRCLE_VERTICES = 1440


@dataclass(frozen=True, eq=False)
class LabelEntry:
    """The regions one annotator gave one image, as read from a label file.

    Attributes:
        image: The image reference as written (id, URI or trailing path); for label PNGs
            (``by_stem``), the PNG's path in its folder without the suffix.
        width: The image width the file states, or ``None`` when it states none.
        height: The image height the file states, or ``None``.
        regions: The labelled regions, in the file's order.
        annotator: Who labelled, when the file says.
        skipped: Shapes that mark no area and were left out, by type (``{"point": 3}``).
        by_stem: ``image`` names the image by its path without the file suffix.
        where: Where the entry is, for messages (``"a.json"``, ``"export.ndjson line 4"``).
    """

    image: str
    width: int | None
    height: int | None
    regions: tuple[Region, ...]
    annotator: str | None = None
    skipped: Mapping[str, int] = field(default_factory=dict)
    by_stem: bool = False
    where: str = ""


# -- shared checks ------------------------------------------------------------------------


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabelError(f"{where}: {name} must be a finite number, got {value!r:.80}")
    return float(value)


def _side(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LabelError(f"{where}: {name} must be a positive integer, got {value!r:.80}")
    return value


def _label(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LabelError(f"{where}: a region needs a non-empty string label, got {value!r:.80}")
    return value.strip()


def _text(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _xy_list(points: Any, where: str) -> npt.NDArray[np.float64]:
    """``[[x, y], ...]`` (labelme) or ``[{"x", "y"}, ...]`` (LabelBox) as ``(K, 2)``."""
    if not isinstance(points, list):
        raise LabelError(f"{where}: points must be a list, got {points!r:.80}")
    xy: list[tuple[float, float]] = []
    for point in points:
        if isinstance(point, Mapping):
            xy.append((_number(point.get("x"), "x", where), _number(point.get("y"), "y", where)))
        elif isinstance(point, list | tuple) and len(point) == 2:
            xy.append((_number(point[0], "x", where), _number(point[1], "y", where)))
        else:
            raise LabelError(f"{where}: a point must be [x, y] or {{x, y}}, got {point!r:.80}")
    return np.array(xy, dtype=np.float64).reshape(-1, 2)


def _polygon(label: str, points: npt.NDArray[np.float64], where: str) -> Region:
    if len(points) < 3:
        raise LabelError(f"{where}: a polygon needs at least 3 points, got {len(points)}")
    return Region(label, polygon=points)


def _rectangle(label: str, x0: float, y0: float, x1: float, y1: float) -> Region:
    left, right = min(x0, x1), max(x0, x1)
    top, bottom = min(y0, y1), max(y0, y1)
    corners = [[left, top], [right, top], [right, bottom], [left, bottom]]
    return Region(label, polygon=np.array(corners, dtype=np.float64))


def _box(label: str, box: Any, where: str) -> Region:
    if not isinstance(box, Mapping):
        raise LabelError(f"{where}: a box must be {{top, left, height, width}}, got {box!r:.80}")
    top, left, height, width = (
        _number(box.get(key), key, where) for key in ("top", "left", "height", "width")
    )
    if height <= 0 or width <= 0:
        raise LabelError(f"{where}: a box needs a positive width and height, got {dict(box)}")
    return _rectangle(label, left, top, left + width, top + height)


def _circle(label: str, points: npt.NDArray[np.float64], where: str) -> Region:
    if len(points) != 2:
        raise LabelError(
            f"{where}: a circle needs 2 points (centre, a point on the rim), got {len(points)}"
        )
    (cx, cy), (px, py) = points
    radius = math.hypot(px - cx, py - cy)
    if radius <= 0:
        raise LabelError(f"{where}: a circle's rim point is its centre (radius 0)")
    # About one vertex per pixel of circumference: the chords stay within 0.1 px of the arc.
    count = int(
        np.clip(math.ceil(2 * math.pi * radius), _MIN_CIRCLE_VERTICES, _MAX_CIRCLE_VERTICES)
    )
    angles = np.linspace(0.0, 2 * math.pi, count, endpoint=False)
    ring = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    return Region(label, polygon=ring)


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items)


# -- labelme ------------------------------------------------------------------------------


def _image_reference(image_path: str) -> str:
    """The part of labelme's ``imagePath`` (relative to the JSON file) that names the image."""
    parts = [part for part in image_path.replace("\\", "/").split("/") if part and part != "."]
    while ".." in parts:
        parts = parts[parts.index("..") + 1 :]
    if parts and parts[0].endswith(":"):  # a Windows drive
        parts = parts[1:]
    return "/".join(parts)


def _labelme_mask(
    label: str,
    shape: Mapping[str, Any],
    points: npt.NDArray[np.float64],
    size: tuple[int | None, int | None],
    where: str,
) -> Region:
    from PIL import Image, UnidentifiedImageError

    width, height = size
    if width is None or height is None:
        raise LabelError(f"{where}: a mask shape needs the file's imageWidth and imageHeight")
    encoded = shape.get("mask")
    if not isinstance(encoded, str) or len(points) != 2:
        raise LabelError(
            f"{where}: a mask shape needs a base64 PNG in 'mask' and 2 points (the corners "
            "of the box it covers)"
        )
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
            patch: npt.NDArray[np.bool_] = np.asarray(image.convert("L")) > 0
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as exc:
        raise LabelError(f"{where}: the mask is not a base64-encoded PNG ({exc})") from None
    left = math.floor(min(points[:, 0]))
    top = math.floor(min(points[:, 1]))
    rows, cols = patch.shape
    if left < 0 or top < 0 or left + cols > width or top + rows > height:
        raise LabelError(
            f"{where}: the {cols}x{rows} mask at ({left}, {top}) reaches outside the "
            f"{width}x{height} image"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + rows, left : left + cols] = patch
    return Region(label, mask=mask)


def _read_labelme(path: Path, data: Any) -> list[LabelEntry]:
    name = path.name
    if not isinstance(data, Mapping) or not isinstance(data.get("shapes"), list):
        raise LabelError(f"{path}: a labelme file is a JSON object with a 'shapes' list")
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not _image_reference(image_path):
        raise LabelError(
            f"{path}: 'imagePath' must name the image the shapes are drawn on, got "
            f"{image_path!r:.80}"
        )
    width = _side(data.get("imageWidth"), "imageWidth", str(path))
    height = _side(data.get("imageHeight"), "imageHeight", str(path))
    regions: list[Region] = []
    skipped: Counter[str] = Counter()
    for number, shape in enumerate(data["shapes"], start=1):
        where = f"{path}: shape {number}"
        if not isinstance(shape, Mapping):
            raise LabelError(f"{where}: expected an object, got {shape!r:.80}")
        kind = shape.get("shape_type") or "polygon"
        if kind in _LABELME_SKIPPED:
            skipped[str(kind)] += 1
            continue
        if kind not in _LABELME_AREAS:
            raise LabelError(
                f"{where}: unknown shape_type {kind!r}; lensloop reads "
                f"{_listed(_LABELME_AREAS)} (and skips {_listed(sorted(_LABELME_SKIPPED))})"
            )
        label = _label(shape.get("label"), where)
        where = f"{where} ({kind} {label!r})"
        points = _xy_list(shape.get("points"), where)
        if kind == "polygon" or (kind == "rectangle" and len(points) == 4):
            regions.append(_polygon(label, points, where))
        elif kind == "rectangle":
            if len(points) != 2:
                raise LabelError(f"{where}: a rectangle needs 2 corner points, got {len(points)}")
            (x0, y0), (x1, y1) = points
            regions.append(_rectangle(label, x0, y0, x1, y1))
        elif kind == "circle":
            regions.append(_circle(label, points, where))
        else:
            regions.append(_labelme_mask(label, shape, points, (width, height), where))
    entry = LabelEntry(
        image=_image_reference(image_path),
        width=width,
        height=height,
        regions=tuple(regions),
        skipped=dict(skipped),
        where=name,
    )
    return [entry]


# -- LabelBox -----------------------------------------------------------------------------


def _read_labelbox(path: Path, data: Any) -> list[LabelEntry]:
    if not isinstance(data, list):
        raise LabelError(f"{path}: a LabelBox export is a JSON list of rows")
    entries: list[LabelEntry] = []
    for number, row in enumerate(data, start=1):
        where = f"{path}: row {number}"
        if not isinstance(row, Mapping):
            raise LabelError(f"{where}: expected an object, got {row!r:.80}")
        image = _text(row.get("External ID"))
        if image is None:
            raise LabelError(f"{where}: 'External ID' must name the image")
        where = f"{where} ({image})"
        label = row.get("Label")
        if label == "Skip" or row.get("Skipped") is True:
            continue
        if label is None or label == {}:
            objects: list[Any] = []
        elif isinstance(label, Mapping) and isinstance(label.get("objects", []), list):
            objects = label.get("objects", [])
        else:
            raise LabelError(f"{where}: 'Label' must be an object with an 'objects' list")
        regions: list[Region] = []
        skipped: Counter[str] = Counter()
        for index, obj in enumerate(objects, start=1):
            here = f"{where}, object {index}"
            if not isinstance(obj, Mapping):
                raise LabelError(f"{here}: expected an object, got {obj!r:.80}")
            name = _label(obj.get("title") or obj.get("value"), here)
            if "polygon" in obj:
                regions.append(_polygon(name, _xy_list(obj["polygon"], here), here))
            elif "bbox" in obj:
                regions.append(_box(name, obj["bbox"], here))
            else:
                found = next((key for key in _LABELBOX_SKIPPED if key in obj), None)
                if found is None:
                    raise LabelError(
                        f"{here}: object {name!r} has no 'polygon' or 'bbox'; lensloop reads "
                        f"those (and skips {_listed(_LABELBOX_SKIPPED)})"
                    )
                skipped["mask URL" if found == "instanceURI" else found] += 1
        entries.append(
            LabelEntry(
                image=image,
                width=None,
                height=None,
                regions=tuple(regions),
                annotator=_text(row.get("Created By")),
                skipped=dict(skipped),
                where=f"{path.name} row {number}",
            )
        )
    return entries


def _ndjson_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelError(
                f"{path}: line {number} column {exc.colno}: not valid JSON ({exc.msg}); a "
                "LabelBox NDJSON export has one JSON object a line"
            ) from None


def _ndjson_image(row: Mapping[str, Any], where: str) -> str:
    data_row = row.get("data_row")
    if not isinstance(data_row, Mapping):
        raise LabelError(f"{where}: a LabelBox v2 row needs a 'data_row' object")
    for key in ("external_id", "global_key"):
        text = _text(data_row.get(key))
        if text is not None:
            return text
    url = _text(data_row.get("row_data"))
    if url is not None:
        return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    raise LabelError(f"{where}: 'data_row' has no external_id, global_key or row_data")


def _ndjson_labels(row: Mapping[str, Any], where: str) -> Iterator[Mapping[str, Any]]:
    projects = row.get("projects") or {}
    if not isinstance(projects, Mapping):
        raise LabelError(f"{where}: 'projects' must be an object of project id to labels")
    for project in projects.values():
        labels = project.get("labels", []) if isinstance(project, Mapping) else None
        if not isinstance(labels, list):
            raise LabelError(f"{where}: a project needs a 'labels' list")
        for label in labels:
            if not isinstance(label, Mapping):
                raise LabelError(f"{where}: a label must be an object, got {label!r:.80}")
            yield label


def _ndjson_regions(objects: Any, where: str) -> tuple[list[Region], Counter[str]]:
    if not isinstance(objects, list):
        raise LabelError(f"{where}: 'annotations.objects' must be a list")
    regions: list[Region] = []
    skipped: Counter[str] = Counter()
    for index, obj in enumerate(objects, start=1):
        here = f"{where}, object {index}"
        if not isinstance(obj, Mapping):
            raise LabelError(f"{here}: expected an object, got {obj!r:.80}")
        kind = obj.get("annotation_kind")
        if kind in _NDJSON_SKIPPED:
            skipped[str(kind)] += 1
            continue
        name = _label(obj.get("name") or obj.get("value"), here)
        if kind == "ImagePolygon" or (kind is None and "polygon" in obj):
            regions.append(_polygon(name, _xy_list(obj.get("polygon"), here), here))
        elif kind == "ImageBoundingBox" or (kind is None and "bounding_box" in obj):
            regions.append(_box(name, obj.get("bounding_box"), here))
        else:
            raise LabelError(
                f"{here}: unknown annotation_kind {kind!r}; lensloop reads ImagePolygon and "
                f"ImageBoundingBox (and skips {_listed(sorted(_NDJSON_SKIPPED))})"
            )
    return regions, skipped


def _read_ndjson_rows(path: Path, rows: Iterator[tuple[int, Any]]) -> list[LabelEntry]:
    entries: list[LabelEntry] = []
    for number, row in rows:
        where = f"{path}: line {number}"
        if not isinstance(row, Mapping):
            raise LabelError(f"{where}: expected a JSON object, got {row!r:.80}")
        image = _ndjson_image(row, where)
        where = f"{where} ({image})"
        media = row.get("media_attributes") or {}
        if not isinstance(media, Mapping):
            raise LabelError(f"{where}: 'media_attributes' must be an object")
        width = _side(media.get("width"), "media_attributes.width", where)
        height = _side(media.get("height"), "media_attributes.height", where)
        for count, label in enumerate(_ndjson_labels(row, where), start=1):
            here = f"{where}, label {count}"
            annotations = label.get("annotations") or {}
            if not isinstance(annotations, Mapping):
                raise LabelError(f"{here}: 'annotations' must be an object")
            regions, skipped = _ndjson_regions(annotations.get("objects", []), here)
            details = label.get("label_details")
            annotator = _text(details.get("created_by")) if isinstance(details, Mapping) else None
            entries.append(
                LabelEntry(
                    image=image,
                    width=width,
                    height=height,
                    regions=tuple(regions),
                    annotator=annotator,
                    skipped=dict(skipped),
                    where=f"{path.name} line {number}",
                )
            )
    return entries


def _read_ndjson(path: Path, data: Any) -> list[LabelEntry]:
    if isinstance(data, str):
        return _read_ndjson_rows(path, _ndjson_rows(path, data))
    rows = data if isinstance(data, list) else [data]
    return _read_ndjson_rows(path, iter(enumerate(rows, start=1)))


# -- label PNGs ---------------------------------------------------------------------------


def _read_png(
    path: Path, reference: str, classes: Sequence[str], values: Mapping[int, str] | None
) -> LabelEntry:
    labels = read_label_png(path, classes, values=values)
    height, width = labels.shape
    return LabelEntry(
        image=reference,
        width=width,
        height=height,
        regions=tuple(label_map_regions(labels, classes)),
        by_stem=True,
        where=path.name,
    )


# -- dispatch -----------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such label file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot be read as UTF-8 text: {exc}") from None


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(
            f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None


def _detect(path: Path, text: str) -> tuple[str, Any]:
    """Work out a JSON file's format from its content; return it with the parsed data."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, Mapping) and "data_row" in row:
            return "labelbox-ndjson", text
        return "labelme", _parse_json(path, text)  # raises, naming where the JSON breaks
    if isinstance(data, Mapping):
        if "shapes" in data:
            return "labelme", data
        if "data_row" in data:
            return "labelbox-ndjson", data
    if isinstance(data, list):
        first_row = next((row for row in data if isinstance(row, Mapping)), {})
        if "data_row" in first_row:
            return "labelbox-ndjson", data
        if "External ID" in first_row or "Label" in first_row or not data:
            return "labelbox", data
    raise LabelError(
        f"{path}: not a label file lensloop knows: expected a labelme file (an object with "
        "'shapes'), a LabelBox export (a list of rows with 'External ID' and 'Label') or a "
        "LabelBox v2 NDJSON export (rows with 'data_row'); pass format= to say which"
    )


_JSON_READERS: dict[str, Callable[[Path, Any], list[LabelEntry]]] = {
    "labelme": _read_labelme,
    "labelbox": _read_labelbox,
    "labelbox-ndjson": _read_ndjson,
}


def _read_one(
    path: Path,
    reference: str,
    classes: Sequence[str],
    format: str,
    values: Mapping[int, str] | None,
) -> list[LabelEntry]:
    suffix = path.suffix.lower()
    if format == "auto":
        if suffix == ".png":
            format = "png"
        elif suffix in (".ndjson", ".jsonl"):
            format = "labelbox-ndjson"
        elif suffix != ".json":
            raise LabelError(
                f"{path}: unknown label file type {path.suffix or '(no suffix)'!r}; give a "
                ".json (labelme, LabelBox), .ndjson (LabelBox v2) or .png (label map) file, "
                "or pass format= (one of: " + ", ".join(LABEL_FORMATS) + ")"
            )
    if format == "png":
        return [_read_png(path, reference, classes, values)]
    text = _read_text(path)
    if format == "auto":
        format, data = _detect(path, text)
    elif format == "labelbox-ndjson" and suffix != ".json":
        data = text
    elif format == "labelbox-ndjson":
        data = _detect(path, text)[1]
    else:
        data = _parse_json(path, text)
    return _JSON_READERS[format](path, data)


def _folder_suffixes(format: str) -> tuple[str, ...]:
    if format == "auto":
        return tuple(sorted({suffix for group in _SUFFIXES.values() for suffix in group}))
    return _SUFFIXES[format]


def _folder_files(folder: Path, format: str) -> Iterator[Path]:
    suffixes = _folder_suffixes(format)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes:
            yield path


def read_label_file(
    path: str | PathLike[str],
    classes: Sequence[str],
    *,
    format: str = "auto",
    values: Mapping[int, str] | None = None,
) -> list[LabelEntry]:
    """Read a label file, or a folder of them, as per-image regions.

    Args:
        path: A labelme ``.json``, a LabelBox ``.json`` or ``.ndjson`` export, a label
            ``.png``, or a folder (searched recursively) of such files (with ``format``
            given, of that format's files only).
        classes: The project's classes: in a label PNG, value ``k`` is ``classes[k - 1]``.
            Region labels of the other formats are kept as written.
        format: One of :data:`LABEL_FORMATS` (``mask`` for ``png``), or ``auto``
            (default): from the suffix and, for ``.json``, the content (an object with
            ``shapes`` is labelme, a list of rows with ``External ID`` / ``Label`` is
            LabelBox, rows with ``data_row`` are LabelBox v2), file by file.
        values: For label PNGs numbered differently from the project, ``{pixel value:
            class name, "background" or "void"}`` (see
            :func:`~lensloop.annotate.regions.read_label_png`).

    Returns:
        One entry per image and annotator, in file order (folders: sorted by path).

    Raises:
        UnknownNameError: ``format`` is not one of :data:`LABEL_FORMATS` or ``auto``.
        SourceError: The path does not exist, or a file cannot be read.
        LabelError: A file is malformed; the message names the file, the place in it
            (shape, row, line, object) and the problem.
    """
    format = _ALIASES.get(format, format)
    if format != "auto" and format not in LABEL_FORMATS:
        raise UnknownNameError("label file format", format, ("auto", *LABEL_FORMATS, *_ALIASES))
    path = Path(path)
    if path.is_dir():
        entries: list[LabelEntry] = []
        files = list(_folder_files(path, format))
        if not files:
            raise SourceError(
                f"{path} holds no label files (searched for "
                f"{', '.join(_folder_suffixes(format))} files)"
            )
        for file in files:
            reference = file.relative_to(path).with_suffix("").as_posix()
            entries.extend(_read_one(file, reference, classes, format, values))
        return entries
    if not path.exists():
        raise SourceError(f"{path}: no such label file or folder")
    return _read_one(path, path.stem, classes, format, values)
