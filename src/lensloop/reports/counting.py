"""Figures that show how well a counting model does: an overlay of points and a scatter.

Both are pure functions: the caller passes arrays (nothing here opens a project or the
catalog), and each writes one PNG atomically and returns its path. Points are ``(N, 2)``
pixel ``(x, y)`` in the original image; pixel (row i, column j) has its centre at
``(j + 0.5, i + 0.5)``.

- :func:`draw_count_overlay`: the image, contrast-stretched and scaled to fit
  ``max_side``, with the predicted points drawn on it; given the true points too, the
  predictions are matched to them one-to-one within a radius
  (:func:`lensloop.tasks.counting.points.match_points`) and coloured as matched, false
  positives or missed. Drawn with Pillow, so a 100-megapixel image costs memory in
  proportion to the picture, not to a matplotlib figure of the image.
- :func:`draw_count_scatter`: predicted against true counts over images, with the
  identity line, the mean absolute and the mean relative error.

Layers: ``reports`` sits beside ``train``, above ``tasks`` (DESIGN.md), so it uses the
counting task's own matching rather than a copy. matplotlib, Pillow, SciPy and the task
module are imported inside the functions, so importing this module costs NumPy only.
"""

from __future__ import annotations

import io
import logging
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

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

    from lensloop.tasks.counting.points import Matching

__all__ = ["draw_count_overlay", "draw_count_scatter"]

logger = logging.getLogger(__name__)

_MARKER: Final = 4.0
"""Circle radius in image pixels when no matching radius is given (else half of it)."""
_NAME_CHARS: Final = 30
_ANNOTATED: Final = 10
"""The scatter names (with ``labels``) at most this many images, the worst first."""

_BAND: Final = (255, 255, 255)
_INK: Final = (0, 0, 0)
# Bright marker colours that stand out on dark microscopy backgrounds ...
_PREDICTED: Final = (255, 190, 0)
_MATCHED: Final = (40, 210, 60)
_FALSE_POSITIVE: Final = (255, 40, 40)
_MISSED: Final = (0, 150, 255)
# ... and darker shades of them for text on the white caption band.
_MATCHED_TEXT: Final = (20, 130, 30)
_FALSE_POSITIVE_TEXT: Final = (200, 20, 20)
_MISSED_TEXT: Final = (0, 90, 200)
_PREDICTED_TEXT: Final = (170, 110, 0)


# --------------------------------------------------------------------------- shared


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"


# --------------------------------------------------------------------------- overlay


def _check_radius(radius: float) -> float:
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real):
        raise ValueError(f"radius must be a number of pixels; got {radius!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive, finite number of pixels; got {radius}")
    return float(radius)


def _draw_caption(
    draw: ImageDraw.ImageDraw,
    lines: list[list[tuple[str, tuple[int, int, int]]]],
    font: Font,
    font_px: int,
    width: int,
) -> None:
    """Draw lines of coloured segments, left-aligned, clipping what does not fit."""
    margin = max(4, font_px // 2)
    gap = draw.textlength("   ", font=font)
    y = float(margin)
    for segments in lines:
        x = float(margin)
        for text, colour in segments:
            room = width - margin - x
            shown = fit_text(draw, text, font, room)
            if shown == "...":
                break
            draw.text((x, y), shown, fill=colour, font=font)
            if shown != text:
                break
            x += draw.textlength(shown, font=font) + gap
        y += line_px(font_px)


def _caption(
    title: str | None,
    n_predicted: int,
    matching: Matching | None,
    radius: float | None,
) -> list[list[tuple[str, tuple[int, int, int]]]]:
    """The caption band's lines as ``(text, colour)`` segments (ASCII, for any font)."""
    lines: list[list[tuple[str, tuple[int, int, int]]]] = []
    if title:
        lines.append([(title, _INK)])
    if matching is None:
        lines.append([(f"predicted: {n_predicted}", _PREDICTED_TEXT)])
        return lines
    n_true = int(matching.n_true)
    error = n_predicted - n_true
    relative = f" ({error / n_true:+.1%})" if n_true else ""
    lines.append(
        [
            (f"predicted: {n_predicted}", _INK),
            (f"true: {n_true}", _INK),
            (f"error: {error:+d}{relative}", _INK),
        ]
    )
    tp = int(matching.true_positives)
    lines.append(
        [
            (f"TP {tp}", _MATCHED_TEXT),
            (f"FP {n_predicted - tp}", _FALSE_POSITIVE_TEXT),
            (f"FN {n_true - tp}", _MISSED_TEXT),
            (f"(matched within {radius:g} px)", (90, 90, 90)),
        ]
    )
    return lines


def draw_count_overlay(
    image: npt.ArrayLike,
    predicted: npt.ArrayLike,
    out: Path | str,
    *,
    true: npt.ArrayLike | None = None,
    radius: float | None = None,
    title: str | None = None,
    max_side: int = 2048,
) -> Path:
    """Draw the predicted points (and, given them, the true ones) over an image as a PNG.

    The image is shown as :func:`lensloop.imaging.to_display` shows it: uint8 as it is,
    other dtypes stretched from their 0.5th to their 99.5th percentile; one channel in
    grey, two as ``(c0, c1, 0)``, more than three by their first three. It is scaled to
    fit ``max_side``: shrunk (block-averaged in its native values when it is twice too
    large or more, then Lanczos-resampled, so percentiles are those of the averaged
    image), or, when its longer side is under 512 pixels, enlarged by a whole factor with
    nearest-neighbour sampling so small images can be seen. Points are scaled with it.

    Without ``true``, each prediction is an orange-yellow circle. With ``true``, the
    predictions are matched one-to-one to the true points within ``radius`` pixels
    (:func:`lensloop.tasks.counting.points.match_points`): matched predictions are green
    circles, false positives red circles, and missed true points blue crosses.

    Circles have a radius of half ``radius`` (4 when ``radius`` is not given) image pixels,
    times the display scale, kept between 3 pixels and 2% of the picture's longer side.

    A white caption band on top holds the title, the predicted count and, with ``true``,
    the true count, the count error and TP / FP / FN in their colours (lines too long
    for a narrow picture are cut with "..."). The whole PNG, band included, is at most
    ``max_side`` pixels on each side: a 4000 x 4000 image becomes a ``(2048 - band)``
    pixel square under a band, 2048 pixels tall in all.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array, any boolean, integer or float dtype
            (uint8, uint16, float32, ...).
        predicted: ``(N, 2)`` predicted points ``(x, y)`` in image pixels; ``(0, 2)`` or
            an empty list for none. Points outside the image are clipped by the border.
        out: Destination ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        true: ``(M, 2)`` true points ``(x, y)``, or None to draw the predictions only.
        radius: Largest distance in image pixels between a matched prediction and true
            point; needed with ``true``. Without ``true`` it only sets the circle size.
        title: Drawn on the caption band's first line, if given.
        max_side: Largest width and height of the PNG in pixels, at least 256.

    Returns:
        ``out``, as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``image`` is not a non-empty ``(H, W)`` or ``(H, W, C)`` array;
            ``predicted`` or ``true`` is not ``(N, 2)`` or holds NaN or infinity;
            ``true`` is given without ``radius``; ``radius`` is not a positive finite
            number; ``max_side`` is not an integer of at least 256.
        TypeError: ``image`` is not of a boolean, integer or float dtype.
        ConfigError: ``out`` does not end in ``.png``.
        OSError: The folder is missing or not writable.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "overlay.png"
        >>> image = np.zeros((600, 800), np.uint16)
        >>> draw_count_overlay(
        ...     image, [[10.5, 20.5]], out, true=[[11.0, 20.0], [300.0, 40.0]], radius=5
        ... ).name
        'overlay.png'
    """
    path = png_path(out, "count overlay")
    pixels = check_image(image)
    check_max_side(max_side)
    if radius is not None:
        radius = _check_radius(radius)

    from PIL import Image, ImageDraw, ImageFont

    from lensloop.imaging import atomic_write
    from lensloop.tasks.counting.points import as_points, match_points

    pred = as_points(predicted, name="predicted")
    matching = None
    gold = np.zeros((0, 2))
    if true is not None:
        if radius is None:
            raise ValueError(
                "radius is needed with true: give the largest distance in pixels at which "
                "a prediction counts as finding a true point (e.g. radius=5)"
            )
        gold = as_points(true, name="true")
        matching = match_points(pred, gold, radius=radius)

    height, width = pixels.shape[:2]
    text_px = font_px(height, width, max_side)
    lines = _caption(title, len(pred), matching, radius)
    band = len(lines) * line_px(text_px) + 2 * max(4, text_px // 2)
    shown, (sx, sy) = picture(pixels, picture_size(height, width, max_side, band))

    canvas = Image.new("RGB", (shown.width, band + shown.height), _BAND)
    canvas.paste(shown, (0, band))
    del shown
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=text_px)

    scale = math.sqrt(sx * sy)
    marker = (radius / 2 if radius is not None else _MARKER) * scale
    cap = max(3, round(0.02 * max(canvas.width, canvas.height - band)))
    r = int(np.clip(round(marker), 3, cap))
    line = max(1, round(r / 3))

    def centres(points: np.ndarray) -> list[tuple[int, int]]:
        # Continuous coordinates to Pillow's pixel indices (pixel j spans [j, j + 1)).
        xs = np.rint(points[:, 0] * sx - 0.5).astype(np.int64)
        ys = np.rint(points[:, 1] * sy - 0.5).astype(np.int64) + band
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    def circles(points: np.ndarray, colour: tuple[int, int, int]) -> None:
        for x, y in centres(points):
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=line)

    if matching is None:
        circles(pred, _PREDICTED)
    else:
        circles(pred[matching.pairs[:, 0]], _MATCHED)
        circles(pred[matching.unmatched_predicted], _FALSE_POSITIVE)
        for x, y in centres(gold[matching.unmatched_true]):
            draw.line((x - r, y - r, x + r, y + r), fill=_MISSED, width=line)
            draw.line((x - r, y + r, x + r, y - r), fill=_MISSED, width=line)
    # Markers near the top edge may spill onto the band: clear it, then write the caption.
    draw.rectangle((0, 0, canvas.width - 1, band - 1), fill=_BAND)
    _draw_caption(draw, lines, font, text_px, canvas.width)

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue(), overwrite=True)
    logger.info(
        "drew %d predicted%s points over a %d x %d image to %s",
        len(pred),
        "" if matching is None else f" and {len(gold)} true",
        width,
        height,
        path,
    )
    return path


# --------------------------------------------------------------------------- scatter


def _check_counts(
    true_counts: npt.ArrayLike, predicted_counts: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    arrays = []
    for name, counts in (("true_counts", true_counts), ("predicted_counts", predicted_counts)):
        try:
            array = np.asarray(counts, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be a 1-D sequence of numbers; {error}") from None
        if array.ndim != 1:
            raise ValueError(f"{name} must be a 1-D sequence of counts; got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        arrays.append(array)
    gold, pred = arrays
    if len(gold) != len(pred):
        raise ValueError(
            f"true_counts and predicted_counts must have one count per image each; got "
            f"{len(gold)} and {len(pred)}"
        )
    if len(gold) and gold.min() < 0:
        raise ValueError(f"true_counts must be >= 0; got a minimum of {gold.min():g}")
    return gold, pred


def _check_labels(labels: Sequence[str] | None, n: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError(
            f"labels must be a sequence of names (str), one per image; got {type(labels).__name__}"
        )
    if len(labels) != n:
        raise ValueError(f"labels must hold one name per image ({n}); got {len(labels)}")
    return [shorten(str(label), _NAME_CHARS) for label in labels]


def _summary(gold: npt.NDArray[np.float64], pred: npt.NDArray[np.float64]) -> str:
    from lensloop.tasks.counting.points import count_errors

    errors = count_errors(pred.tolist(), gold.tolist())
    some = int((gold > 0).sum())
    head = f"{len(gold)} image{'s' if len(gold) != 1 else ''}   MAE {_number(errors['mae'])}"
    head += f"   bias {'+' if errors['bias'] >= 0 else ''}{_number(errors['bias'])}"
    if some == 0:
        return head + "\nmean relative error: none (no image has a true count > 0)"
    return head + (
        f"\nmean relative error {errors['mre']:.1%} (over the {some} image"
        f"{'s' if some != 1 else ''} with a true count > 0)"
    )


def draw_count_scatter(
    true_counts: npt.ArrayLike,
    predicted_counts: npt.ArrayLike,
    out: Path | str,
    *,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Draw predicted against true counts, one dot per image, as a PNG.

    The dashed grey line is ``predicted = true``; both axes share one range, from 0 (or
    the lowest predicted count, if negative) to a little above the highest count, and at
    least to 1, so all-zero counts still make a plot. Above the axes: the number of
    images, the mean absolute error (MAE), the mean signed error (bias, predicted minus
    true) and the mean relative error ``|predicted - true| / true`` over the images with
    a true count above 0 (see :func:`lensloop.tasks.counting.points.count_errors`). With
    no images at all the axes say "no images".

    Args:
        true_counts: ``(N,)`` true counts per image, finite and >= 0.
        predicted_counts: ``(N,)`` predicted counts, finite; fractional counts (the sum
            of a density map) are fine.
        out: Destination ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        title: Drawn above the figure, if given.
        labels: One name per image (a file name, an image id); the 10 images furthest
            from the identity line are annotated with theirs (cut to 30 characters).

    Returns:
        ``out``, as a :class:`~pathlib.Path`.

    Raises:
        ValueError: The counts are not 1-D sequences of finite numbers of equal length,
            a true count is negative, or ``labels`` is not one name per image.
        ConfigError: ``out`` does not end in ``.png``, or matplotlib is not installed.
        OSError: The folder is missing or not writable.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "counts.png"
        >>> draw_count_scatter([10, 0, 52], [12, 1, 47.5], out).name
        'counts.png'
    """
    path = png_path(out, "count scatter")
    gold, pred = _check_counts(true_counts, predicted_counts)
    names = _check_labels(labels, len(gold))
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ConfigError(
            "drawing the count scatter needs matplotlib: pip install 'lensloop[embed]' "
            "(or pip install matplotlib)"
        ) from error

    from lensloop.imaging import atomic_write

    n = len(gold)
    figure = Figure(figsize=(6.0, 6.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    if n == 0:
        low, top = 0.0, 1.0
        ax.text(0.5, 0.5, "no images", transform=ax.transAxes, ha="center", va="center")
    else:
        low = min(0.0, float(pred.min()))
        top = max(1.0, float(gold.max()), float(pred.max()))
        top += 0.05 * (top - low)
        ax.plot(
            [low, top],
            [low, top],
            color="0.5",
            linestyle="--",
            linewidth=1,
            label="predicted = true",
            zorder=1,
        )
        size = 36.0 if n <= 100 else max(4.0, 36.0 * math.sqrt(100 / n))
        ax.scatter(
            gold,
            pred,
            s=size,
            alpha=0.8 if n <= 200 else 0.5,
            color="tab:blue",
            edgecolors="none",
            zorder=2,
            clip_on=False,  # dots on the axes (zero counts) are drawn whole
        )
        if names is not None:
            worst = np.argsort(-np.abs(pred - gold), kind="stable")[:_ANNOTATED]
            for i in worst:
                ax.annotate(
                    names[i],
                    (gold[i], pred[i]),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                )
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.set_title(_summary(gold, pred), fontsize=9)
    ax.set_xlim(low, top)
    ax.set_ylim(low, top)
    ax.set_aspect("equal")
    ax.set_xlabel("true count")
    ax.set_ylabel("predicted count")
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    if title:
        figure.suptitle(title)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue(), overwrite=True)
    logger.info("drew predicted against true counts of %d images to %s", n, path)
    return path
