"""What counting training reads: each image's target points, status and background.

:func:`load_count_images` turns the catalog's current ``points`` annotations (one per
annotator and image, :func:`~lensloop.catalog.annotations.annotations_by_annotator`)
into one :class:`CountImage` per image that has any, in image id order:

- **one annotator**: their points, and the ``status`` of their annotation (``sparse``
  when it has none or an unknown one: unclicked objects may exist);
- **two or more**: the clicks are grouped into objects by
  :func:`~lensloop.tasks.counting.points.consensus` (within ``radius`` pixels; an object
  is *agreed* when a strict majority marked it, else *disputed*). The target points are
  the agreed objects' mean positions, plus the disputed ones when ``consensus_only`` is
  False. The status is, in this order:

  1. ``conflict`` if any annotator said ``conflict``;
  2. ``conflict`` if some annotator said ``full`` or ``empty`` and there are disputed
     objects: someone claims a complete annotation that the others contradict;
  3. ``empty`` if every annotator said ``empty`` and nobody clicked anything;
  4. ``full`` if any annotator said ``full`` (and, by 2, nobody disagrees);
  5. ``sparse`` otherwise.

Regions marked as background (holding nothing to count) come from the current ``box``
and ``polygon`` annotations of every annotator whose region label is ``background``
(any case). Boxes are turned into their four corners: Label Studio rotates a box by
``rotation`` degrees clockwise (on screen, y pointing down) about its top-left corner.
:meth:`CountImage.background_mask` rasterises them with pixel ``(row i, column j)``
inside a region when its centre ``(j + 0.5, i + 0.5)`` is.

:func:`agreement_report` summarises the same grouping per image, worst agreement first,
so the images annotators disagree on can be reviewed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from lensloop.catalog.annotations import annotations_by_annotator
from lensloop.catalog.models import Annotation, Image
from lensloop.tasks.counting.density import STATUSES, Status
from lensloop.tasks.counting.points import Consensus, consensus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lensloop.project import Project

__all__ = [
    "BACKGROUND",
    "CountImage",
    "agreement_report",
    "box_corners",
    "load_count_images",
]

#: Region label (compared case-insensitively) that marks where there is nothing to count.
BACKGROUND = "background"

_CHUNK = 900


@dataclass(frozen=True, eq=False)
class CountImage:
    """One image's counting target.

    Attributes:
        image_id: The catalog image.
        split: Its split (``train``, ``val``, ``test``, ``pool``) or ``None``.
        width: Its width in pixels.
        height: Its height in pixels.
        points: ``(N, 2)`` float64 pixel ``(x, y)`` the training target uses.
        status: How completely the image is annotated (see the module docstring).
        annotators: Who annotated it, sorted.
        consensus: The grouping of several annotators' clicks; ``None`` with one.
        background: Polygons ``(K, 2)`` float64 ``(x, y)`` of regions marked background.
    """

    image_id: int
    split: str | None
    width: int
    height: int
    points: npt.NDArray[np.float64]
    status: Status
    annotators: tuple[str, ...]
    consensus: Consensus | None
    background: tuple[npt.NDArray[np.float64], ...] = ()

    def background_mask(self) -> npt.NDArray[np.bool_] | None:
        """The ``(H, W)`` bool raster of the background regions, or ``None`` if none.

        A pixel is background when its centre lies inside any region.
        """
        if not self.background:
            return None
        from skimage.draw import polygon

        mask = np.zeros((self.height, self.width), dtype=bool)
        for region in self.background:
            rows, cols = polygon(  # type: ignore[no-untyped-call]
                region[:, 1] - 0.5, region[:, 0] - 0.5, shape=mask.shape
            )
            mask[rows, cols] = True
        return mask


def box_corners(
    x: float, y: float, width: float, height: float, rotation: float = 0.0
) -> npt.NDArray[np.float64]:
    """The ``(4, 2)`` corners ``(x, y)`` of a box rotated about its top-left corner.

    Args:
        x: Left edge of the unrotated box (the corner it turns about), pixels.
        y: Top edge of the unrotated box, pixels.
        width: Width in pixels.
        height: Height in pixels.
        rotation: Degrees, clockwise on screen (image y points down), as in Label Studio.

    Returns:
        Top-left, top-right, bottom-right and bottom-left corners, in that order.
    """
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    along = np.array([cos, sin]) * width  # the top edge, turned
    down = np.array([-sin, cos]) * height  # the left edge, turned
    origin = np.array([x, y], dtype=np.float64)
    return np.stack([origin, origin + along, origin + along + down, origin + down])


@dataclass(frozen=True)
class _Grouped:
    """One image's annotators' points, grouped, and the status inferred from them."""

    image_id: int
    points_by_annotator: dict[str, npt.NDArray[np.float64]]
    consensus: Consensus | None
    status: Status


def load_count_images(
    project: Project, *, radius: float = 5.0, consensus_only: bool = True
) -> list[CountImage]:
    """Return every image with point annotations as a counting target (image id order).

    Args:
        project: The project.
        radius: Largest distance in pixels between two annotators' clicks on one object.
        consensus_only: With several annotators, train on the agreed objects only; False
            adds the disputed ones.

    Raises:
        ValueError: ``radius`` is not positive.
    """
    _check_radius(radius)
    with project.catalog.reader() as session:
        heads = annotations_by_annotator(session, "points")
        ids = sorted(heads)
        images = _images(session, ids)
        regions = _background(session, ids)
    found: list[CountImage] = []
    for image_id in ids:
        grouped = _group(image_id, heads[image_id], radius=radius)
        split, _, width, height = images[image_id]
        if grouped.consensus is None:
            (points,) = grouped.points_by_annotator.values()
        elif consensus_only:
            points = grouped.consensus.points
        else:
            points = np.concatenate([grouped.consensus.points, grouped.consensus.disputed])
        found.append(
            CountImage(
                image_id=image_id,
                split=split,
                width=width,
                height=height,
                points=points,
                status=grouped.status,
                annotators=tuple(sorted(grouped.points_by_annotator)),
                consensus=grouped.consensus,
                background=tuple(regions.get(image_id, ())),
            )
        )
    return found


def agreement_report(project: Project, *, radius: float = 5.0) -> list[dict[str, Any]]:
    """Summarise how well annotators agree on each image with point annotations.

    Args:
        project: The project.
        radius: Largest distance in pixels between two annotators' clicks on one object.

    Returns:
        One JSON-ready dict per image, lowest ``agreement`` first (then by image id):
        ``image_id``, ``uri``, ``status`` (as :func:`load_count_images` infers it),
        ``annotators``, ``counts`` (points per annotator), ``consensus`` and ``disputed``
        (objects agreed and not), ``agreement`` (the lowest F1 between two annotators,
        1.0 with one) and ``pairwise_f1`` (``{"a|b": f1}``).

    Raises:
        ValueError: ``radius`` is not positive.
    """
    _check_radius(radius)
    with project.catalog.reader() as session:
        heads = annotations_by_annotator(session, "points")
        images = _images(session, sorted(heads))
    rows: list[dict[str, Any]] = []
    for image_id, by_annotator in heads.items():
        grouped = _group(image_id, by_annotator, radius=radius)
        if grouped.consensus is not None:
            summary = grouped.consensus.as_dict()
        else:
            ((name, points),) = grouped.points_by_annotator.items()
            summary = {
                "annotators": [name],
                "counts": {name: len(points)},
                "consensus": len(points),
                "disputed": 0,
                "agreement": 1.0,
                "pairwise_f1": {},
            }
        rows.append(
            {
                "image_id": image_id,
                "uri": images[image_id][1],
                "status": grouped.status,
                "annotators": summary["annotators"],
                "counts": summary["counts"],
                "consensus": summary["consensus"],
                "disputed": summary["disputed"],
                "agreement": summary["agreement"],
                "pairwise_f1": summary["pairwise_f1"],
            }
        )
    rows.sort(key=lambda row: (row["agreement"], row["image_id"]))
    return rows


def _check_radius(radius: float) -> None:
    if not radius > 0:
        raise ValueError(f"radius must be a positive number of pixels; got {radius}")


def _status(value: Any) -> Status | None:
    return cast(Status, value) if value in STATUSES else None


def _points(payload: Mapping[str, Any]) -> npt.NDArray[np.float64]:
    points = payload.get("points") or []
    array = np.array([(p["x"], p["y"]) for p in points], dtype=np.float64)
    return array.reshape(-1, 2)


def _group(image_id: int, rows: Mapping[str, Annotation], *, radius: float) -> _Grouped:
    points = {name: _points(row.payload) for name, row in sorted(rows.items())}
    statuses = [_status(row.payload.get("status")) for row in rows.values()]
    if len(points) == 1:
        return _Grouped(image_id, points, None, statuses[0] or "sparse")
    grouped = consensus(points, radius=radius)
    return _Grouped(image_id, points, grouped, _infer_status(statuses, grouped))


def _infer_status(statuses: Sequence[Status | None], grouped: Consensus) -> Status:
    if "conflict" in statuses:
        return "conflict"
    complete = any(status in ("full", "empty") for status in statuses)
    if complete and len(grouped.disputed):
        return "conflict"
    if all(status == "empty" for status in statuses) and not len(grouped.points):
        return "empty"
    if "full" in statuses:
        return "full"
    return "sparse"


def _images(session: Session, ids: Sequence[int]) -> dict[int, tuple[str | None, str, int, int]]:
    found: dict[int, tuple[str | None, str, int, int]] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(Image.id, Image.split, Image.uri, Image.width, Image.height).where(
                Image.id.in_(list(ids[start : start + _CHUNK]))
            )
        )
        for image_id, split, uri, width, height in rows:
            found[image_id] = (split, uri, width, height)
    return found


def _background(session: Session, ids: Sequence[int]) -> dict[int, list[npt.NDArray[np.float64]]]:
    regions: dict[int, list[npt.NDArray[np.float64]]] = {}
    if not ids:
        return regions
    for row in _current_rows(session, "box", ids):
        for box in row.payload.get("boxes") or []:
            if _is_background(box):
                corners = box_corners(
                    float(box["x"]),
                    float(box["y"]),
                    float(box["width"]),
                    float(box["height"]),
                    float(box.get("rotation") or 0.0),
                )
                regions.setdefault(row.image_id, []).append(corners)
    for row in _current_rows(session, "polygon", ids):
        for shape in row.payload.get("polygons") or []:
            if _is_background(shape):
                vertices = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
                if len(vertices) >= 3:
                    regions.setdefault(row.image_id, []).append(vertices)
    return regions


def _current_rows(session: Session, kind: str, ids: Sequence[int]) -> list[Annotation]:
    heads = annotations_by_annotator(session, kind, image_ids=ids)
    return [row for image_id in sorted(heads) for _, row in sorted(heads[image_id].items())]


def _is_background(region: Mapping[str, Any]) -> bool:
    label = region.get("label")
    return isinstance(label, str) and label.strip().lower() == BACKGROUND
