"""Read and add EXIF tags in the first IFD of a TIFF file (classic or BigTIFF), in bytes.

tifffile writes pixel data well but cannot write the nested GPS and Exif IFDs, and Pillow
cannot read BigTIFF EXIF. This module does the small part both lack:

- :func:`read_exif_tags` decodes IFD0 and its Exif (0x8769) and GPS (0x8825) sub-IFDs;
- :func:`set_exif_tags` appends new GPS / Exif IFDs and a rewritten copy of IFD0 to the end
  of the file and points the header at the new IFD0. Nothing already in the file moves, so
  every offset in it (strips, tiles, other pages, other tags) stays valid and the pixel
  data are untouched; the old IFD0 is left behind as a few unused bytes.

Malformed structures raise :class:`ValueError`; callers turn that into a lensloop error.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "ASCII",
    "BYTE",
    "EXIF_IFD",
    "GPS_IFD",
    "RATIONAL",
    "TagValue",
    "has_second_ifd",
    "read_exif_tags",
    "set_exif_tags",
]

BYTE = 1
ASCII = 2
RATIONAL = 5
_SHORT, _LONG, _SBYTE, _UNDEFINED, _SSHORT, _SLONG, _SRATIONAL = 3, 4, 6, 7, 8, 9, 10
_FLOAT, _DOUBLE, _IFD, _LONG8, _SLONG8, _IFD8 = 11, 12, 13, 16, 17, 18

EXIF_IFD = 0x8769
GPS_IFD = 0x8825

# Bytes per value of each TIFF field type.
_TYPE_SIZES = {
    BYTE: 1,
    ASCII: 1,
    _SHORT: 2,
    _LONG: 4,
    RATIONAL: 8,
    _SBYTE: 1,
    _UNDEFINED: 1,
    _SSHORT: 2,
    _SLONG: 4,
    _SRATIONAL: 8,
    _FLOAT: 4,
    _DOUBLE: 8,
    _IFD: 4,
    _LONG8: 8,
    _SLONG8: 8,
    _IFD8: 8,
}
_INT_FORMATS = {
    _SHORT: "H",
    _LONG: "I",
    _SSHORT: "h",
    _SLONG: "i",
    _IFD: "I",
    _LONG8: "Q",
    _SLONG8: "q",
    _IFD8: "Q",
    _FLOAT: "f",
    _DOUBLE: "d",
}

TagValue = tuple[int, str | bytes | tuple[Fraction, ...]]
"""A tag to write: ``(field type, value)`` with ``str`` for ASCII, ``bytes`` for BYTE and a
tuple of fractions for RATIONAL."""


@dataclass(frozen=True, slots=True)
class _Layout:
    byteorder: str  # "<" or ">"
    bigtiff: bool

    @property
    def field_size(self) -> int:
        return 8 if self.bigtiff else 4

    @property
    def entry_size(self) -> int:
        return 20 if self.bigtiff else 12

    @property
    def entry_format(self) -> str:
        return self.byteorder + ("HHQ8s" if self.bigtiff else "HHI4s")

    @property
    def count_format(self) -> str:
        return self.byteorder + ("Q" if self.bigtiff else "H")

    @property
    def offset_format(self) -> str:
        return self.byteorder + ("Q" if self.bigtiff else "I")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One IFD entry; ``field`` is the raw value-or-offset field in file byte order."""

    tag: int
    type: int
    count: int
    field: bytes


def _parse_header(data: bytes) -> tuple[_Layout, int]:
    """Return the layout and the offset of IFD0."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        layout = _Layout("<" if data[0] == ord("I") else ">", bigtiff=False)
        if len(data) < 8:
            raise ValueError("TIFF header is truncated")
        (offset,) = struct.unpack_from(layout.byteorder + "I", data, 4)
    elif data[:4] in (b"II+\x00", b"MM\x00+"):
        layout = _Layout("<" if data[0] == ord("I") else ">", bigtiff=True)
        if len(data) < 16:
            raise ValueError("BigTIFF header is truncated")
        (offset,) = struct.unpack_from(layout.byteorder + "Q", data, 8)
    else:
        raise ValueError("not a TIFF file")
    return layout, offset


def _read_ifd(data: bytes, layout: _Layout, offset: int) -> tuple[list[_Entry], int]:
    """Return the entries of the IFD at ``offset`` and the offset of the next IFD."""
    count_size = struct.calcsize(layout.count_format)
    if offset <= 0 or offset + count_size > len(data):
        raise ValueError(f"IFD offset {offset} is outside the file ({len(data)} bytes)")
    (n_entries,) = struct.unpack_from(layout.count_format, data, offset)
    start = offset + count_size
    end = start + n_entries * layout.entry_size
    if end + layout.field_size > len(data):
        raise ValueError(f"IFD at byte {offset} with {n_entries} entries runs past the file")
    entries = [
        _Entry(*struct.unpack_from(layout.entry_format, data, start + i * layout.entry_size))
        for i in range(n_entries)
    ]
    (next_offset,) = struct.unpack_from(layout.offset_format, data, end)
    return entries, next_offset


def _payload(data: bytes, layout: _Layout, entry: _Entry) -> bytes:
    size = _TYPE_SIZES[entry.type] * entry.count
    if size <= layout.field_size:
        return entry.field[:size]
    (offset,) = struct.unpack(layout.offset_format, entry.field)
    if offset + size > len(data):
        raise ValueError(f"value of tag {entry.tag} runs past the end of the file")
    return data[offset : offset + size]


def _decode(data: bytes, layout: _Layout, entry: _Entry) -> Any:
    """Decode an entry's value: str, bytes, int/float, or a tuple of them for count > 1."""
    raw = _payload(data, layout, entry)
    if entry.type == ASCII:
        return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if entry.type in (BYTE, _SBYTE, _UNDEFINED):
        return raw
    values: tuple[Any, ...]
    if entry.type in (RATIONAL, _SRATIONAL):
        code = "I" if entry.type == RATIONAL else "i"
        pairs = struct.unpack(f"{layout.byteorder}{2 * entry.count}{code}", raw)
        values = tuple(
            num / den if den else float("nan")
            for num, den in zip(pairs[::2], pairs[1::2], strict=True)
        )
    else:
        values = struct.unpack(f"{layout.byteorder}{entry.count}{_INT_FORMATS[entry.type]}", raw)
    return values[0] if len(values) == 1 else values


def _decode_ifd(data: bytes, layout: _Layout, entries: list[_Entry]) -> dict[int, Any]:
    tags: dict[int, Any] = {}
    for entry in entries:
        if entry.type in _TYPE_SIZES:
            try:
                tags[entry.tag] = _decode(data, layout, entry)
            except (ValueError, struct.error):
                continue  # one unreadable tag does not spoil the others
    return tags


def _sub_ifd_entries(
    data: bytes, layout: _Layout, ifd0: list[_Entry], tag: int
) -> list[_Entry] | None:
    for entry in ifd0:
        if entry.tag == tag and entry.type in (_LONG, _IFD, _LONG8, _IFD8) and entry.count == 1:
            (offset,) = struct.unpack(
                f"{layout.byteorder}{_INT_FORMATS[entry.type]}",
                entry.field[: _TYPE_SIZES[entry.type]],
            )
            return _read_ifd(data, layout, offset)[0]
    return None


def has_second_ifd(data: bytes) -> bool:
    """Tell whether IFD0 links to a next IFD (a second page, or an EXIF thumbnail).

    Args:
        data: A whole TIFF file or an EXIF block (a TIFF structure).

    Returns:
        True when IFD0's next-IFD offset is not 0.

    Raises:
        ValueError: The header or IFD0 is corrupt.
    """
    layout, offset = _parse_header(data)
    return _read_ifd(data, layout, offset)[1] != 0


def read_exif_tags(data: bytes) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    """Decode the tags of IFD0 and of its Exif and GPS sub-IFDs.

    Args:
        data: A whole TIFF or BigTIFF file, or an EXIF block (a TIFF structure).

    Returns:
        ``(ifd0, exif, gps)``: tag number -> value (``str`` for ASCII, ``bytes`` for BYTE and
        UNDEFINED, ``int``/``float`` for numbers and rationals, tuples when a tag has more
        than one value). A sub-IFD that is missing or unreadable gives an empty dict.

    Raises:
        ValueError: The header or IFD0 is corrupt.
    """
    layout, offset = _parse_header(data)
    entries, _ = _read_ifd(data, layout, offset)
    subs: list[dict[int, Any]] = []
    for tag in (EXIF_IFD, GPS_IFD):
        try:
            sub = _sub_ifd_entries(data, layout, entries, tag)
        except (ValueError, struct.error):
            sub = None
        subs.append(_decode_ifd(data, layout, sub) if sub else {})
    return _decode_ifd(data, layout, entries), subs[0], subs[1]


def _encode(layout: _Layout, kind: int, value: str | bytes | tuple[Fraction, ...]) -> bytes:
    if kind == ASCII and isinstance(value, str):
        return value.encode("ascii", "replace") + b"\x00"
    if kind == BYTE and isinstance(value, bytes):
        return value
    if kind == RATIONAL and isinstance(value, tuple):
        numbers = [part for frac in value for part in (frac.numerator, frac.denominator)]
        return struct.pack(f"{layout.byteorder}{len(numbers)}I", *numbers)
    raise TypeError(f"cannot encode {value!r} as TIFF field type {kind}")


class _IfdWriter:
    """Append IFDs (and their out-of-line values) to the end of a growing file."""

    def __init__(self, data: bytes, layout: _Layout) -> None:
        self.out = bytearray(data)
        self.layout = layout

    def _align(self) -> None:
        self.out.extend(b"\x00" * (-len(self.out) % 8))

    def new_entry(self, tag: int, kind: int, value: str | bytes | tuple[Fraction, ...]) -> _Entry:
        payload = _encode(self.layout, kind, value)
        count = len(payload) // _TYPE_SIZES[kind]
        return self._entry_for_payload(tag, kind, count, payload)

    def pointer_entry(self, tag: int, offset: int) -> _Entry:
        kind = _LONG8 if self.layout.bigtiff else _LONG
        payload = struct.pack(f"{self.layout.byteorder}{_INT_FORMATS[kind]}", offset)
        return self._entry_for_payload(tag, kind, 1, payload)

    def _entry_for_payload(self, tag: int, kind: int, count: int, payload: bytes) -> _Entry:
        size = self.layout.field_size
        if len(payload) <= size:
            return _Entry(tag, kind, count, payload.ljust(size, b"\x00"))
        self._align()
        offset = len(self.out)
        self.out.extend(payload)
        return _Entry(tag, kind, count, struct.pack(self.layout.offset_format, offset))

    def write_ifd(self, entries: list[_Entry], next_offset: int) -> int:
        layout = self.layout
        self._align()
        offset = len(self.out)
        self.out.extend(struct.pack(layout.count_format, len(entries)))
        for entry in sorted(entries, key=lambda e: e.tag):
            self.out.extend(
                struct.pack(layout.entry_format, entry.tag, entry.type, entry.count, entry.field)
            )
        self.out.extend(struct.pack(layout.offset_format, next_offset))
        return offset


def set_exif_tags(
    data: bytes,
    *,
    ifd0: Mapping[int, TagValue],
    exif: Mapping[int, TagValue],
    gps: Mapping[int, TagValue],
    managed_ifd0: frozenset[int],
    managed_exif: frozenset[int],
) -> bytes:
    """Set EXIF tags on the first page of a TIFF file without moving anything in it.

    The GPS IFD is replaced by ``gps`` (none is written when it is empty). In the Exif IFD,
    the tags in ``managed_exif`` are replaced by those in ``exif`` and all other existing
    tags are kept. In IFD0, the tags in ``managed_ifd0`` are replaced by those in ``ifd0``.

    Args:
        data: A whole TIFF or BigTIFF file.
        ifd0: Tags to set in IFD0.
        exif: Tags to set in the Exif IFD.
        gps: The complete GPS IFD (empty for none).
        managed_ifd0: IFD0 tags that are removed unless given in ``ifd0``.
        managed_exif: Exif IFD tags that are removed unless given in ``exif``.

    Returns:
        The new file.

    Raises:
        ValueError: The TIFF structure is corrupt, or a classic TIFF would grow past 4 GiB.
    """
    layout, ifd0_offset = _parse_header(data)
    entries, next_offset = _read_ifd(data, layout, ifd0_offset)
    try:
        old_exif = _sub_ifd_entries(data, layout, entries, EXIF_IFD) or []
    except (ValueError, struct.error):
        old_exif = []  # an unreadable Exif IFD is replaced rather than kept
    writer = _IfdWriter(data, layout)

    exif_entries = [e for e in old_exif if e.tag not in managed_exif and e.tag not in exif]
    exif_entries += [writer.new_entry(tag, kind, value) for tag, (kind, value) in exif.items()]
    gps_entries = [writer.new_entry(tag, kind, value) for tag, (kind, value) in gps.items()]

    drop = managed_ifd0 | set(ifd0) | {EXIF_IFD, GPS_IFD}
    new_ifd0 = [e for e in entries if e.tag not in drop]
    new_ifd0 += [writer.new_entry(tag, kind, value) for tag, (kind, value) in ifd0.items()]
    if exif_entries:
        new_ifd0.append(writer.pointer_entry(EXIF_IFD, writer.write_ifd(exif_entries, 0)))
    if gps_entries:
        new_ifd0.append(writer.pointer_entry(GPS_IFD, writer.write_ifd(gps_entries, 0)))
    new_offset = writer.write_ifd(new_ifd0, next_offset)

    out = writer.out
    if not layout.bigtiff and len(out) > 0xFFFFFFFF:
        raise ValueError("a classic TIFF cannot grow past 4 GiB to hold the EXIF tags")
    header_pos = 8 if layout.bigtiff else 4
    struct.pack_into(layout.offset_format, out, header_pos, new_offset)
    return bytes(out)
