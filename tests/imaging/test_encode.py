from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import png as pypng
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from lensloop.errors import UnknownNameError, UnsupportedImageError
from lensloop.imaging import ExifData, decode_image, encode_image, read_exif, write_image

from ._make import ramp


@st.composite
def images(draw: st.DrawFn, dtypes: tuple[type, ...]) -> np.ndarray:
    dtype = draw(st.sampled_from(dtypes))
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 12))
    channels = draw(st.integers(1, 4))
    shape = (height, width) if channels == 1 else (height, width, channels)
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(-1e6, 1e6, width=np.dtype(dtype).itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=150, deadline=None)
@given(images((np.uint8, np.uint16)))
def test_png_round_trip_is_exact(image: np.ndarray) -> None:
    decoded = decode_image(encode_image(image, format="png"))
    assert decoded.array.dtype == image.dtype
    np.testing.assert_array_equal(decoded.array, image)
    assert decoded.info.format == "png"


@settings(max_examples=150, deadline=None)
@given(images((np.uint8, np.uint16, np.int16, np.uint32, np.float32, np.float64)))
def test_tiff_round_trip_is_exact(image: np.ndarray) -> None:
    decoded = decode_image(encode_image(image, format="tiff"))
    assert decoded.array.dtype == image.dtype
    np.testing.assert_array_equal(decoded.array, image)


def test_16bit_colour_png_is_readable_by_an_independent_decoder() -> None:
    image = ramp((5, 6, 3), np.uint16)
    width, height, pixels, meta = pypng.Reader(bytes=encode_image(image, format="png")).read_flat()
    assert meta["bitdepth"] == 16
    np.testing.assert_array_equal(np.array(pixels, np.uint16).reshape(height, width, 3), image)


def test_16bit_gray_png_is_readable_by_pillow() -> None:
    image = ramp((5, 6), np.uint16)
    with Image.open(io.BytesIO(encode_image(image, format="png"))) as opened:
        np.testing.assert_array_equal(np.asarray(opened), image)


def test_tiff_is_readable_by_tifffile_with_the_right_photometric() -> None:
    rgba = ramp((4, 5, 4), np.uint16)
    with tifffile.TiffFile(io.BytesIO(encode_image(rgba, format="tiff"))) as tiff:
        page = tiff.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
        assert page.samplesperpixel == 4
        np.testing.assert_array_equal(page.asarray(), rgba)


def test_single_channel_last_axis_is_written_as_gray() -> None:
    image = ramp((3, 4, 1), np.uint8)
    decoded = decode_image(encode_image(image, format="png"))
    assert decoded.array.shape == (3, 4)


@pytest.mark.parametrize("fmt", ["jpeg", "JPG"])
def test_jpeg_gray_and_rgb(fmt: str) -> None:
    for image in (np.full((8, 8), 100, np.uint8), np.full((8, 8, 3), 100, np.uint8)):
        decoded = decode_image(encode_image(image, format=fmt, quality=90))
        assert decoded.array.shape == image.shape
        assert decoded.info.format == "jpeg"
        assert np.abs(decoded.array.astype(int) - 100).max() <= 2


def test_jpeg_refuses_16bit_and_points_to_to_display() -> None:
    with pytest.raises(UnsupportedImageError, match="to_display"):
        encode_image(np.zeros((4, 4), np.uint16), format="jpeg")


@pytest.mark.parametrize("channels", [2, 4])
def test_jpeg_refuses_alpha(channels: int) -> None:
    with pytest.raises(UnsupportedImageError, match=f"not {channels}"):
        encode_image(np.zeros((4, 4, channels), np.uint8), format="jpeg")


def test_png_refuses_float_and_suggests_tiff() -> None:
    with pytest.raises(UnsupportedImageError, match="TIFF"):
        encode_image(np.zeros((4, 4), np.float32), format="png")


@pytest.mark.parametrize("fmt", ["png", "tiff", "jpeg"])
def test_bad_arrays(fmt: str) -> None:
    with pytest.raises(UnsupportedImageError, match="5 channels"):
        encode_image(np.zeros((4, 4, 5), np.uint8), format=fmt)
    with pytest.raises(UnsupportedImageError, match="bool"):
        encode_image(np.zeros((4, 4), bool), format=fmt)
    with pytest.raises(UnsupportedImageError, match="complex"):
        encode_image(np.zeros((4, 4), np.complex64), format=fmt)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        encode_image(np.zeros((2, 4, 4, 3), np.uint8), format=fmt)
    with pytest.raises(ValueError, match="empty"):
        encode_image(np.zeros((0, 4), np.uint8), format=fmt)
    with pytest.raises(TypeError, match="numpy"):
        encode_image([[1, 2]], format=fmt)  # type: ignore[arg-type]


def test_unknown_format_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown image format 'gif'.*png.*tiff"):
        encode_image(np.zeros((2, 2), np.uint8), format="gif")


@pytest.mark.parametrize("quality", [0, 101, 50.0, True])
def test_bad_quality(quality: object) -> None:
    with pytest.raises(ValueError, match="quality"):
        encode_image(np.zeros((2, 2), np.uint8), format="jpeg", quality=quality)  # type: ignore[arg-type]


def test_non_contiguous_input_is_encoded_correctly() -> None:
    image = ramp((6, 8, 3), np.uint16)[::2, ::-1]
    np.testing.assert_array_equal(decode_image(encode_image(image, format="png")).array, image)


def test_exif_is_embedded_in_every_format() -> None:
    exif = ExifData(latitude=-12.5, longitude=-45.25, altitude=-3.0)
    for fmt, image in (
        ("png", np.zeros((4, 4), np.uint8)),
        ("png", np.zeros((4, 4, 3), np.uint16)),
        ("tiff", np.zeros((4, 4), np.float32)),
        ("jpeg", np.zeros((8, 8, 3), np.uint8)),
    ):
        data = encode_image(image, format=fmt, exif=exif)
        assert read_exif(data) == exif, fmt
        np.testing.assert_array_equal(decode_image(data).array.shape, image.shape)


def test_tiff_with_exif_keeps_pixels_for_tifffile() -> None:
    image = ramp((5, 5), np.uint16)
    data = encode_image(image, format="tiff", exif=ExifData(latitude=1.0, longitude=2.0))
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        np.testing.assert_array_equal(tiff.pages[0].asarray(), image)
        assert tiff.pages[0].tags["GPSTag"].value["GPSLatitudeRef"] == "N"


# ------------------------------------------------------------------- write_image


def test_write_image_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.PNG"
    first = ramp((3, 3), np.uint16)
    assert write_image(path, first) == path
    np.testing.assert_array_equal(decode_image(path.read_bytes()).array, first)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image(path, first)
    second = first[::-1].copy()
    write_image(str(path), second, overwrite=True)
    np.testing.assert_array_equal(decode_image(path.read_bytes()).array, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.PNG"]  # no temporary files


@pytest.mark.parametrize(("suffix", "fmt"), [(".tif", "tiff"), (".TIFF", "tiff"), (".jpg", "jpeg")])
def test_write_image_format_from_suffix(tmp_path: Path, suffix: str, fmt: str) -> None:
    path = write_image(tmp_path / f"a{suffix}", np.zeros((4, 4), np.uint8))
    assert decode_image(path.read_bytes()).info.format == fmt


def test_write_image_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"'\.bmp'"):
        write_image(tmp_path / "a.bmp", np.zeros((2, 2), np.uint8))
    assert not any(tmp_path.iterdir())


def test_failed_encode_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImageError):
        write_image(tmp_path / "a.jpg", np.zeros((2, 2), np.uint16))
    assert not any(tmp_path.iterdir())


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_image(tmp_path / "missing" / "a.png", np.zeros((2, 2), np.uint8))
