"""Images that live elsewhere: S3-compatible object stores and web servers, via fsspec.

A catalog URI is a local path (POSIX form), ``s3://bucket/key`` or ``http(s)://...``.
Remote bytes are fetched on demand and kept in a local cache keyed by the URI, so an
image referenced in place is downloaded once however often it is read. A fetch gives up
after ``timeout_s`` without bytes and ``retries`` attempts, and a failed or partial
download is never cached.

Endpoint and credentials come from :class:`~lensloop.settings.Settings`
(``LENSLOOP_S3_ENDPOINT_URL``) or the usual AWS variables and files
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``), which botocore reads
itself; never from code.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "RemoteOptions",
    "copy_destination",
    "exists",
    "fetch_bytes",
    "is_remote",
    "open_filesystem",
    "protocol_of",
    "write_bytes",
]

_log = logging.getLogger(__name__)

_HTTP = ("http", "https")
_RETRY_PAUSE_S = 0.5


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
        retries: Attempts per request before giving up (S3: botocore's retries of
            throttling and connection errors; web: connection errors and timeouts).
    """

    endpoint_url: str | None = None
    cache_dir: Path | None = None
    timeout_s: float = 60.0
    retries: int = 3

    def storage_options(self, protocol: str) -> dict[str, Any]:
        """The fsspec keyword arguments for a filesystem of this protocol."""
        if protocol in ("s3", "s3a"):
            options: dict[str, Any] = {
                "config_kwargs": {
                    "connect_timeout": self.timeout_s,
                    "read_timeout": self.timeout_s,
                    "retries": {"max_attempts": max(1, self.retries), "mode": "standard"},
                }
            }
            if self.endpoint_url:
                options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
            return options
        if protocol in _HTTP:
            import aiohttp

            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s
            )
            return {"client_kwargs": {"timeout": timeout}}
        return {}

    def cache_path(self, uri: str) -> Path | None:
        """Where the cached bytes of a URI are (or will be) kept."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / digest


def open_filesystem(uri: str, options: RemoteOptions | None = None) -> tuple[Any, str]:
    """Return the fsspec filesystem of a URI and the path within it.

    Raises:
        OSError: No filesystem for the URI's protocol (a missing extra: ``s3fs``, ``aiohttp``).
    """
    import fsspec.core

    options = options or RemoteOptions()
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options.storage_options(protocol_of(uri)))
    except (ImportError, ValueError) as exc:
        raise OSError(
            f"cannot open {uri}: {exc}; install lensloop's remote extra "
            "(pip install 'lensloop[remote]')"
        ) from exc
    return fs, str(path)


def _as_oserror(action: str, uri: str, exc: Exception) -> OSError:
    """An error of fsspec, botocore or aiohttp as an OSError that names the URI."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = f"cannot {action} {uri}: {detail}"
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return type(exc)(message)
    return OSError(message)


def _fetch(uri: str, options: RemoteOptions) -> bytes:
    """One object's bytes, retrying a web server's connection errors and timeouts."""
    fs, path = open_filesystem(uri, options)
    # botocore retries S3 requests itself (storage_options); web requests are retried here.
    attempts = max(1, options.retries) if protocol_of(uri) in _HTTP else 1
    for attempt in range(1, attempts + 1):
        try:
            data = fs.cat_file(path)
            return bytes(data)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise _as_oserror("fetch", uri, exc) from exc
        except Exception as exc:  # botocore / aiohttp errors are not all OSErrors
            if attempt == attempts:
                raise _as_oserror("fetch", uri, exc) from exc
            _log.info("fetching %s failed (%s); attempt %d of %d", uri, exc, attempt, attempts)
            time.sleep(_RETRY_PAUSE_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def fetch_bytes(uri: str, options: RemoteOptions | None = None) -> bytes:
    """Read a remote object's bytes, from the cache when it holds them.

    Only a complete download is cached (written atomically once every byte arrived).

    Raises:
        OSError: The object cannot be fetched (missing, refused, timed out, endpoint down);
            nothing is cached then.
    """
    from lensloop.imaging import atomic_write

    options = options or RemoteOptions()
    cached = options.cache_path(uri)
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    data = _fetch(uri, options)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, data, overwrite=True)
    return data


def exists(uri: str, options: RemoteOptions | None = None) -> bool:
    """True if a local file or remote object of that URI exists.

    Raises:
        OSError: A remote store cannot be asked (refused, endpoint down).
    """
    if not is_remote(uri):
        return Path(uri).is_file()
    fs, path = open_filesystem(uri, options)
    try:
        return bool(fs.exists(path))
    except Exception as exc:  # botocore / aiohttp errors are not OSErrors
        raise _as_oserror("look up", uri, exc) from exc


def write_bytes(uri: str, data: bytes, options: RemoteOptions | None = None) -> None:
    """Write bytes to a local path (atomically, creating folders) or a remote object.

    An existing local file is never replaced: write under another name.

    Raises:
        FileExistsError: A local file of that name exists.
        OSError: The object cannot be written (refused, endpoint down).
    """
    from lensloop.imaging import atomic_write

    if not is_remote(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, overwrite=False)
        return
    fs, path_in_fs = open_filesystem(uri, options)
    try:
        fs.pipe_file(path_in_fs, data)
    except Exception as exc:  # botocore / aiohttp errors are not OSErrors
        raise _as_oserror("write", uri, exc) from exc


def copy_destination(uri: str, output: str) -> str:
    """Where ``--store copy`` puts a copy of a remote image: its key path under ``output``.

    ``s3://bucket/a/b.png`` goes to ``OUTPUT/bucket/a/b.png`` and
    ``https://host:8000/x/y.png?v=2`` to ``OUTPUT/host_8000/x/y.png``, so the name is the
    same on every run (a re-run finds the copy it made) and two sources cannot collide
    unless they name the same object.

    Args:
        uri: A remote URI.
        output: A local folder or an ``s3://bucket/prefix``.

    Returns:
        The copy's URI: a POSIX path, or a URI under ``output``.

    Raises:
        ValueError: ``uri`` is not remote, or has no object name to keep.

    Example:
        >>> copy_destination("s3://plankton/2024/a.png", "/data/images")
        '/data/images/plankton/2024/a.png'
    """
    if not is_remote(uri):
        raise ValueError(f"only remote images are copied; {uri!r} is a local path")
    parts = urlsplit(uri)
    host = parts.netloc.replace(":", "_").replace("@", "_")
    segments = [s for s in PurePosixPath(parts.path).parts if s not in ("/", "", ".", "..")]
    if not host or not segments:
        raise ValueError(f"cannot copy {uri!r}: it names no object (bucket/key or host/path)")
    return "/".join([output.rstrip("/"), host, *segments])
