"""Label Studio results <-> pixel payloads: the one place percentages become pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensloop.annotate.labelstudio.results import ImageSize, parse_results, results_from_payload
from lensloop.annotate.rle import counts_to_mask, encode_brush
from lensloop.annotate.schema import LabelSchema
from lensloop.errors import LabelError
from lsfakes import brush, choice, keypoint

SIZE = ImageSize(200, 100)
SCHEMA = LabelSchema("segment", ("cell", "debris"))


def test_every_kind_becomes_pixels() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[10:20, 30:60] = True
    results = [
        keypoint(25.0, 50.0, "cell"),
        keypoint(100.0, 0.0, "debris", rid="k2"),
        {
            "id": "r1",
            "type": "rectanglelabels",
            "from_name": "box",
            "to_name": "image",
            "value": {
                "x": 10.0,
                "y": 20.0,
                "width": 50.0,
                "height": 30.0,
                "rotation": 15,
                "rectanglelabels": ["cell"],
            },
        },
        {
            "id": "p1",
            "type": "polygonlabels",
            "from_name": "polygon",
            "to_name": "image",
            "value": {"points": [[0, 0], [50, 0], [50, 100]], "polygonlabels": ["debris"]},
        },
        brush(mask, "cell"),
        choice("cell"),
    ]
    parsed = parse_results(results, size=SIZE, schema=SCHEMA, where="task 1")
    points = parsed.payloads["points"]["points"]
    assert [(p["x"], p["y"], p["label"]) for p in points] == [
        (50.0, 50.0, "cell"),
        (200.0, 0.0, "debris"),
    ]
    (box,) = parsed.payloads["box"]["boxes"]
    assert (box["x"], box["y"], box["width"], box["height"], box["rotation"]) == (
        20.0,
        20.0,
        100.0,
        30.0,
        15.0,
    )
    (polygon,) = parsed.payloads["polygon"]["polygons"]
    assert polygon["points"] == [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]]
    (stored,) = parsed.payloads["mask"]["masks"]
    assert np.array_equal(counts_to_mask(stored), mask)
    assert stored["label"] == "cell"
    assert stored["id"] == "b1"
    assert parsed.payloads["class"] == {"class": "cell"}
    assert parsed.payloads["points"]["width"] == 200


def test_status_choice_marks_points_even_without_any() -> None:
    parsed = parse_results(
        [choice("empty", name="status")], size=SIZE, schema=SCHEMA, where="task 2"
    )
    assert parsed.payloads == {
        "points": {"width": 200, "height": 100, "points": [], "status": "empty"}
    }
    with pytest.raises(LabelError, match="status 'most'"):
        parse_results([choice("most", name="status")], size=SIZE, schema=SCHEMA, where="t")


def test_unknown_result_types_are_counted_not_stored() -> None:
    text = {"type": "textarea", "from_name": "note", "value": {"text": ["hi"]}}
    parsed = parse_results([text, text], size=SIZE, schema=SCHEMA, where="task 3")
    assert parsed.payloads == {}
    assert parsed.ignored == {"textarea": 2}


def test_errors_name_the_record() -> None:
    with pytest.raises(
        LabelError, match=r"task 4, annotation 9, result k1: label 'virus'.*cell, debris"
    ):
        parse_results(
            [keypoint(1, 1, "virus")], size=SIZE, schema=SCHEMA, where="task 4, annotation 9"
        )
    wrong = brush(np.ones((10, 10), dtype=bool), "cell")
    wrong["original_width"], wrong["original_height"] = 200, 100  # RLE is for 10 x 10
    with pytest.raises(LabelError, match=r"task 5, result b1: .*original_width"):
        parse_results([wrong], size=SIZE, schema=SCHEMA, where="task 5")
    bad_point = keypoint(1, 1, "cell")
    bad_point["value"]["x"] = "left"
    with pytest.raises(LabelError, match="expected a number for 'x'"):
        parse_results([bad_point], size=SIZE, schema=SCHEMA, where="task 6")
    two = keypoint(1, 1, "cell")
    two["value"]["keypointlabels"] = ["cell", "debris"]
    with pytest.raises(LabelError, match="exactly one label"):
        parse_results([two], size=SIZE, schema=SCHEMA, where="task 7")
    with pytest.raises(LabelError, match="at least 3"):
        parse_results(
            [{"type": "polygonlabels", "value": {"points": [[0, 0]], "polygonlabels": ["cell"]}}],
            size=SIZE,
            schema=SCHEMA,
            where="task 8",
        )


def test_brush_drawn_on_a_smaller_rendering_is_resized() -> None:
    small = np.zeros((50, 100), dtype=bool)
    small[:, :50] = True  # left half
    result = brush(small, "cell")
    parsed = parse_results([result], size=SIZE, schema=SCHEMA, where="task 1")
    mask = counts_to_mask(parsed.payloads["mask"]["masks"][0])
    assert mask.shape == (100, 200)
    assert mask[:, :100].all()
    assert not mask[:, 100:].any()


def test_one_label_schema_accepts_unlabelled_tools() -> None:
    bare = {"type": "keypoint", "from_name": "kp", "value": {"x": 50, "y": 50}}
    parsed = parse_results([bare], size=SIZE, schema=LabelSchema("count", ("cell",)), where="t")
    assert parsed.payloads["points"]["points"][0]["label"] == "cell"


coords = st.floats(min_value=0, max_value=1, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    xy=st.lists(st.tuples(coords, coords), min_size=1, max_size=5),
)
def test_pixels_survive_the_round_trip(
    width: int, height: int, xy: list[tuple[float, float]]
) -> None:
    size = ImageSize(width, height)
    points = [
        {"x": x * width, "y": y * height, "label": "cell", "id": f"p{k}"}
        for k, (x, y) in enumerate(xy)
    ]
    boxes = [
        {
            "x": x * width,
            "y": y * height,
            "width": 3.0,
            "height": 2.0,
            "rotation": 0.0,
            "label": "debris",
            "id": "b",
        }
        for x, y in xy[:1]
    ]
    polygons = [
        {"points": [[x * width, y * height] for x, y in xy] * 3, "label": "cell", "id": "g"}
    ]
    results = (
        results_from_payload("points", {"points": points}, size=size)
        + results_from_payload("box", {"boxes": boxes}, size=size)
        + results_from_payload("polygon", {"polygons": polygons}, size=size)
    )
    parsed = parse_results(results, size=size, schema=SCHEMA, where="t").payloads
    for got, want in zip(parsed["points"]["points"], points, strict=True):
        assert got["x"] == pytest.approx(want["x"], rel=1e-9, abs=1e-9)
        assert got["y"] == pytest.approx(want["y"], rel=1e-9, abs=1e-9)
    got_box = parsed["box"]["boxes"][0]
    for key in ("x", "y", "width", "height"):
        assert got_box[key] == pytest.approx(boxes[0][key], rel=1e-9, abs=1e-9)
    got_polygon = np.array(parsed["polygon"]["polygons"][0]["points"])
    assert np.allclose(got_polygon, np.array(polygons[0]["points"]), rtol=1e-9, atol=1e-9)


def test_mask_payload_becomes_brush_result() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[40:60, 10:190] = True
    from lensloop.annotate.rle import mask_to_counts

    payload = {"masks": [{**mask_to_counts(mask), "label": "debris", "id": "m"}]}
    (result,) = results_from_payload("mask", payload, size=SIZE)
    assert result["type"] == "brushlabels"
    assert result["value"]["brushlabels"] == ["debris"]
    assert result["value"]["rle"] == encode_brush(mask)
    assert (result["original_width"], result["original_height"]) == (200, 100)
    classes = results_from_payload("class", {"class": "cell"}, size=SIZE)
    assert classes == [
        {
            "from_name": "class",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": ["cell"]},
        }
    ]
