"""Run a released image classifier (``--method finetune``) in ONNX Runtime, without torch.

The released graph maps float32 ``(N, 3, H, W)`` images in [0, 1] to class probabilities
(the architecture's normalisation is inside it). :func:`prepare_image` turns any image
into that input by the package's single input rule
(:func:`lensloop.embed.base.to_model_input`: 8-bit divided by 255, other dtypes stretched
between their 0.5 and 99.5 percentiles, channels made three, the longest side resized to
the card's size and the rest padded with the border's median), exactly as training did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError
from lensloop.train.heads import open_onnx_session

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "OnnxImageClassifier", "image_channels", "prepare_image"]

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def image_channels(image: npt.NDArray[Any]) -> int:
    """Channels of an ``(H, W)`` or ``(H, W, C)`` image (1 for a 2-D array)."""
    return 1 if image.ndim == 2 else int(image.shape[-1])


def prepare_image(
    image: npt.NDArray[Any], spec: dict[str, Any], *, name: str
) -> npt.NDArray[np.float32]:
    """One image as the model's ``(3, size, size)`` float32 input in [0, 1].

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, any numeric dtype.
        spec: The model card's ``input`` section (``size``, ``channels``).
        name: How to name the image in errors.

    Raises:
        ConfigError: The image has a shape the model cannot take, or another channel
            count than the images the model was trained on.
    """
    from lensloop.embed.base import InputSpec, to_model_input

    if image.ndim not in (2, 3):
        raise ConfigError(f"{name} has shape {image.shape}; an image is (H, W) or (H, W, C)")
    trained = spec.get("channels")
    channels = image_channels(image)
    if trained and channels not in trained:
        raise ConfigError(
            f"{name} has {channels} channel(s) but the model was trained on images with "
            f"{' or '.join(str(c) for c in trained)}; convert the image (e.g. to grey or RGB) "
            "or train a model on such images"
        )
    raw = InputSpec(size=int(spec["size"]), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    try:
        return to_model_input(image, raw)
    except ValueError as exc:
        raise ConfigError(f"cannot classify {name}: {exc}") from exc


class OnnxImageClassifier:
    """A released image classifier opened once: ``(N, 3, H, W)`` in [0, 1] -> ``(N, C)``.

    Raises:
        ConfigError: On opening, a corrupt file or a graph that is not a lensloop image
            classifier; on calling, input of the wrong shape.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._session = open_onnx_session(path)
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if (
            len(inputs) != 1
            or inputs[0].name != INPUT_NAME
            or len(inputs[0].shape) != 4
            or OUTPUT_NAME not in outputs
        ):
            raise ConfigError(
                f"{path} is not a lensloop image classifier (inputs "
                f"{[(i.name, i.shape) for i in inputs]}, outputs {outputs}); pass a model "
                "released by `lensloop train --method finetune`"
            )
        self.num_classes = self._session.get_outputs()[outputs.index(OUTPUT_NAME)].shape[1]

    def __call__(self, batch: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """``(N, C)`` class probabilities for a float32 ``(N, 3, H, W)`` batch."""
        data = np.ascontiguousarray(batch, dtype=np.float32)
        if data.ndim != 4 or data.shape[1] != 3:
            raise ConfigError(
                f"{self.path} takes (N, 3, H, W) images but received shape {data.shape}"
            )
        (probs,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: data})
        return np.asarray(probs, dtype=np.float32)
