"""A counting model's input rule: channels and one intensity range for every image."""

from __future__ import annotations

import numpy as np
import pytest

from lensloop.errors import ConfigError
from lensloop.tasks.inputs import (
    IntensityRange,
    model_channels,
    scale_image,
    to_channels,
)


def test_model_channels() -> None:
    assert model_channels([1, 1]) == 1
    assert model_channels([1, 3]) == 3
    assert model_channels([4]) == 3


def test_to_channels_converts_grey_and_colour() -> None:
    grey = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert to_channels(grey, 1).shape == (3, 4, 1)
    rgb = to_channels(grey, 3)
    assert rgb.shape == (3, 4, 3)
    np.testing.assert_array_equal(rgb[..., 2], grey)
    rgba = np.stack([grey, grey * 2, grey * 3, np.full_like(grey, 99)], axis=2)
    np.testing.assert_allclose(to_channels(rgba, 1)[..., 0], grey * 2)  # mean of RGB, not alpha
    assert to_channels(rgba, 3).shape == (3, 4, 3)
    with pytest.raises(ConfigError, match="2 channels"):
        to_channels(np.zeros((3, 4, 2)), 3)
    with pytest.raises(ConfigError, match=r"\(H, W\) or \(H, W, C\)"):
        to_channels(np.zeros(5), 1)


def test_one_range_scales_every_image_alike() -> None:
    rng = np.random.default_rng(0)
    bright = rng.integers(100, 4095, size=(64, 64), dtype=np.uint16)
    scaling = IntensityRange.measure([bright[:, :, None]], 1)
    assert 100 <= scaling.low[0] < scaling.high[0] <= 4095
    dark = np.full((8, 8), 100, dtype=np.uint16)  # an empty field: stays dark, not stretched
    scaled = scale_image(dark, scaling)
    assert scaled.dtype == np.float32
    assert scaled.shape == (8, 8, 1)
    assert float(scaled.max()) < 0.01
    full = scale_image(bright, scaling)
    assert 0.98 < float(np.percentile(full, 99.9)) < 1.02
    restored = IntensityRange.from_card({"scaling": scaling.as_card()})
    assert restored.low == pytest.approx(scaling.low, rel=1e-6)
    assert restored.high == pytest.approx(scaling.high, rel=1e-6)


def test_a_flat_channel_keeps_a_unit_range() -> None:
    scaling = IntensityRange.measure([np.full((4, 4, 1), 7.0)], 1)
    assert scaling.high[0] - scaling.low[0] == 1.0


def test_bad_cards_and_no_images_are_refused() -> None:
    with pytest.raises(ConfigError, match="edited by hand"):
        IntensityRange.from_card({"scaling": {"low": [0.0]}})
    with pytest.raises(ConfigError, match="mismatched"):
        IntensityRange.from_card({"scaling": {"low": [0.0], "high": [1.0, 2.0]}})
    with pytest.raises(ConfigError, match="no images"):
        IntensityRange.measure([], 1)
