"""Encode arrays to PNG, TIFF or JPEG bytes and files, keeping their values exactly.

=======  =========================================  =========================================
format   dtypes                                     channels
=======  =========================================  =========================================
PNG      ``uint8``, ``uint16`` (lossless)           1 gray, 2 gray + alpha, 3 RGB, 4 RGBA
TIFF     any integer or float dtype (lossless,      1, 2 (gray + extra sample), 3 RGB,
         uncompressed)                              4 (RGB + extra sample)
JPEG     ``uint8`` only (lossy)                     1 gray, 3 RGB
=======  =========================================  =========================================

``uint16`` PNGs are written with libpng (imagecodecs) so that 16-bit colour is kept; Pillow
would write 8 bits. ``bool`` arrays are refused everywhere (write ``image.astype(np.uint8)``).
EXIF (:class:`~lensloop.imaging.ExifData`) can be embedded in all three formats.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

from lensloop.errors import UnknownNameError, UnsupportedImageError
from lensloop.imaging._atomic import atomic_write
from lensloop.imaging._containers import set_png_exif
from lensloop.imaging.exif import ExifData, exif_to_bytes, set_tiff_exif

__all__ = ["encode_image", "write_image"]

_ALIASES = {"png": "png", "tiff": "tiff", "tif": "tiff", "jpeg": "jpeg", "jpg": "jpeg"}
_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an image array; return it as C-contiguous ``(H, W)`` or ``(H, W, C)``."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] > 4:
        raise UnsupportedImageError(
            f"image has {image.shape[2]} channels; image files hold 1 to 4 channels "
            "(write the channels to separate files, or to the pages of a multi-page TIFF)"
        )
    if image.dtype == np.bool_:
        raise UnsupportedImageError(
            "image is a bool array; write image.astype(np.uint8) (values 0 and 1) instead"
        )
    if image.dtype.kind not in "uif":
        raise UnsupportedImageError(f"image dtype {image.dtype} cannot be stored in an image file")
    return np.ascontiguousarray(image)


def _exif_block(exif: ExifData | None) -> bytes | None:
    return None if exif is None or exif.is_empty else exif_to_bytes(exif)


def _encode_png(image: np.ndarray, exif: ExifData | None) -> bytes:
    block = _exif_block(exif)
    if image.dtype == np.uint8:
        buffer = io.BytesIO()
        options = {} if block is None else {"exif": block}
        Image.fromarray(image).save(buffer, format="PNG", **options)
        return buffer.getvalue()
    if image.dtype == np.uint16:
        data = bytes(imagecodecs.png_encode(image))
        return data if block is None else set_png_exif(data, block)
    raise UnsupportedImageError(
        f"PNG holds uint8 or uint16 samples, not {image.dtype}; write a TIFF to keep "
        f"{image.dtype} values"
    )


def _encode_tiff(image: np.ndarray, exif: ExifData | None) -> bytes:
    channels = 1 if image.ndim == 2 else image.shape[2]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        image,
        photometric="minisblack" if channels <= 2 else "rgb",
        planarconfig="contig" if channels > 1 else None,
        metadata=None,
    )
    data = buffer.getvalue()
    if exif is None or exif.is_empty:
        return data
    return set_tiff_exif(data, exif)


def _encode_jpeg(image: np.ndarray, exif: ExifData | None, quality: int) -> bytes:
    if image.dtype != np.uint8:
        raise UnsupportedImageError(
            f"JPEG holds uint8 samples, not {image.dtype}; to keep the values write a PNG or "
            "TIFF, or for a picture only convert with lensloop.imaging.to_display first"
        )
    if image.ndim == 3 and image.shape[2] != 3:
        raise UnsupportedImageError(
            f"JPEG holds 1 (gray) or 3 (RGB) channels, not {image.shape[2]}; drop the alpha "
            "or extra channel, or write a PNG or TIFF"
        )
    block = _exif_block(exif)
    buffer = io.BytesIO()
    options = {} if block is None else {"exif": block}
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, **options)
    return buffer.getvalue()


def encode_image(
    image: np.ndarray, *, format: str, exif: ExifData | None = None, quality: int = 95
) -> bytes:
    r"""Encode an array as a PNG, TIFF or JPEG file in memory.

    See the module documentation for which dtypes and channel counts each format holds.
    PNG and TIFF keep every value exactly; JPEG is lossy.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array, C in 1..4 (``(H, W, 1)`` is written as
            ``(H, W)``).
        format: ``"png"``, ``"tiff"`` (or ``"tif"``), ``"jpeg"`` (or ``"jpg"``); any case.
        exif: GPS position, capture time, make and model to embed, or None.
        quality: JPEG quality, 1 to 100; ignored for PNG and TIFF.

    Returns:
        The encoded file.

    Raises:
        UnknownNameError: ``format`` is not one of the names above.
        UnsupportedImageError: The format cannot hold the dtype or channel count (e.g.
            ``uint16`` as JPEG, ``float32`` as PNG, more than 4 channels, ``bool``).
        TypeError: ``image`` is not a numpy array.
        ValueError: ``image`` is empty or not 2-D or 3-D, or ``quality`` is out of range.

    Example:
        >>> import numpy as np
        >>> data = encode_image(np.zeros((4, 6), np.uint16), format="tiff")
        >>> data[:4]
        b'II*\x00'
    """
    name = _ALIASES.get(format.lower()) if isinstance(format, str) else None
    if name is None:
        raise UnknownNameError("image format", str(format), sorted(_ALIASES))
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    image = _check_image(image)
    if name == "png":
        return _encode_png(image, exif)
    if name == "tiff":
        return _encode_tiff(image, exif)
    return _encode_jpeg(image, exif, quality)


def write_image(
    path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    exif: ExifData | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write an array to an image file, atomically; the format comes from the suffix.

    The file is written to a temporary file in the same folder and renamed into place, so
    no reader ever sees a partial file.

    Args:
        path: Destination ending in ``.png``, ``.tif``, ``.tiff``, ``.jpg`` or ``.jpeg``
            (any case). Its folder must exist.
        image: ``(H, W)`` or ``(H, W, C)`` array; see :func:`encode_image`.
        exif: GPS position, capture time, make and model to embed, or None.
        overwrite: Replace an existing file. When False, an existing file is an error.
        quality: JPEG quality, 1 to 100.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        UnknownNameError: The suffix is not one of the above.
        UnsupportedImageError: See :func:`encode_image`.
        OSError: The folder is missing or not writable.
    """
    path = Path(path)
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UnknownNameError("image file suffix", path.suffix or "(none)", sorted(_SUFFIXES))
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    atomic_write(
        path, encode_image(image, format=fmt, exif=exif, quality=quality), overwrite=overwrite
    )
    return path
