"""ResNet-18 / ResNet-50 backbones: torch builds and checks them, ONNX Runtime runs them.

:class:`ResNetBackbone` needs weights on purpose: ``weights="imagenet"`` (torchvision's
ImageNet checkpoint, downloaded once into the cache), a checkpoint path or URL, or
``random_init=True`` for untrained features (for tests and baselines). It builds the torch
model, loads the checkpoint with every key and shape checked, exports the pooled feature
extractor (no ``fc``) once to ``<cache_dir>/onnx/<name>-<tag>.onnx`` (``tag`` the first 12
hex digits of the checkpoint's sha256, or ``random-seed<N>``), verifies the export against
torch, and from then on delegates :meth:`~ResNetBackbone.prepare` and
:meth:`~ResNetBackbone.infer` to an :class:`~lensloop.embed.onnx_backbone.OnnxBackbone` on
that file. A later construction with the same weights reuses the file without torch work
beyond hashing the checkpoint.

Example:
    >>> from pathlib import Path
    >>> from lensloop.embed.torch_backbones import ResNetBackbone
    >>> backbone = ResNetBackbone(
    ...     "resnet18", weights="imagenet", cache_dir=Path("~/.cache/lensloop")
    ... )  # doctest: +SKIP
    >>> backbone.dim, backbone.version  # doctest: +SKIP
    (512, 'imagenet-f37072fd4b0a')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from lensloop.embed.base import Backbone, InputSpec
from lensloop.embed.export import OUTPUT_NAME, export_onnx
from lensloop.embed.onnx_backbone import OnnxBackbone, spec_version_suffix
from lensloop.embed.resnet import (
    RESNET_FEATURE_DIMS,
    ResNet,
    ResNetFeatures,
    ResNetName,
    build_resnet,
    load_state_dict_checked,
)
from lensloop.embed.weights import (
    WEIGHTS_ALIAS,
    Downloader,
    expand_weights_alias,
    file_sha256,
    load_checkpoint,
    resolve_weights,
)
from lensloop.errors import ConfigError, UnknownNameError

__all__ = ["ResNetBackbone"]

logger = logging.getLogger(__name__)

_TAG_HEX = 12


class ResNetBackbone(Backbone):
    """Pooled ResNet features, exported once to ONNX and run with ONNX Runtime.

    Args:
        name: ``"resnet18"`` (512-d vectors) or ``"resnet50"`` (2048-d).
        cache_dir: lensloop's user cache; downloads go to ``cache_dir/weights`` and exported
            models to ``cache_dir/onnx``.
        weights: ``"imagenet"``, a checkpoint path, or an http(s) URL of a state_dict in
            torchvision's layout (``fc.*`` keys are ignored, so a checkpoint fine-tuned for
            any number of classes works).
        random_init: Use untrained, seeded weights instead (for tests and baselines).
        seed: Seed of the random initialisation.
        input_size: Side of the square model input, in pixels.
        sha256: Expected sha256 (or a prefix of at least 8 hex digits) of the checkpoint.
        intra_op_num_threads: ONNX Runtime threads per operator; ``None`` for its default.
        download: Downloader for URLs (see :mod:`lensloop.embed.weights`); tests pass a fake.

    Raises:
        UnknownNameError: ``name`` is not a known ResNet.
        ConfigError: Neither or both of ``weights`` and ``random_init`` are given; the
            weights cannot be found, fetched or verified; or the checkpoint does not fit
            the architecture (the message lists the mismatched keys and shapes).
        LensloopError: Exporting the model to ONNX failed.
    """

    def __init__(
        self,
        name: ResNetName,
        *,
        cache_dir: Path,
        weights: str | None = None,
        random_init: bool = False,
        seed: int = 0,
        input_size: int = 224,
        sha256: str | None = None,
        intra_op_num_threads: int | None = None,
        download: Downloader | None = None,
    ) -> None:
        if name not in RESNET_FEATURE_DIMS:
            raise UnknownNameError("ResNet backbone", name, get_args(ResNetName))
        self.name = name
        if weights is not None and random_init:
            raise ConfigError(f"{name}: pass either weights ({weights!r}) or random_init, not both")
        if weights is None and not random_init:
            raise ConfigError(
                f"{name} needs weights: pass --weights {WEIGHTS_ALIAS} (torchvision's ImageNet "
                "checkpoint, downloaded once), --weights PATH_OR_URL (a state_dict in "
                "torchvision's layout), or --random-init for untrained features (tests and "
                "baselines only)"
            )
        try:
            spec = InputSpec(size=input_size)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
        cache_dir = Path(cache_dir).expanduser()

        checkpoint: Path | None = None
        if weights is not None:
            source, known_sha = expand_weights_alias(weights, backbone=name)
            checkpoint = resolve_weights(
                source, cache_dir=cache_dir, sha256=sha256 or known_sha, download=download
            )
            sha12 = file_sha256(checkpoint)[:_TAG_HEX]
            tag = sha12
            is_alias = weights.strip().lower() == WEIGHTS_ALIAS
            label = f"{WEIGHTS_ALIAS}-{sha12}" if is_alias else sha12
        else:
            tag = label = f"random-seed{seed}"
        self._label = label
        self._version = f"{label}{spec_version_suffix(spec)}"

        onnx_path = cache_dir / "onnx" / f"{name}-{tag}.onnx"
        backbone = self._open_cached(onnx_path, spec, intra_op_num_threads)
        if backbone is None:
            model = _build_model(name, checkpoint=checkpoint, seed=seed)
            logger.info("exporting %s (%s) to %s", name, label, onnx_path)
            export_onnx(ResNetFeatures(model), onnx_path, input_size=spec.size, seed=seed)
            backbone = self._open(onnx_path, spec, intra_op_num_threads)
        self._onnx = backbone
        self.onnx_path = onnx_path

    @property
    def version(self) -> str:
        """``imagenet-<sha12>``, ``<sha12>`` of the checkpoint or ``random-seed<N>``.

        A ``-<size>px`` suffix is added for an input size other than 224.
        """
        return self._version

    @property
    def dim(self) -> int:
        """512 for ResNet-18, 2048 for ResNet-50."""
        return RESNET_FEATURE_DIMS[self.name]

    @property
    def spec(self) -> InputSpec:
        """Input size and normalisation (ImageNet's mean and std)."""
        return self._onnx.spec

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Map one image to the model input by the package rule.

        Args:
            image: ``(H, W)`` or ``(H, W, C)`` with C in 1..4, any numeric dtype.

        Returns:
            float32 ``(3, input_size, input_size)``.

        Raises:
            ValueError: The image is not 2-D or 3-D, or has more than 4 channels.
        """
        return self._onnx.prepare(image)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Compute pooled features with ONNX Runtime.

        Args:
            batch: float32 ``(N, 3, input_size, input_size)``.

        Returns:
            float32 ``(N, dim)``.

        Raises:
            ValueError: ``batch`` has the wrong shape.
        """
        return self._onnx.infer(batch)

    def _open(self, path: Path, spec: InputSpec, intra_op_num_threads: int | None) -> OnnxBackbone:
        backbone = OnnxBackbone(
            path,
            input_size=spec.size,
            mean=spec.mean,
            std=spec.std,
            output=OUTPUT_NAME,
            version=self._label,
            intra_op_num_threads=intra_op_num_threads,
            name=self.name,
        )
        if backbone.dim != self.dim:
            raise ConfigError(
                f"{path} gives {backbone.dim}-d vectors, expected {self.dim} for {self.name}; "
                "delete the file to export it again"
            )
        return backbone

    def _open_cached(
        self, path: Path, spec: InputSpec, intra_op_num_threads: int | None
    ) -> OnnxBackbone | None:
        if not path.is_file():
            return None
        try:
            return self._open(path, spec, intra_op_num_threads)
        except ConfigError as exc:
            logger.warning("cached export %s is unusable (%s); exporting again", path, exc)
            return None


def _build_model(name: ResNetName, *, checkpoint: Path | None, seed: int) -> ResNet:
    with torch.random.fork_rng(devices=[]):  # seed locally; leave the caller's RNG alone
        torch.manual_seed(seed)
        model = build_resnet(name)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        load_state_dict_checked(
            model, state, ignore_prefixes=("fc.",), source=f"checkpoint {checkpoint}"
        )
    return model.eval()
