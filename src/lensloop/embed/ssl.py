"""Self-supervised pretraining (SimCLR) of an image encoder on a project's own images.

:func:`train_ssl` learns an encoder without labels: every image is augmented twice, and a
projection head on the encoder is trained so that the two views of one image are closer
(cosine) than the views of any other image in the batch (the NT-Xent loss of SimCLR, Chen
et al. 2020, :func:`nt_xent_loss`). The trained encoder's pooled features are exported to
ONNX with a JSON sidecar, so :class:`~lensloop.embed.onnx_backbone.OnnxBackbone`
(``onnx:PATH``) embeds with it like any other model.

Images are prepared once by the package's input rule (:func:`~lensloop.embed.base.
to_model_input`: [0, 1] intensities, three channels, longest side resized, padded square
with the border's median), at ``input_size`` plus 15 % so crops have room. Augmentations
that suit microscopy run on batches of tensors (no torchvision), each drawn from a
seeded :class:`torch.Generator`:

- random resized crop, area scale 0.5–1, aspect ratio 3/4–4/3;
- flips and 90° rotations (the dihedral group; a microscope has no "up");
- intensity jitter: brightness ±0.2, contrast ×0.7–1.3, gamma 0.7–1.4;
- gaussian blur with probability 0.5, sigma 0.1–1.5 pixels.

Encoders: ``"small"`` (four conv stages, 32→256 channels, ~1.2 M parameters; fast on a
CPU) or ``"resnet18"`` / ``"resnet50"`` from :mod:`lensloop.embed.resnet` (torchvision
layout; for inputs under 128 pixels the stem is replaced by a 3×3 stride-1 convolution
without max-pool, as for CIFAR, since a 4× downsampling stem leaves too few pixels).

Measured on the 105-image plankton demo set (``bench/bench_backbones.py``), SimCLR from
scratch stays well below ImageNet-pretrained features (about 0.7 against 0.9 five-fold
accuracy for EfficientNet-Lite0) and below the hand-crafted ``features``: 105 images are
far too few to learn good features from. Use it on large collections that no pretrained
model fits, or as a start for fine-tuning, not as a default. ``"small"`` is the default
encoder because it trains at about 8 s per epoch on 105 images at 64 px on a 2-core CPU,
where ResNet-18 takes about 50 s.

Example:
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from lensloop.embed.ssl import train_ssl
    >>> rng = np.random.default_rng(0)
    >>> images = [rng.integers(0, 255, (40, 40), dtype=np.uint8) for _ in range(16)]
    >>> train_ssl(images, arch="small", input_size=32, epochs=1,
    ...           out_path=Path("ssl.onnx"))  # doctest: +SKIP
    PosixPath('ssl.onnx')
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from lensloop.embed.base import InputSpec, to_model_input
from lensloop.errors import ConfigError, ImageError, UnknownNameError

__all__ = [
    "SSL_VERSION",
    "Augment",
    "SmallEncoder",
    "SslArch",
    "build_encoder",
    "checkpoint_path",
    "nt_xent_loss",
    "train_ssl",
]

logger = logging.getLogger(__name__)

SslArch = Literal["small", "resnet18", "resnet50"]
"""Encoders :func:`train_ssl` can train."""

SSL_VERSION = "simclr-1"
"""Written to the sidecar's ``version`` prefix; bump when training changes meaning."""

_CROP_MARGIN = 1.15
_SMALL_WIDTHS = (32, 64, 128, 256)
_CIFAR_STEM_BELOW = 128
_MIN_INPUT = 16


class SmallEncoder(nn.Module):
    """A compact CNN: four stages of two 3×3 conv-BN-ReLU, the first of each strided.

    Args:
        widths: Channels of the four stages; the last is the feature dimension.

    Attributes:
        feature_dim: Length of the pooled feature vector.
    """

    def __init__(self, widths: tuple[int, ...] = _SMALL_WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers += [
                nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            cin = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        """Compute pooled features.

        Args:
            x: float32 ``(N, 3, H, W)``.

        Returns:
            float32 ``(N, feature_dim)``.
        """
        features: Tensor = self.body(x)
        return features.mean(dim=(2, 3))


def build_encoder(arch: SslArch, *, input_size: int) -> tuple[nn.Module, int]:
    """Build a randomly initialised encoder mapping ``(N, 3, H, W)`` to pooled features.

    Args:
        arch: ``"small"``, ``"resnet18"`` or ``"resnet50"``.
        input_size: Training input size; ResNets get a CIFAR-style stem below 128 pixels.

    Returns:
        ``(encoder, feature_dim)``.

    Raises:
        UnknownNameError: ``arch`` is not one of those.
    """
    if arch == "small":
        small = SmallEncoder()
        return small, small.feature_dim
    if arch in ("resnet18", "resnet50"):
        from lensloop.embed.resnet import ResNetFeatures, build_resnet

        resnet = build_resnet(arch)
        if input_size < _CIFAR_STEM_BELOW:
            resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(resnet.conv1.weight, mode="fan_out", nonlinearity="relu")
            resnet.maxpool = nn.Identity()  # type: ignore[assignment]
        return ResNetFeatures(resnet), resnet.feature_dim
    raise UnknownNameError("SSL encoder", str(arch), get_args(SslArch))


def nt_xent_loss(z1: Tensor, z2: Tensor, *, temperature: float = 0.2) -> Tensor:
    """SimCLR's normalised-temperature cross-entropy between two views of a batch.

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are the positive pair; the other
    ``2N − 2`` rows are negatives.

    Args:
        z1: float ``(N, D)`` projections of the first views.
        z2: float ``(N, D)`` projections of the second views.
        temperature: Softmax temperature (> 0).

    Returns:
        Scalar loss tensor (mean over the ``2N`` anchors).

    Raises:
        ConfigError: Shapes differ, fewer than 2 rows, or a non-positive temperature.
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ConfigError(
            f"nt_xent_loss needs two (N, D) tensors of the same shape with N >= 2; got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -1e9)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


class Augment:
    """Random views of a batch, on tensors, from a seeded generator.

    Args:
        input_size: Side of the output views.
        generator: Source of every random choice.
        crop_scale: Range of the crop's area as a fraction of the image.
    """

    def __init__(
        self,
        *,
        input_size: int,
        generator: torch.Generator,
        crop_scale: tuple[float, float] = (0.5, 1.0),
    ) -> None:
        self.input_size = input_size
        self.generator = generator
        self.crop_scale = crop_scale

    def _uniform(self, n: int, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    def __call__(self, images: Tensor) -> Tensor:
        """Make one random view of each image.

        Args:
            images: float32 ``(N, 3, S, S)`` in [0, 1].

        Returns:
            float32 ``(N, 3, input_size, input_size)`` in [0, 1].
        """
        n = images.shape[0]
        # Random resized crop + dihedral transform as one affine sampling grid.
        scale = self._uniform(n, *self.crop_scale)
        log_ratio = self._uniform(n, math.log(3 / 4), math.log(4 / 3))
        ratio = torch.exp(log_ratio)
        half_w = torch.sqrt(scale * ratio).clamp(max=1.0)
        half_h = torch.sqrt(scale / ratio).clamp(max=1.0)
        centre_x = (1 - half_w) * self._uniform(n, -1.0, 1.0)
        centre_y = (1 - half_h) * self._uniform(n, -1.0, 1.0)
        quarter = torch.randint(0, 4, (n,), generator=self.generator).float() * (math.pi / 2)
        flip = torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(quarter), torch.sin(quarter)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos * half_w * flip
        theta[:, 0, 1] = -sin * half_h
        theta[:, 1, 0] = sin * half_w * flip
        theta[:, 1, 1] = cos * half_h
        theta[:, 0, 2] = centre_x
        theta[:, 1, 2] = centre_y
        theta = theta.to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, [n, 3, self.input_size, self.input_size], align_corners=False)
        views = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        # Intensity: gamma, contrast about the image mean, brightness.
        device = images.device
        gamma = torch.exp(self._uniform(n, math.log(0.7), math.log(1.4)))[:, None, None, None]
        views = views.clamp(0.0, 1.0) ** gamma.to(device)
        contrast = self._uniform(n, 0.7, 1.3)[:, None, None, None].to(device)
        mean = views.mean(dim=(1, 2, 3), keepdim=True)
        views = (views - mean) * contrast + mean
        views = views + self._uniform(n, -0.2, 0.2)[:, None, None, None].to(device)
        views = self._blur(views)
        return views.clamp(0.0, 1.0)

    def _blur(self, views: Tensor, probability: float = 0.5) -> Tensor:
        n = views.shape[0]
        sigma = self._uniform(n, 0.1, 1.5)
        chosen = torch.rand(n, generator=self.generator) < probability
        if not bool(chosen.any()):
            return views
        radius = 3
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma[:, None] ** 2))
        kernels = (kernels / kernels.sum(dim=1, keepdim=True)).to(views.device)  # (N, K)
        out = views.clone()
        for index in torch.nonzero(chosen).flatten().tolist():
            kernel = kernels[index]
            image = views[index : index + 1]
            padded = F.pad(image, (radius, radius, 0, 0), mode="replicate")
            image = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
            padded = F.pad(image, (0, 0, radius, radius), mode="replicate")
            out[index : index + 1] = F.conv2d(
                padded, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3
            )
        return out


class _Normalised(nn.Module):
    """Encoder whose input is normalised by fixed mean/std (used only during training)."""

    def __init__(self, encoder: nn.Module, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.encoder((x - self.mean) / self.std)
        return out


def _collect(
    images: Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]],
) -> Iterable[np.ndarray]:
    if callable(images):
        return images()
    return images


def _prepare_all(
    images: Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]], size: int
) -> Tensor:
    raw = InputSpec(size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    prepared: list[np.ndarray] = []
    for index, image in enumerate(_collect(images)):
        array = np.asarray(image)
        try:
            prepared.append(to_model_input(array, raw))
        except ValueError as exc:
            raise ImageError(f"image {index} (shape {array.shape}) cannot be used: {exc}") from exc
    return torch.from_numpy(np.stack(prepared)) if prepared else torch.empty(0, 3, size, size)


def checkpoint_path(onnx_path: Path) -> Path:
    """Where :func:`train_ssl` keeps the torch weights of the encoder it exported."""
    return Path(onnx_path).with_suffix(".pt")


def train_ssl(
    images: Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]],
    *,
    out_path: Path,
    arch: SslArch = "small",
    input_size: int = 96,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    temperature: float = 0.2,
    projection_dim: int = 128,
    seed: int = 0,
) -> Path:
    """Train an encoder with SimCLR on unlabelled images and export it to ONNX.

    Writes ``out_path`` (the encoder's pooled features, dynamic batch and image size, input
    ``(N, 3, H, W)`` normalised by the sidecar's mean/std) and ``out_path + ".json"``::

        {"input_size": 96, "mean": [...], "std": [...], "output": "features",
         "arch": "small", "version": "simclr-1-small-96px-seed0-<hash>"}

    and the encoder's torch weights at :func:`checkpoint_path` (``out_path`` with the suffix
    ``.pt``), from which ``lensloop train --method finetune --weights ssl`` starts.

    which :class:`~lensloop.embed.onnx_backbone.OnnxBackbone` reads. ``mean`` and ``std``
    are the per-channel statistics of the prepared training images. Everything random
    (initialisation, batch order, augmentations) follows ``seed``; on one machine two runs
    with the same arguments give the same weights.

    Args:
        images: The images ``(H, W[, C])`` in native dtype, or a function returning an
            iterable of them (called once). At least 2 images.
        out_path: Destination ``.onnx`` file; its folder is created.
        arch: ``"small"`` (fast), ``"resnet18"`` or ``"resnet50"``.
        input_size: Side of the training views (and the sidecar's ``input_size``).
        epochs: Passes over the images.
        batch_size: Most images per step (each gives two views); an epoch is cut into
            equal batches (of at least 2) so that every image is used.
        learning_rate: AdamW learning rate (cosine-annealed to zero).
        weight_decay: AdamW weight decay.
        temperature: NT-Xent temperature.
        projection_dim: Output size of the projection head (dropped at export).
        seed: Seeds initialisation, order and augmentations.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: An argument is out of range.
        UnknownNameError: ``arch`` is not known.
        ImageError: An image has an unusable layout.
        LensloopError: The ONNX export failed.
    """
    if arch not in get_args(SslArch):
        raise UnknownNameError("SSL encoder", str(arch), get_args(SslArch))
    if input_size < _MIN_INPUT:
        raise ConfigError(f"input_size must be at least {_MIN_INPUT} pixels, got {input_size}")
    if epochs < 1 or batch_size < 2 or projection_dim < 1:
        raise ConfigError(
            f"need epochs >= 1, batch_size >= 2 and projection_dim >= 1; got epochs={epochs}, "
            f"batch_size={batch_size}, projection_dim={projection_dim}"
        )
    if learning_rate <= 0 or weight_decay < 0 or temperature <= 0:
        raise ConfigError(
            f"need learning_rate > 0, weight_decay >= 0 and temperature > 0; got "
            f"{learning_rate}, {weight_decay}, {temperature}"
        )
    started = time.perf_counter()
    data = _prepare_all(images, round(input_size * _CROP_MARGIN))
    n_images = data.shape[0]
    if n_images < 2:
        raise ConfigError(f"SimCLR needs at least 2 images to contrast, got {n_images}")
    batch_size = min(batch_size, n_images)
    mean = data.mean(dim=(0, 2, 3))
    std = data.std(dim=(0, 2, 3)).clamp(min=1e-3)

    with torch.random.fork_rng(devices=[]):  # seed locally; leave the caller's RNG alone
        torch.manual_seed(seed)
        encoder, feature_dim = build_encoder(arch, input_size=input_size)
        model = _Normalised(encoder, mean, std)
        head = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, projection_dim),
        )
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(input_size=input_size, generator=generator)
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    # Every image in every epoch: the shuffled order is cut into equal-sized batches of at
    # most batch_size (105 images at 32 give 27 + 26 + 26 + 26) and at least 2 (BatchNorm
    # and the contrastive loss need pairs), so no image is dropped.
    steps_per_epoch = min(math.ceil(n_images / batch_size), n_images // 2)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    model.train()
    head.train()
    for epoch in range(epochs):
        order = torch.randperm(n_images, generator=generator)
        losses = []
        for indices in torch.tensor_split(order, steps_per_epoch):
            batch = data[indices]
            z1 = head(model(augment(batch)))
            z2 = head(model(augment(batch)))
            loss = nt_xent_loss(z1, z2, temperature=temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        logger.info("ssl epoch %d/%d: loss %.4f", epoch + 1, epochs, float(np.mean(losses)))

    from lensloop.embed.export import OUTPUT_NAME, export_onnx

    out_path = Path(out_path)
    export_onnx(encoder, out_path, input_size=input_size, seed=seed)
    # The torch weights too, so fine-tuning can start from this encoder (--weights ssl).
    torch.save(encoder.state_dict(), checkpoint_path(out_path))
    mean_list = [round(float(v), 6) for v in mean]
    std_list = [round(float(v), 6) for v in std]
    from lensloop.embed.weights import file_sha256

    sidecar = {
        "input_size": input_size,
        "mean": mean_list,
        "std": std_list,
        "output": OUTPUT_NAME,
        "arch": arch,
        "version": f"{SSL_VERSION}-{arch}-{input_size}px-seed{seed}-{file_sha256(out_path)[:8]}",
    }
    sidecar_path = out_path.with_name(out_path.name + ".json")
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "trained %s with SimCLR on %d images in %.1f s; wrote %s",
        arch,
        n_images,
        time.perf_counter() - started,
        out_path,
    )
    return out_path
