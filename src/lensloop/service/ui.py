"""The browser UI: a static single page served by the same app as the ``/v1`` API.

Routes:

- ``GET /``: redirects to ``/ui/``;
- ``GET /ui`` and ``GET /ui/``: the page (``index.html``, ``Cache-Control: no-cache``);
- ``GET /ui/static/{name}``: its scripts and style sheet, with an ``ETag``.

The assets are plain files shipped inside the package (``lensloop/service/ui/``): no build
step, nothing fetched from the internet. They hold no secrets, so an app that requires a
token can leave these routes open; the page asks for the token itself (``/v1/session``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from lensloop.errors import NotFoundError

__all__ = ["UI_PATH", "is_public", "list_assets", "router"]

#: Where the page lives.
UI_PATH = "/ui/"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def _assets() -> dict[str, _Asset]:
    """The UI folder's files by name, read once (they ship with the package)."""
    folder = files("lensloop.service") / "ui"
    found: dict[str, _Asset] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            found[entry.name] = _Asset(body, _MEDIA_TYPES[suffix], etag)
    return found


def is_public(method: str, path: str) -> bool:
    """Whether a request is for the UI's own files, which an app with auth leaves open.

    The page must load before the user has signed in: it asks ``GET /v1/session`` whether
    a token is needed and shows its prompt. The files hold no project data.
    """
    if method not in ("GET", "HEAD"):
        return False
    return path in ("/", "/ui", "/ui/") or (
        path.startswith("/ui/static/") and "/" not in path[len("/ui/static/") :]
    )


def list_assets() -> list[str]:
    """Names of the files the UI serves (``index.html``, ``app.js``, ...), sorted."""
    return sorted(_assets())


def _serve(name: str, request: Request) -> Response:
    asset = _assets().get(name)
    if asset is None:
        raise NotFoundError(f"no UI file {name!r}; the UI has {', '.join(list_assets())}")
    headers = {"Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    """Send a browser opening the server's address to the UI."""
    return RedirectResponse(UI_PATH, status_code=307)


@router.get("/ui")
@router.get("/ui/")
async def page(request: Request) -> Response:
    """The single page; its routes live after ``#`` (``#/gallery``, ``#/map``, ...)."""
    return _serve("index.html", request)


@router.get("/ui/static/{name}")
async def static(name: str, request: Request) -> Response:
    """A script or style sheet of the page."""
    return _serve(name, request)
