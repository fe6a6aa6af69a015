"""Synthetic fluorescence-cell images: shapes, determinism, realism checks, noisy clicks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree  # type: ignore[import-untyped]
from skimage.feature import peak_local_max

from lensloop.tasks.counting.synthetic import (
    CellStyle,
    jitter_points,
    make_cell_dataset,
    make_cell_image,
    thin_points,
)


def _mean_nearest_neighbour(points: np.ndarray) -> float:
    distances, _ = cKDTree(points).query(points, k=2)
    return float(distances[:, 1].mean())


def test_same_seed_same_image_and_centres() -> None:
    a_image, a_centres = make_cell_image(64, 80, 20, seed=7)
    b_image, b_centres = make_cell_image(64, 80, 20, seed=7)
    c_image, c_centres = make_cell_image(64, 80, 20, seed=8)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_centres, b_centres)
    assert not np.array_equal(a_centres, c_centres)
    assert not np.array_equal(a_image, c_image)


def test_noise_and_light_do_not_move_the_cells() -> None:
    _, plain = make_cell_image(64, 64, 30, style=CellStyle(shot_noise=0.0, gradient=0.0), seed=3)
    _, noisy = make_cell_image(64, 64, 30, style=CellStyle(shot_noise=0.1, gradient=0.5), seed=3)
    np.testing.assert_array_equal(plain, noisy)


@pytest.mark.parametrize(("height", "width", "n_cells"), [(64, 96, 50), (31, 17, 5), (1, 1, 3)])
def test_centres_exact_count_and_inside(height: int, width: int, n_cells: int) -> None:
    image, centres = make_cell_image(height, width, n_cells, seed=0)
    assert image.shape == (height, width)
    assert centres.shape == (n_cells, 2)
    assert centres.dtype == np.float64
    assert np.all(centres >= 0.0)
    assert np.all(centres[:, 0] < width)
    assert np.all(centres[:, 1] < height)


def test_centres_keep_a_margin_and_are_sub_pixel() -> None:
    style = CellStyle(radius=(4.0, 5.0), clumping=1.0)
    _, centres = make_cell_image(100, 120, 200, style=style, seed=2)
    assert np.all(centres >= 4.0)
    assert np.all(centres[:, 0] <= 116.0)
    assert np.all(centres[:, 1] <= 96.0)
    assert np.any(centres != np.round(centres))


def test_dtype_follows_bit_depth_and_16_bit_is_not_rescaled() -> None:
    image8, _ = make_cell_image(64, 64, 30, seed=1)
    image16, _ = make_cell_image(64, 64, 30, style=CellStyle(bit_depth=16), seed=1)
    assert image8.dtype == np.uint8
    assert image16.dtype == np.uint16
    assert image16.max() > 255
    assert image16.max() <= 4095
    # Dark offset of ~100 counts under a dim background, as a 12-bit camera would give.
    dark, _ = make_cell_image(64, 64, 0, style=CellStyle(bit_depth=16, background=0.0), seed=1)
    assert 80 < float(dark.mean()) < 120


def test_no_cells_gives_background_and_empty_centres() -> None:
    style = CellStyle(gradient=0.0, shot_noise=0.0, read_noise=0.0, background=0.2)
    image, centres = make_cell_image(32, 40, 0, style=style, seed=0)
    assert centres.shape == (0, 2)
    assert centres.dtype == np.float64
    assert np.all(image == 51)


def test_brightest_peaks_sit_on_the_true_centres() -> None:
    style = CellStyle(radius=(3.0, 4.0), elongation=(1.0, 1.3), brightness=(0.5, 0.9), blur=1.5)
    image, centres = make_cell_image(192, 192, 40, style=style, seed=11)
    peaks = peak_local_max(  # type: ignore[no-untyped-call]
        image.astype(np.float64), min_distance=3, num_peaks=len(centres)
    )
    peak_xy = peaks[:, ::-1] + 0.5  # (row, col) indices to pixel-centre (x, y)
    distances, _ = cKDTree(peak_xy).query(centres)
    assert np.mean(distances <= 3.0) >= 0.85


def test_clumping_brings_neighbours_closer() -> None:
    _, uniform = make_cell_image(384, 384, 150, seed=5)
    _, half = make_cell_image(384, 384, 150, style=CellStyle(clumping=0.5), seed=5)
    _, clumped = make_cell_image(384, 384, 150, style=CellStyle(clumping=1.0), seed=5)
    nearest = [_mean_nearest_neighbour(points) for points in (uniform, half, clumped)]
    assert nearest[0] > nearest[1] > nearest[2]
    assert nearest[2] < 0.6 * nearest[0]


def test_gradient_makes_an_uneven_background() -> None:
    flat_style = CellStyle(gradient=0.0, shot_noise=0.0, read_noise=0.0, bit_depth=16)
    uneven_style = CellStyle(gradient=0.6, shot_noise=0.0, read_noise=0.0, bit_depth=16)
    flat, _ = make_cell_image(128, 128, 0, style=flat_style, seed=4)
    uneven, _ = make_cell_image(128, 128, 0, style=uneven_style, seed=4)

    def corner_means(image: np.ndarray) -> np.ndarray:
        return np.array([image[:16, :16].mean(), image[:16, -16:].mean(),
                         image[-16:, :16].mean(), image[-16:, -16:].mean()])  # fmt: skip

    assert np.ptp(corner_means(flat)) == 0.0
    spread = np.ptp(corner_means(uneven))
    assert spread > 0.1 * float(uneven.mean() - 100)


def test_dataset_is_deterministic_and_prefix_stable() -> None:
    five = make_cell_dataset(5, size=(48, 64), cells=(3, 9), seed=9)
    three = make_cell_dataset(3, size=(48, 64), cells=(3, 9), seed=9)
    again = make_cell_dataset(5, size=(48, 64), cells=(3, 9), seed=9)
    assert len(five) == 5
    for (a_image, a_centres), (b_image, b_centres) in zip(five[:3], three, strict=True):
        np.testing.assert_array_equal(a_image, b_image)
        np.testing.assert_array_equal(a_centres, b_centres)
    for (a_image, _), (b_image, _) in zip(five, again, strict=True):
        np.testing.assert_array_equal(a_image, b_image)
    for image, centres in five:
        assert image.shape == (48, 64)
        assert 3 <= len(centres) <= 9
    # Image k is reproducible on its own from the k-th spawned seed sequence.
    child = np.random.SeedSequence(9).spawn(5)[3]
    image, centres = make_cell_image(48, 64, len(five[3][1]), seed=child)
    np.testing.assert_array_equal(image, five[3][0])


def test_dataset_counts_cover_the_inclusive_range() -> None:
    data = make_cell_dataset(40, size=(16, 16), cells=(2, 4), style=CellStyle(blur=0.0), seed=0)
    assert {len(centres) for _, centres in data} == {2, 3, 4}


def test_thin_points_keeps_a_fraction_in_order() -> None:
    _, centres = make_cell_image(64, 64, 100, seed=0)
    kept = thin_points(centres, 0.3, seed=1)
    assert kept.shape == (30, 2)
    rows = [int(np.flatnonzero((centres == point).all(axis=1))[0]) for point in kept]
    assert rows == sorted(rows)
    np.testing.assert_array_equal(kept, thin_points(centres, 0.3, seed=1))
    assert thin_points(centres, 0.0, seed=1).shape == (0, 2)
    np.testing.assert_array_equal(thin_points(centres, 1.0, seed=1), centres)
    assert thin_points(np.empty((0, 2)), 0.5, seed=1).shape == (0, 2)


def test_jitter_points_moves_clicks_by_sigma() -> None:
    centres = np.random.default_rng(0).uniform(20.0, 80.0, size=(2000, 2))
    clicks = jitter_points(centres, 1.5, seed=2)
    assert clicks.shape == centres.shape
    assert np.std(clicks - centres) == pytest.approx(1.5, rel=0.05)
    np.testing.assert_array_equal(jitter_points(centres, 0.0, seed=2), centres)


def test_jitter_points_drops_and_adds_clicks() -> None:
    centres = np.random.default_rng(0).uniform(0.0, 50.0, size=(1000, 2))
    clicks = jitter_points(centres, 1.0, seed=3, drop=0.2, extra=25, shape=(60, 50))
    assert len(clicks) - 25 == pytest.approx(800, abs=60)
    assert np.all(clicks >= 0.0)
    assert np.all(clicks[:, 0] < 50.0)
    assert np.all(clicks[:, 1] < 60.0)
    false = clicks[-25:]
    assert false[:, 1].max() > 50.0  # placed over the whole (taller than wide) image
    assert len(jitter_points(centres, 1.0, seed=3, drop=1.0)) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": (6.0, 3.0)}, "radius must be a"),
        ({"radius": (0.0, 3.0)}, "radius must be a"),
        ({"radius": 3.0}, "radius must be a"),
        ({"elongation": (0.5, 2.0)}, "elongation must be a"),
        ({"brightness": (-0.1, 0.5)}, "brightness must be a"),
        ({"clumping": 1.5}, r"clumping must be a number in \[0.0, 1.0\]; got 1.5"),
        ({"blur": -1.0}, "blur must be"),
        ({"shot_noise": -0.1}, "shot_noise must be"),
        ({"read_noise": float("nan")}, "read_noise must be"),
        ({"background": 2.0}, "background must be"),
        ({"gradient": 1.0}, r"gradient must be a number in \[0.0, 1.0\)"),
        ({"bit_depth": 12}, "bit_depth must be 8 or 16; got 12"),
    ],
)
def test_bad_style_raises_with_a_message(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CellStyle(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="n_cells must be an int >= 0"):
        make_cell_image(10, 10, -1, seed=0)
    with pytest.raises(ValueError, match="height must be an int >= 1"):
        make_cell_image(0, 10, 1, seed=0)
    with pytest.raises(ValueError, match="seed must be"):
        make_cell_image(10, 10, 1, seed=-3)
    with pytest.raises(ValueError, match=r"cells\[1\] must be an int >= 5"):
        make_cell_dataset(2, cells=(5, 2), seed=0)
    with pytest.raises(ValueError, match="fraction must be a number in"):
        thin_points(np.zeros((3, 2)), 1.2, seed=0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        thin_points(np.zeros((3, 3)), 0.5, seed=0)
    with pytest.raises(ValueError, match="need the image's shape"):
        jitter_points(np.zeros((3, 2)), 1.0, seed=0, extra=2)
    with pytest.raises(ValueError, match="sigma must be"):
        jitter_points(np.zeros((3, 2)), -1.0, seed=0)


def test_style_normalises_lists_to_tuples() -> None:
    style = CellStyle(radius=[2, 4])  # type: ignore[arg-type]
    assert style.radius == (2.0, 4.0)
    assert hash(style) == hash(CellStyle(radius=(2.0, 4.0)))
