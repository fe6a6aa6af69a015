"""What every ``/v1`` route needs from the running app: its :class:`ServiceState`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lensloop.service.state import ServiceState

__all__ = ["State", "get_state"]


def get_state(request: Request) -> ServiceState:
    """The state of the app serving ``request``."""
    state: ServiceState = request.app.state.lensloop
    return state


#: A route parameter receiving the app's state.
State = Annotated[ServiceState, Depends(get_state)]
