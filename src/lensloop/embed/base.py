"""The seam every embedding backbone implements, and the rule for turning images into input.

A backbone turns images into vectors in two steps, so the expensive part can be batched:

- :meth:`Backbone.prepare` maps one image ``(H, W[, C])`` in its native dtype to a float32
  array ready for the model (for a CNN: ``(3, size, size)``). It is a pure function of the
  image and runs in worker processes, so a backbone must be picklable.
- :meth:`Backbone.infer` maps a stacked batch of prepared arrays to ``(N, D)`` float32
  vectors. It runs in the main process (ONNX Runtime, or NumPy for hand-crafted features).

The extraction engine L2-normalises the vectors and stores them keyed by image id, under
the backbone's ``name`` and ``version`` (a new version never overwrites an old one).

Input rule for neural backbones (:func:`to_model_input`), the same everywhere:

1. intensities to [0, 1]: ``uint8`` divided by 255; every other dtype (12/16-bit,
   float) is stretched per channel between its 0.5th and 99.5th percentiles, because a
   16-bit microscope image rarely uses its full range (this is the model's *input*, not a
   change to stored data);
2. channels to 3: one channel is repeated, two become ``(c0, c1, mean)``, four keep the
   first three (RGBA alpha, or a fourth fluorescence channel, is not seen by the model);
3. geometry: the longest side is resized to ``size`` (aspect kept) and the image is padded
   to a square with its median border value, so elongated particles keep their shape;
4. per-channel normalisation with the backbone's ``mean`` and ``std``; layout
   ``(3, size, size)``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

__all__ = ["Backbone", "InputSpec", "to_model_input", "to_unit_range"]


@dataclass(frozen=True)
class InputSpec:
    """How images are fed to a neural backbone.

    Attributes:
        size: Side of the square input, in pixels.
        mean: Per-channel mean subtracted after scaling to [0, 1] (ImageNet's by default).
        std: Per-channel standard deviation divided by after that.
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"input size must be at least 8 pixels, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"mean and std need 3 values each and std must be positive; got "
                f"mean={self.mean}, std={self.std}"
            )


def to_unit_range(image: np.ndarray, *, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale an image's intensities to float32 [0, 1] by the module's input rule.

    ``uint8`` is divided by 255; ``bool`` becomes 0/1; other dtypes are stretched per
    channel between the ``low`` and ``high`` percentiles (a constant channel becomes 0).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array in any numeric dtype.
        low: Lower percentile for the stretch.
        high: Upper percentile for the stretch.

    Returns:
        float32 array of the same shape, values in [0, 1].
    """
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    data = image.astype(np.float32)
    planes = data[..., None] if data.ndim == 2 else data
    out = np.empty_like(planes)
    for c in range(planes.shape[-1]):
        plane = planes[..., c]
        finite = plane[np.isfinite(plane)]
        if finite.size == 0:
            out[..., c] = 0.0
            continue
        lo, hi = np.percentile(finite, [low, high])
        if hi <= lo:
            out[..., c] = 0.0
            continue
        out[..., c] = np.clip((np.nan_to_num(plane, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return out[..., 0] if data.ndim == 2 else out


def _to_three_channels(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    channels = image.shape[-1]
    if channels == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 2:
        return np.concatenate([image, image.mean(axis=-1, keepdims=True)], axis=-1)
    return image[..., :3]


def to_model_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Turn one image into a float32 ``(3, size, size)`` model input (see the module rule).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` with C in 1..4, any numeric dtype.
        spec: Input size and normalisation.

    Returns:
        float32 array ``(3, spec.size, spec.size)``.

    Raises:
        ValueError: The image is not 2-D or 3-D, or has more than 4 channels.
    """
    from PIL import Image

    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[-1] <= 4):
        raise ValueError(
            f"image must be (H, W) or (H, W, C) with 1-4 channels, got shape {image.shape}"
        )
    rgb = _to_three_channels(to_unit_range(image))
    height, width = rgb.shape[:2]
    scale = spec.size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = np.stack(
        [
            np.asarray(
                Image.fromarray(rgb[..., c]).resize((new_w, new_h), Image.Resampling.BILINEAR)
            )
            for c in range(3)
        ],
        axis=0,
    )
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]], axis=0)
    fill = np.median(border, axis=0).astype(np.float32)
    canvas = np.empty((3, spec.size, spec.size), np.float32)
    canvas[:] = fill[:, None, None]
    top, left = (spec.size - new_h) // 2, (spec.size - new_w) // 2
    canvas[:, top : top + new_h, left : left + new_w] = resized
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    return (canvas - mean) / std


class Backbone(abc.ABC):
    """An image -> vector model, registered by name (see :mod:`lensloop.embed.registry`).

    Subclasses set :attr:`name`, and implement :attr:`version`, :attr:`dim`,
    :meth:`prepare` and :meth:`infer`. Instances must be picklable (``prepare`` runs in
    worker processes): load heavy sessions lazily in ``infer``, not in ``__init__``.
    """

    #: Registry name, e.g. ``"resnet18"``, ``"features"``, ``"onnx:/path/model.onnx"``.
    name: str = ""

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Identifies weights and preprocessing; vectors of different versions never mix."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of the vectors this backbone produces."""

    @abc.abstractmethod
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Map one image ``(H, W[, C])`` (native dtype) to this backbone's float32 input."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Map a stacked batch of prepared inputs to ``(N, dim)`` float32 vectors."""
