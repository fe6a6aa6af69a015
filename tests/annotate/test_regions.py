"""Regions and label maps: polygon filling, drawing order, void, payloads, label PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lensloop.annotate.labelmap import BACKGROUND, VOID
from lensloop.annotate.regions import (
    Region,
    fill_polygon,
    label_map_regions,
    rasterise,
    read_label_png,
    regions_from_payload,
)
from lensloop.annotate.rle import mask_to_counts
from lensloop.errors import LabelError, SourceError

CLASSES = ["box", "rock"]


def square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


BOX = Region("box", polygon=square(1, 1, 19, 11))
ROCKS = (
    Region("rock", polygon=square(3, 3, 7, 8)),
    Region("rock", polygon=square(10, 4, 16, 9)),
)


# -- regions --------------------------------------------------------------------------------


def test_region_needs_exactly_one_geometry() -> None:
    with pytest.raises(LabelError, match="exactly one of polygon and mask, got neither"):
        Region("rock")
    with pytest.raises(LabelError, match="got both"):
        Region("rock", polygon=square(0, 0, 1, 1), mask=np.zeros((2, 2), bool))
    with pytest.raises(LabelError, match="K >= 3"):
        Region("rock", polygon=np.array([[0.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(LabelError, match="finite"):
        Region("rock", polygon=np.array([[0.0, 0.0], [1.0, np.nan], [2.0, 0.0]]))
    with pytest.raises(LabelError, match="non-empty label"):
        Region(" ", polygon=square(0, 0, 1, 1))


def test_region_area_and_dtypes() -> None:
    region = Region("rock", polygon=[[0, 0], [4, 0], [4, 3], [0, 3]])  # type: ignore[arg-type]
    assert region.polygon is not None
    assert region.polygon.dtype == np.float64
    assert region.area() == 12.0
    assert Region("rock", polygon=[[0, 0], [4, 0], [0, 3]]).area() == 6.0  # type: ignore[arg-type]
    mask = Region("rock", mask=np.array([[0, 1], [1, 1]], dtype=np.uint8))  # type: ignore[arg-type]
    assert mask.mask is not None
    assert mask.mask.dtype == np.bool_
    assert mask.area() == 3.0


# -- pixel centres ----------------------------------------------------------------------------


def test_pixel_inside_when_its_centre_is() -> None:
    # Triangle (0.5, 0.5), (3.5, 0.5), (0.5, 2.5): row 0's centre line y = 0.5 runs along
    # its top edge, from x = 0.5 to 3.5 -> centres 0.5, 1.5, 2.5; on row 1 (y = 1.5) the
    # hypotenuse is at x = 2.0 -> centres 0.5, 1.5; row 2 (y = 2.5) only touches the corner.
    labels = rasterise(
        [Region("rock", polygon=np.array([[0.5, 0.5], [3.5, 0.5], [0.5, 2.5]]))],
        (4, 4),
        CLASSES,
    )
    np.testing.assert_array_equal(
        labels,
        [[2, 2, 2, 0], [2, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    )


def test_integer_rectangle_covers_its_area_and_shared_edges_paint_once() -> None:
    window, inside = fill_polygon(square(1, 1, 4, 3), (5, 6))
    assert window == (slice(1, 3), slice(1, 4))
    assert inside.all()
    assert inside.sum() == 6
    # Centres on the left/top edges count, on the right/bottom edges do not.
    _, inside = fill_polygon(square(0.5, 0.5, 2.5, 2.5), (4, 4))
    assert inside.sum() == 4
    left = fill_polygon(square(0, 0, 2.5, 3), (3, 5))
    right = fill_polygon(square(2.5, 0, 5, 3), (3, 5))
    painted = np.zeros((3, 5), int)
    for window, inside in (left, right):
        painted[window] += inside
    np.testing.assert_array_equal(painted, np.ones((3, 5)))


def test_fill_polygon_matches_skimage_off_the_centres() -> None:
    from skimage.draw import polygon as sk_polygon

    rng = np.random.default_rng(5)
    for _ in range(40):
        points = rng.uniform(-4, 36, size=(int(rng.integers(3, 10)), 2))
        shape = (29, 33)
        window, inside = fill_polygon(points, shape)
        ours = np.zeros(shape, bool)
        ours[window] = inside
        rows, cols = sk_polygon(points[:, 1] - 0.5, points[:, 0] - 0.5, shape=shape)
        theirs = np.zeros(shape, bool)
        theirs[rows, cols] = True
        np.testing.assert_array_equal(ours, theirs)


def test_polygons_outside_the_image_are_clipped() -> None:
    window, inside = fill_polygon(square(-5, -5, 2, 2), (4, 4))
    assert inside.sum() == 4
    assert window == (slice(0, 2), slice(0, 2))
    assert fill_polygon(square(10, 10, 12, 12), (4, 4))[1].size == 0
    labels = rasterise([Region("box", polygon=square(-10, -10, 50, 50))], (3, 4), CLASSES)
    assert (labels == 1).all()


# -- drawing order ----------------------------------------------------------------------------


@pytest.mark.parametrize("box_first", [True, False])
def test_container_is_drawn_under_what_it_contains_whatever_the_file_order(
    box_first: bool,
) -> None:
    regions = [BOX, *ROCKS] if box_first else [*ROCKS, BOX]
    by_area = rasterise(regions, (12, 20), CLASSES)
    explicit = rasterise(regions, (12, 20), CLASSES, draw_order=["box", "rock"])
    np.testing.assert_array_equal(by_area, explicit)
    assert (by_area == 2).sum() == 4 * 5 + 6 * 5
    assert (by_area == 1).sum() == 18 * 10 - 50
    assert by_area[5, 5] == 2
    assert by_area[2, 2] == 1
    assert by_area[0, 0] == BACKGROUND


def test_explicit_draw_order_can_paint_the_box_over_the_rocks() -> None:
    labels = rasterise([*ROCKS, BOX], (12, 20), CLASSES, draw_order=["rock", "box"])
    assert not (labels == 2).any()
    assert (labels == 1).sum() == 18 * 10


def test_classes_missing_from_draw_order_go_first_larger_first() -> None:
    classes = ["box", "rock", "vein"]
    vein = Region("vein", polygon=square(2, 5, 18, 6))  # crosses box and both rocks
    labels = rasterise([vein, *ROCKS, BOX], (12, 20), classes, draw_order=["rock"])
    # box and vein are not listed: box (larger) then vein, then the rocks over both.
    assert labels[5, 5] == 2
    assert labels[5, 12] == 2
    assert labels[5, 2] == 3
    assert labels[5, 8] == 3
    assert labels[2, 2] == 1


def test_void_is_drawn_last_unless_placed() -> None:
    void = Region("void", polygon=square(0, 0, 20, 12))
    assert (rasterise([void, BOX, *ROCKS], (12, 20), CLASSES) == VOID).all()
    placed = rasterise([void, BOX, *ROCKS], (12, 20), CLASSES, draw_order=["void", "box", "rock"])
    np.testing.assert_array_equal(
        placed[1:11, 1:19], rasterise([BOX, *ROCKS], (12, 20), CLASSES)[1:11, 1:19]
    )
    assert placed[0, 0] == VOID
    ignore = Region("Ignore", polygon=square(3, 3, 5, 5))
    labels = rasterise([BOX, *ROCKS, ignore], (12, 20), CLASSES, draw_order=["box", "rock"])
    assert (labels[3:5, 3:5] == VOID).all()
    assert labels[6, 6] == 2


def test_unlabelled_pixels_can_be_void_and_background_regions_paint_zero() -> None:
    hole = Region("background", polygon=square(4, 4, 6, 6))
    labels = rasterise([BOX, hole], (12, 20), CLASSES, unlabelled=VOID)
    assert labels[0, 0] == VOID
    assert labels[11, 19] == VOID
    assert labels[2, 2] == 1
    assert (labels[4:6, 4:6] == BACKGROUND).all()
    with pytest.raises(LabelError, match="unlabelled must be 0"):
        rasterise([BOX], (12, 20), CLASSES, unlabelled=3)


def test_masks_are_drawn_with_polygons() -> None:
    mask = np.zeros((12, 20), bool)
    mask[0, :] = True
    labels = rasterise([Region("rock", mask=mask), BOX], (12, 20), CLASSES)
    assert (labels[0] == 2).all()
    assert labels[1, 1] == 1
    with pytest.raises(
        LabelError, match=r"region 0 \('rock'\) has a 3x4 mask but the label map is 12x20"
    ):
        rasterise([Region("rock", mask=np.zeros((3, 4), bool))], (12, 20), CLASSES)


def test_unknown_labels_are_named_with_the_classes() -> None:
    regions = [BOX, Region("gravel", polygon=square(0, 0, 2, 2))]
    with pytest.raises(LabelError, match=r"'gravel' \(region 1\).*the classes are: box, rock"):
        rasterise(regions, (12, 20), CLASSES)


def test_bad_draw_order_and_shape() -> None:
    with pytest.raises(LabelError, match="unknown class 'gravel'"):
        rasterise([BOX], (12, 20), CLASSES, draw_order=["box", "gravel"])
    with pytest.raises(LabelError, match="same label"):
        rasterise([BOX], (12, 20), CLASSES, draw_order=["void", "ignore"])
    with pytest.raises(LabelError, match="positive integers"):
        rasterise([BOX], (0, 20), CLASSES)
    with pytest.raises(LabelError, match="more than once"):
        rasterise([BOX], (12, 20), ["box", "box"])


# -- payloads --------------------------------------------------------------------------------


def test_regions_from_polygon_mask_box_and_deleted_payloads() -> None:
    polygon = {
        "width": 20,
        "height": 12,
        "polygons": [{"points": [[1, 1], [5, 1], [5, 4]], "label": "rock", "id": "a"}],
    }
    (region,) = regions_from_payload("polygon", polygon)
    assert region.label == "rock"
    np.testing.assert_array_equal(region.polygon, [[1, 1], [5, 1], [5, 4]])

    mask = np.zeros((12, 20), bool)
    mask[2:4, 3:9] = True
    payload = {
        "width": 20,
        "height": 12,
        "masks": [{"label": "box", "id": "m", **mask_to_counts(mask)}],
    }
    (region,) = regions_from_payload("mask", payload)
    np.testing.assert_array_equal(region.mask, mask)

    boxes = {"boxes": [{"x": 2, "y": 1, "width": 4, "height": 3, "rotation": 0, "label": "box"}]}
    (region,) = regions_from_payload("box", boxes)
    assert region.area() == pytest.approx(12.0)

    assert regions_from_payload("mask", {"deleted": True}) == []


def test_bad_payloads() -> None:
    with pytest.raises(LabelError, match="kind 'points' has no regions"):
        regions_from_payload("points", {"points": []})
    with pytest.raises(LabelError, match="needs a 'polygons' list"):
        regions_from_payload("polygon", {"width": 3})
    bad = {"polygons": [{"points": [[0, 0], [1, 1]], "label": "rock", "id": "p7"}]}
    with pytest.raises(LabelError, match=r"region 0 \(p7\).*K >= 3"):
        regions_from_payload("polygon", bad)


# -- label PNGs ------------------------------------------------------------------------------


def _save(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    image = PILImage.fromarray(pixels.astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")
        palette = np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8)
        image.putpalette(palette.tobytes())
        image.putdata(pixels.ravel().tolist())
    image.save(path)
    return path


LABELS = np.array([[0, 1, 1, 2], [0, 2, 255, 2], [1, 1, 0, 0]], dtype=np.uint8)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_read_label_png_uses_indices_not_colours(tmp_path: Path, mode: str) -> None:
    path = _save(tmp_path / "a.png", LABELS, mode)
    with PILImage.open(path) as image:
        assert image.mode == mode
    labels = read_label_png(path, CLASSES)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, LABELS)


def test_read_label_png_maps_values(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", np.array([[0, 10, 20], [99, 20, 0]]))
    labels = read_label_png(
        path, CLASSES, values={0: "background", 10: "box", 20: "rock", 99: "void"}
    )
    np.testing.assert_array_equal(labels, [[0, 1, 2], [255, 2, 0]])
    with pytest.raises(LabelError, match=r"pixel value\(s\) 99 are not in values"):
        read_label_png(path, CLASSES, values={0: "background", 10: "box", 20: "rock"})
    with pytest.raises(LabelError, match="unknown labels \\(20: 'gravel'\\)"):
        read_label_png(path, CLASSES, values={0: "background", 10: "box", 20: "gravel", 99: "void"})


def test_read_label_png_lists_bad_values_and_the_fix(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", np.array([[0, 1, 7], [9, 255, 2]]))
    with pytest.raises(
        LabelError, match=r"a\.png: pixel value\(s\) 7, 9 are not labels.*pass values"
    ):
        read_label_png(path, CLASSES)


def test_read_label_png_refuses_colour_images_and_missing_files(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    PILImage.fromarray(np.zeros((2, 2, 3), np.uint8)).save(rgb)
    with pytest.raises(LabelError, match=r"RGB.*mode 'L' or 'P'"):
        read_label_png(rgb, CLASSES)
    with pytest.raises(SourceError, match="no such label file"):
        read_label_png(tmp_path / "missing.png", CLASSES)


def test_label_map_regions_round_trip() -> None:
    regions = label_map_regions(LABELS, CLASSES)
    assert [region.label for region in regions] == ["box", "rock", "void"]
    np.testing.assert_array_equal(rasterise(regions, LABELS.shape, CLASSES), LABELS)
    assert label_map_regions(np.zeros((2, 2), np.uint8), CLASSES) == []
    with pytest.raises(LabelError, match="values 3 are not labels"):
        label_map_regions(np.array([[3]], np.uint8), CLASSES)
