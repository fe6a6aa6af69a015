"""The backbone registry: a plain dict from name to factory.

Names are either plain (``efficientnet-lite0``, ``features``, ``resnet18``, ``resnet50``,
``ssl``) or a prefix with an argument (``onnx:PATH``, ``hf:NAME_OR_PATH``).
:data:`DEFAULT_BACKBONE` is the one that measured best offline on the plankton demo set
(docs/benchmarks.md); ``features`` needs no network and no torch at all. Factories import
their heavy libraries when called, so listing backbones costs nothing. Adding a backbone is one
module and one line in :data:`BACKBONES`.

Example:
    >>> from lensloop.embed.registry import list_backbones
    >>> "features" in list_backbones()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lensloop.embed.base import Backbone
from lensloop.errors import ConfigError, UnknownNameError

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "SSL_ENCODER",
    "BackboneOptions",
    "get_backbone",
    "list_backbones",
]

#: The default backbone: ImageNet EfficientNet-Lite0, 0.895 five-fold accuracy on the
#: plankton demo set against 0.848 for ``features`` (docs/benchmarks.md).
DEFAULT_BACKBONE = "efficientnet-lite0"

#: Where a project's self-supervised encoder lives, relative to the project folder.
SSL_ENCODER = Path("models") / "ssl" / "encoder.onnx"


@dataclass(frozen=True)
class BackboneOptions:
    """Everything a backbone factory may need; each uses only the fields that apply.

    Attributes:
        cache_dir: lensloop's user cache (downloaded weights, exported ONNX models).
        project_root: The project folder (for ``ssl``, whose encoder lives in the project).
        weights: ``imagenet``, a checkpoint path or an http(s) URL (ResNet backbones); a
            checkpoint path for ``efficientnet-lite0`` (default: its ImageNet weights).
        random_init: Allow a ResNet without weights (for tests and baselines).
        seed: Seed of random initialisation.
        input_size: Square input side; None keeps the backbone's default.
        mean: Per-channel normalisation mean for ``onnx:`` models (else sidecar/default).
        std: Per-channel normalisation std for ``onnx:`` models.
        threads: Inference threads (ONNX Runtime intra-op); None lets the runtime decide.
    """

    cache_dir: Path
    project_root: Path | None = None
    weights: str | None = None
    random_init: bool = False
    seed: int = 0
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    threads: int | None = None


Factory = Callable[[str, BackboneOptions], Backbone]


def _features(_arg: str, _options: BackboneOptions) -> Backbone:
    from lensloop.embed.features import FeaturesBackbone

    return FeaturesBackbone()


def _resnet(name: str) -> Factory:
    def factory(_arg: str, options: BackboneOptions) -> Backbone:
        from lensloop.embed.torch_backbones import ResNetBackbone

        return ResNetBackbone(
            name,  # type: ignore[arg-type]
            cache_dir=options.cache_dir,
            weights=options.weights,
            random_init=options.random_init,
            seed=options.seed,
            input_size=options.input_size or 224,
            intra_op_num_threads=options.threads,
        )

    return factory


def _efficientnet(_arg: str, options: BackboneOptions) -> Backbone:
    from lensloop.embed.efficientnet import EfficientNetLite0Backbone

    return EfficientNetLite0Backbone(
        cache_dir=options.cache_dir,
        weights=Path(options.weights).expanduser() if options.weights else None,
        input_size=options.input_size or 224,
        intra_op_num_threads=options.threads,
    )


def _onnx(arg: str, options: BackboneOptions) -> Backbone:
    from lensloop.embed.onnx_backbone import OnnxBackbone

    if not arg:
        raise ConfigError("onnx backbone needs a path: --backbone onnx:/path/to/model.onnx")
    return OnnxBackbone(
        Path(arg).expanduser(),
        input_size=options.input_size,
        mean=options.mean,
        std=options.std,
        intra_op_num_threads=options.threads,
        name=f"onnx:{arg}",
    )


def _ssl(_arg: str, options: BackboneOptions) -> Backbone:
    from lensloop.embed.onnx_backbone import OnnxBackbone

    if options.project_root is None:
        raise ConfigError("the ssl backbone belongs to a project; open one first")
    path = options.project_root / SSL_ENCODER
    if not path.is_file():
        raise ConfigError(
            f"this project has no self-supervised encoder yet ({path} not found); train one "
            "with `lensloop embed DIR --backbone ssl --train-epochs N`"
        )
    return OnnxBackbone(path, intra_op_num_threads=options.threads, name="ssl")


def _hf(arg: str, options: BackboneOptions) -> Backbone:
    from lensloop.embed.hf import HuggingFaceBackbone

    if not arg:
        raise ConfigError("hf backbone needs a model: --backbone hf:NAME_OR_LOCAL_PATH")
    return HuggingFaceBackbone(arg, input_size=options.input_size)


#: Registry: name (or prefix before ``:``) -> factory(argument, options).
BACKBONES: dict[str, Factory] = {
    "efficientnet-lite0": _efficientnet,
    "features": _features,
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
    "ssl": _ssl,
    "onnx": _onnx,
    "hf": _hf,
}

_PREFIXED = ("onnx", "hf")


def list_backbones() -> list[str]:
    """Return the registered backbone names (prefixed ones as ``onnx:PATH``, ``hf:NAME``)."""
    return sorted(
        f"{n}:PATH" if n == "onnx" else f"{n}:NAME" if n == "hf" else n for n in BACKBONES
    )


def get_backbone(name: str, options: BackboneOptions) -> Backbone:
    """Build a backbone by registry name.

    Args:
        name: ``features``, ``resnet18``, ``resnet50``, ``ssl``, ``onnx:PATH`` or
            ``hf:NAME_OR_PATH``.
        options: Weights, input size, cache folder and so on.

    Raises:
        UnknownNameError: No backbone of that name; the message lists the valid ones.
        ConfigError: The backbone cannot be built with these options (missing weights,
            an unreadable model file, ...).
    """
    key, _, arg = name.partition(":")
    if key not in BACKBONES or (key in _PREFIXED) != bool(_):
        raise UnknownNameError("backbone", name, list_backbones())
    return BACKBONES[key](arg, options)
