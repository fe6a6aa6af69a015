"""TokenAuth: the server's API token check, without a server."""

from __future__ import annotations

import pytest

from lensloop.catalog.tokens import create_token, revoke_token
from lensloop.project import Project
from lensloop.service.auth import TokenAuth, bearer_token


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer ll_abc", "ll_abc"),
        ("bearer   ll_abc  ", "ll_abc"),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


def test_accepts_a_live_token_by_header_or_cookie(project: Project) -> None:
    auth = TokenAuth(project)
    assert not auth.has_tokens()
    with project.catalog.transaction() as session:
        token, _ = create_token(session, "alice")
    assert auth.has_tokens()
    assert auth.accepts(f"Bearer {token}", None)
    assert auth.accepts(None, token)
    assert auth.accepts("Basic dXNlcjpwdw==", token)  # basic auth beside the cookie
    assert auth.accepts("Bearer ll_wrong", token)
    assert auth.identify(f"Bearer {token}", None) == "alice"
    assert not auth.accepts(None, None)
    assert not auth.accepts("Bearer ll_wrong", "ll_wrong")
    assert not auth.accepts(token, None)  # a header without the Bearer scheme
    with project.catalog.transaction() as session:
        revoke_token(session, "alice")
    assert not auth.accepts(f"Bearer {token}", token)
    assert not auth.has_tokens()
