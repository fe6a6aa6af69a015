"""API token checks for the HTTP server, free of FastAPI so they test without a server.

A request carries a token as ``Authorization: Bearer TOKEN`` or in the
:data:`TOKEN_COOKIE` cookie (for the web UI). Checking reads the catalog (and, at most
once a minute per token, writes its ``last_used_at``), so it is synchronous: the app runs
it in a thread pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lensloop.catalog.tokens import check_token, has_tokens

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = ["TOKEN_COOKIE", "TokenAuth", "bearer_token"]

#: The cookie the web UI keeps its token in.
TOKEN_COOKIE = "lensloop_token"


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header; ``None`` for any other."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class TokenAuth:
    """Accepts requests that carry a live API token of the project's catalog.

    Args:
        project: The open project whose catalog holds the tokens.
    """

    def __init__(self, project: Project) -> None:
        self.project = project

    def identify(self, authorization_header: str | None, cookie: str | None) -> str | None:
        """The name of the live token the request carries (header first), else ``None``.

        Raises:
            CatalogError: The catalog cannot be read.
        """
        candidates = [bearer_token(authorization_header), cookie.strip() if cookie else None]
        for token in candidates:
            if token:
                with self.project.catalog.transaction() as session:
                    name = check_token(session, token)
                if name is not None:
                    return name
        return None

    def accepts(self, authorization_header: str | None, cookie: str | None) -> bool:
        """Whether the ``Authorization`` header or the token cookie holds a live token.

        Raises:
            CatalogError: The catalog cannot be read.
        """
        return self.identify(authorization_header, cookie) is not None

    def has_tokens(self) -> bool:
        """Whether the project has any live token (with none, no request can pass)."""
        with self.project.catalog.reader() as session:
            return has_tokens(session)
