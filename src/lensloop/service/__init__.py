"""The HTTP server ``lensloop serve`` runs (FastAPI): images and Label Studio's ML backend.

An entry point like :mod:`lensloop.cli`: nothing below imports it.
"""

from lensloop.service.app import BasicAuth, create_app

__all__ = ["BasicAuth", "create_app"]
