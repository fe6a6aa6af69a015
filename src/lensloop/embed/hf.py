"""Hugging Face image encoders as backbones (``hf:NAME_OR_PATH``), strictly offline.

:class:`HuggingFaceBackbone` loads ``transformers.AutoModel`` from a local folder (one
written by ``save_pretrained``) or from a repository already in the local Hugging Face
cache. lensloop never downloads here: every ``from_pretrained`` call passes
``local_files_only=True`` and runs with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``
set for its duration (restored afterwards), and ``trust_remote_code`` is never enabled.
To use a hub model, fetch it once yourself (``hf download NAME``) or ``save_pretrained`` it
to a folder.

Preprocessing follows the package rule (:func:`~lensloop.embed.base.to_model_input`:
whole image kept, longest side resized, padded square; no centre crop) with the size,
mean and std read from the model's image-processor config (``preprocessor_config.json``:
``crop_size``, else ``size``; ``image_mean``, ``image_std``) when present, else the
model config's ``image_size`` and :class:`~lensloop.embed.base.InputSpec`'s defaults.
The image-processor *class* is not instantiated (recent ``transformers`` prefer "fast"
processors that need torchvision); only its config is read.

The vector (``pooling``):

- ``"auto"`` (default): the model's ``pooler_output`` when it has one (for DINOv2 and ViT
  the layer-normed CLS token, for CNNs such as ResNet/ConvNeXt the global average pool),
  else the mean of ``last_hidden_state`` over tokens (or over pixels for a feature map);
- ``"cls"``: token 0 of ``last_hidden_state``;
- ``"mean"``: the mean of ``last_hidden_state`` over tokens (or pixels).

The model runs in torch eager mode inside :meth:`~HuggingFaceBackbone.infer` (loaded on
the first batch, never pickled): exporting arbitrary transformers to ONNX is not reliable
enough to do silently. It needs the ``hf`` extra: ``pip install 'lensloop[hf]'``.

Example:
    >>> from lensloop.embed.hf import HuggingFaceBackbone
    >>> backbone = HuggingFaceBackbone("hf:/models/dinov2-small")  # doctest: +SKIP
    >>> backbone.dim  # doctest: +SKIP
    384
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from lensloop.embed.base import Backbone, InputSpec, to_model_input
from lensloop.errors import ConfigError

__all__ = ["HF_PREFIX", "HuggingFaceBackbone", "Pooling", "read_image_processor_config"]

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
"""Registry names of the form ``hf:NAME_OR_PATH`` select a :class:`HuggingFaceBackbone`."""

Pooling = Literal["auto", "cls", "mean"]
"""How a model's outputs become one vector per image (see the module docstring)."""

_EXTRA_HINT = "install the Hugging Face extra: pip install 'lensloop[hf]'"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PROCESSOR_FILE = "preprocessor_config.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_VERSION_HEX = 12
_MIN_SIZE = 8


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Set the Hugging Face offline variables for the duration of a load, then restore."""
    saved = {name: os.environ.get(name) for name in _OFFLINE_VARIABLES}
    try:
        for name in _OFFLINE_VARIABLES:
            os.environ[name] = "1"
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"hf: backbones need the 'transformers' package, which is not installed; {_EXTRA_HINT}"
        ) from exc
    return transformers


def _resolve(name_or_path: str) -> tuple[str, Path | None]:
    """Return (what to pass to from_pretrained, local folder or None for a cache repo id)."""
    text = name_or_path.strip()
    if text.startswith(HF_PREFIX):
        text = text[len(HF_PREFIX) :].strip()
    if not text:
        raise ConfigError(
            "hf: backbone needs a model folder or a repository id, e.g. hf:/models/dinov2 "
            "or hf:facebook/dinov2-small; got an empty name"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path), path
    if path.exists():
        raise ConfigError(
            f"hf: model path {path} is a file; pass the folder written by save_pretrained "
            "(holding config.json and the weights)"
        )
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if looks_like_path:
        raise ConfigError(
            f"hf: model folder {path} does not exist; pass a folder written by "
            "save_pretrained, or a repository id already in the local Hugging Face cache"
        )
    return text, None


def read_image_processor_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read a model's image-processor config without instantiating the processor.

    Args:
        name_or_path: A model folder, or a repository id in the local Hugging Face cache.

    Returns:
        The parsed ``preprocessor_config.json``, or ``{}`` when the model has none.

    Raises:
        ConfigError: ``transformers`` is missing, or the file is not valid JSON.
    """
    target, folder = _resolve(str(name_or_path))
    if folder is not None:
        path = folder / _PROCESSOR_FILE
        if not path.is_file():
            return {}
    else:
        _require_transformers()
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(target, _PROCESSOR_FILE)
        if not isinstance(found, str):
            return {}
        path = Path(found)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the image-processor config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _size_from(processor: dict[str, Any], model_config: Any) -> int | None:
    for key in ("crop_size", "size"):
        value = processor.get(key)
        if key == "crop_size" and processor.get("do_center_crop") is False:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, dict):
            for field in ("height", "shortest_edge", "width"):
                side = value.get(field)
                if isinstance(side, int) and not isinstance(side, bool):
                    return side
    image_size = getattr(model_config, "image_size", None)
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return image_size
    if isinstance(image_size, list | tuple) and image_size and isinstance(image_size[0], int):
        return int(image_size[0])
    return None


def _three(value: object, name: str, source: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value),) * 3
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return float(value[0]), float(value[1]), float(value[2])
    raise ConfigError(f"{source}: {name} must be 3 numbers, got {value!r}")


def _feature_dim(config: Any) -> int | None:
    for attribute in ("hidden_size", "embed_dim", "num_features"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    sizes = getattr(config, "hidden_sizes", None)
    if isinstance(sizes, list | tuple) and sizes and isinstance(sizes[-1], int):
        return int(sizes[-1])
    return None


class HuggingFaceBackbone(Backbone):
    """A ``transformers`` image model from a local folder or the local cache, offline.

    Args:
        name_or_path: ``"hf:PATH_OR_ID"`` or just the path or repository id.
        input_size: Override the input side (else the processor config's, the model's
            ``image_size``, or 224).
        pooling: ``"auto"``, ``"cls"`` or ``"mean"`` (see the module docstring).
        intra_op_threads: torch CPU threads for inference; ``None`` leaves torch's setting.

    Raises:
        ConfigError: ``transformers`` is not installed (the message names
            ``lensloop[hf]``); the model is not found locally; its configs are invalid; or
            an argument is out of range.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        *,
        input_size: int | None = None,
        pooling: Pooling = "auto",
        intra_op_threads: int | None = None,
    ) -> None:
        transformers = _require_transformers()
        if pooling not in get_args(Pooling):
            raise ConfigError(
                f"pooling must be one of {', '.join(get_args(Pooling))}; got {pooling!r}"
            )
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        target, folder = _resolve(str(name_or_path))
        self.name = f"{HF_PREFIX}{target}"
        self._target = target
        self._pooling: Pooling = pooling
        self._threads = intra_op_threads
        try:
            with _offline():
                config = transformers.AutoConfig.from_pretrained(
                    target, local_files_only=True, trust_remote_code=False
                )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"hf: cannot load the model config of {target!r} from local files "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}). "
                "lensloop never downloads models: pass a folder written by save_pretrained, "
                "or fetch the repository into the Hugging Face cache first (hf download NAME)"
            ) from exc
        processor = read_image_processor_config(target)
        source = f"image-processor config of {target}"
        size = input_size if input_size is not None else _size_from(processor, config)
        default = InputSpec()
        try:
            self._spec = InputSpec(
                size=size if size is not None else default.size,
                mean=_three(processor.get("image_mean"), "image_mean", source) or default.mean,
                std=_three(processor.get("image_std"), "image_std", source) or default.std,
            )
        except ValueError as exc:
            raise ConfigError(f"hf: {target}: {exc}") from exc
        dim = _feature_dim(config)
        if dim is None:
            raise ConfigError(
                f"hf: cannot tell the feature size of {target!r} from its config (no "
                "hidden_size or hidden_sizes); is it an image encoder?"
            )
        self._dim = dim
        self._version = self._make_version(config, folder)
        self._model: Any = None

    def _make_version(self, config: Any, folder: Path | None) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
        if folder is not None:
            from lensloop.embed.weights import file_sha256

            for weights in sorted(folder.iterdir()):
                if weights.is_file() and weights.suffix in _WEIGHT_SUFFIXES:
                    digest.update(weights.name.encode())
                    digest.update(file_sha256(weights).encode())
        else:
            digest.update(self._target.encode())
            commit = getattr(config, "_commit_hash", None)
            digest.update(str(commit).encode())
        spec = self._spec
        digest.update(json.dumps([spec.size, spec.mean, spec.std]).encode())
        return f"{digest.hexdigest()[:_VERSION_HEX]}-{self._pooling}"

    @property
    def version(self) -> str:
        """Hash of the config, weights and preprocessing, then the pooling, e.g. ``…-auto``."""
        return self._version

    @property
    def dim(self) -> int:
        """The model's hidden size (last stage width for CNNs)."""
        return self._dim

    @property
    def spec(self) -> InputSpec:
        """Input size and normalisation used by :meth:`prepare`."""
        return self._spec

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Map one image to the model input by the package rule.

        Args:
            image: ``(H, W)`` or ``(H, W, C)``, C in 1..4, any numeric dtype.

        Returns:
            float32 ``(3, size, size)``.

        Raises:
            ValueError: The image is not 2-D or 3-D with 1-4 channels.
        """
        return to_model_input(image, self._spec)

    def _load(self) -> Any:
        transformers = _require_transformers()
        with _offline():
            model = transformers.AutoModel.from_pretrained(
                self._target, local_files_only=True, trust_remote_code=False
            )
        logger.info("loaded %s (%s) for embedding", self.name, type(model).__name__)
        return model.eval()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model and pool its outputs.

        Args:
            batch: float32 ``(N, 3, size, size)`` from :meth:`prepare`.

        Returns:
            float32 ``(N, dim)``.

        Raises:
            ConfigError: The batch has the wrong shape, or the model's output does not
                have ``dim`` features.
        """
        import torch

        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ConfigError(
                f"{self.name} expects a (N, 3, H, W) batch from prepare(); got {batch.shape}"
            )
        if self._model is None:
            self._model = self._load()
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        pixels = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            outputs = self._model(pixel_values=pixels)
        vectors = self._pool(outputs)
        if vectors.shape != (batch.shape[0], self._dim):
            raise ConfigError(
                f"{self.name} gave vectors of shape {tuple(vectors.shape)} for a batch of "
                f"{batch.shape[0]}; expected ({batch.shape[0]}, {self._dim}). Try "
                "pooling='mean' or 'cls'"
            )
        return np.asarray(vectors.float().numpy(), dtype=np.float32)

    def _pool(self, outputs: Any) -> Any:
        pooled = getattr(outputs, "pooler_output", None)
        if self._pooling == "auto" and pooled is not None:
            return pooled.flatten(1)
        hidden = getattr(outputs, "last_hidden_state", None)
        if hidden is None:
            raise ConfigError(
                f"{self.name} returned neither pooler_output nor last_hidden_state; it is "
                "not an image encoder lensloop can pool"
            )
        if hidden.ndim == 4:  # (N, C, h, w) feature map
            return hidden.mean(dim=(2, 3))
        if self._pooling == "cls":
            return hidden[:, 0]
        return hidden.mean(dim=1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # reloaded lazily; workers only call prepare()
        return state
