"""Importing segmentation label files: payloads, idempotency, versions, checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lensloop.annotate.maskfiles import import_labels
from lensloop.annotate.regions import rasterise, regions_from_payload
from lensloop.annotate.rle import counts_to_mask
from lensloop.catalog.annotations import annotations_by_annotator
from lensloop.catalog.models import Annotation, Image
from lensloop.errors import LabelError, NotFoundError, SourceError
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings

#: Images of the segment project, ``{relative path: (width, height)}``.
SIZES = {"cores/a.png": (40, 30), "cores/b.png": (40, 30), "thin/c.png": (20, 10)}
CLASSES = ["box", "rock"]


@pytest.fixture
def segment(tmp_path: Path, settings: Settings) -> Iterator[Project]:
    project = Project.init(tmp_path / "p", task="segment", classes=CLASSES, settings=settings)
    rng = np.random.default_rng(7)
    for name, (width, height) in SIZES.items():
        path = tmp_path / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rng.integers(0, 255, size=(height, width), dtype=np.uint8)).save(path)
    ingest(project, [tmp_path / "images"])
    with project:
        yield project


def _ids(project: Project) -> dict[str, int]:
    with project.catalog.reader() as session:
        rows = session.execute(select(Image.id, Image.uri))
        return {"/".join(uri.split("/")[-2:]): image_id for image_id, uri in rows}


def _rows(project: Project) -> list[Annotation]:
    with project.catalog.reader() as session:
        return list(session.scalars(select(Annotation).order_by(Annotation.id)))


def _labelme(
    path: Path, image: str, shapes: list[dict[str, Any]], size: tuple[int, int] = (40, 30)
) -> Path:
    data = {"shapes": shapes, "imagePath": image, "imageWidth": size[0], "imageHeight": size[1]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# The rocks come first in the file, the box that holds them last.
SHAPES = [
    {"label": "rock", "points": square(5, 5, 12, 20)},
    {"label": "rock", "points": square(20, 6, 30, 22), "shape_type": "polygon"},
    {"label": "box", "points": square(2, 2, 38, 28)},
    {"label": "rock", "points": [[1, 1]], "shape_type": "point"},
]


def test_import_stores_one_polygon_annotation_and_twice_adds_nothing(
    segment: Project, tmp_path: Path
) -> None:
    ids = _ids(segment)
    path = _labelme(tmp_path / "a.json", "../images/cores/a.png", SHAPES)
    report = import_labels(segment, [path])
    assert report.as_dict() == {
        "entries": 1,
        "images": 1,
        "regions": 3,
        "added": 1,
        "unchanged": 0,
        "superseded": 0,
        "skipped": {"point": 1},
    }
    (row,) = _rows(segment)
    assert (row.image_id, row.kind, row.annotator, row.origin) == (
        ids["cores/a.png"],
        "polygon",
        "import",
        "import",
    )
    assert row.payload["width"] == 40
    assert row.payload["height"] == 30
    assert [p["label"] for p in row.payload["polygons"]] == ["rock", "rock", "box"]
    assert row.payload["polygons"][2]["points"] == square(2, 2, 38, 28)
    assert row.external_id is not None
    assert row.external_id.startswith(f"polygon:i{ids['cores/a.png']}:import@")
    # The stored regions rasterise with the rocks inside the box.
    labels = rasterise(regions_from_payload(row.kind, row.payload), (30, 40), CLASSES)
    assert labels[10, 8] == 2
    assert labels[3, 3] == 1
    assert labels[0, 0] == 0

    again = import_labels(segment, [path])
    assert (again.added, again.unchanged, again.superseded) == (0, 1, 0)
    assert len(_rows(segment)) == 1


def test_a_changed_file_supersedes(segment: Project, tmp_path: Path) -> None:
    ids = _ids(segment)
    path = _labelme(tmp_path / "a.json", "cores/a.png", SHAPES)
    import_labels(segment, [path], annotator="ana")
    _labelme(path, "cores/a.png", [*SHAPES, {"label": "void", "points": square(0, 0, 4, 4)}])
    report = import_labels(segment, [path], annotator="ana")
    assert (report.added, report.unchanged, report.superseded) == (1, 0, 1)
    old, new = _rows(segment)
    assert new.supersedes_id == old.id
    with segment.catalog.reader() as session:
        current = annotations_by_annotator(session, "polygon")
    assert current[ids["cores/a.png"]]["ana"].id == new.id
    assert [p["label"] for p in new.payload["polygons"]][-1] == "void"


def test_label_pngs_become_mask_annotations_and_replace_left_out_polygons(
    segment: Project, tmp_path: Path
) -> None:
    ids = _ids(segment)
    import_labels(segment, [_labelme(tmp_path / "a.json", "cores/a.png", SHAPES)])
    labels = np.zeros((30, 40), np.uint8)
    labels[2:28, 2:38] = 1
    labels[5:20, 5:12] = 2
    labels[0, :] = 255
    folder = tmp_path / "labels" / "cores"
    folder.mkdir(parents=True)
    PILImage.fromarray(labels).save(folder / "a.png")  # named after cores/a.png
    PILImage.fromarray(labels[:10, :20]).save(tmp_path / "labels" / "c.png")  # thin/c.png

    report = import_labels(segment, [tmp_path / "labels"])
    assert (report.entries, report.images, report.regions) == (2, 2, 3 + 3)
    assert report.added == 3  # two masks, and the deletion of cores/a.png's polygons
    with segment.catalog.reader() as session:
        polygons = annotations_by_annotator(session, "polygon")
        masks = annotations_by_annotator(session, "mask")
    assert ids["cores/a.png"] not in polygons
    row = masks[ids["cores/a.png"]]["import"]
    assert [m["label"] for m in row.payload["masks"]] == ["box", "rock", "void"]
    assert (row.payload["width"], row.payload["height"]) == (40, 30)
    np.testing.assert_array_equal(counts_to_mask(row.payload["masks"][1]), labels == 2)
    regions = regions_from_payload("mask", row.payload)
    np.testing.assert_array_equal(rasterise(regions, (30, 40), CLASSES), labels)

    again = import_labels(segment, [tmp_path / "labels"])
    assert (again.added, again.unchanged) == (0, 2)


def test_labelbox_exports_by_annotator(segment: Project, tmp_path: Path) -> None:
    rows = [
        {
            "External ID": "cores/b.png",
            "Created By": "ana",
            "Label": {
                "objects": [
                    {"title": "rock", "bbox": {"top": 1, "left": 2, "height": 3, "width": 4}}
                ]
            },
        },
        {"External ID": "thin/c.png", "Created By": "bo", "Label": {}},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    report = import_labels(segment, [path])
    assert (report.entries, report.added) == (2, 2)
    by_annotator = {row.annotator: row.payload for row in _rows(segment)}
    assert by_annotator["ana"]["polygons"][0]["points"] == square(2, 1, 6, 4)
    assert by_annotator["bo"] == {"width": 20, "height": 10, "polygons": []}  # all background


def test_unknown_labels_are_listed_and_nothing_is_written(segment: Project, tmp_path: Path) -> None:
    good = _labelme(tmp_path / "a.json", "cores/a.png", SHAPES)
    bad = _labelme(
        tmp_path / "b.json",
        "cores/b.png",
        [
            {"label": "gravel", "points": square(1, 1, 5, 5)},
            {"label": "Void", "points": square(1, 1, 2, 2)},
        ],
    )
    with pytest.raises(
        LabelError, match=r"'gravel' \(b\.json\).*labels are: box, rock \(and background, void"
    ):
        import_labels(segment, [good, bad])
    assert _rows(segment) == []


def test_regions_outside_the_image_are_refused(segment: Project, tmp_path: Path) -> None:
    good = _labelme(tmp_path / "a.json", "cores/a.png", SHAPES)
    outside = _labelme(
        tmp_path / "c.json",
        "thin/c.png",
        [{"label": "rock", "points": square(1, 1, 25, 5)}],
        size=(20, 10),
    )
    with pytest.raises(
        LabelError,
        match=r"1 region\(s\) do not fit.*thin/c\.png \(20x10.*region 1 \('rock'\) spans x 1\.+25",
    ):
        import_labels(segment, [good, outside])
    wrong_size = _labelme(tmp_path / "d.json", "thin/c.png", [], size=(40, 30))
    with pytest.raises(LabelError, match="gives the image size as 40x30"):
        import_labels(segment, [wrong_size])
    PILImage.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(LabelError, match="gives the image size as 5x5"):
        import_labels(segment, [tmp_path / "c.png"])
    assert _rows(segment) == []


def test_image_references_and_duplicates(segment: Project, tmp_path: Path) -> None:
    unknown = _labelme(tmp_path / "x.json", "cores/zz.png", SHAPES)
    with pytest.raises(NotFoundError, match=r"'cores/zz\.png'"):
        import_labels(segment, [unknown])
    not_an_image = _labelme(tmp_path / "y.json", "a.json", [])
    with pytest.raises(NotFoundError, match="match no catalog image"):
        import_labels(segment, [not_an_image])
    first = _labelme(tmp_path / "a.json", "cores/a.png", SHAPES)
    second = _labelme(tmp_path / "a2.json", "a.png", [])
    with pytest.raises(
        SourceError, match=r"a2\.json: image .* is also labelled by 'import' in a\.json"
    ):
        import_labels(segment, [first, second])
    with pytest.raises(SourceError, match="no label files given"):
        import_labels(segment, [])
    assert _rows(segment) == []


def test_png_numbering_follows_classes(segment: Project, tmp_path: Path) -> None:
    labels = np.zeros((10, 20), np.uint8)
    labels[2:5, 2:5] = 1  # rock in this file's numbering
    PILImage.fromarray(labels).save(tmp_path / "c.png")
    import_labels(segment, [tmp_path / "c.png"], classes=["rock", "box"])
    (row,) = _rows(segment)
    assert [m["label"] for m in row.payload["masks"]] == ["rock"]
    with pytest.raises(LabelError, match="'gravel' are not in the project's label schema"):
        import_labels(segment, [tmp_path / "c.png"], classes=["gravel"])
