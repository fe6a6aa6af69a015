"""Tiny image files made in memory with third-party writers (not lensloop's encoders)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import png as pypng
import tifffile
from PIL import Image


def pil_bytes(image: Image.Image | np.ndarray, fmt: str, **options: Any) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pypng_bytes(array: np.ndarray, *, bitdepth: int, **options: Any) -> bytes:
    """Write an (H, W) or (H, W, C) integer array with pypng (1, 2, 3 or 4 channels)."""
    height, width = array.shape[:2]
    planes = 1 if array.ndim == 2 else array.shape[2]
    writer = pypng.Writer(
        width,
        height,
        greyscale=planes <= 2,
        alpha=planes in (2, 4),
        bitdepth=bitdepth,
        **options,
    )
    buffer = io.BytesIO()
    writer.write(buffer, array.reshape(height, width * planes).tolist())
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray, **options: Any) -> bytes:
    options.setdefault("metadata", None)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def multipage_tiff(pages: list[np.ndarray], *, bigtiff: bool = False, **options: Any) -> bytes:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer, bigtiff=bigtiff) as writer:
        for page in pages:
            photometric = "rgb" if page.ndim == 3 else "minisblack"
            writer.write(page, photometric=photometric, metadata=None, **options)
    return buffer.getvalue()


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR width and height of a PNG (and the chunk's CRC)."""
    ihdr = bytearray(data[8:33])
    struct.pack_into(">II", ihdr, 8, width, height)
    struct.pack_into(">I", ihdr, 21, zlib.crc32(bytes(ihdr[4:21])))
    return data[:8] + bytes(ihdr) + data[33:]


def ramp(shape: tuple[int, ...], dtype: Any, *, high: int | None = None) -> np.ndarray:
    """Distinct values spread over the dtype's range (or up to ``high``)."""
    top = high if high is not None else int(np.iinfo(dtype).max)
    values = np.arange(int(np.prod(shape)), dtype=np.float64)
    values = values * top / max(1, values.size - 1)
    return np.round(values).astype(dtype).reshape(shape)
