"""Find, fetch, verify and read model weights (a local path or an http(s) URL).

:func:`resolve_weights` turns what a user passes to ``--weights`` into a local file:

- a path must name an existing file;
- an ``http://`` or ``https://`` URL is downloaded once into
  ``<cache_dir>/weights/<first 16 hex of sha256(url)>/<file name>`` through a temporary file
  and :func:`os.replace`, so an interrupted download never looks complete;
- ``"imagenet"`` is an alias that :func:`expand_weights_alias` maps to the torchvision
  checkpoint of an architecture (:data:`KNOWN_WEIGHTS`).

A file is verified against ``sha256`` when one is given (a full digest or a prefix of at
least 8 hex digits); a URL whose file name carries torchvision's hash tag
(``resnet18-f37072fd.pth``) is verified against that prefix even without one, as
``torch.hub`` does. A file that fails the check is deleted from the cache.

The download is one narrow seam, a :data:`Downloader` (``(url, destination) -> None``);
the default, :func:`urllib_download`, streams with :mod:`urllib.request`. Tests pass a
function that writes a file of their own.

This module imports torch only inside :func:`load_checkpoint` and
:func:`unwrap_state_dict`, so resolving and hashing weights stays cheap.

Example:
    >>> from pathlib import Path
    >>> from lensloop.embed.weights import expand_weights_alias, resolve_weights
    >>> url, sha = expand_weights_alias("imagenet", backbone="resnet18")
    >>> url
    'https://download.pytorch.org/models/resnet18-f37072fd.pth'
    >>> path = resolve_weights(url, cache_dir=Path("~/.cache/lensloop"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import secrets
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensloop.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "KNOWN_WEIGHTS",
    "Downloader",
    "expand_weights_alias",
    "file_sha256",
    "load_checkpoint",
    "resolve_weights",
    "unwrap_state_dict",
    "urllib_download",
]

logger = logging.getLogger(__name__)

Downloader = Callable[[str, Path], None]
"""Writes the complete content at a URL to a file: ``download(url, destination)``."""

KNOWN_WEIGHTS: dict[str, tuple[str, str | None]] = {
    "resnet18": ("https://download.pytorch.org/models/resnet18-f37072fd.pth", None),
    "resnet50": ("https://download.pytorch.org/models/resnet50-11ad3fa6.pth", None),
}
"""``--weights imagenet`` per architecture: (torchvision URL, sha256 or ``None``).

With ``None`` the file is verified against the hash prefix in its torchvision file name.
"""

WEIGHTS_ALIAS = "imagenet"
"""The ``--weights`` value that :func:`expand_weights_alias` maps to :data:`KNOWN_WEIGHTS`."""

_CHUNK_BYTES = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0
_URL_KEY_HEX = 16
_HEX_RE = re.compile(r"[0-9a-f]{8,64}")
# torchvision / torch.hub tag: "<name>-<first hex digits of sha256>.<ext>".
_NAME_HASH_RE = re.compile(r"-([0-9a-f]{8,64})(?:\.[A-Za-z0-9]+)+$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_WRAPPER_KEYS = ("state_dict", "model")
_KEY_PREFIXES = ("module.", "_orig_mod.")


def expand_weights_alias(spec: str, *, backbone: str) -> tuple[str, str | None]:
    """Map ``"imagenet"`` to the known checkpoint URL of ``backbone``; pass others through.

    Args:
        spec: ``"imagenet"``, a path or a URL.
        backbone: Architecture name, e.g. ``"resnet18"``.

    Returns:
        ``(path or URL, sha256 or None)``.

    Raises:
        UnknownNameError: ``spec`` is ``"imagenet"`` and ``backbone`` has no known weights.
    """
    if spec.strip().lower() != WEIGHTS_ALIAS:
        return spec, None
    if backbone not in KNOWN_WEIGHTS:
        raise UnknownNameError(
            f"backbone with {WEIGHTS_ALIAS} weights", backbone, list(KNOWN_WEIGHTS)
        )
    return KNOWN_WEIGHTS[backbone]


def resolve_weights(
    spec: str,
    *,
    cache_dir: Path,
    sha256: str | None = None,
    download: Downloader | None = None,
) -> Path:
    """Return a verified local file for a weights path or http(s) URL.

    Args:
        spec: A path to an existing file, or an ``http(s)://`` (or ``file://``) URL.
        cache_dir: lensloop's user cache; URLs are downloaded under ``cache_dir/weights``.
        sha256: Expected sha256 of the file, full or a prefix of at least 8 hex digits.
            Without it a URL is checked against the hash tag in its file name, if any.
        download: Fetches a URL into a file; :func:`urllib_download` when ``None``.

    Returns:
        Path of the local file.

    Raises:
        ConfigError: ``spec`` is empty, a missing path or an unsupported URL scheme;
            ``sha256`` is not hex; the download failed; or the file's sha256 does not match
            (a cached or downloaded file is deleted then).
    """
    text = spec.strip()
    if not text:
        raise ConfigError(
            "weights must be a checkpoint path, an http(s) URL or 'imagenet'; got an empty string"
        )
    expected = _normalise_sha256(sha256)
    parsed = urllib.parse.urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return _resolve_url(text, parsed, cache_dir=cache_dir, expected=expected, download=download)
    if scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
    elif "://" in text:
        raise ConfigError(
            f"weights URL {text!r} has the unsupported scheme {parsed.scheme!r}; use an "
            "http(s) URL, or download the file yourself and pass its path"
        )
    else:
        path = Path(text).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"weights file {path} {what}; pass an existing checkpoint file, an http(s) URL, "
            f"or {WEIGHTS_ALIAS!r}"
        )
    if expected is not None:
        _verify(path, expected, origin=f"weights file {path}", delete=False)
    return path


def _resolve_url(
    url: str,
    parsed: urllib.parse.ParseResult,
    *,
    cache_dir: Path,
    expected: str | None,
    download: Downloader | None,
) -> Path:
    filename = _url_filename(parsed)
    if expected is None:
        tag = _NAME_HASH_RE.search(filename)
        expected = tag.group(1) if tag else None
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:_URL_KEY_HEX]
    folder = Path(cache_dir).expanduser() / "weights" / key
    target = folder / filename
    if target.is_file():
        if expected is not None:
            _verify(target, expected, origin=f"cached download of {url} ({target})", delete=True)
        logger.debug("weights %s already cached at %s", url, target)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{filename}.{secrets.token_hex(6)}.part"
    fetch = download if download is not None else urllib_download
    logger.info("downloading weights %s to %s", url, target)
    try:
        fetch(url, tmp)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise ConfigError(
                f"downloading weights from {url} produced no data; check the URL, or download "
                "the file yourself and pass its path"
            )
        if expected is not None:
            _verify(tmp, expected, origin=f"download of {url}", delete=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _url_filename(parsed: urllib.parse.ParseResult) -> str:
    name = urllib.parse.unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "weights.bin"


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _HEX_RE.fullmatch(digest):
        raise ConfigError(
            f"sha256 must be 8 to 64 hex digits (a full digest or its prefix); got {sha256!r}"
        )
    return digest


def _verify(path: Path, expected: str, *, origin: str, delete: bool) -> None:
    actual = file_sha256(path)
    if actual.startswith(expected):
        return
    if delete:
        path.unlink(missing_ok=True)
    deleted = " The file was deleted; the next run downloads it again." if delete else ""
    raise ConfigError(
        f"{origin} has sha256 {actual[: max(len(expected), 12)]}..., expected "
        f"{expected}...; the file is damaged or not the one expected.{deleted} "
        "Check the URL or path, or pass the right sha256."
    )


def file_sha256(path: Path) -> str:
    """Hash a file in chunks.

    Args:
        path: The file.

    Returns:
        The sha256 digest as 64 lower-case hex digits.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def urllib_download(url: str, destination: Path, *, timeout: float = _DOWNLOAD_TIMEOUT_S) -> None:
    """Stream ``url`` into ``destination`` with :mod:`urllib.request` (the default downloader).

    Args:
        url: An ``http(s)://`` URL.
        destination: File to write (created or truncated); its folder must exist.
        timeout: Seconds to wait for the server on each blocking operation.

    Raises:
        ConfigError: The server could not be reached or answered with an error.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "lensloop"})
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout) as response,
            open(destination, "wb") as out,
        ):
            shutil.copyfileobj(response, out, _CHUNK_BYTES)
    except urllib.error.HTTPError as exc:
        raise ConfigError(
            f"downloading weights from {url} failed: HTTP {exc.code} {exc.reason}; check the "
            "URL, or download the file yourself and pass its path"
        ) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"could not download weights from {url}: {reason}; check the network (or proxy), "
            "or download the file yourself and pass its path"
        ) from exc


def load_checkpoint(path: Path) -> dict[str, Tensor]:
    """Read a PyTorch checkpoint safely (``weights_only=True``) onto the CPU.

    Wrappers are removed as in :func:`unwrap_state_dict`.

    Args:
        path: A file written by :func:`torch.save`.

    Returns:
        Parameter name → tensor.

    Raises:
        ConfigError: The file is missing, damaged, not a checkpoint, holds objects other
            than tensors and plain containers (a pickled model), or holds no tensors.
    """
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ConfigError(f"checkpoint {path} does not exist; check the path") from exc
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        if isinstance(exc, pickle.UnpicklingError) and zipfile.is_zipfile(path):
            raise ConfigError(
                f"checkpoint {path} holds Python objects other than tensors and plain "
                "containers (e.g. a whole pickled model), which lensloop does not unpickle "
                "(weights_only=True, for safety); re-save it with "
                "torch.save(model.state_dict(), path)"
            ) from exc
        cause = (
            "neither a torch.save zip archive nor a readable pickle"
            if isinstance(exc, pickle.UnpicklingError)
            else f"{type(exc).__name__}: {_short(exc)}"
        )
        raise ConfigError(
            f"{path} is not a readable PyTorch checkpoint ({cause}); it may be truncated, "
            "damaged or in another format: download or save it again with "
            "torch.save(model.state_dict(), path)"
        ) from exc
    return unwrap_state_dict(loaded, source=f"checkpoint {path}")


def unwrap_state_dict(obj: object, *, source: str = "checkpoint") -> dict[str, Tensor]:
    """Find the parameter mapping inside a loaded checkpoint.

    Accepts a plain ``{name: tensor}`` mapping, or one wrapped in a dict under
    ``"state_dict"`` or ``"model"`` (Lightning, many training scripts), and strips a
    ``"module."`` (DistributedDataParallel) or ``"_orig_mod."`` (``torch.compile``) prefix
    shared by every key.

    Args:
        obj: What :func:`torch.load` returned.
        source: How to name the checkpoint in error messages.

    Returns:
        Parameter name → tensor.

    Raises:
        ConfigError: No name → tensor mapping was found.
    """
    import torch

    state: Any = obj
    for _ in range(3):
        if not isinstance(state, Mapping):
            break
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not state:
        raise ConfigError(
            f"{source} holds {type(state).__name__ if state is not None else 'None'}, not a "
            "state_dict (a non-empty mapping of parameter names to tensors); save one with "
            "torch.save(model.state_dict(), path)"
        )
    bad = next(
        (
            (k, v)
            for k, v in state.items()
            if not isinstance(k, str) or not isinstance(v, torch.Tensor)
        ),
        None,
    )
    if bad is not None:
        raise ConfigError(
            f"{source} is not a state_dict: entry {bad[0]!r} holds {type(bad[1]).__name__}, not "
            "a tensor; save one with torch.save(model.state_dict(), path)"
        )
    weights: dict[str, Tensor] = dict(state)
    for prefix in _KEY_PREFIXES:
        if all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    return weights


def _short(exc: BaseException, limit: int = 160) -> str:
    text = _ANSI_RE.sub("", str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
