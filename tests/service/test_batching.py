"""Micro-batching: concurrent inputs share calls, each caller gets its own row."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest

from lensloop.service.batching import MicroBatcher


class _Recorder:
    """A fake network: doubles its input, records batch sizes, takes a little time."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.sizes: list[int] = []
        self.delay_s = delay_s

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.sizes.append(len(batch))
        time.sleep(self.delay_s)
        return batch * 2


def test_concurrent_inputs_share_batches_and_get_their_own_rows() -> None:
    run = _Recorder()
    batcher = MicroBatcher(run, max_batch=8)
    inputs = [np.full((3, 4), k, np.float32) for k in range(40)]
    with ThreadPoolExecutor(40) as pool:
        outputs = list(pool.map(batcher, inputs))
    for k, output in enumerate(outputs):
        assert np.array_equal(output, np.full((3, 4), 2 * k, np.float32))
    assert sum(run.sizes) == 40
    assert max(run.sizes) <= 8
    assert len(run.sizes) < 40  # calls were shared
    assert (batcher.items, batcher.batches) == (40, len(run.sizes))


def test_one_caller_alone_is_a_batch_of_one() -> None:
    run = _Recorder(delay_s=0)
    batcher = MicroBatcher(run)
    started = time.perf_counter()
    assert batcher(np.ones(2, np.float32)).tolist() == [2.0, 2.0]
    assert run.sizes == [1]
    assert time.perf_counter() - started < 1.0


def test_inputs_of_other_shapes_run_in_their_own_call() -> None:
    run = _Recorder()
    batcher = MicroBatcher(run, max_batch=16, max_wait_s=0.05)
    inputs = [np.zeros((2, 2), np.float32) if k % 2 else np.zeros(3, np.float32) for k in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(batcher, inputs))
    assert [o.shape for o in outputs] == [i.shape for i in inputs]


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on() -> None:
    calls = 0

    def fails_once(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the network failed")
        return batch

    batcher = MicroBatcher(fails_once)
    with pytest.raises(RuntimeError, match="the network failed"):
        batcher(np.ones(1, np.float32))
    assert batcher(np.ones(1, np.float32)).tolist() == [1.0]


def test_the_worker_thread_ends_when_idle_and_comes_back() -> None:
    batcher = MicroBatcher(_Recorder(delay_s=0), idle_s=0.05)
    batcher(np.ones(1, np.float32))
    worker = batcher._worker
    assert worker is not None
    worker.join(5)
    assert not worker.is_alive()
    assert batcher._worker is None
    assert batcher(np.ones(1, np.float32)).tolist() == [2.0]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(_Recorder(), max_batch=0)
