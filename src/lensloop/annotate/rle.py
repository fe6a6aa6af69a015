"""Run-length codecs for binary masks: Label Studio's brush RLE and the catalog's counts.

**Label Studio brush RLE.** A brush region is stored as ``{"format": "rle", "rle": [...]}``
beside ``original_width`` and ``original_height``. The ints are the bytes of a big-endian
bit stream (the ``rle-pack`` format of thi.ng/umbrella) that encodes the flattened RGBA
image, ``(H, W, 4) uint8`` in C order, ``H * W * 4`` values::

    header   32 bits  number of values (H * W * 4)
              5 bits  word size - 1 (always 8 - 1 for brushes)
          4 x 4 bits  the four count-field sizes - 1 (written as 3, 4, 8 and 16 bits)
    records  1 bit    1: a repeat of one word; 0: a literal list of words
             2 bits   which of the four sizes the count field has
             n bits   count - 1 (n is that size)
             8 bits   the word (a repeat), or count words one after another (a literal)
    padding  zero bits up to a whole byte

A record's count field is at most 16 bits, so a run longer than 2**16 values takes several
records. Painted pixels have all four channels 255, the rest 0; a mask is read back from
the alpha channel (painted where alpha >= 128).

**Catalog counts.** :func:`mask_to_counts` stores a mask as ``{"size": [H, W], "counts":
[...]}``: COCO's uncompressed RLE, but in row-major (C) order. Runs alternate between
unpainted and painted pixels, starting with an unpainted run that may be 0 long.

Example:
    >>> import numpy as np
    >>> mask = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    >>> bool((decode_brush(encode_brush(mask), 2, 3) == mask).all())
    True
    >>> mask_to_counts(mask)
    {'size': [2, 3], 'counts': [1, 3, 2]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import LabelError

__all__ = ["counts_to_mask", "decode_brush", "encode_brush", "mask_to_counts"]

_WORD_SIZE = 8
_RUN_SIZES = (3, 4, 8, 16)  # bits of the count field, chosen by a record's 2-bit index
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_RECORD = 1 << 16  # the most values one record covers (count - 1 in a 16-bit field)
_PACK_CHUNK = 1 << 15  # fields packed to bits at a time, to bound the memory used


# --- shared -------------------------------------------------------------------------------


def _as_mask(mask: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Validate a 2-D boolean or 0/nonzero integer mask and return it as booleans."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise LabelError(f"mask must be a 2-D (H, W) array, got shape {array.shape}")
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "iu":
        nonzero: npt.NDArray[np.bool_] = array != 0
        return nonzero
    raise TypeError(
        f"mask must have a boolean or integer dtype, got {array.dtype}; "
        "threshold it first (for example mask > 0.5)"
    )


def _runs(flat: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Split a 1-D array into runs of equal values.

    Returns:
        ``(lengths, values)``: each run's length (``int64``) and its value.
    """
    if flat.size == 0:
        return np.zeros(0, np.int64), flat[:0]
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([np.zeros(1, starts.dtype), starts])
    lengths = np.diff(starts, append=flat.size).astype(np.int64)
    return lengths, flat[starts]


# --- brush RLE: encoding ------------------------------------------------------------------


def _field_bits(codes: npt.NDArray[np.uint64], widths: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Each code's low ``width`` bits, most significant first, as one 0/1 ``uint8`` array."""
    ends = np.cumsum(widths)
    shifts = np.repeat(ends - 1, widths) - np.arange(ends[-1])
    bits = (np.repeat(codes, widths) >> shifts.astype(np.uint64)) & np.uint64(1)
    return bits.astype(np.uint8)


def _pack_fields(
    codes: npt.NDArray[np.uint64], widths: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint8]:
    """Concatenate variable-width big-endian fields into bytes, zero-padded to a whole byte.

    Works through the fields in chunks, carrying the bits that do not fill a byte over to
    the next chunk, so that the temporary bit arrays stay small.
    """
    pieces: list[npt.NDArray[np.uint8]] = []
    carry = np.zeros(0, np.uint8)
    for start in range(0, codes.size, _PACK_CHUNK):
        stop = start + _PACK_CHUNK
        bits = np.concatenate([carry, _field_bits(codes[start:stop], widths[start:stop])])
        whole = bits.size - bits.size % 8
        pieces.append(np.packbits(bits[:whole]))
        carry = bits[whole:]
    pieces.append(np.packbits(carry))
    return np.concatenate(pieces)


def _records(
    lengths: npt.NDArray[np.int64], values: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Turn runs into records, as one code and bit width per record.

    Follows label-studio-sdk's encoder so that the bytes agree: a run of one value is a
    literal record; a longer run is a repeat whose count field is the smallest of 3, 4 or
    8 bits that holds it, or 16 bits for runs over 256, split into records of 2**16 values
    with the rest (1 to 2**16 values, still a 16-bit field) last.
    """
    pieces = np.where(lengths > 256, (lengths - 1) // _MAX_RECORD + 1, 1)
    last = np.cumsum(pieces) - 1
    counts = np.full(int(last[-1]) + 1 if last.size else 0, _MAX_RECORD, np.int64)
    counts[last] = lengths - (pieces - 1) * _MAX_RECORD
    size_index = np.repeat(np.searchsorted([8, 16, 256], lengths), pieces).astype(np.int64)
    is_repeat = np.repeat(lengths > 1, pieces).astype(np.int64)
    count_bits = np.asarray(_RUN_SIZES, np.int64)[size_index]
    widths = 1 + 2 + count_bits + _WORD_SIZE
    codes = (
        (is_repeat << (widths - 1))
        | (size_index << (count_bits + _WORD_SIZE))
        | ((counts - 1) << _WORD_SIZE)
        | np.repeat(values, pieces).astype(np.int64)
    )
    return codes.astype(np.uint64), widths


def _encode_runs(
    lengths: npt.NDArray[np.int64], values: npt.NDArray[np.uint8], total: int
) -> list[int]:
    """Encode runs of bytes (``total`` values in all) as a brush RLE stream."""
    if total >= 1 << 32:
        raise LabelError(
            f"Label Studio's RLE holds at most 2**32 - 1 values (a 32-bit length), got {total}: "
            f"a mask can have at most {((1 << 32) - 1) // 4} pixels"
        )
    header_codes = np.array([total, _WORD_SIZE - 1, *(s - 1 for s in _RUN_SIZES)], np.uint64)
    header_widths = np.array([32, 5, 4, 4, 4, 4], np.int64)
    codes, widths = _records(lengths, values)
    packed = _pack_fields(
        np.concatenate([header_codes, codes]), np.concatenate([header_widths, widths])
    )
    if (_HEADER_BITS + int(widths.sum())) % 8 == 0:
        # label-studio-sdk pads with 8 - (bits % 8) zero bits: a whole zero byte when the
        # bits already end on a byte. Do the same, so that our bytes equal its bytes.
        packed = np.append(packed, np.uint8(0))
    return [int(v) for v in packed.tolist()]


def _encode_rgba(data: npt.NDArray[np.uint8]) -> list[int]:
    """Encode any flat ``uint8`` array as a brush RLE stream (label-studio-sdk's encode_rle)."""
    lengths, values = _runs(np.ascontiguousarray(data, np.uint8).ravel())
    return _encode_runs(lengths, values, data.size)


def encode_brush(mask: npt.ArrayLike) -> list[int]:
    """Encode a mask as the ``rle`` list of a Label Studio brush region.

    The RGBA image it encodes has all four channels 255 where the mask is painted and 0
    elsewhere; the ints are the same as label-studio-sdk's ``mask2rle(mask * 255)``.

    Args:
        mask: ``(H, W)`` array, boolean or integer (nonzero is painted).

    Returns:
        The RLE bytes as ints in 0..255, for ``{"format": "rle", "rle": ...}`` with
        ``original_width=W`` and ``original_height=H``.

    Raises:
        LabelError: ``mask`` is not 2-D, or has 2**30 pixels or more (the RLE's length is
            32 bits).
        TypeError: ``mask`` is not boolean or integer.
    """
    flat = _as_mask(mask).ravel()
    lengths, painted = _runs(flat)
    # A pixel is four equal bytes, so the runs of the RGBA bytes are the mask's runs x 4.
    values = np.where(painted, 255, 0).astype(np.uint8)
    return _encode_runs(lengths * 4, values, flat.size * 4)


# --- brush RLE: decoding ------------------------------------------------------------------


def _check_bytes(rle: Sequence[int]) -> bytes:
    """Validate RLE ints (each 0..255) and return them as bytes."""
    try:
        array = np.asarray(rle)
    except ValueError as error:
        raise LabelError(f"RLE must be a flat list of ints in 0..255: {error}") from None
    if array.ndim != 1:
        raise LabelError(f"RLE must be a flat list of ints in 0..255, got shape {array.shape}")
    if array.size == 0:
        return b""
    if array.dtype.kind not in "iu":
        raise LabelError(
            f"RLE must be a list of ints in 0..255, got values of type {array.dtype} "
            f"(first value {array[0]!r})"
        )
    bad = np.flatnonzero((array < 0) | (array > 255))
    if bad.size:
        first = int(bad[0])
        raise LabelError(
            f"RLE value {int(array[first])} at index {first} is outside the byte range "
            f"0..255 ({bad.size} value(s) out of range)"
        )
    return array.astype(np.uint8).tobytes()


def _read_header(data: bytes) -> tuple[int, tuple[int, int, int, int]]:
    """Read the header: the number of values and the four count-field sizes."""
    if len(data) * 8 < _HEADER_BITS:
        raise LabelError(
            f"RLE is truncated: {len(data)} byte(s) is too short for the {_HEADER_BITS}-bit header"
        )
    head = int.from_bytes(data[:7], "big")  # 56 bits, the 53-bit header first
    num = head >> 24
    word_size = ((head >> 19) & 0x1F) + 1
    if word_size != _WORD_SIZE:
        raise LabelError(
            f"RLE word size is {word_size} bits; Label Studio brush masks use {_WORD_SIZE}"
        )
    a, b, c, d = (((head >> (15 - 4 * k)) & 0xF) + 1 for k in range(4))
    return num, (a, b, c, d)


def _decode_records(
    data: bytes, num: int, sizes: tuple[int, int, int, int]
) -> tuple[bytearray, list[int]]:
    """Read records until ``num`` values are covered.

    Returns:
        ``(values, lengths)``: a run of ``lengths[k]`` copies of ``values[k]`` for each k.

    Raises:
        LabelError: The stream ends inside a record, or a record goes past ``num`` values.
    """
    n_bits = len(data) * 8
    buffer = data + bytes(8)  # zero padding: a 5-byte window never runs off the end
    values = bytearray()
    lengths: list[int] = []
    pos = _HEADER_BITS
    done = 0
    while done < num:
        record = pos
        start, off = pos >> 3, pos & 7
        window = int.from_bytes(buffer[start : start + 5], "big")  # >= 33 bits from pos
        is_repeat = (window >> (39 - off)) & 1
        size = sizes[(window >> (37 - off)) & 3]
        count = ((window >> (37 - off - size)) & ((1 << size) - 1)) + 1
        pos += 3 + size
        if is_repeat:
            values.append((window >> (29 - off - size)) & 0xFF)
            lengths.append(count)
            pos += _WORD_SIZE
        else:
            values += _read_bytes(buffer, pos, count)
            lengths += [1] * count
            pos += _WORD_SIZE * count
        if pos > n_bits:
            raise LabelError(
                f"RLE is truncated: its {len(data)} byte(s) end inside a record, after "
                f"{done} of the {num} values the header declares"
            )
        done += count
        if done > num:
            raise LabelError(
                f"RLE record at bit {record} runs to value {done}, past the {num} values the "
                "header declares"
            )
    return values, lengths


def _read_bytes(buffer: bytes, pos: int, count: int) -> bytes:
    """The ``count`` bytes that start at bit ``pos``, which need not be on a byte boundary."""
    start, off = pos >> 3, pos & 7
    if off == 0:
        return buffer[start : start + count]
    chunk = int.from_bytes(buffer[start : start + count + 1], "big")
    return ((chunk >> (8 - off)) & ((1 << (8 * count)) - 1)).to_bytes(count, "big")


def _decode_rgba(rle: Sequence[int], *, expected: int | None = None) -> npt.NDArray[np.uint8]:
    """Decode a brush RLE stream to its flat ``uint8`` values (RGBA bytes for a brush).

    Args:
        rle: The RLE ints.
        expected: The number of values the header must declare, if known.

    Raises:
        LabelError: The ints are not bytes, the header does not declare ``expected``
            values or a word size of 8, or the stream is truncated or inconsistent.
    """
    data = _check_bytes(rle)
    num, sizes = _read_header(data)
    if expected is not None and num != expected:
        raise LabelError(
            f"RLE declares {num} values but the image needs {expected} "
            f"(original_height x original_width x 4): the RLE does not match "
            "original_width x original_height"
        )
    values, lengths = _decode_records(data, num, sizes)
    return np.repeat(np.frombuffer(values, np.uint8), np.asarray(lengths, np.int64))


def _check_side(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise LabelError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def decode_brush(rle: Sequence[int], height: int, width: int) -> npt.NDArray[np.bool_]:
    """Decode the ``rle`` list of a Label Studio brush region to a mask.

    Accepts any valid stream with 8-bit words, including the literal records that Label
    Studio's own (JavaScript) encoder writes; trailing padding is ignored.

    Args:
        rle: The RLE ints (each 0..255).
        height: The region's ``original_height``.
        width: The region's ``original_width``.

    Returns:
        ``(height, width)`` boolean mask, True where the alpha channel is >= 128.

    Raises:
        LabelError: ``height`` or ``width`` is not a non-negative int; an RLE value is not
            an int in 0..255; the header's length is not ``height * width * 4`` or its word
            size is not 8; the stream is truncated or a record runs past the declared
            length.
    """
    height = _check_side("height", height)
    width = _check_side("width", width)
    rgba = _decode_rgba(rle, expected=height * width * 4)
    return (rgba[3::4] >= 128).reshape(height, width)


# --- catalog counts -----------------------------------------------------------------------


def mask_to_counts(mask: npt.ArrayLike) -> dict[str, list[int]]:
    """Encode a mask as row-major run-length counts, for JSON in the catalog.

    Args:
        mask: ``(H, W)`` array, boolean or integer (nonzero is painted).

    Returns:
        ``{"size": [H, W], "counts": [...]}``: run lengths over the mask in C order,
        alternating unpainted and painted, the first (unpainted) one possibly 0.

    Raises:
        LabelError: ``mask`` is not 2-D.
        TypeError: ``mask`` is not boolean or integer.
    """
    array = _as_mask(mask)
    flat = array.ravel()
    lengths, _ = _runs(flat)
    counts = [int(n) for n in lengths.tolist()]
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {"size": [int(array.shape[0]), int(array.shape[1])], "counts": counts}


def _check_counts(counts: Any, total: int) -> npt.NDArray[np.int64]:
    """Validate run-length counts: a flat list of non-negative ints summing to ``total``."""
    if isinstance(counts, str | bytes) or not isinstance(counts, Sequence | np.ndarray):
        raise LabelError(f"mask counts must be a list of ints, got {type(counts).__name__}")
    array = np.asarray(counts)
    if array.size == 0:
        array = array.astype(np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise LabelError(
            f"mask counts must be a flat list of ints, got shape {array.shape} of {array.dtype}"
        )
    negative = np.flatnonzero(array < 0)
    if negative.size:
        first = int(negative[0])
        raise LabelError(f"mask count {int(array[first])} at index {first} is negative")
    if array.size and int(array.max()) > total:  # also keeps the sum below from overflowing
        raise LabelError(f"mask count {int(array.max())} is more than the {total} pixels")
    if int(array.sum()) != total:
        raise LabelError(f"mask counts sum to {int(array.sum())} but size H x W has {total} pixels")
    return array.astype(np.int64)


def counts_to_mask(data: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
    """Decode ``{"size": [H, W], "counts": [...]}`` (see :func:`mask_to_counts`) to a mask.

    Args:
        data: The stored mask: ``size`` is two non-negative ints; ``counts`` are run lengths
            in C order, alternating unpainted and painted, starting with unpainted.

    Returns:
        ``(H, W)`` boolean mask.

    Raises:
        LabelError: ``data`` lacks ``size`` or ``counts``; ``size`` is not two
            non-negative ints; a count is not a non-negative int; the counts do not sum to
            ``H * W``.
    """
    if not isinstance(data, Mapping):
        raise LabelError(f"a stored mask must be a mapping, got {type(data).__name__}")
    missing = [key for key in ("size", "counts") if key not in data]
    if missing:
        raise LabelError(f"a stored mask needs 'size' and 'counts', missing {missing}")
    size = data["size"]
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise LabelError(f"mask size must be [H, W], got {size!r}")
    height = _check_side("mask height", size[0])
    width = _check_side("mask width", size[1])
    counts = _check_counts(data["counts"], height * width)
    painted = (np.arange(counts.size) & 1).astype(bool)
    return np.repeat(painted, counts).reshape(height, width)
