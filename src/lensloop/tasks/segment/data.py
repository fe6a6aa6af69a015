"""What segmentation training reads: each annotated image's regions, as a label map.

:func:`load_segment_images` turns the catalog's current ``polygon`` and ``mask``
annotations into one :class:`SegmentImage` per annotated image, in image id order. An
image may carry both kinds (Label Studio's PolygonLabels and BrushLabels, or an imported
PNG next to imported polygons); their regions are drawn together.

Several annotators: masks cannot be averaged the way points are, so the regions of the
annotator who annotated the image last (the newest current row of either kind) are the
target; the others are listed in :attr:`SegmentImage.annotators` for review.

:meth:`SegmentImage.label_map` rasterises the regions with the project's drawing order
and its rule for unlabelled pixels (``[segment]`` in ``lensloop.toml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from lensloop.annotate.labelmap import (
    BACKGROUND,
    BACKGROUND_NAMES,
    MAX_CLASSES,
    VOID,
    VOID_NAMES,
)
from lensloop.annotate.regions import Region, rasterise, regions_from_payload
from lensloop.catalog.annotations import annotations_by_annotator
from lensloop.catalog.models import Annotation, Image
from lensloop.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lensloop.project import Project

__all__ = ["REGION_KINDS", "SegmentImage", "load_segment_images", "segment_classes"]

#: Annotation kinds that hold segmentation regions.
REGION_KINDS = ("polygon", "mask")

_CHUNK = 900


@dataclass(frozen=True, eq=False)
class SegmentImage:
    """One image's segmentation target.

    Attributes:
        image_id: The catalog image.
        split: Its split (``train``, ``val``, ``test``, ``pool``) or ``None``.
        width: Its width in pixels.
        height: Its height in pixels.
        regions: The regions of the annotator whose annotation is the target.
        annotator: That annotator.
        annotators: Everyone with a current annotation of the image, sorted.
    """

    image_id: int
    split: str | None
    width: int
    height: int
    regions: tuple[Region, ...]
    annotator: str
    annotators: tuple[str, ...]

    def label_map(
        self,
        classes: Sequence[str],
        *,
        draw_order: Sequence[str] | None = None,
        unlabelled: str = "background",
    ) -> npt.NDArray[np.uint8]:
        """The ``(H, W)`` label map (:mod:`lensloop.annotate.labelmap`).

        Args:
            classes: The model's classes (label ``k`` is ``classes[k - 1]``).
            draw_order: Classes in painting order (first at the bottom); ``None`` or
                empty: larger regions first.
            unlabelled: ``background`` or ``void``: what pixels no region covers are.

        Raises:
            LabelError: A region's label is not one of ``classes`` (nor background or
                void).
        """
        return rasterise(
            self.regions,
            (self.height, self.width),
            classes,
            draw_order=list(draw_order) if draw_order else None,
            unlabelled=VOID if unlabelled == "void" else BACKGROUND,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct region labels, sorted."""
        return tuple(sorted({region.label for region in self.regions}))


def load_segment_images(project: Project) -> list[SegmentImage]:
    """Every image with current polygon or mask annotations, in image id order.

    Raises:
        LabelError: A stored payload cannot be read as regions.
    """
    with project.catalog.reader() as session:
        heads: dict[int, dict[str, list[Annotation]]] = {}
        for kind in REGION_KINDS:
            for image_id, rows in annotations_by_annotator(session, kind).items():
                for annotator, row in rows.items():
                    heads.setdefault(image_id, {}).setdefault(annotator, []).append(row)
        ids = sorted(heads)
        images = _images(session, ids)
    found: list[SegmentImage] = []
    for image_id in ids:
        by_annotator = heads[image_id]
        annotator = max(by_annotator, key=lambda who: max(row.id for row in by_annotator[who]))
        regions: list[Region] = []
        for row in sorted(by_annotator[annotator], key=lambda r: r.id):
            regions.extend(regions_from_payload(row.kind, row.payload))
        split, width, height = images[image_id]
        found.append(
            SegmentImage(
                image_id=image_id,
                split=split,
                width=width,
                height=height,
                regions=tuple(regions),
                annotator=annotator,
                annotators=tuple(sorted(by_annotator)),
            )
        )
    return found


def _images(session: Session, ids: Sequence[int]) -> dict[int, tuple[str | None, int, int]]:
    found: dict[int, tuple[str | None, int, int]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        rows = session.execute(
            select(Image.id, Image.split, Image.width, Image.height).where(Image.id.in_(chunk))
        )
        for image_id, split, width, height in rows:
            found[int(image_id)] = (split, int(width), int(height))
    return found


def segment_classes(project: Project, items: Sequence[SegmentImage] = ()) -> list[str]:
    """The model's classes: the project's labels (or, without any, the regions' labels).

    Background and void names are not classes.

    Raises:
        ConfigError: More classes than a label map holds.
    """
    from lensloop.annotate.schema import project_schema

    special = BACKGROUND_NAMES | VOID_NAMES
    try:
        labels = list(project_schema(project).labels)
    except ConfigError:
        labels = sorted({label for item in items for label in item.labels})
    classes = [label for label in labels if label.casefold() not in special]
    if not classes:
        raise ConfigError(
            "a segment project needs at least one class; declare them with "
            "`lensloop init DIR --task segment --classes box,rock` or in lensloop.toml"
        )
    if len(classes) > MAX_CLASSES:
        raise ConfigError(f"{len(classes)} classes; a label map holds at most {MAX_CLASSES}")
    return classes
