"""Semantic segmentation: training data, scores, region measurements, synthetic scenes.

Every module here speaks the label-map convention of :mod:`lensloop.annotate.labelmap`: a
``uint8`` ``(H, W)`` array where 0 is background, ``k`` is the model's ``k``-th class
(1-based) and 255 is *void* (not annotated, or marked to be ignored). Regions (polygons,
masks) and the outside label formats live beside it in :mod:`lensloop.annotate`
(``regions``, ``labelfiles``, ``maskfiles``).
"""
