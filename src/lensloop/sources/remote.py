"""Images that live elsewhere: S3-compatible object stores and web servers, via fsspec.

A catalog URI is a local path (POSIX form), ``s3://bucket/key`` or ``http(s)://...``.
Remote bytes are fetched on demand and kept in a local cache keyed by the URI, so an
image referenced in place is downloaded once however often it is read.

Endpoint and credentials come from :class:`~lensloop.settings.Settings`
(``LENSLOOP_S3_ENDPOINT_URL``) or the usual AWS variables and files, which botocore reads
itself; never from code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RemoteOptions", "fetch_bytes", "is_remote", "protocol_of", "write_bytes"]


def protocol_of(uri: str) -> str:
    """Return a URI's scheme (``s3``, ``https``...), or ``file`` for a local path."""
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else "file"


def is_remote(uri: str) -> bool:
    """True for a URI that is not a local path."""
    return protocol_of(uri) != "file"


@dataclass(frozen=True)
class RemoteOptions:
    """How remote URIs are reached (picklable: it travels to worker processes).

    Attributes:
        endpoint_url: The S3 endpoint (a JASMIN, MinIO or moto server); None is AWS's own,
            or whatever the AWS configuration says.
        cache_dir: Where fetched bytes are kept; None fetches every time.
        timeout_s: Seconds to wait to connect and between bytes of one request.
    """

    endpoint_url: str | None = None
    cache_dir: Path | None = None
    timeout_s: float = 60.0

    def storage_options(self, protocol: str) -> dict[str, Any]:
        """The fsspec keyword arguments for a filesystem of this protocol."""
        if protocol in ("s3", "s3a"):
            options: dict[str, Any] = {
                "config_kwargs": {
                    "connect_timeout": self.timeout_s,
                    "read_timeout": self.timeout_s,
                    "retries": {"max_attempts": 3, "mode": "standard"},
                }
            }
            if self.endpoint_url:
                options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
            return options
        return {}

    def cache_path(self, uri: str) -> Path | None:
        """Where the cached bytes of a URI are (or will be) kept."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / digest


def fetch_bytes(uri: str, options: RemoteOptions | None = None) -> bytes:
    """Read a remote object's bytes, from the cache when it holds them.

    Raises:
        OSError: The object cannot be fetched (missing, refused, timed out, endpoint down);
            nothing is cached then.
    """
    import fsspec

    from lensloop.imaging import atomic_write

    options = options or RemoteOptions()
    cached = options.cache_path(uri)
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    protocol = protocol_of(uri)
    try:
        with fsspec.open(uri, "rb", **options.storage_options(protocol)) as handle:
            data: bytes = handle.read()
    except OSError:
        raise
    except Exception as exc:  # botocore / aiohttp errors are not OSErrors
        raise OSError(f"cannot fetch {uri}: {type(exc).__name__}: {exc}") from exc
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, data, overwrite=True)
    return data


def write_bytes(uri: str, data: bytes, options: RemoteOptions | None = None) -> None:
    """Write bytes to a local path (atomically, creating folders) or a remote object.

    An existing local file is never replaced: write under another name.

    Raises:
        FileExistsError: A local file of that name exists.
        OSError: The object cannot be written (refused, endpoint down).
    """
    import fsspec

    from lensloop.imaging import atomic_write

    if not is_remote(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, overwrite=False)
        return
    options = options or RemoteOptions()
    try:
        with fsspec.open(uri, "wb", **options.storage_options(protocol_of(uri))) as handle:
            handle.write(data)
    except OSError:
        raise
    except Exception as exc:  # botocore / aiohttp errors are not OSErrors
        raise OSError(f"cannot write {uri}: {type(exc).__name__}: {exc}") from exc
