from __future__ import annotations

import io
import math
import os
import stat
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from PIL.TiffImagePlugin import IFDRational

from lensloop.errors import ImageDecodeError, UnsupportedImageError
from lensloop.imaging import (
    ExifData,
    decode_image,
    encode_image,
    exif_to_bytes,
    read_exif,
    write_exif,
)

from ._make import multipage_tiff, pil_bytes, pypng_bytes, ramp, tiff_bytes

GPS_IFD = 0x8825
EXIF_IFD = 0x8769

SOUTH_WEST = ExifData(
    latitude=-33.865143,
    longitude=-70.5,
    altitude=-12.25,
    captured_at=datetime(2023, 11, 5, 14, 30, 15),
    make="Acme Optics",
    model="FlowScope 2",
)


def _pillow_gps(data: bytes) -> dict[int, object]:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.getexif().get_ifd(GPS_IFD))


def _assert_close(read: ExifData, expected: ExifData) -> None:
    for field in ("latitude", "longitude", "altitude"):
        want, got = getattr(expected, field), getattr(read, field)
        if want is None:
            assert got is None, field
        else:
            assert got == pytest.approx(want, abs=1e-6), field
    assert read.captured_at == expected.captured_at
    assert (read.make, read.model) == (expected.make, expected.model)


# ---------------------------------------------------------------- ExifData


def test_exif_data_validation() -> None:
    with pytest.raises(ValueError, match="latitude"):
        ExifData(latitude=90.5)
    with pytest.raises(ValueError, match="longitude"):
        ExifData(longitude=-180.01)
    with pytest.raises(ValueError, match="altitude"):
        ExifData(altitude=math.nan)
    with pytest.raises(TypeError, match="latitude must be a number"):
        ExifData(latitude="12")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="captured_at"):
        ExifData(captured_at="2020:01:01 00:00:00")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="make"):
        ExifData(make=3)  # type: ignore[arg-type]
    assert ExifData().is_empty
    assert not ExifData(make="x").is_empty
    assert ExifData(altitude=0.0).has_gps


# ----------------------------------------------------------- exif_to_bytes


def test_exif_to_bytes_is_read_by_pillow_with_refs_and_rationals() -> None:
    block = exif_to_bytes(SOUTH_WEST)
    assert block.startswith(b"Exif\x00\x00")
    exif = Image.Exif()
    exif.load(block)
    gps = exif.get_ifd(GPS_IFD)
    assert gps[0] == b"\x02\x03\x00\x00"
    assert (gps[1], gps[3]) == ("S", "W")
    assert gps[5] in (b"\x01", 1)
    degrees, minutes, seconds = (float(v) for v in gps[2])
    assert (degrees, minutes) == (33, 51)
    assert seconds == pytest.approx(54.5148, abs=1e-6)
    assert float(gps[6]) == 12.25
    assert exif.get_ifd(EXIF_IFD)[0x9003] == "2023:11:05 14:30:15"
    assert exif[0x010F] == "Acme Optics"


@pytest.mark.parametrize(
    ("latitude", "longitude"), [(-33.865143, 151.209900), (-70.5, -12.25), (0.0, 180.0)]
)
def test_coordinates_round_trip_to_a_microdegree(latitude: float, longitude: float) -> None:
    read = read_exif(
        encode_image(
            np.zeros((8, 8), np.uint8),
            format="jpeg",
            exif=ExifData(latitude=latitude, longitude=longitude),
        )
    )
    assert read.latitude == pytest.approx(latitude, abs=1e-6)
    assert read.longitude == pytest.approx(longitude, abs=1e-6)
    assert read.altitude is None


@settings(max_examples=200, deadline=None)
@given(
    latitude=st.floats(-90, 90),
    longitude=st.floats(-180, 180),
    altitude=st.floats(-11_000, 9_000),
)
def test_any_position_round_trips(latitude: float, longitude: float, altitude: float) -> None:
    exif = ExifData(latitude=latitude, longitude=longitude, altitude=altitude)
    block = exif_to_bytes(exif)
    read = read_exif(encode_image(np.zeros((2, 2), np.uint8), format="png", exif=exif))
    assert read.latitude == pytest.approx(latitude, abs=1e-9)
    assert read.longitude == pytest.approx(longitude, abs=1e-9)
    assert read.altitude == pytest.approx(altitude, abs=0.0006)
    assert len(block) < 1000


@pytest.mark.parametrize(
    "captured_at",
    [
        datetime(2020, 2, 29, 23, 59, 59),
        datetime(2021, 6, 1, 8, 0, 0, 250000),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=10))),
        datetime(2024, 1, 2, 3, 4, 5, 7, tzinfo=timezone(-timedelta(hours=3, minutes=30))),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    ],
)
def test_capture_time_round_trips(captured_at: datetime) -> None:
    data = encode_image(
        np.zeros((8, 8), np.uint8), format="jpeg", exif=ExifData(captured_at=captured_at)
    )
    read = read_exif(data).captured_at
    assert read == captured_at
    assert (read is not None and read.tzinfo is not None) == (captured_at.tzinfo is not None)
    if captured_at.tzinfo is not None:
        assert read is not None
        assert read.utcoffset() == captured_at.utcoffset()


# --------------------------------------------------------------- write_exif


def test_write_exif_jpeg_is_lossless(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    path.write_bytes(pil_bytes(pixels, "JPEG", quality=80))
    before = path.read_bytes()
    write_exif(path, SOUTH_WEST)
    after = path.read_bytes()
    # Everything from the quantisation tables on (frame header, Huffman tables, scan) is
    # the same bytes: nothing was re-encoded.
    assert after[after.index(b"\xff\xdb") :] == before[before.index(b"\xff\xdb") :]
    assert after.startswith(before[:20])  # SOI and JFIF APP0 stay first
    np.testing.assert_array_equal(decode_image(after).array, decode_image(before).array)
    _assert_close(read_exif(after), SOUTH_WEST)
    gps = _pillow_gps(after)
    assert (gps[1], gps[3]) == ("S", "W")


def test_write_exif_jpeg_keeps_other_tags_and_replaces_ours(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "OldMake"
    exif.get_ifd(EXIF_IFD)[0x829A] = IFDRational(1, 250)  # ExposureTime
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (1.0, 2.0, 3.0), 3: "E", 4: (4.0, 5.0, 6.0)})
    path = tmp_path / "camera.jpg"
    path.write_bytes(pil_bytes(np.zeros((8, 8, 3), np.uint8), "JPEG", exif=exif.tobytes()))

    write_exif(path, SOUTH_WEST)
    with Image.open(path) as image:
        written = image.getexif()
        assert written[0x0112] == 6
        assert written[0x010F] == "Acme Optics"
        assert float(written.get_ifd(EXIF_IFD)[0x829A]) == pytest.approx(1 / 250)
    _assert_close(read_exif(path.read_bytes()), SOUTH_WEST)

    grown = len(path.read_bytes())
    write_exif(path, SOUTH_WEST)
    assert len(path.read_bytes()) < grown + 400  # merged: new IFDs appended to the block

    # Fields set to None are removed; other tags are still kept.
    write_exif(path, ExifData(latitude=10.0))
    read = read_exif(path.read_bytes())
    assert read.latitude == pytest.approx(10.0)
    assert replace(read, latitude=None).is_empty
    with Image.open(path) as image:
        assert image.getexif()[0x0112] == 6


def test_write_exif_png_keeps_every_other_chunk(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("instrument", "FlowCam 8000")
    path = tmp_path / "a.png"
    path.write_bytes(pil_bytes(ramp((6, 7, 3), np.uint8), "PNG", pnginfo=info))
    before = path.read_bytes()
    write_exif(path, SOUTH_WEST)
    after = path.read_bytes()
    _assert_close(read_exif(after), SOUTH_WEST)
    assert after.replace(after[after.index(b"eXIf") - 4 : after.index(b"IDAT") - 4], b"") == before
    assert after.index(b"eXIf") < after.index(b"IDAT")
    with Image.open(io.BytesIO(after)) as image:
        image.load()
        assert image.info["instrument"] == "FlowCam 8000"
        assert (image.getexif().get_ifd(GPS_IFD)[1], image.getexif().get_ifd(GPS_IFD)[3]) == (
            "S",
            "W",
        )


def test_write_exif_16bit_colour_png(tmp_path: Path) -> None:
    pixels = ramp((5, 6, 3), np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(pypng_bytes(pixels, bitdepth=16))
    write_exif(path, SOUTH_WEST)
    decoded = decode_image(path.read_bytes())
    np.testing.assert_array_equal(decoded.array, pixels)
    _assert_close(decoded.exif, SOUTH_WEST)
    size = len(path.read_bytes())
    write_exif(path, ExifData(longitude=-1.5))  # replacing an existing eXIf chunk
    assert path.read_bytes().count(b"eXIf") == 1
    for _ in range(5):
        write_exif(path, SOUTH_WEST)
    assert len(path.read_bytes()) == size  # a lensloop-only block is rebuilt, not grown
    write_exif(path, ExifData(longitude=-1.5))
    assert read_exif(path.read_bytes()).longitude == pytest.approx(-1.5)
    assert read_exif(path.read_bytes()).latitude is None


@pytest.mark.parametrize("bigtiff", [False, True])
def test_write_exif_tiff_keeps_pages_and_pixels(tmp_path: Path, bigtiff: bool) -> None:
    pages = [ramp((4, 5), np.uint16), ramp((4, 5), np.uint16)[::-1].copy()]
    path = tmp_path / "stack.tif"
    path.write_bytes(multipage_tiff(pages, bigtiff=bigtiff, description="keep me"))
    write_exif(path, SOUTH_WEST)
    data = path.read_bytes()
    _assert_close(read_exif(data), SOUTH_WEST)
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        assert len(tiff.pages) == 2
        for page, expected in zip(tiff.pages, pages, strict=True):
            np.testing.assert_array_equal(page.asarray(), expected)
        assert tiff.pages[0].description == "keep me"
        gps = tiff.pages[0].tags["GPSTag"].value
        assert (gps["GPSLatitudeRef"], gps["GPSLongitudeRef"]) == ("S", "W")
    np.testing.assert_array_equal(decode_image(data, page=1).array, pages[1])
    if not bigtiff:
        assert (_pillow_gps(data)[1], _pillow_gps(data)[3]) == ("S", "W")


def test_write_exif_tiff_twice_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    path.write_bytes(tiff_bytes(ramp((3, 3), np.float32, high=9), photometric="minisblack"))
    write_exif(path, SOUTH_WEST)
    write_exif(path, ExifData(captured_at=datetime(2000, 1, 1)))
    assert read_exif(path.read_bytes()) == ExifData(captured_at=datetime(2000, 1, 1))
    write_exif(path, ExifData())
    assert read_exif(path.read_bytes()).is_empty
    np.testing.assert_array_equal(
        decode_image(path.read_bytes()).array, ramp((3, 3), np.float32, high=9)
    )


def test_write_empty_exif_to_a_file_without_exif_changes_nothing(tmp_path: Path) -> None:
    for fmt in ("PNG", "JPEG"):
        path = tmp_path / f"a.{fmt.lower()}"
        original = pil_bytes(np.zeros((8, 8), np.uint8), fmt)
        path.write_bytes(original)
        write_exif(path, ExifData())
        assert path.read_bytes() == original


def test_write_exif_keeps_permissions_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(pil_bytes(np.zeros((2, 2), np.uint8), "PNG"))
    os.chmod(path, 0o640)
    write_exif(path, ExifData(latitude=1.0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("BMP", {}), ("WEBP", {})])
def test_write_exif_unsupported_formats(
    tmp_path: Path, fmt: str, options: dict[str, object]
) -> None:
    path = tmp_path / f"a.{fmt.lower()}"
    original = pil_bytes(np.zeros((4, 4, 3), np.uint8), fmt, **options)
    path.write_bytes(original)
    with pytest.raises(UnsupportedImageError, match=f"{fmt}.*JPEG, PNG and TIFF"):
        write_exif(path, SOUTH_WEST)
    assert path.read_bytes() == original


def test_write_exif_bad_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=r"notes\.txt"):
        write_exif(text, SOUTH_WEST)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(ImageDecodeError, match=r"broken\.jpg.*corrupt"):
        write_exif(broken, SOUTH_WEST)
    with pytest.raises(FileNotFoundError):
        write_exif(tmp_path / "missing.jpg", SOUTH_WEST)


# ---------------------------------------------------------------- read_exif


def test_read_exif_from_webp_and_pillow_images() -> None:
    data = pil_bytes(np.zeros((4, 4, 3), np.uint8), "WEBP", exif=exif_to_bytes(SOUTH_WEST))
    _assert_close(read_exif(data), SOUTH_WEST)
    with Image.open(io.BytesIO(data)) as image:
        _assert_close(read_exif(image), SOUTH_WEST)


def test_read_exif_without_exif() -> None:
    assert read_exif(pil_bytes(np.zeros((4, 4), np.uint8), "PNG")) == ExifData()
    assert read_exif(pil_bytes(np.zeros((4, 4), np.uint8), "GIF")) == ExifData()
    assert read_exif(b"") == ExifData()
    assert read_exif(b"plain text") == ExifData()
    assert read_exif(Image.new("L", (2, 2))) == ExifData()


def _block(
    gps: list[tuple[int, int, int, bytes]], exif: list[tuple[int, int, int, bytes]]
) -> bytes:
    """A little-endian EXIF block (TIFF structure) with raw GPS and Exif IFD entries."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))

    def ifd(entries: list[tuple[int, int, int, bytes]]) -> int:
        offset = len(out)
        values_at = offset + 2 + 12 * len(entries) + 4
        body, values = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, kind, count, payload in entries:
            if len(payload) <= 4:
                body += struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\x00")
            else:
                body += struct.pack("<HHII", tag, kind, count, values_at + len(values))
                values += payload
        out.extend(body + b"\x00\x00\x00\x00" + values)
        return offset

    out.extend(b"\x00" * 2 + struct.pack("<HHII", GPS_IFD, 4, 1, 0))  # placeholder IFD0
    out.extend(struct.pack("<HHII", EXIF_IFD, 4, 1, 0) + b"\x00\x00\x00\x00")
    struct.pack_into("<H", out, 8, 2)
    struct.pack_into("<I", out, 18, ifd(gps))
    struct.pack_into("<I", out, 30, ifd(exif))
    return b"Exif\x00\x00" + bytes(out)


def _rationals(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("<II", n, d) for n, d in pairs)


def test_garbled_tags_give_none_for_their_field_only() -> None:
    block = _block(
        gps=[
            (1, 2, 2, b"X\x00"),  # latitude reference neither N nor S
            (2, 5, 3, _rationals((10, 1), (0, 1), (0, 1))),
            (3, 2, 2, b"W\x00"),
            (4, 5, 3, _rationals((20, 1), (30, 1), (0, 1))),
            (6, 5, 1, _rationals((5, 0))),  # altitude with a zero denominator
        ],
        exif=[(0x9003, 2, 20, b"    :  :     :  :  \x00")],
    )
    jpeg = pil_bytes(np.zeros((8, 8), np.uint8), "JPEG", exif=block)
    read = read_exif(jpeg)
    assert read.latitude is None
    assert read.longitude == pytest.approx(-20.5)
    assert read.altitude is None
    assert read.captured_at is None
    assert decode_image(jpeg).exif == read


def test_bad_offset_time_gives_a_naive_time() -> None:
    block = _block(
        gps=[],
        exif=[
            (0x9003, 2, 20, b"2022:03:04 05:06:07\x00"),
            (0x9011, 2, 7, b"+25:00\x00"),
            (0x9291, 2, 3, b"5\x00\x00"),
        ],
    )
    read = read_exif(pil_bytes(np.zeros((8, 8), np.uint8), "JPEG", exif=block))
    assert read.captured_at == datetime(2022, 3, 4, 5, 6, 7, 500000)


def test_garbage_exif_block_gives_empty_exif() -> None:
    jpeg = bytearray(pil_bytes(np.zeros((8, 8), np.uint8), "JPEG", exif=exif_to_bytes(SOUTH_WEST)))
    start = jpeg.index(b"Exif\x00\x00") + 6
    jpeg[start : start + 40] = b"\xa5" * 40
    assert read_exif(bytes(jpeg)) == ExifData()
    assert decode_image(bytes(jpeg)).exif == ExifData()
    truncated = pil_bytes(np.zeros((8, 8), np.uint8), "JPEG", exif=exif_to_bytes(SOUTH_WEST))
    assert read_exif(truncated[:40]) == ExifData()


def test_jpeg_with_exif_that_makes_pillow_warn_still_decodes() -> None:
    # IFD0 claims 60 entries; Pillow warns "Corrupt EXIF data" while opening the JPEG.
    # The warning must not reach the caller (pytest makes warnings errors).
    block = bytearray(exif_to_bytes(ExifData(latitude=1.0, make="x")))
    block[len(b"Exif\x00\x00") + 8] = 60
    jpeg = pil_bytes(np.full((8, 8), 9, np.uint8), "JPEG", exif=bytes(block))
    decoded = decode_image(jpeg)
    assert decoded.array.shape == (8, 8)
    assert decoded.exif == read_exif(jpeg)
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # Pillow itself does warn
        image = Image.open(io.BytesIO(jpeg))
    assert isinstance(read_exif(image), ExifData)  # Pillow's own parser: no warning leaks
    image.close()


def test_decode_reports_exif_of_every_writer() -> None:
    for data in (
        encode_image(np.zeros((8, 8, 3), np.uint8), format="jpeg", exif=SOUTH_WEST),
        encode_image(np.zeros((8, 8, 3), np.uint16), format="png", exif=SOUTH_WEST),
        encode_image(np.zeros((8, 8), np.uint8), format="png", exif=SOUTH_WEST),
        encode_image(np.zeros((8, 8), np.int16), format="tiff", exif=SOUTH_WEST),
    ):
        _assert_close(decode_image(data).exif, SOUTH_WEST)
