"""Region measurements from a label map: how much of each class, in how many fragments.

A geologist's core-box photograph, a cell mask and a particle mask all ask the same
questions of a label map (:mod:`lensloop.annotate.labelmap`; predicted or
annotated): how much of the image is each class, in how many pieces, how large and how
ragged are they. :func:`measure_regions` answers them per class (background included)
and per fragment; :func:`summarise` turns the answers into a few named numbers per image
(:class:`SummarySpec`, e.g. ``"intact_rock = fraction(rock, of=box)"``), and
:func:`measurements_rows` / :func:`write_measurements_csv` make a CSV of one row per image.

Definitions, fixed here once:

- **Area** of a class: its pixels, every one of them (fragments below ``min_area``
  included); **area fraction**: that area over the image's non-void pixels (``None``
  when every pixel is void). Void pixels (255) belong to no class.
- **Fragment**: a connected component of one class's pixels, with 8-connectivity (pixels
  that touch at a corner are one fragment; :func:`scipy.ndimage.label` with a 3 x 3
  structure). Void splits fragments like any other label. Only fragments of at least
  ``min_area`` pixels are counted and enter the fragment statistics below.
- **Perimeter** of a fragment: the estimator of :func:`skimage.measure.perimeter` with
  ``neighborhood=4``, the length of a contour through the centres of the fragment's
  border pixels, diagonal steps weighted sqrt(2) (Benkrid & Crookes). Holes add their
  own contour. It is computed for every fragment of a class at once, a strip of rows at
  a time, with exactly that estimator's weights (fragments of one class never touch, so
  each border pixel's neighbourhood sees only its own fragment); the result equals
  :func:`skimage.measure.perimeter` of each fragment alone.
- **Complexity** of a fragment: ``perimeter ** 2 / (4 * pi * area)`` (the inverse of
  the isoperimetric "circularity"): 1 for an ideal disc, larger for elongated, ragged or
  holed shapes. On pixels it reads 1.04 to 1.10 for digital discs of radius 10 to 80
  (the estimator over-reads round contours by a few percent), 1.21 for a 40 x 40 square
  (4 / pi = 1.27 ideally) and about 80 for a comb of 14 thin teeth. Fragments of a few
  pixels read low, since the contour runs through pixel centres (a single pixel has
  perimeter 0 and complexity 0): set ``min_area`` to leave specks out. A class's
  complexity is the **area-weighted mean** over its fragments,
  ``sum(perimeter ** 2) / (4 * pi * sum(area))``, so large fragments dominate and
  specks hardly count; ``None`` without fragments.
- **Largest** and **mean fragment**: the largest and the mean fragment area (0 and
  ``None`` without fragments).
- **Physical units**: given ``pixel_size`` (units per pixel, e.g. mm), areas are also
  reported in units² and perimeters in units; the ``_px`` values stay in pixels.

Memory and time: the label map is used as ``uint8``; each class costs one boolean mask
and one ``int32`` component image (5 bytes per pixel, reused from class to class) plus
strips of about a million pixels, so a 6000 x 4000 map needs about 150 MB beyond its own
24 MB, and a few seconds. SciPy is imported when measuring (it comes with
``lensloop[embed]``).

Summary grammar (:meth:`SummarySpec.parse`)::

    spec     = NAME "=" FUNCTION "(" classes [ "," "of" "=" classes ] ")"
    classes  = CLASS { "+" CLASS }
    FUNCTION = area | fraction | count | largest | mean | complexity | perimeter
    CLASS    = a class name as written (inner spaces allowed, "background" for label 0),
               or quoted with '...' or "..." when it holds + , = ( ) or quotes

A function of several classes pools their fragments. ``fraction(S)`` is the area of the
classes S over the non-void pixels; ``fraction(S, of=R)`` is the area of S over the area
of the classes R **together with S**. A label map gives each pixel one label, so the rock
lying in a core box is labelled ``rock``, not ``box``: ``fraction(rock, of=box)`` is the
share of the box (its own pixels and the rock in it) that is rock, and means the same
as ``fraction(rock, of=box+rock)``. ``area``, ``largest``, ``mean`` and ``perimeter``
are in pixels, or in physical units when the measurements have a ``pixel_size``.

Example:
    >>> import numpy as np
    >>> labels = np.zeros((20, 20), np.uint8)
    >>> labels[2:18, 2:18] = 1          # the box ...
    >>> labels[4:8, 4:16] = 2           # ... holds two pieces of rock
    >>> labels[10:12, 4:16] = 2
    >>> found = measure_regions(labels, ["box", "rock"])
    >>> found["rock"].area_px, found["rock"].fragments, found["rock"].largest_fragment_px
    (72, 2, 48)
    >>> specs = parse_summary(["intact = fraction(rock, of=box)", "pieces = count(rock)"])
    >>> summarise(found, specs)
    {'intact': 0.28125, 'pieces': 2}
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lensloop.annotate.labelmap import BACKGROUND_NAMES, VOID
from lensloop.errors import ConfigError
from lensloop.tasks.segment.scoring import as_label_map, label_histogram, label_names

__all__ = [
    "FUNCTIONS",
    "ClassMeasurements",
    "FragmentArrays",
    "ImageMeasurements",
    "SummarySpec",
    "default_summary",
    "measure_regions",
    "measurements_row",
    "measurements_rows",
    "parse_summary",
    "summarise",
    "write_measurements_csv",
]

#: The summary functions and what each gives.
FUNCTIONS: Final = {
    "area": "area of the classes (pixels, or units² with a pixel_size)",
    "fraction": "area over the non-void pixels, or with of= over the area of those classes",
    "count": "number of fragments of at least min_area pixels",
    "largest": "area of the largest fragment (0 without fragments)",
    "mean": "mean fragment area (empty without fragments)",
    "complexity": "area-weighted mean of perimeter² / (4π·area) over the fragments",
    "perimeter": "summed perimeter of the fragments (pixels, or units with a pixel_size)",
}

_STRIP: Final = 1 << 20
"""Pixels handled at a time in the per-fragment pass."""
_EIGHT: Final = np.ones((3, 3), dtype=bool)
"""8-connectivity for :func:`scipy.ndimage.label`."""
# skimage.measure.perimeter's weights for the codes sum(kernel * border) of a border pixel,
# kernel [[10, 2, 10], [2, 1, 2], [10, 2, 10]] (the centre's own 1 makes every code odd).
_PERIMETER_WEIGHTS: Final = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + math.sqrt(2.0)) / 2.0

_Value = float | int | None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ClassMeasurements:
    """What one label (a class, or the background) covers in one image.

    Attributes:
        name: The class name (``"background"`` for label 0).
        label: Its value in the label map.
        area_px: Pixels of the class, fragments below ``min_area`` included.
        area_fraction: ``area_px`` over the image's non-void pixels; None if all are void.
        fragments: Fragments (8-connected components) of at least ``min_area`` pixels.
        perimeter_px: Summed perimeter of those fragments, in pixels.
        complexity: Area-weighted mean complexity of those fragments; None without any.
        largest_fragment_px: Area of the largest of them; 0 without any.
        mean_fragment_px: Their mean area; None without any.
        pixel_size: Units per pixel, or None when not known.
    """

    name: str
    label: int
    area_px: int
    area_fraction: float | None
    fragments: int
    perimeter_px: float
    complexity: float | None
    largest_fragment_px: int
    mean_fragment_px: float | None
    pixel_size: float | None = None

    @property
    def area(self) -> float | None:
        """``area_px`` in units² (None without a ``pixel_size``)."""
        return None if self.pixel_size is None else self.area_px * self.pixel_size**2

    @property
    def perimeter(self) -> float | None:
        """``perimeter_px`` in units (None without a ``pixel_size``)."""
        return None if self.pixel_size is None else self.perimeter_px * self.pixel_size

    @property
    def largest_fragment(self) -> float | None:
        """``largest_fragment_px`` in units² (None without a ``pixel_size``)."""
        if self.pixel_size is None:
            return None
        return self.largest_fragment_px * self.pixel_size**2

    @property
    def mean_fragment(self) -> float | None:
        """``mean_fragment_px`` in units² (None without a ``pixel_size`` or fragments)."""
        if self.pixel_size is None or self.mean_fragment_px is None:
            return None
        return self.mean_fragment_px * self.pixel_size**2


@dataclass(frozen=True, eq=False, slots=True)
class FragmentArrays:
    """Every counted fragment of an image, one entry per fragment in each array.

    Kept as arrays rather than objects, so a noisy mask with a million specks stays
    small. Fragments are grouped by label, and numbered from 1 within each label.

    Attributes:
        label: ``(M,)`` ``uint8`` label of each fragment.
        fragment_id: ``(M,)`` ``int64`` number of the fragment within its label.
        area_px: ``(M,)`` ``int64`` pixels.
        perimeter_px: ``(M,)`` ``float64`` perimeter in pixels.
        bbox: ``(M, 4)`` ``int64`` bounding boxes ``(x0, y0, x1, y1)`` in pixel edges:
            the fragment lies in columns ``x0 … x1 - 1`` and rows ``y0 … y1 - 1``.
        centroid: ``(M, 2)`` ``float64`` centres ``(x, y)`` in the project's point
            convention (pixel ``(row i, column j)`` has its centre at ``(j + 0.5, i + 0.5)``).
    """

    label: npt.NDArray[np.uint8]
    fragment_id: npt.NDArray[np.int64]
    area_px: npt.NDArray[np.int64]
    perimeter_px: npt.NDArray[np.float64]
    bbox: npt.NDArray[np.int64]
    centroid: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def complexity(self) -> npt.NDArray[np.float64]:
        """``(M,)`` ``perimeter_px ** 2 / (4 * pi * area_px)`` of each fragment."""
        return self.perimeter_px**2 / (4.0 * math.pi * self.area_px)


@dataclass(frozen=True, eq=False, slots=True)
class ImageMeasurements:
    """The measurements of one label map (see :func:`measure_regions`).

    ``measurements["rock"]`` and ``measurements.classes["rock"]`` are the same
    :class:`ClassMeasurements`.

    Attributes:
        classes: ``{name: ClassMeasurements}`` for every label in label order:
            ``"background"`` first, then the classes.
        shape: ``(H, W)`` of the label map.
        n_pixels: Its non-void pixels.
        void_px: Its void pixels.
        min_area: The smallest fragment counted, in pixels.
        pixel_size: Units per pixel, or None.
        fragment_arrays: Every counted fragment.
    """

    classes: Mapping[str, ClassMeasurements]
    shape: tuple[int, int]
    n_pixels: int
    void_px: int
    min_area: int
    pixel_size: float | None
    fragment_arrays: FragmentArrays

    @property
    def names(self) -> tuple[str, ...]:
        """Every label's name, in label order: ``("background", *class_names)``."""
        return tuple(self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes the map was measured with, in label order (without background)."""
        return tuple(self.classes)[1:]

    @property
    def regions(self) -> tuple[ClassMeasurements, ...]:
        """The :class:`ClassMeasurements` of every label; index ``k`` is label ``k``."""
        return tuple(self.classes.values())

    def __getitem__(self, name: str) -> ClassMeasurements:
        """The measurements of the class ``name`` (``"background"`` for label 0).

        Raises:
            ConfigError: No class has that name; the message lists the valid ones.
        """
        return self.regions[_resolve(name, self.names)]

    def fragments_table(self) -> list[dict[str, Any]]:
        """One row per counted fragment, grouped by class.

        Returns:
            Dicts with ``class``, ``label``, ``id`` (from 1 within its class),
            ``area_px``, ``perimeter_px``, ``complexity``, ``bbox`` (``(x0, y0, x1, y1)``
            pixel edges), ``centroid`` (``(x, y)``), and with a ``pixel_size`` also
            ``area`` (units²) and ``perimeter`` (units).
        """
        frags = self.fragment_arrays
        names = self.names
        size = self.pixel_size
        rows = []
        for i in range(len(frags)):
            area, perimeter = int(frags.area_px[i]), float(frags.perimeter_px[i])
            x0, y0, x1, y1 = (int(v) for v in frags.bbox[i])
            row: dict[str, Any] = {
                "class": names[int(frags.label[i])],
                "label": int(frags.label[i]),
                "id": int(frags.fragment_id[i]),
                "area_px": area,
                "perimeter_px": perimeter,
                "complexity": perimeter**2 / (4.0 * math.pi * area),
                "bbox": (x0, y0, x1, y1),
                "centroid": (float(frags.centroid[i, 0]), float(frags.centroid[i, 1])),
            }
            if size is not None:
                row["area"] = area * size**2
                row["perimeter"] = perimeter * size
            rows.append(row)
        return rows


# --------------------------------------------------------------------------- measuring


def _scipy_ndimage() -> Any:
    try:
        from scipy import ndimage
    except ImportError as error:  # pragma: no cover - SciPy comes with lensloop[embed]
        raise ConfigError(
            "measuring segmentation regions needs SciPy: pip install 'lensloop[embed]' "
            "(or pip install scipy)"
        ) from error
    return ndimage


def _check_min_area(min_area: int) -> int:
    if isinstance(min_area, bool) or not isinstance(min_area, numbers.Integral) or min_area < 0:
        raise ValueError(f"min_area must be a whole number of pixels >= 0; got {min_area!r}")
    return int(min_area)


def _check_pixel_size(pixel_size: float | None) -> float | None:
    if pixel_size is None:
        return None
    if isinstance(pixel_size, bool) or not isinstance(pixel_size, numbers.Real):
        raise ValueError(f"pixel_size must be a number of units per pixel; got {pixel_size!r}")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be positive and finite; got {pixel_size}")
    return float(pixel_size)


@dataclass(slots=True)
class _Components:
    """Per-component sums of one class's pass (index 0 is unused: not the class)."""

    area: npt.NDArray[np.int64]
    perimeter: npt.NDArray[np.float64]
    row_sum: npt.NDArray[np.float64]
    col_sum: npt.NDArray[np.float64]
    bbox: npt.NDArray[np.int64]  # (n + 1, 4): min row, min col, max row, max col


def _component_stats(
    mask: npt.NDArray[np.bool_], components: npt.NDArray[np.int32], n: int
) -> _Components:
    """Area, perimeter, coordinate sums and bounding box of components ``1 … n``.

    Works a strip of rows at a time. The perimeter is skimage.measure.perimeter's
    (4-neighbourhood): a pixel is a border pixel when one of its 4 neighbours is not in
    the mask (outside the image counts as not); each border pixel adds the weight of
    its code, the sum of [[10, 2, 10], [2, 1, 2], [10, 2, 10]] over the border pixels
    around it. Both need two rows beyond the strip on each side.
    """
    height, width = mask.shape
    rows_per = max(1, _STRIP // width)
    stats = _Components(
        area=np.zeros(n + 1, np.int64),
        perimeter=np.zeros(n + 1, np.float64),
        row_sum=np.zeros(n + 1, np.float64),
        col_sum=np.zeros(n + 1, np.float64),
        bbox=np.empty((n + 1, 4), np.int64),
    )
    stats.bbox[:, :2] = np.iinfo(np.int64).max
    stats.bbox[:, 2:] = -1
    padded = np.zeros((rows_per + 4, width + 2), dtype=bool)
    border = np.zeros((rows_per + 2, width + 2), dtype=np.uint8)
    for top in range(0, height, rows_per):
        bottom = min(height, top + rows_per)
        h = bottom - top
        # padded[i + 2, j + 1] is mask[top + i, j]; rows and columns off the image are False.
        window = padded[: h + 4]
        window[:] = False
        low, high = max(0, top - 2), min(height, bottom + 2)
        window[low - top + 2 : high - top + 2, 1:-1] = mask[low:high]
        inside = window[1:-1, 1:-1]  # rows top - 1 … bottom, every column
        eroded = inside & window[:-2, 1:-1] & window[2:, 1:-1]
        eroded &= window[1:-1, :-2]
        eroded &= window[1:-1, 2:]
        ring = border[: h + 2]
        np.not_equal(inside, eroded, out=ring[:, 1:-1])  # border: in the mask, not eroded
        centre = ring[1:-1, 1:-1]
        code = centre.copy()
        code += 2 * (ring[:-2, 1:-1] + ring[2:, 1:-1] + ring[1:-1, :-2] + ring[1:-1, 2:])
        code += 10 * (ring[:-2, :-2] + ring[:-2, 2:] + ring[2:, :-2] + ring[2:, 2:])
        strip = components[top:bottom]
        on_border = centre.view(bool)
        stats.perimeter += np.bincount(
            strip[on_border], weights=_PERIMETER_WEIGHTS[code[on_border]], minlength=n + 1
        )

        in_class = mask[top:bottom]
        ids = strip[in_class]
        rows, cols = np.nonzero(in_class)
        rows += top
        stats.area += np.bincount(ids, minlength=n + 1)
        stats.row_sum += np.bincount(ids, weights=rows, minlength=n + 1)
        stats.col_sum += np.bincount(ids, weights=cols, minlength=n + 1)
        np.minimum.at(stats.bbox[:, 0], ids, rows)
        np.minimum.at(stats.bbox[:, 1], ids, cols)
        np.maximum.at(stats.bbox[:, 2], ids, rows)
        np.maximum.at(stats.bbox[:, 3], ids, cols)
    return stats


def measure_regions(
    labels: npt.ArrayLike,
    classes: Sequence[str],
    *,
    min_area: int = 0,
    pixel_size: float | None = None,
) -> ImageMeasurements:
    """Measure every label of a label map: area, fraction, fragments and their shapes.

    See the module's docstring for the definitions (8-connected fragments, the
    perimeter estimator, complexity and its area-weighted mean). Background (label 0) is
    measured like a class; void (255) is no class and is left out of the fractions.

    Args:
        labels: ``(H, W)`` label map, ``uint8`` (other integer dtypes are converted),
            0 background, ``k`` for ``classes[k - 1]``, 255 void.
        classes: The classes, in label order.
        min_area: Fragments smaller than this many pixels are not counted (they still
            count in the class's area).
        pixel_size: Units per pixel (e.g. 0.1 for 0.1 mm per pixel), to report areas in
            units² and perimeters in units as well.

    Returns:
        The :class:`ImageMeasurements`.

    Raises:
        ConfigError: ``classes`` is not a valid class list, or SciPy is not installed.
        ValueError: ``labels`` is not a non-empty 2-D integer array, ``min_area`` is
            negative or not whole, or ``pixel_size`` is not positive and finite.
        LabelError: ``labels`` holds a value that is not one of the labels.

    Example:
        >>> import numpy as np
        >>> labels = np.zeros((10, 10), np.uint8)
        >>> labels[1:4, 1:4] = 1
        >>> labels[6:8, 6:8] = 1
        >>> labels[9, 9] = 255
        >>> found = measure_regions(labels, ["cell"], min_area=5, pixel_size=0.5)
        >>> found["cell"].area_px, found["cell"].fragments, found["cell"].area
        (13, 1, 3.25)
    """
    names = label_names(classes)
    label_map = as_label_map(labels, n_labels=len(names))
    min_area = _check_min_area(min_area)
    pixel_size = _check_pixel_size(pixel_size)
    ndimage = _scipy_ndimage()

    counts = label_histogram(label_map)
    void_px = int(counts[VOID])
    n_pixels = int(label_map.size) - void_px
    mask = np.empty(label_map.shape, dtype=bool)
    components: npt.NDArray[np.int32] | None = None
    regions: list[ClassMeasurements] = []
    parts: list[tuple[int, _Components, npt.NDArray[np.intp]]] = []
    for label, name in enumerate(names):
        area_px = int(counts[label])
        kept = np.zeros(0, np.intp)
        stats = None
        if area_px:
            if components is None:
                components = np.empty(label_map.shape, dtype=np.int32)
            np.equal(label_map, label, out=mask)
            n = int(ndimage.label(mask, structure=_EIGHT, output=components))
            stats = _component_stats(mask, components, n)
            kept = np.flatnonzero(stats.area[1:] >= max(1, min_area)) + 1
            parts.append((label, stats, kept))
        frag_area = stats.area[kept] if stats is not None else np.zeros(0, np.int64)
        frag_perimeter = stats.perimeter[kept] if stats is not None else np.zeros(0)
        total = int(frag_area.sum())
        regions.append(
            ClassMeasurements(
                name=name,
                label=label,
                area_px=area_px,
                area_fraction=area_px / n_pixels if n_pixels else None,
                fragments=len(kept),
                perimeter_px=float(frag_perimeter.sum()),
                complexity=(
                    float((frag_perimeter**2).sum() / (4.0 * math.pi * total)) if total else None
                ),
                largest_fragment_px=int(frag_area.max()) if len(kept) else 0,
                mean_fragment_px=total / len(kept) if len(kept) else None,
                pixel_size=pixel_size,
            )
        )
    del components, mask
    return ImageMeasurements(
        classes={region.name: region for region in regions},
        shape=(int(label_map.shape[0]), int(label_map.shape[1])),
        n_pixels=n_pixels,
        void_px=void_px,
        min_area=min_area,
        pixel_size=pixel_size,
        fragment_arrays=_fragment_arrays(parts),
    )


def _fragment_arrays(parts: list[tuple[int, _Components, npt.NDArray[np.intp]]]) -> FragmentArrays:
    labels, ids, areas, perimeters, boxes, centres = [], [], [], [], [], []
    for label, stats, kept in parts:
        area = stats.area[kept]
        labels.append(np.full(len(kept), label, np.uint8))
        ids.append(np.arange(1, len(kept) + 1, dtype=np.int64))
        areas.append(area)
        perimeters.append(stats.perimeter[kept])
        box = stats.bbox[kept]
        boxes.append(np.stack([box[:, 1], box[:, 0], box[:, 3] + 1, box[:, 2] + 1], axis=1))
        centres.append(
            np.stack([stats.col_sum[kept] / area + 0.5, stats.row_sum[kept] / area + 0.5], axis=1)
        )
    if not parts:
        return FragmentArrays(
            label=np.zeros(0, np.uint8),
            fragment_id=np.zeros(0, np.int64),
            area_px=np.zeros(0, np.int64),
            perimeter_px=np.zeros(0, np.float64),
            bbox=np.zeros((0, 4), np.int64),
            centroid=np.zeros((0, 2), np.float64),
        )
    return FragmentArrays(
        label=np.concatenate(labels),
        fragment_id=np.concatenate(ids),
        area_px=np.concatenate(areas).astype(np.int64),
        perimeter_px=np.concatenate(perimeters).astype(np.float64),
        bbox=np.concatenate(boxes).astype(np.int64),
        centroid=np.concatenate(centres).astype(np.float64),
    )


# --------------------------------------------------------------------------- summary

_SPEC_HELP: Final = (
    "write NAME = FUNCTION(CLASS[+CLASS...][, of=CLASS[+CLASS...]]), "
    'e.g. "intact_rock = fraction(rock, of=box)"'
)
_TOKEN: Final = re.compile(
    r"""\s*(?:(?P<punct>[+,=()])|(['"])(?P<quoted>.*?)\2|(?P<bare>[^+,=()'"]+))"""
)
_NAME_FORBIDDEN: Final = frozenset("=(),'\"\n\r")


def _resolve(name: str, names: Sequence[str]) -> int:
    """The label of the class ``name`` among ``names`` (background by any case)."""
    if name in names:
        return list(names).index(name)
    if name.casefold() in BACKGROUND_NAMES:
        return 0
    raise ConfigError(f"no class {name!r}; valid classes are: {', '.join(map(repr, names))}")


@dataclass(frozen=True, slots=True)
class SummarySpec:
    """One named number of an image's summary, such as ``fraction(rock, of=box)``.

    Args:
        name: The column name.
        function: One of :data:`FUNCTIONS`.
        classes: The classes it measures (pooled).
        of: With ``fraction``, the classes of the reference area (the measured classes
            are always part of it); None for the image's non-void pixels.
    """

    name: str
    function: str
    classes: tuple[str, ...]
    of: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, text=self.name)
        if self.function not in FUNCTIONS:
            raise ConfigError(
                f"unknown summary function {self.function!r} in {self.name!r}; valid "
                f"functions are: {', '.join(FUNCTIONS)}"
            )
        if not self.classes:
            raise ConfigError(f"summary {self.name!r} names no class; {_SPEC_HELP}")
        if self.of is not None and self.function != "fraction":
            raise ConfigError(
                f"summary {self.name!r}: only fraction takes of=; {self.function} measures "
                f"the classes alone"
            )
        if self.of is not None and not self.of:
            raise ConfigError(f"summary {self.name!r}: of= names no class; {_SPEC_HELP}")

    def __str__(self) -> str:
        def spell(names: tuple[str, ...]) -> str:
            return "+".join(
                repr(name) if set(name) & set("+,=()'\"") or name != name.strip() else name
                for name in names
            )

        of = "" if self.of is None else f", of={spell(self.of)}"
        return f"{self.name} = {self.function}({spell(self.classes)}{of})"

    @classmethod
    def parse(cls, text: str, classes: Sequence[str] | None = None) -> SummarySpec:
        """Read one spec from its text (the grammar is in the module's docstring).

        Args:
            text: Such as ``"intact_rock = fraction(rock, of=box)"``.
            classes: The project's classes, to refuse unknown class names now; without
                them an unknown class is refused when the spec is evaluated.

        Returns:
            The spec, its class names spelt as in ``classes``.

        Raises:
            ConfigError: The text does not follow the grammar, or names an unknown
                function or class; the message says which and lists the valid ones.

        Example:
            >>> str(SummarySpec.parse("intact = fraction( rock , OF = box + rock )"))
            'intact = fraction(rock, of=box+rock)'
        """
        if not isinstance(text, str):
            raise ConfigError(f"a summary spec is a str; got {type(text).__name__}")
        name, eq, rest = text.partition("=")
        if not eq:
            raise ConfigError(f"summary spec {text!r} has no '='; {_SPEC_HELP}")
        name = _check_name(name.strip(), text=text)
        tokens = _tokens(rest, text)
        if len(tokens) < 3 or tokens[0][0] != "word" or tokens[1] != ("punct", "("):
            raise ConfigError(f"summary spec {text!r} has no FUNCTION(...) after '='; {_SPEC_HELP}")
        function = tokens[0][1].strip().casefold()
        if function not in FUNCTIONS:
            raise ConfigError(
                f"unknown summary function {tokens[0][1].strip()!r} in {text!r}; valid "
                f"functions are: {', '.join(FUNCTIONS)}"
            )
        if tokens[-1] != ("punct", ")"):
            raise ConfigError(f"summary spec {text!r} must end with ')'; {_SPEC_HELP}")
        measured, at = _class_list(tokens, 2, text)
        of = None
        if at < len(tokens) - 1:
            if tokens[at] != ("punct", ","):
                raise ConfigError(f"unexpected {tokens[at][1]!r} in {text!r}; {_SPEC_HELP}")
            keyword = tokens[at + 1] if at + 1 < len(tokens) else ("punct", "")
            if keyword[0] != "word" or keyword[1].strip().casefold() != "of":
                raise ConfigError(
                    f"after the classes, {text!r} may only have ', of=CLASS[+CLASS...]'; "
                    f"got {keyword[1]!r}"
                )
            if at + 2 >= len(tokens) or tokens[at + 2] != ("punct", "="):
                raise ConfigError(f"'of' must be followed by '=' in {text!r}; {_SPEC_HELP}")
            of, at = _class_list(tokens, at + 3, text)
            if at != len(tokens) - 1:
                raise ConfigError(f"unexpected {tokens[at][1]!r} in {text!r}; {_SPEC_HELP}")
        if classes is not None:
            names = label_names(classes)
            measured = tuple(names[_resolve(c, names)] for c in measured)
            of = None if of is None else tuple(names[_resolve(c, names)] for c in of)
        return cls(name=name, function=function, classes=measured, of=of)

    def evaluate(self, measurements: ImageMeasurements) -> _Value:
        """This spec's value for one image (see :func:`summarise`).

        Raises:
            ConfigError: A class of the spec is not one of the image's classes.
        """
        names = measurements.names
        labels = sorted({_resolve(c, names) for c in self.classes})
        regions = [measurements.regions[label] for label in labels]
        area = sum(region.area_px for region in regions)
        if self.function == "fraction":
            if self.of is None:
                total = measurements.n_pixels
            else:
                reference = set(labels) | {_resolve(c, names) for c in self.of}
                total = sum(measurements.regions[label].area_px for label in reference)
            return area / total if total else None
        size = measurements.pixel_size
        area_unit = 1.0 if size is None else size**2
        if self.function == "area":
            return area if size is None else area * area_unit
        frags = measurements.fragment_arrays
        chosen = np.isin(frags.label, labels)
        frag_area = frags.area_px[chosen]
        frag_perimeter = frags.perimeter_px[chosen]
        count = len(frag_area)
        if self.function == "count":
            return count
        if self.function == "largest":
            largest = int(frag_area.max()) if count else 0
            return largest if size is None else largest * area_unit
        if self.function == "perimeter":
            return float(frag_perimeter.sum()) * (1.0 if size is None else size)
        if not count:
            return None
        if self.function == "mean":
            return float(frag_area.mean()) * area_unit
        return float((frag_perimeter**2).sum() / (4.0 * math.pi * frag_area.sum()))


def _check_name(name: str, *, text: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"summary spec {text!r} has no NAME before '='; {_SPEC_HELP}")
    bad = sorted(set(name) & _NAME_FORBIDDEN)
    if bad or name != name.strip():
        raise ConfigError(
            f"summary name {name!r} in {text!r} may not hold {' '.join(bad) or 'outer spaces'};"
            f" use letters, digits, '_' or '-'"
        )
    if name == "image":
        raise ConfigError(f"summary name 'image' in {text!r} is the CSV's image column; rename it")
    return name


def _tokens(rest: str, text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(rest):
        if not rest[at:].strip():
            break
        found = _TOKEN.match(rest, at)
        if found is None:  # an unterminated quote
            raise ConfigError(f"unterminated quote in summary spec {text!r}")
        at = found.end()
        if found.group("punct"):
            tokens.append(("punct", found.group("punct")))
        elif found.group("bare") is not None:
            tokens.append(("word", found.group("bare").strip()))
        else:
            tokens.append(("quoted", found.group("quoted")))
    return tokens


def _class_list(tokens: list[tuple[str, str]], at: int, text: str) -> tuple[tuple[str, ...], int]:
    """Read ``CLASS { + CLASS }`` from ``tokens[at]``; return the names and the next index."""
    names: list[str] = []
    while True:
        kind, value = tokens[at] if at < len(tokens) else ("punct", "")
        if kind == "punct" or not value.strip():
            raise ConfigError(
                f"expected a class name in {text!r}, got {value or 'nothing'!r}; {_SPEC_HELP}"
            )
        names.append(value)
        at += 1
        if at < len(tokens) and tokens[at] == ("punct", "+"):
            at += 1
            continue
        return tuple(names), at


def parse_summary(
    specs: str | Sequence[str], classes: Sequence[str] | None = None
) -> tuple[SummarySpec, ...]:
    """Read summary specs (one str, or a list, as in ``lensloop.toml``).

    Args:
        specs: Spec texts; a single str may hold several separated by ``;`` or newlines.
        classes: The project's classes, to refuse unknown class names now.

    Returns:
        The specs, in order.

    Raises:
        ConfigError: A spec is invalid (see :meth:`SummarySpec.parse`) or two share a name.
    """
    if isinstance(specs, str):
        texts = [part for part in re.split(r"[;\n]", specs) if part.strip()]
    elif isinstance(specs, Sequence):
        texts = list(specs)
    else:
        raise ConfigError(
            f"summary specs must be a str or a list of str; got {type(specs).__name__}"
        )
    parsed = tuple(SummarySpec.parse(text, classes) for text in texts)
    seen: set[str] = set()
    for spec in parsed:
        if spec.name in seen:
            raise ConfigError(f"two summary specs are named {spec.name!r}; give each its own name")
        seen.add(spec.name)
    return parsed


def default_summary(classes: Sequence[str]) -> tuple[SummarySpec, ...]:
    """A project's summary when it configures none: each class's fraction and count.

    Named ``<class>_fraction`` and ``<class>_fragments``, the same as the per-class
    columns of :func:`measurements_row`, which they equal.
    """
    specs: list[SummarySpec] = []
    for name in label_names(classes)[1:]:
        specs.append(SummarySpec(f"{name}_fraction", "fraction", (name,)))
        specs.append(SummarySpec(f"{name}_fragments", "count", (name,)))
    return tuple(specs)


def summarise(measurements: ImageMeasurements, specs: Iterable[SummarySpec]) -> dict[str, _Value]:
    """Evaluate summary specs on one image's measurements.

    Args:
        measurements: From :func:`measure_regions`.
        specs: From :func:`parse_summary` or :func:`default_summary`.

    Returns:
        ``{name: value}`` in the specs' order: ``count`` an int, ``area`` and ``largest``
        an int in pixels (a float in units² with a ``pixel_size``), the others a float,
        and None where a value is undefined (a fraction of nothing, the mean or
        complexity of no fragment).

    Raises:
        ConfigError: A spec names a class the measurements do not have.
    """
    return {spec.name: spec.evaluate(measurements) for spec in specs}


# --------------------------------------------------------------------------- CSV

_PER_CLASS: Final = ("area_px", "fraction", "fragments", "perimeter_px", "complexity", "largest_px")


def _class_columns(region: ClassMeasurements) -> dict[str, _Value]:
    values: tuple[_Value, ...] = (
        region.area_px,
        region.area_fraction,
        region.fragments,
        region.perimeter_px,
        region.complexity,
        region.largest_fragment_px,
    )
    return {
        f"{region.name}_{suffix}": value for suffix, value in zip(_PER_CLASS, values, strict=True)
    }


def measurements_row(
    image: str | int,
    measurements: ImageMeasurements,
    specs: Sequence[SummarySpec] = (),
    *,
    units: bool = False,
) -> dict[str, Any]:
    """One image's CSV row: ``image``, every label's columns, then the summary columns.

    Per label (background first): ``<class>_area_px``, ``<class>_fraction``,
    ``<class>_fragments``, ``<class>_perimeter_px``, ``<class>_complexity``,
    ``<class>_largest_px``; with ``units``, then ``pixel_size`` and ``<class>_area``
    (units², empty without a pixel size). A summary column named like a per-class column
    is left out when it means the same (``default_summary`` does), refused otherwise.

    Raises:
        ConfigError: A summary column's name is taken by a per-class column of another
            meaning, or a spec names an unknown class.
    """
    row: dict[str, Any] = {"image": image}
    for region in measurements.regions:
        row.update(_class_columns(region))
    if units:
        row["pixel_size"] = measurements.pixel_size
        for region in measurements.regions:
            row[f"{region.name}_area"] = region.area
    same = {spec.name: spec for spec in default_summary(measurements.class_names)}
    for spec in specs:
        if spec.name in row:
            twin = same.get(spec.name)
            if twin is not None and (twin.function, twin.classes, twin.of) == (
                spec.function,
                tuple(measurements.names[_resolve(c, measurements.names)] for c in spec.classes),
                spec.of,
            ):
                continue
            raise ConfigError(
                f"summary column {spec.name!r} ({spec}) has the name of a per-class column; "
                f"rename it"
            )
        row[spec.name] = spec.evaluate(measurements)
    return row


def measurements_rows(
    images: Mapping[str, ImageMeasurements] | Iterable[tuple[str | int, ImageMeasurements]],
    specs: Sequence[SummarySpec] = (),
) -> list[dict[str, Any]]:
    """One CSV row per image (see :func:`measurements_row`), all with the same columns.

    The ``pixel_size`` and ``<class>_area`` columns are there when any image has a pixel
    size.

    Args:
        images: ``{image: measurements}``, or ``(image, measurements)`` pairs, where
            ``image`` is a file name or an image id.
        specs: The summary columns.

    Raises:
        ConfigError: The images were measured with different class lists, or as
            :func:`measurements_row`.
    """
    pairs = list(images.items() if isinstance(images, Mapping) else images)
    if not pairs:
        return []
    classes = pairs[0][1].class_names
    for image, found in pairs:
        if found.class_names != classes:
            raise ConfigError(
                f"image {image!r} was measured with classes {list(found.class_names)}, the first "
                f"with {list(classes)}; one CSV needs one class list"
            )
    units = any(found.pixel_size is not None for _, found in pairs)
    return [measurements_row(image, found, specs, units=units) for image, found in pairs]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_measurements_csv(
    path: Path | str, rows: Sequence[Mapping[str, Any]], *, force: bool = False
) -> Path:
    """Write measurement rows as a CSV, atomically (readers never see half a file).

    The header is the first row's keys (then any key a later row adds); a missing or None
    value is an empty cell, floats are written in full precision. A missing folder is
    created.

    Args:
        path: The CSV file.
        rows: From :func:`measurements_rows`.
        force: Replace ``path`` if it exists.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``rows`` is empty, or ``path`` exists and ``force`` is False.
        OSError: The folder cannot be created or written.
    """
    from lensloop.imaging import atomic_write

    path = Path(path)
    if not rows:
        raise ConfigError(f"no measurement rows to write to {path}; measure some images first")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; choose another file or pass force=True to replace it")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, buffer.getvalue().encode("utf-8"), overwrite=force)
    except FileExistsError:  # appeared meanwhile
        raise ConfigError(
            f"{path} exists; choose another file or pass force=True to replace it"
        ) from None
    return path
