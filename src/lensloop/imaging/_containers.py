"""Byte-level helpers for image containers, which never decode pixels.

They sniff the format, read header sizes, and find or replace the EXIF block of PNG, JPEG
and WebP files without touching their pixel data.

Everything here works on ``bytes`` and never decodes pixels, so it is cheap enough to run
on every image during ingest. Malformed input raises :class:`ValueError` with a short
reason; the public modules turn that into a lensloop error that names the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "EXIF_PREFIX",
    "JPEG_MAX_SEGMENT_PAYLOAD",
    "PngHeader",
    "find_jpeg_exif",
    "find_png_exif",
    "find_webp_exif",
    "header_size",
    "png_has_chunk_before_idat",
    "read_png_header",
    "set_jpeg_exif",
    "set_png_exif",
    "sniff_format",
]

EXIF_PREFIX = b"Exif\x00\x00"
"""The six bytes that open an EXIF block inside a JPEG APP1 segment."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# Sizes of the BMP info headers Pillow reads (OS/2 core header, BITMAPINFOHEADER, V2..V5).
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# Valid (colour type -> bit depths) pairs of the PNG specification.
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Samples per pixel of each PNG colour type, as stored (palette indices count as one).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

# JPEG markers that stand alone (no length field): TEM and RST0..RST7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers (SOF0..SOF15 without DHT 0xC4, JPG 0xC8 and DAC 0xCC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
_JPEG_APP0 = 0xE0
_JPEG_APP1 = 0xE1
JPEG_MAX_SEGMENT_PAYLOAD = 0xFFFF - 2


def sniff_format(data: bytes) -> str | None:
    """Name the container format from the first bytes.

    Args:
        data: The start of the file (at least 12 bytes for WebP).

    Returns:
        One of ``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``, ``"gif"``, ``"webp"``, or ``None``
        when the bytes are not one of these formats.
    """
    head = data[:12]
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(data) >= 26 and _dib_header_size(data) in _BMP_DIB_SIZES:
        return "bmp"
    return None


def _dib_header_size(data: bytes) -> int:
    return int.from_bytes(data[14:18], "little")


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Read ``(width, height)`` from the header of a PNG, JPEG, GIF, BMP or WebP file.

    This is the size lensloop checks against its limits before any decoder, Pillow
    included, is given the data.

    Args:
        data: The whole file.
        fmt: Its format, as returned by :func:`sniff_format`.

    Returns:
        The declared size, or None when the header does not state one (or ``fmt`` is
        another format).

    Raises:
        ValueError: The header is corrupt.
    """
    if fmt == "png":
        header = read_png_header(data)
        return header.width, header.height
    if fmt == "jpeg":
        return _jpeg_size(data)
    if fmt == "gif" and len(data) >= 10:
        width, height = struct.unpack_from("<HH", data, 6)
        return width, height
    if fmt == "bmp" and len(data) >= 26:
        if _dib_header_size(data) == 12:  # OS/2 BITMAPCOREHEADER
            width, height = struct.unpack_from("<HH", data, 18)
            return width, height
        width, height = struct.unpack_from("<ii", data, 18)
        return abs(width), abs(height)
    if fmt == "webp":
        return _webp_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, start, end in _iter_jpeg_segments(data):
        if marker in _JPEG_SOF and end - start >= 9:
            height, width = struct.unpack_from(">HH", data, start + 5)
            return (width, height) if height else None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


# --------------------------------------------------------------------------------------- PNG


@dataclass(frozen=True, slots=True)
class PngHeader:
    """The fields of a PNG ``IHDR`` chunk that decoding depends on.

    Attributes:
        width: Image width in pixels.
        height: Image height in pixels.
        bit_depth: Bits per sample (per palette index for colour type 3).
        color_type: 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
        interlaced: Whether the image uses Adam7 interlacing.
    """

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool

    @property
    def samples(self) -> int:
        """Samples per pixel as stored (a palette index counts as one)."""
        return _PNG_SAMPLES[self.color_type]


def read_png_header(data: bytes) -> PngHeader:
    """Parse the ``IHDR`` chunk that must follow the PNG signature.

    Args:
        data: A whole PNG file, or at least its first 33 bytes.

    Returns:
        The header fields.

    Raises:
        ValueError: The bytes are too short or the header is not a valid ``IHDR``.
    """
    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise ValueError("PNG file is too short or has no IHDR chunk")
    width, height, bit_depth, color_type, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if width == 0 or height == 0:
        raise ValueError(f"PNG header declares an empty image ({width} x {height})")
    if bit_depth not in _PNG_DEPTHS.get(color_type, ()):
        raise ValueError(f"PNG header has invalid colour type {color_type} / bit depth {bit_depth}")
    return PngHeader(width, height, bit_depth, color_type, interlace == 1)


def _iter_png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(type, start, end)`` of each chunk; ``data[start:end]`` is the whole chunk.

    Stops after ``IEND`` or at the end of the data. Raises ValueError when a chunk's length
    runs past the end of the data.
    """
    pos = len(_PNG_SIGNATURE)
    size = len(data)
    while pos + 8 <= size:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > size:
            raise ValueError(f"PNG chunk {kind!r} at byte {pos} runs past the end of the file")
        yield kind, pos, end
        if kind == b"IEND":
            return
        pos = end


def png_has_chunk_before_idat(data: bytes, kind: bytes) -> bool:
    """Tell whether a chunk of the given type comes before the first ``IDAT`` chunk.

    Args:
        data: A whole PNG file.
        kind: The four-byte chunk type, e.g. ``b"acTL"``.

    Returns:
        True when such a chunk is found before the image data.

    Raises:
        ValueError: The chunk structure is corrupt.
    """
    for chunk, _, _ in _iter_png_chunks(data):
        if chunk == kind:
            return True
        if chunk == b"IDAT":
            return False
    return False


def find_png_exif(data: bytes) -> bytes | None:
    r"""Return the payload of the ``eXIf`` chunk (a TIFF structure), or None if absent.

    Args:
        data: A whole PNG file.

    Returns:
        The chunk payload without any ``Exif\0\0`` prefix, or None.

    Raises:
        ValueError: The chunk structure is corrupt.
    """
    for kind, start, end in _iter_png_chunks(data):
        if kind == b"eXIf":
            payload = data[start + 8 : end - 4]
            return payload.removeprefix(EXIF_PREFIX)
    return None


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def set_png_exif(data: bytes, payload: bytes | None) -> bytes:
    r"""Replace the ``eXIf`` chunk of a PNG, leaving every other chunk byte-identical.

    The new chunk is placed just before the first ``IDAT`` chunk, as the PNG specification
    asks; any existing ``eXIf`` chunk is removed.

    Args:
        data: A whole PNG file.
        payload: The EXIF block (a TIFF structure, with or without the ``Exif\0\0``
            prefix), or None to remove the EXIF block.

    Returns:
        The new PNG file.

    Raises:
        ValueError: The chunk structure is corrupt or there is no ``IDAT`` chunk.
    """
    new_chunk = b"" if payload is None else _png_chunk(b"eXIf", payload.removeprefix(EXIF_PREFIX))
    parts: list[bytes] = [data[: len(_PNG_SIGNATURE)]]
    seen_idat = False
    last = len(_PNG_SIGNATURE)
    for kind, start, end in _iter_png_chunks(data):
        last = end
        if kind == b"eXIf":
            continue
        if kind == b"IDAT" and not seen_idat:
            parts.append(new_chunk)
            seen_idat = True
        parts.append(data[start:end])
    if not seen_idat:
        raise ValueError("PNG file has no IDAT chunk")
    parts.append(data[last:])  # anything after IEND is kept as it was
    return b"".join(parts)


# -------------------------------------------------------------------------------------- JPEG


def _iter_jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Yield ``(marker, start, end)`` of the marker segments before the first scan.

    ``data[start:end]`` is the whole segment including its ``0xFF xx`` marker. Iteration
    stops at the start-of-scan (SOS) or end-of-image marker, whose start is yielded with
    ``end == start``.
    """
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("JPEG data does not start with an SOI marker")
    pos = 2
    size = len(data)
    while pos + 2 <= size:
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            yield marker, pos, pos + 2
            pos += 2
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            yield marker, pos, pos
            return
        if pos + 4 > size:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > size:
            raise ValueError(f"JPEG segment 0xFF{marker:02X} at byte {pos} runs past the file")
        yield marker, pos, end
        pos = end
    raise ValueError("JPEG data ends before the image scan")


def _is_exif_app1(data: bytes, marker: int, start: int) -> bool:
    return marker == _JPEG_APP1 and data.startswith(EXIF_PREFIX, start + 4)


def find_jpeg_exif(data: bytes) -> bytes | None:
    r"""Return the EXIF block of the first APP1 ``Exif`` segment, or None if absent.

    Args:
        data: A whole JPEG file.

    Returns:
        The TIFF structure that follows ``Exif\0\0``, or None.

    Raises:
        ValueError: The marker structure is corrupt.
    """
    for marker, start, end in _iter_jpeg_segments(data):
        if _is_exif_app1(data, marker, start):
            return data[start + 4 + len(EXIF_PREFIX) : end]
    return None


def set_jpeg_exif(data: bytes, payload: bytes | None) -> bytes:
    r"""Replace the APP1 ``Exif`` segment of a JPEG without re-encoding it.

    Existing ``Exif`` APP1 segments are dropped; the new one goes right after SOI, or after
    the JFIF APP0 segment(s) that directly follow SOI. Every other byte (quantisation and
    Huffman tables, the entropy-coded scan) is copied unchanged.

    Args:
        data: A whole JPEG file.
        payload: The EXIF block (a TIFF structure, with or without the ``Exif\0\0``
            prefix), or None to remove it.

    Returns:
        The new JPEG file.

    Raises:
        ValueError: The marker structure is corrupt, or the EXIF block is larger than one
            JPEG segment can hold (65,527 bytes after the prefix).
    """
    segment = b""
    if payload is not None:
        body = EXIF_PREFIX + payload.removeprefix(EXIF_PREFIX)
        if len(body) > JPEG_MAX_SEGMENT_PAYLOAD:
            raise ValueError(
                f"EXIF block of {len(body)} bytes does not fit in one JPEG APP1 segment "
                f"(at most {JPEG_MAX_SEGMENT_PAYLOAD} bytes)"
            )
        segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    parts: list[bytes] = [data[:2]]
    insert_done = False
    rest_start = 2
    for marker, start, end in _iter_jpeg_segments(data):
        if not insert_done and marker != _JPEG_APP0:
            parts.append(segment)
            insert_done = True
        if end == start:  # SOS or EOI: the rest of the file is copied as it is
            rest_start = start
            break
        if not _is_exif_app1(data, marker, start):
            parts.append(data[start:end])
        rest_start = end
    parts.append(data[rest_start:])
    return b"".join(parts)


# -------------------------------------------------------------------------------------- WebP


def find_webp_exif(data: bytes) -> bytes | None:
    r"""Return the payload of the RIFF ``EXIF`` chunk of a WebP file, or None if absent.

    Args:
        data: A whole WebP file.

    Returns:
        The TIFF structure of the chunk, without any ``Exif\0\0`` prefix, or None.

    Raises:
        ValueError: The chunk structure is corrupt.
    """
    pos = 12
    size = len(data)
    while pos + 8 <= size:
        kind = data[pos : pos + 4]
        (length,) = struct.unpack_from("<I", data, pos + 4)
        end = pos + 8 + length
        if end > size:
            raise ValueError(f"WebP chunk {kind!r} at byte {pos} runs past the end of the file")
        if kind == b"EXIF":
            return data[pos + 8 : end].removeprefix(EXIF_PREFIX)
        pos = end + (length & 1)
    return None
