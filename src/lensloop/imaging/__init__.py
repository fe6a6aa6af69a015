"""Images in and out: decoding, bit depth, EXIF, display normalisation, thumbnails, limits.

The lowest layer of lensloop: it imports nothing from lensloop but :mod:`lensloop.errors`.

- :func:`decode_image`, :func:`read_image`, :func:`probe_image`: bytes or files to NumPy
  arrays ``(H, W)`` / ``(H, W, C)`` in their native dtype (16-bit stays 16-bit), with the
  pixel limits checked from the header first (:class:`ImageLimits`).
- :func:`encode_image`, :func:`write_image`: arrays to PNG, TIFF or JPEG, losslessly where
  the format allows, written atomically.
- :class:`ExifData`, :func:`read_exif`, :func:`write_exif`, :func:`exif_to_bytes`: GPS
  position and capture time.
- :func:`to_display`, :func:`make_thumbnail`, :class:`ThumbnailCache`: the explicit, and
  only, conversion to 8-bit pictures, for eyes only.
"""

from __future__ import annotations

from lensloop.imaging._atomic import atomic_write
from lensloop.imaging.decode import (
    SUPPORTED_FORMATS,
    DecodedImage,
    decode_image,
    probe_image,
    read_image,
)
from lensloop.imaging.display import to_display
from lensloop.imaging.encode import encode_image, write_image
from lensloop.imaging.exif import ExifData, exif_to_bytes, read_exif, write_exif
from lensloop.imaging.info import ImageInfo
from lensloop.imaging.limits import ImageLimits
from lensloop.imaging.thumbnails import ThumbnailCache, make_thumbnail

__all__ = [
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "ExifData",
    "ImageInfo",
    "ImageLimits",
    "ThumbnailCache",
    "atomic_write",
    "decode_image",
    "encode_image",
    "exif_to_bytes",
    "make_thumbnail",
    "probe_image",
    "read_exif",
    "read_image",
    "to_display",
    "write_exif",
    "write_image",
]
