"""Micro-batching: concurrent requests' images go through the network as one batch.

Under load, many requests each hold one prepared image. Running them one ONNX call each
wastes what batching buys (a ResNet-18 at 64 px costs 3.0 ms per image alone and 1.6 ms
per image in a batch of 16, on 2 cores). A :class:`MicroBatcher` owns the model's session:
request threads hand it their input and wait; one worker thread takes whatever has
arrived (up to ``max_batch``, waiting at most ``max_wait_s`` for more once it has one),
runs it as one batch and hands each request its row. With one request at a time the
batch is that request alone, after at most ``max_wait_s``. The defaults (16, 0.5 ms) were
chosen with ``bench/bench_serve.py`` on 2 cores: 8 or 32 per batch, or a 2 ms wait, gave
fewer requests a second and a longer tail (docs/benchmarks.md).

The worker thread starts on first use and ends after ``idle_s`` without work, so an app
that is built and dropped (tests, a reload) leaves no thread behind for long.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

__all__ = ["MicroBatcher"]

Run = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


class MicroBatcher:
    """Runs single inputs through ``run`` in batches gathered across threads.

    Args:
        run: Maps a ``(N, ...)`` float32 batch to ``(N, ...)`` outputs, row for row.
        max_batch: Most inputs in one call.
        max_wait_s: How long the worker waits for more inputs once it has one.
        idle_s: How long the worker thread lives without work.
    """

    def __init__(
        self, run: Run, *, max_batch: int = 16, max_wait_s: float = 0.0005, idle_s: float = 30.0
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.idle_s = idle_s
        self._queue: queue.Queue[tuple[npt.NDArray[np.float32], Future[npt.NDArray[np.float32]]]]
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.batches = 0
        self.items = 0

    def __call__(self, item: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The output row of one input; blocks until its batch has run.

        Raises:
            Exception: Whatever ``run`` raised for the batch this input was in.
        """
        done: Future[npt.NDArray[np.float32]] = Future()
        self._queue.put((item, done))
        self._ensure_worker()
        return done.result()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="lensloop-batcher", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=self.max_wait_s))
                except queue.Empty:
                    break
            self._run_batch(batch)

    def _run_batch(
        self, batch: list[tuple[npt.NDArray[np.float32], Future[npt.NDArray[np.float32]]]]
    ) -> None:
        shapes = {item.shape for item, _ in batch}
        groups = [[b for b in batch if b[0].shape == shape] for shape in shapes]
        for group in groups:  # inputs of another shape cannot share a tensor
            try:
                outputs = self._run(np.stack([item for item, _ in group]))
            except Exception as exc:  # each waiting request gets the error
                for _, done in group:
                    done.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(group)
            for (_, done), row in zip(group, outputs, strict=True):
                done.set_result(row)
