"""A U-Net for dense prediction (density maps for counting, class logits for segmentation).

:class:`UNet` maps float32 ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)`` for any
``H`` and ``W`` above half the network stride: ``forward`` reflect-pads the input on the
bottom and right to a multiple of :attr:`UNet.stride` and crops the output back. The
padding is computed from the input's shape inside the graph, so an ONNX export (e.g.
:func:`lensloop.embed.export.export_onnx`) keeps batch, height and width dynamic.

Two encoders:

- ``"plain"``: a double convolution (3×3 conv, norm, ReLU, twice) per level, 2×2 max-pool
  between levels, ``base_channels · 2**i`` channels at level ``i``; ``depth`` levels below
  the full-resolution one (stride ``2**depth``).
- ``"resnet18"`` / ``"resnet50"``: the stem and four stages of
  :class:`lensloop.embed.resnet.ResNet` (stride 32), held under torchvision's parameter
  names (``conv1``, ``bn1``, ``layer1`` … ``layer4``; no ``fc``), so ImageNet checkpoints
  load through :meth:`UNet.load_encoder_state_dict`; passing an already-built (e.g.
  already-loaded) ResNet as ``encoder`` wraps it instead. The raw input is the decoder's
  full-resolution skip. With ``in_channels != 3`` the first convolution takes that many
  channels and 3-channel weights are adapted when loaded (summed for one channel, cycled
  and rescaled otherwise).

The decoder is the same for both: at each level a 1×1 convolution narrows the deeper
features, bilinear upsampling brings them to the skip's size (no transposed convolutions,
so no checkerboard artefacts; the 1×1 convolution runs before the upsampling, which gives
the same result for a quarter of the cost since both are linear), the skip is concatenated
and a double convolution follows. Decoder widths are ``base_channels · 2**min(i, 3)`` at
level ``i``; a 1×1 convolution makes the ``out_channels`` head. ``norm`` picks BatchNorm or
GroupNorm for the plain encoder and the decoder; a ResNet encoder keeps its BatchNorm.

The network does not normalise its input: ImageNet weights expect ImageNet-normalised RGB,
and 16-bit data is scaled by the caller. The smallest input side, :attr:`UNet.min_size`, is
checked in torch; an exported ONNX graph does not check it (reflect padding needs fewer
padded rows than the input has). :func:`~lensloop.embed.export.export_onnx` builds
3-channel example inputs; export other channel counts with ``torch.onnx.export(...,
dynamo=True, dynamic_shapes=...)`` directly, as its tests do.

Example:
    >>> import torch
    >>> from lensloop.tasks.unet import UNet
    >>> _ = torch.manual_seed(0)
    >>> model = UNet(1, 1, base_channels=8, depth=3).eval()
    >>> model(torch.zeros(2, 1, 37, 53)).shape
    torch.Size([2, 1, 37, 53])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import Tensor, nn

from lensloop.embed.resnet import (
    BasicBlock,
    ResNet,
    ResNetName,
    build_resnet,
    load_state_dict_checked,
)
from lensloop.embed.weights import unwrap_state_dict
from lensloop.errors import ConfigError, ImageError, UnknownNameError

__all__ = [
    "UNET_ENCODERS",
    "EncoderName",
    "NormName",
    "PlainEncoder",
    "ResNetEncoder",
    "UNet",
    "adapt_input_conv",
]

EncoderName = Literal["plain", "resnet18", "resnet50"]
"""The encoders :class:`UNet` can build by name."""

NormName = Literal["batch", "group"]
"""Normalisation layers of the plain encoder and the decoder."""

UNET_ENCODERS: tuple[str, ...] = ("plain", *get_args(ResNetName))
"""Valid ``encoder`` names: ``"plain"`` and every architecture of :mod:`lensloop.embed.resnet`."""

_DEFAULT_PLAIN_DEPTH = 4
_RESNET_DEPTH = 5  # stem (stride 2), max-pool + layer1 (4), layer2 (8), layer3 (16), layer4 (32)
_MAX_PLAIN_DEPTH = 6
_MAX_DECODER_DOUBLINGS = 3
_GROUPS = 8
_RGB = 3


def _norm(kind: NormName, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(channels, _GROUPS), channels)


class DoubleConv(nn.Sequential):
    """(3×3 convolution → norm → ReLU) twice, keeping the spatial size.

    Args:
        in_channels: Channels coming in.
        out_channels: Channels of both convolutions.
        norm: ``"batch"`` or ``"group"``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: NormName) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Narrow, upsample to the skip's size, concatenate the skip, double convolution.

    Args:
        in_channels: Channels of the deeper features.
        skip_channels: Channels of the skip connection.
        out_channels: Channels going out (also the width after narrowing).
        norm: ``"batch"`` or ``"group"``.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, norm: NormName
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv = DoubleConv(out_channels + skip_channels, out_channels, norm)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: float32 ``(N, in_channels, h, w)``.
            skip: float32 ``(N, skip_channels, H, W)``, ``H, W`` about ``2h, 2w``.

        Returns:
            float32 ``(N, out_channels, H, W)``.
        """
        x = F.interpolate(
            self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False
        )
        result: Tensor = self.conv(torch.cat([x, skip], dim=1))
        return result


class PlainEncoder(nn.Module):
    """Double convolutions with 2×2 max-pooling between them.

    Args:
        in_channels: Channels of the input.
        base_channels: Channels at full resolution; doubled at each level.
        depth: Number of poolings (the stride is ``2**depth``).
        norm: ``"batch"`` or ``"group"``.

    Attributes:
        channels: Channels of the ``depth + 1`` feature maps :meth:`forward` returns.
        arch: ``"plain"``.
    """

    def __init__(self, in_channels: int, base_channels: int, depth: int, norm: NormName) -> None:
        super().__init__()
        self.channels = tuple(base_channels << i for i in range(depth + 1))
        stages = [DoubleConv(in_channels, self.channels[0], norm)]
        stages.extend(
            DoubleConv(self.channels[i - 1], self.channels[i], norm) for i in range(1, depth + 1)
        )
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.arch = "plain"

    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the features of every level.

        Args:
            x: float32 ``(N, in_channels, H, W)``, ``H`` and ``W`` multiples of ``2**depth``.

        Returns:
            ``depth + 1`` float32 tensors; the ``i``-th is ``(N, channels[i], H / 2**i,
            W / 2**i)``.
        """
        features = [self.stages[0](x)]
        for stage in self.stages[1:]:
            features.append(stage(self.pool(features[-1])))
        return features


class ResNetEncoder(nn.Module):
    """The stem and four stages of a :class:`~lensloop.embed.resnet.ResNet`, without ``fc``.

    The submodules keep torchvision's names, so this module's ``state_dict`` is the
    ResNet's without the ``fc.`` entries. The modules are shared with ``resnet``, not
    copied; only ``conv1`` is replaced (by a fresh convolution) when ``in_channels != 3``.

    Args:
        resnet: The network to take the layers from.
        in_channels: Channels of the input.

    Attributes:
        channels: Channels of the six feature maps :meth:`forward` returns (the input,
            the stem, ``layer1`` … ``layer4``).
        arch: The ResNet's name, from its layout (``"resnet18"``, ``"resnet50"``, ...).
    """

    def __init__(self, resnet: ResNet, in_channels: int = _RGB) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        if in_channels != resnet.conv1.in_channels:
            old = resnet.conv1
            pad = old.padding
            padding = pad if isinstance(pad, str) else (pad[0], pad[1])
            self.conv1 = nn.Conv2d(
                in_channels,
                old.out_channels,
                kernel_size=(old.kernel_size[0], old.kernel_size[1]),
                stride=(old.stride[0], old.stride[1]),
                padding=padding,
                bias=False,
            )
            with torch.no_grad():
                self.conv1.weight.copy_(adapt_input_conv(old.weight, in_channels))
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        dim = resnet.feature_dim
        self.channels = (in_channels, self.conv1.out_channels, dim // 8, dim // 4, dim // 2, dim)
        blocks = sum(len(layer) for layer in (self.layer1, self.layer2, self.layer3, self.layer4))
        convs_per_block = 2 if isinstance(self.layer1[0], BasicBlock) else 3
        self.arch = f"resnet{2 + blocks * convs_per_block}"

    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the features of every level.

        Args:
            x: float32 ``(N, in_channels, H, W)``, ``H`` and ``W`` multiples of 32.

        Returns:
            Six float32 tensors at strides 1 (``x`` itself), 2, 4, 8, 16 and 32.
        """
        stem = self.relu(self.bn1(self.conv1(x)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [x, stem, c1, c2, c3, c4]


class UNet(nn.Module):
    """A U-Net with a plain or ResNet encoder; output size equals input size.

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the output (1 for a density map, the number of classes
            for segmentation logits).
        base_channels: Width at full resolution; the plain encoder doubles it per level and
            the decoder uses ``base_channels · 2**min(level, 3)``.
        depth: Poolings of the plain encoder, 1 to 6 (``None``: 4, stride 16). A ResNet
            encoder always has 5 (stride 32); ``None`` or 5 are accepted with it.
        encoder: One of :data:`UNET_ENCODERS`, or a built
            :class:`~lensloop.embed.resnet.ResNet` (any torchvision layout, e.g. one
            already loaded with ImageNet weights) whose modules the encoder then shares
            (training the U-Net changes them; ``fc`` is left out). A ResNet named here
            starts from :func:`~lensloop.embed.resnet.build_resnet`'s random
            initialisation (seed it with :func:`torch.manual_seed`); load ImageNet weights
            with :meth:`load_encoder_state_dict`.
        norm: ``"batch"`` or ``"group"`` (GroupNorm with up to 8 groups; better with small
            batches) for the plain encoder and the decoder.

    Attributes:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        stride: Total downsampling; inputs are padded to a multiple of it.
        encoder_name: ``"plain"`` or the ResNet's name (e.g. ``"resnet18"``).
        encoder: :class:`PlainEncoder` or :class:`ResNetEncoder`.

    Raises:
        ConfigError: A channel count or ``depth`` is out of range, or ``norm`` is unknown.
        UnknownNameError: ``encoder`` is not in :data:`UNET_ENCODERS`.

    Example:
        >>> from lensloop.embed.resnet import build_resnet
        >>> resnet = build_resnet("resnet18")  # e.g. then load_state_dict_checked(...)
        >>> UNet(1, 2, encoder=resnet).encoder_name
        'resnet18'
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base_channels: int = 32,
        depth: int | None = None,
        encoder: EncoderName | ResNet = "plain",
        norm: NormName = "batch",
    ) -> None:
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("out_channels", out_channels)
        _check_positive("base_channels", base_channels)
        if norm not in get_args(NormName):
            raise ConfigError(
                f"norm must be one of {', '.join(get_args(NormName))}; received {norm!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.encoder: PlainEncoder | ResNetEncoder
        if isinstance(encoder, ResNet):
            _check_resnet_depth(depth, "a ResNet")
            self.encoder = ResNetEncoder(encoder, in_channels)
        elif encoder == "plain":
            depth = _DEFAULT_PLAIN_DEPTH if depth is None else depth
            if isinstance(depth, bool) or not 1 <= depth <= _MAX_PLAIN_DEPTH:
                raise ConfigError(
                    f"depth must be between 1 and {_MAX_PLAIN_DEPTH} for the plain encoder; "
                    f"received {depth!r}"
                )
            self.encoder = PlainEncoder(in_channels, base_channels, depth, norm)
        elif encoder in get_args(ResNetName):
            _check_resnet_depth(depth, f"a {encoder}")
            self.encoder = ResNetEncoder(build_resnet(encoder), in_channels)
        else:
            raise UnknownNameError("U-Net encoder", str(encoder), UNET_ENCODERS)
        self.encoder_name = self.encoder.arch
        self._build_decoder(base_channels, norm)

    def _build_decoder(self, base_channels: int, norm: NormName) -> None:
        channels = self.encoder.channels
        levels = len(channels) - 1
        self.stride = 1 << levels
        widths = [base_channels << min(i, _MAX_DECODER_DOUBLINGS) for i in range(levels)]
        deeper = [*widths[1:], channels[-1]]
        self.decoder = nn.ModuleList(
            UpBlock(deeper[i], channels[i], widths[i], norm) for i in range(levels)
        )
        self.head = nn.Conv2d(widths[0], self.out_channels, 1)
        own = (
            [self.decoder]
            if isinstance(self.encoder, ResNetEncoder)
            else [self.encoder, self.decoder]
        )
        for part in own:
            for module in part.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    @property
    def min_size(self) -> int:
        """Smallest height and width :meth:`forward` accepts (``stride // 2 + 1``).

        Reflect padding needs fewer padded rows than the input has.
        """
        return self.stride // 2 + 1

    def forward(self, x: Tensor) -> Tensor:
        """Predict a map of the input's size.

        Args:
            x: float32 ``(N, in_channels, H, W)`` with ``H, W >=`` :attr:`min_size`.

        Returns:
            float32 ``(N, out_channels, H, W)`` (raw: no activation is applied).

        Raises:
            ImageError: ``x`` is not 4-D with ``in_channels`` channels, or is too small.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ImageError(
                f"UNet expects a (N, {self.in_channels}, H, W) tensor; received shape "
                f"{tuple(x.shape)}"
            )
        height, width = x.shape[-2], x.shape[-1]
        if 2 * min(height, width) <= self.stride:
            raise ImageError(
                f"UNet with stride {self.stride} needs height and width of at least "
                f"{self.min_size} pixels; received {height}x{width}; pad the image first"
            )
        x = F.pad(x, (0, (-width) % self.stride, 0, (-height) % self.stride), mode="reflect")
        features = self.encoder(x)
        y = features[-1]
        for level in range(len(self.decoder) - 1, -1, -1):
            y = self.decoder[level](y, features[level])
        out: Tensor = self.head(y)
        return out[..., :height, :width]

    def load_encoder_state_dict(
        self, state_dict: Mapping[str, Any], *, source: str = "checkpoint"
    ) -> None:
        """Load ResNet weights in torchvision's names (e.g. ImageNet) into the encoder.

        ``fc.`` entries are ignored. With ``in_channels != 3``, a 3-channel ``conv1.weight``
        is adapted by :func:`adapt_input_conv`. Any other missing, unexpected or
        mis-shaped key is refused and nothing is loaded.

        Args:
            state_dict: Name → tensor mapping, possibly wrapped (see
                :func:`~lensloop.embed.resnet.load_state_dict_checked`).
            source: How to name the checkpoint in error messages (e.g. its path).

        Raises:
            ConfigError: The encoder is ``"plain"``, or the checkpoint does not fit it.
        """
        if not isinstance(self.encoder, ResNetEncoder):
            raise ConfigError(
                "load_encoder_state_dict needs a ResNet encoder; this UNet's encoder is "
                f"{self.encoder_name!r}; build it with encoder='resnet18' or 'resnet50'"
            )
        weights = unwrap_state_dict(state_dict, source=source)
        conv1 = weights.get("conv1.weight")
        if conv1 is not None and conv1.ndim == 4 and conv1.shape[1] != self.in_channels:
            weights = {**weights, "conv1.weight": adapt_input_conv(conv1, self.in_channels)}
        load_state_dict_checked(self.encoder, weights, ignore_prefixes=("fc.",), source=source)


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt first-layer convolution weights to another number of input channels.

    One channel gets the sum over the original channels (a grey image then gives the
    response an RGB image with equal channels would); more channels cycle through the
    original ones and are scaled by ``old / new`` so activations keep their size.

    Args:
        weight: float ``(out, in_old, kh, kw)``.
        in_channels: The new number of input channels.

    Returns:
        A new tensor ``(out, in_channels, kh, kw)``.

    Raises:
        ConfigError: ``in_channels`` is below 1 or ``weight`` is not 4-D.
    """
    _check_positive("in_channels", in_channels)
    if weight.ndim != 4:
        raise ConfigError(f"expected 4-D convolution weights; received shape {tuple(weight.shape)}")
    old = weight.shape[1]
    if in_channels == old:
        return weight.detach().clone()
    if in_channels == 1:
        return weight.detach().sum(dim=1, keepdim=True)
    repeats = -(-in_channels // old)
    return weight.detach().repeat(1, repeats, 1, 1)[:, :in_channels] * (old / in_channels)


def _check_resnet_depth(depth: int | None, what: str) -> None:
    if depth is not None and depth != _RESNET_DEPTH:
        raise ConfigError(
            f"{what} encoder has a fixed depth of {_RESNET_DEPTH} (stride 32); received "
            f"depth={depth!r}; leave depth unset"
        )


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; received {value!r}")
