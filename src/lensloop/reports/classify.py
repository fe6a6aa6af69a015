"""Figures that show how well a trained classifier does: a confusion matrix and a grid.

Both are pure functions: the caller passes arrays, names and image paths (nothing here
opens a project or the catalog), and each writes one PNG atomically and returns its path.

- :func:`draw_confusion_matrix`: a heatmap of a ``(C, C)`` count matrix, rows the actual
  class and columns the predicted one, every cell annotated; sizes adapt to C.
- :func:`draw_prediction_grid`: thumbnails of images with their predicted and actual
  class, errors framed in red, correct predictions in green, unknown truth in grey.

matplotlib and Pillow are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import io
import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError, MultiPageImageError
from lensloop.reports._common import line_px, png_path, shorten

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "GridItem",
    "caption_height",
    "draw_confusion_matrix",
    "draw_prediction_grid",
]

logger = logging.getLogger(__name__)

_NAME_CHARS: Final = 30
"""Class names on the confusion matrix's axes are cut to this many characters."""

_TILE_MIN: Final = 64
_TILE_MAX: Final = 1024

_BACKGROUND: Final = (255, 255, 255)
_UNREADABLE_FILL: Final = (150, 150, 150)
# Border colours (matplotlib's tab10 red, green, grey) and darker shades for caption text.
_ERROR_BORDER: Final = (214, 39, 40)
_CORRECT_BORDER: Final = (44, 160, 44)
_UNKNOWN_BORDER: Final = (127, 127, 127)
_ERROR_TEXT: Final = (180, 20, 20)
_CORRECT_TEXT: Final = (20, 110, 20)
_UNKNOWN_TEXT: Final = (90, 90, 90)


@dataclass(frozen=True, slots=True)
class GridItem:
    """One image of a prediction grid, with what the classifier said about it.

    Args:
        image_path: The image file (any format :func:`lensloop.imaging.read_image` reads).
        actual: The true class, or None where it is not known.
        predicted: The predicted class.
        confidence: The classifier's probability of ``predicted``, in [0, 1].
        image_id: The catalog id of the image, if it has one (not drawn; kept for callers).
    """

    image_path: Path
    actual: str | None
    predicted: str
    confidence: float
    image_id: int | None = None

    @property
    def is_error(self) -> bool:
        """Whether the truth is known and differs from the prediction."""
        return self.actual is not None and self.actual != self.predicted


# --------------------------------------------------------------------------- shared


def _write_png(path: Path, rgb: npt.NDArray[np.uint8]) -> Path:
    """Write an ``(H, W, 3)`` uint8 picture to ``path`` through a temporary file + rename."""
    from lensloop.imaging import write_image

    return write_image(path, rgb, overwrite=True)


# --------------------------------------------------------------------------- confusion matrix


def _check_matrix(matrix: npt.ArrayLike, class_names: Sequence[str]) -> npt.NDArray[np.int64]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ConfigError(
            f"class_names must be a sequence of class names (str); got {type(class_names).__name__}"
        )
    for i, name in enumerate(class_names):
        if not isinstance(name, str):
            raise ConfigError(f"class_names[{i}] is {name!r}; class names must be str")
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ConfigError(
            f"matrix must be a non-empty square (C, C) array of counts (rows actual, columns "
            f"predicted); got shape {counts.shape}"
        )
    if counts.dtype == np.bool_ or not np.issubdtype(counts.dtype, np.integer):
        raise ConfigError(
            f"matrix must hold integer counts; got dtype {counts.dtype}. Pass counts, not "
            f"shares: draw_confusion_matrix normalises the rows itself (normalize=True)"
        )
    if counts.min() < 0:
        raise ConfigError(f"matrix counts must be >= 0; got a minimum of {int(counts.min())}")
    if counts.shape[0] != len(class_names):
        raise ConfigError(
            f"matrix is {counts.shape[0]} x {counts.shape[1]} but class_names has "
            f"{len(class_names)} names; pass one name per row and column"
        )
    return counts.astype(np.int64)


def _percent(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def draw_confusion_matrix(
    matrix: npt.ArrayLike,
    class_names: Sequence[str],
    path: Path | str,
    *,
    title: str | None = None,
    normalize: bool = True,
) -> Path:
    """Draw a confusion matrix as a heatmap PNG.

    Each cell shows its count; with ``normalize`` it also shows the count's share of its
    row (the actual class), and the colour follows that share, so a rare class that is
    always confused stands out as much as a common one. Without ``normalize`` the colour
    follows the count. Zero cells show a faint ``0``. The y axis labels carry each class's
    number of examples, ``name (n)``; names are cut to 30 characters.

    The figure grows with C (cells of 1 inch for a few classes down to 0.32 inch from 25
    classes on, at 100 dpi: about 2,300 pixels square for 60 classes) and the fonts shrink
    with the cells.

    Args:
        matrix: ``(C, C)`` non-negative integer counts; row i, column j counts the examples
            of actual class i predicted as class j.
        class_names: C names, in the matrix's order.
        path: Destination ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        title: Drawn above the matrix, if given.
        normalize: Annotate and colour by the row share as well as the count.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``matrix`` is not a non-empty square 2-D array of non-negative
            integers, its side is not ``len(class_names)``, a name is not a str, or
            ``path`` does not end in ``.png``.
        OSError: The folder is missing or not writable.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "cm.png"
        >>> draw_confusion_matrix(np.array([[5, 1], [0, 3]]), ["a", "b"], out).name
        'cm.png'
    """
    path = png_path(path, "confusion matrix")
    counts = _check_matrix(matrix, class_names)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = counts.shape[0]
    totals = counts.sum(axis=1)
    shares = counts / np.maximum(totals, 1)[:, None]  # an empty row is all zeros
    shade = shares if normalize else counts.astype(np.float64)
    top = 1.0 if normalize else max(1.0, float(counts.max()))

    cell_in = float(np.clip(8.0 / n, 0.32, 1.0))
    tick_pt = float(np.clip(cell_in * 72 * 0.35, 6.0, 11.0))
    note_pt = float(np.clip(cell_in * 72 * 0.26, 5.5, 11.0))
    x_names = [shorten(name, _NAME_CHARS) for name in class_names]
    y_names = [f"{name} ({int(total)})" for name, total in zip(x_names, totals, strict=True)]
    rotation = 45 if n <= 10 else 90
    char_in = tick_pt * 0.6 / 72  # a generous average glyph width; the layout trims the rest
    y_label_in = max(len(name) for name in y_names) * char_in + 0.5
    x_label_in = max(len(name) for name in x_names) * char_in * (0.75 if rotation == 45 else 1)
    side_in = n * cell_in
    width_in = y_label_in + side_in + 1.8  # the colour bar and its label on the right
    height_in = x_label_in + side_in + 1.0 + (0.5 if title else 0.0)

    figure = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    heat = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=top, interpolation="nearest")
    bar = figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label("share of the actual class" if normalize else "count", fontsize=tick_pt)
    bar.ax.tick_params(labelsize=tick_pt)

    ax.set_xticks(
        range(n),
        labels=x_names,
        rotation=rotation,
        ha="right",
        rotation_mode="anchor",
        fontsize=tick_pt,
    )
    ax.set_yticks(range(n), labels=y_names, fontsize=tick_pt)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("predicted", fontsize=tick_pt + 1)
    ax.set_ylabel("actual", fontsize=tick_pt + 1)
    if title:
        ax.set_title(title, fontsize=tick_pt + 3)
    # Lay out the axes, tick labels and colour bar once, now, then freeze the layout: the
    # C * C cell notes stay inside the axes, and measuring them for the layout at save
    # time would double the drawing time for large C.
    engine = figure.get_layout_engine()
    if engine is not None:
        engine.execute(figure)
    figure.set_layout_engine("none")

    for i in range(n):
        for j in range(n):
            count = int(counts[i, j])
            if count == 0:
                text, colour = "0", "0.75"
            else:
                text = f"{count}\n{_percent(float(shares[i, j]))}" if normalize else str(count)
                colour = "white" if shade[i, j] > 0.6 * top else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=note_pt, color=colour)

    # Render to raw RGBA in memory (the typed route through matplotlib), then write the
    # PNG through lensloop.imaging's atomic writer.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="rgba", dpi=figure.dpi)
    width, height = canvas.get_width_height()
    rgba = np.frombuffer(buffer.getvalue(), dtype=np.uint8).reshape(height, width, 4)
    rgb = np.ascontiguousarray(rgba[:, :, :3])
    logger.info("drew a %d-class confusion matrix to %s", n, path)
    return _write_png(path, rgb)


# --------------------------------------------------------------------------- prediction grid


def caption_height(tile: int) -> int:
    """Height in pixels of the caption band under each tile of :func:`draw_prediction_grid`.

    Two lines of text at ``max(10, tile // 12)`` pixels, with spacing. A grid of R rows
    is ``R * (tile + caption_height(tile))`` pixels tall, plus one more
    ``caption_height(tile)`` band on top when it has a title.

    Args:
        tile: The side of each (square) tile, in pixels.

    Returns:
        The caption band's height in pixels (42 for the default tile of 160).
    """
    font_px = _font_px(tile)
    return 2 * line_px(font_px) + font_px // 2


def _font_px(tile: int) -> int:
    return max(10, tile // 12)


def _check_grid_options(columns: int, tile: int, limit: int | None) -> None:
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ConfigError(f"columns must be a positive integer; got {columns!r}")
    if isinstance(tile, bool) or not isinstance(tile, int) or not _TILE_MIN <= tile <= _TILE_MAX:
        raise ConfigError(
            f"tile must be an integer from {_TILE_MIN} to {_TILE_MAX} pixels; got {tile!r}"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None; got {limit!r}")


def _check_items(items: Sequence[GridItem]) -> None:
    if len(items) == 0:
        raise ConfigError("items is empty; pass at least one GridItem to draw a prediction grid")
    for i, item in enumerate(items):
        if not isinstance(item, GridItem):
            raise ConfigError(f"items[{i}] is a {type(item).__name__}, not a GridItem")
        if isinstance(item.confidence, bool) or not isinstance(item.confidence, numbers.Real):
            raise ConfigError(f"items[{i}].confidence is {item.confidence!r}; give a number")
        if not math.isfinite(item.confidence):
            raise ConfigError(f"items[{i}].confidence is {item.confidence}; give a finite number")


def _order(items: Sequence[GridItem], errors_first: bool) -> list[GridItem]:
    """Errors (most confident first), then correct ones, then unknown truth (least first)."""
    if not errors_first:
        return list(items)

    def key(item: GridItem) -> tuple[int, float]:
        if item.is_error:
            return (0, -item.confidence)
        return (1 if item.actual is not None else 2, item.confidence)

    return sorted(items, key=key)


class _Captioner:
    """Fits caption text into a tile's width with one font."""

    def __init__(self, tile: int) -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(
            size=_font_px(tile)
        )
        # The bitmap fallback font (Pillow without FreeType) holds Latin-1 only.
        self.unicode = isinstance(self.font, ImageFont.FreeTypeFont)
        self.ellipsis = "…" if self.unicode else "..."
        self.width = tile - 2 * self.margin(tile)
        self._probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    @staticmethod
    def margin(tile: int) -> int:
        return max(2, tile // 40)

    def safe(self, text: str) -> str:
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def fits(self, text: str, width: int | None = None) -> bool:
        limit = self.width if width is None else width
        return self._probe.textlength(text, font=self.font) <= limit

    def line(self, prefix: str, name: str, suffix: str = "") -> str:
        """``prefix + name + suffix``, the name cut with an ellipsis until the line fits.

        On a tile too narrow for even ``prefix + "…" + suffix`` the prefix is dropped
        first (the line's place says what it is), then the end of the line is cut.
        """
        name = self.safe(name)
        for head in (prefix, ""):
            if self.fits(head + name + suffix):
                return head + name + suffix
            if not self.fits(head + self.ellipsis + suffix):
                continue
            low, high = 0, len(name)  # the longest cut that fits: binary search over it
            while low < high:
                middle = (low + high + 1) // 2
                if self.fits(head + name[:middle] + self.ellipsis + suffix):
                    low = middle
                else:
                    high = middle - 1
            return head + name[:low] + self.ellipsis + suffix
        return self.clip(name + suffix)

    def clip(self, text: str, width: int | None = None) -> str:
        """``text``, cut from the end with an ellipsis until it fits ``width`` (or a tile)."""
        text = self.safe(text)
        if self.fits(text, width):
            return text
        while text and not self.fits(text + self.ellipsis, width):
            text = text[:-1]
        return text + self.ellipsis


def _load_picture(path: Path, box: int) -> Image.Image | None:
    """The image scaled (up or down) so its longer side is ``box``, or None if unreadable."""
    from PIL import Image

    from lensloop.imaging import make_thumbnail, read_image

    try:
        try:
            array = read_image(path)
        except MultiPageImageError:
            array = read_image(path, page=0)
        picture = Image.fromarray(make_thumbnail(array, size=box)).convert("RGB")
    except (OSError, ValueError, TypeError) as error:  # ImageError is a ValueError
        logger.warning("cannot draw %s in the prediction grid: %s", path, error)
        return None
    if max(picture.size) < box:  # small images (plankton, cells) are enlarged to be seen
        scale = box / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BICUBIC)
    return picture


def _draw_tile(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    captioner: _Captioner,
    item: GridItem,
    left: int,
    top: int,
    tile: int,
) -> None:
    if item.is_error:
        border, ink = _ERROR_BORDER, _ERROR_TEXT
    elif item.actual is not None:
        border, ink = _CORRECT_BORDER, _CORRECT_TEXT
    else:
        border, ink = _UNKNOWN_BORDER, _UNKNOWN_TEXT
    gap = max(1, tile // 80)  # white space between neighbouring frames
    width = max(2, tile // 32)
    draw.rectangle(
        (left + gap, top + gap, left + tile - 1 - gap, top + tile - 1 - gap),
        outline=border,
        width=width,
    )
    inner = gap + width
    inset = inner + max(1, tile // 64)
    box = tile - 2 * inset
    picture = _load_picture(Path(item.image_path), box)
    if picture is None:
        draw.rectangle(
            (left + inner, top + inner, left + tile - 1 - inner, top + tile - 1 - inner),
            fill=_UNREADABLE_FILL,
        )
        centre = (left + tile // 2, top + tile // 2)
        draw.text(centre, "unreadable", fill=(40, 40, 40), font=captioner.font, anchor="mm")
    else:
        x = left + inset + (box - picture.width) // 2
        y = top + inset + (box - picture.height) // 2
        canvas.paste(picture, (x, y))

    margin = captioner.margin(tile)
    font_px = _font_px(tile)
    line = line_px(font_px)
    y = top + tile + font_px // 4
    pred = captioner.line("pred: ", item.predicted, f" ({item.confidence:.2f})")
    true = captioner.line("true: ", "?" if item.actual is None else item.actual)
    draw.text((left + margin, y), pred, fill=ink, font=captioner.font)
    draw.text((left + margin, y + line), true, fill=ink, font=captioner.font)


def draw_prediction_grid(
    items: Sequence[GridItem],
    path: Path | str,
    *,
    columns: int = 8,
    tile: int = 160,
    title: str | None = None,
    errors_first: bool = True,
    limit: int | None = None,
) -> Path:
    """Draw images with their predicted and actual classes as a grid PNG.

    Each tile is ``tile`` x ``tile`` pixels: a coloured frame (red for an error, green for
    a correct prediction, grey where the truth is unknown) around the image, scaled up or
    down to fill the frame with its shape kept (16-bit and float images get the
    percentile stretch of :func:`lensloop.imaging.to_display`). Under it is a caption
    band of :func:`caption_height` pixels: ``pred: X (0.93)`` and ``true: Y`` (``true: ?``
    when unknown), in the frame's colour, long names cut with an ellipsis. An image that
    cannot be read becomes a grey tile saying "unreadable" (and a logged warning).

    The grid is ``min(columns, n)`` tiles wide and ``ceil(n / columns)`` rows tall, n the
    number of tiles drawn, so its size is ``min(columns, n) * tile`` by
    ``rows * (tile + caption_height(tile))`` pixels, plus a ``caption_height(tile)``
    band on top for the title.

    Args:
        items: The images and predictions, at least one.
        path: Destination ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        columns: Tiles per row, at least 1.
        tile: Side of each tile in pixels, 64 to 1024.
        title: Drawn above the grid, if given.
        errors_first: Order errors first, the most confident first (the most telling
            mistakes), then correct predictions from the least confident, then those with
            unknown truth from the least confident. False keeps the order of ``items``.
        limit: Draw at most this many tiles (the first after ordering); None draws all.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``items`` is empty or holds something other than :class:`GridItem`
            or a non-finite confidence; ``columns``, ``tile`` or ``limit`` is out of range;
            ``path`` does not end in ``.png``.
        OSError: The folder is missing or not writable.
    """
    path = png_path(path, "prediction grid")
    _check_grid_options(columns, tile, limit)
    _check_items(items)

    from PIL import Image, ImageDraw

    ordered = _order(items, errors_first)[:limit]
    n = len(ordered)
    across = min(columns, n)
    rows = -(-n // columns)
    band = caption_height(tile)
    head = band if title else 0
    canvas = Image.new("RGB", (across * tile, head + rows * (tile + band)), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    captioner = _Captioner(tile)
    if title:
        text = captioner.clip(title, canvas.width - 2 * captioner.margin(tile))
        draw.text(
            (canvas.width // 2, head // 2), text, fill=(0, 0, 0), font=captioner.font, anchor="mm"
        )
    for index, item in enumerate(ordered):
        row, column = divmod(index, columns)
        _draw_tile(canvas, draw, captioner, item, column * tile, head + row * (tile + band), tile)
    logger.info("drew %d of %d predictions in a grid to %s", n, len(items), path)
    return _write_png(path, np.asarray(canvas))
