from __future__ import annotations

import numpy as np
import pytest

from lensloop.imaging import to_display

from ._make import ramp


def test_uint8_passes_through_unchanged() -> None:
    gray = np.array([[0, 3], [7, 250]], np.uint8)
    out = to_display(gray)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, gray)  # no stretch, although 3..250 could be stretched
    rgb = ramp((4, 5, 3), np.uint8, high=40)
    np.testing.assert_array_equal(to_display(rgb), rgb)


def test_uint16_stretch_maps_percentiles_to_0_and_255() -> None:
    image = np.arange(1000, 2001, dtype=np.uint16).reshape(1, -1)  # 1000..2000
    out = to_display(image, low=0, high=100)
    assert out.dtype == np.uint8
    assert out.shape == image.shape
    assert (out[0, 0], out[0, -1]) == (0, 255)
    assert out[0, 500] == 128  # 1500 is half way: 127.5 rounds to 128
    assert np.all(np.diff(out[0].astype(int)) >= 0)


def test_default_percentiles_clip_outliers() -> None:
    image = np.full((100, 100), 100, np.uint16)
    image[:, 50:] = 200
    image[0, 0] = 65535  # one hot pixel must not squash the picture
    out = to_display(image)
    assert out[50, 10] == 0
    assert out[50, 90] == 255
    assert out[0, 0] == 255


def test_12bit_values_fill_the_display_range() -> None:
    image = ramp((64, 64), np.uint16, high=4095)
    out = to_display(image, low=0, high=100)
    assert (int(out.min()), int(out.max())) == (0, 255)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32, np.float64])
def test_constant_image_maps_to_zero(dtype: type) -> None:
    out = to_display(np.full((5, 5), 1234, dtype))  # warnings are errors: no 0/0
    assert out.dtype == np.uint8
    assert not out.any()


def test_float_with_nan_and_inf() -> None:
    image = np.array([[np.nan, 0.0, 0.5], [1.0, np.inf, -np.inf]], np.float32)
    out = to_display(image, low=0, high=100)
    assert out.tolist() == [[0, 0, 128], [255, 255, 0]]


def test_all_nan_maps_to_zero() -> None:
    assert not to_display(np.full((3, 3), np.nan)).any()


def test_negative_floats() -> None:
    out = to_display(np.array([[-2.0, -1.0, 0.0]]), low=0, high=100)
    assert out.tolist() == [[0, 128, 255]]


def test_bool_is_0_and_255() -> None:
    assert to_display(np.array([[True, False]])).tolist() == [[255, 0]]


def test_two_channels_become_red_green() -> None:
    image = np.zeros((2, 2, 2), np.uint16)
    image[..., 0] = [[0, 10], [20, 30]]
    image[..., 1] = [[5, 5], [5, 500]]
    out = to_display(image, low=0, high=100)
    assert out.shape == (2, 2, 3)
    assert out[..., 0].tolist() == [[0, 85], [170, 255]]
    assert out[1, 1, 1] == 255
    assert not out[..., 2].any()


def test_four_channels_show_the_first_three() -> None:
    image = ramp((3, 3, 4), np.uint8)
    out = to_display(image)
    assert out.shape == (3, 3, 3)
    np.testing.assert_array_equal(out, image[..., :3])
    assert out.flags.c_contiguous


def test_per_channel_false_keeps_relative_brightness() -> None:
    image = np.zeros((1, 2, 3), np.uint16)
    image[0, 1] = (100, 1000, 10000)
    shared = to_display(image, low=0, high=100, per_channel=False)
    assert shared[0, 1].tolist() == [3, 26, 255]
    separate = to_display(image, low=0, high=100)
    assert separate[0, 1].tolist() == [255, 255, 255]


def test_large_images_use_a_strided_sample() -> None:
    image = ramp((2100, 2100), np.uint16)  # 4.4 Mpx: above the exact-percentile size
    out = to_display(image, low=0, high=100)
    assert (int(out.min()), int(out.max())) == (0, 255)
    assert out[1050, 1050] in (127, 128)


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (50, 50, "low must be less than high"),
        (60, 40, "low must be less than high"),
        (-1, 99, "low must be a percentile"),
        (1, 100.5, "high must be a percentile"),
    ],
)
def test_bad_percentiles(low: float, high: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_display(np.zeros((2, 2), np.uint16), low=low, high=high)


def test_bad_images() -> None:
    with pytest.raises(ValueError, match="image must be"):
        to_display(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="image must be"):
        to_display(np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="empty"):
        to_display(np.zeros((0, 3), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        to_display(np.zeros((2, 2), np.complex64))
    with pytest.raises(TypeError, match="numpy"):
        to_display([[1, 2]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="low"):
        to_display(np.zeros((2, 2)), low="1")  # type: ignore[arg-type]
