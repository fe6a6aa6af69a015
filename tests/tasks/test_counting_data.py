"""Counting targets from the catalog: consensus, inferred status, background regions."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lensloop.catalog.annotations import AnnotationRecord, add_annotations
from lensloop.catalog.models import Image
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings
from lensloop.tasks.counting.data import (
    CountImage,
    agreement_report,
    box_corners,
    load_count_images,
)

N_IMAGES = 6
WIDTH, HEIGHT = 40, 30
_versions = itertools.count()


@pytest.fixture
def counting(tmp_path: Path, settings: Settings) -> Iterator[Project]:
    rng = np.random.default_rng(5)
    for k in range(N_IMAGES):
        pixels = rng.integers(0, 255, size=(HEIGHT, WIDTH), dtype=np.uint8)
        path = tmp_path / "images" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(pixels).save(path)
    with Project.init(tmp_path / "p", task="count", classes=["cell"], settings=settings) as proj:
        ingest(proj, [tmp_path / "images"])
        yield proj


def _ids(project: Project) -> list[int]:
    with project.catalog.reader() as session:
        return list(session.scalars(select(Image.id).order_by(Image.id)))


def _record(image_id: int, annotator: str, kind: str, payload: dict[str, Any]) -> AnnotationRecord:
    key = f"{kind}:i{image_id}:{annotator}"
    return AnnotationRecord(
        image_id=image_id,
        kind=kind,
        payload={"width": WIDTH, "height": HEIGHT, **payload},
        annotator=annotator,
        origin="test",
        external_id=f"{key}@{next(_versions)}",
        version_key=key,
    )


def _points(
    image_id: int, annotator: str, points: Sequence[tuple[float, float]], status: str | None
) -> AnnotationRecord:
    payload: dict[str, Any] = {
        "points": [
            {"x": x, "y": y, "label": "cell", "id": f"p{k}"} for k, (x, y) in enumerate(points)
        ]
    }
    if status is not None:
        payload["status"] = status
    return _record(image_id, annotator, "points", payload)


def _add(project: Project, records: Sequence[AnnotationRecord]) -> None:
    with project.catalog.transaction() as session:
        add_annotations(session, records)


def _by_id(images: list[CountImage]) -> dict[int, CountImage]:
    return {image.image_id: image for image in images}


CELLS = [(5.0, 5.0), (20.0, 10.0), (30.0, 25.0)]
NUDGED = [(5.5, 5.0), (20.0, 11.0), (30.0, 24.0)]


def test_one_annotator_gives_their_points_and_status(counting: Project) -> None:
    a, b, *_ = _ids(counting)
    _add(counting, [_points(a, "alice", CELLS, "full"), _points(b, "bob", CELLS[:1], None)])
    images = load_count_images(counting)
    assert [image.image_id for image in images] == [a, b]  # only annotated images, by id
    first, second = images
    np.testing.assert_array_equal(first.points, CELLS)
    assert first.points.dtype == np.float64
    assert (first.status, first.annotators, first.consensus) == ("full", ("alice",), None)
    assert (first.width, first.height) == (WIDTH, HEIGHT)
    with counting.catalog.reader() as session:
        assert first.split == session.get(Image, a).split  # type: ignore[union-attr]
    assert second.status == "sparse"  # no status: sparse
    assert first.background == ()
    assert first.background_mask() is None


def test_status_inference_with_several_annotators(counting: Project) -> None:
    a, b, c, d, e, f = _ids(counting)
    _add(
        counting,
        [
            # agree, both full: full, points at the mean positions
            _points(a, "alice", CELLS, "full"),
            _points(a, "bob", NUDGED, "full"),
            # one says full, the other missed a cell: conflict
            _points(b, "alice", CELLS, "full"),
            _points(b, "bob", NUDGED[:2], "sparse"),
            # agree, but one said conflict
            _points(c, "alice", CELLS, "conflict"),
            _points(c, "bob", CELLS, "sparse"),
            # both empty
            _points(d, "alice", [], "empty"),
            _points(d, "bob", [], "empty"),
            # one says full, a third clicked one more object (disputed): conflict
            _points(e, "alice", CELLS, "full"),
            _points(e, "bob", CELLS, "sparse"),
            _points(e, "carol", [*CELLS, (1.0, 28.0)], None),
            # sparse clicks that disagree, nobody claims completeness: sparse
            _points(f, "alice", CELLS[:1], "sparse"),
            _points(f, "bob", CELLS[1:], None),
        ],
    )
    images = _by_id(load_count_images(counting, radius=3.0))
    status = {image_id: image.status for image_id, image in images.items()}
    assert status == {
        a: "full",
        b: "conflict",
        c: "conflict",
        d: "empty",
        e: "conflict",
        f: "sparse",
    }
    agreed = images[a]
    assert agreed.annotators == ("alice", "bob")
    assert agreed.consensus is not None
    expected = (np.array(CELLS) + np.array(NUDGED)) / 2
    np.testing.assert_allclose(agreed.points[np.argsort(agreed.points[:, 0])], expected)
    assert len(images[b].points) == 2  # the cell bob missed is disputed
    assert images[d].points.shape == (0, 2)
    with_disputed = _by_id(load_count_images(counting, radius=3.0, consensus_only=False))
    assert len(with_disputed[b].points) == 3
    assert len(with_disputed[e].points) == 4
    assert len(with_disputed[f].points) == 3


def test_full_with_agreeing_sparse_annotator_stays_full(counting: Project) -> None:
    a, b, *_ = _ids(counting)
    _add(
        counting,
        [
            _points(a, "alice", CELLS, "full"),
            _points(a, "bob", NUDGED, "sparse"),
            _points(b, "alice", [], "empty"),
            _points(b, "bob", [], None),
        ],
    )
    images = _by_id(load_count_images(counting))
    assert images[a].status == "full"
    assert images[b].status == "sparse"  # not everyone said empty


def test_deleted_annotations_do_not_count(counting: Project) -> None:
    a, *_ = _ids(counting)
    _add(counting, [_points(a, "alice", CELLS, "full"), _points(a, "bob", CELLS[:1], "full")])
    deletion = AnnotationRecord(
        image_id=a,
        kind="points",
        payload={"deleted": True},
        annotator="bob",
        origin="test",
        external_id=f"points:i{a}:bob@deleted",
        version_key=f"points:i{a}:bob",
    )
    _add(counting, [deletion])
    (image,) = load_count_images(counting)
    assert (image.annotators, image.status, image.consensus) == (("alice",), "full", None)


def test_box_corners_turn_clockwise_about_the_top_left() -> None:
    np.testing.assert_allclose(box_corners(1, 2, 4, 3), [[1, 2], [5, 2], [5, 5], [1, 5]])
    # 90 degrees clockwise on screen (y down): the top edge now points down.
    np.testing.assert_allclose(
        box_corners(10, 0, 10, 5, 90), [[10, 0], [10, 10], [5, 10], [5, 0]], atol=1e-12
    )


def test_background_regions_from_boxes_and_polygons(counting: Project) -> None:
    a, b, *_ = _ids(counting)
    _add(
        counting,
        [
            _points(a, "alice", CELLS, "sparse"),
            _points(b, "alice", CELLS, "sparse"),
            _record(
                a,
                "alice",
                "box",
                {
                    "boxes": [
                        {
                            "x": 10,
                            "y": 0,
                            "width": 10,
                            "height": 5,
                            "rotation": 90,
                            "label": "background",
                            "id": "b1",
                        },
                        {
                            "x": 0,
                            "y": 0,
                            "width": 40,
                            "height": 30,
                            "rotation": 0,
                            "label": "cell",
                            "id": "b2",
                        },  # not background
                    ]
                },
            ),
            _record(
                a,
                "bob",
                "polygon",
                {
                    "polygons": [
                        {
                            "points": [[30, 20], [40, 20], [40, 30], [30, 30]],
                            "label": "Background",
                            "id": "q1",
                        }
                    ]
                },
            ),
            _record(b, "carol", "box", {"deleted": True}),
        ],
    )
    images = _by_id(load_count_images(counting))
    image = images[a]
    assert len(image.background) == 2
    np.testing.assert_allclose(image.background[0], [[10, 0], [10, 10], [5, 10], [5, 0]], atol=1e-9)
    mask = image.background_mask()
    assert mask is not None
    assert mask.shape == (HEIGHT, WIDTH)
    assert mask.dtype == np.bool_
    expected = np.zeros((HEIGHT, WIDTH), dtype=bool)
    expected[0:10, 5:10] = True  # the turned box: x in [5, 10], y in [0, 10]
    expected[20:30, 30:40] = True  # the polygon
    np.testing.assert_array_equal(mask, expected)
    assert images[b].background == ()


def test_agreement_report_lists_worst_first(counting: Project) -> None:
    a, b, c, d, *_ = _ids(counting)
    _add(
        counting,
        [
            _points(a, "alice", CELLS, "full"),  # one annotator: agreement 1.0
            _points(b, "alice", CELLS, "full"),
            _points(b, "bob", CELLS[:2], "sparse"),  # F1 0.8, conflict
            _points(c, "alice", CELLS[:1], None),
            _points(c, "bob", CELLS[1:2], None),  # F1 0
            _points(d, "alice", CELLS, None),
            _points(d, "bob", CELLS, None),  # F1 1.0
        ],
    )
    rows = agreement_report(counting)
    assert [row["image_id"] for row in rows] == [c, b, a, d]
    worst, middle, single, _ = rows
    assert worst["agreement"] == 0.0
    assert (worst["consensus"], worst["disputed"]) == (0, 2)
    assert middle["agreement"] == pytest.approx(0.8)
    assert middle["status"] == "conflict"
    assert middle["counts"] == {"alice": 3, "bob": 2}
    assert middle["pairwise_f1"] == {"alice|bob": pytest.approx(0.8)}
    assert single == {
        "image_id": a,
        "uri": single["uri"],
        "status": "full",
        "annotators": ["alice"],
        "counts": {"alice": 3},
        "consensus": 3,
        "disputed": 0,
        "agreement": 1.0,
        "pairwise_f1": {},
    }
    assert single["uri"].endswith(".png")
    with pytest.raises(ValueError, match="radius"):
        agreement_report(counting, radius=0)
