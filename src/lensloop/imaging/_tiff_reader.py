"""Decode TIFF and BigTIFF pages with tifffile (and imagecodecs for compressed data)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import tifffile

from lensloop.errors import ImageDecodeError, UnsupportedImageError
from lensloop.imaging.exif import ExifData, exif_from_block
from lensloop.imaging.info import ImageInfo

__all__ = ["TiffReader"]

_PALETTE = 3  # TIFF PhotometricInterpretation for a colour-mapped image
_SEPARATE = 2  # TIFF PlanarConfiguration for channel-first ("planar") storage
_UNCOMPRESSED = 1  # TIFF Compression


class TiffReader:
    """Pages (IFDs) of a TIFF file, decoded in their stored dtype and bit depth.

    Each page is an image of its own. Samples are returned as stored: 12-bit data stay in
    ``uint16`` with values below 4096, floats stay floats, ``MinIsWhite`` data are not
    inverted, CMYK stays four channels. Channel-first (planar) pages become ``(H, W, C)``.
    Colour-mapped (palette) pages become ``uint16`` RGB, the depth of TIFF colour maps.
    Bilevel pages become ``uint8`` 0/1.

    Args:
        data: The whole file.
        name: The file's name, for messages.

    Raises:
        ImageDecodeError: The file has no readable page.
    """

    def __init__(self, data: bytes, *, name: str) -> None:
        self._data = data
        self._name = name
        self._tiff = tifffile.TiffFile(io.BytesIO(data))
        self.n_pages: int = len(self._tiff.pages)
        if self.n_pages == 0:
            raise ImageDecodeError(f"{name}: the TIFF file has no readable page (corrupt IFD)")

    def _page(self, page: int) -> Any:
        return self._tiff.pages[page]

    def info(self, page: int) -> ImageInfo:
        """Describe one page from its IFD, without decoding it."""
        tiff_page = self._page(page)
        if not tiff_page.imagewidth or not tiff_page.imagelength or not tiff_page.dataoffsets:
            raise ImageDecodeError(
                f"{self._name}: TIFF page {page} has no image size or no image data (corrupt IFD)"
            )
        dtype = tiff_page.dtype
        bit_depth = int(tiff_page.bitspersample)
        if dtype is None or np.dtype(dtype).kind not in "biuf":
            raise UnsupportedImageError(
                f"{self._name}: TIFF page {page} has samples lensloop cannot represent "
                f"(SampleFormat {int(tiff_page.sampleformat)}, {bit_depth} bits per sample)"
            )
        if int(tiff_page.imagedepth) > 1:
            raise UnsupportedImageError(
                f"{self._name}: TIFF page {page} is a volume ({tiff_page.imagedepth} slices in "
                "one page); lensloop decodes 2-D pages only"
            )
        channels = int(tiff_page.samplesperpixel)
        dtype_name = "uint8" if np.dtype(dtype).kind == "b" else np.dtype(dtype).name
        if self._is_palette(tiff_page):
            channels, dtype_name, bit_depth = 3, tiff_page.colormap.dtype.name, 16
        if channels > 4:
            raise UnsupportedImageError(
                f"{self._name}: TIFF page {page} has {channels} samples per pixel; lensloop "
                "handles 1 to 4 channels per page"
            )
        return ImageInfo(
            "tiff",
            int(tiff_page.imagewidth),
            int(tiff_page.imagelength),
            channels,
            dtype_name,
            bit_depth,
            self.n_pages,
        )

    @staticmethod
    def _is_palette(tiff_page: Any) -> bool:
        return int(tiff_page.photometric) == _PALETTE and tiff_page.colormap is not None

    def _check_complete(self, page: int, tiff_page: Any) -> None:
        """Refuse a page whose data run past the file or are shorter than declared.

        tifffile fills missing strips or tiles with zeros (and only logs an error), which
        would hide a damaged file; lensloop refuses it instead.
        """
        size = len(self._data)
        counts = [int(count) for count in tiff_page.databytecounts]
        for offset, count in zip(tiff_page.dataoffsets, counts, strict=False):
            if count and offset + count > size:
                raise ImageDecodeError(
                    f"{self._name}: truncated TIFF: the data of page {page} end at byte "
                    f"{offset + count:,} but the file has {size:,} bytes"
                )
        separate = int(tiff_page.planarconfig) == _SEPARATE
        samples = 1 if separate else int(tiff_page.samplesperpixel)  # per segment pixel
        planes = int(tiff_page.samplesperpixel) if separate else 1
        height, width = int(tiff_page.imagelength), int(tiff_page.imagewidth)
        if tiff_page.is_tiled:
            segment_width, segment_rows = int(tiff_page.tilewidth), int(tiff_page.tilelength)
            per_plane = -(-height // segment_rows) * -(-width // segment_width)
            rows_stored = per_plane * segment_rows  # tiles are padded to full size
        else:
            segment_width = width
            segment_rows = max(1, min(int(tiff_page.rowsperstrip), height))
            per_plane = -(-height // segment_rows)
            rows_stored = height  # the last strip holds only the remaining rows
        if len(counts) < per_plane * planes:
            raise ImageDecodeError(
                f"{self._name}: corrupt TIFF: page {page} has {len(counts)} strips or tiles, "
                f"its header needs {per_plane * planes}"
            )
        if int(tiff_page.compression) != _UNCOMPRESSED:
            return  # short compressed segments make the decoder fail
        row_bytes = -(-segment_width * samples * int(tiff_page.bitspersample) // 8)
        expected = row_bytes * rows_stored * planes
        if sum(counts) < expected:
            raise ImageDecodeError(
                f"{self._name}: truncated or corrupt TIFF: page {page} holds {sum(counts):,} "
                f"bytes of uncompressed data, its header declares {expected:,}"
            )

    def read(self, page: int) -> np.ndarray:
        """Decode one page to ``(H, W)`` or ``(H, W, C)`` in its native dtype."""
        info = self.info(page)
        tiff_page = self._page(page)
        self._check_complete(page, tiff_page)
        array = np.asarray(tiff_page.asarray())
        if self._is_palette(tiff_page):
            array = np.moveaxis(tiff_page.colormap[:, array], 0, -1)
        elif int(tiff_page.planarconfig) == _SEPARATE and info.channels > 1:
            array = np.moveaxis(array, -3, -1)
        while array.ndim > len(info.shape) and array.shape[0] == 1:
            array = array[0]
        if array.shape != info.shape:
            raise UnsupportedImageError(
                f"{self._name}: TIFF page {page} decodes to shape {array.shape}, not the "
                f"{info.shape} its header declares"
            )
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return np.ascontiguousarray(array)

    def exif(self) -> ExifData:
        """The EXIF tags of the first page."""
        return exif_from_block(self._data)

    def close(self) -> None:
        """Release the file."""
        self._tiff.close()
