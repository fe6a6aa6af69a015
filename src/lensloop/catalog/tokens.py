"""API tokens of the HTTP server, inside a catalog transaction.

A token is ``ll_`` followed by 43 URL-safe characters (32 random bytes from
:func:`secrets.token_urlsafe`). It is shown once, when created; the catalog keeps only its
SHA-256 and its first 8 characters after ``ll_`` (the *prefix*, shown in listings so
users can tell their tokens apart). Tokens are named (``alice-laptop``) and revoked by
name; a revoked token keeps its row, so its name cannot be reused.

Example:
    >>> from lensloop.catalog import Catalog
    >>> catalog = Catalog.create("sqlite://")
    >>> with catalog.transaction() as session:
    ...     token, info = create_token(session, "alice-laptop")
    >>> with catalog.transaction() as session:
    ...     check_token(session, token)
    'alice-laptop'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from lensloop.catalog.models import ApiToken, utcnow
from lensloop.errors import ConfigError, NotFoundError

__all__ = [
    "MAX_NAME_LENGTH",
    "TOKEN_MARKER",
    "TokenInfo",
    "check_token",
    "create_token",
    "has_tokens",
    "list_tokens",
    "revoke_token",
]

#: What every lensloop API token starts with (so secret scanners and people can spot one).
TOKEN_MARKER = "ll_"
#: The longest token name the catalog stores.
MAX_NAME_LENGTH = 128
_PREFIX_LENGTH = 8
_TOKEN_BYTES = 32
#: ``last_used_at`` is rewritten at most this often, so checking is not a write per request.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
#: Longer than any token lensloop makes (47 characters); longer input is refused unhashed.
_MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True)
class TokenInfo:
    """What the catalog knows of a token (never the token itself); times are UTC."""

    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(token: str) -> str:
    # The token holds 256 random bits, so a fast hash is enough: nothing to brute-force,
    # unlike a password, and a slow KDF would only slow every request down.
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the catalog stores UTC, so say so."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        prefix=row.prefix,
        created_at=_aware(row.created_at),
        last_used_at=_utc(row.last_used_at),
        revoked_at=_utc(row.revoked_at),
    )


def _check_name(name: str) -> None:
    if not name or name != name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"invalid token name {name!r}: names must be non-empty, without surrounding "
            f"spaces and at most {MAX_NAME_LENGTH} characters (e.g. 'alice-laptop')"
        )


def create_token(session: Session, name: str) -> tuple[str, TokenInfo]:
    """Make a new API token called ``name``.

    Returns:
        The token (``ll_`` + 43 URL-safe characters; this is the only time it is
        available) and what the catalog keeps of it.

    Raises:
        ConfigError: ``name`` is empty, has surrounding spaces, is too long, or is already
            taken (by a live or a revoked token).
    """
    _check_name(name)
    taken = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if taken is not None:
        state = "a revoked token" if taken.revoked_at is not None else "a token"
        raise ConfigError(
            f"{state} named {name!r} already exists (prefix {taken.prefix}); choose another "
            "name, e.g. one per person and machine"
        )
    secret = secrets.token_urlsafe(_TOKEN_BYTES)
    token = f"{TOKEN_MARKER}{secret}"
    row = ApiToken(
        name=name, prefix=secret[:_PREFIX_LENGTH], token_hash=_hash(token), created_at=utcnow()
    )
    session.add(row)
    session.flush()
    return token, _info(row)


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token, revoked ones included, oldest first."""
    rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))
    return [_info(row) for row in rows]


def revoke_token(session: Session, name: str) -> TokenInfo:
    """Revoke the token called ``name``; revoking it again changes nothing.

    Raises:
        NotFoundError: No token has that name.
    """
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        known = session.scalars(select(ApiToken.name).order_by(ApiToken.name)).all()
        raise NotFoundError(
            f"no API token named {name!r}; tokens: {', '.join(known) if known else '(none)'}"
        )
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return _info(row)


def check_token(session: Session, token: str) -> str | None:
    """Return the name of the live token ``token`` is, or ``None`` if it is none.

    Unknown, malformed and revoked tokens all give ``None``. A valid token's
    ``last_used_at`` is updated, at most once a minute, so run this in a transaction.
    """
    if not token.startswith(TOKEN_MARKER) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    digest = _hash(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup is by an index on the hash; the constant-time compare of the hashes
    # makes the final decision independent of timing however the database compares.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - _aware(row.last_used_at) >= _LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.flush()
    return row.name


def has_tokens(session: Session) -> bool:
    """Whether any token is live (not revoked)."""
    return bool(session.scalar(select(exists().where(ApiToken.revoked_at.is_(None)))))
