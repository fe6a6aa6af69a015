"""Small stand-ins behind lensloop's seams, importable by worker processes (pythonpath=tests)."""

from __future__ import annotations

import numpy as np

from lensloop.embed.base import Backbone, to_unit_range


class MeanColourBackbone(Backbone):
    """A 6-d 'embedding': per-channel mean and std of the image in [0, 1] (3 channels)."""

    name = "fake-mean"

    def __init__(self, *, version: str = "1", fail_on_infer: bool = False) -> None:
        self._version = version
        self.fail_on_infer = fail_on_infer
        self.infer_calls = 0

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return 6

    def prepare(self, image: np.ndarray) -> np.ndarray:
        unit = to_unit_range(image)
        planes = unit[..., None] if unit.ndim == 2 else unit
        planes = np.repeat(planes, 3, axis=-1)[..., :3] if planes.shape[-1] == 1 else planes
        planes = planes[..., :3]
        return np.concatenate([planes.mean(axis=(0, 1)), planes.std(axis=(0, 1)) + 0.01])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.infer_calls += 1
        if self.fail_on_infer:
            raise RuntimeError("inference exploded")
        return batch.astype(np.float32)
