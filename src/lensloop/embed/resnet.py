"""ResNet-18 and ResNet-50 in plain torch, with torchvision's parameter names.

The modules here reproduce torchvision's ``resnet18`` / ``resnet50`` (the "v1.5" layout:
in a bottleneck block the stride sits on the 3×3 convolution) module for module, so their
``state_dict`` keys and shapes are identical and a torchvision ImageNet checkpoint loads
with ``strict=True``. torchvision itself is not a dependency.

An adaptive average pool closes the trunk, so any input of at least 32×32 pixels works;
:meth:`ResNet.forward_features` returns the pooled ``(N, 512)`` or ``(N, 2048)`` vector and
:meth:`ResNet.forward` the ``(N, num_classes)`` logits of the ``fc`` layer.

Example:
    >>> import torch
    >>> from lensloop.embed.resnet import build_resnet
    >>> model = build_resnet("resnet18").eval()
    >>> model.forward_features(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 512])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from lensloop.embed.weights import unwrap_state_dict
from lensloop.errors import ConfigError, UnknownNameError

__all__ = [
    "RESNET_FEATURE_DIMS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetFeatures",
    "ResNetName",
    "build_resnet",
    "load_state_dict_checked",
]

ResNetName = Literal["resnet18", "resnet50"]
"""The architectures :func:`build_resnet` knows."""

RESNET_FEATURE_DIMS: dict[str, int] = {"resnet18": 512, "resnet50": 2048}
"""Length of the pooled feature vector of each architecture."""

_MAX_LISTED_KEYS = 10
_BN_COUNTER = ".num_batches_tracked"


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34).

    Args:
        inplanes: Channels coming in.
        planes: Channels of both convolutions (and going out).
        stride: Stride of the first convolution.
        downsample: Projection of the identity path when shape changes, else ``None``.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: float32 ``(N, inplanes, H, W)``.

        Returns:
            float32 ``(N, planes, H / stride, W / stride)``.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 convolutions with a residual connection (ResNet-50+).

    Args:
        inplanes: Channels coming in.
        planes: Channels of the inner convolutions; ``4 * planes`` go out.
        stride: Stride of the 3×3 convolution.
        downsample: Projection of the identity path when shape changes, else ``None``.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: float32 ``(N, inplanes, H, W)``.

        Returns:
            float32 ``(N, 4 * planes, H / stride, W / stride)``.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.relu(out + identity)
        return result


_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A ResNet trunk, pooled features and an ``fc`` classifier, named as in torchvision.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: Number of blocks in each of the four stages.
        num_classes: Outputs of the ``fc`` layer.

    Attributes:
        feature_dim: Length of the pooled feature vector (512 or 2048).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self._inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1.0)
                nn.init.constant_(module.bias, 0.0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        stage: list[nn.Module] = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        stage.extend(block(self._inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*stage)

    def forward_features(self, x: Tensor) -> Tensor:
        """Compute the pooled feature vectors (the input of ``fc``).

        Args:
            x: float32 ``(N, 3, H, W)``, H and W at least 32.

        Returns:
            float32 ``(N, feature_dim)``.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Compute class logits.

        Args:
            x: float32 ``(N, 3, H, W)``, H and W at least 32.

        Returns:
            float32 ``(N, num_classes)``.
        """
        logits: Tensor = self.fc(self.forward_features(x))
        return logits


class ResNetFeatures(nn.Module):
    """A view of a :class:`ResNet` whose ``forward`` is :meth:`ResNet.forward_features`.

    It shares the wrapped model's parameters; use it to export or trace the feature
    extractor without the ``fc`` layer.

    Args:
        resnet: The model to wrap.
    """

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.resnet = resnet

    def forward(self, x: Tensor) -> Tensor:
        """Compute pooled features.

        Args:
            x: float32 ``(N, 3, H, W)``.

        Returns:
            float32 ``(N, feature_dim)``.
        """
        return self.resnet.forward_features(x)


def build_resnet(name: ResNetName, *, num_classes: int = 1000) -> ResNet:
    """Build a randomly initialised ResNet with torchvision's layout and parameter names.

    Initialisation follows torchvision (Kaiming-normal convolutions, BatchNorm weight 1 and
    bias 0); seed it with :func:`torch.manual_seed` for reproducible weights.

    Args:
        name: ``"resnet18"`` or ``"resnet50"``.
        num_classes: Outputs of the ``fc`` layer.

    Returns:
        The model, in training mode (call ``.eval()`` before extracting features).

    Raises:
        UnknownNameError: ``name`` is not a known architecture.
        ConfigError: ``num_classes`` is below 1.
    """
    if name not in _LAYOUTS:
        raise UnknownNameError("ResNet architecture", name, get_args(ResNetName))
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    block, layers = _LAYOUTS[name]
    return ResNet(block, layers, num_classes=num_classes)


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    ignore_prefixes: Iterable[str] = (),
    source: str = "checkpoint",
) -> None:
    """Load a checkpoint into ``model``, refusing any missing, unexpected or mis-shaped key.

    Common wrappers are accepted: a dict holding the weights under ``"state_dict"`` or
    ``"model"``, and keys prefixed ``"module."`` (DistributedDataParallel). On any mismatch
    nothing is loaded and the error lists the first 10 missing and unexpected keys and the
    first 10 shape mismatches.

    Args:
        model: The model to fill; its parameters and buffers are overwritten in place.
        state_dict: Name → tensor mapping, possibly wrapped as above.
        ignore_prefixes: Keys starting with one of these are neither loaded nor required
            (e.g. ``("fc.",)`` to use a checkpoint trained for another number of classes
            as a feature extractor).
        source: How to name the checkpoint in error messages (e.g. its path).

    Raises:
        ConfigError: The checkpoint is not a name → tensor mapping, or it does not match
            the model's keys and shapes.
    """
    weights = unwrap_state_dict(state_dict, source=source)
    prefixes = tuple(ignore_prefixes)
    weights = {k: v for k, v in weights.items() if not k.startswith(prefixes)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    for key, value in expected.items():
        # Checkpoints saved before torch 0.4.1 have no BatchNorm step counter; torch's own
        # loader fills it in too, and it plays no part in inference.
        if key.endswith(_BN_COUNTER) and key not in weights:
            weights[key] = value.clone()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise ConfigError(
            _mismatch_message(
                source,
                type(model).__name__,
                missing=missing,
                unexpected=unexpected,
                mismatched=mismatched,
            )
        )
    model.load_state_dict(weights, strict=not prefixes)


def _mismatch_message(
    source: str,
    model_name: str,
    *,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    lines = [f"{source} does not fit the {model_name} model:"]
    for title, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if keys:
            shown = ", ".join(keys[:_MAX_LISTED_KEYS])
            more = (
                f" (and {len(keys) - _MAX_LISTED_KEYS} more)"
                if len(keys) > _MAX_LISTED_KEYS
                else ""
            )
            lines.append(f"  {len(keys)} {title}: {shown}{more}")
    lines.append(
        "Check that the checkpoint was saved from the same architecture (e.g. resnet18 "
        "weights for --backbone resnet18) as a plain state_dict."
    )
    return "\n".join(lines)
