"""Taxonomy catalogues: JSON records of images filed under a class hierarchy.

A catalogue such as a screen-scraped Nannotax is a JSON list of records::

    [
      {
        "hierarchy": ["Coccolithophyceae", "Isochrysidales", "Noelaerhabdaceae"],
        "taxon": "Emiliania huxleyi",
        "images": ["https://example.org/ehux_1.jpg", "thumbs/ehux_2.png"],
        "author": "(Lohmann 1902) Hay & Mohler in Hay et al. 1967"
      }
    ]

Each image becomes one item labelled ``hierarchy + [taxon]`` (the whole class path is
stored; ``--depth`` picks the level used as the class). Fields besides the three above are
kept as the image's metadata. Relative image paths resolve against the catalogue's own
folder (or URL).

Remote images are fetched politely: at most ``concurrency`` requests in flight, a
User-Agent that names lensloop, a timeout per request, and retries with exponential backoff
on connection errors, HTTP 5xx and 429 (honouring a ``Retry-After`` given in seconds).
Every download goes into the *fetch cache* of :class:`~lensloop.sources.remote.RemoteOptions`
(keyed by URL), the same cache that reads an image later, so

- with ``store="reference"`` the catalog keeps the original URL as the image's URI, and
  decoding it during ingest (or any later read) hits the cache instead of the server;
- a second ingest of the same catalogue downloads nothing;
- with ``store="copy"`` the bytes are also written under ``output`` and that copy's path
  becomes the URI (the URL stays in the metadata).

A download that still fails after its retries (a 404, a server that keeps failing) is
reported in :attr:`Discovery.skipped` with the reason; it never stops the ingest.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import http.client
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from lensloop import __version__
from lensloop.catalog.labels import SEPARATOR
from lensloop.errors import SourceError
from lensloop.imaging import atomic_write
from lensloop.sources.base import Discovery, SourceContext, SourceItem
from lensloop.sources.remote import RemoteOptions, fetch_bytes, is_remote, protocol_of, write_bytes

__all__ = [
    "DEFAULT_POLICY",
    "USER_AGENT",
    "DownloadError",
    "DownloadPolicy",
    "TaxonomyRecord",
    "discover_taxonomy",
    "download",
    "load_catalogue",
]

_log = logging.getLogger(__name__)

#: Sent with every request, so a catalogue's maintainers can see who is fetching.
USER_AGENT = f"lensloop/{__version__} (taxonomy catalogue ingest)"

_HTTP = ("http", "https")
_SHOW_ERRORS = 5
_LOG_EVERY = 100
_JSON_TYPES = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}


# -- records ------------------------------------------------------------------------------


def _check_level(name: str) -> str:
    if not name:
        raise ValueError("must not be empty")
    if SEPARATOR in name:
        raise ValueError(f"must not contain {SEPARATOR!r} (it separates class levels)")
    return name


def _check_image(ref: str) -> str:
    if not ref:
        raise ValueError("must not be empty")
    return ref


ClassName = Annotated[str, AfterValidator(_check_level)]
ImageRef = Annotated[str, AfterValidator(_check_image)]


class TaxonomyRecord(BaseModel):
    """One record of a taxonomy catalogue: a taxon, where it sits, and its images.

    Names are stripped of surrounding spaces. Fields besides these three are kept
    (``record.model_extra``) and recorded as the images' metadata.

    Attributes:
        hierarchy: The ranks above the taxon, broadest first (may be empty).
        taxon: The taxon's name; the deepest level of the class path.
        images: Image URLs, or paths relative to the catalogue's folder, or absolute paths.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)

    hierarchy: list[ClassName] = Field(default_factory=list)
    taxon: ClassName
    images: list[ImageRef] = Field(default_factory=list)

    @property
    def class_path(self) -> tuple[str, ...]:
        """The label of the record's images: ``hierarchy + [taxon]``."""
        return (*self.hierarchy, self.taxon)

    @property
    def fields(self) -> dict[str, Any]:
        """The record's other fields (JSON values, as read)."""
        return dict(self.model_extra or {})


def _where(loc: tuple[int | str, ...]) -> str:
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field or "(the record itself)"


def parse_records(data: object, *, source: str) -> list[TaxonomyRecord]:
    """Validate a decoded catalogue: a list of records.

    Args:
        data: The decoded JSON.
        source: The catalogue's path or URL, for error messages.

    Returns:
        The records, in order.

    Raises:
        SourceError: ``data`` is not a list, or some records are invalid; the message
            names each bad record by index (and taxon, when it has one) and field.
    """
    if not isinstance(data, list):
        raise SourceError(
            f"taxonomy catalogue {source} must be a JSON list of records "
            f'({{"hierarchy": [...], "taxon": "...", "images": [...]}}), '
            f"got a JSON {_JSON_TYPES.get(type(data), type(data).__name__)}"
        )
    records: list[TaxonomyRecord] = []
    problems: list[str] = []
    for index, raw in enumerate(data):
        try:
            records.append(TaxonomyRecord.model_validate(raw))
        except ValidationError as exc:
            taxon = raw.get("taxon") if isinstance(raw, dict) else None
            named = f" ({taxon!r})" if isinstance(taxon, str) else ""
            for error in exc.errors():
                problems.append(
                    f"record {index}{named}, field {_where(error['loc'])}: {error['msg']}"
                )
    if problems:
        shown = "; ".join(problems[:_SHOW_ERRORS])
        more = f" (and {len(problems) - _SHOW_ERRORS} more)" if len(problems) > _SHOW_ERRORS else ""
        raise SourceError(
            f"invalid taxonomy catalogue {source}: {shown}{more}. Each record needs "
            f'"taxon" (a name), and may have "hierarchy" (a list of names, broadest '
            f'first) and "images" (a list of URLs or paths); names must be non-empty and '
            f"without {SEPARATOR!r}"
        )
    return records


# -- downloads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadPolicy:
    """How politely remote files are fetched.

    Attributes:
        retries: Attempts after the first one, for connection errors, timeouts, HTTP 5xx
            and 429; other HTTP errors (404, 403...) are not retried.
        backoff_s: The wait before the first retry; it doubles at each further retry.
        max_backoff_s: The longest wait between two attempts (also caps ``Retry-After``).
        timeout_s: Seconds to wait to connect and between bytes; None takes the remote
            options' ``timeout_s``.
        user_agent: The ``User-Agent`` header.
    """

    retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float | None = None
    user_agent: str = USER_AGENT


#: The policy :func:`discover_taxonomy` uses when given none.
DEFAULT_POLICY = DownloadPolicy()


class DownloadError(OSError):
    """A remote file could not be fetched (after retries, where retrying made sense)."""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def download(
    url: str,
    *,
    policy: DownloadPolicy = DEFAULT_POLICY,
    timeout_s: float = 60.0,
    on_retry: Callable[[str, str], None] | None = None,
) -> bytes:
    """Fetch an ``http(s)`` URL, retrying transient failures with exponential backoff.

    Args:
        url: The URL.
        policy: Retries, backoff and User-Agent; its ``timeout_s`` wins over ``timeout_s``.
        timeout_s: Seconds to wait to connect and between bytes.
        on_retry: Called as ``on_retry(url, reason)`` before each retry.

    Returns:
        The response body.

    Raises:
        DownloadError: A non-retryable HTTP status, or the last failure once the retries
            are spent; the message says which.
    """
    timeout = policy.timeout_s if policy.timeout_s is not None else timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": policy.user_agent})
    attempts = policy.retries + 1
    for attempt in range(attempts):
        wait = min(policy.max_backoff_s, policy.backoff_s * 2**attempt)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
            exc.close()
            if exc.code != 429 and exc.code < 500:
                raise DownloadError(reason) from None
            asked = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            if asked is not None:
                wait = min(policy.max_backoff_s, asked)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            detail = getattr(exc, "reason", None) or exc
            reason = f"{type(exc).__name__}: {detail}"
        if attempt + 1 == attempts:
            tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
            raise DownloadError(f"{reason} (gave up after {tries})")
        _log.debug("retrying %s in %.1f s: %s", url, wait, reason)
        if on_retry is not None:
            on_retry(url, reason)
        time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# -- discovery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One image of one record, its location resolved."""

    uri: str
    label: tuple[str, ...]
    meta: dict[str, Any]


def _read_catalogue(source: str, policy: DownloadPolicy, timeout_s: float) -> bytes:
    try:
        if protocol_of(source) in _HTTP:
            return download(source, policy=policy, timeout_s=timeout_s)
        if is_remote(source):
            return fetch_bytes(source, RemoteOptions(timeout_s=timeout_s))
        return Path(source).expanduser().read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read taxonomy catalogue {source}: {exc}") from exc


def load_catalogue(
    source: str | Path,
    *,
    policy: DownloadPolicy = DEFAULT_POLICY,
    timeout_s: float = 60.0,
) -> list[TaxonomyRecord]:
    """Read and validate one catalogue file (a local path or a URL; never cached).

    Raises:
        SourceError: The file cannot be read, is not JSON, or holds invalid records.
    """
    name = source.as_posix() if isinstance(source, Path) else source
    raw = _read_catalogue(name, policy, timeout_s)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"taxonomy catalogue {name} is not valid JSON: {exc}") from None
    return parse_records(data, source=name)


def _resolve(ref: str, source: str) -> str:
    """Where an image reference points, relative to its catalogue."""
    if ref.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(ref).path)).as_posix()
    if is_remote(ref):
        return ref
    if is_remote(source):
        if ref.startswith("/") and protocol_of(source) not in _HTTP:
            return ref
        return urllib.parse.urljoin(source, ref)
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = Path(source).expanduser().resolve().parent / path
    return path.resolve().as_posix()


def _entries(
    source: str, records: Sequence[TaxonomyRecord], counts: dict[str, int]
) -> Iterable[_Entry]:
    for index, record in enumerate(records):
        if not record.images:
            counts["taxonomy records without images"] += 1
        for ref in record.images:
            uri = _resolve(ref, source)
            taxonomy: dict[str, Any] = {
                "taxon": record.taxon,
                "hierarchy": list(record.hierarchy),
                "catalogue": source,
                "record": index,
                "image": ref,
                "fields": record.fields,
            }
            if is_remote(uri):
                taxonomy["url"] = uri
            yield _Entry(uri, record.class_path, {"taxonomy": taxonomy})


def _fetch_cache(context: SourceContext) -> RemoteOptions:
    """The cache downloads go to: the remote options' own, so later reads find them."""
    if context.remote.cache_dir is not None:
        return context.remote
    return dataclasses.replace(context.remote, cache_dir=context.cache_dir)


def _copy_name(url: str) -> str:
    stem = PurePosixPath(urllib.parse.urlparse(url).path).name or "image"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[-80:]
    return f"{hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]}_{safe}"


def _copy(url: str, data: bytes, context: SourceContext) -> str:
    """Write a downloaded image under ``output`` once; return the copy's URI."""
    output = context.output.rstrip("/")
    uri = f"{output}/taxonomy/{_copy_name(url)}"
    if not is_remote(uri):
        path = Path(uri)
        if path.is_file():
            if path.read_bytes() != data:
                raise DownloadError(
                    f"a different file is already at {uri}; move it away to copy this image"
                )
            return path.as_posix()
    write_bytes(uri, data, context.remote)
    return uri


class _Downloader:
    """Fetches remote images into the fetch cache, at most ``concurrency`` at once."""

    def __init__(self, context: SourceContext, policy: DownloadPolicy) -> None:
        self.context = context
        self.policy = policy
        self.cache = _fetch_cache(context)
        self.retries = 0
        self._lock = threading.Lock()

    def _count_retry(self, url: str, reason: str) -> None:
        with self._lock:
            self.retries += 1

    def fetch(self, url: str) -> None:
        """Download ``url`` (retrying) into the cache.

        Raises:
            OSError: It could not be fetched (:class:`DownloadError` for HTTP).
        """
        if protocol_of(url) not in _HTTP:  # s3:// and friends: fsspec retries itself
            fetch_bytes(url, self.cache)
            return
        data = download(
            url,
            policy=self.policy,
            timeout_s=self.cache.timeout_s,
            on_retry=self._count_retry,
        )
        cached = self.cache.cache_path(url)
        if cached is not None:  # always set: see _fetch_cache
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, data, overwrite=True, fsync=False)

    def cached(self, url: str) -> Path | None:
        """The cached file of ``url``, if it has been downloaded before."""
        path = self.cache.cache_path(url)
        return path if path is not None and path.is_file() else None

    def fetch_all(self, urls: Sequence[str]) -> dict[str, DownloadError | None]:
        """Download ``urls`` into the cache concurrently; return each one's error or None.

        The bytes stay in the cache, not in memory: a catalogue may list thousands of
        images.
        """
        results: dict[str, DownloadError | None] = {}
        if not urls:
            return results
        pool = ThreadPoolExecutor(
            max_workers=max(1, self.context.concurrency), thread_name_prefix="lensloop-fetch"
        )
        try:
            futures: dict[Future[None], str] = {pool.submit(self.fetch, u): u for u in urls}
            for done, future in enumerate(as_completed(futures), start=1):
                url = futures[future]
                try:
                    future.result()
                    results[url] = None
                except DownloadError as exc:
                    results[url] = exc
                except OSError as exc:
                    results[url] = DownloadError(str(exc))
                if done % _LOG_EVERY == 0:
                    _log.info("taxonomy: %d of %d downloads done", done, len(urls))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results


def discover_taxonomy(
    sources: Sequence[str | Path],
    context: SourceContext,
    *,
    policy: DownloadPolicy | None = None,
) -> Discovery:
    """Discover the images of taxonomy catalogues, downloading the remote ones.

    Args:
        sources: Catalogue JSON files: local paths or URLs.
        context: Cache, remote options, store mode, output folder and ``concurrency``
            (the most downloads in flight at once).
        policy: Retries, backoff, timeout and User-Agent; None uses
            :data:`DEFAULT_POLICY`.

    Returns:
        One item per image, labelled with its record's class path; images that could not
        be fetched (or local files that do not exist) in ``skipped``; the non-zero counts
        of ``taxonomy records``, ``taxonomy records without images``, ``images
        downloaded``, ``images from download cache``, ``downloads failed`` and
        ``download retries``.

    Raises:
        SourceError: A catalogue cannot be read or holds invalid records (nothing is
            downloaded then).
    """
    policy = policy or DEFAULT_POLICY
    counts = dict.fromkeys(
        (
            "taxonomy records",
            "taxonomy records without images",
            "images downloaded",
            "images from download cache",
            "downloads failed",
            "download retries",
        ),
        0,
    )
    catalogues: list[tuple[str, list[TaxonomyRecord]]] = []
    for source in sources:
        name = source.as_posix() if isinstance(source, Path) else source
        records = load_catalogue(name, policy=policy, timeout_s=context.remote.timeout_s)
        counts["taxonomy records"] += len(records)
        catalogues.append((name, records))

    discovery = Discovery(counts=counts)
    entries: dict[str, _Entry] = {}
    for name, records in catalogues:
        for entry in _entries(name, records, counts):
            first = entries.get(entry.uri)
            if first is None:
                entries[entry.uri] = entry
            elif first.label != entry.label:
                discovery.skipped.append(
                    (
                        entry.uri,
                        f"listed under {SEPARATOR.join(first.label)} and again under "
                        f"{SEPARATOR.join(entry.label)}; kept the first",
                    )
                )

    downloader = _Downloader(context, policy)
    remote = [uri for uri in entries if is_remote(uri)]
    fresh = [uri for uri in remote if downloader.cached(uri) is None]
    counts["images from download cache"] = len(remote) - len(fresh)
    _log.info(
        "taxonomy: %d images (%d remote, %d to download, %d in flight at most)",
        len(entries),
        len(remote),
        len(fresh),
        context.concurrency,
    )
    fetched = downloader.fetch_all(fresh)
    counts["download retries"] = downloader.retries

    for uri, entry in entries.items():
        if not is_remote(uri):
            if Path(uri).is_file():
                discovery.items.append(SourceItem(uri=uri, label=entry.label, meta=entry.meta))
            else:
                discovery.skipped.append((uri, "file not found"))
            continue
        error = fetched.get(uri)
        if error is not None:
            counts["downloads failed"] += 1
            _log.warning("taxonomy: cannot download %s: %s", uri, error)
            discovery.skipped.append((uri, f"download failed: {error}"))
            continue
        if uri in fetched:
            counts["images downloaded"] += 1
        try:
            item_uri = _item_uri(uri, downloader, context)
        except OSError as exc:
            discovery.skipped.append((uri, f"cannot copy: {exc}"))
            continue
        discovery.items.append(SourceItem(uri=item_uri, label=entry.label, meta=entry.meta))
    discovery.counts = {name: n for name, n in counts.items() if n}  # the report stays short
    return discovery


def _item_uri(url: str, downloader: _Downloader, context: SourceContext) -> str:
    """The URI an image is recorded under: its URL, or a copy's path (see module doc)."""
    if context.store == "copy":
        return _copy(url, fetch_bytes(url, downloader.cache), context)
    if context.remote.cache_dir is None:
        # Reads would fetch the URL again, uncached: point at the downloaded file instead.
        cached = downloader.cached(url)
        if cached is not None:
            return cached.as_posix()
    return url
