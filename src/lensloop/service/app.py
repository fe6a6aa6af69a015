"""The FastAPI application ``lensloop serve`` runs: API, web UI and Label Studio backend.

The ``/v1`` JSON API, the web UI under ``/ui/``, display images and Label Studio's ML
backend.

:func:`create_app` builds one app for one open project. Every error becomes JSON with a
status code and a message (``{"error": {"code", "message"}}``), never a traceback:
lensloop's own errors map to 4xx by kind, anything else to a 500 whose details go to the
server log only.

Access: with ``token_auth`` set, every route but ``/health`` and ``GET /v1/session``
needs an API token (``Authorization: Bearer ...``, or the browser's session cookie);
with ``basic_auth`` set, those credentials are accepted too (Label Studio's ML backend
connection can send only basic auth). With neither, the server is open: ``lensloop
serve`` allows that only on a loopback address.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from lensloop import __version__
from lensloop.errors import (
    ConfigError,
    FetchRefused,
    ImageError,
    ImageTooLargeError,
    LabelError,
    LensloopError,
    NotFoundError,
    RequestError,
    UnknownNameError,
)
from lensloop.service import mlbackend
from lensloop.service.api import v1_router
from lensloop.service.api.deps import ImageId
from lensloop.service.api.images import display_png
from lensloop.service.api.session import COOKIE, Unauthorized
from lensloop.service.fetch import FetchPolicy
from lensloop.service.state import ServiceState

if TYPE_CHECKING:
    from lensloop.project import Project
    from lensloop.service.auth import TokenAuth

__all__ = ["BasicAuth", "create_app", "error_response"]

logger = logging.getLogger(__name__)

_OPEN = frozenset({("GET", "/health"), ("GET", "/v1/session"), ("POST", "/v1/session")})
_STATUS: tuple[tuple[type[LensloopError], int], ...] = (
    (Unauthorized, 401),
    (NotFoundError, 404),
    (UnknownNameError, 404),
    (LabelError, 422),
    (ImageTooLargeError, 413),
    (ImageError, 422),
    (RequestError, 400),
    (ConfigError, 409),
)
#: HTTP status of each way a URL fetch is refused or fails.
_FETCH_STATUS = {
    "forbidden_address": 403,
    "bad_scheme": 400,
    "bad_url": 400,
    "too_large": 413,
    "timeout": 504,
    "too_many_redirects": 502,
    "http_error": 502,
    "unreachable": 502,
}


class _Guard:
    """ASGI middleware answering 401 to HTTP requests ``allowed`` refuses.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs every request
    a task and a stream: at a few hundred requests a second that showed in the latency.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed: Callable[[Request], Awaitable[bool]],
        denied: Callable[[], Response],
    ) -> None:
        self.app = app
        self.allowed = allowed
        self.denied = denied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not await self.allowed(Request(scope)):
            await self.denied()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def error_code(exc: LensloopError) -> str:
    """The stable code of an error in JSON answers: ``NotFoundError`` -> ``not_found``."""
    if isinstance(exc, RequestError):
        return "bad_request"
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error every route returns: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class BasicAuth:
    """HTTP basic credentials the server requires (compared in constant time)."""

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise ConfigError("basic auth needs a user name and a password (USER:PASSWORD)")
        self._expected = f"{username}:{password}".encode()

    @classmethod
    def parse(cls, text: str) -> BasicAuth:
        """Read ``USER:PASSWORD``.

        Raises:
            ConfigError: No colon, or an empty part.
        """
        username, sep, password = text.partition(":")
        if not sep:
            raise ConfigError("basic auth must be given as USER:PASSWORD")
        return cls(username, password)

    def accepts(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries these credentials."""
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)


def create_app(
    project: Project,
    *,
    model: str | None = None,
    basic_auth: BasicAuth | None = None,
    token_auth: TokenAuth | None = None,
    fetch_policy: FetchPolicy | None = None,
    train_config: Path | None = None,
    retrain: bool = True,
) -> FastAPI:
    """Build the server for one open project.

    Args:
        project: The project to serve (kept open for the app's life; the caller closes it).
        model: Which model predicts (version or alias); ``None``: champion, else latest.
        basic_auth: Credentials accepted on every route but ``/health``.
        token_auth: API tokens accepted on every route but ``/health`` and the session
            check. With either set, a request needs one of them.
        fetch_policy: Limits of the image URLs the API fetches (default: public addresses
            only, 10 s, 3 redirects).
        train_config: Training settings for retraining after annotations arrive.
        retrain: Whether annotation webhooks start retraining.
    """
    from lensloop.service import ui

    app = FastAPI(
        title="lensloop",
        version=__version__,
        description="The images, labels, embeddings, selection rounds and models of a "
        "lensloop project (`/v1`), its web UI (`/ui/`) and Label Studio's ML backend.",
    )
    app.state.lensloop = ServiceState(
        project,
        model_ref=model,
        train_config=train_config,
        retrain=retrain,
        fetch_policy=fetch_policy or FetchPolicy(),
    )
    app.state.token_auth = token_auth
    app.include_router(mlbackend.router)
    app.include_router(v1_router())
    app.include_router(ui.router)

    async def allowed(request: Request) -> bool:
        if basic_auth is None and token_auth is None:
            return True
        if (request.method, request.url.path) in _OPEN or ui.is_public(
            request.method, request.url.path
        ):
            return True  # the UI's own files: the page must load to ask for a token
        header = request.headers.get("authorization")
        if basic_auth is not None and basic_auth.accepts(header):
            return True
        if token_auth is None:
            return False
        return bool(
            await run_in_threadpool(token_auth.accepts, header, request.cookies.get(COOKIE))
        )

    def denied() -> Response:
        if token_auth is not None:
            response = error_response(
                401,
                "unauthorized",
                "an API token is needed: send 'Authorization: Bearer TOKEN' (make one "
                "with `lensloop token create DIR --name NAME`)",
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="lensloop"'
        else:
            response = error_response(401, "unauthorized", "valid basic auth credentials needed")
            response.headers["WWW-Authenticate"] = 'Basic realm="lensloop"'
        return response

    if basic_auth is not None or token_auth is not None:
        app.add_middleware(_Guard, allowed=allowed, denied=denied)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The backstop: details go to the server log (Starlette re-raises after this
        # answer for the server to log), never to the client.
        logger.error("unhandled error serving %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal server error; see the server log")

    @app.exception_handler(LensloopError)
    async def lensloop_error(request: Request, exc: LensloopError) -> JSONResponse:
        if isinstance(exc, FetchRefused):
            return error_response(_FETCH_STATUS.get(exc.code, 400), exc.code, str(exc))
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
        return error_response(status, error_code(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http", str(exc.detail))

    @app.get("/images/{image_id}", response_class=Response)
    async def image(image_id: ImageId) -> Response:
        """The image as a PNG at full size, display-normalised (16-bit stretched to 8)."""
        return await run_in_threadpool(display_png, project, image_id)

    return app
