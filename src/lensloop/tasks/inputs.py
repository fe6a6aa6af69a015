"""How a dense model (counting, segmentation) sees an image: channels and a fixed scale.

Dense models must not stretch each image to its own range: an empty field stretched to
full contrast looks like a field of cells, the counts of dim and bright images stop being
comparable, and a dark core photograph would look like a bright one. A counting or
segmentation model instead scales every image by one intensity range measured
on its training images (per channel, the 0.5th and 99.9th percentiles of a sample of
their pixels) and records it in its model card; 8-bit, 16-bit and float images all go
through the same rule, so a 12-bit camera's images are as good as 8-bit ones.

Channels: a model takes 1 channel when all its training images were grey, else 3 (grey
images repeated, extra channels such as alpha dropped). At prediction, a colour image
given to a 1-channel model is averaged to grey.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError

__all__ = ["IntensityRange", "model_channels", "scale_image", "to_channels"]

_LOW_PERCENTILE = 0.5
_HIGH_PERCENTILE = 99.9
_SAMPLE = 200_000  # pixels per image drawn to measure the range


def model_channels(channel_counts: Iterable[int]) -> int:
    """Channels a model takes for images with these channel counts: 1 if all grey, else 3."""
    counts = set(channel_counts)
    return 1 if counts <= {1} else 3


def to_channels(image: npt.ArrayLike, channels: int, *, name: str = "image") -> npt.NDArray[Any]:
    """``(H, W, channels)`` view or copy of an ``(H, W)`` or ``(H, W, C)`` image.

    Raises:
        ConfigError: The image is not 2-D or 3-D, or ``channels`` is not 1 or 3.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ConfigError(f"{name} has shape {array.shape}; an image is (H, W) or (H, W, C)")
    have = array.shape[2]
    if channels == 1:
        return array if have == 1 else array[:, :, : min(have, 3)].mean(axis=2, keepdims=True)
    if channels == 3:
        if have == 1:
            return np.repeat(array, 3, axis=2)
        if have == 2:
            raise ConfigError(f"{name} has 2 channels; give a grey or an RGB image")
        return array[:, :, :3]
    raise ConfigError(f"a counting model takes 1 or 3 channels, not {channels}")


@dataclass(frozen=True)
class IntensityRange:
    """Per-channel intensities mapped to 0 and 1: ``(value - low) / (high - low)``."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def measure(
        cls, images: Iterable[npt.NDArray[Any]], channels: int, *, seed: int = 0
    ) -> IntensityRange:
        """Measure the range on images already in ``(H, W, channels)`` form.

        Raises:
            ConfigError: No images.
        """
        rng = np.random.default_rng(seed)
        samples: list[npt.NDArray[np.float64]] = []
        for image in images:
            flat = image.reshape(-1, channels)
            if len(flat) > _SAMPLE:
                flat = flat[rng.choice(len(flat), _SAMPLE, replace=False)]
            samples.append(flat.astype(np.float64))
        if not samples:
            raise ConfigError("no images to measure an intensity range on")
        pixels = np.concatenate(samples)
        low = np.percentile(pixels, _LOW_PERCENTILE, axis=0)
        high = np.percentile(pixels, _HIGH_PERCENTILE, axis=0)
        high = np.where(high > low, high, low + 1.0)  # a flat channel keeps a unit range
        return cls(tuple(float(v) for v in low), tuple(float(v) for v in high))

    @classmethod
    def from_card(cls, spec: dict[str, Any]) -> IntensityRange:
        """Read a model card's ``input.scaling``.

        Raises:
            ConfigError: The card's scaling is missing or malformed.
        """
        scaling = spec.get("scaling")
        try:
            low, high = scaling["low"], scaling["high"]  # type: ignore[index]
            found = cls(tuple(float(v) for v in low), tuple(float(v) for v in high))
        except (TypeError, KeyError, ValueError):
            raise ConfigError(
                f"the model card's input.scaling {scaling!r} is not {{'low': [...], "
                "'high': [...]}; the card was edited by hand"
            ) from None
        if len(found.low) != len(found.high) or not found.low:
            raise ConfigError("the model card's input.scaling has mismatched low/high lists")
        return found

    def as_card(self) -> dict[str, Any]:
        """The card's ``input.scaling``."""
        return {
            "low": [round(v, 6) for v in self.low],
            "high": [round(v, 6) for v in self.high],
            "rule": f"(value - low) / (high - low) per channel; low and high are the "
            f"{_LOW_PERCENTILE} and {_HIGH_PERCENTILE} percentiles of the training pixels",
        }


def scale_image(
    image: npt.ArrayLike,
    scaling: IntensityRange,
    *,
    name: str = "image",
) -> npt.NDArray[np.float32]:
    """An image as a counting model's float32 ``(H, W, C)`` input.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, any real dtype.
        scaling: The model's intensity range; its length is the model's channels.
        name: How to name the image in errors.

    Raises:
        ConfigError: The image's shape does not fit (see :func:`to_channels`).
    """
    channels = len(scaling.low)
    array = to_channels(image, channels, name=name)
    low = np.asarray(scaling.low, dtype=np.float32)
    span = np.asarray(scaling.high, dtype=np.float32) - low
    out = np.empty(array.shape, dtype=np.float32)
    np.subtract(array, low, out=out, casting="unsafe")
    out /= span
    return out
