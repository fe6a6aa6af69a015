"""Label Studio tasks for catalog images: the image URL, the data, the pre-annotations.

A task's data holds the image URL Label Studio opens and ``lensloop_image_id``, which is
how annotations find their way back to the catalog. Three ways to give Label Studio the
image (:class:`ImageUrls`):

- ``serve``: ``{base_url}/images/{image_id}`` from ``lensloop serve DIR`` (any image the
  catalog can read, 16-bit and multi-page included, shown display-normalised at its full
  size, so pixel coordinates match the original);
- ``local-files``: ``/data/local-files/?d=<path relative to the document root>`` for a
  Label Studio started with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (files a browser can show: PNG, JPEG);
- ``uri``: the catalog URI as it is (``s3://...`` with a Label Studio cloud storage, or
  ``https://...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from sqlalchemy import select

from lensloop.annotate.labelstudio.results import ImageSize, results_from_payload
from lensloop.annotate.schema import IMAGE_NAME
from lensloop.catalog.annotations import current_annotations
from lensloop.catalog.images import in_chunks
from lensloop.catalog.models import Image, SelectionItem, SelectionRound
from lensloop.errors import ConfigError, LabelError, NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lensloop.project import Project

__all__ = [
    "ID_KEY",
    "TASK_KINDS",
    "URL_MODES",
    "ImageUrls",
    "PreAnnotation",
    "build_task",
    "catalog_images",
    "images_to_label",
    "resolve_task_images",
]

#: Task data key holding the catalog image id.
ID_KEY = "lensloop_image_id"
URL_MODES = ("serve", "local-files", "uri")
UrlMode = Literal["serve", "local-files", "uri"]
#: The annotation kinds that label an image for each task.
TASK_KINDS: dict[str, tuple[str, ...]] = {
    "classify": ("class",),
    "count": ("points",),
    "segment": ("mask", "polygon"),
}
_SERVED = re.compile(r"/images/(\d+)/?$")
_LOCAL_FILES = "/data/local-files/"


@dataclass(frozen=True)
class PreAnnotation:
    """A model's output for one image, in pixels, to show in Label Studio as a prediction.

    Attributes:
        kind: The annotation kind (``class``, ``points``, ``mask``, ...).
        payload: The payload in the catalog's pixel form.
        score: The model's confidence in ``[0, 1]``.
        model_version: The model that made it (``lensloop-v3``).
    """

    kind: str
    payload: Mapping[str, Any]
    score: float
    model_version: str

    def to_labelstudio(self, size: ImageSize) -> dict[str, Any]:
        """Return the Label Studio prediction (results in percentages)."""
        return {
            "model_version": self.model_version,
            "score": float(self.score),
            "result": results_from_payload(self.kind, self.payload, size=size),
        }


@dataclass(frozen=True)
class ImageUrls:
    """How task data name the image.

    Attributes:
        mode: ``serve``, ``local-files`` or ``uri`` (see the module docstring).
        base_url: ``lensloop serve``'s address, for ``serve``.
        files_root: Label Studio's local-files document root, for ``local-files``.
    """

    mode: UrlMode = "serve"
    base_url: str = "http://127.0.0.1:9090"
    files_root: Path | None = None
    _root: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.mode not in URL_MODES:
            raise ConfigError(
                f"unknown image URL mode {self.mode!r}; valid: {', '.join(URL_MODES)}"
            )
        if self.mode == "local-files" and self.files_root is None:
            raise ConfigError(
                "image URLs from local-files storage need the document root: pass "
                "--files-root (Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)"
            )
        if self.files_root is not None:
            object.__setattr__(self, "_root", Path(self.files_root).resolve().as_posix())

    def url(self, image_id: int, uri: str) -> str:
        """Return the URL of a catalog image for task data.

        Raises:
            LabelError: The image cannot be named this way (a local file outside the
                document root, or a local path in ``uri`` mode).
        """
        if self.mode == "serve":
            return f"{self.base_url.rstrip('/')}/images/{image_id}"
        if self.mode == "uri":
            if "://" not in uri:
                raise LabelError(
                    f"image {image_id} is a local file ({uri}); Label Studio cannot open it "
                    "by path: use --image-url serve (lensloop serve) or local-files"
                )
            return uri
        path = PurePosixPath(uri)
        try:
            relative = path.relative_to(self._root)
        except ValueError:
            raise LabelError(
                f"image {image_id} ({uri}) is not under the local-files document root "
                f"{self._root}; pass the root that holds the images as --files-root"
            ) from None
        return f"{_LOCAL_FILES}?d={quote(relative.as_posix())}"

    def storage_folders(self, uris: Iterable[str]) -> list[str]:
        """Return the local-files storages Label Studio needs to serve these images.

        Label Studio serves a file only below a local-files storage's path, and a storage
        must be a subfolder of the document root: one storage per top-level subfolder
        holding images.

        Raises:
            LabelError: An image lies outside the root or directly in it.
        """
        folders: set[str] = set()
        for uri in uris:
            path = PurePosixPath(uri)
            try:
                parts = path.relative_to(self._root).parts
            except ValueError:
                raise LabelError(
                    f"{uri} is not under the local-files document root {self._root}"
                ) from None
            if len(parts) < 2:
                raise LabelError(
                    f"{uri} lies directly in the local-files document root; Label Studio "
                    "serves only files in its subfolders: move the images into one"
                )
            folders.add((PurePosixPath(self._root) / parts[0]).as_posix())
        return sorted(folders)


def build_task(
    image_id: int,
    url: str,
    size: ImageSize,
    *,
    predictions: Iterable[PreAnnotation] = (),
) -> dict[str, Any]:
    """Return a Label Studio task (import format) for one image."""
    task: dict[str, Any] = {"data": {IMAGE_NAME: url, ID_KEY: image_id}}
    found = [p.to_labelstudio(size) for p in predictions]
    if found:
        task["predictions"] = found
    return task


def catalog_images(session: Session, image_ids: Sequence[int]) -> dict[int, tuple[str, ImageSize]]:
    """``{image_id: (uri, size)}`` of the images to make tasks for.

    Raises:
        LabelError: Some ids are not in the catalog (the first ten are named).
    """
    found = {
        row.id: (row.uri, ImageSize(row.width, row.height))
        for chunk in in_chunks(list(image_ids))
        for row in session.execute(
            select(Image.id, Image.uri, Image.width, Image.height).where(Image.id.in_(chunk))
        )
    }
    missing = [i for i in image_ids if i not in found]
    if missing:
        raise LabelError(f"images not in the catalog: {missing[:10]}")
    return found


def images_to_label(project: Project, *, round: int | None = None) -> list[int]:
    """Return the image ids to send for labelling, in order.

    Args:
        project: The project.
        round: A selection round: its images in selection order. ``None``: every image
            without an annotation for the project's task, by id.

    Raises:
        NotFoundError: No selection round with that id.
    """
    with project.catalog.reader() as session:
        if round is not None:
            if session.get(SelectionRound, round) is None:
                raise NotFoundError(f"no selection round {round}; see `lensloop select`")
            return list(
                session.scalars(
                    select(SelectionItem.image_id)
                    .where(SelectionItem.round_id == round)
                    .order_by(SelectionItem.rank)
                )
            )
        labelled: set[int] = set()
        for kind in TASK_KINDS[project.task]:
            labelled.update(current_annotations(session, kind))
        every = session.scalars(select(Image.id).order_by(Image.id))
        return [image_id for image_id in every if image_id not in labelled]


def _image_id_from_url(url: str) -> int | None:
    match = _SERVED.search(urlsplit(url).path)
    return int(match.group(1)) if match else None


def resolve_task_images(
    session: Session,
    tasks: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    strict: bool = True,
) -> dict[str, tuple[int, ImageSize]]:
    """Find the catalog image of each task from its data.

    Args:
        session: A catalog session.
        tasks: ``(where, data)`` pairs: how to name the record in errors, and its data.
        strict: Raise for a task whose image is not in the catalog; ``False`` leaves it
            out of the result instead (the ML backend answers such tasks with nothing).

    Returns:
        ``{where: (image_id, size)}``.

    Raises:
        LabelError: A task has neither an image id nor a URL, or (``strict``) its image is
            not in the catalog; the message names the task.
    """
    wanted: dict[str, int | str] = {}
    for where, data in tasks:
        image_id = data.get(ID_KEY)
        url = data.get(IMAGE_NAME)
        if isinstance(image_id, int) and not isinstance(image_id, bool):
            wanted[where] = image_id
        elif isinstance(url, str) and url:
            wanted[where] = url
        else:
            raise LabelError(f"{where}: the task has neither {ID_KEY!r} nor an image URL")
    urls = sorted({v for v in wanted.values() if isinstance(v, str)})
    by_url = _find_by_urls(session, urls)
    ids = {v if isinstance(v, int) else by_url.get(v) for v in wanted.values()} - {None}
    sizes: dict[int, ImageSize] = {}
    for chunk in in_chunks(sorted(i for i in ids if i is not None)):
        for row in session.execute(
            select(Image.id, Image.width, Image.height).where(Image.id.in_(chunk))
        ):
            sizes[row.id] = ImageSize(row.width, row.height)
    found: dict[str, tuple[int, ImageSize]] = {}
    for where, key in wanted.items():
        image_id = key if isinstance(key, int) else by_url.get(key)
        if image_id is not None and image_id in sizes:
            found[where] = (image_id, sizes[image_id])
        elif strict:
            raise LabelError(
                f"{where}: its image ({key}) is not in the catalog; ingest it first, or "
                "send tasks with `lensloop labelstudio export/push` (they carry "
                f"{ID_KEY})"
            )
    return found


def _find_by_urls(session: Session, urls: Sequence[str]) -> dict[str, int]:
    """``{url: image id}`` of the URLs that name a catalog image (one query for exact URIs)."""
    found: dict[str, int] = {}
    for chunk in in_chunks(list(urls)):
        found.update(
            {
                uri: image_id
                for image_id, uri in session.execute(
                    select(Image.id, Image.uri).where(Image.uri.in_(chunk))
                )
            }
        )
    for url in urls:
        if url not in found:
            image_id = _find_by_url(session, url)
            if image_id is not None:
                found[url] = image_id
    return found


def _find_by_url(session: Session, url: str) -> int | None:
    """The image a local-files or ``lensloop serve`` URL names, if any."""
    parts = urlsplit(url)
    if parts.path.startswith(_LOCAL_FILES):
        relative = parse_qs(parts.query).get("d", [""])[0]
        if relative:
            matches = list(
                session.scalars(
                    select(Image.id).where(Image.uri.endswith("/" + relative, autoescape=True))
                )
            )
            if len(matches) == 1:
                return int(matches[0])
        return None
    return _image_id_from_url(url)
