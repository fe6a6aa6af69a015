"""Figures and summaries of a trained classifier, as pure functions over arrays and paths.

- :func:`draw_confusion_matrix`: a ``(C, C)`` count matrix as an annotated heatmap PNG.
- :func:`draw_prediction_grid`: thumbnails of :class:`GridItem` images with their
  predicted and actual classes, errors first, as a grid PNG (:func:`caption_height`
  gives the height of each tile's caption band).

Nothing here opens a project or the catalog; matplotlib and Pillow are imported when a
figure is drawn, so importing :mod:`lensloop.reports` costs NumPy only.
"""

from lensloop.reports.classify import (
    GridItem,
    caption_height,
    draw_confusion_matrix,
    draw_prediction_grid,
)

__all__ = [
    "GridItem",
    "caption_height",
    "draw_confusion_matrix",
    "draw_prediction_grid",
]
