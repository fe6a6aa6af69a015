"""Discovery of remote images: S3 prefixes, single web URLs and lists of URLs.

Three kinds of remote source are understood by the ``folder`` format:

- ``s3://bucket/prefix`` is listed recursively (sorted by key); objects with an image
  suffix become items whose ``class_path`` is the key's folder levels below the prefix,
  so ``--labels-from-folders`` works as on a local ImageFolder tree. An
  ``s3://bucket/key`` naming one object is that one item.
- ``https://.../image.png`` is one item.
- A URL list, one URI per line (``#`` comments and blank lines ignored): a local ``.txt``
  or ``.urls`` file, or an ``http(s)://`` URL ending in one of those suffixes. A local
  list may also name local files, relative to the list's folder.

Listing failures become :class:`~lensloop.errors.SourceError` saying what to fix: the
bucket or prefix, the endpoint (``LENSLOOP_S3_ENDPOINT_URL``) or the credentials
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

from lensloop.errors import SourceError
from lensloop.sources.base import IMAGE_SUFFIXES, SourceItem
from lensloop.sources.remote import RemoteOptions, fetch_bytes, is_remote, open_filesystem

__all__ = ["URL_LIST_SUFFIXES", "is_url_list", "list_remote", "read_url_list"]

#: Suffixes of files that list one image URI per line.
URL_LIST_SUFFIXES = frozenset({".txt", ".urls"})

Found = tuple[list[SourceItem], list[tuple[str, str]]]


def is_url_list(source: str) -> bool:
    """True for a local file or web URL whose suffix marks a list of URLs."""
    path = source.split("?", 1)[0].split("#", 1)[0]
    return PurePosixPath(path).suffix.lower() in URL_LIST_SUFFIXES


def _endpoint(options: RemoteOptions) -> str:
    return options.endpoint_url or "AWS's default"


def _listing_error(uri: str, exc: Exception, options: RemoteOptions) -> SourceError:
    """A listing failure as a SourceError that says what to fix."""
    name = type(exc).__name__
    text = f"{name}: {exc}"
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        fix = (
            f"check the bucket and prefix, and that LENSLOOP_S3_ENDPOINT_URL names the store "
            f"holding it (now {_endpoint(options)})"
        )
        what = "not found"
    elif isinstance(exc, PermissionError) or "AccessDenied" in text or "Credentials" in name:
        fix = (
            "set credentials that may list it: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE)"
        )
        what = "access denied"
    else:
        fix = (
            f"check that the endpoint is up and LENSLOOP_S3_ENDPOINT_URL is right (now "
            f"{_endpoint(options)})"
        )
        what = "cannot reach the store"
    return SourceError(f"cannot list {uri}: {what} ({text}); {fix}")


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in parts)


def list_s3(uri: str, options: RemoteOptions) -> Found:
    """List the image objects under an ``s3://bucket/prefix`` (or one object).

    Returns:
        The items (sorted by key) and the objects passed over, with why.

    Raises:
        SourceError: The bucket or prefix does not exist or holds nothing, access is
            denied, or the endpoint cannot be reached.
    """
    try:
        fs, root = open_filesystem(uri, options)
    except OSError as exc:
        raise SourceError(str(exc)) from exc
    root = root.rstrip("/")
    try:
        fs.invalidate_cache(root)
        if "/" in root and fs.isfile(root):
            return [SourceItem(uri=f"s3://{root}")], []
        keys = sorted(str(k) for k in fs.find(root, detail=False))
    except Exception as exc:  # botocore errors are not OSErrors
        raise _listing_error(uri, exc, options) from exc
    if not keys:
        raise SourceError(
            f"nothing found under {uri}: check the prefix (keys are case-sensitive) and that "
            f"LENSLOOP_S3_ENDPOINT_URL names the store holding it (now {_endpoint(options)})"
        )
    items: list[SourceItem] = []
    skipped: list[tuple[str, str]] = []
    for key in keys:
        if key.endswith("/"):
            continue  # a folder marker
        parts = PurePosixPath(key).relative_to(root).parts
        if _hidden(parts):
            continue
        object_uri = f"s3://{key}"
        suffix = PurePosixPath(key).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            items.append(SourceItem(uri=object_uri, class_path=parts[:-1]))
        else:
            skipped.append((object_uri, f"not an image file name ({suffix or 'no suffix'})"))
    return items, skipped


def read_url_list(source: str, options: RemoteOptions) -> Found:
    """Read a list of image URIs, one per line: a local file or a web URL.

    Lines are stripped; blank lines and lines starting with ``#`` are ignored. In a local
    list a line that is not a URI is a local path, relative to the list's folder.

    Returns:
        One item per line (duplicates dropped) and the lines passed over, with why.

    Raises:
        SourceError: The list cannot be read or is not UTF-8 text.
    """
    remote_list = is_remote(source)
    try:
        if remote_list:
            # A list may change between runs: read it fresh, never from the cache.
            data = fetch_bytes(source, replace(options, cache_dir=None))
            base = None
        else:
            path = Path(source).expanduser().resolve()
            data = path.read_bytes()
            base = path.parent
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise SourceError(
            f"cannot read the URL list {source}: {exc}; check the URL or path"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"the URL list {source} is not UTF-8 text ({exc}); write one URL per line"
        ) from exc
    items: list[SourceItem] = []
    skipped: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if is_remote(line):
            items.append(SourceItem(uri=line))
        elif base is None:
            skipped.append((line, f"line {number} of {source} is not an s3:// or https:// URL"))
        else:
            items.append(SourceItem(uri=(base / line).expanduser().resolve().as_posix()))
    return items, skipped


def list_remote(source: str, options: RemoteOptions) -> Found:
    """Discover the images a remote source names (see the module docstring).

    Raises:
        SourceError: The source cannot be listed or read (the message says what to fix).
    """
    protocol = source.partition("://")[0].lower()
    if protocol in ("s3", "s3a"):
        return list_s3(source, options)
    if protocol in ("http", "https"):
        if is_url_list(source):
            return read_url_list(source, options)
        return [SourceItem(uri=source)], []
    raise SourceError(f"unsupported URI scheme {protocol!r} in {source}; valid: s3, https, http")
