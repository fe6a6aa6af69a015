"""The throw-away PostgreSQL server the catalog's integration tests run against.

``pg_server`` is the session fixture in ``tests/conftest.py`` that wraps
:func:`servers.postgres_server`.
"""

from __future__ import annotations

import socket
from uuid import uuid4

import pytest
import sqlalchemy as sa

import servers
from servers import (
    LOOPBACK,
    REQUIRE_ENV,
    PostgresServer,
    postgres_server,
    require_integration,
)


def _fresh_name() -> str:
    return f"test_{uuid4().hex[:16]}"


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.integration
def test_server_answers_on_loopback_only(pg_server: PostgresServer) -> None:
    assert pg_server.host == LOOPBACK
    assert pg_server.url == f"postgresql+psycopg://lensloop@127.0.0.1:{pg_server.port}/postgres"
    version = _scalar(pg_server.url, "select version()")
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL ")
    assert _scalar(pg_server.url, "show listen_addresses") == LOOPBACK
    assert _scalar(pg_server.url, "select host(inet_server_addr())") == LOOPBACK
    assert _scalar(pg_server.url, "show fsync") == "off"


@pytest.mark.integration
def test_create_insert_select(pg_server: PostgresServer) -> None:
    url = pg_server.create_database(_fresh_name())
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("create table image (id serial primary key, uri text)"))
            connection.execute(
                sa.text("insert into image (uri) values (:uri)"),
                [{"uri": "a.png"}, {"uri": "b.png"}],
            )
        with engine.connect() as connection:
            rows = connection.execute(sa.text("select id, uri from image order by id")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "a.png"), (2, "b.png")]


@pytest.mark.integration
def test_databases_are_isolated(pg_server: PostgresServer) -> None:
    first, second = _fresh_name(), _fresh_name()
    urls = {name: pg_server.create_database(name) for name in (first, second)}
    assert urls[first].endswith(f"/{first}")
    engines = {name: sa.create_engine(url) for name, url in urls.items()}
    try:
        with engines[first].begin() as connection:
            connection.execute(sa.text("create table item (label text)"))
            connection.execute(sa.text("insert into item values ('first')"))
        assert not sa.inspect(engines[second]).has_table("item")
        with engines[second].begin() as connection:
            connection.execute(sa.text("create table item (label text)"))
            connection.execute(sa.text("insert into item values ('second'), ('second')"))
        for name, expected in ((first, ["first"]), (second, ["second", "second"])):
            with engines[name].connect() as connection:
                labels = connection.execute(sa.text("select label from item")).scalars().all()
            assert labels == expected
    finally:
        for engine in engines.values():
            engine.dispose()


@pytest.mark.integration
def test_create_database_rejects_unsafe_names(pg_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match=r"got 'x; drop database postgres'"):
        pg_server.create_database("x; drop database postgres")


@pytest.mark.integration
def test_server_is_stopped_and_removed_even_when_the_block_raises() -> None:
    seen: list[PostgresServer] = []

    def crash() -> None:
        with postgres_server() as running:
            seen.append(running)
            assert running.data_dir.is_dir()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        crash()
    port, tmp = seen[0].port, seen[0].data_dir.parent
    assert not tmp.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=5).close()


def test_no_binaries_skips_or_fails_by_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "_find_pg_bin", lambda: None)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with (
        pytest.raises(pytest.skip.Exception, match="no PostgreSQL server binaries"),
        postgres_server(),
    ):
        pass
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="fails instead of skipping"), postgres_server():
        pass


@pytest.mark.integration
def test_startup_failure_reports_the_server_log(monkeypatch: pytest.MonkeyPatch) -> None:
    if servers._find_pg_bin() is None:
        require_integration("no PostgreSQL server binaries")
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        monkeypatch.setattr(servers, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(pytest.skip.Exception, match="could not bind"), postgres_server():
            pass
