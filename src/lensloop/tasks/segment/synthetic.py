"""Synthetic segmentation scenes with known label maps, for tests and benchmarks.

**Core-box photographs** (:func:`make_core_image`) imitate a geologist's photograph of a
drill-core box seen from above:

1. **Table.** A wood-grain texture (noise stretched along ``x``) in a warm colour.
2. **Box.** A rectangle filling most of the picture, tilted by up to ``rotation``
   degrees, with a rim and ``trays`` rows (trays) separated by dividers. Rim and dividers
   are the box's wall colour; the tray floors are darker. All of it is class ``box``.
3. **Fragments.** Each tray holds ``fragments`` pieces of core (class ``rock``) laid end
   to end along it: rounded rectangles (superellipses) of varying length, their outline
   pulled in by smooth random amounts and jagged at the broken ends, turned by a few
   degrees. Pieces are at least 3 px apart (so their pixels never touch, even
   diagonally) and leave the tray floor showing between them. Each tray has its own
   lithology (grey, brown, green, pink or dark) and each piece its own shade of it, its
   own grain (fine noise) and cylinder shading (darker towards its sides).
4. **Camera.** Uneven lighting (vignetting and a low-frequency gradient), a mild
   ``[1, 2, 1] / 4`` blur and Gaussian noise of ``noise`` (relative to full scale);
   ``uint8`` RGB, or grey.

The label map is made by :func:`~lensloop.annotate.regions.rasterise` from the scene's
regions (the box polygon, then the fragment polygons) with the drawing order ``["box",
"rock"]``, so the regions and the labels agree by construction; :attr:`Scene.fragments` is
the number of 8-connected components of ``rock`` in the label map.

**Shapes** (:func:`make_shapes_image`) are generic objects for cells and particles:
ellipses and irregular polygons of one to three classes, at least 3 px apart, on a
textured, unevenly lit background.

Rendering is vectorised; a 4000 x 6000 core photograph takes a few seconds and well under
1 GB. Counting the fragments needs scikit-image (the ``embed`` extra).

Example:
    >>> scene = make_core_image(64, 96, seed=1)
    >>> scene.image.shape, scene.labels.shape, scene.classes
    ((64, 96, 3), (64, 96), ('box', 'rock'))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from lensloop.annotate.regions import Region, fill_polygon, rasterise

__all__ = [
    "CORE_CLASSES",
    "Scene",
    "make_core_dataset",
    "make_core_image",
    "make_shapes_image",
]

Seed: TypeAlias = int | np.random.SeedSequence

#: Classes of the core-box scenes, in label order (``box`` is 1, ``rock`` is 2).
CORE_CLASSES = ("box", "rock")
#: The drawing order that rasterises a core scene's regions to its labels.
CORE_DRAW_ORDER = ("box", "rock")

_BLOCK = 256  # rows rendered at a time (bounds the temporary memory)
_GAP = 3.0  # least distance between two objects, pixels (> sqrt(2): pixels never touch)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Lithologies: RGB in [0, 1] of a typical piece.
_ROCKS = np.array(
    [
        [0.62, 0.62, 0.60],  # grey
        [0.60, 0.47, 0.34],  # brown
        [0.45, 0.53, 0.42],  # green
        [0.70, 0.55, 0.52],  # pink
        [0.34, 0.34, 0.36],  # dark
    ],
    dtype=np.float32,
)
# Independent random streams of a scene (see _stream).
_GEOMETRY, _LOOK, _NOISE = range(3)


@dataclass(frozen=True, eq=False)
class Scene:
    """A synthetic image with its known segmentation.

    Attributes:
        image: ``(H, W, 3)`` ``uint8`` RGB, or ``(H, W)`` ``uint8`` when made grey.
        labels: ``(H, W)`` ``uint8`` label map (:mod:`lensloop.annotate.labelmap`).
        classes: The classes: label ``k`` is ``classes[k - 1]``.
        regions: Polygons that rasterise to ``labels`` with ``draw_order``.
        fragments: Objects in the label map: 8-connected components of ``rock`` (core
            scenes) or of all classes together (shapes scenes).
        draw_order: The drawing order for ``regions`` (``None``: any; they do not overlap).
    """

    image: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint8]
    classes: tuple[str, ...]
    regions: tuple[Region, ...]
    fragments: int
    draw_order: tuple[str, ...] | None = None


# -- checks and randomness ------------------------------------------------------------------


def _base(seed: Seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a SeedSequence; got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _stream(base: np.random.SeedSequence, key: int) -> np.random.Generator:
    """Generator of one independent stream of ``base``; never mutates ``base``."""
    child = np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, 2_000 + key))
    return np.random.default_rng(child)


def _whole(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def _count_range(name: str, value: Any, *, low: int) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        pair: Sequence[Any] = (value, value)
    elif isinstance(value, Sequence) and len(value) == 2:
        pair = value
    else:
        raise ValueError(f"{name} must be an int or a (low, high) pair of ints; got {value!r}")
    lo = _whole(f"{name}[0]", pair[0], low=low)
    hi = _whole(f"{name}[1]", pair[1], low=lo)
    return lo, hi


def _fraction(name: str, value: Any, *, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise ValueError(f"{name} must be a number in [0, {high}]; got {value!r}")
    return float(value)


# -- textures and camera --------------------------------------------------------------------


def _axis(size: int, scale: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32], float]:
    """Grid cells and weights that interpolate ``size`` pixels from a grid of ``scale`` px.

    Returns:
        The first grid cell of each pixel, the weight of the next one, and the factor that
        brings interpolated unit-variance noise back to unit variance.
    """
    position = (np.arange(size, dtype=np.float64) + 0.5) / scale
    start = position.astype(np.intp)
    weight = (position - start).astype(np.float32)
    variance = float(np.mean((1 - weight) ** 2 + weight**2))
    return start, weight, 1.0 / math.sqrt(variance)


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], scale_y: float, scale_x: float
) -> npt.NDArray[np.float32]:
    """Gaussian noise with correlation lengths ``scale_y`` x ``scale_x`` px and unit variance.

    Draws noise on a coarse grid and interpolates it bilinearly: down the columns on the
    small grid, then across the rows a block of rows at a time, so that a large field costs
    a few cache-friendly passes.
    """
    height, width = shape
    grid = rng.standard_normal(
        (int(height / scale_y) + 2, int(width / scale_x) + 2), dtype=np.float32
    )
    rows, fy, gain_y = _axis(height, scale_y)
    tall = grid[rows] * (1 - fy)[:, None]
    tall += grid[rows + 1] * fy[:, None]
    cols, fx, gain_x = _axis(width, scale_x)
    tall *= np.float32(gain_y * gain_x)
    field = np.empty(shape, dtype=np.float32)
    for r0 in range(0, height, _BLOCK):
        part = tall[r0 : r0 + _BLOCK]
        block = part[:, cols]
        block *= 1 - fx
        right = part[:, cols + 1]
        right *= fx
        block += right
        field[r0 : r0 + _BLOCK] = block
    return field


def _blur_rows(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``[1, 2, 1] / 4`` down the columns of ``(h + 2, W)`` rows; returns the middle ``h``."""
    out = block[1:-1] * np.float32(2.0)
    out += block[:-2]
    out += block[2:]
    out *= np.float32(0.25)
    return out


def _blur_columns(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``[1, 2, 1] / 4`` across each row (the edge pixels repeated)."""
    out = block * np.float32(2.0)
    out[:, 1:] += block[:, :-1]
    out[:, :-1] += block[:, 1:]
    out[:, 0] += block[:, 0]
    out[:, -1] += block[:, -1]
    out *= np.float32(0.25)
    return out


def _lighting(
    rng: np.random.Generator, shape: tuple[int, int], strength: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Row and column factors whose outer product is a vignette with a gentle gradient."""
    factors = []
    for size in shape:
        t = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
        profile = 1.0 - strength * (0.8 * t**2 - 0.25 * rng.uniform(-1.0, 1.0) * t)
        factors.append(profile.astype(np.float32))
    return factors[0], factors[1]


def _render(
    ids: npt.NDArray[np.uint16],
    colours: npt.NDArray[np.float32],
    grain: npt.NDArray[np.float32],
    texture: npt.NDArray[np.float32],
    rng: np.random.Generator,
    *,
    noise: float,
    grey: bool,
) -> npt.NDArray[np.uint8]:
    """Paint the picture of an object map, a block of rows at a time.

    Each pixel is its object's colour (``colours[id]``, RGB in [0, 1]) times ``texture``
    times ``1 + grain[id] * n``, ``n`` fresh unit Gaussian noise (the object's fine
    texture, shared by the channels); then blurred by ``[1, 2, 1] / 4`` along both axes,
    with camera noise of std ``noise`` added, quantised to ``uint8``.
    """
    height, width = ids.shape
    planes = (colours @ _LUMA)[:, None] if grey else colours
    planes = np.ascontiguousarray(planes.T, dtype=np.float32)  # (channels, objects)
    image = np.empty((height, width, planes.shape[0]), dtype=np.uint8)
    for r0 in range(0, height, _BLOCK):
        r1 = min(r0 + _BLOCK, height)
        rows = np.clip(np.arange(r0 - 1, r1 + 1), 0, height - 1)  # one halo row each side
        block_ids = ids[rows]
        factor = rng.standard_normal((rows.size, width), dtype=np.float32)
        factor *= grain[block_ids]
        factor += np.float32(1.0)
        factor *= texture[rows]
        for channel, lut in enumerate(planes):
            values = lut[block_ids]
            values *= factor
            values = _blur_columns(_blur_rows(values))
            if noise > 0:
                values += rng.standard_normal(values.shape, dtype=np.float32) * np.float32(noise)
            values *= np.float32(255.0)
            values += np.float32(0.5)
            np.clip(values, 0, 255, out=values)
            image[r0:r1, :, channel] = values
    return image[..., 0] if grey else image


# -- core boxes -----------------------------------------------------------------------------


def _turn(points: npt.NDArray[np.float64], angle: float) -> npt.NDArray[np.float64]:
    cos, sin = math.cos(angle), math.sin(angle)
    turned: npt.NDArray[np.float64] = points @ np.array([[cos, sin], [-sin, cos]])
    return turned


def _rectangle(u0: float, v0: float, u1: float, v1: float) -> npt.NDArray[np.float64]:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)


def _outline(rng: np.random.Generator, length: float, width: float) -> npt.NDArray[np.float64]:
    """A core piece centred at the origin, its length along ``u``: a rough superellipse."""
    a, b = length / 2.0, width / 2.0
    power = rng.uniform(2.5, 6.0)
    count = int(np.clip(1.5 * (a + b), 12, 200))
    t = np.linspace(0.0, 2 * math.pi, count, endpoint=False)
    cos, sin = np.cos(t), np.sin(t)
    x = a * np.sign(cos) * np.abs(cos) ** (2 / power)
    y = b * np.sign(sin) * np.abs(sin) ** (2 / power)
    # Pull the outline in by a smooth random amount, and raggedly at the broken ends.
    harmonics = np.arange(1, 5)
    weights = rng.uniform(0, 1, 4) / harmonics
    phases = rng.uniform(0, 2 * math.pi, 4)
    wobble = (weights[:, None] * np.cos(harmonics[:, None] * t + phases[:, None])).sum(axis=0)
    wobble = (wobble - wobble.min()) / max(float(np.ptp(wobble)), 1e-9)
    ends = np.abs(cos) ** 6 * rng.uniform(0.0, 1.0, count)
    pull = rng.uniform(0.03, 0.15) * wobble + rng.uniform(0.05, 0.25) * ends
    return np.stack([x * (1 - pull), y * (1 - pull)], axis=1)


@dataclass(frozen=True)
class _Piece:
    outline: npt.NDArray[np.float64]  # box-local (u, v)
    angle: float  # of its long axis, radians, box-local
    centre: tuple[float, float]  # box-local
    half_width: float
    lithology: int


def _tray_pieces(
    rng: np.random.Generator,
    tray: tuple[float, float, float, float],
    count_range: tuple[int, int],
    lithology: int,
) -> list[_Piece]:
    """Pieces laid end to end along one tray ``(u0, v0, u1, v1)`` in box-local pixels."""
    u0, v0, u1, v1 = tray
    depth = v1 - v0
    count = int(rng.integers(count_range[0], count_range[1] + 1))
    if count == 0 or depth < 2:
        return []
    diameter = depth * rng.uniform(0.55, 0.85)
    lengths = diameter * np.exp(rng.normal(0.4, 0.7, count))
    lengths = np.maximum(lengths, 0.35 * diameter) + 0.1 * diameter  # room for the tilt
    available = (u1 - u0) - 2 * _GAP
    while count > 0:
        budget = available * rng.uniform(0.75, 0.97) - (count - 1) * _GAP
        if lengths[:count].sum() > budget:
            lengths[:count] *= max(budget, 0.0) / lengths[:count].sum()
        if count == 1 or lengths[:count].min() >= min(2.0, diameter):
            break
        count -= 1
    lengths = lengths[:count]
    if count == 0 or lengths.min() <= 1.0:
        return []
    slack = max(available - lengths.sum() - (count - 1) * _GAP, 0.0)
    extra = rng.dirichlet(np.ones(count + 1)) * slack
    cursor = u0 + _GAP + extra[0]
    pieces: list[_Piece] = []
    for k, length in enumerate(lengths):
        width = min(diameter * rng.uniform(0.85, 1.0), length + diameter * 0.3)
        tilt = math.radians(rng.uniform(-3.0, 3.0))
        body = max(length - 0.1 * diameter, 0.6 * length)
        outline = _turn(_outline(rng, body, width), tilt)
        low, high = outline.min(axis=0), outline.max(axis=0)
        room = depth - 2.0 - (high[1] - low[1])
        if room < 0:  # too deep for the tray after the tilt: flatten it
            outline[:, 1] *= (depth - 2.0) / (high[1] - low[1])
            low, high, room = outline.min(axis=0), outline.max(axis=0), 0.0
        shift_v = v0 + 1.0 + rng.uniform(0, room) - low[1]
        shift_u = cursor - low[0]
        if shift_u + high[0] > u1 - _GAP:
            break
        outline = outline + np.array([shift_u, shift_v])
        pieces.append(_Piece(outline, tilt, (shift_u, shift_v), width / 2.0, lithology))
        cursor = shift_u + high[0] + _GAP + extra[k + 1]
    return pieces


def _count_components(inside: npt.NDArray[np.bool_]) -> int:
    from skimage.measure import label

    _, found = label(inside, connectivity=2, return_num=True)  # type: ignore[no-untyped-call]
    return int(found)


def make_core_image(
    height: int = 256,
    width: int = 384,
    *,
    fragments: int | tuple[int, int] = (3, 12),
    trays: int | tuple[int, int] = (3, 5),
    rotation: float = 3.0,
    noise: float = 0.02,
    seed: Seed = 0,
    grey: bool = False,
) -> Scene:
    """Make a synthetic core-box photograph and its label map (see the module docstring).

    Args:
        height: Image height in pixels (at least 32).
        width: Image width in pixels (at least 32).
        fragments: Pieces of core per tray: a number, or a ``(low, high)`` range drawn
            from per tray. Pieces too short to fit are left out.
        trays: Trays in the box: a number or a ``(low, high)`` range; fewer when the box
            is too small for them to be at least 6 px deep.
        rotation: The box is tilted by up to this many degrees (0 to 20).
        noise: Standard deviation of the camera noise, relative to full scale (0 to 0.5).
        seed: Random seed; the same seed gives the same scene.
        grey: Make a ``(H, W)`` grey image instead of RGB (the geometry is the same).

    Returns:
        The scene: classes ``("box", "rock")``, regions the box polygon then the pieces,
        drawing order ``("box", "rock")``.

    Raises:
        ValueError: An argument is out of range.
    """
    height = _whole("height", height, low=32)
    width = _whole("width", width, low=32)
    per_tray = _count_range("fragments", fragments, low=0)
    tray_range = _count_range("trays", trays, low=1)
    tilt = math.radians(_fraction("rotation", rotation, high=20.0))
    noise = _fraction("noise", noise, high=0.5)
    base = _base(seed)
    rng = _stream(base, _GEOMETRY)

    # The box: as large as fits after tilting, placed with a little random slack.
    margin = max(2.0, rng.uniform(0.03, 0.07) * min(height, width))
    angle = rng.uniform(-tilt, tilt)
    room_u, room_v = width - 2 * margin, height - 2 * margin
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    box_u, box_v = room_u * rng.uniform(0.9, 1.0), room_v * rng.uniform(0.9, 1.0)
    shrink = min(1.0, room_u / (box_u * cos + box_v * sin), room_v / (box_u * sin + box_v * cos))
    box_u, box_v = box_u * shrink, box_v * shrink
    slack_x = max(room_u - (box_u * cos + box_v * sin), 0.0) / 2
    slack_y = max(room_v - (box_u * sin + box_v * cos), 0.0) / 2
    centre = np.array(
        [width / 2 + rng.uniform(-slack_x, slack_x), height / 2 + rng.uniform(-slack_y, slack_y)]
    )
    half = np.array([box_u / 2, box_v / 2])

    def to_image(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        placed: npt.NDArray[np.float64] = _turn(points - half, angle) + centre
        return placed

    rim = max(2.0, 0.025 * min(box_u, box_v))
    divider = max(_GAP, 0.012 * box_v)
    n_trays = int(rng.integers(tray_range[0], tray_range[1] + 1))
    n_trays = max(1, min(n_trays, int((box_v - 2 * rim + divider) // (6.0 + divider))))
    depth = (box_v - 2 * rim - (n_trays - 1) * divider) / n_trays
    tray_boxes = [
        (rim, rim + k * (depth + divider), box_u - rim, rim + k * (depth + divider) + depth)
        for k in range(n_trays)
    ]
    pieces = [
        piece
        for tray in tray_boxes
        for piece in _tray_pieces(rng, tray, per_tray, int(rng.integers(len(_ROCKS))))
    ]

    box_polygon = to_image(_rectangle(0.0, 0.0, box_u, box_v))
    regions = (
        Region("box", polygon=box_polygon),
        *(Region("rock", polygon=to_image(piece.outline)) for piece in pieces),
    )
    shape = (height, width)
    labels = rasterise(regions, shape, CORE_CLASSES, draw_order=CORE_DRAW_ORDER)

    # Objects: 0 table, 1 box wall, 2 tray floor, 3 + k the k-th piece.
    look = _stream(base, _LOOK)
    ids = np.zeros(shape, dtype=np.uint16)
    _paint(ids, box_polygon, 1)
    for tray in tray_boxes:
        _paint(ids, to_image(_rectangle(*tray)), 2)
    texture = _smooth_noise(look, shape, 1.0, 8.0)  # wood grain: streaks along x
    texture *= np.float32(0.08)
    texture += np.float32(1.0)
    colours = np.empty((3 + len(pieces), 3), dtype=np.float32)
    colours[0] = np.array([0.62, 0.48, 0.33]) * look.uniform(0.85, 1.15)
    colours[1] = look.uniform(0.3, 0.6) * np.array([1.0, 0.97, 0.92]) + look.uniform(0, 0.05, 3)
    colours[2] = colours[1] * look.uniform(0.35, 0.55)
    grain = np.empty(3 + len(pieces), dtype=np.float32)
    grain[:3] = (0.04, 0.03, 0.08)
    found = 0
    for k, piece in enumerate(pieces):
        colours[3 + k] = _ROCKS[piece.lithology] * look.uniform(0.8, 1.15) + look.uniform(
            -0.04, 0.04, 3
        )
        grain[3 + k] = look.uniform(0.08, 0.25)
        window, inside = fill_polygon(to_image(piece.outline), shape)
        if not inside.any():
            continue
        found += _count_components(inside)
        ids[window][inside] = 3 + k
        # Cylinder shading: darker towards the sides of the piece.
        rows = np.arange(window[0].start, window[0].stop) + 0.5
        cols = np.arange(window[1].start, window[1].stop) + 0.5
        centre_xy = to_image(np.array([piece.centre]))[0]
        turn = angle + piece.angle
        across = (rows[:, None] - centre_xy[1]) * math.cos(turn) - (
            cols[None, :] - centre_xy[0]
        ) * math.sin(turn)
        shade = 1.0 - 0.45 * np.clip(across / max(piece.half_width, 0.5), -1, 1) ** 2
        texture[window][inside] = shade[inside]
    rows_light, cols_light = _lighting(look, shape, 0.5)
    texture *= rows_light[:, None]
    texture *= cols_light[None, :]
    image = _render(
        ids,
        np.clip(colours, 0.0, 1.0),
        grain,
        texture,
        _stream(base, _NOISE),
        noise=noise,
        grey=grey,
    )
    return Scene(
        image=image,
        labels=labels,
        classes=CORE_CLASSES,
        regions=regions,
        fragments=found,
        draw_order=CORE_DRAW_ORDER,
    )


def _paint(ids: npt.NDArray[np.uint16], polygon: npt.NDArray[np.float64], value: int) -> None:
    window, inside = fill_polygon(polygon, (ids.shape[0], ids.shape[1]))
    ids[window][inside] = value


def make_core_dataset(
    n: int,
    *,
    height: int = 256,
    width: int = 384,
    fragments: int | tuple[int, int] = (3, 12),
    trays: int | tuple[int, int] = (3, 5),
    rotation: float = 3.0,
    noise: float = 0.02,
    seed: Seed = 0,
    grey: bool = False,
) -> list[Scene]:
    """Make ``n`` core-box scenes (see :func:`make_core_image` for the arguments).

    Image ``i`` is made from the ``i``-th child of ``seed``, so a data set's first
    scenes do not change when ``n`` grows.

    Raises:
        ValueError: An argument is out of range.
    """
    n = _whole("n", n, low=0)
    base = _base(seed)
    children = [
        np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, k)) for k in range(n)
    ]
    return [
        make_core_image(
            height,
            width,
            fragments=fragments,
            trays=trays,
            rotation=rotation,
            noise=noise,
            seed=child,
            grey=grey,
        )
        for child in children
    ]


# -- shapes ---------------------------------------------------------------------------------


def _blob(
    rng: np.random.Generator, centre: npt.NDArray[np.float64], radius: float
) -> npt.NDArray[np.float64]:
    """An ellipse or an irregular star-shaped polygon of about ``radius``, within it."""
    count = int(np.clip(2 * math.pi * radius, 12, 120))
    t = np.linspace(0.0, 2 * math.pi, count, endpoint=False)
    if rng.random() < 0.5:
        ratio = rng.uniform(0.5, 1.0)
        points = np.stack([radius * np.cos(t), radius * ratio * np.sin(t)], axis=1)
        points = _turn(points, rng.uniform(0, math.pi))
    else:
        harmonics = np.arange(2, 6)
        wobble = (
            rng.uniform(0, 1, 4)[:, None]
            / harmonics[:, None]
            * np.cos(harmonics[:, None] * t + rng.uniform(0, 2 * math.pi, 4)[:, None])
        ).sum(axis=0)
        wobble = (wobble - wobble.min()) / max(float(np.ptp(wobble)), 1e-9)
        r = radius * (1.0 - rng.uniform(0.15, 0.4) * wobble)
        points = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    shifted: npt.NDArray[np.float64] = points + centre
    return shifted


def make_shapes_image(
    height: int = 128,
    width: int = 128,
    *,
    classes: Sequence[str] = ("cell",),
    objects: int | tuple[int, int] = (5, 20),
    radius: tuple[float, float] = (4.0, 12.0),
    noise: float = 0.02,
    seed: Seed = 0,
    grey: bool = False,
) -> Scene:
    """Make ellipses and irregular blobs of 1 to 3 classes on a textured background.

    Objects lie wholly inside the image and at least 3 px apart; each class has its own
    colour (each object a shade of it). Objects that do not fit after a number of tries
    are left out.

    Args:
        height: Image height in pixels (at least 16).
        width: Image width in pixels (at least 16).
        classes: One to three class names.
        objects: How many objects: a number or a ``(low, high)`` range.
        radius: Range of the objects' radii in pixels, ``0 < low <= high``.
        noise: Standard deviation of the camera noise, relative to full scale (0 to 0.5).
        seed: Random seed; the same seed gives the same scene.
        grey: Make a ``(H, W)`` grey image instead of RGB.

    Returns:
        The scene; its regions do not overlap (any drawing order).

    Raises:
        ValueError: An argument is out of range.
    """
    height = _whole("height", height, low=16)
    width = _whole("width", width, low=16)
    names = tuple(classes)
    if not 1 <= len(names) <= 3 or len(set(names)) != len(names):
        raise ValueError(f"classes must be 1 to 3 distinct names; got {classes!r}")
    count_range = _count_range("objects", objects, low=0)
    try:
        r_low, r_high = (float(value) for value in radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a (low, high) pair; got {radius!r}") from None
    if not 0 < r_low <= r_high or 2 * r_high + 2 > min(height, width):
        raise ValueError(
            f"radius must satisfy 0 < low <= high and fit the image; got {radius!r} for a "
            f"{height}x{width} image"
        )
    noise = _fraction("noise", noise, high=0.5)
    base = _base(seed)
    rng = _stream(base, _GEOMETRY)
    wanted = int(rng.integers(count_range[0], count_range[1] + 1))
    placed: list[tuple[npt.NDArray[np.float64], float, int]] = []
    for _ in range(wanted * 30):
        if len(placed) == wanted:
            break
        r = rng.uniform(r_low, r_high)
        centre = rng.uniform([r + 1, r + 1], [width - r - 1, height - r - 1])
        if all(np.hypot(*(centre - c)) >= r + rc + _GAP for c, rc, _ in placed):
            placed.append((centre, r, int(rng.integers(len(names)))))
    regions = tuple(
        Region(names[kind], polygon=_blob(rng, centre, r)) for centre, r, kind in placed
    )
    shape = (height, width)
    labels = rasterise(regions, shape, names)

    look = _stream(base, _LOOK)
    ids = np.zeros(shape, dtype=np.uint16)
    found = 0
    for k, region in enumerate(regions):
        window, inside = fill_polygon(np.asarray(region.polygon), shape)
        if inside.any():
            ids[window][inside] = 1 + k
            found += _count_components(inside)
    palette = look.uniform(0.35, 0.95, (len(names), 3))
    colours = np.empty((1 + len(regions), 3), dtype=np.float32)
    colours[0] = look.uniform(0.05, 0.3) * np.ones(3) + look.uniform(0, 0.05, 3)
    for k, (_, _, kind) in enumerate(placed):
        colours[1 + k] = palette[kind] * look.uniform(0.8, 1.1)
    grain = np.full(1 + len(regions), 0.1, dtype=np.float32)
    texture = _smooth_noise(look, shape, 4.0, 4.0)
    texture *= np.float32(0.08)
    texture += np.float32(1.0)
    rows_light, cols_light = _lighting(look, shape, 0.6)
    texture *= rows_light[:, None]
    texture *= cols_light[None, :]
    image = _render(
        ids, np.clip(colours, 0, 1), grain, texture, _stream(base, _NOISE), noise=noise, grey=grey
    )
    return Scene(image=image, labels=labels, classes=names, regions=regions, fragments=found)
