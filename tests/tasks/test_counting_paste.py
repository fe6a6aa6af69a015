"""Copy-paste augmentation: lone annotated objects cut out, pasted where all is known."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import peak_local_max

from lensloop.tasks.counting.density import density_target
from lensloop.tasks.counting.paste import (
    GROUP_SIZES,
    Stamp,
    _turned,
    cut_stamps,
    paste_objects,
    typical_stamps,
)

LEVEL = 0.2
GROW = 3.0


def _blobs(points: list[tuple[float, float]], shape: tuple[int, int], sigma: float = 2.0):
    """A (1, H, W) image of Gaussian blobs (peak 1 each) on a flat background ``LEVEL``."""
    blobs = density_target(np.asarray(points), shape, sigma=sigma) * (2 * np.pi * sigma**2)
    return (blobs + LEVEL).astype(np.float32)[None]


def test_only_lone_annotated_objects_are_cut() -> None:
    lone, pair, twice, unannotated = (20.5, 20.5), (60.5, 20.5), (20.5, 60.5), (60.5, 60.5)
    partner, other = (65.5, 20.5), (25.5, 60.5)
    image = _blobs([lone, pair, partner, twice, other, unannotated], (80, 80))
    foreground = image[0] > LEVEL + 0.25
    clicks = [lone, pair, twice, other]  # the pair's partner is not annotated
    (stamp,) = cut_stamps(image, clicks, foreground, grow=GROW)
    # The background level is removed and the light fades to exactly zero at the edge.
    assert stamp.signal.max() == pytest.approx(1.0, abs=0.02)
    assert stamp.signal[0, 0, 0] == 0
    assert stamp.signal[0, -1, -1] == 0
    assert stamp.radius == pytest.approx(np.sqrt(foreground[:40, :40].sum() / np.pi))
    row, col = np.unravel_index(np.argmax(stamp.signal[0]), stamp.signal.shape[1:])
    assert abs(col + 0.5 - stamp.centre[0]) <= 0.5
    assert abs(row + 0.5 - stamp.centre[1]) <= 0.5
    # Objects too near the border or without background nearby give nothing.
    assert cut_stamps(image, [(3.0, 3.0)], image[0] > LEVEL + 0.25, grow=GROW) == []
    assert cut_stamps(image, clicks, np.ones((80, 80), dtype=bool), grow=GROW) == []
    with pytest.raises(ValueError, match="grow"):
        cut_stamps(image, clicks, foreground, grow=0)
    with pytest.raises(ValueError, match="mask"):
        cut_stamps(image, clicks, foreground[:40], grow=GROW)


def test_a_stamp_holds_none_of_a_neighbours_light() -> None:
    alone = _blobs([(30.5, 30.5)], (60, 60))
    # A dimmer neighbour 9 px to the right: its own component, within the stamp's reach.
    crowded = alone + 0.6 * (_blobs([(39.5, 30.5)], (60, 60)) - LEVEL)

    def reach(image: np.ndarray) -> tuple[float, float]:
        (stamp,) = cut_stamps(image, [(30.5, 30.5)], image[0] > LEVEL + 0.3, grow=GROW)
        lit = np.flatnonzero(stamp.signal[0].max(axis=0) != 0) + 0.5 - stamp.centre[0]
        return float(lit.min()), float(lit.max())

    left_alone, right_alone = reach(alone)
    left, right = reach(crowded)
    assert left == left_alone
    # Cut at the line midway between the components (own edge 3.5 px, the other's 6.5 px
    # from the centre), but still past its own edge.
    assert right_alone == 6.0  # lit to GROW pixels past its last foreground pixel (33)
    assert 3.5 < right <= 5.0


def test_typical_stamps_drop_the_oversized() -> None:
    stamps = [Stamp(np.ones((1, 3, 3), np.float32), (1.5, 1.5), r) for r in (3, 3, 3.2, 3.1, 5)]
    kept = typical_stamps(stamps)
    assert [s.radius for s in kept] == [3, 3, 3.2, 3.1]
    assert typical_stamps([]) == []


def _stamp(sigma: float = 1.5) -> Stamp:
    source = _blobs([(15.5, 15.5)], (32, 32), sigma=sigma)
    (stamp,) = cut_stamps(source, [(15.5, 15.5)], source[0] > LEVEL + 0.3, grow=GROW)
    return stamp


def test_pasted_objects_land_on_known_background_with_their_mass() -> None:
    stamps = [_stamp()]
    shape = (96, 96)
    pixels = np.zeros((1, *shape), dtype=np.float32)
    target = np.zeros((1, *shape), dtype=np.float32)
    weight = np.ones((1, *shape), dtype=np.float32)
    weight[0, :, :20] = 0  # untrusted strip
    known = density_target([[70.0, 70.0]], shape, sigma=1.5) * 100
    target[0] += known
    total = 0
    for seed in range(5):
        crop_pixels, crop_target = pixels.copy(), target.copy()
        placed = paste_objects(
            crop_pixels,
            crop_target,
            weight,
            stamps,
            groups=3,
            sigma=1.5,
            scale=100.0,
            ceiling=None,
            rng=np.random.default_rng(seed),
        )
        total += placed
        assert crop_target.sum() - target.sum() == pytest.approx(100 * placed, rel=1e-4)
        lit = crop_pixels[0] != 0
        assert not lit[:, :20].any()  # never on untrusted pixels
        assert not lit[known > 1e-3].any()  # never on an annotated object
        # Every pasted object's Gaussian sits on a bright spot of its pasted light.
        added = crop_target[0] - target[0]
        for row, col in peak_local_max(added, min_distance=2, threshold_abs=5.0):
            assert crop_pixels[0, row - 1 : row + 2, col - 1 : col + 2].max() > 0.5
    assert total >= 5
    assert (weight[0, :, 20:] == 1).all()
    assert (weight[0, :, :20] == 0).all()


def test_groups_touch_and_the_ceiling_clips() -> None:
    stamp = _stamp()
    shape = (128, 128)
    sizes, distances = [], []
    for seed in range(60):
        pixels = np.zeros((1, *shape), dtype=np.float32)
        target = np.zeros((1, *shape), dtype=np.float32)
        placed = paste_objects(
            pixels,
            target,
            np.ones((1, *shape), dtype=np.float32),
            [stamp],
            groups=1,
            sigma=1.0,
            scale=1.0,
            ceiling=np.array([0.9], dtype=np.float32),
            rng=np.random.default_rng(seed),
        )
        sizes.append(placed)
        if placed:  # the stamp peaks at 1: clipped where the image's camera clipped
            assert pixels.max() == pytest.approx(0.9)
        if placed == 2:
            peaks = peak_local_max(target[0], min_distance=1, threshold_abs=1e-3)
            if len(peaks) == 2:
                distances.append(float(np.hypot(*(peaks[0] - peaks[1]))))
    counts = np.bincount(sizes, minlength=4)[1:4] / len(sizes)
    assert np.allclose(counts, GROUP_SIZES, atol=0.2)
    assert distances
    assert max(distances) <= 2 * stamp.radius + 1.5


def test_nothing_lands_without_room() -> None:
    shape = (64, 64)
    for weight_value, target_value in ((0.0, 0.0), (1.0, 0.5)):
        pixels = np.zeros((1, *shape), dtype=np.float32)
        placed = paste_objects(
            pixels,
            np.full((1, *shape), target_value, dtype=np.float32),
            np.full((1, *shape), weight_value, dtype=np.float32),
            [_stamp()],
            groups=3,
            sigma=1.5,
            scale=1.0,
            ceiling=None,
            rng=np.random.default_rng(0),
        )
        assert placed == 0
        assert not pixels.any()


def test_a_turned_stamp_keeps_its_centre_on_its_object() -> None:
    signal = np.zeros((1, 9, 13), dtype=np.float32)
    signal[0, 2, 3] = 1.0  # the object: pixel (row 2, column 3), centre (3.5, 2.5)
    stamp = Stamp(signal, (3.5, 2.5), 1.0)
    seen = set()
    for seed in range(40):
        turned = _turned(stamp, np.random.default_rng(seed))
        row, col = np.unravel_index(np.argmax(turned.signal[0]), turned.signal.shape[1:])
        assert (col + 0.5, row + 0.5) == pytest.approx((turned.x, turned.y))
        assert np.argwhere(turned.lit).tolist() == [[row, col]]
        seen.add(turned.signal.shape)
    assert seen == {(1, 9, 13), (1, 13, 9)}
