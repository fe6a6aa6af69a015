"""Embeddings: backbones, the extraction engine, vector search, clusters and maps.

Heavy libraries (torch, onnxruntime, faiss, scikit-learn) are imported by the modules that
use them, when they are used; importing this package stays light.
"""

from lensloop.embed.base import Backbone, InputSpec, to_model_input, to_unit_range

__all__ = ["Backbone", "InputSpec", "to_model_input", "to_unit_range"]
