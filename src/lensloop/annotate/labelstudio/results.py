"""Label Studio results <-> lensloop payloads: the one place percentages become pixels.

Label Studio stores a region as a *result*: ``{"type", "from_name", "to_name", "value",
"original_width", "original_height", "id"}`` whose coordinates are percentages of the
image size (brush masks: an RLE of the displayed image's RGBA pixels). lensloop stores
one payload per annotation kind in the original image's pixels (DESIGN.md):

========= ========================================================================
kind      payload
========= ========================================================================
class     ``{"class": path}``
points    ``{"width", "height", "points": [{"x", "y", "label", "id"}], "status"}``
box       ``{"width", "height", "boxes": [{"x", "y", "width", "height", "rotation",
          "label", "id"}]}`` (x, y: top-left corner; rotation in degrees about it)
polygon   ``{"width", "height", "polygons": [{"points": [[x, y], ...], "label", "id"}]}``
mask      ``{"width", "height", "masks": [{"label", "id", "size": [H, W],
          "counts": [...]}]}`` (row-major run lengths, :func:`~lensloop.annotate.rle.\
mask_to_counts`)
========= ========================================================================

Each Label Studio control type is one small :class:`Control` in :data:`CONTROLS` that
turns a result's ``value`` into a pixel region and back, so adding a type is one class
and one registry line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lensloop.annotate.rle import counts_to_mask, decode_brush, encode_brush, mask_to_counts
from lensloop.annotate.schema import COUNT_STATUSES, IMAGE_NAME, TOOLS, LabelSchema
from lensloop.errors import LabelError

__all__ = [
    "CONTROLS",
    "REGION_KINDS",
    "Control",
    "ImageSize",
    "ParsedResults",
    "parse_results",
    "results_from_payload",
]

#: Annotation kinds whose payload is a list of regions, and the payload key holding it.
REGION_KINDS: dict[str, str] = {
    "points": "points",
    "box": "boxes",
    "polygon": "polygons",
    "mask": "masks",
}
_STATUS_NAME = "status"


@dataclass(frozen=True)
class ImageSize:
    """The catalog image's size in pixels (what percentages are taken of)."""

    width: int
    height: int


def _number(value: Mapping[str, Any], key: str, where: str) -> float:
    found = value.get(key)
    if isinstance(found, bool) or not isinstance(found, int | float):
        raise LabelError(f"{where}: expected a number for {key!r}, got {found!r}")
    return float(found)


class Control:
    """How one Label Studio control type maps to a lensloop annotation kind.

    Subclasses set the class attributes and implement :meth:`region` and :meth:`value`.
    """

    #: The result ``type`` (the ``...labels`` form; the bare form is accepted on import).
    ls_type: ClassVar[str]
    #: The lensloop annotation kind.
    kind: ClassVar[str]
    #: The key of :data:`lensloop.annotate.schema.TOOLS` whose config makes this control.
    tool: ClassVar[str]

    @property
    def from_name(self) -> str:
        """The control's ``name`` in configs lensloop generates."""
        return TOOLS[self.tool][1]

    def region(self, value: Mapping[str, Any], *, size: ImageSize, where: str) -> dict[str, Any]:
        """Return the pixel region of a result's ``value`` (without its label)."""
        raise NotImplementedError

    def value(self, region: Mapping[str, Any], *, size: ImageSize) -> dict[str, Any]:
        """Return a result's ``value`` for a pixel region (without its label)."""
        raise NotImplementedError


class KeyPoints(Control):
    """``keypointlabels``: a point; ``x``, ``y`` are percentages of the image size."""

    ls_type = "keypointlabels"
    kind = "points"
    tool = "keypoints"

    def region(self, value: Mapping[str, Any], *, size: ImageSize, where: str) -> dict[str, Any]:
        """Return ``{"x", "y"}`` in pixels."""
        return {
            "x": _number(value, "x", where) / 100.0 * size.width,
            "y": _number(value, "y", where) / 100.0 * size.height,
        }

    def value(self, region: Mapping[str, Any], *, size: ImageSize) -> dict[str, Any]:
        """Return ``{"x", "y", "width"}`` in percentages (``width``: the marker size)."""
        return {
            "x": float(region["x"]) / size.width * 100.0,
            "y": float(region["y"]) / size.height * 100.0,
            "width": 0.5,
        }


class Rectangles(Control):
    """``rectanglelabels``: a box given by its top-left corner, size and rotation."""

    ls_type = "rectanglelabels"
    kind = "box"
    tool = "rectangle"

    def region(self, value: Mapping[str, Any], *, size: ImageSize, where: str) -> dict[str, Any]:
        """Return ``{"x", "y", "width", "height", "rotation"}`` in pixels and degrees."""
        return {
            "x": _number(value, "x", where) / 100.0 * size.width,
            "y": _number(value, "y", where) / 100.0 * size.height,
            "width": _number(value, "width", where) / 100.0 * size.width,
            "height": _number(value, "height", where) / 100.0 * size.height,
            "rotation": float(value.get("rotation") or 0.0),
        }

    def value(self, region: Mapping[str, Any], *, size: ImageSize) -> dict[str, Any]:
        """Return the box in percentages."""
        return {
            "x": float(region["x"]) / size.width * 100.0,
            "y": float(region["y"]) / size.height * 100.0,
            "width": float(region["width"]) / size.width * 100.0,
            "height": float(region["height"]) / size.height * 100.0,
            "rotation": float(region.get("rotation", 0.0)),
        }


class Polygons(Control):
    """``polygonlabels``: a closed polygon, ``points`` as ``[x, y]`` percentages."""

    ls_type = "polygonlabels"
    kind = "polygon"
    tool = "polygon"

    def region(self, value: Mapping[str, Any], *, size: ImageSize, where: str) -> dict[str, Any]:
        """Return ``{"points": [[x, y], ...]}`` in pixels."""
        points = value.get("points")
        if not isinstance(points, list) or len(points) < 3:
            raise LabelError(f"{where}: a polygon needs a list of at least 3 [x, y] points")
        pixels = []
        for point in points:
            if not (isinstance(point, list | tuple) and len(point) == 2):
                raise LabelError(f"{where}: polygon point {point!r} is not [x, y]")
            xy = {"x": point[0], "y": point[1]}
            x, y = _number(xy, "x", where), _number(xy, "y", where)
            pixels.append([x / 100.0 * size.width, y / 100.0 * size.height])
        return {"points": pixels}

    def value(self, region: Mapping[str, Any], *, size: ImageSize) -> dict[str, Any]:
        """Return the polygon in percentages."""
        return {
            "points": [
                [float(x) / size.width * 100.0, float(y) / size.height * 100.0]
                for x, y in region["points"]
            ],
            "closed": True,
        }


class Brushes(Control):
    """``brushlabels``: a painted mask in Label Studio's RLE.

    The RLE covers the image as Label Studio displayed it (``original_width`` x
    ``original_height``); a mask drawn on a differently sized rendering is resized to the
    catalog image's size with nearest-neighbour sampling.
    """

    ls_type = "brushlabels"
    kind = "mask"
    tool = "brush"

    def region(self, value: Mapping[str, Any], *, size: ImageSize, where: str) -> dict[str, Any]:
        """Return ``{"size": [H, W], "counts": [...]}`` of the decoded mask."""
        if value.get("format", "rle") != "rle":
            raise LabelError(f"{where}: brush format {value.get('format')!r} is not 'rle'")
        rle = value.get("rle")
        if not isinstance(rle, list):
            raise LabelError(f"{where}: a brush result needs an 'rle' list of integers")
        width = int(value.get("original_width") or size.width)
        height = int(value.get("original_height") or size.height)
        try:
            mask = decode_brush(rle, height, width)
        except LabelError as exc:
            raise LabelError(f"{where}: {exc}") from exc
        if (width, height) != (size.width, size.height):
            mask = _resize_nearest(mask, size)
        return mask_to_counts(mask)

    def value(self, region: Mapping[str, Any], *, size: ImageSize) -> dict[str, Any]:
        """Return ``{"format": "rle", "rle": [...]}`` for the region's mask."""
        return {"format": "rle", "rle": encode_brush(counts_to_mask(region))}


def _resize_nearest(mask: npt.NDArray[np.bool_], size: ImageSize) -> npt.NDArray[np.bool_]:
    rows = (np.arange(size.height) * mask.shape[0] // size.height).astype(np.intp)
    cols = (np.arange(size.width) * mask.shape[1] // size.width).astype(np.intp)
    resized: npt.NDArray[np.bool_] = mask[np.ix_(rows, cols)]
    return resized


#: Every region control, by Label Studio result type (``...labels`` and bare forms).
CONTROLS: dict[str, Control] = {}
for _control in (KeyPoints(), Rectangles(), Polygons(), Brushes()):
    CONTROLS[_control.ls_type] = _control
    CONTROLS[_control.ls_type.removesuffix("labels")] = _control


@dataclass
class ParsedResults:
    """One Label Studio annotation's results as lensloop payloads, by kind."""

    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Result types lensloop does not store (text areas, relations, ...), with counts.
    ignored: dict[str, int] = field(default_factory=dict)


def _one_label(value: Mapping[str, Any], key: str, schema: LabelSchema, where: str) -> str:
    labels = value.get(key)
    if labels is None and len(schema.labels) == 1:
        return schema.labels[0]  # an unlabelled tool in a one-class schema
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise LabelError(f"{where}: expected exactly one label in {key!r}, got {labels!r}")
    schema.check_label(labels[0], where=where)
    return labels[0]


def parse_results(
    results: Iterable[Mapping[str, Any]],
    *,
    size: ImageSize,
    schema: LabelSchema,
    where: str,
) -> ParsedResults:
    """Convert one annotation's results to pixel payloads, one per annotation kind.

    Args:
        results: The annotation's ``result`` list.
        size: The catalog image's size.
        schema: The project's label schema; every label must be in it.
        where: Which record this is, for error messages (``"task 3, annotation 9"``).

    Raises:
        LabelError: A result is malformed, has a label outside the schema, or a brush
            RLE does not match its image size; the message starts with ``where``.
    """
    parsed = ParsedResults()
    status: str | None = None
    for index, result in enumerate(results):
        here = f"{where}, result {result.get('id', index)}"
        kind_name = result.get("type")
        value = result.get("value")
        if not isinstance(kind_name, str) or not isinstance(value, Mapping):
            raise LabelError(f"{here}: a result needs a 'type' and a 'value' object")
        if kind_name == "choices":
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) != 1:
                raise LabelError(f"{here}: expected exactly one choice, got {choices!r}")
            if result.get("from_name") == _STATUS_NAME:
                status = str(choices[0])
                if status not in COUNT_STATUSES:
                    raise LabelError(
                        f"{here}: status {status!r} is not one of {', '.join(COUNT_STATUSES)}"
                    )
                continue
            label = str(choices[0])
            schema.check_label(label, where=here)
            parsed.payloads["class"] = {"class": label}
            continue
        control = CONTROLS.get(kind_name)
        if control is None:
            parsed.ignored[kind_name] = parsed.ignored.get(kind_name, 0) + 1
            continue
        # The rendered image's size sits beside the value in JSON exports, inside it in
        # JSON-MIN ones; only brush masks depend on it.
        rendered = {
            key: result[key]
            for key in ("original_width", "original_height")
            if result.get(key) is not None
        }
        region = control.region({**value, **rendered}, size=size, where=here)
        region["label"] = _one_label(value, control.ls_type, schema, here)
        region["id"] = str(result.get("id", index))
        payload = parsed.payloads.setdefault(
            control.kind,
            {"width": size.width, "height": size.height, REGION_KINDS[control.kind]: []},
        )
        payload[REGION_KINDS[control.kind]].append(region)
    if status is not None:
        points = parsed.payloads.setdefault(
            "points", {"width": size.width, "height": size.height, "points": []}
        )
        points["status"] = status
    return parsed


def results_from_payload(
    kind: str,
    payload: Mapping[str, Any],
    *,
    size: ImageSize,
    from_names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Return Label Studio results (percentages) for a pixel payload of ``kind``.

    Args:
        kind: ``class``, ``points``, ``box``, ``polygon`` or ``mask``.
        payload: The payload, as stored in the catalog or made by a model.
        size: The image's size in pixels.
        from_names: Control names to use instead of lensloop's, by tool key of
            :data:`~lensloop.annotate.schema.TOOLS` (for hand-written configs).

    Raises:
        LabelError: ``kind`` is unknown.
    """
    names = {tool: name for tool, (_, name) in TOOLS.items()} | dict(from_names or {})
    if kind == "class":
        return [
            {
                "from_name": names["choices"],
                "to_name": IMAGE_NAME,
                "type": "choices",
                "value": {"choices": [payload["class"]]},
            }
        ]
    if kind not in REGION_KINDS:
        raise LabelError(f"no Label Studio result for annotation kind {kind!r}")
    control = next(c for c in CONTROLS.values() if c.kind == kind)
    results = []
    regions: Sequence[Mapping[str, Any]] = payload.get(REGION_KINDS[kind], [])
    for index, region in enumerate(regions):
        value = control.value(region, size=size)
        value[control.ls_type] = [region["label"]]
        result: dict[str, Any] = {
            "id": str(region.get("id", f"{kind}-{index}")),
            "from_name": names[control.tool],
            "to_name": IMAGE_NAME,
            "type": control.ls_type,
            "original_width": size.width,
            "original_height": size.height,
            "image_rotation": 0,
            "value": value,
        }
        if "score" in region:
            result["score"] = float(region["score"])
        results.append(result)
    return results
