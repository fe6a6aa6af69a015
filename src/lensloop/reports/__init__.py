"""Figures and summaries of trained models, as pure functions over arrays and paths.

A classifier:

- :func:`draw_confusion_matrix`: a ``(C, C)`` count matrix as an annotated heatmap PNG.
- :func:`draw_prediction_grid`: thumbnails of :class:`GridItem` images with their
  predicted and actual classes, errors first, as a grid PNG (:func:`caption_height`
  gives the height of each tile's caption band).

A counting model:

- :func:`draw_count_overlay`: predicted points over an image, and with the true points
  matched, false positive and missed ones in their colours, as a PNG scaled to fit.
- :func:`draw_count_scatter`: predicted against true counts per image, with the MAE and
  the mean relative error, as a PNG.

Nothing here opens a project or the catalog; matplotlib and Pillow are imported when a
figure is drawn, so importing :mod:`lensloop.reports` costs NumPy only.
"""

from lensloop.reports.classify import (
    GridItem,
    caption_height,
    draw_confusion_matrix,
    draw_prediction_grid,
)
from lensloop.reports.counting import draw_count_overlay, draw_count_scatter

__all__ = [
    "GridItem",
    "caption_height",
    "draw_confusion_matrix",
    "draw_count_overlay",
    "draw_count_scatter",
    "draw_prediction_grid",
]
