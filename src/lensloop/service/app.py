"""The FastAPI application ``lensloop serve`` runs: images, the Label Studio ML backend.

:func:`create_app` builds one app for one open project. Every error becomes JSON with a
status code and a message (``{"error": {"code", "message"}}``), never a traceback:
lensloop's own errors map to 4xx by kind, anything else to a 500 whose details go to the
server log only. With ``basic_auth`` set, every route but ``/health`` needs those
credentials (Label Studio sends them when its ML backend connection uses basic auth; a
browser opening ``/images/...`` asks for them once).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lensloop import __version__
from lensloop.errors import (
    ConfigError,
    ImageError,
    LabelError,
    LensloopError,
    NotFoundError,
    UnknownNameError,
)
from lensloop.service import mlbackend
from lensloop.service.state import ServiceState

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = ["BasicAuth", "create_app", "error_response"]

logger = logging.getLogger(__name__)

_OPEN_PATHS = frozenset({"/health"})
_STATUS: tuple[tuple[type[LensloopError], int], ...] = (
    (NotFoundError, 404),
    (UnknownNameError, 404),
    (LabelError, 422),
    (ImageError, 422),
    (ConfigError, 409),
)


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
    train_config: Path | None = None,
    retrain: bool = True,
) -> FastAPI:
    """Build the server for one open project.

    Args:
        project: The project to serve (kept open for the app's life; the caller closes it).
        model: Which model predicts (version or alias); ``None``: champion, else latest.
        basic_auth: Credentials every route but ``/health`` requires.
        train_config: Training settings for retraining after annotations arrive.
        retrain: Whether annotation webhooks start retraining.
    """
    app = FastAPI(
        title="lensloop",
        version=__version__,
        description="Images of a lensloop project and Label Studio's ML backend.",
    )
    app.state.lensloop = ServiceState(
        project, model_ref=model, train_config=train_config, retrain=retrain
    )
    app.include_router(mlbackend.router)

    @app.middleware("http")
    async def require_auth(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if (
            basic_auth is not None
            and request.url.path not in _OPEN_PATHS
            and not basic_auth.accepts(request.headers.get("authorization"))
        ):
            response = error_response(401, "unauthorized", "valid basic auth credentials needed")
            response.headers["WWW-Authenticate"] = 'Basic realm="lensloop"'
            return response
        try:
            return await call_next(request)
        except Exception:  # the exception handlers below cover routes; this is the backstop
            logger.exception("unhandled error serving %s %s", request.method, request.url.path)
            return error_response(500, "internal", "internal server error; see the server log")

    @app.exception_handler(LensloopError)
    async def lensloop_error(request: Request, exc: LensloopError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
        return error_response(status, type(exc).__name__, str(exc))

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
    async def image(image_id: int) -> Response:
        """The image as a PNG at full size, display-normalised (16-bit stretched to 8)."""
        data, etag = await run_in_threadpool(_display_png, project, image_id)
        return Response(
            data,
            media_type="image/png",
            headers={"ETag": f'"{etag}"', "Cache-Control": "private, max-age=3600"},
        )

    return app


def _display_png(project: Project, image_id: int) -> tuple[bytes, str]:
    from sqlalchemy import select

    from lensloop.catalog.models import Image
    from lensloop.imaging import encode_image, to_display

    with project.catalog.reader() as session:
        sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
    if sha is None:
        raise NotFoundError(f"no image with id {image_id}")
    return encode_image(to_display(project.read_image(image_id)), format="png"), sha
