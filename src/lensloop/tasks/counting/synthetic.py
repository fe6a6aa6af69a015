"""Synthetic fluorescence-cell images with known centres, for tests and benchmarks.

In the spirit of the VGG synthetic cells (Lempitsky & Zisserman, 2010): bright blob-shaped
cells on a dark, unevenly lit background, blurred and noisy. An image is built in relative
intensity units, where 0 is the camera's dark level and 1 its full scale, in six steps:

1. **Positions.** A fraction ``clumping`` of the cells is drawn around a few cluster centres
   (about ``sqrt(n) / 2`` clusters of random sizes) with a Gaussian spread of
   ``mean radius * sqrt(cells in the cluster)``, so that a cluster is about half covered at
   its middle; the other cells are uniform. Cells may overlap. Centres keep a margin of the
   smallest radius from the edges.
2. **Cells.** Each cell is an ellipse of equivalent radius ``r`` (area ``pi r**2``), axis ratio
   ``e`` (semi-axes ``r sqrt(e)`` and ``r / sqrt(e)``), uniform orientation and peak brightness
   ``b`` above the background. Its profile over the normalised elliptical distance ``d`` is a
   slightly domed plateau, ``1 - 0.3 min(d**2, 1)``, that falls to 0 by a smoothstep between
   ``d = 0.75`` and ``d = 1.25``: the maximum is at the centre and overlapping cells add up.
3. **Optics.** The cell layer is blurred by a Gaussian of sigma ``blur`` pixels.
4. **Illumination.** Background and cells are multiplied by ``1 + gradient * g(x, y)``, where
   ``g`` is a random low-frequency 2-D cosine series (frequencies 0 to 3 per axis, amplitudes
   falling with frequency) scaled to zero mean and a maximum magnitude of 1: vignetting and
   uneven excitation.
5. **Noise.** Poisson shot noise with ``1 / shot_noise**2`` photoelectrons at full scale (the
   noise's standard deviation at full scale is ``shot_noise``), then Gaussian read noise of
   standard deviation ``read_noise``.
6. **Camera.** 8 bit: ``[0, 1]`` maps to ``[0, 255]``, stored as ``uint8``. 16 bit: a 12-bit-like
   camera, ``[0, 1]`` maps to ``[100, 4095]`` counts (dark offset 100, saturation 4095),
   stored as ``uint16`` and not rescaled. Values are rounded and clipped (saturation).

Points are pixel ``(x, y)`` floats with the origin at the top-left corner of the image: pixel
``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``,
as for points converted from Label Studio's percentages.

The random draws of each step come from their own stream derived from ``seed``, so changing
the noise or the illumination of a style does not move the cells. Rendering is vectorised over
cells: a 4000 x 4000 image with 20,000 cells takes a few seconds, a 256 x 256 image with 300
cells a few milliseconds. Blurring needs SciPy (the ``embed`` extra); ``blur=0`` does not.

Example:
    >>> image, centres = make_cell_image(64, 64, 10, seed=0)
    >>> image.shape, image.dtype, centres.shape
    ((64, 64), dtype('uint8'), (10, 2))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "CellImage",
    "CellStyle",
    "jitter_points",
    "make_cell_dataset",
    "make_cell_image",
    "thin_points",
]

CellImage: TypeAlias = npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
"""A synthetic image: ``(H, W)`` ``uint8`` (8-bit style) or ``uint16`` (16-bit style)."""

Seed: TypeAlias = int | np.random.SeedSequence

_EDGE = 0.25  # half-width of a cell's soft edge, in units of its semi-axes
_DOME = 0.3  # how much brighter a cell's centre is than its rim, relative to the centre
_FREQUENCIES = 4  # cosine terms per axis of the illumination field
_OFFSET_16 = 100.0  # dark offset of the 16-bit camera, in counts
_SATURATION_16 = 4095.0  # saturation of the 16-bit (12-bit-like) camera, in counts
_CHUNK = 4_000_000  # patch pixels rendered at a time (bounds the temporary memory)
_REDRAWS = 32  # redraws of clustered cells that fell outside the image before clipping

# Independent random streams of one image (see _stream).
_POSITIONS, _SHAPES, _LIGHT, _NOISE, _COUNT = range(5)


def _pair(name: str, value: Any, *, low: float, strict: bool = False) -> tuple[float, float]:
    """Check a ``(low, high)`` range field and return it as a tuple of floats."""
    bound = f"{low} < low" if strict else f"{low} <= low"
    message = f"CellStyle.{name} must be a (low, high) pair with {bound} <= high; got {value!r}"
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if (
        not (math.isfinite(lo) and math.isfinite(hi))
        or lo > hi
        or lo < low
        or (strict and lo == low)
    ):
        raise ValueError(message)
    return lo, hi


def _number(name: str, value: Any, *, low: float, high: float, high_open: bool = False) -> float:
    """Check a number field against ``[low, high]`` (or ``[low, high)``) and return it."""
    interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
    message = f"CellStyle.{name} must be a number in {interval}; got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(message)
    number = float(value)
    if not low <= number <= high or (high_open and number == high):
        raise ValueError(message)
    return number


@dataclass(frozen=True)
class CellStyle:
    """How synthetic cells and their camera look; all intensities relative to full scale.

    The defaults give 8-bit images of sparse, uniformly placed cells like the VGG synthetic
    cells. Fields are checked when the style is made.

    Attributes:
        radius: Range of the cells' equivalent radii, in pixels; ``0 < low <= high``.
        elongation: Range of the ratio of a cell's long to short axis; ``1 <= low <= high``
            (1: round).
        brightness: Range of the cells' peak brightness above the background, as a fraction
            of the camera's full scale; ``0 <= low <= high``. Overlaps add up and may saturate.
        clumping: Fraction of the cells drawn around a few cluster centres, in ``[0, 1]``
            (0: uniform positions).
        blur: Sigma of the Gaussian optical blur, in pixels, ``>= 0``.
        shot_noise: Standard deviation of the Poisson shot noise at full scale, ``>= 0``
            (a full-scale pixel collects ``1 / shot_noise**2`` photoelectrons; 0: none).
        read_noise: Standard deviation of the Gaussian read noise, ``>= 0`` (0: none).
        background: Mean background level, in ``[0, 1]``.
        gradient: Strength of the uneven illumination, in ``[0, 1)``: the illumination
            varies by up to ``+-gradient`` around its mean (0: flat).
        bit_depth: 8 (``uint8``, 0 to 255) or 16 (``uint16``, a 12-bit-like camera with dark
            offset 100 and saturation 4095 counts).
    """

    radius: tuple[float, float] = (3.0, 6.0)
    elongation: tuple[float, float] = (1.0, 1.6)
    brightness: tuple[float, float] = (0.35, 0.9)
    clumping: float = 0.0
    blur: float = 1.0
    shot_noise: float = 0.02
    read_noise: float = 0.005
    background: float = 0.08
    gradient: float = 0.3
    bit_depth: int = 8

    def __post_init__(self) -> None:
        checked: dict[str, Any] = {
            "radius": _pair("radius", self.radius, low=0.0, strict=True),
            "elongation": _pair("elongation", self.elongation, low=1.0),
            "brightness": _pair("brightness", self.brightness, low=0.0),
            "clumping": _number("clumping", self.clumping, low=0.0, high=1.0),
            "blur": _number("blur", self.blur, low=0.0, high=math.inf, high_open=True),
            "shot_noise": _number("shot_noise", self.shot_noise, low=0.0, high=1.0),
            "read_noise": _number(
                "read_noise", self.read_noise, low=0.0, high=math.inf, high_open=True
            ),
            "background": _number("background", self.background, low=0.0, high=1.0),
            "gradient": _number("gradient", self.gradient, low=0.0, high=1.0, high_open=True),
        }
        if isinstance(self.bit_depth, bool) or self.bit_depth not in (8, 16):
            raise ValueError(f"CellStyle.bit_depth must be 8 or 16; got {self.bit_depth!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "bit_depth", int(self.bit_depth))


def _base(seed: Seed) -> np.random.SeedSequence:
    """The seed sequence of ``seed`` (an int, or a sequence such as a data set's child)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a SeedSequence; got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _stream(base: np.random.SeedSequence, key: int) -> np.random.Generator:
    """Generator of one independent stream of ``base``; never mutates ``base``."""
    child = np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, 1_000 + key))
    return np.random.default_rng(child)


def _whole(name: str, value: Any, *, low: int) -> int:
    """Check an integer argument ``>= low`` and return it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def _positions(
    rng: np.random.Generator, n_cells: int, height: int, width: int, style: CellStyle
) -> npt.NDArray[np.float64]:
    """``(n_cells, 2)`` centres ``(x, y)``: uniform, and a ``clumping`` fraction clustered."""
    margin = np.minimum(style.radius[0], np.array([width, height]) / 2.0)
    low = margin
    high = np.array([width, height], dtype=np.float64) - margin
    n_clustered = round(style.clumping * n_cells)
    uniform = rng.uniform(low, high, size=(n_cells - n_clustered, 2))
    if n_clustered == 0:
        return uniform
    n_clusters = max(1, round(math.sqrt(n_clustered) / 2.0))
    centres = rng.uniform(low, high, size=(n_clusters, 2))
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    member = rng.choice(n_clusters, size=n_clustered, p=weights)
    sizes = np.bincount(member, minlength=n_clusters)
    spread = (sum(style.radius) / 2.0) * np.sqrt(np.maximum(sizes, 1))
    clustered = centres[member] + rng.normal(size=(n_clustered, 2)) * spread[member, None]
    for _ in range(_REDRAWS):
        out = np.any((clustered < low) | (clustered > high), axis=1)
        if not out.any():
            break
        redo = member[out]
        clustered[out] = centres[redo] + rng.normal(size=(len(redo), 2)) * spread[redo, None]
    np.clip(clustered, low, high, out=clustered)
    points = np.concatenate([uniform, clustered])
    return points[rng.permutation(n_cells)]


def _render_cells(
    height: int,
    width: int,
    centres: npt.NDArray[np.float64],
    rng: np.random.Generator,
    style: CellStyle,
) -> npt.NDArray[np.float32]:
    """Sum of the cells' profiles, ``(height, width)`` float32, before blur and illumination."""
    n = len(centres)
    radius = rng.uniform(*style.radius, size=n)
    elongation = rng.uniform(*style.elongation, size=n)
    theta = rng.uniform(0.0, math.pi, size=n)
    peak = rng.uniform(*style.brightness, size=n).astype(np.float32)
    semi_long = radius * np.sqrt(elongation)
    semi_short = radius / np.sqrt(elongation)
    cos = np.cos(theta)
    sin = np.sin(theta)
    # Rotated, normalised coordinates: p = (u cos + v sin) / a, q = (v cos - u sin) / b.
    pu = (cos / semi_long).astype(np.float32)
    pv = (sin / semi_long).astype(np.float32)
    qu = (-sin / semi_short).astype(np.float32)
    qv = (cos / semi_short).astype(np.float32)

    half = math.ceil((1.0 + _EDGE) * float(semi_long.max(initial=0.0))) + 1
    steps = np.arange(-half, half + 1, dtype=np.int64)
    side = len(steps)
    chunk = max(1, _CHUNK // (side * side))
    reach = np.float32((1.0 + _EDGE) ** 2)
    total = np.zeros(height * width, dtype=np.float64)
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        x = centres[part, 0]
        y = centres[part, 1]
        cols = np.floor(x).astype(np.int64)[:, None] + steps  # (m, side)
        rows = np.floor(y).astype(np.int64)[:, None] + steps
        u = (cols + 0.5 - x[:, None]).astype(np.float32)[:, None, :]  # (m, 1, side)
        v = (rows + 0.5 - y[:, None]).astype(np.float32)[:, :, None]  # (m, side, 1)
        p = u * pu[part, None, None] + v * pv[part, None, None]
        q = u * qu[part, None, None] + v * qv[part, None, None]
        d2 = p * p + q * q  # (m, side, side): rows along axis 1, columns along axis 2
        keep = d2 < reach
        keep &= ((rows >= 0) & (rows < height))[:, :, None]
        keep &= ((cols >= 0) & (cols < width))[:, None, :]
        d2k = d2[keep]
        t = np.clip((1.0 + _EDGE - np.sqrt(d2k)) / (2.0 * _EDGE), 0.0, 1.0)
        level = t * t * (3.0 - 2.0 * t) * (1.0 - _DOME * np.minimum(d2k, 1.0))
        level *= np.broadcast_to(peak[part, None, None], d2.shape)[keep]
        flat = (rows[:, :, None] * width + cols[:, None, :])[keep]
        total += np.bincount(flat, weights=level, minlength=height * width)
    return total.astype(np.float32).reshape(height, width)


def _illumination(
    rng: np.random.Generator, height: int, width: int, gradient: float
) -> npt.NDArray[np.float32]:
    """Smooth illumination field ``1 + gradient * g``, ``(height, width)`` float32."""
    frequency = np.arange(_FREQUENCIES)
    coefficients = rng.normal(size=(_FREQUENCIES, _FREQUENCIES))
    coefficients /= (1.0 + frequency[:, None] + frequency[None, :]) ** 2
    coefficients[0, 0] = 0.0
    if gradient == 0.0:
        return np.ones((height, width), dtype=np.float32)
    ys = np.cos(math.pi * ((np.arange(height) + 0.5) / height)[:, None] * frequency)
    xs = np.cos(math.pi * ((np.arange(width) + 0.5) / width)[:, None] * frequency)
    g = ((ys @ coefficients).astype(np.float32)) @ xs.T.astype(np.float32)
    g -= g.mean()
    scale = float(np.abs(g).max())
    if scale > 0.0:
        g *= np.float32(gradient / scale)
    g += np.float32(1.0)
    return g


def _blur(image: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    """Gaussian blur with SciPy (imported here: only blurred styles need it)."""
    from scipy import ndimage

    blurred: npt.NDArray[np.float32] = ndimage.gaussian_filter(image, sigma, mode="constant")
    return blurred


def _camera(
    signal: npt.NDArray[np.float32], rng: np.random.Generator, style: CellStyle
) -> CellImage:
    """Add shot and read noise to a relative-intensity image and quantise it."""
    if style.shot_noise > 0.0:
        variance = style.shot_noise**2
        photons = rng.poisson(signal.astype(np.float64) / variance)
        signal = photons.astype(np.float32) * np.float32(variance)
    if style.read_noise > 0.0:
        noise = rng.standard_normal(size=signal.shape, dtype=np.float32)
        signal = signal + noise * np.float32(style.read_noise)
    if style.bit_depth == 8:
        counts = signal * np.float32(255.0)
        np.clip(np.rint(counts, out=counts), 0.0, 255.0, out=counts)
        return counts.astype(np.uint8)
    counts = signal * np.float32(_SATURATION_16 - _OFFSET_16) + np.float32(_OFFSET_16)
    np.clip(np.rint(counts, out=counts), 0.0, _SATURATION_16, out=counts)
    return counts.astype(np.uint16)


def make_cell_image(
    height: int,
    width: int,
    n_cells: int,
    *,
    style: CellStyle = CellStyle(),
    seed: Seed,
) -> tuple[CellImage, npt.NDArray[np.float64]]:
    """Make one synthetic fluorescence-cell image and its cells' true centres.

    Args:
        height: Image height in pixels, ``>= 1``.
        width: Image width in pixels, ``>= 1``.
        n_cells: Number of cells, ``>= 0`` (0: background only).
        style: How the cells and the camera look.
        seed: Seed of every random choice: a non-negative int, or a
            :class:`numpy.random.SeedSequence` (such as the children that
            :func:`make_cell_dataset` spawns).

    Returns:
        ``(image, centres)``: the ``(height, width)`` image, ``uint8`` or ``uint16`` as
        ``style.bit_depth`` says, and the ``(n_cells, 2)`` float64 true centres ``(x, y)``
        in pixels (sub-pixel; origin at the image's top-left corner), each at least the
        smallest radius (or half the image) from the edges.

    Raises:
        ValueError: If a size or count is not a whole number in range, or the seed is bad.

    Example:
        >>> image, centres = make_cell_image(32, 48, 5, style=CellStyle(bit_depth=16), seed=1)
        >>> image.shape, image.dtype.name, len(centres)
        ((32, 48), 'uint16', 5)
    """
    height = _whole("height", height, low=1)
    width = _whole("width", width, low=1)
    n_cells = _whole("n_cells", n_cells, low=0)
    if not isinstance(style, CellStyle):
        raise ValueError(f"style must be a CellStyle; got {type(style).__name__}")
    base = _base(seed)
    centres = _positions(_stream(base, _POSITIONS), n_cells, height, width, style)
    if n_cells:
        cells = _render_cells(height, width, centres, _stream(base, _SHAPES), style)
        if style.blur > 0.0:
            cells = _blur(cells, style.blur)
        cells += np.float32(style.background)
        signal = cells
    else:
        signal = np.full((height, width), style.background, dtype=np.float32)
    signal *= _illumination(_stream(base, _LIGHT), height, width, style.gradient)
    image = _camera(signal, _stream(base, _NOISE), style)
    return image, np.ascontiguousarray(centres, dtype=np.float64).reshape(n_cells, 2)


def make_cell_dataset(
    n_images: int,
    *,
    size: tuple[int, int] = (256, 256),
    cells: tuple[int, int] = (50, 300),
    style: CellStyle = CellStyle(),
    seed: int,
) -> list[tuple[CellImage, npt.NDArray[np.float64]]]:
    """Make a data set of synthetic cell images with their true centres.

    Image ``k`` gets the ``k``-th child of ``numpy.random.SeedSequence(seed).spawn``, which
    draws its number of cells and the image, so it is the same whatever ``n_images`` is:
    ``make_cell_dataset(5, seed=s)[:3] == make_cell_dataset(3, seed=s)``.

    Args:
        n_images: Number of images, ``>= 0``.
        size: ``(height, width)`` of every image, in pixels.
        cells: Inclusive ``(low, high)`` range the number of cells of each image is drawn
            from, uniformly; ``0 <= low <= high``.
        style: How the cells and the camera look (see :class:`CellStyle`).
        seed: Seed of every random choice, a non-negative int.

    Returns:
        ``n_images`` pairs ``(image, centres)`` as :func:`make_cell_image` returns them.

    Raises:
        ValueError: If ``n_images``, ``size`` or ``cells`` is out of range, or the seed is bad.
    """
    n_images = _whole("n_images", n_images, low=0)
    try:
        height, width = size
        low, high = cells
    except (TypeError, ValueError):
        raise ValueError(
            f"size and cells must be pairs (height, width) and (low, high); got {size!r}, {cells!r}"
        ) from None
    height = _whole("size[0] (height)", height, low=1)
    width = _whole("size[1] (width)", width, low=1)
    low = _whole("cells[0]", low, low=0)
    high = _whole("cells[1]", high, low=low)
    if isinstance(seed, np.random.SeedSequence):
        raise ValueError("seed of make_cell_dataset must be a non-negative int")
    children = _base(seed).spawn(n_images)
    dataset = []
    for child in children:
        n_cells = int(_stream(child, _COUNT).integers(low, high, endpoint=True))
        dataset.append(make_cell_image(height, width, n_cells, style=style, seed=child))
    return dataset


def _points(centres: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Check and convert ``(N, 2)`` points ``(x, y)``."""
    points = np.asarray(centres, dtype=np.float64)
    if points.size == 0:
        return np.empty((0, 2), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"centres must be an (N, 2) array of (x, y); got shape {points.shape}")
    return points


def _fraction(name: str, value: Any) -> float:
    """Check a probability-like argument in ``[0, 1]``."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if not ok or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def thin_points(centres: npt.ArrayLike, fraction: float, *, seed: int) -> npt.NDArray[np.float64]:
    """Keep a random ``fraction`` of points: a sparse annotation of every cell.

    Args:
        centres: ``(N, 2)`` points ``(x, y)`` in pixels.
        fraction: Fraction of the points kept, in ``[0, 1]``; exactly
            ``round(fraction * N)`` points are kept.
        seed: Seed of the choice of points.

    Returns:
        ``(round(fraction * N), 2)`` float64: the kept points, in their original order.

    Raises:
        ValueError: If ``centres`` is not ``(N, 2)`` or ``fraction`` is outside ``[0, 1]``.
    """
    points = _points(centres)
    fraction = _fraction("fraction", fraction)
    rng = np.random.default_rng(_base(seed))
    kept = rng.choice(len(points), size=round(fraction * len(points)), replace=False)
    return points[np.sort(kept)]


def jitter_points(
    centres: npt.ArrayLike,
    sigma: float,
    *,
    seed: int,
    drop: float = 0.0,
    extra: int = 0,
    shape: Sequence[int] | None = None,
) -> npt.NDArray[np.float64]:
    """Simulate a noisy annotator: jittered clicks, missed cells and false clicks.

    Args:
        centres: ``(N, 2)`` true points ``(x, y)`` in pixels.
        sigma: Standard deviation of each click's Gaussian error per axis, in pixels, ``>= 0``.
        seed: Seed of every random choice.
        drop: Probability that a cell is missed, in ``[0, 1]`` (each point independently).
        extra: Number of false clicks, ``>= 0``, placed uniformly in the image.
        shape: ``(height, width)`` of the image (a longer shape such as ``image.shape`` of an
            ``(H, W, C)`` image is fine). Needed when ``extra > 0``; when given, the jittered
            clicks are also clipped to the image, ``0 <= x < width`` and ``0 <= y < height``.

    Returns:
        ``(M, 2)`` float64 clicks ``(x, y)``: the kept, jittered points in their original
        order, then the ``extra`` false clicks.

    Raises:
        ValueError: If an argument is out of range, or ``extra > 0`` without ``shape``.
    """
    points = _points(centres)
    if isinstance(sigma, bool) or not isinstance(sigma, int | float | np.integer | np.floating):
        raise ValueError(f"sigma must be a number >= 0; got {sigma!r}")
    if not float(sigma) >= 0.0 or not math.isfinite(float(sigma)):
        raise ValueError(f"sigma must be a finite number >= 0; got {sigma!r}")
    drop = _fraction("drop", drop)
    extra = _whole("extra", extra, low=0)
    size: npt.NDArray[np.float64] | None = None
    if shape is not None:
        if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"shape must start with (height, width) >= 1; got {shape!r}")
        size = np.array([shape[1], shape[0]], dtype=np.float64)  # (width, height) as (x, y)
    elif extra > 0:
        raise ValueError(f"extra={extra} false clicks need the image's shape=(height, width)")
    rng = np.random.default_rng(_base(seed))
    kept = points[rng.random(len(points)) >= drop]
    clicks = kept + rng.normal(scale=float(sigma), size=kept.shape)
    if size is None:
        return clicks
    np.clip(clicks, 0.0, np.nextafter(size, 0.0), out=clicks)
    false = rng.uniform(0.0, size, size=(extra, 2))
    return np.concatenate([clicks, np.minimum(false, np.nextafter(size, 0.0))])
