"""Export a torch image model to ONNX with dynamic batch and image size, and prove it works.

:func:`export_onnx` uses torch's ``torch.export``-based exporter (the default since torch
2.9; the TorchScript exporter is deprecated) with the batch, height and width of the one
input left dynamic. The file is written through a temporary file and :func:`os.replace`
only after ONNX Runtime has run it on random batches at two batch sizes and two image
sizes and matched torch eager mode, so a file at ``path`` is always a verified export.

The exporter's lowest supported opset is 18; asking for less is refused rather than left
to torch's best-effort down-conversion, which fails on ResNets.

Example:
    >>> import torch
    >>> from pathlib import Path
    >>> from lensloop.embed.export import export_onnx
    >>> from lensloop.embed.resnet import ResNetFeatures, build_resnet
    >>> _ = torch.manual_seed(0)
    >>> model = ResNetFeatures(build_resnet("resnet18"))
    >>> export_onnx(model, Path("resnet18.onnx"), input_size=224)  # doctest: +SKIP
    PosixPath('resnet18.onnx')
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lensloop.errors import ConfigError, LensloopError

__all__ = ["INPUT_NAME", "MIN_OPSET", "OUTPUT_NAME", "export_onnx", "verify_onnx"]

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
"""Name of the exported graph's input, float32 ``(N, C, H, W)``."""

OUTPUT_NAME = "features"
"""Name of the exported graph's output."""

MIN_OPSET = 18
"""Lowest ONNX opset the torch exporter implements directly."""

_DEFAULT_OPSET = 18
_MIN_INPUT_SIZE = 8
_EXPORT_BATCH = 2  # a batch of 1 would let torch.export specialise the batch dimension
# Emitted by torch's own pytree code during export (torch 2.13); nothing a caller can fix.
_TORCH_INTERNAL_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# torch's exporter logs one warning per torchvision operator when torchvision is absent.
_NOISY_TORCH_LOGGER = "torch.onnx._internal.exporter._registration"


def export_onnx(
    model: nn.Module,
    path: Path,
    *,
    input_size: int,
    opset: int = _DEFAULT_OPSET,
    atol: float = 1e-4,
    seed: int = 0,
    output_name: str = OUTPUT_NAME,
    channels: int = 3,
) -> Path:
    """Export ``model`` to ONNX with dynamic batch, height and width, verified by ONNX Runtime.

    The model is traced in eval mode on a ``(2, channels, input_size, input_size)`` input
    (its previous train/eval mode is restored afterwards). The graph's input is named
    :data:`INPUT_NAME` and its output ``output_name``. Before the file is moved into
    place, :func:`verify_onnx` compares ONNX Runtime with torch eager mode at batch 1 ×
    ``input_size`` and batch 3 × ``1.5 · input_size``.

    Args:
        model: Maps float32 ``(N, channels, H, W)`` to one float32 tensor ``(N, ...)``.
        path: Destination ``.onnx`` file; its folder is created. An existing file is
            replaced atomically.
        input_size: Side of the square example input, in pixels (at least 8).
        opset: ONNX opset, at least :data:`MIN_OPSET`.
        atol: Largest difference allowed between ONNX Runtime and torch, relative to the
            largest torch output when that exceeds 1 (see :func:`verify_onnx`).
        seed: Seeds the random example and test inputs.
        output_name: Name of the graph's output (:data:`OUTPUT_NAME` by default).
        channels: Channels of the input (3 for the image models; 1 for a grey counter).

    Returns:
        ``path``.

    Raises:
        ConfigError: ``input_size`` or ``opset`` is out of range.
        LensloopError: The exporter failed, or the exported model does not reproduce
            torch's output; nothing is written to ``path`` then.
    """
    if input_size < _MIN_INPUT_SIZE:
        raise ConfigError(f"input_size must be at least {_MIN_INPUT_SIZE} pixels, got {input_size}")
    if opset < MIN_OPSET:
        raise ConfigError(
            f"opset {opset} is below {MIN_OPSET}, the lowest opset torch's ONNX exporter "
            f"implements; pass opset={MIN_OPSET} or higher (ONNX Runtime >= 1.14 runs it)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        example = torch.randn(_EXPORT_BATCH, channels, input_size, input_size, generator=generator)
        dynamic = torch.export.Dim.DYNAMIC
        try:
            with _quiet_exporter():
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=[output_name],
                    dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
                    opset_version=opset,
                    verbose=False,
                )
                if program is None:  # only the TorchScript exporter returns None
                    raise RuntimeError("torch.onnx.export returned no program")
                program.save(tmp, external_data=False)
        except Exception as exc:  # the exporter raises many internal error types
            root = _root_cause(exc)
            raise LensloopError(
                f"exporting {type(model).__name__} to ONNX failed ({type(root).__name__}: "
                f"{_first_line(root)}); the model must map one float32 (N, C, H, W) tensor to "
                "one tensor without data-dependent control flow"
            ) from exc
        sizes = ((1, input_size), (3, input_size + input_size // 2))
        verify_onnx(
            model, tmp, sizes=sizes, atol=atol, seed=seed, name=str(path), channels=channels
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    logger.info("exported %s to %s (opset %d)", type(model).__name__, path, opset)
    return path


def verify_onnx(
    model: nn.Module,
    path: Path,
    *,
    sizes: tuple[tuple[int, int], ...],
    atol: float = 1e-4,
    seed: int = 0,
    name: str | None = None,
    channels: int = 3,
) -> float:
    """Check that an ONNX file reproduces ``model`` in eval mode on random inputs.

    For each ``(batch, side)`` a float32 ``(batch, channels, side, side)`` standard-normal
    input is
    run through ONNX Runtime (CPU) and torch; the check fails when the largest absolute
    difference exceeds ``atol · max(1, max |torch output|)``.

    Args:
        model: The torch model, already in the mode to compare (eval).
        path: The ONNX file, with one input of layout ``(N, channels, H, W)``.
        sizes: ``(batch, side)`` pairs to test.
        atol: Tolerance, absolute for outputs up to 1 and relative beyond.
        seed: Seeds the random inputs.
        name: How to call the model in error messages; ``path`` by default.
        channels: Channels of the input.

    Returns:
        The largest absolute difference seen.

    Raises:
        LensloopError: ONNX Runtime cannot load or run the file, the output shapes differ,
            or the difference exceeds the tolerance.
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    label = name if name is not None else str(path)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1  # small inputs; immune to a busy machine's spin-waits
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        input_name = session.get_inputs()[0].name
    except Exception as exc:  # onnxruntime raises its own pybind error types
        raise LensloopError(
            f"ONNX Runtime cannot load the exported model {label}: {_first_line(exc)}"
        ) from exc
    generator = torch.Generator().manual_seed(seed + 1)
    worst = 0.0
    for batch, side in sizes:
        x = torch.randn(batch, channels, side, side, generator=generator)
        shape = f"({batch}, {channels}, {side}, {side})"
        with torch.no_grad():
            expected = model(x).detach().cpu().numpy()
        try:
            got = np.asarray(session.run(None, {input_name: x.numpy()})[0])
        except Exception as exc:  # onnxruntime raises its own pybind error types
            raise LensloopError(
                f"ONNX Runtime cannot run the exported model {label} on a {shape} input: "
                f"{_first_line(exc)}"
            ) from exc
        if got.shape != expected.shape:
            raise LensloopError(
                f"the exported model {label} gives shape {got.shape} on a {shape} input where "
                f"torch gives {expected.shape}"
            )
        diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0
        limit = atol * max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
        logger.debug("ONNX vs torch at batch %d, %d px: max abs diff %.3g", batch, side, diff)
        if not diff <= limit:  # also catches NaN
            raise LensloopError(
                f"the exported model {label} differs from torch by {diff:.3g} (allowed "
                f"{limit:.3g}) on a {shape} input; the export is wrong, please report it with "
                "the model architecture"
            )
        worst = max(worst, diff)
    return worst


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    noisy = logging.getLogger(_NOISY_TORCH_LOGGER)
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=_TORCH_INTERNAL_WARNING, category=FutureWarning
            )
            yield
    finally:
        noisy.setLevel(level)


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
