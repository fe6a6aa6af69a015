"""What every ``/v1`` route needs from the running app: its :class:`ServiceState`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from lensloop.service.state import ServiceState

__all__ = ["MAX_ID", "ImageId", "RoundId", "State", "get_state"]

#: The largest id the catalog can hold (a signed 64-bit integer); larger ones are refused
#: as invalid requests rather than reaching the database.
MAX_ID = 2**63 - 1

#: An image id in a route's path.
ImageId = Annotated[int, Path(ge=1, le=MAX_ID, description="A catalog image id.")]
#: A selection round id in a route's path.
RoundId = Annotated[int, Path(ge=1, le=MAX_ID, description="A selection round id.")]


def get_state(request: Request) -> ServiceState:
    """The state of the app serving ``request``."""
    state: ServiceState = request.app.state.lensloop
    return state


#: A route parameter receiving the app's state.
State = Annotated[ServiceState, Depends(get_state)]
