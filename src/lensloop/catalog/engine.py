"""Database engines and schema migrations for the catalog.

SQLite is the embedded default; it runs in WAL mode with foreign keys on, so readers never
block the writer (an ingest can run while ``lensloop status`` reads). PostgreSQL is used by
giving a ``postgresql+psycopg://`` URL; the same code and migrations run on both.

Migrations are Alembic revisions shipped inside the package (``catalog/migrations``) and
run programmatically: there is no ``alembic.ini`` to keep next to a project.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from lensloop.errors import CatalogError, ConfigError, SchemaVersionError

__all__ = ["current_revision", "head_revision", "known_revisions", "make_engine", "upgrade"]

_log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).parent / "migrations"
_SUPPORTED = ("sqlite", "postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine for a catalog URL.

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path/catalog.sqlite`` or
            ``postgresql+psycopg://user@host:port/db``.

    Returns:
        An engine; for SQLite every connection is switched to WAL mode with foreign keys on.

    Raises:
        ConfigError: The URL cannot be parsed, names an unsupported database, or needs a
            driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"cannot parse catalog URL {url!r}: {exc}; expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB"
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        raise ConfigError(
            f"catalog URL {parsed.render_as_string(hide_password=True)!r} uses {backend!r}; "
            f"supported databases are: {', '.join(_SUPPORTED)}"
        )
    if backend == "postgresql" and parsed.get_driver_name() == "psycopg2":
        _log.warning("psycopg2 works but lensloop is tested with psycopg 3 (postgresql+psycopg)")
    try:
        engine = create_engine(parsed, pool_pre_ping=backend == "postgresql")
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"the driver for {parsed.drivername!r} is not installed ({exc}); for PostgreSQL "
            "install the extra: pip install 'lensloop[postgres]'"
        ) from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the newest schema revision this version of lensloop ships."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SchemaVersionError("lensloop ships no catalog migrations; the install is broken")
    return head


def known_revisions() -> set[str]:
    """Return every schema revision this version of lensloop ships."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config(None))
    return {script.revision for script in scripts.walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision of the database, or None for an empty database.

    Raises:
        CatalogError: The database cannot be reached.
    """
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise CatalogError(f"cannot open the catalog database: {exc.orig}") from exc


def upgrade(engine: Engine, *, revision: str = "head") -> None:
    """Migrate the database schema to ``revision`` in one transaction.

    Args:
        engine: The catalog's engine.
        revision: The target revision; ``head`` is the newest.

    Raises:
        CatalogError: The database cannot be reached or the migration failed (nothing is
            changed: the migration runs in one transaction).
    """
    from alembic import command

    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), revision)
    except OperationalError as exc:
        raise CatalogError(f"cannot migrate the catalog database: {exc.orig}") from exc
    _log.info("catalog schema at %s", revision)
