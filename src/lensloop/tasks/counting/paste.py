"""Copy-paste augmentation for counting: known single objects pasted where the loss looks.

With sparse annotation the loss trusts a small disc around each annotated point and the
background far from every object (:func:`~lensloop.tasks.counting.density.loss_weights`).
It never sees the rim of an object (the rim may touch an unannotated neighbour), so a
model trained that way spreads each object's density outwards and counts single objects
high, and it rarely sees two touching objects that are both annotated, so it counts such
pairs low. The two errors cancel by chance, differently for every seed
(docs/benchmarks.md).

Pasting shows the loss what it cannot see: :func:`cut_stamps` cuts out annotated objects
that stand alone in the foreground (a foreground component holding one annotated point,
and one intensity maximum; the light above the local background level
out to ``grow`` pixels beyond the component, none of a neighbour's), and
:func:`paste_objects` adds them to a training crop on trusted empty background, alone or
as a touching pair or triple, with their Gaussians added to the target. Every pixel a
pasted object lights is trusted and its target is exact, so the loss sees whole objects,
rim included, and touching groups whose count is known.

Stamps are added, not copied over (in fluorescence the light of overlapping objects adds
up) and the result is clipped at the source image's brightest value, where its camera
saturated. Like the foreground threshold this assumes objects brighter than their
background; turn it off (``copy_paste: 0``) for dark objects on a bright field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from lensloop.tasks.counting.density import density_target

__all__ = ["GROUP_SIZES", "Stamp", "cut_stamps", "paste_objects", "typical_stamps"]

#: Chance that a pasted group holds 1, 2 or 3 objects.
GROUP_SIZES = (0.5, 0.35, 0.15)
#: Partners sit ``sqrt(u) x (r1 + r2)`` apart, ``u`` uniform in this range (r: the
#: objects' equivalent radii): from heavily overlapping to just touching.
_SPREAD = (0.2**2, 1.0)
_WINDOW = 20  # half-side of the window the local background level is measured in
_MIN_BACKGROUND = 30  # background pixels that window needs
_TRIES = 30  # random spots tried per group before it is given up
_GAP = 4  # pixels kept free around a pasted stamp for the next group


@dataclass(frozen=True, eq=False)
class Stamp:
    """One annotated object's light, ready to paste.

    Attributes:
        signal: ``(C, h, w)`` float32 intensity above the local background level, faded to
            zero towards the edge; exactly zero outside the object's reach.
        centre: The annotated point ``(x, y)`` in stamp pixels.
        radius: Equivalent radius of the object's foreground component (pixels).
    """

    signal: npt.NDArray[np.float32]
    centre: tuple[float, float]
    radius: float

    @property
    def area(self) -> float:
        """Area of the object's foreground component (pixels)."""
        return float(np.pi * self.radius**2)


def cut_stamps(
    pixels: npt.NDArray[np.float32],
    points: npt.ArrayLike,
    foreground: npt.NDArray[np.bool_],
    *,
    grow: float,
) -> list[Stamp]:
    """Cut the annotated objects that stand alone out of one image.

    An annotated point gives a stamp when its foreground component holds no other
    annotated point and one maximum of the lightly smoothed intensity, lies ``2 x grow``
    pixels inside the image, and has enough background near it to measure the local level
    on. (Convexity is no test at these sizes: a pixelated disc of 29 pixels has a solidity
    of 0.78.) Oversized components, often two objects as one, are dropped later across all
    images (:func:`typical_stamps`).

    Args:
        pixels: ``(C, H, W)`` scaled image.
        points: ``(N, 2)`` annotated ``(x, y)``.
        foreground: ``(H, W)`` where objects are (:func:`~lensloop.tasks.counting.density.
            foreground_mask`).
        grow: Pixels beyond the component that still hold the object's light (its blur):
            the stamp keeps full strength to ``grow - 1`` pixels from the component and
            fades out by ``grow + 1``; pixels nearer another component are left out.

    Raises:
        ValueError: ``grow`` is not positive or the mask does not fit the image.
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max

    if not grow > 0:
        raise ValueError(f"grow must be positive; got {grow}")
    _, height, width = pixels.shape
    if foreground.shape != (height, width):
        raise ValueError(f"the foreground mask is {foreground.shape}, the image {(height, width)}")
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels, n = ndimage.label(foreground)
    if n == 0 or not len(array):
        return []
    rows = np.clip(array[:, 1].astype(np.intp), 0, height - 1)
    cols = np.clip(array[:, 0].astype(np.intp), 0, width - 1)
    component = labels[rows, cols]
    clicks = np.bincount(component, minlength=n + 1)
    background = ndimage.distance_transform_edt(~foreground) > 2 * grow
    smooth = ndimage.gaussian_filter(pixels.mean(axis=0), 1.0)
    boxes = ndimage.find_objects(labels)
    pad = int(np.ceil(2 * grow)) + 2
    stamps: list[Stamp] = []
    for k in np.flatnonzero((component > 0) & (clicks[component] == 1)):
        label = int(component[k])
        box = boxes[label - 1]
        if box is None:  # never: every label in 1..n has pixels
            continue
        top, bottom = box[0].start - pad, box[0].stop + pad
        left, right = box[1].start - pad, box[1].stop + pad
        if top < 0 or left < 0 or bottom > height or right > width:
            continue
        window = labels[top:bottom, left:right]
        mine = window == label
        maxima = peak_local_max(  # type: ignore[no-untyped-call]
            np.where(mine, smooth[top:bottom, left:right], 0.0),
            min_distance=2,
            exclude_border=False,
        )
        if len(maxima) != 1:
            continue
        cy, cx = (top + bottom) // 2, (left + right) // 2
        near = (
            slice(max(0, cy - _WINDOW), cy + _WINDOW + 1),
            slice(max(0, cx - _WINDOW), cx + _WINDOW + 1),
        )
        if int(background[near].sum()) < _MIN_BACKGROUND:
            continue
        level = np.median(pixels[:, near[0], near[1]][:, background[near]], axis=1)
        from_mine = ndimage.distance_transform_edt(~mine)
        others = (window > 0) & ~mine
        fade = np.clip((grow + 1.0 - from_mine) / 2.0, 0.0, 1.0)
        if others.any():
            fade[ndimage.distance_transform_edt(~others) <= from_mine] = 0.0
        signal = (pixels[:, top:bottom, left:right] - level[:, None, None]) * fade
        stamps.append(
            Stamp(
                signal.astype(np.float32),
                (float(array[k, 0] - left), float(array[k, 1] - top)),
                float(np.sqrt(mine.sum() / np.pi)),
            )
        )
    return stamps


def typical_stamps(stamps: Sequence[Stamp], *, max_area_ratio: float = 1.5) -> list[Stamp]:
    """Drop stamps much larger than the median: most of those are two objects as one.

    A component that holds one annotated point and one intensity maximum may still be two
    heavily overlapping objects; pasted with one Gaussian, it would teach the model that
    such a pair is one. On the synthetic benchmark, components at most 1.5 times the
    median area are nine in ten single cells.
    """
    if not stamps:
        return []
    limit = max_area_ratio * float(np.median([s.area for s in stamps]))
    return [s for s in stamps if s.area <= limit]


def paste_objects(
    pixels: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    stamps: Sequence[Stamp],
    *,
    groups: int,
    sigma: float,
    scale: float,
    ceiling: npt.NDArray[np.float32] | None,
    rng: np.random.Generator,
) -> int:
    """Paste up to ``groups`` groups of objects onto a crop, in place.

    A group is 1, 2 or 3 objects (:data:`GROUP_SIZES`), partners overlapping or touching,
    each stamp turned and flipped at random. It lands only where every pixel its stamps
    light is trusted (``weight == 1``) and empty (``target == 0``), so everything around it
    is known; its light is added to ``pixels`` and one Gaussian per object (``sigma``,
    times ``scale``) to ``target``.

    Args:
        pixels: ``(C, H, W)`` crop.
        target: ``(1, H, W)`` density target of the crop (in training units).
        weight: ``(1, H, W)`` loss weights of the crop; not changed.
        stamps: What to paste (:func:`cut_stamps`).
        groups: Most groups to paste.
        sigma: Width of each object's Gaussian in the target.
        scale: Factor of the target (one object's mass in target units).
        ceiling: ``(C,)`` brightest value of the crop's image per channel: pasted pixels
            are clipped there, as the camera clipped the image (``None``: no clipping).
        rng: Random source.

    Returns:
        Objects pasted.
    """
    if not stamps or groups < 1:
        return 0
    _, height, width = pixels.shape
    free = (weight[0] == 1) & (target[0] <= 0)
    centres: list[tuple[float, float]] = []
    for _ in range(groups):
        spots = np.flatnonzero(free)
        if not len(spots):
            break
        size = int(rng.choice(len(GROUP_SIZES), p=GROUP_SIZES)) + 1
        members = [_turned(stamps[int(rng.integers(len(stamps)))], rng) for _ in range(size)]
        offsets = [(0.0, 0.0)]
        for member in members[1:]:
            x0, y0 = offsets[int(rng.integers(len(offsets)))]
            distance = (member.radius + members[0].radius) * float(np.sqrt(rng.uniform(*_SPREAD)))
            angle = rng.uniform(0.0, 2.0 * np.pi)
            offsets.append(
                (x0 + distance * float(np.cos(angle)), y0 + distance * float(np.sin(angle)))
            )
        for _try in range(_TRIES):
            row, col = divmod(int(spots[rng.integers(len(spots))]), width)
            corners = [
                (round(row + dy - member.y), round(col + dx - member.x))
                for member, (dx, dy) in zip(members, offsets, strict=True)
            ]
            if all(
                _lands(free, member.lit, top, left)
                for member, (top, left) in zip(members, corners, strict=True)
            ):
                break
        else:
            continue
        for member, (top, left) in zip(members, corners, strict=True):
            h, w = member.lit.shape
            pixels[:, top : top + h, left : left + w] += member.signal
            free[max(0, top - _GAP) : top + h + _GAP, max(0, left - _GAP) : left + w + _GAP] = False
            centres.append((left + member.x, top + member.y))
    if centres:
        target[0] += density_target(np.asarray(centres), (height, width), sigma=sigma) * scale
        if ceiling is not None:
            np.minimum(pixels, ceiling[:, None, None], out=pixels)
    return len(centres)


class _Turned(NamedTuple):
    """A stamp as it will be pasted: its light, where that is not zero, and its centre."""

    signal: npt.NDArray[np.float32]
    lit: npt.NDArray[np.bool_]
    x: float
    y: float
    radius: float


def _turned(stamp: Stamp, rng: np.random.Generator) -> _Turned:
    """The stamp's light and centre, turned by a random multiple of 90 degrees and flipped."""
    signal = stamp.signal
    x, y = stamp.centre
    for _ in range(int(rng.integers(4))):
        # np.rot90 turns counter-clockwise: a point (x, y) of a w-wide image goes to (y, w - x).
        x, y = y, signal.shape[2] - x
        signal = np.rot90(signal, 1, axes=(1, 2))
    if rng.integers(2):
        signal = signal[:, :, ::-1]
        x = signal.shape[2] - x
    signal = np.ascontiguousarray(signal)
    return _Turned(signal, np.any(signal != 0, axis=0), x, y, stamp.radius)


def _lands(free: npt.NDArray[np.bool_], lit: npt.NDArray[np.bool_], top: int, left: int) -> bool:
    """Whether every lit pixel, placed at ``(top, left)``, falls on free pixels of the crop."""
    h, w = lit.shape
    if top < 0 or left < 0 or top + h > free.shape[0] or left + w > free.shape[1]:
        return False
    return bool(free[top : top + h, left : left + w][lit].all())
