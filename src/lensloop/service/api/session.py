"""``/v1/session``: whether this server wants a token, and a browser's way to give it once.

A browser cannot add an ``Authorization`` header to ``<img>`` requests, so the web UI
posts the token here once and gets it back as an HttpOnly, SameSite=Strict cookie that
the auth check accepts like the header.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from lensloop.errors import LensloopError
from lensloop.service.api.schemas import SessionOut, SessionRequest
from lensloop.service.auth import TOKEN_COOKIE

__all__ = ["COOKIE", "Unauthorized", "router"]

#: The cookie holding the browser's token.
COOKIE = TOKEN_COOKIE

router = APIRouter(tags=["session"])


class Unauthorized(LensloopError):  # noqa: N818 - reads as the HTTP status it maps to
    """A token that this server does not accept."""


@router.get("/session", response_model=SessionOut, summary="Does this server need a token?")
async def get_session(request: Request) -> SessionOut:
    auth = request.app.state.token_auth
    if auth is None:
        return SessionOut(auth_required=False, authenticated=True)
    ok = await run_in_threadpool(
        auth.accepts, request.headers.get("authorization"), request.cookies.get(COOKIE)
    )
    return SessionOut(auth_required=True, authenticated=ok)


@router.post("/session", response_model=SessionOut, summary="Log a browser in with a token")
async def post_session(request: Request, body: SessionRequest, response: Response) -> SessionOut:
    auth = request.app.state.token_auth
    if auth is None:
        return SessionOut(auth_required=False, authenticated=True)
    ok = await run_in_threadpool(auth.accepts, f"Bearer {body.token}", None)
    if not ok:
        raise Unauthorized("that token is not valid here (revoked, mistyped, or another project's)")
    response.set_cookie(
        COOKIE,
        body.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return SessionOut(auth_required=True, authenticated=True)


@router.delete("/session", response_model=SessionOut, summary="Log the browser out")
async def delete_session(request: Request, response: Response) -> SessionOut:
    response.delete_cookie(COOKIE, path="/")
    required = request.app.state.token_auth is not None
    return SessionOut(auth_required=required, authenticated=not required)
