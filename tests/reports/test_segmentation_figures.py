"""Figures of a segmentation: label maps over images, and IoU bars."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lensloop.errors import ConfigError, LabelError
from lensloop.reports.segmentation import class_colours, draw_iou_bars, draw_segment_overlay
from lensloop.tasks.segment.scoring import confusion_matrix, segment_scores

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
V = 255


def _open(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(np.int32)


def _scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 image; a box (1) in the middle holding a block of rock (2); void on top."""
    image = np.full((height, width), 90, np.uint8)
    labels = np.zeros((height, width), np.uint8)
    labels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    labels[3 * height // 8 : 5 * height // 8, 3 * width // 8 : 5 * width // 8] = 2
    labels[: height // 10] = V
    return image, labels


def test_import_costs_numpy_only() -> None:
    code = (
        "import sys, lensloop.reports.segmentation; "
        "heavy = [m for m in ('matplotlib', 'PIL', 'scipy', 'lensloop.tasks') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_class_colours_are_distinct_and_stable() -> None:
    colours = class_colours(40)
    assert len(set(colours)) == 40
    assert class_colours(3) == colours[:3]
    assert all(all(0 <= c <= 255 for c in colour) for colour in colours)


def test_small_overlay_is_enlarged_and_tinted(tmp_path: Path) -> None:
    image, labels = _scene(64, 96)
    path = draw_segment_overlay(image, labels, ["box", "rock"], tmp_path / "o.png", title="t")
    assert path == tmp_path / "o.png"
    pixels = _open(path)
    # A small image is enlarged by a whole factor (to a longer side of at least 512).
    assert pixels.shape[1] == 96 * 6
    band = pixels.shape[0] - 64 * 6
    assert band > 0
    assert (pixels[:band] == 255).mean() > 0.5  # a white legend band

    def at(row: int, col: int) -> np.ndarray:
        return pixels[band + row * 6 + 3, col * 6 + 3]

    background, box, rock, void = at(5 * 8, 3), at(20, 30), at(32, 48), at(2, 50)
    assert background.tolist() == [90, 90, 90]  # background is not tinted
    red, green = class_colours(2)
    for pixel, colour in ((box, red), (rock, green)):
        assert pixel.tolist() != [90, 90, 90]  # tinted ...
        # ... towards its class colour
        assert np.abs(pixel - np.array(colour)).sum() < np.abs(90 - np.array(colour)).sum()
    assert box.tolist() != rock.tolist()
    assert void.tolist() != [90, 90, 90]
    void_block = pixels[band : band + 30, 300:340].reshape(-1, 3)
    shades = {tuple(p) for p in void_block.tolist()}
    assert len(shades) == 2  # greyed, and hatched with dark lines
    assert min(sum(shade) for shade in shades) < 3 * 90 < max(sum(shade) for shade in shades)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no temporary file


def test_outlines_are_drawn_in_a_darker_shade(tmp_path: Path) -> None:
    image = np.full((600, 800), 200, np.uint8)
    labels = np.zeros((600, 800), np.uint8)
    labels[100:300, 100:300] = 1
    pixels = _open(draw_segment_overlay(image, labels, ["cell"], tmp_path / "o.png"))
    band = pixels.shape[0] - 600
    inside = pixels[band + 200, 200]
    edge = pixels[band + 100, 200]
    assert edge.sum() < inside.sum()  # the outline is darker than the tinted fill
    assert pixels[band + 98, 200].tolist() == [200, 200, 200]  # background just outside


def test_sixteen_bit_and_rgb_images(tmp_path: Path) -> None:
    _, labels = _scene(300, 400)
    grey16 = np.random.default_rng(0).integers(1000, 60000, (300, 400)).astype(np.uint16)
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[..., 2] = 200
    for name, image in (("g16.png", grey16), ("rgb.png", rgb)):
        pixels = _open(draw_segment_overlay(image, labels, ["box", "rock"], tmp_path / name))
        assert pixels.shape[1] == 800  # enlarged by 2


def test_large_map_is_downscaled_in_bounded_memory(tmp_path: Path) -> None:
    image, labels = _scene(4000, 6000)
    tracemalloc.start()
    try:
        path = draw_segment_overlay(image, labels, ["box", "rock"], tmp_path / "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pixels = _open(path)
    assert pixels.shape[1] == 2048
    assert pixels.shape[0] <= 2048
    band = pixels.shape[0] - round(4000 * 2048 / 6000)
    assert 0 < band < 200
    centre = pixels[band + (pixels.shape[0] - band) // 2, 1024]
    assert centre.tolist() != [90, 90, 90]  # rock, tinted
    assert peak < 300 * 2**20


def test_max_side_limits_the_png(tmp_path: Path) -> None:
    image, labels = _scene(1000, 1000)
    pixels = _open(
        draw_segment_overlay(image, labels, ["box", "rock"], tmp_path / "o.png", max_side=300)
    )
    assert max(pixels.shape[:2]) <= 300


def test_bad_overlay_input(tmp_path: Path) -> None:
    image = np.zeros((10, 10), np.uint8)
    labels = np.zeros((10, 10), np.uint8)
    out = tmp_path / "o.png"
    with pytest.raises(ValueError, match=r"image's \(H, W\)"):
        draw_segment_overlay(image, np.zeros((10, 11), np.uint8), ["rock"], out)
    with pytest.raises(LabelError, match=r"label\(s\) 3"):
        draw_segment_overlay(image, np.full((10, 10), 3, np.uint8), ["rock"], out)
    with pytest.raises(ConfigError, match="background"):
        draw_segment_overlay(image, labels, ["background"], out)
    with pytest.raises(ConfigError, match=r"\.png"):
        draw_segment_overlay(image, labels, ["rock"], tmp_path / "o.jpg")
    with pytest.raises(ValueError, match="alpha"):
        draw_segment_overlay(image, labels, ["rock"], out, alpha=1.5)
    with pytest.raises(ValueError, match="max_side"):
        draw_segment_overlay(image, labels, ["rock"], out, max_side=100)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- IoU bars


def test_iou_bars(tmp_path: Path) -> None:
    truth = np.array([[0, 1, 1], [2, 2, V]], np.uint8)
    pred = np.array([[0, 1, 2], [2, 2, 0]], np.uint8)
    scores = segment_scores(confusion_matrix(pred, truth, 4), ["box", "rock", "gravel"])
    assert scores["iou"]["gravel"] is None
    path = draw_iou_bars(scores, tmp_path / "iou.png", title="validation")
    pixels = _open(path)
    assert pixels.shape[0] > 100
    assert pixels.shape[1] > 300
    red, green = class_colours(2)
    flat = pixels.reshape(-1, 3)
    for colour in (red, green):
        assert (np.abs(flat - np.array(colour)).sum(axis=1) < 10).sum() > 100  # the bars


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        ({"mean_iou": 0.5}, "'iou' mapping"),
        ({"iou": {}}, "empty"),
        ({"iou": {"a": 1.5}}, "from 0 to 1"),
        ({"iou": {"a": "high"}}, "a number or None"),
    ],
)
def test_bad_scores(tmp_path: Path, scores: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        draw_iou_bars(scores, tmp_path / "iou.png")
