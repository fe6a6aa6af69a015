"""Label files from other tools: labelme, LabelBox (legacy JSON and v2 NDJSON), label PNGs."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from lensloop.annotate.labelfiles import LABEL_FORMATS, read_label_file
from lensloop.annotate.regions import rasterise
from lensloop.errors import LabelError, SourceError, UnknownNameError

CLASSES = ["box", "rock"]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def png_base64(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    PILImage.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def labelme(shapes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": "../images/core_a.png",
        "imageData": None,
        "imageHeight": 30,
        "imageWidth": 40,
        **extra,
    }


# -- labelme --------------------------------------------------------------------------------


def test_labelme_shapes(tmp_path: Path) -> None:
    patch = np.zeros((3, 4), bool)
    patch[1, 1:3] = True
    shapes = [
        {"label": "box", "points": [[2, 2], [38, 2], [38, 28], [2, 28]], "shape_type": "polygon"},
        {"label": "rock", "points": [[12, 20], [5, 10]], "shape_type": "rectangle"},
        {"label": "rock", "points": [[25, 15], [30, 15]], "shape_type": "circle"},
        {
            "label": "rock",
            "points": [[30, 4], [33, 6]],
            "shape_type": "mask",
            "mask": png_base64(patch),
        },
        {"label": "rock", "points": [[1, 1]], "shape_type": "point"},
        {"label": "rock", "points": [[1, 1], [3, 3]], "shape_type": "line"},
        {"label": "rock", "points": [[1, 1], [3, 3], [5, 1]], "shape_type": "linestrip"},
        {"label": "box", "points": [[0, 0], [1, 0], [1, 1]], "shape_type": None},
    ]
    (entry,) = read_label_file(write_json(tmp_path / "a.json", labelme(shapes)), CLASSES)
    assert entry.image == "images/core_a.png"
    assert (entry.width, entry.height) == (40, 30)
    assert entry.annotator is None
    assert not entry.by_stem
    assert entry.skipped == {"point": 1, "line": 1, "linestrip": 1}
    assert [r.label for r in entry.regions] == ["box", "rock", "rock", "rock", "box"]
    box, rectangle, circle, mask, default = entry.regions
    assert box.area() == 36 * 26
    np.testing.assert_array_equal(rectangle.polygon, [[5, 10], [12, 10], [12, 20], [5, 20]])
    assert circle.polygon is not None
    assert circle.area() == pytest.approx(math.pi * 25, rel=0.01)
    assert np.hypot(*(circle.polygon - [25, 15]).T) == pytest.approx(5.0)
    assert mask.mask is not None
    assert mask.mask.shape == (30, 40)
    assert np.argwhere(mask.mask).tolist() == [[5, 31], [5, 32]]
    assert default.polygon is not None
    labels = rasterise(entry.regions, (30, 40), CLASSES)
    assert labels[15, 8] == 2  # the rectangle, drawn over the box
    assert labels[15, 25] == 2  # the circle
    assert labels[5, 31] == 2  # the mask
    assert labels[4, 4] == 1


def test_labelme_errors_name_the_file_and_shape(tmp_path: Path) -> None:
    def read(shapes: list[dict[str, Any]], **extra: Any) -> None:
        read_label_file(write_json(tmp_path / "bad.json", labelme(shapes, **extra)), CLASSES)

    with pytest.raises(
        LabelError, match=r"bad\.json: shape 2 \(polygon 'rock'\): a polygon needs at least 3"
    ):
        read(
            [
                {"label": "box", "points": [[0, 0], [1, 0], [1, 1]]},
                {"label": "rock", "points": [[0, 0], [1, 1]]},
            ]
        )
    with pytest.raises(
        LabelError, match=r"shape 1: unknown shape_type 'ellipse'.*polygon, rectangle, circle, mask"
    ):
        read([{"label": "rock", "points": [[0, 0], [1, 1]], "shape_type": "ellipse"}])
    with pytest.raises(LabelError, match="x must be a finite number"):
        read([{"label": "rock", "points": [["a", 0], [1, 1], [2, 2]]}])
    with pytest.raises(LabelError, match="non-empty string label"):
        read([{"label": "", "points": [[0, 0], [1, 1], [2, 2]]}])
    with pytest.raises(LabelError, match="reaches outside the 40x30 image"):
        read(
            [
                {
                    "label": "rock",
                    "points": [[38, 0], [41, 2]],
                    "shape_type": "mask",
                    "mask": png_base64(np.ones((3, 4))),
                }
            ]
        )
    with pytest.raises(LabelError, match="'imagePath' must name the image"):
        read([], imagePath="")
    (tmp_path / "broken.json").write_text('{"shapes": [\n  {"label": }', encoding="utf-8")
    with pytest.raises(LabelError, match=r"broken\.json: line 2 column \d+: not valid JSON"):
        read_label_file(tmp_path / "broken.json", CLASSES)


# -- LabelBox -------------------------------------------------------------------------------


def test_labelbox_legacy_export(tmp_path: Path) -> None:
    rows = [
        {
            "ID": "ck1",
            "External ID": "core_a.png",
            "Created By": "ana@example.org",
            "Label": {
                "objects": [
                    {
                        "title": "box",
                        "polygon": [{"x": 1, "y": 1}, {"x": 30, "y": 1}, {"x": 30, "y": 20}],
                    },
                    {"value": "rock", "bbox": {"top": 4, "left": 5, "height": 6, "width": 7}},
                    {"title": "rock", "point": {"x": 3, "y": 3}},
                    {"title": "rock", "instanceURI": "https://example.org/mask.png"},
                ],
                "classifications": [],
            },
        },
        {"External ID": "core_b.png", "Label": "Skip"},
        {"External ID": "core_c.png", "Label": {}},
    ]
    entries = read_label_file(write_json(tmp_path / "export.json", rows), CLASSES)
    assert [e.image for e in entries] == ["core_a.png", "core_c.png"]
    first = entries[0]
    assert first.annotator == "ana@example.org"
    assert (first.width, first.height) == (None, None)
    assert first.skipped == {"point": 1, "mask URL": 1}
    assert [r.label for r in first.regions] == ["box", "rock"]
    np.testing.assert_array_equal(first.regions[1].polygon, [[5, 4], [12, 4], [12, 10], [5, 10]])
    assert entries[1].regions == ()
    assert (
        read_label_file(tmp_path / "export.json", CLASSES, format="labelbox")[0].image
        == "core_a.png"
    )
    rows[0]["Label"]["objects"] = [{"title": "rock", "line": []}, {"title": "rock"}]
    with pytest.raises(
        LabelError,
        match=r"row 1 \(core_a\.png\), object 2: object 'rock' has no 'polygon' or 'bbox'",
    ):
        read_label_file(write_json(tmp_path / "export.json", rows), CLASSES)


def ndjson_row(
    name: str, objects: list[dict[str, Any]], *, who: str = "bo@example.org"
) -> dict[str, Any]:
    return {
        "data_row": {"id": "dr1", "external_id": name, "row_data": f"https://x.org/{name}?sig=1"},
        "media_attributes": {"height": 30, "width": 40, "mime_type": "image/png"},
        "projects": {
            "p1": {
                "name": "cores",
                "labels": [
                    {
                        "label_details": {"created_by": who},
                        "annotations": {
                            "objects": objects,
                            "classifications": [],
                            "relationships": [],
                        },
                    }
                ],
            }
        },
    }


def test_labelbox_ndjson_export(tmp_path: Path) -> None:
    objects = [
        {
            "name": "box",
            "annotation_kind": "ImagePolygon",
            "polygon": [{"x": 1, "y": 1}, {"x": 30, "y": 1}, {"x": 30, "y": 20}],
        },
        {
            "name": "rock",
            "annotation_kind": "ImageBoundingBox",
            "bounding_box": {"top": 4, "left": 5, "height": 6, "width": 7},
        },
        {"name": "rock", "annotation_kind": "ImagePoint", "point": {"x": 3, "y": 3}},
    ]
    second = ndjson_row("core_b.png", [])
    del second["data_row"]["external_id"]
    lines = [json.dumps(ndjson_row("core_a.png", objects)), "", json.dumps(second)]
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first, last = read_label_file(path, CLASSES)
    assert (first.image, first.width, first.height, first.annotator) == (
        "core_a.png",
        40,
        30,
        "bo@example.org",
    )
    assert first.skipped == {"ImagePoint": 1}
    assert [r.label for r in first.regions] == ["box", "rock"]
    assert first.regions[1].area() == 42
    assert first.where == "export.ndjson line 1"
    assert last.image == "core_b.png"  # from the row_data URL
    assert last.where == "export.ndjson line 3"
    # The same rows in a .json file are recognised by their content.
    (tmp_path / "export.json").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert len(read_label_file(tmp_path / "export.json", CLASSES)) == 2
    path.write_text(json.dumps(ndjson_row("a.png", [])) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(LabelError, match=r"export\.ndjson: line 2 column 2: not valid JSON"):
        read_label_file(path, CLASSES)
    path.write_text(
        json.dumps(ndjson_row("a.png", [{"name": "rock", "annotation_kind": "ImageCuboid"}])),
        encoding="utf-8",
    )
    with pytest.raises(
        LabelError,
        match=r"line 1 \(a\.png\), label 1, object 1: unknown annotation_kind 'ImageCuboid'",
    ):
        read_label_file(path, CLASSES)


# -- label PNGs and dispatch -----------------------------------------------------------------


def test_png_folder_and_file(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 1], [2, 2, 255]], dtype=np.uint8)
    (tmp_path / "labels" / "plate1").mkdir(parents=True)
    PILImage.fromarray(labels).save(tmp_path / "labels" / "plate1" / "a.png")
    PILImage.fromarray(labels * (labels < 3)).save(tmp_path / "labels" / "b.tif.png")
    (tmp_path / "labels" / "notes.txt").write_text("ignored", encoding="utf-8")
    entries = read_label_file(tmp_path / "labels", CLASSES)
    assert [(e.image, e.by_stem, e.width, e.height) for e in entries] == [
        ("b.tif", True, 3, 2),
        ("plate1/a", True, 3, 2),
    ]
    assert [r.label for r in entries[1].regions] == ["box", "rock", "void"]
    assert len(read_label_file(tmp_path / "labels", CLASSES, format="mask")) == 2
    np.testing.assert_array_equal(rasterise(entries[1].regions, (2, 3), CLASSES), labels)
    (single,) = read_label_file(tmp_path / "labels" / "plate1" / "a.png", CLASSES)
    assert single.image == "a"
    mapped = read_label_file(
        tmp_path / "labels" / "plate1" / "a.png",
        CLASSES,
        values={0: "background", 1: "rock", 2: "box", 255: "void"},
    )
    assert [r.label for r in mapped[0].regions] == ["box", "rock", "void"]
    assert mapped[0].regions[0].mask is not None
    assert mapped[0].regions[0].mask.sum() == 2


def test_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(
        UnknownNameError, match=r"unknown label file format 'coco'.*labelbox-ndjson"
    ):
        read_label_file(tmp_path, CLASSES, format="coco")
    with pytest.raises(SourceError, match="no such label file"):
        read_label_file(tmp_path / "missing.json", CLASSES)
    (tmp_path / "a.csv").write_text("x", encoding="utf-8")
    with pytest.raises(LabelError, match=r"unknown label file type '\.csv'"):
        read_label_file(tmp_path / "a.csv", CLASSES)
    with pytest.raises(LabelError, match="not a label file lensloop knows"):
        read_label_file(
            write_json(tmp_path / "coco.json", {"images": [], "annotations": []}), CLASSES
        )
    assert set(LABEL_FORMATS) == {"labelme", "labelbox", "labelbox-ndjson", "png"}


def test_a_folder_is_read_file_by_file_in_any_format(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shape = {"label": "rock", "points": [[1, 1], [5, 1], [5, 4]], "shape_type": "polygon"}
    document = {"imagePath": "a.png", "imageHeight": 6, "imageWidth": 8, "shapes": [shape]}
    (folder / "a.json").write_text(json.dumps(document), encoding="utf-8")
    PILImage.fromarray(np.array([[0, 1], [2, 0]], dtype=np.uint8)).save(folder / "b.png")
    entries = read_label_file(folder, CLASSES)
    assert sorted(entry.image for entry in entries) == ["a.png", "b"]
    assert len(read_label_file(folder, CLASSES, format="labelme")) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no labels here", encoding="utf-8")
    with pytest.raises(SourceError, match="holds no label files"):
        read_label_file(empty, CLASSES)
