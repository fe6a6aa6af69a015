"""Copy-paste augmentation: stamps cut from annotated objects, pasted where all is known."""

from __future__ import annotations

import numpy as np
import pytest

from lensloop.tasks.counting.density import density_target
from lensloop.tasks.counting.paste import cut_stamps, paste_objects

RADIUS = 3.0
SIGMA = 1.5


def _blob_image(points: np.ndarray, shape: tuple[int, int], level: float = 0.2) -> np.ndarray:
    """A (1, H, W) image: Gaussian blobs of peak 1 on a flat background ``level``."""
    blobs = density_target(points, shape, sigma=RADIUS / 2) * (2 * np.pi * (RADIUS / 2) ** 2)
    return (blobs + level).astype(np.float32)[None]


def test_a_stamp_is_the_object_above_the_background_centred_on_its_point() -> None:
    points = np.array([[20.3, 18.7], [2.0, 2.0]])  # the second is too near the edge
    image = _blob_image(points[:1], (40, 40))
    background = np.ones((40, 40), dtype=bool)
    background[10:28, 12:30] = False
    (stamp,) = cut_stamps(image, points, background, radius=RADIUS)
    size = stamp.signal.shape[1]
    assert stamp.signal.shape == (1, size, size)
    assert size % 2 == 1
    # Background level (0.2) removed: the stamp holds the blob, fading to zero at its rim.
    assert stamp.signal.max() == pytest.approx(image.max() - 0.2, abs=0.02)
    assert stamp.signal[0, 0, 0] == 0
    assert stamp.signal[0, -1, -1] == 0
    peak_row, peak_col = np.unravel_index(np.argmax(stamp.signal[0]), stamp.signal.shape[1:])
    cx, cy = stamp.centre
    assert abs(peak_col + 0.5 - cx) <= 0.5
    assert abs(peak_row + 0.5 - cy) <= 0.5
    # Without background to measure the level on, nothing is cut.
    assert cut_stamps(image, points, np.zeros((40, 40), dtype=bool), radius=RADIUS) == []
    with pytest.raises(ValueError, match="radius"):
        cut_stamps(image, points, background, radius=0)


def test_pasted_objects_land_on_known_background_with_their_mass() -> None:
    source = _blob_image(np.array([[15.5, 15.5]]), (32, 32))
    stamps = cut_stamps(source, [[15.5, 15.5]], source[0] < 0.21, radius=RADIUS)
    shape = (96, 96)
    pixels = np.zeros((1, *shape), dtype=np.float32)
    target = np.zeros((1, *shape), dtype=np.float32)
    weight = np.ones((1, *shape), dtype=np.float32)
    # An untrusted strip and a known object: nothing may land near either.
    weight[0, :, :20] = 0
    target[0] += density_target([[70.0, 70.0]], shape, sigma=SIGMA) * 100
    before = target.sum()
    rng = np.random.default_rng(3)
    placed = paste_objects(
        pixels, target, weight, stamps, count=3, radius=RADIUS, sigma=SIGMA, scale=100, rng=rng
    )
    assert placed >= 1
    assert target.sum() - before == pytest.approx(100 * placed, rel=1e-4)
    assert (weight == np.where(np.arange(96) < 20, 0, 1)[None, None, :]).all()  # unchanged
    # The signal sits on trusted pixels only, away from the known object.
    lit = pixels[0] > 0
    assert not lit[:, :20].any()
    rows, cols = np.nonzero(lit)
    assert np.hypot(cols + 0.5 - 70, rows + 0.5 - 70).min() > 2 * RADIUS
    # Every pasted object's target peak sits on its stamp's peak.
    from skimage.feature import peak_local_max

    added = target[0] - density_target([[70.0, 70.0]], shape, sigma=SIGMA) * 100
    peaks = peak_local_max(added, min_distance=1, threshold_abs=1.0)
    for row, col in peaks:
        window = pixels[0, row - 1 : row + 2, col - 1 : col + 2]
        assert window.max() == pytest.approx(pixels[0].max(), rel=0.5)


def test_partners_are_close_and_nothing_lands_without_room() -> None:
    source = _blob_image(np.array([[15.5, 15.5]]), (32, 32))
    stamps = cut_stamps(source, [[15.5, 15.5]], source[0] < 0.21, radius=RADIUS)
    shape = (128, 128)
    distances = []
    for seed in range(40):
        target = np.zeros((1, *shape), dtype=np.float32)
        placed = paste_objects(
            np.zeros((1, *shape), dtype=np.float32),
            target,
            np.ones((1, *shape), dtype=np.float32),
            stamps,
            count=1,
            radius=RADIUS,
            sigma=SIGMA,
            scale=1.0,
            rng=np.random.default_rng(seed),
        )
        assert placed in (1, 2)
        if placed == 2:
            from skimage.feature import peak_local_max

            peaks = peak_local_max(target[0], min_distance=1, threshold_abs=1e-3)
            if len(peaks) == 2:
                distances.append(float(np.hypot(*(peaks[0] - peaks[1]))))
    assert 10 <= len([d for d in distances if d > 0]) <= 40
    assert max(distances) <= 2 * RADIUS + 1.5
    # A crop that is all untrusted, or all object, takes nothing.
    for weight_value, target_value in ((0.0, 0.0), (1.0, 0.5)):
        pixels = np.zeros((1, *shape), dtype=np.float32)
        placed = paste_objects(
            pixels,
            np.full((1, *shape), target_value, dtype=np.float32),
            np.full((1, *shape), weight_value, dtype=np.float32),
            stamps,
            count=3,
            radius=RADIUS,
            sigma=SIGMA,
            scale=1.0,
            rng=np.random.default_rng(0),
        )
        assert placed == 0
        assert not pixels.any()
