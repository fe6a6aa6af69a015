"""Where and when an image was taken: the EXIF GPS position and capture time.

lensloop reads and writes a small, well-defined part of EXIF, held in :class:`ExifData`:

======================  ==========================================================
field                   EXIF tags
======================  ==========================================================
``latitude``            GPS IFD 0x8825: GPSLatitudeRef (1, 'N'/'S'), GPSLatitude (2)
``longitude``           GPSLongitudeRef (3, 'E'/'W'), GPSLongitude (4)
``altitude``            GPSAltitudeRef (5, 0 above / 1 below sea level), GPSAltitude (6)
``captured_at``         Exif IFD 0x8769: DateTimeOriginal (0x9003), with
                        OffsetTimeOriginal (0x9011) and SubSecTimeOriginal (0x9291)
``make``, ``model``     IFD0: Make (0x010F), Model (0x0110)
======================  ==========================================================

Reading never fails on bad EXIF: a missing or garbled tag gives ``None`` for its field (and
a debug log line). Writing works on JPEG (the APP1 segment is replaced in the byte stream:
the compressed image is not touched), PNG (the ``eXIf`` chunk is replaced: every other
chunk is kept byte for byte) and TIFF (new EXIF IFDs are appended; pixel data and other
tags are untouched). Only Pillow and the standard library are used.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from lensloop.errors import ImageDecodeError, UnsupportedImageError
from lensloop.imaging import _containers, _tiff_ifd
from lensloop.imaging._atomic import atomic_write
from lensloop.imaging._tiff_ifd import ASCII, BYTE, RATIONAL, TagValue

__all__ = ["ExifData", "exif_to_bytes", "read_exif", "write_exif"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_MAKE, _MODEL = 0x010F, 0x0110
_EXIF_IFD, _GPS_IFD = _tiff_ifd.EXIF_IFD, _tiff_ifd.GPS_IFD
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _SUBSEC_TIME_ORIGINAL = 0x9003, 0x9011, 0x9291
_GPS_VERSION, _LAT_REF, _LAT, _LON_REF, _LON, _ALT_REF, _ALT = 0, 1, 2, 3, 4, 5, 6

_MANAGED_IFD0 = frozenset({_MAKE, _MODEL})
_MANAGED_EXIF = frozenset({_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _SUBSEC_TIME_ORIGINAL})

_MICROARCSEC_PER_DEGREE = 3_600_000_000
_OFFSET_RE = re.compile(r"([+-])(\d{2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class ExifData:
    """The EXIF fields lensloop uses; every field is optional.

    Args:
        latitude: Decimal degrees in [-90, 90]; negative is south.
        longitude: Decimal degrees in [-180, 180]; negative is west.
        altitude: Metres above sea level; negative is below sea level.
        captured_at: When the image was taken (``DateTimeOriginal``). Naive when the file
            gives no UTC offset, timezone-aware when it does.
        make: Camera or instrument maker (ASCII; other characters are written as ``?``).
        model: Camera or instrument model (ASCII, as ``make``).

    Raises:
        ValueError: A coordinate or the altitude is out of range or not finite.
        TypeError: A field has the wrong type.
    """

    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    captured_at: datetime | None = None
    make: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        for field, bound in (("latitude", 90.0), ("longitude", 180.0), ("altitude", math.inf)):
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{field} must be a number or None, got {value!r}")
            if not math.isfinite(value) or abs(value) > bound:
                limit = f" within [-{bound:g}, {bound:g}]" if math.isfinite(bound) else ""
                raise ValueError(f"{field} must be a finite number{limit}, got {value!r}")
        if self.captured_at is not None and not isinstance(self.captured_at, datetime):
            raise TypeError(f"captured_at must be a datetime or None, got {self.captured_at!r}")
        for field in ("make", "model"):
            if getattr(self, field) is not None and not isinstance(getattr(self, field), str):
                raise TypeError(f"{field} must be a str or None, got {getattr(self, field)!r}")

    @property
    def is_empty(self) -> bool:
        """True when no field is set."""
        return not self.has_gps and all(
            value is None for value in (self.captured_at, self.make, self.model)
        )

    @property
    def has_gps(self) -> bool:
        """True when any of latitude, longitude or altitude is set."""
        return any(v is not None for v in (self.latitude, self.longitude, self.altitude))


# ---------------------------------------------------------------------------------- reading


def read_exif(data: bytes | Image.Image) -> ExifData:
    """Read the GPS position, capture time, make and model of an image.

    Works on JPEG (APP1), PNG (``eXIf`` chunk), TIFF and BigTIFF (IFD0), WebP (``EXIF``
    chunk) bytes, and on any opened Pillow image. Only headers are read: no pixel data are
    decoded. Other formats carry no EXIF lensloop reads and give an empty result.

    Args:
        data: The whole file as bytes, or an opened :class:`PIL.Image.Image`.

    Returns:
        The fields found; a field whose tags are missing or garbled is None. Never raises
        for bad or missing EXIF.

    Example:
        >>> from lensloop.imaging import ExifData, encode_image
        >>> import numpy as np
        >>> jpeg = encode_image(np.zeros((8, 8), np.uint8), format="jpeg",
        ...                     exif=ExifData(latitude=-33.5, longitude=151.25))
        >>> read_exif(jpeg).latitude
        -33.5
    """
    if isinstance(data, Image.Image):
        return _read_pillow_exif(data)
    fmt = _containers.sniff_format(data)
    try:
        if fmt == "tiff":
            return exif_from_block(data)
        if fmt == "jpeg":
            block = _containers.find_jpeg_exif(data)
        elif fmt == "png":
            block = _containers.find_png_exif(data)
        elif fmt == "webp":
            block = _containers.find_webp_exif(data)
        else:
            return ExifData()
    except ValueError as exc:
        logger.debug("no readable EXIF block in %s data: %s", fmt, exc)
        return ExifData()
    return exif_from_block(block)


def exif_from_block(block: bytes | None) -> ExifData:
    r"""Read :class:`ExifData` from an EXIF block or a whole TIFF file (internal helper).

    Args:
        block: A TIFF structure (optionally after ``Exif\0\0``), or None.

    Returns:
        The fields found; empty when ``block`` is None or unreadable.
    """
    if not block:
        return ExifData()
    try:
        ifd0, exif_ifd, gps = _tiff_ifd.read_exif_tags(block.removeprefix(_containers.EXIF_PREFIX))
    except (ValueError, struct.error) as exc:
        logger.debug("unreadable EXIF block: %s", exc)
        return ExifData()
    return _exif_from_tags(ifd0, exif_ifd, gps)


def _read_pillow_exif(image: Image.Image) -> ExifData:
    # Pillow warns (rather than raises) on some corrupt EXIF; keep that out of the caller's
    # warning filters, where it could become an error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exif = image.getexif()
            ifd0 = dict(exif)
            exif_ifd = exif.get_ifd(_EXIF_IFD)
            gps = exif.get_ifd(_GPS_IFD)
        except Exception as exc:  # Pillow raises many types on garbled EXIF
            logger.debug("unreadable EXIF in Pillow image: %s", exc)
            return ExifData()
    for warning in caught:
        logger.debug("Pillow warning while reading EXIF: %s", warning.message)
    return _exif_from_tags(ifd0, exif_ifd, gps)


def _exif_from_tags(
    ifd0: Mapping[int, Any], exif_ifd: Mapping[int, Any], gps: Mapping[int, Any]
) -> ExifData:
    return ExifData(
        latitude=_safe(_coordinate, gps, _LAT, _LAT_REF, "NS", 90.0),
        longitude=_safe(_coordinate, gps, _LON, _LON_REF, "EW", 180.0),
        altitude=_safe(_altitude, gps),
        captured_at=_safe(_captured_at, exif_ifd),
        make=_safe(_text, ifd0, _MAKE),
        model=_safe(_text, ifd0, _MODEL),
    )


def _safe(parse: Callable[..., _T], *args: Any) -> _T | None:
    """Run one field parser; a garbled tag gives None instead of an exception."""
    try:
        return parse(*args)
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as exc:
        logger.debug("ignoring garbled EXIF field (%s): %s", parse.__name__, exc)
        return None


def _text(tags: Mapping[int, Any], tag: int) -> str | None:
    value = tags.get(tag)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00").strip()
    return value or None


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, tuple | list) else [value]
    numbers = [float(item) for item in items]
    if not numbers or not all(math.isfinite(n) for n in numbers):
        raise ValueError(f"not a finite number: {value!r}")
    return numbers


def _coordinate(
    gps: Mapping[int, Any], tag: int, ref_tag: int, refs: str, bound: float
) -> float | None:
    if tag not in gps:
        return None
    parts = _numbers(gps[tag])
    if len(parts) > 3:
        raise ValueError(f"GPS coordinate has {len(parts)} parts")
    degrees = sum(part / 60.0**i for i, part in enumerate(parts))
    ref = _text(gps, ref_tag)
    if ref is None or ref.upper() not in refs:
        raise ValueError(f"GPS coordinate without a valid {refs[0]}/{refs[1]} reference: {ref!r}")
    value = -degrees if ref.upper() == refs[1] else degrees
    if abs(value) > bound:
        raise ValueError(f"GPS coordinate {value} is out of range")
    return value


def _altitude(gps: Mapping[int, Any]) -> float | None:
    if _ALT not in gps:
        return None
    (metres,) = _numbers(gps[_ALT])
    ref = gps.get(_ALT_REF, 0)
    below = (ref[:1] == b"\x01") if isinstance(ref, bytes) else int(ref) == 1
    return -metres if below else metres


def _captured_at(exif_ifd: Mapping[int, Any]) -> datetime | None:
    text = _text(exif_ifd, _DATETIME_ORIGINAL)
    if text is None:
        return None
    when = datetime.strptime(text.replace("-", ":", 2)[:19], "%Y:%m:%d %H:%M:%S")
    subsec = _text(exif_ifd, _SUBSEC_TIME_ORIGINAL)
    if subsec and subsec.isdigit():
        when = when.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    offset = _text(exif_ifd, _OFFSET_TIME_ORIGINAL)
    match = _OFFSET_RE.fullmatch(offset) if offset else None
    if match and int(match.group(2)) < 24 and int(match.group(3)) < 60:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        when = when.replace(tzinfo=timezone(sign * delta))
    elif offset:
        logger.debug("ignoring unreadable OffsetTimeOriginal %r", offset)
    return when


# ---------------------------------------------------------------------------------- writing


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    """Degrees, minutes and seconds (to a micro-arcsecond) of ``abs(value)``."""
    total = round(abs(value) * _MICROARCSEC_PER_DEGREE)
    degrees, rest = divmod(total, _MICROARCSEC_PER_DEGREE)
    minutes, microseconds = divmod(rest, 60_000_000)
    return Fraction(degrees), Fraction(minutes), Fraction(microseconds, 1_000_000)


def _tags_from_exif(
    exif: ExifData,
) -> tuple[dict[int, TagValue], dict[int, TagValue], dict[int, TagValue]]:
    """The ``(ifd0, exif_ifd, gps)`` tags that represent ``exif``."""
    ifd0: dict[int, TagValue] = {}
    if exif.make is not None:
        ifd0[_MAKE] = (ASCII, exif.make)
    if exif.model is not None:
        ifd0[_MODEL] = (ASCII, exif.model)

    exif_ifd: dict[int, TagValue] = {}
    if exif.captured_at is not None:
        when = exif.captured_at
        exif_ifd[_DATETIME_ORIGINAL] = (ASCII, when.strftime("%Y:%m:%d %H:%M:%S"))
        if when.microsecond:
            exif_ifd[_SUBSEC_TIME_ORIGINAL] = (ASCII, f"{when.microsecond:06d}")
        offset = when.utcoffset()
        if offset is not None:
            minutes = int(offset.total_seconds() // 60)
            sign = "-" if minutes < 0 else "+"
            hours, mins = divmod(abs(minutes), 60)
            exif_ifd[_OFFSET_TIME_ORIGINAL] = (ASCII, f"{sign}{hours:02d}:{mins:02d}")

    gps: dict[int, TagValue] = {}
    if exif.has_gps:
        gps[_GPS_VERSION] = (BYTE, b"\x02\x03\x00\x00")
    if exif.latitude is not None:
        gps[_LAT_REF] = (ASCII, "S" if exif.latitude < 0 else "N")
        gps[_LAT] = (RATIONAL, _dms(exif.latitude))
    if exif.longitude is not None:
        gps[_LON_REF] = (ASCII, "W" if exif.longitude < 0 else "E")
        gps[_LON] = (RATIONAL, _dms(exif.longitude))
    if exif.altitude is not None:
        gps[_ALT_REF] = (BYTE, b"\x01" if exif.altitude < 0 else b"\x00")
        gps[_ALT] = (RATIONAL, (Fraction(round(abs(exif.altitude) * 1000), 1000),))
    return ifd0, exif_ifd, gps


def _to_pillow(value: str | bytes | tuple[Fraction, ...]) -> Any:
    if isinstance(value, tuple):
        rationals = tuple(IFDRational(f.numerator, f.denominator) for f in value)
        return rationals[0] if len(rationals) == 1 else rationals
    return value


def exif_to_bytes(exif: ExifData) -> bytes:
    r"""Build an EXIF block holding ``exif``, ready for Pillow's ``save(exif=...)``.

    The block is made with :class:`PIL.Image.Exif` (little-endian). Coordinates are stored
    as degrees, minutes and seconds with the seconds to a micro-arcsecond, so they read back
    within 1e-9 degrees; altitude is stored to the millimetre; the GPS IFD also carries
    GPSVersionID 2.3.0.0. Sub-second capture times are kept in SubSecTimeOriginal and the
    UTC offset of an aware ``captured_at`` in OffsetTimeOriginal (to the minute).

    Args:
        exif: The fields to store.

    Returns:
        ``b"Exif\0\0"`` followed by a TIFF structure (IFD0, Exif IFD, GPS IFD).
    """
    ifd0, exif_ifd, gps = _tags_from_exif(exif)
    block = Image.Exif()
    block.endian = "<"
    for tag, (_, value) in ifd0.items():
        block[tag] = _to_pillow(value)
    for ifd_tag, tags in ((_EXIF_IFD, exif_ifd), (_GPS_IFD, gps)):
        if tags:
            sub = block.get_ifd(ifd_tag)
            sub.update({tag: _to_pillow(value) for tag, (_, value) in tags.items()})
    return block.tobytes()


def _only_managed_tags(block: bytes) -> bool:
    """Whether an EXIF block holds nothing but the tags lensloop writes."""
    ifd0, exif_ifd, _ = _tiff_ifd.read_exif_tags(block)
    return (
        set(ifd0) <= _MANAGED_IFD0 | {_EXIF_IFD, _GPS_IFD}
        and set(exif_ifd) <= _MANAGED_EXIF
        and not _tiff_ifd.has_second_ifd(block)
    )


def _merge_block(block: bytes | None, exif: ExifData) -> bytes | None:
    """Set ``exif`` in an existing EXIF block, keeping its other tags exactly.

    Returns None when there is nothing to store (no block and an empty ``exif``).
    """
    if block:
        tiff = block.removeprefix(_containers.EXIF_PREFIX)
        ifd0, exif_ifd, gps = _tags_from_exif(exif)
        try:
            if not _only_managed_tags(tiff):
                merged = _tiff_ifd.set_exif_tags(
                    tiff,
                    ifd0=ifd0,
                    exif=exif_ifd,
                    gps=gps,
                    managed_ifd0=_MANAGED_IFD0,
                    managed_exif=_MANAGED_EXIF,
                )
                return _containers.EXIF_PREFIX + merged
        except (ValueError, struct.error) as exc:
            logger.debug("existing EXIF block is unreadable and is replaced: %s", exc)
    # No block, an unreadable one, or one with only lensloop's tags: write a fresh block,
    # so that rewriting a file again and again does not grow its EXIF.
    return None if exif.is_empty else exif_to_bytes(exif)


def set_tiff_exif(data: bytes, exif: ExifData) -> bytes:
    """Set ``exif`` on the first page of a TIFF file (internal helper for the encoders).

    Args:
        data: A whole TIFF or BigTIFF file.
        exif: The fields to set; fields that are None are removed from the file.

    Returns:
        The new file: the old one with new IFDs appended.

    Raises:
        ValueError: The TIFF structure is corrupt, or a classic TIFF would pass 4 GiB.
    """
    ifd0, exif_ifd, gps = _tags_from_exif(exif)
    return _tiff_ifd.set_exif_tags(
        data,
        ifd0=ifd0,
        exif=exif_ifd,
        gps=gps,
        managed_ifd0=_MANAGED_IFD0,
        managed_exif=_MANAGED_EXIF,
    )


def write_exif(path: str | os.PathLike[str], exif: ExifData) -> None:
    """Set the EXIF fields of an existing JPEG, PNG or TIFF file, without re-encoding it.

    Afterwards ``read_exif`` of the file gives exactly ``exif``: fields that are None are
    removed, the GPS IFD is replaced as a whole (GPS tags lensloop does not model, such as
    GPSTimeStamp, are dropped), and all other EXIF tags (orientation, exposure, maker
    notes) are kept byte for byte. The pixel data are never decoded:

    - JPEG: the APP1 ``Exif`` segment is replaced in the byte stream; everything from the
      quantisation tables to the end of the scan is copied unchanged. The EXIF block must fit
      in one segment (64 kB).
    - PNG: the ``eXIf`` chunk is replaced (placed before the image data); all other chunks,
      text chunks and the 16-bit or palette data included, are copied unchanged.
    - TIFF / BigTIFF: new Exif and GPS IFDs and a copy of IFD0 are appended and the header
      is pointed at the copy; the first page gets the tags, other pages are untouched. The
      replaced IFDs stay in the file unreferenced (a few hundred bytes per write).

    When a JPEG or PNG already holds other EXIF tags, the new tags are appended to its
    EXIF block in the same way; a block holding only lensloop's tags is rebuilt instead.

    The file is replaced atomically (temporary file + rename) and keeps its permissions.

    Args:
        path: An existing image file.
        exif: The fields to store.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageDecodeError: The file is not a readable JPEG, PNG or TIFF (corrupt structure).
        UnsupportedImageError: The format cannot hold EXIF here (WebP, GIF, BMP, ...), or the
            EXIF block is too large for a JPEG segment.
    """
    path = Path(path)
    data = path.read_bytes()
    fmt = _containers.sniff_format(data)
    if fmt is None:
        raise ImageDecodeError(f"{path}: not a JPEG, PNG or TIFF file; cannot write EXIF")
    if fmt not in ("jpeg", "png", "tiff"):
        raise UnsupportedImageError(
            f"{path}: writing EXIF to {fmt.upper()} files is not supported; "
            "lensloop writes EXIF to JPEG, PNG and TIFF files"
        )
    try:
        if fmt == "jpeg":
            block = _merge_block(_containers.find_jpeg_exif(data), exif)
            if block is not None and len(block) > _containers.JPEG_MAX_SEGMENT_PAYLOAD:
                raise UnsupportedImageError(
                    f"{path}: the EXIF block would be {len(block):,} bytes, more than one "
                    f"JPEG segment holds ({_containers.JPEG_MAX_SEGMENT_PAYLOAD:,} bytes)"
                )
            new = _containers.set_jpeg_exif(data, block)
        elif fmt == "png":
            new = _containers.set_png_exif(
                data, _merge_block(_containers.find_png_exif(data), exif)
            )
        else:
            new = set_tiff_exif(data, exif)
    except (ValueError, struct.error) as exc:
        if isinstance(exc, UnsupportedImageError):
            raise
        raise ImageDecodeError(
            f"{path}: cannot write EXIF, the {fmt} file is corrupt: {exc}"
        ) from exc
    atomic_write(path, new, overwrite=True)
