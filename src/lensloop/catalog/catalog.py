"""The :class:`Catalog`: one handle on a project's database.

It owns the engine and hands out transactions; the bulk operations that run inside a
transaction are plain functions in :mod:`lensloop.catalog.images` and
:mod:`lensloop.catalog.labels`.

Example:
    >>> from lensloop.catalog import Catalog
    >>> catalog = Catalog.create("sqlite://")  # in-memory, for illustration
    >>> catalog.image_count()
    0
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lensloop.catalog.engine import (
    current_revision,
    head_revision,
    known_revisions,
    make_engine,
    upgrade,
)
from lensloop.catalog.models import Image
from lensloop.errors import CatalogError, SchemaVersionError

__all__ = ["Catalog"]

_log = logging.getLogger(__name__)


class Catalog:
    """A project's catalog database (SQLite or PostgreSQL).

    Use :meth:`create` for a new catalog and :meth:`open` for an existing one; both check
    the schema revision, so code never runs against a schema it does not know.

    Args:
        engine: An engine made by :func:`lensloop.catalog.engine.make_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL, with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @classmethod
    def create(cls, url: str) -> Catalog:
        """Create (or migrate to the newest schema) the catalog at ``url``.

        Idempotent: on an existing lensloop catalog it only applies pending migrations.

        Raises:
            ConfigError: The URL is invalid or its driver is missing.
            CatalogError: The database cannot be reached or migrated.
        """
        engine = make_engine(url)
        upgrade(engine)
        return cls(engine)

    @classmethod
    def open(cls, url: str, *, migrate: bool = False) -> Catalog:
        """Open an existing catalog, checking its schema revision.

        Args:
            url: The database URL.
            migrate: Apply pending migrations instead of refusing an older schema.

        Raises:
            CatalogError: No lensloop catalog at ``url`` or the database cannot be reached.
            SchemaVersionError: The schema is older (and ``migrate`` is false) or newer than
                this lensloop knows.
        """
        engine = make_engine(url)
        database = engine.url.database
        on_disk = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        if on_disk and not Path(str(database)).is_file():
            engine.dispose()
            raise CatalogError(
                f"catalog file {database} not found; restore it from a backup, or create "
                "a new project with `lensloop init DIR`"
            )
        found = current_revision(engine)
        head = head_revision()
        if found is None:
            engine.dispose()
            raise CatalogError(
                f"no lensloop catalog at {url!r}; create a project with `lensloop init DIR`"
            )
        if found != head:
            if found not in known_revisions():
                engine.dispose()
                raise SchemaVersionError(
                    f"the catalog schema is at revision {found!r}, newer than this lensloop "
                    f"knows (newest {head!r}); upgrade lensloop"
                )
            if not migrate:
                engine.dispose()
                raise SchemaVersionError(
                    f"the catalog schema is at revision {found!r} but this lensloop needs "
                    f"{head!r}; back up the catalog, then run `lensloop db upgrade DIR`"
                )
            upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Run a block in one transaction: committed if it succeeds, rolled back if it raises.

        Raises:
            CatalogError: The database failed (the transaction is rolled back; lensloop
                errors raised inside the block propagate unchanged).
        """
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise CatalogError(f"catalog write failed and was rolled back: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise CatalogError(f"catalog write failed and was rolled back: {exc}") from exc
        finally:
            session.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reading; nothing is committed.

        Objects loaded in it stay readable after the block (closing ends the database
        transaction without expiring them).
        """
        session = self._sessions()
        try:
            yield session
        except OperationalError as exc:
            raise CatalogError(f"catalog read failed: {exc.orig}") from exc
        finally:
            session.close()

    def image_count(self) -> int:
        """Return how many images the catalog holds."""
        with self.reader() as session:
            return int(session.scalar(select(func.count()).select_from(Image)) or 0)
