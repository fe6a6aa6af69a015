"""Decode image bytes to NumPy arrays in their native dtype, safely.

The one rule: the array holds the values the file stores. A 16-bit PNG or TIFF gives
``uint16`` (never rescaled to 8 bits), a 12-bit TIFF gives ``uint16`` values below 4096, a
float TIFF gives floats. Arrays are ``(H, W)`` for one channel and ``(H, W, C)`` for C in
2..4, C-contiguous, writable, in native byte order.

Formats and decoders:

- PNG: Pillow, except 16-bit RGB, RGBA and gray + alpha, which Pillow silently reduces to
  8 bits; those are detected from the ``IHDR`` chunk and decoded with libpng
  (imagecodecs), or pypng when interlaced. Bilevel (1-bit) grayscale gives ``uint8`` 0/1,
  2- and 4-bit grayscale give their stored values (0..3, 0..15); ``bit_depth`` says so.
- JPEG, BMP, GIF, WebP: Pillow. Of a multi-picture JPEG (MPO) only the primary image is
  read. CMYK JPEGs stay four channels.
- Palette images (PNG, GIF, BMP) are converted to RGB, or RGBA when the palette has
  transparency: the palette indices are not returned. TIFF colour maps give ``uint16`` RGB.
- TIFF and BigTIFF: tifffile (imagecodecs for LZW, deflate, JPEG, ... compression); 8-,
  12-, 16-, 32-bit integers and 16-, 32-, 64-bit floats, 1 to 4 channels, contiguous or
  planar (planar ``(C, H, W)`` pages are returned as ``(H, W, C)``).

Multi-page files (TIFF pages; GIF, APNG and WebP frames) are never read silently as their
first page: without ``page`` or ``stack_pages`` they raise
:class:`~lensloop.errors.MultiPageImageError`.

Safety: the pixel count is checked against :class:`~lensloop.imaging.ImageLimits` from the
header, before any decoder sees the data; truncated files raise instead of being padded
(Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set, and TIFF pages with missing or short
strips are refused); every third-party exception is wrapped, so bad input only ever
raises :class:`~lensloop.errors.ImageError` subclasses. Pillow's warnings (damaged
metadata, its own bomb threshold) are logged at debug level instead of being passed on;
this uses :class:`warnings.catch_warnings`, which before Python 3.14 changes process-wide
state, so decode in worker processes (as ingest does) rather than in many threads. No
global Pillow setting (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``)
is changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from lensloop.errors import (
    ImageDecodeError,
    LensloopError,
    MultiPageImageError,
    UnsupportedImageError,
)
from lensloop.imaging._containers import header_size, read_png_header, sniff_format
from lensloop.imaging._pillow_reader import PillowReader
from lensloop.imaging._png16_reader import Png16Reader
from lensloop.imaging._tiff_reader import TiffReader
from lensloop.imaging.exif import ExifData
from lensloop.imaging.info import ImageInfo
from lensloop.imaging.limits import DEFAULT_LIMITS, ImageLimits

__all__ = ["SUPPORTED_FORMATS", "DecodedImage", "decode_image", "probe_image", "read_image"]

SUPPORTED_FORMATS = ("png", "jpeg", "tiff", "bmp", "gif", "webp")
"""The formats lensloop decodes, as named in :attr:`ImageInfo.format`."""


@dataclass(frozen=True, slots=True, eq=False)
class DecodedImage:
    """A decoded image with what its file says about it.

    Attributes:
        array: ``(H, W)`` or ``(H, W, C)`` array, C in 2..4, in the file's native dtype.
        info: Size and sample layout; ``info.channels``, ``info.dtype`` and the shape match
            ``array``. After ``stack_pages=True``, ``channels`` is the number of pages.
        exif: GPS position, capture time, make and model from the file's EXIF.
    """

    array: np.ndarray
    info: ImageInfo
    exif: ExifData


class _Reader(Protocol):
    n_pages: int

    def info(self, page: int) -> ImageInfo: ...

    def read(self, page: int) -> np.ndarray: ...

    def exif(self) -> ExifData: ...

    def close(self) -> None: ...


@contextmanager
def _wrap_errors(name: str) -> Iterator[None]:
    """Turn any third-party exception into ImageDecodeError; lensloop errors pass."""
    try:
        yield
    except (LensloopError, MemoryError):
        raise
    except Exception as exc:  # decoders raise OSError, SyntaxError, struct.error, ...
        raise ImageDecodeError(
            f"{name}: cannot decode the image, the file is corrupt or truncated "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _open_reader(data: bytes, *, name: str, limits: ImageLimits) -> _Reader:
    """Identify the format, check the header size against the limits, pick a decoder."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    limits.check_file_size(len(data), name=name)
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError(
            f"{name}: not an image in a supported format "
            f"({', '.join(f.upper() for f in SUPPORTED_FORMATS)}); "
            f"the file starts with {data[:16]!r}"
        )
    if fmt == "tiff":
        return TiffReader(data, name=name)  # the size is checked per page, from its IFD
    png = read_png_header(data) if fmt == "png" else None
    size = (png.width, png.height) if png is not None else header_size(data, fmt)
    if size is None:
        raise ImageDecodeError(f"{name}: the {fmt.upper()} header gives no image size")
    limits.check_pixels(*size, name=name)
    if png is not None and png.bit_depth == 16 and png.color_type in (2, 4, 6):
        return Png16Reader(data, name=name, png=png)
    return PillowReader(data, fmt=fmt, name=name, png=png)


def _check_data(data: bytes) -> None:
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")


def _check_options(page: int | None, stack_pages: bool) -> None:
    if page is not None and (isinstance(page, bool) or not isinstance(page, int)):
        raise TypeError(f"page must be an int or None, got {page!r}")
    if page is not None and stack_pages:
        raise ValueError("pass page=i or stack_pages=True, not both")


def _select_pages(n_pages: int, *, page: int | None, stack_pages: bool, name: str) -> list[int]:
    if stack_pages:
        return list(range(n_pages))
    if page is None:
        if n_pages > 1:
            raise MultiPageImageError(
                f"{name}: the file has {n_pages} pages; choose one with page=i "
                f"(0 <= i <= {n_pages - 1}), or pass stack_pages=True to stack same-shape "
                "single-channel pages as the channels of one image",
                n_pages=n_pages,
            )
        return [0]
    if not 0 <= page < n_pages:
        raise ImageDecodeError(
            f"{name}: page {page} does not exist; the file has {n_pages} page(s), "
            f"valid pages are 0 to {n_pages - 1}"
        )
    return [page]


def _stacked_info(infos: list[ImageInfo], *, name: str) -> ImageInfo:
    first = infos[0]
    if len(infos) == 1:
        return first
    for index, info in enumerate(infos):
        if info.channels != 1:
            raise UnsupportedImageError(
                f"{name}: stack_pages=True needs single-channel pages, but page {index} has "
                f"{info.channels} channels; read the pages one by one with page=i"
            )
        if (info.width, info.height, info.dtype) != (first.width, first.height, first.dtype):
            raise UnsupportedImageError(
                f"{name}: stack_pages=True needs pages of one shape and dtype, but page 0 is "
                f"{first.width} x {first.height} {first.dtype} and page {index} is "
                f"{info.width} x {info.height} {info.dtype}; read the pages one by one "
                "with page=i"
            )
    if len(infos) > 4:
        raise UnsupportedImageError(
            f"{name}: stack_pages=True would make {len(infos)} channels; lensloop images "
            "have 1 to 4 channels, so read the pages one by one with page=i"
        )
    bit_depth = max(info.bit_depth for info in infos)
    return ImageInfo(
        first.format, first.width, first.height, len(infos), first.dtype, bit_depth, len(infos)
    )


def probe_image(
    data: bytes, *, limits: ImageLimits | None = None, name: str = "<bytes>"
) -> ImageInfo:
    """Read an image's size and sample layout from its header, without decoding pixels.

    Cheap enough to run on every file: only the header (for TIFF, the first IFD and the
    IFD chain, to count pages) is parsed.

    Args:
        data: The whole file.
        limits: Size limits; None uses the defaults (256 megapixels, 4 GiB).
        name: The file's name or URI, for messages.

    Returns:
        What ``decode_image(data, page=0).info`` would report for the first page.

    Raises:
        ImageDecodeError: The data are empty, not a supported image, or the header is
            corrupt.
        ImageTooLargeError: The first page is over ``limits``.
        UnsupportedImageError: The layout cannot be decoded faithfully (e.g. more than 4
            channels).
    """
    _check_data(data)
    limits = limits or DEFAULT_LIMITS
    with _wrap_errors(name):
        reader = _open_reader(data, name=name, limits=limits)
        try:
            info = reader.info(0)
        finally:
            reader.close()
    limits.check_pixels(info.width, info.height, name=name)
    return info


def decode_image(
    data: bytes,
    *,
    page: int | None = None,
    stack_pages: bool = False,
    limits: ImageLimits | None = None,
    name: str = "<bytes>",
) -> DecodedImage:
    """Decode a whole image file to an array in its native dtype.

    See the module documentation for the formats and how each is decoded.

    Args:
        data: The whole file.
        page: Which page (TIFF) or frame (GIF, APNG, WebP) to decode, from 0. Required for
            a file with more than one page unless ``stack_pages`` is True.
        stack_pages: Decode every page and stack them as channels: N single-channel pages
            of one shape and dtype become ``(H, W, N)``, N <= 4.
        limits: Size limits; None uses the defaults (256 megapixels, 4 GiB).
        name: The file's name or URI, for messages.

    Returns:
        The array ``(H, W)`` or ``(H, W, C)`` (C in 2..4) with its info and EXIF.

    Raises:
        ImageDecodeError: The data are empty ("empty file (0 bytes)"), not a supported
            image, truncated or corrupt; or ``page`` is out of range.
        ImageTooLargeError: The image (all stacked pages together) is over ``limits``.
        MultiPageImageError: The file has several pages and neither ``page`` nor
            ``stack_pages`` was given.
        UnsupportedImageError: The layout cannot be kept faithfully: more than 4 channels,
            complex samples, pages that cannot be stacked, an animated 16-bit PNG.
        TypeError: ``data`` is not bytes or ``page`` is not an int.
        ValueError: Both ``page`` and ``stack_pages`` were given.

    Example:
        >>> import numpy as np
        >>> from lensloop.imaging import encode_image
        >>> png = encode_image(np.full((2, 3, 3), 1000, np.uint16), format="png")
        >>> decoded = decode_image(png)
        >>> decoded.array.dtype, decoded.array.shape, int(decoded.array.max())
        (dtype('uint16'), (2, 3, 3), 1000)
    """
    _check_data(data)
    _check_options(page, stack_pages)
    limits = limits or DEFAULT_LIMITS
    with _wrap_errors(name):
        reader = _open_reader(data, name=name, limits=limits)
        try:
            pages = _select_pages(reader.n_pages, page=page, stack_pages=stack_pages, name=name)
            infos = [reader.info(index) for index in pages]
            info = _stacked_info(infos, name=name)
            limits.check_pixels(info.width, info.height, name=name, n_pages=len(pages))
            if info.format == "png" and data.rfind(b"IEND") < 0:
                raise ImageDecodeError(f"{name}: truncated PNG: the file has no IEND chunk")
            arrays = [reader.read(index) for index in pages]
            exif = reader.exif()
        finally:
            reader.close()
    array = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=-1)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if (channels, array.dtype.name) != (info.channels, info.dtype):
        # A frame whose decoded mode differs from its header (possible for GIF frames):
        # the info describes the array that is returned.
        info = replace(info, channels=channels, dtype=array.dtype.name)
    return DecodedImage(array=array, info=info, exif=exif)


def read_image(
    path: str | os.PathLike[str],
    *,
    page: int | None = None,
    stack_pages: bool = False,
    limits: ImageLimits | None = None,
) -> np.ndarray:
    """Read and decode an image file.

    The file's size is checked with ``os.stat`` before it is read.

    Args:
        path: The image file.
        page: Which page or frame to decode; see :func:`decode_image`.
        stack_pages: Stack single-channel pages as channels; see :func:`decode_image`.
        limits: Size limits; None uses the defaults (256 megapixels, 4 GiB).

    Returns:
        ``(H, W)`` or ``(H, W, C)`` array (C in 2..4) in the file's native dtype.

    Raises:
        OSError: The file cannot be read (FileNotFoundError, PermissionError, ...).
        ImageDecodeError: See :func:`decode_image`.
        ImageTooLargeError: The file or the image is over ``limits``.
        MultiPageImageError: See :func:`decode_image`.
        UnsupportedImageError: See :func:`decode_image`.
    """
    path = Path(path)
    limits = limits or DEFAULT_LIMITS
    limits.check_file_size(os.stat(path).st_size, name=str(path))
    data = path.read_bytes()
    return decode_image(
        data, page=page, stack_pages=stack_pages, limits=limits, name=str(path)
    ).array
