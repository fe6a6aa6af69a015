"""An image a client sends: an upload or a URL, checked before anything decodes it.

Uploads are read in chunks and refused once over the size limit (the whole body is never
buffered first); the declared content type must be an image (or say nothing specific);
the header is probed before decoding, so a decompression bomb (a small file declaring a
huge image) is refused without allocating its pixels. URLs go through
:func:`lensloop.service.fetch.fetch_image_url` and its address, redirect, size and time
limits. Everything refused is a :class:`~lensloop.errors.LensloopError` the app turns
into a JSON error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool

from lensloop.errors import ImageError, ImageTooLargeError, RequestError
from lensloop.imaging import ImageLimits, decode_image, probe_image
from lensloop.service.fetch import FetchPolicy, fetch_image_url

__all__ = ["ReceivedImage", "decode_received", "read_upload", "receive_image"]

_CHUNK = 1 << 20
#: Content types accepted for an image upload besides ``image/*``: clients that do not
#: know (curl's default for ``-F file=@x``, browsers for unknown extensions).
_NEUTRAL_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True)
class ReceivedImage:
    """The bytes of one image a client sent, with the name to report it by."""

    name: str
    data: bytes


async def read_upload(upload: UploadFile, *, max_bytes: int) -> ReceivedImage:
    """Read one uploaded file, refusing a non-image content type and oversized bodies.

    Raises:
        ImageError: The declared type is not an image, or the file is empty.
        ImageTooLargeError: The file is over ``max_bytes``.
    """
    name = upload.filename or "upload"
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if declared not in _NEUTRAL_TYPES and not declared.startswith("image/"):
        raise ImageError(
            f"{name}: the upload says it is {declared!r}, not an image; send PNG, TIFF, JPEG "
            "or another image format (or application/octet-stream)"
        )
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ImageTooLargeError(
                f"{name}: over the upload limit of {max_bytes:,} bytes; send a smaller file "
                "or raise LENSLOOP_MAX_UPLOAD_BYTES on the server"
            )
        chunks.append(chunk)
    if size == 0:
        raise ImageError(f"{name}: the upload is empty")
    return ReceivedImage(name, b"".join(chunks))


async def receive_image(
    file: UploadFile | None, url: str | None, *, max_bytes: int, policy: FetchPolicy
) -> ReceivedImage:
    """The image of a request that sends either ``file`` or ``url`` (not both, not neither).

    Raises:
        RequestError: Both or neither given.
        ImageError, ImageTooLargeError: See :func:`read_upload`.
        FetchRefused: The URL is refused or its fetch failed (its ``code`` says why).
    """
    if file is not None and not url:
        return await read_upload(file, max_bytes=max_bytes)
    if file is None and url:
        limited = replace(policy, max_bytes=min(policy.max_bytes, max_bytes))
        data = await run_in_threadpool(fetch_image_url, url, policy=limited)
        return ReceivedImage(url, data)
    raise RequestError("send exactly one of: an uploaded file (field 'file') or 'url'")


def decode_received(image: ReceivedImage, *, limits: ImageLimits) -> np.ndarray:
    """Probe, then decode, the first page of a received image.

    Raises:
        ImageDecodeError: Not an image lensloop reads.
        ImageTooLargeError: Its header declares more pixels than ``limits`` allow.
    """
    probe_image(image.data, limits=limits, name=image.name)
    return decode_image(image.data, page=0, limits=limits, name=image.name).array
