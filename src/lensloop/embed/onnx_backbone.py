"""Any ONNX image model as a backbone (``onnx:PATH``), run with ONNX Runtime.

The model must take one float32 (or float16) input laid out ``(N, 3, H, W)`` and give, on
the chosen output, ``(N, D)`` vectors or an ``(N, C, h, w)`` feature map (global-average
pooled to ``(N, C)``). Images are prepared by the package-wide rule
(:func:`lensloop.embed.base.to_model_input`) with the input size and normalisation taken
from, in order of precedence:

1. the constructor's arguments (the CLI's flags);
2. a JSON sidecar next to the model, ``model.onnx.json`` or else ``model.json``::

       {"input_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "output": "features", "version": "my-model-v3"}

   (every key optional; ``output`` is an output name or index);
3. the model's own fixed input size, then ImageNet's statistics and 224 pixels.

The backbone's ``version`` is the sidecar's or constructor's ``version``, else the first 12
hex digits of the model file's sha256; a suffix is added when the preprocessing differs
from the default ``InputSpec()`` (``-64px``, ``-norm<hash>``), so vectors made with other
preprocessing never share a version.

The ONNX Runtime session is opened when the backbone is built (to check the model) and
again lazily in :meth:`OnnxBackbone.infer` after unpickling; it is never pickled. A model
with a fixed batch dimension is run in chunks of that size (one image at a time for 1).

Example:
    >>> from pathlib import Path
    >>> from lensloop.embed.onnx_backbone import OnnxBackbone
    >>> backbone = OnnxBackbone(Path("model.onnx"), input_size=224)  # doctest: +SKIP
    >>> backbone.dim, backbone.version  # doctest: +SKIP
    (768, '3f2a9c0d41be')
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lensloop.embed.base import Backbone, InputSpec, to_model_input
from lensloop.embed.weights import file_sha256
from lensloop.errors import ConfigError

__all__ = ["ONNX_PREFIX", "OnnxBackbone", "read_sidecar", "spec_version_suffix"]

logger = logging.getLogger(__name__)

ONNX_PREFIX = "onnx:"
"""Registry names of the form ``onnx:PATH`` select an :class:`OnnxBackbone`."""

_SIDECAR_KEYS = frozenset({"input_size", "mean", "std", "output", "version", "arch"})
_DEFAULT_SIZE = 224
_FLOAT_TYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}
_VERSION_HEX = 12


def spec_version_suffix(spec: InputSpec) -> str:
    """Tag a backbone version with the preprocessing when it is not the default.

    Args:
        spec: The input specification in use.

    Returns:
        ``""`` for ``InputSpec()``; otherwise ``"-<size>px"`` when the size differs and
        ``"-norm<6 hex>"`` when the mean or std differ, e.g. ``"-64px"``.
    """
    default = InputSpec()
    parts = []
    if spec.size != default.size:
        parts.append(f"{spec.size}px")
    if (spec.mean, spec.std) != (default.mean, default.std):
        text = json.dumps([list(spec.mean), list(spec.std)])
        parts.append("norm" + hashlib.sha256(text.encode()).hexdigest()[:6])
    return "".join(f"-{p}" for p in parts)


def read_sidecar(model_path: Path) -> dict[str, Any]:
    """Read the JSON sidecar of an ONNX model (``model.onnx.json``, else ``model.json``).

    Args:
        model_path: The ``.onnx`` file.

    Returns:
        The sidecar's settings (keys among ``input_size``, ``mean``, ``std``, ``output``,
        ``version``, and ``arch``: the network's architecture, informational), or ``{}``
        when there is no sidecar.

    Raises:
        ConfigError: The sidecar is not valid JSON, not an object, or has unknown keys or
            values of the wrong type.
    """
    candidates = [model_path.with_name(model_path.name + ".json")]
    if model_path.suffix:
        candidates.append(model_path.with_suffix(".json"))
    sidecar = next((p for p in candidates if p.is_file()), None)
    if sidecar is None:
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the model's sidecar {sidecar}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"sidecar {sidecar} must hold a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _SIDECAR_KEYS)
    if unknown:
        raise ConfigError(
            f"sidecar {sidecar} has unknown keys {unknown}; allowed: {sorted(_SIDECAR_KEYS)}"
        )
    checks: dict[str, Callable[[Any], bool]] = {
        "input_size": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "mean": _is_three_numbers,
        "std": _is_three_numbers,
        "output": lambda v: isinstance(v, str | int) and not isinstance(v, bool),
        "version": lambda v: isinstance(v, str) and bool(v.strip()),
        "arch": lambda v: isinstance(v, str) and bool(v.strip()),
    }
    for key, value in data.items():
        if not checks[key](value):
            raise ConfigError(
                f"sidecar {sidecar}: {key!r} = {value!r} is invalid; expected input_size an "
                "integer, mean and std 3 numbers each, output a name or index, version and "
                "arch non-empty strings"
            )
    logger.debug("read ONNX sidecar %s: %s", sidecar, data)
    return dict(data)


def _is_three_numbers(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


class OnnxBackbone(Backbone):
    """An ONNX image model run with ONNX Runtime (see the module docstring).

    Args:
        path: The ``.onnx`` file.
        input_size: Side of the square input; overrides the sidecar.
        mean: Per-channel mean (3 values); overrides the sidecar.
        std: Per-channel standard deviation (3 values); overrides the sidecar.
        output: Output name or index to use; default: the sidecar's, else the first.
        version: Version label; default: the sidecar's, else the file's sha256 prefix.
        intra_op_num_threads: ONNX Runtime threads per operator; ``None`` for its default
            (all cores).
        providers: ONNX Runtime execution providers, in order of preference.
        name: Registry name; ``"onnx:<path>"`` by default.

    Raises:
        ConfigError: The file is missing or not a loadable ONNX model; its input is not
            one float ``(N, 3, H, W)`` tensor; a fixed input size contradicts
            ``input_size``; the output does not exist or is not ``(N, D)`` / ``(N, C, h, w)``;
            or a sidecar or argument is invalid.
    """

    def __init__(
        self,
        path: Path,
        *,
        input_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output: str | int | None = None,
        version: str | None = None,
        intra_op_num_threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        name: str | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.name = name if name is not None else f"{ONNX_PREFIX}{self.path}"
        if not self.path.is_file():
            what = "is a folder, not a file" if self.path.is_dir() else "does not exist"
            raise ConfigError(f"ONNX model {self.path} {what}; pass the path of a .onnx file")
        if intra_op_num_threads is not None and intra_op_num_threads < 1:
            raise ConfigError(
                f"intra_op_num_threads must be at least 1 (or None for ONNX Runtime's "
                f"default), got {intra_op_num_threads}"
            )
        self.intra_op_num_threads = intra_op_num_threads
        self.providers = tuple(providers)
        sidecar = read_sidecar(self.path)
        self._sha256 = file_sha256(self.path)
        self._session: Any = None
        session = self._get_session()

        inputs = session.get_inputs()
        if len(inputs) != 1:
            listed = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ConfigError(
                f"ONNX model {self.path} has {len(inputs)} inputs ({listed}); lensloop feeds "
                "one image batch (N, 3, H, W), so export the model with a single input"
            )
        model_input = inputs[0]
        self._input_name: str = model_input.name
        if model_input.type not in _FLOAT_TYPES:
            raise ConfigError(
                f"ONNX model {self.path} takes {model_input.type} input {model_input.name!r}; "
                "lensloop feeds float32 (N, 3, H, W) images: export it with a float input"
            )
        self._input_dtype: type[np.floating[Any]] = _FLOAT_TYPES[model_input.type]
        fixed_size = self._check_input_shape(list(model_input.shape))
        batch_dim = model_input.shape[0]
        self._fixed_batch: int | None = batch_dim if isinstance(batch_dim, int) else None

        size = _first_not_none(input_size, sidecar.get("input_size"), fixed_size, _DEFAULT_SIZE)
        if fixed_size is not None and size != fixed_size:
            raise ConfigError(
                f"ONNX model {self.path} has a fixed {fixed_size}x{fixed_size} input but "
                f"input_size {size} was asked for; drop the input size or use {fixed_size}"
            )
        default = InputSpec()
        try:
            self.spec = InputSpec(
                size=size,
                mean=_three(_first_not_none(mean, sidecar.get("mean"), default.mean)),
                std=_three(_first_not_none(std, sidecar.get("std"), default.std)),
            )
        except ValueError as exc:
            raise ConfigError(f"ONNX model {self.path}: {exc}") from exc

        self._output_name, self._output_index = self._pick_output(
            session, _first_not_none(output, sidecar.get("output"), 0)
        )
        self._dim = self._discover_dim(session)
        label = _first_not_none(version, sidecar.get("version"), self._sha256[:_VERSION_HEX])
        self._version = f"{label}{spec_version_suffix(self.spec)}"
        logger.debug(
            "ONNX backbone %s: input %s %s, output %r, dim %d, version %s",
            self.path, model_input.name, model_input.shape, self._output_name, self._dim,
            self._version,
        )  # fmt: skip

    @classmethod
    def from_name(cls, name: str, **options: Any) -> OnnxBackbone:
        """Build from a registry name ``onnx:PATH``.

        Args:
            name: ``"onnx:"`` followed by the model's path.
            **options: Keyword arguments of the constructor (``input_size``, ``mean``, ...).

        Returns:
            The backbone.

        Raises:
            ConfigError: ``name`` does not start with ``onnx:`` or names no usable model.
        """
        if not name.startswith(ONNX_PREFIX) or not name[len(ONNX_PREFIX) :].strip():
            raise ConfigError(
                f"an ONNX backbone is named {ONNX_PREFIX}PATH (e.g. onnx:models/encoder.onnx); "
                f"got {name!r}"
            )
        return cls(Path(name[len(ONNX_PREFIX) :].strip()), name=name, **options)

    @property
    def version(self) -> str:
        """The version label (sha256 prefix of the file unless given), see the module doc."""
        return self._version

    @property
    def dim(self) -> int:
        """Length of the output vectors."""
        return self._dim

    @property
    def sha256(self) -> str:
        """sha256 of the model file, 64 hex digits."""
        return self._sha256

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Map one image to the model input by the package rule.

        Args:
            image: ``(H, W)`` or ``(H, W, C)`` with C in 1..4, any numeric dtype.

        Returns:
            float32 ``(3, size, size)``.

        Raises:
            ValueError: The image is not 2-D or 3-D, or has more than 4 channels.
        """
        return to_model_input(image, self.spec)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a batch of prepared inputs.

        Args:
            batch: float ``(N, 3, size, size)``, as stacked :meth:`prepare` outputs.

        Returns:
            float32 ``(N, dim)``; a 4-D output is averaged over its spatial axes.

        Raises:
            ValueError: ``batch`` does not have shape ``(N, 3, size, size)``.
            ConfigError: ONNX Runtime failed to run the model.
        """
        expected = (3, self.spec.size, self.spec.size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(
                f"batch must have shape (N, {', '.join(map(str, expected))}) as stacked by "
                f"prepare(); got {batch.shape}"
            )
        if batch.shape[0] == 0:
            return np.zeros((0, self._dim), np.float32)
        data = np.ascontiguousarray(batch, dtype=self._input_dtype)
        if self._fixed_batch is None:
            vectors = self._run(data)
        else:
            chunks = [
                self._run(_pad_batch(data[i : i + self._fixed_batch], self._fixed_batch))
                for i in range(0, len(data), self._fixed_batch)
            ]
            vectors = np.concatenate(chunks)[: len(data)]
        if vectors.shape != (len(data), self._dim):
            raise ConfigError(
                f"ONNX model {self.path} returned vectors of shape {vectors.shape} for a batch "
                f"of {len(data)}; expected ({len(data)}, {self._dim})"
            )
        return vectors

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def _get_session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort  # type: ignore[import-untyped]

            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only; ORT's warnings go to stderr
            if self.intra_op_num_threads is not None:
                options.intra_op_num_threads = self.intra_op_num_threads
            try:
                self._session = ort.InferenceSession(
                    str(self.path), sess_options=options, providers=list(self.providers)
                )
            except Exception as exc:  # onnxruntime raises its own pybind error types
                raise ConfigError(
                    f"{self.path} is not a loadable ONNX model ({_first_line(exc)}); check "
                    "that the file was copied completely, or export the model again"
                ) from exc
        return self._session

    def _run(self, data: np.ndarray) -> np.ndarray:
        session = self._get_session()
        try:
            raw = session.run([self._output_name], {self._input_name: data})[0]
        except Exception as exc:  # onnxruntime raises its own pybind error types
            raise ConfigError(
                f"ONNX model {self.path} failed on a batch of shape {data.shape}: "
                f"{_first_line(exc)}"
            ) from exc
        return _to_vectors(np.asarray(raw), output=self._output_name, path=self.path)

    def _check_input_shape(self, shape: list[Any]) -> int | None:
        if len(shape) != 4:
            raise ConfigError(
                f"ONNX model {self.path} takes input of shape {shape}; lensloop feeds "
                "(N, 3, H, W) images, so export the model with a 4-D channels-first input"
            )
        channels, height, width = shape[1], shape[2], shape[3]
        if channels != 3 and isinstance(channels, int):
            hint = (
                " (it looks channels-last; export it channels-first)"
                if width == 3
                else " (to use it, wrap it so that it takes 3 channels, e.g. averaging them)"
            )
            raise ConfigError(
                f"ONNX model {self.path} expects {channels} input channel(s) in input shape "
                f"{shape}, but lensloop feeds 3-channel (N, 3, H, W) images{hint}"
            )
        fixed = [d for d in (height, width) if isinstance(d, int)]
        if len(fixed) == 1 or (len(fixed) == 2 and height != width):
            raise ConfigError(
                f"ONNX model {self.path} has input shape {shape}; lensloop feeds square images, "
                "so height and width must both be dynamic or equal"
            )
        return int(height) if fixed else None

    def _pick_output(self, session: Any, output: str | int) -> tuple[str, int]:
        outputs = session.get_outputs()
        names = [o.name for o in outputs]
        if isinstance(output, str) and output not in names and output.isdigit():
            output = int(output)
        if isinstance(output, int):
            if not 0 <= output < len(names):
                raise ConfigError(
                    f"ONNX model {self.path} has {len(names)} output(s) {names}; output index "
                    f"{output} is out of range"
                )
            return names[output], output
        if output not in names:
            raise ConfigError(
                f"ONNX model {self.path} has no output {output!r}; its outputs are {names}"
            )
        return output, names.index(output)

    def _discover_dim(self, session: Any) -> int:
        shape = list(session.get_outputs()[self._output_index].shape)
        if len(shape) in (2, 4) and isinstance(shape[1], int):
            return int(shape[1])
        if len(shape) not in (2, 4):
            raise ConfigError(_bad_output_message(self.path, self._output_name, shape))
        batch = self._fixed_batch or 1
        dummy = np.zeros((batch, 3, self.spec.size, self.spec.size), self._input_dtype)
        return int(self._run(dummy).shape[1])


def _to_vectors(raw: np.ndarray, *, output: str, path: Path) -> np.ndarray:
    if raw.ndim == 4:
        raw = raw.mean(axis=(2, 3), dtype=np.float64)
    elif raw.ndim != 2:
        raise ConfigError(_bad_output_message(path, output, list(raw.shape)))
    return np.ascontiguousarray(raw, dtype=np.float32)


def _bad_output_message(path: Path, output: str, shape: list[Any]) -> str:
    return (
        f"ONNX model {path}: output {output!r} has shape {shape}; lensloop needs (N, D) "
        "vectors or an (N, C, h, w) feature map, so choose another output (sidecar "
        "'output' or the output option)"
    )


def _pad_batch(chunk: np.ndarray, size: int) -> np.ndarray:
    if len(chunk) == size:
        return chunk
    pad = np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)
    return np.concatenate([chunk, pad])


def _first_not_none(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    items = tuple(float(v) for v in values)
    if len(items) != 3:
        raise ConfigError(f"mean and std need 3 values each, got {list(values)}")
    return (items[0], items[1], items[2])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
