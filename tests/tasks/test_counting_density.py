"""Density targets, peak finding, foreground masks and loss weights."""

from __future__ import annotations

import numpy as np
import pytest

from lensloop.tasks.counting.density import (
    density_target,
    find_peaks,
    foreground_mask,
    gaussian_peak,
    loss_weights,
)
from lensloop.tasks.counting.points import localisation_scores
from lensloop.tasks.counting.synthetic import make_cell_image


def test_density_sums_to_the_count_even_at_borders() -> None:
    points = [(0.2, 0.3), (63.9, 47.9), (30.25, 20.75), (200, 5)]  # the last is outside
    density = density_target(points, (48, 64), sigma=3.0)
    assert density.dtype == np.float32
    assert density.shape == (48, 64)
    assert float(density.sum()) == pytest.approx(3.0, abs=1e-4)
    assert float(density_target([], (10, 10), sigma=2).sum()) == 0.0
    with pytest.raises(ValueError, match="sigma"):
        density_target(points, (10, 10), sigma=0)


def test_peaks_recover_points_to_sub_pixel() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(8, 120, (30, 2))
    points = points[np.argsort(points[:, 0])]
    keep = [0]
    for k in range(1, len(points)):  # keep them apart, as cells are
        if np.min(np.linalg.norm(points[keep] - points[k], axis=1)) > 8:
            keep.append(k)
    points = points[keep]
    density = density_target(points, (128, 128), sigma=2.0)
    found = find_peaks(density, sigma=2.0)
    assert len(found) == len(points)
    scores = localisation_scores(found, points, radius=1.0)
    assert scores["f1"] == 1.0
    noise = np.full((32, 32), 0.1 * gaussian_peak(2.0), dtype=np.float32)
    assert len(find_peaks(noise, sigma=2.0)) == 0  # below the threshold


def test_foreground_mask_finds_cells() -> None:
    image, centres = make_cell_image(128, 128, 20, seed=1)
    mask = foreground_mask(image)
    cols, rows = centres[:, 0].astype(int), centres[:, 1].astype(int)
    assert mask[rows, cols].mean() > 0.8
    assert 0.02 < mask.mean() < 0.5
    assert not foreground_mask(np.zeros((8, 8))).any()
    with pytest.raises(ValueError, match="unknown threshold"):
        foreground_mask(image, method="magic")  # type: ignore[arg-type]


def test_loss_weights_by_status() -> None:
    foreground = np.zeros((20, 20), dtype=bool)
    foreground[:, 10:] = True  # cells may be in the right half
    points = [(15.5, 5.5)]
    sparse = loss_weights(points, (20, 20), status="sparse", foreground=foreground, radius=2)
    assert sparse[:, :10].all()  # background: trusted
    assert sparse[5, 15] == 1.0  # near the click: trusted
    assert sparse[15, 15] == 0.0  # foreground far from clicks: ignored
    full = loss_weights(points, (20, 20), status="full", foreground=foreground, radius=2)
    assert full.all()
    conflict = loss_weights(points, (20, 20), status="conflict", foreground=foreground, radius=2)
    assert conflict.sum() == sparse[:, 10:].sum()
    with pytest.raises(ValueError, match="unknown annotation status"):
        loss_weights(points, (20, 20), status="most", foreground=None, radius=2)  # type: ignore[arg-type]


def test_loss_weights_margin_keeps_the_tails_of_unannotated_objects_out() -> None:
    foreground = np.zeros((30, 30), dtype=bool)
    foreground[13:17, 13:17] = True  # one unannotated cell's bright core
    plain = loss_weights([], (30, 30), status="sparse", foreground=foreground, radius=2)
    grown = loss_weights([], (30, 30), status="sparse", foreground=foreground, radius=2, margin=4)
    assert plain[15, 11] == 1.0  # just outside the core: trusted as background without margin
    assert grown[15, 11] == 0.0  # within the margin: ignored (the density's tail is there)
    assert grown[15, 20] == 0.0  # 4 px from the core: still within the margin
    assert grown[15, 21] == 1.0
    assert grown[0, 0] == 1.0
    assert grown.sum() < plain.sum()
    # No foreground at all: the margin changes nothing.
    empty = np.zeros((30, 30), dtype=bool)
    both = [
        loss_weights([], (30, 30), status="sparse", foreground=empty, radius=2, margin=m)
        for m in (0, 4)
    ]
    np.testing.assert_array_equal(both[0], both[1])
