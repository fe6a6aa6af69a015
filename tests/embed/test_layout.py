"""compute_layout (PCA, t-SNE, UMAP's absence) and draw_map (thumbnail maps as PNG)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np
import pytest
from PIL import Image
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from lensloop.embed.index import EmbeddingError
from lensloop.embed.layout import TSNE_MIN_VECTORS, compute_layout, draw_map
from lensloop.errors import ConfigError, UnsupportedImageError


def two_blobs(n: int = 60, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 2
    centres = np.zeros((2, dim))
    centres[1, :] = 3.0
    points = centres[truth] + rng.standard_normal((n, dim))
    return points.astype(np.float32), truth


def in_unit_square(layout: np.ndarray, n: int) -> None:
    assert layout.shape == (n, 2)
    assert layout.dtype == np.float32
    assert layout.min() >= 0.0
    assert layout.max() <= 1.0
    np.testing.assert_allclose(layout.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(layout.max(axis=0), 1.0, atol=1e-6)


# -- compute_layout ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_layouts_are_deterministic_and_in_the_unit_square(method: str) -> None:
    points, _ = two_blobs(80, dim=16)
    first = compute_layout(points, method=method, seed=3)  # type: ignore[arg-type]
    second = compute_layout(points, method=method, seed=3)  # type: ignore[arg-type]
    in_unit_square(first, 80)
    np.testing.assert_array_equal(first, second)


def test_tsne_separates_two_blobs_linearly() -> None:
    points, truth = two_blobs(100, dim=64)  # more than 50 dimensions: projected first
    layout = compute_layout(points, method="tsne", seed=0)
    classifier = LinearDiscriminantAnalysis().fit(layout, truth)
    assert classifier.score(layout, truth) == 1.0


def test_pca_separates_two_blobs_along_its_first_axis() -> None:
    points, truth = two_blobs(40, dim=8)
    layout = compute_layout(points)
    first_axis = layout[:, 0]
    assert (first_axis[truth == 0].max() < first_axis[truth == 1].min()) or (
        first_axis[truth == 1].max() < first_axis[truth == 0].min()
    )


def test_pca_edge_cases() -> None:
    two = compute_layout(np.array([[0.0, 1.0], [1.0, 0.0]], np.float32))
    assert sorted(two[:, 0].tolist()) == [0.0, 1.0]
    np.testing.assert_array_equal(two[:, 1], 0.5)  # two points span one axis only
    one_dim = compute_layout(np.array([[1.0], [2.0], [4.0]]))
    np.testing.assert_allclose(one_dim[:, 0], [0.0, 1 / 3, 1.0], atol=1e-6)
    np.testing.assert_array_equal(one_dim[:, 1], 0.5)
    same = compute_layout(np.ones((5, 3), np.float32))
    np.testing.assert_array_equal(same, 0.5)


def test_tsne_works_at_its_minimum_size() -> None:
    rng = np.random.default_rng(1)
    layout = compute_layout(rng.standard_normal((TSNE_MIN_VECTORS, 5)), method="tsne")
    assert layout.shape == (TSNE_MIN_VECTORS, 2)


def test_too_few_vectors_say_how_many_are_needed() -> None:
    with pytest.raises(EmbeddingError, match="a pca layout needs at least 2 vectors; got 1"):
        compute_layout(np.ones((1, 4), np.float32))
    with pytest.raises(
        EmbeddingError, match="a tsne layout needs at least 4 vectors; got 3; use method='pca'"
    ):
        compute_layout(np.eye(3, dtype=np.float32), method="tsne")
    with pytest.raises(EmbeddingError, match="at least 1 row"):
        compute_layout(np.empty((0, 4), np.float32))


def test_umap_without_the_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail
    with pytest.raises(ConfigError, match="pip install umap-learn"):
        compute_layout(np.eye(6, dtype=np.float32), method="umap")


def test_bad_options_and_vectors() -> None:
    with pytest.raises(ConfigError, match="unknown layout method 'mds'; valid methods are: pca"):
        compute_layout(np.eye(4), method="mds")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_jobs must be an integer >= 1"):
        compute_layout(np.eye(4), method="tsne", n_jobs=0)
    with pytest.raises(EmbeddingError, match="row 2 has a NaN"):
        compute_layout(np.array([[0, 1], [1, 0], [np.nan, 1]]))
    with pytest.raises(EmbeddingError, match="2-D array"):
        compute_layout(np.ones(5))


# -- draw_map ------------------------------------------------------------------------------

CORNERS = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]], np.float32)


def black(n: int, shape: tuple[int, ...] = (20, 20)) -> list[np.ndarray]:
    return [np.zeros(shape, np.uint8) for _ in range(n)]


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_draw_map_puts_thumbnails_where_the_layout_says(tmp_path: Path) -> None:
    path = draw_map(CORNERS, black(3), tmp_path / "map.png", size_px=200, thumb_px=20)
    assert path == tmp_path / "map.png"
    pixels = read(path)
    assert pixels.shape == (200, 200, 3)
    # pad 5, span 200 - 20 - 10 = 170; y points up, so (0, 0) is bottom-left.
    for row, col in [(185, 15), (15, 185), (100, 100)]:
        assert (pixels[row - 9 : row + 9, col - 9 : col + 9] == 0).all()
    assert (pixels[:, :] != 255).any(axis=2).sum() == 3 * 20 * 20
    assert (pixels[0:60, 0:60] == 255).all()


def test_draw_map_scales_thumbnails_to_fit_their_box(tmp_path: Path) -> None:
    tall = [np.zeros((400, 100), np.uint8)]
    small_rgb = [np.zeros((5, 5, 3), np.uint8)]
    layout = np.array([[0.5, 0.5]], np.float32)
    pixels = read(draw_map(layout, tall, tmp_path / "a.png", size_px=200, thumb_px=40))
    dark = np.argwhere((pixels != 255).any(axis=2))
    assert np.ptp(dark[:, 0]) + 1 == 40
    assert np.ptp(dark[:, 1]) + 1 == 10
    pixels = read(draw_map(layout, small_rgb, tmp_path / "b.png", size_px=200, thumb_px=40))
    assert (pixels != 255).any(axis=2).sum() == 40 * 40


def test_labels_get_coloured_borders_and_a_legend(tmp_path: Path) -> None:
    labels = ["diatom", None, "copepod"]
    path = draw_map(
        CORNERS, black(3), tmp_path / "map.png", labels=labels, size_px=400, thumb_px=40
    )
    pixels = read(path)
    # Labels are coloured in name order: copepod blue (tab10 #0), diatom orange (#1).
    blue = (pixels == (31, 119, 180)).all(axis=2)
    orange = (pixels == (255, 127, 14)).all(axis=2)
    legend_left = int(np.argwhere(orange)[:, 1].max()) - 20  # the swatches sit right
    # diatom at (0, 0): an orange frame around a black picture, bottom left.
    rows, cols = np.nonzero(orange[:, :legend_left])
    assert rows.min() >= 340
    assert cols.max() < 60
    assert (pixels[rows.min() + 5, cols.min() + 5] == 0).all()
    # copepod at (0.5, 0.5): a blue frame in the middle of the map area.
    rows, cols = np.nonzero(blue[:, :legend_left])
    assert 150 < rows.mean() < 250
    # None at (1, 1): black, no frame, and left of the legend, not under it.
    dark = (pixels == 0).all(axis=2)
    top_right = np.argwhere(dark[:60, 200:legend_left])
    assert len(top_right) > 0
    ring = pixels[: top_right[:, 0].max() + 4, 200 + top_right[:, 1].min() - 3 :][:, :30]
    assert not (ring == (255, 127, 14)).all(axis=2).any()
    assert not (ring == (31, 119, 180)).all(axis=2).any()
    # The legend: one swatch of each colour at the top right.
    assert blue[:60, legend_left:].sum() > 50
    assert orange[:60, legend_left:].sum() > 50


def test_many_labels_are_summarised_in_the_legend(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    layout = rng.random((60, 2)).astype(np.float32)
    labels = [f"taxon number {i:02d} with a very long descriptive name" for i in range(60)]
    path = draw_map(layout, black(60), tmp_path / "m.png", labels=labels, size_px=300, thumb_px=10)
    assert read(path).shape == (300, 300, 3)


def test_crowded_cells_draw_one_thumbnail_deterministically(tmp_path: Path) -> None:
    n = 500
    layout = np.full((n, 2), 0.5, np.float32)
    shades = [np.full((10, 10), i % 250, np.uint8) for i in range(n)]
    accessed: list[int] = []

    class Lazy(Sequence[np.ndarray]):
        def __len__(self) -> int:
            return n

        @overload
        def __getitem__(self, i: int) -> np.ndarray: ...
        @overload
        def __getitem__(self, i: slice) -> Sequence[np.ndarray]: ...
        def __getitem__(self, i: int | slice) -> np.ndarray | Sequence[np.ndarray]:
            assert isinstance(i, int)
            accessed.append(i)
            return shades[i]

    first = draw_map(layout, Lazy(), tmp_path / "a.png", size_px=100, thumb_px=10, seed=4)
    assert len(accessed) == 1
    second = draw_map(layout, shades, tmp_path / "b.png", size_px=100, thumb_px=10, seed=4)
    assert first.read_bytes() == second.read_bytes()


def test_many_points_fill_the_grid_without_piling_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layout = rng.random((5000, 2)).astype(np.float32)
    path = draw_map(layout, black(5000, (8, 8)), tmp_path / "m.png", size_px=400, thumb_px=8)
    covered = (read(path) != 255).any(axis=2).mean()
    assert 0.6 < covered < 1.0


def test_draw_map_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "map.png"
    path.write_bytes(b"old")
    draw_map(CORNERS, black(3), path, size_px=100, thumb_px=10)
    assert read(path).shape == (100, 100, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


def test_draw_map_rejects_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="thumbnails has 2 items but layout has 3 rows"):
        draw_map(CORNERS, black(2), tmp_path / "m.png")
    with pytest.raises(EmbeddingError, match="labels has 1 items but layout has 3 rows"):
        draw_map(CORNERS, black(3), tmp_path / "m.png", labels=["a"])
    with pytest.raises(EmbeddingError, match=r"labels\[1\] is 7; labels must be names"):
        draw_map(CORNERS, black(3), tmp_path / "m.png", labels=["a", 7, None])  # type: ignore[list-item]
    assert not list(tmp_path.iterdir())


def test_draw_map_rejects_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match=r"must lie in \[0, 1\]; got -2 to 3"):
        draw_map(np.array([[-2.0, 3.0]]), black(1), tmp_path / "m.png")
    with pytest.raises(EmbeddingError, match="have 3 dimensions"):
        draw_map(np.zeros((2, 3)), black(2), tmp_path / "m.png")
    with pytest.raises(EmbeddingError, match="at least 1 row"):
        draw_map(np.zeros((0, 2)), [], tmp_path / "m.png")


def test_draw_map_rejects_bad_thumbnails(tmp_path: Path) -> None:
    one = np.array([[0.5, 0.5]], np.float32)
    with pytest.raises(UnsupportedImageError, match=r"dtype uint16.*to_display"):
        draw_map(one, [np.zeros((4, 4), np.uint16)], tmp_path / "m.png")
    with pytest.raises(UnsupportedImageError, match=r"shape \(4, 4, 4\)"):
        draw_map(one, [np.zeros((4, 4, 4), np.uint8)], tmp_path / "m.png")
    with pytest.raises(UnsupportedImageError, match=r"shape \(0, 4\)"):
        draw_map(one, [np.zeros((0, 4), np.uint8)], tmp_path / "m.png")
    with pytest.raises(EmbeddingError, match="must be a NumPy array; got list"):
        draw_map(one, [[[0]]], tmp_path / "m.png")  # type: ignore[list-item]
    grey1 = draw_map(
        one, [np.zeros((4, 4, 1), np.uint8)], tmp_path / "g.png", size_px=64, thumb_px=8
    )
    assert grey1.exists()


def test_draw_map_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"give it a \.png suffix"):
        draw_map(CORNERS, black(3), tmp_path / "m.jpg")
    for size in (32, 50_000, 100.0):
        with pytest.raises(ConfigError, match="size_px must be an integer from 64 to 20000"):
            draw_map(CORNERS, black(3), tmp_path / "m.png", size_px=size)  # type: ignore[arg-type]
    for thumb in (2, 600):
        with pytest.raises(ConfigError, match="thumb_px must be an integer from 4 to"):
            draw_map(CORNERS, black(3), tmp_path / "m.png", size_px=2000, thumb_px=thumb)
