"""Copy-paste augmentation for counting: annotated objects pasted where the loss looks.

With sparse annotation the loss trusts a small disc around each annotated point and the
background far from every object (:func:`~lensloop.tasks.counting.density.loss_weights`).
It never sees the rim of an object (whose neighbourhood may hold unannotated objects), so
a model trained that way spreads each object's density outwards and counts single
objects high, and it never sees two touching objects that are both known, so it counts
such pairs low (docs/benchmarks.md, issue 7).

Pasting fixes what the loss cannot see: :func:`cut_stamps` cuts each annotated object
out of its image (its signal above the image's background level, inside a soft disc), and
:func:`paste_objects` adds stamps to a training crop on trusted background, clear of
everything else, alone or as a close pair, and adds their Gaussians to the target. Every
pixel around a pasted object is trusted and its target is exact, so the model learns the
whole shape of one object's density, and that two touching objects are two.

Stamps are added, not copied over: in fluorescence images the light of overlapping
objects adds up. Like the foreground threshold, this assumes objects brighter than their
background; turn it off (``copy_paste: 0``) for dark objects on a bright field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lensloop.tasks.counting.density import density_target

__all__ = ["PAIR_SHARE", "Stamp", "cut_stamps", "paste_objects"]

#: Share of pasted objects that get a close partner.
PAIR_SHARE = 0.5
_STAMP_RADIUS = 1.25  # x radius: the stamp's full-strength disc
_FADE = 0.5  # x radius: half the width of the stamp's linear fade to zero
_PAIR_DISTANCE = (0.5, 2.0)  # x radius: how far a partner sits from the first object
_CLEARANCE = 2.5  # x radius: trusted empty background around a pasted object's centre


@dataclass(frozen=True, eq=False)
class Stamp:
    """One annotated object's signal, ready to paste.

    Attributes:
        signal: ``(C, S, S)`` float32 intensity above the image's background level,
            faded to zero towards the edge.
        centre: The object's ``(x, y)`` in the stamp, in pixels.
    """

    signal: npt.NDArray[np.float32]
    centre: tuple[float, float]


def cut_stamps(
    pixels: npt.NDArray[np.float32],
    points: npt.ArrayLike,
    background: npt.NDArray[np.bool_],
    *,
    radius: float,
) -> list[Stamp]:
    """Cut the objects at ``points`` out of one image, as stamps.

    Args:
        pixels: ``(C, H, W)`` scaled image.
        points: ``(N, 2)`` annotated ``(x, y)``.
        background: ``(H, W)`` pixels known to hold no object; their per-channel median
            is the level subtracted from each stamp.
        radius: About one object's radius in pixels: the stamp keeps full strength to
            ``1.25 x radius`` from the point and fades out over ``radius`` more.

    Returns:
        A stamp per point whose stamp lies wholly inside the image (none without
        background to measure the level on).
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive; got {radius}")
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    _, height, width = pixels.shape
    if background.shape != (height, width):
        raise ValueError(f"the background mask is {background.shape}, the image {(height, width)}")
    if not len(array) or not background.any():
        return []
    level = np.median(pixels[:, background], axis=1).astype(np.float32)[:, None, None]
    full, fade = _STAMP_RADIUS * radius, _FADE * radius
    half = int(np.ceil(full + 2 * fade))
    offsets = np.arange(-half, half + 1, dtype=np.float64) + 0.5
    stamps: list[Stamp] = []
    for x, y in array:
        col, row = int(np.floor(x)), int(np.floor(y))
        top, left = row - half, col - half
        if top < 0 or left < 0 or row + half >= height or col + half >= width:
            continue
        # Distance of every stamp pixel's centre from the point.
        dy = offsets[:, None] + (row - y)
        dx = offsets[None, :] + (col - x)
        weight = np.clip((full + 2 * fade - np.hypot(dx, dy)) / (2 * fade), 0.0, 1.0)
        patch = pixels[:, top : top + 2 * half + 1, left : left + 2 * half + 1] - level
        signal = (np.clip(patch, 0.0, None) * weight).astype(np.float32)
        stamps.append(Stamp(signal, (float(x - left), float(y - top))))
    return stamps


def paste_objects(
    pixels: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    stamps: Sequence[Stamp],
    *,
    count: int,
    radius: float,
    sigma: float,
    scale: float,
    rng: np.random.Generator,
) -> int:
    """Paste up to ``count`` objects (some with a partner) onto a crop, in place.

    An object lands only where every pixel within ``2.5 x radius`` is trusted
    (``weight == 1``) and empty (``target == 0``), so everything around it is known; its
    stamp is added to ``pixels`` and its Gaussian (``sigma``, times ``scale``) to
    ``target``. :data:`PAIR_SHARE` of the objects get a partner ``0.5-2 x radius`` away
    in a random direction (wherever that falls: it is known too).

    Args:
        pixels: ``(C, H, W)`` crop.
        target: ``(1, H, W)`` density target of the crop (in training units).
        weight: ``(1, H, W)`` loss weights of the crop; not changed.
        stamps: What to paste (:func:`cut_stamps`).
        count: Most first objects to paste (partners not counted).
        radius: About one object's radius in pixels (as for :func:`cut_stamps`).
        sigma: Width of each object's Gaussian in the target.
        scale: Factor of the target (one object's mass in target units).
        rng: Random source.

    Returns:
        Objects pasted, partners included.
    """
    from scipy.ndimage import distance_transform_edt

    if not stamps or count < 1:
        return 0
    _, height, width = pixels.shape
    free = (weight[0] == 1) & (target[0] <= 0)
    clear: npt.NDArray[np.bool_] = distance_transform_edt(free) > _CLEARANCE * radius
    half = stamps[0].signal.shape[1] // 2
    clear[:half, :] = clear[-half - 1 :, :] = False
    clear[:, :half] = clear[:, -half - 1 :] = False
    placed: list[tuple[float, float]] = []
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(count):
        spots = np.flatnonzero(clear)
        if not len(spots):
            break
        row, col = divmod(int(spots[rng.integers(len(spots))]), width)
        group = [(col, row)]
        if rng.random() < PAIR_SHARE:
            angle = rng.uniform(0.0, 2.0 * np.pi)
            distance = rng.uniform(*_PAIR_DISTANCE) * radius
            group.append(
                (
                    round(col + distance * float(np.cos(angle))),
                    round(row + distance * float(np.sin(angle))),
                )
            )
        for gx, gy in group:
            stamp = stamps[int(rng.integers(len(stamps)))]
            size = stamp.signal.shape[1]
            top, left = gy - size // 2, gx - size // 2
            if top < 0 or left < 0 or top + size > height or left + size > width:
                continue
            pixels[:, top : top + size, left : left + size] += stamp.signal
            placed.append((left + stamp.centre[0], top + stamp.centre[1]))
        # Nothing else lands where this one's stamp or clearance reaches.
        clear &= np.hypot(xx - col, yy - row) > 2 * _CLEARANCE * radius
    if placed:
        target[0] += density_target(np.asarray(placed), (height, width), sigma=sigma) * scale
    return len(placed)
