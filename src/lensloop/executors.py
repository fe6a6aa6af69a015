"""Where shards of work run: in this process, or as Dask tasks on a cluster.

Commands that go through many images (embed, predict, count, segment, FlowCam slicing)
cut the work into shards and hand them to an :class:`Executor`, which returns each
shard's result in order. The caller writes the results exactly as it would have without
the executor, so the local and the Dask path store the same things.

The local executor runs the shards one after the other in this process; the Dask
executor (``--executor dask --scheduler tcp://HOST:8786``, the ``lensloop[dask]`` extra)
submits each shard as a task to a Dask scheduler and gathers the results in order. Shard
functions and their arguments travel to the workers by pickle, so they are module-level
functions over plain data (paths, ids, picklable backbones), never open sessions or
projects. Executors are registered in :data:`EXECUTORS` by name.

Example:
    >>> from lensloop.executors import get_executor, shards
    >>> runner = get_executor("local")
    >>> list(runner.map(sum, shards(range(10), 4)))
    [6, 22, 17]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from lensloop.errors import ConfigError, UnknownNameError

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "get_executor",
    "is_local",
    "shards",
]

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


_NO_SCHEDULER = (
    "--executor dask needs the address of a Dask scheduler: pass --scheduler "
    "tcp://HOST:8786 or set LENSLOOP_DASK_SCHEDULER. To start one on this machine, run "
    "`dask scheduler --host 127.0.0.1` and, in other shells, `dask worker tcp://127.0.0.1:8786` "
    "(once per worker); see docs/scaling.md for SLURM"
)


class DaskExecutor:
    """Runs each shard as a task on a Dask cluster and yields the results in order.

    Every shard is submitted at once (``client.map(..., pure=False)``, so equal shards
    still run); results are gathered in the shards' order and released from the cluster
    as soon as they are read. A task that fails raises its error here when its turn comes,
    and the tasks not yet read are cancelled.

    Args:
        scheduler: The scheduler's address, e.g. ``tcp://127.0.0.1:8786``.
        timeout: Seconds to wait for the scheduler to answer.

    Raises:
        ConfigError: No address given, ``distributed`` is not installed, or the scheduler
            cannot be reached (the message says how to start one).
    """

    name = "dask"

    def __init__(self, scheduler: str | None, *, timeout: float = 30.0) -> None:
        if not scheduler:
            raise ConfigError(_NO_SCHEDULER)
        try:
            import distributed
        except ImportError as exc:
            raise ConfigError(
                "--executor dask needs Dask's distributed package: pip install 'lensloop[dask]'"
            ) from exc
        self.scheduler = scheduler
        try:
            client: Any = distributed.Client  # untyped
            self._client: Any = client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); check the address, "
                "or start one with `dask scheduler --host 127.0.0.1` and `dask worker "
                "tcp://127.0.0.1:8786`"
            ) from exc

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` for every item as Dask tasks, yielded in the items' order.

        Raises:
            Exception: The first failing task's own error, re-raised here.
        """
        futures: list[Any] = self._client.map(fn, list(items), pure=False)
        try:
            for index, future in enumerate(futures):
                result: R = future.result()
                futures[index] = None  # let the cluster forget the result
                yield result
        finally:
            pending = [f for f in futures if f is not None]
            if pending:
                self._client.cancel(pending)

    def close(self) -> None:
        """Close the connection to the scheduler (the cluster keeps running)."""
        self._client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _local(scheduler: str | None) -> Executor:
    return LocalExecutor()


def _dask(scheduler: str | None) -> Executor:
    return DaskExecutor(scheduler)


#: Registry of executors: name -> factory taking the scheduler address (or None).
EXECUTORS: dict[str, Callable[[str | None], Executor]] = {"local": _local, "dask": _dask}


def get_executor(name: str = "local", scheduler: str | None = None) -> Executor:
    """Return an executor by name.

    Args:
        name: A name of :data:`EXECUTORS` (``local``, ``dask``).
        scheduler: The Dask scheduler's address (``dask`` only).

    Raises:
        UnknownNameError: No executor of that name; the message lists the valid ones.
        ConfigError: ``dask`` without an address, without ``distributed``, or with a
            scheduler that cannot be reached.
    """
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise UnknownNameError("executor", name, list(EXECUTORS)) from None
    return factory(scheduler)


def is_local(executor: Executor) -> bool:
    """Whether ``executor`` runs in this process (callers keep their in-process path)."""
    return executor.name == LocalExecutor.name


def shards(items: Sequence[T], size: int) -> list[list[T]]:
    """Cut ``items`` into consecutive shards of at most ``size`` items.

    Raises:
        ValueError: ``size`` below 1.
    """
    if size < 1:
        raise ValueError(f"a shard holds at least 1 item; got size={size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
