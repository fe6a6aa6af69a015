"""The byte-level container helpers behind decode and write_exif."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lensloop.imaging import ExifData, exif_to_bytes
from lensloop.imaging._containers import (
    EXIF_PREFIX,
    find_jpeg_exif,
    find_png_exif,
    find_webp_exif,
    header_size,
    read_png_header,
    set_jpeg_exif,
    set_png_exif,
    sniff_format,
)
from lensloop.imaging._tiff_ifd import read_exif_tags

from ._make import pil_bytes, tiff_bytes

BLOCK = exif_to_bytes(ExifData(latitude=-1.0, longitude=2.0))


@pytest.mark.parametrize(
    ("fmt", "options", "name"),
    [
        ("PNG", {}, "png"),
        ("JPEG", {}, "jpeg"),
        ("JPEG", {"progressive": True}, "jpeg"),
        ("GIF", {}, "gif"),
        ("BMP", {}, "bmp"),
        ("WEBP", {}, "webp"),
        ("WEBP", {"lossless": True}, "webp"),
        ("WEBP", {"exif": BLOCK}, "webp"),  # extended format (VP8X)
        ("TIFF", {}, "tiff"),
    ],
)
def test_sniff_and_header_size_agree_with_pillow(
    fmt: str, options: dict[str, object], name: str
) -> None:
    data = pil_bytes(Image.new("RGB", (37, 21)), fmt, **options)
    assert sniff_format(data) == name
    if name != "tiff":
        assert header_size(data, name) == (37, 21)


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"BM" + b"\x00" * 40, b"\x89PNG", b"RIFF\x00\x00\x00\x00WAVE"]
)
def test_sniff_rejects_non_images(data: bytes) -> None:
    assert sniff_format(data) is None


def test_png_header_validation() -> None:
    header = read_png_header(pil_bytes(np.zeros((3, 5), np.uint16), "PNG"))
    assert (header.width, header.height, header.bit_depth, header.color_type) == (5, 3, 16, 0)
    with pytest.raises(ValueError, match="IHDR"):
        read_png_header(b"\x89PNG\r\n\x1a\n")
    bad = bytearray(pil_bytes(np.zeros((3, 5), np.uint8), "PNG"))
    bad[24] = 3  # 3 bits per sample does not exist
    with pytest.raises(ValueError, match="bit depth 3"):
        read_png_header(bytes(bad))


def test_jpeg_exif_goes_after_soi_when_there_is_no_app0() -> None:
    jpeg = pil_bytes(np.zeros((8, 8), np.uint8), "JPEG")
    app0_end = 4 + int.from_bytes(jpeg[4:6], "big")
    bare = jpeg[:2] + jpeg[app0_end:]  # drop the JFIF APP0 segment
    with_exif = set_jpeg_exif(bare, BLOCK)
    assert with_exif[2:4] == b"\xff\xe1"
    assert find_jpeg_exif(with_exif) == BLOCK[len(EXIF_PREFIX) :]
    assert set_jpeg_exif(with_exif, None) == bare


def test_jpeg_exif_too_large() -> None:
    jpeg = pil_bytes(np.zeros((8, 8), np.uint8), "JPEG")
    with pytest.raises(ValueError, match="does not fit"):
        set_jpeg_exif(jpeg, b"II*\x00" + b"\x00" * 70_000)


def test_corrupt_jpeg_segments() -> None:
    with pytest.raises(ValueError, match="SOI"):
        find_jpeg_exif(b"\x00\x00")
    with pytest.raises(ValueError, match="runs past"):
        find_jpeg_exif(b"\xff\xd8\xff\xe1\x40\x00Exif")


def test_png_exif_set_replace_remove() -> None:
    png = pil_bytes(np.zeros((4, 4), np.uint8), "PNG")
    assert find_png_exif(png) is None
    once = set_png_exif(png, BLOCK)
    assert find_png_exif(once) == BLOCK[len(EXIF_PREFIX) :]
    twice = set_png_exif(once, BLOCK)
    assert twice == once
    assert set_png_exif(twice, None) == png
    with pytest.raises(ValueError, match="runs past"):
        find_png_exif(png[:45])
    with pytest.raises(ValueError, match="no IDAT"):
        set_png_exif(png[:33], BLOCK)


def test_webp_exif() -> None:
    webp = pil_bytes(np.zeros((4, 4, 3), np.uint8), "WEBP", exif=BLOCK)
    block = find_webp_exif(webp)
    assert block is not None
    assert read_exif_tags(block)[2][1] == "S"
    assert find_webp_exif(pil_bytes(np.zeros((4, 4, 3), np.uint8), "WEBP")) is None


@pytest.mark.parametrize("bigtiff", [False, True])
def test_tiff_tags_of_classic_and_big_tiff(bigtiff: bool) -> None:
    data = tiff_bytes(
        np.zeros((2, 3), np.uint8),
        photometric="minisblack",
        bigtiff=bigtiff,
        extratags=[(271, "s", 0, "Maker", True)],
    )
    ifd0, exif, gps = read_exif_tags(data)
    assert (ifd0[256], ifd0[257], ifd0[271]) == (3, 2, "Maker")
    assert exif == {}
    assert gps == {}
    with pytest.raises(ValueError, match="not a TIFF"):
        read_exif_tags(b"PK\x03\x04")
