"""lensloop: from raw scientific images to labelled data sets and trained models.

``import lensloop`` stays light: heavy libraries (torch, onnxruntime, faiss, fastapi) are
imported by the layer that needs them, when it needs them. :func:`init_model` and
:func:`predict` (from :mod:`lensloop.train.inference`), :func:`count` (from
:mod:`lensloop.train.counter`) and :func:`segment` (from :mod:`lensloop.train.segmenter`)
load on first use::

    import lensloop
    model = lensloop.init_model("champion", project=project)   # or a models/vN folder
    for item in lensloop.predict(["a.png", "b.tif"], model):
        print(item.source, item.predicted, item.confidence)
    counts, locations = lensloop.count(["plates/"], "latest", project=counting_project)
    masks = lensloop.segment(["cores/"], "latest", project=segment_project)
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "count", "init_model", "predict", "segment"]

__version__ = "0.1.0"

#: Public names loaded on first use, and the module holding each.
_LAZY = {
    "init_model": "lensloop.train.inference",
    "predict": "lensloop.train.inference",
    "count": "lensloop.train.counter",
    "segment": "lensloop.train.segmenter",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lensloop' has no attribute {name!r}")
