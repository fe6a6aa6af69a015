"""Retraining in the background, one run at a time, for the server's webhooks.

Label Studio sends a webhook for every saved annotation; training on each would pile up
runs. :class:`Retrainer` runs at most one training at a time in a worker thread: a
request that arrives while a run is going marks one more run as pending, so a burst of
annotations causes at most one extra run, which sees all of them. The request that asked
returns at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lensloop.catalog.models import utcnow

__all__ = ["Retrainer", "TrainingStatus"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingStatus:
    """What the retrainer has done, for ``/metrics``."""

    state: str = "idle"  # idle | running
    pending: bool = False
    runs: int = 0
    failures: int = 0
    last_version: int | None = None
    last_error: str | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data."""
        return {
            "state": self.state,
            "pending": self.pending,
            "runs": self.runs,
            "failures": self.failures,
            "last_version": self.last_version,
            "last_error": self.last_error,
            "last_started": self.last_started.isoformat() if self.last_started else None,
            "last_finished": self.last_finished.isoformat() if self.last_finished else None,
        }


class Retrainer:
    """Run ``train`` in a background thread, coalescing requests that come while it runs.

    Args:
        train: Trains and releases a model; returns the new version number. Errors it
            raises are recorded in the status, never raised to the requester.
    """

    def __init__(self, train: Callable[[], int]) -> None:
        self._train = train
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.status = TrainingStatus()

    def request(self) -> str:
        """Ask for a training run; return ``started`` or ``queued`` (one is already running)."""
        with self._lock:
            if self.status.state == "running":
                self.status.pending = True
                return "queued"
            self.status.state = "running"
            self._thread = threading.Thread(target=self._loop, name="lensloop-retrain", daemon=True)
            self._thread.start()
            return "started"

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the current run (and any pending one) to end; return whether it did."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _loop(self) -> None:
        while True:
            self.status.last_started = utcnow()
            try:
                version = self._train()
            except Exception as exc:  # a failed run must not kill the server's thread
                logger.warning("background training failed: %s", exc)
                with self._lock:
                    self.status.failures += 1
                    self.status.last_error = str(exc)
            else:
                with self._lock:
                    self.status.runs += 1
                    self.status.last_version = version
                    self.status.last_error = None
            with self._lock:
                self.status.last_finished = utcnow()
                if not self.status.pending:
                    self.status.state = "idle"
                    return
                self.status.pending = False
