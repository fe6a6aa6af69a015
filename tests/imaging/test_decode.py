from __future__ import annotations

import contextlib
import io
import struct
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lensloop.errors import (
    ImageDecodeError,
    ImageError,
    MultiPageImageError,
    UnsupportedImageError,
)
from lensloop.imaging import (
    DecodedImage,
    ExifData,
    ImageInfo,
    decode_image,
    encode_image,
    exif_to_bytes,
    probe_image,
    read_exif,
    read_image,
)

from ._make import multipage_tiff, pil_bytes, pypng_bytes, ramp, tiff_bytes

RNG = np.random.default_rng(0)


def _decoded(data: bytes, **options: object) -> DecodedImage:
    """Decode, and check what every decode must satisfy."""
    decoded = decode_image(data, **options)  # type: ignore[arg-type]
    array = decoded.array
    assert array.flags.c_contiguous
    assert array.flags.writeable
    assert array.dtype.isnative
    assert array.shape == decoded.info.shape
    assert array.dtype.name == decoded.info.dtype
    return decoded


# --------------------------------------------------------------------------- PNG


@pytest.mark.parametrize(
    ("shape", "mode"),
    [((5, 7), "L"), ((5, 7, 2), "LA"), ((5, 7, 3), "RGB"), ((5, 7, 4), "RGBA")],
)
def test_png_8bit(shape: tuple[int, ...], mode: str) -> None:
    array = RNG.integers(0, 256, shape, dtype=np.uint8)
    data = pil_bytes(Image.fromarray(array, mode=mode), "PNG")
    decoded = _decoded(data)
    np.testing.assert_array_equal(decoded.array, array)
    assert decoded.info == ImageInfo("png", 7, 5, 1 if len(shape) == 2 else shape[2], "uint8", 8)
    assert probe_image(data) == decoded.info


def test_png_16bit_gray_keeps_values() -> None:
    array = ramp((6, 9), np.uint16)
    decoded = _decoded(pil_bytes(Image.fromarray(array), "PNG"))
    assert decoded.array.dtype == np.uint16
    np.testing.assert_array_equal(decoded.array, array)
    assert decoded.info.bit_depth == 16


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png_16bit_colour_keeps_values_above_255(channels: int) -> None:
    # Pillow alone would return these as 8-bit; lensloop must keep the 16 bits.
    array = ramp((6, 9, channels), np.uint16)
    array[0, 0] = 65535
    array[0, 1] = 257  # differs from 256 only in the low byte
    array[0, 2] = 256
    data = pypng_bytes(array, bitdepth=16)
    decoded = _decoded(data)
    assert decoded.array.dtype == np.uint16
    assert decoded.array.shape == (6, 9, channels)
    np.testing.assert_array_equal(decoded.array, array)
    assert int(decoded.array.max()) > 255
    assert decoded.info == ImageInfo("png", 9, 6, channels, "uint16", 16)
    assert probe_image(data) == decoded.info


def test_png_16bit_colour_interlaced() -> None:
    array = ramp((7, 5, 3), np.uint16)
    decoded = _decoded(pypng_bytes(array, bitdepth=16, interlace=True))
    np.testing.assert_array_equal(decoded.array, array)


def test_png_16bit_colour_key_transparency_is_not_an_alpha_channel() -> None:
    array = ramp((3, 4, 3), np.uint16)
    data = pypng_bytes(array, bitdepth=16, transparent=tuple(int(v) for v in array[0, 0]))
    decoded = _decoded(data)
    assert decoded.array.shape == (3, 4, 3)
    np.testing.assert_array_equal(decoded.array, array)


@pytest.mark.parametrize("bitdepth", [1, 2, 4])
def test_png_low_bit_depth_gray_keeps_stored_values(bitdepth: int) -> None:
    top = 2**bitdepth - 1
    array = (np.arange(24).reshape(4, 6) % (top + 1)).astype(np.uint8)
    data = pypng_bytes(array, bitdepth=bitdepth)
    decoded = _decoded(data)
    assert decoded.array.dtype == np.uint8
    np.testing.assert_array_equal(decoded.array, array)
    assert int(decoded.array.max()) == top
    assert decoded.info.bit_depth == bitdepth
    assert probe_image(data) == decoded.info


def test_palette_png_becomes_rgb() -> None:
    image = Image.new("P", (3, 2))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    image.putpixel((2, 1), 2)
    data = pil_bytes(image, "PNG")
    decoded = _decoded(data)
    assert decoded.array.shape == (2, 3, 3)
    assert decoded.array[0, 0].tolist() == [255, 0, 0]
    assert decoded.array[0, 1].tolist() == [0, 255, 0]
    assert decoded.array[1, 2].tolist() == [0, 0, 255]
    assert probe_image(data) == decoded.info == ImageInfo("png", 3, 2, 3, "uint8", 8)


def test_palette_png_with_transparency_becomes_rgba() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 40, 50, 60])
    image.putpixel((1, 0), 1)
    data = pil_bytes(image, "PNG", transparency=0)
    decoded = _decoded(data)
    assert decoded.array.tolist() == [[[10, 20, 30, 0], [40, 50, 60, 255]]]
    assert probe_image(data).channels == 4


def test_apng_needs_a_frame() -> None:
    frames = [Image.new("L", (4, 3), 10), Image.new("L", (4, 3), 200)]
    data = pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(MultiPageImageError) as info:
        decode_image(data)
    assert info.value.n_pages == 2
    assert int(_decoded(data, page=1).array[0, 0]) == 200
    stacked = _decoded(data, stack_pages=True)
    assert stacked.array.shape == (3, 4, 2)


# ------------------------------------------------------------------ JPEG / BMP / GIF / WebP


def test_jpeg_gray_and_rgb() -> None:
    gray = _decoded(pil_bytes(np.full((8, 16), 128, np.uint8), "JPEG"))
    assert gray.array.shape == (8, 16)
    assert abs(int(gray.array.mean()) - 128) <= 1
    rgb = _decoded(pil_bytes(np.full((8, 16, 3), 90, np.uint8), "JPEG"))
    assert rgb.array.shape == (8, 16, 3)
    assert rgb.info == ImageInfo("jpeg", 16, 8, 3, "uint8", 8)


def test_multi_picture_jpeg_gives_its_primary_image() -> None:
    first, second = Image.new("L", (8, 8), 30), Image.new("L", (16, 16), 200)
    data = pil_bytes(first, "MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(data)) as opened:
        assert getattr(opened, "n_frames", 1) == 2  # Pillow sees two pictures
    decoded = _decoded(data)
    assert decoded.info == ImageInfo("jpeg", 8, 8, 1, "uint8", 8, 1)
    assert abs(int(decoded.array.mean()) - 30) <= 1


def test_cmyk_jpeg_keeps_four_channels() -> None:
    data = pil_bytes(Image.new("CMYK", (4, 4), (0, 50, 100, 150)), "JPEG")
    decoded = _decoded(data)
    assert decoded.array.shape == (4, 4, 4)


@pytest.mark.parametrize(("fmt", "options"), [("BMP", {}), ("WEBP", {"lossless": True})])
def test_bmp_and_lossless_webp_round_trip(fmt: str, options: dict[str, object]) -> None:
    array = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    decoded = _decoded(pil_bytes(array, fmt, **options))
    np.testing.assert_array_equal(decoded.array, array)
    assert decoded.info.format == fmt.lower()


def test_bilevel_bmp_is_zero_and_one() -> None:
    image = Image.fromarray(np.array([[0, 255, 0], [255, 255, 0]], np.uint8)).convert("1")
    decoded = _decoded(pil_bytes(image, "BMP"))
    assert decoded.array.tolist() == [[0, 1, 0], [1, 1, 0]]
    assert decoded.info == ImageInfo("bmp", 3, 2, 1, "uint8", 1)


def test_gif_single_and_animated() -> None:
    single = _decoded(pil_bytes(np.full((3, 4), 7, np.uint8), "GIF"))
    assert single.array.shape[:2] == (3, 4)
    frames = [Image.new("L", (4, 3), value) for value in (0, 120, 250)]
    data = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(MultiPageImageError, match="3 pages"):
        decode_image(data)
    assert probe_image(data).n_pages == 3
    third = _decoded(data, page=2)
    assert third.info.n_pages == 3
    assert int(third.array.reshape(-1)[0]) == 250


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize(("dtype", "bits"), [(np.uint8, 8), (np.uint16, 12), (np.uint16, 16)])
def test_tiff_integer_depths_and_channels(channels: int, dtype: type, bits: int) -> None:
    shape = (5, 6) if channels == 1 else (5, 6, channels)
    array = ramp(shape, dtype, high=2**bits - 1)
    photometric = "minisblack" if channels <= 2 else "rgb"
    options: dict[str, object] = {"photometric": photometric}
    if channels > 1:
        options["planarconfig"] = "contig"
    if bits == 12:
        options["bitspersample"] = 12  # stored packed, 12 bits per sample
    data = tiff_bytes(array, **options)
    decoded = _decoded(data)
    np.testing.assert_array_equal(decoded.array, array)
    assert decoded.info == ImageInfo("tiff", 6, 5, channels, np.dtype(dtype).name, bits)
    assert probe_image(data) == decoded.info
    if bits == 12:
        assert int(decoded.array.max()) == 4095


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.uint32])
def test_tiff_other_dtypes(dtype: type) -> None:
    array = (RNG.standard_normal((4, 5)) * 1000).astype(dtype)
    decoded = _decoded(tiff_bytes(array, photometric="minisblack"))
    assert decoded.array.dtype == dtype
    np.testing.assert_array_equal(decoded.array, array)
    assert decoded.info.bit_depth == np.dtype(dtype).itemsize * 8


def test_tiff_float_keeps_nan() -> None:
    array = np.array([[np.nan, 1.5], [-np.inf, 3.0]], np.float32)
    decoded = _decoded(tiff_bytes(array, photometric="minisblack"))
    np.testing.assert_array_equal(decoded.array, array)


def test_planar_tiff_becomes_channels_last() -> None:
    planar = ramp((3, 4, 5), np.uint16)  # (C, H, W)
    decoded = _decoded(tiff_bytes(planar, photometric="rgb", planarconfig="separate"))
    assert decoded.array.shape == (4, 5, 3)
    np.testing.assert_array_equal(decoded.array, np.moveaxis(planar, 0, -1))
    assert decoded.info.channels == 3


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_tiff(compression: str) -> None:
    array = ramp((16, 16, 3), np.uint16)
    data = tiff_bytes(array, photometric="rgb", compression=compression)
    np.testing.assert_array_equal(_decoded(data).array, array)


def test_big_endian_tiff_gives_native_byte_order() -> None:
    array = ramp((3, 4), np.uint16)
    decoded = _decoded(tiff_bytes(array, photometric="minisblack", byteorder=">"))
    np.testing.assert_array_equal(decoded.array, array)


def test_bigtiff() -> None:
    array = ramp((3, 4), np.uint16)
    data = tiff_bytes(array, photometric="minisblack", bigtiff=True)
    assert data[:4] == b"II+\x00"
    np.testing.assert_array_equal(_decoded(data).array, array)


def test_bilevel_tiff_is_zero_and_one() -> None:
    array = np.array([[True, False, True], [False, False, True]])
    decoded = _decoded(tiff_bytes(array, photometric="minisblack"))
    assert decoded.array.dtype == np.uint8
    np.testing.assert_array_equal(decoded.array, array.astype(np.uint8))
    assert decoded.info.bit_depth == 1


def test_palette_tiff_becomes_uint16_rgb() -> None:
    indices = np.array([[0, 1], [1, 0]], np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (65535, 1000, 7)
    data = tiff_bytes(indices, photometric="palette", colormap=colormap)
    decoded = _decoded(data)
    assert decoded.array.shape == (2, 2, 3)
    assert decoded.array[0, 1].tolist() == [65535, 1000, 7]
    assert probe_image(data) == decoded.info


def test_more_than_four_channels_is_unsupported() -> None:
    data = tiff_bytes(
        np.zeros((4, 4, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(UnsupportedImageError, match="5 samples per pixel"):
        decode_image(data, name="five.tif")
    with pytest.raises(UnsupportedImageError):
        probe_image(data)


# ---------------------------------------------------------------------- multi-page


@pytest.fixture
def three_pages() -> tuple[bytes, list[np.ndarray]]:
    pages = [np.full((4, 5), value, np.uint16) for value in (1, 1000, 60000)]
    return multipage_tiff(pages), pages


def test_multipage_without_page_raises(three_pages: tuple[bytes, list[np.ndarray]]) -> None:
    data, _ = three_pages
    with pytest.raises(MultiPageImageError) as info:
        decode_image(data, name="stack.tif")
    assert info.value.n_pages == 3
    message = str(info.value)
    assert "stack.tif" in message
    assert "3 pages" in message
    assert "page=" in message
    assert "stack_pages=True" in message


def test_multipage_page_i(three_pages: tuple[bytes, list[np.ndarray]]) -> None:
    data, pages = three_pages
    for index, page in enumerate(pages):
        decoded = _decoded(data, page=index)
        np.testing.assert_array_equal(decoded.array, page)
        assert decoded.info.n_pages == 3
    assert probe_image(data).n_pages == 3


@pytest.mark.parametrize("page", [3, -1, 100])
def test_multipage_bad_page(three_pages: tuple[bytes, list[np.ndarray]], page: int) -> None:
    with pytest.raises(ImageDecodeError, match="valid pages are 0 to 2"):
        decode_image(three_pages[0], page=page)


def test_single_page_bad_page() -> None:
    with pytest.raises(ImageDecodeError, match="valid pages are 0 to 0"):
        decode_image(pil_bytes(np.zeros((2, 2), np.uint8), "PNG"), page=1)


def test_multipage_stack(three_pages: tuple[bytes, list[np.ndarray]]) -> None:
    data, pages = three_pages
    decoded = _decoded(data, stack_pages=True)
    assert decoded.array.shape == (4, 5, 3)
    np.testing.assert_array_equal(decoded.array, np.stack(pages, axis=-1))
    assert decoded.info == ImageInfo("tiff", 5, 4, 3, "uint16", 16, 3)


def test_stack_pages_of_a_single_page_file() -> None:
    array = ramp((3, 4), np.uint8)
    decoded = _decoded(pil_bytes(array, "PNG"), stack_pages=True)
    np.testing.assert_array_equal(decoded.array, array)


def test_stack_pages_refuses_mixed_shapes_and_dtypes() -> None:
    shapes = multipage_tiff([np.zeros((4, 5), np.uint16), np.zeros((5, 4), np.uint16)])
    with pytest.raises(UnsupportedImageError, match="one shape and dtype"):
        decode_image(shapes, stack_pages=True)
    dtypes = multipage_tiff([np.zeros((4, 5), np.uint16), np.zeros((4, 5), np.float32)])
    with pytest.raises(UnsupportedImageError, match="page 1 is 5 x 4 float32"):
        decode_image(dtypes, stack_pages=True)


def test_stack_pages_refuses_multichannel_pages() -> None:
    data = multipage_tiff([np.zeros((4, 5, 3), np.uint8)] * 2)
    with pytest.raises(UnsupportedImageError, match="single-channel"):
        decode_image(data, stack_pages=True)


def test_stack_pages_refuses_more_than_four_pages() -> None:
    data = multipage_tiff([np.zeros((4, 5), np.uint8)] * 5)
    with pytest.raises(UnsupportedImageError, match="5 channels"):
        decode_image(data, stack_pages=True)


def test_page_and_stack_pages_together_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        decode_image(b"whatever", page=0, stack_pages=True)


# ------------------------------------------------------------------- bad input


def test_empty_data() -> None:
    with pytest.raises(ImageDecodeError, match=r"^empty.png: empty file \(0 bytes\)$"):
        decode_image(b"", name="empty.png")
    with pytest.raises(ImageDecodeError, match="empty file"):
        probe_image(b"")


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageDecodeError, match=r"notes\.txt: not an image"):
        decode_image(b"hello, this is a text file\n" * 10, name="notes.txt")


def test_bmp_magic_followed_by_text() -> None:
    with pytest.raises(ImageDecodeError, match="x: not an image"):
        decode_image(b"BM is not a bitmap, it is a sentence about bitmaps.", name="x")


def test_corrupt_bmp_body() -> None:
    data = bytearray(pil_bytes(np.zeros((4, 4, 3), np.uint8), "BMP"))
    data[28:30] = (7).to_bytes(2, "little")  # 7 bits per pixel does not exist
    with pytest.raises(ImageDecodeError, match=r"x\.bmp: cannot decode"):
        decode_image(bytes(data), name="x.bmp")


def test_truncated_png() -> None:
    data = pil_bytes(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8), "PNG")
    with pytest.raises(ImageDecodeError, match=r"cut\.png: .*truncated"):
        decode_image(data[: len(data) // 2], name="cut.png")
    with pytest.raises(ImageDecodeError, match="no IEND"):
        decode_image(data[:-12], name="cut.png")


def test_truncated_16bit_colour_png() -> None:
    data = pypng_bytes(ramp((32, 32, 3), np.uint16), bitdepth=16)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_jpeg(keep: float) -> None:
    data = pil_bytes(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8), "JPEG")
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: .*truncated"):
        decode_image(data[: int(len(data) * keep)], name="cut.jpg")


def test_truncated_tiff() -> None:
    raw = tiff_bytes(ramp((64, 64), np.uint16), photometric="minisblack")
    with pytest.raises(ImageDecodeError, match="truncated TIFF"):
        decode_image(raw[:-100], name="cut.tif")
    packed = tiff_bytes(ramp((64, 64), np.uint16), photometric="minisblack", compression="zlib")
    with pytest.raises(ImageDecodeError, match=r"cut\.tif"):
        decode_image(packed[: len(packed) // 2], name="cut.tif")
    with pytest.raises(ImageDecodeError):
        decode_image(raw[:6])


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("planarconfig", ["contig", "separate"])
def test_tiled_tiff(compression: str | None, planarconfig: str) -> None:
    stored = ramp((3, 40, 50) if planarconfig == "separate" else (40, 50, 3), np.uint16)
    data = tiff_bytes(
        stored, photometric="rgb", planarconfig=planarconfig, tile=(16, 32), compression=compression
    )
    expected = np.moveaxis(stored, 0, -1) if planarconfig == "separate" else stored
    np.testing.assert_array_equal(_decoded(data).array, expected)


def _with_tag(data: bytes, name: str, value: int) -> bytes:
    """Overwrite the (first) value of an inline IFD0 tag."""
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        tag = tiff.pages[0].tags[name]
        code = {3: "<H", 4: "<I"}[int(tag.dtype)]
        offset = tag.valueoffset
    patched = bytearray(data)
    struct.pack_into(code, patched, offset, value)
    return bytes(patched)


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
def test_tiff_with_missing_strips_is_refused(compression: str | None) -> None:
    # The header claims 4000 rows but the file holds one strip of 6: tifffile alone would
    # return 3994 rows of zeros.
    data = tiff_bytes(ramp((6, 5, 3), np.uint8), photometric="rgb", compression=compression)
    with pytest.raises(ImageDecodeError, match="strips or tiles"):
        decode_image(_with_tag(data, "ImageLength", 4000))


def test_tiff_with_short_uncompressed_strip_is_refused() -> None:
    data = tiff_bytes(ramp((6, 5), np.uint8), photometric="minisblack")
    with pytest.raises(ImageDecodeError, match="holds 10 bytes"):
        decode_image(_with_tag(data, "StripByteCounts", 10))


def test_corrupt_tiff() -> None:
    with pytest.raises(ImageDecodeError, match=r"bad\.tif"):
        decode_image(b"II*\x00" + b"\xff" * 60, name="bad.tif")
    with pytest.raises(ImageDecodeError):
        decode_image(b"MM\x00*\x00\x00\x00\x08\x00\x00garbage", name="bad.tif")


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bytes"):
        decode_image("image.png")  # type: ignore[arg-type]


_EXIF = ExifData(latitude=-1.5, longitude=2.5, altitude=-3.0, captured_at=datetime(2020, 1, 1))


def _valid_files() -> list[bytes]:
    rgb = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    return [
        pil_bytes(rgb, "PNG"),
        pil_bytes(rgb, "JPEG"),
        pil_bytes(rgb, "GIF"),
        pil_bytes(rgb, "BMP"),
        pil_bytes(rgb, "WEBP"),
        pypng_bytes(ramp((6, 5, 3), np.uint16), bitdepth=16),
        tiff_bytes(ramp((6, 5), np.uint16), photometric="minisblack"),
        tiff_bytes(ramp((6, 5, 3), np.uint8), photometric="rgb", compression="lzw"),
        multipage_tiff([np.zeros((4, 4), np.uint8)] * 2),
        pil_bytes(rgb, "JPEG", exif=exif_to_bytes(_EXIF)),
        encode_image(ramp((6, 5), np.uint16), format="tiff", exif=_EXIF),
        encode_image(ramp((6, 5, 3), np.uint16), format="png", exif=_EXIF),
    ]


_FILES = _valid_files()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    file_index=st.integers(0, len(_FILES) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4),
)
def test_damaged_files_raise_only_image_errors(
    file_index: int, cut: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(_FILES[file_index])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    damaged = bytes(data[: max(0, int(cut * len(data)))] if cut < 0.98 else data)
    for call in (decode_image, probe_image):
        with contextlib.suppress(ImageError):  # the only acceptable failure
            call(damaged)
    assert isinstance(read_exif(damaged), ExifData)  # never raises


# --------------------------------------------------------------------- read_image


def test_read_image(tmp_path: Path) -> None:
    array = ramp((4, 6, 3), np.uint16)
    path = tmp_path / "x.tif"
    path.write_bytes(tiff_bytes(array, photometric="rgb"))
    np.testing.assert_array_equal(read_image(path), array)
    np.testing.assert_array_equal(read_image(str(path)), array)


def test_read_image_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.png: empty file"):
        read_image(path)


def test_read_image_passes_page_options(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    path.write_bytes(multipage_tiff([np.full((2, 2), v, np.uint8) for v in (3, 4)]))
    with pytest.raises(MultiPageImageError):
        read_image(path)
    assert int(read_image(path, page=1)[0, 0]) == 4
    assert read_image(path, stack_pages=True).shape == (2, 2, 2)


def test_read_image_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")
