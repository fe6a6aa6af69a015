"""API tokens in the catalog: create, list, revoke, check, and the migration that adds them."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lensloop.catalog import Catalog
from lensloop.catalog.engine import _alembic_config, current_revision, make_engine, upgrade
from lensloop.catalog.models import ApiToken, utcnow
from lensloop.catalog.tokens import (
    TOKEN_MARKER,
    check_token,
    create_token,
    has_tokens,
    list_tokens,
    revoke_token,
)
from lensloop.errors import ConfigError, NotFoundError


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.create(f"sqlite:///{tmp_path / 'catalog.sqlite'}")


def test_create_check_list_revoke(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.reader() as session:
        assert not has_tokens(session)
    with catalog.transaction() as session:
        token, info = create_token(session, "alice-laptop")
        other, _ = create_token(session, "ci")
    assert token.startswith(TOKEN_MARKER)
    assert len(token) == len(TOKEN_MARKER) + 43  # 32 bytes, URL-safe base64
    assert info.prefix == token[3:11]
    assert token != other
    assert info.last_used_at is None
    assert info.revoked_at is None
    assert info.created_at.tzinfo is not None

    with catalog.transaction() as session:
        assert check_token(session, token) == "alice-laptop"
        assert check_token(session, other) == "ci"
        assert check_token(session, token[:-1]) is None
        assert check_token(session, token[3:]) is None  # the marker is part of the token
        assert check_token(session, "") is None
        assert check_token(session, TOKEN_MARKER + "x" * 1000) is None
        assert has_tokens(session)

    with catalog.transaction() as session:
        revoked = revoke_token(session, "alice-laptop")
    assert revoked.revoked_at is not None
    with catalog.transaction() as session:
        assert check_token(session, token) is None
        assert check_token(session, other) == "ci"
        again = revoke_token(session, "alice-laptop")
    assert again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time

    with catalog.reader() as session:
        listed = list_tokens(session)
    assert [(t.name, t.prefix) for t in listed] == [
        ("alice-laptop", token[3:11]),
        ("ci", other[3:11]),
    ]
    assert listed[0].revoked_at is not None
    assert listed[0].last_used_at is not None
    assert listed[1].revoked_at is None

    with catalog.transaction() as session:
        revoke_token(session, "ci")
        assert not has_tokens(session)
    catalog.close()


def test_only_the_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    catalog = Catalog.create(f"sqlite:///{path}")
    with catalog.transaction() as session:
        token, _ = create_token(session, "alice-laptop")
    with catalog.reader() as session:
        stored = session.scalars(sa.select(ApiToken.token_hash)).one()
    catalog.close()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("catalog.sqlite")]
    data = b"".join(p.read_bytes() for p in files)
    assert stored.encode() in data  # the row reached the files read here
    assert token.encode() not in data
    assert token[3:].encode() not in data


@pytest.mark.parametrize("name", ["", " alice", "alice ", "x" * 129])
def test_bad_names_are_refused(catalog: Catalog, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid token name"), catalog.transaction() as session:
        create_token(session, name)
    catalog.close()


def test_a_name_is_used_once_even_after_revoking(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        create_token(session, "alice")
    with (
        pytest.raises(ConfigError, match="a token named 'alice' already exists"),
        catalog.transaction() as session,
    ):
        create_token(session, "alice")
    with catalog.transaction() as session:
        revoke_token(session, "alice")
    with (
        pytest.raises(ConfigError, match="a revoked token named 'alice' already exists"),
        catalog.transaction() as session,
    ):
        create_token(session, "alice")
    with catalog.transaction() as session:
        create_token(session, "x" * 128)
        assert len(list_tokens(session)) == 2
    catalog.close()


def test_revoking_an_unknown_name_lists_the_known_ones(catalog: Catalog) -> None:
    with (
        pytest.raises(NotFoundError, match=r"no API token named 'bob'; tokens: \(none\)"),
        catalog.transaction() as session,
    ):
        revoke_token(session, "bob")
    with catalog.transaction() as session:
        create_token(session, "alice")
    with pytest.raises(NotFoundError, match="tokens: alice"), catalog.transaction() as session:
        revoke_token(session, "bob")
    catalog.close()


def test_last_used_is_written_at_most_once_a_minute(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        token, _ = create_token(session, "alice")

    def last_used() -> object:
        with catalog.reader() as session:
            return list_tokens(session)[0].last_used_at

    with catalog.transaction() as session:
        check_token(session, token)
    first = last_used()
    assert first is not None
    with catalog.transaction() as session:
        check_token(session, token)
    assert last_used() == first  # within the minute: no write

    earlier = utcnow() - timedelta(minutes=5)
    with catalog.transaction() as session:
        session.execute(sa.update(ApiToken).values(last_used_at=earlier))
    assert last_used() == earlier
    with catalog.transaction() as session:
        assert check_token(session, token) == "alice"
    latest = last_used()
    assert isinstance(latest, type(earlier))
    assert latest > first  # type: ignore[operator]
    catalog.close()


def test_migration_up_and_down(db_url: str) -> None:
    from alembic import command

    engine = make_engine(db_url)
    upgrade(engine, revision="0003")
    assert "api_tokens" not in sa.inspect(engine).get_table_names()
    upgrade(engine, revision="0004")
    assert current_revision(engine) == "0004"
    inspector = sa.inspect(engine)
    assert "api_tokens" in inspector.get_table_names()
    assert "ix_api_tokens_prefix" in {i["name"] for i in inspector.get_indexes("api_tokens")}
    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0003")
    assert current_revision(engine) == "0003"
    assert "api_tokens" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    assert "api_tokens" in sa.inspect(engine).get_table_names()
    engine.dispose()
