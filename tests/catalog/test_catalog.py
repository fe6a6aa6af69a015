from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from lensloop.catalog import Catalog, NewImage
from lensloop.catalog.engine import head_revision, make_engine, upgrade
from lensloop.catalog.images import add_images
from lensloop.errors import CatalogError, ConfigError, SchemaVersionError


def _image(n: int) -> NewImage:
    return NewImage(
        uri=f"/data/img_{n}.png",
        sha256=f"{n:064x}",
        format="png",
        width=4,
        height=3,
        channels=1,
        dtype="uint16",
        bit_depth=12,
        file_size=5_000_000_000,  # over 2**31: needs a 64-bit column on PostgreSQL
        meta={"station": "L4", "n": n},
    )


def test_create_then_open_round_trips_rows(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        ids = add_images(session, [_image(1), _image(2)])
    catalog.close()

    reopened = Catalog.open(db_url)
    assert reopened.image_count() == 2
    with reopened.reader() as session:
        row = session.execute(
            sa.text("select uri, bit_depth, file_size from images where id = :i"),
            {"i": ids[f"{1:064x}"]},
        ).one()
    assert tuple(row) == ("/data/img_1.png", 12, 5_000_000_000)
    reopened.close()


def test_create_is_idempotent(db_url: str) -> None:
    Catalog.create(db_url).close()
    catalog = Catalog.create(db_url)
    assert catalog.image_count() == 0
    catalog.close()


def test_failed_transaction_writes_nothing(db_url: str) -> None:
    catalog = Catalog.create(db_url)

    def duplicate_write() -> None:
        with catalog.transaction() as session:
            add_images(session, [_image(1)])
            add_images(session, [_image(1)])  # same sha256 and uri: unique constraints fail

    def failing_block() -> None:
        with catalog.transaction() as session:
            add_images(session, [_image(2)])
            raise RuntimeError("boom")

    with pytest.raises(CatalogError, match="rolled back"):
        duplicate_write()
    assert catalog.image_count() == 0
    with pytest.raises(RuntimeError, match="boom"):
        failing_block()
    assert catalog.image_count() == 0
    catalog.close()


def test_open_refuses_a_database_without_catalog(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        with pytest.raises(CatalogError, match=r"catalog file .* not found"):
            Catalog.open(db_url)
        make_engine(db_url).connect().close()  # an empty SQLite file
    with pytest.raises(CatalogError, match="no lensloop catalog"):
        Catalog.open(db_url)


def test_open_refuses_a_newer_schema(db_url: str) -> None:
    Catalog.create(db_url).close()
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("update alembic_version set version_num = 'f00dfeed'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer than this lensloop"):
        Catalog.open(db_url)


def test_schema_is_at_head(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.reader() as session:
        version = session.scalar(sa.text("select version_num from alembic_version"))
    assert version == head_revision()
    catalog.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    catalog = Catalog.create(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with catalog.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    catalog.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "cannot parse catalog URL"),
        ("mysql://u@h/db", "supported databases are: sqlite, postgresql"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_engine(url)


def test_an_older_catalog_is_refused_until_migrated(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, revision="0001")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "insert into images (uri, sha256, format, width, height, channels, dtype, "
                "bit_depth, file_size, metadata, created_at) values ('/x.png', :sha, 'png', "
                "1, 1, 1, 'uint8', 8, 1, '{}', CURRENT_TIMESTAMP)"
            ),
            {"sha": "a" * 64},
        )
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="lensloop db upgrade"):
        Catalog.open(db_url)
    catalog = Catalog.open(db_url, migrate=True)
    assert catalog.image_count() == 1  # data kept across the migration
    assert "cluster_runs" in sa.inspect(catalog.engine).get_table_names()
    catalog.close()
    Catalog.open(db_url).close()  # now at head


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lensloop.catalog.models import Base

    catalog = Catalog.create(db_url)
    try:
        with catalog.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            differences = compare_metadata(context, Base.metadata)
    finally:
        catalog.close()
    assert differences == []
