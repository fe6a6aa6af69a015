from __future__ import annotations

import numpy as np
import pytest

from lensloop.embed.base import InputSpec, to_model_input, to_unit_range


def test_uint8_is_divided_and_16_bit_stretched_per_channel() -> None:
    np.testing.assert_allclose(to_unit_range(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    sixteen = np.zeros((10, 10, 2), np.uint16)
    sixteen[..., 0] = np.arange(100).reshape(10, 10) * 10 + 1000  # narrow range
    sixteen[..., 1] = 7  # constant channel
    unit = to_unit_range(sixteen)
    assert unit.dtype == np.float32
    assert unit[..., 0].min() == 0.0
    assert unit[..., 0].max() == 1.0
    assert np.all(unit[..., 1] == 0.0)


def test_model_input_shape_aspect_and_normalisation() -> None:
    spec = InputSpec(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tall = np.full((64, 16), 200, np.uint8)
    tall[0, :] = 0  # border median stays 200/255
    out = to_model_input(tall, spec)
    assert out.shape == (3, 32, 32)
    assert out.dtype == np.float32
    # Aspect kept: the image fills 8 of 32 columns; the padding is the median border value.
    np.testing.assert_allclose(out[:, 16, 0], 200 / 255, rtol=1e-5)
    four = np.random.default_rng(0).integers(0, 65535, (20, 30, 4), dtype=np.uint16)
    assert to_model_input(four, InputSpec(size=16)).shape == (3, 16, 16)
    two = np.zeros((8, 8, 2), np.float32)
    assert np.isfinite(to_model_input(two, InputSpec(size=16))).all()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 5\)"):
        to_model_input(np.zeros((2, 2, 5), np.uint8), InputSpec())
    with pytest.raises(ValueError, match="at least 8 pixels"):
        InputSpec(size=4)
    with pytest.raises(ValueError, match="std must be positive"):
        InputSpec(std=(1.0, 0.0, 1.0))
