"""lensloop: from raw scientific images to labelled data sets and trained models.

``import lensloop`` stays light: heavy libraries (torch, onnxruntime, faiss, fastapi) are
imported by the layer that needs them, when it needs them.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
