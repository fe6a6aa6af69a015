"""Figures of a counting model: points over an image, and predicted against true counts."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lensloop.errors import ConfigError
from lensloop.reports import draw_count_overlay, draw_count_scatter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What each marker colour looks like, loosely (the exact shades are the module's to choose).
COLOURS = {
    "green": lambda r, g, b: (g > 150) & (r < 100) & (b < 120),
    "red": lambda r, g, b: (r > 200) & (g < 80) & (b < 80),
    "blue": lambda r, g, b: (b > 200) & (r < 60),
    "orange": lambda r, g, b: (r > 200) & (g > 120) & (b < 60),
}


def _open(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(np.int32)


def _only_file(folder: Path) -> Path:
    """The folder holds the result and nothing else: no temporary file was left behind."""
    (path,) = folder.iterdir()
    return path


def _band(pixels: np.ndarray, image_height: int) -> int:
    """Height of the caption band above a picture ``image_height`` pixels tall."""
    band = pixels.shape[0] - image_height
    assert band > 0
    return band


def _near(
    pixels: np.ndarray, x: float, y: float, colour: str, *, band: int, scale: float = 1.0
) -> int:
    """How many pixels of ``colour`` lie within 12 pixels of image point ``(x, y)``."""
    cx, cy = int(x * scale), int(y * scale) + band
    window = pixels[max(cy - 12, band) : cy + 13, max(cx - 12, 0) : cx + 13]
    return int(COLOURS[colour](window[..., 0], window[..., 1], window[..., 2]).sum())


def _colours_near(pixels: np.ndarray, x: float, y: float, **kwargs: Any) -> set[str]:
    return {name for name in COLOURS if _near(pixels, x, y, name, **kwargs) > 0}


# --------------------------------------------------------------------------- overlay


def test_import_costs_numpy_only() -> None:
    code = (
        "import sys, lensloop.reports.counting; "
        "heavy = [m for m in ('matplotlib', 'PIL', 'scipy', 'lensloop.tasks') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_overlay_colours_matches_errors_and_misses(tmp_path: Path) -> None:
    image = np.zeros((600, 800), np.uint8)  # large enough to be drawn at its own size
    predicted = [[100.5, 100.5], [400.5, 300.5]]  # matched, false positive
    true = [[102.0, 100.5], [600.5, 450.5]]  # matched, missed
    out = tmp_path / "overlay.png"
    path = draw_count_overlay(image, predicted, out, true=true, radius=6, title="image 7")
    assert path == out
    assert _only_file(tmp_path) == out
    pixels = _open(out)
    assert pixels.shape[1] == 800
    band = _band(pixels, 600)
    assert _colours_near(pixels, 100.5, 100.5, band=band) == {"green"}
    assert _colours_near(pixels, 400.5, 300.5, band=band) == {"red"}
    assert _colours_near(pixels, 600.5, 450.5, band=band) == {"blue"}
    assert _colours_near(pixels, 300.5, 500.5, band=band) == set()
    assert (pixels[band + 200 : band + 280, 200:280] == 0).all()  # the image itself, black
    caption = pixels[:band]
    assert (caption == 255).all(axis=-1).mean() > 0.5  # a white band ...
    assert (caption.max(axis=-1) < 100).any()  # ... with black text (title and counts)
    r, g, b = np.moveaxis(caption, -1, 0)
    assert ((g > r + 50) & (g > b + 50)).any()  # "TP 1" in green


def test_overlay_predictions_only(tmp_path: Path) -> None:
    image = np.full((520, 700, 3), 40, np.uint8)
    points = np.array([[50.0, 60.0], [650.0, 500.0]])
    pixels = _open(draw_count_overlay(image, points, tmp_path / "p.png"))
    band = _band(pixels, 520)
    for x, y in points:
        assert _colours_near(pixels, x, y, band=band) == {"orange"}
    assert (pixels[band + 200 : band + 300, 200:300] == 40).all()  # uint8 is not stretched


def test_overlay_no_points(tmp_path: Path) -> None:
    pixels = _open(draw_count_overlay(np.zeros((600, 600), np.uint8), [], tmp_path / "e.png"))
    band = _band(pixels, 600)
    assert (pixels[band:] == 0).all()
    pixels = _open(
        draw_count_overlay(
            np.zeros((600, 600), np.uint8), np.zeros((0, 2)), tmp_path / "t.png", true=[], radius=3
        )
    )
    assert (pixels[_band(pixels, 600) :] == 0).all()


@pytest.mark.parametrize(
    "image",
    [
        np.tile(np.linspace(0, 4000, 640), (512, 1)).astype(np.uint16),  # 12-bit data
        np.tile(np.linspace(0, 1e-3, 640, dtype=np.float32), (512, 1)),
        np.tile(np.linspace(-5, 5, 640), (512, 1))[:, :, None].repeat(5, axis=2),  # 5 channels
    ],
    ids=["uint16", "float32", "float64-5-channels"],
)
def test_overlay_stretches_16_bit_and_float(tmp_path: Path, image: np.ndarray) -> None:
    pixels = _open(draw_count_overlay(image, [[320.0, 256.0]], tmp_path / "s.png"))
    assert pixels.shape[1] == 640
    band = _band(pixels, 512)
    picture = pixels[band:]
    assert picture[:, :3].max() < 10  # the low end is black ...
    assert picture[:, -3:].min() > 245  # ... and the high end white, whatever the range
    unmarked = picture[:200]
    assert (unmarked[..., 0] == unmarked[..., 1]).all()  # grey (the 5 channels are equal)
    assert _colours_near(pixels, 320.0, 256.0, band=band) == {"orange"}


def test_overlay_colour_image(tmp_path: Path) -> None:
    image = np.zeros((512, 512, 3), np.uint16)
    image[..., 0] = np.tile(np.arange(512, dtype=np.uint16), (512, 1))  # red ramp only
    pixels = _open(draw_count_overlay(image, [], tmp_path / "c.png"))
    picture = pixels[_band(pixels, 512) :]
    assert picture[:, -5:, 0].min() > 245
    assert picture[..., 1:].max() == 0


def test_overlay_large_image_is_shrunk(tmp_path: Path) -> None:
    image = np.zeros((4000, 4000), np.uint16)
    image[1000:2000, 2000:3000] = 1000  # a bright block
    image[::2] += 1  # fine stripes, averaged away
    predicted = [[3500.0, 3500.0]]
    tracemalloc.start()
    try:
        draw_count_overlay(image, predicted, tmp_path / "big.png", true=[[10.0, 10.0]], radius=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the picture, not the image: stretching the full 16-megapixel image would
    # take several full-size float32 copies (64 MB each).
    assert peak < 3 * image.nbytes
    pixels = _open(tmp_path / "big.png")
    assert max(pixels.shape[:2]) == 2048
    assert pixels.shape[0] == 2048  # the caption band is part of the 2048 pixels
    scale = pixels.shape[1] / 4000
    band = _band(pixels, round(4000 * scale))
    assert pixels[band + int(1500 * scale), int(2500 * scale)].min() > 245
    assert pixels[band + int(3000 * scale), int(1000 * scale)].max() < 10
    assert _colours_near(pixels, 3500.0, 3500.0, band=band, scale=scale) == {"red"}
    assert _colours_near(pixels, 10.0, 10.0, band=band, scale=scale) == {"blue"}


def test_overlay_small_image_is_enlarged(tmp_path: Path) -> None:
    image = np.zeros((32, 48), np.uint8)
    image[16, 24] = 200
    pixels = _open(
        draw_count_overlay(image, [[24.5, 16.5]], tmp_path / "s.png", true=[[24.5, 16.5]], radius=2)
    )
    scale = pixels.shape[1] / 48
    assert scale == 11  # a whole factor, up to 512 pixels
    band = _band(pixels, 32 * 11)
    assert (pixels[band + 16 * 11 : band + 17 * 11, 24 * 11 : 25 * 11] == 200).all()  # sharp
    assert _colours_near(pixels, 24.5, 16.5, band=band, scale=scale) == {"green"}


def test_overlay_max_side_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    draw_count_overlay(np.zeros((900, 1200), np.float32), [[5.0, 5.0]], str(out), max_side=300)
    assert _only_file(tmp_path) == out
    assert max(_open(out).shape[:2]) == 300


@pytest.mark.parametrize(
    ("image", "predicted", "options", "error", "match"),
    [
        (np.zeros((4, 4, 4, 1)), [], {}, ValueError, "image must be"),
        (np.zeros((0, 4)), [], {}, ValueError, "image must be"),
        (np.zeros((4, 4), np.complex64), [], {}, TypeError, "dtype"),
        (np.zeros((8, 8)), [1.0, 2.0], {}, ValueError, r"predicted must be an \(N, 2\)"),
        (np.zeros((8, 8)), np.zeros((3, 3)), {}, ValueError, r"predicted must be an \(N, 2\)"),
        (np.zeros((8, 8)), [[np.nan, 1.0]], {}, ValueError, "NaN"),
        (np.zeros((8, 8)), [], {"true": [[1, 2, 3]], "radius": 2}, ValueError, "true must be"),
        (np.zeros((8, 8)), [], {"true": [[1, 2]]}, ValueError, "radius is needed"),
        (np.zeros((8, 8)), [], {"true": [[1, 2]], "radius": 0}, ValueError, "radius must be"),
        (np.zeros((8, 8)), [], {"radius": float("nan")}, ValueError, "radius must be"),
        (np.zeros((8, 8)), [], {"max_side": 100}, ValueError, "max_side must be at least"),
        (np.zeros((8, 8)), [], {"max_side": 1000.0}, ValueError, "max_side must be an integer"),
    ],
)
def test_overlay_rejects_bad_input(
    tmp_path: Path,
    image: np.ndarray,
    predicted: Any,
    options: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        draw_count_overlay(image, predicted, tmp_path / "x.png", **options)
    assert not list(tmp_path.iterdir())


def test_overlay_needs_a_png_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.png"):
        draw_count_overlay(np.zeros((8, 8)), [], tmp_path / "x.jpg")


# --------------------------------------------------------------------------- scatter


def test_scatter_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "counts.png"
    path = draw_count_scatter(
        [10, 0, 52, 30], [12, 1, 47.5, 33], out, title="validation", labels=["a", "b", "c", "d"]
    )
    assert path == out
    assert _only_file(tmp_path) == out
    pixels = _open(out)
    assert 400 <= pixels.shape[0] <= 1000
    assert 400 <= pixels.shape[1] <= 1000
    assert pixels.std() > 10


@pytest.mark.parametrize(
    ("true", "predicted"),
    [([], []), ([0, 0, 0], [0, 0, 0]), ([0, 3], [-0.2, 2.5]), (np.arange(2000), np.arange(2000))],
    ids=["empty", "all-zero", "negative-prediction", "many"],
)
def test_scatter_edge_cases(tmp_path: Path, true: Any, predicted: Any) -> None:
    _open(draw_count_scatter(true, predicted, tmp_path / "s.png"))


@pytest.mark.parametrize(
    ("true", "predicted", "options", "match"),
    [
        ([1, 2], [1], {}, "one count per image"),
        ([[1, 2]], [[1, 2]], {}, "1-D"),
        ([1, np.nan], [1, 2], {}, "NaN"),
        ([1, -1], [1, 2], {}, ">= 0"),
        (["a"], [1], {}, "numbers"),
        ([1, 2], [1, 2], {"labels": ["a"]}, "one name per image"),
        ([1, 2], [1, 2], {"labels": "ab"}, "sequence of names"),
    ],
)
def test_scatter_rejects_bad_input(
    tmp_path: Path, true: Any, predicted: Any, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        draw_count_scatter(true, predicted, tmp_path / "s.png", **options)
    assert not list(tmp_path.iterdir())


def test_scatter_needs_a_png_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.png"):
        draw_count_scatter([1], [1], tmp_path / "s.svg")
