"""Synthetic FlowCam exports with known answers, for tests and benchmarks.

:func:`make_flowcam_export` writes what VisualSpreadsheet writes (collage TIFFs and a
``.lst`` file in the real layout, with realistic measurement columns) and returns the
truth: every particle's collage, page, box and exact pixels. Some collages are
multi-page (their particles spread over two pages, named by a ``collage_page`` column)
and some carry an extra blank page, so both paths of the reader are exercised.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> name = flowcam_folder_name("cruise42_station7", 50.25, -4.125, date(2024, 3, 21), n=2)
    >>> truth = make_flowcam_export(root / name, n_collages=3, particles=30, seed=1)
    >>> len(truth.particles), truth.lst.name
    (30, 'cruise42_station7_50.2500_-4.1250_21032024_2.lst')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

__all__ = [
    "LST_VERSION",
    "FlowCamTruth",
    "SyntheticParticle",
    "flowcam_folder_name",
    "make_flowcam_export",
]

#: The ``.lst`` format version written.
LST_VERSION = "017"

# The fields written, in file order, with their type codes (1 integer, 2 float, 3 string).
# A subset of what VisualSpreadsheet writes; the box and collage columns are the real ones.
_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", 1),
    ("abd_area", 2),
    ("abd_diameter", 2),
    ("abd_volume", 2),
    ("aspect_ratio", 2),
    ("avg_blue", 2),
    ("avg_green", 2),
    ("avg_red", 2),
    ("calibration_factor", 2),
    ("calibration_image", 1),
    ("camera", 1),
    ("capture_x", 1),
    ("capture_y", 1),
    ("circularity", 2),
    ("collage_file", 3),
    ("date", 3),
    ("edge_gradient", 2),
    ("elapsed_time", 2),
    ("esd_diameter", 2),
    ("filter_score", 2),
    ("image_h", 1),
    ("image_w", 1),
    ("image_x", 1),
    ("image_y", 1),
    ("intensity", 2),
    ("length", 2),
    ("sigma_intensity", 2),
    ("source_image", 1),
    ("time", 3),
    ("width", 2),
)
_PAGE_FIELD = ("collage_page", 1)
_CALIBRATION_UM_PER_PX = 0.7398
_GAP = 2


@dataclass(frozen=True, eq=False)
class SyntheticParticle:
    """One particle as written.

    Attributes:
        id: Its ``id`` in the ``.lst`` file.
        collage_file: The collage file name.
        page: The collage page, from 0.
        box: ``(x, y, w, h)`` in pixels on that page.
        pixels: ``(h, w)`` or ``(h, w, C)``: exactly the pixels of the box.
        row: Its ``.lst`` row, as the text values written.
    """

    id: int
    collage_file: str
    page: int
    box: tuple[int, int, int, int]
    pixels: np.ndarray
    row: dict[str, str]


@dataclass
class FlowCamTruth:
    """What :func:`make_flowcam_export` wrote.

    Attributes:
        folder: The export folder.
        lst: The ``.lst`` file.
        particles: Every particle, in ``.lst`` order.
        n_pages: Pages of each collage file.
        blank_pages: Pages with no particle on them.
        fields: ``(name, type code)`` of the ``.lst`` columns.
    """

    folder: Path
    lst: Path
    particles: list[SyntheticParticle] = field(default_factory=list)
    n_pages: dict[str, int] = field(default_factory=dict)
    blank_pages: int = 0
    fields: tuple[tuple[str, int], ...] = ()


def flowcam_folder_name(
    prefix: str, lat: float, lon: float, day: date, *, n: int | None = None
) -> str:
    """The export folder name the default sample pattern reads.

    Example:
        >>> flowcam_folder_name("cruise42_station7", 50.25, -4.125, date(2024, 3, 21), n=2)
        'cruise42_station7_50.2500_-4.1250_21032024_2'
    """
    name = f"{prefix}_{lat:.4f}_{lon:.4f}_{day:%d%m%Y}"
    return name if n is None else f"{name}_{n}"


def _pack(sizes: list[tuple[int, int]], width: int, height: int) -> list[tuple[int, int]] | None:
    """Shelf-pack ``(w, h)`` boxes left to right, top to bottom; None if they do not fit."""
    x = y = shelf = _GAP
    corners = []
    for w, h in sizes:
        if x + w + _GAP > width:
            x, y, shelf = _GAP, shelf, shelf
        if y + h + _GAP > height or w + 2 * _GAP > width:
            return None
        corners.append((x, y))
        x += w + _GAP
        shelf = max(shelf, y + h + _GAP)
    return corners


def _particle_pixels(
    rng: np.random.Generator, h: int, w: int, channels: int, dtype: np.dtype, background: int
) -> np.ndarray:
    """A noisy ellipse on the background: distinct for distinct random states."""
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0
    shape = (h, w) if channels == 1 else (h, w, channels)
    pixels = np.full(shape, background, dtype=dtype)
    noise = rng.integers(0, max(2, background * 3 // 4), size=shape, dtype=np.int64)
    mask = inside if channels == 1 else inside[:, :, None].repeat(channels, axis=2)
    pixels[mask] = noise[mask].astype(dtype)
    # One pixel that nothing else shares, so identical crops are impossible.
    pixels.flat[0] = np.asarray(rng.integers(0, background), dtype=dtype)
    return pixels


def _write_tiff(path: Path, pages: list[np.ndarray]) -> None:
    import tifffile

    with tifffile.TiffWriter(path) as writer:
        for page in pages:
            photometric = "minisblack" if page.ndim == 2 else "rgb"
            writer.write(page, photometric=photometric, metadata=None)


def _row(
    particle_id: int,
    collage: str,
    page: int,
    box: tuple[int, int, int, int],
    pixels: np.ndarray,
    when: datetime,
    rng: np.random.Generator,
    with_page: bool,
) -> dict[str, str]:
    x, y, w, h = box
    um = _CALIBRATION_UM_PER_PX
    length, width = max(w, h) * um, min(w, h) * um
    area = np.pi * length * width / 4
    diameter = 2 * np.sqrt(area / np.pi)
    mean = pixels.reshape(h * w, -1).mean(axis=0)
    red, green, blue = (mean[0], mean[0], mean[0]) if mean.size == 1 else mean[:3]
    values: dict[str, str] = {
        "id": str(particle_id),
        "abd_area": f"{area:.4f}",
        "abd_diameter": f"{diameter:.4f}",
        "abd_volume": f"{np.pi / 6 * diameter**3:.4f}",
        "aspect_ratio": f"{width / length:.4f}",
        "avg_blue": f"{blue:.3f}",
        "avg_green": f"{green:.3f}",
        "avg_red": f"{red:.3f}",
        "calibration_factor": f"{um:.4f}",
        "calibration_image": "1",
        "camera": "0",
        "capture_x": str(int(rng.integers(0, 1920))),
        "capture_y": str(int(rng.integers(0, 1200))),
        "circularity": f"{rng.uniform(0.3, 1.0):.4f}",
        "collage_file": collage,
        "date": f"{when:%Y-%m-%d}",
        "edge_gradient": f"{rng.uniform(5, 120):.3f}",
        "elapsed_time": f"{(when - when.replace(hour=0, minute=0, second=0)).seconds:.3f}",
        "esd_diameter": f"{diameter * rng.uniform(0.9, 1.1):.4f}",
        "filter_score": f"{rng.uniform(0, 1):.4f}",
        "image_h": str(h),
        "image_w": str(w),
        "image_x": str(x),
        "image_y": str(y),
        "intensity": f"{float(mean.mean()):.3f}",
        "length": f"{length:.4f}",
        "sigma_intensity": f"{float(pixels.std()):.3f}",
        "source_image": str(particle_id * 3 + 1),
        "time": f"{when:%H:%M:%S}",
        "width": f"{width:.4f}",
    }
    if with_page:
        values["collage_page"] = str(page)
    return values


def make_flowcam_export(
    folder: str | Path,
    *,
    n_collages: int,
    particles: int,
    seed: int = 0,
    page_size: tuple[int, int] = (480, 640),
    particle_size: tuple[int, int] = (8, 40),
    multipage_every: int = 4,
    blank_every: int = 5,
    channels: int = 1,
    dtype: str | np.dtype = "uint8",
    started: datetime = datetime(2024, 3, 21, 9, 30),
) -> FlowCamTruth:
    """Write a FlowCam-style export folder with known particles.

    Particles are spread evenly over the collages (``collage_00001.tif``...) and
    shelf-packed on each page over a uniform background. Every ``multipage_every``-th
    collage (the 2nd, then every ``multipage_every`` after) spreads its particles over
    two pages, and every ``blank_every``-th (the 3rd, ...) gets an extra page with no
    particle. The ``.lst`` file is named after the folder.

    Args:
        folder: The export folder to create; its name is the sample name (see
            :func:`flowcam_folder_name`).
        n_collages: Collage files to write (at least 1).
        particles: Particles in all (at least one per collage).
        seed: Seed of sizes and pixels.
        page_size: ``(height, width)`` of a collage page.
        particle_size: Smallest and largest particle side, in pixels.
        multipage_every: Period of two-page collages; 0 for none.
        blank_every: Period of collages with an extra blank page; 0 for none.
        channels: 1 (gray) or 3 (RGB).
        dtype: ``uint8`` or ``uint16`` (12-bit values).
        started: When the run started (the ``date`` and ``time`` columns).

    Returns:
        The truth: every particle's box and pixels, the pages and the blank pages.

    Raises:
        ValueError: Bad counts or options, or particles that do not fit on the pages
            (use more collages or larger pages).
    """
    if n_collages < 1 or particles < n_collages:
        raise ValueError(
            f"need n_collages >= 1 and at least one particle per collage, got "
            f"n_collages={n_collages}, particles={particles}"
        )
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    np_dtype = np.dtype(dtype)
    if np_dtype not in (np.dtype("uint8"), np.dtype("uint16")):
        raise ValueError(f"dtype must be uint8 or uint16, got {np_dtype}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(seed)
    background = 230 if np_dtype == np.uint8 else 3700
    height, width = page_size
    low, high = particle_size
    per = [particles // n_collages + (i < particles % n_collages) for i in range(n_collages)]
    with_page = multipage_every > 0 and any(
        i % multipage_every == 1 and per[i] > 1 for i in range(n_collages)
    )
    fields = (*_FIELDS, _PAGE_FIELD) if with_page else _FIELDS
    truth = FlowCamTruth(folder=folder, lst=folder / f"{folder.name}.lst", fields=fields)
    next_id = 1
    when = started
    for index, count in enumerate(per):
        name = f"collage_{index + 1:05d}.tif"
        two_pages = multipage_every > 0 and index % multipage_every == 1 and count > 1
        split = [count - count // 2, count // 2] if two_pages else [count]
        pages: list[np.ndarray] = []
        for page, on_page in enumerate(split):
            shape = (height, width) if channels == 1 else (height, width, channels)
            canvas = np.full(shape, background, dtype=np_dtype)
            sizes = [
                (int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))
                for _ in range(on_page)
            ]
            corners = _pack(sizes, width, height)
            if corners is None:
                raise ValueError(
                    f"{on_page} particles of {low}-{high} px do not fit on a {width} x "
                    f"{height} page; use more collages or a larger page_size"
                )
            for (w, h), (x, y) in zip(sizes, corners, strict=True):
                pixels = _particle_pixels(rng, h, w, channels, np_dtype, background)
                canvas[y : y + h, x : x + w] = pixels
                when += timedelta(milliseconds=int(rng.integers(20, 400)))
                row = _row(next_id, name, page, (x, y, w, h), pixels, when, rng, with_page)
                truth.particles.append(
                    SyntheticParticle(next_id, name, page, (x, y, w, h), pixels, row)
                )
                next_id += 1
            pages.append(canvas)
        if blank_every > 0 and index % blank_every == 2:
            pages.append(np.full_like(pages[0], background))
        truth.blank_pages += len(pages) - len(split)
        truth.n_pages[name] = len(pages)
        _write_tiff(folder / name, pages)
    lines = [LST_VERSION, f"num-fields|{len(fields)}"]
    lines += [f"{name}|{code}" for name, code in fields]
    lines += ["|".join(p.row[name] for name, _ in fields) for p in truth.particles]
    truth.lst.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return truth
