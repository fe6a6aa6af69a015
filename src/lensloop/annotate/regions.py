"""Labelled regions (polygons and masks) and the label maps they rasterise to.

A :class:`Region` is one labelled area of an image: a polygon in pixel ``(x, y)``
coordinates, or an ``(H, W)`` boolean mask. :func:`rasterise` paints regions into a label
map (:mod:`lensloop.annotate.labelmap`: ``uint8``, 0 background, ``k`` the ``k``-th
class, 255 void).

**Pixel-centre convention.** Pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``
and lies inside a polygon when its centre ``(j + 0.5, i + 0.5)`` does, as for the
counting task's background regions. A centre exactly on an edge counts for left and top
edges only (the top-left rule of graphics rasterisers), so two polygons that share an
edge never both paint it and leave no gap between them; an axis-aligned rectangle with
integer corners covers exactly its area in pixels.

**Drawing order.** Where regions overlap, the one drawn last wins. Annotators draw a
container (a core ``box``) around the things inside it (``rock`` fragments), in any
order, so by default regions are drawn larger first: a container is painted before what
it contains. ``draw_order`` makes it explicit, class by class, first at the bottom
(``["box", "rock"]``). Void regions (``void`` / ``ignore``) are drawn last, on top of
everything, unless ``draw_order`` places ``void`` itself.

Example:
    >>> import numpy as np
    >>> box = Region("box", polygon=np.array([[0, 0], [6, 0], [6, 4], [0, 4]]))
    >>> rock = Region("rock", polygon=np.array([[1, 1], [3, 1], [3, 3], [1, 3]]))
    >>> rasterise([rock, box], (4, 6), ["box", "rock"])
    array([[1, 1, 1, 1, 1, 1],
           [1, 2, 2, 1, 1, 1],
           [1, 2, 2, 1, 1, 1],
           [1, 1, 1, 1, 1, 1]], dtype=uint8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.annotate.labelmap import BACKGROUND, MAX_CLASSES, VOID, class_index
from lensloop.annotate.rle import counts_to_mask
from lensloop.errors import LabelError, SourceError

__all__ = [
    "Region",
    "fill_polygon",
    "label_map_regions",
    "rasterise",
    "read_label_png",
    "regions_from_payload",
]

_MAX_LISTED = 10
#: PIL modes whose pixels are integers (label values or palette indices), not colours.
_INDEX_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")
#: The payload key that holds a kind's regions (as in ``annotate.labelstudio.results``).
_PAYLOAD_KEYS = {"polygon": "polygons", "mask": "masks", "box": "boxes"}


@dataclass(frozen=True, eq=False)
class Region:
    """One labelled area of an image: a polygon or a mask (exactly one of them).

    Attributes:
        label: The class name, or ``background`` / ``void`` / ``ignore``.
        polygon: ``(K, 2)`` float64 pixel ``(x, y)`` vertices, ``K >= 3``; the polygon is
            closed (the last vertex joins the first).
        mask: ``(H, W)`` bool, the image's size.

    Raises:
        LabelError: The label is empty, both or neither of ``polygon`` and ``mask`` are
            given, the polygon is not ``(K >= 3, 2)`` finite numbers, or the mask is not a
            2-D boolean (or integer) array.
    """

    label: str
    polygon: npt.NDArray[np.float64] | None = None
    mask: npt.NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise LabelError(f"a region needs a non-empty label, got {self.label!r}")
        if (self.polygon is None) == (self.mask is None):
            raise LabelError(
                f"region {self.label!r}: give exactly one of polygon and mask, got "
                f"{'both' if self.polygon is not None else 'neither'}"
            )
        if self.polygon is not None:
            object.__setattr__(self, "polygon", _as_polygon(self.polygon, self.label))
        if self.mask is not None:
            object.__setattr__(self, "mask", _as_mask(self.mask, self.label))

    def area(self) -> float:
        """Return the area in square pixels: the shoelace area, or the mask's pixel count."""
        if self.mask is not None:
            return float(np.count_nonzero(self.mask))
        polygon = np.asarray(self.polygon)
        x, y = polygon[:, 0], polygon[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _as_polygon(polygon: Any, label: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise LabelError(
            f"region {label!r}: a polygon must be (K, 2) numbers (x, y), got {polygon!r:.80}"
        ) from None
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 3:
        raise LabelError(
            f"region {label!r}: a polygon must be (K, 2) pixel (x, y) vertices with K >= 3, "
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise LabelError(f"region {label!r}: polygon vertices must be finite numbers")
    return array


def _as_mask(mask: Any, label: str) -> npt.NDArray[np.bool_]:
    array = np.asarray(mask)
    if array.ndim != 2:
        raise LabelError(f"region {label!r}: a mask must be a 2-D (H, W) array, got {array.shape}")
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "iu":
        nonzero: npt.NDArray[np.bool_] = array != 0
        return nonzero
    raise LabelError(
        f"region {label!r}: a mask must be boolean (or 0/1 integers), got dtype {array.dtype}"
    )


# -- polygons -------------------------------------------------------------------------------


def fill_polygon(
    polygon: npt.ArrayLike, shape: tuple[int, int]
) -> tuple[tuple[slice, slice], npt.NDArray[np.bool_]]:
    """Return the pixels inside a polygon, within the window of the image it covers.

    Args:
        polygon: ``(K, 2)`` pixel ``(x, y)`` vertices (closed; self-intersecting polygons
            are filled by the even-odd rule).
        shape: ``(H, W)`` of the image.

    Returns:
        ``(rows, cols)`` slices of the image and an ``(h, w)`` bool array over them: pixel
        ``(i, j)`` is inside when its centre is (see the module docstring). A polygon
        wholly outside the image gives empty slices.

    Raises:
        LabelError: ``polygon`` is not ``(K, 2)`` finite numbers, or ``shape`` is not two
            positive integers.

    Example:
        >>> window, inside = fill_polygon([[0.5, 0.5], [3.5, 0.5], [0.5, 2.5]], (4, 4))
        >>> window
        (slice(0, 2, None), slice(0, 3, None))
        >>> inside.astype(int)
        array([[1, 1, 1],
               [1, 1, 0]])
    """
    height, width = _check_shape(shape)
    points = np.asarray(polygon, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise LabelError(
            f"a polygon must be (K, 2) finite pixel (x, y) vertices, got shape {points.shape}"
        )
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Each non-horizontal edge crosses the centres of rows i with ylow <= i + 0.5 < yhigh.
    ylow, yhigh = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.clip(np.ceil(ylow - 0.5), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(yhigh - 0.5), 0, height).astype(np.int64)
    spans = np.where(y0 != y1, stop - first, 0).clip(min=0)
    empty = (slice(0, 0), slice(0, 0)), np.zeros((0, 0), dtype=bool)
    total = int(spans.sum())
    if total == 0:
        return empty
    edge = np.repeat(np.arange(points.shape[0]), spans)
    offsets = np.arange(total) - np.repeat(np.cumsum(spans) - spans, spans)
    rows = first[edge] + offsets
    centre = rows + 0.5
    xa, ya, xb, yb = x0[edge], y0[edge], x1[edge], y1[edge]
    crossing = xa + (centre - ya) * (xb - xa) / (yb - ya)
    order = np.lexsort((crossing, rows))
    rows, crossing = rows[order], crossing[order]
    # Crossings pair up along each row: inside from a crossing to the next (even-odd).
    span_rows = rows[0::2]
    start = np.clip(np.ceil(crossing[0::2] - 0.5), 0, width).astype(np.int64)
    end = np.clip(np.ceil(crossing[1::2] - 0.5), 0, width).astype(np.int64)
    keep = end > start
    span_rows, start, end = span_rows[keep], start[keep], end[keep]
    if span_rows.size == 0:
        return empty
    r0, r1 = int(span_rows.min()), int(span_rows.max()) + 1
    c0, c1 = int(start.min()), int(end.max())
    steps = np.zeros((r1 - r0, c1 - c0 + 1), dtype=np.int8)
    np.add.at(steps, (span_rows - r0, start - c0), 1)
    np.add.at(steps, (span_rows - r0, end - c0), -1)
    inside: npt.NDArray[np.bool_] = np.cumsum(steps, axis=1, dtype=np.int8)[:, :-1] > 0
    return (slice(r0, r1), slice(c0, c1)), inside


# -- rasterising ----------------------------------------------------------------------------


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        height, width = (int(side) for side in shape)
    except (TypeError, ValueError):
        raise LabelError(f"shape must be (height, width), got {shape!r}") from None
    if height <= 0 or width <= 0 or (height, width) != tuple(shape):
        raise LabelError(f"shape must be two positive integers (height, width), got {shape!r}")
    return height, width


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise LabelError(f"classes must be a list of class names, got the string {classes!r}")
    names = tuple(classes)
    if len(names) > MAX_CLASSES:
        raise LabelError(f"a label map holds at most {MAX_CLASSES} classes, got {len(names)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise LabelError(f"classes are listed more than once: {', '.join(repeated)}")
    return names


def _known(classes: Sequence[str]) -> str:
    listed = ", ".join(classes) if classes else "no classes"
    return f"the classes are: {listed} (and background, void / ignore)"


def _values(regions: Sequence[Region], classes: tuple[str, ...]) -> list[int]:
    values: list[int] = []
    unknown: dict[str, int] = {}
    for number, region in enumerate(regions):
        if not isinstance(region, Region):
            raise LabelError(f"region {number} is a {type(region).__name__}, not a Region")
        value = class_index(region.label, classes)
        if value is None:
            unknown.setdefault(region.label, number)
            value = BACKGROUND
        values.append(value)
    if unknown:
        named = [f"{label!r} (region {n})" for label, n in unknown.items()]
        listed = ", ".join(named[:_MAX_LISTED]) + (" and more" if len(named) > _MAX_LISTED else "")
        raise LabelError(
            f"unknown region label(s): {listed}; {_known(classes)}. Fix the labels, or "
            "add the classes to the project"
        )
    return values


def _ranks(draw_order: Sequence[str], classes: tuple[str, ...]) -> dict[int, int]:
    if isinstance(draw_order, str):
        raise LabelError(f"draw_order must be a list of class names, got the string {draw_order!r}")
    ranks: dict[int, int] = {}
    for position, name in enumerate(draw_order):
        value = class_index(name, classes)
        if value is None:
            raise LabelError(f"draw_order names unknown class {name!r}; {_known(classes)}")
        if value in ranks:
            raise LabelError(
                f"draw_order names {name!r} and {draw_order[ranks[value]]!r}, which are the "
                "same label; list each class once"
            )
        ranks[value] = position
    return ranks


def _drawing_order(
    regions: Sequence[Region],
    values: Sequence[int],
    classes: tuple[str, ...],
    draw_order: Sequence[str] | None,
) -> list[int]:
    ranks = _ranks(draw_order, classes) if draw_order is not None else {}
    areas = [region.area() for region in regions]

    def key(index: int) -> tuple[int, int, float, int]:
        value = values[index]
        if value in ranks:
            group, rank = 1, ranks[value]
        elif value == VOID:
            group, rank = 2, 0
        else:
            group, rank = 0, 0
        return group, rank, -areas[index], index

    return sorted(range(len(regions)), key=key)


def rasterise(
    regions: Sequence[Region],
    shape: tuple[int, int],
    classes: Sequence[str],
    *,
    draw_order: Sequence[str] | None = None,
    unlabelled: int = BACKGROUND,
) -> npt.NDArray[np.uint8]:
    """Paint regions into a label map, later regions over earlier ones.

    Args:
        regions: The regions, in any order.
        shape: ``(H, W)`` of the label map (the image's size).
        classes: The project's classes: label ``k`` is ``classes[k - 1]``.
        draw_order: Labels in the order to draw them, first at the bottom
            (``["box", "rock"]``). Regions of labels not listed are drawn before the
            listed ones, larger first; void regions are drawn last unless ``void`` is
            listed. ``None`` (default): larger regions first, void last.
        unlabelled: The label of pixels no region covers: :data:`BACKGROUND` (the
            regions label everything of interest) or :data:`VOID` (only the regions are
            labelled; the rest is ignored by the loss and the scores).

    Returns:
        ``(H, W)`` ``uint8`` label map.

    Raises:
        LabelError: A region's label is not a class, ``background`` or ``void``; a mask's
            shape is not ``shape``; ``draw_order`` names an unknown label or one label
            twice; ``shape``, ``classes`` or ``unlabelled`` are invalid.
    """
    height, width = _check_shape(shape)
    names = _check_classes(classes)
    if isinstance(unlabelled, bool) or unlabelled not in (BACKGROUND, VOID):
        raise LabelError(
            f"unlabelled must be {BACKGROUND} (background) or {VOID} (void), got {unlabelled!r}"
        )
    values = _values(regions, names)
    for number, region in enumerate(regions):
        if region.mask is not None and region.mask.shape != (height, width):
            raise LabelError(
                f"region {number} ({region.label!r}) has a {region.mask.shape[0]}x"
                f"{region.mask.shape[1]} mask but the label map is {height}x{width} "
                "(rows x columns); a mask must cover the whole image"
            )
    labels = np.full((height, width), unlabelled, dtype=np.uint8)
    for index in _drawing_order(regions, values, names, draw_order):
        region, value = regions[index], values[index]
        if region.polygon is not None:
            window, inside = fill_polygon(region.polygon, (height, width))
            labels[window][inside] = value
        elif region.mask is not None:
            labels[region.mask] = value
    return labels


# -- catalog payloads -----------------------------------------------------------------------


def _items(payload: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    key = _PAYLOAD_KEYS[kind]
    items = payload.get(key)
    if not isinstance(items, list):
        raise LabelError(f"a {kind} payload needs a {key!r} list, got {items!r:.80}")
    for number, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise LabelError(f"{kind} payload, region {number}: expected an object")
        if not isinstance(item.get("label"), str):
            raise LabelError(f"{kind} payload, region {number}: needs a string 'label'")
    return items


def _number(item: Mapping[str, Any], key: str, where: str) -> float:
    value = item.get(key, 0.0 if key == "rotation" else None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabelError(f"{where}: expected a number for {key!r}, got {value!r}")
    return float(value)


def _box_polygon(item: Mapping[str, Any], where: str) -> npt.NDArray[np.float64]:
    x, y, width, height, rotation = (
        _number(item, key, where) for key in ("x", "y", "width", "height", "rotation")
    )
    theta = math.radians(rotation)
    along = np.array([math.cos(theta), math.sin(theta)]) * width
    down = np.array([-math.sin(theta), math.cos(theta)]) * height
    origin = np.array([x, y])
    return np.stack([origin, origin + along, origin + along + down, origin + down])


def regions_from_payload(kind: str, payload: Mapping[str, Any]) -> list[Region]:
    """Return the regions of a catalog ``polygon``, ``mask`` or ``box`` annotation.

    The payload formats are those of :mod:`lensloop.annotate.labelstudio.results`; a box
    becomes its four (rotated) corners.

    Args:
        kind: The annotation's kind: ``polygon``, ``mask`` or ``box``.
        payload: Its payload; a deletion (``{"deleted": true}``) has no regions.

    Returns:
        One region per polygon, mask or box, in the payload's order.

    Raises:
        LabelError: ``kind`` is not one of those, or the payload is malformed (the
            message names the region).
    """
    if kind not in _PAYLOAD_KEYS:
        raise LabelError(
            f"annotation kind {kind!r} has no regions; valid kinds: {', '.join(_PAYLOAD_KEYS)}"
        )
    if not isinstance(payload, Mapping):
        raise LabelError(f"a {kind} payload must be an object, got {type(payload).__name__}")
    if payload.get("deleted"):
        return []
    regions: list[Region] = []
    for number, item in enumerate(_items(payload, kind)):
        where = f"{kind} payload, region {number} ({item.get('id', number)})"
        try:
            if kind == "polygon":
                region = Region(item["label"], polygon=item.get("points"))
            elif kind == "box":
                region = Region(item["label"], polygon=_box_polygon(item, where))
            else:
                region = Region(item["label"], mask=counts_to_mask(item))
        except LabelError as exc:
            raise LabelError(f"{where}: {exc}") from exc
        regions.append(region)
    return regions


# -- label PNGs -----------------------------------------------------------------------------


def _listed(values: Sequence[int]) -> str:
    shown = ", ".join(map(str, values[:_MAX_LISTED]))
    return shown + (f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else "")


def _read_indices(path: Path) -> npt.NDArray[Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in _INDEX_MODES:
                raise LabelError(
                    f"{path}: a label PNG must hold class indices (8-bit greyscale or a "
                    f"palette image), but this one is {image.mode}; save the label map as "
                    "mode 'L' or 'P' with one value per class, not as colours"
                )
            if getattr(image, "n_frames", 1) > 1:
                raise LabelError(f"{path}: a label PNG must have one frame")
            return np.asarray(image)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such label file") from None
    except UnidentifiedImageError:
        raise LabelError(f"{path}: not an image PNG lensloop can read") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read: {exc}") from None


def _value_table(
    values: Mapping[int, str], classes: tuple[str, ...], path: Path
) -> npt.NDArray[np.int32]:
    table = np.full(65536, -1, dtype=np.int32)
    unknown: list[str] = []
    for pixel, name in values.items():
        if isinstance(pixel, bool) or not isinstance(pixel, int | np.integer):
            raise LabelError(f"values: keys must be pixel values (ints), got {pixel!r}")
        if not 0 <= int(pixel) < table.size:
            raise LabelError(f"values: pixel value {pixel} is out of range 0..{table.size - 1}")
        index = class_index(str(name), classes)
        if index is None:
            unknown.append(f"{pixel}: {name!r}")
            continue
        table[int(pixel)] = index
    if unknown:
        raise LabelError(
            f"{path}: values maps pixel values to unknown labels ({', '.join(unknown)}); "
            f"{_known(classes)}"
        )
    return table


def read_label_png(
    path: str | PathLike[str],
    classes: Sequence[str],
    *,
    values: Mapping[int, str] | None = None,
) -> npt.NDArray[np.uint8]:
    """Read a PNG of class indices as a label map.

    The pixels are read as integers: the grey level of an 8- or 16-bit greyscale PNG, the
    palette index of a palette ('P' mode) PNG (whatever colours the palette shows).

    Args:
        path: The PNG file.
        classes: The project's classes: label ``k`` is ``classes[k - 1]``.
        values: How the file numbers its labels when that differs from the project:
            ``{pixel value: class name, "background" or "void"}``, covering every value
            in the file. Default: the file uses the project's numbering (0 background,
            ``k`` the ``k``-th class, 255 void).

    Returns:
        ``(H, W)`` ``uint8`` label map.

    Raises:
        SourceError: The file is missing or cannot be read.
        LabelError: The file is not an index image (RGB colours, for example), or it holds
            values that are not labels (the message lists them and how to map them).
    """
    path = Path(path)
    names = _check_classes(classes)
    pixels = _read_indices(path)
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8)
    if pixels.dtype.kind not in "iu":  # pragma: no cover - the modes above are integers
        raise LabelError(f"{path}: pixels of dtype {pixels.dtype} are not label values")
    present = np.unique(pixels)
    if values is not None:
        table = _value_table(values, names, path)
        unmapped = [int(v) for v in present if not 0 <= v < table.size or table[v] < 0]
        if unmapped:
            raise LabelError(
                f"{path}: pixel value(s) {_listed(unmapped)} are not in values; map each "
                "value in the file to a class name, 'background' or 'void'"
            )
        mapped: npt.NDArray[np.uint8] = table[pixels].astype(np.uint8)
        return mapped
    allowed = set(range(len(names) + 1)) | {VOID}
    bad = [int(v) for v in present if int(v) not in allowed]
    if bad:
        raise LabelError(
            f"{path}: pixel value(s) {_listed(bad)} are not labels of this project: 0 is "
            f"background, 1..{len(names)} are {', '.join(names) or 'the classes'} and "
            f"{VOID} is void. If the file numbers its labels differently, pass values "
            "mapping each pixel value to a class name, 'background' or 'void' (--values "
            "on the command line)"
        )
    labels: npt.NDArray[np.uint8] = pixels.astype(np.uint8)
    return labels


def label_map_regions(labels: npt.NDArray[np.uint8], classes: Sequence[str]) -> list[Region]:
    """Split a label map into one mask region per label present (background left out).

    Rasterising the regions over a background fills the label map back in:
    ``rasterise(label_map_regions(labels, classes), labels.shape, classes)`` equals
    ``labels``.

    Args:
        labels: ``(H, W)`` ``uint8`` label map.
        classes: The project's classes: label ``k`` is ``classes[k - 1]``.

    Returns:
        A region per class present, in class order, then a ``void`` region if 255 is.

    Raises:
        LabelError: ``labels`` is not a 2-D integer array, or holds values that are not
            labels.
    """
    names = _check_classes(classes)
    array = np.asarray(labels)
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise LabelError(
            f"labels must be a 2-D integer (H, W) label map, got {array.dtype} {array.shape}"
        )
    present = [int(v) for v in np.unique(array)]
    bad = [v for v in present if not (0 <= v <= len(names) or v == VOID)]
    if bad:
        raise LabelError(
            f"label map values {_listed(bad)} are not labels: 0 is background, "
            f"1..{len(names)} the classes, {VOID} void"
        )
    regions: list[Region] = []
    for value in present:
        if value == BACKGROUND:
            continue
        label = "void" if value == VOID else names[value - 1]
        regions.append(Region(label, mask=array == value))
    return regions
