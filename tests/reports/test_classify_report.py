from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lensloop.errors import ConfigError
from lensloop.reports import (
    GridItem,
    caption_height,
    draw_confusion_matrix,
    draw_prediction_grid,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _only_file(folder: Path) -> Path:
    """The folder holds the result and nothing else: no temporary file was left behind."""
    (path,) = folder.iterdir()
    return path


def test_import_is_cheap() -> None:
    code = (
        "import sys, lensloop.reports; "
        "heavy = [m for m in ('matplotlib', 'PIL') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_is_a_png(tmp_path: Path) -> None:
    matrix = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 40]])  # class "b" has no examples
    path = draw_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "cm.png", title="test set")
    assert path == tmp_path / "cm.png"
    assert _only_file(tmp_path) == path
    pixels = _open(path)
    assert 300 <= pixels.shape[0] <= 1500
    assert 300 <= pixels.shape[1] <= 1500
    assert pixels.std() > 10  # something was drawn


def test_confusion_matrix_counts_only_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "cm.png"
    out.write_bytes(b"old")
    draw_confusion_matrix([[3, 0], [1, 7]], ["x", "y"], str(out), normalize=False)
    assert _only_file(tmp_path) == out
    _open(out)


def test_confusion_matrix_grows_with_classes(tmp_path: Path) -> None:
    small = _open(draw_confusion_matrix(np.eye(3, dtype=int) * 4, list("abc"), tmp_path / "3.png"))
    n = 30
    matrix = np.diag(np.arange(1, n + 1))
    matrix[0, 1] = 3
    names = [f"class with a long name {i}" * (1 + i % 3) for i in range(n)]
    large = _open(draw_confusion_matrix(matrix, names, tmp_path / "30.png"))
    assert large.shape[0] > 1.5 * small.shape[0]
    assert large.shape[1] > 1.5 * small.shape[1]
    assert max(large.shape[:2]) < 4000


@pytest.mark.parametrize(
    ("matrix", "names", "match"),
    [
        (np.zeros((2, 3), int), ["a", "b"], "square"),
        (np.zeros(4, int), list("abcd"), "square"),
        (np.zeros((2, 2, 2), int), ["a", "b"], "square"),
        (np.zeros((0, 0), int), [], "non-empty"),
        (np.array([[1, -1], [0, 2]]), ["a", "b"], ">= 0"),
        (np.array([[1.0, 0.0], [0.0, 2.0]]), ["a", "b"], "integer"),
        (np.array([[0.5, 0.5], [0.0, 1.0]]), ["a", "b"], "integer"),
        (np.array([[True, False], [False, True]]), ["a", "b"], "integer"),
        (np.eye(2, dtype=int), ["a", "b", "c"], "3 names"),
        (np.eye(3, dtype=int), ["a", "b"], "2 names"),
        (np.eye(2, dtype=int), "ab", "sequence"),
        (np.eye(2, dtype=int), ["a", 2], r"class_names\[1\]"),
    ],
)
def test_confusion_matrix_rejects_bad_input(
    tmp_path: Path, matrix: np.ndarray, names: object, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        draw_confusion_matrix(matrix, names, tmp_path / "cm.png")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_confusion_matrix_needs_png_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="png"):
        draw_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.jpg")


# --------------------------------------------------------------------------- prediction grid

# Distinct solid colours: the centre of a tile tells which item was drawn there.
COLOURS = [(0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (0, 0, 0), (128, 64, 0)]


@pytest.fixture
def solid(tmp_path: Path) -> list[Path]:
    """One small solid-colour PNG per entry of COLOURS (some not square)."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i, colour in enumerate(COLOURS):
        path = folder / f"{i}.png"
        Image.new("RGB", (12, 12 + 4 * (i % 2)), colour).save(path)
        paths.append(path)
    return paths


def _pixel(pixels: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in pixels[y, x])
    return r, g, b


def _kind(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    if r > 150 and g < 90 and b < 90:
        return "error"
    if g > 120 and r < 100 and b < 100:
        return "correct"
    if max(rgb) - min(rgb) < 12 and 90 < r < 170:
        return "unknown"
    return f"other {rgb}"


def _tile_origin(index: int, columns: int, tile: int, head: int = 0) -> tuple[int, int]:
    row, column = divmod(index, columns)
    return column * tile, head + row * (tile + caption_height(tile))


def _border(pixels: np.ndarray, index: int, columns: int, tile: int) -> str:
    left, top = _tile_origin(index, columns, tile)
    return _kind(_pixel(pixels, left + 2, top + tile // 2))  # inside the frame


def _centre(pixels: np.ndarray, index: int, columns: int, tile: int) -> tuple[int, int, int]:
    left, top = _tile_origin(index, columns, tile)
    return _pixel(pixels, left + tile // 2, top + tile // 2)


def test_caption_height() -> None:
    assert caption_height(160) == 42
    heights = [caption_height(tile) for tile in (64, 96, 160, 320, 1024)]
    assert heights == sorted(heights)
    assert all(h >= 20 for h in heights)


def test_grid_layout(tmp_path: Path, solid: list[Path]) -> None:
    items = [GridItem(solid[i % 6], "a", "a", 0.5) for i in range(10)]
    out = tmp_path / "out"
    out.mkdir()
    path = draw_prediction_grid(items, out / "grid.png", columns=4, tile=64)
    assert _only_file(out) == path
    pixels = _open(path)
    assert pixels.shape[:2] == (3 * (64 + caption_height(64)), 4 * 64)
    assert _border(pixels, 9, 4, 64) == "correct"
    assert _centre(pixels, 10, 4, 64) == (255, 255, 255)  # the last row has two tiles


def test_grid_with_title_and_few_items(tmp_path: Path, solid: list[Path]) -> None:
    items = [GridItem(solid[0], None, "a", 0.5), GridItem(solid[1], "b", "a", 0.5)]
    pixels = _open(draw_prediction_grid(items, tmp_path / "g.png", title="held-out " * 40))
    band = caption_height(160)
    assert pixels.shape[:2] == (band + 160 + band, 2 * 160)  # two tiles: two columns


def test_grid_orders_errors_first(tmp_path: Path, solid: list[Path]) -> None:
    items = [
        GridItem(solid[0], "a", "a", 0.9),  # correct
        GridItem(solid[1], "a", "b", 0.6),  # error
        GridItem(solid[2], "b", "a", 0.95),  # error, the most confident
        GridItem(solid[3], "b", "b", 0.2),  # correct, the least confident
        GridItem(solid[4], None, "a", 0.5),  # unknown truth
    ]
    pixels = _open(draw_prediction_grid(items, tmp_path / "g.png", columns=3, tile=96))
    assert [_border(pixels, i, 3, 96) for i in range(5)] == [
        "error",
        "error",
        "correct",
        "correct",
        "unknown",
    ]
    centres = [_centre(pixels, i, 3, 96) for i in range(5)]
    assert centres == [COLOURS[2], COLOURS[1], COLOURS[3], COLOURS[0], COLOURS[4]]


def test_grid_keeps_order_without_errors_first(tmp_path: Path, solid: list[Path]) -> None:
    items = [GridItem(path, "a", "a" if i % 2 else "b", i / 10) for i, path in enumerate(solid)]
    path = draw_prediction_grid(items, tmp_path / "g.png", columns=6, tile=64, errors_first=False)
    pixels = _open(path)
    assert [_centre(pixels, i, 6, 64) for i in range(6)] == COLOURS
    assert [_border(pixels, i, 6, 64) for i in range(2)] == ["error", "correct"]


def test_grid_limit(tmp_path: Path, solid: list[Path]) -> None:
    items = [GridItem(path, "a", "a", 0.1 * (i + 1)) for i, path in enumerate(solid)]
    items.append(GridItem(solid[5], "a", "b", 0.3))
    pixels = _open(draw_prediction_grid(items, tmp_path / "g.png", columns=4, tile=64, limit=2))
    assert pixels.shape[:2] == (64 + caption_height(64), 2 * 64)
    assert _border(pixels, 0, 4, 64) == "error"
    assert _centre(pixels, 1, 4, 64) == COLOURS[0]  # then the least confident correct one


def test_small_images_fill_the_tile(tmp_path: Path, solid: list[Path]) -> None:
    pixels = _open(draw_prediction_grid([GridItem(solid[0], "a", "a", 1.0)], tmp_path / "g.png"))
    assert _pixel(pixels, 12, 80) == COLOURS[0]  # a 12 x 12 image enlarged to the frame


def test_sixteen_bit_image_is_stretched(tmp_path: Path) -> None:
    path = tmp_path / "ramp.png"
    Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 3).astype(np.uint16)).save(path)
    pixels = _open(draw_prediction_grid([GridItem(path, "a", "a", 0.5)], tmp_path / "g.png"))
    column = pixels[10:150, 80, 0].astype(int)
    assert column.min() < 30
    assert column.max() > 225


def test_unreadable_image_becomes_a_grey_tile(tmp_path: Path, solid: list[Path]) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    items = [
        GridItem(broken, "a", "b", 0.9),
        GridItem(tmp_path / "missing.tif", "a", "a", 0.5),
        GridItem(solid[0], "a", "a", 0.6),
    ]
    pixels = _open(draw_prediction_grid(items, tmp_path / "g.png", tile=96))
    for index in (0, 1):
        left, top = _tile_origin(index, 8, 96)
        assert _pixel(pixels, left + 48, top + 20) == (150, 150, 150)
    assert _centre(pixels, 2, 8, 96) == COLOURS[0]


@pytest.mark.parametrize("tile", [64, 160])
def test_long_class_names(tmp_path: Path, solid: list[Path], tile: int) -> None:
    long = "Chaetoceros " * 30
    items = [
        GridItem(solid[0], long, "short", 0.5),
        GridItem(solid[1], "ψ-rhizaria · αβγ", long + "ψ", 0.75, image_id=7),
        GridItem(solid[2], None, "W" * 200, np.float32(1.0)),  # type: ignore[arg-type]
    ]
    pixels = _open(draw_prediction_grid(items, tmp_path / "g.png", tile=tile, title=long))
    band = caption_height(tile)
    assert pixels.shape == (band + tile + band, 3 * tile, 3)
    for boundary in (tile, 2 * tile):  # no caption runs into its neighbour's
        between = pixels[band + tile : band + tile + band, boundary - 1 : boundary + 1]
        assert (between == 255).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"columns": 0}, "columns"),
        ({"columns": 2.5}, "columns"),
        ({"tile": 10}, "tile"),
        ({"tile": True}, "tile"),
        ({"limit": 0}, "limit"),
    ],
)
def test_grid_rejects_bad_options(
    tmp_path: Path, solid: list[Path], kwargs: dict[str, object], match: str
) -> None:
    items = [GridItem(solid[0], "a", "a", 0.5)]
    with pytest.raises(ConfigError, match=match):
        draw_prediction_grid(items, tmp_path / "g.png", **kwargs)  # type: ignore[arg-type]


def test_grid_rejects_bad_items(tmp_path: Path, solid: list[Path]) -> None:
    with pytest.raises(ConfigError, match="empty"):
        draw_prediction_grid([], tmp_path / "g.png")
    with pytest.raises(ConfigError, match="GridItem"):
        draw_prediction_grid([(solid[0], "a", "a", 0.5)], tmp_path / "g.png")  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="finite"):
        draw_prediction_grid([GridItem(solid[0], "a", "a", float("nan"))], tmp_path / "g.png")
    with pytest.raises(ConfigError, match="png"):
        draw_prediction_grid([GridItem(solid[0], "a", "a", 0.5)], tmp_path / "g.jpg")
    assert not list(tmp_path.glob("g.*"))
