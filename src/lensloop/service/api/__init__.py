"""The versioned JSON API (``/v1``) of ``lensloop serve``: one router per concern.

:func:`v1_router` assembles them; :func:`lensloop.service.app.create_app` mounts it.
"""

from __future__ import annotations

from fastapi import APIRouter

from lensloop.service.api import explore, images, models, predict, rounds, session
from lensloop.service.api.schemas import ErrorOut

__all__ = ["v1_router"]

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Bad input (the message says what and how to fix it)"),
        (401, "A token is needed"),
        (404, "No such image, model, round or embedding set"),
        (409, "The project is not set up for this (e.g. the wrong task)"),
        (413, "The image is too large"),
        (422, "Invalid request or unusable image"),
        (502, "A URL's server failed"),
        (504, "A URL took too long"),
    )
}


def v1_router() -> APIRouter:
    """Every ``/v1`` route, each documented with the JSON error it may answer."""
    router = APIRouter(prefix="/v1", responses=_ERRORS)
    for module in (session, images, explore, predict, rounds, models):
        router.include_router(module.router)
    return router
