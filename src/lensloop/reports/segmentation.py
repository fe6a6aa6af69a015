"""Figures of a segmentation: a label map over its image, and IoU per class.

Both are pure functions: the caller passes arrays and scores (nothing here opens a
project or the catalog), and each writes one PNG atomically and returns its path. Label
maps follow :mod:`lensloop.annotate.labelmap` (``uint8``, 0 background, ``k`` the
``k``-th class, 255 void).

- :func:`draw_segment_overlay`: the image, contrast-stretched and scaled to fit
  ``max_side`` as :func:`~lensloop.reports.counting.draw_count_overlay` shows it, each
  class's pixels tinted in its own colour (:func:`class_colours`), fragment outlines
  drawn in a darker shade of it, void greyed and hatched, and a legend band on top with every
  class's share of the non-void pixels. The label map is scaled with nearest-neighbour
  sampling, so a 6000 x 4000 map costs memory in proportion to the picture.
- :func:`draw_iou_bars`: the IoU of every label as horizontal bars, with the mean IoU
  and the pixel accuracy, from :func:`lensloop.tasks.segment.scoring.segment_scores`.

Layers: ``reports`` sits above ``tasks``, so it uses the segmentation task's own label-map
checks. Pillow, matplotlib and the task modules are imported inside the functions, so
importing this module costs NumPy only.
"""

from __future__ import annotations

import colorsys
import io
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError
from lensloop.reports._common import (
    Font,
    check_image,
    check_max_side,
    fit_text,
    font_px,
    line_px,
    picture,
    picture_size,
    png_path,
    shorten,
)

if TYPE_CHECKING:
    from PIL import ImageDraw

__all__ = ["class_colours", "draw_iou_bars", "draw_segment_overlay"]

logger = logging.getLogger(__name__)

_NAME_CHARS: Final = 30
_BAND: Final = (255, 255, 255)
_INK: Final = (0, 0, 0)
_VOID_GREY: Final = 128.0
"""Void pixels are blended towards this grey ..."""
_VOID_SHADE: Final = 0.6
"""... by this much, ..."""
_HATCH: Final = (70, 70, 70)
"""... and crossed by diagonal lines of this colour."""
_HATCH_STEP: Final = 8
_OUTLINE_SHADE: Final = 0.6
"""Fragment outlines are drawn in the class colour darkened to this much."""
# Distinct, bright colours for the classes 1, 2, ... (Sasha Trubetskoy's list, reordered
# so the first few differ most); later classes get hues spaced by the golden angle.
_PALETTE: Final = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (128, 128, 0),
    (0, 0, 128),
    (250, 190, 212),
    (220, 190, 255),
    (170, 255, 195),
    (255, 215, 180),
)


def class_colours(n_classes: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours for classes 1 … ``n_classes`` (background has none).

    The first 18 are a fixed list of well-separated colours; beyond it hues step by
    the golden angle. The same class number always gets the same colour.

    Example:
        >>> class_colours(2)
        [(230, 25, 75), (60, 180, 75)]
    """
    colours = list(_PALETTE[:n_classes])
    for k in range(len(colours), n_classes):
        hue = (0.13 + k * 0.381966) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85 if k % 2 else 0.65, 0.95 if k % 3 else 0.75)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def _share(fraction: float | None) -> str:
    if fraction is None:
        return "n/a"
    if 0 < fraction < 0.0005:
        return "<0.1%"
    return f"{fraction:.1%}"


# --------------------------------------------------------------------------- overlay


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"alpha must be a number from 0 to 1; got {alpha!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be from 0 (no tint) to 1 (solid colour); got {alpha}")
    return float(alpha)


def _legend(
    names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    counts: npt.NDArray[np.int64],
    void_px: int,
    total_px: int,
) -> list[tuple[str, tuple[int, int, int] | None]]:
    """``(text, swatch colour)`` per legend entry; None for background, void's is grey."""
    n_pixels = total_px - void_px
    entries: list[tuple[str, tuple[int, int, int] | None]] = []
    for label, name in enumerate(names):
        fraction = int(counts[label]) / n_pixels if n_pixels else None
        swatch = None if label == 0 else colours[label - 1]
        entries.append((f"{shorten(name, _NAME_CHARS)} {_share(fraction)}", swatch))
    if void_px:
        entries.append((f"void {_share(void_px / total_px)} of the image", _HATCH))
    return entries


def _wrap(
    draw: ImageDraw.ImageDraw,
    entries: list[tuple[str, tuple[int, int, int] | None]],
    font: Font,
    font_px: int,
    width: int,
) -> list[list[tuple[str, tuple[int, int, int] | None]]]:
    """Lay legend entries out in lines that fit ``width`` pixels (at least one per line)."""
    margin = max(4, font_px // 2)
    lines: list[list[tuple[str, tuple[int, int, int] | None]]] = [[]]
    x = margin
    for text, swatch in entries:
        need = font_px + font_px // 2 + draw.textlength(text, font=font) + 2 * font_px
        if lines[-1] and x + need > width - margin:
            lines.append([])
            x = margin
        lines[-1].append((text, swatch))
        x += int(need)
    return lines


def _draw_legend(
    draw: ImageDraw.ImageDraw,
    lines: list[list[tuple[str, tuple[int, int, int] | None]]],
    font: Font,
    font_px: int,
    width: int,
) -> None:
    margin = max(4, font_px // 2)
    y = margin
    for entries in lines:
        x = float(margin)
        for text, swatch in entries:
            box = (round(x), y + 1, round(x) + font_px - 1, y + font_px)
            if swatch is None:  # background: no tint, an empty box
                draw.rectangle(box, fill=_BAND, outline=_INK)
            else:
                draw.rectangle(box, fill=swatch, outline=_INK)
            x += font_px + font_px // 2
            shown = fit_text(draw, text, font, width - margin - x)
            draw.text((x, y), shown, fill=_INK, font=font)
            x += draw.textlength(shown, font=font) + 2 * font_px
        y += line_px(font_px)


def _outline(small: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.bool_]:
    """Pixels of a class (not background, not void) within ``width`` of another label."""
    edge = np.zeros(small.shape, dtype=bool)
    for step in range(1, width + 1):
        differs = small[step:, :] != small[:-step, :]
        edge[step:, :] |= differs
        edge[:-step, :] |= differs
        differs = small[:, step:] != small[:, :-step]
        edge[:, step:] |= differs
        edge[:, :-step] |= differs
    edge &= (small != 0) & (small != 255)
    return edge


def draw_segment_overlay(
    image: npt.ArrayLike,
    labels: npt.ArrayLike,
    classes: Sequence[str],
    path: Path | str,
    *,
    max_side: int = 2048,
    alpha: float = 0.45,
    title: str | None = None,
) -> Path:
    """Draw a label map over its image as a PNG: classes tinted, fragments outlined.

    The image is shown as :func:`~lensloop.reports.counting.draw_count_overlay` shows it
    (uint8 as it is, other dtypes such as uint16 stretched from their 0.5th to their
    99.5th percentile; shrunk by block-averaging to fit ``max_side``, or enlarged by a
    whole factor when its longer side is under 512 pixels). The label map is scaled to
    the same size with nearest-neighbour sampling. Then:

    - each class's pixels are blended with its colour (:func:`class_colours`), by
      ``alpha``; background is left as it is;
    - the outline of every fragment (class pixels next to another label) is drawn in a
      darker shade of the class's colour, about 1 pixel wide per 1000 pixels of picture;
    - void pixels are greyed and hatched with dark diagonal lines.

    A white band on top holds the title and a legend: a swatch and each label's share of
    the image's non-void pixels (counted on the full-size map), and void's share of all
    pixels when there is void. The whole PNG, band included, is at most ``max_side``
    pixels on each side.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array, any boolean, integer or float dtype.
        labels: ``(H, W)`` label map of the same ``H`` and ``W`` (uint8; other integer
            dtypes are converted).
        classes: The classes, in label order.
        path: Destination ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        max_side: Largest width and height of the PNG in pixels, at least 256.
        alpha: How strongly the classes are tinted, 0 (not at all) to 1 (solid colour).
        title: Drawn on the band's first line, if given.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``image`` or ``labels`` is not a non-empty array of the right shape,
            their ``H`` and ``W`` differ, ``max_side`` is not an integer of at least 256,
            or ``alpha`` is not from 0 to 1.
        TypeError: ``image`` is not of a boolean, integer or float dtype.
        LabelError: ``labels`` holds a value that is not one of the labels.
        ConfigError: ``path`` does not end in ``.png``, or ``classes`` is invalid.
        OSError: The folder is missing or not writable.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "overlay.png"
        >>> labels = np.zeros((600, 800), np.uint8)
        >>> labels[100:300, 200:500] = 1
        >>> image = np.zeros((600, 800), np.uint16)
        >>> draw_segment_overlay(image, labels, ["rock"], out).name
        'overlay.png'
    """
    out = png_path(path, "segmentation overlay")
    pixels = check_image(image)
    check_max_side(max_side)
    alpha = _check_alpha(alpha)

    from PIL import Image, ImageDraw, ImageFont

    from lensloop.annotate.labelmap import VOID
    from lensloop.imaging import atomic_write
    from lensloop.tasks.segment.scoring import as_label_map, label_histogram, label_names

    names = label_names(classes)
    label_map = as_label_map(labels, n_labels=len(names))
    height, width = pixels.shape[:2]
    if label_map.shape != (height, width):
        raise ValueError(
            f"labels must have the image's (H, W) = ({height}, {width}); got {label_map.shape}"
        )
    colours = class_colours(len(names) - 1)
    counts = label_histogram(label_map)
    void_px = int(counts[VOID])
    entries = _legend(names, colours, counts, void_px, label_map.size)

    text_px = font_px(height, width, max_side)
    font = ImageFont.load_default(size=text_px)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = max(4, text_px // 2)
    # The band's height depends on how the legend wraps, which depends on the picture's
    # width, which depends on the band: settle it in a few rounds (it only ever grows).
    band = 0
    for _ in range(4):
        size = picture_size(height, width, max_side, band)
        lines = _wrap(probe, entries, font, text_px, size[0])
        if title:
            lines.insert(0, [])
        needed = len(lines) * line_px(text_px) + 2 * margin
        if needed <= band:
            break
        band = needed
    size = picture_size(height, width, max_side, band)

    scaled, _ = picture(pixels, size)
    small = np.asarray(
        Image.fromarray(label_map).resize(size, Image.Resampling.NEAREST), dtype=np.uint8
    )
    rgb = np.asarray(scaled, dtype=np.float32)
    del scaled
    palette = np.zeros((256, 3), np.float32)
    palette[1 : len(names)] = colours
    tinted = (small != 0) & (small != VOID)
    rgb[tinted] += alpha * (palette[small[tinted]] - rgb[tinted])
    void = small == VOID
    if void.any():
        rgb[void] += _VOID_SHADE * (_VOID_GREY - rgb[void])
        rows, cols = np.ogrid[: size[1], : size[0]]
        hatch = void & ((rows + cols) % _HATCH_STEP < max(1, round(max(size) / 1024)))
        rgb[hatch] = _HATCH
    edge = _outline(small, max(1, round(max(size) / 1000)))
    rgb[edge] = _OUTLINE_SHADE * palette[small[edge]]
    shown = Image.fromarray(np.rint(rgb).astype(np.uint8))
    del rgb

    canvas = Image.new("RGB", (shown.width, band + shown.height), _BAND)
    canvas.paste(shown, (0, band))
    draw = ImageDraw.Draw(canvas)
    lines = _wrap(draw, entries, font, text_px, canvas.width)
    if title:
        draw.text(
            (margin, margin), fit_text(draw, title, font, canvas.width - 2 * margin), _INK, font
        )
        lines.insert(0, [])
    _draw_legend(draw, lines, font, text_px, canvas.width)

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write(out, buffer.getvalue(), overwrite=True)
    logger.info(
        "drew a %d-class label map over a %d x %d image to %s", len(names) - 1, width, height, out
    )
    return out


# --------------------------------------------------------------------------- IoU bars


def _check_scores(scores: Mapping[str, Any]) -> dict[str, float | None]:
    if not isinstance(scores, Mapping) or not isinstance(scores.get("iou"), Mapping):
        raise ConfigError(
            "scores must be the dict of lensloop.tasks.segment.scoring.segment_scores, with "
            f"an 'iou' mapping of label names to IoU; got {type(scores).__name__}"
            + (f" with keys {sorted(scores)}" if isinstance(scores, Mapping) else "")
        )
    iou: dict[str, float | None] = {}
    for name, value in scores["iou"].items():
        if value is None:
            iou[str(name)] = None
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"the IoU of {name!r} is {value!r}; give a number or None")
        number = float(value)
        if not (math.isfinite(number) and 0.0 <= number <= 1.0):
            raise ConfigError(f"the IoU of {name!r} is {value}; an IoU is from 0 to 1 or None")
        iou[str(name)] = number
    if not iou:
        raise ConfigError("scores['iou'] is empty; there is no label to draw")
    return iou


def _optional(scores: Mapping[str, Any], key: str) -> float | None:
    value = scores.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value) if math.isfinite(value) else None


def draw_iou_bars(scores: Mapping[str, Any], path: Path | str, *, title: str | None = None) -> Path:
    """Draw every label's IoU as a horizontal bar, the mean IoU as a dashed line, as a PNG.

    Bars are in label order (background first), coloured as in
    :func:`draw_segment_overlay` (background grey), each labelled with its value; a label
    neither the truth nor the prediction holds (IoU None) has no bar and reads "absent".
    Above the axes: the mean IoU (over the labels that have one), the pixel accuracy and
    the number of pixels scored, where ``scores`` has them.

    Args:
        scores: From :func:`lensloop.tasks.segment.scoring.segment_scores`: ``iou``
            (``{name: float | None}``), and optionally ``mean_iou``, ``pixel_accuracy``
            and ``n_pixels``.
        path: Destination ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        title: Drawn above the figure, if given.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``scores`` has no ``iou`` mapping of names to numbers from 0 to 1
            or None, ``path`` does not end in ``.png``, or matplotlib is not installed.
        OSError: The folder is missing or not writable.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "iou.png"
        >>> scores = {"iou": {"background": 0.9, "rock": 0.7, "box": None}, "mean_iou": 0.8}
        >>> draw_iou_bars(scores, out).name
        'iou.png'
    """
    out = png_path(path, "IoU bar chart")
    iou = _check_scores(scores)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ConfigError(
            "drawing the IoU bars needs matplotlib: pip install 'lensloop[embed]' "
            "(or pip install matplotlib)"
        ) from error

    from lensloop.imaging import atomic_write

    names = list(iou)
    n = len(names)
    colours = ["0.6"] + [
        tuple(channel / 255 for channel in colour) for colour in class_colours(n - 1)
    ]
    figure = Figure(figsize=(6.4, 1.6 + 0.32 * n), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    rows = np.arange(n)
    values = [value if value is not None else 0.0 for value in iou.values()]
    ax.barh(rows, values, color=colours, edgecolor="0.3", linewidth=0.5, height=0.7)
    for row, value in zip(rows.tolist(), iou.values(), strict=True):
        text = "absent" if value is None else f"{value:.3f}"
        ax.text(
            (value or 0.0) + 0.01,
            row,
            text,
            va="center",
            fontsize=8,
            color="0.45" if value is None else "black",
        )
    mean_iou = _optional(scores, "mean_iou")
    if mean_iou is not None:
        ax.axvline(mean_iou, color="0.2", linestyle="--", linewidth=1, label=f"mean {mean_iou:.3f}")
        ax.legend(loc="lower right", fontsize=8, frameon=True)
    ax.set_yticks(rows, labels=[shorten(name, _NAME_CHARS) for name in names], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.12)
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    ax.set_xlabel("IoU (intersection over union)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    parts = []
    if mean_iou is not None:
        parts.append(f"mean IoU {mean_iou:.3f}")
    accuracy = _optional(scores, "pixel_accuracy")
    if accuracy is not None:
        parts.append(f"pixel accuracy {accuracy:.3f}")
    n_pixels = _optional(scores, "n_pixels")
    if n_pixels is not None:
        parts.append(f"{int(n_pixels):,} pixels (void left out)")
    if parts:
        ax.set_title("   ".join(parts), fontsize=9)
    if title:
        figure.suptitle(title)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(out, buffer.getvalue(), overwrite=True)
    logger.info("drew the IoU of %d labels to %s", n, out)
    return out
