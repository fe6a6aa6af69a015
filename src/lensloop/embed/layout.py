"""Two-dimensional maps of embedding vectors, and pictures of them made of thumbnails.

- :func:`compute_layout` places each vector on a plane, scaled to [0, 1] on each axis for
  the UI: ``"pca"`` (the two principal components; fast, faithful to large distances),
  ``"tsne"`` (openTSNE; keeps neighbourhoods, so groups of similar images stand apart) or
  ``"umap"`` (umap-learn, an optional extra).
- :func:`draw_map` composites thumbnails at their map positions into one PNG, at most one
  per thumbnail-sized cell, with an optional coloured border per label and a legend.
"""

from __future__ import annotations

import colorsys
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from lensloop.embed.index import EmbeddingError, as_vectors
from lensloop.errors import ConfigError, UnsupportedImageError
from lensloop.imaging import write_image

__all__ = [
    "LAYOUT_PCA_DIMS",
    "TSNE_MIN_VECTORS",
    "LayoutMethod",
    "compute_layout",
    "draw_map",
]

logger = logging.getLogger(__name__)

LayoutMethod = Literal["pca", "tsne", "umap"]
"""How :func:`compute_layout` places vectors on the plane."""

TSNE_MIN_VECTORS: Final = 4
"""Fewest vectors t-SNE and UMAP accept: perplexity 1 needs 3 neighbours per vector."""

TSNE_PERPLEXITY: Final = 30.0
"""t-SNE perplexity (about the number of neighbours each point keeps close), capped at
(N - 1) / 3 for small N, the most openTSNE can use."""

LAYOUT_PCA_DIMS: Final = 50
"""Vectors with more dimensions are projected to this many by PCA before t-SNE or UMAP,
which is faster and removes noise (the usual practice for both)."""

UMAP_NEIGHBOURS: Final = 15
"""UMAP's ``n_neighbors`` (its default), capped at N - 1."""

_FLAT: Final = 1e-5
"""An axis whose range is at most this fraction of the widest one is flat (round-off)."""

_BACKGROUND: Final = (255, 255, 255)

# matplotlib's tab10 then the light half of tab20: distinct, colour-blind-friendlier hues.
_PALETTE: Final = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
)

_LEGEND_MAX: Final = 30
"""Legend entries drawn; more labels are summarised as "+ N more"."""


def _colour(i: int) -> tuple[int, int, int]:
    """The ``i``-th label colour: the palette, then hues spaced by the golden ratio."""
    if i < len(_PALETTE):
        return _PALETTE[i]
    hue = (i * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def _to_unit_square(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Scale each column to [0, 1]; a flat column becomes 0.5.

    A column is flat when its range is at most :data:`_FLAT` times the largest range
    (round-off, such as the second principal component of two points), so scaling never
    blows numerical noise up to the full axis.
    """
    low, high = points.min(axis=0), points.max(axis=0)
    span = high - low
    spread = span > _FLAT * span.max()
    safe = np.where(spread, span, 1.0)
    out = np.where(spread, (points - low) / safe, 0.5)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _pca(data: npt.NDArray[np.float32], n_components: int, seed: int) -> npt.NDArray[np.float64]:
    from sklearn.decomposition import PCA  # type: ignore[import-untyped]

    n_components = min(n_components, *data.shape)
    projected: npt.NDArray[np.float64] = np.asarray(
        PCA(n_components=n_components, random_state=seed).fit_transform(data), dtype=np.float64
    )
    return projected


def compute_layout(
    vectors: npt.ArrayLike,
    *,
    method: LayoutMethod = "pca",
    seed: int = 0,
    n_jobs: int = 1,
) -> npt.NDArray[np.float32]:
    """Place vectors on a plane, each axis scaled to [0, 1].

    - ``"pca"``: the first two principal components (scikit-learn, randomised SVD for
      large sets, seeded). Needs N >= 2; a single dimension gives a constant second axis.
    - ``"tsne"``: openTSNE with perplexity min(30, (N - 1) / 3) and PCA initialisation,
      after projecting to :data:`LAYOUT_PCA_DIMS` dimensions when D is larger. Needs
      N >= :data:`TSNE_MIN_VECTORS`. Measured on one core of a busy machine: 0.5 s for
      200 vectors, 10 s for 3,000; openTSNE switches to FFT gradients, linear in N, above
      10,000.
    - ``"umap"``: umap-learn (not installed by default: ``pip install umap-learn``) with
      ``n_neighbors`` min(15, N - 1), after the same projection.

    The same vectors, method and seed give the same layout. Each axis is scaled
    independently to [0, 1] (a flat axis becomes 0.5; identical vectors all go to the
    centre), so distances are comparable within an axis, not across axes.

    Args:
        vectors: ``(N, D)`` float32 vectors.
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        seed: Seed of the randomised SVD, the t-SNE neighbour search and the UMAP layout.
        n_jobs: Threads for t-SNE and UMAP. More threads help on an idle machine, but on
            busy cores t-SNE's threads wait for each other: 200 vectors took 23 s with 2
            threads and 0.5 s with 1 on a shared 2-core machine, hence the default of 1.

    Returns:
        ``(N, 2)`` float32 positions in [0, 1].

    Raises:
        ConfigError: An unknown ``method``, ``n_jobs`` below 1, or ``"umap"`` without
            umap-learn installed.
        EmbeddingError: ``vectors`` not 2-D, not finite, or too few for the method (2 for
            PCA, 4 for t-SNE and UMAP).
    """
    valid = get_args(LayoutMethod)
    if method not in valid:
        raise ConfigError(
            f"unknown layout method {method!r}; valid methods are: {', '.join(valid)}"
        )
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ConfigError(f"n_jobs must be an integer >= 1; got {n_jobs!r}")
    data = as_vectors(vectors, name="vectors")
    n, dim = data.shape
    minimum = 2 if method == "pca" else TSNE_MIN_VECTORS
    if n < minimum:
        alternative = "" if method == "pca" else "; use method='pca' for fewer"
        raise EmbeddingError(
            f"a {method} layout needs at least {minimum} vectors; got {n}{alternative}"
        )
    if (data == data[0]).all():
        logger.warning("all %d vectors are identical; every point goes to the centre", n)
        return np.full((n, 2), 0.5, dtype=np.float32)
    if method == "pca":
        projected = _pca(data, 2, seed)
        if projected.shape[1] < 2:
            projected = np.column_stack([projected, np.zeros(n)])
        return _to_unit_square(projected)
    if method == "umap":
        umap = _import_umap()
    if dim > LAYOUT_PCA_DIMS:
        data = _pca(data, LAYOUT_PCA_DIMS, seed).astype(np.float32)
    if method == "tsne":
        from openTSNE import TSNE  # type: ignore[import-untyped]

        perplexity = min(TSNE_PERPLEXITY, (n - 1) / 3)
        embedding = TSNE(
            n_components=2,
            perplexity=perplexity,
            initialization="pca",
            random_state=seed,
            n_jobs=n_jobs,
            verbose=False,
        ).fit(data)
        return _to_unit_square(np.asarray(embedding, dtype=np.float64))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(UMAP_NEIGHBOURS, n - 1),
        random_state=seed,
        n_jobs=n_jobs,
    )
    return _to_unit_square(np.asarray(reducer.fit_transform(data), dtype=np.float64))


def _import_umap() -> ModuleType:
    try:
        return importlib.import_module("umap")
    except ImportError as err:
        raise ConfigError(
            "method='umap' needs the umap-learn package, which is not installed; install it "
            "with pip install umap-learn, or use method='tsne'"
        ) from err


# -- drawing -------------------------------------------------------------------------------


def _check_thumbnail(thumb: object, index: int) -> npt.NDArray[np.uint8]:
    if not isinstance(thumb, np.ndarray):
        raise EmbeddingError(
            f"thumbnails[{index}] must be a NumPy array; got {type(thumb).__name__}"
        )
    if thumb.dtype != np.uint8:
        raise UnsupportedImageError(
            f"thumbnails[{index}] has dtype {thumb.dtype}; thumbnails must be uint8 "
            f"pictures (make them with lensloop.imaging.to_display or make_thumbnail)"
        )
    if thumb.ndim == 3 and thumb.shape[2] == 1:
        thumb = thumb[:, :, 0]
    if not (thumb.ndim == 2 or (thumb.ndim == 3 and thumb.shape[2] == 3)) or 0 in thumb.shape:
        raise UnsupportedImageError(
            f"thumbnails[{index}] has shape {thumb.shape}; expected (h, w) grey or (h, w, 3) "
            f"RGB with h, w > 0"
        )
    return thumb


def _fit(thumb: npt.NDArray[np.uint8], box: int) -> Image.Image:
    """Resize a thumbnail so its longer side is ``box`` pixels, keeping its shape."""
    image = Image.fromarray(thumb).convert("RGB")
    scale = box / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


class _Legend:
    """A boxed list of coloured squares and label names, in a column right of the map."""

    def __init__(self, names: list[str], size_px: int) -> None:
        self.font_px = max(10, size_px // 80)
        self.font = ImageFont.load_default(size=self.font_px)
        shown = [_shorten(name) for name in names[:_LEGEND_MAX]]
        extra = len(names) - len(shown)
        self.swatches = len(shown)
        self.texts = [*shown, *([f"+ {extra} more"] if extra else [])]
        self.pad, self.swatch, self.row = self.font_px // 2, self.font_px, round(self.font_px * 1.4)
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        text_w = max(round(probe.textlength(text, font=self.font)) for text in self.texts)
        self.width = min(self.pad * 4 + self.swatch + text_w, size_px // 3)
        self.height = self.pad * 2 + self.row * len(self.texts)

    def draw(self, canvas: Image.Image, left: int) -> None:
        draw = ImageDraw.Draw(canvas)
        pad, top = self.pad, self.pad
        right = left + self.width - pad
        draw.rectangle((left, top, right, top + self.height), outline=(120, 120, 120))
        for i, text in enumerate(self.texts):
            y = top + pad + i * self.row
            if i < self.swatches:
                x = left + pad
                draw.rectangle((x, y + 1, x + self.swatch, y + 1 + self.swatch), fill=_colour(i))
            draw.text((left + pad * 2 + self.swatch, y), text, fill=(0, 0, 0), font=self.font)


def _shorten(name: str, limit: int = 32) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def draw_map(
    layout: npt.ArrayLike,
    thumbnails: Sequence[npt.NDArray[np.uint8]],
    path: Path | str,
    *,
    labels: Sequence[str | None] | None = None,
    size_px: int = 2000,
    thumb_px: int = 48,
    seed: int = 0,
) -> Path:
    """Draw thumbnails at their map positions into a square PNG.

    The canvas is split into cells of ``thumb_px`` × ``thumb_px`` pixels and at most one
    thumbnail is drawn per cell, at its own position: where many vectors crowd one cell
    (always the case for large N: a 2,000 px map has about 40 × 40 cells of 48 px) one of them,
    drawn at random with ``seed``, stands for the others, so the map never turns into a
    solid pile and only the thumbnails drawn are read (``thumbnails`` can be a lazy
    sequence). Each thumbnail is scaled so its longer side fills its box (up or down,
    shape kept). The y axis points up, as in a plot.

    With ``labels``, each labelled thumbnail gets a border in its label's colour (labels
    sorted by name: tab10, then tab20's light half, then spaced hues; ``None`` means
    unlabelled, no border) and a legend (at most 30 names, each cut to 32 characters)
    takes a column on the right, at most a third of the width; the map uses the rest.

    Args:
        layout: ``(N, 2)`` positions in [0, 1], as :func:`compute_layout` returns.
        thumbnails: N uint8 pictures, ``(h, w)`` grey or ``(h, w, 3)`` RGB, any size.
        path: Destination, ending in ``.png``; its folder must exist. An existing file is
            replaced atomically.
        labels: N label names or None, or None for no borders and no legend.
        size_px: Side of the square picture, 64 to 20,000 pixels.
        thumb_px: Side of each thumbnail's box, 4 pixels to a quarter of ``size_px``.
        seed: Seed of the choice of thumbnail per crowded cell.

    Returns:
        ``path``.

    Raises:
        EmbeddingError: ``layout`` not ``(N, 2)`` finite values in [0, 1] with N >= 1,
            ``thumbnails`` / ``labels`` not N long, or a label neither a str nor None.
        UnsupportedImageError: A drawn thumbnail that is not a uint8 ``(h, w)`` or
            ``(h, w, 3)`` array.
        ConfigError: ``size_px`` or ``thumb_px`` out of range, or ``path`` not a ``.png``.
        OSError: The folder is missing or not writable.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"the map is written as PNG; got path {path}, give it a .png suffix")
    if isinstance(size_px, bool) or not isinstance(size_px, int) or not 64 <= size_px <= 20_000:
        raise ConfigError(f"size_px must be an integer from 64 to 20000; got {size_px!r}")
    if (
        isinstance(thumb_px, bool)
        or not isinstance(thumb_px, int)
        or not 4 <= thumb_px <= size_px // 4
    ):
        raise ConfigError(
            f"thumb_px must be an integer from 4 to size_px // 4 = {size_px // 4}; got {thumb_px!r}"
        )
    points = as_vectors(layout, name="layout", dim=2)
    n = len(points)
    if points.min() < -1e-6 or points.max() > 1 + 1e-6:
        raise EmbeddingError(
            f"layout values must lie in [0, 1]; got {float(points.min()):.4g} to "
            f"{float(points.max()):.4g}. compute_layout returns them scaled"
        )
    if len(thumbnails) != n:
        raise EmbeddingError(
            f"thumbnails has {len(thumbnails)} items but layout has {n} rows; pass one "
            f"thumbnail per position"
        )
    if labels is not None:
        if len(labels) != n:
            raise EmbeddingError(
                f"labels has {len(labels)} items but layout has {n} rows; pass one label (or "
                f"None) per position"
            )
        for i, label in enumerate(labels):
            if label is not None and not isinstance(label, str):
                raise EmbeddingError(
                    f"labels[{i}] is {label!r}; labels must be names (str) or None"
                )

    names = sorted({lab for lab in labels if lab is not None}) if labels is not None else []
    legend = _Legend(names, size_px) if names else None
    map_px = size_px - (legend.width if legend else 0)  # the legend never hides a thumbnail
    pad = max(1, thumb_px // 4)
    left = pad + np.rint(points[:, 0].clip(0, 1) * (map_px - thumb_px - 2 * pad)).astype(np.int64)
    top = pad + np.rint((1 - points[:, 1].clip(0, 1)) * (size_px - thumb_px - 2 * pad)).astype(
        np.int64
    )
    chosen = _one_per_cell(left, top, thumb_px, seed)

    colour_of = {name: _colour(i) for i, name in enumerate(names)}
    border = max(1, thumb_px // 16) if names else 0
    canvas = Image.new("RGB", (size_px, size_px), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i in chosen.tolist():
        picture = _fit(_check_thumbnail(thumbnails[i], i), thumb_px - 2 * border)
        x = int(left[i]) + (thumb_px - picture.width) // 2
        y = int(top[i]) + (thumb_px - picture.height) // 2
        label = labels[i] if labels is not None else None
        if label is not None:
            right, bottom = x + picture.width + border - 1, y + picture.height + border - 1
            draw.rectangle((x - border, y - border, right, bottom), fill=colour_of[label])
        canvas.paste(picture, (x, y))
    if legend is not None:
        legend.draw(canvas, map_px)
    logger.info("drew %d of %d thumbnails on a %d px map", len(chosen), n, size_px)
    return write_image(path, np.asarray(canvas), overwrite=True)


def _one_per_cell(
    left: npt.NDArray[np.int64], top: npt.NDArray[np.int64], cell: int, seed: int
) -> npt.NDArray[np.int64]:
    """Indices of one point per occupied ``cell``-pixel grid cell, chosen with ``seed``."""
    columns = int(left.max()) // cell + 1
    cells = (top // cell) * columns + left // cell
    order = np.random.default_rng(seed).permutation(len(cells))
    _, first = np.unique(cells[order], return_index=True)
    chosen: npt.NDArray[np.int64] = np.sort(order[first]).astype(np.int64)
    return chosen
