"""Where shards of work run: in this process, or as Dask tasks on a cluster.

Commands that go through many images (embed, predict, count, segment, FlowCam slicing)
cut the work into shards and hand them to an :class:`Executor`, which returns each
shard's result in order. The caller writes the results exactly as it would have without
the executor, so the local and the Dask path store the same things.

The local executor runs the shards one after the other in this process. Other executors
are registered in :data:`EXECUTORS` by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from lensloop.errors import UnknownNameError

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "get_executor", "shards"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs a function over shards and yields the results in the shards' order."""

    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` for every item, yielded in order (a failure raises when reached)."""
        ...

    def close(self) -> None:
        """Release what the executor holds (connections, workers)."""
        ...


class LocalExecutor:
    """Runs every shard in this process, one after the other."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` for every item, in order."""
        for item in items:
            yield fn(item)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _local(scheduler: str | None) -> Executor:
    return LocalExecutor()


#: Registry of executors: name -> factory taking the scheduler address (or None).
EXECUTORS: dict[str, Callable[[str | None], Executor]] = {"local": _local}


def get_executor(name: str = "local", scheduler: str | None = None) -> Executor:
    """Return an executor by name.

    Raises:
        UnknownNameError: No executor of that name; the message lists the valid ones.
    """
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise UnknownNameError("executor", name, list(EXECUTORS)) from None
    return factory(scheduler)


def shards(items: Sequence[T], size: int) -> list[list[T]]:
    """Cut ``items`` into consecutive shards of at most ``size`` items.

    Raises:
        ValueError: ``size`` below 1.
    """
    if size < 1:
        raise ValueError(f"a shard holds at least 1 item; got size={size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
