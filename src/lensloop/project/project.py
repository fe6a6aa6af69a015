"""The project folder: ``lensloop.toml``, the catalog and the folders beside it.

Layout of the embedded default::

    DIR/
      lensloop.toml      config (task, label schema, catalog URL)
      catalog.sqlite     the catalog (SQLite in WAL mode) unless the URL points elsewhere
      embeddings/        vectors per backbone + version
      thumbnails/        cached display thumbnails
      models/            released models (ONNX + model card)
      runs/              the local MLflow store

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "demo"
    >>> project = Project.init(root, classes=["a", "b"])
    >>> project.config.project.task
    'classify'
    >>> project.close()
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import make_url

from lensloop import __version__
from lensloop.catalog import Catalog, join_path
from lensloop.catalog.labels import ensure_class_paths
from lensloop.catalog.models import Image
from lensloop.errors import ConfigError, LabelError, NotFoundError, ProjectError
from lensloop.project.config import (
    CONFIG_FILE,
    TASKS,
    CatalogConfig,
    LabelsConfig,
    ProjectConfig,
    ProjectSection,
    Task,
    load_config,
    save_config,
)
from lensloop.settings import Settings

if TYPE_CHECKING:
    import numpy as np

    from lensloop.imaging import ImageLimits
    from lensloop.sources.remote import RemoteOptions

__all__ = ["PROJECT_DIRS", "Project"]

_log = logging.getLogger(__name__)

#: Folders every project has beside its config.
PROJECT_DIRS = ("embeddings", "thumbnails", "models", "runs")


def _resolve_catalog_url(url: str, root: Path) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    if parsed.database == ":memory:" or Path(parsed.database).is_absolute():
        return url
    return parsed.set(database=str(root / parsed.database)).render_as_string(hide_password=False)


class Project:
    """A lensloop project folder and its catalog.

    Use :meth:`init` to create one and :meth:`open` for an existing one. The catalog is
    opened on first use; :meth:`close` (or a ``with`` block) releases it.

    Args:
        root: The project folder.
        config: Its parsed ``lensloop.toml``.
        settings: Process-wide settings (limits, cache folder).
    """

    def __init__(self, root: Path, config: ProjectConfig, *, settings: Settings) -> None:
        self.root = root
        self.config = config
        self.settings = settings
        self._catalog: Catalog | None = None

    # -- creation and opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        root: str | Path,
        *,
        task: Task = "classify",
        classes: Sequence[str] = (),
        db_url: str | None = None,
        name: str | None = None,
        settings: Settings | None = None,
    ) -> Project:
        """Create a project folder with its config and catalog.

        Args:
            root: Folder to create (it may exist if it is empty or holds no project).
            task: ``classify``, ``segment`` or ``count``.
            classes: Declared classes; when given, the schema is *closed*: ingesting a label
                outside them is refused. Taxonomy paths may be written ``a/b/c``.
            db_url: Catalog database URL; default SQLite in the folder.
            name: Project name; default the folder name.
            settings: Process-wide settings; default read from the environment.

        Raises:
            ProjectError: ``root`` already holds a project or is a file.
            ConfigError: ``task`` or ``db_url`` is invalid.
            LabelError: A class name is invalid or repeated.
            CatalogError: The catalog database cannot be created.
        """
        root = Path(root).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder; choose another path")
        if (root / CONFIG_FILE).exists():
            raise ProjectError(
                f"{root} is already a lensloop project ({CONFIG_FILE} exists); open it, or "
                "choose an empty folder"
            )
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")
        class_paths = [tuple(c.strip().split("/")) for c in classes]
        names = [join_path(p) for p in class_paths]  # validates each level
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise LabelError(f"classes are listed more than once: {', '.join(dup)}")
        config = ProjectConfig(
            project=ProjectSection(name=name or root.name, task=task, created_with=__version__),
            catalog=CatalogConfig(url=db_url or CatalogConfig().url),
            labels=LabelsConfig(classes=names, closed=bool(names)),
        )
        root.mkdir(parents=True, exist_ok=True)
        for folder in PROJECT_DIRS:
            (root / folder).mkdir(exist_ok=True)
        project = cls(root, config, settings=settings or Settings())
        catalog = Catalog.create(project.catalog_url)
        project._catalog = catalog
        if class_paths:
            with catalog.transaction() as session:
                ensure_class_paths(session, class_paths)
        # The config is written last: a folder without it is not a project, so a failed
        # init can simply be run again.
        save_config(config, root / CONFIG_FILE)
        return project

    @classmethod
    def open(
        cls, root: str | Path, *, settings: Settings | None = None, migrate: bool = False
    ) -> Project:
        """Open an existing project folder.

        Args:
            root: The project folder (the one holding ``lensloop.toml``).
            settings: Process-wide settings; default read from the environment.
            migrate: Apply pending catalog migrations instead of refusing an old schema.

        Raises:
            ProjectError: No ``lensloop.toml`` in ``root``.
            ConfigError: The config is invalid.
            CatalogError: The catalog cannot be opened (or needs ``lensloop db upgrade``).
        """
        root = Path(root).expanduser().resolve()
        config_path = root / CONFIG_FILE
        if not config_path.is_file():
            raise ProjectError(
                f"no lensloop project at {root} ({CONFIG_FILE} not found); create one with "
                f"`lensloop init {root}`"
            )
        project = cls(root, load_config(config_path), settings=settings or Settings())
        project._catalog = Catalog.open(project.catalog_url, migrate=migrate)
        return project

    # -- properties -----------------------------------------------------------------------

    @property
    def catalog_url(self) -> str:
        """The catalog URL, with a relative SQLite path resolved inside the project."""
        return _resolve_catalog_url(self.config.catalog.url, self.root)

    @property
    def catalog(self) -> Catalog:
        """The project's catalog (opened on first use)."""
        if self._catalog is None:
            self._catalog = Catalog.open(self.catalog_url)
        return self._catalog

    @property
    def task(self) -> Task:
        """The project's task: ``classify``, ``segment`` or ``count``."""
        return self.config.project.task

    @property
    def thumbnails_dir(self) -> Path:
        """Where display thumbnails are cached."""
        return self.root / "thumbnails"

    @property
    def embeddings_dir(self) -> Path:
        """Where embedding vectors are stored."""
        return self.root / "embeddings"

    @property
    def models_dir(self) -> Path:
        """Where released models are stored."""
        return self.root / "models"

    @property
    def runs_dir(self) -> Path:
        """The local MLflow tracking store."""
        return self.root / "runs"

    def read_image(self, image_id: int) -> np.ndarray:
        """Read a catalog image's pixels in their native dtype.

        Pages of multi-page files are read the way they were ingested (one page, the first
        page, or all pages stacked as channels).

        Raises:
            NotFoundError: No image with that id.
            ImageError: The file can no longer be decoded.
            OSError: The file can no longer be read.
        """
        from lensloop.sources.reader import read_stored_image

        with self.catalog.reader() as session:
            row = session.get(Image, image_id)
            if row is None:
                raise NotFoundError(f"no image with id {image_id} in {self.root}")
            uri, page, pages = row.uri, row.page, row.meta.get("pages")
        return read_stored_image(
            uri, page=page, pages=pages, limits=self.limits, remote=self.remote
        )

    @property
    def limits(self) -> ImageLimits:
        """Image size limits from the settings."""
        from lensloop.imaging import ImageLimits

        return ImageLimits(
            max_pixels=self.settings.max_image_pixels, max_file_bytes=self.settings.max_file_bytes
        )

    @property
    def remote(self) -> RemoteOptions:
        """How remote image URIs are reached: endpoint from the settings, cached bytes."""
        from lensloop.sources.remote import RemoteOptions

        return RemoteOptions(
            endpoint_url=self.settings.s3_endpoint_url,
            cache_dir=self.settings.cache_dir / "remote",
            timeout_s=self.settings.remote_timeout_s,
            retries=self.settings.remote_retries,
        )

    def embeddings(
        self, backbone: str, *, version: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the stored vectors of a backbone: ``(image_ids, vectors)``.

        Args:
            backbone: Backbone name, as given to ``lensloop embed --backbone``.
            version: A specific version; default the newest set of that backbone.

        Returns:
            int64 ``(N,)`` image ids (sorted) and float32 ``(N, D)`` L2-normalised vectors.

        Raises:
            NotFoundError: The project has no embeddings of that backbone (the message lists
                the sets it has).
        """
        from lensloop.catalog.vectors import VectorStore, find_embedding_set

        with self.catalog.reader() as session:
            found = find_embedding_set(session, backbone, version)
            folder, dim = self.root / found.path, found.dim
        return VectorStore(folder, dim=dim).load()

    def thumbnail(self, image_id: int, *, size: int = 256) -> Path:
        """Return the path of a cached display thumbnail (uint8 JPEG) of a catalog image.

        The thumbnail is made on first use with :func:`~lensloop.imaging.to_display`'s
        explicit percentile stretch, and cached in ``thumbnails/`` by content hash. With
        ``LENSLOOP_THUMBNAILS_URI`` set, a thumbnail made now is also written under that
        prefix, at the same relative path; a failed write there is logged as a warning and
        not retried (the local thumbnail is still returned).

        Raises:
            NotFoundError: No image with that id.
        """
        from lensloop.imaging import ThumbnailCache

        with self.catalog.reader() as session:
            sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
        if sha is None:
            raise NotFoundError(f"no image with id {image_id} in {self.root}")
        cache = ThumbnailCache(self.thumbnails_dir)
        made_now = not cache.path_for(sha, size=size).is_file()
        path = cache.get_or_create(sha, size=size, load=lambda: self.read_image(image_id))
        if made_now and self.settings.thumbnails_uri:
            self._publish_thumbnail(path, self.settings.thumbnails_uri)
        return path

    def _publish_thumbnail(self, path: Path, prefix: str) -> None:
        from lensloop.sources.remote import write_bytes

        relative = path.relative_to(self.thumbnails_dir).as_posix()
        target = f"{prefix.rstrip('/')}/{relative}"
        try:
            write_bytes(target, path.read_bytes(), self.remote)
        except FileExistsError:
            pass  # the same content-addressed file, published before
        except OSError as exc:
            _log.warning("thumbnail %s not published to %s: %s", path.name, target, exc)

    def save_config(self) -> None:
        """Write the current config back to ``lensloop.toml``."""
        save_config(self.config, self.root / CONFIG_FILE)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the catalog's database connections."""
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, task={self.task!r})"
